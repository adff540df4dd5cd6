"""Comparisons between the models: paired DeLong tests with their power, AUC by subgroup
with interaction tests, and each model against the oracle (synthetic cohort)."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import special, stats

from clnm_kedro.metrics import delong_test
from clnm_kedro.metrics.delong import _delong_covariance
from clnm_kedro.metrics.power import paired_auc_power, power_statement
from clnm_kedro.reporting.evaluation_settings import EvaluationSettings
from clnm_kedro.reporting.performance import NAN, _both_classes, auc_with_ci
from clnm_kedro.reporting.predictions import (
    model_label,
    models_in,
    paired_scores,
    split_label,
    split_rows,
    split_subject,
)

logger = logging.getLogger(__name__)

# difference = auc_a - auc_b with its DeLong (normal) interval, the same variance as the test:
# the interval excludes 0 exactly when p < 1 - confidence_level.
DELONG_COLUMNS: tuple[str, ...] = (
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
    "n",
)
# Power of each paired test (metrics.power): 80 % power, two-sided alpha 0.05, same prevalence.
POWER_COLUMNS: tuple[str, ...] = (
    "events",
    "auc_correlation",
    "detectable_difference",
    "n_needed",
    "power_statement",
)
# How the report heads each power column, and whether its cells are patient counts.
POWER_LABELS: dict[str, str] = {
    "events": "Patients with CLNM",
    "auc_correlation": "Correlation of the two AUCs",
    "detectable_difference": "Smallest difference detectable (80% power)",
    "n_needed": "Patients needed for the observed difference",
    "power_statement": "What the test can tell",
}
POWER_COUNTS: frozenset[str] = frozenset({"events", "n_needed"})
SUBGROUP_COLUMNS: tuple[str, ...] = (
    "variable",
    "subgroup",
    "model",
    "n",
    "events",
    "auc",
    "auc_lower",
    "auc_upper",
    "interaction_p",
    "caution",
)
ORACLE_COLUMNS: tuple[str, ...] = (
    "split",
    "model",
    "n",
    "events",
    "auc",
    "auc_lower",
    "auc_upper",
    "oracle_auc",
    "oracle_auc_lower",
    "oracle_auc_upper",
    "delong_p",
)


# --- Paired DeLong tests ------------------------------------------------------------------------


def auc_difference_ci(
    y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, level: float = 0.95
) -> tuple[float, float, float]:
    """``AUC(a) - AUC(b)`` with its normal interval from DeLong's paired covariance.

    The variance is the paired DeLong test's (:func:`clnm_kedro.metrics.delong_test`), so the
    interval excludes 0 exactly when the test's two-sided p is below ``1 - level``.
    """
    auc, covariance = _delong_covariance(
        np.asarray(y, dtype=np.int64), np.vstack([p_a, p_b]).astype(np.float64)
    )
    difference = float(auc[0] - auc[1])
    variance = float(covariance[0, 0] + covariance[1, 1] - 2.0 * covariance[0, 1])
    half = float(stats.norm.ppf(0.5 + level / 2.0)) * math.sqrt(max(variance, 0.0))
    return difference, difference - half, difference + half


def delong_comparisons(
    predictions: pd.DataFrame,
    comparisons: Iterable[tuple[str, str]],
    splits: Iterable[str],
    level: float = 0.95,
) -> pd.DataFrame:
    """Paired DeLong tests of the configured model pairs on each split.

    Each row also has the AUC difference with its interval at ``level``.

    Pairs with a model absent from a split are skipped with a log line; pairs that cannot be
    tested (too few events) get NaN ``z`` and ``p``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`DELONG_COLUMNS`.
    """
    rows: list[dict[str, Any]] = []
    for split in splits:
        present = set(models_in(predictions, split))
        for model_a, model_b in comparisons:
            missing = [model for model in (model_a, model_b) if model not in present]
            if missing:
                logger.info(
                    "DeLong test %s vs %s on the %s skipped: no predictions of %s.",
                    model_a,
                    model_b,
                    split_label(split).lower(),
                    " and ".join(missing),
                )
                continue
            y, p_a, p_b = paired_scores(predictions, split, model_a, model_b)
            difference = lower = upper = NAN
            power: dict[str, Any] = dict.fromkeys(POWER_COLUMNS, NAN)
            if _both_classes(y, minimum=2):
                test = delong_test(y, p_a, p_b)
                auc_a, auc_b, z, p = test.auc_a, test.auc_b, test.z, test.p
                difference, lower, upper = auc_difference_ci(y, p_a, p_b, level)
                design = paired_auc_power(y, p_a, p_b)
                power = {
                    "events": design.events,
                    "auc_correlation": design.correlation,
                    "detectable_difference": design.detectable_difference,
                    "n_needed": design.n_needed,
                    "power_statement": power_statement(
                        design,
                        model_label(model_a),
                        model_label(model_b),
                        split_subject(split),
                    ),
                }
            else:
                logger.warning(
                    "DeLong test %s vs %s on the %s not estimable: too few patients with or "
                    "without CLNM.",
                    model_a,
                    model_b,
                    split_label(split).lower(),
                )
                auc_a, auc_b, z, p = NAN, NAN, NAN, NAN
            rows.append(
                {
                    "split": split,
                    "model_a": model_a,
                    "model_b": model_b,
                    "auc_a": auc_a,
                    "auc_b": auc_b,
                    "difference": difference,
                    "difference_lower": lower,
                    "difference_upper": upper,
                    "z": z,
                    "p": p,
                    "n": int(y.size),
                    **power,
                }
            )
    return pd.DataFrame(rows, columns=[*DELONG_COLUMNS, *POWER_COLUMNS])


def power_block(delong_tests: pd.DataFrame) -> dict[str, Any]:
    """metrics.json's ``power``: per split and ``<a>_vs_<b>``, what each paired test can detect.

    From the rows of :func:`delong_comparisons`: the observed AUC difference, the smallest
    difference detectable with 80 % power (two-sided alpha 0.05) and the patients needed at the
    same prevalence to detect the observed one, with the sentence stating both.
    """
    block: dict[str, Any] = {}
    for row in delong_tests.itertuples(index=False):
        block.setdefault(row.split, {})[f"{row.model_a}_vs_{row.model_b}"] = {
            "auc_difference": row.auc_a - row.auc_b,
            **{key: getattr(row, key) for key in POWER_COLUMNS},
        }
    return block


# --- Subgroups ----------------------------------------------------------------------------------


def _subgroup_masks(
    cohort: pd.DataFrame, age_cutoff: float, size_cutoff: float
) -> list[tuple[str, str, pd.Series]]:
    masks: list[tuple[str, str, pd.Series]] = [
        ("all", "all patients", pd.Series(True, index=cohort.index))
    ]
    if "sex" in cohort.columns:
        sex = cohort["sex"].astype("string").str.upper()
        for value, words in (("F", "female"), ("M", "male")):
            masks.append(("sex", words, sex == value))
    else:
        logger.info("Subgroups by sex skipped: the cohort table has no 'sex' column.")
    if "age" in cohort.columns:
        age = pd.to_numeric(cohort["age"], errors="coerce")
        masks += [
            ("age", f"age < {age_cutoff:g} years", age < age_cutoff),
            ("age", f"age ≥ {age_cutoff:g} years", age >= age_cutoff),
        ]
    else:
        logger.info("Subgroups by age skipped: the cohort table has no 'age' column.")
    if "tumor_size_mm" in cohort.columns:
        size = pd.to_numeric(cohort["tumor_size_mm"], errors="coerce")
        masks += [
            ("tumor_size", f"tumour ≤ {size_cutoff:g} mm", size <= size_cutoff),
            ("tumor_size", f"tumour > {size_cutoff:g} mm", size > size_cutoff),
        ]
    else:
        logger.info("Subgroups by tumour size skipped: no 'tumor_size_mm' column.")
    return [(variable, name, mask.fillna(False).astype(bool)) for variable, name, mask in masks]


def interaction_test(y: np.ndarray, p: np.ndarray, group: np.ndarray) -> float:
    """p-value of the likelihood-ratio test of a score x subgroup interaction.

    Compares ``logit P(y=1) = a + b logit(p) + c g + d logit(p) g`` with the model without
    ``d`` (``g`` 0/1): a small p means the model's score relates to the outcome differently
    in the two subgroups. NaN when either fit is not estimable.
    """
    score = special.logit(np.clip(np.asarray(p, dtype=np.float64), 1e-15, 1 - 1e-15))
    g = np.asarray(group, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.size < 10 or y.min() == y.max() or g.min() == g.max():
        return NAN
    reduced = np.column_stack([np.ones_like(score), score, g])
    full = np.column_stack([reduced, score * g])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            small = sm.GLM(y, reduced, family=sm.families.Binomial()).fit()
            large = sm.GLM(y, full, family=sm.families.Binomial()).fit()
    except (np.linalg.LinAlgError, ValueError):
        return NAN
    statistic = 2.0 * (large.llf - small.llf)
    if not math.isfinite(statistic):
        return NAN
    return float(stats.chi2.sf(max(statistic, 0.0), 1))


def subgroup_auc(
    predictions: pd.DataFrame,
    cohort_table: pd.DataFrame,
    settings: EvaluationSettings,
) -> pd.DataFrame:
    """AUC with DeLong CI of every model by subgroup (sex, age, tumour size) on one split.

    Patients missing the subgroup variable are left out of that variable's subgroups. A
    subgroup with one outcome class gets NaN AUC and CI (not an error).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUBGROUP_COLUMNS`, one row per subgroup and model.
    """
    split = settings.subgroup_split
    if "patient_id" not in cohort_table.columns:
        raise ValueError("cohort_table lacks the column 'patient_id'.")
    cohort = (
        cohort_table.assign(patient_id=cohort_table["patient_id"].astype(str))
        .drop_duplicates("patient_id")
        .set_index("patient_id")
    )
    rows: list[dict[str, Any]] = []
    for model in models_in(predictions, split):
        scored = split_rows(predictions, model, split).set_index("patient_id")
        unknown = scored.index.difference(cohort.index)
        if len(unknown):
            logger.warning(
                "%d patient(s) scored by %s are not in the cohort table (e.g. %s) and are left "
                "out of the subgroups.",
                len(unknown),
                model_label(model),
                unknown[0],
            )
            scored = scored.drop(index=unknown)
        matched = cohort.loc[scored.index]
        masks = _subgroup_masks(matched, settings.age_cutoff_years, settings.tumor_size_cutoff_mm)
        interactions: dict[str, float] = {}
        for variable in dict.fromkeys(v for v, _, _ in masks if v != "all"):
            pair = [mask for v, _, mask in masks if v == variable]
            known = (pair[0] | pair[1]).to_numpy()
            interactions[variable] = interaction_test(
                scored["clnm"].to_numpy()[known],
                scored["probability"].to_numpy()[known],
                pair[0].to_numpy()[known].astype(np.float64),
            )
        for variable, name, mask in masks:
            chosen = scored[mask.to_numpy()]
            y = chosen["clnm"].to_numpy(dtype=np.int64)
            p = chosen["probability"].to_numpy(dtype=np.float64)
            auc, lower, upper = auc_with_ci(y, p, settings.confidence_level)
            rows.append(
                {
                    "variable": variable,
                    "subgroup": name,
                    "model": model,
                    "n": int(y.size),
                    "events": int(y.sum()),
                    "auc": auc,
                    "auc_lower": lower,
                    "auc_upper": upper,
                    "interaction_p": interactions.get(variable, NAN),
                    "caution": int(y.sum()) < settings.subgroup_min_events,
                }
            )
    return pd.DataFrame(rows, columns=list(SUBGROUP_COLUMNS))


# --- Oracle -------------------------------------------------------------------------------------


def oracle_comparison(
    predictions: pd.DataFrame, oracle: pd.DataFrame, settings: EvaluationSettings
) -> pd.DataFrame:
    """Each model's AUC beside the AUC of the simulator's true risk, on the same patients.

    The oracle risk is what the best possible model would predict; a model's AUC above it on
    the training set points to overfitting. A real cohort has no oracle (an empty table):
    the result is then empty.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ORACLE_COLUMNS` (``delong_p``: paired DeLong test model vs oracle).
    """
    empty = pd.DataFrame(columns=list(ORACLE_COLUMNS))
    if oracle is None or oracle.empty:
        logger.info("No oracle risk for this cohort (a real cohort): no oracle comparison.")
        return empty
    missing = [column for column in ("patient_id", "oracle_risk") if column not in oracle.columns]
    if missing:
        raise ValueError(f"simulation_oracle lacks column(s) {missing}.")
    risk = pd.to_numeric(oracle["oracle_risk"], errors="coerce")
    bad = ~risk.between(0.0, 1.0)
    if bad.any():
        raise ValueError(
            "simulation_oracle: oracle_risk must be a probability in [0, 1]; patient(s) "
            f"{oracle.loc[bad, 'patient_id'].astype(str).tolist()[:5]} are not."
        )
    true_risk = pd.Series(risk.to_numpy(), index=oracle["patient_id"].astype(str))
    true_risk = true_risk[~true_risk.index.duplicated()]
    level = settings.confidence_level
    rows: list[dict[str, Any]] = []
    for split in ("external", "train", "train_cv"):
        for model in models_in(predictions, split):
            scored = split_rows(predictions, model, split).set_index("patient_id")
            common = scored.index.intersection(true_risk.index)
            if len(common) < len(scored):
                logger.warning(
                    "%d %s patient(s) of %s have no oracle risk and are left out.",
                    len(scored) - len(common),
                    split_label(split).lower(),
                    model_label(model),
                )
            y = scored.loc[common, "clnm"].to_numpy(dtype=np.int64)
            p = scored.loc[common, "probability"].to_numpy(dtype=np.float64)
            q = true_risk.loc[common].to_numpy(dtype=np.float64)
            auc, lower, upper = auc_with_ci(y, p, level)
            oracle_auc, oracle_lower, oracle_upper = auc_with_ci(y, q, level)
            p_value = delong_test(y, p, q).p if _both_classes(y, minimum=2) else NAN
            rows.append(
                {
                    "split": split,
                    "model": model,
                    "n": int(y.size),
                    "events": int(y.sum()),
                    "auc": auc,
                    "auc_lower": lower,
                    "auc_upper": upper,
                    "oracle_auc": oracle_auc,
                    "oracle_auc_lower": oracle_lower,
                    "oracle_auc_upper": oracle_upper,
                    "delong_p": p_value,
                }
            )
    return pd.DataFrame(rows, columns=list(ORACLE_COLUMNS)) if rows else empty
