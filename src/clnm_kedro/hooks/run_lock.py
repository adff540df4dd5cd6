"""One run at a time per project data folder: a lock file held by the running process.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

from kedro.framework.hooks import hook_impl

from clnm_kedro.processes import this_process

logger = logging.getLogger(__name__)


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
