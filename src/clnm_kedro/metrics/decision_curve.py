"""Decision-curve analysis: net benefit of a model against treat-all and treat-none.

Net benefit at threshold probability ``pt`` (Vickers & Elkin, Med Decis Making 2006)::

    NB = TP / n - FP / n * pt / (1 - pt)

with a patient "treated" when ``p >= pt``. Treat-all uses ``p = 1`` for everyone
(``NB = prevalence - (1 - prevalence) * pt / (1 - pt)``); treat-none has ``NB = 0``.

The computation is delegated to ``dcurves.dca`` (the Python port of the MSKCC ``dcurves``
package by Vickers and colleagues) for binary outcomes, with the prevalence taken from the
data. One corner of that library to know: it nudges probabilities of exactly 0 (and 1) by
machine epsilon, so at ``pt = 0`` a patient with ``p = 0`` counts as untreated.
"""

from __future__ import annotations

from collections.abc import Sequence

import dcurves
import numpy as np
import numpy.typing as npt
import pandas as pd

from clnm_kedro.metrics._validation import check_labels, check_scores, check_thresholds

__all__ = ["DEFAULT_THRESHOLDS", "net_benefit"]

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 100))

_OUTCOME = "outcome"
_MODEL = "probability"


def net_benefit(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    thresholds: Sequence[float] | npt.ArrayLike = DEFAULT_THRESHOLDS,
) -> pd.DataFrame:
    """Net benefit of the model, treat-all and treat-none across threshold probabilities.

    Parameters
    ----------
    y
        Outcomes, 1 = event, 0 = no event; both must be present.
    p
        Predicted probabilities of the event.
    thresholds
        Threshold probabilities in [0, 1); default 0.01, 0.02, ..., 0.99.

    Returns
    -------
    pandas.DataFrame
        One row per threshold, in the order given: ``threshold``, ``net_benefit_model``,
        ``net_benefit_treat_all``, ``net_benefit_treat_none`` (always 0).
    """
    labels = check_labels(y)
    probs = check_scores(p, labels.size, name="p", probability=True)
    cuts = check_thresholds(thresholds, name="thresholds")

    curves = dcurves.dca(
        data=pd.DataFrame({_OUTCOME: labels, _MODEL: probs}),
        outcome=_OUTCOME,
        modelnames=[_MODEL],
        thresholds=cuts.tolist(),
    )
    by_model = {
        name: rows["net_benefit"].to_numpy(dtype=np.float64)
        for name, rows in curves.groupby("model", sort=False)
    }
    return pd.DataFrame(
        {
            "threshold": cuts,
            "net_benefit_model": by_model[_MODEL],
            "net_benefit_treat_all": by_model["all"],
            "net_benefit_treat_none": np.zeros(cuts.size),
        }
    )
