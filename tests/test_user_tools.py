"""The tools the project's users reach for, checked the way they use them.

One small tracked run in an isolated project copy feeds every test here: the run a user does
first, ``kedro run --pipelines demo`` in the default environment (no ``--env``; made small
with ``--params`` only, see ``SMALL_RUN``), then a second run of ``evaluation`` alone:

- kedro-viz: the static site (``kedro viz build``) served on 127.0.0.1 and rendered in headless
  Chromium shows every node of the pipelines, the data layers and the dataset previews (the
  report's summary and the metrics included);
- MLflow: the tracking store holds what a user looks for (experiment, runs named after their
  pipelines, grouped parameters, ``<split>.<model>.<metric>`` metrics, figures and report as
  artifacts, networks with the PyTorch flavour, heads with the scikit-learn flavour);
- optuna-dashboard: served on the run's study file, it lists each head's study and trials;
- notebooks: both notebooks execute top to bottom on that run and show the right numbers.

Chromium is Debian's ``chromium`` (``.ci/run`` installs it and sets CLNM_REQUIRE_BROWSER=1, so
in CI the kedro-viz test runs and can fail); elsewhere the test is skipped without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.request import urlopen
from wsgiref.simple_server import WSGIRequestHandler, make_server

import nbformat
import optuna_dashboard
import pandas as pd
import pytest
import yaml
from kedro.framework.cli.utils import _split_params
from kedro.framework.project import configure_project, pipelines
from mlflow import MlflowClient
from nbclient import NotebookClient

from clnm_kedro.kedro_viz_site import build_site, find_chromium, graph_url, render_dom, serve
from clnm_kedro.reporting.predictions import MODEL_LABELS
from kedro_project import PROJECT_ROOT, make_project_copy, run_pipelines

pytestmark = pytest.mark.slow

LAYERS = (
    "raw",
    "intermediate",
    "primary",
    "networks",  # the networks make the features: their own layer (conf/base/catalog/06_models.yml)
    "feature",
    "model_input",
    "models",
    "model_output",
    "reporting",
)
NETWORKS = ("dl_dual", "dl_longitudinal", "dl_transverse")
HEADS = ("clinical", "dl_features", "combined")
METRIC_NAME = re.compile(r"^(train|train_cv|val|external|simulate|preprocessing)\.[\w.]+$")


# `kedro run --params ...` that makes the default environment's demo small enough for a test:
# a smaller cohort, crops, networks and head search. Nothing else differs from a user's run.
SMALL_RUN = ",".join(
    (
        "simulate.n_patients=40",
        "simulate.n_jobs=1",
        "preprocessing.image_size=48",
        "dl_training.recipe.network.hidden_dim=8",
        "dl_training.recipe.training.epochs=2",
        "dl_training.recipe.training.batch_size=8",
        "dl_training.recipe.training.warmup_epochs=1",
        "dl_training.recipe.training.early_stopping_patience=2",
        "feature_extraction.batch_size=16",
        "heads.families=[logistic_regression]",
        "heads.n_trials=2",
        "heads.cv.n_splits=3",
    )
)


@pytest.fixture(scope="module")
def tracked_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy after ``kedro run --pipelines demo --params SMALL_RUN`` in the default
    environment, as the README leads a user, and a second run of ``evaluation`` alone (two runs
    to compare), each tracked in the copy's own MLflow store."""
    project = make_project_copy(tmp_path_factory.mktemp("user_tools") / "project")
    params = _split_params(None, None, SMALL_RUN)  # as `kedro run --params` parses them
    run_pipelines(project, ["demo"], env=None, runtime_params=params)
    run_pipelines(project, ["evaluation"], env=None, runtime_params=params)
    return project


def _client(project: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def _runs(project: Path) -> dict[str, Any]:
    client = _client(project)
    experiment = client.get_experiment_by_name("clnm_kedro")
    assert experiment is not None, "no experiment named after the project"
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


# --- kedro-viz in headless Chromium ---------------------------------------------------------


class _GraphLabels(HTMLParser):
    """The labels kedro-viz draws on the graph: node names, and the data layers' names."""

    def __init__(self) -> None:
        super().__init__()
        self.node_labels: list[str] = []
        self.layers: list[str] = []
        self._in_label = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        self._in_label = tag == "text" and "pipeline-node__text" in classes
        layer_id = attributes.get("data-id") or ""
        if "pipeline-layer-name" in classes and layer_id.startswith("layer-label--"):
            self.layers.append(layer_id.removeprefix("layer-label--"))

    def handle_data(self, data: str) -> None:
        if self._in_label:
            self.node_labels.append(data.strip())
            self._in_label = False


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _chromium_or_skip() -> str:
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CLNM_REQUIRE_BROWSER"):
            pytest.fail("CLNM_REQUIRE_BROWSER is set but no Chromium is installed")
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    return chromium


def _preview(site: Path, dataset: str) -> dict[str, Any]:
    """The kedro-viz metadata (preview included) the site holds for one dataset."""
    main = json.loads((site / "api" / "main").read_text())
    (node_id,) = [node["id"] for node in main["nodes"] if node["name"] == dataset]
    return json.loads((site / "api" / "nodes" / node_id).read_text())


def _viz_label(node: Any) -> str:
    """A task's name as kedro-viz shows it: without its top-level namespace."""
    return node.name.split(".", 1)[1] if node.namespace else node.name


def test_kedro_viz_shows_every_node_with_its_layer_in_chromium(tracked_project: Path) -> None:
    chromium = _chromium_or_skip()
    configure_project("clnm_kedro")
    pipelines.set_requested(["demo"])
    try:
        demo = pipelines["demo"]
    finally:
        pipelines.set_requested(None)
    # kedro-viz labels a task with its name inside its top-level namespace (a fold network:
    # ``fold_0.train_fold_network`` inside ``dl_dual``), a dataset with its full name.
    expected_tasks = Counter(_viz_label(node) for node in demo.nodes)
    expected_datasets = {
        name for name in demo.datasets() if name != "parameters" and not name.startswith("params:")
    }

    site = build_site(tracked_project)
    with serve(site) as base_url:
        dom = render_dom(graph_url(base_url, "demo"), chromium=chromium)
    labels = _GraphLabels()
    labels.feed(dom)

    shown = Counter(labels.node_labels)
    missing_tasks = expected_tasks - shown
    assert not missing_tasks, f"nodes missing from the rendered graph: {missing_tasks}"
    missing_datasets = expected_datasets - set(shown)
    assert not missing_datasets, f"datasets missing from the rendered graph: {missing_datasets}"
    assert labels.layers == list(LAYERS)  # every layer, in data-flow order

    # Every registered pipeline is in the site (its drop-down), with exactly its own nodes.
    main = json.loads((site / "api" / "main").read_text())
    registered = dict(pipelines.items())
    assert {entry["id"] for entry in main["pipelines"]} == set(registered)
    for name, pipeline in registered.items():
        view = json.loads((site / "api" / "pipelines" / name).read_text())
        in_site = Counter(node["name"] for node in view["nodes"] if node["type"] == "task")
        assert in_site == Counter(_viz_label(n) for n in pipeline.nodes), name
        # kedro-viz draws no layers when their order has a cycle (it only logs a warning)
        assert view["layers"], f"{name}: kedro-viz found the data layers in a cycle"
    # The networks in their own layer before the features they make, the heads in `models`.
    demo_view = json.loads((site / "api" / "pipelines" / "demo").read_text())
    layer_of = {node["name"]: node.get("layer") for node in demo_view["nodes"]}
    for network in NETWORKS:
        assert layer_of[f"{network}_network"] == "networks", network
        assert layer_of[f"{network}_features"] == "feature", network
    for head in HEADS:
        assert layer_of[f"{head}_head"] == "models", head

    # Previews as kedro-viz shows them: tables, figures, the crops, a network's summary.
    splits = _preview(site, "patient_splits")
    assert splits["preview_type"] == "TablePreview"
    assert splits["preview"]["columns"][:2] == ["patient_id", "center"]
    assert len(splits["preview"]["data"]) == 10  # preview_args.nrows in the catalog
    assert _preview(site, "raw_cohort")["preview"]["columns"][0] == "patient_id"
    for dataset in ("roc_curves_figure", "roi_crops"):
        image = _preview(site, dataset)
        assert image["preview_type"] == "ImagePreview", dataset
        assert image["preview"].startswith("iVBORw0KGgo"), dataset  # a base64 PNG
    network = json.loads(_preview(site, "dl_dual_network")["preview"])
    checkpoint = json.loads(
        (tracked_project / "data/06_models/dl_dual_network_mlflow_model.json").read_text()
    )
    assert checkpoint["logged"] and network["settings"]["network"]["kind"] == "dual"
    # The report: its title, summary and study table (preview_args), figures named, not inlined.
    report = _preview(site, "report")
    assert report["preview_type"] == "HTMLPreview"
    assert report["preview"].startswith("<h1>")
    assert 'id="plain-summary"' in report["preview"] and 'id="study-table"' in report["preview"]
    assert "[figure: ROC curves]" in report["preview"] and "data:image" not in report["preview"]
    # The metrics: the whole metrics.json.
    metrics = _preview(site, "metrics")
    assert metrics["preview_type"] == "JSONPreview"
    assert json.loads(metrics["preview"]) == json.loads(
        (tracked_project / "data/08_reporting/metrics.json").read_text()
    )


# --- MLflow ---------------------------------------------------------------------------------


def test_mlflow_runs_are_named_after_their_pipelines_in_one_experiment(
    tracked_project: Path,
) -> None:
    client = _client(tracked_project)
    runs = _runs(tracked_project)
    assert set(runs) == {"demo", "evaluation"}
    for experiment in client.search_experiments():
        if experiment.name != "clnm_kedro":  # MLflow's "Default" stays empty
            assert not client.search_runs([experiment.experiment_id]), experiment.name
    # The command that repeats the run, --params included; the environment Kedro used.
    assert runs["demo"].data.tags["kedro_command"] == (
        f"kedro run --pipelines=demo '--params={SMALL_RUN}'"
    )
    assert runs["evaluation"].data.tags["kedro_command"].startswith(
        "kedro run --pipelines=evaluation '--params="
    )
    assert runs["demo"].data.tags["env"] == "local"  # no --env: Kedro's default


def test_mlflow_parameters_are_grouped_by_block_and_logged_once(tracked_project: Path) -> None:
    params = _runs(tracked_project)["demo"].data.params
    blocks = {
        key
        for name in ("parameters.yml", *(p.name for p in (PROJECT_ROOT / "conf/base").glob("p*_*")))
        for key in yaml.safe_load((PROJECT_ROOT / "conf/base" / name).read_text())
    }
    groups = {key.split(".")[0] for key in params}
    # <block>.<key>... for parameter blocks; <model>.head.<key> for each head's chosen settings
    assert groups - set(HEADS) <= blocks, groups - blocks
    assert not [key for key in params if key.startswith("parameters.")]
    assert params["preprocessing.image_size"] == "48"  # SMALL_RUN
    assert params["dl_training.recipe.training.epochs"] == "2"
    assert params["heads.n_trials"] == "2"
    assert params["split.external_centers"] == "['CENTER_B']"
    assert params["seed"] == str(
        yaml.safe_load((PROJECT_ROOT / "conf/base/parameters.yml").read_text())["seed"]
    )
    for head in HEADS:
        assert params[f"{head}.head.family"] == "logistic_regression"


def test_mlflow_metrics_match_the_evaluation_files(tracked_project: Path) -> None:
    run = _runs(tracked_project)["demo"]
    metrics = run.data.metrics
    assert not [key for key in metrics if not METRIC_NAME.match(key)]
    evaluated = json.loads((tracked_project / "data/08_reporting/metrics.json").read_text())
    compared = []
    for model, result in evaluated["models"].items():
        assert model in MODEL_LABELS
        for split, values in result["splits"].items():
            for name in ("auc", "auc_lower", "auc_upper", "sensitivity", "specificity", "brier"):
                if values.get(name) is not None:
                    assert metrics[f"{split}.{model}.{name}"] == pytest.approx(values[name])
            compared.append((split, model))
    # every model, networks included: train (apparent), train_cv (out-of-fold) and external
    assert len(compared) == 6 * 3
    client = _client(tracked_project)
    for network in NETWORKS:  # the training curves, one point per epoch (fixed schedule)
        history = client.get_metric_history(run.info.run_id, f"train.{network}.loss")
        assert [point.step for point in history] == [1, 2]


def test_mlflow_holds_every_figure_and_the_report(tracked_project: Path) -> None:
    run = _runs(tracked_project)["demo"]
    client = _client(tracked_project)
    artifacts = {
        item.path
        for folder in client.list_artifacts(run.info.run_id)
        for item in (
            client.list_artifacts(run.info.run_id, folder.path) if folder.is_dir else [folder]
        )
    }
    figures = {
        f"figures/{path.name}"
        for path in (tracked_project / "data/08_reporting/figures").glob("*.png")
    }
    assert len(figures) >= 16
    assert figures <= artifacts, figures - artifacts
    assert {
        "report.html",
        "evaluation/metrics.json",
        "evaluation/delong_tests.csv",
        "evaluation/study_table.csv",
    } <= artifacts
    # Patient ID lists (training summaries, data-quality report) stay on this machine.
    assert not [path for path in artifacts if "training_summary" in path or "quality" in path]


def test_mlflow_logs_networks_with_pytorch_and_heads_with_sklearn(tracked_project: Path) -> None:
    runs = _runs(tracked_project)
    client = _client(tracked_project)
    logged = client.search_logged_models(experiment_ids=[runs["demo"].info.experiment_id])
    by_name = {model.name: model for model in logged}
    expected = (
        {f"{network}_network": "pytorch" for network in NETWORKS}
        | {f"{head}_head": "sklearn" for head in HEADS}
        # the whole scoring pipeline (kedro-mlflow's pipeline_ml_factory, see test_inference)
        | {"clnm_model": "python_function"}
    )
    assert set(by_name) == set(expected)
    for name, flavour in expected.items():
        model = by_name[name]
        assert model.source_run_id == runs["demo"].info.run_id, name
        mlmodel = yaml.safe_load((Path(model.artifact_location) / "MLmodel").read_text())
        assert flavour in mlmodel["flavors"], (name, sorted(mlmodel["flavors"]))
        assert "python_function" in mlmodel["flavors"], name  # loads with mlflow.pyfunc


# --- Optuna studies in optuna-dashboard -------------------------------------------------------


def test_optuna_dashboard_shows_every_head_study(tracked_project: Path) -> None:
    """``optuna-dashboard sqlite:///data/06_models/optuna.db``, served on 127.0.0.1 as the
    README says, lists each head's selected study with its trials and best CV AUC."""
    storage = f"sqlite:///{tracked_project / 'data/06_models/optuna.db'}"
    server = make_server("127.0.0.1", 0, optuna_dashboard.wsgi(storage), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with urlopen(f"{base}/api/studies", timeout=60) as response:
            studies = {
                s["study_name"]: s["study_id"] for s in json.load(response)["study_summaries"]
            }
        for head in HEADS:
            selection = json.loads(
                (tracked_project / f"data/06_models/{head}_head_selection.json").read_text()
            )
            assert selection["study"] in studies, (head, sorted(studies))
            with urlopen(
                f"{base}/api/studies/{studies[selection['study']]}?after=0", timeout=60
            ) as response:
                study = json.load(response)
            assert len(study["trials"]) == 2  # SMALL_RUN: heads.n_trials
            # the objective is the mean CV log loss (heads.selection.metric), minimised
            best = min(trial["values"][0] for trial in study["trials"])
            assert best == pytest.approx(selection["cv_log_loss"])
    finally:
        server.shutdown()
        server.server_close()


# --- notebooks ------------------------------------------------------------------------------


def _execute(project: Path, name: str, check_cell: str) -> list[str]:
    """Execute ``notebooks/<name>`` in the project copy, as Jupyter would from its folder,
    with ``check_cell`` appended; return what that last cell printed."""
    folder = project / "notebooks"
    folder.mkdir(exist_ok=True)
    shutil.copy2(PROJECT_ROOT / "notebooks" / name, folder / name)
    notebook = nbformat.read(folder / name, as_version=4)
    assert not [cell for cell in notebook.cells if cell.get("outputs")], "commit without outputs"
    notebook.cells.append(nbformat.v4.new_code_cell(check_cell))
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    ).execute()
    figures = sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    printed = [
        output["text"]
        for output in notebook.cells[-1].get("outputs", [])
        if output.get("name") == "stdout"
    ]
    return [f"figures={figures}", *"".join(printed).splitlines()]


def test_cohort_exploration_notebook_shows_the_run_data(tracked_project: Path) -> None:
    lines = _execute(
        tracked_project,
        "01_cohort_exploration.ipynb",
        "import json\n"
        "print(json.dumps({'patients': len(cohort_table), 'crops': list(roi_crops.shape),\n"
        "    'shown': shown['patient_id'].tolist(),\n"
        "    'read': data_quality_report['patients_read']}))",
    )
    checks = json.loads(lines[-1])
    splits = pd.read_csv(tracked_project / "data/03_primary/patient_splits.csv")
    report = json.loads(
        (tracked_project / "data/02_intermediate/data_quality_report.json").read_text()
    )
    assert checks["patients"] == report["patients_included"] == len(splits)
    assert checks["read"] == report["patients_read"]
    assert checks["crops"] == [len(splits), 2, 48, 48]
    assert len(checks["shown"]) == 4
    assert int(lines[0].removeprefix("figures=")) == 3  # both views, crops, mean crops


def test_experiment_audit_notebook_compares_models_across_runs(tracked_project: Path) -> None:
    lines = _execute(
        tracked_project,
        "02_experiment_audit.ipynb",
        "print(comparison.to_json(orient='split'))",
    )
    comparison = json.loads(lines[-1])
    runs = _runs(tracked_project)
    assert len(comparison["index"]) == 2  # the demo run and the evaluation run
    assert [name.split(" ")[0] for name in comparison["index"]] == ["demo", "evaluation"]
    assert comparison["columns"] == list(MODEL_LABELS)
    for row, name in zip(comparison["data"], ("demo", "evaluation"), strict=True):
        metrics = runs[name].data.metrics
        assert row == pytest.approx([metrics[f"external.{m}.auc"] for m in MODEL_LABELS])
    assert int(lines[0].removeprefix("figures=")) == 1
