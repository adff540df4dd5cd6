"""A Kedro runner that runs the nodes tagged ``side_by_side`` together and every other node
alone.

``kedro run --runner clnm_kedro.runner.SideBySideRunner`` (what ``make run`` uses). The nodes
tagged :data:`SIDE_BY_SIDE` run in threads, up to one per CPU core (``--runner-params
max_workers=N``); any other node starts only when nothing else runs, in the order
``SequentialRunner`` would run it. A node is tagged when it uses one core and is safe in a
thread: each fold network of ``dl_training``, and the simulation's summary beside the checks and
crops of the images. For the fold networks:

- a fold network trains on one intra-op thread with PyTorch's own convolution
  (:mod:`clnm_kedro.networks.cpu_numerics`) and draws its initial weights, dropout, batch order
  and augmentation from streams of its own (:mod:`clnm_kedro.networks.random_streams`), so it
  gets the numbers it gets alone; PyTorch releases the GIL while it computes;
- no tagged node draws a figure; kedro-mlflow reopens the run in each thread, and the project's
  hooks lock what they share.

Other nodes draw figures with matplotlib (not thread-safe), start their own worker processes
(the heads' studies, the simulator's rendering) or already use every core, so they gain nothing
from company. ``ParallelRunner`` (processes) needs the catalog's MLflow artifact datasets
replaced (README).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from itertools import chain
from typing import TYPE_CHECKING

import joblib
from kedro.runner import AbstractRunner
from kedro.runner.task import Task

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

# The tag of the nodes that may run side by side: one core each, safe in a thread.
SIDE_BY_SIDE = "side_by_side"


class SideBySideRunner(AbstractRunner):
    """Nodes tagged :data:`SIDE_BY_SIDE` run together in up to ``max_workers`` threads (default:
    the CPU cores available); every other node runs alone, in sequential order."""

    def __init__(self, max_workers: int | None = None, is_async: bool = False) -> None:
        if is_async:
            raise ValueError(
                "SideBySideRunner loads and saves in the node's own thread; drop --async"
            )
        super().__init__(is_async=False)
        if max_workers is not None and int(max_workers) < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self._max_workers = int(max_workers) if max_workers is not None else joblib.cpu_count()

    def _get_executor(self, max_workers: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="clnm-node")

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        load_counts = Counter(chain.from_iterable(n.inputs for n in pipeline.nodes))
        dependencies = pipeline.node_dependencies
        todo: list[Node] = list(pipeline.nodes)  # topological order, as SequentialRunner's
        done: set[Node] = set()
        running: dict[Future, Node] = {}

        def start(node: Node) -> None:
            task = Task(
                node=node, catalog=catalog, hook_manager=hook_manager, is_async=False,
                run_id=run_id,
            )
            running[executor.submit(task.execute)] = node
            todo.remove(node)

        with self._get_executor(self._max_workers) as executor:
            while todo or running:
                ready = [node for node in todo if dependencies[node] <= done]
                together = all(SIDE_BY_SIDE in node.tags for node in running.values())
                if together:
                    for node in ready:
                        if len(running) >= self._max_workers:
                            break
                        if SIDE_BY_SIDE in node.tags:
                            start(node)
                    if not running and ready:
                        start(ready[0])  # alone: nothing else starts until it ends
                if not running:
                    self._raise_runtime_error(set(todo), done, set(ready), None)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                failed: BaseException | None = None
                for future in finished:
                    node = running.pop(future)
                    error = future.exception()
                    if error is not None:
                        failed = failed or error
                        continue
                    done.add(node)
                    self._logger.debug(  # the project's own hook reports each step
                        "Completed %d out of %d tasks", len(done), len(pipeline.nodes)
                    )
                    self._release_datasets(node, catalog, load_counts, pipeline)
                if failed is not None:
                    wait(running)  # threads cannot be stopped: let the others end first
                    self._suggest_resume_scenario(pipeline, done, catalog)
                    raise failed
