"""The ``evaluation`` parameter block, validated once (:class:`EvaluationSettings`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clnm_kedro.checks import whole_number
from clnm_kedro.registry import STUDY_COMPARISONS
from clnm_kedro.reporting.predictions import SPLIT_ORDER


def _positive_int(value: Any, name: str) -> int:
    return whole_number(value, f"evaluation.{name}", 1)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"evaluation.{name} must be a number; got {value!r}.")
    return float(value)


def _splits(values: Any, name: str) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"evaluation.{name} must be a non-empty list of splits; got {values!r}.")
    unknown = [value for value in values if value not in SPLIT_ORDER]
    if unknown:
        raise ValueError(
            f"evaluation.{name} lists unknown split(s) {unknown}; use {list(SPLIT_ORDER)}."
        )
    return tuple(values)


def _pairs(values: Any, name: str) -> tuple[tuple[str, str], ...]:
    if values is None:
        return ()
    pairs: list[tuple[str, str]] = []
    for item in values:
        if isinstance(item, str) or not isinstance(item, Sequence) or len(item) != 2:
            raise ValueError(f"evaluation.{name} must list [model_a, model_b] pairs; got {item!r}.")
        a, b = (str(model) for model in item)
        if a == b:
            raise ValueError(f"evaluation.{name}: cannot compare {a} with itself.")
        pairs.append((a, b))
    return tuple(pairs)


@dataclass(frozen=True)
class EvaluationSettings:
    """The ``evaluation`` parameter block, checked (see ``parameters_evaluation.yml``)."""

    confidence_level: float = 0.95
    threshold_splits: tuple[str, ...] = ("train_cv", "train")
    bootstrap: bool = True
    bootstrap_resamples: int = 2000
    calibration_bins: int = 10
    comparisons: tuple[tuple[str, str], ...] = STUDY_COMPARISONS
    comparison_splits: tuple[str, ...] = ("train_cv", "external")
    figure_splits: tuple[str, ...] = ("train_cv", "external")
    net_benefit_thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
    decision_thresholds: tuple[float, ...] = field(
        default_factory=lambda: tuple(round(0.01 * i, 2) for i in range(1, 100))
    )
    subgroup_split: str = "external"
    age_cutoff_years: float = 45.0
    tumor_size_cutoff_mm: float = 5.0
    gradcam_patients: int = 6
    gradcam_split: str = "external"
    subgroup_min_events: int = 20
    min_external_events: int = 100
    anticipated_r2_cs: float | None = None
    report_template: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> EvaluationSettings:
        """Read and check the ``evaluation`` parameter block (missing keys take defaults)."""
        params = dict(params or {})
        defaults = cls()
        level = _number(
            params.get("confidence_level", defaults.confidence_level), "confidence_level"
        )
        if not 0.0 < level < 1.0:
            raise ValueError(f"evaluation.confidence_level must be between 0 and 1; got {level!r}.")
        threshold_splits = _splits(
            params.get("threshold_splits", defaults.threshold_splits), "threshold_splits"
        )
        if "external" in threshold_splits:
            raise ValueError(
                "evaluation.threshold_splits must not contain 'external': the threshold is "
                "chosen on training data and only then applied to the external set."
            )
        boot = dict(params.get("bootstrap") or {})
        subgroups = dict(params.get("subgroups") or {})
        gradcam = dict(params.get("gradcam") or {})
        decision = dict(params.get("decision_curve") or {})
        lowest = _number(decision.get("min_threshold", 0.01), "decision_curve.min_threshold")
        highest = _number(decision.get("max_threshold", 0.99), "decision_curve.max_threshold")
        step = _number(decision.get("step", 0.01), "decision_curve.step")
        if not (0.0 <= lowest < highest < 1.0 and step > 0.0):
            raise ValueError(
                "evaluation.decision_curve needs 0 <= min_threshold < max_threshold < 1 and "
                f"step > 0; got {decision!r}."
            )
        n_steps = math.floor((highest - lowest) / step + 1e-9)
        thresholds = tuple(round(lowest + i * step, 10) for i in range(n_steps + 1))
        subgroup_split = str(subgroups.get("split", defaults.subgroup_split))
        gradcam_split = str(gradcam.get("split", defaults.gradcam_split))
        _splits([subgroup_split], "subgroups.split")
        if gradcam_split not in ("train", "external"):
            raise ValueError(
                f"evaluation.gradcam.split must be 'train' or 'external'; got {gradcam_split!r}."
            )
        known = {
            "confidence_level", "threshold_splits", "bootstrap", "calibration_bins",
            "extra_comparisons", "comparison_splits", "figure_splits", "decision_curve",
            "net_benefit_thresholds", "subgroups", "gradcam", "sample_size", "report_template",
        }  # fmt: skip
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"Unknown evaluation setting(s) {unknown}; known: {sorted(known)}.")
        net_cuts = params.get("net_benefit_thresholds", defaults.net_benefit_thresholds)
        if isinstance(net_cuts, str) or not isinstance(net_cuts, Sequence) or not net_cuts:
            raise ValueError(
                "evaluation.net_benefit_thresholds must be a non-empty list of threshold "
                f"probabilities; got {net_cuts!r}."
            )
        net_cuts = tuple(_number(v, "net_benefit_thresholds") for v in net_cuts)
        if not all(0.0 < v < 1.0 for v in net_cuts):
            raise ValueError(
                f"evaluation.net_benefit_thresholds must lie in (0, 1); got {list(net_cuts)}."
            )
        sample = dict(params.get("sample_size") or {})
        unknown_sample = sorted(set(sample) - {"anticipated_r2_cs", "min_external_events"})
        if unknown_sample:
            raise ValueError(f"Unknown evaluation.sample_size setting(s) {unknown_sample}.")
        r2 = sample.get("anticipated_r2_cs")
        if r2 is not None:
            r2 = _number(r2, "sample_size.anticipated_r2_cs")
            if not 0.0 < r2 < 1.0:
                raise ValueError(
                    f"evaluation.sample_size.anticipated_r2_cs must be in (0, 1); got {r2!r}."
                )
        template = params.get("report_template")
        if template is not None and (not isinstance(template, str) or not template.strip()):
            raise ValueError(
                "evaluation.report_template must be null (the packaged template) or the path "
                f"of a Jinja2 template; got {template!r}."
            )
        extra = _pairs(params.get("extra_comparisons"), "extra_comparisons")
        comparisons = tuple(dict.fromkeys((*STUDY_COMPARISONS, *extra)))
        return cls(
            confidence_level=level,
            threshold_splits=threshold_splits,
            bootstrap=bool(boot.get("enabled", defaults.bootstrap)),
            bootstrap_resamples=_positive_int(
                boot.get("n_resamples", defaults.bootstrap_resamples), "bootstrap.n_resamples"
            ),
            calibration_bins=_positive_int(
                params.get("calibration_bins", defaults.calibration_bins), "calibration_bins"
            ),
            comparisons=comparisons,
            comparison_splits=_splits(
                params.get("comparison_splits", defaults.comparison_splits), "comparison_splits"
            ),
            figure_splits=_splits(
                params.get("figure_splits", defaults.figure_splits), "figure_splits"
            ),
            decision_thresholds=thresholds,
            subgroup_split=subgroup_split,
            age_cutoff_years=_number(
                subgroups.get("age_cutoff_years", defaults.age_cutoff_years),
                "subgroups.age_cutoff_years",
            ),
            tumor_size_cutoff_mm=_number(
                subgroups.get("tumor_size_cutoff_mm", defaults.tumor_size_cutoff_mm),
                "subgroups.tumor_size_cutoff_mm",
            ),
            gradcam_patients=_positive_int(
                gradcam.get("n_patients", defaults.gradcam_patients), "gradcam.n_patients"
            ),
            gradcam_split=gradcam_split,
            net_benefit_thresholds=net_cuts,
            subgroup_min_events=_positive_int(
                subgroups.get("min_events", defaults.subgroup_min_events), "subgroups.min_events"
            ),
            min_external_events=_positive_int(
                sample.get("min_external_events", defaults.min_external_events),
                "sample_size.min_external_events",
            ),
            anticipated_r2_cs=r2,
            report_template=template,
        )
