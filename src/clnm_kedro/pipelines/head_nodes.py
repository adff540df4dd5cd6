"""The nodes of the classifier-head pipeline (:mod:`clnm_kedro.pipelines.head_template`).

Per model, from its model-input table (training and external patients):

- ``validate_head_settings``: checks the ``heads`` block, the model's block and the Optuna
  storage URL before anything is fitted (it needs parameters only, so it runs first); the URL
  is the ``optuna_storage`` catalog entry's (Kedro credentials) when it has one, else the
  ``optuna_storage_url`` parameter;
- ``tune_head``: Optuna search of every classifier family by cross-validation on the training
  patients only, selection of a family (by default the simplest within one standard error of
  the best, :func:`clnm_kedro.heads.select_family`), its refit on all of them and its logistic
  calibration fitted on its out-of-fold predictions (the head, a
  :class:`~clnm_kedro.heads.CalibratedHead`: every probability it gives is a calibrated risk);
- ``log_head_to_mlflow``: the head in the MLflow run, with the sklearn flavour;
- ``predict_with_head``: the fitted head applied to every patient (``train`` rows are the
  apparent, ``external`` rows the external predictions); tagged ``inference`` as well;
- ``predict_out_of_fold``: ``train_cv`` rows, calibrated. With ``heads.outer_cv.n_splits``
  set, nested CV: the whole search, selection and calibration rerun inside each outer fold,
  which scores the patients it left out (an honest estimate of the procedure). Without it,
  the chosen head refitted in every fold of the search's CV and passed through its
  calibration: the CV that chose the family, so optimistic; ``head_selection`` and the
  comparison say which of the two the ``train_cv`` rows are;
- ``compare_families``: the classifier comparison (CV AUC of every family with its standard
  error, which families are within one standard error of the best, which was selected and
  why, and the external AUC of each family's best pipeline refitted on the training patients —
  computed after the selection, never used for it);
- ``plot_head_search``, ``collect_head_metrics``, ``record_head_selection``: Optuna figures,
  MLflow metrics ``<split>.<model>...`` and the selected family and hyperparameters.

``compare_families`` and these three are in :mod:`clnm_kedro.pipelines.head_reports`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import skops.io
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline as SklearnPipeline
from sqlalchemy.engine import make_url

from clnm_kedro.checks import whole_number
from clnm_kedro.datasets.optuna_storage_dataset import storage_url_in_use
from clnm_kedro.heads import (
    CalibratedHead,
    HeadSpec,
    feature_table,
    fit_head_on_training_rows,
    nested_out_of_fold,
    predict_head,
    selection_out_of_fold,
    training_rows,
)
from clnm_kedro.heads.families import single_threaded_numerics
from clnm_kedro.heads.nested import optimism_correction
from clnm_kedro.reporting.predictions import PREDICTION_COLUMNS, SPLIT_ORDER

logger = logging.getLogger(__name__)

# The predictions table's columns and split order come from the output contract's one home.
SPLIT_RANK: dict[str, int] = {split: rank for rank, split in enumerate(SPLIT_ORDER)}
_MODEL_KEYS = frozenset({"model", "clinical_columns"})
# Packages a logged head needs (besides this project, whose preprocessing it references).
HEAD_REQUIREMENTS: tuple[str, ...] = ("scikit-learn", "catboost", "numpy", "pandas", "skops")


@dataclass(frozen=True)
class HeadSettings:
    """Validated settings of one model's head.

    Attributes
    ----------
    model
        The model's name in predictions, study names and MLflow (``clinical``, ...).
    spec
        The validated ``heads`` block.
    storage_url
        Optuna storage URL (``None``: studies kept in memory only). It may hold a password
        (from credentials), so it is left out of ``repr``.
    seed
        Seed of the CV split, the sampler and every estimator.
    """

    model: str
    spec: HeadSpec
    storage_url: str | None = field(repr=False)
    seed: int


# --------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------


def validate_head_settings(
    heads: dict[str, Any],
    model_settings: dict[str, Any],
    optuna_storage_url: str | None,
    seed: int,
    optuna_storage: str | None = None,
) -> HeadSettings:
    """Check the ``heads`` block, the model's block and the storage URL; nothing is fitted.

    ``optuna_storage`` (the catalog entry of that name: a URL from Kedro credentials, already
    checked there) replaces the ``optuna_storage_url`` parameter when it is not ``None``.

    Raises
    ------
    ValueError
        Naming the offending parameter (e.g. ``heads.search_space.svm.C: low ...``).
    """
    if not isinstance(model_settings, Mapping) or not isinstance(model_settings.get("model"), str):
        raise ValueError(
            "A head's parameter block needs 'model', the model's name (e.g. clinical); got "
            f"{model_settings!r}."
        )
    unknown = sorted(set(model_settings) - _MODEL_KEYS)
    if unknown:
        raise ValueError(
            f"Unknown keys {unknown} in the parameters of the {model_settings['model']} head; "
            f"allowed: {sorted(_MODEL_KEYS)}."
        )
    if optuna_storage_url is not None:
        try:
            make_url(optuna_storage_url)
        except Exception as error:
            raise ValueError(
                f"optuna_storage_url is not a valid SQLAlchemy URL: {optuna_storage_url!r} "
                f"({error})."
            ) from error
    whole_number(seed, "seed")
    try:
        spec = HeadSpec.from_params(heads)
    except ValueError as error:
        raise ValueError(
            f"Invalid classifier-head parameters (the 'heads' block): {error}"
        ) from error
    storage_url = storage_url_in_use(optuna_storage_url, optuna_storage)
    return HeadSettings(model_settings["model"], spec, storage_url, seed)


def tune_head(
    model_input: pd.DataFrame, settings: HeadSettings
) -> tuple[CalibratedHead, pd.DataFrame]:
    """Tune every classifier family on the training patients, select one, refit and
    calibrate it on all of them.

    Returns
    -------
    tuple
        The fitted, calibrated head and the search table (one row per family: CV AUC and its
        standard error, complexity rank, within one SE of the best, trials, best parameters,
        study name, selected and why).
    """
    result = fit_head_on_training_rows(
        model_input,
        settings.spec,
        storage_url=settings.storage_url,
        model_name=settings.model,
        seed=settings.seed,
    )
    search = result.comparison.assign(
        selection_rule=settings.spec.selection_rule,
        selection_reason=np.where(result.comparison["selected"], result.selection_reason, ""),
    )
    return result.pipeline, search


def log_head_to_mlflow(
    head: CalibratedHead, model_input: pd.DataFrame, settings: HeadSettings
) -> dict[str, Any]:
    """Log the head to the active MLflow run with the sklearn flavour; describe where it is.

    The model is stored in skops format (trusting exactly the types of this head), with a
    signature of the feature columns (names and types only, no patient values) and
    ``predict_proba`` (calibrated risks) as its pyfunc prediction. Without an active MLflow
    run (a node called outside ``kedro run``, or tracking disabled) nothing is logged.

    Returns
    -------
    dict
        ``name``, ``logged`` and, when logged, ``model_uri``, ``run_id``,
        ``skops_trusted_types``.
    """
    name = f"{settings.model}_head"
    if mlflow.active_run() is None:
        logger.info("No active MLflow run: the %s head is not logged to MLflow.", settings.model)
        return {"name": name, "logged": False}
    features = feature_table(training_rows(model_input))
    # Whole-number columns are declared as doubles: a new patient may lack the value.
    integers = [c for c in features.columns if pd.api.types.is_integer_dtype(features[c])]
    features = features.astype(dict.fromkeys(integers, "float64"))
    with single_threaded_numerics():
        signature = infer_signature(features, head.predict_proba(features))
    trusted = sorted(skops.io.get_untrusted_types(data=skops.io.dumps(head)))
    info = mlflow.sklearn.log_model(
        head,
        name=name,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=trusted,
        signature=signature,
        pyfunc_predict_fn="predict_proba",
        # Pinned from this environment: faster than MLflow's import-tracing inference.
        pip_requirements=[f"{package}=={version(package)}" for package in HEAD_REQUIREMENTS],
    )
    return {
        "name": name,
        "logged": True,
        "model_uri": info.model_uri,
        "run_id": info.run_id,
        "skops_trusted_types": trusted,
    }


def prediction_rows(table: pd.DataFrame, model: str, probabilities: np.ndarray) -> pd.DataFrame:
    """Rows of the predictions table (docs/output_contract.md) for the rows of ``table``.

    ``center``, ``split`` and ``clnm`` are copied from ``table`` (left empty for new
    patients whose table lacks them).
    """
    rows = pd.DataFrame(
        {
            "patient_id": table["patient_id"].astype(str).to_numpy(),
            "model": model,
            "probability": np.asarray(probabilities, dtype=float),
        }
    )
    for column in ("center", "split", "clnm"):
        rows[column] = table[column].to_numpy() if column in table.columns else pd.NA
    return rows.loc[:, list(PREDICTION_COLUMNS)]


def predict_with_head(
    head: CalibratedHead | SklearnPipeline, model_input: pd.DataFrame, settings: HeadSettings
) -> pd.DataFrame:
    """Calibrated CLNM risk of every patient from the fitted head (``train`` rows: apparent;
    ``external``)."""
    with single_threaded_numerics():
        probabilities = predict_head(head, model_input)
    return prediction_rows(model_input, settings.model, probabilities)


TRAIN_CV_ESTIMATES: dict[str, str] = {
    "nested": (
        "nested cross-validation: search, selection and calibration rerun inside each outer "
        "fold, which scores the patients it left out (honest about the selection); then "
        "recalibrated by the calibration the nested CV measured, which the final head's "
        "calibration includes, each patient's risk by one fitted on the other patients"
    ),
    "selection": (
        "the cross-validation that chose the family and hyperparameters (optimistic; set "
        "heads.outer_cv.n_splits for a nested estimate)"
    ),
}


def predict_out_of_fold(
    searched_head: CalibratedHead, model_input: pd.DataFrame, settings: HeadSettings
) -> tuple[pd.DataFrame, dict[str, Any], CalibratedHead]:
    """``train_cv`` rows: each training patient's calibrated risk from a head fitted without
    it; and the final head.

    With ``heads.outer_cv.n_splits`` set, nested CV (:func:`clnm_kedro.heads.nested_out_of_fold`),
    whose risks are then recalibrated (:func:`clnm_kedro.heads.nested.optimism_correction`):
    the recalibration fitted on all of them is folded into the final head's calibration, and
    each ``train_cv`` risk passes through one fitted on every other patient. Otherwise the
    chosen head is refitted in every fold of the search's CV (with repeated CV a patient's
    probability is the mean over the repeats) and passed through the head's calibration, and
    the final head is the searched one. External patients are not used.

    Returns
    -------
    tuple
        The ``train_cv`` rows; what they are (``{"estimate": "nested" | "selection",
        "description", "outer_folds": [...]}``, one entry per outer fold: the family it chose,
        its inner and outer AUC, its calibration; with nested CV also ``optimism_correction``,
        the recalibration's intercept and slope); the final head.
    """
    train = training_rows(model_input)
    X, y = feature_table(train), train["clnm"].astype(int).to_numpy()
    outer_folds: list[dict[str, Any]] = []
    head = searched_head
    correction_entry: dict[str, Any] = {}
    if settings.spec.outer_splits is not None:
        estimate = "nested"
        nested, folds = nested_out_of_fold(
            X, y, settings.spec, model_name=settings.model, seed=settings.seed
        )
        outer_folds = folds.to_dict(orient="records")
        correction, probabilities = optimism_correction(y, nested, settings.model)
        head = searched_head.recalibrated(correction)
        correction_entry["optimism_correction"] = correction.to_dict()
        logger.info(
            "%s model: the nested CV's risks recalibrated (intercept %.3f, slope %.3f), in the "
            "final head's calibration and, fitted without each patient, in train_cv.",
            settings.model,
            correction.intercept,
            correction.slope,
        )
    else:
        estimate = "selection"
        with single_threaded_numerics():
            scores = selection_out_of_fold(
                searched_head.pipeline, X, y, settings.spec, settings.seed
            )
        probabilities = searched_head.calibration.apply(scores)
    summary = {
        "estimate": estimate,
        "description": TRAIN_CV_ESTIMATES[estimate],
        "outer_folds": outer_folds,
        **correction_entry,
    }
    rows = prediction_rows(train.assign(split="train_cv"), settings.model, probabilities)
    return rows, summary, head


def stack_predictions(fitted: pd.DataFrame, out_of_fold: pd.DataFrame) -> pd.DataFrame:
    """The model's predictions table: ``train``, ``train_cv`` and ``external`` rows."""
    table = pd.concat([fitted, out_of_fold], ignore_index=True)
    order = table["split"].map(SPLIT_RANK).fillna(len(SPLIT_RANK))
    return (
        table.assign(_order=order)
        .sort_values(["_order"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )
