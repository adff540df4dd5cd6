"""Optuna's figures of a head study (optimisation history, hyperparameter importance)."""

from __future__ import annotations

import optuna
from matplotlib.figure import Figure
from optuna.trial import TrialState

from clnm_kedro.reporting.not_drawn import not_drawn


def optuna_figures(study: optuna.Study) -> dict[str, Figure | None]:
    """Optuna's optimisation-history and parameter-importance figures of ``study``.

    Returns
    -------
    dict
        ``{"optimization_history": Figure | None, "param_importances": Figure | None}``;
        ``None`` where the study has fewer than two complete trials (or, for importances,
        no searched hyperparameter or no CV AUC that varies: fANOVA has nothing to explain). A
        plot that fails anyway never fails the run: it is logged, and its figure only says that
        it could not be drawn and why.
    """
    import warnings  # noqa: PLC0415

    import matplotlib  # noqa: PLC0415
    from optuna.visualization import matplotlib as optuna_matplotlib  # noqa: PLC0415

    figures: dict[str, Figure | None] = {"optimization_history": None, "param_importances": None}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return figures
    # Optuna switches matplotlib to its "ggplot" style for good; keep that to these figures.
    with warnings.catch_warnings(), matplotlib.rc_context():
        # optuna marks its matplotlib plots as experimental; that is optuna's own notice.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            axes = optuna_matplotlib.plot_optimization_history(study)
            axes.set_title(f"Optimisation history: {study.study_name}")
            axes.set_ylabel("Mean cross-validated AUC")  # the objective; pruned trials not shown
            figures["optimization_history"] = axes.figure
        except Exception as error:  # a figure never sinks a run
            figures["optimization_history"] = not_drawn(
                f"Optimisation history: {study.study_name}", error
            )
        varying = {
            name
            for name in complete[0].params
            if all(name in t.params for t in complete)
            and len({repr(t.params[name]) for t in complete}) > 1
        }
        if varying and len({t.value for t in complete}) > 1:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # repeatable
            try:
                axes = optuna_matplotlib.plot_param_importances(
                    study, evaluator=evaluator, params=sorted(varying)
                )
                # Optuna's own title sits on the left: replace it rather than overlap it.
                axes.set_title(f"Hyperparameter importance: {study.study_name}", loc="left")
                axes.figure.set_layout_engine("tight")  # room for long hyperparameter names
                figures["param_importances"] = axes.figure
            except Exception as error:  # e.g. tied trials: "zero total variance in all trees"
                figures["param_importances"] = not_drawn(
                    f"Hyperparameter importance: {study.study_name}", error
                )
    return figures
