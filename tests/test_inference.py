"""``inference`` and the model packaged in MLflow, through Kedro in a project copy.

One training run (``kedro run --env test``, ``__default__``) on a tiny
simulated two-centre cohort; then new cohorts made from its external patients with ``clnm``
emptied are scored. Checked: the external probabilities of every model are reproduced
exactly; the registered MLflow model returns what the Kedro pipeline writes; a patient with a
missing or unreadable view is recorded with the file and the others are scored; a cohort
without a training column is refused naming it; the risk threshold is the training one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.framework.project import configure_project, pipelines
from kedro.pipeline import Pipeline
from mlflow import MlflowClient

from clnm_kedro.cohort import validate_clinical, validate_rois
from clnm_kedro.cohort.errors import CohortError
from clnm_kedro.datasets import CohortDataset, RawCohort
from clnm_kedro.model_packaging import fits_scoring_model
from clnm_kedro.pipelines.inference.pipeline import (
    MODEL_INPUT,
    REGISTERED_MODEL_NAME,
    create_pipeline,
    create_scoring_pipeline,
)
from clnm_kedro.scoring import (
    RESULT_COLUMNS,
    SCORED_MODELS,
    TableCohort,
    cohort_from_table,
    embed_image,
    flatten_cohort,
    match_training_columns,
    scoring_contract,
)
from clnm_kedro.scoring.cohort_table import ALL_VIEW_COLUMNS
from cohort_factory import FactoryCohort
from float_compare import assert_same_numbers
from kedro_project import PROJECT_ROOT, make_project_copy, run_pipelines
from sim_fixtures import write_tiny_cohort

N_PATIENTS = 40
EXTERNAL = "CENTER_B"  # conf/base/parameters.yml split.external_centers


def _read(path: Path) -> pd.DataFrame:
    """A CSV output, every float read back exactly as written (pandas' fast parser is not)."""
    return pd.read_csv(path, dtype={"patient_id": str, "center": str}, float_precision="round_trip")


def _nulls_as_nan(table: pd.DataFrame) -> pd.DataFrame:
    """Empty cells as NaN whatever their type (a CSV reads None back as NaN)."""
    return table.astype(object).where(table.notna(), np.nan)


def write_new_cohort(project: Path, target: Path) -> Path:
    """The training cohort's external patients as a cohort to score (``clnm`` empty)."""
    source = project / "data" / "01_raw" / "synthetic_cohort"
    clinical = pd.read_csv(source / "clinical.csv", dtype=str, keep_default_na=False)
    clinical = clinical[clinical["center"] == EXTERNAL].assign(clnm="")
    rois = pd.read_csv(source / "rois.csv", dtype=str, keep_default_na=False)
    target.mkdir(parents=True)
    clinical.to_csv(target / "clinical.csv", index=False)
    rois[rois["patient_id"].isin(clinical["patient_id"])].to_csv(target / "rois.csv", index=False)
    for patient in clinical["patient_id"]:
        shutil.copytree(source / "images" / patient, target / "images" / patient)
    return target


def score(project: Path, cohort: Path, gradcam: bool = False) -> pd.DataFrame:
    """``kedro run --pipelines inference --params inference.cohort_dir=<cohort>``."""
    run_pipelines(
        project,
        ["inference"],
        runtime_params={"inference": {"cohort_dir": str(cohort), "gradcam": gradcam}},
    )
    return _read(project / "data" / "07_model_output" / "inference.csv")


def external_predictions(project: Path) -> pd.DataFrame:
    """The evaluation's external probabilities: one column per model, one row per patient."""
    predictions = _read(project / "data" / "07_model_output" / "predictions.csv")
    external = predictions[predictions["split"] == "external"]
    return external.pivot(index="patient_id", columns="model", values="probability")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy after a whole training run (``kedro run --env test``)."""
    project = make_project_copy(tmp_path_factory.mktemp("inference") / "project")
    write_tiny_cohort(project / "data" / "01_raw" / "synthetic_cohort", n_patients=N_PATIENTS)
    run_pipelines(project, ["__default__"], env="test")
    return project


@pytest.fixture(scope="module")
def new_cohort(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_new_cohort(trained, tmp_path_factory.mktemp("new") / "cohort")


@pytest.fixture(scope="module")
def scored(trained: Path, new_cohort: Path) -> pd.DataFrame:
    return score(trained, new_cohort)


def _load_registered(name: str) -> Pipeline:
    configure_project("clnm_kedro")
    pipelines.set_requested([name])
    try:
        return pipelines[name]
    finally:
        pipelines.set_requested(None)


@pytest.mark.parametrize("name", ["__default__", "demo"])
def test_a_whole_training_run_fits_the_scoring_model_through_kedro_session_run(name: str) -> None:
    """The model is logged by a run whose pipeline fits every artifact the scoring pipeline
    reads. ``KedroSession.run`` (Kedro 1.7) sums the named pipelines onto ``Pipeline([])`` and
    filters the sum: the whole training pipeline must still qualify on this path.
    """
    registered = _load_registered(name)
    combined = Pipeline([]) + registered
    filtered = combined.filter(
        tags=None,
        from_nodes=None,
        to_nodes=None,
        node_names=None,
        from_inputs=None,
        to_outputs=None,
        node_namespaces=None,
    )
    assert {"scoring_contract", "risk_thresholds"} <= filtered.all_outputs()
    assert fits_scoring_model(filtered, create_scoring_pipeline(), MODEL_INPUT)
    assert create_scoring_pipeline().outputs() == {"inference_results"}


def test_a_partial_training_run_logs_no_model() -> None:
    """``--from-nodes`` (and Kedro's resume suggestion after a failed node) filter the
    pipeline; a part that does not fit the scoring artifacts runs as it is and logs no model
    (no consistency error replacing the node's own); the whole does.
    """
    registered = _load_registered("__default__")
    scoring = create_scoring_pipeline()
    part = registered.filter(from_nodes=["compute_metrics"])
    assert "compute_metrics" in {node.name for node in part.nodes}
    assert len(part.nodes) < len(registered.nodes)
    assert not fits_scoring_model(part, scoring, MODEL_INPUT)
    assert not fits_scoring_model(create_pipeline(), scoring, MODEL_INPUT)
    whole = registered.from_nodes(*(node.name for node in registered.nodes))
    assert fits_scoring_model(whole, scoring, MODEL_INPUT)


def test_inference_pipeline_is_the_scoring_pipeline_behind_a_folder() -> None:
    pipeline, scoring = create_pipeline(), create_scoring_pipeline()
    assert {node.name for node in scoring.nodes} < {node.name for node in pipeline.nodes}
    assert "inference_raw_cohort" in pipeline.inputs()
    assert MODEL_INPUT in scoring.inputs()
    assert all("inference" in node.tags for node in pipeline.nodes)
    # Nothing the scoring needs is fitted during inference: only training artifacts come in.
    artifacts = {name for name in scoring.inputs() if not name.startswith("params:")}
    assert artifacts == {
        MODEL_INPUT,
        "scoring_contract",
        "risk_thresholds",
        "dl_dual_network",
        "dl_longitudinal_network",
        "dl_transverse_network",
        "clinical_head",
        "dl_features_head",
        "combined_head",
    }


def test_training_run_registers_the_packaged_model(trained: Path) -> None:
    client = MlflowClient(tracking_uri=f"sqlite:///{trained / 'mlflow.db'}")
    versions = client.search_model_versions(f"name = '{REGISTERED_MODEL_NAME}'")
    assert [str(v.version) for v in versions] == ["1"]
    run = client.get_run(versions[0].run_id)
    assert run.info.run_name == "__default__"
    assert "external.combined.auc" in run.data.metrics  # the training run itself
    # The risk threshold is the evaluation's training-set Youden cut-off, never external.
    thresholds = json.loads((trained / "data/06_models/risk_thresholds.json").read_text())
    metrics = json.loads((trained / "data/08_reporting/metrics.json").read_text())
    for model in SCORED_MODELS:
        assert thresholds[model]["threshold"] == metrics["models"][model]["threshold"]
        assert thresholds[model]["chosen_on"] in ("train", "train_cv")


def test_external_patients_reproduce_the_evaluation_exactly(
    trained: Path, scored: pd.DataFrame
) -> None:
    expected = external_predictions(trained)
    assert list(scored.columns) == list(RESULT_COLUMNS)
    assert scored["scored"].all() and scored["error_reason"].isna().all()
    assert sorted(scored["patient_id"]) == sorted(expected.index)
    rows = scored.set_index("patient_id").loc[expected.index]
    for model in SCORED_MODELS:
        assert_same_numbers(rows[f"probability_{model}"], expected[model], model)
    assert_same_numbers(rows["probability"], expected["combined"])
    threshold = json.loads((trained / "data/06_models/risk_thresholds.json").read_text())[
        "combined"
    ]["threshold"]
    assert (rows["threshold"] == threshold).all()
    high = rows["probability"] >= threshold
    assert (rows["risk_group"] == np.where(high, "high", "low")).all()


@pytest.fixture(scope="module")
def damaged_cohort(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """New patients: one without its longitudinal image, one with a corrupt transverse."""
    cohort = write_new_cohort(trained, tmp_path_factory.mktemp("damaged") / "cohort")
    first, second = sorted(path.name for path in (cohort / "images").iterdir())[:2]
    (cohort / "images" / first / "longitudinal.png").unlink()
    (cohort / "images" / second / "transverse.png").write_bytes(b"not an image at all")
    return cohort


def test_a_patient_with_a_missing_or_unreadable_view_is_recorded_and_the_others_scored(
    trained: Path, damaged_cohort: Path
) -> None:
    first, second = sorted(path.name for path in (damaged_cohort / "images").iterdir())[:2]
    results = score(trained, damaged_cohort, gradcam=True)
    errors = _read(trained / "data" / "07_model_output" / "inference_errors.csv")
    assert sorted(errors["patient_id"].unique()) == [first, second]
    missing = errors[errors["patient_id"] == first].iloc[0]
    assert missing["view"] == "longitudinal" and "no image file" in missing["reason"]
    corrupt = errors[errors["patient_id"] == second].iloc[0]
    assert corrupt["file"] == f"images/{second}/transverse.png"
    assert "unreadable" in corrupt["reason"] or "not a readable" in corrupt["reason"]

    rows = results.set_index("patient_id")
    assert not rows.loc[[first, second], "scored"].any()
    assert rows.loc[[first, second], "probability"].isna().all()
    assert rows.loc[second, "error_file"] == f"images/{second}/transverse.png"
    others = rows.drop(index=[first, second])
    assert len(others) == len(rows) - 2 and others["scored"].all()
    expected = external_predictions(trained).loc[others.index, "combined"]
    assert_same_numbers(others["probability"], expected)
    overlays = trained / "data" / "08_reporting" / "inference_gradcam"
    assert sorted(path.stem for path in overlays.glob("*.png")) == sorted(others.index)


def test_packaged_model_returns_what_the_pipeline_writes(
    trained: Path, damaged_cohort: Path
) -> None:
    pipeline_results = score(trained, damaged_cohort)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{trained / 'mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL_NAME}/1")
    finally:
        mlflow.set_tracking_uri(previous)
    table = flatten_cohort(CohortDataset(str(damaged_cohort)).load())
    packaged = model.predict(table)
    assert not packaged["scored"].all()  # the damaged patients are in both
    pd.testing.assert_frame_equal(
        _nulls_as_nan(packaged.reset_index(drop=True)),
        _nulls_as_nan(pipeline_results),
        check_dtype=False,
    )
    for column in ("probability", *(f"probability_{m}" for m in SCORED_MODELS)):
        assert_same_numbers(packaged[column], pipeline_results[column])


def test_a_cohort_without_a_training_column_is_refused(
    trained: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cohort = write_new_cohort(trained, tmp_path_factory.mktemp("no_column") / "cohort")
    clinical = pd.read_csv(cohort / "clinical.csv", dtype=str)
    clinical.drop(columns=["hashimoto"]).to_csv(cohort / "clinical.csv", index=False)
    with pytest.raises(CohortError, match=r"lacks the clinical column\(s\) \['hashimoto'\]"):
        score(trained, cohort)


# --- plain functions, no Kedro ------------------------------------------------------------


def test_a_folder_and_its_flat_table_validate_alike(cohort: FactoryCohort) -> None:
    """The table route (MLflow model) sees exactly what the folder route sees."""
    folder = CohortDataset(str(cohort.root)).load()
    table = cohort_from_table(flatten_cohort(folder))
    assert table.root == folder.root

    def validated(source: RawCohort | TableCohort) -> tuple[pd.DataFrame, ...]:
        clinical = validate_clinical(source.clinical, require_labels=False)
        return (clinical, *validate_rois(source.rois, clinical))

    for expected, got in zip(validated(folder), validated(table), strict=True):
        pd.testing.assert_frame_equal(got, expected)
    clinical = validated(table)[0]
    patient = str(clinical.at[0, "patient_id"])
    for view in ("longitudinal", "transverse"):
        assert table.image_candidates(patient, view) == [
            path.absolute() for path in folder.image_candidates(patient, view)
        ]


def test_embedded_images_validate_and_read_as_their_files(cohort: FactoryCohort) -> None:
    """An image given as a data: URI (the model's input example, a served request) is read
    exactly as the file it was made from: same validation, same pixels."""
    from clnm_kedro.cohort.images import read_greyscale  # noqa: PLC0415

    folder = CohortDataset(str(cohort.root)).load()
    table = flatten_cohort(folder)
    embedded = table.copy()
    for view in ("longitudinal", "transverse"):
        embedded[f"{view}_image"] = [embed_image(Path(p)) for p in table[f"{view}_image"]]
    by_path, by_content = cohort_from_table(table), cohort_from_table(embedded)
    clinical = validate_clinical(by_content.clinical, require_labels=False)
    pd.testing.assert_frame_equal(
        clinical, validate_clinical(by_path.clinical, require_labels=False)
    )
    patient = str(clinical.at[0, "patient_id"])
    for view in ("longitudinal", "transverse"):
        [original] = by_path.image_candidates(patient, view)
        [copy] = by_content.image_candidates(patient, view)
        assert copy != original and copy.read_bytes() == original.read_bytes()
        np.testing.assert_array_equal(read_greyscale(copy), read_greyscale(original))
    # the same image twice is written once (named by its content)
    assert cohort_from_table(embedded).image_candidates(patient, "longitudinal") == [
        by_content.image_candidates(patient, "longitudinal")[0]
    ]


def test_a_malformed_embedded_image_is_refused_naming_the_patient(cohort: FactoryCohort) -> None:
    table = flatten_cohort(CohortDataset(str(cohort.root)).load())
    patient = table.at[0, "patient_id"]
    table.at[0, "transverse_image"] = "data:image/png;base64,not base64 at all!"
    with pytest.raises(CohortError, match=rf"Patient '{patient}', transverse_image: .*data URI"):
        cohort_from_table(table)
    table.at[0, "transverse_image"] = "data:text/plain;base64,aGVsbG8="
    with pytest.raises(CohortError, match=r"one of \['application/dicom', 'image/jpeg'"):
        cohort_from_table(table)


def test_input_example_is_one_simulated_patient_or_none_for_other_columns() -> None:
    from clnm_kedro.scoring.example import EXAMPLE_ID, simulated_example  # noqa: PLC0415
    from sim_fixtures import tiny_parameters  # noqa: PLC0415

    columns = {"age": "number", "sex": "category", "tumor_size_mm": "number", "hashimoto": "number"}
    example = simulated_example(tiny_parameters(), {"clinical_columns": columns})
    assert list(example.columns) == ["patient_id", "center", *columns, *ALL_VIEW_COLUMNS]
    assert list(example["patient_id"]) == [EXAMPLE_ID]
    clinical = validate_clinical(cohort_from_table(example).clinical, require_labels=False)
    assert clinical.at[0, "age"] > 0 and pd.isna(clinical.at[0, "clnm"])  # no label given
    assert cohort_from_table(example).image_candidates(EXAMPLE_ID, "transverse")[0].is_file()
    # a cohort column the simulator does not make: no example (logged), never an invented value
    other = {**columns, "thyroglobulin": "number"}
    assert simulated_example(tiny_parameters(), {"clinical_columns": other}) is None


def test_only_a_checkout_is_built_into_the_model_wheel(tmp_path: Path) -> None:
    """A package imported from an installed wheel has no source to build: the model then ships
    the package folder (docs/inference.md); a checkout is found by its pyproject.toml."""
    from clnm_kedro.model_packaging import PACKAGE_DIR, _source_checkout  # noqa: PLC0415

    installed = tmp_path / "lib" / "site-packages" / "clnm_kedro"
    installed.mkdir(parents=True)
    assert _source_checkout(installed) is None
    assert _source_checkout(PACKAGE_DIR) == PROJECT_ROOT


def test_clinical_columns_must_keep_their_training_kind() -> None:
    training = pd.DataFrame(
        {"patient_id": ["a"], "center": ["X"], "clnm": [1], "age": [40.0], "grade": ["2"]}
    )
    contract = scoring_contract(
        training.astype({"grade": object}),
        {"image_size": 32, "roi_margin": 0.2, "intensity_percentiles": None},
    )
    assert contract["clinical_columns"] == {"age": "number", "grade": "category"}
    new = pd.DataFrame(
        {"patient_id": ["b"], "center": ["Y"], "clnm": [None], "age": [None], "grade": [3.0]}
    )
    matched = match_training_columns(new.astype({"age": object}), contract)
    assert matched["age"].dtype == float and matched.at[0, "grade"] == "3"
    text_age = new.assign(age=["forty"])
    with pytest.raises(CohortError, match=r"age \(a number in training, text here"):
        match_training_columns(text_age, contract)


# --- the registered model outside this checkout ------------------------------------------------

# Scores a flat cohort table with the model in the folder given, in whatever Python runs it, and
# reports where clnm_kedro came from and every distribution the process imported.
_SCORE_ELSEWHERE = """
import json, sys
from importlib.metadata import packages_distributions
import pandas as pd
import mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
table = pd.read_csv(sys.argv[2], dtype=str, keep_default_na=False)
model.predict(table).to_csv(sys.argv[3], index=False)
import clnm_kedro
owners = packages_distributions()
used = sorted({d for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])})
print(json.dumps({"clnm_kedro": clnm_kedro.__file__, "distributions": used}))
"""


def _key(name: str) -> str:
    """A distribution's name as pip compares them."""
    return name.lower().replace("_", "-").replace(".", "-")


def _requirement_closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` install: themselves and what they require, as this
    environment's metadata says (extras and environment markers taken into account)."""
    from importlib.metadata import PackageNotFoundError, distribution  # noqa: PLC0415

    from packaging.requirements import Requirement  # noqa: PLC0415

    seen: set[str] = set()
    todo = [(Requirement(line), frozenset()) for line in requirements]
    while todo:
        requirement, extras = todo.pop()
        marker_ok = requirement.marker is None or any(
            requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""})
        )
        if not marker_ok or _key(requirement.name) in seen:
            continue
        seen.add(_key(requirement.name))
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            continue
        todo.extend(
            (Requirement(line), frozenset(requirement.extras)) for line in dist.requires or []
        )
    return seen


def _model_folder(trained: Path, target: Path) -> Path:
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{trained / 'mlflow.db'}")
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{REGISTERED_MODEL_NAME}/1", dst_path=str(target)
            )
        )
    finally:
        mlflow.set_tracking_uri(previous)


def test_registered_model_describes_its_input_and_carries_the_project(trained: Path) -> None:
    from importlib.metadata import version  # noqa: PLC0415

    from mlflow.models import Model  # noqa: PLC0415

    folder = _model_folder(trained, trained / "model_copy")
    model = Model.load(str(folder / "MLmodel"))
    contract = json.loads((trained / "data/06_models/scoring_contract.json").read_text())
    inputs = {spec.name: spec for spec in model.signature.inputs.inputs}
    view_columns = [
        f"{v}_{f}"
        for v in ("longitudinal", "transverse")
        for f in ("image", "x_min", "y_min", "x_max", "y_max")
    ]
    assert list(inputs) == [
        "patient_id",
        "center",
        "clnm",
        *contract["clinical_columns"],
        *view_columns,
    ]
    assert not inputs["clnm"].required and inputs["age"].required
    assert [spec.name for spec in model.signature.outputs.inputs] == list(RESULT_COLUMNS)
    assert model.metadata["clnm_kedro_version"] == version("clnm_kedro")
    # The project travels as its wheel, at its version, installed by the requirements.
    wheel = f"clnm_kedro-{version('clnm_kedro')}-py3-none-any.whl"
    assert [path.name for path in (folder / "code").iterdir()] == [wheel]
    requirements = (folder / "requirements.txt").read_text().split()
    assert f"code/{wheel}" in requirements
    for name in ("mlflow", "kedro", "kedro-mlflow", "torch", "scikit-learn"):
        assert f"{name}=={version(name)}" in requirements, name


def test_registered_model_input_example_is_a_simulated_patient_that_scores(
    trained: Path,
) -> None:
    """The example is one simulated patient (never a cohort's), images inside the row."""
    from mlflow.models import Model  # noqa: PLC0415

    folder = _model_folder(trained, trained / "model_example")
    example = Model.load(str(folder / "MLmodel")).load_input_example(str(folder))
    assert list(example["patient_id"]) == ["simulated_example"]
    cohort = pd.read_csv(trained / "data/01_raw/synthetic_cohort/clinical.csv", dtype=str)
    assert "simulated_example" not in set(cohort["patient_id"])
    for view in ("longitudinal", "transverse"):
        assert str(example.at[0, f"{view}_image"]).startswith("data:image/png;base64,")
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{trained / 'mlflow.db'}")
    try:
        model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL_NAME}/1")
    finally:
        mlflow.set_tracking_uri(previous)
    results = model.predict(model.input_example)
    assert results["scored"].all(), results[["error_file", "error_reason"]]
    assert results["probability"].between(0, 1).all()


@pytest.mark.slow
def test_registered_model_scores_alike_in_a_separate_environment(
    trained: Path, new_cohort: Path, scored: pd.DataFrame, tmp_path: Path
) -> None:
    """The model in its own virtual environment, outside the checkout, its requirements
    installed as a user does (``pip install -r requirements.txt`` in the model folder): the
    project comes from the model's own wheel, every distribution it imports is one its
    ``requirements.txt`` installs (of the project's dependencies), and it scores the new
    patients as ``kedro run`` did.

    With ``CLNM_WHEELHOUSE`` (a folder of wheels of every requirement) the environment is
    built from ``requirements.txt`` alone (``pip install --no-index``). Without it, installing
    torch (CUDA build) and the rest anew is too heavy for a test (about 6 GB, minutes): the
    new environment then sees the third-party packages of this one (one ``.pth`` line, the
    project's own editable install not among them), pip finds every pinned requirement
    satisfied there and installs the one that is not, the project wheel.
    """
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import sysconfig  # noqa: PLC0415

    folder = _model_folder(trained, tmp_path / "model")
    lines = [line.strip() for line in (folder / "requirements.txt").read_text().splitlines()]
    wheels = [line for line in lines if line.endswith(".whl")]
    assert [Path(line).name for line in wheels] == [p.name for p in (folder / "code").iterdir()]
    # the pinned third-party packages (the wheel's own dependencies left aside: they must
    # cover what scoring imports by themselves)
    requirements = [
        line for line in lines if line and not line.startswith(("-", "#")) and line not in wheels
    ]
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    environment = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    # no pip of its own (ensurepip costs seconds): this pip installs into it (`--python`)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    wheelhouse = os.environ.get("CLNM_WHEELHOUSE")
    if wheelhouse:
        sources = ["--find-links", wheelhouse]
    else:
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        Path(site, "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        sources = ["--no-deps"]  # the pinned packages are there; the wheel needs no others
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
         "--quiet", *sources,
         "-r", "requirements.txt"],
        check=False, cwd=folder, env=environment, capture_output=True, text=True,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]

    table = tmp_path / "table.csv"
    flatten_cohort(CohortDataset(str(new_cohort)).load()).to_csv(table, index=False)
    results = tmp_path / "results.csv"
    done = subprocess.run(
        [str(python), "-c", _SCORE_ELSEWHERE, str(folder), str(table), str(results)],
        check=False,
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # the wheel's copy, installed in the new environment (not the checkout, not the model folder)
    assert Path(report["clnm_kedro"]).is_relative_to(venv), report["clnm_kedro"]
    # Every dependency of the project that scoring imports is installed by the requirements
    # (others, such as IPython, are imported only where they happen to be installed).
    import tomllib  # noqa: PLC0415

    from packaging.requirements import Requirement  # noqa: PLC0415

    declared = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    ours = {_key(Requirement(line).name) for line in declared["dependencies"]}
    used = {_key(name) for name in report["distributions"]} & ours
    missing = used - _requirement_closure(requirements)
    assert not missing, f"imported but not in the model's requirements: {sorted(missing)}"

    elsewhere = _read(results)
    assert list(elsewhere.columns) == list(RESULT_COLUMNS)
    rows = elsewhere.set_index("patient_id").loc[scored["patient_id"]]
    for column in ("probability", *(f"probability_{m}" for m in SCORED_MODELS)):
        assert_same_numbers(rows[column], scored.set_index("patient_id")[column], column)
    assert (rows["risk_group"].to_numpy() == scored["risk_group"].to_numpy()).all()
