"""Figures. Each function returns a matplotlib Figure; `io.save_figure` writes it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

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


def score_histograms(scores: np.ndarray, mask: np.ndarray, title: str):
    """Overlaid clean/noisy histograms of a score on a log count axis (100 bins)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(scores.min(), scores.max(), 101)
    ax.hist(
        scores[~mask],
        bins=bins,
        color=CLEAN,
        alpha=0.7,
        label=f"clean ({(~mask).sum()})",
    )
    ax.hist(
        scores[mask], bins=bins, color=NOISY, alpha=0.7, label=f"noisy ({mask.sum()})"
    )
    ax.set(xlabel="self-influence", ylabel="samples", yscale="log", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def detection_curves(scores: np.ndarray, mask: np.ndarray, title: str):
    """ROC and precision-recall curves of noisy-label detection."""
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4))
    fpr, tpr, _ = roc_curve(mask, scores)
    ax_roc.plot(fpr, tpr, color=NOISY)
    ax_roc.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    precision, recall, _ = precision_recall_curve(mask, scores)
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
