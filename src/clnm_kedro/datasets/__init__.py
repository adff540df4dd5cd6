"""Kedro datasets of this project: the raw cohort folder and cached numpy arrays."""

from clnm_kedro.datasets.cohort_dataset import CohortDataset, RawCohort
from clnm_kedro.datasets.numpy_dataset import NumpyDataset

__all__ = ["CohortDataset", "NumpyDataset", "RawCohort"]
