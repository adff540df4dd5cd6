"""Cross-fitted networks: K fold networks, out-of-fold logits, the fold ensemble, calibration.

Network ``k`` of ``K`` is trained without the training-centre patients of its held-out fold
group ``k`` (split folds ``f`` with ``f % K == k``), which it never sees, neither for gradients
nor for choosing its epoch. Every training patient is then scored by the one network that did
not see it (its out-of-fold logits); every other patient (external, new) by the fold ensemble:
the mean logit of the K networks. Each network's logits are first standardised, without labels,
by their mean and SD on the patients it held out (:mod:`clnm_kedro.networks.standardisation`),
so that the K networks' outputs share one scale. A logistic calibration
(:class:`LogitCalibration`) fitted on the out-of-fold probabilities of the training centres turns
the fused logit into a risk.

The "DL outputs" of a patient are the logits of the fused classifier and, for a network reading
several views with trained per-view classifiers, of each view's classifier. They mean the same
thing for a training patient (one fold network) and for a new one (the mean of K networks),
which the embeddings of K separately trained networks would not: their axes are not aligned.

``K = 1`` is a single network trained on every training-centre patient: no out-of-fold
outputs, every training patient in-sample.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import torch
from torch import nn

from clnm_kedro.checks import whole_number
from clnm_kedro.metrics.recalibration import LogitCalibration, leave_one_out_calibration
from clnm_kedro.networks.architecture import UltrasoundNetwork
from clnm_kedro.networks.cpu_numerics import thread_independent_numerics
from clnm_kedro.networks.data import crop_batches, to_model_input, validate_crops
from clnm_kedro.networks.inference import DEFAULT_INFERENCE_BATCH, model_device, use_bf16
from clnm_kedro.networks.standardisation import OutputStandardisation
from clnm_kedro.networks.training import TrainingResult, load_checkpoint, model_from_state

ENSEMBLE = "ensemble"  # source of a patient's outputs scored by every fold network
EPOCH_CHOICES: tuple[str, ...] = ("last", "inner_fold")


def training_folds(splits: pd.DataFrame) -> np.ndarray:
    """The split fold of every row (``-1`` for external patients)."""
    train = splits["split"].eq("train").to_numpy()
    folds = pd.to_numeric(splits["fold"], errors="coerce").fillna(-1).astype(int).to_numpy()
    return np.where(train, folds, -1)


def check_fold_count(splits: pd.DataFrame, n_folds: int) -> None:
    """``n_folds`` is 1 or at most the number of training-centre folds in ``splits``."""
    whole_number(n_folds, "dl_training.cross_fitting.n_folds", 1)
    present = sorted(int(f) for f in set(training_folds(splits)) - {-1})
    if n_folds > 1 and n_folds > len(present):
        raise ValueError(
            f"dl_training.cross_fitting.n_folds={n_folds} fold networks, but the training "
            f"centres have only {len(present)} folds ({present}); lower it or raise "
            "split.n_folds"
        )


def fold_rows(
    splits: pd.DataFrame, fold: int, n_folds: int, epoch_choice: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows fold network ``fold`` fits on, validates on (epoch choice), and never sees.

    Parameters
    ----------
    splits
        ``patient_splits`` (``split``, ``fold``).
    fold
        Which fold network (``0 <= fold < n_folds``).
    n_folds
        K. With ``K = 1`` nothing is held out.
    epoch_choice
        ``last``: no validation rows (the schedule's last epoch is kept). ``inner_fold``: the
        first split fold after the held-out group that is not in it validates (early stopping
        inside the network's own training part).

    Returns
    -------
    tuple of np.ndarray
        Fit, validation and held-out row indices (int64, ascending); external rows in none.
    """
    if epoch_choice not in EPOCH_CHOICES:
        raise ValueError(
            f"dl_training.cross_fitting.epoch_choice={epoch_choice!r} is not one of "
            f"{EPOCH_CHOICES}"
        )
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold network {fold} does not exist with n_folds={n_folds}")
    folds = training_folds(splits)
    train = folds >= 0
    held_mask = train & (folds % n_folds == fold) if n_folds > 1 else np.zeros_like(train)
    candidates = train & ~held_mask
    validation_mask = np.zeros_like(train)
    if epoch_choice == "inner_fold":
        present = sorted(int(f) for f in set(folds[candidates]))
        if len(present) < 2:
            raise ValueError(
                "epoch_choice=inner_fold needs at least two split folds in each fold "
                f"network's training part; fold network {fold} has {present}"
            )
        after = [f for f in present if f > fold] or present
        validation_mask = candidates & (folds == after[0])
    fit_mask = candidates & ~validation_mask
    return (
        np.flatnonzero(fit_mask).astype(np.int64),
        np.flatnonzero(validation_mask).astype(np.int64),
        np.flatnonzero(held_mask).astype(np.int64),
    )


def network_logits(model: UltrasoundNetwork, x: torch.Tensor) -> torch.Tensor:
    """``(B, 1 + V)``: the fused logit, then each view's classifier logit (``V`` = 0 for a
    single-view network, and when the view classifiers were not trained)."""
    if not getattr(model, "trained_view_heads", True):
        return model(x).unsqueeze(1)
    fused, per_view = model(x, with_view_logits=True)
    return torch.cat([fused.unsqueeze(1), per_view], dim=1)


def output_names(model: UltrasoundNetwork) -> list[str]:
    """Names of the columns of :func:`network_logits`: ``fused`` and the views."""
    if not getattr(model, "trained_view_heads", True) or not len(model.view_heads):
        return ["fused"]
    return ["fused", *model.view_names]


class FoldEnsemble(nn.Module):
    """K fold networks and the calibration of their fused logit: one scorer for new patients.

    ``forward`` gives the mean standardised fused logit of the K networks (uncalibrated, as a
    network's ``forward``); :meth:`risk` the calibrated probability. ``standardisation`` maps
    each network's outputs to the common scale (identity when not given: ``K = 1``, or a
    checkpoint written before it existed). ``held_out_digests`` fingerprint,
    per fold network, the patients it never saw (no patient ID is stored with the model):
    :func:`fold_assignment` checks a ``patient_splits`` against them.
    Grad-CAM (``branches``) explains the last fold network's CNN branches.
    """

    def __init__(
        self,
        folds: Sequence[UltrasoundNetwork],
        calibration: LogitCalibration,
        held_out_digests: Sequence[str],
        standardisation: OutputStandardisation | None = None,
    ) -> None:
        super().__init__()
        if not folds:
            raise ValueError("A fold ensemble needs at least one network")
        if len(held_out_digests) != len(folds):
            raise ValueError(
                f"{len(held_out_digests)} held-out fingerprints for {len(folds)} fold networks"
            )
        self.folds = nn.ModuleList(folds)
        self.calibration = calibration
        self.held_out_digests = [str(digest) for digest in held_out_digests]
        self.views = folds[0].views
        self.view_names = folds[0].view_names
        n_outputs = len(output_names(folds[0]))
        if standardisation is None:
            standardisation = OutputStandardisation.identity(len(folds), n_outputs)
        if standardisation.location.shape != (len(folds), n_outputs):
            raise ValueError(
                f"standardisation for {standardisation.location.shape} (networks, outputs), "
                f"but the ensemble has {len(folds)} networks with {n_outputs} outputs"
            )
        self.standardisation = standardisation

    @property
    def n_folds(self) -> int:
        """K."""
        return len(self.folds)

    @property
    def branches(self) -> nn.ModuleList:
        """The CNN branches Grad-CAM explains (the last fold network's)."""
        return self.folds[-1].branches

    @property
    def output_names(self) -> list[str]:
        """Columns of :meth:`logits`."""
        return output_names(self.folds[0])

    def _standardise(self, per_model: torch.Tensor, columns: slice) -> torch.Tensor:
        location = torch.as_tensor(self.standardisation.location[:, columns]).to(per_model)
        scale = torch.as_tensor(self.standardisation.scale[:, columns]).to(per_model)
        return (per_model - location[:, None, :]) / scale[:, None, :]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the fold networks of their standardised :func:`network_logits`,
        ``(B, 1 + V)``."""
        per_model = torch.stack([network_logits(model, x) for model in self.folds])
        return self._standardise(per_model, slice(None)).mean(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The ensemble's fused CLNM logit per patient, ``(B,)`` (standardised, before
        calibration)."""
        per_model = torch.stack([model(x) for model in self.folds]).unsqueeze(-1)
        return self._standardise(per_model, slice(0, 1)).mean(dim=0)[:, 0]

    def risk(self, fused_logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of fused logits."""
        return self.calibration.apply(_sigmoid(fused_logits))


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return torch.sigmoid(torch.as_tensor(np.asarray(logits, dtype=np.float64))).numpy()


def batched_logits(
    models: Sequence[nn.Module],
    crops: np.ndarray,
    batch_size: int = DEFAULT_INFERENCE_BATCH,
) -> np.ndarray:
    """:func:`network_logits` of each model for every patient of ``crops``, ``(M, N, C)``.

    Eval mode, no gradients; float32 on the CPU. On the CPU the models score side by side,
    one per core, each on one thread (the numbers are those of one model at a time); on
    another device one after the other.
    """
    validate_crops(crops)
    device = model_device(models[0])
    modes = [model.training for model in models]
    for model in models:
        model.eval()
    workers = min(len(models), joblib.cpu_count()) if device.type == "cpu" else 1
    try:
        if workers > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="clnm-scoring") as pool:
                per_model = list(
                    pool.map(lambda model: _model_logits(model, crops, batch_size), models)
                )
        else:
            per_model = [_model_logits(model, crops, batch_size) for model in models]
    finally:
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)
    return torch.stack(per_model).numpy()


def _model_logits(model: nn.Module, crops: np.ndarray, batch_size: int) -> torch.Tensor:
    """``(N, C)`` :func:`network_logits` of one model in eval mode, batch by batch (the
    inference and autocast modes are set here: they belong to the calling thread)."""
    device = model_device(model)
    chunks: list[torch.Tensor] = []
    with (
        torch.inference_mode(),
        torch.autocast(device.type, torch.bfloat16, enabled=use_bf16(device)),
        thread_independent_numerics(device),
    ):
        for batch in crop_batches(crops, model.views, batch_size):
            chunks.append(network_logits(model, to_model_input(batch, device)).float().cpu())
    if not chunks:
        n_outputs = len(output_names(model))
        return torch.zeros((0, n_outputs), dtype=torch.float32)
    return torch.cat(chunks)


@dataclass
class CrossFittedOutputs:
    """Every patient's DL outputs and who produced them.

    Attributes
    ----------
    logits
        ``(N, 1 + V)`` float32: fused logit, then each view's (``names``).
    source
        ``fold_<k>`` (out-of-fold: fold network ``k`` never saw the patient) or ``ensemble``.
    names
        Column names of ``logits``.
    ensemble
        ``(N, 1 + V)``: the fold ensemble's mean outputs of every patient (equal to
        ``logits`` where the source is ``ensemble``).
    """

    logits: np.ndarray
    source: np.ndarray
    names: list[str] = field(default_factory=list)
    ensemble: np.ndarray | None = None

    @property
    def out_of_fold(self) -> np.ndarray:
        """True where a patient's outputs come from a network that never saw it."""
        return self.source != ENSEMBLE


def held_out_digest(patient_ids: Sequence[str]) -> str:
    """Fingerprint of a set of patient IDs (sha256 of the sorted IDs)."""
    text = "\n".join(sorted(str(patient) for patient in patient_ids))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def held_out_network(splits: pd.DataFrame, n_folds: int) -> np.ndarray:
    """The fold network that never saw each row (``-1``: none, i.e. external, or ``K = 1``)."""
    folds = training_folds(splits)
    if n_folds == 1:
        return np.full(len(splits), -1)
    return np.where(folds >= 0, folds % n_folds, -1)


def fold_assignment(ensemble: FoldEnsemble, splits: pd.DataFrame) -> np.ndarray:
    """:func:`held_out_network` of ``splits``, checked against the ensemble's fingerprints.

    Raises
    ------
    ValueError
        If the patients ``splits`` puts in fold group ``k`` are not those fold network ``k``
        held out (``patient_splits`` changed after the networks were trained).
    """
    assignment = held_out_network(splits, ensemble.n_folds)
    ids = splits["patient_id"].astype(str).to_numpy()
    for k, digest in enumerate(ensemble.held_out_digests):
        if held_out_digest(ids[assignment == k]) != digest:
            raise ValueError(
                f"patient_splits does not match the networks: the training patients of fold "
                f"group {k} are not those fold network {k} held out. Were the splits or the "
                "cohort changed after dl_training? Rerun dl_training on these patient_splits"
            )
    return assignment


def cross_fitted_logits(
    ensemble: FoldEnsemble,
    crops: np.ndarray,
    assignment: np.ndarray | None = None,
    batch_size: int = DEFAULT_INFERENCE_BATCH,
) -> CrossFittedOutputs:
    """Out-of-fold outputs for the patients a fold network held out; the ensemble's elsewhere.

    ``assignment[i] = k`` (from :func:`fold_assignment`) gives patient ``i`` fold network
    ``k``'s outputs; ``-1`` (external, new, every patient when ``K = 1``, or no assignment)
    the mean of the K networks' outputs. Outputs are standardised per network
    (:class:`OutputStandardisation`; for a held-out patient, leave-one-out).
    """
    per_model, assignment = _raw_outputs(ensemble, crops, assignment, batch_size)
    return _combine_outputs(per_model, assignment, ensemble.standardisation, ensemble.output_names)


def _raw_outputs(
    ensemble: FoldEnsemble, crops: np.ndarray, assignment: np.ndarray | None, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every fold network's unstandardised outputs ``(K, N, C)`` and the checked assignment."""
    if assignment is None:
        assignment = np.full(len(crops), -1)
    assignment = np.asarray(assignment)
    if len(assignment) != len(crops):
        raise ValueError(f"{len(assignment)} fold assignments for {len(crops)} crops")
    if assignment.max(initial=-1) >= ensemble.n_folds:
        raise ValueError(f"fold assignment beyond the {ensemble.n_folds} fold networks")
    return batched_logits(list(ensemble.folds), crops, batch_size), assignment


def _combine_outputs(
    per_model: np.ndarray,
    assignment: np.ndarray,
    standardisation: OutputStandardisation,
    names: list[str],
) -> CrossFittedOutputs:
    """:func:`cross_fitted_logits` from every network's raw outputs ``(K, N, C)``."""
    mean = standardisation.apply(per_model).mean(axis=0)
    held_out = standardisation.apply_held_out(per_model, assignment)
    logits = mean.copy()
    source = np.full(len(assignment), ENSEMBLE, dtype=object)
    for k in range(per_model.shape[0]):
        rows = np.flatnonzero(assignment == k)
        logits[rows] = held_out[rows]
        source[rows] = f"fold_{k}"
    return CrossFittedOutputs(logits.astype(np.float32), source, names, mean.astype(np.float32))


def fit_calibration(labels: np.ndarray, fused_logits: np.ndarray) -> LogitCalibration:
    """Logistic calibration of the fused logit, fitted on out-of-fold outputs.

    With no out-of-fold outputs (``K = 1``) the identity map is kept.
    """
    if len(labels) == 0:
        return LogitCalibration.identity()
    return LogitCalibration.fit(labels, _sigmoid(fused_logits))


def cross_fitted_risks(labels: np.ndarray, fused_logits: np.ndarray) -> np.ndarray:
    """Out-of-fold calibrated risks of out-of-fold outputs: the calibration is left out too.

    The ensemble's calibration is fitted on every training patient's out-of-fold logit, so
    applied to those same logits it would have seen each patient's label. Here each row passes
    through the same calibration fitted on every other row
    (:func:`~clnm_kedro.metrics.recalibration.leave_one_out_calibration`), so a training
    patient's ``train_cv`` risk comes from no fitted step that saw its label. Not a
    calibration fitted without the patient's whole fold group: that would leave each fold
    network's own miscalibration out of the map applied to its patients.

    Parameters
    ----------
    labels
        0/1 outcome of each out-of-fold row.
    fused_logits
        The fused logit of each row (from the fold network that never saw the patient).

    Raises
    ------
    ValueError
        If an outcome class has fewer than two rows (no calibration can be fitted without
        one of them).
    """
    return leave_one_out_calibration(labels, _sigmoid(np.asarray(fused_logits, dtype=float)))


def describe_ensemble(ensemble: FoldEnsemble) -> dict[str, Any]:
    """K, the output names, the per-network output standardisation and the calibration, for
    summaries."""
    return {
        "n_folds": ensemble.n_folds,
        "outputs": ensemble.output_names,
        "standardisation": ensemble.standardisation.to_dict(),
        "calibration": ensemble.calibration.to_dict(),
    }


ENSEMBLE_FORMAT = "clnm_kedro.fold_ensemble/1"


@dataclass
class FoldEnsembleResult:
    """What the ``dl_training`` pipeline keeps of one network model: its K fold trainings and
    the calibration fitted on their out-of-fold outputs (saved as one checkpoint)."""

    folds: list[TrainingResult]
    calibration: LogitCalibration
    standardisation: OutputStandardisation | None = None

    def network(self, device: str | torch.device = "cpu") -> FoldEnsemble:
        """The fold ensemble (eval mode)."""
        return FoldEnsemble(
            [fold.network(device) for fold in self.folds],
            self.calibration,
            [held_out_digest(fold.held_out_patient_ids) for fold in self.folds],
            self.standardisation,
        ).eval()


def build_ensemble_result(
    folds: Sequence[TrainingResult],
    crops: np.ndarray,
    splits: pd.DataFrame,
    batch_size: int = DEFAULT_INFERENCE_BATCH,
) -> tuple[FoldEnsembleResult, CrossFittedOutputs]:
    """The fold trainings as one ensemble: each network's output standardisation fitted on
    the patients it held out (no labels), then the calibration fitted on the out-of-fold
    standardised fused logits of the training-centre patients.

    Each network scores only the patients it held out (:func:`held_out_outputs`): all that
    the standardisation and the calibration read.

    Returns
    -------
    tuple
        The ensemble result and the held-out patients' (uncalibrated) outputs (NaN for the
        other patients).
    """
    check_held_out(folds, splits)
    ensemble = FoldEnsembleResult(list(folds), LogitCalibration.identity()).network()
    assignment = fold_assignment(ensemble, splits)
    per_model = held_out_outputs(ensemble, crops, assignment, batch_size)
    standardisation = OutputStandardisation.fit(per_model, assignment)
    outputs = _combine_outputs(per_model, assignment, standardisation, ensemble.output_names)
    train = splits["split"].eq("train").to_numpy()
    oof = outputs.out_of_fold & train
    labels = pd.to_numeric(splits["clnm"], errors="coerce").to_numpy()[oof]
    calibration = fit_calibration(labels, outputs.logits[oof, 0])
    return FoldEnsembleResult(list(folds), calibration, standardisation), outputs


def held_out_outputs(
    ensemble: FoldEnsemble,
    crops: np.ndarray,
    assignment: np.ndarray,
    batch_size: int = DEFAULT_INFERENCE_BATCH,
) -> np.ndarray:
    """``(K, N, C)``: fold network ``k``'s unstandardised outputs for the patients it held out
    (``assignment == k``), NaN elsewhere; with ``K = 1`` (no one held out) all NaN."""
    assignment = np.asarray(assignment)
    if len(assignment) != len(crops):
        raise ValueError(f"{len(assignment)} fold assignments for {len(crops)} crops")
    per_model = np.full(
        (ensemble.n_folds, len(crops), len(ensemble.output_names)), np.nan, dtype=np.float32
    )
    for k, model in enumerate(ensemble.folds):
        rows = np.flatnonzero(assignment == k)
        if len(rows):
            per_model[k, rows] = batched_logits([model], crops[rows], batch_size)[0]
    return per_model


def check_held_out(folds: Sequence[TrainingResult], splits: pd.DataFrame) -> None:
    """No fold network saw its held-out patients; with K > 1 each training patient is held
    out by exactly one network."""
    train_ids = set(splits.loc[splits["split"].eq("train"), "patient_id"].astype(str))
    seen: dict[str, int] = {}
    for k, fold in enumerate(folds):
        held = set(fold.held_out_patient_ids)
        used = set(fold.fit_patient_ids) | set(fold.validation_patient_ids)
        if held & used:
            raise RuntimeError(
                f"Fold network {k} saw held-out patient(s) {sorted(held & used)[:10]}"
            )
        for patient in held:
            if patient in seen:
                raise RuntimeError(
                    f"Patient {patient} is held out by fold networks {seen[patient]} and {k}"
                )
            seen[patient] = k
    if len(folds) > 1 and set(seen) != train_ids:
        missing = sorted(train_ids - set(seen))[:10]
        raise RuntimeError(f"Training patient(s) {missing} are held out by no fold network")


def _history_dict(history: pd.DataFrame) -> dict[str, list[float]]:
    return {column: history[column].astype(float).tolist() for column in history.columns}


def save_ensemble(result: FoldEnsembleResult, path: str | Path) -> None:
    """Write every fold's weights, the config, histories, a fingerprint of its held-out
    patients (no patient ID: the file is packaged into the MLflow model) and the calibration
    to one torch file (loadable weights-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = result.folds[0]
    payload = {
        "format": ENSEMBLE_FORMAT,
        "config": copy.deepcopy(first.config),
        "seed": int(first.seed),
        "calibration": result.calibration.to_dict(),
        "standardisation": (
            result.standardisation.to_dict() if result.standardisation is not None else None
        ),
        "folds": [
            {
                "state_dict": fold.state_dict,
                "seed": int(fold.seed),
                "best_epoch": int(fold.best_epoch),
                "best_val_auc": float(fold.best_val_auc),
                "held_out_digest": held_out_digest(fold.held_out_patient_ids),
                "history": _history_dict(fold.history),
            }
            for fold in result.folds
        ],
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)


def load_network_file(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A fold ensemble (:func:`save_ensemble`) or a single network
    (:func:`~clnm_kedro.networks.save_checkpoint`), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Network checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and payload.get("format") == ENSEMBLE_FORMAT:
        folds = [
            model_from_state(fold["state_dict"], payload["config"], device)
            for fold in payload["folds"]
        ]
        standardisation = payload.get("standardisation")
        return FoldEnsemble(
            folds,
            LogitCalibration.from_dict(payload["calibration"]),
            [fold["held_out_digest"] for fold in payload["folds"]],
            OutputStandardisation.from_dict(standardisation) if standardisation else None,
        ).eval()
    network, _config = load_checkpoint(path, device)
    return network
