"""Synthetic patients: clinical values, the latent nodule, the true risk and the label.

Every patient draws from its own child of the seed (``SeedSequence.spawn``), so a patient's
values do not depend on the order in which patients are rendered.

The true log-odds of central lymph node metastasis (CLNM) is

``logit p = b0 + eta + s * e``,  ``e ~ N(0, 1)`` unobserved,

where ``eta`` (the linear predictor) adds the log odds ratios of the true clinical state (male,
age < 45, size > 5 mm, Hashimoto, location) and of the nodule as a perfect reader would see it:
capsule proximity (full effect at contact, decaying with the gap), microcalcification present plus
each extra focus, margin irregularity seen in the transverse and in the longitudinal plane (per SD),
and taller-than-wide shape. Some signs only one section plane can show: contact with the medial
capsule facing the trachea and taller-than-wide (transverse plane, the x-y plane), contact with
the capsule at the upper or lower pole and taller-than-long (longitudinal plane, the z-y plane);
anterior or posterior contact lies on the depth axis that both planes contain. ``b0`` is solved
so that the expected prevalence equals the target.
The clinical columns are a radiologist's coarse, noisy calls of the same things; the images hold
the rest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from clnm_kedro.simulation.nodule import (
    Nodule,
    elevation_weight,
    sample_inside_ellipsoid,
    sample_margin_profile,
)
from clnm_kedro.simulation.parameters import LOCATIONS

CLINICAL_COLUMNS = (
    "patient_id",
    "center",
    "clnm",
    "age",
    "sex",
    "tumor_size_mm",
    "capsule_contact",
    "microcalcification",
    "hashimoto",
    "location",
)

#: Gauss–Hermite nodes (probabilists') used to integrate the unobserved factor out
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(40)
_GH_WEIGHTS = _GH_WEIGHTS / np.sqrt(2.0 * np.pi)
#: extra foci beyond the first that still add risk
_MAX_EXTRA_FOCI = 6
#: nodule size (mm) at which ``extra_foci_mean`` applies; it scales with the cross-section
_REFERENCE_SIZE_MM = 6.0


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def integrated_risk(log_odds: np.ndarray, unobserved_sd: float) -> np.ndarray:
    """``E[sigmoid(log_odds + s e)]`` over ``e ~ N(0, 1)`` (Gauss–Hermite, 40 nodes)."""
    log_odds = np.asarray(log_odds, dtype=np.float64)
    values = sigmoid(log_odds[..., None] + unobserved_sd * _GH_NODES)
    return values @ _GH_WEIGHTS


def solve_intercept(eta: np.ndarray, unobserved_sd: float, prevalence: float) -> float:
    """The intercept ``b0`` giving an expected prevalence of ``prevalence`` in the sample."""

    def gap(b0: float) -> float:
        return float(np.mean(integrated_risk(b0 + eta, unobserved_sd)) - prevalence)

    return float(brentq(gap, -40.0, 40.0, xtol=1e-12, rtol=1e-12, maxiter=500))


def allocate_centers(n_patients: int, centers: list[dict[str, Any]]) -> list[int]:
    """Patients per centre from the shares (largest remainder; every centre gets at least 1)."""
    shares = np.array([float(c["share"]) for c in centers])
    exact = n_patients * shares / shares.sum()
    counts = np.maximum(np.floor(exact).astype(int), 1)
    while counts.sum() > n_patients:
        counts[int(np.argmax(counts))] -= 1
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    i = 0
    while counts.sum() < n_patients:
        counts[order[i % len(order)]] += 1
        i += 1
    return [int(c) for c in counts]


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, low: float, high: float):
    for _ in range(100):
        value = rng.normal(mean, sd)
        if low <= value <= high:
            return value
    return float(np.clip(mean, low, high))


@dataclass(frozen=True)
class PatientDraw:
    """One sampled patient: table row (clinical + latent), nodule, and the label's randomness."""

    record: dict[str, Any]
    nodule: Nodule
    unobserved: float
    label_uniform: float


def sample_patient(
    rng: np.random.Generator,
    label_rng: np.random.Generator,
    *,
    patient_id: str,
    center: str,
    population: dict[str, Any],
    nodule_params: dict[str, Any],
    reading: dict[str, Any],
    slice_thickness_mm: float,
) -> PatientDraw:
    """Draw one patient's clinical values, latent nodule and what the radiologist records."""
    pop = population
    male = bool(rng.uniform() < pop["male_share"])
    low, high = (float(v) for v in pop["age_range_years"])
    age = float(
        round(_truncated_normal(rng, pop["age_mean_years"], pop["age_sd_years"], low, high))
    )
    hashimoto_share = pop["hashimoto_share_male"] if male else pop["hashimoto_share_female"]
    hashimoto = bool(rng.uniform() < hashimoto_share)
    loc_shares = np.array([float(pop["location_shares"][k]) for k in LOCATIONS])
    location = LOCATIONS[int(rng.choice(len(LOCATIONS), p=loc_shares / loc_shares.sum()))]

    # nodule shape: size, proportions, margin irregularity per plane
    s_low, s_high = (float(v) for v in pop["size_range_mm"])
    size_true = s_low + (s_high - s_low) * float(rng.beta(*pop["size_beta"]))
    depth_width = math.exp(rng.normal(pop["depth_width_log_mean"], pop["depth_width_log_sd"]))
    depth_length = math.exp(rng.normal(pop["depth_length_log_mean"], pop["depth_length_log_sd"]))
    rho = float(pop["irregularity_view_correlation"])
    common, own_t, own_l = rng.normal(size=3)
    score_t = math.sqrt(rho) * common + math.sqrt(1.0 - rho) * own_t
    score_l = math.sqrt(rho) * common + math.sqrt(1.0 - rho) * own_l
    mu, sd = float(pop["irregularity_logit_mean"]), float(pop["irregularity_logit_sd"])
    irregularity_t = float(sigmoid(mu + sd * score_t))
    irregularity_l = float(sigmoid(mu + sd * score_l))
    margin_args = (
        float(nodule_params["lobulation"]),
        float(nodule_params["spicule_rate"]),
        tuple(float(v) for v in nodule_params["spicule_height"]),
    )
    margin_t = sample_margin_profile(rng, irregularity_t, *margin_args)
    margin_l = sample_margin_profile(rng, irregularity_l, *margin_args)
    unit_axes = (1.0 / depth_width, 1.0, 1.0 / depth_length)
    has_foci = bool(rng.uniform() < pop["microcalcification_share"])
    extra_mean = pop["extra_foci_mean"] * (size_true / _REFERENCE_SIZE_MM) ** 2
    n_foci = 1 + int(rng.poisson(extra_mean)) if has_foci else 0
    foci = sample_inside_ellipsoid(rng, n_foci, unit_axes, float(nodule_params["foci_fill"]))
    unit = Nodule(unit_axes, margin_t, margin_l, foci)
    unit_diameter, unit_low, unit_high = unit.measure()
    nodule = unit.scaled(size_true / unit_diameter)
    ap_extent = float(unit_high[1] - unit_low[1]) * size_true / unit_diameter

    # position in the gland: abutting the capsule, or anywhere in the free space
    if location == "isthmus":  # a thin band, bulging around the nodule
        thickness = ap_extent + float(rng.uniform(1.0, 4.0))
    else:
        thickness = max(
            float(rng.normal(pop["gland_thickness_mean_mm"], pop["gland_thickness_sd_mm"])),
            ap_extent + 2.5,
        )
    free = thickness - ap_extent
    if rng.uniform() < pop["capsule_contact_share"]:
        gap = float(rng.uniform(-0.3, 0.05))
        side = "anterior" if rng.uniform() < 0.55 else "posterior"
    else:
        offset = float(rng.uniform(0.1, free - 0.1))
        gap = min(offset, free - offset)
        side = "anterior" if offset <= free - offset else "posterior"

    # what the radiologist records
    size_measured = float(
        np.clip(round(size_true + rng.normal(0.0, reading["size_noise_mm"]), 1), 1.0, 10.0)
    )
    if n_foci:
        p_call = 1.0 - (1.0 - reading["microcalcification_sensitivity_per_focus"]) ** n_foci
    else:
        p_call = reading["microcalcification_false_positive"]
    micro_call = bool(rng.uniform() < p_call)
    contact_noise = float(rng.normal(0.0, reading["capsule_contact_noise_mm"]))

    # one-plane signs (drawn last, so every value above stays what it was for a seed)
    scale = size_true / unit_diameter
    extent = (unit_high - unit_low) * scale  # lateral width, depth, cranio-caudal length (mm)
    tracheal_gap = math.nan  # the isthmus has no medial capsule beside the trachea
    if location != "isthmus":
        if rng.uniform() < pop["tracheal_contact_share"]:
            tracheal_gap = float(rng.uniform(-0.3, 0.05))
        else:
            tracheal_gap = float(rng.uniform(1.0, 6.0))
    polar_gap, polar_side = math.nan, "none"  # mid-lobe and isthmus nodules lie off the poles
    if location in ("upper", "lower"):
        polar_side = "cranial" if location == "upper" else "caudal"
        if rng.uniform() < pop["polar_contact_share"]:
            polar_gap = float(rng.uniform(-0.3, 0.05))
        else:
            polar_gap = float(rng.uniform(1.5, 8.0))
    # the hand's section planes: off the centre by a share of the perpendicular semi-axis
    spread = float(pop["section_offset_sd"])
    shares = np.clip(rng.normal(0.0, spread, size=2), -0.6, 0.6) if spread > 0 else np.zeros(2)
    offset_t = float(shares[0] * nodule.semi_axes_mm[2])  # transverse plane: z
    offset_l = float(shares[1] * nodule.semi_axes_mm[0])  # longitudinal plane: x
    nodule = nodule.with_plane_offsets(offset_t, offset_l)
    # the radiologist calls contact on whichever capsule the two views show closest
    closest = np.nanmin([gap, tracheal_gap, polar_gap])
    contact_call = bool(closest + contact_noise < reading["capsule_contact_threshold_mm"])

    plane_t = nodule.foci_in_plane("transverse")[1]
    plane_l = nodule.foci_in_plane("longitudinal")[1]
    record = {
        "patient_id": patient_id,
        "center": center,
        "age": age,
        "sex": "M" if male else "F",
        "tumor_size_mm": size_measured,
        "capsule_contact": int(contact_call),
        "microcalcification": int(micro_call),
        "hashimoto": int(hashimoto),
        "location": location,
        # latent: what a perfect reader of the 3-D nodule would know
        "size_true_mm": size_true,
        "depth_width_ratio": depth_width,
        "depth_length_ratio": depth_length,
        "margin_irregularity_transverse": irregularity_t,
        "margin_irregularity_longitudinal": irregularity_l,
        "margin_score_transverse": score_t,
        "margin_score_longitudinal": score_l,
        "echogenic_foci": n_foci,
        "foci_in_transverse_plane": int(
            np.sum(elevation_weight(plane_t, slice_thickness_mm) > 0.5)
        ),
        "foci_in_longitudinal_plane": int(
            np.sum(elevation_weight(plane_l, slice_thickness_mm) > 0.5)
        ),
        "capsule_gap_mm": gap,
        "capsule_side": side,
        "gland_thickness_mm": thickness,
        "tracheal_gap_mm": tracheal_gap,
        "polar_gap_mm": polar_gap,
        "polar_side": polar_side,
        "transverse_plane_offset_mm": offset_t,
        "longitudinal_plane_offset_mm": offset_l,
        # largest in-plane extent of each (off-centre) section
        "transverse_section_mm": float(
            max(extent[0], extent[1]) * math.sqrt(max(1.0 - shares[0] ** 2, 0.0))
        ),
        "longitudinal_section_mm": float(
            max(extent[2], extent[1]) * math.sqrt(max(1.0 - shares[1] ** 2, 0.0))
        ),
    }
    return PatientDraw(record, nodule, float(label_rng.normal()), float(label_rng.uniform()))


#: the clinical indicators whose odds ratios can be matched as crude odds ratios of the recorded
#: clinical column (how the literature reports them), and that column
CRUDE_INDICATORS: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "male": lambda t: (t["sex"] == "M").to_numpy(),
    "age_under_45": lambda t: (t["age"] < 45).to_numpy(),
    "size_over_5mm": lambda t: (t["tumor_size_mm"] > 5.0).to_numpy(),
    "capsule_contact": lambda t: (t["capsule_contact"] == 1).to_numpy(),
    "microcalcification": lambda t: (t["microcalcification"] == 1).to_numpy(),
    "hashimoto": lambda t: (t["hashimoto"] == 1).to_numpy(),
}


def log_odds_ratios(risk: dict[str, Any]) -> dict[str, Any]:
    """The ``risk`` odds ratios as log odds ratios (``location`` stays a mapping)."""
    out: dict[str, Any] = {
        k: math.log(float(v))
        for k, v in risk.items()
        if k not in ("location", "capsule_decay_mm", "match_crude_odds_ratios")
    }
    out["location"] = {k: math.log(float(v)) for k, v in risk["location"].items()}
    out["capsule_decay_mm"] = float(risk["capsule_decay_mm"])
    return out


def capsule_proximity(gap_mm: np.ndarray, decay_mm: float) -> np.ndarray:
    """1 at contact, decaying as ``exp(-gap / decay)``; 0 where there is no such capsule (NaN)."""
    gap = np.asarray(gap_mm, dtype=np.float64)
    return np.where(np.isnan(gap), 0.0, np.exp(-np.maximum(np.nan_to_num(gap), 0.0) / decay_mm))


def taller_than(ratio: np.ndarray) -> np.ndarray:
    """Soft indicator of depth > the other axis, from ``depth / other`` (steep logistic)."""
    return sigmoid(np.log(np.asarray(ratio, dtype=np.float64)) / 0.04)


def linear_predictor(table: pd.DataFrame, coef: dict[str, Any]) -> np.ndarray:
    """``eta``: log-odds of CLNM from the true state, without intercept and unobserved factor.

    ``coef`` holds log odds ratios (:func:`log_odds_ratios`).
    """
    foci = table["echogenic_foci"].to_numpy(dtype=float)
    decay = coef["capsule_decay_mm"]
    proximity = capsule_proximity(table["capsule_gap_mm"].to_numpy(float), decay)
    tracheal = capsule_proximity(table["tracheal_gap_mm"].to_numpy(float), decay)
    polar = capsule_proximity(table["polar_gap_mm"].to_numpy(float), decay)
    taller = taller_than(table["depth_width_ratio"].to_numpy(float))
    taller_long = taller_than(table["depth_length_ratio"].to_numpy(float))
    eta = (
        coef["male"] * (table["sex"].to_numpy() == "M")
        + coef["age_under_45"] * (table["age"].to_numpy(float) < 45)
        + coef["size_over_5mm"] * (table["size_true_mm"].to_numpy(float) > 5.0)
        + coef["hashimoto"] * table["hashimoto"].to_numpy(float)
        + table["location"].map(coef["location"]).to_numpy(float)
        + coef["capsule_contact"] * proximity
        + coef["microcalcification"] * (foci > 0)
        + coef["extra_echogenic_focus"] * np.clip(foci - 1.0, 0.0, _MAX_EXTRA_FOCI)
        + coef["margin_irregularity_transverse"] * table["margin_score_transverse"].to_numpy(float)
        + coef["margin_irregularity_longitudinal"]
        * table["margin_score_longitudinal"].to_numpy(float)
        + coef["taller_than_wide"] * taller
        + coef["tracheal_capsule_contact"] * tracheal
        + coef["polar_capsule_contact"] * polar
        + coef["taller_than_long"] * taller_long
    )
    return np.asarray(eta, dtype=np.float64)


def expected_crude_log_odds_ratio(indicator: np.ndarray, risk: np.ndarray) -> float:
    """Crude log odds ratio of a 0/1 column, from expected counts under ``risk``.

    NaN when the column does not vary.
    """
    indicator = np.asarray(indicator, dtype=bool)
    if indicator.all() or not indicator.any():
        return float("nan")
    a, b = risk[indicator].sum(), (1.0 - risk[indicator]).sum()
    c, d = risk[~indicator].sum(), (1.0 - risk[~indicator]).sum()
    return float(np.log(a * d / (b * c)))


def calibrate_coefficients(
    table: pd.DataFrame, risk: dict[str, Any], unobserved_sd: float, prevalence: float
) -> dict[str, Any]:
    """Conditional log odds ratios whose crude odds ratios in ``table`` match ``risk``.

    The six clinical odds ratios of ``risk`` are targets for the crude odds ratio of the
    recorded clinical column (expected counts under the oracle risk, so no label noise); their
    conditional coefficients are found by fixed-point iteration, the intercept re-solved for the
    target prevalence at each step. The other odds ratios are used as given.
    """
    coef = log_odds_ratios(risk)
    targets = {k: coef[k] for k in CRUDE_INDICATORS}
    columns = {k: f(table) for k, f in CRUDE_INDICATORS.items()}
    for _ in range(200):
        eta = linear_predictor(table, coef)
        intercept = solve_intercept(eta, unobserved_sd, prevalence)
        p = integrated_risk(intercept + eta, unobserved_sd)
        largest = 0.0
        for key, target in targets.items():
            crude = expected_crude_log_odds_ratio(columns[key], p)
            if math.isfinite(crude):
                coef[key] += target - crude
                largest = max(largest, abs(target - crude))
        if largest < 1e-6:
            break
    return coef


#: size and seed of the reference population on which crude odds ratios are matched
REFERENCE_SIZE = 4000
REFERENCE_SEED = 20_260_127


@lru_cache(maxsize=8)
def _reference_coefficients(key: str) -> str:
    params = json.loads(key)
    params["n_patients"] = REFERENCE_SIZE
    table = _sample_table(params, REFERENCE_SEED)[0]
    coef = calibrate_coefficients(
        table, params["risk"], float(params["unobserved_sd"]), float(params["prevalence"])
    )
    return json.dumps(coef)


def model_coefficients(params: dict[str, Any]) -> dict[str, Any]:
    """The generating model's conditional log odds ratios for a checked ``simulate`` block.

    With ``risk.match_crude_odds_ratios`` they are solved once on a reference population of
    ``REFERENCE_SIZE`` patients drawn from the same parameters (its own fixed seed), so the model
    does not depend on the cohort's size or seed; otherwise they are the given odds ratios.
    """
    if not params["risk"]["match_crude_odds_ratios"]:
        return log_odds_ratios(params["risk"])
    relevant = {
        k: params[k]
        for k in ("prevalence", "unobserved_sd", "population", "nodule", "reading", "risk")
    }
    relevant["centers"] = [
        {
            "name": c["name"],
            "id_prefix": c["id_prefix"],
            "share": c["share"],
            "case_mix": c["case_mix"],
            "scanner": {"slice_thickness_mm": c["scanner"]["slice_thickness_mm"]},
        }
        for c in params["centers"]
    ]
    return json.loads(_reference_coefficients(json.dumps(relevant, sort_keys=True)))


def patient_ids(centers: list[dict[str, Any]], counts: list[int]) -> list[tuple[str, str]]:
    """``(patient_id, center)`` for every patient, e.g. ``A0001`` … ``B0154``."""
    out = []
    for center, count in zip(centers, counts, strict=True):
        width = max(4, len(str(count)))
        out += [
            (f"{center['id_prefix']}{i:0{width}d}", center["name"]) for i in range(1, count + 1)
        ]
    return out


@dataclass(frozen=True)
class PatientSample:
    """The sampled patients, before any image is rendered."""

    table: pd.DataFrame
    nodules: list[Nodule]
    render_seeds: list[np.random.SeedSequence]
    intercept: float
    log_odds_ratios: dict[str, Any]


def _sample_table(
    params: dict[str, Any], seed: int
) -> tuple[pd.DataFrame, list[Nodule], list[np.random.SeedSequence], np.ndarray, np.ndarray]:
    """Every patient's record and nodule, render seed, unobserved factor and label uniform."""
    centers = params["centers"]
    counts = allocate_centers(int(params["n_patients"]), centers)
    ids = patient_ids(centers, counts)
    by_name = {c["name"]: c for c in centers}
    children = np.random.SeedSequence(seed).spawn(len(ids))
    records, nodules, render_seeds, unobserved, uniforms = [], [], [], [], []
    for (pid, center), child in zip(ids, children, strict=True):
        traits_seed, label_seed, render_seed = child.spawn(3)
        population = {**params["population"], **(by_name[center]["case_mix"] or {})}
        draw = sample_patient(
            np.random.default_rng(traits_seed),
            np.random.default_rng(label_seed),
            patient_id=pid,
            center=center,
            population=population,
            nodule_params=params["nodule"],
            reading=params["reading"],
            slice_thickness_mm=float(by_name[center]["scanner"]["slice_thickness_mm"]),
        )
        records.append(draw.record)
        nodules.append(draw.nodule)
        render_seeds.append(render_seed)
        unobserved.append(draw.unobserved)
        uniforms.append(draw.label_uniform)
    table = pd.DataFrame.from_records(records)
    return table, nodules, render_seeds, np.asarray(unobserved), np.asarray(uniforms)


def sample_patients(params: dict[str, Any], seed: int) -> PatientSample:
    """Sample every patient's clinical values, nodule, risk and label (no images).

    ``params`` is a checked ``simulate`` block (:func:`validate_parameters`). The table has the
    clinical columns, the latent nodule features, ``linear_predictor`` (log-odds without the
    unobserved factor), ``oracle_risk`` (the unobserved factor integrated out) and the label
    ``clnm`` drawn from the full risk. The intercept is solved on this sample so that its
    expected prevalence is ``params["prevalence"]``.
    """
    table, nodules, render_seeds, unobserved, uniforms = _sample_table(params, seed)
    sd = float(params["unobserved_sd"])
    coef = model_coefficients(params)
    eta = linear_predictor(table, coef)
    intercept = solve_intercept(eta, sd, float(params["prevalence"]))
    full_risk = sigmoid(intercept + eta + sd * unobserved)
    table["clnm"] = (uniforms < full_risk).astype(int)
    table["linear_predictor"] = intercept + eta
    table["oracle_risk"] = integrated_risk(intercept + eta, sd)
    return PatientSample(table, nodules, render_seeds, intercept, coef)
