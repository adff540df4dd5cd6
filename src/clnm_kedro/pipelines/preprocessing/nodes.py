"""Nodes of the ``preprocessing`` pipeline.

Small wrappers around :mod:`clnm_kedro.cohort`: they take catalog data and parameters and
return catalog data. Only :func:`crop_rois` decodes pixel data; every raw file is opened for
reading only.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from clnm_kedro.checks import whole_number
from clnm_kedro.cohort import (
    EXCLUSION_COLUMNS,
    VIEWS,
    CohortError,
    assign_splits,
    check_image_files,
    check_split_feasible,
    crop_manifest,
    exclusion_table,
    validate_clinical,
    validate_rois,
)
from clnm_kedro.cohort.schemas import DEFAULT_INDICATORS, IDENTITY_COLUMNS
from clnm_kedro.datasets import RawCohort

logger = logging.getLogger(__name__)

REPORT_LOCATION = "data/02_intermediate/data_quality_report.json"


def _crop_settings(
    preprocessing: Mapping[str, Any],
) -> tuple[int, float, tuple[float, float] | None]:
    size = preprocessing.get("image_size")
    whole_number(size, "preprocessing.image_size", 8)
    margin = preprocessing.get("roi_margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or margin < 0:
        raise ValueError(f"preprocessing.roi_margin must be a number >= 0, got {margin!r}")
    percentiles = preprocessing.get("intensity_percentiles")
    if percentiles is not None:
        values = list(percentiles)
        if len(values) != 2 or not 0 <= values[0] < values[1] <= 100:
            raise ValueError(
                "preprocessing.intensity_percentiles must be [low, high] with "
                f"0 <= low < high <= 100 (or null for no windowing), got {percentiles!r}"
            )
        percentiles = (float(values[0]), float(values[1]))
    return size, float(margin), percentiles


def validate_tables(
    raw_cohort: RawCohort, preprocessing: dict[str, Any], split: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validate ``clinical.csv`` and ``rois.csv``; stop on cohort-level errors.

    Returns
    -------
    validated_clinical
        Typed clinical table, only the named columns, every patient of ``clinical.csv``.
    roi_boxes
        The usable box of each patient and view.
    table_exclusions
        Patients with a missing, repeated or malformed box.
    """
    _crop_settings(preprocessing)  # fail on bad parameters before reading anything else
    require_labels = bool(preprocessing.get("require_labels", True))
    clinical = validate_clinical(
        raw_cohort.clinical,
        preprocessing.get("clinical_columns", list(DEFAULT_INDICATORS)),
        require_labels=require_labels,
        source=str(raw_cohort.root / "clinical.csv"),
    )
    if require_labels:  # fail before decoding thousands of images
        check_split_feasible(
            clinical, split["external_centers"], split["n_folds"], what="clinical.csv"
        )
    boxes, exclusions = validate_rois(
        raw_cohort.rois, clinical, source=str(raw_cohort.root / "rois.csv")
    )
    return clinical, boxes, exclusions


def check_images(
    raw_cohort: RawCohort,
    validated_clinical: pd.DataFrame,
    roi_boxes: pd.DataFrame,
    table_exclusions: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Find and header-check each patient's two images; check every box lies inside its image.

    Returns
    -------
    image_manifest
        Two rows per usable patient: file, size and box of each view.
    file_exclusions
        Missing, repeated, empty or unreadable files, and boxes outside their image.
    """
    return check_image_files(
        raw_cohort, validated_clinical, roi_boxes, table_exclusions["patient_id"].tolist()
    )


def crop_rois(
    image_manifest: pd.DataFrame, preprocessing: dict[str, Any]
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Decode each image once, crop its ROI and pair the two views of each patient.

    Returns
    -------
    roi_crops
        uint8 array (n_patients, 2, S, S); axis 1: 0 = longitudinal, 1 = transverse.
    cropped_patients
        ``patient_id`` of each row of ``roi_crops``.
    crop_exclusions
        Images that could not be decoded (corrupt, unsupported, multi-frame).
    """
    size, margin, percentiles = _crop_settings(preprocessing)
    crops, kept, failures = crop_manifest(
        image_manifest,
        views=VIEWS,
        size=size,
        margin=margin,
        percentiles=percentiles,
        progress=bool(preprocessing.get("progress_bar", True)),
    )
    logger.info(
        "Cropped %d patients (%d images) to %d×%d pixels per view.",
        len(kept),
        len(kept) * len(VIEWS),
        size,
        size,
    )
    return crops, pd.DataFrame({"patient_id": kept}, dtype=object), exclusion_table(failures)


def build_cohort_table(
    validated_clinical: pd.DataFrame, cropped_patients: pd.DataFrame
) -> pd.DataFrame:
    """The clinical rows of the included patients, row i ↔ ``roi_crops[i]``."""
    table = validated_clinical.set_index("patient_id", drop=False)
    return table.loc[cropped_patients["patient_id"].tolist()].reset_index(drop=True)


def _counts(table: pd.DataFrame) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for center, rows in table.groupby("center", sort=True):
        labels = rows["clnm"]
        counts[str(center)] = {
            "clnm_0": int((labels == 0).sum()),
            "clnm_1": int((labels == 1).sum()),
            "unlabelled": int(labels.isna().sum()),
            "total": len(rows),
        }
    return counts


_METRIC_NAME_LENGTH = 100


def _metric_name(text: str) -> str:
    """A centre name as part of an MLflow metric key (letters, digits, ``_-. ``, 100 at most).

    MLflow refuses other characters, path-like names (``Lyon//Sud``, ``../x``) and keys over
    250 characters. A name that had to change ends with a short hash of the original, so
    that two centres never share a key.
    """
    safe = re.sub(r"[^A-Za-z0-9_\-. ]", "_", str(text)).strip(" ")
    if safe == text and 0 < len(safe) <= _METRIC_NAME_LENGTH:
        return safe
    digest = hashlib.sha256(str(text).encode("utf-8")).hexdigest()[:8]
    return f"{safe[: _METRIC_NAME_LENGTH - 9]}_{digest}"


def _json_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    plain = table.astype(object).where(table.notna(), None)
    records = plain.to_dict(orient="records")
    for record in records:
        if record.get("clnm") is not None:
            record["clnm"] = int(record["clnm"])
    return records


def build_data_quality_report(
    *,
    raw_cohort: RawCohort,
    validated_clinical: pd.DataFrame,
    cohort_table: pd.DataFrame,
    image_manifest: pd.DataFrame,
    table_exclusions: pd.DataFrame,
    file_exclusions: pd.DataFrame,
    crop_exclusions: pd.DataFrame,
    preprocessing: dict[str, Any],
    split: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, dict[str, float | int]]]:
    """Summarise what was read, what was excluded and why.

    Returns
    -------
    data_quality_report
        Counts per centre and label before and after exclusions, every exclusion with its
        patient, file and reason, the clinical columns used and skipped, image sizes, and the
        parameters.
    exclusions
        One row per excluded patient and problem (``patient_id, center, clnm, view, file,
        reason``).
    preprocessing_metrics
        Patients read, included and excluded, overall and per centre (for MLflow).
    """
    order = {pid: i for i, pid in enumerate(validated_clinical["patient_id"])}
    parts = [t for t in (table_exclusions, file_exclusions, crop_exclusions) if not t.empty]
    exclusions = (
        pd.concat(parts, ignore_index=True) if parts else exclusion_table([])
    ).reset_index(drop=True)
    if not exclusions.empty:
        exclusions["clnm"] = exclusions["clnm"].astype("Int64")
        rank = exclusions["patient_id"].map(order)
        exclusions = exclusions.iloc[np.argsort(rank.to_numpy(), kind="stable")]
        exclusions = exclusions.reset_index(drop=True)
    exclusions = exclusions[list(EXCLUSION_COLUMNS)]

    wanted = preprocessing.get("clinical_columns", list(DEFAULT_INDICATORS))
    wanted = [name for name in wanted if name not in IDENTITY_COLUMNS]
    used = [name for name in wanted if name in validated_clinical.columns]
    skipped = [name for name in wanted if name not in validated_clinical.columns]
    frame_sizes = (
        image_manifest.groupby(["height", "width"]).size().sort_values(ascending=False)
        if not image_manifest.empty
        else pd.Series(dtype=int)
    )
    n_read, n_included = len(validated_clinical), len(cohort_table)
    excluded_ids = exclusions["patient_id"].drop_duplicates().tolist()
    report = {
        "cohort_dir": str(raw_cohort.root),
        "patients_read": n_read,
        "patients_included": n_included,
        "patients_excluded": n_read - n_included,
        "counts_per_center_and_label": {
            "before_exclusions": _counts(validated_clinical),
            "after_exclusions": _counts(cohort_table),
        },
        "excluded_patients": excluded_ids,
        "exclusions": _json_records(exclusions),
        "clinical_columns": {"used": used, "skipped": skipped},
        "image_size": {
            "crop_side_px": int(preprocessing["image_size"]),
            "views": list(VIEWS),
            "source_frames_height_x_width": {
                f"{int(h)}x{int(w)}": int(n) for (h, w), n in frame_sizes.items()
            },
        },
        "parameters": {"preprocessing": dict(preprocessing), "split": dict(split)},
    }

    metrics: dict[str, dict[str, float | int]] = {
        "patients_read": {"value": float(n_read), "step": 0},
        "patients_included": {"value": float(n_included), "step": 0},
        "patients_excluded": {"value": float(n_read - n_included), "step": 0},
    }
    before = report["counts_per_center_and_label"]["before_exclusions"]
    after = report["counts_per_center_and_label"]["after_exclusions"]
    for center, counts in before.items():
        included = after.get(center, {}).get("total", 0)
        metrics[f"included.{_metric_name(center)}"] = {"value": float(included), "step": 0}
        metrics[f"excluded.{_metric_name(center)}"] = {
            "value": float(counts["total"] - included),
            "step": 0,
        }

    if excluded_ids:
        reasons = exclusions.drop_duplicates("patient_id")["reason"].head(3).tolist()
        logger.warning(
            "%d patients read, %d excluded (see %s); for example: %s",
            n_read,
            n_read - n_included,
            REPORT_LOCATION,
            "; ".join(reasons),
        )
    else:
        logger.info("%d patients read, none excluded (see %s).", n_read, REPORT_LOCATION)
    if skipped:
        logger.info("Clinical columns not in clinical.csv, skipped: %s.", ", ".join(skipped))
    return report, exclusions, metrics


def assign_patient_splits(
    cohort_table: pd.DataFrame, exclusions: pd.DataFrame, split: dict[str, Any], seed: int
) -> pd.DataFrame:
    """Training/external split by centre and stratified CV folds, row i ↔ ``roi_crops[i]``.

    ``exclusions`` is only used to explain an error (e.g. a centre left empty by exclusions).
    """
    try:
        splits = assign_splits(cohort_table, split["external_centers"], split["n_folds"], seed)
    except CohortError as error:
        excluded = exclusions["patient_id"].nunique()
        if not excluded:
            raise
        raise CohortError(
            f"{error} — after excluding {excluded} patient(s) for image or box problems "
            f"(see {REPORT_LOCATION})"
        ) from error
    counts = splits["split"].value_counts()
    logger.info(
        "Split by centre: %d training patients in %d folds, %d external patients.",
        int(counts.get("train", 0)),
        int(split["n_folds"]),
        int(counts.get("external", 0)),
    )
    return splits
