"""Which process is this, is another one still alive, and how many cores may it use?
(Kedro-free; used by the run lock, the MLflow run status, the simulator's clean-up of folders
left by killed runs, and the runner and scoring that put several cores to use.)"""

from __future__ import annotations

import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, Linux), or "" if unknown.

    Together with the pid it names one process: a pid alone may be reused after a reboot or
    a long time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_alive(pid: int, started: str = "") -> bool:
    """Whether process ``pid`` (started at ``started``, if known) still runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    now = process_start(pid)
    return not (started and now and now != started)


def this_process() -> dict[str, Any]:
    """pid, host, start time and command line of this process (as written in the lock)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process_start": process_start(os.getpid()),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv) or sys.executable,
    }


def available_cores() -> int:
    """CPU cores this process may run on: its affinity, which a container or ``taskset`` may
    set below ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
