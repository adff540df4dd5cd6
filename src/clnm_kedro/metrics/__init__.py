"""Evaluation statistics on plain numpy arrays, importable without Kedro.

AUC with DeLong confidence interval and paired DeLong test (matching R's pROC), stratified
bootstrap intervals, Youden threshold and classification metrics, calibration and
decision-curve analysis. Outcomes are 0/1 with 1 = event (CLNM); scores are model
probabilities of the event, higher meaning more likely.
"""

from __future__ import annotations

from clnm_kedro.metrics.bootstrap import BootstrapCI, bootstrap_ci
from clnm_kedro.metrics.calibration import (
    CalibrationFit,
    HosmerLemeshow,
    brier_score,
    calibration_intercept_slope,
    hosmer_lemeshow,
    quantile_groups,
    reliability_curve,
)
from clnm_kedro.metrics.decision_curve import DEFAULT_THRESHOLDS, net_benefit
from clnm_kedro.metrics.delong import (
    AucCI,
    AucVariance,
    DelongTest,
    auc_delong,
    auc_per_row,
    delong_ci,
    delong_test,
)
from clnm_kedro.metrics.recalibration import LogitCalibration
from clnm_kedro.metrics.thresholds import (
    classification_metrics,
    cross_fitted_thresholds,
    youden_threshold,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "AucCI",
    "AucVariance",
    "BootstrapCI",
    "CalibrationFit",
    "DelongTest",
    "HosmerLemeshow",
    "LogitCalibration",
    "auc_delong",
    "auc_per_row",
    "bootstrap_ci",
    "brier_score",
    "calibration_intercept_slope",
    "classification_metrics",
    "cross_fitted_thresholds",
    "delong_ci",
    "delong_test",
    "hosmer_lemeshow",
    "net_benefit",
    "quantile_groups",
    "reliability_curve",
    "youden_threshold",
]
