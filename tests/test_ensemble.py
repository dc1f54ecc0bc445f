"""Chains run together in one job equal chains run one at a time."""

import jax
import numpy as np
import pytest

from gex_core.influence.ensemble import FineTuning, run_chain, run_chains
from gex_core.training.fit import stack_trees, unstack_tree
from gex_core.training.hooks import no_log
from gex_core.training.models import make_model
from gex_core.workflow.resume import Resume
from tests.helpers import tiny_data
from tests.test_resume import Killed, KilledAfterSaves, assert_trees_equal

# vmapped convolutions sum in another order than one chain's: float rounding only
BATCHED_RTOL = 1e-4


@pytest.fixture(scope="module")
def setup():
    x, y = tiny_data(48, in_features=64, num_classes=4)
    model = make_model("cnn", 4, (8, 8, 1))
    x = x.reshape(48, 8, 8, 1)
    return model, model.init(jax.random.key(0)), x, y


RECIPE = FineTuning(
    stages=2,
    ft_lr=0.05,
    ft_steps=12,
    batch_size=20,  # batches straddle epochs
    weight_decay=5e-4,
    momentum=0.9,
    augment="crop",
    bn_batches=2,
)
OPTIONS = dict(seed=1, eval_batch_size=16, log=no_log)


def chains_of(setup, chains, ft_lr=RECIPE.ft_lr, **options):
    model, pretrained, x, y = setup
    return run_chains(
        model,
        pretrained,
        (x, y, x[:12], y[:12]),
        RECIPE._replace(ft_lr=ft_lr),
        chains=chains,
        **OPTIONS,
        **options,
    )


@pytest.fixture(scope="module")
def alone(setup):
    """Chains 0, 1 and 3, each run by itself (a job per chain)."""
    model, pretrained, x, y = setup
    return {
        c: run_chain(
            model, pretrained, (x, y, x[:12], y[:12]), RECIPE, chain=c, **OPTIONS
        )
        for c in (0, 1, 3)
    }


def assert_close(a, b, rtol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape
        assert np.max(np.abs(x - y)) <= rtol * max(np.max(np.abs(x)), 1e-6)


def test_grouped_chains_are_bitwise_the_chains_run_alone(setup, alone):
    grouped = chains_of(setup, [3, 0, 1])  # any order, any gaps
    for result, chain in zip(grouped, [3, 0, 1], strict=True):
        assert_trees_equal(result.members, alone[chain].members)
        assert result.train_losses.tobytes() == alone[chain].train_losses.tobytes()
        assert result.test_losses.tobytes() == alone[chain].test_losses.tobytes()
    assert result.train_losses.shape == (2, 48) and result.test_losses.shape == (2, 12)


def test_batched_chains_equal_the_chains_run_alone(setup, alone):
    batched = chains_of(setup, [0, 1, 3], batched=True)
    for result, chain in zip(batched, [0, 1, 3], strict=True):
        assert_close(result.members, alone[chain].members, BATCHED_RTOL)
        assert_close(result.train_losses, alone[chain].train_losses, BATCHED_RTOL)
        assert_close(result.test_losses, alone[chain].test_losses, BATCHED_RTOL)
    # the chains are different chains, not one chain three times
    first = jax.tree.leaves(batched[0].members[-1])[0]
    second = jax.tree.leaves(batched[1].members[-1])[0]
    assert np.max(np.abs(np.asarray(first) - np.asarray(second))) > 1e-3


def test_a_batched_chain_does_not_depend_on_its_companions(setup):
    pair = chains_of(setup, [0, 1], batched=True)
    trio = chains_of(setup, [2, 0, 1], batched=True)
    assert_close(pair[0].members, trio[1].members, BATCHED_RTOL)
    assert_close(pair[1].train_losses, trio[2].train_losses, BATCHED_RTOL)


@pytest.mark.parametrize("batched", [False, True])
def test_a_job_of_several_chains_resumes_bitwise(tmp_path, setup, batched):
    def run(resume):
        return chains_of(setup, [0, 2], batched=batched, checkpointer=resume)

    whole = run(Resume(None))
    with pytest.raises(Killed):
        run(KilledAfterSaves(tmp_path, 2))  # inside stage 1
    again = run(Resume(tmp_path, {"job": "test"}, every_s=0.0, log=print))
    for a, b in zip(whole, again, strict=True):
        assert_trees_equal(a.members, b.members)
        assert a.train_losses.tobytes() == b.train_losses.tobytes()


def test_a_diverging_chain_is_named(setup):
    with pytest.raises(FloatingPointError, match=r"ensemble chain (5|7) stage 0"):
        chains_of(setup, [5, 7], ft_lr=1.0e6)


def test_chain_numbers_must_be_distinct(setup):
    with pytest.raises(ValueError, match="distinct"):
        chains_of(setup, [1, 1])


def test_stacking_round_trips():
    trees = [
        {"w": np.full((2, 3), g, np.float32), "b": np.arange(3, dtype=np.float32) + g}
        for g in range(3)
    ]
    stacked = stack_trees(trees)
    assert stacked["w"].shape == (3, 2, 3)
    for a, b in zip(unstack_tree(stacked), trees, strict=True):
        assert_trees_equal(a, b)
