"""Killed and resumed loops give bitwise the results of uninterrupted ones."""

import json

import jax
import numpy as np
import pytest

from gex_core.influence.arnoldi import arnoldi_iteration
from gex_core.influence.ensemble import FineTuning, run_chain
from gex_core.training.models import make_model
from gex_core.training.recipes import fit_fresh, pretrain
from gex_core.workflow.resume import Resume
from tests.helpers import tiny_data


class Killed(Exception):
    """Stands in for SIGKILL: the loop stops right after a save."""


class KilledAfterSaves(Resume):
    """Saves at every opportunity and stops the loop after the given number of saves."""

    def __init__(self, folder, saves, identity=None):
        super().__init__(folder, identity or {"job": "test"}, every_s=0.0, log=print)
        self.saves_left = saves

    def save(self, progress, state):
        super().save(progress, state)
        self.saves_left -= 1
        if self.saves_left == 0:
            raise Killed(progress)


def resumed(run, folder, saves):
    """run(resume) killed after `saves` saves, then rerun with a fresh store."""
    with pytest.raises(Killed):
        run(KilledAfterSaves(folder, saves))
    assert (folder / "state.json").exists()
    assert len(list(folder.glob("state-*.msgpack"))) == 1  # older saves removed
    return run(Resume(folder, {"job": "test"}, every_s=0.0, log=print))


def assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


@pytest.fixture(scope="module")
def cnn_data():
    x, y = tiny_data(48, in_features=64, num_classes=4)
    return make_model("cnn", 4, (8, 8, 1)), x.reshape(48, 8, 8, 1), y


def pretrain_run(model, x, y, resume, epochs=5):
    return pretrain(
        model,
        x,
        y,
        x[:12],
        y[:12],
        seed=3,
        epochs=epochs,
        batch_size=20,  # batches straddle epochs: the stream must be replayed exactly
        lr=0.1,
        weight_decay=5e-4,
        warmup_ratio=0.2,
        momentum=0.9,
        num_checkpoints=2,
        eval_batch_size=16,
        augment="crop",
        bn_batches=3,
        log=lambda _: None,
        checkpointer=resume,
    )


@pytest.mark.parametrize("saves", [1, 3])
def test_pretraining_resumes_bitwise(tmp_path, cnn_data, saves):
    model, x, y = cnn_data
    whole = pretrain_run(model, x, y, Resume(None))
    again = resumed(lambda r: pretrain_run(model, x, y, r), tmp_path, saves)
    assert_trees_equal(whole.params, again.params)
    assert_trees_equal(whole.trajectory, again.trajectory)
    assert_trees_equal(tuple(whole.record), tuple(again.record))
    assert json.dumps(whole.history) == json.dumps(again.history)  # keys in order


def chain_run(model, pretrained, x, y, resume):
    recipe = FineTuning(
        stages=3,
        ft_lr=0.05,
        ft_steps=25,  # chunks of 10, 10, 5: saves inside and at the end of stages
        batch_size=20,
        weight_decay=5e-4,
        momentum=0.9,
        augment="crop",
        bn_batches=2,
    )
    return run_chain(
        model,
        pretrained,
        (x, y, x[:12], y[:12]),
        recipe,
        seed=1,
        chain=2,
        eval_batch_size=16,
        log=lambda _: None,
        checkpointer=resume,
    )


@pytest.mark.parametrize("saves", [1, 3, 5])
def test_ensemble_chain_resumes_bitwise(tmp_path, cnn_data, saves):
    model, x, y = cnn_data
    pretrained = model.init(jax.random.key(0))
    whole = chain_run(model, pretrained, x, y, Resume(None))
    again = resumed(lambda r: chain_run(model, pretrained, x, y, r), tmp_path, saves)
    assert_trees_equal(whole.members, again.members)
    assert whole.train_losses.tobytes() == again.train_losses.tobytes()
    assert whole.test_losses.tobytes() == again.test_losses.tobytes()


def test_retraining_resumes_bitwise(tmp_path, cnn_data):
    model, x, y = cnn_data
    subset = np.arange(0, 48, 2)

    def run(resume):
        return fit_fresh(
            model,
            x,
            y,
            subset,
            init_key=jax.random.key(7),
            order_rng=np.random.default_rng(7),
            epochs=4,
            batch_size=10,
            lr=0.1,
            weight_decay=5e-4,
            warmup_ratio=0.1,
            momentum=0.9,
            stage="prune",
            augment="crop",
            bn_batches=2,
            checkpointer=resume,
        )

    assert_trees_equal(run(Resume(None)), resumed(run, tmp_path, 2))


def arnoldi_run(resume):
    a = np.random.default_rng(0).normal(size=(30, 30))
    return arnoldi_iteration(
        lambda v: a @ (a.T @ v), np.ones(30), 12, checkpointer=resume
    )


def test_arnoldi_resumes_bitwise(tmp_path):
    whole, again = arnoldi_run(Resume(None)), resumed(arnoldi_run, tmp_path, 5)
    assert whole.basis.tobytes() == again.basis.tobytes()
    assert whole.hessenberg.tobytes() == again.hessenberg.tobytes()


def test_state_of_other_settings_or_code_is_refused_and_removed(tmp_path, capsys):
    run = arnoldi_run
    with pytest.raises(Killed):
        run(KilledAfterSaves(tmp_path, 2, identity={"params": {"code": "aaa"}}))
    other = Resume(tmp_path, {"params": {"code": "bbb"}}, every_s=1e9, log=print)
    assert other.restore(lambda _: {}) is None
    out = capsys.readouterr().out
    assert "not resuming from" in out and "differs in ['params.code']" in out
    assert not tmp_path.exists()


def test_unreadable_or_mismatched_state_is_refused(tmp_path, capsys):
    store = Resume(tmp_path, {"job": 1}, every_s=0.0, log=print)
    store.save({"done": 1}, {"basis": np.zeros((3, 4))})
    # another shape than the loop's: refused, not loaded into the wrong structure
    assert store.restore(lambda _: {"basis": np.zeros((3, 5))}) is None
    assert "cannot be read" in capsys.readouterr().out
    store.save({"done": 1}, {"basis": np.zeros((3, 4))})
    arrays = json.loads((tmp_path / "state.json").read_text())["arrays"]
    (tmp_path / arrays).write_bytes(b"\x80\x04junk")  # changed after saving
    assert store.restore(lambda _: {"basis": np.zeros((3, 4))}) is None
    assert "do not match its state.json" in capsys.readouterr().out
