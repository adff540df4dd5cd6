"""Kedro datasets of this project: the raw cohort folder and cached numpy arrays."""

from clnm_kedro.datasets.cohort_dataset import CohortDataset, RawCohort
from clnm_kedro.datasets.numpy_dataset import NumpyDataset
from clnm_kedro.datasets.optional_csv_dataset import OptionalCSVDataset

__all__ = ["CohortDataset", "NumpyDataset", "OptionalCSVDataset", "RawCohort"]
