import jax
import numpy as np
import optax
import pytest

from gex_core.training.fit import Chunk, FitHooks, check_finite
from gex_core.training.models import make_model
from gex_core.training.recipes import pretrain, trajectory_epochs, update_record
from gex_core.training.steps import warmup_cosine_schedule
from tests.helpers import tiny_data, tiny_mlp


def test_trajectory_epochs_as_the_research_code():
    assert trajectory_epochs(200, 5) == [120, 140, 160, 180, 200]
    assert trajectory_epochs(60, 5) == [36, 42, 48, 54, 60]
    with pytest.raises(ValueError, match="do not fit"):
        trajectory_epochs(4, 3)


def test_schedule_warms_up_linearly_then_decays_to_zero():
    schedule = warmup_cosine_schedule(0.4, 100, 0.1)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.2)
    assert float(schedule(10)) == pytest.approx(0.4)
    assert float(schedule(55)) == pytest.approx(0.2, abs=1e-6)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-7)


def test_forgetting_counts_correct_to_incorrect_transitions():
    n = 3
    last, forget, prev = np.zeros(n), np.zeros(n, int), np.zeros(n)
    # visits of samples 0..2 over four steps; sample 2 appears twice in step 3
    idx = np.array([[0, 1, 2], [0, 1, 2], [2, 0, 2]])
    correct = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1]], float)
    losses = np.array([[0.1, 2, 0.2], [3, 2.5, 0.1], [1.5, 0.3, 0.05]])
    update_record(last, forget, prev, idx, losses, correct)
    # sample 0: 1 -> 0 (forgotten) -> 1; sample 1 never learned; sample 2: 1,1,0,1
    np.testing.assert_array_equal(forget, [1, 0, 1])
    np.testing.assert_allclose(last, [0.3, 2.5, 0.05])


def test_non_finite_loss_names_stage_step_and_hyperparameters():
    losses = np.array([[0.1, 0.2], [0.3, np.inf], [np.nan, 0.1]])
    with pytest.raises(
        FloatingPointError, match=r"in pretrain at step 11; .*'lr': 9.0"
    ):
        check_finite(
            Chunk(10, None, losses, None), FitHooks(name="pretrain"), None, {"lr": 9.0}
        )


def run_tiny(seed=0, lr=0.3, epochs=6):
    model = tiny_mlp()
    x, y = tiny_data(40)
    return pretrain(
        model,
        x,
        y,
        x[:10],
        y[:10],
        seed=seed,
        epochs=epochs,
        batch_size=16,
        lr=lr,
        weight_decay=5e-4,
        warmup_ratio=0.1,
        momentum=0.9,
        num_checkpoints=2,
        eval_batch_size=32,
        log=lambda _: None,
    )


def test_pretraining_is_bitwise_deterministic_and_learns():
    a, b = run_tiny(), run_tiny()
    for p, q in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(a.record.forgetting, b.record.forgetting)
    assert a.history[-1]["train_loss"] < a.history[0]["train_loss"]
    assert [epoch for epoch, _ in a.trajectory] == [4, 5]
    assert a.record.learned.dtype == bool and a.record.learned.any()
    c = run_tiny(seed=1)
    assert not np.array_equal(
        jax.tree.leaves(a.params)[0], jax.tree.leaves(c.params)[0]
    )


def test_divergence_fails_at_once():
    with pytest.raises(
        FloatingPointError, match="non-finite training loss in pretrain"
    ):
        run_tiny(lr=1e12)


def test_models_are_pure_functions_of_params_and_inputs():
    for name in ("mlp", "cnn"):
        model = make_model(name, 10, (8, 8, 1))
        params = model.init(jax.random.key(0))
        x = np.ones((2, 8, 8, 1), np.float32)
        out = model.apply(params, x)
        assert out.shape == (2, 10)

        def loss(p, apply=model.apply, x=x):
            return optax.softmax_cross_entropy_with_integer_labels(
                apply(p, x), np.array([1, 2])
            ).sum()

        grad = jax.jit(jax.grad(loss))(params)  # op by op: ~100 compiled programs
        assert jax.tree.structure(grad) == jax.tree.structure(params)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        make_model("resnet", 10, (8, 8, 1))
