"""The ``dl_training`` and ``feature_extraction`` pipelines through Kedro, in project copies.

A tiny two-centre cohort (``roi_crops``, ``patient_splits``) is written straight into each
copy; the pipelines run with the ``test`` settings (a very small CNN, two epochs, K = 5 fold
networks per model). Checked: every patient gets one row of features and predictions in the
order of ``patient_splits``, the predictions follow the output contract (out-of-fold
``train_cv`` rows included), a fold-ensemble checkpoint loads back to the very outputs the
pipeline wrote, the external centre changes nothing fitted, bad parameters stop the run
before training, MLflow records the training and the networks, and the fold networks train
side by side under ``ParallelRunner``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from kedro.io import DatasetError
from kedro.runner import ParallelRunner
from mlflow import MlflowClient

from clnm_kedro.datasets import TorchModelDataset
from clnm_kedro.networks import predict_probabilities
from clnm_kedro.networks.cross_fitting import (
    cross_fitted_logits,
    fold_assignment,
    held_out_digest,
)
from clnm_kedro.pipelines.dl_training import create_pipeline as dl_training_pipeline
from clnm_kedro.pipelines.dl_training.nodes import resolve_network_settings
from clnm_kedro.pipelines.feature_extraction import create_pipeline as feature_pipeline
from clnm_kedro.pipelines.feature_extraction.nodes import (
    gather_network_predictions,
    score_with_network,
)
from clnm_kedro.runner import SideBySideRunner
from float_compare import assert_same_numbers
from kedro_project import make_project_copy, run_pipelines

NETWORKS = ("dl_dual", "dl_longitudinal", "dl_transverse")
PIPELINES = ["dl_training", "feature_extraction"]
PREDICTION_COLUMNS = ["patient_id", "center", "split", "model", "clnm", "probability"]
N_TRAIN, N_EXTERNAL, SIZE = 40, 14, 32
N_FOLDS = 5  # split.n_folds: the fold networks per model (conf/base cross_fitting.n_folds null)
# DL features: the fused logit, and each view's for the dual network
N_OUTPUTS = {"dl_dual": 3, "dl_longitudinal": 1, "dl_transverse": 1}
BATCH_SIZE = 16  # conf/test/parameters_feature_extraction.yml


def make_cohort(seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """``roi_crops`` and ``patient_splits`` of a small cohort; CLNM brightens a blob."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_EXTERNAL
    clnm = (np.arange(n) % 3 == 1).astype(int)  # both classes in every fold (i % 5)
    crops = rng.integers(0, 160, size=(n, 2, SIZE, SIZE), dtype=np.uint8)
    crops[clnm == 1, :, 10:20, 10:20] += 80
    ids = [f"A{i:03d}" for i in range(N_TRAIN)] + [f"B{i:03d}" for i in range(N_EXTERNAL)]
    splits = pd.DataFrame(
        {
            "patient_id": ids,
            "center": ["CENTER_A"] * N_TRAIN + ["CENTER_B"] * N_EXTERNAL,
            "clnm": clnm,
            "split": ["train"] * N_TRAIN + ["external"] * N_EXTERNAL,
            "fold": [i % 5 for i in range(N_TRAIN)] + [-1] * N_EXTERNAL,
        }
    )
    return crops, splits


def new_project(folder: Path, crops: np.ndarray, splits: pd.DataFrame) -> Path:
    project = make_project_copy(folder)
    np.save(project / "data" / "03_primary" / "roi_crops.npy", crops)
    splits.to_csv(project / "data" / "03_primary" / "patient_splits.csv", index=False)
    return project


def run(project: Path, pipelines: list[str], **kwargs: Any) -> None:
    """Run ``pipelines`` through Kedro in the isolated project."""
    run_pipelines(project, pipelines, **kwargs)


def read_table(project: Path, relative: str) -> pd.DataFrame:
    path = project / "data" / relative
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"patient_id": str, "center": str})


def checkpoint(project: Path, model: str) -> dict[str, Any]:
    path = project / "data" / "06_models" / f"{model}_network.pt"
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def cohort() -> tuple[np.ndarray, pd.DataFrame]:
    return make_cohort()


@pytest.fixture(scope="module")
def baseline(
    tmp_path_factory: pytest.TempPathFactory, cohort: tuple[np.ndarray, pd.DataFrame]
) -> Path:
    """A project copy after ``kedro run --pipelines dl_training,feature_extraction --env test``."""
    project = new_project(tmp_path_factory.mktemp("dl") / "baseline", *cohort)
    run(project, PIPELINES, env="test")
    return project


def test_pipelines_are_namespaced_per_network() -> None:
    training, features = dl_training_pipeline(), feature_pipeline()
    for model in NETWORKS:
        assert {
            f"{model}_network",
            f"{model}_training_history",
            f"{model}_training_curve",
            f"{model}_training_metrics",
        } <= training.all_outputs()
        assert f"params:dl_training.models.{model}" in training.inputs()
        names = {node.name for node in training.nodes}
        assert {f"{model}.fold_{k}.train_fold_network" for k in range(N_FOLDS)} <= names
        assert f"{model}.fold_{N_FOLDS}.train_fold_network" not in names
        assert f"{model}.assemble_fold_ensemble" in names
        assert f"{model}_features" in features.all_outputs()
    assert training.inputs() >= {"roi_crops", "patient_splits", "params:dl_training.recipe"}
    assert "dl_predictions" in features.outputs()
    # Training nodes are tagged `training`; inference nodes `inference` (reused by `inference`).
    assert {n.name for n in features.only_nodes_with_tags("inference").nodes} == {
        n.name for n in features.nodes
    }
    assert not training.only_nodes_with_tags("inference").nodes


def test_features_line_up_with_patient_ids(
    baseline: Path, cohort: tuple[np.ndarray, pd.DataFrame]
) -> None:
    _, splits = cohort
    for model in NETWORKS:
        table = read_table(baseline, f"04_feature/{model}_features.parquet")
        assert table["patient_id"].tolist() == splits["patient_id"].tolist()
        assert list(table.columns[1:]) == [f"dl_{i:03d}" for i in range(N_OUTPUTS[model])]
        assert np.isfinite(table.iloc[:, 1:].to_numpy()).all()


def test_predictions_follow_the_output_contract(
    baseline: Path, cohort: tuple[np.ndarray, pd.DataFrame]
) -> None:
    _, splits = cohort
    predictions = read_table(baseline, "07_model_output/dl_predictions.csv")
    assert list(predictions.columns) == PREDICTION_COLUMNS
    per_model = len(splits) + N_TRAIN  # train (apparent) + external, then train_cv
    assert predictions["model"].tolist() == [m for m in NETWORKS for _ in range(per_model)]
    for model in NETWORKS:
        rows = predictions[predictions["model"] == model].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            rows[["patient_id", "center", "split", "clnm"]].iloc[: len(splits)],
            splits[["patient_id", "center", "split", "clnm"]],
        )
        cv = rows.iloc[len(splits) :]
        assert cv["split"].eq("train_cv").all()
        train_ids = splits.loc[splits["split"] == "train", "patient_id"].tolist()
        assert cv["patient_id"].tolist() == train_ids
        assert rows["probability"].between(0, 1).all()
        assert rows["probability"].nunique() > 1


def test_checkpoint_loads_back_to_the_pipeline_outputs(
    baseline: Path, cohort: tuple[np.ndarray, pd.DataFrame], tmp_path: Path
) -> None:
    crops, _ = cohort
    predictions = read_table(baseline, "07_model_output/dl_predictions.csv")
    _, splits = cohort
    external = splits["split"].eq("external").to_numpy()
    for model in NETWORKS:
        dataset = TorchModelDataset(str(baseline / "data" / "06_models" / f"{model}_network.pt"))
        network = dataset.load()
        assert isinstance(network, torch.nn.Module) and not network.training
        assert network.n_folds == N_FOLDS
        features = read_table(baseline, f"04_feature/{model}_features.parquet")
        outputs = cross_fitted_logits(
            network, crops, fold_assignment(network, splits), BATCH_SIZE
        )
        assert_same_numbers(outputs.logits, features.iloc[:, 1:])
        rows = predictions[(predictions["model"] == model) & (predictions["split"] == "external")]
        # External patients: the fold ensemble's mean logit, calibrated with the stored map.
        assert_same_numbers(
            network.calibration.apply(predict_probabilities(network, crops, BATCH_SIZE))[external],
            rows["probability"].to_numpy(),
        )
        # The checkpoint keeps each fold network's training history; the table is their mean.
        history = read_table(baseline, f"08_reporting/{model}_training_history.csv")
        stored = checkpoint(baseline, model)["folds"]
        np.testing.assert_allclose(
            history["train_loss"], np.mean([fold["history"]["train_loss"] for fold in stored], 0)
        )
        assert list(history.columns) == [
            "epoch",
            "train_loss",
            "val_loss",
            "val_auc",
            "lr",
            "seconds",
        ]
    with pytest.raises(DatasetError, match="TrainingResult"):
        TorchModelDataset(str(tmp_path / "x.pt")).save(network)
    assert not TorchModelDataset(str(tmp_path / "x.pt")).exists()


def test_mlflow_records_training_and_networks(
    baseline: Path, cohort: tuple[np.ndarray, pd.DataFrame]
) -> None:
    """Runs before the other tests that start a Kedro session in this process."""
    crops, _ = cohort
    client = MlflowClient(tracking_uri=f"sqlite:///{baseline / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "clnm_kedro"]
    (run_info,) = client.search_runs([experiment.experiment_id])
    run_id = run_info.info.run_id
    for model in NETWORKS:
        history = read_table(baseline, f"08_reporting/{model}_training_history.csv")
        loss = client.get_metric_history(run_id, f"train.{model}.loss")
        assert [m.step for m in loss] == history["epoch"].tolist()
        np.testing.assert_allclose([m.value for m in loss], history["train_loss"])
        # A fixed schedule: no validation passes, the last epoch kept by every fold network.
        assert not client.get_metric_history(run_id, f"val.{model}.auc")
        folds = checkpoint(baseline, model)["folds"]
        assert run_info.data.metrics[f"val.{model}.best_epoch"] == max(
            fold["best_epoch"] for fold in folds
        ) == 2
        calibration = checkpoint(baseline, model)["calibration"]
        assert run_info.data.metrics[
            f"train_cv.{model}.calibration_map_slope"
        ] == pytest.approx(calibration["slope"])
    assert run_info.data.params["dl_training.recipe.training.epochs"] == "2"
    figures = {a.path for a in client.list_artifacts(run_id, "figures")}
    assert {f"figures/{model}_training_curve.png" for model in NETWORKS} <= figures
    # The network logged with the PyTorch flavour gives the checkpoint's outputs.
    logged = json.loads(
        (baseline / "data" / "06_models" / "dl_dual_network_mlflow_model.json").read_text()
    )
    assert logged["logged"] and logged["run_id"] == run_id
    mlflow.set_tracking_uri(f"sqlite:///{baseline / 'mlflow.db'}")
    try:
        network = mlflow.pytorch.load_model(logged["model_uri"], map_location="cpu")
    finally:
        mlflow.set_tracking_uri(None)
    network_file = baseline / "data" / "06_models" / "dl_dual_network.pt"
    assert_same_numbers(
        predict_probabilities(network, crops),
        predict_probabilities(TorchModelDataset(str(network_file)).load(), crops),
    )


def test_no_external_patient_reaches_training_or_validation(
    baseline: Path, cohort: tuple[np.ndarray, pd.DataFrame]
) -> None:
    _, splits = cohort
    train = splits[splits["split"] == "train"]
    for model in NETWORKS:
        summary = json.loads(
            (baseline / "data" / "08_reporting" / f"{model}_training_summary.json").read_text()
        )
        stored = checkpoint(baseline, model)["folds"]
        assert len(summary["folds"]) == N_FOLDS
        for k, fold in enumerate(summary["folds"]):
            held = train.loc[train["fold"] == k, "patient_id"].tolist()
            assert fold["held_out_patient_ids"] == held
            assert stored[k]["held_out_digest"] == held_out_digest(held)
            assert fold["fit_patient_ids"] == train.loc[train["fold"] != k, "patient_id"].tolist()
            assert fold["validation_patient_ids"] == []
            assert fold["epoch_kept"] == stored[k]["best_epoch"]


def test_external_centre_changes_nothing_fitted(
    baseline: Path, cohort: tuple[np.ndarray, pd.DataFrame], tmp_path: Path
) -> None:
    crops, splits = cohort
    rng = np.random.default_rng(3)
    external = splits["split"].eq("external").to_numpy()
    changed_crops, changed_splits = crops.copy(), splits.copy()
    changed_crops[external] = rng.integers(0, 256, changed_crops[external].shape, np.uint8)
    changed_splits.loc[external, "clnm"] = 1 - changed_splits.loc[external, "clnm"]
    project = new_project(tmp_path / "changed", changed_crops, changed_splits)
    run(project, ["dl_training"], env="test")
    for model in NETWORKS:
        before, after = checkpoint(baseline, model)["folds"], checkpoint(project, model)["folds"]
        for fold_before, fold_after in zip(before, after, strict=True):
            assert fold_before["state_dict"].keys() == fold_after["state_dict"].keys()
            for name, weights in fold_before["state_dict"].items():
                torch.testing.assert_close(fold_after["state_dict"][name], weights, rtol=0, atol=0)
            assert fold_before["history"]["train_loss"] == fold_after["history"]["train_loss"]
    # The check can fail: the external crops did change the network's input.
    network = TorchModelDataset(str(project / "data" / "06_models" / "dl_dual_network.pt")).load()
    assert not np.array_equal(
        predict_probabilities(network, crops)[external],
        predict_probabilities(network, changed_crops)[external],
    )


def test_bad_network_parameters_are_named() -> None:
    recipe = {"training": {"epochs": 2}}
    settings = resolve_network_settings(recipe, {"model": "dl_dual", "views": "dual"}, 1)
    assert settings.config["network"]["kind"] == "dual" and settings.n_views == 2
    override = {"model": "dl_transverse", "views": "transverse", "training": {"epochs": 5}}
    settings = resolve_network_settings(recipe, override, 1)
    assert settings.config["training"]["epochs"] == 5 and settings.n_views == 1
    with pytest.raises(ValueError, match=r"dl_training\.models\.dl_dual\.views"):
        resolve_network_settings(recipe, {"model": "dl_dual", "views": "sideways"}, 1)
    with pytest.raises(ValueError, match=r"dl_dual network.*lerning_rate"):
        resolve_network_settings(
            {"training": {"lerning_rate": 0.1}}, {"model": "dl_dual", "views": "dual"}, 1
        )
    with pytest.raises(ValueError, match="needs 'model'"):
        resolve_network_settings(recipe, {"views": "dual"}, 1)


def test_bad_parameters_stop_the_run_before_training(
    cohort: tuple[np.ndarray, pd.DataFrame], tmp_path: Path
) -> None:
    project = new_project(tmp_path / "bad", *cohort)
    with pytest.raises(ValueError, match="backbone"):
        run(
            project,
            ["dl_training"],
            env="test",
            runtime_params={"dl_training": {"recipe": {"network": {"backbone": "vgg99"}}}},
        )
    assert not list((project / "data" / "06_models").glob("*.pt"))


def test_feature_extraction_rejects_misaligned_inputs(
    baseline: Path, cohort: tuple[np.ndarray, pd.DataFrame]
) -> None:
    crops, splits = cohort
    network = TorchModelDataset(str(baseline / "data" / "06_models" / "dl_dual_network.pt")).load()
    with pytest.raises(ValueError, match="row i of patient_splits"):
        score_with_network(network, crops[:-1], splits, {"batch_size": 16})
    with pytest.raises(ValueError, match="batch_size"):
        score_with_network(network, crops, splits, {"batch_size": 0})
    shuffled = pd.DataFrame({"patient_id": splits["patient_id"][::-1], "probability": 0.5})
    with pytest.raises(ValueError, match="dl_dual probabilities are not in the patient order"):
        gather_network_predictions(splits, dl_dual=shuffled)


def assert_same_fold_networks(baseline: Path, project: Path) -> None:
    """Every network model of ``project`` has the K fold networks of ``baseline``: the same
    held-out patients and the same weights."""
    for model in NETWORKS:
        sequential, other = checkpoint(baseline, model), checkpoint(project, model)
        assert len(other["folds"]) == N_FOLDS
        for fold_a, fold_b in zip(sequential["folds"], other["folds"], strict=True):
            assert fold_a["held_out_digest"] == fold_b["held_out_digest"]
            for name, weights in fold_a["state_dict"].items():
                torch.testing.assert_close(fold_b["state_dict"][name], weights)


def test_fold_networks_trained_side_by_side_in_threads_are_the_sequential_ones(
    baseline: Path, cohort: tuple[np.ndarray, pd.DataFrame], tmp_path: Path
) -> None:
    """``make run``'s :class:`SideBySideRunner` trains two fold networks at a time in threads,
    with the catalog as it ships (MLflow datasets included). Each network draws its initial
    weights, dropout, batch order and augmentation from streams of its own, so it ends with the
    weights the sequential run gave it."""
    project = new_project(tmp_path / "threads", *cohort)
    run(project, ["dl_training"], env="test", runner=SideBySideRunner(max_workers=2))
    assert_same_fold_networks(baseline, project)


def test_fold_networks_train_side_by_side_with_the_parallel_runner(
    baseline: Path,
    cohort: tuple[np.ndarray, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``kedro run --runner ParallelRunner``: the fold networks are independent nodes; the
    ensemble is the one the sequential run made (CPU training repeats exactly).

    Workers are spawned, not forked: this process has already trained networks, and a child
    forked from a process whose OpenMP thread pool is running deadlocks in its first parallel
    region (the README gives users the same setting)."""
    monkeypatch.setenv("KEDRO_MP_CONTEXT", "spawn")
    project = new_project(tmp_path / "parallel", *cohort)
    # kedro-mlflow's artifact datasets cannot be pickled into worker processes: in this copy
    # they write their files without logging them to MLflow.
    plain = {}
    for path in (project / "conf" / "base" / "catalog").glob("*.yml"):
        for name, entry in (yaml.safe_load(path.read_text()) or {}).items():
            if "MlflowArtifactDataset" in str(entry.get("type", "")):
                plain[name] = entry["dataset"]
    (project / "conf" / "test" / "catalog_parallel.yml").write_text(yaml.safe_dump(plain))
    run(project, ["dl_training"], env="test", runner=ParallelRunner(max_workers=2))
    assert_same_fold_networks(baseline, project)
