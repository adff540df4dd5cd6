"""Feature extraction with ``extract_features`` against a bare no-grad loop, in one run.

Both sides compute the penultimate-layer features of every patient with the same network,
batch size and image size (bf16 autocast on CUDA on both sides), from the same uint8 crops.
Reported: median seconds over repeats (after one warm-up each), patients per second, and the
ratio bare / ``extract_features`` (goal >= 0.9).

    python benchmarks/bench_feature_extraction.py --patients 400 --size 128 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from clnm_kedro.networks import build_network, extract_features
from clnm_kedro.networks.inference import use_bf16
from clnm_kedro.networks.training import select_device


def bare_features(model: torch.nn.Module, crops: np.ndarray, batch_size: int) -> np.ndarray:
    """The features by a plain loop over batches."""
    device = next(model.parameters()).device
    amp = use_bf16(device)
    model.eval()
    chunks = []
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
        for start in range(0, len(crops), batch_size):
            batch = torch.from_numpy(crops[start : start + batch_size]).to(device)
            chunks.append(model.features(batch.float().div_(255)).float())
    return torch.cat(chunks).cpu().numpy()


def timed(function: object, repeats: int) -> list[float]:
    """Seconds of each call after one warm-up call."""
    function()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    """Time both sides alternately and print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=400)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--kind", default="dual")
    parser.add_argument("--backbone", default="compact")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: keep)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    crops = np.random.default_rng(0).integers(
        0, 256, (args.patients, 2, args.size, args.size), dtype=np.uint8
    )
    torch.manual_seed(0)
    model = build_network({"network": {"kind": args.kind, "backbone": args.backbone}})
    model = model.to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    views = list(model.views)
    view_crops = np.ascontiguousarray(crops[:, views])
    ours_result = extract_features(model, crops, args.batch_size)
    bare_result = bare_features(model, view_crops, args.batch_size)
    difference = float(np.abs(ours_result - bare_result).max())

    ours: list[float] = []
    bare: list[float] = []
    for _ in range(args.repeats):
        ours += timed(lambda: extract_features(model, crops, args.batch_size), 1)
        bare += timed(lambda: bare_features(model, view_crops, args.batch_size), 1)
    o, b = statistics.median(ours), statistics.median(bare)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, threads {torch.get_num_threads()}, {args.kind} {args.backbone}, "
          f"{args.size} px, batch {args.batch_size}, {args.patients} patients, "
          f"{args.repeats} repeats; largest feature difference {difference:.2e}")
    print(f"extract_features: median {o:.3f} s ({args.patients / o:.1f} patients/s)")
    print(f"bare no-grad loop: median {b:.3f} s ({args.patients / b:.1f} patients/s)")
    print(f"throughput ratio extract_features / bare = {b / o:.3f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
