"""Results do not depend on the number of devices (data parallelism, gex_core.training.devices).

XLA_FLAGS must be set before JAX starts, so each device count runs in a child Python
process (this module run as a script) that pretrains a small CNN and a small
batch-norm network, runs an ensemble chain, and scores per-sample losses and gradient
projections; the test compares what the 4-device and 1-device children wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# Trained parameters and member losses: float32 sums of the gradient and of batch-norm
# statistics split over devices round differently (~1e-7 relative per step), and SGD
# carries that through the run (measured: at most 4e-7 of the array's scale here, 5e-5
# after 3 epochs and a 20-step chain); 1e-3 leaves margin, while a real device-count
# dependence (per-device batch-norm statistics, gradients summed instead of averaged,
# misplaced rows) moves results by 1e-2 or more.
TRAINED_RTOL = 1e-3
# Scores of identical parameters: each device runs the one-device program on its rows,
# so only the CPU kernels' blocking of a smaller batch differs (measured: 1.6e-6).
SCORED_RTOL = 1e-5


def child(out: str) -> None:
    """Train and score tiny models on this process's devices; save arrays to `out`."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from sklearn.datasets import load_digits

    from gex_core.influence.ensemble import FineTuning, run_chain, run_chains
    from gex_core.influence.projection import project_gradients, random_directions
    from gex_core.training.devices import batch_sharding, data_mesh, per_device
    from gex_core.training.hooks import no_log
    from gex_core.training.models import ConvBN, bn_model, make_model
    from gex_core.training.recipes import fit_fresh, pretrain
    from gex_core.training.steps import evaluate, make_eval_fn, make_train_step, sgd

    class TinyBN(nn.Module):
        num_classes: int
        bn_momentum: float = 0.9

        @nn.compact
        def __call__(self, x, train=False):
            x = nn.relu(ConvBN(8, bn_momentum=self.bn_momentum)(x, train))
            return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    x_tr, y_tr, x_te, y_te = x[:256], y[:256], x[256:320], y[256:320]
    common = dict(weight_decay=5e-4, momentum=0.9, log=lambda _: None)
    saved = {"device_count": np.array(jax.device_count())}

    def save(prefix, tree):
        for i, leaf in enumerate(jax.tree.leaves(tree)):
            saved[f"{prefix}/{i}"] = np.asarray(leaf)

    cnn = make_model("cnn", 10, (8, 8, 1))
    init = cnn.init(jax.random.key(0))
    # batch 32: split over all 4 devices
    result = pretrain(
        cnn,
        x_tr,
        y_tr,
        x_te,
        y_te,
        seed=0,
        epochs=2,
        batch_size=32,
        lr=0.05,
        warmup_ratio=0.1,
        num_checkpoints=1,
        eval_batch_size=90,
        **common,
    )
    save("pretrained", result.params)
    fine_tuning = FineTuning(
        stages=1,
        ft_lr=0.1,
        ft_steps=8,
        batch_size=30,
        weight_decay=5e-4,
        momentum=0.9,
    )
    data = (cnn, result.params, (x_tr, y_tr, x_te, y_te))
    # batch 30: split over 2 of 4 devices (gcd), each half computed twice
    chain = run_chain(
        *data, fine_tuning, seed=0, chain=1, eval_batch_size=90, log=no_log
    )
    save("member", chain.members)
    saved["member_train_losses"] = chain.train_losses
    saved["member_test_losses"] = chain.test_losses
    # two chains advanced by one vmapped step, its batches split over the mesh
    batched = run_chains(
        *data,
        fine_tuning._replace(batch_size=32),
        seed=0,
        chains=[0, 1],
        eval_batch_size=90,
        batched=True,
        log=no_log,
    )
    save("member_batched", [c.members for c in batched])

    # scores of identical parameters: eval batch 90 is padded to 92 on 4 devices
    eval_fn = make_eval_fn(cnn.apply)
    saved["init_losses"], saved["init_logits"] = evaluate(eval_fn, init, x_tr, y_tr, 90)
    directions = random_directions(jax.random.key(1), init, 4)
    for strategy in ("vjp", "jvp"):
        saved[f"init_projection_{strategy}"] = project_gradients(
            cnn.apply, init, directions, x_tr, y_tr, 64, strategy
        )

    bn = bn_model("tinybn", TinyBN(10), jnp.zeros((1, 8, 8, 1)))
    # one epoch of batch 32 with crop augmentation, then the batch-norm re-estimate
    bn_params = fit_fresh(
        bn,
        x_tr,
        y_tr,
        np.arange(256),
        init_key=jax.random.key(2),
        order_rng=np.random.default_rng(2),
        epochs=1,
        batch_size=32,
        lr=0.05,
        weight_decay=5e-4,
        warmup_ratio=0.1,
        momentum=0.9,
        stage="test",
        augment="crop",
        bn_batches=3,
    )
    save("bn_trained", bn_params)
    saved["bn_losses"] = evaluate(make_eval_fn(bn.apply), bn_params, x_te, y_te, 90)[0]

    # what ran where: placed arrays, a per-device pass and the lowered training step
    mesh = data_mesh()
    leaf = jax.tree.leaves(result.params)[0]
    saved["param_devices"] = np.array(len(leaf.sharding.device_set))
    batch = jax.device_put(x_tr[:32], batch_sharding(mesh, 32))
    saved["batch_devices"] = np.array(len(batch.sharding.device_set))
    saved["batch_shard_rows"] = np.array(
        [s.data.shape[0] for s in batch.addressable_shards]
    )
    xs, ys = jax.device_put((x_tr[:32], y_tr[:32]), batch_sharding(mesh, 32))
    logits = per_device(eval_fn, mesh, 1, 2)(init, xs, ys)[1]
    saved["scored_shard_rows"] = np.array(
        [s.data.shape[0] for s in logits.addressable_shards]
    )
    # the step splits its batch over the mesh (lowered only: no compilation)
    tx = sgd(lambda _: 0.1, 0.9)
    step = make_train_step(cnn.train_forward, tx, 5e-4, "none", mesh)
    lowered = step.lower(
        init, tx.init(init), x_tr, y_tr, np.arange(32), jax.random.key(0), 0
    ).as_text()
    saved["step_constrains_batch"] = np.array("sharding_constraint" in lowered)
    np.savez(out, **saved)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{device count: the child's arrays}, both children run at once."""
    tmp = tmp_path_factory.mktemp("devices")
    procs = {}
    for count in (1, 4):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}",
        }
        out = tmp / f"devices{count}.npz"
        procs[count] = (
            subprocess.Popen(
                [sys.executable, "-m", "tests.test_devices", str(out)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            out,
        )
    results = {}
    for count, (proc, out) in procs.items():
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{count}-device child failed:\n{log}"
        results[count] = dict(np.load(out))
    return results


def assert_close(a: np.ndarray, b: np.ndarray, rtol: float, what: str) -> None:
    """max |a - b| <= rtol * max |a|: relative to the array's scale, so entries near 0
    (where float32 rounding is large relative to the value) do not dominate."""
    scale = float(np.max(np.abs(a)))
    err = float(np.max(np.abs(a.astype(np.float64) - b)))
    assert err <= rtol * scale, f"{what}: max deviation {err:.3g}, scale {scale:.3g}"


def test_a_batch_is_split_over_the_largest_count_dividing_batch_and_devices():
    from gex_core.training.devices import split_count

    assert split_count(64, 4) == 4
    assert split_count(30, 4) == 2  # two groups of two devices, each computing half
    assert split_count(64, 3) == 1  # replicated: correct, not faster
    assert split_count(64, 1) == 1


@pytest.mark.slow
def test_the_four_device_run_is_data_parallel(runs):
    one, four = runs[1], runs[4]
    assert int(one["device_count"]) == 1 and int(four["device_count"]) == 4
    assert int(four["param_devices"]) == 4  # replicated on every device
    assert int(four["batch_devices"]) == 4
    np.testing.assert_array_equal(four["batch_shard_rows"], [8, 8, 8, 8])
    np.testing.assert_array_equal(four["scored_shard_rows"], [8, 8, 8, 8])
    assert bool(four["step_constrains_batch"]) and not bool(
        one["step_constrains_batch"]
    )


@pytest.mark.slow
def test_trained_parameters_and_member_losses_do_not_depend_on_devices(runs):
    one, four = runs[1], runs[4]
    trained = [k for k in one if k.split("/")[0] in ("pretrained", "member")]
    trained += [k for k in one if k.startswith("bn_") or k.startswith("member_")]
    assert len(trained) > 10 and any(k.startswith("member_batched/") for k in trained)
    for key in trained:
        assert_close(one[key], four[key], TRAINED_RTOL, key)


@pytest.mark.slow
def test_scores_do_not_depend_on_devices(runs):
    one, four = runs[1], runs[4]
    scored = [k for k in one if k.startswith("init_")]
    assert len(scored) == 4
    for key in scored:
        assert_close(one[key], four[key], SCORED_RTOL, key)


if __name__ == "__main__":
    child(sys.argv[1])
