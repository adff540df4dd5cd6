"""The ``evaluation`` pipeline run by Kedro's runner on synthetic inputs, the HTML report it
writes, its figures, and its catalog entries (files and MLflow artifacts)."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import CatalogConfigResolver, DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure

from clnm_kedro.datasets.report_figure_dataset import ReportFigureDataset
from clnm_kedro.datasets.report_html_dataset import ReportHTMLDataset, report_preview
from clnm_kedro.metrics import delong_ci
from clnm_kedro.networks import build_network
from clnm_kedro.pipelines.evaluation import create_pipeline
from clnm_kedro.pipelines.evaluation.nodes import plot_decision_curves, plot_roc
from clnm_kedro.pipelines.evaluation.pipeline import REPORTED_PARAMETERS, SETTINGS
from clnm_kedro.reporting.predictions import MODEL_LABELS
from clnm_kedro.reporting.report import (
    _head_estimates,
    captioned,
    figure_caption,
    report_figure,
)
from clnm_kedro.reporting.tables import format_auc
from clnm_kedro.settings import CONFIG_LOADER_ARGS

torch.set_num_threads(1)

PROJECT = Path(__file__).resolve().parents[1]
MODELS = ("dl_dual", "dl_longitudinal", "dl_transverse", "clinical", "dl_features", "combined")
NETWORKS = {"dl_dual": "dual", "dl_longitudinal": "longitudinal", "dl_transverse": "transverse"}
SIZE = 24
EVALUATION = yaml.safe_load((PROJECT / "conf/base/parameters_evaluation.yml").read_text())[
    "evaluation"
]
EVALUATION = {
    **EVALUATION,
    "gradcam": {"split": "external", "n_patients": 2},
    "bootstrap": {"enabled": True, "n_resamples": 200},  # fewer resamples: a fast test
}
HOSTILE = '<script src="https://example.org/x.js"></script>'


def synthetic_inputs(oracle: bool = True) -> dict[str, Any]:
    """Every free input of the evaluation pipeline, for a small two-centre cohort."""
    rng = np.random.default_rng(11)
    n_train, n_external = 60, 40
    splits = pd.DataFrame(
        {
            "patient_id": [f"A{i:02d}" for i in range(n_train)]
            + [f"B{i:02d}" for i in range(n_external)],
            "center": ["CENTER_A"] * n_train + ["CENTER_B"] * n_external,
            "clnm": rng.binomial(1, 0.4, n_train + n_external),
            "split": ["train"] * n_train + ["external"] * n_external,
            "fold": list(np.arange(n_train) % 5) + [-1] * n_external,
        }
    )
    cohort = splits[["patient_id", "center", "clnm"]].assign(
        age=rng.normal(45, 10, len(splits)).round(),
        sex=rng.choice(["F", "M"], len(splits)),
        tumor_size_mm=rng.uniform(2, 10, len(splits)),
    )

    def rows(model: str, split_names: tuple[str, ...], strength: float) -> pd.DataFrame:
        parts = []
        for split in split_names:
            part = splits[splits["split"] == ("external" if split == "external" else "train")]
            z = strength * (part["clnm"].to_numpy() - 0.5) + rng.normal(0, 1, len(part))
            parts.append(
                part[["patient_id", "center", "clnm"]].assign(
                    split=split, model=model, probability=1 / (1 + np.exp(-z))
                )
            )
        return pd.concat(parts, ignore_index=True)

    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [0.7, 0.6, 0.5],
            "val_loss": [0.69, 0.64, 0.66],
            "val_auc": [0.6, 0.7, 0.66],
            "lr": 1e-3,
            "seconds": 2.0,
        }
    )
    model_input = splits[["patient_id", "center", "split", "clnm"]].merge(
        cohort[["patient_id", "age", "sex", "tumor_size_mm"]], on="patient_id"
    )
    comparison = pd.DataFrame(
        {
            "family": ["logistic", "random_forest"],
            "selected": [True, False],
            "cv_auc": [0.71, 0.69],
            "train_auc": [0.74, 0.93],
            "external_auc": [0.70, 0.66],
            "n_trials": [10, 10],
            "train_cv_estimate": ["nested", "nested"],
        }
    )
    inputs: dict[str, Any] = {
        "clinical_model_input": model_input,
        "combined_model_input": model_input.assign(
            dl_0=rng.normal(size=len(model_input)), dl_1=rng.normal(size=len(model_input))
        ),
        **{
            f"{head}_head_comparison": comparison.assign(model=head)
            for head in ("clinical", "dl_features", "combined")
        },
        "dl_predictions": pd.concat(
            [
                rows(m, ("train", "external"), s)
                for m, s in (("dl_dual", 1.5), ("dl_longitudinal", 1.0), ("dl_transverse", 0.8))
            ],
            ignore_index=True,
        ),
        "clinical_predictions": rows("clinical", ("train", "train_cv", "external"), 1.1),
        "dl_features_predictions": rows("dl_features", ("train", "train_cv", "external"), 1.4),
        "combined_predictions": rows("combined", ("train", "train_cv", "external"), 2.2),
        "roi_crops": rng.integers(0, 256, size=(len(splits), 2, SIZE, SIZE), dtype=np.uint8),
        "patient_splits": splits,
        "cohort_table": cohort,
        "simulation_oracle": (
            cohort[["patient_id", "center"]].assign(oracle_risk=0.2 + 0.5 * cohort["clnm"])
            if oracle
            else pd.DataFrame()
        ),
        "data_quality_report": {
            "patients_read": 103,
            "patients_included": 100,
            "patients_excluded": 3,
            "counts_per_center_and_label": {
                "after_exclusions": {"CENTER_A": {"clnm_0": 36, "clnm_1": 24, "total": 60}}
            },
            "exclusions": [{"patient_id": "A99", "center": "CENTER_A", "reason": HOSTILE}],
            "clinical_columns": {"used": ["age", "sex"], "skipped": ["hashimoto"]},
        },
        "params:evaluation": EVALUATION,
        "params:seed": 7,
    }
    run_parameters = {
        "cohort_dir": "https://example.org",
        "split": {"external_centers": ["CENTER_B"], "n_folds": 5},
        "optuna_storage_url": "sqlite:///data/06_models/optuna.db",
    }
    for block in REPORTED_PARAMETERS:
        inputs.setdefault(f"params:{block}", run_parameters.get(block, {}))
    torch.manual_seed(0)
    for model, kind in NETWORKS.items():
        network = build_network({"network": {"kind": kind, "compact_channels": [4, 8]}})
        inputs[f"{model}_network"] = network.eval()
        inputs[f"{model}_training_history"] = history
    return inputs


class KeptDataset(MemoryDataset):
    """A memory dataset the runner cannot empty, so a test can read every output afterwards."""

    def _release(self) -> None:
        pass


def run_evaluation(oracle: bool = True) -> DataCatalog:
    """Run the pipeline with Kedro's SequentialRunner on in-memory synthetic inputs."""
    pipeline = create_pipeline()
    datasets = {
        name: KeptDataset(data, copy_mode="assign")
        for name, data in synthetic_inputs(oracle).items()
    }
    for name in pipeline.all_outputs():
        datasets[name] = KeptDataset(copy_mode="assign")
    catalog = DataCatalog(datasets=datasets)
    SequentialRunner().run(pipeline, catalog)
    return catalog


@pytest.fixture(scope="module")
def evaluated() -> DataCatalog:
    return run_evaluation()


@pytest.fixture(scope="module")
def report(evaluated: DataCatalog) -> str:
    return evaluated.load("report")


# --- the report ---------------------------------------------------------------------------------


def test_report_contains_every_model_table_and_section(report: str, evaluated: DataCatalog) -> None:
    for model in MODELS:
        assert f"<code>{model}</code>" in report
        assert MODEL_LABELS[model].replace("+", "+") in report
    for heading in (
        "Study table",
        "Paired DeLong tests",
        "AUC by subgroup",
        "Models against the oracle",
        "Cohort and data quality",
        "Parameters of this run",
    ):
        assert heading in report
    study = evaluated.load("study_table")
    first_auc = study.iloc[0, 3].replace("–", "&#8211;")
    assert first_auc in report
    assert "evaluation.calibration_bins" in report  # the run's parameters, flattened
    assert "<td>103</td>" in report  # data-quality counts
    # Methods say how the out-of-fold rows were made (the heads' comparisons say nested).
    assert "outer fold of a nested cross-validation" in report
    # ... and that these networks (train and external rows only) have no out-of-fold rows.
    assert "each network was trained once on every training patient" in report


def test_methods_name_the_heads_out_of_fold_estimate() -> None:
    nested = pd.DataFrame({"train_cv_estimate": ["nested", "nested"]})
    selection = pd.DataFrame({"train_cv_estimate": ["selection"]})
    assert _head_estimates([nested, nested]) == ["nested"]
    assert _head_estimates([nested, selection, None, pd.DataFrame()]) == ["nested", "selection"]
    assert _head_estimates([]) == []


def test_report_refers_to_no_network_resource(report: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", report, re.I)
    assert "<script" not in report.lower()
    assert "<link" not in report.lower()
    assert "url(" not in report.lower()
    assert "@import" not in report.lower()
    # Text from the data is escaped, never turned into markup (Jinja2's autoescape).
    assert "&lt;script src=&#34;https://example.org/x.js&#34;&gt;" in report
    assert report.isascii()


def test_report_embeds_every_figure_as_a_png_data_uri(report: str) -> None:
    sources = re.findall(r'<img src="([^"]*)"', report)
    # ROC, calibration, decision, net benefit vs treat-all, training, three Grad-CAM panels and
    # the oracle figure.
    assert len(sources) == 9
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        png = base64.b64decode(source.split(",", 1)[1], validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")


class _TagBalance(HTMLParser):
    VOID: ClassVar[frozenset[str]] = frozenset({"meta", "img", "br", "hr", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.seen: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)  # <img ... />: opens and closes at once

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_report_parses_as_html(report: str) -> None:
    assert report.startswith("<!DOCTYPE html>")
    parser = _TagBalance()
    parser.feed(report)
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    assert {"html", "head", "title", "style", "body", "table", "img", "figure"} <= parser.seen
    # Also well-formed XML: every element closed, every entity numeric or predefined.
    root = ET.fromstring(report.split("\n", 1)[1])
    assert root.tag == "html"
    assert len(root.findall(".//table")) >= 5


def test_report_preview_in_kedro_viz_is_its_summary_without_figures(
    report: str, tmp_path: Path
) -> None:
    """kedro-viz calls the dataset's preview with the catalog's preview_args."""
    config = _catalog_config()["report"]
    dataset = ReportHTMLDataset(
        filepath=str(tmp_path / "report.html"), fs_args=config["dataset"]["fs_args"]
    )
    dataset.save(report)
    preview = dataset.preview(**config["metadata"]["kedro-viz"]["preview_args"])
    assert preview.startswith("<h1>")
    assert re.findall(r'<section id="([^"]+)"', preview) == ["plain-summary", "study-table"]
    assert "[figure: ROC curves]" in preview and "data:image" not in preview
    assert len(preview) < len(report) / 10
    # A section this report lacks is skipped; no section named: the summary.
    assert re.findall(r'<section id="([^"]+)"', report_preview(report, ["no-such", "delong"])) == [
        "delong"
    ]
    assert re.findall(r'<section id="([^"]+)"', dataset.preview()) == ["plain-summary"]


def test_report_without_an_oracle_has_no_oracle_section() -> None:
    catalog = run_evaluation(oracle=False)
    assert catalog.load("oracle_comparison").empty
    report = catalog.load("report")
    assert "Models against the oracle" not in report
    assert len(re.findall(r"<img ", report)) == 8
    assert not any(
        name.startswith("external.oracle") for name in catalog.load("evaluation_metrics")
    )


# --- outputs of the run -------------------------------------------------------------------------


def test_run_writes_every_output(evaluated: DataCatalog) -> None:
    metrics = evaluated.load("metrics")
    assert set(metrics["models"]) == set(MODELS)
    tests = evaluated.load("delong_tests")
    # The study's four comparisons on the external set; on the training centres only the two
    # between heads, which have out-of-fold predictions (never between resubstitution fits).
    assert len(tests) == 6
    assert set(tests.loc[tests["split"] != "external", "model_a"]) == {"combined"}
    assert "train" not in set(tests["split"])
    for name in ("table_one_by_centre", "clinical_odds_ratios", "calibration_table"):
        assert not evaluated.load(name).empty, name
    assert evaluated.load("sample_size")["models"]["combined"]["minimum"] > 0
    assert evaluated.load("plain_summary")
    predictions = evaluated.load("predictions")
    assert set(predictions["model"]) == set(MODELS)
    logged = evaluated.load("evaluation_metrics")
    assert "external.combined.auc" in logged
    assert "external.oracle.auc" in logged
    for name in FIGURES:
        figure = evaluated.load(f"{name}_figure")
        assert figure.axes, name
    dual = evaluated.load("gradcam_dl_dual_figure")
    assert len(dual.axes) == 2 * 4  # two patients x (crop, overlay) x two views
    single = evaluated.load("gradcam_dl_transverse_figure")
    assert len(single.axes) == 2 * 2


def test_roc_legend_shows_each_models_auc_with_its_ci(evaluated: DataCatalog) -> None:
    predictions = evaluated.load("predictions")
    figure = plot_roc(predictions, evaluated.load(SETTINGS))
    external = figure.axes[1]
    labels = [text.get_text() for text in external.get_legend().get_texts()]
    assert len(labels) == len(MODELS)
    for model in MODELS:
        rows = predictions[(predictions["model"] == model) & (predictions["split"] == "external")]
        expected = format_auc(*delong_ci(rows["clnm"], rows["probability"]))
        assert f"{MODEL_LABELS[model]}: {expected}" in labels


def test_decision_curves_show_treat_all_and_treat_none(evaluated: DataCatalog) -> None:
    figure = plot_decision_curves(evaluated.load("predictions"), evaluated.load(SETTINGS))
    for axes in figure.axes:
        labels = {line.get_label() for line in axes.get_lines()}
        assert {"treat all", "treat none", MODEL_LABELS["combined"]} <= labels


# --- catalog entries ----------------------------------------------------------------------------

FIGURES = (
    "roc_curves",
    "calibration_curves",
    "decision_curves",
    "training_curves",
    "gradcam_dl_dual",
    "gradcam_dl_longitudinal",
    "gradcam_dl_transverse",
)
ARTIFACT = "kedro_mlflow.io.artifacts.MlflowArtifactDataset"


class _CatalogConfig(dict):
    """Catalog entries by dataset name; a name no entry spells is resolved through the dataset
    factories (e.g. ``gradcam_{network}``) as Kedro resolves it."""

    def __init__(self, entries: dict[str, Any]) -> None:
        super().__init__(entries)
        self._resolver = CatalogConfigResolver(entries, default_runtime_patterns={})

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or bool(
            isinstance(name, str) and self._resolver.match_dataset_pattern(name)
        )

    def __missing__(self, name: str) -> dict[str, Any]:
        if name not in self:
            raise KeyError(name)
        return self._resolver.resolve_pattern(name)


def _catalog_config() -> _CatalogConfig:
    config: dict[str, Any] = {}
    for name in ("07_model_output.yml", "08_reporting.yml"):
        config.update(yaml.safe_load((PROJECT / "conf/base/catalog" / name).read_text()))
    return _CatalogConfig(config)


# Outputs passed from node to node in memory (no catalog entry, no file).
IN_MEMORY = {"run_parameters", SETTINGS}


def test_catalog_has_every_output_with_its_layer() -> None:
    config = _catalog_config()
    saved = create_pipeline().all_outputs() - IN_MEMORY
    assert not sorted(name for name in saved if name not in config)
    # No entry or dataset factory of the project's catalog catches the in-memory ones.
    loader = OmegaConfigLoader(
        str(PROJECT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": "base"}
    )
    resolver = CatalogConfigResolver(loader["catalog"], credentials=loader["credentials"])
    caught = [n for n in IN_MEMORY if n in resolver.config or resolver.match_dataset_pattern(n)]
    assert not caught
    for name in saved:
        layer = config[name]["metadata"]["kedro-viz"]["layer"]
        assert layer == ("model_output" if name == "predictions" else "reporting"), name
    assert config["predictions"]["filepath"] == "data/07_model_output/predictions.csv"
    assert config["metrics"]["dataset"]["filepath"] == "data/08_reporting/metrics.json"
    assert config["delong_tests"]["dataset"]["filepath"] == "data/08_reporting/delong_tests.csv"
    assert config["report"]["dataset"]["filepath"] == "data/08_reporting/report.html"
    assert config["evaluation_metrics"]["type"].endswith("MlflowMetricsHistoryDataset")
    # An empty prefix keeps the keys <split>.<model>.<metric>: with none, kedro-mlflow's hook
    # puts the dataset name in front of every key.
    assert config["evaluation_metrics"]["prefix"] == ""
    for name in (*(f"{figure}_figure" for figure in FIGURES), "report"):
        assert config[name]["type"] == ARTIFACT
    for name in FIGURES:
        dataset = config[f"{name}_figure"]["dataset"]
        assert dataset["type"] == "clnm_kedro.datasets.ReportFigureDataset"
        assert dataset["filepath"] == f"data/08_reporting/figures/{name}.png"


@pytest.mark.slow  # creating an MLflow SQLite store takes ~10 s
def test_catalog_saves_figures_and_report_as_mlflow_artifacts(
    evaluated: DataCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("report-artifacts")
    config = _catalog_config()
    names = (
        "roc_curves_figure",
        "gradcam_dl_dual_figure",
        "report",
        "metrics",
        "evaluation_metrics",
    )
    catalog = DataCatalog.from_config({name: config[name] for name in names})
    try:
        with mlflow.start_run() as run:
            for name in names:
                catalog.save(name, evaluated.load(name))
    finally:
        mlflow.set_tracking_uri(None)
    assert (tmp_path / "data/08_reporting/report.html").read_text(encoding="utf-8") == (
        evaluated.load("report")
    )
    assert (tmp_path / "data/08_reporting/figures/roc_curves.png").read_bytes()[:4] == b"\x89PNG"
    read_back = catalog.load("roc_curves_figure")  # what the report embeds: the saved file
    assert (read_back["title"], read_back["caption"]) == figure_caption(
        evaluated.load("roc_curves_figure")
    )
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    top = {item.path for item in client.list_artifacts(run.info.run_id)}
    figures = {item.path for item in client.list_artifacts(run.info.run_id, "figures")}
    assert {"report.html", "figures", "evaluation"} <= top
    assert {"figures/roc_curves.png", "figures/gradcam_dl_dual.png"} <= figures
    logged = client.get_run(run.info.run_id).data.metrics
    assert logged["external.combined.auc"] == pytest.approx(
        evaluated.load("metrics")["models"]["combined"]["splits"]["external"]["auc"]
    )


def test_a_figure_is_saved_once_and_read_back_as_the_report_embeds_it(tmp_path: Path) -> None:
    """The PNG written is the image the report embeds, with the figure's title and caption."""
    figure = Figure()
    figure.subplots().plot([0, 1], [0, 1])
    dataset = ReportFigureDataset(str(tmp_path / "figures" / "roc_curves.png"))
    dataset.save(captioned(figure, "ROC curves", "AUC with its CI"))
    png = (tmp_path / "figures" / "roc_curves.png").read_bytes()
    loaded = dataset.load()
    assert (loaded["title"], loaded["caption"]) == ("ROC curves", "AUC with its CI")
    assert base64.b64decode(loaded["data_uri"].removeprefix("data:image/png;base64,")) == png
    assert report_figure(loaded) is loaded
    assert report_figure(figure)["title"] == "ROC curves"  # a figure kept in memory
