"""Tests of the classifier heads (clnm_kedro.heads): families, search space, search, leakage."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from matplotlib.figure import Figure
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from clnm_kedro.heads import (
    FAMILIES,
    CalibratedHead,
    EstimatorOptions,
    HeadSpec,
    HyperParameter,
    build_head_pipeline,
    feature_columns,
    fit_head,
    fit_head_on_training_rows,
    optuna_figures,
    out_of_fold_probabilities,
    parse_search_space,
    predict_head,
    select_family,
)
from clnm_kedro.heads.head_pipeline import PreprocessedFolds
from clnm_kedro.heads.nested import nested_out_of_fold
from clnm_kedro.heads.selection import cv_standard_error, within_one_standard_error
from clnm_kedro.metrics.calibration import calibration_intercept_slope
from clnm_kedro.metrics.recalibration import LogitCalibration
from float_compare import assert_same_numbers

matplotlib.use("Agg")

PARAMETERS = Path(__file__).resolve().parents[1] / "conf/base/parameters_heads.yml"


def make_table(n: int, seed: int = 0, n_dl: int = 6) -> tuple[pd.DataFrame, np.ndarray]:
    """Features with a real signal, missing values and a categorical column, plus labels."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    table = pd.DataFrame(
        {f"dl_{i}": rng.normal(size=n) + (0.9 * y if i < 2 else 0.0) for i in range(n_dl)}
    )
    table["age"] = rng.normal(45, 10, size=n) - 4 * y
    table["tumor_size_mm"] = rng.gamma(4, 1.5, size=n) + 2 * y
    table["sex"] = np.where(rng.random(n) < 0.2 + 0.25 * y, "M", "F").astype(object)
    table["location"] = rng.choice(["upper", "middle", "lower"], size=n).astype(object)
    table = table.mask(rng.random(table.shape) < 0.08)
    table.loc[table.index[:3], "sex"] = None  # None, not NaN, as read from some files
    return table, y


def small_spec(**changes: Any) -> dict[str, Any]:
    """A fast spec: few trials, 3-fold CV, small families, every study in this process."""
    spec: dict[str, Any] = {
        "processes": 1,
        "families": ["logistic_regression"],
        "n_trials": 3,
        "timeout_s": None,
        "cv": {"n_splits": 3, "n_repeats": 1},
        "search_space": {
            "logistic_regression": {
                "C": {"type": "float", "low": 1.0e-2, "high": 10.0, "log": True},
                "penalty": {"type": "categorical", "choices": ["l1", "l2", "elasticnet"]},
                "l1_ratio": {"type": "float", "low": 0.1, "high": 0.9},
            },
            "knn": {"n_neighbors": {"type": "int", "low": 3, "high": 15}},
            "catboost": {
                "iterations": 30,
                "depth": {"type": "int", "low": 2, "high": 4},
                "learning_rate": {"type": "float", "low": 0.03, "high": 0.3, "log": True},
            },
            "svm": {"C": {"type": "float", "low": 0.1, "high": 10.0, "log": True}},
        },
        "reduction": {
            "method": {"type": "categorical", "choices": ["none", "pca", "l1", "kbest"]},
            "n_components": {"type": "int", "low": 2, "high": 4},
        },
    }
    spec.update(changes)
    return spec


def middle_value(hyperparameter: HyperParameter) -> Any:
    """The middle of a searched range (geometric for log ranges), the first choice, or the value."""
    low, high = hyperparameter.low, hyperparameter.high
    if hyperparameter.kind == "float":
        return float(np.sqrt(low * high)) if hyperparameter.log else (low + high) / 2
    if hyperparameter.kind == "int":
        return round(np.sqrt(low * high)) if hyperparameter.log else (low + high) // 2
    return hyperparameter.probe_values()[0]


@pytest.fixture(scope="module")
def default_spec() -> HeadSpec:
    """The draft default parameter block, validated."""
    return HeadSpec.from_params(yaml.safe_load(PARAMETERS.read_text())["heads"])


# --------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_fits_and_predicts_probabilities(default_spec: HeadSpec, family: str) -> None:
    X, y = make_table(160, seed=1)
    train, test = slice(0, 120), slice(120, 160)
    space = default_spec.search_space.families[family]
    params = {name: middle_value(hp) for name, hp in space.items()}
    params |= {"reduction_method": "pca", "reduction_n_components": 3}
    if family == "catboost":
        params["iterations"] = 50
    pipeline = build_head_pipeline(
        feature_columns(X), family, params, EstimatorOptions(seed=0)
    ).fit(X.iloc[train], y[train])
    X_test = X.iloc[test].copy()
    X_test.iloc[0, X_test.columns.get_loc("location")] = "isthmus"  # unseen category
    probabilities = pipeline.predict_proba(X_test)
    assert probabilities.shape == (40, 2)
    assert np.isfinite(probabilities).all()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    # It learns the signal: apparent AUC well above chance.
    train_probabilities = pipeline.predict_proba(X.iloc[train])[:, 1]
    assert roc_auc_score(y[train], train_probabilities) > 0.6


@pytest.mark.parametrize("reduction", ["none", "pca", "l1", "kbest"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_search_folds_score_as_the_head_pipeline_fitted_on_each_fold(
    default_spec: HeadSpec, family: str, reduction: str
) -> None:
    """The search fits the column preprocessing once per fold and each trial only its
    reduction and classifier: the probabilities are the whole pipeline's, fold by fold."""
    X, y = make_table(150, seed=3)
    columns = feature_columns(X)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    prepared = PreprocessedFolds(X, y, columns, folds)
    space = default_spec.search_space.families[family]
    params = {name: middle_value(hp) for name, hp in space.items()}
    params |= {"reduction_method": reduction, "reduction_n_components": 3}
    if family == "catboost":
        params["iterations"] = 30
    options = EstimatorOptions(seed=4)
    for fold, (train, test) in enumerate(folds):
        pipeline = build_head_pipeline(columns, family, params, options)
        expected = pipeline.fit(X.iloc[train], y[train]).predict_proba(X.iloc[test])[:, 1]
        assert_same_numbers(prepared.predict(fold, family, params, options), expected)
    # The folds hold preprocessed numbers only: the table itself is not kept.
    assert not any(isinstance(v, pd.DataFrame) for v in vars(prepared).values())


def test_reduction_applies_to_deep_learning_columns_only() -> None:
    X, y = make_table(100, n_dl=8)
    X = X.drop(columns="dl_7").assign(dl_7=1.0)  # no missing in one DL column
    columns = feature_columns(X)
    assert columns.dl == (*[f"dl_{i}" for i in range(7)], "dl_7")
    assert columns.numeric == ("age", "tumor_size_mm")
    assert columns.categorical == ("sex", "location")
    params = {"C": 1.0, "reduction_method": "pca", "reduction_n_components": 2}
    pipeline = build_head_pipeline(columns, "logistic_regression", params, EstimatorOptions())
    preprocess = pipeline.fit(X, y).named_steps["preprocess"]
    widths = {
        name: preprocess.transform(X)[:, block].shape[1]
        for name, block in preprocess.output_indices_.items()
        if name != "remainder"
    }
    # 2 PCA components; 2 clinical values + 2 missing indicators; one-hot F/M and 3 locations.
    assert widths == {"dl": 2, "numeric": 4, "categorical": 5}


def test_kbest_passes_over_dead_deep_learning_units() -> None:
    X, y = make_table(100, n_dl=6)
    X["dl_2"] = 0.0  # a ReLU unit that never fires
    X["dl_4"] = np.where(X["dl_4"].isna(), np.nan, 3.0)  # constant where recorded
    params = {"C": 1.0, "reduction_method": "kbest", "reduction_n_components": 4}
    pipeline = build_head_pipeline(
        feature_columns(X), "logistic_regression", params, EstimatorOptions()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "features are constant" / divide warnings
        pipeline.fit(X, y)
    selector = pipeline.named_steps["preprocess"].named_transformers_["dl"].named_steps["reduce"]
    kept = selector.get_support()
    assert kept.sum() == 4
    assert not kept[2] and not kept[4]  # dead units are never chosen over varying ones
    assert selector.scores_[2] == 0 and selector.pvalues_[2] == 1


# --------------------------------------------------------------------------------------
# Search-space validation
# --------------------------------------------------------------------------------------

C_RANGE = {"type": "float", "low": 1.0e-3, "high": 10.0, "log": True}


@pytest.mark.parametrize(
    ("search_space", "reduction", "message"),
    [
        ({"xgboost": {}}, None, r"unknown classifier family 'xgboost'"),
        ({"svm": {"C": {"type": "uniform", "low": 0, "high": 1}}}, None, r"svm\.C: unknown type"),
        (
            {"svm": {"C": {"type": "float", "low": 10.0, "high": 1.0}}},
            None,
            r"svm\.C: low \(10\.0\) is greater than high \(1\.0\)",
        ),
        (
            {"svm": {"C": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}},
            None,
            r"svm\.C: a log-uniform range needs low > 0",
        ),
        (
            {"knn": {"weights": {"type": "categorical", "choices": []}}},
            None,
            r"knn\.weights: 'choices' must be a non-empty list",
        ),
        (
            {"random_forest": {"n_trees": {"type": "int", "low": 10, "high": 100}}},
            None,
            r"random_forest\.n_trees: RandomForestClassifier has no hyperparameter 'n_trees'",
        ),
        (
            {"catboost": {"depth": {"type": "int", "low": 2.5, "high": 6}}},
            None,
            r"catboost\.depth: .*must be whole numbers",
        ),
        (
            {"logistic_regression": {"penalty": {"type": "categorical", "choices": ["l1", "l3"]}}},
            None,
            r"logistic_regression\.penalty: \['l3'\] not supported",
        ),
        (
            {"svm": {"C": {"type": "float", "low": 1, "high": 2, "choices": [1]}}},
            None,
            r"svm\.C: keys \['choices'\] are not allowed",
        ),
        ({"svm": {"C": C_RANGE}}, {"method": "tsne"}, r"Reduction search space: method"),
        ({"svm": {"C": C_RANGE}}, {"method": "pca"}, r"'n_components' is needed"),
    ],
)
def test_bad_search_space_gives_clear_error(
    search_space: dict[str, Any], reduction: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_search_space(search_space, reduction, check_values=False)


@pytest.mark.parametrize(
    ("search_space", "message"),
    [
        (
            {"logistic_regression": {"l1_ratio": {"type": "float", "low": 0.0, "high": 2.0}}},
            r"logistic_regression\.l1_ratio: the value 2\.0 is not accepted by LogisticRegression",
        ),
        (
            {"catboost": {"iterations": 10, "boosting_type": "Fancy"}},
            r"catboost\.boosting_type: the value 'Fancy' is not accepted by CatBoostClassifier",
        ),
        (
            {"mlp": {"activation": {"type": "categorical", "choices": ["relu", "swish"]}}},
            r"mlp\.activation: the value 'swish' is not accepted by MLPClassifier",
        ),
    ],
)
def test_value_the_estimator_rejects_gives_clear_error(
    search_space: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_search_space(search_space)


def test_bad_head_settings_give_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"heads: unknown keys \['n_trial'\]"):
        HeadSpec.from_params(small_spec(n_trial=3))
    with pytest.raises(ValueError, match=r"heads.families names \['mlp'\]"):
        HeadSpec.from_params(small_spec(families=["mlp"]))
    with pytest.raises(ValueError, match=r"heads.cv.n_splits must be a whole number >= 2"):
        HeadSpec.from_params(small_spec(cv={"n_splits": 1}))


def test_default_parameter_block_is_valid(default_spec: HeadSpec) -> None:
    assert default_spec.families == (
        "logistic_regression",
        "svm",
        "random_forest",
        "catboost",
        "knn",
        "mlp",
    )
    assert default_spec.search_space.families["catboost"]["boosting_type"].value == "Plain"
    assert default_spec.search_space.reduction["method"].choices == ("none", "pca", "l1", "kbest")


def test_the_shipped_settings_are_the_code_defaults(default_spec: HeadSpec) -> None:
    """conf/base states every setting of the heads block, and states the defaults HeadSpec
    declares for a block that leaves them out: one set of defaults, written out for users."""
    block = yaml.safe_load(PARAMETERS.read_text())["heads"]
    bare = HeadSpec.from_params({"search_space": block["search_space"], "families": ["svm"]})
    scalar = [
        f.name for f in dataclasses.fields(HeadSpec) if f.name not in ("search_space", "families")
    ]
    assert {n: getattr(default_spec, n) for n in scalar} == {n: getattr(bare, n) for n in scalar}
    assert bare.selection_metric == "log_loss" and bare.outer_splits == 5


# --------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------


def test_stored_study_resumes(tmp_path: Path) -> None:
    X, y = make_table(90)
    storage_url = f"sqlite:///{tmp_path}/studies/optuna.db"
    names = set()
    for n_trials in (3, 5, 5):
        result = fit_head(
            X, y, small_spec(n_trials=n_trials), storage_url=storage_url, model_name="clinical"
        )
        assert result.comparison.loc[0, "n_trials"] == n_trials
        names.add(result.comparison.loc[0, "study"])
    (name,) = names  # one study, continued; n_trials is not part of its fingerprint
    assert re.fullmatch(r"clinical\.logistic_regression\.[0-9a-f]{8}", name)
    study = optuna.load_study(study_name=name, storage=storage_url)
    assert len(study.trials) == 5
    assert all(t.state.is_finished() for t in study.trials)


def test_other_data_or_settings_start_a_study_of_their_own(tmp_path: Path) -> None:
    X, y = make_table(90)
    storage_url = f"sqlite:///{tmp_path}/optuna.db"

    def study_name(X: pd.DataFrame, y: np.ndarray, **changes: Any) -> str:
        result = fit_head(
            X, y, small_spec(**changes), storage_url=storage_url, model_name="clinical"
        )
        assert result.comparison.loc[0, "n_trials"] == 3  # never continued from another study
        return str(result.comparison.loc[0, "study"])

    first = study_name(X, y)
    assert study_name(X, y) == first  # same data and settings: the same study
    others = {
        study_name(*make_table(90, seed=5)),
        study_name(X, y, cv={"n_splits": 4, "n_repeats": 1}),
        study_name(X, 1 - y),
    }
    assert len(others) == 3 and first not in others
    stored = optuna.get_all_study_names(storage_url)
    assert sorted(stored) == sorted({first, *others})


def test_stored_study_made_on_other_data_is_not_continued(tmp_path: Path) -> None:
    X, y = make_table(90)
    storage_url = f"sqlite:///{tmp_path}/optuna.db"
    spec = small_spec(if_stored_study_differs="error")
    result = fit_head(X, y, spec, storage_url=storage_url, model_name="clinical")
    assert result.comparison.loc[0, "study"] == "clinical.logistic_regression"
    X_other, y_other = make_table(90, seed=5)
    with pytest.raises(ValueError, match=r"'clinical.logistic_regression' was made on other"):
        fit_head(X_other, y_other, spec, storage_url=storage_url, model_name="clinical")
    result = fit_head(
        X_other,
        y_other,
        small_spec(if_stored_study_differs="replace"),
        storage_url=storage_url,
        model_name="clinical",
    )
    assert result.comparison.loc[0, "n_trials"] == 3  # started over, not 3 old + 0 new


def test_running_mean_auc_is_reported_after_each_fold() -> None:
    X, y = make_table(90)
    result = fit_head(X, y, small_spec(cv={"n_splits": 3, "n_repeats": 2}), storage_url=None)
    study = result.studies["logistic_regression"]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    for trial in complete:
        assert sorted(trial.intermediate_values) == list(range(6))
        assert trial.intermediate_values[5] == pytest.approx(trial.value)


def test_permuted_training_labels_give_chance_cv_auc() -> None:
    X, y = make_table(240, seed=3)
    spec = small_spec(n_trials=4)
    real = fit_head(X, y, spec, storage_url=None, seed=0)
    assert real.cv_auc > 0.75  # the signal is found when labels are real
    permuted = np.random.default_rng(11).permutation(y)
    shuffled = fit_head(X, permuted, spec, storage_url=None, seed=0)
    assert abs(shuffled.cv_auc - 0.5) < 0.12


def test_best_family_is_refitted_and_compared() -> None:
    X, y = make_table(120)
    spec = small_spec(
        families=["logistic_regression", "knn", "catboost", "svm"],
        n_trials=2,
        selection={"rule": "best"},
    )
    result = fit_head(X, y, spec, storage_url=None, model_name="combined")
    table = result.comparison
    assert list(table["family"]) == ["logistic_regression", "knn", "catboost", "svm"]
    assert list(table["model"]) == ["combined"] * 4
    best = table.loc[table["cv_log_loss"].idxmin()]  # heads.selection.metric: log_loss
    assert bool(best["selected"]) and table["selected"].sum() == 1
    assert result.family == best["family"]
    assert result.cv_auc == pytest.approx(best["cv_auc"])
    assert json.loads(best["best_params"]) == result.params
    assert result.params["reduction_method"] in ("none", "pca", "l1", "kbest")
    # The refitted pipeline is the best family's with the best parameters, fitted on all rows.
    reference = build_head_pipeline(
        feature_columns(X), result.family, result.params, EstimatorOptions(seed=0)
    ).fit(X, y)
    assert_same_numbers(result.pipeline.score(X), reference.predict_proba(X)[:, 1])
    # ... followed by its calibration, fitted on its out-of-fold predictions.
    assert result.pipeline.calibration == LogitCalibration.fit(y, result.out_of_fold)
    np.testing.assert_allclose(
        result.pipeline.predict_proba(X)[:, 1],
        result.pipeline.calibration.apply(reference.predict_proba(X)[:, 1]),
    )


def test_same_seed_repeats_exactly(tmp_path: Path) -> None:
    X, y = make_table(120)
    spec = small_spec(families=["logistic_regression", "catboost", "svm"])
    results = [
        fit_head(X, y, spec, storage_url=f"sqlite:///{tmp_path}/run{i}.db", seed=7)
        for i in range(2)
    ]
    first, second = (r.comparison.drop(columns="search_seconds") for r in results)
    pd.testing.assert_frame_equal(first, second)
    assert results[0].params == results[1].params
    assert results[0].cv_auc == results[1].cv_auc
    assert_same_numbers(results[0].pipeline.predict_proba(X), results[1].pipeline.predict_proba(X))
    other_seed = fit_head(X, y, spec, storage_url=None, seed=8)
    assert other_seed.comparison["best_params"].tolist() != first["best_params"].tolist()


def test_out_of_fold_probabilities_match_manual_folds() -> None:
    X, y = make_table(90)
    result = fit_head(X, y, small_spec(n_trials=1), storage_url=None)
    probabilities = out_of_fold_probabilities(result.pipeline.pipeline, X, y, cv=3, seed=4)
    expected = np.empty(len(y))
    for train, test in StratifiedKFold(3, shuffle=True, random_state=4).split(X, y):
        fitted = clone(result.pipeline.pipeline).fit(X.iloc[train], y[train])
        expected[test] = fitted.predict_proba(X.iloc[test])[:, 1]
    np.testing.assert_allclose(probabilities, expected)


def test_bad_training_labels_give_clear_errors() -> None:
    X, y = make_table(60)
    with pytest.raises(ValueError, match=r"labels must be 0 or 1.*rows \[4\]"):
        fit_head(X, np.where(np.arange(60) == 4, 2, y), small_spec(), storage_url=None)
    with pytest.raises(ValueError, match=r"at least 3 training patients with and without CLNM"):
        fit_head(X, np.r_[np.ones(2, int), np.zeros(58, int)], small_spec(), storage_url=None)


def test_too_many_neighbours_for_a_fold_give_clear_error() -> None:
    X, y = make_table(60)  # 3-fold CV: 40 patients in a training fold
    too_many = {"n_neighbors": {"type": "int", "low": 3, "high": 41}}
    spec = small_spec(families=["knn"], search_space={"knn": too_many})
    with pytest.raises(ValueError, match=r"knn.n_neighbors goes up to 41.*at most 40"):
        fit_head(X, y, spec, storage_url=None)
    fitting = small_spec(families=["knn"], search_space={"knn": {"n_neighbors": 40}}, n_trials=1)
    assert fit_head(X, y, fitting, storage_url=None).family == "knn"


# --------------------------------------------------------------------------------------
# Leakage
# --------------------------------------------------------------------------------------


def make_cohort_table(seed: int = 0) -> pd.DataFrame:
    """A head table with 120 training and 60 external patients."""
    X, y = make_table(180, seed=seed)
    ids = pd.DataFrame(
        {
            "patient_id": [f"P{i:03d}" for i in range(180)],
            "center": ["A"] * 120 + ["B"] * 60,
            "split": ["train"] * 120 + ["external"] * 60,
            "clnm": y,
        }
    )
    return pd.concat([ids, X], axis=1)


def test_external_rows_change_nothing_fitted(tmp_path: Path) -> None:
    table = make_cohort_table()
    spec = small_spec(families=["logistic_regression", "knn"], n_trials=3)
    external = table["split"] == "external"
    changed = table.copy()
    rng = np.random.default_rng(1)
    changed.loc[external, "clnm"] = rng.permutation(changed.loc[external, "clnm"].to_numpy())
    changed.loc[external, "age"] = changed.loc[external, "age"] * 10
    changed.loc[external, "dl_0"] = np.nan
    changed.loc[external, "location"] = "isthmus"

    def run(frame: pd.DataFrame, name: str) -> tuple[Any, np.ndarray]:
        result = fit_head_on_training_rows(
            frame, spec, storage_url=f"sqlite:///{tmp_path}/{name}.db", model_name="clinical"
        )
        return result, predict_head(result.pipeline, frame[frame["split"] == "train"])

    original, original_predictions = run(table, "original")
    after, after_predictions = run(changed, "changed")
    assert_same_numbers(original_predictions, after_predictions)
    assert original.cv_auc == after.cv_auc
    pd.testing.assert_frame_equal(
        original.comparison.drop(columns="search_seconds"),
        after.comparison.drop(columns="search_seconds"),
    )
    # The check can fail: had the external rows been used for fitting, predictions differ.
    leaky = changed.assign(split="train")
    _, leaky_predictions = run(leaky, "leaky")
    assert not np.array_equal(original_predictions, leaky_predictions[:120])


def test_fitting_needs_training_rows_and_features_only() -> None:
    table = make_cohort_table()
    with pytest.raises(ValueError, match=r"no training rows.*\['external'\]"):
        fit_head_on_training_rows(table[table["split"] == "external"], small_spec())
    with pytest.raises(ValueError, match=r"no 'split' column"):
        fit_head_on_training_rows(table.drop(columns="split"), small_spec())
    with pytest.raises(ValueError, match=r"still has the columns \['patient_id', 'center'"):
        fit_head(table, table["clnm"], small_spec(), storage_url=None)
    unlabelled = table.copy()
    unlabelled["clnm"] = unlabelled["clnm"].astype(float)
    unlabelled.loc[5, "clnm"] = np.nan
    with pytest.raises(ValueError, match=r"without a clnm label: \['P005'\]"):
        fit_head_on_training_rows(unlabelled, small_spec(), storage_url=None)


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def test_optuna_figures() -> None:
    X, y = make_table(90)
    one = fit_head(X, y, small_spec(n_trials=1), storage_url=None)
    assert optuna_figures(one.studies["logistic_regression"]) == {
        "optimization_history": None,
        "param_importances": None,
    }
    several = fit_head(X, y, small_spec(n_trials=4), storage_url=None)
    # optuna-dashboard names the objective after this (not "Objective Value")
    assert several.studies["logistic_regression"].metric_names == ["cv_log_loss"]
    assert several.studies["logistic_regression"].direction.name == "MINIMIZE"
    style = dict(plt.rcParams)
    figures = optuna_figures(several.studies["logistic_regression"])
    assert all(isinstance(f, Figure) for f in figures.values())
    assert dict(plt.rcParams) == style  # Optuna's ggplot style stays in its figures
    (axes,) = figures["param_importances"].axes  # one title, not Optuna's and ours overlapping
    assert axes.get_title(loc="left").startswith("Hyperparameter importance: head.logistic_")
    assert axes.get_title() == ""
    for figure in figures.values():
        plt.close(figure)


def test_optuna_figures_leave_out_importances_when_every_trial_scored_the_same() -> None:
    """fANOVA has no variance to explain (it raised "zero total variance in all trees"; a tiny
    cohort's CV AUC can tie): the history is drawn, the importances are not."""
    import optuna  # noqa: PLC0415

    study = optuna.create_study(direction="maximize")
    distribution = optuna.distributions.FloatDistribution(1e-3, 1e3, log=True)
    for c in (0.01, 1.0, 100.0):
        study.add_trial(
            optuna.trial.create_trial(params={"C": c}, distributions={"C": distribution}, value=0.5)
        )
    figures = optuna_figures(study)
    assert isinstance(figures["optimization_history"], Figure)
    assert figures["param_importances"] is None
    plt.close(figures["optimization_history"])


def test_predicting_needs_the_fitted_feature_columns() -> None:
    table = make_cohort_table()
    result = fit_head_on_training_rows(table, small_spec(n_trials=1), storage_url=None)
    external = table[table["split"] == "external"]
    probabilities = predict_head(result.pipeline, external)
    assert probabilities.shape == (60,)
    with pytest.raises(ValueError, match=r"lacks the feature columns .*\['age'\]"):
        predict_head(result.pipeline, external.drop(columns="age"))


# --------------------------------------------------------------------------------------
# Selection (one-standard-error rule), calibration, nested CV
# --------------------------------------------------------------------------------------


def score_table(rows: dict[str, tuple[float, float]], metric: str = "auc") -> pd.DataFrame:
    """A fabricated comparison: family -> (cv score, its SE), in a scrambled order."""
    return pd.DataFrame(
        [{"family": f, f"cv_{metric}": v, f"cv_{metric}_se": se} for f, (v, se) in rows.items()]
    )


def test_one_standard_error_rule_prefers_the_simpler_family_within_noise() -> None:
    # catboost is best by 0.015 with SE 0.02: logistic regression (simplest) is within 1 SE.
    table = score_table(
        {"catboost": (0.815, 0.02), "svm": (0.805, 0.03), "logistic_regression": (0.800, 0.02)}
    )
    chosen, reason = select_family(table, metric="auc")
    assert table["family"][chosen] == "logistic_regression"
    assert "within one standard error" in reason and "catboost" in reason
    # The maximum rule takes catboost.
    assert table["family"][select_family(table, "best", "auc")[0]] == "catboost"


def test_one_standard_error_rule_on_log_loss_where_lower_is_better() -> None:
    # catboost has the lowest log loss (0.560, SE 0.02): logistic regression (0.575) is within
    # one SE of it and simplest; svm (0.590) is not.
    table = score_table(
        {"catboost": (0.560, 0.02), "svm": (0.590, 0.03), "logistic_regression": (0.575, 0.02)},
        metric="log_loss",
    )
    chosen, reason = select_family(table)
    assert table["family"][chosen] == "logistic_regression"
    assert "log loss" in reason and "<= catboost 0.560 + SE 0.020 = 0.580" in reason
    assert table["family"][select_family(table, "best")[0]] == "catboost"
    within = within_one_standard_error(table)
    assert dict(zip(table["family"], within, strict=True)) == {
        "catboost": True,
        "svm": False,
        "logistic_regression": True,
    }
    table = score_table(
        {"logistic_regression": (0.65, 0.01), "catboost": (0.56, 0.01)}, metric="log_loss"
    )
    assert table["family"][select_family(table)[0]] == "catboost"
    with pytest.raises(ValueError, match="selection metric"):
        select_family(table, metric="brier")


def test_one_standard_error_rule_keeps_a_clearly_better_family() -> None:
    # catboost beats every simpler family by more than its SE; svm is the simplest within it.
    table = score_table(
        {"logistic_regression": (0.70, 0.02), "svm": (0.79, 0.02), "catboost": (0.80, 0.02)}
    )
    assert table["family"][select_family(table, metric="auc")[0]] == "svm"
    table = score_table({"logistic_regression": (0.70, 0.02), "catboost": (0.80, 0.02)})
    chosen, reason = select_family(table, metric="auc")
    assert table["family"][chosen] == "catboost"
    assert "no simpler family" in reason


def test_one_standard_error_rule_without_a_standard_error_takes_the_best() -> None:
    table = score_table({"logistic_regression": (0.70, np.nan), "mlp": (0.71, np.nan)})
    chosen, reason = select_family(table, metric="auc")
    assert table["family"][chosen] == "mlp" and "could not be applied" in reason


def test_complexity_order_is_declared_once_in_the_registry() -> None:
    assert next(iter(FAMILIES)) == "logistic_regression" and list(FAMILIES)[-1] == "mlp"
    X, y = make_table(120)
    result = fit_head(
        X, y, small_spec(families=["svm", "logistic_regression"], n_trials=2), storage_url=None
    )
    table = result.comparison
    assert table["complexity"].tolist() == [list(FAMILIES).index(f) for f in table["family"]]
    assert (table["n_folds"] == 3).all() and (table["cv_auc_se"] > 0).all()
    assert (table["cv_log_loss_se"] > 0).all() and table["cv_log_loss"].between(0, 5).all()
    chosen, reason = select_family(table)
    assert bool(table["selected"][chosen]) and result.selection_reason == reason


def test_standard_error_accounts_for_overlapping_folds() -> None:
    aucs = [0.70, 0.80, 0.75, 0.72, 0.78]
    naive = np.std(aucs, ddof=1) / np.sqrt(5)
    # Nadeau & Bengio: sd * sqrt(1/5 + 1/4) for 5-fold CV.
    assert cv_standard_error(aucs, 5) == pytest.approx(np.std(aucs, ddof=1) * np.sqrt(0.45))
    assert cv_standard_error(aucs, 5) > naive
    assert np.isnan(cv_standard_error([0.7], 5))


def prevalence_table(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A sizeable table with a 25% prevalence and a logistic signal."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["age", "tumor_size_mm", "x3"])
    logit = -1.6 + 1.0 * X["age"] - 0.7 * X["tumor_size_mm"]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def test_no_class_weight_offset_and_a_balanced_one_is_calibrated_away() -> None:
    X, y = prevalence_table(800, seed=5)
    spec = small_spec(
        families=["logistic_regression"], n_trials=2, outer_cv={"n_splits": 3}
    )
    offsets = {}
    for class_weight in (None, "balanced"):
        result = fit_head(X, y, {**spec, "class_weight": class_weight}, storage_url=None)
        offsets[class_weight] = calibration_intercept_slope(y, result.out_of_fold).intercept
        # The honest (nested) train_cv risks are calibrated whatever the weighting.
        risks, _ = nested_out_of_fold(X, y, {**spec, "class_weight": class_weight})
        intercept, slope = calibration_intercept_slope(y, risks)
        assert abs(intercept) < 0.15 and 0.8 < slope < 1.25, (class_weight, intercept, slope)
    # Default: no offset in the head's own scores. Balanced: the log-odds shift of ~ -1.
    assert abs(offsets[None]) < 0.1
    assert offsets["balanced"] < -0.6


def test_nested_estimate_never_scores_a_patient_its_search_has_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clnm_kedro.heads import nested, search  # noqa: PLC0415

    studied: list[tuple[str, set[int]]] = []
    finished: list[set[int]] = []
    tune, finish = search.tune_one_family, nested.finish_head

    def tune_spy(**kwargs: Any) -> Any:
        studied.append((kwargs["study_name"], set(kwargs["X"].index)))
        return tune(**kwargs)

    def finish_spy(X: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        finished.append(set(X.index))
        return finish(X, *args, **kwargs)

    monkeypatch.setattr(search, "tune_one_family", tune_spy)
    monkeypatch.setattr(nested, "finish_head", finish_spy)
    X, y = make_table(90)
    spec = small_spec(
        families=["logistic_regression", "knn"], n_trials=1, outer_cv={"n_splits": 3},
        processes=1,
    )
    risks, folds = nested_out_of_fold(X, y, spec)
    # One whole search (every family's study, the selection, the refit and the calibration)
    # per outer fold; each patient is left out of exactly one of them, the one that scores it.
    assert len(finished) == 3 and folds["n_patients"].sum() == len(X)
    assert len(studied) == 3 * 2
    for fold, rows in enumerate(finished):
        assert {name: r for name, r in studied if f".outer{fold}." in name} == {
            f"head.outer{fold}.{family}": rows for family in ("logistic_regression", "knn")
        }
    left_out = [set(X.index) - rows for rows in finished]
    assert sorted(len(rows) for rows in left_out) == sorted(folds["n_patients"])
    assert set().union(*left_out) == set(X.index)
    assert sum(len(rows) for rows in left_out) == len(X)
    assert np.isfinite(risks).all() and ((risks > 0) & (risks < 1)).all()


def test_studies_side_by_side_give_the_sequential_numbers() -> None:
    """heads.processes runs the studies (each family's, and each outer fold's) in worker
    processes: the same families, parameters and risks as one after the other in this
    process (each study is seeded and single-threaded). A count that is no count stops the
    run up front, and the old key says where it went."""
    X, y = make_table(90)
    spec = small_spec(
        families=["logistic_regression", "knn"], n_trials=2, outer_cv={"n_splits": 3},
        processes=1,
    )
    sequential, folds = nested_out_of_fold(X, y, spec, seed=4)
    parallel, parallel_folds = nested_out_of_fold(X, y, {**spec, "processes": 2}, seed=4)
    assert_same_numbers(parallel, sequential)
    assert parallel_folds["family"].tolist() == folds["family"].tolist()
    one = fit_head(X, y, spec, storage_url=None, seed=4)
    two = fit_head(X, y, {**spec, "processes": 2}, storage_url=None, seed=4)
    pd.testing.assert_frame_equal(
        one.comparison.drop(columns="search_seconds"),
        two.comparison.drop(columns="search_seconds"),
    )
    assert one.params == two.params
    with pytest.raises(ValueError, match=r"processes \(or -1\)"):
        nested_out_of_fold(X, y, {**spec, "processes": 0})
    with pytest.raises(ValueError, match=r"outer_cv\.n_jobs is now heads\.processes"):
        HeadSpec.from_params({**spec, "outer_cv": {"n_splits": 3, "n_jobs": 2}})


def test_calibrated_head_round_trips_and_scores_calibrated_risks(tmp_path: Path) -> None:
    import pickle  # noqa: PLC0415

    X, y = make_table(150)
    head = fit_head(X, y, small_spec(n_trials=1, class_weight="balanced"), storage_url=None)
    assert isinstance(head.pipeline, CalibratedHead)
    risks = head.pipeline.calibration.apply(head.pipeline.score(X))
    np.testing.assert_allclose(predict_head(head.pipeline, X.assign(patient_id="p")), risks)
    path = tmp_path / "head.pkl"
    path.write_bytes(pickle.dumps(head.pipeline))
    loaded = pickle.loads(path.read_bytes())
    np.testing.assert_allclose(loaded.predict_proba(X)[:, 1], risks)
    assert loaded.calibration == head.pipeline.calibration


def test_calibration_never_reverses_a_head() -> None:
    from clnm_kedro.heads.search import calibrate_head  # noqa: PLC0415

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    informative = np.clip(0.3 + 0.3 * y + rng.normal(0, 0.1, 300), 0.01, 0.99)
    assert calibrate_head(y, informative).slope > 0
    # Out-of-fold predictions that fall as the risk rises (per-fold prevalences of a head
    # that learnt nothing): only the intercept is refitted, the ranking is kept.
    reversed_ = np.clip(0.4 - 0.02 * y + rng.normal(0, 0.005, 300), 0.01, 0.99)
    calibration = calibrate_head(y, reversed_)
    assert calibration.slope == 1.0
    assert calibration.intercept == pytest.approx(
        calibration_intercept_slope(y, reversed_).intercept
    )
