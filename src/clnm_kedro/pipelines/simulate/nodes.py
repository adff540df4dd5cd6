"""Nodes of the ``simulate`` pipeline: thin wrappers around :mod:`clnm_kedro.simulation`.

The cohort folder is written when the ``raw_cohort`` dataset saves the cohort object (its
``write`` renders the frames and refuses to overwrite another cohort). ``export_cohort`` lists
``raw_cohort`` before ``simulation_oracle``, so the oracle file is only written once the folder
has been written (or found identical); the summary waits for the oracle.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from clnm_kedro.simulation import SyntheticCohort
from clnm_kedro.simulation import simulate_cohort as _simulate_cohort

logger = logging.getLogger(__name__)


def simulate_cohort(params: dict[str, Any], seed: int) -> SyntheticCohort:
    """Sample the synthetic patients (clinical values, nodules, risk, labels); no images yet.

    Parameters
    ----------
    params
        The ``simulate`` parameter block.
    seed
        The project's seed.
    """
    return _simulate_cohort(params, seed)


def export_cohort(cohort: SyntheticCohort) -> tuple[SyntheticCohort, pd.DataFrame]:
    """Hand the cohort to ``raw_cohort`` (which renders and writes it) and its oracle table.

    Returns
    -------
    The cohort (saved by ``raw_cohort``) and the oracle table (``simulation_oracle``, written
    beside the cohort folder, never inside it).
    """
    return cohort, cohort.oracle_table()


def summarise_simulation(
    cohort: SyntheticCohort, oracle: pd.DataFrame
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Summary of the written cohort and its MLflow metrics.

    Checks that the oracle file beside the cohort belongs to it, then reports counts and
    prevalence per centre, the oracle AUC per centre (the ceiling any model can reach), the
    AUC of the clinical columns alone (fitted on the first centre) and the odds ratios.

    Returns
    -------
    The summary (``simulation_summary``) and ``{name: {"value", "step"}}`` metrics
    (``simulation_metrics``).
    """
    expected = cohort.table["patient_id"].tolist()
    found = oracle["patient_id"].astype(str).tolist() if "patient_id" in oracle else []
    if found != expected:
        raise ValueError(
            f"The oracle table beside the cohort has {len(found)} patients that do not match "
            f"the {len(expected)} simulated ones; remove the stale _oracle.csv and rerun."
        )
    summary = cohort.summary()
    for name, figures in summary["centers"].items():
        logger.info(
            "%s: %d patients, CLNM %.1f %%, oracle AUC %s",
            name,
            figures["n_patients"],
            100.0 * figures["prevalence"],
            "n/a" if figures["oracle_auc"] is None else f"{figures['oracle_auc']:.3f}",
        )
    ceilings = summary["perfect_reader_ceilings"]["external_auc"]
    logger.info(
        "Perfect-reader external AUC (preset %s): both views %.3f, longitudinal %.3f, "
        "transverse %.3f, clinical %.3f, oracle %.3f",
        summary["preset"],
        ceilings["both_views"],
        ceilings["longitudinal"],
        ceilings["transverse"],
        ceilings["clinical"],
        ceilings["oracle"],
    )
    return summary, cohort.metrics(summary)
