"""The public API: arrays and a Flax model in, scores or a table out; no files."""

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits

from gex_core import api
from gex_core.influence.ensemble import FineTuning, run_chains
from gex_core.influence.randproj import randproj_scores
from gex_core.training.hooks import no_log
from gex_core.training.losses import (
    SIGMOID_BINARY_CROSS_ENTROPY,
    SQUARED_ERROR,
    get_loss,
)
from gex_core.training.models import make_model
from gex_core.training.seeds import jax_key
from tests.helpers import tiny_data


@pytest.fixture(scope="module")
def digits():
    """600 digits with 30 labels moved to another class (rows `flipped`)."""
    bunch = load_digits()
    x = (bunch.images[:600] / 16.0).astype(np.float32)[..., None]
    y = bunch.target[:600].astype(np.int32)
    rng = np.random.default_rng(0)
    flipped = np.sort(rng.choice(600, 30, replace=False))
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 10, 30)) % 10
    return x, noisy, flipped


@pytest.fixture(scope="module")
def trained():
    """A tiny MLP trained on 40 samples, as arrays and a Flax apply function."""
    x, y = tiny_data(40)
    x_te, y_te = tiny_data(12, seed=1)
    result = api.train_model(
        x, y, x_te, y_te, model="mlp", epochs=4, batch_size=16, num_checkpoints=2
    )
    return result, (x, y, x_te, y_te), result.model


def test_find_label_issues_puts_moved_labels_first(digits):
    x, noisy, flipped = digits
    table = api.find_label_issues(
        x,
        noisy,
        model="mlp",
        training={"epochs": 10},
        ensemble={"chains": 2, "stages": 1, "ft_steps": 20, "ft_lr": 0.1},
    )
    assert list(table.columns) == [
        "index",
        "given_label",
        "suggested_label",
        "suggested_probability",
        "score",
        "rank",
        "flagged",
    ]
    # 20% of the rows are held out for test, 10% of the rest for validation
    # (stratified), the remaining 432 are scored
    assert len(table) == 432 and table["index"].is_unique
    assert (np.diff(table["score"]) <= 0).all()
    np.testing.assert_array_equal(table["rank"], np.arange(1, 433))
    np.testing.assert_array_equal(table["given_label"], noisy[table["index"]])
    assert (table["suggested_label"] != table["given_label"]).all()
    # the flagged rows are exactly those above one threshold
    assert table["flagged"].to_numpy().tolist() == sorted(
        table["flagged"], reverse=True
    )
    scored = set(table["index"])
    moved = [i for i in flipped if i in scored]
    top = set(table["index"][: len(moved)])
    precision = len(top & set(moved)) / len(moved)
    # chance is 30 / 600 = 0.05; measured 0.57 with these settings
    assert precision > 0.4, precision


def test_randproj_through_the_api_is_the_library_function(trained):
    result, (x, y, x_te, y_te), model = trained
    got = api.influence(
        model.apply,
        result.result.params,
        x,
        y,
        x_te,
        y_te,
        method="randproj",
        seed=3,
        dim=8,
        queries=[0, 2],
    )
    want = randproj_scores(
        model.apply,
        result.result.params,
        x,
        y,
        x_te,
        y_te,
        key=jax_key(3, "randproj"),
        dim=8,
        batch_size=512,
        strategy="vjp",
        queries=np.array([0, 2]),
    )
    np.testing.assert_array_equal(got.self_influence, want.self_influence)
    np.testing.assert_array_equal(got.kernel, want.kernel)
    assert got.kernel.shape == (40, 2)


def test_gex_through_the_api_scores_the_members_losses(trained):
    result, (x, y, x_te, y_te), model = trained
    params = result.result.params
    ensemble = api.fit_geometric_ensemble(
        model.apply,
        params,
        x,
        y,
        ft_lr=0.05,
        chains=2,
        stages=2,
        ft_steps=5,
        batch_size=16,
    )
    assert len(ensemble.members) == 4 and ensemble.train_losses.shape == (4, 40)
    scores = api.influence(
        model.apply, params, x, y, x_te, y_te, method="gex", ensemble=ensemble
    )
    losses = api.member_losses(model.apply, ensemble.members, x, y)
    np.testing.assert_array_equal(losses, ensemble.train_losses)
    pretrained = api.member_losses(model.apply, [params], x, y)[0]
    expected = ((losses - pretrained) ** 2).mean(0)
    np.testing.assert_allclose(scores.self_influence, expected, rtol=1e-6)


def test_chains_do_not_depend_on_their_companions(trained):
    result, (x, y, _, _), model = trained
    params = result.result.params
    knobs = dict(ft_lr=0.05, stages=1, ft_steps=5, batch_size=16)
    three = api.fit_geometric_ensemble(model.apply, params, x, y, chains=3, **knobs)
    one = api.fit_geometric_ensemble(model.apply, params, x, y, chains=[2], **knobs)
    for a, b in zip(
        jax.tree.leaves(three.members[2]), jax.tree.leaves(one.members[0]), strict=True
    ):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_ft_lr_auto_calibrates_on_the_held_out_data(trained):
    result, (x, y, x_te, y_te), model = trained
    params = result.result.params
    ensemble = api.fit_geometric_ensemble(
        model.apply,
        params,
        x,
        y,
        x_val=x_te,
        y_val=y_te,
        grid=[1e12, 0.01],
        tolerance=0.5,
        refine=0,
        chains=1,
        stages=1,
        ft_steps=4,
        batch_size=16,
    )
    # the enormous rate diverges, so the calibration keeps 0.01
    assert ensemble.ft_lr == 0.01 and ensemble.calibration["valid"]
    assert [row["finite"] for row in ensemble.calibration["grid"]] == [True, False]
    with pytest.raises(ValueError, match="held-out data: give x_val and y_val"):
        api.fit_geometric_ensemble(model.apply, params, x, y)


def test_bad_calls_name_the_problem(trained):
    result, (x, y, x_te, y_te), model = trained
    params = result.result.params
    with pytest.raises(ValueError, match="randproj has no option 'dimension'"):
        api.influence(model.apply, params, x, y, method="randproj", dimension=3)
    with pytest.raises(ValueError, match="unknown influence method 'gexx'"):
        api.influence(model.apply, params, x, y, method="gexx")
    with pytest.raises(ValueError, match="pass ensemble="):
        api.influence(model.apply, params, x, y, method="gex")
    with pytest.raises(ValueError, match="el2n trains fresh models"):
        api.influence(model.apply, params, x, y, method="el2n")
    with pytest.raises(
        ValueError, match="tracin needs the training's trajectory: pass trajectory="
    ):
        api.influence(model.apply, params, x, y, method="tracin")
    with pytest.raises(
        ValueError,
        match="la_kfac works with the loss softmax_cross_entropy only, not squared_err",
    ):
        api.influence(model.apply, params, x, y, method="la_kfac", loss="squared_error")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        get_loss("hinge")


def test_the_provided_losses_match_their_closed_forms():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 2])
    sigmoid = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    onehot = np.eye(3)[labels]
    bce = -(onehot * np.log(sigmoid) + (1 - onehot) * np.log(1 - sigmoid)).sum(1)
    np.testing.assert_allclose(
        SIGMOID_BINARY_CROSS_ENTROPY.per_sample(logits, labels), bce, rtol=1e-6
    )
    squared = 0.5 * ((logits - onehot) ** 2).sum(1)
    np.testing.assert_allclose(SQUARED_ERROR.per_sample(logits, labels), squared)
    probs = SIGMOID_BINARY_CROSS_ENTROPY.probabilities(logits)
    np.testing.assert_allclose(probs, sigmoid / sigmoid.sum(1, keepdims=True))


def test_a_user_loss_trains_the_ensemble_and_scores_with_it(trained):
    result, (x, y, _, _), model = trained
    params = result.result.params
    ensemble = api.fit_geometric_ensemble(
        model.apply,
        params,
        x,
        y,
        ft_lr=0.05,
        chains=1,
        stages=1,
        ft_steps=3,
        batch_size=16,
        loss="squared_error",
    )
    losses = api.member_losses(
        model.apply, ensemble.members, x, y, loss="squared_error"
    )
    logits = np.asarray(model.apply(ensemble.members[0], x), np.float64)
    expected = 0.5 * ((logits - np.eye(3)[y]) ** 2).sum(1)
    np.testing.assert_allclose(losses[0], expected, rtol=1e-5)
    np.testing.assert_array_equal(losses, ensemble.train_losses)
    # the same chain under cross-entropy moves elsewhere
    other = api.fit_geometric_ensemble(
        model.apply,
        params,
        x,
        y,
        ft_lr=0.05,
        chains=1,
        stages=1,
        ft_steps=3,
        batch_size=16,
    )
    first = jax.tree.leaves(ensemble.members[0])[0]
    assert not np.allclose(first, jax.tree.leaves(other.members[0])[0])


def test_the_workflow_chains_are_the_api_ensemble():
    """run_chains (the workflow's job) and fit_geometric_ensemble give the same
    members for the same recipe and seed."""
    model = make_model("mlp", 3, (4, 1, 1))
    x, y = tiny_data(32)
    params = model.init(jax.random.key(0))
    recipe = FineTuning(2, 0.05, 4, 16, 5.0e-4, 0.9)
    direct = run_chains(
        model,
        params,
        (x, y, x, y),
        recipe,
        seed=1,
        chains=[0, 1],
        eval_batch_size=512,
        log=no_log,
    )
    through = api.fit_geometric_ensemble(
        model,
        params,
        x,
        y,
        ft_lr=0.05,
        chains=2,
        stages=2,
        ft_steps=4,
        batch_size=16,
        seed=1,
    )
    np.testing.assert_array_equal(
        np.concatenate([r.train_losses for r in direct]), through.train_losses
    )


def test_a_collapsed_member_is_dropped_or_fails_the_call():
    """A linear model that is right on every validation sample, and a member that
    predicts class 0 for everything: drop marks it not kept, fail names it."""
    from gex_core.api.ensemble import check_members
    from gex_core.training.models import Model

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, 3)).astype(np.float32)
    x = rng.normal(size=(200, 3, 1, 1)).astype(np.float32)
    y = (x.reshape(200, 3) @ weights).argmax(1).astype(np.int32)

    def apply(params, xb):
        return xb.reshape(xb.shape[0], -1) @ params["w"] + params["b"]

    model = Model("linear", lambda key: None, apply)
    trained = {"w": weights, "b": np.zeros(3, np.float32)}
    collapsed = {"w": np.zeros((3, 3), np.float32), "b": np.array([9.0, 0, 0], "f4")}
    messages = []

    def check(mode, log):
        return check_members(
            model,
            trained,
            [trained, collapsed],
            (x, y),
            y,
            get_loss("softmax_cross_entropy"),
            64,
            mode,
            log,
        )

    accuracy, kept = check("drop", messages.append)
    assert accuracy[0] == 1.0 and accuracy[2] == np.mean(y == 0)
    assert kept.tolist() == [True, False]
    assert "dropped members [1] of 2 collapsed" in messages[0]
    with pytest.raises(ValueError, match=r"members \[1\] of 2 collapsed .*lower ft_lr"):
        check("fail", no_log)


def test_calibrate_ft_lr_is_the_record_of_calibrate_with_pilots(trained):
    """api.calibrate_ft_lr returns the record alone; api.calibrate_with_pilots the same
    record and the pilots at its chosen rate, one per piloted chain."""
    result, (x, y, x_te, y_te), model = trained
    params = result.result.params
    options = dict(grid=[0.01, 0.05], chains=2, ft_steps=4, batch_size=16, seed=1)
    record = api.calibrate_ft_lr(model, params, x, y, x_te, y_te, **options)
    calibration = api.calibrate_with_pilots(model, params, x, y, x_te, y_te, **options)
    assert isinstance(calibration, api.Calibration)
    assert record == calibration.record and record["ft_lr"] in (0.01, 0.05)
    assert sorted(calibration.first_members) == record["first_members"]
