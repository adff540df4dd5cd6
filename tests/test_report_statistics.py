"""The report's statistics on small tables, against scipy, statsmodels and published values:
Table 1, odds ratios, sample size (Riley), AUC-difference intervals, bootstrap coverage,
calibration intervals, interaction tests, the plain-language wording, and the template."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from scipy.special import expit, logit

from clnm_kedro.metrics import (
    bootstrap_ci,
    classification_metrics,
    cross_fitted_thresholds,
    delong_test,
    hosmer_lemeshow,
)
from clnm_kedro.reporting import tables
from clnm_kedro.reporting.calibration_stats import calibration_with_ci, smoothed_calibration
from clnm_kedro.reporting.clinical_utility import net_benefit_with_ci
from clnm_kedro.reporting.model_metrics import (
    CUTOFF_FOLDS,
    EvaluationSettings,
    auc_difference_ci,
    delong_comparisons,
    evaluate_predictions,
    interaction_test,
    split_metrics,
)
from clnm_kedro.reporting.odds_ratios import odds_ratio_table
from clnm_kedro.reporting.report import ReportTemplateError, render_report
from clnm_kedro.reporting.sample_size import (
    candidate_parameters,
    cox_snell_r2,
    max_cox_snell_r2,
    riley_binary_sample_size,
)
from clnm_kedro.reporting.summary import calibration_words, plain_summary
from clnm_kedro.reporting.table_one import baseline_table, variable_test


@pytest.fixture(scope="module")
def small_cohort() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 90
    age = rng.normal(45, 12, n).round()
    size = rng.uniform(2, 10, n).round(1)
    sex = rng.choice(["F", "M"], n, p=[0.7, 0.3])
    location = rng.choice(["lower", "middle", "upper"], n)
    risk = expit(-3 + 0.03 * age + 0.25 * size + 0.6 * (sex == "M"))
    frame = pd.DataFrame(
        {
            "center": rng.choice(["A", "B", "C"], n),
            "clnm": rng.binomial(1, risk),
            "age": age,
            "tumor_size_mm": size,
            "sex": sex,
            "location": location,
            "calcification": rng.binomial(1, 0.3, n),
        }
    )
    frame.loc[[0, 5, 9], "age"] = np.nan  # three patients without an age
    return frame


# --- Table 1 --------------------------------------------------------------------------------


def test_table_one_tests_match_scipy(small_cohort: pd.DataFrame) -> None:
    cohort = small_cohort
    known = cohort["age"].notna()
    by_outcome = baseline_table(cohort, "clnm", ["age", "sex", "calcification"])
    age = by_outcome[by_outcome["variable"] == "age"].iloc[0]
    expected = stats.mannwhitneyu(
        cohort.loc[known & (cohort["clnm"] == 0), "age"],
        cohort.loc[known & (cohort["clnm"] == 1), "age"],
        alternative="two-sided",
    ).pvalue
    assert age["test"] == "Mann-Whitney U"
    assert age["p"] == pytest.approx(expected, rel=1e-12)
    assert age["missing"] == 3
    q1, median, q3 = np.quantile(cohort.loc[known, "age"], [0.25, 0.5, 0.75])
    assert age["All (n=90)"] == f"{median:.1f} ({q1:.1f}–{q3:.1f})"

    by_centre = baseline_table(cohort, "center", ["age", "location"])
    age3 = by_centre[by_centre["variable"] == "age"].iloc[0]
    samples = [cohort.loc[known & (cohort["center"] == c), "age"] for c in ("A", "B", "C")]
    assert age3["test"] == "Kruskal-Wallis"
    assert age3["p"] == pytest.approx(stats.kruskal(*samples).pvalue, rel=1e-12)
    location = by_centre[by_centre["variable"] == "location"].iloc[0]
    chi2 = stats.chi2_contingency(
        pd.crosstab(cohort["location"], cohort["center"]).to_numpy(), correction=False
    )
    assert location["test"] == "Chi-square"
    assert location["p"] == pytest.approx(chi2.pvalue, rel=1e-12)
    # Count (percentage) of each level per group.
    upper = by_centre[by_centre["level"] == "upper, n (%)"].iloc[0]
    in_a = cohort[cohort["center"] == "A"]
    count = int((in_a["location"] == "upper").sum())
    header = next(c for c in by_centre.columns if c.startswith("A (n="))
    assert upper[header] == f"{count} ({100 * count / len(in_a):.1f})"


def test_table_one_uses_fisher_for_a_sparse_two_by_two() -> None:
    values = pd.Series(["yes"] * 1 + ["no"] * 19 + ["yes"] * 6 + ["no"] * 14)  # expected 3.5
    groups = pd.Series([0] * 20 + [1] * 20)
    test, p = variable_test(values, groups)
    table = pd.crosstab(values, groups).to_numpy()
    assert test == "Fisher's exact"
    assert p == pytest.approx(stats.fisher_exact(table).pvalue, rel=1e-12)


def test_table_one_names_a_missing_column(small_cohort: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="hashimoto"):
        baseline_table(small_cohort, "clnm", ["age", "hashimoto"])


# --- odds ratios ----------------------------------------------------------------------------


def test_odds_ratios_match_statsmodels(small_cohort: pd.DataFrame) -> None:
    table = odds_ratio_table(small_cohort, ["age", "tumor_size_mm", "sex"])
    complete = small_cohort.dropna(subset=["age"])
    design = sm.add_constant(
        pd.DataFrame(
            {
                "age": complete["age"],
                "tumor_size_mm": complete["tumor_size_mm"],
                "sex=M": (complete["sex"] == "M").astype(float),
            }
        )
    )
    multi = sm.Logit(complete["clnm"], design).fit(disp=0)
    ci = np.exp(multi.conf_int())
    for term in ("age", "tumor_size_mm", "sex=M"):
        row = table[table["term"] == term].iloc[0]
        assert row["multi_or"] == pytest.approx(math.exp(multi.params[term]), rel=1e-6)
        assert row["multi_lower"] == pytest.approx(ci.loc[term, 0], rel=1e-6)
        assert row["multi_upper"] == pytest.approx(ci.loc[term, 1], rel=1e-6)
        assert row["multi_p"] == pytest.approx(multi.pvalues[term], rel=1e-5)
    assert table["multi_n"].iloc[0] == len(complete)
    # Univariable: tumour size on every patient (none missing), sex against F.
    uni = sm.Logit(small_cohort["clnm"], sm.add_constant(small_cohort[["tumor_size_mm"]])).fit(
        disp=0
    )
    size = table[table["term"] == "tumor_size_mm"].iloc[0]
    assert size["uni_or"] == pytest.approx(math.exp(uni.params["tumor_size_mm"]), rel=1e-6)
    assert size["uni_n"] == len(small_cohort)
    assert table[table["term"] == "sex=M"].iloc[0]["reference"] == "F"


def test_odds_ratio_display_reads_the_same_after_a_csv_round_trip(
    small_cohort: pd.DataFrame, tmp_path: Path
) -> None:
    table = odds_ratio_table(small_cohort, ["age", "sex"])
    table.to_csv(tmp_path / "odds.csv", index=False)
    shown = tables.odds_ratio_display(pd.read_csv(tmp_path / "odds.csv"))
    assert list(shown["Indicator"]) == ["age", "sex=M (vs F)"]


# --- sample size ----------------------------------------------------------------------------


def test_riley_sample_size_matches_the_published_example() -> None:
    # Riley et al., BMJ 2020;368:m441, binary-outcome example, as computed by pmsampsize
    # (R package and its Python port's test): prevalence 0.174, 24 candidate parameters,
    # Cox-Snell R² 0.288 -> criteria 623, 662, 221; minimum 662.
    result = riley_binary_sample_size(0.288, 24, 0.174)
    assert [result[k] for k in ("criterion_1", "criterion_2", "criterion_3", "minimum")] == [
        623,
        662,
        221,
        662,
    ]
    assert result["max_r2_cs"] == pytest.approx(0.6032, abs=1e-4)


def test_riley_sample_size_refuses_impossible_inputs() -> None:
    with pytest.raises(ValueError, match="Cox-Snell"):
        riley_binary_sample_size(0.7, 24, 0.174)  # above the maximum 0.603
    with pytest.raises(ValueError, match="parameters"):
        riley_binary_sample_size(0.2, 0, 0.174)


def test_cox_snell_r2_matches_a_statsmodels_fit(small_cohort: pd.DataFrame) -> None:
    fit = sm.Logit(
        small_cohort["clnm"], sm.add_constant(small_cohort[["tumor_size_mm"]])
    ).fit(disp=0)
    n = len(small_cohort)
    expected = 1 - math.exp(-fit.llr / n)
    assert cox_snell_r2(small_cohort["clnm"], fit.predict()) == pytest.approx(expected, rel=1e-6)
    assert max_cox_snell_r2(0.5) == pytest.approx(0.75)


def test_candidate_parameters_count_levels_minus_one(small_cohort: pd.DataFrame) -> None:
    frame = small_cohort[["clnm", "age", "sex", "location"]]
    assert candidate_parameters(frame, ["clnm"]) == 1 + 1 + 2


# --- discrimination -------------------------------------------------------------------------


def test_auc_difference_interval_agrees_with_the_delong_test() -> None:
    rng = np.random.default_rng(5)
    agreements = 0
    significant = 0
    for _ in range(60):
        n = int(rng.integers(40, 120))
        y = rng.binomial(1, 0.35, n)
        if y.sum() < 3 or y.sum() > n - 3:
            continue
        a = y * rng.uniform(0.2, 1.5) + rng.normal(0, 1, n)
        b = 0.5 * a + y * rng.uniform(0, 1.0) + rng.normal(0, 1, n)
        test = delong_test(y, a, b)
        difference, lower, upper = auc_difference_ci(y, a, b, 0.95)
        assert difference == pytest.approx(test.auc_a - test.auc_b, abs=1e-12)
        excludes_zero = lower > 0 or upper < 0
        significant += test.p < 0.05
        agreements += excludes_zero == (test.p < 0.05)
        assert excludes_zero == (test.p < 0.05)
    assert significant > 0  # both outcomes of the test were seen
    assert agreements > 40


def test_delong_table_shows_extra_columns() -> None:
    tests_table = pd.DataFrame(
        {
            "split": ["external"],
            "model_a": ["combined"],
            "model_b": ["clinical"],
            "auc_a": [0.8],
            "auc_b": [0.7],
            "difference": [0.1],
            "difference_lower": [-0.02],
            "difference_upper": [0.22],
            "z": [1.6],
            "p": [0.11],
            "n": [150],
            "min_detectable_difference": [0.12],
        }
    )
    shown = tables.delong_table(tests_table)
    assert shown.loc[0, "Difference (95% CI)"] == "0.100 (-0.020 to 0.220)"
    assert shown.loc[0, "min detectable difference"] == "0.12"


def test_the_report_gives_each_test_its_power_in_a_clinician_s_words() -> None:
    row = {
        "split": "external", "model_a": "dl_dual", "model_b": "dl_longitudinal",
        "auc_a": 0.785, "auc_b": 0.749, "difference": 0.036, "difference_lower": -0.007,
        "difference_upper": 0.078, "z": 1.65, "p": 0.098, "n": 154,
        "events": 54, "auc_correlation": 0.849, "detectable_difference": 0.060,
        "n_needed": 10207.3, "power_statement": "This external test set can detect ...",
    }
    shown = tables.delong_table(pd.DataFrame([row, {**row, "n_needed": float("inf")}]))
    assert shown.loc[0, "Patients with CLNM"] == "54"
    assert shown.loc[0, "Smallest difference detectable (80% power)"] == "0.06"
    assert shown.loc[0, "Patients needed for the observed difference"] == "10,207"
    assert shown.loc[1, "Patients needed for the observed difference"] == tables.MISSING
    assert shown.loc[0, "What the test can tell"].startswith("This external test set")
    assert "n needed" not in shown.columns
    # The sentence names each split as a reader would, the training centres included.
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    scores = y + rng.normal(0, 1.2, (2, 300))
    predictions = pd.concat(
        pd.DataFrame(
            {"patient_id": [f"P{i}" for i in range(300)], "model": model, "split": split,
             "clnm": y, "probability": 1 / (1 + np.exp(-score))}
        )
        for split in ("train_cv", "external")
        for model, score in zip(("dl_dual", "dl_longitudinal"), scores, strict=True)
    )
    sentences = delong_comparisons(
        predictions, [("dl_dual", "dl_longitudinal")], splits=("train_cv", "external")
    ).set_index("split")["power_statement"]
    assert sentences["external"].startswith("This external test set (300 patients, ")
    assert sentences["train_cv"].startswith("This out-of-fold training-centre set (300 patients, ")


def test_bootstrap_intervals_cover_the_true_value_at_about_the_nominal_rate() -> None:
    # Seeded simulation: scores whose true sensitivity at the cut-off 0 is known exactly
    # (normal cases, mean 0.5: P(score >= 0) = Phi(0.5)); the stratified percentile interval
    # should contain it in about 95% of samples.
    rng = np.random.default_rng(2026)
    truth = stats.norm.cdf(0.5)
    covered = 0
    trials = 300

    def sensitivity(labels: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        cases = labels == 1
        return (matrix[:, cases] >= 0.0).mean(axis=1)

    for trial in range(trials):
        y = np.r_[np.ones(80, dtype=int), np.zeros(120, dtype=int)]
        scores = np.r_[rng.normal(0.5, 1, 80), rng.normal(-0.5, 1, 120)]
        interval = bootstrap_ci(
            y, scores, sensitivity, seed=trial, n_boot=400, level=0.95, vectorized=True
        )
        covered += interval.lower <= truth <= interval.upper
    assert 0.90 <= covered / trials <= 0.99


def test_net_benefit_matches_its_definition_and_its_interval_holds_it() -> None:
    rng = np.random.default_rng(1)
    y = rng.binomial(1, 0.3, 150)
    p = np.clip(0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.15, 150), 0.01, 0.99)
    table = net_benefit_with_ci(y, p, [0.1, 0.3], seed=0, n_boot=300)
    for row in table.itertuples():
        t = row.threshold
        treated = p >= t
        tp, fp = np.sum(treated & (y == 1)), np.sum(treated & (y == 0))
        nb = tp / y.size - fp / y.size * t / (1 - t)
        all_nb = y.mean() - (1 - y.mean()) * t / (1 - t)
        assert row.net_benefit == pytest.approx(nb)
        assert row.delta_treat_all == pytest.approx(nb - all_nb)
        assert row.delta_lower <= row.delta_treat_all <= row.delta_upper


# --- calibration ----------------------------------------------------------------------------


def test_calibration_intervals_match_statsmodels() -> None:
    rng = np.random.default_rng(8)
    p = rng.uniform(0.05, 0.9, 300)
    y = rng.binomial(1, expit(0.3 + 0.8 * logit(p)))
    result = calibration_with_ci(y, p)
    glm = sm.GLM(y, sm.add_constant(logit(p)), family=sm.families.Binomial()).fit()
    low, high = glm.conf_int()[1]
    assert result["calibration_slope"] == pytest.approx(glm.params[1], rel=1e-6)
    assert result["calibration_slope_lower"] == pytest.approx(low, rel=1e-6)
    assert result["calibration_slope_upper"] == pytest.approx(high, rel=1e-6)
    offset = sm.GLM(
        y, np.ones((y.size, 1)), family=sm.families.Binomial(), offset=logit(p)
    ).fit()
    a_low, a_high = offset.conf_int()[0]
    assert result["calibration_intercept"] == pytest.approx(offset.params[0], abs=1e-6)
    assert result["calibration_intercept_lower"] == pytest.approx(a_low, abs=1e-5)
    assert result["calibration_intercept_upper"] == pytest.approx(a_high, abs=1e-5)
    assert result["observed_expected"] == pytest.approx(y.sum() / p.sum())
    brier = np.mean((p - y) ** 2)
    assert result["scaled_brier"] == pytest.approx(1 - brier / (y.mean() * (1 - y.mean())))


def test_smoothed_curve_follows_a_known_miscalibration() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(0.05, 0.95, 3000)
    y = rng.binomial(1, expit(0.5 * logit(p)))  # true risk less extreme than predicted
    curve = smoothed_calibration(y, p)
    truth = expit(0.5 * logit(curve["predicted"]))
    assert np.max(np.abs(curve["observed"] - truth)) < 0.06
    assert (curve["lower"] <= curve["observed"]).all()
    assert (curve["observed"] <= curve["upper"]).all()


def test_hosmer_lemeshow_has_g_minus_2_df_on_training_and_g_on_external() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 200)
    y = rng.binomial(1, p)
    settings = EvaluationSettings()
    training = split_metrics(y, p, 0.5, settings, 0, external=False)
    external = split_metrics(y, p, 0.5, settings, 0, external=True)
    assert training["hosmer_lemeshow_dof"] == 8
    assert external["hosmer_lemeshow_dof"] == 10
    assert external["hosmer_lemeshow_p"] == pytest.approx(
        stats.chi2.sf(hosmer_lemeshow(y, p, 10).statistic, 10)
    )


# --- subgroups ------------------------------------------------------------------------------


def test_interaction_test_is_the_likelihood_ratio_test_of_statsmodels() -> None:
    rng = np.random.default_rng(6)
    n = 200
    g = rng.binomial(1, 0.5, n).astype(float)
    score = rng.normal(0, 1, n)
    y = rng.binomial(1, expit(-0.5 + score * (1 + 1.5 * g)))
    p = expit(score)
    frame = pd.DataFrame({"y": y, "s": score, "g": g})
    with_product = frame.assign(sg=frame.s * frame.g)[["s", "g", "sg"]]
    full = sm.Logit(frame["y"], sm.add_constant(with_product))
    small = sm.Logit(frame["y"], sm.add_constant(frame[["s", "g"]]))
    statistic = 2 * (full.fit(disp=0).llf - small.fit(disp=0).llf)
    assert interaction_test(y, p, g) == pytest.approx(stats.chi2.sf(statistic, 1), rel=1e-5)
    assert math.isnan(interaction_test(y, p, np.zeros(n)))  # one subgroup: nothing to test


# --- honest training rows, summary wording --------------------------------------------------


def _predictions() -> pd.DataFrame:
    rng = np.random.default_rng(12)
    rows = []
    for split, n in (("train", 80), ("external", 60)):
        y = rng.binomial(1, 0.4, n)
        ids = [f"{split[0]}{i}" for i in range(n)]
        for model, strength, splits in (
            ("dl_dual", 1.5, ("train",)),
            ("combined", 2.0, ("train", "train_cv")),
            ("clinical", 1.0, ("train", "train_cv")),
        ):
            for s in splits if split == "train" else ("external",):
                z = strength * (y - 0.5) + rng.normal(0, 1, n)
                rows.append(
                    pd.DataFrame(
                        {
                            "patient_id": ids,
                            "center": split,
                            "split": s,
                            "model": model,
                            "clnm": y,
                            "probability": expit(z),
                        }
                    )
                )
    return pd.concat(rows, ignore_index=True)


def test_study_table_shows_out_of_fold_rows_and_labels_apparent_ones() -> None:
    predictions = _predictions()
    settings = EvaluationSettings.from_params({"bootstrap": {"n_resamples": 100}})
    metrics = evaluate_predictions(predictions, settings, seed=1)
    tests_table = delong_comparisons(
        predictions, [("combined", "clinical"), ("dl_dual", "combined")], ["train_cv", "train"]
    )
    table = tables.study_table(metrics, tests_table)
    sets = dict(zip(table["Model"] + "|" + table["Data set"], table["DeLong p"], strict=True))
    assert "Combined (DL_F + clinical)|Training centres (out-of-fold)" in sets
    assert "DL dual-channel|Training centres (apparent)" in sets
    assert "Combined (DL_F + clinical)|Training centres (apparent)" not in sets
    assert sets["DL dual-channel|Training centres (apparent)"] == tables.MISSING
    assert "vs Clinical" in sets["Combined (DL_F + clinical)|Training centres (out-of-fold)"]
    # Rates carry their bootstrap intervals (on by default).
    assert re.search(r"\d\.\d{3} \(\d\.\d{3}–\d\.\d{3}\)", table["Sensitivity"].iloc[0])


def test_rates_where_the_cutoff_was_chosen_use_cutoffs_chosen_without_the_patient() -> None:
    """On train_cv (where the Youden cut-off is chosen) every rate classifies a patient with a
    cut-off chosen on the other patients; elsewhere (train, external) with the one cut-off."""
    predictions = _predictions()
    settings = EvaluationSettings.from_params({"bootstrap": {"enabled": False}})
    metrics = evaluate_predictions(predictions, settings, seed=3)
    combined = metrics["models"]["combined"]
    assert combined["threshold_split"] == "train_cv"
    rows = predictions[(predictions["model"] == "combined")]
    for split, crossed in (("train_cv", True), ("external", False), ("train", False)):
        part = rows[rows["split"] == split]
        y, p = part["clnm"].to_numpy(), part["probability"].to_numpy()
        cut = combined["threshold"]
        expected = (
            classification_metrics(y, p - cross_fitted_thresholds(y, p, CUTOFF_FOLDS, 3), 0.0)
            if crossed
            else classification_metrics(y, p, cut)
        )
        for name in ("sensitivity", "specificity", "ppv", "npv", "tp", "fn"):
            assert combined["splits"][split][name] == pytest.approx(expected[name]), (split, name)
    at_one_cut = classification_metrics(
        *(rows[rows["split"] == "train_cv"][c].to_numpy() for c in ("clnm", "probability")),
        combined["threshold"],
    )
    assert combined["splits"]["train_cv"]["tp"] != at_one_cut["tp"] or (
        combined["splits"]["train_cv"]["fp"] != at_one_cut["fp"]
    )
    assert "cut-off chosen without" in metrics["threshold_rule"]


def test_calibration_words_follow_the_intervals() -> None:
    good = {
        "calibration_slope": 0.9, "calibration_slope_lower": 0.6, "calibration_slope_upper": 1.2,
        "calibration_intercept": 0.1, "calibration_intercept_lower": -0.2,
        "calibration_intercept_upper": 0.4,
    }  # fmt: skip
    assert calibration_words(good) == "well calibrated"
    extreme = {**good, "calibration_slope": 0.5, "calibration_slope_upper": 0.8}
    assert calibration_words(extreme) == "poorly calibrated: too extreme"
    under = {**good, "calibration_intercept_lower": 0.05, "calibration_intercept": 0.3}
    assert "underestimated" in calibration_words(under)


def test_plain_summary_is_computed_from_the_numbers() -> None:
    predictions = _predictions()
    settings = EvaluationSettings.from_params({"bootstrap": {"enabled": False}})
    metrics = evaluate_predictions(predictions, settings, seed=1)
    tests_table = delong_comparisons(predictions, [("combined", "clinical")], ["external"])
    sentences = plain_summary(metrics, tests_table, pd.DataFrame(), {})
    external = metrics["models"]["combined"]["splits"]["external"]
    assert f"AUC of {external['auc']:.2f}" in sentences[0]
    assert "Combined (DL_F + clinical)" in sentences[0]
    assert any("Clinical" in s and "AUC" in s for s in sentences[1:])


# --- template -------------------------------------------------------------------------------


def _minimal_report(**kwargs) -> str:
    metrics = {"confidence_level": 0.95, "models": {}}
    return render_report(
        metrics=metrics,
        delong_tests=pd.DataFrame(columns=["split", "model_a", "model_b", "p"]),
        subgroup_auc=pd.DataFrame(),
        oracle_comparison=pd.DataFrame(),
        data_quality={"exclusions": [{"patient_id": "<b>X1</b>", "reason": "a & b"}]},
        parameters={"evaluation": {"report_template": None}},
        **kwargs,
    )


def test_a_user_template_replaces_the_default(tmp_path: Path) -> None:
    own = tmp_path / "journal.html.j2"
    own.write_text(
        "<html><body><h1>{{ title }}</h1>{% for s in sections %}[{{ s.heading }}]{% endfor %}"
        "{{ data_quality.exclusions.rows[0][0] }}</body></html>",
        encoding="utf-8",
    )
    html = _minimal_report(template=own)
    assert html.startswith("<html><body><h1>Occult")
    assert "[Study table]" in html and "<nav>" not in html
    assert "&lt;b&gt;X1&lt;/b&gt;" in html  # autoescape stays on in a user's template


def test_a_user_template_may_extend_the_packaged_one(tmp_path: Path) -> None:
    own = tmp_path / "report.html.j2"  # even under the packaged template's own name
    own.write_text(
        '{% extends "clnm/report.html.j2" %}{% block summary %}<p>Our summary.</p>{% endblock %}',
        encoding="utf-8",
    )
    html = _minimal_report(template=own)
    assert "<p>Our summary.</p>" in html
    assert "TRIPOD+AI checklist" in html


def test_a_missing_template_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReportTemplateError, match="no template file"):
        _minimal_report(template=tmp_path / "nowhere.html.j2")


def test_unknown_evaluation_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="report_templte"):
        EvaluationSettings.from_params({"report_templte": "x.j2"})
    assert EvaluationSettings.from_params({}).bootstrap is True


def test_the_packaged_template_is_package_data() -> None:
    """`pip install .` and the wheel ship the template (checked by building one: it holds
    clnm_kedro/reporting/templates/report.html.j2)."""
    project = Path(__file__).resolve().parents[1]
    config = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["clnm_kedro.reporting"]
    package = project / "src/clnm_kedro/reporting"
    shipped = {path for pattern in patterns for path in package.glob(pattern)}
    assert package / "templates/report.html.j2" in shipped
