"""A fitted head whose probabilities are calibrated risks.

:class:`CalibratedHead` holds the refitted head pipeline and the
:class:`~clnm_kedro.metrics.recalibration.LogitCalibration` fitted on that head's out-of-fold
predictions on the training centres. Its ``predict_proba`` returns the calibrated risk, so
whatever scores with the pickled head (the ``predict_with_head`` node, the ``inference``
pipeline, the packaged MLflow model) hands out the same calibrated risk without knowing about
the calibration. The uncalibrated score stays available (:meth:`CalibratedHead.score`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from clnm_kedro.metrics.recalibration import LogitCalibration

__all__ = ["CalibratedHead"]


class CalibratedHead:
    """A fitted head pipeline followed by its logistic calibration.

    Parameters
    ----------
    pipeline
        The fitted head (preprocessing + reduction + classifier).
    calibration
        Intercept and slope on the logit, fitted on the head's out-of-fold predictions on the
        training centres only.
    """

    def __init__(self, pipeline: Pipeline, calibration: LogitCalibration) -> None:
        self.pipeline = pipeline
        # Plain numbers, so that the head serialises (pickle, skops) without custom types.
        self.calibration_ = calibration.to_dict()

    @property
    def calibration(self) -> LogitCalibration:
        """The stored calibration map."""
        return LogitCalibration.from_dict(dict(self.calibration_))

    @property
    def feature_names_in_(self) -> np.ndarray:
        """The feature columns the head was fitted on."""
        return self.pipeline.feature_names_in_

    @property
    def classes_(self) -> np.ndarray:
        return self.pipeline.classes_

    @property
    def named_steps(self) -> Any:
        """The steps of the head pipeline (``preprocess``, ``classifier``)."""
        return self.pipeline.named_steps

    def recalibrated(self, second: LogitCalibration) -> CalibratedHead:
        """The same head with ``second`` applied after its calibration (one map)."""
        return CalibratedHead(self.pipeline, self.calibration.followed_by(second))

    def score(self, X: Any) -> np.ndarray:
        """The head's uncalibrated probability of CLNM (before the calibration map)."""
        return self.pipeline.predict_proba(X)[:, 1]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated probabilities ``[1 - risk, risk]``, one row per patient."""
        risk = self.calibration.apply(self.score(X))
        return np.column_stack([1.0 - risk, risk])

    def predict(self, X: Any) -> np.ndarray:
        """1 where the calibrated risk is at least 0.5 (use the Youden cut-off for decisions)."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)

    def __repr__(self) -> str:
        c = self.calibration
        return (
            f"CalibratedHead({self.pipeline.steps[-1][1]!r}, intercept={c.intercept:.3f}, "
            f"slope={c.slope:.3f})"
        )
