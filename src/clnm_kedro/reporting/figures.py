"""The study's figures: ROC, calibration and decision curves, training curves, Grad-CAM panels
and the oracle comparison.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, nothing left open), ready for Kedro's ``MatplotlibDataset`` or the HTML report.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from clnm_kedro.metrics import net_benefit
from clnm_kedro.registry import VIEWS
from clnm_kedro.reporting.calibration_stats import smoothed_calibration
from clnm_kedro.reporting.model_metrics import auc_with_ci
from clnm_kedro.reporting.predictions import (
    MODEL_ORDER,
    model_label,
    models_in,
    shown_split,
    split_label,
    split_rows,
)
from clnm_kedro.reporting.tables import format_auc

__all__ = [
    "model_colour",
    "plot_calibration_curves",
    "plot_decision_curves",
    "plot_gradcam_panel",
    "plot_net_benefit_difference",
    "plot_oracle_comparison",
    "plot_roc_curves",
    "plot_training_overview",
]

_PANEL = 4.6  # inches per panel side
_PALETTE = colormaps["tab10"]


def model_colour(model: str) -> tuple[float, float, float, float]:
    """The same colour for a model in every figure."""
    if model in MODEL_ORDER:
        index = MODEL_ORDER.index(model)
    else:  # a stable colour for other names (str hash() changes between runs)
        index = len(MODEL_ORDER) + zlib.crc32(model.encode("utf-8"))
    return _PALETTE(index % 10)


def _empty_panel(axes: Axes, text: str) -> None:
    axes.text(
        0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="grey", wrap=True
    )
    axes.set_xticks([])
    axes.set_yticks([])


def _panel_models(predictions: pd.DataFrame, split: str) -> list[tuple[str, pd.DataFrame, str]]:
    """``(model, rows, label)`` of every model drawn in a panel of ``split``.

    A ``train_cv`` panel shows each model's out-of-fold predictions, or its apparent ones
    (labelled so) where it has none.
    """
    wanted = set(models_in(predictions, split))
    if split == "train_cv":
        wanted |= set(models_in(predictions, "train"))
    drawn = []
    for model in models_in(predictions):
        if model not in wanted:
            continue
        used = shown_split(predictions, model, split)
        label = model_label(model) + (" (apparent)" if used != split else "")
        drawn.append((model, split_rows(predictions, model, used), label))
    return drawn


def _panel_title(split: str) -> str:
    if split == "train_cv":
        return "Training centres (out-of-fold)"
    return split_label(split)


def _split_axes(splits: Sequence[str], height: float = _PANEL) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(_PANEL * len(splits) + 0.6, height), layout="constrained")
    axes = figure.subplots(1, len(splits), squeeze=False)[0]
    return figure, list(axes)


def plot_roc_curves(
    predictions: pd.DataFrame,
    splits: Sequence[str] = ("train", "external"),
    level: float = 0.95,
) -> Figure:
    """ROC curves of every model, one panel per data set; AUC and CI in the legend."""
    figure, panels = _split_axes(splits)
    for axes, split in zip(panels, splits, strict=True):
        axes.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        drawn = 0
        for model, rows, label in _panel_models(predictions, split):
            y = rows["clnm"].to_numpy(dtype=np.int64)
            p = rows["probability"].to_numpy(dtype=np.float64)
            if y.min() == y.max():
                continue
            fpr, tpr, _ = roc_curve(y, p)
            auc = format_auc(*auc_with_ci(y, p, level))
            axes.plot(fpr, tpr, lw=1.6, color=model_colour(model), label=f"{label}: {auc}")
            drawn += 1
        axes.set(
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
            aspect="equal",
            xlabel="1 - specificity",
            ylabel="sensitivity",
            title=_panel_title(split),
        )
        if drawn:
            axes.legend(
                loc="lower right",
                fontsize="small",
                frameon=False,
                title=f"AUC ({100 * level:g}% CI)",
                title_fontsize="small",
            )
        else:
            _empty_panel(axes, "no predictions with both outcomes")
    return figure


def plot_calibration_curves(
    predictions: pd.DataFrame,
    splits: Sequence[str] = ("train_cv", "external"),
    level: float = 0.95,
) -> Figure:
    """Smoothed calibration curves with confidence bands, the predictions' spread beneath.

    Per data set: each model's flexible calibration curve (logistic regression on a restricted
    cubic spline of the logit, see :func:`~clnm_kedro.reporting.calibration_stats.
    smoothed_calibration`) with its pointwise band, and below it a histogram of the predicted
    risks of each model.
    """
    figure = Figure(figsize=(_PANEL * len(splits) + 0.6, _PANEL * 1.3), layout="constrained")
    grid = figure.add_gridspec(2, len(splits), height_ratios=(4, 1))
    for column, split in enumerate(splits):
        axes = figure.add_subplot(grid[0, column])
        spread = figure.add_subplot(grid[1, column], sharex=axes)
        axes.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="perfect calibration")
        panel = _panel_models(predictions, split)
        bins = np.linspace(0.0, 1.0, 41)
        for model, rows, label in panel:
            y = rows["clnm"].to_numpy(dtype=np.int64)
            p = rows["probability"].to_numpy(dtype=np.float64)
            colour = model_colour(model)
            curve = smoothed_calibration(y, p, level)
            if not curve.empty:
                axes.fill_between(
                    curve["predicted"], curve["lower"], curve["upper"], color=colour, alpha=0.12
                )
                axes.plot(curve["predicted"], curve["observed"], lw=1.5, color=colour, label=label)
            spread.hist(p, bins=bins, histtype="step", color=colour, lw=1.0)
        axes.set(
            xlim=(-0.01, 1.01),
            ylim=(-0.01, 1.01),
            ylabel="observed CLNM risk",
            title=f"{_panel_title(split)}: smoothed, {100 * level:g}% band",
        )
        axes.tick_params(labelbottom=False)
        spread.set(xlabel="predicted risk", ylabel="patients")
        if panel:
            axes.legend(loc="upper left", fontsize="small", frameon=False)
        else:
            _empty_panel(axes, "no predictions")
    return figure


def plot_net_benefit_difference(
    net_benefit_table: pd.DataFrame, splits: Sequence[str] = ("train_cv", "external")
) -> Figure:
    """Net benefit minus treat-all's, with its bootstrap band, per model and data set."""
    figure, panels = _split_axes(splits)
    for axes, split in zip(panels, splits, strict=True):
        rows = net_benefit_table[net_benefit_table["panel"] == split]
        axes.axhline(0.0, color="black", lw=1.0, ls="--", label="treat all")
        for model in [m for m in MODEL_ORDER if m in set(rows["model"])] + sorted(
            set(rows["model"]) - set(MODEL_ORDER)
        ):
            curve = rows[rows["model"] == model].sort_values("threshold")
            colour = model_colour(model)
            label = model_label(model) + (
                " (apparent)" if (curve["split"] != split).any() else ""
            )
            axes.fill_between(
                curve["threshold"], curve["delta_lower"], curve["delta_upper"], color=colour,
                alpha=0.12,
            )  # fmt: skip
            axes.plot(curve["threshold"], curve["delta_treat_all"], color=colour, lw=1.4,
                      label=label)  # fmt: skip
        axes.set(
            xlabel="threshold probability",
            ylabel="Δ net benefit vs treat all",
            title=_panel_title(split),
        )
        if rows.empty:
            _empty_panel(axes, "no predictions with both outcomes")
        else:
            axes.legend(loc="best", fontsize="small", frameon=False)
    return figure


def plot_decision_curves(
    predictions: pd.DataFrame,
    splits: Sequence[str] = ("train", "external"),
    thresholds: Sequence[float] = tuple(round(0.01 * i, 2) for i in range(1, 100)),
) -> Figure:
    """Net benefit of every model against treat-all and treat-none, per data set."""
    figure, panels = _split_axes(splits)
    for axes, split in zip(panels, splits, strict=True):
        highest = 0.0
        treat_all: pd.DataFrame | None = None
        for model, rows, label in _panel_models(predictions, split):
            y = rows["clnm"].to_numpy(dtype=np.int64)
            if y.min() == y.max():
                continue
            curve = net_benefit(y, rows["probability"].to_numpy(), thresholds)
            axes.plot(
                curve["threshold"],
                curve["net_benefit_model"],
                lw=1.4,
                color=model_colour(model),
                label=label,
            )
            highest = max(highest, float(y.mean()))
            if treat_all is None:
                treat_all = curve
        if treat_all is None:
            _empty_panel(axes, "no predictions with both outcomes")
            axes.set_title(_panel_title(split))
            continue
        axes.plot(
            treat_all["threshold"],
            treat_all["net_benefit_treat_all"],
            color="black",
            lw=1.0,
            ls="--",
            label="treat all",
        )
        axes.axhline(0.0, color="grey", lw=1.0, label="treat none")
        axes.set(
            xlim=(0.0, max(thresholds)),
            ylim=(-0.05, highest * 1.1 + 0.02),
            xlabel="threshold probability",
            ylabel="net benefit",
            title=_panel_title(split),
        )
        axes.legend(loc="upper right", fontsize="small", frameon=False)
    return figure


def plot_training_overview(histories: Mapping[str, pd.DataFrame]) -> Figure:
    """Loss and internal-validation AUC per epoch of every network, one row per network.

    ``histories`` maps a model id to its history (``epoch, train_loss, val_loss, val_auc,
    ...``); the epoch kept (highest validation AUC, ties to the lower loss) is marked.
    """
    names = list(histories) or ["(none)"]
    figure = Figure(figsize=(10, 2.9 * len(names)), layout="constrained")
    grid = figure.subplots(len(names), 2, squeeze=False)
    needed = ("epoch", "train_loss", "val_loss", "val_auc")
    for (loss_axes, auc_axes), name in zip(grid, names, strict=True):
        history = histories.get(name)
        if history is None or history.empty:
            why = "no training history"
        else:
            missing = [column for column in needed if column not in history.columns]
            why = f"history lacks {', '.join(missing)}" if missing else ""
        if why:
            _empty_panel(loss_axes, f"{model_label(name)}: {why}")
            _empty_panel(auc_axes, "")
            continue
        ranked = history.sort_values(["val_auc", "val_loss"], ascending=[False, True])
        best = ranked["epoch"].iloc[0]
        colour = model_colour(name)
        loss_axes.plot(
            history["epoch"], history["train_loss"], color=colour, lw=1.4, label="training"
        )
        loss_axes.plot(
            history["epoch"],
            history["val_loss"],
            color=colour,
            lw=1.4,
            ls="--",
            label="internal validation",
        )
        auc_axes.plot(
            history["epoch"], history["val_auc"], color=colour, lw=1.4, marker="o", ms=2.5
        )
        auc_axes.axhline(0.5, color="grey", lw=0.8, ls=":")
        for axes in (loss_axes, auc_axes):
            axes.axvline(best, color="tab:red", lw=1.0, ls=":", label=f"kept: epoch {best:g}")
        loss_axes.set(xlabel="epoch", ylabel="loss", title=f"{model_label(name)}: loss")
        auc_axes.set(
            xlabel="epoch",
            ylabel="AUC",
            ylim=(0.0, 1.0),
            title=f"{model_label(name)}: internal validation AUC",
        )
        loss_axes.legend(fontsize="small", frameon=False)
        auc_axes.legend(fontsize="small", frameon=False, loc="lower right")
    return figure


def plot_gradcam_panel(
    crops: np.ndarray,
    heatmaps: np.ndarray,
    views: Sequence[int],
    row_titles: Sequence[str],
    *,
    title: str,
    alpha: float = 0.45,
) -> Figure:
    """Each patient's crop and its Grad-CAM overlay, for every view the network reads.

    Parameters
    ----------
    crops
        uint8 ``(N, 2, S, S)`` crops of the patients shown (all views).
    heatmaps
        ``(N, V, S, S)`` in [0, 1], column ``v`` for crop view ``views[v]``.
    views
        Crop view of each heatmap column.
    row_titles
        One caption per patient (e.g. ID, outcome, predicted risk).
    title
        Figure title (the network).
    alpha
        Opacity of the heatmap over the crop.
    """
    n_patients = len(row_titles)
    if n_patients == 0:
        figure = Figure(figsize=(6, 2), layout="constrained")
        _empty_panel(figure.subplots(), "no patients to show")
        figure.suptitle(title)
        return figure
    columns = 2 * len(views)
    figure = Figure(figsize=(2.3 * columns, 2.5 * n_patients + 0.4), layout="constrained")
    grid = figure.subplots(n_patients, columns, squeeze=False)
    colour_map = colormaps["jet"]
    for row, caption in enumerate(row_titles):
        for column, view in enumerate(views):
            image = crops[row, view]
            plain, overlay = grid[row, 2 * column], grid[row, 2 * column + 1]
            plain.imshow(image, cmap="gray", vmin=0, vmax=255)
            overlay.imshow(image, cmap="gray", vmin=0, vmax=255)
            overlay.imshow(heatmaps[row, column], cmap=colour_map, vmin=0.0, vmax=1.0, alpha=alpha)
            name = VIEWS[view] if view < len(VIEWS) else f"view {view}"
            plain.set_title(f"{name}", fontsize="small")
            overlay.set_title(f"{name}: Grad-CAM", fontsize="small")
            for axes in (plain, overlay):
                axes.set_xticks([])
                axes.set_yticks([])
        # plain text: a patient ID such as "P$1$" is not matplotlib mathtext
        grid[row, 0].set_ylabel(caption, fontsize="small", parse_math=False)
    figure.suptitle(title)
    return figure


def plot_oracle_comparison(oracle: pd.DataFrame, split: str = "external") -> Figure:
    """Each model's AUC (CI) beside the oracle AUC of the same patients, on one data set."""
    rows = oracle[oracle["split"] == split].reset_index(drop=True)
    figure = Figure(figsize=(7, 0.5 * max(len(rows), 2) + 1.4), layout="constrained")
    axes = figure.subplots()
    if rows.empty:
        _empty_panel(axes, "no oracle risk")
        return figure
    positions = np.arange(len(rows))[::-1]
    for position, row in zip(positions, rows.itertuples(index=False), strict=True):
        colour = model_colour(row.model)
        low, high = row.auc_lower, row.auc_upper
        if math.isfinite(float(low)) and math.isfinite(float(high)):
            axes.plot([low, high], [position, position], color=colour, lw=2)
        axes.plot(row.auc, position, "o", color=colour)
        axes.plot(row.oracle_auc, position, "D", color="black", ms=5, mfc="white")
    axes.set_yticks(positions, [model_label(m) for m in rows["model"]])
    axes.plot([], [], "D", color="black", mfc="white", label="oracle (true risk), same patients")
    axes.plot([], [], "o", color="grey", label="model, with CI")
    axes.axvline(0.5, color="grey", lw=0.8, ls=":")
    values = pd.concat([rows["auc_lower"], rows["auc"], rows["oracle_auc"]]).astype(float)
    lowest = float(np.nanmin(values.to_numpy())) if values.notna().any() else 0.4
    axes.set(
        xlim=(min(0.4, lowest - 0.05), 1.0),
        xlabel="AUC",
        title=f"{split_label(split)}: model vs oracle",
    )
    axes.legend(loc="lower left", fontsize="small", frameon=False)
    return figure
