"""What a perfect reader of each view could reach: the ceilings of the simulated cohort.

A network can at best perceive, in one view, what the simulator put into that view. Here the
latent nodule features each section plane shows are handed to a logistic regression fitted on
the training centre and scored on the others (no images are rendered):

- shared by both planes (the depth axis lies in both): anterior or posterior capsule proximity;
- transverse only: its margin irregularity, taller-than-wide, contact with the medial capsule
  facing the trachea, the echogenic foci within its slice, its in-plane size > 5 mm;
- longitudinal only: its margin irregularity, taller-than-long, contact with the capsule at the
  upper or lower pole, the echogenic foci within its slice, its in-plane size > 5 mm.

``both views`` uses the union, ``clinical`` the recorded clinical columns, ``oracle`` the true
risk. The gap between ``both views`` and the better single view is the most a dual-view model
can gain over it on these parameters; a real cohort has its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from clnm_kedro.simulation.patients import capsule_proximity, sample_patients, taller_than

#: foci counted up to this many (the risk model stops adding at 1 + 6)
MAX_FOCI = 7
READERS = ("both_views", "longitudinal", "transverse")
#: patients of the latent population the ceilings are measured on, and its own seed
CEILING_PATIENTS = 20_000
CEILING_SEED = 20_261_201


def visible_features(table: pd.DataFrame, view: str, capsule_decay_mm: float) -> pd.DataFrame:
    """Latent features a perfect reader sees in ``view``: longitudinal, transverse or both_views."""
    features = {
        "capsule_proximity": capsule_proximity(table["capsule_gap_mm"], capsule_decay_mm),
    }
    planes = ("transverse", "longitudinal") if view == "both_views" else (view,)
    for plane in planes:
        foci = table[f"foci_in_{plane}_plane"].to_numpy(float)
        features[f"margin_{plane}"] = table[f"margin_score_{plane}"].to_numpy(float)
        features[f"foci_{plane}"] = np.minimum(foci, MAX_FOCI)
        features[f"any_focus_{plane}"] = (foci > 0).astype(float)
        features[f"size_over_5mm_{plane}"] = (table[f"{plane}_section_mm"] > 5.0).to_numpy(float)
        if plane == "transverse":
            features["taller_than_wide"] = taller_than(table["depth_width_ratio"])
            features["tracheal_proximity"] = capsule_proximity(
                table["tracheal_gap_mm"], capsule_decay_mm
            )
        else:
            features["taller_than_long"] = taller_than(table["depth_length_ratio"])
            features["polar_proximity"] = capsule_proximity(table["polar_gap_mm"], capsule_decay_mm)
    return pd.DataFrame(features)


def _clinical_features(table: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "age": table["age"].to_numpy(float),
            "male": (table["sex"] == "M").to_numpy(float),
            "tumor_size_mm": table["tumor_size_mm"].to_numpy(float),
            "capsule_contact": table["capsule_contact"].to_numpy(float),
            "microcalcification": table["microcalcification"].to_numpy(float),
            "hashimoto": table["hashimoto"].to_numpy(float),
        }
    )
    for location in ("upper", "lower", "isthmus"):
        out[location] = (table["location"] == location).to_numpy(float)
    return out


def reader_ceilings(table: pd.DataFrame, fit_center: str, capsule_decay_mm: float) -> dict:
    """External AUC of each perfect reader, fitted on ``fit_center``, scored on the others."""
    training = (table["center"] == fit_center).to_numpy()
    label = table["clnm"].to_numpy()
    aucs: dict[str, float] = {}
    for reader in READERS:
        features = visible_features(table, reader, capsule_decay_mm).to_numpy()
        mean, sd = features[training].mean(axis=0), features[training].std(axis=0) + 1e-12
        model = LogisticRegression(max_iter=5000).fit(
            (features[training] - mean) / sd, label[training]
        )
        score = model.decision_function((features[~training] - mean) / sd)
        aucs[reader] = float(roc_auc_score(label[~training], score))
    clinical = _clinical_features(table).to_numpy()
    mean, sd = clinical[training].mean(axis=0), clinical[training].std(axis=0) + 1e-12
    model = LogisticRegression(max_iter=5000).fit((clinical[training] - mean) / sd, label[training])
    aucs["clinical"] = float(
        roc_auc_score(label[~training], model.decision_function((clinical[~training] - mean) / sd))
    )
    aucs["oracle"] = float(roc_auc_score(label[~training], table["oracle_risk"][~training]))
    best_single = max(aucs["longitudinal"], aucs["transverse"])
    aucs["gain_of_both_views"] = aucs["both_views"] - best_single
    return aucs


def perfect_reader_ceilings(
    params: dict[str, Any], n_patients: int = CEILING_PATIENTS, seed: int = CEILING_SEED
) -> dict[str, Any]:
    """Ceilings of a checked ``simulate`` block on its own latent population (no images).

    The population has ``n_patients`` patients drawn from the same parameters with its own seed,
    so the figures describe the parameters, not one cohort's luck.
    """
    population = {**params, "n_patients": int(n_patients)}
    sample = sample_patients(population, seed)
    fit_center = params["centers"][0]["name"]
    aucs = reader_ceilings(
        sample.table, fit_center, float(sample.log_odds_ratios["capsule_decay_mm"])
    )
    return {
        "n_patients": int(n_patients),
        "seed": int(seed),
        "fitted_on": fit_center,
        "scored_on": "the other centres",
        "model": "logistic regression on the latent features each reader sees",
        "external_auc": aucs,
    }


__all__ = [
    "CEILING_PATIENTS",
    "READERS",
    "perfect_reader_ceilings",
    "reader_ceilings",
    "visible_features",
]
