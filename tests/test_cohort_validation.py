"""Cohort validation: every bad cohort gives its specific error or recorded exclusion, and
every supported image format is read correctly."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clnm_kedro.cohort import CohortError, ImageReadError, image_size, read_greyscale
from clnm_kedro.datasets import CohortDataset, RawCohort
from clnm_kedro.pipelines.preprocessing import nodes
from cohort_factory import (
    DICOM_IDENTIFIERS,
    NODULE,
    FactoryCohort,
    frame_with_nodule,
    write_cohort,
    write_dicom,
)


def preprocess(
    root: Path, preprocessing: dict[str, Any], split: dict[str, Any], seed: int = 1
) -> dict[str, Any]:
    """Run the preprocessing nodes in order, as the pipeline does, and return every output."""
    raw = CohortDataset(str(root)).load()
    clinical, boxes, table_exclusions = nodes.validate_tables(raw, preprocessing, split)
    manifest, file_exclusions = nodes.check_images(raw, clinical, boxes, table_exclusions)
    crops, cropped, crop_exclusions = nodes.crop_rois(manifest, preprocessing)
    cohort_table = nodes.build_cohort_table(clinical, cropped)
    report, exclusions, metrics = nodes.build_data_quality_report(
        raw_cohort=raw,
        validated_clinical=clinical,
        cohort_table=cohort_table,
        image_manifest=manifest,
        table_exclusions=table_exclusions,
        file_exclusions=file_exclusions,
        crop_exclusions=crop_exclusions,
        preprocessing=preprocessing,
        split=split,
    )
    splits = nodes.assign_patient_splits(cohort_table, exclusions, split, seed)
    return {
        "roi_crops": crops,
        "cohort_table": cohort_table,
        "report": report,
        "exclusions": exclusions,
        "metrics": metrics,
        "patient_splits": splits,
    }


def only_exclusion(out: dict[str, Any], patient_id: str) -> pd.Series:
    """The single exclusion record of the run; it must be ``patient_id``'s."""
    exclusions = out["exclusions"]
    assert len(exclusions) == 1, exclusions
    record = exclusions.iloc[0]
    assert record["patient_id"] == patient_id
    assert patient_id not in set(out["cohort_table"]["patient_id"])
    assert patient_id not in set(out["patient_splits"]["patient_id"])
    assert out["report"]["excluded_patients"] == [patient_id]
    return record


# --- a valid cohort -----------------------------------------------------------------------


def test_valid_cohort_keeps_everyone_in_order(
    cohort: FactoryCohort, preprocessing_params, split_params
):
    out = preprocess(cohort.root, preprocessing_params, split_params)
    ids = cohort.clinical["patient_id"].tolist()
    assert out["cohort_table"]["patient_id"].tolist() == ids
    assert out["patient_splits"]["patient_id"].tolist() == ids
    assert out["roi_crops"].shape == (len(ids), 2, 32, 32)
    assert out["roi_crops"].dtype == np.uint8
    assert out["exclusions"].empty
    assert out["report"]["patients_excluded"] == 0
    assert out["metrics"]["patients_included"]["value"] == len(ids)
    assert out["metrics"]["included.CENTER_B"] == {"value": 12.0, "step": 0}
    counts = out["report"]["counts_per_center_and_label"]["before_exclusions"]
    assert counts["CENTER_A"] == {"clnm_0": 20, "clnm_1": 10, "unlabelled": 0, "total": 30}


def test_crops_are_centred_on_the_known_box(
    cohort: FactoryCohort, preprocessing_params, split_params
):
    # margin 0.25: the box fills the central 2/3 of the crop; the nodule (value NODULE) is the
    # darkest thing in the frame, so the centre is black after windowing and the rim brighter.
    out = preprocess(cohort.root, preprocessing_params, split_params)
    crops = out["roi_crops"].astype(float)
    centre = crops[:, :, 12:20, 12:20].mean(axis=(2, 3))
    assert (centre < 5).all()
    rim = np.concatenate([crops[:, :, :2, :].reshape(-1), crops[:, :, -2:, :].reshape(-1)])
    assert rim.mean() > 60


def test_view_axis_order_is_longitudinal_then_transverse(
    tmp_path: Path, preprocessing_params, split_params
):
    cohort = write_cohort(tmp_path / "cohort")
    # Make P001's transverse frame the inverse of normal: nodule bright, background dark.
    path = cohort.image("P001", "transverse")
    pixels = np.asarray(Image.open(path))
    Image.fromarray((255 - pixels).astype(np.uint8)).save(path)
    out = preprocess(cohort.root, preprocessing_params, split_params)
    first = out["roi_crops"][0].astype(float)
    assert first[0, 12:20, 12:20].mean() < 5  # longitudinal: dark nodule
    assert first[1, 12:20, 12:20].mean() > 250  # transverse: bright nodule


def test_unnamed_columns_are_never_carried(tmp_path: Path, preprocessing_params, split_params):
    secret = [f"Dr Secret {i}" for i in range(42)]
    cohort = write_cohort(tmp_path / "cohort", extra_columns={"referring_doctor": secret})
    out = preprocess(cohort.root, preprocessing_params, split_params)
    expected = ["patient_id", "center", "clnm", *preprocessing_params["clinical_columns"]]
    assert out["cohort_table"].columns.tolist() == expected
    everything = repr(out["report"]) + out["cohort_table"].to_csv() + out["exclusions"].to_csv()
    assert "Dr Secret" not in everything


def test_named_extra_columns_are_carried_with_their_type(
    tmp_path: Path, preprocessing_params, split_params
):
    cohort = write_cohort(
        tmp_path / "cohort",
        extra_columns={"tirads": [3, 4, 5] * 14, "echo": ["hypo", "iso", ""] * 14},
    )
    params = {**preprocessing_params, "clinical_columns": ["age", "tirads", "echo"]}
    table = preprocess(cohort.root, params, split_params)["cohort_table"]
    assert table.columns.tolist() == ["patient_id", "center", "clnm", "age", "tirads", "echo"]
    assert table["tirads"].dtype == float
    assert table["echo"].tolist()[:3] == ["hypo", "iso", None]


def test_absent_optional_column_is_skipped_and_reported(
    cohort: FactoryCohort, preprocessing_params, split_params, caplog
):
    cohort.write_tables(clinical=cohort.clinical.drop(columns=["hashimoto"]))
    with caplog.at_level(logging.INFO):
        out = preprocess(cohort.root, preprocessing_params, split_params)
    assert "hashimoto" not in out["cohort_table"].columns
    assert out["report"]["clinical_columns"]["skipped"] == ["hashimoto"]
    assert "Clinical column 'hashimoto' is not in" in caplog.text


def test_unlabelled_cohort_validates_only_when_labels_are_not_required(
    cohort: FactoryCohort, preprocessing_params, split_params
):
    clinical = cohort.clinical.astype({"clnm": object})
    clinical.loc[4, "clnm"] = ""
    cohort.write_tables(clinical=clinical)
    raw = CohortDataset(str(cohort.root)).load()
    with pytest.raises(CohortError, match=r"patient P005 \(line 6\): clnm is empty"):
        nodes.validate_tables(raw, preprocessing_params, split_params)
    params = {**preprocessing_params, "require_labels": False}
    table, _, _ = nodes.validate_tables(raw, params, split_params)
    assert table["clnm"].isna().sum() == 1


# --- cohort-level errors: the run stops with a message naming rows and file ----------------


def expect_error(cohort: FactoryCohort, params, split, pattern: str) -> str:
    raw = CohortDataset(str(cohort.root)).load()
    with pytest.raises(CohortError, match=pattern) as caught:
        nodes.validate_tables(raw, params, split)
    return str(caught.value)


def test_missing_required_column(cohort: FactoryCohort, preprocessing_params, split_params):
    cohort.write_tables(clinical=cohort.clinical.drop(columns=["age"]))
    message = expect_error(
        cohort, preprocessing_params, split_params, r"lacks the required column\(s\) \['age'\]"
    )
    assert "clinical.csv" in message


def test_missing_required_column_even_if_not_named(
    cohort: FactoryCohort, preprocessing_params, split_params
):
    cohort.write_tables(clinical=cohort.clinical.drop(columns=["tumor_size_mm"]))
    params = {**preprocessing_params, "clinical_columns": ["age"]}
    expect_error(cohort, params, split_params, r"required column\(s\) \['tumor_size_mm'\]")


def test_duplicate_patient_id(cohort: FactoryCohort, preprocessing_params, split_params):
    clinical = pd.concat([cohort.clinical, cohort.clinical.iloc[[3]]], ignore_index=True)
    cohort.write_tables(clinical=clinical)
    expect_error(
        cohort, preprocessing_params, split_params, r"duplicate patient_id P004 \(lines 5, 44\)"
    )


def test_patient_in_two_centres(cohort: FactoryCohort, preprocessing_params, split_params):
    moved = cohort.clinical.iloc[[2]].assign(center="CENTER_B")
    cohort.write_tables(clinical=pd.concat([cohort.clinical, moved], ignore_index=True))
    expect_error(
        cohort,
        preprocessing_params,
        split_params,
        r"patient P003 is in two centres \(CENTER_A, CENTER_B; lines 4, 44\)",
    )


def test_label_two(cohort: FactoryCohort, preprocessing_params, split_params):
    cohort.write_tables(
        clinical=cohort.clinical.assign(clnm=lambda t: t["clnm"].where(t.index != 6, 2))
    )
    expect_error(
        cohort,
        preprocessing_params,
        split_params,
        r"patient P007 \(line 8\): clnm = '2' — clnm must be 0 or 1",
    )


def test_non_numeric_age(cohort: FactoryCohort, preprocessing_params, split_params):
    clinical = cohort.clinical.astype({"age": object})
    clinical.loc[9, "age"] = "forty"
    cohort.write_tables(clinical=clinical)
    expect_error(
        cohort,
        preprocessing_params,
        split_params,
        r"patient P010 \(line 11\): age = 'forty' is not a number",
    )


@pytest.mark.parametrize(
    "case",
    [
        ("age", "-3", "age must be above 0 years"),
        ("age", "250", "age must be at most 120 years"),
        ("tumor_size_mm", "0", "tumor_size_mm must be above 0 mm"),
        ("tumor_size_mm", "450", "tumor_size_mm must be at most 100 mm"),
        ("hashimoto", "yes", "hashimoto = 'yes' is not a number"),
        ("capsule_contact", "3", "capsule_contact must be 0 or 1"),
        ("location", "left", "location must be one of upper, middle, lower, isthmus"),
    ],
)
def test_impossible_values(
    cohort: FactoryCohort, preprocessing_params, split_params, case: tuple[str, str, str]
):
    column, value, words = case
    clinical = cohort.clinical.astype({column: object})
    clinical.loc[1, column] = value
    cohort.write_tables(clinical=clinical)
    expect_error(cohort, preprocessing_params, split_params, rf"patient P002 \(line 3\): .*{words}")


def test_unknown_sex_code(cohort: FactoryCohort, preprocessing_params, split_params):
    clinical = cohort.clinical.copy()
    clinical.loc[0, "sex"] = "X"
    clinical.loc[1, "sex"] = "m"  # lower case is accepted
    cohort.write_tables(clinical=clinical)
    message = expect_error(
        cohort,
        preprocessing_params,
        split_params,
        r"patient P001 \(line 2\): sex = 'X' — sex must be F or M",
    )
    assert "P002" not in message


def test_all_problems_are_listed_at_once(cohort: FactoryCohort, preprocessing_params, split_params):
    clinical = cohort.clinical.astype(object)
    clinical.loc[0, "sex"] = "?"
    clinical.loc[5, "age"] = "n/a"
    clinical.loc[7, "clnm"] = "2"
    cohort.write_tables(clinical=clinical)
    message = expect_error(cohort, preprocessing_params, split_params, r"3 problem\(s\)")
    for patient in ("P001", "P006", "P008"):
        assert patient in message


def test_no_external_centre(cohort: FactoryCohort, preprocessing_params, split_params):
    split = {**split_params, "external_centers": ["HOSPITAL_Z"]}
    expect_error(
        cohort,
        preprocessing_params,
        split,
        r"HOSPITAL_Z.*its centres are \['CENTER_A', 'CENTER_B'\]",
    )


def test_single_class_training_set(cohort: FactoryCohort, preprocessing_params, split_params):
    clinical = cohort.clinical.copy()
    clinical.loc[clinical["center"] == "CENTER_A", "clnm"] = 0
    cohort.write_tables(clinical=clinical)
    expect_error(cohort, preprocessing_params, split_params, "single class")


def test_unknown_view_name(cohort: FactoryCohort, preprocessing_params, split_params):
    rois = cohort.rois.copy()
    rois.loc[3, "view"] = "sagittal"
    cohort.write_tables(rois=rois)
    message = expect_error(
        cohort,
        preprocessing_params,
        split_params,
        r"patient P002 \(line 5\): view = 'sagittal' — view must be longitudinal or transverse",
    )
    assert "rois.csv" in message


def test_roi_of_unknown_patient(cohort: FactoryCohort, preprocessing_params, split_params):
    rois = pd.concat([cohort.rois, cohort.rois.iloc[[0]].assign(patient_id="P999")])
    cohort.write_tables(rois=rois)
    expect_error(cohort, preprocessing_params, split_params, r"patient P999 .*not in clinical\.csv")


def test_unsafe_patient_id(cohort: FactoryCohort, preprocessing_params, split_params):
    clinical = cohort.clinical.copy()
    clinical.loc[0, "patient_id"] = "../P001"
    cohort.write_tables(clinical=clinical)
    expect_error(cohort, preprocessing_params, split_params, r"plain folder name")


def test_single_class_after_exclusions_names_the_exclusions(
    tmp_path: Path, preprocessing_params, split_params
):
    cohort = write_cohort(tmp_path / "cohort", n_train=15)  # 5 positives: just enough for 5 folds
    cohort.image("P004", "longitudinal").unlink()  # a positive patient goes
    with pytest.raises(CohortError, match=r"CLNM=1: 4 patient\(s\).*after excluding 1 patient"):
        preprocess(cohort.root, preprocessing_params, split_params)


# --- per-patient problems: the patient is excluded and the reason recorded ----------------


def test_missing_view(cohort: FactoryCohort, preprocessing_params, split_params):
    cohort.image("P005", "transverse").unlink()
    record = only_exclusion(preprocess(cohort.root, preprocessing_params, split_params), "P005")
    assert record["view"] == "transverse"
    assert record["file"] == "images/P005/transverse.png|.jpg|.jpeg|.dcm"
    assert record["reason"] == "no image file for the transverse view"
    assert record["center"] == "CENTER_A"
    assert record["clnm"] == 0


def test_missing_image_folder(cohort: FactoryCohort, preprocessing_params, split_params):
    for path in (cohort.root / "images" / "P006").iterdir():
        path.unlink()
    (cohort.root / "images" / "P006").rmdir()
    out = preprocess(cohort.root, preprocessing_params, split_params)
    assert out["exclusions"]["reason"].tolist() == ["no image folder images/P006/"] * 2


def test_zero_byte_image(cohort: FactoryCohort, preprocessing_params, split_params):
    cohort.image("P008", "longitudinal").write_bytes(b"")
    record = only_exclusion(preprocess(cohort.root, preprocessing_params, split_params), "P008")
    assert record["file"] == "images/P008/longitudinal.png"
    assert record["reason"] == "the file is empty (0 bytes)"


def test_corrupt_image(cohort: FactoryCohort, preprocessing_params, split_params):
    cohort.image("P009", "transverse").write_bytes(b"this is not an image at all" * 20)
    record = only_exclusion(preprocess(cohort.root, preprocessing_params, split_params), "P009")
    assert record["file"] == "images/P009/transverse.png"
    assert "not a readable PNG or JPEG image" in record["reason"]


def test_truncated_image_fails_at_decoding(
    cohort: FactoryCohort, preprocessing_params, split_params
):
    path = cohort.image("P010", "longitudinal")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header is intact, the pixels are not
    out = preprocess(cohort.root, preprocessing_params, split_params)
    record = only_exclusion(out, "P010")
    assert "corrupt or unreadable image" in record["reason"]
    assert out["roi_crops"].shape[0] == len(cohort.clinical) - 1
    assert (
        out["cohort_table"]["patient_id"].tolist() == out["patient_splits"]["patient_id"].tolist()
    )


def test_two_files_for_one_view(cohort: FactoryCohort, preprocessing_params, split_params):
    png = cohort.image("P011", "longitudinal")
    Image.open(png).save(png.with_suffix(".jpg"))
    record = only_exclusion(preprocess(cohort.root, preprocessing_params, split_params), "P011")
    assert record["reason"].startswith("2 files for the longitudinal view")
    assert "images/P011/longitudinal.jpg" in record["reason"]


def test_box_outside_the_image(cohort: FactoryCohort, preprocessing_params, split_params):
    rois = cohort.rois.copy()
    row = rois.index[(rois["patient_id"] == "P012") & (rois["view"] == "transverse")][0]
    rois.loc[row, "x_max"] = 81  # the frame is 80 wide
    cohort.write_tables(rois=rois)
    record = only_exclusion(preprocess(cohort.root, preprocessing_params, split_params), "P012")
    assert record["file"] == "images/P012/transverse.png"
    assert "lies (partly) outside the image (80 wide, 60 high)" in record["reason"]


def test_inverted_box(cohort: FactoryCohort, preprocessing_params, split_params):
    rois = cohort.rois.copy()
    row = rois.index[(rois["patient_id"] == "P013") & (rois["view"] == "longitudinal")][0]
    rois.loc[row, ["x_min", "x_max"]] = rois.loc[row, ["x_max", "x_min"]].to_numpy()
    cohort.write_tables(rois=rois)
    record = only_exclusion(preprocess(cohort.root, preprocessing_params, split_params), "P013")
    assert record["file"] == "rois.csv"
    assert "the box is inverted" in record["reason"]


def test_missing_and_duplicate_roi_rows(cohort: FactoryCohort, preprocessing_params, split_params):
    rois = cohort.rois
    without = rois[~((rois["patient_id"] == "P014") & (rois["view"] == "transverse"))]
    doubled = pd.concat([without, rois[(rois["patient_id"] == "P015")].iloc[[0]]])
    cohort.write_tables(rois=doubled)
    out = preprocess(cohort.root, preprocessing_params, split_params)
    reasons = dict(zip(out["exclusions"]["patient_id"], out["exclusions"]["reason"], strict=True))
    assert reasons == {
        "P014": "no ROI row for the transverse view in rois.csv",
        "P015": "2 ROI rows for the longitudinal view (lines 29, 85)",
    }


def test_non_numeric_box_coordinate(cohort: FactoryCohort, preprocessing_params, split_params):
    rois = cohort.rois.astype({"y_min": object})
    rois.loc[rois["patient_id"] == "P016", "y_min"] = "top"
    cohort.write_tables(rois=rois)
    out = preprocess(cohort.root, preprocessing_params, split_params)
    assert (
        out["exclusions"]["reason"].tolist() == ["box coordinate(s) not numbers: y_min='top'"] * 2
    )


def test_multiframe_dicom_is_excluded(cohort: FactoryCohort, preprocessing_params, split_params):
    png = cohort.image("P017", "longitudinal")
    frames = np.stack([np.asarray(Image.open(png))] * 3)
    png.unlink()
    write_dicom(png.with_suffix(".dcm"), frames)
    record = only_exclusion(preprocess(cohort.root, preprocessing_params, split_params), "P017")
    assert "multi-frame DICOM (3 frames)" in record["reason"]


def test_several_problems_of_one_patient_are_all_listed(
    cohort: FactoryCohort, preprocessing_params, split_params
):
    cohort.image("P018", "longitudinal").unlink()
    cohort.image("P018", "transverse").write_bytes(b"")
    out = preprocess(cohort.root, preprocessing_params, split_params)
    assert out["exclusions"]["view"].tolist() == ["longitudinal", "transverse"]
    assert out["report"]["patients_excluded"] == 1
    assert out["metrics"]["excluded.CENTER_A"]["value"] == 1


# --- image formats ------------------------------------------------------------------------


@pytest.fixture
def pattern() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, size=(24, 32)).astype(np.uint8)


def test_reads_8_bit_png(tmp_path: Path, pattern: np.ndarray):
    Image.fromarray(pattern).save(tmp_path / "a.png")
    image = read_greyscale(tmp_path / "a.png")
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, pattern)
    assert image_size(tmp_path / "a.png") == (24, 32)


def test_reads_16_bit_png_without_losing_depth(tmp_path: Path, pattern: np.ndarray):
    deep = pattern.astype(np.uint16) * 257 + 3
    Image.fromarray(deep).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I")
    np.testing.assert_array_equal(read_greyscale(tmp_path / "a.png"), deep)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_reads_colour_png_as_luminance(tmp_path: Path, pattern: np.ndarray, mode: str):
    rgb = np.stack([pattern, 255 - pattern, pattern // 2], axis=-1)
    Image.fromarray(rgb).convert(mode).save(tmp_path / "a.png")
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    np.testing.assert_allclose(read_greyscale(tmp_path / "a.png"), expected, atol=1e-3)


def test_grey_stored_as_rgb_reads_as_the_grey(tmp_path: Path, pattern: np.ndarray):
    Image.fromarray(pattern).convert("RGB").save(tmp_path / "a.png")
    np.testing.assert_allclose(read_greyscale(tmp_path / "a.png"), pattern, atol=1e-3)


def test_reads_palette_png(tmp_path: Path, pattern: np.ndarray):
    Image.fromarray(pattern).convert("P").save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode == "P"
    assert np.abs(read_greyscale(tmp_path / "a.png") - pattern).max() < 25  # web palette steps


def test_reads_jpeg(tmp_path: Path):
    smooth = np.add.outer(np.arange(24) * 4, np.arange(32) * 3).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    image = read_greyscale(tmp_path / "a.jpg")
    assert image.shape == (24, 32)
    assert np.abs(image - smooth).max() < 6  # lossy, but close
    assert image_size(tmp_path / "a.jpg") == (24, 32)


def test_reads_16_bit_dicom_with_rescale(tmp_path: Path, pattern: np.ndarray):
    stored = pattern.astype(np.uint16) * 16
    write_dicom(tmp_path / "a.dcm", stored, bits_stored=12, rescale=(2.0, -100.0))
    np.testing.assert_allclose(read_greyscale(tmp_path / "a.dcm"), stored * 2.0 - 100.0)
    assert image_size(tmp_path / "a.dcm") == (24, 32)


def test_reads_monochrome1_dicom_inverted(tmp_path: Path, pattern: np.ndarray):
    write_dicom(tmp_path / "a.dcm", pattern, photometric="MONOCHROME1")
    image = read_greyscale(tmp_path / "a.dcm")
    # Bright stays bright: the order of intensities is reversed back.
    assert np.corrcoef(image.ravel(), pattern.ravel())[0, 1] == pytest.approx(-1.0)


def test_reads_rgb_dicom_as_luminance(tmp_path: Path, pattern: np.ndarray):
    rgb = np.stack([pattern, pattern, pattern], axis=-1)
    write_dicom(tmp_path / "a.dcm", rgb, photometric="RGB")
    np.testing.assert_allclose(read_greyscale(tmp_path / "a.dcm"), pattern, atol=1e-3)


def test_read_errors_name_patient_and_file(tmp_path: Path):
    path = tmp_path / "longitudinal.png"
    path.write_bytes(b"\x89PNG garbage")
    with pytest.raises(
        ImageReadError, match=r"patient P042: cannot read image '.*longitudinal\.png'"
    ):
        read_greyscale(path, "P042")
    with pytest.raises(ImageReadError, match="does not exist"):
        read_greyscale(tmp_path / "nothing.png", "P042")
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 300)
    with pytest.raises(ImageReadError, match="not a readable DICOM file"):
        read_greyscale(tmp_path / "broken.dcm", "P042")


def test_dicom_cohort_carries_no_dicom_metadata(tmp_path: Path, preprocessing_params, split_params):
    cohort = write_cohort(tmp_path / "cohort", image_format="dcm")
    out = preprocess(cohort.root, preprocessing_params, split_params)
    assert out["exclusions"].empty
    text = repr(out["report"]) + out["cohort_table"].to_csv() + out["patient_splits"].to_csv()
    for value in DICOM_IDENTIFIERS.values():
        assert value not in text
    assert out["roi_crops"][:, :, 12:20, 12:20].mean() < 5


def test_frame_factory_box_is_where_it_says():
    frame = frame_with_nodule(20, 30, (5, 6, 9, 12), np.random.default_rng(0))
    inside = np.zeros(frame.shape, dtype=bool)
    inside[6:12, 5:9] = True
    assert (frame[inside] == NODULE).all()
    assert (frame[~inside] > NODULE).all()


def test_view_file_names_match_in_any_case(tmp_path: Path) -> None:
    """Windows exports write Longitudinal.PNG; the view is still found."""
    folder = tmp_path / "images" / "007"
    folder.mkdir(parents=True)
    (folder / "Longitudinal.PNG").write_bytes(b"x")
    (folder / "transverse.png").write_bytes(b"x")
    cohort = RawCohort(root=tmp_path, clinical=None, rois=None)
    assert [p.name for p in cohort.image_candidates("007", "longitudinal")] == ["Longitudinal.PNG"]
    assert [p.name for p in cohort.image_candidates("007", "transverse")] == ["transverse.png"]
