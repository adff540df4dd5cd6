"""Time the default synthetic cohort (issue 2 target: under a minute on 2 cores).

Simulates the cohort of ``conf/base/parameters_simulate.yml`` (461 patients, 922 frames) with the
seed of ``conf/base/parameters.yml`` into a temporary folder, once per ``n_jobs`` asked for, and
prints wall time, CPU time (this process and its worker processes), frames per second, the
ratio to the one-minute budget and, with several ``n_jobs``, the speed-up over the first.
Sampling the patients (tables, the reference population for the odds ratios) and rendering +
writing the frames are timed apart.

Wall time depends on what else runs on the machine: compare runs made side by side.

Run from the project root::

    PYTHONPATH=src .venv/bin/python benchmarks/bench_simulation.py [--n-jobs 1 2] [--patients N]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import yaml

from clnm_kedro.simulation import simulate_cohort
from clnm_kedro.simulation.patients import _reference_coefficients

CONF = Path(__file__).resolve().parents[1] / "conf" / "base"
BUDGET_S = 60.0


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(params: dict, seed: int) -> dict[str, float]:
    """Simulate and write the cohort once; return timings."""
    _reference_coefficients.cache_clear()  # time the whole simulation, not a warm cache
    wall, cpu = time.perf_counter(), time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cohort = simulate_cohort(params, seed)
    sampled = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        cohort.write(Path(folder) / "cohort")
        written = time.perf_counter()
    frames = 2 * len(cohort.table)
    return {
        "frames": frames,
        "sample_s": sampled - wall,
        "render_s": written - sampled,
        "total_s": written - wall,
        "cpu_s": time.process_time() - cpu,
        "worker_cpu_s": _child_cpu() - (children.ru_utime + children.ru_stime),
        "frames_per_s": frames / (written - wall),
    }


def main() -> None:
    """Parse the command line, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--patients", type=int, default=None, help="default: the YAML's 461")
    args = parser.parse_args()
    params = yaml.safe_load((CONF / "parameters_simulate.yml").read_text())["simulate"]
    seed = int(yaml.safe_load((CONF / "parameters.yml").read_text())["seed"])
    params["progress_bar"] = False
    if args.patients:
        params["n_patients"] = args.patients
    results = []
    for n_jobs in args.n_jobs:
        params["n_jobs"] = n_jobs
        result = run_once(params, seed)
        results.append(result)
        print(
            f"n_jobs={n_jobs}: {result['frames']} frames in {result['total_s']:.1f} s "
            f"(sampling {result['sample_s']:.1f} s, rendering + writing {result['render_s']:.1f} s)"
            f", {result['frames_per_s']:.1f} frames/s; CPU {result['cpu_s']:.1f} s here + "
            f"{result['worker_cpu_s']:.1f} s in worker processes"
            f"; {result['total_s'] / BUDGET_S:.2f} x the {BUDGET_S:.0f} s budget"
        )
    for n_jobs, result in zip(args.n_jobs[1:], results[1:], strict=True):
        print(
            f"speed-up n_jobs={n_jobs} over n_jobs={args.n_jobs[0]}: "
            f"{results[0]['total_s'] / result['total_s']:.2f} x"
        )


if __name__ == "__main__":
    main()
