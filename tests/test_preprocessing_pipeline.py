"""The ``preprocessing`` pipeline end to end through Kedro, on a tiny cohort in an isolated
copy of the project: cached crops, splits, report, MLflow run; raw files untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from clnm_kedro.pipelines.preprocessing import create_pipeline
from cohort_factory import DICOM_IDENTIFIERS, write_cohort, write_dicom
from kedro_project import make_project_copy, run_pipelines


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_pipeline_is_wired_from_the_raw_cohort() -> None:
    pipeline = create_pipeline()
    assert {"raw_cohort", "params:preprocessing", "params:split", "params:seed"} <= set(
        pipeline.inputs()
    )
    expected = {"cohort_table", "exclusions", "data_quality_report", "roi_crops"}
    assert expected | {"patient_splits", "preprocessing_metrics"} <= pipeline.all_outputs()


@pytest.mark.slow
def test_preprocessing_through_kedro(tmp_path: Path) -> None:
    cohort = write_cohort(tmp_path / "cohort", extra_columns={"notes": ["private note"] * 42})
    for view in ("longitudinal", "transverse"):  # P002 is stored as DICOM with identifiers
        png = cohort.image("P002", view)
        pixels = np.asarray(Image.open(png))
        png.unlink()
        write_dicom(png.with_suffix(".dcm"), pixels.astype(np.uint16) * 200, bits_stored=16)
    cohort.image("P003", "transverse").unlink()  # one recorded exclusion
    before = checksums(cohort.root)

    project = make_project_copy(tmp_path / "project")
    (project / "src").mkdir(exist_ok=True)  # bootstrap_project wants one; the package is installed
    run_pipelines(
        project, ["preprocessing"], env="test", runtime_params={"cohort_dir": str(cohort.root)}
    )

    assert checksums(cohort.root) == before  # raw data is read-only: same files, same bytes

    data = project / "data"
    crops = np.load(data / "03_primary" / "roi_crops.npy")
    splits = pd.read_csv(data / "03_primary" / "patient_splits.csv", dtype={"patient_id": str})
    table = pd.read_parquet(data / "02_intermediate" / "cohort_table.parquet")
    exclusions = pd.read_csv(data / "02_intermediate" / "exclusions.csv")
    report = json.loads((data / "02_intermediate" / "data_quality_report.json").read_text())

    kept = [pid for pid in cohort.clinical["patient_id"] if pid != "P003"]
    assert crops.shape == (41, 2, 48, 48)  # the test environment's image_size
    assert crops.dtype == np.uint8
    assert splits["patient_id"].tolist() == kept
    assert table["patient_id"].tolist() == kept
    assert "notes" not in table.columns
    assert set(splits["split"]) == {"train", "external"}
    assert (splits.loc[splits["center"] == "CENTER_B", "fold"] == -1).all()
    assert exclusions[["patient_id", "view"]].values.tolist() == [["P003", "transverse"]]
    assert report["patients_read"] == 42
    assert report["patients_excluded"] == 1
    assert report["counts_per_center_and_label"]["after_exclusions"]["CENTER_A"]["total"] == 29
    assert crops[kept.index("P002")].mean() > 0  # the DICOM patient was read

    outputs = b"".join(path.read_bytes() for path in sorted(data.rglob("*")) if path.is_file())
    for value in (*DICOM_IDENTIFIERS.values(), "private note"):
        assert value.encode() not in outputs

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("clnm_kedro").experiment_id])
    assert run.data.metrics["preprocessing.patients_excluded"] == 1
    assert run.data.metrics["preprocessing.included.CENTER_B"] == 12
