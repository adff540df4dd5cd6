"""Project hooks: a run that stops half-way leaves nothing a rerun would mistake for complete.

Kedro's ``kedro run --only-missing-outputs`` (Kedro 1.7, ``AbstractRunner``) skips every node
whose persisted outputs all *exist*; it does not look at their age or content. Two things could
then be mistaken for complete after a failed or killed run:

- a file left half-written when the failure (or a kill) came while it was being saved;
- an output of an earlier run, still on disk, of a node that this run never got to: it no
  longer matches the data the finished nodes have just rewritten.

:class:`UnfinishedOutputsHooks` keeps a small journal, ``data/.unfinished_outputs.json``, of
the output files this run is going to (re)write and has not finished writing. A node's files
leave the journal once all of them are saved. When the run fails, the files still in the
journal are deleted; when the process was killed instead (no error hook runs), the next
``kedro run`` deletes them before it decides what to run. What remains on disk is then exactly
what finished nodes wrote, and ``--only-missing-outputs`` reruns the rest.

Only files under the project's ``data/`` folder are ever deleted, never ``data/01_raw``
(raw data is read-only; the simulator writes a cohort into a temporary folder and renames it
only when it is complete).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

import mlflow
import optuna
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from clnm_kedro.datasets.optuna_storage_dataset import storage_url_in_use
from clnm_kedro.processes import process_alive, this_process

logger = logging.getLogger(__name__)

JOURNAL_NAME = ".unfinished_outputs.json"
PROTECTED_LAYER = "01_raw"


def _deletable(path: Path | str, project: Path) -> Path | None:
    """``path`` made absolute, if it lies in the project's ``data/`` but not in ``01_raw``."""
    path = Path(path)
    if not path.is_absolute():
        path = project / path
    path = Path(os.path.normpath(path))
    data = project / "data"
    if not path.is_relative_to(data) or path.is_relative_to(data / PROTECTED_LAYER):
        return None
    return path


def output_file(dataset: Any, project: Path) -> Path | None:
    """The local file a catalog dataset saves to, if it may be deleted (see ``_deletable``)."""
    filepath = getattr(dataset, "_filepath", None)
    protocol = getattr(dataset, "_protocol", "file")
    if filepath is None or protocol not in ("file", None):
        return None
    return _deletable(str(filepath), project)


def _remove(paths: Iterable[str]) -> list[str]:
    removed = []
    for text in sorted(set(paths)):
        path = Path(text)
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(text)
    return removed


class UnfinishedOutputsHooks:
    """Delete the outputs of nodes that did not finish, so that a rerun redoes them."""

    def __init__(self) -> None:
        self._journal: Path | None = None
        self._catalog: Any = None
        self._pipeline: Pipeline | None = None
        self._project = Path.cwd()
        self._pending: dict[str, set[str]] = {}  # node name -> files not yet (re)written
        self._unsaved: dict[str, set[str]] = {}  # node name -> outputs not yet saved
        self._only_missing = False
        self._lock = threading.Lock()  # ThreadRunner: nodes finish in several threads

    # --- journal ---------------------------------------------------------------------------

    def _files_of(self, nodes: Iterable[Node]) -> dict[str, set[str]]:
        files: dict[str, set[str]] = {}
        for node in nodes:
            paths = set()
            for name in node.outputs:
                if name not in self._catalog:
                    continue
                path = output_file(self._catalog.get(name), self._project)
                if path is not None:
                    paths.add(str(path))
            if paths:
                files[node.name] = paths
        return files

    def _write_journal(self) -> None:
        with self._lock:
            self._write_journal_unlocked()

    def _write_journal_unlocked(self) -> None:
        if self._journal is None:
            return
        if not self._pending:
            self._journal.unlink(missing_ok=True)
            return
        record = {name: sorted(paths) for name, paths in sorted(self._pending.items())}
        temporary = self._journal.with_name(self._journal.name + ".tmp")
        temporary.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.replace(temporary, self._journal)  # atomic: the journal itself is never half-written

    # --- hooks -----------------------------------------------------------------------------

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: Any
    ) -> None:
        """Clear what an interrupted earlier run left unfinished; journal this run's outputs."""
        self._project = Path(run_params.get("project_path") or Path.cwd()).resolve()
        # a plain copy of the run's pipeline, filtered when resuming
        self._catalog, self._pipeline = catalog, Pipeline(pipeline.nodes)
        self._only_missing = bool(run_params.get("only_missing_outputs"))
        data = self._project / "data"
        if not data.is_dir():
            self._journal = None
            return
        self._journal = data / JOURNAL_NAME
        if self._journal.is_file():
            try:
                earlier = json.loads(self._journal.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                earlier = {}
            removed = _remove(
                path
                for paths in earlier.values()
                for path in paths
                if _deletable(path, self._project) is not None
            )
            logger.warning(
                "An earlier run stopped before finishing %d step(s) (%s); removed %d output "
                "file(s) they had not finished writing, so that they are made again.",
                len(earlier),
                ", ".join(sorted(earlier)) or "none",
                len(removed),
            )
        # A plain run rewrites every output of its pipeline; with --only-missing-outputs only
        # the nodes that actually start (and what depends on them) are journalled.
        self._pending = {} if self._only_missing else self._files_of(pipeline.nodes)
        self._unsaved = {}
        self._write_journal()

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        """Journal this node's outputs (and, when resuming, those of the nodes after it)."""
        with self._lock:
            self._unsaved[node.name] = set(node.outputs)
        if self._only_missing and self._pipeline is not None:
            later = self._pipeline.from_nodes(node.name).nodes
            with self._lock:
                for name, paths in self._files_of(later).items():
                    self._pending.setdefault(name, set()).update(paths)
                self._write_journal_unlocked()

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node: Node) -> None:
        """A node is finished once every one of its outputs is saved."""
        with self._lock:
            unsaved = self._unsaved.get(node.name)
            if unsaved is None:
                return
            unsaved.discard(dataset_name)
            finished = not unsaved
        if finished:
            self._finish(node.name)

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        """A node with no outputs is finished when it returns."""
        if not node.outputs:
            self._finish(node.name)

    def _finish(self, name: str) -> None:
        with self._lock:
            self._unsaved.pop(name, None)
            if self._pending.pop(name, None) is not None:
                self._write_journal_unlocked()

    @hook_impl
    def after_pipeline_run(self) -> None:
        """Everything finished: nothing to undo."""
        self._pending = {}
        self._write_journal()

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        """Delete the output files of every node that did not finish."""
        removed = _remove(path for paths in self._pending.values() for path in paths)
        if self._pending:
            logger.error(
                "The run stopped with an error (%s). %d step(s) did not finish; removed %d "
                "output file(s) of theirs (half-written, or left by an earlier run), so that "
                "`kedro run ... --only-missing-outputs` with the same options makes them again.",
                type(error).__name__,
                len(self._pending),
                len(removed),
            )
        self._pending = {}
        self._write_journal()


# --- one run at a time per data folder ------------------------------------------------------

LOCK_NAME = ".run.lock"
# Seconds a run waits for another run of the same project to finish (0: stop at once;
# "inf": wait as long as it takes).
LOCK_WAIT_ENV = "CLNM_RUN_LOCK_WAIT_S"
_LOCK_POLL_S = 1.0


class RunLockedError(RuntimeError):
    """Another run holds this project's data folder."""


def _describe(holder: dict[str, Any]) -> str:
    return (
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started "
        f"{holder.get('started', '?')}: {holder.get('command', '?')!r}"
    )


def _lock_wait_s() -> float:
    text = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise RunLockedError(
            f"{LOCK_WAIT_ENV}={text!r} is not a number of seconds (or 'inf')."
        ) from None
    return max(value, 0.0)


_HELD: dict[str, int] = {}  # lock path -> open descriptor, for the locks this process holds


class RunLock:
    """An exclusive lock on one project's ``data/`` folder (``data/.run.lock``).

    The lock is an ``flock`` on the file, which the operating system releases when the process
    ends, however it ends: a lock file left by a killed run is found *stale* and taken over
    with a warning. The file holds the holder's pid, host, start time and command, for the
    message a second run stops with. A local file system is assumed (``flock`` on a network
    file system may not exclude runs on other hosts).
    """

    def __init__(self, data: Path) -> None:
        self.path = Path(data) / LOCK_NAME
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the lock file says about the run holding (or last holding) it."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self, wait_s: float = 0.0) -> None:
        """Take the lock, waiting up to ``wait_s`` seconds for a running holder to finish.

        Raises
        ------
        RunLockedError
            Another live process holds the lock (after waiting), or the folder is not writable.
        """
        key = str(self.path)
        if key in _HELD:  # an earlier session of this process that did not finish cleanly
            os.close(_HELD.pop(key))
        deadline = time.monotonic() + wait_s
        announced = False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as error:
                raise RunLockedError(
                    f"Cannot create the run lock {self.path} ({error.strerror}); the project's "
                    "data folder must be writable."
                ) from error
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = self.holder()
                if time.monotonic() >= deadline:
                    raise RunLockedError(
                        f"Another run is using this project's data folder ({self.path.parent}): "
                        f"{_describe(holder)}. Two runs in one project would overwrite each "
                        "other's outputs. Wait for it to finish, stop it, run in another "
                        f"copy of the project, or set {LOCK_WAIT_ENV}=<seconds> (or inf) to "
                        "wait for it."
                    ) from None
                if not announced:
                    logger.warning(
                        "Waiting for the run holding %s (%s).", self.path, _describe(holder)
                    )
                    announced = True
                time.sleep(_LOCK_POLL_S)
                continue
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed the file as we opened it: start again
                os.close(fd)
                continue
            break
        earlier = os.read(fd, 1 << 16).decode("utf-8", errors="replace").strip()
        if earlier:
            try:
                stale = json.loads(earlier)
            except ValueError:
                stale = {}
            logger.warning(
                "Taking over a stale run lock %s: the run that held it (%s) ended without "
                "releasing it (killed?).",
                self.path,
                _describe(stale),
            )
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(this_process(), indent=1).encode("utf-8"))
        os.fsync(fd)
        self._fd = fd
        _HELD[key] = fd

    def release(self) -> None:
        """Remove the lock file and let the next run in."""
        if self._fd is None:
            return
        if _HELD.get(str(self.path)) == self._fd:
            _HELD.pop(str(self.path))
            self.path.unlink(missing_ok=True)  # while still locked: a waiter then retries
            os.close(self._fd)
        self._fd = None


class RunLockHooks:
    """One run at a time per project ``data/`` folder; runs of other project copies go on.

    The lock is taken before any other hook (before the MLflow run starts and before the
    unfinished-outputs journal is read), and released when the run ends, well or badly.
    """

    def __init__(self) -> None:
        self._lock: RunLock | None = None
        self._atexit = False

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        """Take the project's run lock, or stop (or wait) if another run holds it."""
        if fcntl is None:  # pragma: no cover - not POSIX
            logger.warning("No run lock on this platform: never start two runs in one project.")
            return
        project = Path(run_params.get("project_path") or Path.cwd()).resolve()
        data = project / "data"
        data.mkdir(parents=True, exist_ok=True)
        self._lock = RunLock(data)
        self._lock.acquire(_lock_wait_s())
        if not self._atexit:  # Ctrl-C, SIGTERM or a failing hook: no after-run hook runs
            atexit.register(self._release)
            self._atexit = True

    @hook_impl(trylast=True)
    def after_pipeline_run(self) -> None:
        """Release the lock once every other hook is done."""
        self._release()

    @hook_impl(trylast=True)
    def on_pipeline_error(self) -> None:
        """Release the lock once every other hook is done."""
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


# --- an MLflow run status that tells the truth ----------------------------------------------

TAG_PREFIX = "clnm."
END_REASON_TAG = "clnm.end_reason"
_SIGNAL_EXIT = 128  # a process ended by signal N exits with 128 + N


class Terminated(SystemExit):
    """SIGTERM arrived: unwind like Ctrl-C does (not an ``Exception``: nothing swallows it),
    and exit with the status a process killed by the signal has."""


def _sqlite_path(url: str | None, project: Path) -> Path | None:
    if not url or not str(url).startswith("sqlite:///"):
        return None
    path = Path(str(url)[len("sqlite:///") :])
    return path if path.is_absolute() else project / path


def fail_stale_optuna_trials(storage_path: Path) -> int:
    """Mark every trial still RUNNING in the SQLite Optuna store ``storage_path`` as FAIL.

    Called by a run that holds the project's run lock, with the project's own SQLite store
    (one worker by design): a running trial there belongs to a process that was killed.
    Returns the number of trials marked.
    """
    if not storage_path.is_file():
        return 0
    storage = optuna.storages.RDBStorage(f"sqlite:///{storage_path}")
    marked = 0
    try:
        for study in storage.get_all_studies():
            for trial in storage.get_all_trials(
                study._study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
            ):
                storage.set_trial_system_attr(
                    trial._trial_id, "fail_reason", "left running by a process that was killed"
                )
                storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
                marked += 1
    finally:
        storage.remove_session()
        storage.engine.dispose()
    if marked:
        logger.warning(
            "Marked %d Optuna trial(s) left RUNNING by a killed run as FAIL (%s).",
            marked,
            storage_path,
        )
    return marked


def mark_abandoned_runs(client: Any, experiment_id: str, current_run_id: str | None) -> list[str]:
    """Close MLflow runs of this host still RUNNING whose process no longer exists (kill -9).

    They are set KILLED with the tag ``clnm.end_reason`` saying why. Returns their ids.
    """
    host = socket.gethostname()
    marked = []
    for run in client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    ):
        tags = run.data.tags
        if run.info.run_id == current_run_id or tags.get("clnm.host") != host:
            continue
        try:
            pid = int(tags.get("clnm.pid", "0"))
        except ValueError:
            continue
        if process_alive(pid, tags.get("clnm.process_start", "")):
            continue
        client.set_tag(
            run.info.run_id,
            END_REASON_TAG,
            f"found RUNNING by a later run: its process (pid {pid} on {host}) had ended "
            "without closing it (killed, e.g. kill -9 or out of memory)",
        )
        client.set_terminated(run.info.run_id, "KILLED")
        marked.append(run.info.run_id)
    if marked:
        logger.warning(
            "MLflow run(s) %s were left RUNNING by a killed process; marked KILLED.", marked
        )
    return marked


class RunStatusHooks:
    """The MLflow run ends FINISHED only when the whole run, hooks included, finished.

    kedro-mlflow marks the run FAILED when a node fails; everything else used to leave it
    FINISHED (MLflow's exit handler) or RUNNING for ever. Here:

    - Ctrl-C (SIGINT) and SIGTERM end the run as KILLED (SIGTERM unwinds like Ctrl-C);
    - any other way the process ends before the run closed (a hook failing before or after
      the nodes, an exception outside the runner) ends it as FAILED;
    - a run left RUNNING by a process killed outright (``kill -9``, out of memory) is found by
      the next run in the same project and marked KILLED; Optuna trials it left RUNNING in the
      project's SQLite store are marked FAIL.

    Each closed run carries the tag ``clnm.end_reason``; each run carries ``clnm.pid``,
    ``clnm.host`` and ``clnm.process_start`` so that a later run can tell whether it is alive.
    """

    def __init__(self) -> None:
        self._run_id: str | None = None
        self._completed = True
        self._signal: str | None = None
        self._previous: dict[int, Any] = {}
        self._atexit = False

    @hook_impl(trylast=True)  # after kedro-mlflow has started the run
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        """Tag the run with this process; close what killed runs left open; trap signals."""
        project = Path(run_params.get("project_path") or Path.cwd()).resolve()
        self._signal, self._completed = None, False
        storage = None
        if "params:optuna_storage_url" in catalog:
            try:
                url = storage_url_in_use(
                    catalog.load("params:optuna_storage_url"),
                    catalog.load("optuna_storage") if "optuna_storage" in catalog else None,
                )
                storage = _sqlite_path(url, project)
            except Exception:  # a bad URL is reported by the node that uses it
                storage = None
        if storage is not None and storage.resolve().is_relative_to(project / "data"):
            # the run lock (RunLockHooks) covers data/: no other process uses this store
            fail_stale_optuna_trials(storage.resolve())
        run = mlflow.active_run()
        self._run_id = run.info.run_id if run is not None else None
        if run is not None:
            me = this_process()
            mlflow.set_tags({f"{TAG_PREFIX}{k}": me[k] for k in ("pid", "host", "process_start")})
            mark_abandoned_runs(mlflow.MlflowClient(), run.info.experiment_id, self._run_id)
        self._trap_signals()
        if not self._atexit:
            atexit.register(self.close_unfinished_run)
            self._atexit = True

    @hook_impl(trylast=True)  # after kedro-mlflow has closed the run
    def after_pipeline_run(self) -> None:
        """Everything, hooks included, went through: MLflow has the run FINISHED."""
        self._completed = True
        self._restore_signals()

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        """kedro-mlflow marks the run FAILED; say why."""
        self._completed = True
        self._restore_signals()
        if self._run_id is not None:
            with contextlib.suppress(Exception):
                mlflow.MlflowClient().set_tag(
                    self._run_id, END_REASON_TAG, f"a step failed: {type(error).__name__}"
                )

    # --- signals and exit -----------------------------------------------------------------

    def _trap_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _restore_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal = signal.Signals(signum).name
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(_SIGNAL_EXIT + signum)

    def close_unfinished_run(self) -> str | None:
        """At exit: end a run that did not finish as KILLED (signal) or FAILED; its status."""
        if self._completed or self._run_id is None:
            return None
        self._completed = True
        if self._signal == "SIGINT":
            status, reason = "KILLED", "interrupted (Ctrl-C, SIGINT)"
        elif self._signal is not None:
            status, reason = "KILLED", f"stopped by {self._signal}"
        else:
            status = "FAILED"
            reason = "the process ended before the run finished (a hook or the runner failed)"
        try:
            client = mlflow.MlflowClient()
            if client.get_run(self._run_id).info.status != "RUNNING":
                return None
            client.set_tag(self._run_id, END_REASON_TAG, reason)
            # kedro-mlflow reopens its run in every node (nested: the same run many times on
            # MLflow's stack): empty the stack, or MLflow's own exit handler marks it FINISHED
            while mlflow.active_run() is not None:
                mlflow.end_run(status)
            client.set_terminated(self._run_id, status)
        except Exception as error:  # at exit: report, never raise
            logger.error("Could not mark the MLflow run %s %s: %s", self._run_id, status, error)
            return None
        logger.error("MLflow run %s marked %s: %s.", self._run_id, status, reason)
        return status


# --- scoring the training patients ----------------------------------------------------------

SCORED_PATIENTS = "inference_scored_patients"
TRAINING_SPLITS_DATASET = "patient_splits"


class TrainedOnHooks:
    """Warn when ``kedro run --pipelines inference`` scores patients the models were fitted on.

    Their probabilities are optimistic (the models have seen them), not a prediction. The
    check uses this project's own ``patient_splits`` (``data/03_primary``), when a training
    run left one; the packaged model carries no patient list.
    """

    def __init__(self) -> None:
        self._catalog: Any = None

    @hook_impl
    def before_pipeline_run(self, catalog: Any) -> None:
        """Keep the catalog, to read the training split later."""
        self._catalog = catalog

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        """After the patients to score are chosen: are any of them training patients?"""
        scored = outputs.get(SCORED_PATIENTS)
        if scored is None or self._catalog is None:
            return
        try:
            if TRAINING_SPLITS_DATASET not in self._catalog or not self._catalog.exists(
                TRAINING_SPLITS_DATASET
            ):
                return
            splits = self._catalog.load(TRAINING_SPLITS_DATASET)
        except Exception as error:  # a check, never a reason to stop scoring
            logger.debug("No training split to compare the scored patients with: %s", error)
            return
        warn_on_training_patients(scored, splits)


def warn_on_training_patients(scored: Any, splits: Any) -> list[str]:
    """Log a warning naming how many scored patients are training patients; returns them."""
    training = set(splits.loc[splits["split"].astype(str) == "train", "patient_id"].astype(str))
    seen = sorted(set(scored["patient_id"].astype(str)) & training)
    if seen:
        logger.warning(
            "%d of the %d patients scored (e.g. %s) are training patients of this project "
            "(data/03_primary/patient_splits.csv): the models were fitted on them, so their "
            "probabilities are optimistic, not predictions.",
            len(seen),
            len(scored),
            ", ".join(seen[:3]),
        )
    return seen


# --- the same numbers on any machine: PyTorch's threads, OpenBLAS's kernels ----------------

TORCH_THREADS_ENV = "CLNM_TORCH_THREADS"
# PyTorch threads for the work outside the networks' own passes. No number depends on it: the
# networks train and predict with one thread whatever it says (PyTorch splits a convolution's
# sums by thread; clnm_kedro.networks.cpu_numerics). A fixed count rather than every core keeps
# a run from crowding a shared machine. 0 or "auto": PyTorch's own choice (all cores).
DEFAULT_TORCH_THREADS = 2


def torch_threads() -> int | None:
    """The intra-op thread count a run uses (``None``: PyTorch's default)."""
    text = os.environ.get(TORCH_THREADS_ENV, "").strip().lower()
    if not text:
        return DEFAULT_TORCH_THREADS
    if text in ("0", "auto"):
        return None
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(
            f"{TORCH_THREADS_ENV}={text!r}: give a number of threads (1, 2, ...) or 0/auto."
        )
    return count


# OpenBLAS kernels that give the same numbers as on any AVX2 machine (Zen uses Haswell's).
AVX2_BLAS_KERNELS = ("haswell", "zen")


def check_blas_kernels() -> str | None:
    """A warning when NumPy's OpenBLAS runs wider (AVX-512) kernels than an AVX2 machine has.

    Their sums differ in the last bits, and so do the heads fitted with them. The kernel is
    chosen when NumPy loads, so only ``OPENBLAS_CORETYPE=Haswell`` in the environment of the
    command (the Makefile exports it) can change it.
    """
    from threadpoolctl import threadpool_info  # noqa: PLC0415 - scikit-learn's dependency

    for library in threadpool_info():
        architecture = str(library.get("architecture") or "")
        if library.get("internal_api") != "openblas" or not architecture:
            continue
        if architecture.lower() not in AVX2_BLAS_KERNELS:
            message = (
                f"OpenBLAS uses its {architecture} kernels: the heads' numbers may differ in "
                "the last digits from another machine's. For the numbers of any AVX2 machine, "
                "start the run with OPENBLAS_CORETYPE=Haswell in the environment (`make run` "
                "does), or CLNM_PIN_CPU_KERNELS=0 to silence this."
            )
            logger.warning(message)
            return message
    return None


class SameNumbersHooks:
    """The same numbers on any x86-64 machine with AVX2 (docs/reproducibility.md).

    PyTorch runs with :func:`torch_threads` intra-op threads (the networks' own passes with
    one, see :mod:`clnm_kedro.networks.cpu_numerics`); a warning says when NumPy's OpenBLAS
    runs AVX-512 kernels (see :func:`check_blas_kernels`).
    """

    @hook_impl
    def before_pipeline_run(self) -> None:
        """Fix the thread count before any node runs."""
        if os.environ.get("CLNM_PIN_CPU_KERNELS", "1").strip() not in ("0", "false", "no"):
            check_blas_kernels()
        count = torch_threads()
        if count is None:
            return
        import torch  # noqa: PLC0415 - only runs that use it pay for the import

        if torch.get_num_threads() != count:
            logger.info(
                "PyTorch runs with %d thread(s) (%s; the networks train with one).",
                count,
                TORCH_THREADS_ENV,
            )
            torch.set_num_threads(count)
