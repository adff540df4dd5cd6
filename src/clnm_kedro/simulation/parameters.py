"""Checking the simulator's parameter block (``simulate`` in ``conf/base/parameters_simulate.yml``).

The YAML file is the single source of every value; this module only checks that the block is
complete and sensible, and says which parameter is wrong when it is not.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from typing import Any

from clnm_kedro.checks import whole_number

LOCATIONS = ("upper", "middle", "lower", "isthmus")

#: keys that change how the cohort is produced, not what it contains (left out of the manifest)
EXECUTION_KEYS = ("n_jobs", "progress_bar", "ceiling_patients")
#: optional keys: the named preset to apply and the presets (overrides of this block) by name
PRESET_KEYS = ("preset", "presets")
DEFAULT_PRESET = "default"

_TOP = (
    "n_patients",
    "prevalence",
    "unobserved_sd",
    "png_compress_level",
    "centers",
    "population",
    "nodule",
    "reading",
    "risk",
    *EXECUTION_KEYS,
)
_POPULATION = (
    "male_share",
    "age_mean_years",
    "age_sd_years",
    "age_range_years",
    "hashimoto_share_female",
    "hashimoto_share_male",
    "location_shares",
    "size_range_mm",
    "size_beta",
    "depth_width_log_mean",
    "depth_width_log_sd",
    "depth_length_log_mean",
    "depth_length_log_sd",
    "irregularity_logit_mean",
    "irregularity_logit_sd",
    "irregularity_view_correlation",
    "microcalcification_share",
    "extra_foci_mean",
    "capsule_contact_share",
    "tracheal_contact_share",
    "polar_contact_share",
    "section_offset_sd",
    "gland_thickness_mean_mm",
    "gland_thickness_sd_mm",
)
_NODULE = ("lobulation", "spicule_rate", "spicule_height", "foci_fill")
_READING = (
    "size_noise_mm",
    "microcalcification_sensitivity_per_focus",
    "microcalcification_false_positive",
    "capsule_contact_threshold_mm",
    "capsule_contact_noise_mm",
)
_RISK = (
    "male",
    "age_under_45",
    "size_over_5mm",
    "capsule_contact",
    "capsule_decay_mm",
    "microcalcification",
    "extra_echogenic_focus",
    "hashimoto",
    "location",
    "margin_irregularity_transverse",
    "margin_irregularity_longitudinal",
    "taller_than_wide",
    "tracheal_capsule_contact",
    "polar_capsule_contact",
    "taller_than_long",
    "match_crude_odds_ratios",
)
_CENTER = ("name", "id_prefix", "share", "case_mix", "scanner")
SCANNER_KEYS = (
    "institution",
    "probe",
    "frequency_mhz",
    "frame_size",
    "image_origin",
    "pixel_spacing_mm",
    "depth_mm",
    "width_mm",
    "gain_db",
    "gain_jitter_db",
    "dynamic_range_db",
    "psf_axial_mm",
    "psf_lateral_mm",
    "slice_thickness_mm",
    "attenuation_db_cm_mhz",
    "tgc_compensation",
    "tgc_ripple_db",
    "smoothing_px",
    "text_panel",
    "caliper",
)


class SimulationParameterError(ValueError):
    """The ``simulate`` parameter block is incomplete or has an impossible value."""


def _keys(block: Any, expected: tuple[str, ...], where: str) -> None:
    if not isinstance(block, Mapping):
        raise SimulationParameterError(f"{where} must be a mapping, got {type(block).__name__}")
    missing = [k for k in expected if k not in block]
    unknown = [k for k in block if k not in expected]
    if missing:
        raise SimulationParameterError(f"{where} is missing: {', '.join(missing)}")
    if unknown:
        raise SimulationParameterError(
            f"{where} has unknown keys: {', '.join(map(str, unknown))} "
            f"(expected: {', '.join(expected)})"
        )


def _check(value: Any, where: str, ok: Callable[[float], bool], what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SimulationParameterError(f"{where} must be a number ({what}), got {value!r}")
    if not ok(float(value)):
        raise SimulationParameterError(f"{where} must be {what}, got {value!r}")


def _pair(value: Any, where: str, ok: Callable[[float], bool], what: str) -> None:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise SimulationParameterError(f"{where} must be a list of two numbers, got {value!r}")
    for i, v in enumerate(value):
        _check(v, f"{where}[{i}]", ok, what)


def _share(value: Any, where: str) -> None:
    _check(value, where, lambda v: 0.0 <= v <= 1.0, "a share between 0 and 1")


def _positive(value: Any, where: str) -> None:
    _check(value, where, lambda v: v > 0.0, "positive")


def _non_negative(value: Any, where: str) -> None:
    _check(value, where, lambda v: v >= 0.0, "zero or positive")


def _any_number(value: Any, where: str) -> None:
    _check(value, where, lambda v: True, "a number")


def _check_population(pop: Mapping[str, Any], where: str, partial: bool = False) -> None:
    """Check population values; with ``partial`` only the keys present (a centre's case mix)."""
    if not isinstance(pop, Mapping):
        raise SimulationParameterError(f"{where} must be a mapping, got {type(pop).__name__}")
    if partial:
        unknown = [k for k in pop if k not in _POPULATION]
        if unknown:
            raise SimulationParameterError(
                f"{where} may only override population keys; unknown: {', '.join(unknown)}"
            )
    else:
        _keys(pop, _POPULATION, where)
    checks: dict[str, Callable[[Any, str], None]] = {
        "male_share": _share,
        "age_mean_years": _positive,
        "age_sd_years": _non_negative,
        "age_range_years": lambda v, w: _pair(v, w, lambda x: x > 0, "positive"),
        "hashimoto_share_female": _share,
        "hashimoto_share_male": _share,
        "size_range_mm": lambda v, w: _pair(v, w, lambda x: x > 0, "positive"),
        "size_beta": lambda v, w: _pair(v, w, lambda x: x > 0, "positive"),
        "depth_width_log_mean": _any_number,
        "depth_width_log_sd": _non_negative,
        "depth_length_log_mean": _any_number,
        "depth_length_log_sd": _non_negative,
        "irregularity_logit_mean": _any_number,
        "irregularity_logit_sd": _non_negative,
        "irregularity_view_correlation": _share,
        "microcalcification_share": _share,
        "extra_foci_mean": _non_negative,
        "capsule_contact_share": _share,
        "tracheal_contact_share": _share,
        "polar_contact_share": _share,
        "section_offset_sd": _non_negative,
        "gland_thickness_mean_mm": _positive,
        "gland_thickness_sd_mm": _non_negative,
    }
    for key, value in pop.items():
        if key == "location_shares":
            _keys(value, LOCATIONS, f"{where}.location_shares")
            for loc in LOCATIONS:
                _check(value[loc], f"{where}.location_shares.{loc}", lambda v: v >= 0, ">= 0")
            if sum(float(value[loc]) for loc in LOCATIONS) <= 0:
                raise SimulationParameterError(f"{where}.location_shares must not all be 0")
        else:
            checks[key](value, f"{where}.{key}")
    for key in ("age_range_years", "size_range_mm"):
        if key in pop and float(pop[key][0]) >= float(pop[key][1]):
            raise SimulationParameterError(f"{where}.{key} must be [low, high] with low < high")
    if "size_range_mm" in pop and float(pop["size_range_mm"][1]) > 10.0:
        raise SimulationParameterError(
            f"{where}.size_range_mm: a papillary thyroid microcarcinoma is at most 10 mm, "
            f"got {pop['size_range_mm'][1]}"
        )


def _check_scanner(scanner: Mapping[str, Any], where: str) -> None:
    _keys(scanner, SCANNER_KEYS, where)
    for key in ("institution", "probe"):
        if not isinstance(scanner[key], str):
            raise SimulationParameterError(f"{where}.{key} must be text")
    for key in ("frame_size", "image_origin"):
        _pair(scanner[key], f"{where}.{key}", lambda v: v >= 0 and v == int(v), "a whole number")
    for key in (
        "frequency_mhz",
        "pixel_spacing_mm",
        "depth_mm",
        "width_mm",
        "dynamic_range_db",
        "psf_axial_mm",
        "psf_lateral_mm",
        "slice_thickness_mm",
        "attenuation_db_cm_mhz",
    ):
        _positive(scanner[key], f"{where}.{key}")
    for key in ("gain_jitter_db", "tgc_ripple_db", "smoothing_px"):
        _non_negative(scanner[key], f"{where}.{key}")
    _any_number(scanner["gain_db"], f"{where}.gain_db")
    _check(
        scanner["tgc_compensation"], f"{where}.tgc_compensation", lambda v: 0 <= v <= 1.5, "0..1.5"
    )
    if scanner["text_panel"] not in ("left", "right"):
        raise SimulationParameterError(f"{where}.text_panel must be 'left' or 'right'")
    if scanner["caliper"] not in ("plus", "cross", "none"):
        raise SimulationParameterError(f"{where}.caliper must be 'plus', 'cross' or 'none'")
    height, width = (int(v) for v in scanner["frame_size"])
    x0, y0 = (int(v) for v in scanner["image_origin"])
    rows = round(float(scanner["depth_mm"]) / float(scanner["pixel_spacing_mm"]))
    cols = round(float(scanner["width_mm"]) / float(scanner["pixel_spacing_mm"]))
    if y0 + rows > height or x0 + cols > width:
        raise SimulationParameterError(
            f"{where}: the B-mode image ({rows}x{cols} px from depth_mm, width_mm and "
            f"pixel_spacing_mm) placed at image_origin {scanner['image_origin']} does not fit "
            f"in frame_size {scanner['frame_size']} (height, width)"
        )


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in: mappings key by key, anything else replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_preset(params: Mapping[str, Any]) -> dict[str, Any]:
    """The block with its named ``preset`` (one of ``presets``) merged over it.

    ``preset: default`` (or no ``preset``) changes nothing. A preset only overrides keys of the
    block (nested mappings key by key); applying it twice gives the same block.
    """
    params = copy.deepcopy(dict(params))
    name = params.get("preset", DEFAULT_PRESET)
    presets = params.get("presets") or {}
    if not isinstance(presets, Mapping):
        raise SimulationParameterError("simulate.presets must map preset names to overrides")
    if name == DEFAULT_PRESET:
        return params
    if name not in presets:
        raise SimulationParameterError(
            f"simulate.preset {name!r} is not defined; choose one of "
            f"{', '.join([DEFAULT_PRESET, *map(str, presets)])}"
        )
    override = presets[name]
    if not isinstance(override, Mapping):
        raise SimulationParameterError(f"simulate.presets.{name} must be a mapping of overrides")
    bad = [k for k in override if k not in _TOP or k in PRESET_KEYS]
    if bad:
        raise SimulationParameterError(
            f"simulate.presets.{name} may only override simulate's keys; unknown: "
            f"{', '.join(map(str, bad))}"
        )
    return _merge(params, override)


def validate_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check the ``simulate`` block, its named preset applied, and return it as a plain dict.

    Raises
    ------
    SimulationParameterError
        Naming the parameter that is missing, unknown or out of range.
    """
    if not isinstance(params, Mapping):
        raise SimulationParameterError("simulate must be a mapping")
    params = apply_preset(params)
    presets = {k: params.pop(k) for k in PRESET_KEYS if k in params}
    _keys(params, _TOP, "simulate")
    params.update(presets)
    n = params["n_patients"]
    whole_number(n, "simulate.n_patients", 2, error=SimulationParameterError)
    _check(params["prevalence"], "simulate.prevalence", lambda v: 0 < v < 1, "between 0 and 1")
    _non_negative(params["unobserved_sd"], "simulate.unobserved_sd")
    level = params["png_compress_level"]
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise SimulationParameterError(f"simulate.png_compress_level must be 0..9, got {level!r}")
    jobs = params["n_jobs"]
    whole_number(jobs, "simulate.n_jobs", 1, error=SimulationParameterError)
    ceiling = params["ceiling_patients"]
    whole_number(ceiling, "simulate.ceiling_patients", 100, error=SimulationParameterError)
    if not isinstance(params["progress_bar"], bool):
        raise SimulationParameterError("simulate.progress_bar must be true or false")

    centers = params["centers"]
    if not isinstance(centers, list) or not centers:
        raise SimulationParameterError("simulate.centers must be a non-empty list of centres")
    names, prefixes = set(), set()
    for i, center in enumerate(centers):
        where = f"simulate.centers[{i}]"
        _keys(center, _CENTER, where)
        name, prefix = center["name"], center["id_prefix"]
        if not isinstance(name, str) or not name or name in names:
            raise SimulationParameterError(f"{where}.name must be a unique non-empty text")
        if not isinstance(prefix, str) or not prefix.isalnum() or prefix in prefixes:
            raise SimulationParameterError(
                f"{where}.id_prefix must be unique letters/digits (patient IDs), got {prefix!r}"
            )
        names.add(name)
        prefixes.add(prefix)
        _positive(center["share"], f"{where}.share")
        _check_population(center["case_mix"] or {}, f"{where}.case_mix", partial=True)
        _check_scanner(center["scanner"], f"{where}.scanner")
    if len(centers) > params["n_patients"]:
        raise SimulationParameterError("simulate.n_patients must be at least the number of centres")

    _check_population(params["population"], "simulate.population")
    nodule = params["nodule"]
    _keys(nodule, _NODULE, "simulate.nodule")
    _non_negative(nodule["lobulation"], "simulate.nodule.lobulation")
    _non_negative(nodule["spicule_rate"], "simulate.nodule.spicule_rate")
    _pair(nodule["spicule_height"], "simulate.nodule.spicule_height", lambda v: v >= 0, ">= 0")
    _check(nodule["foci_fill"], "simulate.nodule.foci_fill", lambda v: 0 < v <= 1, "in (0, 1]")

    reading = params["reading"]
    _keys(reading, _READING, "simulate.reading")
    _non_negative(reading["size_noise_mm"], "simulate.reading.size_noise_mm")
    _share(
        reading["microcalcification_sensitivity_per_focus"],
        "simulate.reading.microcalcification_sensitivity_per_focus",
    )
    _share(
        reading["microcalcification_false_positive"],
        "simulate.reading.microcalcification_false_positive",
    )
    _any_number(
        reading["capsule_contact_threshold_mm"], "simulate.reading.capsule_contact_threshold_mm"
    )
    _non_negative(reading["capsule_contact_noise_mm"], "simulate.reading.capsule_contact_noise_mm")

    risk = params["risk"]
    _keys(risk, _RISK, "simulate.risk")
    for key in _RISK:
        if key == "location":
            _keys(risk[key], LOCATIONS, "simulate.risk.location")
            for loc in LOCATIONS:
                _positive(risk[key][loc], f"simulate.risk.location.{loc} (an odds ratio)")
        elif key == "match_crude_odds_ratios":
            if not isinstance(risk[key], bool):
                raise SimulationParameterError(f"simulate.risk.{key} must be true or false")
        elif key == "capsule_decay_mm":
            _positive(risk[key], "simulate.risk.capsule_decay_mm")
        else:
            _positive(risk[key], f"simulate.risk.{key} (an odds ratio)")
    return params
