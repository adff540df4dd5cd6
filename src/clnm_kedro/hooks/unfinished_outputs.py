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

import json
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

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
