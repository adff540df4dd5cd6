"""The synthetic cohort simulator: contract, repeatability, risk model, scanners, views, safety."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from clnm_kedro.pipelines.simulate import create_pipeline
from clnm_kedro.pipelines.simulate.nodes import export_cohort, summarise_simulation
from clnm_kedro.simulation import (
    MANIFEST,
    SimulationParameterError,
    clinical_only_auc,
    sample_patients,
    simulate_cohort,
    validate_parameters,
)
from clnm_kedro.simulation import cohort as cohort_module
from clnm_kedro.simulation.cohort import SyntheticCohort
from clnm_kedro.simulation.patients import CLINICAL_COLUMNS, CRUDE_INDICATORS
from kedro_project import make_project_copy, run_pipelines
from sim_fixtures import base_parameters, tiny_parameters, write_tiny_cohort

CLINICAL_HEADER = list(CLINICAL_COLUMNS)
ROI_HEADER = ["patient_id", "view", "x_min", "y_min", "x_max", "y_max"]


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def crude_or(indicator: np.ndarray, label: np.ndarray) -> float:
    indicator, label = np.asarray(indicator, bool), np.asarray(label, bool)
    a, b = np.sum(indicator & label), np.sum(indicator & ~label)
    c, d = np.sum(~indicator & label), np.sum(~indicator & ~label)
    return float(a * d / (b * c))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticCohort]:
    """A written 24-patient cohort (and its oracle beside it)."""
    path = tmp_path_factory.mktemp("tiny") / "cohort"
    return path, write_tiny_cohort(path, n_patients=24, seed=7)


@pytest.fixture(scope="module")
def large() -> pd.DataFrame:
    """5000 default patients, tables only (no images)."""
    params = validate_parameters(base_parameters(n_patients=5000))
    return sample_patients(params, 11).table


# --- repeatability ---------------------------------------------------------------------------


def test_same_seed_writes_identical_bytes(tmp_path: Path, tiny) -> None:
    path, _ = tiny
    again = tmp_path / "again"
    write_tiny_cohort(again, n_patients=24, seed=7)
    first, second = files_of(path), files_of(again)
    assert first.keys() == second.keys()
    assert len(first) == 2 * 24 + 3  # two frames per patient, two tables, the manifest
    assert all(first[name] == second[name] for name in first)
    assert Path(f"{path}_oracle.csv").read_bytes() == Path(f"{again}_oracle.csv").read_bytes()


def test_other_seed_gives_another_cohort(tmp_path: Path, tiny) -> None:
    path, _ = tiny
    other = tmp_path / "other"
    write_tiny_cohort(other, n_patients=24, seed=8)
    assert (path / "clinical.csv").read_bytes() != (other / "clinical.csv").read_bytes()
    frame = "images/A0001/transverse.png"
    assert (path / frame).read_bytes() != (other / frame).read_bytes()


def test_parallel_rendering_gives_the_same_files(tmp_path: Path) -> None:
    write_tiny_cohort(tmp_path / "serial", n_patients=8, seed=3, n_jobs=1)
    write_tiny_cohort(tmp_path / "parallel", n_patients=8, seed=3, n_jobs=2)
    assert files_of(tmp_path / "serial") == files_of(tmp_path / "parallel")


# --- the input contract ----------------------------------------------------------------------


def test_writes_a_valid_cohort_folder(tiny) -> None:
    path, _ = tiny
    clinical = pd.read_csv(path / "clinical.csv", dtype={"patient_id": str})
    rois = pd.read_csv(path / "rois.csv", dtype={"patient_id": str})
    assert clinical.columns.tolist() == CLINICAL_HEADER
    assert rois.columns.tolist() == ROI_HEADER
    assert clinical["patient_id"].is_unique and len(clinical) == 24
    assert all(re.fullmatch(r"[AB]\d{4}", pid) for pid in clinical["patient_id"])
    assert clinical["center"].value_counts().to_dict() == {"CENTER_A": 16, "CENTER_B": 8}
    assert set(clinical["clnm"]) <= {0, 1}
    assert set(clinical["sex"]) <= {"F", "M"}
    assert set(clinical["location"]) <= {"upper", "middle", "lower", "isthmus"}
    for column in ("capsule_contact", "microcalcification", "hashimoto"):
        assert set(clinical[column]) <= {0, 1}
    assert pd.api.types.is_float_dtype(clinical["age"])
    assert clinical["age"].between(25, 75).all()
    assert clinical["tumor_size_mm"].between(1.0, 10.0).all()
    assert (clinical["tumor_size_mm"] * 10).round(6).mod(1).eq(0).all()  # 0.1 mm
    assert sorted(map(tuple, rois[["patient_id", "view"]].values)) == sorted(
        (pid, view) for pid in clinical["patient_id"] for view in ("longitudinal", "transverse")
    )
    sizes = {"CENTER_A": (290, 400), "CENTER_B": (310, 420)}  # conf/test frame sizes
    for row in rois.itertuples():
        image = Image.open(path / "images" / row.patient_id / f"{row.view}.png")
        assert image.mode == "L"
        frame = np.asarray(image)
        center = clinical.set_index("patient_id").loc[row.patient_id, "center"]
        assert frame.shape == sizes[center]
        assert 0 <= row.x_min < row.x_max <= frame.shape[1]
        assert 0 <= row.y_min < row.y_max <= frame.shape[0]
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["clinical.csv", "images", MANIFEST, "rois.csv"]
    )


def test_box_holds_the_dark_nodule(tiny) -> None:
    path, _ = tiny
    rois = pd.read_csv(path / "rois.csv", dtype={"patient_id": str})
    darker = []
    for row in rois.itertuples():
        frame = np.asarray(Image.open(path / "images" / row.patient_id / f"{row.view}.png"), float)
        w, h = row.x_max - row.x_min, row.y_max - row.y_min
        core = frame[
            row.y_min + h // 4 : row.y_max - h // 4, row.x_min + w // 4 : row.x_max - w // 4
        ]
        around = frame[
            row.y_min - h // 2 : row.y_max + h // 2, row.x_min - w : row.x_max + w
        ].copy()
        around[h // 2 : h // 2 + h, w : w + w] = np.nan  # the box itself
        darker.append(np.median(core) < np.nanmedian(around) - 10)
    assert np.mean(darker) >= 0.9


def test_manifest_holds_parameters_but_no_oracle(tiny) -> None:
    path, cohort = tiny
    text = (path / MANIFEST).read_text()
    manifest = json.loads(text)
    assert set(manifest) == {"simulator", "version", "seed", "parameters"}
    assert manifest["seed"] == 7
    assert manifest["parameters"]["n_patients"] == 24
    assert manifest["parameters"]["risk"]["male"] == 2.1
    assert "n_jobs" not in manifest["parameters"]  # how it ran does not change what it is
    assert "oracle" not in text
    assert not any(pid in text for pid in cohort.table["patient_id"])  # nothing per patient


def test_oracle_is_beside_the_folder_never_inside(tiny) -> None:
    path, cohort = tiny
    oracle = pd.read_csv(f"{path}_oracle.csv", dtype={"patient_id": str})
    assert not any("oracle" in p.name for p in path.rglob("*"))
    assert oracle["patient_id"].tolist() == cohort.table["patient_id"].tolist()
    assert oracle["oracle_risk"].between(0, 1).all()
    assert {"center", "margin_irregularity_transverse", "echogenic_foci"} <= set(oracle.columns)


# --- the risk model --------------------------------------------------------------------------


def test_prevalence_meets_the_target(large: pd.DataFrame) -> None:
    assert large["oracle_risk"].mean() == pytest.approx(0.32, abs=1e-6)  # the solved intercept
    assert abs(large["clnm"].mean() - 0.32) < 0.02
    assert large["center"].value_counts().to_dict() == {"CENTER_A": 3335, "CENTER_B": 1665}


def test_intercept_meets_the_target_for_any_effect_sizes() -> None:
    risk = {**base_parameters()["risk"], "male": 6.0, "taller_than_wide": 0.5}
    params = validate_parameters(
        base_parameters(n_patients=300, prevalence=0.2, unobserved_sd=1.5, risk=risk)
    )
    table = sample_patients(params, 5).table
    assert table["oracle_risk"].mean() == pytest.approx(0.2, abs=1e-6)


def test_clinical_distributions(large: pd.DataFrame) -> None:
    male = large["sex"] == "M"
    assert 0.23 < male.mean() < 0.29
    assert 0.22 < large["hashimoto"].mean() < 0.28
    assert large.loc[~male, "hashimoto"].mean() > 1.5 * large.loc[male, "hashimoto"].mean()
    assert large["age"].between(25, 75).all() and 40 < large["age"].mean() < 52
    assert large["tumor_size_mm"].max() <= 10.0
    assert 0.5 < (large["tumor_size_mm"] > 5).mean() < 0.75
    assert 0.2 < large["capsule_contact"].mean() < 0.4
    assert 0.3 < large["microcalcification"].mean() < 0.55


def test_effect_directions(large: pd.DataFrame) -> None:
    label = large["clnm"].to_numpy()
    assert crude_or(large["sex"] == "M", label) > 1.5
    assert crude_or(large["tumor_size_mm"] > 5, label) > 1.5
    assert crude_or(large["microcalcification"] == 1, label) > 1.5
    assert crude_or(large["capsule_contact"] == 1, label) > 1.5
    assert crude_or(large["hashimoto"] == 1, label) < 1.0
    # image-only signal: beyond the recorded columns
    assert np.corrcoef(large["margin_irregularity_transverse"], large["oracle_risk"])[0, 1] > 0.2
    called = large[large["microcalcification"] == 1]
    assert (
        called.loc[called["echogenic_foci"] >= 3, "oracle_risk"].mean()
        > called.loc[called["echogenic_foci"] <= 1, "oracle_risk"].mean()
    )


def test_crude_odds_ratios_match_the_literature(large: pd.DataFrame) -> None:
    targets = {key: base_parameters()["risk"][key] for key in CRUDE_INDICATORS}
    label = large["clnm"].to_numpy()
    for key, indicator in CRUDE_INDICATORS.items():
        observed = crude_or(indicator(large), label)
        assert abs(math.log(observed / targets[key])) < 0.25, (key, observed, targets[key])


def test_oracle_beats_the_clinical_columns(large: pd.DataFrame) -> None:
    external = large[large["center"] == "CENTER_B"]
    oracle_auc = roc_auc_score(external["clnm"], external["oracle_risk"])
    clinical_auc = clinical_only_auc(large[CLINICAL_HEADER], "CENTER_A")["CENTER_B"]
    assert 0.6 < clinical_auc < oracle_auc - 0.08
    assert oracle_auc < 0.97  # the unobserved factor: no model is certain


# --- scanners and views ----------------------------------------------------------------------


def _bmode(path: Path, patient_id: str, view: str, scanner: dict) -> np.ndarray:
    frame = np.asarray(Image.open(path / "images" / patient_id / f"{view}.png"), float)
    x0, y0 = scanner["image_origin"]
    rows = round(scanner["depth_mm"] / scanner["pixel_spacing_mm"])
    cols = round(scanner["width_mm"] / scanner["pixel_spacing_mm"])
    return frame[y0 : y0 + rows, x0 : x0 + cols]


def _lag_correlation(image: np.ndarray, lag: int) -> float:
    band = image[image.shape[0] // 6 : image.shape[0] // 2]
    a, b = band[:, :-lag].ravel(), band[:, lag:].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_external_center_looks_like_another_scanner(tiny) -> None:
    path, cohort = tiny
    scanners = {c["name"]: c["scanner"] for c in cohort.parameters["centers"]}
    stats: dict[str, list[tuple[float, float]]] = {"CENTER_A": [], "CENTER_B": []}
    for pid, center in cohort.table[["patient_id", "center"]].itertuples(index=False):
        image = _bmode(path, pid, "longitudinal", scanners[center])
        band = image[image.shape[0] // 6 : image.shape[0] // 2]
        stats[center].append((_lag_correlation(image, 2), float(np.median(band))))
    a, b = np.array(stats["CENTER_A"]), np.array(stats["CENTER_B"])
    assert b[:, 0].mean() > a[:, 0].mean() + 0.05  # coarser speckle (wider PSF, smoothing)
    # nearly every external frame is coarser than the typical training frame (the lag
    # correlation also depends on what the band shows: an isthmus frame of A reaches 0.94)
    assert (b[:, 0] > np.median(a[:, 0])).mean() >= 0.75
    assert b[:, 1].mean() > a[:, 1].mean() + 10  # more gain, narrower dynamic range


def test_each_view_shows_what_the_other_cannot(tmp_path: Path) -> None:
    cohort = write_tiny_cohort(tmp_path / "views", n_patients=90, seed=21)
    rois = pd.read_csv(tmp_path / "views" / "rois.csv", dtype={"patient_id": str})
    rois["aspect"] = np.log((rois["y_max"] - rois["y_min"]) / (rois["x_max"] - rois["x_min"]))
    aspect = rois.pivot(index="patient_id", columns="view", values="aspect")
    latent = cohort.table.set_index("patient_id").loc[aspect.index]
    taller = np.log(latent["depth_width_ratio"])  # depth / lateral width: transverse plane
    longer = np.log(latent["depth_length_ratio"])  # depth / cranio-caudal: longitudinal plane
    assert np.corrcoef(aspect["transverse"], taller)[0, 1] > 0.6
    assert abs(np.corrcoef(aspect["longitudinal"], taller)[0, 1]) < 0.3
    assert np.corrcoef(aspect["longitudinal"], longer)[0, 1] > 0.6
    assert abs(np.corrcoef(aspect["transverse"], longer)[0, 1]) < 0.3
    # foci: each plane sees its own subset of the nodule's echogenic foci
    seen_t, seen_l = latent["foci_in_transverse_plane"], latent["foci_in_longitudinal_plane"]
    with_foci = latent["echogenic_foci"] > 0
    assert (seen_t[with_foci] != seen_l[with_foci]).mean() > 0.3
    assert (np.maximum(seen_t, seen_l) <= latent["echogenic_foci"]).all()


# --- never overwrite -------------------------------------------------------------------------


def test_identical_cohort_is_left_untouched(tiny, caplog: pytest.LogCaptureFixture) -> None:
    path, _ = tiny
    before = {p: p.stat().st_mtime_ns for p in path.rglob("*")}
    cohort = simulate_cohort(tiny_parameters(n_patients=24, n_jobs=2), 7)  # n_jobs is not data
    with caplog.at_level(logging.INFO, logger="clnm_kedro.simulation.cohort"):
        cohort.write(path)
    assert "already present with identical parameters; left unchanged" in caplog.text
    assert {p: p.stat().st_mtime_ns for p in path.rglob("*")} == before


def test_refuses_to_overwrite_another_cohort(tiny) -> None:
    path, _ = tiny
    before = files_of(path)
    other = simulate_cohort(tiny_parameters(n_patients=24, prevalence=0.3), 7)
    with pytest.raises(FileExistsError, match=r"(?s)cohort.*parameters\.prevalence: 0\.32.*0\.3"):
        other.write(path)
    with pytest.raises(FileExistsError, match="seed: 7 in the folder, 8 requested"):
        simulate_cohort(tiny_parameters(n_patients=24), 8).write(path)
    assert files_of(path) == before
    assert not list(path.parent.glob(".*partial"))


def test_refuses_a_folder_that_is_not_a_cohort(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    cohort = simulate_cohort(tiny_parameters(n_patients=4), 1)
    with pytest.raises(FileExistsError, match=r"mine.*no readable simulation\.json"):
        cohort.write(folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_an_empty_folder_is_filled(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_tiny_cohort(tmp_path / "empty", n_patients=4, seed=1)
    assert (tmp_path / "empty" / "clinical.csv").is_file()


def test_a_crash_leaves_no_half_cohort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = cohort_module.render_patient

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(cohort_module, "render_patient", failing)
    cohort = simulate_cohort(tiny_parameters(n_patients=6), 1)
    with pytest.raises(RuntimeError, match="disk full"):
        cohort.write(tmp_path / "cohort")
    assert list(tmp_path.iterdir()) == []


# --- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"prevalence": 1.2}, "simulate.prevalence"),
        ({"n_patients": 1}, "simulate.n_patients"),
        ({"risk": {**tiny_parameters()["risk"], "male": -2.0}}, "simulate.risk.male"),
        ({"population": {"male_share": 0.25}}, "simulate.population is missing"),
        ({"typo": 1}, "unknown keys: typo"),
    ],
)
def test_bad_parameters_are_named(change: dict, message: str) -> None:
    with pytest.raises(SimulationParameterError, match=re.escape(message)):
        simulate_cohort(tiny_parameters(**change), 1)


def test_a_frame_too_small_for_the_image_is_named() -> None:
    params = tiny_parameters()
    params["centers"][1]["scanner"]["frame_size"] = [200, 420]
    with pytest.raises(SimulationParameterError, match=r"centers\[1\]\.scanner.*does not fit"):
        simulate_cohort(params, 1)


# --- the Kedro pipeline ----------------------------------------------------------------------


def test_nodes_summarise_the_cohort(tiny) -> None:
    _, cohort = tiny
    saved, oracle = export_cohort(cohort)
    assert saved is cohort
    summary, metrics = summarise_simulation(cohort, oracle)
    assert summary["n_patients"] == 24
    assert set(summary["centers"]) == {"CENTER_A", "CENTER_B"}
    assert summary["centers"]["CENTER_B"]["n_patients"] == 8
    assert set(summary["clinical_only_auc"]["auc"]) == {"CENTER_B"}
    assert {"oracle_auc.CENTER_A", "oracle_auc.CENTER_B", "prevalence.CENTER_B"} <= set(metrics)
    assert all(set(v) == {"value", "step"} for v in metrics.values())
    with pytest.raises(ValueError, match=r"stale _oracle\.csv"):
        summarise_simulation(cohort, oracle.iloc[:-1])


def test_pipeline_is_wired() -> None:
    pipeline = create_pipeline()
    assert pipeline.inputs() == {"params:simulate", "params:seed"}
    assert {"raw_cohort", "simulation_oracle", "simulation_summary", "simulation_metrics"} <= (
        pipeline.all_outputs()
    )
    writer = next(n for n in pipeline.nodes if "raw_cohort" in n.outputs)
    assert writer.outputs == ["raw_cohort", "simulation_oracle"]  # the folder is saved first


@pytest.mark.slow
def test_simulate_through_kedro(tmp_path: Path) -> None:
    project = make_project_copy(tmp_path / "project")
    (project / "src").mkdir(exist_ok=True)
    cohort_dir = tmp_path / "cohort"
    run_pipelines(project, ["simulate"], env="test", runtime_params={"cohort_dir": str(cohort_dir)})
    assert (cohort_dir / "clinical.csv").is_file()
    assert Path(f"{cohort_dir}_oracle.csv").is_file()
    summary = json.loads(
        (project / "data" / "08_reporting" / "simulation_summary.json").read_text()
    )
    assert summary["n_patients"] == 40
    before = files_of(cohort_dir)
    run_pipelines(project, ["simulate"], env="test", runtime_params={"cohort_dir": str(cohort_dir)})
    assert files_of(cohort_dir) == before


def test_caliper_none_exports_the_same_frame_without_the_marks(tmp_path: Path) -> None:
    """``caliper: none`` (a clean export) changes only the pixels of the caliper marks."""
    frames = {}
    for caliper in ("plus", "none"):
        centers = tiny_parameters()["centers"]
        centers[0]["scanner"]["caliper"] = caliper
        write_tiny_cohort(tmp_path / caliper, n_patients=2, seed=3, centers=centers)
        frames[caliper] = np.asarray(
            Image.open(tmp_path / caliper / "images" / "A0001" / "transverse.png")
        )
    rois = pd.read_csv(tmp_path / "none" / "rois.csv")
    box = rois[(rois["patient_id"] == "A0001") & (rois["view"] == "transverse")].iloc[0]
    changed_rows, changed_cols = np.nonzero(frames["plus"] != frames["none"])
    assert changed_rows.size > 0
    # every changed pixel lies within a caliper's arm (5 px) of the nodule's box
    assert changed_cols.min() >= box["x_min"] - 6 and changed_cols.max() <= box["x_max"] + 5
    assert changed_rows.min() >= box["y_min"] - 6 and changed_rows.max() <= box["y_max"] + 5
    assert np.all(frames["plus"][changed_rows, changed_cols] == 235)  # the marks' grey level
