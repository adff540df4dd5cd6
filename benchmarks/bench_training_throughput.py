"""Training throughput of ``train_network`` against a bare PyTorch loop, in one run.

Both sides train the same network (``build_network``) on the same synthetic uint8 crops with
the same batch size, image size, AdamW, BCE loss with ``pos_weight``, bf16 autocast and
channels_last on CUDA, and after every epoch a no-grad pass over the same small validation
fold. By default neither side augments (``--augment`` makes both call ``augment_batch``), so
the ratio measures data feeding and loop overhead. The validation fold is kept small (8
patients) so the epoch time is the training steps.

Reported: median epoch time of each side (the first epoch of every repeat is warm-up and is
dropped), patients per second, and the ratio machinery / bare (goal >= 0.9).

    python benchmarks/bench_training_throughput.py --patients 300 --size 128 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from clnm_kedro.networks import augment_batch, build_network, resolve_config, train_network
from clnm_kedro.networks.inference import use_bf16
from clnm_kedro.networks.training import select_device


def synthetic_inputs(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    """Random crops; fold 0 (validation) holds 8 patients, fold 1 every other one."""
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (n, 2, size, size), dtype=np.uint8)
    clnm = np.tile([0, 1], n // 2 + 1)[:n]
    fold = np.ones(n, dtype=int)
    fold[:8] = 0
    splits = pd.DataFrame({"patient_id": [f"P{i:05d}" for i in range(n)], "center": "A",
                           "clnm": clnm, "split": "train", "fold": fold})
    return crops, splits


def machinery_epochs(
    crops: np.ndarray, splits: pd.DataFrame, config: dict, device: torch.device, epochs: int
) -> list[float]:
    """Epoch seconds of ``train_network`` (from its per-epoch callback)."""
    seconds: list[float] = []
    train_network(crops, splits, config, seed=0, device=device,
                  on_epoch_end=lambda epoch, metrics: seconds.append(metrics["seconds"]))
    return seconds[1:epochs]


def bare_epochs(
    crops: np.ndarray, splits: pd.DataFrame, config: dict, device: torch.device, epochs: int
) -> list[float]:
    """Epoch seconds of a plain loop doing the same work."""
    resolved = resolve_config(config)
    torch.manual_seed(0)
    on_cuda = device.type == "cuda"
    amp = use_bf16(device)
    model = build_network(resolved).to(device)
    if on_cuda:
        model = model.to(memory_format=torch.channels_last)
    batch_size = resolved["training"]["batch_size"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=resolved["training"]["learning_rate"],
                                  weight_decay=resolved["training"]["weight_decay"])
    labels = np.array(splits["clnm"].to_numpy(), dtype=np.float64)
    fit = np.flatnonzero(splits["fold"].to_numpy() != 0)
    validation = np.flatnonzero(splits["fold"].to_numpy() == 0)
    images = torch.from_numpy(crops)
    targets = torch.as_tensor(labels, dtype=torch.float32)
    if on_cuda:
        images, targets = images.pin_memory(), targets.pin_memory()
    pos_weight = torch.tensor([(labels[fit] == 0).sum() / labels[fit].sum()], device=device)
    criterion = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    generator = torch.Generator(device=device).manual_seed(1)
    augment = resolved["augment"]["enabled"]
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        order = torch.from_numpy(fit)[torch.randperm(fit.size)]
        for rows in torch.split(order, batch_size):
            x = images[rows].to(device, non_blocking=True).float().div_(255)
            if augment:
                x = augment_batch(x, resolved, generator)
            y = targets[rows].to(device, non_blocking=True)
            with torch.autocast(device.type, torch.bfloat16, enabled=amp):
                logits = model(x)
            loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=amp):
            x = images[validation].to(device).float().div_(255)
            scores = model(x).float().cpu().numpy()
        roc_auc_score(labels[validation], scores)
        seconds.append(time.perf_counter() - started)
    return seconds[1:]


def main() -> None:
    """Run both sides alternately and print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--kind", default="dual")
    parser.add_argument("--backbone", default="compact")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4, help="per repeat; the first is warm-up")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--augment", action="store_true", help="augment on both sides")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-on-device", default="auto", choices=["auto", "true", "false"],
                        help="train_network's training.data_on_device (GPU only)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: keep)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    crops, splits = synthetic_inputs(args.patients, args.size)
    config = {
        "network": {"kind": args.kind, "backbone": args.backbone},
        "augment": {"enabled": args.augment},
        "training": {"epochs": args.epochs, "batch_size": args.batch_size,
                     "early_stopping_patience": args.epochs, "progress_bar": False,
                     "validation_fold": 0,
                     "data_on_device": {"auto": "auto", "true": True, "false": False}[
                         args.data_on_device]},
    }
    machinery: list[float] = []
    bare: list[float] = []
    for _ in range(args.repeats):
        machinery += machinery_epochs(crops, splits, config, device, args.epochs)
        bare += bare_epochs(crops, splits, config, device, args.epochs)
    n_fit = args.patients - 8
    m, b = statistics.median(machinery), statistics.median(bare)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, threads {torch.get_num_threads()}, {args.kind} {args.backbone}, "
          f"{args.size} px, batch {args.batch_size}, {n_fit} patients/epoch, "
          f"augmentation {'on' if args.augment else 'off'} on both sides, "
          f"data_on_device {args.data_on_device}, "
          f"{len(machinery)} epochs per side")
    print(f"train_network: median epoch {m:.3f} s ({n_fit / m:.1f} patients/s)")
    print(f"bare loop:     median epoch {b:.3f} s ({n_fit / b:.1f} patients/s)")
    print(f"throughput ratio train_network / bare = {b / m:.3f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
