"""Split patients into training and external centres, and training patients into CV folds.

Splits are by patient (a patient's two views always travel together) and by centre: every
patient of an external centre is in the external test set (fold -1), every other patient is
training data and gets a seeded, stratified cross-validation fold 0..k-1 (stratified by label,
and by centre when there are several training centres).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from clnm_kedro.checks import whole_number
from clnm_kedro.cohort.errors import CohortError

SPLIT_COLUMNS = ("patient_id", "center", "clnm", "split", "fold")


def _as_center_list(external_centers: Iterable[str] | str) -> list[str]:
    if isinstance(external_centers, str):
        return [external_centers]
    return [str(center) for center in external_centers]


def _strata(training: pd.DataFrame) -> pd.Series:
    labels = training["clnm"].astype(int).astype(str)
    if training["center"].nunique() > 1:
        return "centre " + training["center"].astype(str) + ", CLNM=" + labels
    return "CLNM=" + labels


def check_split_feasible(
    table: pd.DataFrame,
    external_centers: Iterable[str] | str,
    n_folds: int,
    what: str = "the cohort",
) -> None:
    """Raise :class:`CohortError` if ``table`` cannot be split as configured.

    Parameters
    ----------
    table
        One row per patient with ``patient_id``, ``center`` and ``clnm`` (0/1).
    external_centers
        The centres that form the external test set (``split.external_centers``).
    n_folds
        Number of CV folds on the training centres (``split.n_folds``).
    what
        How the table is named in messages (e.g. "the cohort after exclusions").
    """
    externals = _as_center_list(external_centers)
    whole_number(n_folds, "split.n_folds", 2, error=CohortError)
    unlabelled = table.loc[table["clnm"].isna(), "patient_id"].tolist()
    if unlabelled:
        raise CohortError(
            f"{len(unlabelled)} patient(s) in {what} have no clnm label "
            f"({_preview(unlabelled)}); training and external splits need every label "
            "(an unlabelled cohort is for the inference pipeline)"
        )
    centers = sorted(table["center"].astype(str).unique())
    if not set(externals) & set(centers):
        raise CohortError(
            f"None of the external centres {externals} (parameter split.external_centers) is "
            f"in {what}; its centres are {centers}. Name one of them, e.g. "
            f'kedro run --params "split.external_centers=[{centers[-1] if centers else ""}]"'
        )
    # A misspelt name would silently turn that centre's patients into training data.
    unknown = sorted(set(externals) - set(centers))
    if unknown:
        raise CohortError(
            f"External centre(s) {unknown} (parameter split.external_centers) are not in "
            f"{what}; its centres are {centers}. Correct the name(s), or the patients of the "
            "centre you meant would be used for training"
        )
    external = table[table["center"].astype(str).isin(externals)]
    external_labels = sorted(external["clnm"].astype(int).unique())
    if len(external_labels) < 2:
        raise CohortError(
            f"The external test set of {what} (centre(s) {externals}) has {len(external)} "
            f"patient(s), all with clnm={external_labels[0]}; its AUC, sensitivity and "
            "specificity need patients of both classes. Add patients or name another "
            "external centre"
        )
    training = table[~table["center"].astype(str).isin(externals)]
    if training.empty:
        raise CohortError(
            f"Every centre of {what} ({centers}) is listed in split.external_centers; "
            "at least one centre must remain for training"
        )
    labels = sorted(training["clnm"].astype(int).unique())
    if len(labels) < 2:
        raise CohortError(
            f"The training centres of {what} have a single class: all {len(training)} training "
            f"patients have clnm={labels[0]}; a model cannot be trained without both classes"
        )
    counts = _strata(training).value_counts().sort_index()
    small = counts[counts < n_folds]
    if not small.empty:
        listed = "; ".join(f"{name}: {count} patient(s)" for name, count in small.items())
        raise CohortError(
            f"Too few training patients in some strata of {what} for {n_folds}-fold stratified "
            f"cross-validation ({listed}); each needs at least {n_folds}. Lower split.n_folds "
            "or add patients"
        )


def assign_splits(
    table: pd.DataFrame,
    external_centers: Iterable[str] | str,
    n_folds: int,
    seed: int,
) -> pd.DataFrame:
    """Assign each patient a split (``train``/``external``) and a CV fold.

    Parameters
    ----------
    table
        One row per patient with ``patient_id``, ``center`` and ``clnm``.
    external_centers
        Centres forming the external test set.
    n_folds
        Number of stratified CV folds on the training centres.
    seed
        Seed of the fold shuffle; the same seed and patients give the same folds, whatever the
        row order of ``table``.

    Returns
    -------
    pandas.DataFrame
        ``patient_id, center, clnm, split, fold`` in the row order of ``table``; ``fold`` is -1
        for external patients.
    """
    check_split_feasible(table, external_centers, n_folds)
    externals = _as_center_list(external_centers)
    splits = pd.DataFrame(
        {
            "patient_id": table["patient_id"].astype(str).to_numpy(),
            "center": table["center"].astype(str).to_numpy(),
            "clnm": table["clnm"].astype(int).to_numpy(),
        }
    )
    is_external = splits["center"].isin(externals).to_numpy()
    splits["split"] = np.where(is_external, "external", "train")
    splits["fold"] = -1
    # Folds are computed in patient_id order so that they do not depend on the CSV row order.
    training = splits[~is_external].sort_values("patient_id", kind="stable")
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=int(seed))
    strata = _strata(training).to_numpy()
    for fold, (_, test_rows) in enumerate(folds.split(np.zeros(len(training)), strata)):
        splits.loc[training.index[test_rows], "fold"] = fold
    splits["fold"] = splits["fold"].astype(int)
    return splits[list(SPLIT_COLUMNS)]


def _preview(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
