"""Signs only one section plane shows, the controls (`simulate` presets) and their ceilings."""

from __future__ import annotations

import numpy as np
import pytest

from clnm_kedro.simulation import (
    SimulationParameterError,
    sample_patients,
    simulate_cohort,
    validate_parameters,
)
from clnm_kedro.simulation.bmode import Scanner, render_patient
from clnm_kedro.simulation.ceiling import perfect_reader_ceilings
from clnm_kedro.simulation.nodule import elevation_weight
from clnm_kedro.simulation.parameters import apply_preset
from sim_fixtures import base_parameters, tiny_parameters

# --- the presets ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ceilings() -> dict[str, dict[str, float]]:
    """Perfect-reader external AUCs of each preset on 3000 sampled patients (no images)."""
    out = {}
    for preset in ("complementary", "redundant"):
        params = validate_parameters(base_parameters(preset=preset))
        out[preset] = perfect_reader_ceilings(params, n_patients=3000)["external_auc"]
    return out


def test_complementary_preset_gives_two_views_a_clear_gain(ceilings) -> None:
    aucs = ceilings["complementary"]
    assert aucs["both_views"] - max(aucs["longitudinal"], aucs["transverse"]) >= 0.06
    assert aucs["gain_of_both_views"] >= 0.06
    assert aucs["both_views"] <= aucs["oracle"] + 0.01  # a reader never beats the true risk


def test_redundant_preset_gives_the_second_view_nothing(ceilings) -> None:
    aucs = ceilings["redundant"]
    assert abs(aucs["gain_of_both_views"]) < 0.01
    assert abs(aucs["longitudinal"] - aucs["transverse"]) < 0.02
    assert aucs["both_views"] > aucs["clinical"] + 0.05  # the images still carry risk


def test_presets_override_the_block_and_only_when_named() -> None:
    base = base_parameters()
    assert apply_preset(base) == base  # preset: default changes nothing
    redundant = validate_parameters(base_parameters(preset="redundant"))
    assert redundant["population"]["irregularity_view_correlation"] == 1.0
    assert redundant["nodule"]["foci_fill"] == 0.1
    # everything a preset does not name stays the default's
    assert redundant["population"]["male_share"] == base["population"]["male_share"]
    assert redundant["centers"] == base["centers"]
    assert validate_parameters(redundant) == redundant  # applying it twice changes nothing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"preset": "positive"}, "simulate.preset 'positive' is not defined"),
        (
            {"preset": "bad", "presets": {"bad": {"populaton": {}}}},
            "simulate.presets.bad may only override simulate's keys; unknown: populaton",
        ),
        (
            {"preset": "bad", "presets": {"bad": {"population": {"male_shares": 0.3}}}},
            "simulate.population has unknown keys: male_shares",
        ),
    ],
)
def test_a_bad_preset_is_named(change: dict, message: str) -> None:
    with pytest.raises(SimulationParameterError, match=message):
        validate_parameters(tiny_parameters(**change))


# --- one-plane signs -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample():
    return sample_patients(validate_parameters(tiny_parameters(n_patients=300)), 3)


def test_one_plane_contact_exists_only_where_the_anatomy_has_it(sample) -> None:
    table = sample.table
    isthmus = table["location"] == "isthmus"
    assert table.loc[isthmus, "tracheal_gap_mm"].isna().all()
    assert table.loc[~isthmus, "tracheal_gap_mm"].notna().all()
    polar = table["location"].isin(["upper", "lower"])
    assert table.loc[~polar, "polar_gap_mm"].isna().all()
    assert (
        table.loc[polar, "polar_side"]
        == table.loc[polar, "location"].map({"upper": "cranial", "lower": "caudal"})
    ).all()
    touching = (table["tracheal_gap_mm"] < 0.1).mean(), (table["polar_gap_mm"] < 0.1).mean()
    assert 0.03 < touching[0] < 0.25 and 0.02 < touching[1] < 0.15


def _frames(record: dict, nodule, center: dict):
    scanner = Scanner.from_params(center["name"], center["scanner"])
    frames = render_patient(record, nodule, scanner, np.random.SeedSequence(5), 1)
    return {view: frame for view, (frame, _) in frames.items()}


def test_each_one_plane_sign_is_drawn_only_in_its_plane(sample) -> None:
    """Moving the medial (tracheal) capsule changes only the transverse frame; the polar one
    only the longitudinal frame."""
    table = sample.table
    row = int(np.flatnonzero((table["location"] == "upper").to_numpy())[0])
    record = table.iloc[row].to_dict()
    nodule = sample.nodules[row]
    center = tiny_parameters()["centers"][0]
    base = _frames({**record, "tracheal_gap_mm": 4.0, "polar_gap_mm": 6.0}, nodule, center)
    tracheal = _frames({**record, "tracheal_gap_mm": -0.2, "polar_gap_mm": 6.0}, nodule, center)
    polar = _frames({**record, "tracheal_gap_mm": 4.0, "polar_gap_mm": -0.2}, nodule, center)
    assert np.array_equal(base["longitudinal"], tracheal["longitudinal"])
    assert not np.array_equal(base["transverse"], tracheal["transverse"])
    assert np.array_equal(base["transverse"], polar["transverse"])
    assert not np.array_equal(base["longitudinal"], polar["longitudinal"])


def test_an_off_centre_plane_cuts_a_smaller_section_and_sees_other_foci(sample) -> None:
    nodule = next(n for n in sample.nodules if len(n.foci_mm) >= 2).with_plane_offsets(0.0, 0.0)
    a, b, c = nodule.semi_axes_mm
    grid = np.linspace(-2 * max(a, b, c), 2 * max(a, b, c), 201)
    h, d = np.meshgrid(grid, grid)
    centred = nodule.section("transverse", h, d).sum()
    shifted = nodule.with_plane_offsets(0.6 * c, 0.0)
    assert shifted.section("transverse", h, d).sum() < 0.9 * centred
    # the longitudinal section does not move when the transverse plane does
    assert np.array_equal(
        shifted.section("longitudinal", h, d), nodule.section("longitudinal", h, d)
    )
    before = elevation_weight(nodule.foci_in_plane("transverse")[1], 1.6)
    after = elevation_weight(shifted.foci_in_plane("transverse")[1], 1.6)
    assert not np.allclose(before, after)
    assert np.array_equal(
        nodule.foci_in_plane("longitudinal")[1], shifted.foci_in_plane("longitudinal")[1]
    )


def test_summary_reports_the_presets_ceilings() -> None:
    presets = base_parameters()["presets"]  # the test environment's block names none
    cohort = simulate_cohort(tiny_parameters(n_patients=30, preset="redundant", presets=presets), 2)
    summary = cohort.summary()
    assert summary["preset"] == "redundant"
    aucs = summary["perfect_reader_ceilings"]["external_auc"]
    assert set(aucs) == {
        "both_views", "longitudinal", "transverse", "clinical", "oracle", "gain_of_both_views",
    }  # fmt: skip
    assert summary["perfect_reader_ceilings"]["n_patients"] == 600  # conf/test
    assert "perfect_reader_auc.both_views" in cohort.metrics(summary)
