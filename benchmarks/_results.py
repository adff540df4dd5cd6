"""What the benchmark scripts share: how a result summary is shown and stored.

Imported by the scripts beside it (``python benchmarks/<name>.py`` puts this folder on the
import path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def emit(summary: dict[str, Any], out: Path | None) -> None:
    """Print ``summary`` as JSON and, given ``out``, write it there (``benchmarks/results/``)."""
    text = json.dumps(summary, indent=2)
    print(text)
    if out is not None:
        out.write_text(text + "\n")


def share_within(values: np.ndarray, low: float = 0.9, high: float = 1.1) -> float:
    """The share of ``values`` within ``[low, high]`` (a calibration slope's usual band)."""
    return float(np.mean((values >= low) & (values <= high)))
