"""A CSV table that may legitimately be absent (e.g. a simulator's oracle for a real cohort)."""

from __future__ import annotations

import logging

import pandas as pd
from kedro_datasets.pandas import CSVDataset

logger = logging.getLogger(__name__)


class OptionalCSVDataset(CSVDataset):
    """``pandas.CSVDataset`` that loads an empty table, with a log line, when the file is absent.

    Used for inputs that only some cohorts have, such as the simulator's oracle risk: a real
    cohort has none, and the evaluation then simply reports no oracle AUC.
    """

    def load(self) -> pd.DataFrame:
        """Load the table, or an empty one when the file does not exist."""
        if not self._exists():
            logger.info("'%s' does not exist; using an empty table.", self._filepath)
            return pd.DataFrame()
        return super().load()
