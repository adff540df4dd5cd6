"""Which process is this, and is another one still alive? (Kedro-free; used by the run lock,
the MLflow run status and the simulator's clean-up of folders left by killed runs.)"""

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
