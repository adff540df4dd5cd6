"""Can the method see a second view's value? The networks on the positive and negative controls.

For each ``simulate`` preset (``complementary``: each view carries separate risk; ``redundant``:
both views show the same signs; ``default``: the realistic cohort) this simulates one cohort with
a training centre of ``--train`` patients and a large external centre of ``--external`` patients,
crops the ROIs with the preprocessing nodes, trains the dual-view and both single-view networks
(``clnm_kedro.networks.train_network`` with the recipe of ``conf/base/parameters_dl_training.yml``
as ``dl_training`` trains a network model with ``cross_fitting.n_folds: 1``: every training
patient fitted on, the shipped epoch choice) for each seed, and scores the external centre.

Pass criterion (issue 13): pooled over seeds (each network's external probabilities averaged
over the seeds' networks, one score per patient), dual beats the better single view with a paired
DeLong p < 0.05 on ``complementary``, and shows no significant difference on ``redundant``.

The defaults are the settings the method is judged by: the base scanners' frames, the
project's 128-pixel crops, 1,500 training and 1,000 external patients. On 2 CPU cores the three
presets and three seeds took about 40 minutes of wall time as two processes side by side
(``--presets complementary redundant`` and ``--presets default``; each renders its cohorts in
about 5 minutes, then trains a seed's three networks in about 5 minutes).

``--small-frames`` (the test environment's coarser scanners), a smaller ``--image-size``,
``--epoch-choice inner_fold`` and ``--fit-patients`` (fit on fewer of the training patients,
the same external centre) are diagnostics: fitted on a few hundred patients the networks learn
too little of either view for the gain to stand clearly above what 1,000 external patients
detect (``benchmarks/results/view_controls_complementary_diagnostics.json``).
Progress lines go to stdout and each finished network's external AUC is appended to
``--results`` (JSON lines), so a partial run still reports what it finished; ``--report``
prints the table from that file.

Run from the project root (background)::

    PYTHONPATH=src .venv/bin/python benchmarks/view_controls.py \\
        --workdir /tmp/view_controls --results benchmarks/results/view_controls.jsonl
    PYTHONPATH=src .venv/bin/python benchmarks/view_controls.py --report \\
        --results benchmarks/results/view_controls.jsonl
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import roc_auc_score

from clnm_kedro.datasets.cohort_dataset import CohortDataset
from clnm_kedro.metrics.delong import delong_test
from clnm_kedro.metrics.power import paired_auc_power
from clnm_kedro.networks import predict_probabilities, train_network
from clnm_kedro.networks.cross_fitting import fold_rows
from clnm_kedro.pipelines.preprocessing import nodes as prep
from clnm_kedro.simulation import simulate_cohort, write_oracle
from clnm_kedro.simulation.ceiling import perfect_reader_ceilings
from clnm_kedro.simulation.parameters import validate_parameters

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("dual", "longitudinal", "transverse")


def _yaml(path: Path, key: str) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))[key]


def simulation_block(preset: str, n_train: int, n_external: int, small_frames: bool) -> dict:
    """The ``simulate`` block of ``preset`` with the requested centre sizes."""
    params = _yaml(ROOT / "conf/base/parameters_simulate.yml", "simulate")
    if small_frames:
        params["centers"] = _yaml(ROOT / "conf/test/parameters_simulate.yml", "simulate")["centers"]
    params.update(
        preset=preset,
        n_patients=n_train + n_external,
        n_jobs=1,
        progress_bar=False,
        ceiling_patients=4000,
    )
    params["centers"][0]["share"] = n_train
    params["centers"][1]["share"] = n_external
    return params


def cohort_crops(preset: str, args: argparse.Namespace) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """Simulate (once), crop (once, cached) and split one preset's cohort."""
    frames = "small" if args.small_frames else "base"
    folder = args.workdir / f"{preset}_{args.train}_{args.external}_{frames}"
    cache = folder / f"crops_{args.image_size}.npz"
    params = simulation_block(preset, args.train, args.external, args.small_frames)
    checked = validate_parameters(params)
    if cache.exists():
        stored = np.load(cache, allow_pickle=False)
        splits = pd.read_csv(folder / "splits.csv", dtype={"patient_id": str})
        ceilings = json.loads((folder / "ceilings.json").read_text())
        return stored["crops"], splits, ceilings
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    cohort = simulate_cohort(params, args.cohort_seed)
    cohort.write(folder / "cohort")
    write_oracle(cohort, folder / "cohort")
    print(
        f"[{preset}] rendered {len(cohort.table)} patients in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    raw = CohortDataset(path=str(folder / "cohort")).load()
    preprocessing = {**_yaml(ROOT / "conf/base/parameters_preprocessing.yml", "preprocessing")}
    preprocessing.update(image_size=args.image_size, progress_bar=False)
    split = _yaml(ROOT / "conf/base/parameters.yml", "split")
    clinical, boxes, table_exclusions = prep.validate_tables(raw, preprocessing, split)
    manifest, _ = prep.check_images(raw, clinical, boxes, table_exclusions)
    crops, kept, _ = prep.crop_rois(manifest, preprocessing)
    table = prep.build_cohort_table(clinical, kept)
    splits = prep.assign_patient_splits(table, pd.DataFrame({"patient_id": []}), split, 20260127)
    ceilings = perfect_reader_ceilings(checked, n_patients=args.ceiling_patients)["external_auc"]
    np.savez(cache, crops=crops)
    splits.to_csv(folder / "splits.csv", index=False)
    (folder / "ceilings.json").write_text(json.dumps(ceilings))
    print(
        f"[{preset}] cropped in {time.perf_counter() - started:.0f} s; perfect-reader "
        f"ceilings {json.dumps({k: round(v, 3) for k, v in ceilings.items()})}",
        flush=True,
    )
    return crops, splits, ceilings


def train_and_score(
    crops: np.ndarray, splits: pd.DataFrame, kind: str, seed: int, args: argparse.Namespace
) -> tuple[np.ndarray, float, int]:
    recipe = copy.deepcopy(_yaml(ROOT / "conf/base/parameters_dl_training.yml", "dl_training"))
    config = recipe["recipe"]
    config["network"]["kind"] = kind
    config["training"]["progress_bar"] = False
    config["training"]["device"] = "cpu"
    for section, values in args.override.items():
        config.setdefault(section, {}).update(values)
    # As dl_training trains a network model with K = 1: every training-centre patient fitted on,
    # the shipped epoch choice (``last``: the fixed schedule, no validation passes).
    fit, validation, held = fold_rows(splits, 0, 1, args.epoch_choice)
    if args.fit_patients:  # a diagnostic: fewer training patients, the same external centre
        fit = fit[: args.fit_patients]
    rows = (fit, validation, held)
    result = train_network(np.asarray(crops), splits, config, seed, rows=rows)
    external = (splits["split"] == "external").to_numpy()
    probabilities = predict_probabilities(result.network(), crops[external])
    return probabilities, float(result.best_val_auc), int(result.best_epoch)


def run(args: argparse.Namespace) -> None:
    done = set()
    if args.results.exists():
        for line in args.results.read_text().splitlines():
            row = json.loads(line)
            done.add((row["preset"], row["seed"], row["kind"]))
    data = {}
    for seed in args.seeds:
        for preset in args.presets:
            if preset not in data:
                data[preset] = cohort_crops(preset, args)
            crops, splits, ceilings = data[preset]
            external = (splits["split"] == "external").to_numpy()
            for kind in KINDS:
                if (preset, seed, kind) in done:
                    continue
                started = time.perf_counter()
                probabilities, val_auc, epoch = train_and_score(crops, splits, kind, seed, args)
                y = splits["clnm"].to_numpy()[external]
                row = {
                    "preset": preset,
                    "seed": seed,
                    "kind": kind,
                    "external_auc": float(roc_auc_score(y, probabilities)),
                    "validation_auc": val_auc,
                    "best_epoch": epoch,
                    "seconds": time.perf_counter() - started,
                    "n_train": int(args.fit_patients or (~external).sum()),
                    "n_external": int(external.sum()),
                    "ceilings": ceilings,
                    "patient_id": splits["patient_id"][external].tolist(),
                    "clnm": y.tolist(),
                    "probability": probabilities.tolist(),
                }
                with args.results.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(
                    f"[{preset}] seed {seed} {kind:>12}: external AUC {row['external_auc']:.3f} "
                    f"(validation {val_auc:.3f}, epoch {epoch}, {row['seconds']:.0f} s)",
                    flush=True,
                )


def report(results: Path) -> dict:
    """Per seed and pooled external AUCs and the pooled paired DeLong tests, per preset."""
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    table = pd.DataFrame(rows)
    out: dict = {}
    for preset, group in table.groupby("preset", sort=False):
        entry: dict = {"ceilings": group.iloc[0]["ceilings"], "per_seed": {}}
        for seed, runs in group.groupby("seed"):
            entry["per_seed"][int(seed)] = {
                r.kind: round(r.external_auc, 3) for r in runs.itertuples()
            }
        complete = [s for s, runs in group.groupby("seed") if set(runs["kind"]) == set(KINDS)]
        if complete:
            pooled = {}
            for kind in KINDS:
                runs = group[(group["kind"] == kind) & group["seed"].isin(complete)]
                pooled[kind] = np.mean(np.vstack(runs["probability"].tolist()), axis=0)
            y = np.asarray(group.iloc[0]["clnm"])
            best = max(("longitudinal", "transverse"), key=lambda k: roc_auc_score(y, pooled[k]))
            test = delong_test(y, pooled["dual"], pooled[best])
            power = paired_auc_power(y, pooled["dual"], pooled[best])
            entry["pooled"] = {
                "seeds": [int(s) for s in complete],
                **{k: round(float(roc_auc_score(y, v)), 3) for k, v in pooled.items()},
                "best_single": best,
                "dual_minus_best": round(test.auc_a - test.auc_b, 3),
                "delong_z": round(test.z, 2),
                "delong_p": float(f"{test.p:.3g}"),
                "detectable_difference": round(power.detectable_difference, 3),
                "n_external": int(y.size),
            }
        out[str(preset)] = entry
    print(json.dumps(out, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["complementary", "redundant", "default"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--external", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--cohort-seed", type=int, default=20260127)
    parser.add_argument("--ceiling-patients", type=int, default=10_000)
    parser.add_argument(
        "--small-frames",
        action="store_true",
        help="the test environment's scanners (coarser pixels, smaller frames): a diagnostic",
    )
    parser.add_argument(
        "--override",
        type=json.loads,
        default={},
        help='JSON merged over the recipe, e.g. {"training": {"epochs": 20}}',
    )
    parser.add_argument(
        "--epoch-choice",
        default=_yaml(ROOT / "conf/base/parameters_dl_training.yml", "dl_training")[
            "cross_fitting"
        ]["epoch_choice"],
        help="last (the shipped default) | inner_fold",
    )
    parser.add_argument(
        "--fit-patients",
        type=int,
        default=0,
        help="fit on only the first N training-centre patients (0: all); a diagnostic",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/view_controls"))
    parser.add_argument("--results", type=Path, default=Path("/tmp/view_controls/results.jsonl"))
    parser.add_argument("--report", action="store_true", help="only print the table")
    args = parser.parse_args()
    if args.report:
        report(args.results)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    run(args)
    report(args.results)


if __name__ == "__main__":
    main()
