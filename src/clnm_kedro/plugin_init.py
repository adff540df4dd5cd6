"""What runs when the ``kedro`` command starts, before Kedro loads its plugins' commands.

Registered in ``pyproject.toml`` as this package's ``kedro.init`` entry point (Kedro calls
every one first thing), and called again from ``settings.py`` for sessions made outside the
command line (notebooks, tests); a second call does nothing.

MLflow 3 prints "Add type hints to the `predict` method to enable data validation ..." when a
``PythonModel`` subclass whose ``predict`` has no type hints is *defined*. kedro-mlflow's
``KedroPipelineModel`` (kedro-mlflow 2.0.3, the latest) is such a class, and Kedro imports it
with kedro-mlflow's commands on every ``kedro`` command, before any project code: the notice
was the first thing every command printed. It is about that upstream class, whose input
MLflow cannot check from hints; the scoring model this project logs with it carries a
signature (docs/inference.md), which is what MLflow checks its input against. MLflow raises
the notice under its own ``simplefilter("once")``, out of reach of any warnings filter, so the
one message is dropped by the display function while that class is imported, and only then.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any, TextIO

TYPE_HINT_NOTICE = "Add type hints to the `predict` method"
KEDRO_MLFLOW_MODEL = "kedro_mlflow.mlflow.kedro_pipeline_model"


def import_kedro_mlflow_model() -> None:
    """Import kedro-mlflow's ``KedroPipelineModel`` without MLflow's type-hint notice."""
    if KEDRO_MLFLOW_MODEL in sys.modules:
        return
    show = warnings.showwarning

    def show_all_but_the_notice(  # noqa: PLR0917 - warnings.showwarning's signature
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> Any:
        if TYPE_HINT_NOTICE in str(message):
            return None
        return show(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():  # restores warnings.showwarning afterwards
        warnings.showwarning = show_all_but_the_notice
        try:
            import kedro_mlflow.mlflow  # noqa: F401, PLC0415
        except ImportError:  # without kedro-mlflow there is nothing to quieten
            return
