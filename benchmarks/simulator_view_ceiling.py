"""How much CLNM information each simulated view carries: the ceiling of a perfect image reader.

A network can at best perceive, in one view, what the simulator put into that view. This script
samples a large population from ``conf/base/parameters_simulate.yml`` (no images are rendered),
fits a logistic regression of the label on the latent nodule features visible in each view, on
the training centre, and scores it on the external centre:

- both views: capsule proximity, true size > 5 mm, the margin irregularity of each plane,
  taller-than-wide (transverse only), the echogenic foci within each plane's slice;
- longitudinal / transverse: the same restricted to what that one plane shows.

The gap between "both views" and the better single view is the most a dual-view network can
gain over it on this simulator; a real cohort has its own. Clinical columns are left out (the
networks never see them).

Run from the project root::

    PYTHONPATH=src .venv/bin/python benchmarks/simulator_view_ceiling.py [--patients 20000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from clnm_kedro.simulation.parameters import validate_parameters
from clnm_kedro.simulation.patients import sample_patients, sigmoid

CONF = Path(__file__).resolve().parents[1] / "conf" / "base"
#: foci counted up to this many (the risk model stops adding at 1 + 6)
MAX_FOCI = 7


def visible_features(table: pd.DataFrame, view: str, capsule_decay_mm: float) -> pd.DataFrame:
    """Latent features a perfect reader sees in ``view`` ("longitudinal", "transverse", "dual")."""
    gap = np.maximum(table["capsule_gap_mm"].to_numpy(float), 0.0)
    features = {
        "capsule_proximity": np.exp(-gap / capsule_decay_mm),
        "size_over_5mm": (table["size_true_mm"] > 5.0).to_numpy(float),
    }
    if view in ("transverse", "dual"):
        features["margin_transverse"] = table["margin_score_transverse"].to_numpy(float)
        features["taller_than_wide"] = sigmoid(
            np.log(table["depth_width_ratio"].to_numpy(float)) / 0.04
        )
        foci = table["foci_in_transverse_plane"].to_numpy(float)
        features["foci_transverse"] = np.minimum(foci, MAX_FOCI)
        features["any_focus_transverse"] = (foci > 0).astype(float)
    if view in ("longitudinal", "dual"):
        features["margin_longitudinal"] = table["margin_score_longitudinal"].to_numpy(float)
        foci = table["foci_in_longitudinal_plane"].to_numpy(float)
        features["foci_longitudinal"] = np.minimum(foci, MAX_FOCI)
        features["any_focus_longitudinal"] = (foci > 0).astype(float)
    return pd.DataFrame(features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    raw = yaml.safe_load((CONF / "parameters_simulate.yml").read_text())["simulate"]
    params = validate_parameters(raw)
    params["n_patients"] = args.patients
    sample = sample_patients(params, args.seed)
    table = sample.table
    training = (table["center"] == params["centers"][0]["name"]).to_numpy()
    label = table["clnm"].to_numpy()
    decay = float(sample.log_odds_ratios["capsule_decay_mm"])
    print(f"{args.patients} simulated patients; fitted on {training.sum()}, "
          f"scored on {(~training).sum()} external")
    print(f"oracle (every latent factor, clinical included): "
          f"{roc_auc_score(label[~training], table['oracle_risk'][~training]):.3f}")
    for view in ("dual", "longitudinal", "transverse"):
        features = visible_features(table, view, decay)
        model = LogisticRegression(max_iter=5000).fit(features[training], label[training])
        auc = roc_auc_score(label[~training], model.decision_function(features[~training]))
        print(f"perfect reader of the {view:>12} image(s): external AUC {auc:.3f}")


if __name__ == "__main__":
    main()
