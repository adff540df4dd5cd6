"""Minimum sample size to develop a prediction model for a binary outcome (Riley et al.).

The three criteria of Riley et al., "Calculating the sample size required for developing a
clinical prediction model", BMJ 2020;368:m441 (and Stat Med 2019;38:1276-1296), as R's
``pmsampsize(type = "b")`` computes them:

1. expected uniform shrinkage ``S >= 0.9``: ``n = P / ((S - 1) ln(1 - R2cs / S))``;
2. optimism in Nagelkerke's R² at most ``delta = 0.05``: criterion 1 with
   ``S = R2cs / (R2cs + delta * max(R2cs))``, ``max(R2cs) = 1 - exp(2 lnL_null / n)``;
3. overall risk estimated within ``+/- 0.05``: ``n = (1.96 / 0.05)^2 phi (1 - phi)``;

each rounded up, the largest being the minimum. ``P`` is the number of candidate predictor
parameters, ``phi`` the outcome prevalence, ``R2cs`` the anticipated Cox-Snell R².

:func:`cox_snell_r2` gives a model's Cox-Snell R² from its predictions (likelihood ratio
against the prevalence-only model); out-of-fold predictions give an honest anticipated value.
Riley et al. suggest ``0.15 * max(R2cs)`` as a conservative value where nothing is known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "assess_sample_size",
    "candidate_parameters",
    "cox_snell_r2",
    "max_cox_snell_r2",
    "riley_binary_sample_size",
]

_Z = 1.96
_PROBABILITY_CLIP = 1e-15


def max_cox_snell_r2(prevalence: float) -> float:
    """The largest Cox-Snell R² a model can reach at this prevalence."""
    phi = float(prevalence)
    if not 0.0 < phi < 1.0:
        raise ValueError(f"The prevalence must be between 0 and 1; got {prevalence!r}.")
    log_null = phi * math.log(phi) + (1.0 - phi) * math.log(1.0 - phi)  # per patient
    return 1.0 - math.exp(2.0 * log_null)


def cox_snell_r2(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Cox-Snell R² of predictions ``p``: ``1 - exp(-LR / n)`` against the prevalence model.

    Negative when the predictions fit worse than the prevalence alone.
    """
    labels = np.asarray(y, dtype=np.float64)
    probs = np.clip(np.asarray(p, dtype=np.float64), _PROBABILITY_CLIP, 1 - _PROBABILITY_CLIP)
    n = labels.size
    phi = labels.mean()
    if n == 0 or phi in (0.0, 1.0):
        return math.nan
    log_model = float(np.sum(labels * np.log(probs) + (1 - labels) * np.log(1 - probs)))
    log_null = n * (phi * math.log(phi) + (1 - phi) * math.log(1 - phi))
    return 1.0 - math.exp(-2.0 * (log_model - log_null) / n)


def riley_binary_sample_size(
    r2_cs: float,
    parameters: int,
    prevalence: float,
    *,
    shrinkage: float = 0.9,
    delta: float = 0.05,
    margin: float = 0.05,
) -> dict[str, Any]:
    """Riley's minimum sample size for a logistic prediction model (``pmsampsize``, "b").

    Parameters
    ----------
    r2_cs
        Anticipated Cox-Snell R² of the model (adjusted, i.e. not apparent).
    parameters
        Candidate predictor parameters (a categorical variable with k levels counts k - 1).
    prevalence
        Anticipated outcome prevalence.
    shrinkage, delta, margin
        Targets of criteria 1, 2 and 3.

    Returns
    -------
    dict
        ``criterion_1``, ``criterion_2``, ``criterion_3`` and ``minimum`` (patients, rounded
        up), ``events`` and ``events_per_parameter`` at the minimum, ``max_r2_cs``,
        ``shrinkage_2`` (the shrinkage criterion 2 implies).

    Raises
    ------
    ValueError
        If ``r2_cs`` is not positive or above the largest possible value, or another input is
        out of range.
    """
    if isinstance(parameters, bool) or int(parameters) != parameters or parameters < 1:
        raise ValueError(f"parameters must be a positive whole number; got {parameters!r}.")
    max_r2 = max_cox_snell_r2(prevalence)
    if not 0.0 < r2_cs < max_r2:
        raise ValueError(
            f"The anticipated Cox-Snell R² must be in (0, {max_r2:.3f}) at prevalence "
            f"{prevalence}; got {r2_cs!r}."
        )
    if not r2_cs < shrinkage < 1.0:
        raise ValueError(f"shrinkage must be in (R2cs, 1); got {shrinkage!r}.")

    def shrinkage_criterion(s: float) -> int:
        return math.ceil(parameters / ((s - 1.0) * math.log(1.0 - r2_cs / s)))

    n1 = shrinkage_criterion(shrinkage)
    s2 = r2_cs / (r2_cs + delta * max_r2)
    n2 = shrinkage_criterion(s2)
    n3 = math.ceil((_Z / margin) ** 2 * prevalence * (1.0 - prevalence))
    minimum = max(n1, n2, n3)
    events = math.ceil(minimum * prevalence)
    return {
        "criterion_1": n1,
        "criterion_2": n2,
        "criterion_3": n3,
        "minimum": minimum,
        "events": events,
        "events_per_parameter": minimum * prevalence / parameters,
        "max_r2_cs": max_r2,
        "shrinkage_2": s2,
    }


def candidate_parameters(model_input: pd.DataFrame, id_columns: Sequence[str]) -> int:
    """Candidate predictor parameters of a head's input: 1 per number column, k - 1 per
    text column with k levels (training rows)."""
    count = 0
    for column in model_input.columns:
        if column in id_columns:
            continue
        values = model_input[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            count += 1
        else:
            count += max(values.dropna().astype(str).nunique() - 1, 0)
    return count


def assess_sample_size(
    predictions: pd.DataFrame,
    model_inputs: Mapping[str, pd.DataFrame],
    *,
    anticipated_r2_cs: float | None,
    min_external_events: int,
    id_columns: Sequence[str] = ("patient_id", "center", "split", "clnm"),
) -> dict[str, Any]:
    """Riley's criteria for each head model against the development cohort, and the
    external set's events against ``min_external_events``.

    The anticipated Cox-Snell R² is ``anticipated_r2_cs`` when given; otherwise the model's
    own out-of-fold value (``train_cv`` predictions: honest, not apparent), replaced by the
    conservative ``0.15 * max(R2cs)`` when that is not positive or not available.
    """
    training = predictions[predictions["split"] != "external"].drop_duplicates("patient_id")
    external = predictions[predictions["split"] == "external"].drop_duplicates("patient_id")
    n = len(training)
    events = int(training["clnm"].sum()) if n else 0
    result: dict[str, Any] = {
        "development_n": n,
        "development_events": events,
        "external_n": len(external),
        "external_events": int(external["clnm"].sum()) if len(external) else 0,
        "min_external_events": int(min_external_events),
        "models": {},
    }
    if n == 0 or events in (0, n):
        return result
    prevalence = events / n
    conservative = 0.15 * max_cox_snell_r2(prevalence)
    for model, table in model_inputs.items():
        if table is None or table.empty:
            continue
        parameters = candidate_parameters(table, id_columns)
        if anticipated_r2_cs is not None:
            r2, source = float(anticipated_r2_cs), "configured"
        else:
            mine = predictions["model"] == model
            rows = predictions[mine & (predictions["split"] == "train_cv")]
            r2 = cox_snell_r2(rows["clnm"], rows["probability"]) if len(rows) else math.nan
            source = "out-of-fold"
            if not (math.isfinite(r2) and r2 > 0.0):
                r2, source = conservative, "conservative, 15% of the maximum"
        entry: dict[str, Any] = {"parameters": parameters, "r2_cs": r2, "r2_cs_source": source}
        if parameters >= 1:
            try:
                entry.update(riley_binary_sample_size(r2, parameters, prevalence))
                entry["met"] = n >= entry["minimum"]
            except ValueError as error:
                entry["error"] = str(error)
        result["models"][model] = entry
    return result
