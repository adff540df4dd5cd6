"""A synthetic two-centre ultrasound cohort of papillary thyroid microcarcinoma.

Plain module (no Kedro): ``simulate_cohort(params, seed)`` samples patients, clinical values,
3-D nodules, risk and labels; ``SyntheticCohort.write(cohort_dir)`` renders the two orthogonal
B-mode sections of every nodule as exported scanner frames and writes the input contract;
``SyntheticCohort.oracle_table()`` holds each patient's oracle risk, kept beside the cohort.
"""

from clnm_kedro.simulation.cohort import (
    MANIFEST,
    SIMULATOR_VERSION,
    SyntheticCohort,
    clinical_only_auc,
    simulate_cohort,
    write_oracle,
)
from clnm_kedro.simulation.parameters import SimulationParameterError, validate_parameters
from clnm_kedro.simulation.patients import sample_patients

__all__ = [
    "MANIFEST",
    "SIMULATOR_VERSION",
    "SimulationParameterError",
    "SyntheticCohort",
    "clinical_only_auc",
    "sample_patients",
    "simulate_cohort",
    "validate_parameters",
    "write_oracle",
]
