"""Figures. Each function returns a matplotlib Figure; `io.save_figure` writes it."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from gex_core.evaluation.metrics import precision_recall_points, roc_curve_points  # noqa: E402

CLEAN, NOISY = "#2a9d8f", "#e76f51"


def learning_curve(history: pd.DataFrame, title: str):
    """history: per-epoch rows with train_loss, train_acc, test_loss, test_acc (test
    columns empty in epochs without an evaluation)."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    tested = history.dropna(subset=["test_loss", "test_acc"])
    marker = "o" if len(tested) < len(history) else None
    ax_loss.plot(history.epoch, history.train_loss, label="train (noisy labels)")
    ax_loss.plot(tested.epoch, tested.test_loss, label="test", marker=marker)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    ax_acc.plot(history.epoch, history.train_acc, label="train (noisy labels)")
    ax_acc.plot(tested.epoch, tested.test_acc, label="test", marker=marker)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def calibration_curve(record: dict, title: str) -> Figure:
    """record: `calibration.calibrate_with_pilots`' record. Escape (given labels the pilot
    member no longer predicts) and held-out accuracy per fine-tuning LR (chain 0's
    pilots as a line, the other chains' pilots as crosses), the accuracy floor
    (pretrained - tolerance) and the chosen LR."""
    grid = pd.DataFrame(record["grid"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(grid.lr, grid.heldout_accuracy, marker="o", label="held-out accuracy")
    others = pd.DataFrame(record.get("chain_pilots", []))
    if len(others):
        ax.scatter(
            others.lr,
            others.heldout_accuracy.fillna(0.0),
            marker="x",
            color="C0",
            label="other chains' pilots",
        )
    ax.plot(
        grid.lr, grid.escape, marker="s", label="escape (given labels not predicted)"
    )
    floor = record["pretrained_heldout_accuracy"] - record["tolerance"]
    ax.axhline(floor, color="grey", linestyle="--", label="accuracy floor")
    ax.axvline(record["ft_lr"], color="black", linestyle=":", label="chosen ft_lr")
    diverged = grid[~grid.finite]
    for lr in diverged.lr:
        ax.annotate("diverged", (lr, 0.5), ha="center", fontsize=8)
    ax.set(xscale="log", xlabel="fine-tuning learning rate", ylim=(-0.02, 1.02))
    # labels on the grid's rates; refined rates (between two of them) get an
    # unlabelled tick, their values are in the record and the title
    rates = grid.lr[~grid.refined] if "refined" in grid else grid.lr
    ax.set_xticks(rates, [f"{lr:g}" for lr in rates])
    ax.set_xticks(grid.lr, minor=True)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def score_histograms(scores: np.ndarray, mask: np.ndarray, title: str):
    """Overlaid clean/noisy histograms of a score on a log count axis (100 bins)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(scores.min(), scores.max(), 101)
    for part, color, name in ((~mask, CLEAN, "clean"), (mask, NOISY, "noisy")):
        # one filled step outline per group: ax.hist draws a patch per bin, which
        # costs a detection job a tenth of a second to lay out and render
        counts, _ = np.histogram(scores[part], bins)
        label = f"{name} ({part.sum()})"
        ax.stairs(counts, bins, fill=True, color=color, alpha=0.7, label=label)
    ax.set(xlabel="self-influence", ylabel="samples", yscale="log", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def detection_curves(scores: np.ndarray, mask: np.ndarray, title: str):
    """ROC and precision-recall curves of noisy-label detection."""
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4))
    fpr, tpr = roc_curve_points(mask, scores)
    ax_roc.plot(fpr, tpr, color=NOISY)
    ax_roc.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    precision, recall = precision_recall_points(mask, scores)
    ax_pr.plot(recall, precision, color=NOISY)
    ax_pr.axhline(mask.mean(), ls="--", color="grey", lw=1, label="noise rate")
    ax_pr.set(
        xlabel="recall", ylabel="precision", ylim=(0, 1.02), title="precision-recall"
    )
    ax_pr.legend()
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def detection_bars(summary: pd.DataFrame, title: str):
    """summary: rows with method, auc_mean, auc_std, ap_mean, ap_std (detection.tsv)."""
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(summary) + 2), 4))
    x = np.arange(len(summary))
    width = 0.38
    ax.bar(
        x - width / 2,
        summary.auc_mean,
        width,
        yerr=summary.auc_std,
        capsize=3,
        label="ROC-AUC",
        color="#264653",
    )
    ax.bar(
        x + width / 2,
        summary.ap_mean,
        width,
        yerr=summary.ap_std,
        capsize=3,
        label="AP",
        color="#e9c46a",
    )
    ax.set_xticks(x, summary.method, rotation=20, ha="right")
    ax.set(ylabel="score (mean ± std over seeds)", ylim=(0, 1.05), title=title)
    # outside the axes: no bar (random's AP is tiny) may hide under it
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# ---- image figures and experiment summaries ---------------------------------------

DARK = "#222222"  # caption colour of a correctly labeled sample
CAPTION_PT = 8  # smallest font used: image captions
PANEL_IN = 1.4  # width of one image panel in inches (captions need it)


def _draw_image(ax: Axes, image: np.ndarray) -> None:
    """Show one image (H, W, C), C = 1 (grey) or 3 (RGB), in `ax`.

    The pixels arrive normalised by an arbitrary affine map, so each image is min-max
    rescaled to [0, 1] on its own (a constant image shows as black, without warnings);
    nearest-neighbour interpolation, no ticks.
    """
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3):
        raise ValueError(f"expected one (H, W, 1|3) image, got shape {pixels.shape}")
    low, high = np.min(pixels), np.max(pixels)
    span = high - low
    pixels = np.clip((pixels - low) / span, 0.0, 1.0) if span > 0 else pixels * 0.0
    if pixels.shape[-1] == 1:
        ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(pixels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _label_name(label: int, class_names: Sequence[str] | None) -> str:
    """Class name of an integer label, or the integer itself without names."""
    return str(int(label)) if class_names is None else str(class_names[int(label)])


def _training_panel(
    ax: Axes,
    image: np.ndarray,
    given: int,
    true: int,
    value_text: str,
    class_names: Sequence[str] | None,
) -> None:
    """A training image (H, W, C) captioned "given g / true t / value_text"; caption
    and frame in the NOISY colour when the given label is wrong."""
    _draw_image(ax, image)
    color = NOISY if int(given) != int(true) else DARK
    caption = (
        f"given {_label_name(given, class_names)}\n"
        f"true {_label_name(true, class_names)}\n{value_text}"
    )
    ax.set_xlabel(caption, fontsize=CAPTION_PT, color=color, labelpad=3)
    for spine in ax.spines.values():
        spine.set_color(color)
        spine.set_linewidth(2.0 if color == NOISY else 0.8)


def _check_shapes(expected: tuple[int, ...], **arrays: np.ndarray) -> None:
    """Raise if any array's leading dimensions differ from `expected`."""
    for name, array in arrays.items():
        shape = np.shape(array)[: len(expected)]
        if shape != expected:
            raise ValueError(f"{name} has leading shape {shape}, expected {expected}")


def score_gallery(
    images: np.ndarray,
    given: np.ndarray,
    suggested: np.ndarray,
    scores: np.ndarray,
    title: str,
    true: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    columns: int = 8,
) -> Figure:
    """Grid of the top-scored training images, in the caller's order.

    images (K, H, W, C) with C = 1 or 3; given, suggested (K,) integer labels (the
    label as given, the label the model suggests instead); scores (K,); true (K,) the
    clean labels where the noise was injected (None for a user's own labels).
    `columns` panels per row (fewer when K is smaller). Each panel is captioned
    "given g", "-> suggested s", then "true t" where known, and the score (3
    significant digits); with true labels, caption and frame are red (NOISY) when the
    given label is wrong.
    """
    count = len(scores)
    if count == 0:
        raise ValueError("score_gallery needs at least one image")
    _check_shapes((count,), images=images, given=given, suggested=suggested)
    if true is not None:
        _check_shapes((count,), true=true)
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    lines = 4 if true is not None else 3
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(max(4.5, PANEL_IN * columns), 0.8 + (1.3 + 0.2 * lines) * rows),
        layout="constrained",
        squeeze=False,
    )
    for k, ax in enumerate(axes.flat[:count]):
        _draw_image(ax, images[k])
        caption = [
            f"given {_label_name(given[k], class_names)}",
            f"\u2192 {_label_name(suggested[k], class_names)}",
        ]
        wrong = False
        if true is not None:
            caption.append(f"true {_label_name(true[k], class_names)}")
            wrong = int(given[k]) != int(true[k])
        caption.append(f"score {scores[k]:.3g}")
        color = NOISY if wrong else DARK
        ax.set_xlabel("\n".join(caption), fontsize=CAPTION_PT, color=color, labelpad=3)
        for spine in ax.spines.values():
            spine.set_color(color)
            spine.set_linewidth(2.0 if wrong else 0.8)
    for ax in axes.flat[count:]:
        ax.set_axis_off()
    fig.suptitle(title)
    key = [
        Line2D([], [], ls="", marker="", color=DARK, label="\u2192: suggested label")
    ]
    if true is not None:
        key += [
            Line2D([], [], ls="", marker="s", color=NOISY, label="red: given is wrong"),
            Line2D([], [], ls="", marker="s", color=DARK, label="dark: given is right"),
        ]
    legend = fig.legend(
        handles=key,
        loc="outside lower center",
        ncols=len(key),
        frameon=False,
        fontsize=9,
    )
    for text, handle in zip(legend.get_texts(), key, strict=True):
        text.set_color(handle.get_color())
    return fig


def influence_examples(
    query_images: np.ndarray,
    query_given: np.ndarray,
    query_true: np.ndarray,
    helpful_images: np.ndarray,
    helpful_given: np.ndarray,
    helpful_true: np.ndarray,
    helpful_values: np.ndarray,
    harmful_images: np.ndarray,
    harmful_given: np.ndarray,
    harmful_true: np.ndarray,
    harmful_values: np.ndarray,
    title: str,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """One row per test query: the query image, then its h most helpful and h most
    harmful training images, each group under a header and set apart by a thin line.

    query_images (Q, H, W, C); query_given, query_true (Q,) (the query is captioned with
    query_true); helpful_/harmful_images (Q, h, H, W, C); their given, true and values
    (Q, h). Training captions: given label, true label (red when they differ) and the
    influence value (signed, 3 significant digits).
    """
    queries, per_side = np.shape(helpful_values)[:2]
    _check_shapes((queries,), query_images=query_images, query_given=query_given)
    _check_shapes((queries,), query_true=query_true)
    _check_shapes(
        (queries, per_side),
        helpful_images=helpful_images,
        helpful_given=helpful_given,
        helpful_true=helpful_true,
        harmful_images=harmful_images,
        harmful_given=harmful_given,
        harmful_true=harmful_true,
        harmful_values=harmful_values,
    )
    gap = 0.25  # separator column width, relative to an image column
    fig = plt.figure(
        figsize=(PANEL_IN * (1 + 2 * per_side + 2 * gap), 0.9 + 1.9 * queries),
        layout="constrained",
    )
    grid = fig.add_gridspec(
        queries + 1,
        2 * per_side + 3,
        width_ratios=[1, gap] + [1] * per_side + [gap] + [1] * per_side,
        height_ratios=[0.2] + [1] * queries,
    )
    helpful_start, harmful_start = 2, per_side + 3
    for header, start, stop in (
        ("test image", 0, 1),
        ("most helpful", helpful_start, helpful_start + per_side),
        ("most harmful", harmful_start, harmful_start + per_side),
    ):
        ax = fig.add_subplot(grid[0, start:stop])
        ax.set_axis_off()
        ax.text(0.5, 0.55, header, ha="center", va="center", fontweight="bold")
        ax.plot([0.03, 0.97], [0.05, 0.05], color="0.4", lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1))
    for column in (1, harmful_start - 1):
        ax = fig.add_subplot(grid[1:, column])
        ax.set_axis_off()
        ax.axvline(0.5, color="0.7", lw=1)
    helpful = (helpful_images, helpful_given, helpful_true, helpful_values)
    harmful = (harmful_images, harmful_given, harmful_true, harmful_values)
    groups = (
        (helpful_start, *map(np.asarray, helpful)),
        (harmful_start, *map(np.asarray, harmful)),
    )
    for q in range(queries):
        ax = fig.add_subplot(grid[q + 1, 0])
        _draw_image(ax, query_images[q])
        label = _label_name(query_true[q], class_names)
        ax.set_xlabel(f"test: label {label}", fontsize=CAPTION_PT, color=DARK)
        for start, images, given, true, values in groups:
            for k in range(per_side):
                _training_panel(
                    fig.add_subplot(grid[q + 1, start + k]),
                    images[q, k],
                    given[q, k],
                    true[q, k],
                    f"influence {values[q, k]:+.3g}",
                    class_names,
                )
    fig.suptitle(title)
    return fig


def pruning_curves(table: pd.DataFrame, title: str) -> Figure:
    """table: rows with method, seed, fraction (0..1 of the training set pruned),
    test_acc. One line per method (in order of appearance): the mean test accuracy over
    seeds at each fraction, with a marker per measured fraction, and a shaded band from
    the minimum to the maximum over seeds (min-max, not ± std: with the usual 2-5 seeds
    the range is the honest summary). The fraction-0 point (the unpruned model) may be
    present for every method."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    markers = "osD^vP*Xh<>"
    for i, (method, rows) in enumerate(table.groupby("method", sort=False)):
        stats = rows.groupby("fraction").test_acc.agg(["mean", "min", "max"])
        stats = stats.sort_index()
        (line,) = ax.plot(
            stats.index, stats["mean"], marker=markers[i % len(markers)], label=method
        )
        ax.fill_between(
            stats.index, stats["min"], stats["max"], color=line.get_color(), alpha=0.2
        )
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 * x:.4g}%"))
    ax.set(xlabel="fraction of training set pruned", ylabel="test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # outside the axes: no curve may hide under it
    ax.legend(
        title="band: min-max over seeds", loc="upper left", bbox_to_anchor=(1.02, 1.0)
    )
    return fig


def relabel_bars(table: pd.DataFrame, title: str) -> Figure:
    """table: rows with setting, mean, std, seeds (test accuracy after relabeling; NaN
    std counts as 0). Bars with error bars (± std) and the mean printed above each. The
    y axis is zoomed to [min(mean - std) - 0.02, 1.0] (widened above when a label needs
    room) so the differences between settings are visible."""
    means = table["mean"].to_numpy(dtype=float)
    stds = np.nan_to_num(table["std"].to_numpy(dtype=float))
    x = np.arange(len(table))
    fig, ax = plt.subplots(
        figsize=(max(5.0, 0.9 * len(table) + 2.0), 4.5), layout="constrained"
    )
    ax.bar(x, means, 0.65, yerr=stds, capsize=3, color="#264653", ecolor="0.35")
    for xi, mean, std in zip(x, means, stds, strict=True):
        ax.annotate(
            f"{mean:.3f}",
            (xi, mean + std),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    bottom = max(0.0, float(np.min(means - stds)) - 0.02)
    top = max(1.0, float(np.max(means + stds)) + 0.08 * (1.0 - bottom))
    ax.set_xticks(x, table["setting"], rotation=25, ha="right", rotation_mode="anchor")
    seeds = table["seeds"].unique()
    over = f"{seeds[0]} seeds" if len(seeds) == 1 else "seeds"
    ax.set(ylabel=f"test accuracy (mean ± std over {over})", ylim=(bottom, top))
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return fig


def rank_agreement(matrix: np.ndarray, names: Sequence[str], title: str) -> Figure:
    """Heatmap of an (M, M) matrix of Spearman rank correlations between M methods'
    scores, diverging colormap fixed to [-1, 1] (white = 0), each cell annotated with
    its value to 2 decimals in black or white, whichever contrasts with the cell."""
    matrix = np.asarray(matrix, dtype=float)
    size = len(names)
    if matrix.shape != (size, size):
        raise ValueError(f"matrix shape {matrix.shape} does not match {size} names")
    side = max(4.0, 0.75 * size + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.2, side), layout="constrained")
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    for (i, j), value in np.ndenumerate(matrix):
        red, green, blue, _ = image.cmap(image.norm(value))
        luminance = 0.299 * red + 0.587 * green + 0.114 * blue
        ax.text(
            j,
            i,
            f"{np.round(value, 2) + 0.0:.2f}",  # + 0.0: no "-0.00"
            ha="center",
            va="center",
            fontsize=9,
            color="white" if np.isfinite(value) and luminance < 0.5 else "black",
        )
    ax.set_xticks(range(size), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(size), names)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="Spearman rank correlation", shrink=0.85)
    return fig
