"""The ``evaluation`` pipeline: gathering predictions, metrics, thresholds, DeLong tests,
subgroups, oracle, MLflow names, Grad-CAM, and the nodes run end to end on synthetic tables."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn

from clnm_kedro.metrics import classification_metrics, delong_ci, delong_test, youden_threshold
from clnm_kedro.networks import build_network
from clnm_kedro.pipelines.evaluation import create_pipeline, nodes
from clnm_kedro.pipelines.evaluation.pipeline import REPORTED_PARAMETERS
from clnm_kedro.pipelines.evaluation.pipeline import SETTINGS as SETTINGS_DATASET
from clnm_kedro.reporting.gradcam import (
    branch_target_layers,
    choose_gradcam_patients,
    gradcam_heatmaps,
    last_conv_layer,
)
from clnm_kedro.reporting.model_metrics import (
    BOOTSTRAP_METRICS,
    METRIC_KEYS,
    MODEL_KEYS,
    EvaluationSettings,
)
from clnm_kedro.reporting.predictions import PredictionTableError

torch.set_num_threads(1)

DL_MODELS = ("dl_dual", "dl_longitudinal", "dl_transverse")
HEAD_MODELS = ("dl_features", "clinical", "combined")
PARAMS: dict = {
    "confidence_level": 0.95,
    "threshold_splits": ["train_cv", "train"],
    "bootstrap": {"enabled": False, "n_resamples": 200},
    "calibration_bins": 10,
    "extra_comparisons": [],
    "comparison_splits": ["train", "external"],
    "figure_splits": ["train", "external"],
    "decision_curve": {"min_threshold": 0.01, "max_threshold": 0.99, "step": 0.01},
    "subgroups": {"split": "external", "age_cutoff_years": 45, "tumor_size_cutoff_mm": 5},
    "gradcam": {"split": "external", "n_patients": 4},
}
# The block as the pipeline's first node checks it: every other node takes the typed object.
SETTINGS = nodes.validate_evaluation_settings(PARAMS)


def settings_with(**changed: object) -> EvaluationSettings:
    """``PARAMS`` with some settings changed, checked as the pipeline does."""
    return nodes.validate_evaluation_settings({**PARAMS, **changed})


# --- synthetic tables ---------------------------------------------------------------------------


def synthetic_cohort(n_train: int = 90, n_external: int = 60, seed: int = 0) -> pd.DataFrame:
    """patient_splits + cohort_table columns for a two-centre cohort."""
    rng = np.random.default_rng(seed)
    n = n_train + n_external
    return pd.DataFrame(
        {
            "patient_id": [f"A{i:03d}" for i in range(n_train)]
            + [f"B{i:03d}" for i in range(n_external)],
            "center": ["CENTER_A"] * n_train + ["CENTER_B"] * n_external,
            "clnm": rng.binomial(1, 0.35, n),
            "split": ["train"] * n_train + ["external"] * n_external,
            "fold": list(np.arange(n_train) % 5) + [-1] * n_external,
            "age": rng.normal(45, 11, n).round(),
            "sex": rng.choice(["F", "M"], n, p=[0.75, 0.25]),
            "tumor_size_mm": rng.uniform(2, 10, n).round(1),
        }
    )


def model_rows(
    cohort: pd.DataFrame, model: str, splits: tuple[str, ...], strength: float, seed: int
) -> pd.DataFrame:
    """Predictions of one model: a noisy logistic function of the outcome."""
    rng = np.random.default_rng(seed)
    parts = []
    for split in splits:
        wanted = "external" if split == "external" else "train"
        rows = cohort[cohort["split"] == wanted]
        z = strength * (rows["clnm"].to_numpy() - 0.5) + rng.normal(0, 1, len(rows))
        parts.append(
            pd.DataFrame(
                {
                    "patient_id": rows["patient_id"].to_numpy(),
                    "center": rows["center"].to_numpy(),
                    "split": split,
                    "model": model,
                    "clnm": rows["clnm"].to_numpy(),
                    "probability": 1.0 / (1.0 + np.exp(-z)),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def synthetic_tables(cohort: pd.DataFrame) -> list[pd.DataFrame]:
    """dl_predictions, clinical, dl_features and combined predictions tables."""
    dl = pd.concat(
        [
            model_rows(cohort, model, ("train", "external"), strength, seed)
            for seed, (model, strength) in enumerate(zip(DL_MODELS, (1.6, 1.0, 0.9), strict=True))
        ],
        ignore_index=True,
    )
    heads = [
        model_rows(cohort, model, ("train", "train_cv", "external"), strength, 10 + seed)
        for seed, (model, strength) in enumerate(
            zip(("clinical", "dl_features", "combined"), (1.2, 1.5, 2.4), strict=True)
        )
    ]
    return [dl, *heads]  # the pipeline's order: dl, clinical, dl_features, combined


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return synthetic_cohort()


@pytest.fixture(scope="module")
def predictions(cohort: pd.DataFrame) -> pd.DataFrame:
    return nodes.gather_predictions(*synthetic_tables(cohort))


# --- gather_predictions -------------------------------------------------------------------------


def test_gather_joins_any_number_of_tables_in_study_order(cohort: pd.DataFrame) -> None:
    dl, clinical, dl_features, combined = synthetic_tables(cohort)
    gathered = nodes.gather_predictions(combined, dl, pd.DataFrame(), clinical, dl_features)
    assert list(gathered.columns) == [
        "patient_id",
        "center",
        "split",
        "model",
        "clnm",
        "probability",
    ]
    assert list(dict.fromkeys(gathered["model"])) == [*DL_MODELS, *HEAD_MODELS]
    assert len(gathered) == len(dl) + len(clinical) + len(dl_features) + len(combined)
    only_two = nodes.gather_predictions(clinical, dl_features)
    assert set(only_two["model"]) == {"clinical", "dl_features"}


def _bad(table: pd.DataFrame, change: str) -> pd.DataFrame:
    bad = table.copy()
    if change == "missing_column":
        return bad.drop(columns="probability")
    if change == "probability_above_one":
        bad.loc[3, "probability"] = 1.2
    elif change == "probability_missing":
        bad.loc[3, "probability"] = np.nan
    elif change == "label_two":
        bad["clnm"] = bad["clnm"].astype(object)
        bad.loc[3, "clnm"] = 2
    elif change == "repeated_row":
        bad = pd.concat([bad, bad.iloc[[3]]], ignore_index=True)
    elif change == "unknown_split":
        bad.loc[3, "split"] = "validation"
    return bad


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing_column", r"clinical\) lacks column\(s\) \['probability'\]"),
        ("probability_above_one", r"\[0, 1\].*clinical/A003: 1\.2"),
        ("probability_missing", r"\[0, 1\].*clinical/A003: nan"),
        ("label_two", r"clnm must be 0 or 1.*clinical.*A003"),
        ("repeated_row", r"one prediction per model and split.*clinical/train/A003"),
        ("unknown_split", r"Unknown split\(s\) validation.*clinical"),
    ],
)
def test_gather_refuses_bad_tables_naming_model_and_patient(
    cohort: pd.DataFrame, change: str, message: str
) -> None:
    dl, clinical, *_ = synthetic_tables(cohort)
    with pytest.raises(PredictionTableError, match=message):
        nodes.gather_predictions(dl, _bad(clinical, change))


def test_gather_refuses_labels_that_differ_between_models(cohort: pd.DataFrame) -> None:
    dl, clinical, *_ = synthetic_tables(cohort)
    clinical.loc[clinical["patient_id"] == "B007", "clnm"] = (
        1 - clinical.loc[clinical["patient_id"] == "B007", "clnm"]
    )
    with pytest.raises(PredictionTableError, match=r"disagree on the CLNM label.*B007.*clinical"):
        nodes.gather_predictions(dl, clinical)


def test_gather_refuses_a_patient_in_training_and_external_data(cohort: pd.DataFrame) -> None:
    dl, *_ = synthetic_tables(cohort)
    leaked = dl[
        (dl["patient_id"] == "A001") & (dl["split"] == "train") & (dl["model"] == "dl_dual")
    ].copy()
    leaked["split"] = "external"
    leaked["model"] = "clinical"
    with pytest.raises(PredictionTableError, match=r"A001.*external test set and in the training"):
        nodes.gather_predictions(dl, leaked)


def test_gather_refuses_when_every_table_is_empty() -> None:
    with pytest.raises(PredictionTableError, match="no predictions"):
        nodes.gather_predictions(pd.DataFrame(), pd.DataFrame())


# --- thresholds ---------------------------------------------------------------------------------


def _threshold_case() -> pd.DataFrame:
    """A model whose external Youden cut-off (0.85) differs from its training one (0.45)."""
    train_p = [0.10, 0.20, 0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.35, 0.55]
    train_y = [0, 0, 0, 0, 1, 1, 1, 1, 0, 1]
    ext_p = [0.30, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.90, 0.95, 0.97]
    ext_y = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    rows = [
        pd.DataFrame(
            {
                "patient_id": [f"{prefix}{i}" for i in range(10)],
                "center": center,
                "split": split,
                "model": "dl_dual",
                "clnm": y,
                "probability": p,
            }
        )
        for prefix, center, split, y, p in (
            ("T", "A", "train", train_y, train_p),
            ("E", "B", "external", ext_y, ext_p),
        )
    ]
    return pd.concat(rows, ignore_index=True)


def test_threshold_chosen_on_training_is_applied_unchanged_to_external() -> None:
    table = nodes.gather_predictions(_threshold_case())
    train = table[table["split"] == "train"]
    external = table[table["split"] == "external"]
    train_cut = youden_threshold(train["clnm"], train["probability"])
    external_cut = youden_threshold(external["clnm"], external["probability"])
    assert train_cut == pytest.approx(0.45)
    assert external_cut == pytest.approx(0.85)

    metrics = nodes.compute_metrics(table, SETTINGS, seed=1)
    entry = metrics["models"]["dl_dual"]
    assert entry["threshold"] == pytest.approx(train_cut)
    assert entry["threshold_split"] == "train"  # no train_cv for this model
    got = entry["splits"]["external"]
    assert got["threshold"] == pytest.approx(train_cut)
    expected = classification_metrics(external["clnm"], external["probability"], train_cut)
    at_external_cut = classification_metrics(
        external["clnm"], external["probability"], external_cut
    )
    for key in ("sensitivity", "specificity", "accuracy", "ppv", "npv", "tp", "fp", "tn", "fn"):
        assert got[key] == pytest.approx(expected[key])
    # The external set's own cut-off would have given other numbers.
    assert got["specificity"] == pytest.approx(1 / 7)
    assert at_external_cut["specificity"] == 1.0


def test_threshold_uses_out_of_fold_predictions_where_the_model_has_them(
    predictions: pd.DataFrame,
) -> None:
    metrics = nodes.compute_metrics(predictions, SETTINGS, seed=1)
    for model in HEAD_MODELS:
        rows = predictions[(predictions["model"] == model) & (predictions["split"] == "train_cv")]
        assert metrics["models"][model]["threshold_split"] == "train_cv"
        assert metrics["models"][model]["threshold"] == pytest.approx(
            youden_threshold(rows["clnm"], rows["probability"])
        )
    for model in DL_MODELS:
        assert metrics["models"][model]["threshold_split"] == "train"

    plain = nodes.compute_metrics(predictions, settings_with(threshold_splits=["train"]), 1)
    rows = predictions[(predictions["model"] == "combined") & (predictions["split"] == "train")]
    assert plain["models"]["combined"]["threshold_split"] == "train"
    assert plain["models"]["combined"]["threshold"] == pytest.approx(
        youden_threshold(rows["clnm"], rows["probability"])
    )


def test_threshold_may_never_be_chosen_on_the_external_set() -> None:
    with pytest.raises(ValueError, match="must not contain 'external'"):
        EvaluationSettings.from_params({"threshold_splits": ["external"]})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"confidence_level": 1.5}, "confidence_level"),
        ({"bootstrap": {"n_resamples": 0}}, "bootstrap.n_resamples"),
        ({"extra_comparisons": [["combined"]]}, "extra_comparisons"),
        ({"figure_splits": ["test"]}, "figure_splits"),
        ({"decision_curve": {"min_threshold": 0.5, "max_threshold": 0.2}}, "decision_curve"),
        ({"gradcam": {"n_patients": -1}}, "gradcam.n_patients"),
    ],
)
def test_bad_parameters_are_named(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"evaluation.{message}")):
        EvaluationSettings.from_params(params)


# --- metrics.json --------------------------------------------------------------------------------


def test_metrics_cover_every_model_and_split_with_the_documented_keys(
    predictions: pd.DataFrame,
) -> None:
    metrics = nodes.compute_metrics(predictions, SETTINGS, seed=1)
    json.dumps(metrics, allow_nan=False)  # strict JSON: NaN written as null
    assert set(metrics["models"]) == {*DL_MODELS, *HEAD_MODELS}
    for model, entry in metrics["models"].items():
        assert set(entry) == set(MODEL_KEYS)
        expected_splits = {"train", "external"} | ({"train_cv"} if model in HEAD_MODELS else set())
        assert set(entry["splits"]) == expected_splits
        for values in entry["splits"].values():
            assert set(values) == set(METRIC_KEYS)
    # Numbers are those of the statistics module on the same rows.
    rows = predictions[(predictions["model"] == "combined") & (predictions["split"] == "external")]
    auc, lower, upper = delong_ci(rows["clnm"], rows["probability"])
    got = metrics["models"]["combined"]["splits"]["external"]
    assert (got["auc"], got["auc_lower"], got["auc_upper"]) == pytest.approx((auc, lower, upper))
    assert got["n"] == len(rows)
    assert got["events"] == int(rows["clnm"].sum())
    assert got["brier"] == pytest.approx(float(np.mean((rows["probability"] - rows["clnm"]) ** 2)))
    # Hosmer-Lemeshow over 10 groups: G degrees of freedom on the external set, G - 2 on the
    # training predictions.
    assert got["hosmer_lemeshow_dof"] == 10
    assert metrics["models"]["combined"]["splits"]["train"]["hosmer_lemeshow_dof"] == 8


def test_bootstrap_intervals_are_added_and_repeat_with_the_seed(
    predictions: pd.DataFrame,
) -> None:
    settings = settings_with(bootstrap={"enabled": True, "n_resamples": 200})
    dl_only = predictions[predictions["model"] == "dl_dual"]
    first = nodes.compute_metrics(dl_only, settings, seed=3)
    again = nodes.compute_metrics(dl_only, settings, seed=3)
    assert first == again
    values = first["models"]["dl_dual"]["splits"]["external"]
    for name in BOOTSTRAP_METRICS:
        assert values[f"{name}_boot_lower"] <= values[name] <= values[f"{name}_boot_upper"]
    assert values["auc_boot_lower"] < values["auc_boot_upper"]


def test_one_outcome_class_gives_nan_not_an_error(predictions: pd.DataFrame) -> None:
    rows = predictions[
        (predictions["model"] == "clinical")
        & ((predictions["split"] != "external") | (predictions["clnm"] == 0))
    ]
    metrics = nodes.compute_metrics(rows, SETTINGS, seed=1)
    external = metrics["models"]["clinical"]["splits"]["external"]
    assert external["auc"] is None
    assert external["calibration_slope"] is None
    assert external["specificity"] is not None  # rates at the cut-off are still defined
    assert external["sensitivity"] is None


# --- DeLong comparisons --------------------------------------------------------------------------


def test_delong_tests_cover_the_study_comparisons_on_both_sets(
    predictions: pd.DataFrame,
) -> None:
    tests = nodes.compare_models(predictions, SETTINGS)
    assert list(tests.columns[:10]) == [
        "split",
        "model_a",
        "model_b",
        "auc_a",
        "auc_b",
        "difference",
        "difference_lower",
        "difference_upper",
        "z",
        "p",
    ]
    pairs = set(zip(tests["split"], tests["model_a"], tests["model_b"], strict=True))
    study = {
        ("dl_dual", "dl_longitudinal"),
        ("dl_dual", "dl_transverse"),
        ("combined", "dl_features"),
        ("combined", "clinical"),
    }
    assert pairs == {(split, a, b) for split in ("train", "external") for a, b in study}
    row = tests[(tests["split"] == "external") & (tests["model_b"] == "clinical")].iloc[0]
    a = predictions[(predictions["model"] == "combined") & (predictions["split"] == "external")]
    b = predictions[(predictions["model"] == "clinical") & (predictions["split"] == "external")]
    expected = delong_test(a["clnm"], a["probability"], b["probability"])
    assert (row["auc_a"], row["auc_b"], row["z"], row["p"]) == pytest.approx(tuple(expected))


def test_delong_skips_absent_models_and_adds_configured_pairs(
    predictions: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    dl_only = predictions[predictions["model"].isin(DL_MODELS)]
    settings = settings_with(extra_comparisons=[["dl_longitudinal", "dl_transverse"]])
    with caplog.at_level(logging.INFO, logger="clnm_kedro.reporting.model_comparisons"):
        tests = nodes.compare_models(dl_only, settings)
    assert set(zip(tests["model_a"], tests["model_b"], strict=True)) == {
        ("dl_dual", "dl_longitudinal"),
        ("dl_dual", "dl_transverse"),
        ("dl_longitudinal", "dl_transverse"),
    }
    assert len(tests) == 6
    assert "combined vs clinical on the external test set skipped" in caplog.text


# --- subgroups and oracle ------------------------------------------------------------------------


def test_subgroup_auc_with_counts_and_nan_for_one_class(
    predictions: pd.DataFrame, cohort: pd.DataFrame
) -> None:
    external = cohort[cohort["split"] == "external"]
    # Make every external man free of CLNM: his subgroup has one outcome class.
    men = set(external.loc[external["sex"] == "M", "patient_id"])
    changed = predictions.copy()
    changed.loc[changed["patient_id"].isin(men), "clnm"] = 0
    table = cohort.copy()
    table.loc[table["patient_id"].isin(men), "clnm"] = 0
    result = nodes.compute_subgroup_auc(changed, table, SETTINGS)

    assert set(result["subgroup"]) == {
        "all patients",
        "female",
        "male",
        "age < 45 years",
        "age ≥ 45 years",
        "tumour ≤ 5 mm",
        "tumour > 5 mm",
    }
    assert set(result["model"]) == {*DL_MODELS, *HEAD_MODELS}
    male = result[(result["subgroup"] == "male") & (result["model"] == "combined")].iloc[0]
    assert male["n"] == len(men)
    assert male["events"] == 0
    assert math.isnan(male["auc"])
    assert math.isnan(male["auc_lower"])
    young = result[(result["subgroup"] == "age < 45 years") & (result["model"] == "dl_dual")]
    patients = external.loc[external["age"] < 45, "patient_id"]
    rows = changed[
        (changed["model"] == "dl_dual")
        & (changed["split"] == "external")
        & changed["patient_id"].isin(patients)
    ]
    assert young["n"].iloc[0] == len(rows)
    assert young["auc"].iloc[0] == pytest.approx(delong_ci(rows["clnm"], rows["probability"]).auc)


def test_oracle_comparison_is_empty_without_an_oracle(predictions: pd.DataFrame) -> None:
    result = nodes.compare_with_oracle(predictions, pd.DataFrame(), SETTINGS)
    assert result.empty
    assert "oracle_auc" in result.columns


def test_oracle_auc_is_computed_on_the_same_patients(
    predictions: pd.DataFrame, cohort: pd.DataFrame
) -> None:
    rng = np.random.default_rng(5)
    oracle = cohort[["patient_id", "center"]].copy()
    oracle["oracle_risk"] = np.clip(
        0.3 + 0.3 * cohort["clnm"] + rng.normal(0, 0.2, len(cohort)), 0, 1
    )
    oracle = oracle[oracle["patient_id"] != "B001"]  # one patient without an oracle risk
    result = nodes.compare_with_oracle(predictions, oracle, SETTINGS)
    row = result[(result["split"] == "external") & (result["model"] == "dl_dual")].iloc[0]
    ext = cohort[(cohort["split"] == "external") & (cohort["patient_id"] != "B001")]
    risk = oracle.set_index("patient_id").loc[ext["patient_id"], "oracle_risk"]
    assert row["n"] == len(ext)
    assert row["oracle_auc"] == pytest.approx(delong_ci(ext["clnm"], risk).auc)


# --- MLflow metric names -------------------------------------------------------------------------


def test_mlflow_metrics_are_named_split_model_metric(predictions: pd.DataFrame) -> None:
    metrics = nodes.compute_metrics(predictions, SETTINGS, seed=1)
    tests = nodes.compare_models(predictions, SETTINGS)
    logged = nodes.collect_mlflow_metrics(metrics, tests, pd.DataFrame())
    assert logged["external.combined.auc"]["value"] == pytest.approx(
        metrics["models"]["combined"]["splits"]["external"]["auc"]
    )
    assert "external.dl_dual.auc_lower" in logged
    assert "train_cv.clinical.sensitivity" in logged
    assert "external.dl_dual_vs_dl_longitudinal.delong_p" in logged
    pattern = re.compile(r"^(train|train_cv|external)\.[a-z_]+\.[a-z_]+$")
    assert all(pattern.match(name) for name in logged)
    assert all(math.isfinite(item["value"]) and item["step"] == 0 for item in logged.values())


# --- Grad-CAM ------------------------------------------------------------------------------------

SIZE = 24
REGIONS = ((slice(2, 8), slice(3, 9)), (slice(15, 21), slice(14, 20)))  # view 0, view 1


class PlantedRegionNetwork(nn.Module):
    """Stand-in network: per-view identity 1x1 convolution; logit = mean over planted regions.

    ``logit_views`` lists the view columns whose region mean enters the logit (times ``sign``).
    """

    def __init__(
        self,
        views: tuple[int, ...] = (0, 1),
        shared: bool = False,
        logit_views: tuple[int, ...] | None = None,
        sign: float = 1.0,
    ) -> None:
        super().__init__()
        self.views = views
        n_branches = 1 if shared else len(views)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(1, 1, 1, bias=False)) for _ in range(n_branches)
        )
        for branch in self.branches:
            nn.init.ones_(branch[0].weight)
        self.logit_views = tuple(range(len(views))) if logit_views is None else logit_views
        self.sign = sign

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n_views = x.shape[:2]
        if len(self.branches) == 1:
            flat = x.reshape(batch * n_views, 1, *x.shape[2:])
            maps = self.branches[0](flat).reshape(x.shape)
        else:
            maps = torch.cat(
                [branch(x[:, v : v + 1]) for v, branch in enumerate(self.branches)], dim=1
            )
        logit = torch.zeros(batch)
        for column in self.logit_views:
            rows, cols = REGIONS[self.views[column]]
            logit = logit + maps[:, column, rows, cols].mean(dim=(-2, -1))
        return self.sign * logit


def planted_crops(n: int = 3, seed: int = 0) -> np.ndarray:
    """Dark noisy crops with a bright square at REGIONS[view] in each view."""
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 60, size=(n, 2, SIZE, SIZE), dtype=np.uint8)
    for view, (rows, cols) in enumerate(REGIONS):
        crops[:, view, rows, cols] = rng.integers(200, 256, size=(n, 6, 6), dtype=np.uint8)
    return crops


def _inside(view: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[REGIONS[view]] = True
    return mask


@pytest.mark.parametrize("shared", [False, True])
def test_gradcam_highlights_the_planted_region_of_each_view(shared: bool) -> None:
    crops = planted_crops()
    result = gradcam_heatmaps(PlantedRegionNetwork(shared=shared), crops)
    assert result.heatmaps.shape == (3, 2, SIZE, SIZE)
    assert result.views == (0, 1)
    assert result.heatmaps.min() >= 0.0
    assert result.heatmaps.max() <= 1.0
    for view in (0, 1):
        inside = _inside(view)
        for patient in range(3):
            heatmap = result.heatmaps[patient, view]
            peak = np.unravel_index(np.argmax(heatmap), heatmap.shape)
            assert inside[peak], f"view {view}: peak {peak} outside the planted region"
            assert heatmap[inside].mean() > 0.7
            assert heatmap[~inside].mean() < 0.3
    expected = 1 / (
        1
        + np.exp(
            -(
                crops[:, 0][:, *REGIONS[0]].mean(axis=(1, 2))
                + crops[:, 1][:, *REGIONS[1]].mean(axis=(1, 2))
            )
            / 255
        )
    )
    assert result.probabilities == pytest.approx(expected, rel=1e-5)


def test_gradcam_shows_nothing_where_the_risk_does_not_rise() -> None:
    crops = planted_crops()
    # Only the longitudinal view drives the logit: the transverse heatmap stays empty.
    only_first = gradcam_heatmaps(PlantedRegionNetwork(logit_views=(0,)), crops)
    assert only_first.heatmaps[:, 0][:, _inside(0)].mean() > 0.7
    assert only_first.heatmaps[:, 1].max() == pytest.approx(0.0, abs=1e-6)
    # A region that lowers the risk is not highlighted (Grad-CAM of the CLNM logit).
    lowering = gradcam_heatmaps(PlantedRegionNetwork(sign=-1.0), crops)
    assert lowering.heatmaps.max() == pytest.approx(0.0, abs=1e-6)


def test_gradcam_of_a_single_view_network_reads_its_own_view() -> None:
    crops = planted_crops()
    result = gradcam_heatmaps(PlantedRegionNetwork(views=(1,)), crops)
    assert result.views == (1,)
    assert result.heatmaps.shape == (3, 1, SIZE, SIZE)
    heatmap = result.heatmaps[0, 0]
    assert _inside(1)[np.unravel_index(np.argmax(heatmap), heatmap.shape)]


@pytest.mark.parametrize(
    ("kind", "shared"), [("dual", False), ("dual", True), ("longitudinal", False)]
)
def test_gradcam_runs_on_the_project_networks(kind: str, shared: bool) -> None:
    torch.manual_seed(0)
    network = build_network(
        {
            "network": {
                "kind": kind,
                "shared_branches": shared,
                "compact_channels": [4, 8],
                "hidden_dim": 8,
            }
        }
    ).eval()
    crops = planted_crops(n=2)
    result = gradcam_heatmaps(network, crops)
    n_views = 2 if kind == "dual" else 1
    assert result.heatmaps.shape == (2, n_views, SIZE, SIZE)
    assert result.heatmaps.dtype == np.float32
    assert 0.0 <= result.heatmaps.min() <= result.heatmaps.max() <= 1.0
    assert not network.training
    assert all(p.grad is None for p in network.parameters())
    layers = branch_target_layers(network)
    assert len(layers) == (1 if shared or n_views == 1 else 2)
    assert all(
        layer is last_conv_layer(branch)
        for layer, branch in zip(layers, network.branches, strict=True)
    )


def test_last_conv_layer_of_a_torchvision_backbone() -> None:
    network = build_network({"network": {"kind": "longitudinal", "backbone": "resnet18"}})
    branch = network.branches[0]
    assert last_conv_layer(branch) is branch.layer4[-1].conv2
    with pytest.raises(ValueError, match="no 2-D convolution"):
        last_conv_layer(nn.Linear(3, 1))


def test_gradcam_patients_are_external_balanced_and_seeded(cohort: pd.DataFrame) -> None:
    rows = choose_gradcam_patients(cohort, "external", 6, seed=4)
    assert len(rows) == 6
    assert (cohort.iloc[rows]["split"] == "external").all()
    assert cohort.iloc[rows]["clnm"].tolist() == [1, 1, 1, 0, 0, 0]
    assert np.array_equal(rows, choose_gradcam_patients(cohort, "external", 6, seed=4))
    assert not np.array_equal(rows, choose_gradcam_patients(cohort, "external", 6, seed=5))
    assert len(choose_gradcam_patients(cohort, "external", 500, seed=4)) == 60


# --- the pipeline --------------------------------------------------------------------------------


def test_pipeline_wires_every_output_once() -> None:
    pipeline = create_pipeline()
    outputs = pipeline.all_outputs()
    for name in (
        "metrics",
        "delong_tests",
        "study_table",
        "subgroup_auc",
        "oracle_comparison",
        "evaluation_metrics",
        "roc_curves_figure",
        "calibration_curves_figure",
        "decision_curves_figure",
        "training_curves_figure",
        "gradcam_dl_dual_figure",
        "gradcam_dl_longitudinal_figure",
        "gradcam_dl_transverse_figure",
        "report",
    ):
        assert name in outputs
    assert {
        "dl_predictions",
        "clinical_predictions",
        "dl_features_predictions",
        "combined_predictions",
        "dl_dual_network",
        "dl_transverse_training_history",
        "roi_crops",
        "patient_splits",
        "cohort_table",
        "simulation_oracle",
        "data_quality_report",
        "params:seed",
        "params:preprocessing",
        "params:evaluation",
    } <= pipeline.inputs()
    # The report takes the parameter blocks by name: a node reading Kedro's whole "parameters"
    # makes kedro-mlflow log every parameter a second time as "parameters.<key>".
    assert "parameters" not in pipeline.inputs()


def test_the_evaluation_block_is_checked_once_before_any_node_uses_it() -> None:
    """One node reads and checks ``params:evaluation``; every other node takes its typed
    result, so a bad setting stops the run in the pipeline's first layer, named."""
    pipeline = create_pipeline()
    check = next(node for node in pipeline.nodes if node.name == "validate_evaluation_settings")
    assert check.inputs == ["params:evaluation"] and check.outputs == [SETTINGS_DATASET]
    assert check in pipeline.grouped_nodes[0]  # it needs no data: nothing has to run first
    # The report's parameter table shows the block as written; no other node reads it.
    readers = {node.name for node in pipeline.nodes if "params:evaluation" in node.inputs}
    assert readers == {"validate_evaluation_settings", "collect_run_parameters"}
    users = {node.name for node in pipeline.nodes if SETTINGS_DATASET in node.inputs}
    assert {
        "compute_metrics",
        "compare_models_delong",
        "compute_net_benefit",
        "plot_roc_curves",
        "plot_gradcam_dl_dual",
        "build_report",
    } <= users
    assert check.run({"params:evaluation": PARAMS}) == {SETTINGS_DATASET: SETTINGS}
    with pytest.raises(ValueError, match=re.escape("evaluation.confidence_level")):
        check.run({"params:evaluation": {**PARAMS, "confidence_level": 1.5}})
    with pytest.raises(ValueError, match="Unknown evaluation setting"):
        check.run({"params:evaluation": {**PARAMS, "figure_split": ["external"]}})


def test_evaluation_nodes_end_to_end(predictions: pd.DataFrame, cohort: pd.DataFrame) -> None:
    """Every node on synthetic tables, in pipeline order, as Kedro would call them."""
    tables = synthetic_tables(cohort)
    gathered = nodes.gather_predictions(*tables)
    metrics = nodes.compute_metrics(gathered, SETTINGS, 1)
    tests = nodes.compare_models(gathered, SETTINGS)
    study = nodes.build_study_table(metrics, tests)
    subgroups = nodes.compute_subgroup_auc(gathered, cohort, SETTINGS)
    oracle = nodes.compare_with_oracle(
        gathered, cohort[["patient_id"]].assign(oracle_risk=0.2 + 0.5 * cohort["clnm"]), SETTINGS
    )
    logged = nodes.collect_mlflow_metrics(metrics, tests, oracle)
    assert logged["external.oracle.auc"]["value"] == pytest.approx(1.0)
    embedded = {}
    for name, node in (
        ("roc", nodes.plot_roc),
        ("calibration", nodes.plot_calibration),
        ("decision", nodes.plot_decision_curves),
    ):
        embedded[name] = node(gathered, SETTINGS)
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [0.7, 0.6, 0.5],
            "val_loss": [0.7, 0.65, 0.66],
            "val_auc": [0.6, 0.7, 0.68],
            "lr": 1e-3,
            "seconds": 1.0,
        }
    )
    embedded["training"] = nodes.plot_training_curves(
        dl_dual=history, dl_longitudinal=history, dl_transverse=history
    )
    crops = np.random.default_rng(0).integers(0, 256, (len(cohort), 2, SIZE, SIZE), np.uint8)
    for model, kind in zip(DL_MODELS, ("dual", "longitudinal", "transverse"), strict=True):
        network = build_network({"network": {"kind": kind, "compact_channels": [4, 8]}}).eval()
        figure = embedded[model] = nodes.gradcam_node(model)(network, crops, cohort, SETTINGS, 2)
        assert len(figure.axes) == 4 * (4 if kind == "dual" else 2)
    by_centre, by_outcome = nodes.build_table_one(cohort, cohort)
    odds = nodes.fit_clinical_odds_ratios(cohort, cohort, {"clinical_columns": None}, SETTINGS)
    benefit = nodes.compute_net_benefit(gathered, SETTINGS, 1)
    embedded["net_benefit_difference"] = nodes.plot_net_benefit_difference(benefit, SETTINGS)
    model_input = cohort.drop(columns=["fold"])
    size = nodes.assess_development_sample_size(gathered, model_input, model_input, SETTINGS)
    summary = nodes.summarise_results(metrics, tests, benefit, size, SETTINGS)
    html = nodes.build_report(
        metrics=metrics,
        delong_tests=tests,
        subgroup_auc=subgroups,
        oracle_comparison=oracle,
        data_quality_report={"patients_read": 151, "patients_included": 150},
        parameters={"evaluation": PARAMS, "seed": 1},
        table_one_by_centre=by_centre,
        table_one_by_outcome=by_outcome,
        clinical_odds_ratios=odds,
        net_benefit=benefit,
        sample_size=size,
        plain_summary=summary,
        settings=SETTINGS,
        clinical_head_comparison=pd.DataFrame(),
        dl_features_head_comparison=pd.DataFrame(),
        combined_head_comparison=pd.DataFrame(),
        **embedded,
    )
    assert set(odds["term"]) == {"age", "sex=M", "tumor_size_mm"}
    assert summary[0].startswith("On the external centre (60 patients")
    assert "On the external centre (60 patients" in html
    assert "Table 1: baseline characteristics" in html
    assert study["Model"].nunique() == 6
    assert len(study) == 12
    assert html.count('<img src="data:image/png;base64,') == len(embedded) + 1  # + oracle
    for model in (*DL_MODELS, *HEAD_MODELS):
        assert model in html


def test_report_lists_every_parameter_block_of_a_training_run() -> None:
    """A parameter block added to conf/base must reach the report, or be excluded on purpose."""
    conf = Path(__file__).resolve().parents[1] / "conf" / "base"
    blocks: set[str] = set()
    for path in conf.glob("parameters*.yml"):
        blocks |= set(yaml.safe_load(path.read_text()) or {})
    # `simulate` describes the synthetic cohort (its own summary); `inference` and `recalibrate`
    # belong to later runs on new patients, not to the training run the report describes.
    assert set(REPORTED_PARAMETERS) == blocks - {"simulate", "inference", "recalibrate"}
