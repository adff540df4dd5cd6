"""Cross-fitted networks: fold membership, out-of-fold DL outputs, the fold ensemble,
calibration, K = 1, and the fold checkpoint (small synthetic cohorts, tiny CNNs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import special
from sklearn.metrics import roc_auc_score

from clnm_kedro.datasets import TorchModelDataset
from clnm_kedro.metrics.calibration import calibration_intercept_slope
from clnm_kedro.networks import train_network
from clnm_kedro.networks.cross_fitting import (
    ENSEMBLE,
    FoldEnsemble,
    check_held_out,
    cross_fitted_logits,
    cross_fitted_risks,
    fit_calibration,
    fold_assignment,
    fold_rows,
)
from clnm_kedro.pipelines.dl_training.nodes import (
    assemble_fold_ensemble,
    resolve_network_settings,
    train_fold_network,
)
from clnm_kedro.pipelines.feature_extraction.nodes import (
    gather_network_predictions,
    score_new_patients,
    score_with_network,
)
from float_compare import assert_same_numbers

SIZE = 16
TINY = {
    "network": {"compact_channels": [4, 8], "hidden_dim": 8, "dropout": 0.0},
    "augment": False,
    "training": {"batch_size": 8, "progress_bar": False, "device": "cpu", "warmup_epochs": 1,
                 "weight_decay": 0.0},
}


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cohort(
    n_train: int = 60, n_external: int = 10, n_folds: int = 3, signal: bool = False, seed: int = 0
) -> tuple[np.ndarray, pd.DataFrame]:
    """Noise crops; with ``signal`` CLNM brightens a square in both views."""
    rng = np.random.default_rng(seed)
    n = n_train + n_external
    clnm = rng.permutation(np.arange(n) % 2)
    crops = rng.integers(0, 200, size=(n, 2, SIZE, SIZE), dtype=np.uint8)
    if signal:
        crops[clnm == 1, :, 4:12, 4:12] += 50
    split = np.array(["train"] * n_train + ["external"] * n_external)
    splits = pd.DataFrame({
        "patient_id": [f"P{i:03d}" for i in range(n)],
        "center": np.where(split == "train", "A", "B"),
        "clnm": clnm,
        "split": split,
        "fold": np.where(split == "train", np.arange(n) % n_folds, -1),
    })
    return crops, splits


def _settings(n_folds: int, epochs: int, model: str = "dl_dual", views: str = "dual",
              epoch_choice: str = "last"):
    recipe = {**TINY, "training": {**TINY["training"], "epochs": epochs}}
    return resolve_network_settings(
        recipe, {"model": model, "views": views}, 7,
        {"n_folds": n_folds, "epoch_choice": epoch_choice}, {"n_folds": n_folds},
    )


def _ensemble(crops, splits, settings):
    folds = [train_fold_network(crops, splits, settings, k) for k in range(settings.n_folds)]
    result, history, summary = assemble_fold_ensemble(crops, splits, settings, *folds)
    return folds, result, history, summary


def test_fold_rows_never_hand_a_network_its_held_out_fold() -> None:
    _, splits = _cohort(n_train=30, n_folds=5)
    folds = splits["fold"].to_numpy()
    train = splits["split"].eq("train").to_numpy()
    held_by = np.full(len(splits), -1)
    for k in range(5):
        for choice in ("last", "inner_fold"):
            fit, validation, held = fold_rows(splits, k, 5, choice)
            assert set(folds[held]) == {k} and not set(fit) & set(held)
            assert not set(validation) & set(held) and train[np.r_[fit, validation]].all()
            assert (validation.size > 0) == (choice == "inner_fold")
            assert set(np.r_[fit, validation, held]) == set(np.flatnonzero(train))
        held_by[held] = k
    assert (held_by[train] == folds[train]).all() and (held_by[~train] == -1).all()
    fit, validation, held = fold_rows(splits, 0, 1, "last")  # K = 1: one network, nothing held
    assert held.size == 0 and validation.size == 0 and fit.size == train.sum()
    fit, validation, held = fold_rows(splits, 1, 2, "last")  # K < n_folds: folds 1 and 3
    assert set(folds[held]) == {1, 3}
    with pytest.raises(ValueError, match="epoch_choice"):
        fold_rows(splits, 0, 5, "best")


def test_out_of_fold_outputs_of_noise_images_carry_no_signal() -> None:
    """Networks that memorise noise: in-sample AUC near 1, out-of-fold near 0.5."""
    crops, splits = _cohort(n_train=60, n_folds=3)
    settings = _settings(3, epochs=40)
    _, result, _, _ = _ensemble(crops, splits, settings)
    ensemble = result.network()
    train = splits["split"].eq("train").to_numpy()
    labels = splits.loc[train, "clnm"].to_numpy()
    assignment = fold_assignment(ensemble, splits)[train]
    outputs = cross_fitted_logits(ensemble, crops[train], assignment)
    in_sample = cross_fitted_logits(ensemble, crops[train])
    assert (outputs.source != ENSEMBLE).all() and (in_sample.source == ENSEMBLE).all()
    assert roc_auc_score(labels, in_sample.logits[:, 0]) > 0.85
    for column in range(outputs.logits.shape[1]):  # fused, longitudinal, transverse
        assert abs(roc_auc_score(labels, outputs.logits[:, column]) - 0.5) < 0.2


def test_dl_inputs_of_training_patients_come_from_the_network_that_did_not_see_them() -> None:
    crops, splits = _cohort(n_train=30, n_folds=3, signal=True)
    settings = _settings(3, epochs=2)
    folds, result, _, summary = _ensemble(crops, splits, settings)
    network = result.network()
    features, probabilities = score_with_network(network, crops, splits, {"batch_size": 8})
    train = splits["split"].eq("train").to_numpy()
    fold_of = splits["fold"].astype(int).to_numpy()
    for row in np.flatnonzero(train):
        patient, fold = splits.at[row, "patient_id"], int(splits.at[row, "fold"])
        assert probabilities.at[row, "source"] == f"fold_{fold}"
        assert patient in folds[fold].held_out_patient_ids
        assert patient not in folds[fold].fit_patient_ids + folds[fold].validation_patient_ids
        assert patient in summary["folds"][fold]["held_out_patient_ids"]
        # Its DL input: the own network's fused logit, standardised by the mean and SD of that
        # network's logits on the *other* patients it held out (no label, not the patient).
        own = network.folds[fold]
        group = np.flatnonzero(train & (fold_of == fold))
        with torch.no_grad():
            raw = own(torch.from_numpy(crops[group]).float() / 255).numpy().astype(float)
        mine = raw[group == row][0]
        others = raw[group != row]
        expected = (mine - others.mean()) / others.std(ddof=1)
        np.testing.assert_allclose(features.at[row, "dl_000"], expected, rtol=1e-4, atol=1e-4)
    assert (probabilities.loc[~train, "source"] == ENSEMBLE).all()
    assert list(features.columns) == ["patient_id", "dl_000", "dl_001", "dl_002"]
    # New patients (inference) always get the ensemble, even under a training patient's ID.
    new_features, new_probabilities = score_new_patients(network, crops, splits, {"batch_size": 8})
    assert_same_numbers(new_probabilities["probability"], probabilities["ensemble_probability"])
    external = ~train
    assert_same_numbers(
        new_features.loc[external].iloc[:, 1:], features.loc[external].iloc[:, 1:]
    )
    # The predictions table: apparent train rows, out-of-fold train_cv rows, external rows.
    table = gather_network_predictions(splits, dl_dual=probabilities)
    assert table["split"].value_counts().to_dict() == {"train": 30, "train_cv": 30, "external": 10}
    cv = table[table["split"] == "train_cv"].set_index("patient_id")["probability"]
    assert_same_numbers(cv.to_numpy(), probabilities.loc[train, "probability"].to_numpy())
    # Calibrated: the stored map is the one fitted on the out-of-fold fused logits.
    oof_logits = features.loc[train, "dl_000"].to_numpy()
    refit = fit_calibration(splits.loc[train, "clnm"].to_numpy(), oof_logits)
    assert refit.intercept == pytest.approx(network.calibration.intercept, abs=1e-4)
    assert refit.slope == pytest.approx(network.calibration.slope, abs=1e-4)


def test_one_fold_is_a_single_network_with_no_out_of_fold_rows(tmp_path: Path) -> None:
    crops, splits = _cohort(n_train=24, n_folds=3, signal=True)
    settings = _settings(1, epochs=2, model="dl_transverse", views="transverse")
    folds, result, history, summary = _ensemble(crops, splits, settings)
    assert len(folds) == 1 and folds[0].held_out_patient_ids == []
    assert len(folds[0].fit_patient_ids) == 24 and summary["n_out_of_fold_patients"] == 0
    assert result.calibration.slope == 1.0 and result.calibration.intercept == 0.0
    assert list(history["epoch"]) == [1, 2] and history["val_auc"].isna().all()
    path = tmp_path / "one.pt"
    TorchModelDataset(str(path)).save(result)
    network = TorchModelDataset(str(path)).load()
    assert isinstance(network, FoldEnsemble) and network.n_folds == 1
    features, probabilities = score_with_network(network, crops, splits, {"batch_size": 8})
    assert list(features.columns) == ["patient_id", "dl_000"]
    assert (probabilities["source"] == ENSEMBLE).all()
    splits_written = set(gather_network_predictions(splits, m=probabilities)["split"])
    assert splits_written == {"train", "external"}


def test_fold_checkpoint_round_trip_and_leak_checks(tmp_path: Path) -> None:
    crops, splits = _cohort(n_train=24, n_folds=4, signal=True)
    settings = _settings(2, epochs=1, epoch_choice="inner_fold")
    folds, result, _, _ = _ensemble(crops, splits, settings)
    fold_of = splits.set_index("patient_id")["fold"]
    assert set(fold_of[folds[0].held_out_patient_ids]) == {0, 2}  # K=2 of 4 split folds
    assert set(fold_of[folds[0].validation_patient_ids]) == {1}
    path = tmp_path / "ensemble.pt"
    TorchModelDataset(str(path)).save(result)
    loaded = TorchModelDataset(str(path)).load()
    assert isinstance(loaded, FoldEnsemble) and not loaded.training
    assert loaded.calibration == result.calibration
    assert not loaded.standardisation.is_identity  # stored with the weights
    np.testing.assert_array_equal(loaded.standardisation.scale, result.standardisation.scale)
    assert_same_numbers(
        cross_fitted_logits(loaded, crops, fold_assignment(loaded, splits)).logits,
        cross_fitted_logits(result.network(), crops, fold_assignment(loaded, splits)).logits,
    )
    # No patient ID is stored with the model (it is packaged into MLflow); a fingerprint of
    # each fold's held-out patients catches splits changed after training.
    stored = torch.load(path, map_location="cpu", weights_only=True)
    assert not any(patient in str(stored) for patient in splits["patient_id"])
    moved = splits.copy()
    moved.loc[0, "fold"] = 1 if moved.loc[0, "fold"] != 1 else 0
    with pytest.raises(ValueError, match="patient_splits does not match the networks"):
        fold_assignment(loaded, moved)
    check_held_out(folds, splits)
    forgotten = folds[1].held_out_patient_ids.pop()
    with pytest.raises(RuntimeError, match="held out by no fold network"):
        check_held_out(folds, splits)
    folds[1].held_out_patient_ids.append(forgotten)
    folds[1].fit_patient_ids.append(forgotten)
    with pytest.raises(RuntimeError, match="saw held-out"):
        check_held_out(folds, splits)


def test_inner_fold_epoch_choice_validates_inside_the_training_part() -> None:
    crops, splits = _cohort(n_train=30, n_folds=3, signal=True)
    settings = _settings(3, epochs=2, epoch_choice="inner_fold")
    fold = train_fold_network(crops, splits, settings, 0)
    folds = splits.set_index("patient_id")["fold"]
    assert set(folds[fold.validation_patient_ids]) == {1}
    assert set(folds[fold.fit_patient_ids]) == {2} and set(folds[fold.held_out_patient_ids]) == {0}
    assert np.isfinite(fold.history["val_auc"]).all()


def test_calibration_maps_a_known_offset_back() -> None:
    """Out-of-fold logits shifted by a pos_weight-like offset and stretched: the calibration
    fitted on them gives calibration intercept ~0 and slope ~1 (a sizeable synthetic case)."""
    rng = np.random.default_rng(0)
    true_logit = rng.normal(-1.0, 1.2, 20_000)
    labels = rng.binomial(1, special.expit(true_logit))
    shifted = 1.6 * true_logit + np.log(3.0)  # over-confident and shifted by log(n_neg/n_pos)
    before = calibration_intercept_slope(labels, special.expit(shifted))
    assert abs(before.intercept) > 0.3 or abs(before.slope - 1) > 0.3
    calibration = fit_calibration(labels, shifted)
    after = calibration_intercept_slope(labels, calibration.apply(special.expit(shifted)))
    assert abs(after.intercept) < 0.05 and abs(after.slope - 1) < 0.05
    assert calibration.slope == pytest.approx(1 / 1.6, abs=0.05)


def test_train_cv_risks_come_from_a_calibration_that_never_saw_the_patient() -> None:
    """The calibration of the out-of-fold logits is left out patient by patient: flipping one
    patient's label changes no risk of its own (and does change the others'), and with a known
    offset the risks are calibrated."""
    rng = np.random.default_rng(1)
    n = 3_000
    true_logit = rng.normal(-0.8, 1.0, n)
    labels = rng.binomial(1, special.expit(true_logit))
    logits = 1.5 * true_logit + 0.7
    risks = cross_fitted_risks(labels, logits)
    flipped = labels.copy()
    flipped[11] = 1 - flipped[11]
    after = cross_fitted_risks(flipped, logits)
    assert_same_numbers(after[11], risks[11])
    assert np.abs(np.delete(after, 11) - np.delete(risks, 11)).min() > 0
    fit = calibration_intercept_slope(labels, risks)
    assert abs(fit.intercept) < 0.1 and abs(fit.slope - 1) < 0.1
    with pytest.raises(ValueError, match="1 with the outcome and 3 without"):
        cross_fitted_risks(np.r_[1, 0, 0, 0], np.zeros(4))


def test_a_wrong_fold_count_is_named() -> None:
    with pytest.raises(ValueError, match="pipeline was built with 5"):
        resolve_network_settings(
            TINY, {"model": "dl_dual", "views": "dual"}, 1, {"n_folds": 3}, {"n_folds": 5},
            built_folds=5,
        )
    with pytest.raises(ValueError, match="cross_fitting"):
        resolve_network_settings(
            TINY, {"model": "dl_dual", "views": "dual"}, 1, {"folds": 3}, {"n_folds": 5}
        )
    _, splits = _cohort(n_train=12, n_folds=3)
    with pytest.raises(ValueError, match="only 3 folds"):
        train_fold_network(np.zeros((22, 2, SIZE, SIZE), np.uint8), splits, _settings(4, 1), 0)


def test_train_network_without_validation_keeps_the_last_epoch() -> None:
    crops, splits = _cohort(n_train=24, n_folds=3, signal=True)
    rows = fold_rows(splits, 0, 3, "last")
    result = train_network(crops, splits, {**TINY, "training": {**TINY["training"], "epochs": 3}},
                           seed=1, rows=rows)
    assert result.best_epoch == 3 and np.isnan(result.best_val_auc)
    assert result.history["val_loss"].isna().all() and len(result.history) == 3
