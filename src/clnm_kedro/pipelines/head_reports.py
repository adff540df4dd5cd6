"""What a tuned head reports (:mod:`clnm_kedro.pipelines.head_template`): the classifier
comparison, the Optuna figures, the MLflow metrics and the record of the selected family."""

from __future__ import annotations

import json
import logging
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import mlflow.sklearn
import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from clnm_kedro.datasets.optuna_storage_dataset import hide_password
from clnm_kedro.heads import (
    CalibratedHead,
    EstimatorOptions,
    build_head_pipeline,
    feature_columns,
    feature_table,
    open_storage,
    optuna_figures,
    predict_head,
    training_rows,
)
from clnm_kedro.heads.families import single_threaded_numerics
from clnm_kedro.pipelines.head_nodes import HeadSettings

logger = logging.getLogger(__name__)


def _auc(labels: pd.Series, probabilities: np.ndarray) -> float:
    labels = labels.astype(float)
    known = labels.notna().to_numpy()
    if known.sum() == 0 or labels[known].nunique() < 2:
        return float("nan")
    return float(roc_auc_score(labels[known].astype(int), probabilities[known]))


def compare_families(
    head: CalibratedHead,
    head_search: pd.DataFrame,
    model_input: pd.DataFrame,
    train_cv_summary: dict[str, Any],
    settings: HeadSettings,
) -> pd.DataFrame:
    """The classifier comparison: every family's CV log loss and AUC (with their standard
    errors, whether it is within one standard error of the best by the selection metric, which
    was selected and why) and external AUC.

    Each family's best pipeline is refitted on the training patients and scored on the
    external ones; the selected family's is the head itself. The external AUC is computed
    after the selection and never used for it.

    Returns
    -------
    pandas.DataFrame
        ``model, family, selected, cv_log_loss, cv_log_loss_se, cv_auc, cv_auc_se,
        within_one_se, complexity,
        selection_rule, selection_reason, train_cv_estimate, train_auc, external_auc,
        n_trials, n_pruned, search_seconds, best_params, study``; ``train_cv_estimate`` says
        whether the ``train_cv`` rows of the model are the nested or the selection CV;
        ``external_auc`` is empty without external patients of both classes.
    """
    train = training_rows(model_input)
    external = model_input[model_input["split"] == "external"]
    X, y = feature_table(train), train["clnm"].astype(int).to_numpy()
    columns = feature_columns(X)
    options = EstimatorOptions(
        seed=settings.seed, class_weight=settings.spec.class_weight, n_jobs=settings.spec.n_jobs
    )
    train_aucs, external_aucs = [], []
    with single_threaded_numerics():
        for row in head_search.itertuples(index=False):
            if bool(row.selected):
                pipeline = head
            elif np.isfinite(row.cv_auc):
                params = json.loads(row.best_params)
                pipeline = build_head_pipeline(columns, row.family, params, options).fit(X, y)
            else:  # no complete trial: nothing to refit
                train_aucs.append(float("nan"))
                external_aucs.append(float("nan"))
                continue
            train_aucs.append(_auc(train["clnm"], predict_head(pipeline, train)))
            external_aucs.append(
                _auc(external["clnm"], predict_head(pipeline, external))
                if not external.empty
                else float("nan")
            )
    table = head_search.assign(
        train_auc=train_aucs,
        external_auc=external_aucs,
        train_cv_estimate=train_cv_summary["estimate"],
    )
    first = [
        "model",
        "family",
        "selected",
        "cv_log_loss",
        "cv_log_loss_se",
        "cv_auc",
        "cv_auc_se",
        "within_one_se",
        "complexity",
        "selection_rule",
        "selection_reason",
        "train_cv_estimate",
        "train_auc",
        "external_auc",
    ]
    table = table[first + [c for c in table.columns if c not in first]]
    logger.info(
        "%s model, classifier comparison (cross-validated / external AUC): %s.",
        settings.model,
        "; ".join(
            f"{r.family} {r.cv_auc:.3f} / {r.external_auc:.3f}"
            for r in table.itertuples(index=False)
        ),
    )
    return table


def _placeholder_figure(title: str, reason: str) -> Figure:
    figure, axes = plt.subplots(figsize=(6.4, 2.4))
    axes.set_axis_off()
    axes.set_title(title)
    axes.text(0.5, 0.5, reason, ha="center", va="center", wrap=True)
    return figure


def plot_head_search(head_search: pd.DataFrame, settings: HeadSettings) -> tuple[Figure, Figure]:
    """Optuna's optimisation history and hyperparameter importances of the selected family.

    The study is read back from the Optuna storage; with in-memory storage (no URL), or too
    few complete trials, a figure saying so is returned instead.
    """
    selected = head_search.loc[head_search["selected"].astype(bool)].iloc[0]
    names = ("Optimisation history", "Hyperparameter importance")
    if settings.storage_url is None:
        reason = "Studies were kept in memory (optuna_storage_url: null)."
        return (
            _placeholder_figure(f"{names[0]}: {selected['study']}", reason),
            _placeholder_figure(f"{names[1]}: {selected['study']}", reason),
        )
    study = optuna.load_study(
        study_name=str(selected["study"]), storage=open_storage(settings.storage_url)
    )
    figures = optuna_figures(study)
    history, importances = figures["optimization_history"], figures["param_importances"]
    reason = "Fewer than two complete trials, or no searched hyperparameter that varies."
    return (
        history or _placeholder_figure(f"{names[0]}: {study.study_name}", reason),
        importances or _placeholder_figure(f"{names[1]}: {study.study_name}", reason),
    )


def collect_head_metrics(
    head_comparison: pd.DataFrame, settings: HeadSettings
) -> dict[str, dict[str, float | int]]:
    """MLflow metrics of the search, named ``<split>.<model>[.<family>].<metric>``.

    ``train_cv.<model>.cv_auc`` and ``train_cv.<model>.cv_log_loss`` (the selected head's mean
    cross-validated AUC and log loss in the search), ``train_cv.<model>.<family>.cv_auc``,
    ``train_cv.<model>.<family>.cv_log_loss`` and ``external.<model>.<family>.auc`` per family.
    ``train_cv.<model>.auc`` is left to the evaluation (the AUC of the pooled out-of-fold
    predictions), so the two are never confused.
    """
    model = settings.model
    metrics: dict[str, dict[str, float | int]] = {}

    def put(name: str, value: Any) -> None:
        if value is not None and np.isfinite(value):
            metrics[name] = {"value": float(value), "step": 0}

    for row in head_comparison.itertuples(index=False):
        put(f"train_cv.{model}.{row.family}.cv_auc", row.cv_auc)
        put(f"train_cv.{model}.{row.family}.cv_log_loss", row.cv_log_loss)
        put(f"external.{model}.{row.family}.auc", row.external_auc)
        if bool(row.selected):
            put(f"train_cv.{model}.cv_auc", row.cv_auc)
            put(f"train_cv.{model}.cv_log_loss", row.cv_log_loss)
    return metrics


def record_head_selection(
    head: CalibratedHead,
    head_comparison: pd.DataFrame,
    train_cv_summary: dict[str, Any],
    settings: HeadSettings,
) -> dict[str, Any]:
    """The selected family and why, its hyperparameters, CV AUC, calibration, and what the
    ``train_cv`` rows are (also MLflow parameters).

    When an MLflow run is active (a ``kedro run`` with kedro-mlflow), the family and each
    hyperparameter are logged as parameters ``<model>.head.family``, ``<model>.head.<name>``.
    """
    selected = head_comparison.loc[head_comparison["selected"].astype(bool)].iloc[0]
    params = json.loads(selected["best_params"])
    selection = {
        "model": settings.model,
        "family": str(selected["family"]),
        "cv_log_loss": float(selected["cv_log_loss"]),
        "cv_log_loss_se": float(selected["cv_log_loss_se"]),
        "cv_auc": float(selected["cv_auc"]),
        "cv_auc_se": float(selected["cv_auc_se"]),
        "selection_metric": settings.spec.selection_metric,
        "selection_rule": str(selected["selection_rule"]),
        "selection_reason": str(selected["selection_reason"]),
        "calibration": head.calibration.to_dict(),
        "train_cv": train_cv_summary,
        "params": params,
        "study": str(selected["study"]),
        "optuna_storage_url": hide_password(settings.storage_url),
    }
    if mlflow.active_run() is not None:
        mlflow.log_params(
            {
                f"{settings.model}.head.family": selection["family"],
                f"{settings.model}.head.train_cv_estimate": train_cv_summary["estimate"],
                **{f"{settings.model}.head.{name}": value for name, value in params.items()},
            }
        )
    return selection
