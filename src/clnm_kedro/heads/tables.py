"""Model-input tables of the heads: clinical, DL features, and both combined.

Every table has one row per patient of ``patient_splits``, in its order, with the columns
``patient_id, center, split, clnm`` followed by the features. The split, centre and label
come from ``patient_splits``; the features are joined on ``patient_id``. A patient of
``patient_splits`` without features stops the build with a message naming the patients.

Nothing is fitted here: encoding, imputation, scaling and reduction happen inside the head
pipeline, per cross-validation fold, on training patients only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from clnm_kedro.heads.spec import NON_FEATURE_COLUMNS
from clnm_kedro.registry import DL_PREFIX, FEATURE_NETWORK

logger = logging.getLogger(__name__)

HEAD_ID_COLUMNS: tuple[str, ...] = ("patient_id", "center", "split", "clnm")
_SPLIT_COLUMNS: tuple[str, ...] = ("patient_id", "center", "clnm", "split")
_SHOWN = 10  # patients named in an error message


def _named(patients: Sequence[str] | pd.Series) -> str:
    patients = [str(p) for p in patients]
    more = f" and {len(patients) - _SHOWN} more" if len(patients) > _SHOWN else ""
    return f"{patients[:_SHOWN]}{more}"


def _check_patient_ids(table: pd.DataFrame, name: str) -> pd.Series:
    if "patient_id" not in table.columns:
        raise ValueError(f"{name} has no 'patient_id' column; columns: {list(table.columns)}.")
    ids = table["patient_id"].astype(str)
    repeated = ids[ids.duplicated()].unique()
    if len(repeated):
        raise ValueError(f"{name} has more than one row for the patients {_named(repeated)}.")
    return ids


def patient_rows(patient_splits: pd.DataFrame) -> pd.DataFrame:
    """``patient_id, center, split, clnm`` of every patient of ``patient_splits``, in order.

    Raises
    ------
    ValueError
        If a column is missing or a patient appears twice.
    """
    missing = [c for c in _SPLIT_COLUMNS if c not in patient_splits.columns]
    if missing:
        raise ValueError(
            f"patient_splits lacks the columns {missing}; it has {list(patient_splits.columns)}."
        )
    ids = _check_patient_ids(patient_splits, "patient_splits")
    rows = patient_splits.loc[:, list(HEAD_ID_COLUMNS)].reset_index(drop=True)
    rows["patient_id"] = ids.to_numpy()
    rows["center"] = rows["center"].astype(str)
    return rows


def join_features(rows: pd.DataFrame, features: pd.DataFrame, source: str) -> pd.DataFrame:
    """Add the columns of ``features`` (one row per patient, key ``patient_id``) to ``rows``.

    Parameters
    ----------
    rows
        From :func:`patient_rows`.
    features
        ``patient_id`` plus the feature columns.
    source
        The dataset's name, for messages (e.g. ``dl_dual_features``).

    Raises
    ------
    ValueError
        If a patient of ``rows`` has no row in ``features``, a patient has two, or a feature
        column clashes with an identifier, label or split column.
    """
    ids = _check_patient_ids(features, source)
    clashing = [c for c in features.columns if c != "patient_id" and c in NON_FEATURE_COLUMNS]
    if clashing:
        raise ValueError(f"{source} has identifier, label or split columns {clashing}.")
    absent = rows.loc[~rows["patient_id"].isin(set(ids)), "patient_id"]
    if not absent.empty:
        raise ValueError(
            f"{len(absent)} patients of patient_splits have no row in {source}: "
            f"{_named(absent)}. Rebuild {source} from the current cohort."
        )
    extra = ids[~ids.isin(set(rows["patient_id"]))]
    if not extra.empty:
        logger.info(
            "%d patients of %s are not in patient_splits (excluded) and are left out: %s.",
            len(extra),
            source,
            _named(extra),
        )
    features = features.assign(patient_id=ids.to_numpy())
    return rows.merge(features, on="patient_id", how="left", validate="one_to_one")


def clinical_columns(
    cohort_table: pd.DataFrame, columns: Sequence[str] | None, dl_prefix: str = DL_PREFIX
) -> list[str]:
    """The clinical feature columns to use.

    Parameters
    ----------
    cohort_table
        ``patient_id, center, clnm`` and the clinical columns carried by preprocessing.
    columns
        Column names, or ``None`` for every clinical column of ``cohort_table`` (the
        contract's required ``age, sex, tumor_size_mm`` plus the optional ones present).
    dl_prefix
        Prefix of deep-learning feature columns, which a clinical column may not have.

    Raises
    ------
    ValueError
        If a named column is not in ``cohort_table``, none is left, or a name is not a string.
    """
    available = [c for c in cohort_table.columns if c not in NON_FEATURE_COLUMNS]
    if columns is None:
        chosen = available
    else:
        if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
            raise ValueError(f"clinical columns must be a list of column names; got {columns!r}.")
        chosen = list(dict.fromkeys(columns))
        missing = [c for c in chosen if c not in available]
        if missing:
            raise ValueError(
                f"The clinical columns {missing} are not in cohort_table, which has "
                f"{available}. Add them to preprocessing.clinical_columns (and to clinical.csv)."
            )
    if not chosen:
        raise ValueError("cohort_table has no clinical columns to fit a clinical head on.")
    prefixed = [c for c in chosen if dl_prefix and c.startswith(dl_prefix)]
    if prefixed:
        raise ValueError(
            f"The clinical columns {prefixed} start with {dl_prefix!r}, the prefix of "
            "deep-learning features; rename them in clinical.csv."
        )
    return chosen


def _check_same_patients(rows: pd.DataFrame, cohort_table: pd.DataFrame) -> None:
    """Stop when cohort_table and patient_splits disagree on a patient's label or centre."""
    cohort = cohort_table.assign(patient_id=cohort_table["patient_id"].astype(str))
    both = rows.merge(cohort, on="patient_id", suffixes=("", "_cohort"))
    for column in ("clnm", "center"):
        if f"{column}_cohort" not in both.columns:
            continue
        left, right = both[column], both[f"{column}_cohort"]
        differs = ~((left.astype(str) == right.astype(str)) | (left.isna() & right.isna()))
        if differs.any():
            raise ValueError(
                f"cohort_table and patient_splits give other {column} values for the patients "
                f"{_named(both.loc[differs, 'patient_id'])}; rerun preprocessing."
            )


def clinical_model_input(
    cohort_table: pd.DataFrame,
    patient_splits: pd.DataFrame,
    columns: Sequence[str] | None = None,
    dl_prefix: str = DL_PREFIX,
) -> pd.DataFrame:
    """Head table of the clinical model: ``patient_id, center, split, clnm`` + clinical columns.

    ``columns`` as in :func:`clinical_columns`.
    """
    rows = patient_rows(patient_splits)
    chosen = clinical_columns(cohort_table, columns, dl_prefix)
    _check_patient_ids(cohort_table, "cohort_table")
    _check_same_patients(rows, cohort_table)
    return join_features(rows, cohort_table[["patient_id", *chosen]], "cohort_table")


def dl_feature_columns(dl_features: pd.DataFrame, dl_prefix: str = DL_PREFIX) -> list[str]:
    """The deep-learning feature columns (names starting with ``dl_prefix``).

    Raises
    ------
    ValueError
        If there are none, or one is not numeric.
    """
    names = [c for c in dl_features.columns if isinstance(c, str) and c.startswith(dl_prefix)]
    if not names:
        raise ValueError(
            f"The deep-learning feature table has no columns starting with {dl_prefix!r}; it "
            f"has {list(dl_features.columns)[:10]}."
        )
    not_numeric = [c for c in names if not pd.api.types.is_numeric_dtype(dl_features[c])]
    if not_numeric:
        raise ValueError(
            f"Deep-learning feature columns must be numeric; these are not: {not_numeric[:10]}."
        )
    return names


def dl_features_model_input(
    dl_features: pd.DataFrame, patient_splits: pd.DataFrame, dl_prefix: str = DL_PREFIX
) -> pd.DataFrame:
    """Head table of the DL-feature model: ``patient_id, center, split, clnm`` + ``dl_*``."""
    rows = patient_rows(patient_splits)
    names = dl_feature_columns(dl_features, dl_prefix)
    return join_features(rows, dl_features[["patient_id", *names]], f"{FEATURE_NETWORK}_features")


def combined_model_input(
    dl_features: pd.DataFrame,
    cohort_table: pd.DataFrame,
    patient_splits: pd.DataFrame,
    columns: Sequence[str] | None = None,
    dl_prefix: str = DL_PREFIX,
) -> pd.DataFrame:
    """Head table of the combined model: identifiers + ``dl_*`` + clinical columns."""
    dl = dl_features_model_input(dl_features, patient_splits, dl_prefix)
    clinical = clinical_model_input(cohort_table, patient_splits, columns, dl_prefix)
    features = clinical.drop(columns=[c for c in HEAD_ID_COLUMNS if c != "patient_id"])
    return dl.merge(features, on="patient_id", how="left", validate="one_to_one")


def one_hot_clinical(cohort_table: pd.DataFrame, columns: Sequence[str] | None) -> pd.DataFrame:
    """The clinical columns with categories one-hot encoded, for inspection only.

    Numbers are kept as they are; a categorical column ``sex`` becomes ``sex=F``, ``sex=M``
    (and ``sex=missing`` where values are missing). Heads never use this table: their
    encoding is fitted inside each cross-validation fold.
    """
    chosen = clinical_columns(cohort_table, columns)
    frame = cohort_table[chosen]
    categorical = [
        c
        for c in chosen
        if not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])
    ]
    encoded = frame.drop(columns=categorical)
    for column in categorical:
        values = frame[column].astype("string").fillna("missing")
        encoded = encoded.join(pd.get_dummies(values, prefix=column, prefix_sep="=", dtype=int))
    ids = cohort_table["patient_id"].astype(str)
    return pd.concat([ids, encoded], axis=1).reset_index(drop=True)
