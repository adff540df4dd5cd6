"""Tiny synthetic cohorts written by the project's simulator, for any test that needs one.

``write_tiny_cohort(path)`` writes a valid cohort folder (input contract,
docs/input_contract.md) with small frames in well under a second per 10 patients, and its
oracle beside it
(``<path>_oracle.csv``), exactly as ``kedro run --pipelines simulate --env test`` would.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from clnm_kedro.simulation import SyntheticCohort, simulate_cohort, write_oracle

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEST_PARAMETERS = PROJECT_ROOT / "conf" / "test" / "parameters_simulate.yml"
BASE_PARAMETERS = PROJECT_ROOT / "conf" / "base" / "parameters_simulate.yml"


@cache
def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["simulate"]


@cache
def _test_environment() -> dict[str, Any]:
    """``conf/test``'s ``simulate`` keys merged over ``conf/base``'s, as the project's config
    loader merges them (key by key; a list replaced as a whole)."""
    merged = OmegaConf.merge(_load(BASE_PARAMETERS), _load(TEST_PARAMETERS))
    return OmegaConf.to_container(merged, resolve=True)


def tiny_parameters(**overrides: Any) -> dict[str, Any]:
    """The test environment's ``simulate`` block with top-level keys replaced by ``overrides``."""
    params = copy.deepcopy(_test_environment())
    params.update(copy.deepcopy(overrides))
    return params


def base_parameters(**overrides: Any) -> dict[str, Any]:
    """The default (``conf/base``) ``simulate`` block with top-level keys replaced."""
    params = copy.deepcopy(_load(BASE_PARAMETERS))
    params.update(copy.deepcopy(overrides))
    return params


def write_tiny_cohort(
    path: str | Path, n_patients: int = 24, seed: int = 7, **overrides: Any
) -> SyntheticCohort:
    """Simulate and write a small two-centre cohort at ``path`` (oracle beside it).

    Parameters
    ----------
    path
        The cohort folder to create (must not exist or be empty).
    n_patients
        Number of patients (about 2/3 CENTER_A, 1/3 CENTER_B).
    seed
        Seed of the simulation.
    overrides
        Other top-level ``simulate`` parameters to replace.
    """
    cohort = simulate_cohort(tiny_parameters(n_patients=n_patients, **overrides), seed)
    cohort.write(path)
    write_oracle(cohort, path)
    return cohort
