"""An MLflow run status that tells the truth: FAILED or KILLED for an interrupted run, and
runs (and Optuna trials) left RUNNING by a killed process found and marked on the next run.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import mlflow
import optuna
from kedro.framework.hooks import hook_impl

from clnm_kedro.datasets.optuna_storage_dataset import storage_url_in_use
from clnm_kedro.processes import process_alive, this_process

logger = logging.getLogger(__name__)


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
