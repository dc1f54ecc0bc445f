"""The figures of gex_core.evaluation.figures render, carry their labels, and clip no text."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from unittest import mock

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.image as mimage  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from gex_core.evaluation.figures import (  # noqa: E402
    NOISY,
    influence_examples,
    pruning_curves,
    rank_agreement,
    relabel_bars,
    score_gallery,
)
from gex_core.workflow.io import save_figure  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["cat", "dog", "aquarium_fish"]


def drawn_texts(fig: Figure) -> list[Text]:
    """Draw `fig` and return every non-empty Text artist that was actually drawn
    (tick labels outside the view, unused tick objects etc. are skipped)."""
    drawn: list[Text] = []
    draw = Text.draw

    def recording_draw(self: Text, renderer) -> None:
        if self.get_visible() and self.get_text():
            drawn.append(self)
        return draw(self, renderer)

    with mock.patch.object(Text, "draw", recording_draw):
        fig.canvas.draw()
    return drawn


def check_layout(fig: Figure) -> list[Text]:
    """Draw `fig` (warnings are errors) and check that no text is clipped by the figure
    edge (2 px tolerance) and none is below 8 pt. Returns the drawn texts."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        texts = drawn_texts(fig)
    box = fig.get_window_extent()
    renderer = fig.canvas.get_renderer()
    for text in texts:
        extent = text.get_window_extent(renderer)
        inside = (
            extent.x0 >= box.x0 - 2
            and extent.y0 >= box.y0 - 2
            and extent.x1 <= box.x1 + 2
            and extent.y1 <= box.y1 + 2
        )
        assert inside, f"text {text.get_text()!r} at {extent} outside {box}"
        assert text.get_fontsize() >= 8, text.get_text()
    return texts


def check_png(fig: Figure, path: Path) -> None:
    """`io.save_figure` writes (without any warning) a non-trivial PNG; it closes fig."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_figure(path, fig)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000
    pixels = mimage.imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


def assert_no_overlap(texts: list[Text], renderer) -> None:
    """No two of `texts` share any area on the canvas."""
    boxes = [t.get_window_extent(renderer) for t in texts]
    for (a, ta), (b, tb) in itertools.combinations(zip(boxes, texts, strict=True), 2):
        overlap_x = min(a.x1, b.x1) - max(a.x0, b.x0)
        overlap_y = min(a.y1, b.y1) - max(a.y0, b.y0)
        assert overlap_x <= 0 or overlap_y <= 0, (ta.get_text(), tb.get_text())


def images(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Images normalised to an arbitrary range ([-2, 2]-ish), float32."""
    return rng.normal(scale=2.0, size=shape).astype(np.float32)


def image_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images]


def same_color(a, b) -> bool:
    return np.allclose(mcolors.to_rgba(a), mcolors.to_rgba(b))


@pytest.mark.parametrize(("channels", "class_names"), [(1, None), (3, NAMES)])
@pytest.mark.parametrize("known", [True, False])
def test_score_gallery(tmp_path, channels, class_names, known):
    """Given -> suggested on every panel; with true labels (injected noise) also the
    true label and red for a wrong given label; without them nothing is red."""
    rng = np.random.default_rng(channels)
    given = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    suggested = np.array([1, 2, 0, 2, 0, 1, 1, 0, 0, 2])
    true = np.array([0, 1, 0, 0, 2, 2, 1, 1, 2, 0])
    scores = np.linspace(5e4, 1e-3, 10)
    fig = score_gallery(
        images(rng, 10, 8, 8, channels),
        given,
        suggested,
        scores,
        "top scored",
        true=true if known else None,
        class_names=class_names,
        columns=4,
    )
    texts = check_layout(fig)
    panels = image_axes(fig)
    assert len(panels) == 10  # 3 rows x 4 columns, the 2 unused panels hidden
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in panels)
    assert fig.get_suptitle() == "top scored"
    name = (lambda k: str(k)) if class_names is None else (lambda k: NAMES[k])
    for ax, g, u, t, s in zip(panels, given, suggested, true, scores, strict=True):
        lines = ax.get_xlabel().split("\n")
        expected = [f"given {name(g)}", f"\u2192 {name(u)}"]
        expected += [f"true {name(t)}"] if known else []
        assert lines == [*expected, f"score {s:.3g}"]
        assert same_color(ax.xaxis.label.get_color(), NOISY) == (known and g != t)
    legend = [t.get_text() for t in texts]
    assert "\u2192: suggested label" in legend
    assert ("red: given is wrong" in legend) == known
    assert_no_overlap([ax.xaxis.label for ax in panels], fig.canvas.get_renderer())
    check_png(fig, tmp_path / "gallery.png")


def test_gallery_shows_grey_and_rgb_pixels_rescaled(tmp_path):
    rng = np.random.default_rng(0)
    for channels in (1, 3):
        raw = images(rng, 2, 8, 8, channels) * 7 + 3
        fig = score_gallery(raw, [0, 1], [1, 0], [2.0, 1.0], "t", columns=2)
        for ax, image in zip(image_axes(fig), raw, strict=True):
            shown = ax.images[0]
            data = np.asarray(shown.get_array())
            assert data.min() == 0.0 and data.max() == 1.0
            assert shown.get_interpolation() == "nearest"
            if channels == 1:
                assert shown.get_cmap().name == "gray"
                assert data.shape == image.shape[:2]
            else:
                assert data.shape == image.shape
        check_layout(fig)
        check_png(fig, tmp_path / f"pixels{channels}.png")


@pytest.mark.parametrize("channels", [1, 3])
def test_constant_images_render_without_warnings(tmp_path, channels):
    constant = np.full((3, 8, 8, channels), -1.5, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = score_gallery(constant, [0, 1, 2], [0, 1, 1], [3.0, 2.0, 1.0], "flat")
        check_layout(fig)
        check_png(fig, tmp_path / "constant.png")
        fig = influence_examples(
            constant[:1],
            [0],
            [0],
            constant[None, :2],
            [[0, 1]],
            [[0, 0]],
            [[1.0, 0.5]],
            constant[None, 1:],
            [[2, 1]],
            [[2, 1]],
            [[-0.5, -1.0]],
            "flat",
        )
        check_layout(fig)
        check_png(fig, tmp_path / "constant_examples.png")


def test_gallery_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="given"):
        score_gallery(np.zeros((3, 4, 4, 1)), [0, 1], [0, 1, 2], [1, 2, 3], "t")


@pytest.mark.parametrize("channels", [1, 3])
def test_influence_examples(tmp_path, channels):
    rng = np.random.default_rng(channels)
    queries, per_side = 2, 3
    helpful_given = np.array([[0, 1, 2], [1, 1, 0]])
    helpful_true = np.array([[0, 2, 2], [1, 1, 1]])
    harmful_given = np.array([[2, 2, 0], [0, 1, 2]])
    harmful_true = np.array([[1, 2, 0], [0, 0, 2]])
    helpful_values = rng.exponential(size=(queries, per_side))
    harmful_values = -rng.exponential(size=(queries, per_side)) * 1e3
    fig = influence_examples(
        images(rng, queries, 8, 8, channels),
        np.array([1, 2]),
        np.array([1, 2]),
        images(rng, queries, per_side, 8, 8, channels),
        helpful_given,
        helpful_true,
        helpful_values,
        images(rng, queries, per_side, 8, 8, channels),
        harmful_given,
        harmful_true,
        harmful_values,
        "examples",
        NAMES,
    )
    texts = check_layout(fig)
    contents = [t.get_text() for t in texts]
    for header in ("test image", "most helpful", "most harmful"):
        assert contents.count(header) == 1
    assert fig.get_suptitle() == "examples"
    panels = image_axes(fig)
    assert len(panels) == queries * (1 + 2 * per_side)
    row_length = 1 + 2 * per_side
    for q in range(queries):
        row = panels[q * row_length : (q + 1) * row_length]
        assert row[0].get_xlabel() == f"test: label {NAMES[q + 1]}"
        training = zip(
            row[1:],
            np.concatenate([helpful_given[q], harmful_given[q]]),
            np.concatenate([helpful_true[q], harmful_true[q]]),
            np.concatenate([helpful_values[q], harmful_values[q]]),
            strict=True,
        )
        for ax, g, t, v in training:
            assert ax.get_xlabel() == (
                f"given {NAMES[g]}\ntrue {NAMES[t]}\ninfluence {v:+.3g}"
            )
            assert same_color(ax.xaxis.label.get_color(), NOISY) == (g != t)
    # the harmful group lies right of the helpful group, the query left of both
    x = [ax.get_position().x0 for ax in panels[:row_length]]
    assert x == sorted(x)
    assert_no_overlap([ax.xaxis.label for ax in panels], fig.canvas.get_renderer())
    check_png(fig, tmp_path / "examples.png")


def test_influence_examples_rejects_mismatched_shapes():
    good = np.zeros((1, 2, 4, 4, 1))
    with pytest.raises(ValueError, match="harmful_values"):
        influence_examples(
            good[:, 0],
            [0],
            [0],
            good,
            [[0, 0]],
            [[0, 0]],
            [[1.0, 1.0]],
            good,
            [[0, 0]],
            [[0, 0]],
            [[1.0]],
            "t",
        )


def pruning_table() -> pd.DataFrame:
    """3 methods x 3 seeds x 4 fractions; fraction 0 (unpruned) equal for all methods."""
    rng = np.random.default_rng(0)
    rows = []
    for m, method in enumerate(["gex", "randproj", "random"]):
        for seed in range(3):
            for fraction in (0.0, 0.1, 0.2, 0.3):
                drop = 0.0 if fraction == 0 else 0.1 * (m + 1) * fraction
                acc = 0.9 + 0.01 * seed - drop + rng.normal(0, 0.002) * (fraction > 0)
                rows.append((method, seed, fraction, acc))
    table = pd.DataFrame(rows, columns=["method", "seed", "fraction", "test_acc"])
    return table.sample(frac=1.0, random_state=1)  # row order must not matter


def test_pruning_curves(tmp_path):
    table = pruning_table()
    fig = pruning_curves(table, "pruning")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "fraction of training set pruned"
    assert ax.get_ylabel() == "test accuracy"
    assert ax.get_title() == "pruning"
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == list(table.method.unique())
    for line in lines:
        rows = table[table.method == line.get_label()]
        expected = rows.groupby("fraction").test_acc.mean().sort_index()
        np.testing.assert_allclose(line.get_xdata(), expected.index)
        np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())
        assert line.get_marker() not in (None, "None", "")
    assert len(ax.collections) == len(lines)  # one band per method
    band = ax.collections[0].get_paths()[0].vertices
    rows = table[table.method == lines[0].get_label()].test_acc
    assert band[:, 1].min() == pytest.approx(rows.min())
    assert band[:, 1].max() == pytest.approx(rows.max())
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(table.method.unique())
    texts = check_layout(fig)
    assert {"0%", "10%", "20%", "30%"} <= {t.get_text() for t in texts}
    # the legend sits right of the axes, over no curve
    renderer = fig.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    assert legend.get_window_extent(renderer).x0 >= axes_box.x1
    check_png(fig, tmp_path / "pruning.png")


def relabel_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "setting": [
                "none",
                "gex (soft)",
                "randproj (hard)",
                "oracle (clean labels)",
            ],
            "mean": [0.781, 0.8642, 0.85, 0.93],
            "std": [0.004, 0.01, np.nan, 0.002],
            "seeds": [3, 3, 1, 3],
        }
    )


def test_relabel_bars(tmp_path):
    table = relabel_table()
    fig = relabel_bars(table, "relabel")
    ax = fig.axes[0]
    assert ax.get_ylabel().startswith("test accuracy")
    assert ax.get_title() == "relabel"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(table.setting)
    assert [p.get_height() for p in ax.patches] == pytest.approx(list(table["mean"]))
    assert [t.get_text() for t in ax.texts] == ["0.781", "0.864", "0.850", "0.930"]
    low, high = ax.get_ylim()
    assert low == pytest.approx(0.781 - 0.004 - 0.02)
    assert high == pytest.approx(1.0)
    check_layout(fig)
    check_png(fig, tmp_path / "relabel.png")


def test_relabel_bars_near_perfect_accuracy_keeps_labels_inside(tmp_path):
    table = pd.DataFrame(
        {"setting": ["none", "oracle"], "mean": [0.99, 0.995], "std": [0.008, 0.0]}
    ).assign(seeds=2)
    fig = relabel_bars(table, "mnist")
    check_layout(fig)
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    assert len(ax.texts) == 2
    for text in ax.texts:
        assert text.get_window_extent(renderer).y1 <= axes_box.y1
    check_png(fig, tmp_path / "relabel_high.png")


def test_rank_agreement(tmp_path):
    matrix = np.array(
        [[1.0, 0.812, -0.004], [0.812, 1.0, -0.456], [-0.004, -0.456, 1.0]]
    )
    names = ["gex", "randproj", "random"]
    fig = rank_agreement(matrix, names, "agreement")
    ax, colorbar_ax = fig.axes
    assert ax.get_title() == "agreement"
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())
    assert colorbar_ax.get_ylabel() == "Spearman rank correlation"
    image = ax.images[0]
    assert image.norm.vmin == -1.0 and image.norm.vmax == 1.0
    assert image.cmap(image.norm(0.0))[:3] == pytest.approx(
        (0.97, 0.97, 0.97), abs=0.03
    )
    expected = [
        ["1.00", "0.81", "0.00"],
        ["0.81", "1.00", "-0.46"],
        ["0.00", "-0.46", "1.00"],
    ]
    cells = {}
    for text in ax.texts:
        column, row = text.get_position()
        cells[round(row), round(column)] = text
    assert len(cells) == matrix.size
    for (i, j), value in np.ndenumerate(matrix):
        assert cells[i, j].get_text() == expected[i][j]  # rounded, and no "-0.00"
        # dark cells (|r| large) get white text, light ones black
        assert cells[i, j].get_color() == ("white" if abs(value) > 0.7 else "black")
    check_layout(fig)
    check_png(fig, tmp_path / "rank.png")


def test_rank_agreement_rejects_wrong_shape():
    with pytest.raises(ValueError, match="2 names"):
        rank_agreement(np.eye(3), ["a", "b"], "t")
