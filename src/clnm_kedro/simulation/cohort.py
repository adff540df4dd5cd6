"""The synthetic cohort: sampled patients that render and write themselves as a cohort folder.

``simulate_cohort(params, seed)`` samples every patient (tables only, fast). Rendering happens in
:meth:`SyntheticCohort.write`, which writes the input contract (docs/input_contract.md)::

    <cohort_dir>/clinical.csv, rois.csv, images/<patient_id>/{longitudinal,transverse}.png,
    <cohort_dir>/simulation.json   (simulator version and the exact parameters; no oracle)

into a temporary sibling folder that is renamed at the end, so a crash never leaves half a
cohort, and never over an existing cohort. The oracle risk (:meth:`SyntheticCohort.oracle_table`)
is kept beside the folder, never inside it.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tqdm.auto import tqdm

from clnm_kedro.checks import whole_number
from clnm_kedro.processes import process_alive, this_process
from clnm_kedro.registry import VIEWS
from clnm_kedro.simulation.bmode import Scanner, encode_png, render_patient
from clnm_kedro.simulation.ceiling import perfect_reader_ceilings
from clnm_kedro.simulation.nodule import Nodule
from clnm_kedro.simulation.parameters import EXECUTION_KEYS, validate_parameters
from clnm_kedro.simulation.patients import (
    CLINICAL_COLUMNS,
    CRUDE_INDICATORS,
    PatientSample,
    sample_patients,
)

logger = logging.getLogger(__name__)

#: recorded in simulation.json; bump it whenever the same parameters would give other files
SIMULATOR_VERSION = "1.1.0"
MANIFEST = "simulation.json"
ORACLE_COLUMNS = (
    "patient_id",
    "center",
    "oracle_risk",
    "oracle_log_odds",
    "size_true_mm",
    "depth_width_ratio",
    "depth_length_ratio",
    "margin_irregularity_transverse",
    "margin_irregularity_longitudinal",
    "echogenic_foci",
    "foci_in_transverse_plane",
    "foci_in_longitudinal_plane",
    "capsule_gap_mm",
    "capsule_side",
    "gland_thickness_mm",
    "tracheal_gap_mm",
    "polar_gap_mm",
    "polar_side",
    "transverse_plane_offset_mm",
    "longitudinal_plane_offset_mm",
    "transverse_section_mm",
    "longitudinal_section_mm",
)
_ROI_COLUMNS = ("patient_id", "view", "x_min", "y_min", "x_max", "y_max")


def _render_task(task: tuple[Any, ...]) -> list[tuple[str, str, int, int, int, int]]:
    """Render one patient's two frames into ``folder``; return their rois rows."""
    record, nodule, scanner, seed, number, folder, compress_level = task
    frames = render_patient(record, nodule, scanner, seed, number)
    patient_dir = Path(folder) / "images" / record["patient_id"]
    patient_dir.mkdir(parents=True, exist_ok=False)
    rows = []
    for view in VIEWS:
        frame, box = frames[view]
        (patient_dir / f"{view}.png").write_bytes(encode_png(frame, compress_level))
        rows.append((record["patient_id"], view, *box))
    return rows


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists as ``{"a.b[0].c": leaf}``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out.update(_flatten(item, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: value}


def manifest_differences(existing: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """Human-readable differences between two manifests (at most 10 listed)."""
    old, new = _flatten(existing), _flatten(requested)
    lines = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            lines.append(f"{key}: absent in the folder, {new[key]!r} requested")
        elif key not in new:
            lines.append(f"{key}: {old[key]!r} in the folder, not a parameter any more")
        elif old[key] != new[key]:
            lines.append(f"{key}: {old[key]!r} in the folder, {new[key]!r} requested")
    return lines[:10] + ([f"... and {len(lines) - 10} more"] if len(lines) > 10 else [])


def _crude_odds_ratio(indicator: np.ndarray, label: np.ndarray) -> float:
    """Crude odds ratio (Haldane's 0.5 added when a cell is empty)."""
    indicator, label = np.asarray(indicator, bool), np.asarray(label, bool)
    cells = np.array(
        [
            np.sum(indicator & label),
            np.sum(indicator & ~label),
            np.sum(~indicator & label),
            np.sum(~indicator & ~label),
        ],
        dtype=float,
    )
    if (cells == 0).any():
        cells += 0.5
    return float(cells[0] * cells[3] / (cells[1] * cells[2]))


def _auc(label: pd.Series, score: np.ndarray) -> float | None:
    return float(roc_auc_score(label, score)) if label.nunique() == 2 else None


def clinical_only_auc(clinical: pd.DataFrame, fit_center: str) -> dict[str, float | None]:
    """AUC of a logistic regression on the clinical columns, fitted on ``fit_center`` alone.

    Scored on every other centre; a sanity figure, not a model of the study.
    """
    numeric = [
        "age",
        "tumor_size_mm",
        "capsule_contact",
        "microcalcification",
        "hashimoto",
        "male",
    ]
    data = clinical.assign(male=(clinical["sex"] == "M").astype(int))
    model = make_pipeline(
        ColumnTransformer(
            [
                ("numeric", StandardScaler(), numeric),
                ("location", OneHotEncoder(handle_unknown="ignore"), ["location"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    train = data[data["center"] == fit_center]
    if train["clnm"].nunique() < 2:
        return {}
    model.fit(train[[*numeric, "location"]], train["clnm"])
    out = {}
    for center, group in data[data["center"] != fit_center].groupby("center", sort=True):
        out[str(center)] = _auc(
            group["clnm"], model.predict_proba(group[[*numeric, "location"]])[:, 1]
        )
    return out


@dataclass
class SyntheticCohort:
    """A sampled synthetic cohort: its parameters, seed and patients (images not yet rendered)."""

    parameters: dict[str, Any]
    seed: int
    sample: PatientSample

    @property
    def table(self) -> pd.DataFrame:
        """Every patient: clinical columns, latent nodule features, oracle risk and label."""
        return self.sample.table

    @property
    def nodules(self) -> list[Nodule]:
        """Each patient's 3-D nodule, in table order."""
        return self.sample.nodules

    def clinical_table(self) -> pd.DataFrame:
        """``clinical.csv``: one row per patient, the contract's columns."""
        return self.table[list(CLINICAL_COLUMNS)].copy()

    def oracle_table(self) -> pd.DataFrame:
        """Each patient's oracle risk (unobserved factor integrated out) and latent features."""
        out = self.table.rename(columns={"linear_predictor": "oracle_log_odds"})
        return out[list(ORACLE_COLUMNS)].copy()

    def manifest(self) -> dict[str, Any]:
        """What ``simulation.json`` records: simulator version, seed and parameters."""
        params = {k: v for k, v in self.parameters.items() if k not in (*EXECUTION_KEYS, "presets")}
        manifest = {
            "simulator": "clnm_kedro.simulation",
            "version": SIMULATOR_VERSION,
            "seed": int(self.seed),
            "parameters": params,
        }
        return json.loads(json.dumps(manifest))

    def write(self, cohort_dir: str | Path) -> None:
        """Render every frame and write the cohort folder; never overwrite an existing cohort.

        If ``cohort_dir`` exists and is not empty, it is left untouched: when its
        ``simulation.json`` matches this cohort exactly the call just logs so; otherwise it
        raises ``FileExistsError`` saying what differs.
        """
        cohort_dir = Path(cohort_dir)
        manifest = self.manifest()
        if cohort_dir.exists():
            self._check_existing(cohort_dir, manifest)
            if any(cohort_dir.iterdir()):
                logger.info(
                    "Synthetic cohort already present with identical parameters; left "
                    "unchanged: %s",
                    cohort_dir,
                )
                return
        cohort_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_partials(cohort_dir)
        partial = Path(
            tempfile.mkdtemp(
                prefix=f".{cohort_dir.name}.", suffix=".partial", dir=cohort_dir.parent
            )
        )
        try:
            partial.chmod(0o755)
            # who writes it: a later run removes the folder once this process is gone (kill -9)
            (partial / WRITER_FILE).write_text(json.dumps(this_process()), encoding="utf-8")
            started = time.perf_counter()
            self._write_into(partial, manifest)
            (partial / WRITER_FILE).unlink()
            if cohort_dir.exists():
                cohort_dir.rmdir()  # empty, checked above
            partial.rename(cohort_dir)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        logger.info(
            "Wrote the synthetic cohort (%d patients, %d frames) to %s in %.1f s",
            len(self.table),
            2 * len(self.table),
            cohort_dir,
            time.perf_counter() - started,
        )

    @staticmethod
    def _check_existing(cohort_dir: Path, manifest: dict[str, Any]) -> None:
        """Raise ``FileExistsError`` unless ``cohort_dir`` is empty or this very cohort."""
        if not cohort_dir.is_dir():
            raise FileExistsError(
                f"'{cohort_dir}' exists and is not a folder; remove it or choose another "
                "cohort_dir (kedro run --params cohort_dir=...)."
            )
        if not any(cohort_dir.iterdir()):
            return
        path = cohort_dir / MANIFEST
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise FileExistsError(
                f"'{cohort_dir}' is not empty and holds no readable {MANIFEST}: it is not a "
                "cohort written by this simulator and will not be overwritten. Remove it or "
                "choose another cohort_dir (kedro run --params cohort_dir=...)."
            ) from None
        if existing != manifest:
            differences = "\n  ".join(manifest_differences(existing, manifest))
            raise FileExistsError(
                f"'{cohort_dir}' already holds a synthetic cohort simulated with other "
                f"settings, and it will not be overwritten:\n  {differences}\n"
                "Remove the folder (and its _oracle.csv) or choose another cohort_dir "
                "(kedro run --params cohort_dir=...)."
            )

    def _write_into(self, folder: Path, manifest: dict[str, Any]) -> None:
        """Render and write everything into ``folder`` (the temporary sibling)."""
        params = self.parameters
        scanners = {
            c["name"]: Scanner.from_params(c["name"], c["scanner"]) for c in params["centers"]
        }
        records = self.table.to_dict(orient="records")
        tasks = [
            (
                record,
                nodule,
                scanners[record["center"]],
                seed,
                number,
                str(folder),
                int(params["png_compress_level"]),
            )
            for number, (record, nodule, seed) in enumerate(
                zip(records, self.nodules, self.sample.render_seeds, strict=True), start=1
            )
        ]
        logger.info(
            "Rendering %d ultrasound frames (%d patients) with %d process(es)",
            2 * len(tasks),
            len(tasks),
            params["n_jobs"],
        )
        progress = tqdm(
            total=len(tasks),
            desc="Rendering ultrasound frames",
            unit="patient",
            disable=None if params["progress_bar"] else True,  # None: only on a terminal
        )
        rois: list[tuple[str, str, int, int, int, int]] = []
        with progress:
            if params["n_jobs"] == 1:
                for task in tasks:
                    rois += _render_task(task)
                    progress.update()
            else:
                context = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(int(params["n_jobs"]), mp_context=context) as pool:
                    for rows in pool.map(_render_task, tasks, chunksize=4):
                        rois += rows
                        progress.update()
        pd.DataFrame(rois, columns=list(_ROI_COLUMNS)).to_csv(
            folder / "rois.csv", index=False, lineterminator="\n"
        )
        self.clinical_table().to_csv(folder / "clinical.csv", index=False, lineterminator="\n")
        (folder / MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )

    def summary(self) -> dict[str, Any]:
        """Prevalence, counts, oracle AUC per centre, clinical-only AUC, odds ratios, and the
        perfect-reader ceilings of the parameters (both views, each view, clinical, oracle)."""
        table = self.table
        centers = [c["name"] for c in self.parameters["centers"]]
        per_center = {}
        for name in centers:
            group = table[table["center"] == name]
            per_center[name] = {
                "n_patients": len(group),
                "n_clnm": int(group["clnm"].sum()),
                "prevalence": float(group["clnm"].mean()),
                "mean_oracle_risk": float(group["oracle_risk"].mean()),
                "oracle_auc": _auc(group["clnm"], group["oracle_risk"].to_numpy()),
            }
        clinical = self.clinical_table()
        label = table["clnm"].to_numpy()
        return {
            "simulator_version": SIMULATOR_VERSION,
            "seed": int(self.seed),
            "n_patients": len(table),
            "prevalence": float(label.mean()),
            "oracle_auc": _auc(table["clnm"], table["oracle_risk"].to_numpy()),
            "centers": per_center,
            "clinical_only_auc": {
                "fitted_on": centers[0],
                "model": "logistic regression on the clinical columns",
                "auc": clinical_only_auc(clinical, centers[0]),
            },
            "odds_ratios": {
                "crude_in_cohort": {
                    key: _crude_odds_ratio(indicator(table), label)
                    for key, indicator in CRUDE_INDICATORS.items()
                },
                "conditional_in_model": {
                    key: float(np.exp(value))
                    for key, value in self.sample.log_odds_ratios.items()
                    if key not in ("location", "capsule_decay_mm")
                },
            },
            "intercept": self.sample.intercept,
            "preset": self.parameters.get("preset", "default"),
            "perfect_reader_ceilings": perfect_reader_ceilings(
                self.parameters, n_patients=int(self.parameters["ceiling_patients"])
            ),
        }

    def metrics(self, summary: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
        """Summary figures for MLflow: ``{name: {"value": v, "step": 0}}``.

        ``summary`` is :meth:`summary`'s result when the caller already has it.
        """
        summary = self.summary() if summary is None else summary
        values: dict[str, float | None] = {
            "prevalence.overall": summary["prevalence"],
            "oracle_auc.overall": summary["oracle_auc"],
        }
        for name, figures in summary["centers"].items():
            values[f"n_patients.{name}"] = figures["n_patients"]
            values[f"prevalence.{name}"] = figures["prevalence"]
            values[f"oracle_auc.{name}"] = figures["oracle_auc"]
        for name, auc in summary["clinical_only_auc"]["auc"].items():
            values[f"clinical_only_auc.{name}"] = auc
        for reader, auc in summary["perfect_reader_ceilings"]["external_auc"].items():
            values[f"perfect_reader_auc.{reader}"] = auc
        return {k: {"value": float(v), "step": 0} for k, v in values.items() if v is not None}


def simulate_cohort(params: dict[str, Any], seed: int) -> SyntheticCohort:
    """Check the ``simulate`` parameters and sample the cohort's patients (no images yet)."""
    checked = validate_parameters(params)
    whole_number(seed, "seed")
    sample = sample_patients(checked, int(seed))
    counts = sample.table["center"].value_counts().reindex([c["name"] for c in checked["centers"]])
    logger.info(
        "Simulated %d patients (%s); CLNM in %.1f %%",
        len(sample.table),
        ", ".join(f"{name} {n}" for name, n in counts.items()),
        100.0 * sample.table["clnm"].mean(),
    )
    return SyntheticCohort(checked, int(seed), sample)


def write_oracle(cohort: SyntheticCohort, cohort_dir: str | Path) -> Path:
    """Write the oracle table beside the cohort folder (``<cohort_dir>_oracle.csv``)."""
    path = Path(f"{Path(cohort_dir)}_oracle.csv")
    cohort.oracle_table().to_csv(path, index=False, lineterminator="\n")
    return path


__all__ = [
    "MANIFEST",
    "SIMULATOR_VERSION",
    "SyntheticCohort",
    "clinical_only_auc",
    "simulate_cohort",
    "write_oracle",
]


WRITER_FILE = ".writer.json"


def _remove_abandoned_partials(cohort_dir: Path) -> None:
    """Delete hidden ``.<name>.*.partial`` folders that a killed simulation left beside
    ``cohort_dir`` (their writer process no longer exists)."""
    for folder in sorted(cohort_dir.parent.glob(f".{cohort_dir.name}.*.partial")):
        try:
            writer = json.loads((folder / WRITER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            writer = {}
        pid = int(writer.get("pid", 0) or 0)
        if pid and process_alive(pid, str(writer.get("process_start", ""))):
            continue  # another simulation is writing it now
        shutil.rmtree(folder, ignore_errors=True)
        logger.warning("Removed %s, left half-written by a simulation that was killed.", folder)
