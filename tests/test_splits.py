"""Splits by centre and stratified CV folds by patient: no leakage, stratified, repeatable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clnm_kedro.cohort import CohortError, assign_splits


def make_table(counts: dict[tuple[str, int], int], seed: int = 0) -> pd.DataFrame:
    """``counts[(centre, label)]`` patients each, rows shuffled."""
    rows = []
    for (center, label), n in counts.items():
        rows += [
            {"patient_id": f"{center}-{label}-{i:03d}", "center": center, "clnm": label}
            for i in range(n)
        ]
    table = pd.DataFrame(rows)
    return table.sample(frac=1.0, random_state=seed).reset_index(drop=True)


TWO_TRAINING_CENTRES = {
    ("A", 0): 40,
    ("A", 1): 20,
    ("C", 0): 25,
    ("C", 1): 10,
    ("B", 0): 30,
    ("B", 1): 14,
}


def test_external_centre_is_only_external_and_never_in_a_fold() -> None:
    table = make_table(TWO_TRAINING_CENTRES)
    splits = assign_splits(table, ["B"], n_folds=5, seed=1)
    assert list(splits.columns) == ["patient_id", "center", "clnm", "split", "fold"]
    assert splits["patient_id"].tolist() == table["patient_id"].tolist()  # row i ↔ row i
    external = splits[splits["center"] == "B"]
    assert (external["split"] == "external").all()
    assert (external["fold"] == -1).all()
    training = splits[splits["center"] != "B"]
    assert (training["split"] == "train").all()
    assert sorted(training["fold"].unique()) == [0, 1, 2, 3, 4]


def test_no_patient_is_in_two_places() -> None:
    splits = assign_splits(make_table(TWO_TRAINING_CENTRES), ["B"], n_folds=5, seed=1)
    assert splits["patient_id"].is_unique
    train_ids = set(splits.loc[splits["split"] == "train", "patient_id"])
    external_ids = set(splits.loc[splits["split"] == "external", "patient_id"])
    assert not train_ids & external_ids
    folds = [set(rows["patient_id"]) for _, rows in splits[splits["fold"] >= 0].groupby("fold")]
    for i, first in enumerate(folds):
        for second in folds[i + 1 :]:
            assert not first & second


def test_folds_are_stratified_by_label_and_training_centre() -> None:
    splits = assign_splits(make_table(TWO_TRAINING_CENTRES), ["B"], n_folds=5, seed=1)
    training = splits[splits["split"] == "train"]
    per_fold = training.groupby(["fold", "center", "clnm"]).size().unstack(["center", "clnm"])
    for (center, label), n in TWO_TRAINING_CENTRES.items():
        if center == "B":
            continue
        counts = per_fold[(center, label)].to_numpy()
        assert counts.sum() == n
        assert counts.max() - counts.min() <= 1, (center, label, counts)


def test_same_seed_same_folds_whatever_the_row_order() -> None:
    table = make_table(TWO_TRAINING_CENTRES)
    first = assign_splits(table, ["B"], n_folds=5, seed=11).set_index("patient_id")["fold"]
    shuffled = table.sample(frac=1.0, random_state=99)
    again = assign_splits(shuffled, ["B"], n_folds=5, seed=11).set_index("patient_id")["fold"]
    pd.testing.assert_series_equal(first.sort_index(), again.sort_index())
    other = assign_splits(table, ["B"], n_folds=5, seed=12).set_index("patient_id")["fold"]
    assert not np.array_equal(first.sort_index().to_numpy(), other.sort_index().to_numpy())


def test_external_centres_accept_a_single_name_and_several() -> None:
    table = make_table(TWO_TRAINING_CENTRES)
    single = assign_splits(table, "B", n_folds=5, seed=1)
    assert set(single.loc[single["split"] == "external", "center"]) == {"B"}
    several = assign_splits(table, ["B", "C"], n_folds=5, seed=1)
    assert set(several.loc[several["split"] == "external", "center"]) == {"B", "C"}
    assert set(several.loc[several["split"] == "train", "center"]) == {"A"}


def test_no_external_centre_names_the_centres_present() -> None:
    table = make_table(TWO_TRAINING_CENTRES)
    with pytest.raises(CohortError, match=r"HOSPITAL_X.*centres are \['A', 'B', 'C'\]"):
        assign_splits(table, ["HOSPITAL_X"], n_folds=5, seed=1)


def test_a_misspelt_external_centre_is_an_error_not_training_data() -> None:
    table = make_table(TWO_TRAINING_CENTRES)
    with pytest.raises(CohortError, match=r"\['c'\].*centres are \['A', 'B', 'C'\]"):
        assign_splits(table, ["B", "c"], n_folds=5, seed=1)


def test_every_centre_external_is_an_error() -> None:
    table = make_table(TWO_TRAINING_CENTRES)
    with pytest.raises(CohortError, match="at least one centre must remain for training"):
        assign_splits(table, ["A", "B", "C"], n_folds=5, seed=1)


def test_single_class_training_set_is_an_error() -> None:
    table = make_table({("A", 0): 30, ("B", 0): 10, ("B", 1): 5})
    with pytest.raises(CohortError, match="single class: all 30 training patients have clnm=0"):
        assign_splits(table, ["B"], n_folds=5, seed=1)


def test_too_small_stratum_is_named() -> None:
    table = make_table({("A", 0): 30, ("A", 1): 3, ("B", 0): 10, ("B", 1): 5})
    with pytest.raises(CohortError, match=r"CLNM=1: 3 patient\(s\).*at least 5"):
        assign_splits(table, ["B"], n_folds=5, seed=1)


def test_missing_labels_cannot_be_split() -> None:
    table = make_table(TWO_TRAINING_CENTRES)
    table["clnm"] = table["clnm"].astype("Int64")
    table.loc[3, "clnm"] = pd.NA
    with pytest.raises(CohortError, match="have no clnm label"):
        assign_splits(table, ["B"], n_folds=5, seed=1)


@pytest.mark.parametrize("n_folds", [1, 0, 2.5, True])
def test_bad_fold_count_is_an_error(n_folds: object) -> None:
    with pytest.raises(CohortError, match=r"split\.n_folds"):
        assign_splits(make_table(TWO_TRAINING_CENTRES), ["B"], n_folds=n_folds, seed=1)
