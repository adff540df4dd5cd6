"""Benchmark of the preprocessing crop step: time, images/s and memory at two cohort sizes.

Writes a synthetic cohort in the input contract (600 × 800 ultrasound-like 8-bit PNG frames,
speckle and a dark nodule in a known box), then, in a fresh process per cohort size, runs the
preprocessing nodes as the pipeline does (table validation, header checks, decoding + cropping)
and reports wall time, images/s and resident memory: before cropping, the peak while cropping
(sampled every 20 ms and from ``getrusage``), and after. Memory is flat when the growth during
cropping is the output array plus a constant, whatever the number of images.

To keep the disk use small the cohort reuses a pool of distinct frames through hard links (each
patient still has its own files, boxes and rows; every image is decoded once, from its own
path).

Usage::

    python benchmarks/bench_preprocessing.py                       # 1,000 and 5,000 patients
    python benchmarks/bench_preprocessing.py --patients 200 1000 --image-size 224
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from clnm_kedro.registry import VIEWS

FRAME = (600, 800)  # height, width of an exported ultrasound frame
POOL = 48  # distinct frames


def rss_mb() -> float:
    """Current resident set size of this process, MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (``getrusage``), MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ultrasound_like_frame(rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, ...]]:
    """A 600×800 8-bit frame: Rayleigh speckle, depth attenuation, a dark nodule in its box."""
    height, width = FRAME
    speckle = rng.rayleigh(1.0, size=(height, width)).astype(np.float32)
    depth = np.linspace(1.0, 0.35, height, dtype=np.float32)[:, None]
    side_x, side_y = (int(v) for v in rng.integers(40, 160, size=2))
    x_min = int(rng.integers(120, width - 120 - side_x))
    y_min = int(rng.integers(80, height - 60 - side_y))
    yy, xx = np.mgrid[0:height, 0:width]
    inside = ((xx - x_min - side_x / 2) / (side_x / 2)) ** 2 + (
        (yy - y_min - side_y / 2) / (side_y / 2)
    ) ** 2 <= 1
    echo = np.where(inside, 0.3, 1.0).astype(np.float32)
    envelope = speckle * depth * echo
    grey = np.clip(60 * np.log1p(8 * envelope), 0, 255).astype(np.uint8)
    grey[:40, :] = 0  # header band, as exported frames have
    return grey, (x_min, y_min, x_min + side_x, y_min + side_y)


def write_cohort(root: Path, n_patients: int, seed: int = 0) -> None:
    """A two-centre cohort of ``n_patients`` in the input contract (hard-linked frame pool)."""
    rng = np.random.default_rng(seed)
    pool_dir = root.parent / f"{root.name}_frame_pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    pool = []
    for i in range(POOL):
        path = pool_dir / f"frame_{i:03d}.png"
        frame, box = ultrasound_like_frame(rng)
        if not path.exists():
            Image.fromarray(frame).save(path)
        pool.append((path, box))
    ids = [f"B{i:05d}" for i in range(n_patients)]
    n_train = round(n_patients * 2 / 3)
    clinical = pd.DataFrame(
        {
            "patient_id": ids,
            "center": ["CENTER_A"] * n_train + ["CENTER_B"] * (n_patients - n_train),
            "clnm": (rng.random(n_patients) < 0.33).astype(int),
            "age": rng.integers(20, 75, n_patients),
            "sex": rng.choice(["F", "M"], n_patients, p=[0.75, 0.25]),
            "tumor_size_mm": np.round(rng.uniform(2, 10, n_patients), 1),
        }
    )
    rows = []
    for pid in ids:
        folder = root / "images" / pid
        folder.mkdir(parents=True)
        for view in VIEWS:
            source, box = pool[int(rng.integers(POOL))]
            os.link(source, folder / f"{view}.png")
            rows.append(
                dict(
                    zip(
                        ("patient_id", "view", "x_min", "y_min", "x_max", "y_max"),
                        (pid, view, *box),
                        strict=True,
                    )
                )
            )
    clinical.to_csv(root / "clinical.csv", index=False)
    pd.DataFrame(rows).to_csv(root / "rois.csv", index=False)


def measure(cohort_dir: Path, image_size: int) -> dict[str, float]:
    """Run the preprocessing nodes up to the crops on ``cohort_dir``; timings and memory."""
    from clnm_kedro.datasets import CohortDataset  # noqa: PLC0415 - after the baseline RSS
    from clnm_kedro.pipelines.preprocessing import nodes  # noqa: PLC0415

    params = {
        "image_size": image_size,
        "roi_margin": 0.25,
        "intensity_percentiles": [0.5, 99.5],
        "require_labels": True,
        "progress_bar": False,
    }
    split = {"external_centers": ["CENTER_B"], "n_folds": 5}
    started = time.perf_counter()
    raw = CohortDataset(str(cohort_dir)).load()
    clinical, boxes, table_exclusions = nodes.validate_tables(raw, params, split)
    validated = time.perf_counter()
    manifest, _ = nodes.check_images(raw, clinical, boxes, table_exclusions)
    checked = time.perf_counter()
    rss_before = rss_mb()

    peak = [rss_before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    crops, kept, _ = nodes.crop_rois(manifest, params)
    cropped = time.perf_counter()
    done.set()
    sampler.join()
    n_images = len(kept) * len(VIEWS)
    return {
        "patients": len(kept),
        "images": n_images,
        "validate_s": validated - started,
        "header_check_s": checked - validated,
        "crop_s": cropped - checked,
        "images_per_s": n_images / (cropped - checked),
        "rss_before_crop_mb": rss_before,
        "rss_peak_sampled_mb": max(peak[0], rss_mb()),
        "rss_after_crop_mb": rss_mb(),
        "ru_maxrss_mb": peak_rss_mb(),
        "output_array_mb": crops.nbytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/clnm_bench_preprocessing"))
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # child process: one measurement, JSON on stdout
        print(json.dumps(measure(args.measure, args.image_size)))
        return

    results = []
    for n in args.patients:
        cohort = args.workdir / f"cohort_{n}"
        if not (cohort / "clinical.csv").is_file():
            started = time.perf_counter()
            write_cohort(cohort, n)
            print(f"wrote {n} patients to {cohort} in {time.perf_counter() - started:.1f} s")
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(cohort), "--image-size",
             str(args.image_size)],
            check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))

    print(f"\npreprocessing crop step, frames {FRAME[0]}x{FRAME[1]}, crops {args.image_size}px")
    header = (
        f"{'patients':>8} {'images':>7} {'validate s':>10} {'headers s':>9} {'crop s':>7} "
        f"{'img/s':>6} {'RSS before':>10} {'peak':>7} {'after':>7} {'maxrss':>7} "
        f"{'array':>7} {'peak-before-array':>17}"
    )
    print(header)
    for r in results:
        overhead = r["rss_peak_sampled_mb"] - r["rss_before_crop_mb"] - r["output_array_mb"]
        r["overhead_mb"] = overhead
        print(
            f"{r['patients']:>8} {r['images']:>7} {r['validate_s']:>10.2f} "
            f"{r['header_check_s']:>9.2f} {r['crop_s']:>7.1f} {r['images_per_s']:>6.0f} "
            f"{r['rss_before_crop_mb']:>8.0f}MB {r['rss_peak_sampled_mb']:>5.0f}MB "
            f"{r['rss_after_crop_mb']:>5.0f}MB {r['ru_maxrss_mb']:>5.0f}MB "
            f"{r['output_array_mb']:>5.0f}MB {overhead:>15.0f}MB"
        )
    if len(results) > 1:
        small, large = results[0], results[-1]
        print(
            f"\n{large['images'] / small['images']:.1f}× the images: crop time ×"
            f"{large['crop_s'] / small['crop_s']:.2f}, output array ×"
            f"{large['output_array_mb'] / small['output_array_mb']:.2f}, memory beyond the "
            f"array {small['overhead_mb']:.0f} MB → {large['overhead_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
