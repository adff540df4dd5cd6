"""Whole runs of the tiny ``test`` setting: repeatable, leak-free, de-identified, resumable.

Four whole runs are shared by the module (about two minutes on two cores):

- ``first`` and ``second``: ``kedro run --pipelines demo --env test`` (simulate through
  evaluation) in two separate project copies, one seed;
- ``tampered``: ``kedro run --env test`` on a copy of ``first``'s cohort in which the external
  centre's images are noise and its labels (and clinical values) are rewritten, one training
  and one external patient are stored as DICOM carrying a name, birth date and ID, and
  clinical.csv carries two unused identifying columns;
- ``resumed``: a project holding ``tampered``'s complete outputs runs on ``first``'s cohort,
  fails in a late evaluation node, and is resumed with ``--only-missing-outputs``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from mlflow import MlflowClient
from PIL import Image

import clnm_kedro
from clnm_kedro.heads.figures import optuna_figures
from clnm_kedro.hooks import (
    DEFAULT_TORCH_THREADS,
    JOURNAL_NAME,
    LOCK_NAME,
    TORCH_THREADS_ENV,
    RunLock,
    RunLockedError,
    RunLockHooks,
    RunStatusHooks,
    SameNumbersHooks,
    TrainedOnHooks,
    UnfinishedOutputsHooks,
    check_blas_kernels,
    fail_stale_optuna_trials,
    output_file,
    torch_threads,
    warn_on_training_patients,
)
from clnm_kedro.simulation.cohort import WRITER_FILE, _remove_abandoned_partials
from cohort_factory import DICOM_IDENTIFIERS, write_dicom
from kedro_project import make_project_copy, run_pipelines

pytestmark = pytest.mark.slow

EXTERNAL = "CENTER_B"
# Columns of clinical.csv that no parameter names: they must never leave 02_intermediate.
UNUSED_COLUMNS = {"patient_name": "Quillon Zarnowski-{i}", "mrn": "HOSP-MRN-{i:05d}-QZ"}
TRAINING_SPLITS = ("train", "train_cv")
FAILING_NODE = "compute_metrics"


@dataclass(frozen=True)
class Run:
    """A finished run: its project folder and cohort."""

    project: Path
    cohort: Path

    @property
    def data(self) -> Path:
        return self.project / "data"

    def read(self, relative: str) -> bytes:
        return (self.data / relative).read_bytes()

    def mlflow_runs(self) -> list[Any]:
        client = MlflowClient(tracking_uri=f"sqlite:///{self.project / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("clnm_kedro")
        return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time"])


def _demo_run(folder: Path) -> Run:
    project = make_project_copy(folder)
    cohort = project / "data" / "01_raw" / "cohort"
    run_pipelines(project, ["demo"], env="test", runtime_params={"cohort_dir": str(cohort)})
    return Run(project, cohort)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _demo_run(tmp_path_factory.mktemp("first") / "project")


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory, first: Run) -> Run:
    return _demo_run(tmp_path_factory.mktemp("second") / "project")


def _as_dicom(png: Path, pixels: np.ndarray | None = None) -> None:
    """Replace a PNG view by a DICOM file of the same (or given) pixels, with identifiers."""
    stored = np.asarray(Image.open(png)) if pixels is None else pixels
    png.unlink()
    write_dicom(png.with_suffix(".dcm"), stored.astype(np.uint8))


def tamper(source: Path, target: Path) -> dict[str, Any]:
    """Copy ``source``'s cohort to ``target`` with the external centre rewritten.

    Returns what was planted: the DICOM patients and the unused columns' values.
    """
    shutil.copytree(source, target)  # the oracle beside the cohort stays behind on purpose
    clinical = pd.read_csv(target / "clinical.csv", dtype=str, keep_default_na=False)
    external = clinical["center"] == EXTERNAL
    rng = np.random.default_rng(99)
    clinical.loc[external, "clnm"] = (1 - clinical.loc[external, "clnm"].astype(int)).astype(str)
    clinical.loc[external, "age"] = rng.integers(20, 80, external.sum()).astype(str)
    clinical.loc[external, "tumor_size_mm"] = rng.uniform(1, 10, external.sum()).round(1)
    for name, pattern in UNUSED_COLUMNS.items():
        clinical[name] = [pattern.format(i=i) for i in range(len(clinical))]
    clinical.to_csv(target / "clinical.csv", index=False)

    external_ids = clinical.loc[external, "patient_id"].tolist()
    for patient in external_ids:
        for png in (target / "images" / patient).glob("*.png"):
            shape = np.asarray(Image.open(png)).shape
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(png)
    training_dicom = clinical.loc[~external, "patient_id"].iloc[0]
    for png in sorted((target / "images" / training_dicom).glob("*.png")):
        _as_dicom(png)  # the same pixels: nothing fitted may change
    for png in sorted((target / "images" / external_ids[0]).glob("*.png")):
        _as_dicom(png)
    return {
        "dicom_patients": [training_dicom, external_ids[0]],
        "unused_values": [v for col in UNUSED_COLUMNS for v in clinical[col]],
    }


@dataclass(frozen=True)
class TamperedRun(Run):
    planted: dict[str, Any]


@pytest.fixture(scope="module")
def tampered(tmp_path_factory: pytest.TempPathFactory, first: Run) -> TamperedRun:
    project = make_project_copy(tmp_path_factory.mktemp("tampered") / "project")
    cohort = project / "data" / "01_raw" / "cohort"
    planted = tamper(first.cohort, cohort)
    run_pipelines(project, ["__default__"], env="test", runtime_params={"cohort_dir": str(cohort)})
    return TamperedRun(project, cohort, planted)


# --- repeatable ---------------------------------------------------------------------------


def test_two_runs_with_one_seed_give_identical_bytes(first: Run, second: Run) -> None:
    for relative in ("07_model_output/predictions.csv", "08_reporting/metrics.json"):
        assert first.read(relative) == second.read(relative), relative
    assert first.project != second.project
    assert len(pd.read_csv(first.data / "07_model_output" / "predictions.csv")) > 0


# --- leak-free ----------------------------------------------------------------------------


def _network(path: Path) -> tuple[list[dict[str, Any]], str]:
    """A network checkpoint as (each fold network's weights and records, everything else as
    JSON); the seconds per epoch left out. A single-network checkpoint is one fold."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    folds = [
        {**fold, "history": {k: v for k, v in fold["history"].items() if k != "seconds"}}
        for fold in checkpoint.get("folds", [checkpoint])
    ]
    rest = {k: v for k, v in checkpoint.items() if k not in ("folds", "state_dict", "history")}
    return folds, json.dumps(rest, sort_keys=True, default=str)


def _records(fold: dict[str, Any]) -> str:
    """A fold network's records but its weights, as JSON (NaN compares equal to NaN)."""
    return json.dumps(
        {k: v for k, v in fold.items() if k != "state_dict"}, sort_keys=True, default=str
    )


def _studies(run: Run) -> dict[str, list[tuple[Any, ...]]]:
    storage = f"sqlite:///{run.data / '06_models' / 'optuna.db'}"
    studies = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        studies[summary.study_name] = [
            (t.number, t.state.name, t.value, t.params, t.intermediate_values) for t in study.trials
        ]
    return studies


def _training_metrics(run: Run) -> dict[str, Any]:
    metrics = json.loads(run.read("08_reporting/metrics.json"))
    return {
        model: {
            "threshold": block["threshold"],
            "threshold_split": block["threshold_split"],
            **{split: block["splits"].get(split) for split in TRAINING_SPLITS},
        }
        for model, block in metrics["models"].items()
    }


def _rows(run: Run, relative: str, splits: tuple[str, ...]) -> pd.DataFrame:
    table = pd.read_csv(run.data / relative, dtype={"patient_id": str})
    return table[table["split"].isin(splits)].reset_index(drop=True)


def test_external_centre_changes_no_fitted_artifact(first: Run, tampered: TamperedRun) -> None:
    models = sorted((first.data / "06_models").iterdir())
    assert {p.suffix for p in models} >= {".pkl", ".pt", ".json", ".db"}
    for path in models:
        other = tampered.data / "06_models" / path.name
        if path.suffix == ".pt":  # each fold's weights, recipe, epoch kept, calibration
            (folds_a, rest_a), (folds_b, rest_b) = _network(path), _network(other)
            assert rest_a == rest_b, path.name
            for a, b in zip(folds_a, folds_b, strict=True):
                assert a["state_dict"].keys() == b["state_dict"].keys()
                assert all(
                    torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]
                )
                assert _records(a) == _records(b), path.name
        elif path.name.endswith("_mlflow_model.json"):  # an MLflow run id: differs by design
            assert json.loads(path.read_text())["logged"] == json.loads(other.read_text())["logged"]
        elif path.suffix == ".db":
            assert _studies(first) == _studies(tampered)
        else:  # fitted heads (pickles) and their selection records
            assert path.read_bytes() == other.read_bytes(), path.name


def test_external_centre_changes_no_training_set_number(first: Run, tampered: TamperedRun) -> None:
    # Youden thresholds and every train / train_cv metric of every model
    assert _training_metrics(first) == _training_metrics(tampered)
    predictions = "07_model_output/predictions.csv"
    pd.testing.assert_frame_equal(
        _rows(first, predictions, TRAINING_SPLITS), _rows(tampered, predictions, TRAINING_SPLITS)
    )
    reporting = first.data / "08_reporting"
    for path in sorted(reporting.glob("*_head_comparison.csv")):
        columns = ["model", "family", "selected", "cv_auc", "train_auc", "best_params", "study"]
        a = pd.read_csv(path)[columns]
        b = pd.read_csv(tampered.data / "08_reporting" / path.name)[columns]
        pd.testing.assert_frame_equal(a, b)
    for path in sorted(reporting.glob("*_training_history.csv")):
        a = pd.read_csv(path).drop(columns="seconds")
        b = pd.read_csv(tampered.data / "08_reporting" / path.name).drop(columns="seconds")
        pd.testing.assert_frame_equal(a, b)

    # ... while the tampering did reach the external rows (the test can fail)
    a = _rows(first, predictions, ("external",))
    b = _rows(tampered, predictions, ("external",))
    assert (a["clnm"] != b["clnm"]).all()
    assert not np.allclose(a["probability"], b["probability"])


# --- de-identified ------------------------------------------------------------------------


def _readable_bytes(path: Path) -> Iterator[bytes]:
    """The file's bytes, plus what compression may hide: zip members, parquet cells."""
    raw = path.read_bytes()
    yield raw
    if zipfile.is_zipfile(io.BytesIO(raw)):
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            for member in archive.namelist():
                yield archive.read(member)
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
        yield " ".join(map(str, table.columns)).encode()
        yield table.to_csv(index=False).encode()
    if path.suffix == ".db":  # SQLite stores (MLflow, Optuna): every text cell
        with sqlite3.connect(path) as connection:
            names = connection.execute("select name from sqlite_master where type='table'")
            for (table_name,) in names.fetchall():
                rows = connection.execute(f'select * from "{table_name}"').fetchall()
                yield repr(rows).encode()


def test_no_identifier_reaches_any_output_or_mlflow(tampered: TamperedRun) -> None:
    identifiers = [*DICOM_IDENTIFIERS.values(), "1961-02-23", "ZARNOWDOE", "QUILLJANE"]
    identifiers += tampered.planted["unused_values"]
    # the planted DICOM files were read (they are in the cohort table)
    table = pd.read_parquet(tampered.data / "02_intermediate" / "cohort_table.parquet")
    assert set(tampered.planted["dicom_patients"]) <= set(table["patient_id"])

    files = [
        path
        for path in sorted(tampered.project.rglob("*"))
        if path.is_file() and not path.is_relative_to(tampered.data / "01_raw")
    ]
    assert any(p.is_relative_to(tampered.project / "mlruns") for p in files)  # MLflow artifacts
    assert tampered.project / "mlflow.db" in files
    for path in files:
        for content in _readable_bytes(path):
            for value in identifiers:
                assert value.encode() not in content, (value, path)

    client = MlflowClient(tracking_uri=f"sqlite:///{tampered.project / 'mlflow.db'}")
    (run,) = tampered.mlflow_runs()
    logged = json.dumps([run.data.params, run.data.tags, run.data.metrics])
    assert not [v for v in identifiers if v in logged]
    assert client.list_artifacts(run.info.run_id)  # artifacts were scanned above, as files


def test_unused_clinical_columns_never_leave_02_intermediate(tampered: TamperedRun) -> None:
    later = [
        path
        for path in sorted(tampered.data.rglob("*"))
        if path.is_file()
        and not path.is_relative_to(tampered.data / "01_raw")
        and path.suffix in (".csv", ".parquet", ".json")
    ]
    assert len(later) > 20
    for path in later:
        if path.suffix == ".json":
            columns = path.read_text(encoding="utf-8")
        elif path.suffix == ".parquet":
            columns = " ".join(map(str, pd.read_parquet(path).columns))
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
            columns = lines[0] if lines else ""
        for name in UNUSED_COLUMNS:
            assert f'"{name}"' not in columns and name not in columns.split(","), (name, path)


# --- resumable ----------------------------------------------------------------------------


class FailIn:
    """A hook that makes one node raise, as a bug or a full disk would."""

    def __init__(self, node_name: str) -> None:
        self.node_name = node_name

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        if node.name == self.node_name:
            raise RuntimeError(f"injected failure in {node.name}")


def _session_run(
    project: Path, cohort: Path, extra_hooks: tuple[Any, ...] = (), **kwargs: Any
) -> None:
    """``kedro run --env test`` (the default pipeline) with ``extra_hooks`` registered, run
    from the project folder as ``kedro run`` is (the MLflow and Optuna stores are found there).
    """
    previous = Path.cwd()
    os.chdir(project)
    bootstrap_project(project)
    try:
        with KedroSession.create(
            project_path=project, env="test", runtime_params={"cohort_dir": str(cohort)}
        ) as session:
            for hook in extra_hooks:
                session._hook_manager.register(hook)
            session.run(pipeline_names=["__default__"], **kwargs)
    finally:
        os.chdir(previous)
        while mlflow.active_run() is not None:
            mlflow.end_run()


def _output_files(project: Path, catalog: Any) -> dict[str, list[Path]]:
    """Each node of the default pipeline → its persisted output files in data/."""
    files = {}
    for node in pipelines["__default__"].nodes:
        paths = [
            output_file(catalog.get(name), project) for name in node.outputs if name in catalog
        ]
        files[node.name] = [p for p in paths if p is not None]
    return files


def test_failed_run_leaves_nothing_complete_and_resumes(
    tmp_path_factory: pytest.TempPathFactory, first: Run, tampered: TamperedRun
) -> None:
    project = make_project_copy(tmp_path_factory.mktemp("resumed") / "project")
    for layer in sorted(tampered.data.iterdir()):  # an earlier, complete run on other data
        if layer.name != "01_raw":
            shutil.copytree(layer, project / "data" / layer.name, dirs_exist_ok=True)
    stale = {p: p.stat().st_mtime for p in (project / "data").rglob("*") if p.is_file()}
    time.sleep(0.05)

    bootstrap_project(project)
    started = time.time()
    with pytest.raises(RuntimeError, match=f"injected failure in {FAILING_NODE}"):
        _session_run(project, first.cohort, extra_hooks=(FailIn(FAILING_NODE),))

    failed = Run(project, first.cohort).mlflow_runs()
    assert [r.info.status for r in failed] == ["FAILED"]
    assert not (project / "data" / JOURNAL_NAME).exists()

    catalog = _session_catalog(project, first.cohort)
    outputs = _output_files(project, catalog)
    assert any(p.name == "metrics.json" for p in outputs[FAILING_NODE])
    finished, unfinished = [], []
    for node, paths in outputs.items():
        if paths and all(p.exists() for p in paths):
            # whatever looks complete was written by this run, not left by the earlier one
            assert all(p.stat().st_mtime >= started for p in paths), node
            finished.append(node)
        elif paths:
            unfinished.append(node)
    assert FAILING_NODE in unfinished and "gather_predictions" in finished
    assert not [
        p for p in stale if p.exists() and p.stat().st_mtime == stale[p] and p.suffix != ".db"
    ]  # no stale file at all (optuna.db is a study store)

    _session_run(project, first.cohort, only_missing_outputs=True)
    runs = Run(project, first.cohort).mlflow_runs()
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]
    for relative in ("07_model_output/predictions.csv", "08_reporting/metrics.json"):
        assert (project / "data" / relative).read_bytes() == first.read(relative), relative
    # the resumed run redid only what was missing: training was not repeated
    network = project / "data" / "06_models" / "dl_dual_network.pt"
    assert network.stat().st_mtime < runs[1].info.start_time / 1000


def _session_catalog(project: Path, cohort: Path) -> Any:
    previous = Path.cwd()
    os.chdir(project)
    try:
        bootstrap_project(project)
        with KedroSession.create(
            project_path=project, env="test", runtime_params={"cohort_dir": str(cohort)}
        ) as session:
            return session.load_context().catalog
    finally:
        os.chdir(previous)


# --- the journal on its own (no run needed) -----------------------------------------------


class _Dataset:
    def __init__(self, filepath: str) -> None:
        self._filepath = filepath
        self._protocol = "file"


class _Catalog(dict):
    def get(self, name: str) -> Any:  # type: ignore[override]
        return self[name]


def _node(name: str, outputs: list[str]) -> Node:
    return Node(lambda: [1] * len(outputs) if len(outputs) > 1 else 1, None, outputs, name=name)


def test_half_written_output_is_removed_when_a_save_fails(tmp_path: Path) -> None:
    (tmp_path / "data" / "08_reporting").mkdir(parents=True)
    (tmp_path / "data" / "01_raw").mkdir()
    reporting = tmp_path / "data" / "08_reporting"
    done, half = reporting / "a.csv", reporting / "b.csv"
    raw = tmp_path / "data" / "01_raw" / "cohort.csv"
    raw.write_text("never touched")
    catalog = _Catalog(a=_Dataset(str(done)), b=_Dataset(str(half)), r=_Dataset(str(raw)))
    first_node, second_node = _node("make_a", ["a"]), _node("make_b_and_r", ["b", "r"])
    hooks = UnfinishedOutputsHooks()
    run_params = {"project_path": str(tmp_path), "only_missing_outputs": False}
    hooks.before_pipeline_run(run_params, Pipeline([first_node, second_node]), catalog)
    journal = tmp_path / "data" / JOURNAL_NAME
    assert json.loads(journal.read_text()) == {"make_a": [str(done)], "make_b_and_r": [str(half)]}

    hooks.before_node_run(first_node)
    done.write_text("complete")
    hooks.after_dataset_saved("a", first_node)
    hooks.before_node_run(second_node)
    half.write_text("half")  # ... and the save of b fails (or the process is killed)

    hooks.on_pipeline_error(RuntimeError("disk full"))
    assert done.exists() and not half.exists() and raw.exists()
    assert not journal.exists()

    # a killed process runs no error hook: the next run clears what the journal lists
    half.write_text("half again")
    journal.write_text(json.dumps({"make_b_and_r": [str(half), str(raw), "/etc/hostname"]}))
    UnfinishedOutputsHooks().before_pipeline_run(
        {**run_params, "only_missing_outputs": True}, Pipeline([first_node]), catalog
    )
    assert not half.exists() and raw.exists() and done.exists()


# --- one run at a time per project (no run needed) ----------------------------------------

_HOLD_LOCK = """
import sys, time
from pathlib import Path
from clnm_kedro.hooks import RunLock
lock = RunLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def _python(code: str, *args: str) -> subprocess.Popen:
    """A Python process running ``code`` with the project's sources importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, text=True
    )


def _holding(data: Path, seconds: float) -> subprocess.Popen:
    process = _python(_HOLD_LOCK, str(data), str(seconds))
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    return process


def test_a_second_run_in_one_project_stops_naming_the_first(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, other = tmp_path / "a" / "data", tmp_path / "b" / "data"
    data.mkdir(parents=True)
    other.mkdir(parents=True)
    holder = _holding(data, 60)
    try:
        hooks = RunLockHooks()
        with pytest.raises(RunLockedError, match=rf"Another run .*pid {holder.pid} on host .*-c"):
            hooks.before_pipeline_run({"project_path": str(data.parent)})
        # another copy of the project runs alongside
        elsewhere = RunLockHooks()
        elsewhere.before_pipeline_run({"project_path": str(other.parent)})
        assert json.loads((other / LOCK_NAME).read_text())["pid"] == os.getpid()
        elsewhere.after_pipeline_run()
        assert not (other / LOCK_NAME).exists()
    finally:
        holder.kill()  # kill -9: the lock file stays behind, the lock itself is gone
        holder.wait()
    assert json.loads((data / LOCK_NAME).read_text())["pid"] == holder.pid
    with caplog.at_level(logging.WARNING, logger="clnm_kedro.hooks"):
        hooks.before_pipeline_run({"project_path": str(data.parent)})
    assert re.search(rf"stale run lock .*pid {holder.pid}", caplog.text)
    assert json.loads((data / LOCK_NAME).read_text())["pid"] == os.getpid()
    hooks.on_pipeline_error()
    assert not (data / LOCK_NAME).exists()


def test_a_second_run_waits_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    holder = _holding(tmp_path / "data", 2)
    lock = RunLock(tmp_path / "data")
    with pytest.raises(RunLockedError, match="CLNM_RUN_LOCK_WAIT_S"):
        lock.acquire(wait_s=0)
    started = time.monotonic()
    lock.acquire(wait_s=60)
    assert holder.wait() == 0
    assert 0.5 < time.monotonic() - started < 60
    lock.release()


# --- an MLflow run status that tells the truth (no pipeline run needed) -------------------

_RUN_UNTIL_SIGNAL = """
import os, signal, sys, time
from pathlib import Path
import mlflow
from clnm_kedro.hooks import RunLockHooks, RunStatusHooks
mlflow.set_tracking_uri(sys.argv[1])
RunLockHooks().before_pipeline_run({"project_path": sys.argv[2]})
run = mlflow.start_run()
hooks = RunStatusHooks()
hooks.before_pipeline_run({"project_path": sys.argv[2]}, {})
for node in range(2):  # kedro-mlflow reopens its run in each node (nested: stacked again)
    mlflow.start_run(run_id=run.info.run_id, nested=True)
print(run.info.run_id, flush=True)
time.sleep(120)   # a node training a network
"""


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh SQLite MLflow store, made the tracking store of this process for the module."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    # whole runs earlier in this process leave kedro-mlflow's experiment in the environment
    # (inherited by the processes started below) and as MLflow's active experiment
    saved = {
        k: os.environ.pop(k) for k in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID") if k in os.environ
    }
    mlflow.set_tracking_uri(uri)
    experiment = MlflowClient().create_experiment("run_status")  # creates the tables too
    mlflow.set_experiment(experiment_id=experiment)
    os.environ["MLFLOW_EXPERIMENT_ID"] = experiment
    yield uri
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    os.environ.update(saved)
    mlflow.set_tracking_uri(previous)


def test_run_status_after_sigint_sigterm_and_kill_9(tracking: str, tmp_path: Path) -> None:
    """Four runs in four processes (started together: the imports dominate the time)."""
    processes = {  # each in its own project folder (one run per project)
        name: _python(_RUN_UNTIL_SIGNAL, tracking, str(tmp_path / name))
        for name in ("SIGINT", "SIGTERM", "kill -9", "alive")
    }
    run_ids = {name: p.stdout.readline().strip() for name, p in processes.items()}  # type: ignore[union-attr]
    client = MlflowClient()
    assert {client.get_run(r).info.status for r in run_ids.values()} == {"RUNNING"}
    processes["SIGINT"].send_signal(signal.SIGINT)  # Ctrl-C
    processes["SIGTERM"].send_signal(signal.SIGTERM)
    processes["kill -9"].kill()  # no handler, no exit hook runs
    for name in ("SIGINT", "SIGTERM", "kill -9"):
        assert processes[name].wait(timeout=60) != 0
    assert processes["SIGTERM"].returncode == 128 + signal.SIGTERM

    def status(name: str) -> tuple[str, str]:
        run = client.get_run(run_ids[name])
        return run.info.status, run.data.tags.get("clnm.end_reason", "")

    assert status("SIGINT") == ("KILLED", "interrupted (Ctrl-C, SIGINT)")
    assert status("SIGTERM") == ("KILLED", "stopped by SIGTERM")
    assert status("kill -9")[0] == "RUNNING"
    # the lock is released at exit; only the kill -9 leaves its (stale) file behind
    locks = {name: (tmp_path / name / "data" / LOCK_NAME).exists() for name in processes}
    assert locks == {"SIGINT": False, "SIGTERM": False, "kill -9": True, "alive": True}

    try:
        with mlflow.start_run() as current:  # the next run in the same project
            hooks = RunStatusHooks()
            hooks.before_pipeline_run({"project_path": str(tmp_path)}, {})
            hooks.after_pipeline_run()
        killed, reason = status("kill -9")
        assert killed == "KILLED" and f"pid {processes['kill -9'].pid}" in reason
        assert status("alive") == ("RUNNING", "")  # a live run of another process is left alone
        assert client.get_run(current.info.run_id).info.status == "FINISHED"
    finally:
        processes["alive"].kill()
        processes["alive"].wait()


def test_a_run_whose_hook_fails_ends_failed(tracking: str, tmp_path: Path) -> None:
    """A hook failing before or after the nodes: Kedro calls no error hook, the process ends."""
    run = mlflow.start_run()
    hooks = RunStatusHooks()
    hooks.before_pipeline_run({"project_path": str(tmp_path)}, {})
    # ... a later hook raises (read-only data/, a model that cannot be logged): the process
    # ends, and its exit handler closes the run
    assert hooks.close_unfinished_run() == "FAILED"
    assert mlflow.active_run() is None  # MLflow's own exit handler finds nothing to finish
    closed = MlflowClient().get_run(run.info.run_id)
    assert closed.info.status == "FAILED"
    assert "before the run finished" in closed.data.tags["clnm.end_reason"]
    hooks._restore_signals()


def test_trials_left_running_by_a_killed_run_are_failed(tmp_path: Path) -> None:
    storage = tmp_path / "optuna.db"
    study = optuna.create_study(storage=f"sqlite:///{storage}", study_name="s")
    study.tell(study.ask(), 0.5)
    study.ask()  # a trial the killed process never finished
    assert fail_stale_optuna_trials(storage) == 1
    states = [
        t.state.name
        for t in optuna.load_study(study_name="s", storage=f"sqlite:///{storage}").trials
    ]
    assert states == ["COMPLETE", "FAIL"]


# --- a figure never sinks a run ---------------------------------------------------------------


def test_tied_trials_never_crash_and_a_failing_plot_gives_a_figure_saying_why(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two trials of a family with the same CV AUC made fANOVA fail ("zero total variance in all
    trees") and sank the run: now importances are not computed for tied trials, and any plot
    that still fails is replaced by a figure saying why."""
    study = optuna.create_study(study_name="combined.logistic", direction="maximize")
    for c in (0.1, 10.0):
        study.enqueue_trial({"C": c})
    study.optimize(lambda trial: 0.75 + 0 * trial.suggest_float("C", 0.01, 100, log=True), 2)
    figures = optuna_figures(study)  # no exception
    assert figures["optimization_history"] is not None
    assert figures["param_importances"] is None  # nothing to explain

    varied = optuna.create_study(study_name="combined.svm", direction="maximize")
    varied.optimize(lambda trial: trial.suggest_float("C", 0.01, 100, log=True) / 100, 3)

    def fails(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Encountered zero total variance in all trees.")

    from optuna.visualization import matplotlib as optuna_matplotlib  # noqa: PLC0415

    monkeypatch.setattr(optuna_matplotlib, "plot_param_importances", fails)
    with caplog.at_level(logging.WARNING, logger="clnm_kedro.heads.figures"):
        importances = optuna_figures(varied)["param_importances"]
    assert importances is not None
    texts = " ".join(t.get_text() for t in importances.axes[0].texts)
    assert "Not drawn: " in texts and "zero total variance" in texts
    assert "could not be drawn" in caplog.text
    importances.savefig(io.BytesIO(), format="png")


def test_a_killed_simulation_leaves_no_hidden_folder_behind(tmp_path: Path) -> None:
    """The next simulation removes ``.<cohort>.*.partial`` folders whose writer is gone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    cohort = tmp_path / "cohort"
    left = tmp_path / ".cohort.k1ll3d.partial"
    writing = tmp_path / ".cohort.busy.partial"
    unmarked = tmp_path / ".cohort.0ld.partial"
    for folder, pid in ((left, dead.pid), (writing, os.getpid()), (unmarked, None)):
        (folder / "images").mkdir(parents=True)
        if pid is not None:
            (folder / WRITER_FILE).write_text(json.dumps({"pid": pid}))
    _remove_abandoned_partials(cohort)
    assert not left.exists() and not unmarked.exists()
    assert writing.exists()  # a live simulation's folder is left alone


def test_scoring_the_training_patients_warns(caplog: pytest.LogCaptureFixture) -> None:
    splits = pd.DataFrame(
        {"patient_id": ["A1", "NA", "B1"], "split": ["train", "train", "external"]}
    )
    scored = pd.DataFrame({"patient_id": ["NA", "B1", "C1"]})
    catalog = DataCatalog({"patient_splits": MemoryDataset(splits)})
    hooks = TrainedOnHooks()
    hooks.before_pipeline_run(catalog)
    with caplog.at_level(logging.WARNING, logger="clnm_kedro.hooks"):
        hooks.after_node_run(
            _node("select_scored_patients", ["inference_scored_patients"]),
            {"inference_scored_patients": scored},
        )
    assert "1 of the 3 patients scored (e.g. NA) are training patients" in caplog.text
    caplog.clear()
    assert warn_on_training_patients(scored.iloc[1:], splits) == []
    assert not caplog.text


def test_pytorch_runs_with_a_fixed_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run sets a fixed thread count, not the core count, and refuses a bad one (the
    networks' own numbers do not depend on it: tests/test_training.py)."""
    monkeypatch.delenv(TORCH_THREADS_ENV, raising=False)
    assert torch_threads() == DEFAULT_TORCH_THREADS
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(TORCH_THREADS_ENV, "1")
        SameNumbersHooks().before_pipeline_run()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv(TORCH_THREADS_ENV, "auto")
    assert torch_threads() is None
    monkeypatch.setenv(TORCH_THREADS_ENV, "many")
    with pytest.raises(ValueError, match="CLNM_TORCH_THREADS='many'"):
        torch_threads()


def test_cpu_kernels_are_pinned_to_avx2_unless_the_environment_says_otherwise() -> None:
    code = (
        "import os, clnm_kedro; print(os.environ.get('ONEDNN_MAX_CPU_ISA'), "
        "os.environ.get('ATEN_CPU_CAPABILITY'), os.environ.get('MKL_CBWR'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in clnm_kedro.CPU_KERNEL_PINS}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)

    def run(**extra: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    assert run() == "AVX2 avx2 AVX2"
    assert run(ONEDNN_MAX_CPU_ISA="ALL") == "ALL avx2 AVX2"  # the user's value wins
    assert run(CLNM_PIN_CPU_KERNELS="0") == "None None None"


@pytest.mark.parametrize(("architecture", "warns"), [("SkylakeX", True), ("Haswell", False)])
def test_avx512_blas_kernels_are_reported(
    monkeypatch: pytest.MonkeyPatch, architecture: str, warns: bool
) -> None:
    info = [{"internal_api": "openblas", "architecture": architecture}]
    monkeypatch.setattr("threadpoolctl.threadpool_info", lambda: info)
    message = check_blas_kernels()
    assert (message is not None) == warns
    if warns:
        assert "OPENBLAS_CORETYPE=Haswell" in message


def test_an_evaluation_figure_that_fails_is_replaced_by_one_saying_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A plot that raises never sinks the evaluation: the report gets a figure naming the
    failure, and the warning is logged."""
    from clnm_kedro.pipelines.evaluation.nodes import plot_decision_curves  # noqa: PLC0415
    from clnm_kedro.reporting.evaluation_settings import EvaluationSettings  # noqa: PLC0415
    from clnm_kedro.reporting.report import figure_caption  # noqa: PLC0415

    broken = pd.DataFrame({"patient_id": ["A"], "split": ["external"]})  # no model, no risk
    with caplog.at_level(logging.WARNING, logger="clnm_kedro.reporting.not_drawn"):
        figure = plot_decision_curves(broken, EvaluationSettings())
    texts = " ".join(t.get_text() for t in figure.axes[0].texts)
    assert texts.startswith("Not drawn: ")
    assert "could not be drawn" in caplog.text and "Decision curves" in caplog.text
    assert figure_caption(figure) == ("Decision curves", "not drawn: KeyError")


def test_a_training_curve_or_an_inference_overlay_that_fails_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The networks' training-curve figure and one patient's Grad-CAM overlay in inference are
    extras too: a failure gives a figure naming it (and a warning), never a stopped run or a
    lost batch of overlays."""
    from types import SimpleNamespace  # noqa: PLC0415

    from clnm_kedro.pipelines.dl_training.nodes import plot_training_curve  # noqa: PLC0415
    from clnm_kedro.pipelines.inference.nodes import _gradcam_figure  # noqa: PLC0415

    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no weights")

    with caplog.at_level(logging.WARNING, logger="clnm_kedro.reporting.not_drawn"):
        curve = plot_training_curve(
            pd.DataFrame({"nothing": [1.0]}),  # no loss, no epochs
            {"best_epoch": 1},
            SimpleNamespace(model="dl_dual"),
        )
        overlay = _gradcam_figure(
            Broken(), np.zeros((1, 2, 32, 32), dtype=np.uint8), "B007", "risk 0.30, low"
        )
    for figure in (curve, overlay):
        assert " ".join(t.get_text() for t in figure.axes[0].texts).startswith("Not drawn: ")
    assert "Grad-CAM of patient B007" in caplog.text and "training on the training" in caplog.text
