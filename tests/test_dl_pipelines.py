"""The ``dl_training`` and ``feature_extraction`` pipelines through Kedro, in project copies.

A tiny two-centre cohort (``roi_crops``, ``patient_splits``) is written straight into each
copy; the pipelines run with the ``test`` settings (a very small CNN, two epochs). Checked:
every patient gets one row of features and predictions in the order of ``patient_splits``,
the predictions follow the output contract, a checkpoint loads back to the very outputs the
pipeline wrote, the external centre changes nothing fitted, bad parameters stop the run
before training, and MLflow records the training and the networks.
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
from kedro.io import DatasetError
from mlflow import MlflowClient

from clnm_kedro.datasets import TorchModelDataset
from clnm_kedro.networks import extract_features, predict_probabilities
from clnm_kedro.pipelines.dl_training import create_pipeline as dl_training_pipeline
from clnm_kedro.pipelines.dl_training.nodes import resolve_network_settings
from clnm_kedro.pipelines.feature_extraction import create_pipeline as feature_pipeline
from clnm_kedro.pipelines.feature_extraction.nodes import (
    gather_network_predictions,
    score_with_network,
)
from float_compare import assert_same_numbers
from kedro_project import make_project_copy, run_pipelines

NETWORKS = ("dl_dual", "dl_longitudinal", "dl_transverse")
PIPELINES = ["dl_training", "feature_extraction"]
PREDICTION_COLUMNS = ["patient_id", "center", "split", "model", "clnm", "probability"]
N_TRAIN, N_EXTERNAL, SIZE = 40, 14, 32
HIDDEN_DIM = 8  # conf/test/parameters_dl_training.yml
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
        assert f"{model}.train_network" in {node.name for node in training.nodes}
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
        assert list(table.columns[1:]) == [f"dl_{i:03d}" for i in range(HIDDEN_DIM)]
        assert np.isfinite(table.iloc[:, 1:].to_numpy()).all()


def test_predictions_follow_the_output_contract(
    baseline: Path, cohort: tuple[np.ndarray, pd.DataFrame]
) -> None:
    _, splits = cohort
    predictions = read_table(baseline, "07_model_output/dl_predictions.csv")
    assert list(predictions.columns) == PREDICTION_COLUMNS
    assert predictions["model"].tolist() == [m for m in NETWORKS for _ in range(len(splits))]
    for model in NETWORKS:
        rows = predictions[predictions["model"] == model].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            rows[["patient_id", "center", "split", "clnm"]],
            splits[["patient_id", "center", "split", "clnm"]],
        )
        assert rows["probability"].between(0, 1).all()
        assert rows["probability"].nunique() > 1


def test_checkpoint_loads_back_to_the_pipeline_outputs(
    baseline: Path, cohort: tuple[np.ndarray, pd.DataFrame], tmp_path: Path
) -> None:
    crops, _ = cohort
    predictions = read_table(baseline, "07_model_output/dl_predictions.csv")
    for model in NETWORKS:
        dataset = TorchModelDataset(str(baseline / "data" / "06_models" / f"{model}_network.pt"))
        network = dataset.load()
        assert isinstance(network, torch.nn.Module) and not network.training
        features = read_table(baseline, f"04_feature/{model}_features.parquet")
        assert_same_numbers(extract_features(network, crops, BATCH_SIZE), features.iloc[:, 1:])
        expected = predictions.loc[predictions["model"] == model, "probability"].to_numpy()
        assert_same_numbers(predict_probabilities(network, crops, BATCH_SIZE), expected)
        # The checkpoint keeps the training history the pipeline wrote.
        history = read_table(baseline, f"08_reporting/{model}_training_history.csv")
        stored = checkpoint(baseline, model)["history"]
        np.testing.assert_allclose(history["val_auc"], stored["val_auc"])
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
        auc = client.get_metric_history(run_id, f"val.{model}.auc")
        assert [m.step for m in auc] == history["epoch"].tolist()
        np.testing.assert_allclose([m.value for m in auc], history["val_auc"])
        assert len(client.get_metric_history(run_id, f"train.{model}.loss")) == len(history)
        best = checkpoint(baseline, model)
        assert run_info.data.metrics[f"val.{model}.best_epoch"] == best["best_epoch"]
        assert run_info.data.metrics[f"val.{model}.best_auc"] == pytest.approx(best["best_val_auc"])
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
        assert (
            summary["validation_patient_ids"]
            == train.loc[train["fold"] == 0, "patient_id"].tolist()
        )
        assert summary["fit_patient_ids"] == train.loc[train["fold"] != 0, "patient_id"].tolist()
        assert summary["best_epoch"] == checkpoint(baseline, model)["best_epoch"]


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
        before, after = checkpoint(baseline, model), checkpoint(project, model)
        assert before["state_dict"].keys() == after["state_dict"].keys()
        for name, weights in before["state_dict"].items():
            torch.testing.assert_close(after["state_dict"][name], weights, rtol=0, atol=0)
        for column in ("train_loss", "val_loss", "val_auc"):
            assert before["history"][column] == after["history"][column]
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
