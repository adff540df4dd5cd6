"""What a ``kedro run`` tells its user, and what it records to be repeated.

:class:`RunReportHooks` (registered in ``settings.py``):

- one console line per finished step (node) that took a second or more, with its duration
  (quicker bookkeeping steps at DEBUG), in place of Kedro's per-dataset and per-node records
  (``conf/logging.yml`` keeps those at WARNING);
- at the end of a run that evaluated the models, a short summary: where ``report.html`` is and
  each model's AUC on the external centre (from ``metrics.json``), and the MLflow run;
- the MLflow run's ``kedro_command`` tag is the whole command that repeats the run, with its
  ``--env`` and ``--params`` (kedro-mlflow's own leaves both out), and its ``env`` tag the
  configuration environment actually used (``local``, Kedro's default, when none was given;
  kedro-mlflow writes the tag only for an explicit ``--env``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from clnm_kedro.reporting.predictions import model_label

logger = logging.getLogger(__name__)

# Kedro's environment when `kedro run` is given no --env (settings.CONFIG_LOADER_ARGS).
DEFAULT_RUN_ENV = "local"
METRICS_DATASET = "metrics"
QUICK_STEP_S = 1.0  # steps quicker than this are logged at DEBUG
REPORT_DATASET = "report"

# `kedro run` options that take a comma-separated list, and the run_params key of each.
_LIST_OPTIONS: tuple[tuple[str, str], ...] = (
    ("--tags", "tags"),
    ("--nodes", "node_names"),
    ("--from-nodes", "from_nodes"),
    ("--to-nodes", "to_nodes"),
    ("--from-inputs", "from_inputs"),
    ("--to-outputs", "to_outputs"),
    ("--namespaces", "namespaces"),
)


class _DropMessages(logging.Filter):
    """Drops the records whose message starts with one of ``prefixes``."""

    def __init__(self, *prefixes: str) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet_dependencies() -> None:
    """Silence what the libraries print on every run that says nothing about this run.

    Called from ``settings.py`` and again once Kedro has created the project context
    (kedro-mlflow is imported by then); calling it twice changes nothing:

    - kedro-mlflow sets its logger to INFO and MLflow installs its own console handler when they
      are imported, after Kedro applied ``conf/logging.yml``: apply it again so its levels hold
      (and MLflow's warnings come out in the same one-line format);
    - OmegaConf's deprecation of ``register_new_resolver``, called by Kedro and kedro-mlflow;
    - MLflow's advice to log an input example with the signature (the scoring model logs a
      simulated patient; when the simulator cannot make the cohort's columns it logs none and
      says so itself: docs/inference.md);
    - MLflow's note that a model saved with pickle runs code when loaded: the networks (PyTorch
      flavour) and the scoring pipeline (kedro-mlflow's pyfunc) are saved with pickle on
      purpose, and a model is only ever loaded from this project's own store
      (docs/experiment_tracking.md);
    - MLflow's "Downloading artifacts" bars, one per parameter when kedro-mlflow packages the
      scoring model (``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=true`` brings them back).
    """
    from kedro.framework.project import LOGGING  # noqa: PLC0415 - Kedro's, once configured

    if LOGGING.data:
        LOGGING.configure(LOGGING.data)
    warnings.filterwarnings(
        "ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning
    )
    # The scoring model's input example is a simulated patient; where the simulator cannot make
    # the cohort's clinical columns there is none, and clnm_kedro.scoring.example says why.
    warnings.filterwarnings(
        "ignore", message=r".*An input example was not provided when logging", category=UserWarning
    )
    pickle_notices = _DropMessages(
        "Saving pytorch model by Pickle or CloudPickle",
        "Passing a Python object as `python_model` causes it to be serialized using CloudPickle",
    )
    for name in ("mlflow.pytorch", "mlflow.pyfunc"):
        source = logging.getLogger(name)
        if not any(isinstance(item, _DropMessages) for item in source.filters):
            source.addFilter(pickle_notices)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _dotted(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested runtime parameters as ``(dotted.key, value)`` pairs, as `--params` takes them."""
    pairs: list[tuple[str, Any]] = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            pairs.extend(_dotted(value, f"{name}."))
        else:
            pairs.append((name, value))
    return pairs


def _param_text(value: Any) -> str:
    """A parameter value as it is written after ``key=`` on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_param_text(item) for item in value) + "]"
    return str(value)


def _runner_name(recorded: Any) -> str | None:
    """The runner's class name from Kedro's ``run_params["runner"]``: a class name, ``"None"``
    (none chosen), or, from ``kedro run``, the runner object's repr
    (``<kedro.runner.sequential_runner.SequentialRunner object at 0x...>``)."""
    if not recorded or recorded == "None":
        return None
    text = str(recorded)
    if match := re.fullmatch(r"<([\w.]+) object at 0x[0-9a-fA-F]+>", text):
        text = match.group(1)
    return text.rsplit(".", 1)[-1] if text.startswith("kedro.runner.") else text


def kedro_command(run_params: Mapping[str, Any], env: str | None = None) -> str:
    """The ``kedro run`` command line that repeats a run, from Kedro's ``run_params``.

    ``env`` (default ``run_params["env"]``) is written only when it is not Kedro's default.
    """
    parts = ["kedro", "run"]
    env = env if env is not None else run_params.get("env")
    if env and env != DEFAULT_RUN_ENV:
        parts.append(f"--env={env}")
    pipelines = list(run_params.get("pipeline_names") or [])
    if pipelines and pipelines != ["__default__"]:
        parts.append("--pipelines=" + ",".join(pipelines))
    for option, key in _LIST_OPTIONS:
        values = run_params.get(key)
        if values:
            parts.append(f"{option}=" + ",".join(str(value) for value in values))
    load_versions = run_params.get("load_versions")
    if load_versions:
        parts.append(
            "--load-versions=" + ",".join(f"{name}:{ver}" for name, ver in load_versions.items())
        )
    runtime_params = run_params.get("runtime_params") or {}
    if runtime_params:
        parts.append(
            "--params="
            + ",".join(f"{key}={_param_text(value)}" for key, value in _dotted(runtime_params))
        )
    runner = _runner_name(run_params.get("runner"))
    if runner and runner != "SequentialRunner":
        parts.append(f"--runner={runner}")
    if run_params.get("only_missing_outputs"):
        parts.append("--only-missing-outputs")
    return shlex.join(parts)


def format_duration(seconds: float) -> str:
    """``4.2 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _auc_text(values: Mapping[str, Any]) -> str:
    auc = values.get("auc")
    if auc is None or (isinstance(auc, float) and math.isnan(auc)):
        return "not estimable"
    lower, upper = values.get("auc_lower"), values.get("auc_upper")
    if lower is None or upper is None or math.isnan(lower) or math.isnan(upper):
        return f"{auc:.3f}"
    return f"{auc:.3f} (95% CI {lower:.3f}-{upper:.3f})"


def summary_lines(metrics: Mapping[str, Any], report: str | None) -> list[str]:
    """The closing summary of an evaluated run: the report's path, each external AUC."""
    lines = [f"Report: {report}"] if report else []
    external = {
        model: entry["splits"]["external"]
        for model, entry in metrics.get("models", {}).items()
        if "external" in entry.get("splits", {})
    }
    if external:
        patients = {int(values.get("n", 0)) for values in external.values()}
        lines.append(
            "AUC on the external centre"
            + (f" ({patients.pop()} patients)" if len(patients) == 1 else "")
            + ":"
        )
        width = max(len(model_label(model)) for model in external)
        lines.extend(
            f"  {model_label(model):<{width}}  {_auc_text(values)}"
            for model, values in external.items()
        )
    return lines


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


class RunReportHooks:
    """One line per finished step; a closing summary; a ``kedro_command`` that repeats the run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # ThreadRunner: nodes finish in several threads
        self._started: dict[str, float] = {}
        self._run_started = 0.0
        self._done = 0
        self._total = 0
        self._project = Path.cwd()
        self._mlflow_run: tuple[str, str] | None = None

    @hook_impl(tryfirst=True)  # before kedro-mlflow sets up its tracking store
    def after_context_created(self) -> None:
        quiet_dependencies()

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline) -> None:
        """Count the steps; complete the MLflow run's tags (kedro-mlflow has started the run)."""
        self._project = Path(run_params.get("project_path") or Path.cwd()).resolve()
        self._run_started = time.perf_counter()
        self._started, self._done, self._total = {}, 0, len(pipeline.nodes)
        self._mlflow_run = None
        active = mlflow.active_run()
        if active is not None:
            env = run_params.get("env") or DEFAULT_RUN_ENV
            mlflow.set_tags({"env": env, "kedro_command": kedro_command(run_params, env)})
            self._mlflow_run = (active.info.run_name, active.info.run_id)
        logger.info("Running %d steps.", self._total)

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        with self._lock:
            self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        with self._lock:
            self._done += 1
            done = self._done
            started = self._started.pop(node.name, time.perf_counter())
        seconds = time.perf_counter() - started
        # Bookkeeping steps (well under a second) at DEBUG: the console shows where time goes.
        logger.log(
            logging.INFO if seconds >= QUICK_STEP_S else logging.DEBUG,
            "Step %d/%d done in %s: %s",
            done,
            self._total,
            format_duration(seconds),
            node.name,
        )

    @hook_impl
    def after_pipeline_run(self, pipeline: Pipeline, catalog: Any) -> None:
        """Where the report is and the external AUCs, when this run evaluated the models."""
        lines = [
            f"Run finished in {format_duration(time.perf_counter() - self._run_started)} "
            f"({self._total} steps)."
        ]
        outputs = pipeline.all_outputs()
        if METRICS_DATASET in outputs:
            try:
                metrics = catalog.get(METRICS_DATASET).load()
                report = None
                if REPORT_DATASET in outputs:
                    filepath = getattr(catalog.get(REPORT_DATASET), "_filepath", None)
                    report = _relative(Path(str(filepath)), self._project) if filepath else None
                lines.extend(summary_lines(metrics, report))
            except Exception as error:  # a summary never fails a finished run
                lines.append(f"(no summary of the evaluation: {type(error).__name__}: {error})")
        if self._mlflow_run is not None:
            name, run_id = self._mlflow_run
            lines.append(
                f"Tracked in MLflow as run '{name}' ({run_id}); open it with `make mlflow-ui`."
            )
        logger.info("\n".join(lines))
