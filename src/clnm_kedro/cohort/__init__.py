"""Reading a cohort folder: validation, image decoding, ROI cropping and splits.

Plain modules, importable without Kedro; the ``preprocessing`` pipeline wires them.
"""

from clnm_kedro.cohort.errors import CohortError, ImageReadError
from clnm_kedro.cohort.images import image_size, read_greyscale
from clnm_kedro.cohort.roi import box_problem, crop_manifest, crop_roi, square_window
from clnm_kedro.cohort.schemas import VIEWS, clinical_schema, roi_schema
from clnm_kedro.cohort.splits import assign_splits, check_split_feasible
from clnm_kedro.cohort.validation import (
    EXCLUSION_COLUMNS,
    check_image_files,
    exclusion_table,
    validate_clinical,
    validate_rois,
)

__all__ = [
    "EXCLUSION_COLUMNS",
    "VIEWS",
    "CohortError",
    "ImageReadError",
    "assign_splits",
    "box_problem",
    "check_image_files",
    "check_split_feasible",
    "clinical_schema",
    "crop_manifest",
    "crop_roi",
    "exclusion_table",
    "image_size",
    "read_greyscale",
    "roi_schema",
    "square_window",
    "validate_clinical",
    "validate_rois",
]
