"""Sharded scoring: row ranges, lazily read rows, and merged shards equal to one job.

Every shardable method scores the tiny run of test_kernels in shards of 10 of its 24
training samples (the last shard shorter), through the real stage functions and files;
the merged scores must equal the one-job scores.
"""

import json

import numpy as np
import pytest

from gex_core.data.datasets import normalise_images
from gex_core.influence.registry import METHODS
from gex_core.workflow.artifacts import (
    ImageRows,
    load_query_indices,
    load_scores,
    stored_rows,
    stored_train_size,
)
from gex_core.workflow.io import npz_memmap, write_npz
from gex_core.workflow.shards import num_shards, shard_rows
from gex_core.workflow.stages.evaluate import with_shard_benchmarks
from gex_core.workflow.stages.influence import merge_shards, run_gather, run_influence
from tests.test_kernels import HPARAMS, N_TE, N, method_inputs, run_files  # noqa: F401

SHARDABLE = sorted(name for name, spec in METHODS.items() if spec.shardable)


def test_shards_tile_the_training_set():
    assert (
        num_shards(24, 10) == 3 and num_shards(20, 10) == 2 and num_shards(5, 10) == 1
    )
    assert [shard_rows(i, 10, 24) for i in range(3)] == [(0, 10), (10, 20), (20, 24)]
    with pytest.raises(
        ValueError,
        match="shard 3 does not exist: 24 samples in shards of 10 make shards 0..2",
    ):
        shard_rows(3, 10, 24)
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        num_shards(24, 0)


def test_the_shardable_methods_are_those_that_score_rows_independently():
    assert SHARDABLE == [
        "arnoldi", "gex", "la_kfac", "lissa", "member_loss", "randproj", "tracin",
        "tracinrp",
    ]  # fmt: skip


def test_rows_are_read_from_disk_only_when_indexed(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 50).astype(np.int32)
    path = str(tmp_path / "data.npz")
    write_npz(path, x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    images, labels = stored_rows(path)
    assert isinstance(images, ImageRows) and isinstance(
        npz_memmap(path, "x_train"), np.memmap
    )
    assert images.shape == (50, 4, 4, 3) and len(images) == 50
    assert images.dtype == np.float32 and stored_train_size(path) == 50
    full = normalise_images(x)
    np.testing.assert_array_equal(images[7:19], full[7:19])
    batches = rng.integers(0, 50, (3, 8))
    np.testing.assert_array_equal(images[batches], full[batches])
    np.testing.assert_array_equal(labels, y)
    # refusals name the file and the array
    with pytest.raises(ValueError, match="holds no array 'x_val'"):
        npz_memmap(path, "x_val")
    np.savez_compressed(tmp_path / "packed.npz", x_train=x)
    with pytest.raises(
        ValueError, match="packed.npz: cannot map array 'x_train'.*compressed"
    ):
        npz_memmap(str(tmp_path / "packed.npz"), "x_train")


def score_in_shards(root, tmp_path, method: str, size: int, queries: int):
    """Run every shard of `method` through the stage and merge them; returns the
    merged scores.npz and timing.json paths."""
    scores, timings = [], []
    for index in range(num_shards(N, size)):
        inputs = method_inputs(root, queries)
        inputs.shard = shard_rows(index, size, N)
        out = {
            "scores": str(tmp_path / f"{method}-shard{index}.npz"),
            "timing": str(tmp_path / f"{method}-shard{index}.json"),
        }
        run_influence(method=method, hp=HPARAMS[method], inputs=inputs, outputs=out)
        scores.append(out["scores"])
        timings.append(out["timing"])
    merged = {
        "scores": str(tmp_path / f"{method}-merged.npz"),
        "timing": str(tmp_path / f"{method}-merged.json"),
    }
    run_gather(
        shard_scores=scores,
        shard_timings=timings,
        data_path=str(root / "data.npz"),
        outputs=merged,
    )
    return merged


@pytest.mark.parametrize("method", SHARDABLE)
def test_merged_shards_equal_the_one_job_scores(run_files, tmp_path, method):  # noqa: F811
    whole = {"scores": str(tmp_path / "whole.npz"), "timing": str(tmp_path / "w.json")}
    run_influence(
        method=method,
        hp=HPARAMS[method],
        inputs=method_inputs(run_files, N_TE),
        outputs=whole,
    )
    merged = score_in_shards(run_files, tmp_path, method, size=10, queries=N_TE)
    want, got = load_scores(whole["scores"]), load_scores(merged["scores"])
    fields = ["self_influence", "test_influence", "kernel"]
    if not METHODS[method].kernel:  # the member_loss control: a self score alone
        fields = ["self_influence"]
        assert got.test_influence is None and got.kernel is None
    assert got.self_influence.shape == (N,)
    # float32 models batched differently (16 vs shards of 10): equal to float32
    # rounding of the largest terms; every random draw and curvature batch is the
    # same in every shard
    for field in fields:
        reference = getattr(want, field)
        np.testing.assert_allclose(
            getattr(got, field), reference, rtol=1e-5,
            atol=1e-6 * np.abs(reference).max(), err_msg=f"{method} {field}",
        )  # fmt: skip
    if METHODS[method].kernel:
        np.testing.assert_array_equal(
            load_query_indices(merged["scores"]), np.arange(N_TE)
        )
    with open(merged["timing"]) as f:
        timing = json.load(f)
    assert len(timing["shards"]) == 3
    assert timing["forward_passes"] == pytest.approx(
        timing["compute_seconds"] / timing["forward_pass_seconds"]
    )


def test_gex_shards_are_exact_column_slices(run_files, tmp_path):  # noqa: F811
    whole = {"scores": str(tmp_path / "whole.npz"), "timing": str(tmp_path / "w.json")}
    run_influence(
        method="gex",
        hp=HPARAMS["gex"],
        inputs=method_inputs(run_files, 3),
        outputs=whole,
    )
    merged = score_in_shards(run_files, tmp_path, "gex", size=7, queries=3)
    for field in ("self_influence", "test_influence", "kernel"):
        np.testing.assert_array_equal(
            getattr(load_scores(merged["scores"]), field),
            getattr(load_scores(whole["scores"]), field),
        )


def test_a_method_that_cannot_be_sharded_is_refused(run_files, tmp_path):  # noqa: F811
    inputs = method_inputs(run_files, 0)
    inputs.shard = (0, 10)
    out = {"scores": str(tmp_path / "s.npz"), "timing": str(tmp_path / "t.json")}
    with pytest.raises(ValueError, match="knn cannot be computed in shards"):
        run_influence(method="knn", hp=HPARAMS["knn"], inputs=inputs, outputs=out)
    assert not (tmp_path / "s.npz").exists()
    inputs = method_inputs(run_files, 0)
    inputs.shard = (20, 30)
    with pytest.raises(ValueError, match="shard rows 20:30 lie beyond the 24 training"):
        run_influence(method="gex", hp=HPARAMS["gex"], inputs=inputs, outputs=out)
    assert not (tmp_path / "s.npz").exists()


def test_merging_refuses_gaps_overlaps_and_a_short_cover(run_files, tmp_path):  # noqa: F811
    merged = score_in_shards(run_files, tmp_path, "gex", size=10, queries=0)
    with open(merged["timing"]) as f:
        files = json.load(f)["shards"]
    with pytest.raises(
        ValueError, match="covers rows 20:24, but the next shard should start at row 10"
    ):
        merge_shards([files[0], files[2]], [(0, 10), (20, 24)], N)
    with pytest.raises(
        ValueError, match="shards cover rows 0:20, but the training set has 24"
    ):
        merge_shards(files[:2], [(0, 10), (10, 20)], N)
    with pytest.raises(ValueError, match="10 scores for rows 10:24"):
        merge_shards(files[:2], [(0, 10), (10, 24)], N)


def test_the_cost_table_counts_the_shard_jobs(tmp_path):
    timing = tmp_path / "timing.json"
    timing.write_text(
        json.dumps({"shards": ["results/a/shard0.npz", "results/a/shard1.npz"]})
    )
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"forward_passes": 3.0}))
    merged = with_shard_benchmarks(
        {"influence": {"knn": ["b/knn.tsv"]}, "influence_gather": {"gex": ["b/g.tsv"]}},
        {"gex": [str(timing)], "knn": [str(plain)]},
    )
    assert merged["influence_shard"] == {
        "gex": ["benchmarks/out/a/shard0.npz.tsv", "benchmarks/out/a/shard1.npz.tsv"]
    }
    assert merged["influence"] == {"knn": ["b/knn.tsv"]}
