"""Net benefit and its difference from treat-all, with stratified-bootstrap intervals.

At threshold probability ``t`` (a patient is treated when ``p >= t``; Vickers & Elkin 2006)::

    NB(model)     = TP / n - FP / n * t / (1 - t)
    NB(treat all) = phi - (1 - phi) * t / (1 - t)
    delta NB      = NB(model) - NB(treat all)

A positive delta means the model does better than operating on everyone at that threshold.
Intervals: percentile intervals over stratified bootstrap resamples (cases and controls
resampled separately, as :func:`clnm_kedro.metrics.bootstrap_ci`); with the prevalence fixed
by the stratification, the interval of delta reflects the model's classification only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from clnm_kedro.reporting.predictions import models_in, shown_split, split_rows

__all__ = ["NET_BENEFIT_COLUMNS", "net_benefit_by_model", "net_benefit_with_ci"]

NET_BENEFIT_COLUMNS: tuple[str, ...] = (
    "threshold",
    "net_benefit",
    "net_benefit_lower",
    "net_benefit_upper",
    "net_benefit_treat_all",
    "delta_treat_all",
    "delta_lower",
    "delta_upper",
)


def _net_benefit(labels: np.ndarray, matrix: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Net benefit of every row of ``matrix`` (r, n) at each threshold: shape (r, t)."""
    n = labels.size
    event = labels.astype(bool)
    treated = matrix[:, :, np.newaxis] >= thresholds[np.newaxis, np.newaxis, :]
    tp = np.sum(treated & event[np.newaxis, :, np.newaxis], axis=1)
    fp = np.sum(treated & ~event[np.newaxis, :, np.newaxis], axis=1)
    odds = thresholds / (1.0 - thresholds)
    return tp / n - fp / n * odds[np.newaxis, :]


def net_benefit_with_ci(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    thresholds: Sequence[float],
    *,
    seed: int,
    n_boot: int = 2000,
    level: float = 0.95,
) -> pd.DataFrame:
    """Net benefit, treat-all and their difference with intervals at each threshold.

    Parameters
    ----------
    y, p
        Outcomes (0/1, both present) and predicted probabilities.
    thresholds
        Threshold probabilities in (0, 1).
    seed, n_boot, level
        Bootstrap seed, resamples (0: no intervals) and confidence level.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`NET_BENEFIT_COLUMNS`, one row per threshold.
    """
    labels = np.asarray(y, dtype=np.int64)
    probs = np.asarray(p, dtype=np.float64)
    cuts = np.asarray(thresholds, dtype=np.float64)
    if labels.size != probs.size:
        raise ValueError("y and p must have the same length.")
    if not np.all((cuts > 0.0) & (cuts < 1.0)):
        raise ValueError(f"Thresholds must lie in (0, 1); got {cuts.tolist()}.")
    if labels.min() == labels.max():
        raise ValueError("Net benefit intervals need patients with and without the event.")
    phi = labels.mean()
    odds = cuts / (1.0 - cuts)
    treat_all = phi - (1.0 - phi) * odds
    point = _net_benefit(labels, probs[np.newaxis, :], cuts)[0]
    table = pd.DataFrame(
        {
            "threshold": cuts,
            "net_benefit": point,
            "net_benefit_lower": np.nan,
            "net_benefit_upper": np.nan,
            "net_benefit_treat_all": treat_all,
            "delta_treat_all": point - treat_all,
            "delta_lower": np.nan,
            "delta_upper": np.nan,
        }
    )
    if n_boot < 1:
        return table
    rng = np.random.default_rng(seed)
    cases, controls = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    alpha = 1.0 - level
    # Chunks keep the (resamples, patients, thresholds) boolean array small.
    chunk = max(1, 4_000_000 // max(1, labels.size * cuts.size))
    replicates = []
    layout = np.concatenate([np.ones(cases.size), np.zeros(controls.size)]).astype(np.int64)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        rows = np.concatenate(
            [
                cases[rng.integers(0, cases.size, size=(size, cases.size))],
                controls[rng.integers(0, controls.size, size=(size, controls.size))],
            ],
            axis=1,
        )
        replicates.append(_net_benefit(layout, probs[rows], cuts))
    values = np.concatenate(replicates, axis=0)
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0], axis=0)
    table["net_benefit_lower"], table["net_benefit_upper"] = low, high
    # Treat-all is fixed under stratified resampling, so delta's interval is a shift.
    table["delta_lower"], table["delta_upper"] = low - treat_all, high - treat_all
    return table


def net_benefit_by_model(
    predictions: pd.DataFrame,
    panels: Sequence[str],
    thresholds: Sequence[float],
    *,
    seed: int,
    n_boot: int,
    level: float,
) -> pd.DataFrame:
    """:func:`net_benefit_with_ci` of every model on each data set of ``panels``.

    A ``train_cv`` panel uses a model's out-of-fold predictions, or its apparent ones where it
    has none (``split`` says which). Models with one outcome class in a set are left out.

    Returns
    -------
    pandas.DataFrame
        ``panel, model, split`` and :data:`NET_BENEFIT_COLUMNS`.
    """
    parts = []
    for panel in panels:
        wanted = set(models_in(predictions, panel))
        if panel == "train_cv":
            wanted |= set(models_in(predictions, "train"))
        for model in [m for m in models_in(predictions) if m in wanted]:
            split = shown_split(predictions, model, panel)
            rows = split_rows(predictions, model, split)
            y = rows["clnm"].to_numpy(dtype=np.int64)
            if y.size == 0 or y.min() == y.max():
                continue
            table = net_benefit_with_ci(
                y, rows["probability"].to_numpy(), thresholds, seed=seed, n_boot=n_boot,
                level=level,
            )  # fmt: skip
            parts.append(table.assign(panel=panel, model=model, split=split))
    columns = ["panel", "model", "split", *NET_BENEFIT_COLUMNS]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]
