"""The report's plain-language summary, written from the numbers of the run.

Every sentence is chosen and filled from the results; nothing is fixed text. The wording
rules, stated once here:

- discrimination: AUC >= 0.8 "good", 0.7-0.8 "moderate", below 0.7 "poor" (Hosmer &
  Lemeshow's usual bands);
- "well calibrated" when the interval of the calibration slope covers 1 and that of
  calibration-in-the-large covers 0; otherwise the direction of each miscalibration is named
  (slope below 1: risks too extreme; above 1: too modest; intercept above 0: risks
  underestimated on average; below 0: overestimated);
- a difference between two models is called a difference when its interval excludes 0 (the
  DeLong test's p below 1 - confidence level), otherwise "no clear difference";
- net benefit "higher than operating on every patient and on none" at a threshold when the
  intervals of its difference from treat-all and of the net benefit itself are above 0;
- the external set is "small" below the configured number of events (usually 100).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from clnm_kedro.registry import PRIMARY_MODELS  # the first present: the summary's first model
from clnm_kedro.reporting.predictions import MODEL_ORDER, model_label

__all__ = ["PRIMARY_MODELS", "calibration_words", "discrimination_word", "plain_summary"]



def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: Any, digits: int = 2) -> str:
    number = _num(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else "not estimable"


def _ci(values: Mapping[str, Any], key: str, digits: int = 2, label: str = "") -> str:
    low, high = _num(values.get(f"{key}_lower")), _num(values.get(f"{key}_upper"))
    if math.isfinite(low) and math.isfinite(high):
        return (
            f"{_fmt(values.get(key), digits)} ({label}{_fmt(low, digits)} to "
            f"{_fmt(high, digits)})"
        )
    return _fmt(values.get(key), digits)


def discrimination_word(auc: float) -> str:
    """``good``, ``moderate`` or ``poor`` (see the module notes)."""
    if not math.isfinite(auc):
        return "not estimable"
    if auc >= 0.8:
        return "good"
    if auc >= 0.7:
        return "moderate"
    return "poor"


def _covers(values: Mapping[str, Any], key: str, target: float) -> bool | None:
    low, high = _num(values.get(f"{key}_lower")), _num(values.get(f"{key}_upper"))
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low <= target <= high


def calibration_words(values: Mapping[str, Any]) -> str:
    """How well calibrated a model's risks are, from the intervals of slope and intercept."""
    slope_ok = _covers(values, "calibration_slope", 1.0)
    intercept_ok = _covers(values, "calibration_intercept", 0.0)
    if slope_ok is None or intercept_ok is None:
        return "of calibration that could not be assessed"
    if slope_ok and intercept_ok:
        return "well calibrated"
    problems = []
    if not slope_ok:
        slope = _num(values.get("calibration_slope"))
        problems.append("too extreme" if slope < 1.0 else "too modest (too close to average)")
    if not intercept_ok:
        intercept = _num(values.get("calibration_intercept"))
        problems.append(
            "underestimated on average" if intercept > 0.0 else "overestimated on average"
        )
    return "poorly calibrated: " + " and ".join(problems)


def _primary(models: Mapping[str, Any]) -> str | None:
    for model in PRIMARY_MODELS:
        if "external" in models.get(model, {}).get("splits", {}):
            return model
    with_external = [m for m, e in models.items() if "external" in e.get("splits", {})]
    return with_external[0] if with_external else None


def _ordered(models: Mapping[str, Any]) -> list[str]:
    return sorted(models, key=lambda m: (MODEL_ORDER.index(m) if m in MODEL_ORDER else 99, m))


def plain_summary(
    metrics: Mapping[str, Any],
    delong_tests: pd.DataFrame,
    net_benefit: pd.DataFrame,
    sample_size: Mapping[str, Any],
    report_thresholds: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
) -> list[str]:
    """Sentences summarising the run, in plain language, chosen from the numbers."""
    models = metrics.get("models", {})
    level = float(metrics.get("confidence_level", 0.95))
    percent = f"{100 * level:g}%"
    sentences: list[str] = []
    primary = _primary(models)
    if primary is None:
        return ["No model was evaluated on an external set, so nothing can be summarised."]
    external = models[primary]["splits"]["external"]
    auc = _num(external.get("auc"))
    sentences.append(
        f"On the external centre ({external.get('n')} patients, {external.get('events')} with "
        f"CLNM), the {model_label(primary)} model separated patients with and without "
        f"CLNM with an AUC of {_ci(external, 'auc', label=percent + ' CI ')}: "
        f"{discrimination_word(auc)} discrimination."
    )
    development = models[primary]["splits"].get("train_cv")
    if development is not None:
        gap = auc - _num(development.get("auc"))
        direction = "lower" if gap < 0 else "higher"
        sentences.append(
            f"Its out-of-fold AUC on the training centres was {_fmt(development.get('auc'))}; "
            f"the external AUC was {abs(gap):.2f} {direction}."
        )
    sentences.append(
        f"Its predicted risks were {calibration_words(external)} on the external centre "
        f"(calibration slope {_ci(external, 'calibration_slope')}, calibration-in-the-large "
        f"{_ci(external, 'calibration_intercept')}, observed/expected "
        f"{_ci(external, 'observed_expected')})."
    )
    tests = delong_tests[(delong_tests["split"] == "external")] if not delong_tests.empty else None
    if tests is not None and "difference" in tests.columns:
        for row in tests.to_dict("records"):
            diff = _num(row.get("difference"))
            low, high = _num(row.get("difference_lower")), _num(row.get("difference_upper"))
            if not (math.isfinite(low) and math.isfinite(high)):
                continue
            a, b = model_label(row["model_a"]), model_label(row["model_b"])
            if low > 0 or high < 0:
                word = "higher" if diff > 0 else "lower"
                sentences.append(
                    f"On the external centre the {a} model's AUC was {word} than the {b} "
                    f"model's by {abs(diff):.3f} ({percent} CI {low:.3f} to {high:.3f}, "
                    f"p = {_fmt(row.get('p'), 3)})."
                )
            else:
                sentences.append(
                    f"On the external centre there was no clear difference in AUC between the "
                    f"{a} and {b} models ({diff:+.3f}, {percent} CI {low:.3f} to {high:.3f})."
                )
    if not net_benefit.empty:
        rows = net_benefit[
            (net_benefit["model"] == primary)
            & (net_benefit["panel"] == "external")
            & net_benefit["threshold"].round(6).isin([round(t, 6) for t in report_thresholds])
        ]
        # Better than both default strategies: treat all (delta) and treat none (NB itself).
        better = rows[(rows["delta_lower"] > 0) & (rows["net_benefit_lower"] > 0)][
            "threshold"
        ].tolist()
        worse = rows[rows["delta_upper"] < 0]["threshold"].tolist()
        if not rows.empty:
            if better:
                listed = ", ".join(f"{t:.2f}" for t in better)
                sentences.append(
                    f"The {model_label(primary)} model gave a higher net benefit than both "
                    f"operating on every patient and on none at threshold(s) {listed} on the "
                    "external centre."
                )
            else:
                sentences.append(
                    f"At none of the thresholds {', '.join(f'{t:.2f}' for t in rows['threshold'])}"
                    " was its net benefit clearly above both operating on every patient and on "
                    "none on the external centre."
                )
            if worse:
                sentences.append(
                    "It was clearly below treat-all at threshold(s) "
                    + ", ".join(f"{t:.2f}" for t in worse)
                    + "."
                )
    for model in _ordered(models):
        if model == primary or "external" not in models[model].get("splits", {}):
            continue
        values = models[model]["splits"]["external"]
        sentences.append(
            f"{model_label(model)}: external AUC {_ci(values, 'auc')}, "
            f"{discrimination_word(_num(values.get('auc')))} discrimination, "
            f"{calibration_words(values)}."
        )
    for model, entry in (sample_size.get("models") or {}).items():
        if "minimum" not in entry:
            continue
        verdict = "meets" if entry.get("met") else "does not meet"
        sentences.append(
            f"The development cohort ({sample_size.get('development_n')} patients, "
            f"{sample_size.get('development_events')} events) {verdict} the minimum sample "
            f"size of {entry['minimum']} for the {model_label(model)} model "
            f"({entry.get('parameters')} candidate parameters, Riley et al.)."
        )
    events = sample_size.get("external_events")
    needed = sample_size.get("min_external_events")
    if events is not None and needed is not None:
        if events < needed:
            sentences.append(
                f"The external set has {events} events, fewer than the {needed} usually "
                "recommended for a validation: its estimates are imprecise."
            )
        else:
            sentences.append(
                f"The external set has {events} events (at least the {needed} recommended)."
            )
    return sentences
