"""The ``clinical_modeling`` and ``fusion`` pipelines through Kedro, in isolated project copies.

A tiny two-centre cohort (``cohort_table``, ``patient_splits``, ``dl_dual_features``) is
written straight into each copy and the pipelines run with the ``test`` settings (two cheap
families, two trials, 3-fold CV). Checked: every patient gets its rows, the external centre
changes nothing fitted, a stored study resumes, bad parameters stop the run at its start,
MLflow records what a user looks for.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io.catalog_config_resolver import CatalogConfigResolver
from mlflow import MlflowClient
from sklearn.base import clone
from sklearn.model_selection import RepeatedStratifiedKFold

from clnm_kedro.heads.head_pipeline import selection_out_of_fold
from clnm_kedro.heads.nested import nested_out_of_fold
from clnm_kedro.heads.search import calibrate_head
from clnm_kedro.heads.tables import clinical_model_input, combined_model_input
from clnm_kedro.pipelines.clinical_modeling import create_pipeline as clinical_pipeline
from clnm_kedro.pipelines.fusion import create_pipeline as fusion_pipeline
from clnm_kedro.pipelines.head_template import (
    predict_out_of_fold,
    tune_head,
    validate_head_settings,
)
from clnm_kedro.settings import CONFIG_LOADER_ARGS
from float_compare import assert_same_numbers
from kedro_project import PROJECT_ROOT, make_project_copy, run_pipelines

MODELS = ("clinical", "dl_features", "combined")
PIPELINES = ["clinical_modeling", "fusion"]
N_TRAIN, N_EXTERNAL, N_DL = 45, 21, 6


def make_cohort(seed: int = 0) -> dict[str, pd.DataFrame]:
    """``cohort_table``, ``patient_splits`` and ``dl_dual_features`` of a small cohort."""
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_EXTERNAL
    clnm = (rng.random(n) < 0.4).astype(int)
    clnm[:6] = [0, 1, 0, 1, 0, 1]  # both classes in every fold, whatever the draw
    ids = [f"A{i:03d}" for i in range(N_TRAIN)] + [f"B{i:03d}" for i in range(N_EXTERNAL)]
    center = ["CENTER_A"] * N_TRAIN + ["CENTER_B"] * N_EXTERNAL
    cohort_table = pd.DataFrame(
        {
            "patient_id": ids,
            "center": center,
            "clnm": clnm,
            "age": rng.normal(46, 10, n).round() - 4 * clnm,
            "sex": np.where(rng.random(n) < 0.2 + 0.3 * clnm, "M", "F"),
            "tumor_size_mm": (rng.gamma(4, 1.4, n) + 1.5 * clnm).round(1),
            "capsule_contact": np.where(rng.random(n) < 0.1, np.nan, rng.random(n) < 0.3),
            "location": rng.choice(["upper", "middle", "lower", "isthmus"], n),
        }
    )
    cohort_table["capsule_contact"] = cohort_table["capsule_contact"].astype(float)
    patient_splits = pd.DataFrame(
        {
            "patient_id": ids,
            "center": center,
            "clnm": clnm,
            "split": ["train"] * N_TRAIN + ["external"] * N_EXTERNAL,
            "fold": [i % 5 for i in range(N_TRAIN)] + [-1] * N_EXTERNAL,
        }
    )
    features = rng.normal(size=(n, N_DL)) + np.outer(clnm, [0.9, 0.6] + [0.0] * (N_DL - 2))
    dl_dual_features = pd.DataFrame(features, columns=[f"dl_{i:03d}" for i in range(N_DL)])
    dl_dual_features.insert(0, "patient_id", ids)
    return {
        "cohort_table": cohort_table,
        "patient_splits": patient_splits,
        "dl_dual_features": dl_dual_features.iloc[::-1],  # order must not matter
    }


def write_inputs(project: Path, tables: dict[str, pd.DataFrame]) -> None:
    data = project / "data"
    tables["cohort_table"].to_parquet(data / "02_intermediate" / "cohort_table.parquet")
    tables["patient_splits"].to_csv(data / "03_primary" / "patient_splits.csv", index=False)
    tables["dl_dual_features"].to_parquet(data / "04_feature" / "dl_dual_features.parquet")


def new_project(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    project = make_project_copy(folder)
    write_inputs(project, tables)
    return project


def read_outputs(project: Path) -> dict[str, Any]:
    """Predictions, comparison tables, selections and heads of the three models."""
    data = project / "data"
    outputs: dict[str, Any] = {}
    for model in MODELS:
        outputs[f"{model}_predictions"] = pd.read_csv(
            data / "07_model_output" / f"{model}_predictions.csv", dtype={"patient_id": str}
        )
        outputs[f"{model}_head_comparison"] = pd.read_csv(
            data / "08_reporting" / f"{model}_head_comparison.csv"
        )
        outputs[f"{model}_head_selection"] = json.loads(
            (data / "06_models" / f"{model}_head_selection.json").read_text()
        )
        with (data / "06_models" / f"{model}_head.pkl").open("rb") as file:
            outputs[f"{model}_head"] = pickle.load(file)  # our own file
    return outputs


def run(project: Path, pipelines: list[str], **kwargs: Any) -> None:
    """Run ``pipelines`` through Kedro in the isolated project."""
    run_pipelines(project, pipelines, **kwargs)


def study_sizes(project: Path) -> dict[str, int]:
    storage = f"sqlite:///{project}/data/06_models/optuna.db"
    return {
        summary.study_name: summary.n_trials
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
    }


SMALL_HEADS: dict[str, Any] = {
    "families": ["logistic_regression"],
    "n_trials": 2,
    "timeout_s": None,
    "cv": {"n_splits": 3, "n_repeats": 2},
    "outer_cv": {"n_splits": None},  # the selection CV as train_cv (nested CV is the default)
    "search_space": {
        "logistic_regression": {"C": {"type": "float", "low": 0.01, "high": 10.0, "log": True}}
    },
}


@pytest.fixture(scope="module")
def cohort() -> dict[str, pd.DataFrame]:
    return make_cohort()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, cohort: dict[str, pd.DataFrame]) -> Path:
    """A project copy in which clinical_modeling and fusion have run once."""
    project = new_project(tmp_path_factory.mktemp("baseline"), cohort)
    run(project, PIPELINES, env="test")
    return project


def test_pipelines_share_one_template() -> None:
    clinical, fusion = clinical_pipeline(), fusion_pipeline()
    assert {"cohort_table", "patient_splits", "params:heads", "params:clinical_modeling"} <= set(
        clinical.inputs()
    )
    assert {"dl_dual_features", "params:fusion.dl_features", "params:fusion.combined"} <= set(
        fusion.inputs()
    )
    for pipeline, models in ((clinical, ["clinical"]), (fusion, ["dl_features", "combined"])):
        for model in models:
            names = {n.name for n in pipeline.nodes if n.namespace == model}
            assert names == {
                f"{model}.{name}"
                for name in (
                    "validate_head_settings",
                    "tune_head",
                    "log_head_to_mlflow",
                    "predict_with_head",
                    "predict_out_of_fold",
                    "stack_predictions",
                    "compare_families",
                    "plot_head_search",
                    "collect_head_metrics",
                    "record_head_selection",
                )
            }
            # Outputs used by other pipelines have plain names (no namespace dots).
            assert {f"{model}_predictions", f"{model}_head"} <= pipeline.all_outputs()
            inference = pipeline.only_nodes_with_tags("inference")
            assert f"{model}.predict_with_head" in {n.name for n in inference.nodes}
            assert f"{model}.tune_head" not in {n.name for n in inference.nodes}


def test_catalog_stores_each_output_where_it_belongs() -> None:
    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": "base"}
    )
    resolver = CatalogConfigResolver(loader["catalog"], credentials=loader["credentials"])
    pipeline = clinical_pipeline() + fusion_pipeline()
    datasets = pipeline.datasets() - {d for d in pipeline.datasets() if d.startswith("params:")}
    for name in sorted(datasets):
        matched = name in resolver.config or resolver.match_dataset_pattern(name) is not None
        # Namespaced datasets stay in memory; every other one is stored (none is lost).
        assert matched != ("." in name), name
    stored = {name: resolver.resolve_pattern(name) for name in datasets if "." not in name}
    assert stored["combined_head"]["filepath"] == "data/06_models/combined_head.pkl"
    assert stored["clinical_predictions"]["filepath"] == (
        "data/07_model_output/clinical_predictions.csv"
    )
    assert stored["dl_features_model_input"]["metadata"]["kedro-viz"]["layer"] == "model_input"
    assert stored["combined_head_metrics"]["type"].endswith("MlflowMetricsHistoryDataset")


def test_every_patient_gets_its_predictions(
    baseline: Path, cohort: dict[str, pd.DataFrame]
) -> None:
    outputs = read_outputs(baseline)
    splits = cohort["patient_splits"]
    train_ids = set(splits.loc[splits["split"] == "train", "patient_id"])
    external_ids = set(splits.loc[splits["split"] == "external", "patient_id"])
    labels = dict(zip(splits["patient_id"], splits["clnm"], strict=True))
    varying: list[str] = []
    for model in MODELS:
        table = outputs[f"{model}_predictions"]
        assert list(table.columns) == [
            "patient_id",
            "center",
            "split",
            "model",
            "clnm",
            "probability",
        ]
        assert set(table["model"]) == {model}
        for split, expected in (
            ("train", train_ids),
            ("train_cv", train_ids),
            ("external", external_ids),
        ):
            rows = table[table["split"] == split]
            assert len(rows) == len(expected) and set(rows["patient_id"]) == expected
        assert (table["clnm"] == table["patient_id"].map(labels)).all()
        assert table["probability"].between(0, 1).all()
        # Out-of-fold rows are not the apparent ones: each comes from a head fitted without it
        # (unless the head learnt nothing: its calibrated risk is then the prevalence for all).
        train = table[table["split"] == "train"].set_index("patient_id")["probability"]
        train_cv = table[table["split"] == "train_cv"].set_index("patient_id")["probability"]
        if train.nunique() > 1:
            varying.append(model)
            assert not np.allclose(train.sort_index(), train_cv.sort_index())

        comparison = outputs[f"{model}_head_comparison"]
        assert list(comparison["family"]) == ["logistic_regression", "knn"]
        assert comparison["selected"].sum() == 1
        assert comparison["n_trials"].tolist() == [2, 2]
        assert comparison[["cv_auc", "train_auc", "external_auc"]].notna().all().all()
        selected = comparison[comparison["selected"]].iloc[0]
        selection = outputs[f"{model}_head_selection"]
        assert selection["family"] == selected["family"]
        # Why the family won (the one-SE table) and which estimate train_cv is.
        assert comparison[["cv_auc_se", "within_one_se", "complexity"]].notna().all().all()
        assert selected["within_one_se"] and selected["selection_reason"]
        assert selection["selection_rule"] == "one_standard_error"
        assert (comparison["train_cv_estimate"] == "selection").all()
        assert selection["train_cv"]["estimate"] == "selection"
        assert set(selection["calibration"]) == {"intercept", "slope", "n", "events"}
        assert selected["study"].startswith(f"{model}.{selected['family']}.")

    assert "clinical" in varying  # the check above was made
    data = baseline / "data"
    clinical = pd.read_parquet(data / "05_model_input" / "clinical_model_input.parquet")
    assert list(clinical.columns) == [
        "patient_id",
        "center",
        "split",
        "clnm",
        "age",
        "sex",
        "tumor_size_mm",
        "capsule_contact",
        "location",
    ]
    combined = pd.read_parquet(data / "05_model_input" / "combined_model_input.parquet")
    assert [c for c in combined.columns if c.startswith("dl_")] == [
        f"dl_{i:03d}" for i in range(N_DL)
    ]
    assert list(combined["patient_id"]) == list(splits["patient_id"])  # splits' order
    encoded = pd.read_parquet(data / "04_feature" / "clinical_features.parquet")
    assert {"sex=F", "sex=M", "location=isthmus"} <= set(encoded.columns)
    for model in MODELS:
        for figure in ("optimization_history", "param_importances"):
            assert (data / "08_reporting" / "figures" / f"{model}_{figure}.png").stat().st_size


def test_mlflow_records_the_heads(baseline: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{baseline / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "clnm_kedro"]
    (run,) = client.search_runs([experiment.experiment_id])
    metrics, params = run.data.metrics, run.data.params
    for model in MODELS:
        assert 0 <= metrics[f"train_cv.{model}.cv_auc"] <= 1
        assert {f"train_cv.{model}.knn.cv_auc", f"external.{model}.knn.auc"} <= set(metrics)
        assert params[f"{model}.head.family"] in ("logistic_regression", "knn")
    assert params["heads.n_trials"] == "2"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "heads")}
    assert {f"heads/{model}_head_comparison.csv" for model in MODELS} <= artifacts
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/combined_optimization_history.png" in figures
    models = client.search_logged_models([experiment.experiment_id])
    assert {m.name for m in models} >= {f"{model}_head" for model in MODELS}


def test_external_centre_changes_nothing_fitted(
    baseline: Path, cohort: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    changed = {name: table.copy() for name, table in cohort.items()}
    external = changed["patient_splits"]["split"].to_numpy() == "external"
    permuted = rng.permutation(changed["patient_splits"].loc[external, "clnm"].to_numpy())
    for name in ("patient_splits", "cohort_table"):
        changed[name].loc[external, "clnm"] = permuted
    features = changed["dl_dual_features"].set_index("patient_id")
    external_ids = changed["patient_splits"].loc[external, "patient_id"]
    features.loc[external_ids] = features.loc[rng.permutation(external_ids)].to_numpy()
    changed["dl_dual_features"] = features.reset_index()
    project = new_project(tmp_path / "permuted", changed)
    run(project, PIPELINES, env="test")

    before, after = read_outputs(baseline), read_outputs(project)
    training = ["model", "family", "selected", "cv_auc", "train_auc", "n_trials", "best_params"]
    for model in MODELS:
        for split in ("train", "train_cv"):
            rows = [o[f"{model}_predictions"] for o in (before, after)]
            first, second = (r[r["split"] == split].reset_index(drop=True) for r in rows)
            pd.testing.assert_frame_equal(first, second)
        comparisons = [o[f"{model}_head_comparison"] for o in (before, after)]
        pd.testing.assert_frame_equal(comparisons[0][training], comparisons[1][training])
        assert comparisons[0]["study"].tolist() == comparisons[1]["study"].tolist()
        assert before[f"{model}_head_selection"] == after[f"{model}_head_selection"]
        # The fitted heads are the same: same probabilities for the same patients.
        table = pd.read_parquet(
            project / "data" / "05_model_input" / f"{model}_model_input.parquet"
        )
        features = table.drop(columns=["patient_id", "center", "split", "clnm"])
        assert_same_numbers(
            before[f"{model}_head"].predict_proba(features),
            after[f"{model}_head"].predict_proba(features),
        )
    # The check can fail: the external data did change, and so did what is scored on it.
    assert any(
        not np.allclose(
            before[f"{model}_head_comparison"]["external_auc"],
            after[f"{model}_head_comparison"]["external_auc"],
        )
        for model in MODELS
    )


def test_stored_study_resumes(
    baseline: Path, cohort: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    project = tmp_path / "rerun"
    shutil.copytree(baseline, project)
    sizes = study_sizes(project)
    assert len(sizes) == 2 * len(MODELS) and set(sizes.values()) == {2}
    before = read_outputs(project)
    run(project, PIPELINES, env="test")
    assert study_sizes(project) == sizes  # resumed: no new trial, no new study
    after = read_outputs(project)
    for model in MODELS:
        pd.testing.assert_frame_equal(before[f"{model}_predictions"], after[f"{model}_predictions"])


def test_optuna_storage_comes_from_credentials_and_stays_out_of_mlflow(
    tmp_path: Path, cohort: dict[str, pd.DataFrame], capfd: pytest.CaptureFixture[str]
) -> None:
    """``optuna_storage.url`` in conf/local/credentials.yml is the store the search writes
    (not the parameter's data/06_models/optuna.db), and that URL reaches neither MLflow's
    parameters and tags nor the console."""
    project = new_project(tmp_path / "project", cohort)
    store = tmp_path / "elsewhere" / "studies_from_credentials.db"
    url = f"sqlite:///{store}"
    local = project / "conf" / "local"
    (local / "credentials.yml").write_text(f"optuna_storage:\n  url: {url}\n")
    # the default environment (base + local), with the test's small search
    shutil.copy2(project / "conf" / "test" / "parameters_heads.yml", local / "parameters_heads.yml")
    run(project, ["clinical_modeling"], env="local")
    console = "".join(capfd.readouterr())

    names = optuna.get_all_study_names(url)
    assert sorted(n.split(".")[1] for n in names) == ["knn", "logistic_regression"]
    assert not (project / "data" / "06_models" / "optuna.db").exists()
    selection = json.loads((project / "data/06_models/clinical_head_selection.json").read_text())
    assert selection["study"] in names and selection["optuna_storage_url"] == url

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "clnm_kedro"]
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    recorded = {**mlflow_run.data.params, **mlflow_run.data.tags}
    assert mlflow_run.data.params["optuna_storage_url"] == "sqlite:///data/06_models/optuna.db"
    assert not [key for key, value in recorded.items() if store.name in value]
    assert "clinical.head.family" in recorded  # the check above looked at the run's records
    assert store.name not in console and "clinical model: selected" in console


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (
            "heads:\n  search_space:\n    knn:\n"
            "      n_neighbors: {type: uniform, low: 3, high: 9}\n",
            r"Invalid classifier-head parameters.*knn\.n_neighbors: unknown type",
        ),
        ("optuna_storage_url: not a url\n", r"optuna_storage_url is not a valid"),
    ],
)
def test_bad_parameters_stop_the_run_at_its_start(
    tmp_path: Path, cohort: dict[str, pd.DataFrame], conf: str, message: str
) -> None:
    project = new_project(tmp_path / "project", cohort)
    (project / "conf" / "local" / "parameters_bad.yml").write_text(conf)
    with pytest.raises(ValueError, match=message):
        run(project, PIPELINES, env="local")
    assert not list((project / "data" / "06_models").iterdir())  # nothing tuned or fitted


def test_missing_features_name_the_patients(
    tmp_path: Path, cohort: dict[str, pd.DataFrame]
) -> None:
    tables = dict(cohort)
    tables["dl_dual_features"] = cohort["dl_dual_features"].query("patient_id != 'B003'")
    project = new_project(tmp_path / "project", tables)
    with pytest.raises(
        ValueError,
        match=r"1 patients of patient_splits have no row in "
        r"dl_dual_features: \['B003'\]",
    ):
        run(project, ["fusion"], env="test")


def test_out_of_fold_rows_use_the_search_folds(cohort: dict[str, pd.DataFrame]) -> None:
    table = clinical_model_input(cohort["cohort_table"], cohort["patient_splits"])
    settings = validate_head_settings(SMALL_HEADS, {"model": "clinical"}, None, 3)
    head, _ = tune_head(table, settings)
    rows, summary, final = predict_out_of_fold(head, table, settings)
    assert summary["estimate"] == "selection" and summary["outer_folds"] == []
    assert final is head  # no nested CV: nothing measured to recalibrate with
    train = table[table["split"] == "train"]
    X = train.drop(columns=["patient_id", "center", "split", "clnm"])
    y = train["clnm"].astype(int).to_numpy()
    # The search's CV: 3 folds, repeated twice, seeded; the mean over the two repeats.
    expected = np.zeros(len(y))
    for fold_train, fold_test in RepeatedStratifiedKFold(
        n_splits=3, n_repeats=2, random_state=3
    ).split(X, y):
        fitted = clone(head.pipeline).fit(X.iloc[fold_train], y[fold_train])
        expected[fold_test] += fitted.predict_proba(X.iloc[fold_test])[:, 1] / 2
    assert list(rows["patient_id"]) == list(train["patient_id"])
    assert set(rows["split"]) == {"train_cv"}
    # ... through the head's calibration, which was fitted on exactly these predictions.
    assert head.calibration == calibrate_head(y, expected, "clinical")
    np.testing.assert_allclose(rows["probability"], head.calibration.apply(expected))


def test_out_of_fold_rows_are_the_nested_estimate_when_asked(
    cohort: dict[str, pd.DataFrame],
) -> None:
    """With nested CV the train_cv risks are the nested ones recalibrated patient by patient
    (each by a recalibration fitted on the other patients' nested risks), and the final head is
    the searched one with the recalibration fitted on all of them after its own calibration."""
    table = clinical_model_input(cohort["cohort_table"], cohort["patient_splits"])
    heads = {**SMALL_HEADS, "cv": {"n_splits": 3, "n_repeats": 1}, "outer_cv": {"n_splits": 3}}
    settings = validate_head_settings(heads, {"model": "clinical"}, None, 3)
    head, _ = tune_head(table, settings)
    rows, summary, final = predict_out_of_fold(head, table, settings)
    train = table[table["split"] == "train"]
    X = train.drop(columns=["patient_id", "center", "split", "clnm"])
    y = train["clnm"].astype(int).to_numpy()
    nested, folds = nested_out_of_fold(X, y, settings.spec, seed=3)
    assert folds["n_patients"].sum() == len(y)
    expected = [
        calibrate_head(np.delete(y, i), np.delete(nested, i), "clinical").apply(nested[[i]])[0]
        for i in range(len(y))
    ]
    np.testing.assert_allclose(rows["probability"], expected, rtol=1e-8)
    assert summary["estimate"] == "nested" and len(summary["outer_folds"]) == 3
    assert [f["family"] for f in summary["outer_folds"]] == folds["family"].tolist()
    correction = calibrate_head(y, nested, "clinical")
    assert summary["optimism_correction"] == pytest.approx(correction.to_dict(), rel=1e-9)
    # The final head: the searched head's map, then the correction, as one map.
    np.testing.assert_allclose(
        final.predict_proba(X)[:, 1], correction.apply(head.predict_proba(X)[:, 1]), rtol=1e-9
    )
    assert final.pipeline is head.pipeline
    # Not the selection CV's predictions of the head refitted on all patients.
    selection = head.calibration.apply(
        selection_out_of_fold(head.pipeline, X, y, settings.spec, 3)
    )
    assert not np.allclose(rows["probability"], selection)


def test_model_input_tables_name_what_is_wrong(cohort: dict[str, pd.DataFrame]) -> None:
    cohort_table, splits = cohort["cohort_table"], cohort["patient_splits"]
    dl = cohort["dl_dual_features"]
    with pytest.raises(ValueError, match=r"have no row in cohort_table: \['A002'\]"):
        clinical_model_input(cohort_table.query("patient_id != 'A002'"), splits)
    with pytest.raises(ValueError, match=r"\['bmi'\] are not in cohort_table"):
        clinical_model_input(cohort_table, splits, ["age", "bmi"])
    relabelled = cohort_table.copy()
    relabelled.loc[4, "clnm"] = 1 - relabelled.loc[4, "clnm"]
    with pytest.raises(ValueError, match=r"other clnm values for the patients \['A004'\]"):
        clinical_model_input(relabelled, splits)
    repeated = pd.concat([dl, dl.query("patient_id == 'A001'")])
    with pytest.raises(ValueError, match=r"more than one row for the patients \['A001'\]"):
        combined_model_input(repeated, cohort_table, splits)
    renamed = dl.rename(columns=lambda c: c.replace("dl_", "f_"))
    with pytest.raises(ValueError, match=r"no columns starting with 'dl_'"):
        combined_model_input(renamed, cohort_table, splits)
    chosen = clinical_model_input(cohort_table, splits, ["tumor_size_mm", "sex"])
    assert list(chosen.columns) == ["patient_id", "center", "split", "clnm", "tumor_size_mm", "sex"]
