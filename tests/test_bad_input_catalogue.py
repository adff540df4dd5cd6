"""A catalogue of malformed (and merely unusual) cohorts, run through the ``preprocessing``
pipeline by Kedro's runner: each gives its specific message or recorded exclusion, or is read
correctly, and never changes a raw file. The catalogue is documented in docs/input_contract.md.

Complements tests/test_cohort_validation.py (one check per rule, on the node functions).
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import pytest
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner
from mlflow.utils.validation import _validate_metric_name
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLossless

from clnm_kedro.cohort import CohortError
from clnm_kedro.datasets import CohortDataset, TableCSVDataset
from clnm_kedro.datasets.table_csv_dataset import FORMULA_STARTS
from clnm_kedro.pipelines.preprocessing import create_pipeline
from clnm_kedro.pipelines.preprocessing.nodes import _metric_name
from clnm_kedro.reporting.figures import plot_gradcam_panel
from cohort_factory import FactoryCohort, write_cohort, write_dicom

PREPROCESSING = {
    "image_size": 24,
    "roi_margin": 0.25,
    "intensity_percentiles": [0.5, 99.5],
    "clinical_columns": ["age", "sex", "tumor_size_mm", "capsule_contact", "location"],
    "require_labels": True,
    "progress_bar": False,
}
SPLIT = {"external_centers": ["CENTER_B"], "n_folds": 3}


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class KeptDataset(MemoryDataset):
    """An in-memory dataset the runner does not empty once its consumers have run."""

    def _release(self) -> None:
        pass


def run_preprocessing(
    root: Path, split: dict[str, Any] | None = None, preprocessing: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The preprocessing pipeline, as ``kedro run --pipelines preprocessing`` runs its nodes."""
    pipeline = create_pipeline()
    catalog = DataCatalog(
        {
            "raw_cohort": CohortDataset(str(root)),
            "params:preprocessing": MemoryDataset({**PREPROCESSING, **(preprocessing or {})}),
            "params:split": MemoryDataset(split or SPLIT),
            "params:seed": MemoryDataset(1),
            **{name: KeptDataset() for name in pipeline.all_outputs()},
        }
    )
    SequentialRunner().run(pipeline, catalog)
    wanted = ("cohort_table", "exclusions", "data_quality_report", "roi_crops", "patient_splits")
    return {name: catalog.load(name) for name in wanted}


# --- how each bad cohort is made --------------------------------------------------------------


def _clinical(cohort: FactoryCohort) -> pd.DataFrame:
    return pd.read_csv(cohort.root / "clinical.csv", dtype=str, keep_default_na=False)


def _set(cohort: FactoryCohort, patient: str, column: str, value: str) -> None:
    table = _clinical(cohort)
    table.loc[table["patient_id"] == patient, column] = value
    table.to_csv(cohort.root / "clinical.csv", index=False)


def _replace_image(cohort: FactoryCohort, patient: str, view: str, write: Callable) -> None:
    path = cohort.image(patient, view)
    pixels = np.asarray(Image.open(path))
    path.unlink()
    write(path.with_suffix(""), pixels)


def empty_cohort(cohort: FactoryCohort) -> None:
    (cohort.root / "clinical.csv").write_text(",".join(_clinical(cohort).columns) + "\n")
    (cohort.root / "rois.csv").write_text("patient_id,view,x_min,y_min,x_max,y_max\n")


def zero_byte_clinical(cohort: FactoryCohort) -> None:
    (cohort.root / "clinical.csv").write_bytes(b"")


def unknown_sex_code(cohort: FactoryCohort) -> None:
    _set(cohort, "P005", "sex", "female")


def non_numeric_age(cohort: FactoryCohort) -> None:
    _set(cohort, "P006", "age", "45y")


def decimal_comma_size(cohort: FactoryCohort) -> None:
    _set(cohort, "P007", "tumor_size_mm", "6,5")


def age_written_na(cohort: FactoryCohort) -> None:
    _set(cohort, "P008", "age", "NA")


def label_yes(cohort: FactoryCohort) -> None:
    _set(cohort, "P009", "clnm", "yes")


def semicolon_separated(cohort: FactoryCohort) -> None:
    _clinical(cohort).to_csv(cohort.root / "clinical.csv", index=False, sep=";")


def excel_byte_order_mark(cohort: FactoryCohort) -> None:
    text = (cohort.root / "clinical.csv").read_text(encoding="utf-8")
    (cohort.root / "clinical.csv").write_text("\ufeff" + text, encoding="utf-8")


def latin1_encoded(cohort: FactoryCohort) -> None:
    table = _clinical(cohort)
    table.loc[table["center"] == "CENTER_A", "center"] = "ZÜRICH"
    table.to_csv(cohort.root / "clinical.csv", index=False, encoding="latin-1")


def repeated_column(cohort: FactoryCohort) -> None:
    lines = (cohort.root / "clinical.csv").read_text().splitlines()
    header = lines[0].replace("tumor_size_mm", "age", 1)
    (cohort.root / "clinical.csv").write_text("\n".join([header, *lines[1:]]) + "\n")


def extra_unknown_columns(cohort: FactoryCohort) -> None:
    table = _clinical(cohort)
    table["surgeon_notes"] = "re-check"
    table["Unnamed: 12"] = ""
    table.to_csv(cohort.root / "clinical.csv", index=False)


def one_patient_external_centre(cohort: FactoryCohort) -> None:
    table = _clinical(cohort)
    table = table[(table["center"] == "CENTER_A") | (table["patient_id"] == "P031")]
    table.to_csv(cohort.root / "clinical.csv", index=False)
    rois = pd.read_csv(cohort.root / "rois.csv", dtype=str)
    rois[rois["patient_id"].isin(table["patient_id"])].to_csv(cohort.root / "rois.csv", index=False)


def unicode_and_space_ids(cohort: FactoryCohort) -> None:
    renames = {"P002": "Müller 002", "P033": "患者-033"}
    table = _clinical(cohort).replace({"patient_id": renames})
    table.to_csv(cohort.root / "clinical.csv", index=False)
    rois = pd.read_csv(cohort.root / "rois.csv", dtype=str).replace({"patient_id": renames})
    rois.to_csv(cohort.root / "rois.csv", index=False)
    for old, new in renames.items():
        (cohort.root / "images" / old).rename(cohort.root / "images" / new)


def sixteen_bit_png(cohort: FactoryCohort) -> None:
    def write(stem: Path, pixels: np.ndarray) -> None:
        Image.fromarray(pixels.astype(np.uint16) * 257).save(stem.with_suffix(".png"))

    for view in ("longitudinal", "transverse"):
        _replace_image(cohort, "P010", view, write)


def rgb_png(cohort: FactoryCohort) -> None:
    def write(stem: Path, pixels: np.ndarray) -> None:
        Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(stem.with_suffix(".png"))

    for view in ("longitudinal", "transverse"):
        _replace_image(cohort, "P011", view, write)


def dicom_images(cohort: FactoryCohort) -> None:
    def write(stem: Path, pixels: np.ndarray) -> None:
        write_dicom(stem.with_suffix(".dcm"), pixels)

    for view in ("longitudinal", "transverse"):
        _replace_image(cohort, "P012", view, write)


def compressed_dicom(cohort: FactoryCohort) -> None:
    def write(stem: Path, pixels: np.ndarray) -> None:
        path = stem.with_suffix(".dcm")
        write_dicom(path, pixels)
        dataset = pydicom.dcmread(path)
        dataset.file_meta.TransferSyntaxUID = JPEGLossless
        dataset.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + bytes(64) + b"\xff\xd9"])
        dataset["PixelData"].VR = "OB"
        dataset.save_as(path, enforce_file_format=True)

    _replace_image(cohort, "P013", "transverse", write)


def dicom_without_pixels(cohort: FactoryCohort) -> None:
    def write(stem: Path, pixels: np.ndarray) -> None:
        path = stem.with_suffix(".dcm")
        write_dicom(path, pixels)
        dataset = pydicom.dcmread(path)
        del dataset.PixelData
        dataset.save_as(path, enforce_file_format=True)

    _replace_image(cohort, "P014", "longitudinal", write)


def png_named_dcm(cohort: FactoryCohort) -> None:
    path = cohort.image("P015", "longitudinal")
    path.rename(path.with_suffix(".dcm"))


def blank_frame(cohort: FactoryCohort) -> None:
    path = cohort.image("P016", "transverse")
    shape = np.asarray(Image.open(path)).shape
    Image.fromarray(np.zeros(shape, dtype=np.uint8)).save(path)


def zero_area_box(cohort: FactoryCohort) -> None:
    rois = pd.read_csv(cohort.root / "rois.csv", dtype=str)
    row = (rois["patient_id"] == "P018") & (rois["view"] == "longitudinal")
    rois.loc[row, "x_max"] = rois.loc[row, "x_min"]
    rois.to_csv(cohort.root / "rois.csv", index=False)


def inverted_box(cohort: FactoryCohort) -> None:
    rois = pd.read_csv(cohort.root / "rois.csv", dtype=str)
    row = (rois["patient_id"] == "P019") & (rois["view"] == "transverse")
    rois.loc[row, ["y_min", "y_max"]] = rois.loc[row, ["y_max", "y_min"]].to_numpy()
    rois.to_csv(cohort.root / "rois.csv", index=False)


def case_mismatched_folder(cohort: FactoryCohort) -> None:
    (cohort.root / "images" / "P020").rename(cohort.root / "images" / "p020")


def unknown_external_centre(cohort: FactoryCohort) -> None:
    """The cohort is fine; the parameter names a centre that is not in it (see SPLITS)."""


def trailing_empty_row(cohort: FactoryCohort) -> None:
    text = (cohort.root / "clinical.csv").read_text()
    (cohort.root / "clinical.csv").write_text(text + ",,,,,,,,,\n")


def _rename(cohort: FactoryCohort, renames: dict[str, str], *, folders: bool = True) -> None:
    """Give patients new IDs in both tables (and their image folders, if ``folders``)."""
    for name in ("clinical.csv", "rois.csv"):
        table = pd.read_csv(cohort.root / name, dtype=str, keep_default_na=False)
        table["patient_id"] = table["patient_id"].replace(renames)
        table.to_csv(cohort.root / name, index=False)
    if folders:
        for old, new in renames.items():
            (cohort.root / "images" / old).rename(cohort.root / "images" / new)


LONG_ID = "P" + "0" * 299  # longer than a file name may be (255 bytes)


def id_too_long_for_a_file_name(cohort: FactoryCohort) -> None:
    _rename(cohort, {"P021": LONG_ID}, folders=False)  # no folder can carry that name


def huge_box_coordinate(cohort: FactoryCohort) -> None:
    rois = pd.read_csv(cohort.root / "rois.csv", dtype=str)
    rois.loc[(rois["patient_id"] == "P022") & (rois["view"] == "longitudinal"), "x_max"] = "1e20"
    rois.to_csv(cohort.root / "rois.csv", index=False)


def infinite_extra_column(cohort: FactoryCohort) -> None:
    table = _clinical(cohort)
    table["thyroglobulin"] = "1.5"
    table.loc[table["patient_id"] == "P023", "thyroglobulin"] = "inf"
    table.to_csv(cohort.root / "clinical.csv", index=False)


def nul_byte_in_a_cell(cohort: FactoryCohort) -> None:
    _set(cohort, "P024", "age", "4\x005")


def huge_dicom_header(cohort: FactoryCohort) -> None:
    def write(stem: Path, pixels: np.ndarray) -> None:
        path = stem.with_suffix(".dcm")
        write_dicom(path, pixels)
        dataset = pydicom.dcmread(path)
        dataset.Rows, dataset.Columns = 20000, 20000  # 400 megapixels, as a 20000² RLE file
        dataset.save_as(path, enforce_file_format=True)

    _replace_image(cohort, "P025", "longitudinal", write)


def link_out_of_the_cohort(cohort: FactoryCohort) -> None:
    path = cohort.image("P026", "transverse")
    outside = cohort.root.parent / "elsewhere.png"
    path.rename(outside)
    path.symlink_to(outside)


def animated_png(cohort: FactoryCohort) -> None:
    path = cohort.image("P027", "longitudinal")
    frame = Image.open(path)
    frame.save(path, save_all=True, append_images=[frame.point(lambda v: 255 - v)])


def nfd_folder_for_an_nfc_id(cohort: FactoryCohort) -> None:
    _rename(cohort, {"P028": "Müller 028"}, folders=False)
    (cohort.root / "images" / "P028").rename(
        cohort.root / "images" / unicodedata.normalize("NFD", "Müller 028")
    )


NA_WORDS = ("NA", "null", "None", "nan")


def na_words_as_ids_and_centre(cohort: FactoryCohort) -> None:
    _rename(cohort, dict(zip(("P002", "P003", "P004", "P005"), NA_WORDS, strict=True)))
    table = _clinical(cohort)
    table.loc[table["center"] == "CENTER_A", "center"] = "NA"
    table.to_csv(cohort.root / "clinical.csv", index=False)


def dollar_and_formula_ids(cohort: FactoryCohort) -> None:
    _rename(cohort, {"P006": "P$006$", "P007": "=HYPERLINK(1)", "P008": "+cmd|x"})


@dataclass(frozen=True)
class Stops:
    """The run stops with ``error`` whose message matches ``message``."""

    error: type[Exception]
    message: str


@dataclass(frozen=True)
class Excludes:
    """The run goes on without ``patient``; its record for ``view`` has this ``reason``."""

    patient: str
    view: str
    file: str
    reason: str


@dataclass(frozen=True)
class Reads:
    """The run includes every patient, ``patients`` among them (read correctly)."""

    patients: tuple[str, ...]


CATALOGUE: dict[str, tuple[Callable[[FactoryCohort], None], Stops | Excludes | Reads]] = {
    "empty cohort": (empty_cohort, Stops(CohortError, r"clinical\.csv has no patients")),
    "zero-byte clinical.csv": (
        zero_byte_clinical,
        Stops(DatasetError, r"clinical\.csv' is empty \(0 bytes\)"),
    ),
    "unknown sex code": (
        unknown_sex_code,
        Stops(CohortError, r"patient P005 \(line 6\): sex = 'female' — sex must be F or M"),
    ),
    "non-numeric age": (
        non_numeric_age,
        Stops(CohortError, r"patient P006 \(line 7\): age = '45y' is not a number"),
    ),
    "decimal comma": (
        decimal_comma_size,
        Stops(CohortError, r"patient P007 \(line 8\): tumor_size_mm = '6,5' is not a number"),
    ),
    "age written NA": (
        age_written_na,
        Stops(CohortError, r"patient P008 \(line 9\): age = 'NA' is not a number"),
    ),
    "label 'yes'": (
        label_yes,
        Stops(CohortError, r"patient P009 \(line 10\): clnm = 'yes' is not a number"),
    ),
    "semicolon-separated CSV": (
        semicolon_separated,
        Stops(CohortError, r"clinical\.csv is separated by semicolons.*commas"),
    ),
    "Excel byte-order mark": (excel_byte_order_mark, Reads(("P001",))),
    "Latin-1 encoded CSV": (
        latin1_encoded,
        Stops(DatasetError, r"clinical\.csv' is not UTF-8 text.*line 2.*save it as UTF-8"),
    ),
    "a column given twice": (
        repeated_column,
        Stops(DatasetError, r"clinical\.csv' has the column\(s\) \['age'\] more than once"),
    ),
    "extra unknown columns": (extra_unknown_columns, Reads(("P001",))),
    "external centre of one patient": (
        one_patient_external_centre,
        Stops(
            CohortError,
            r"The external test set of clinical\.csv \(centre\(s\) \['CENTER_B'\]\) has 1 "
            r"patient\(s\), all with clnm=1; its AUC, sensitivity and specificity need",
        ),
    ),
    "Unicode IDs and spaces in paths": (unicode_and_space_ids, Reads(("Müller 002", "患者-033"))),
    "16-bit PNG": (sixteen_bit_png, Reads(("P010",))),
    "RGB PNG": (rgb_png, Reads(("P011",))),
    "DICOM": (dicom_images, Reads(("P012",))),
    "JPEG-lossless DICOM, no decoder": (
        compressed_dicom,
        Excludes(
            "P013",
            "transverse",
            "images/P013/transverse.dcm",
            r"compressed \(JPEG Lossless.*\); no decoder for it is installed.*uncompressed",
        ),
    ),
    "DICOM without pixel data": (
        dicom_without_pixels,
        Excludes(
            "P014",
            "longitudinal",
            "images/P014/longitudinal.dcm",
            r"^the DICOM file has no pixel data$",
        ),
    ),
    "PNG named .dcm": (
        png_named_dcm,
        Excludes(
            "P015", "longitudinal", "images/P015/longitudinal.dcm", r"^not a readable DICOM file \("
        ),
    ),
    "blank frame": (
        blank_frame,
        Excludes(
            "P016",
            "transverse",
            "images/P016/transverse.png",
            r"^the box and its margin hold one grey value only \(0\): a blank",
        ),
    ),
    "zero-area box": (
        zero_area_box,
        Excludes(
            "P018",
            "longitudinal",
            "rois.csv",
            r"the box is empty \(x 37\.\.37, y 21\.\.41\); x_max must exceed x_min",
        ),
    ),
    "inverted box": (
        inverted_box,
        Excludes(
            "P019",
            "transverse",
            "rois.csv",
            r"the box is inverted \(x \d+\.\.\d+, y 40\.\.27\); .*y_max must exceed y_min",
        ),
    ),
    "image folder in other case": (
        case_mismatched_folder,
        Excludes(
            "P020",
            "longitudinal",
            "images/P020/longitudinal.png|.jpg|.jpeg|.dcm",
            r"^no image folder images/P020/ \(there is images/p020/: folder names must match",
        ),
    ),
    "unknown external centre": (
        unknown_external_centre,
        Stops(
            CohortError,
            r"None of the external centres \['CENTER_Z'\]"
            r".*its centres are \['CENTER_A', 'CENTER_B'\]",
        ),
    ),
    "row of empty cells": (
        trailing_empty_row,
        Stops(CohortError, r"a row with no patient_id \(line 44\): patient_id is empty"),
    ),
    "ID too long for a file name": (
        id_too_long_for_a_file_name,
        Excludes(
            LONG_ID,
            "longitudinal",
            f"images/{LONG_ID}/longitudinal.png|.jpg|.jpeg|.dcm",
            r"^cannot look for its image folder: File name too long$",
        ),
    ),
    "box coordinate 1e20": (
        huge_box_coordinate,
        Excludes(
            "P022",
            "longitudinal",
            "rois.csv",
            r"^box coordinate\(s\) out of range: x_max=1e20 \(no image is that large\)$",
        ),
    ),
    "inf in an extra numeric column": (
        infinite_extra_column,
        Stops(CohortError, r"patient P023 \(line 24\): thyroglobulin = 'inf' is not finite"),
    ),
    "NUL byte in a cell": (
        nul_byte_in_a_cell,
        Stops(DatasetError, r"clinical\.csv' holds a NUL byte .* on line 25 \(patient P024\)"),
    ),
    "DICOM over the pixel limit": (
        huge_dicom_header,
        Excludes(
            "P025",
            "longitudinal",
            "images/P025/longitudinal.dcm",
            r"^the image is too large \(20000×20000 = 400,000,000 pixels\): more than",
        ),
    ),
    "symbolic link out of the cohort": (
        link_out_of_the_cohort,
        Excludes(
            "P026",
            "transverse",
            "images/P026/transverse.png",
            r"^the file is a symbolic link to outside the cohort folder",
        ),
    ),
    "animated PNG": (
        animated_png,
        Excludes(
            "P027",
            "longitudinal",
            "images/P027/longitudinal.png",
            r"^animated image \(2 frames\): the ROI box cannot be tied to one frame",
        ),
    ),
    "NFD folder name for an NFC ID": (
        nfd_folder_for_an_nfc_id,
        Excludes(
            "Müller 028",
            "longitudinal",
            "images/Müller 028/longitudinal.png|.jpg|.jpeg|.dcm",
            r"^no image folder images/Müller 028/ \(there is images/Mu\u0308ller 028/, the same "
            r"letters in another Unicode normalisation",
        ),
    ),
    "NA words as IDs and centre": (na_words_as_ids_and_centre, Reads(NA_WORDS)),
    "$ and formulas in IDs": (dollar_and_formula_ids, Reads(("P$006$", "=HYPERLINK(1)", "+cmd|x"))),
}
SPLITS = {"unknown external centre": {"external_centers": ["CENTER_Z"], "n_folds": 3}}
PREPROCESSING_OVERRIDES = {
    "inf in an extra numeric column": {
        "clinical_columns": [*PREPROCESSING["clinical_columns"], "thyroglobulin"]
    }
}


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_bad_cohort(case: str, tmp_path: Path) -> None:
    make, outcome = CATALOGUE[case]
    cohort = write_cohort(tmp_path / "my cohort", frame=(48, 64))  # a space in every path
    make(cohort)
    before = checksums(cohort.root)
    split = SPLITS.get(case)
    preprocessing = PREPROCESSING_OVERRIDES.get(case)

    if isinstance(outcome, Stops):
        with pytest.raises(outcome.error, match=outcome.message):
            run_preprocessing(cohort.root, split, preprocessing)
    else:
        out = run_preprocessing(cohort.root, split, preprocessing)
        exclusions = out["exclusions"]
        included = set(out["cohort_table"]["patient_id"])
        if isinstance(outcome, Excludes):
            assert set(exclusions["patient_id"]) == {outcome.patient}, exclusions
            rows = exclusions[exclusions["view"] == outcome.view]
            assert len(rows) == 1, exclusions
            record = rows.iloc[0]
            assert (record["view"], record["file"]) == (outcome.view, outcome.file)
            assert re.search(outcome.reason, record["reason"]), record["reason"]
            assert outcome.patient not in included
            assert out["data_quality_report"]["excluded_patients"] == [outcome.patient]
        else:
            assert exclusions.empty, exclusions
            assert set(outcome.patients) <= included
            assert len(out["roi_crops"]) == len(out["cohort_table"])
            for patient in outcome.patients:
                crop = out["roi_crops"][list(out["cohort_table"]["patient_id"]).index(patient)]
                assert crop.std() > 0  # real image content, not a blank or failed read
    assert checksums(cohort.root) == before  # raw files unchanged, whatever happened


def test_extra_unknown_columns_are_dropped(tmp_path: Path) -> None:
    cohort = write_cohort(tmp_path / "cohort", frame=(48, 64))
    extra_unknown_columns(cohort)
    out = run_preprocessing(cohort.root)
    assert list(out["cohort_table"].columns) == [
        "patient_id",
        "center",
        "clnm",
        *PREPROCESSING["clinical_columns"],
    ]


def test_same_pixels_give_the_same_crop_in_every_format(tmp_path: Path) -> None:
    """8-bit PNG, 16-bit PNG, grey-as-RGB PNG and DICOM of one frame crop identically."""
    reference = write_cohort(tmp_path / "reference", frame=(48, 64))
    crops = run_preprocessing(reference.root)["roi_crops"]
    for make, patient in ((sixteen_bit_png, "P010"), (rgb_png, "P011"), (dicom_images, "P012")):
        cohort_dir = tmp_path / make.__name__
        shutil.copytree(reference.root, cohort_dir)
        make(FactoryCohort(cohort_dir, reference.clinical, reference.rois))
        other = run_preprocessing(cohort_dir)["roi_crops"]
        row = int(patient[1:]) - 1
        np.testing.assert_array_equal(other[row], crops[row], err_msg=make.__name__)


# --- our own tables, figures and metric keys ---------------------------------------------


def test_our_tables_read_back_as_written(tmp_path: Path) -> None:
    """NA words stay text; formula-like cells are written inert and read back unchanged."""
    ids = [*NA_WORDS, "=HYPERLINK(1)", "+cmd|x", "@SUM(A1)", "-2", "'quoted", "\tTab", "P$6$"]
    table = pd.DataFrame(
        {
            "patient_id": ids,
            "center": ["NA"] * len(ids),
            "probability": np.linspace(0.05, 0.95, len(ids)),
            "reason": ["null", "", *["N/A"] * (len(ids) - 2)],
        }
    )
    dataset = TableCSVDataset(filepath=str(tmp_path / "predictions.csv"))
    dataset.save(table)
    written = (tmp_path / "predictions.csv").read_text(encoding="utf-8")
    for line in written.splitlines()[1:]:
        assert not line.startswith(FORMULA_STARTS), line  # no cell a spreadsheet would run
    assert "'=HYPERLINK(1)" in written and "''quoted" in written
    back = dataset.load()
    expected = table.assign(reason=table["reason"].replace("", np.nan))
    pd.testing.assert_frame_equal(back, expected)


def test_a_dollar_in_a_patient_id_is_plain_text_in_grad_cam() -> None:
    crops = np.zeros((2, 2, 8, 8), dtype=np.uint8)
    captions = ["P$6$\nCLNM yes, risk 0.40", "$x^{$\nCLNM no, risk 0.10"]
    figure = plot_gradcam_panel(crops, np.zeros((2, 2, 8, 8)), (0, 1), captions, title="t")
    figure.savefig(io.BytesIO(), format="png")  # mathtext would raise here
    assert figure.axes[0].get_ylabel() == captions[0]


@pytest.mark.parametrize("centre", ["Lyon//Sud", "L" * 259, "../up", "Zürich (Süd)", "/abs", " "])
def test_any_centre_name_gives_a_valid_mlflow_metric_key(centre: str) -> None:
    key = f"included.{_metric_name(centre)}"
    _validate_metric_name(key)  # raises MlflowException for a key MLflow refuses
    assert len(key) <= 250
    assert _metric_name(centre) != _metric_name(centre + "x")  # two centres, two keys
    assert _metric_name("CENTER_A") == "CENTER_A"
