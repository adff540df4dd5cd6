"""How much CLNM information each simulated view carries: the ceiling of a perfect image reader.

A network can at best perceive, in one view, what the simulator put into that view. For each
``simulate`` preset of ``conf/base/parameters_simulate.yml`` this samples a large population (no
images), fits a logistic regression of the label on the latent features each reader sees on the
training centre, and scores it on the external centre
(:func:`clnm_kedro.simulation.ceiling.perfect_reader_ceilings`): both views, each view, the
clinical columns and the oracle risk. The same figures are in ``simulation_summary.json``.

Run from the project root::

    PYTHONPATH=src .venv/bin/python benchmarks/simulator_view_ceiling.py \\
        [--patients 20000] [--presets default complementary redundant]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from clnm_kedro.simulation.ceiling import CEILING_SEED, perfect_reader_ceilings
from clnm_kedro.simulation.parameters import validate_parameters

CONF = Path(__file__).resolve().parents[1] / "conf" / "base"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=CEILING_SEED)
    parser.add_argument("--presets", nargs="+", default=["default", "complementary", "redundant"])
    args = parser.parse_args()
    raw = yaml.safe_load((CONF / "parameters_simulate.yml").read_text())["simulate"]
    for preset in args.presets:
        params = validate_parameters({**raw, "preset": preset})
        result = perfect_reader_ceilings(params, n_patients=args.patients, seed=args.seed)
        aucs = {k: round(v, 3) for k, v in result["external_auc"].items()}
        print(f"{preset}: {json.dumps(aucs)}", flush=True)


if __name__ == "__main__":
    main()
