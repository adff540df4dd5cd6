"""Column preprocessing and feature reduction of a classifier head.

Everything built here is an unfitted scikit-learn transformer; it is fitted inside each
cross-validation fold as part of the head's ``Pipeline`` (see
``head_pipeline.build_head_pipeline``), so imputation values, scaling, one-hot categories and
the reduction never see the rows they are evaluated on.

Columns are sorted into three groups by name and dtype:

- deep-learning feature columns: names starting with ``dl_prefix`` (default ``dl_``);
  median imputation + missing indicator + standardisation, then the optional reduction;
- other numeric columns (clinical indicators): median imputation + missing indicator +
  standardisation, never reduced;
- categorical columns (object, string, category or bool dtype): most-frequent imputation +
  one-hot encoding (categories unseen in training are encoded as all zeros).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.feature_selection import SelectFromModel, SelectKBest, f_classif
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from clnm_kedro.registry import DL_PREFIX as DEFAULT_DL_PREFIX

REDUCTION_METHODS: tuple[str, ...] = ("none", "pca", "l1", "kbest")


@dataclass(frozen=True)
class FeatureColumns:
    """Names of the feature columns of a head table, by preprocessing group."""

    dl: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        """All feature columns, in table order within each group."""
        return self.dl + self.numeric + self.categorical


def feature_columns(X: pd.DataFrame, dl_prefix: str = DEFAULT_DL_PREFIX) -> FeatureColumns:
    """Sort the columns of ``X`` into deep-learning, numeric and categorical features.

    Parameters
    ----------
    X
        Feature table (features only: no identifiers, labels or split columns).
    dl_prefix
        Columns whose names start with this prefix are deep-learning features.

    Returns
    -------
    FeatureColumns
        The three groups of column names.

    Raises
    ------
    ValueError
        If ``X`` has no columns, duplicated or non-string column names, or a column whose
        dtype is neither numeric nor categorical (e.g. dates).
    """
    if X.shape[1] == 0:
        raise ValueError("The feature table has no columns; a head needs at least one feature.")
    names = list(X.columns)
    bad_names = [name for name in names if not isinstance(name, str)]
    if bad_names:
        raise ValueError(f"Feature column names must be strings; got {bad_names!r}.")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"Feature columns appear more than once: {duplicated}.")
    dl: list[str] = []
    numeric: list[str] = []
    categorical: list[str] = []
    unsupported: list[str] = []
    for name in names:
        dtype = X[name].dtype
        if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
            categorical.append(name)
        elif pd.api.types.is_numeric_dtype(dtype):
            (dl if dl_prefix and name.startswith(dl_prefix) else numeric).append(name)
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            categorical.append(name)
        else:
            unsupported.append(f"{name} ({dtype})")
    if unsupported:
        raise ValueError(
            "These feature columns are neither numeric nor categorical and cannot be used by a "
            f"head: {', '.join(unsupported)}."
        )
    non_numeric_dl = [name for name in categorical if dl_prefix and name.startswith(dl_prefix)]
    if non_numeric_dl:
        raise ValueError(
            f"Deep-learning feature columns (prefix {dl_prefix!r}) must be numeric; these are "
            f"not: {non_numeric_dl}."
        )
    return FeatureColumns(tuple(dl), tuple(numeric), tuple(categorical))


def as_string_categories(X: pd.DataFrame) -> pd.DataFrame:
    """Turn categorical values into strings and every kind of missing value into ``np.nan``.

    Keeps one-hot encoding consistent when a column mixes types (``1`` and ``"1"``) or marks
    missing values with ``None`` / ``pd.NA`` instead of ``NaN``.
    """
    frame = pd.DataFrame(X).astype(object)
    return frame.where(frame.isna(), frame.astype(str)).where(frame.notna(), np.nan)


def _numeric_steps() -> list[tuple[str, object]]:
    return [
        ("impute", SimpleImputer(strategy="median", add_indicator=True)),
        ("scale", StandardScaler()),
    ]


def anova_f_scores(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ANOVA F statistic and p-value of each column, for ``SelectKBest``.

    As :func:`sklearn.feature_selection.f_classif`, except that a column constant in the
    training rows (a deep-learning unit that never fires, common after a ReLU) scores
    F = 0, p = 1 instead of an undefined 0 / 0, so it is never preferred to a varying one.
    """
    X = np.asarray(X, dtype=float)
    scores, p_values = np.zeros(X.shape[1]), np.ones(X.shape[1])
    varying = np.ptp(X, axis=0) > 0
    if varying.any():
        scores[varying], p_values[varying] = f_classif(X[:, varying], y)
    return scores, p_values


def build_reduction(
    method: str,
    n_components: int | None,
    n_dl_columns: int,
    seed: int,
    class_weight: str | None = None,
) -> object:
    """Build the reduction step for the deep-learning feature columns.

    Parameters
    ----------
    method
        ``"none"`` (keep all), ``"pca"`` (principal components), ``"l1"`` (the
        ``n_components`` features with the largest absolute coefficients of an L1-penalised
        logistic regression) or ``"kbest"`` (the ``n_components`` features with the largest
        ANOVA F statistic, :func:`anova_f_scores`).
    n_components
        Number of components / features kept; clipped to the number of deep-learning columns.
        Ignored for ``"none"``.
    n_dl_columns
        Number of deep-learning feature columns in the table.
    seed
        Random seed for PCA's solver and the L1 model.
    class_weight
        Class weighting of the L1 logistic model (``"balanced"`` or ``None``).

    Returns
    -------
    object
        An unfitted transformer, or the string ``"passthrough"`` for ``"none"``.
    """
    if method not in REDUCTION_METHODS:
        raise ValueError(
            f"Unknown reduction method {method!r}; choose one of {list(REDUCTION_METHODS)}."
        )
    if method == "none":
        return "passthrough"
    if n_components is None or n_components < 1:
        raise ValueError(f"Reduction {method!r} needs n_components >= 1; got {n_components!r}.")
    k = int(min(n_components, n_dl_columns))
    if method == "pca":
        return PCA(n_components=k, random_state=seed)
    if method == "l1":
        l1_model = LogisticRegression(
            l1_ratio=1.0, solver="liblinear", class_weight=class_weight, random_state=seed
        )
        return SelectFromModel(l1_model, threshold=-np.inf, max_features=k)
    return SelectKBest(anova_f_scores, k=k)


def build_preprocessor(
    columns: FeatureColumns, reduction: object = "passthrough"
) -> ColumnTransformer:
    """Build the (unfitted) column preprocessing of a head.

    Parameters
    ----------
    columns
        Feature column groups (from :func:`feature_columns`).
    reduction
        Reduction step applied to the deep-learning columns after imputation and scaling
        (from :func:`build_reduction`); ``"passthrough"`` for none.

    Returns
    -------
    ColumnTransformer
        Dense output; columns not named in ``columns`` are dropped.
    """
    transformers: list[tuple[str, object, list[str]]] = []
    if columns.dl:
        dl_steps = [*_numeric_steps(), ("reduce", reduction)]
        transformers.append(("dl", Pipeline(dl_steps), list(columns.dl)))
    if columns.numeric:
        transformers.append(("numeric", Pipeline(_numeric_steps()), list(columns.numeric)))
    if columns.categorical:
        categorical = Pipeline(
            [
                (
                    "as_strings",
                    FunctionTransformer(as_string_categories, feature_names_out="one-to-one"),
                ),
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("one_hot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical, list(columns.categorical)))
    if not transformers:
        raise ValueError("The feature table has no usable columns.")
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
