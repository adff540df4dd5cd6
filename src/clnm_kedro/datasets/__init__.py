"""Kedro datasets of this project: raw cohort folder, cached arrays, network checkpoints,
the Optuna storage URL from credentials, the report's figures (PNG, read back for the report),
the report with its kedro-viz preview."""

from clnm_kedro.datasets.cohort_dataset import CohortDataset, RawCohort
from clnm_kedro.datasets.numpy_dataset import NumpyDataset
from clnm_kedro.datasets.optional_csv_dataset import OptionalCSVDataset
from clnm_kedro.datasets.optuna_storage_dataset import OptunaStorageDataset
from clnm_kedro.datasets.report_figure_dataset import ReportFigureDataset
from clnm_kedro.datasets.report_html_dataset import ReportHTMLDataset
from clnm_kedro.datasets.table_csv_dataset import TableCSVDataset
from clnm_kedro.datasets.torch_model_dataset import TorchModelDataset

__all__ = [
    "CohortDataset",
    "NumpyDataset",
    "OptionalCSVDataset",
    "OptunaStorageDataset",
    "RawCohort",
    "ReportFigureDataset",
    "ReportHTMLDataset",
    "TableCSVDataset",
    "TorchModelDataset",
]
