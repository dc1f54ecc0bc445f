import errno
import os
import stat

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from gex_core.evaluation.metrics import (
    average_precision,
    detection_metrics,
    precision_recall_points,
    recall_at_top,
    roc_auc,
    roc_curve_points,
)


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    mask = rng.random(300) < 0.1
    scores = rng.normal(size=300) + 1.5 * mask
    metrics = detection_metrics(scores, mask)
    assert metrics["auc"] == pytest.approx(roc_auc_score(mask, scores))
    assert metrics["ap"] == pytest.approx(average_precision_score(mask, scores))
    assert metrics["noise_rate"] == pytest.approx(mask.mean())
    assert metrics["num_noisy"] == mask.sum()


@pytest.mark.parametrize("ties", [False, True])
def test_ranking_metrics_are_scikit_learns_to_the_last_bit(ties):
    """The numpy AUC, AP and curves reproduce scikit-learn's, ties (rounded scores,
    whole blocks of equal scores) included."""
    rng = np.random.default_rng(1)
    for size, noisy in [(2, 0.5), (7, 0.3), (300, 0.1), (2000, 0.3)]:
        mask = np.arange(size) < max(1, round(noisy * size))
        rng.shuffle(mask)
        scores = rng.normal(size=size) + mask
        if ties:
            scores = np.round(scores, 1)
            scores[: size // 3] = 0.0
        assert roc_auc(mask, scores) == roc_auc_score(mask, scores)
        assert average_precision(mask, scores) == average_precision_score(mask, scores)
        fpr, tpr, _ = roc_curve(mask, scores)
        np.testing.assert_array_equal(roc_curve_points(mask, scores), (fpr, tpr))
        precision, recall, _ = precision_recall_curve(mask, scores)
        np.testing.assert_array_equal(
            precision_recall_points(mask, scores), (precision, recall)
        )


def test_recall_at_noise_rate_by_hand():
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3, 0.05, 0.0, 0.6, 0.4])
    mask = np.array([1, 0, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    # q = 30%: top-3 scores are samples 0, 1, 3; two of the three noisy ones are found
    assert recall_at_top(scores, mask, 0.3) == pytest.approx(2 / 3)
    assert detection_metrics(scores, mask)["recall_at_noise_rate"] == pytest.approx(
        2 / 3
    )


def test_perfect_and_reversed_scores():
    mask = np.array([0, 0, 1, 1], bool)
    assert detection_metrics(np.array([0.0, 1, 2, 3]), mask)["auc"] == 1.0
    assert detection_metrics(np.array([3.0, 2, 1, 0]), mask)["auc"] == 0.0


def test_non_finite_scores_fail_loudly():
    with pytest.raises(ValueError, match=r"1 of 3 scores are not finite .*index 1"):
        detection_metrics(np.array([0.1, np.nan, 0.3]), np.array([0, 1, 0], bool))


def test_single_class_mask_fails_loudly():
    with pytest.raises(ValueError, match="single class"):
        detection_metrics(np.array([0.1, 0.2]), np.array([0, 0], bool))


def test_non_finite_scores_are_never_saved(tmp_path):
    from gex_core.influence.scores import Scores
    from gex_core.workflow.artifacts import save_scores

    scores = Scores(np.array([0.1, 0.2, 0.3]), np.array([0.5, np.nan, np.inf]))
    with pytest.raises(
        FloatingPointError, match="test_influence has 2 non-finite values; not saving"
    ):
        save_scores(tmp_path / "scores.npz", scores)
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    from gex_core.workflow.io import atomic_path

    target = tmp_path / "table.tsv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half a ta")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.tsv"]


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_a_full_disk_or_a_refused_write_names_the_path(
    tmp_path, monkeypatch, code, cause
):
    """The failure comes from the write itself (as a full disk does, in the middle of
    np.savez): a named error with the path, and nothing half-written left."""
    from gex_core.workflow.io import ArtifactWriteError, write_npz

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(np, "savez", refuse)
    target = tmp_path / "scores.npz"
    with pytest.raises(ArtifactWriteError) as err:
        write_npz(target, a=np.zeros(3))
    assert f"cannot write {target}: {cause}" in str(err.value)
    assert err.value.errno == code
    assert list(tmp_path.iterdir()) == []


def test_artifacts_are_readable_as_the_umask_allows(tmp_path):
    """mkstemp makes 0600 files; an artifact gets what open() would give it."""
    from gex_core.workflow.io import file_mode, write_json

    old = os.umask(0o027)
    file_mode.cache_clear()
    try:
        write_json(tmp_path / "group.json", {})
        assert stat.S_IMODE((tmp_path / "group.json").stat().st_mode) == 0o640
    finally:
        os.umask(old)
        file_mode.cache_clear()
    write_json(tmp_path / "default.json", {})
    assert stat.S_IMODE((tmp_path / "default.json").stat().st_mode) == 0o666 & ~old
