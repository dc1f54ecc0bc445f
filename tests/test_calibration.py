"""Label-free calibration of GEX's fine-tuning learning rate."""

import inspect
import math

import jax
import numpy as np
import pytest

from gex_core.influence import calibration
from gex_core.influence.calibration import (
    PilotStatistics,
    calibrate_with_pilots,
    choose_ft_lr,
    geometric_midpoint,
    pilot_statistics,
    refinement_bracket,
    search_ft_lr,
)
from gex_core.influence.ensemble import FineTuning
from gex_core.training.models import make_model
from gex_core.training.recipes import pretrain
from gex_core.workflow.stages.calibration import run_calibration
from tests.helpers import tiny_data, tiny_mlp

FORBIDDEN = ("mask", "clean", "noise", "noisy_mask", "true")


@pytest.mark.parametrize(
    "function",
    [
        calibrate_with_pilots,
        choose_ft_lr,
        pilot_statistics,
        refinement_bracket,
        search_ft_lr,
        run_calibration,
    ],
)
def test_calibration_never_receives_the_noise_mask_or_clean_labels(function):
    names = inspect.signature(function).parameters
    assert not [n for n in names if any(word in n for word in FORBIDDEN)], names
    # and the module reads no label file: only arrays it is handed
    assert "labels.npz" not in inspect.getsource(calibration)


def test_pilot_statistics_by_hand():
    # 4 training samples, 2 classes: the member predicts 1, 1, 0, 0; given 1, 0, 0, 0
    train_logits = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    heldout_logits = np.array([[1.0, 0.0], [0.0, 1.0]])  # predicts 0, 1
    stats = pilot_statistics(
        0.1,
        train_logits,
        np.array([1, 0, 0, 0]),
        heldout_logits,
        np.array([0, 0]),
        train_losses=np.array([0.5, 1.5, 0.5, 0.5]),
        pretrained_train_losses=np.array([0.1, 0.1, 0.1, 0.1]),
    )
    assert stats == PilotStatistics(0.1, 0.25, 0.5, 0.65, True)


def stats(lr, accuracy, finite=True):
    return PilotStatistics(lr, 0.05, accuracy, 0.1, finite)


def test_the_largest_rate_that_keeps_held_out_accuracy_is_chosen():
    # the shape measured on digits: gentle rates re-memorise, 0.2 escapes and keeps
    # its accuracy, 0.4 destroys the model
    grid = [stats(0.05, 0.95), stats(0.1, 0.955), stats(0.2, 0.96), stats(0.4, 0.10)]
    assert choose_ft_lr(grid, pretrained_heldout_accuracy=0.953, tolerance=0.02) == (
        0.2,
        True,
    )
    # the tolerance is a floor below the pretrained accuracy, inclusive
    assert choose_ft_lr(grid[:2] + [stats(0.2, 0.93)], 0.95, 0.02) == (0.2, True)
    assert choose_ft_lr(grid[:2] + [stats(0.2, 0.92)], 0.95, 0.02) == (0.1, True)
    # a diverged pilot is never chosen, however it scored
    assert choose_ft_lr(grid[:3] + [stats(0.8, 0.99, False)], 0.95, 0.02)[0] == 0.2
    # nothing valid: the gentlest rate, and the record says so
    assert choose_ft_lr([stats(0.1, 0.5), stats(0.2, 0.4)], 0.95, 0.02) == (0.1, False)


def test_calibration_runs_pilots_and_refuses_a_diverging_rate():
    """A real run on a tiny model: a rate that diverges (non-finite loss) is invalid
    and recorded, and a working one is chosen."""
    model = tiny_mlp()
    x, y = tiny_data(60)
    params = pretrain(
        model,
        x,
        y,
        x[:20],
        y[:20],
        seed=0,
        epochs=5,
        batch_size=20,
        lr=0.3,
        weight_decay=5e-4,
        warmup_ratio=0.1,
        momentum=0.9,
        num_checkpoints=1,
        eval_batch_size=32,
        log=lambda _: None,
    ).params
    record = calibrate_with_pilots(
        model,
        params,
        x,
        y,
        x[:20],
        y[:20],
        grid=[1e12, 0.01],
        tolerance=0.5,
        seed=0,
        recipe=FineTuning(
            stages=1,
            ft_lr=math.nan,
            ft_steps=6,
            batch_size=20,
            weight_decay=5e-4,
            momentum=0.9,
        ),
        eval_batch_size=32,
    ).record
    assert record["ft_lr"] == 0.01 and record["valid"]
    assert [row["lr"] for row in record["grid"]] == [0.01, 1e12]  # ascending
    assert record["grid"][1]["finite"] is False
    assert np.isnan(record["grid"][1]["escape"])
    gentle = record["grid"][0]
    assert gentle["finite"] and 0 <= gentle["escape"] <= 1
    _, logits = jax.jit(lambda p, v: (None, model.apply(p, v)))(params, x[:20])
    baseline = float(np.mean(np.asarray(logits).argmax(1) == y[:20]))
    assert record["pretrained_heldout_accuracy"] == pytest.approx(baseline)


def test_refinement_bisects_between_the_choice_and_the_next_failed_rate():
    grid = [stats(0.05, 0.95), stats(0.1, 0.95), stats(0.2, 0.5), stats(0.4, 0.1)]
    assert refinement_bracket(grid, 0.95, 0.02) == (0.1, 0.2)
    assert geometric_midpoint(0.1, 0.2) == 0.141
    assert refinement_bracket(grid + [stats(0.141, 0.94)], 0.95, 0.02) == (0.141, 0.2)
    assert refinement_bracket(grid + [stats(0.141, 0.5)], 0.95, 0.02) == (0.1, 0.141)
    # the largest rate tried is valid, or none is: nothing to bisect
    assert refinement_bracket(grid[:2], 0.95, 0.02) is None
    assert refinement_bracket(grid[2:], 0.95, 0.02) is None


def test_the_search_finds_the_edge_of_a_known_valid_range():
    """Synthetic pilots whose members are known: held-out accuracy holds up to rate
    0.17 and collapses above, the shape measured on digits with 30% noise (0.1
    barely escapes, 0.2 destroys)."""
    tried = []

    def pilot(lr, chain):
        tried.append(lr)
        return stats(lr, 0.9 if lr <= 0.17 else 0.2)

    found = search_ft_lr(pilot, [0.4, 0.025, 0.1, 0.2, 0.05], 2, 0.9, 0.02)
    # from the top down to the first rate that passes; nothing below it
    assert tried == [0.4, 0.2, 0.1, 0.141, 0.168]
    assert [s.lr for s in found] == sorted(tried)
    assert choose_ft_lr(found, 0.9, 0.02) == (0.168, True)
    tried.clear()
    found = search_ft_lr(pilot, [0.025, 0.05, 0.1, 0.2, 0.4], 3, 0.9, 0.02)
    assert tried[-1] == 0.183 and choose_ft_lr(found, 0.9, 0.02) == (0.168, True)
    # without refinement: the grid alone, as before
    tried.clear()
    assert (
        choose_ft_lr(search_ft_lr(pilot, [0.1, 0.2], 0, 0.9, 0.02), 0.9, 0.02)[0] == 0.1
    )
    assert tried == [0.2, 0.1]


def test_other_chains_that_collapse_move_the_choice_down():
    """The failure measured on fresh seeds: at 0.4 chain 0 keeps its accuracy while
    chains 1-3 collapse to chance. Piloting every chain's first stage rejects 0.4;
    at 0.2 chain 2 fails too, so 0.1 is chosen. Each rate stops at its first failing
    chain, and nothing below the chosen rate is piloted."""
    accuracy = {(0.4, 0): 0.94, (0.4, 1): 0.1, (0.2, 1): 0.95, (0.2, 2): 0.2}
    tried = []

    def pilot(lr, chain):
        tried.append((lr, chain))
        return stats(lr, accuracy.get((lr, chain), 0.95))._replace(chain=chain)

    found = search_ft_lr(pilot, [0.05, 0.1, 0.2, 0.4], 0, 0.95, 0.02, (0, 1, 2, 3))
    assert tried == [
        (0.4, 0), (0.4, 1),  # chain 1 fails: 0.4 is done
        (0.2, 0), (0.2, 1), (0.2, 2),  # chain 2 fails
        (0.1, 0), (0.1, 1), (0.1, 2), (0.1, 3),  # all pass; 0.05 is never tried
    ]  # fmt: skip
    assert choose_ft_lr(found, 0.95, 0.02, (0, 1, 2, 3)) == (0.1, True)
    # chain 0 alone (the old calibration) would have taken 0.4
    chain0 = [s for s in found if s.chain == 0]
    assert choose_ft_lr(chain0, 0.95, 0.02) == (0.4, True)
    # a rate not yet piloted on every chain is not valid
    assert choose_ft_lr(chain0, 0.95, 0.02, (0, 1)) == (0.1, False)


def test_refinement_bisects_below_the_rate_another_chain_failed():
    """Chain 0 passes up to 0.2, chain 1 fails at 0.2 (the fresh-seed failure): the
    choice is 0.1, and refinement bisects (0.1, 0.2), not chain 0's (0.2, 0.4),
    piloting every chain at each midpoint: 0.141 passes on all, 0.168 fails on
    chain 2, so 0.141 is chosen."""
    tried = []

    def pilot(lr, chain):
        tried.append((lr, chain))
        fails = lr >= 0.4 or (lr >= 0.2 and chain == 1) or (lr > 0.15 and chain == 2)
        return stats(lr, 0.2 if fails else 0.95)._replace(chain=chain)

    found = search_ft_lr(pilot, [0.05, 0.1, 0.2, 0.4], 2, 0.95, 0.02, (0, 1, 2, 3))
    assert tried == [
        (0.4, 0),  # fails on chain 0
        (0.2, 0), (0.2, 1),  # chain 1 fails at 0.2
        (0.1, 0), (0.1, 1), (0.1, 2), (0.1, 3),
        (0.141, 0), (0.141, 1), (0.141, 2), (0.141, 3),  # refinement 1: all pass
        (0.168, 0), (0.168, 1), (0.168, 2),  # refinement 2: chain 2 fails
    ]  # fmt: skip
    assert choose_ft_lr(found, 0.95, 0.02, (0, 1, 2, 3)) == (0.141, True)


def exhaustive_search(pilot, grid, refine, accuracy, tolerance, chains):
    """The search before the top-down order (5f6d578): chains[0] piloted at every
    grid rate first, then the other chains from the largest rate that passed down."""
    first, others = chains[0], list(chains[1:])

    def passes(lr, chain):
        statistics.append(pilot(lr, chain))
        return statistics[-1].passes(accuracy, tolerance)

    statistics = []
    passed = [lr for lr in sorted(grid) if passes(float(lr), first)]
    for lr in sorted(passed, reverse=True):
        if all(passes(lr, chain) for chain in others):
            break
    for _ in range(refine):
        bracket = refinement_bracket(statistics, accuracy, tolerance, chains)
        if bracket is None or geometric_midpoint(*bracket) in bracket:
            break
        all(passes(geometric_midpoint(*bracket), chain) for chain in chains)
    return statistics


def table_pilot(edge, flaky):
    """A synthetic pilot: (lr, chain) fails above the chain's edge rate and where
    listed in flaky, and passes elsewhere."""

    def pilot(lr, chain):
        fails = lr > edge[chain] or (lr, chain) in flaky
        return stats(lr, 0.2 if fails else 0.95)._replace(chain=chain)

    return pilot


def test_the_top_down_search_chooses_what_piloting_every_rate_chose():
    """On 500 random pass/fail tables over rates and chains (monotone or not), the
    top-down search chooses the rate the exhaustive one chose, with a subset of its
    pilots."""
    rng = np.random.default_rng(0)
    grid = [0.025, 0.05, 0.1, 0.2, 0.4]
    saved = 0
    for _ in range(500):
        chains = tuple(range(rng.integers(1, 5)))
        edge = {c: float(rng.choice([*grid, 1.0])) for c in chains}
        # in a third of the tables some rates below a chain's edge fail too
        flaky = {
            (lr, c) for lr in grid for c in chains if rng.random() < 0.1
        } if rng.random() < 0.3 else set()  # fmt: skip
        pilot = table_pilot(edge, flaky)
        refine = int(rng.integers(0, 3))
        new = search_ft_lr(pilot, grid, refine, 0.95, 0.02, chains)
        old = exhaustive_search(pilot, grid, refine, 0.95, 0.02, chains)
        assert choose_ft_lr(new, 0.95, 0.02, chains) == choose_ft_lr(
            old, 0.95, 0.02, chains
        )
        assert set(new) <= set(old)
        saved += len(old) - len(new)
    assert saved > 500  # about one pilot in three


def test_the_workflow_record_shows_every_chain_pilot(tmp_path):
    """A real calibration over two chains: chain 1's pilot at the chosen rate is chain
    1's first member (the same draws), recorded under chain_pilots; the pilots kept
    are bitwise the chains' first members, and chains started from them end bitwise
    as chains run from the pretrained model."""
    from gex_core.influence.ensemble import first_members_for, run_chain, run_chains

    model = tiny_mlp()
    x, y = tiny_data(60)
    params = pretrain(
        model, x, y, x[:20], y[:20], seed=0, epochs=3, batch_size=20, lr=0.3,
        weight_decay=5e-4, warmup_ratio=0.1, momentum=0.9, num_checkpoints=1,
        eval_batch_size=32, log=lambda _: None,
    ).params  # fmt: skip
    recipe = FineTuning(
        stages=1, ft_lr=math.nan, ft_steps=4, batch_size=20, weight_decay=5e-4,
        momentum=0.9,
    )  # fmt: skip
    record, pilots = calibrate_with_pilots(
        model, params, x, y, x[:20], y[:20], grid=[0.005, 0.01], tolerance=1.0,
        seed=3, chains=(0, 1), recipe=recipe, eval_batch_size=32,
    )  # fmt: skip
    assert record["pilot_chains"] == [0, 1] and record["ft_lr"] == 0.01
    assert [row["lr"] for row in record["grid"]] == [0.01]  # 0.005: below, untried
    [other] = record["chain_pilots"]
    assert (other["chain"], other["lr"]) == (1, 0.01)
    # the chosen rate's pilots are kept, one per chain
    assert record["first_members"] == [0, 1] and sorted(pilots) == [0, 1]
    member = run_chain(
        model, params, (x, y, x[:20], y[:20]), recipe._replace(ft_lr=0.01), seed=3,
        chain=1, eval_batch_size=32, log=lambda _: None,
    ).members[0]  # fmt: skip
    logits = np.asarray(model.apply(member, x[:20]))
    assert other["heldout_accuracy"] == pytest.approx(
        np.mean(logits.argmax(1) == y[:20])
    )
    same = jax.tree_util.tree_map(np.array_equal, pilots[1], member)
    assert all(jax.tree_util.tree_leaves(same))

    chains = recipe._replace(ft_lr=0.01, stages=3)
    data = (x, y, x[40:], y[40:])
    options = dict(seed=3, chains=[0, 1], eval_batch_size=32, log=lambda _: None)
    scratch = run_chains(model, params, data, chains, **options)
    assert first_members_for([0, 1, 2], pilots) is None  # chain 2 has no pilot
    reused = run_chains(
        model, params, data, chains, **options,
        first_members=first_members_for([0, 1], pilots),
    )  # fmt: skip
    for a, b in zip(scratch, reused, strict=True):
        assert np.array_equal(a.train_losses, b.train_losses)
        assert np.array_equal(a.test_losses, b.test_losses)
        for m, n in zip(a.members, b.members, strict=True):
            same = jax.tree_util.tree_map(np.array_equal, m, n)
            assert all(jax.tree_util.tree_leaves(same))
    with pytest.raises(ValueError, match="1 first members given for 2 chains"):
        run_chains(model, params, data, chains, **options, first_members=[member])


def test_auto_tolerance_is_two_agresti_coull_standard_errors():
    from gex_core.influence.calibration import accuracy_tolerance

    # 90 of 100 right: p = 92 / 104, se = sqrt(p (1 - p) / 104)
    p = 92 / 104
    se, tolerance = accuracy_tolerance(0.9, 100)
    assert se == pytest.approx(np.sqrt(p * (1 - p) / 104)) and tolerance == 2 * se
    # all right still leaves room; a 4x larger split halves the tolerance about
    assert accuracy_tolerance(1.0, 144)[1] == pytest.approx(
        2 * np.sqrt((146 / 148) * (2 / 148) / 148)
    )
    assert accuracy_tolerance(0.9, 400)[1] < 0.55 * tolerance


def test_calibration_and_member_check_never_read_the_test_split(tmp_path):
    """The workflow's calibration record and the chains' validation accuracies and
    kept flags are the same when the stored test split is replaced by NaN images
    and wrong labels; the functions' signatures take no test split or noise mask."""
    import inspect

    from gex_core.api.ensemble import calibrate_with_pilots as api_calibrate
    from gex_core.data.datasets import load_digits, with_validation
    from gex_core.influence.members import collapsed_members
    from gex_core.workflow.artifacts import save_dataset
    from gex_core.workflow.checkpoints import load_params_list, save_params
    from gex_core.workflow.io import read_npz, write_npz
    from gex_core.workflow.stages.calibration import run_calibration
    from gex_core.workflow.stages.ensemble import run_ensemble_chains

    for function in (api_calibrate, run_calibration, collapsed_members):
        names = set(inspect.signature(function).parameters)
        assert not names & {"x_test", "y_test", "mask", "clean"}, function

    digits = load_digits()
    small = digits._replace(x_train=digits.x_train[:300], y_train=digits.y_train[:300])
    data = with_validation(small, 0.2)
    model = make_model("mlp", 10, (8, 8, 1))
    params = pretrain(
        model,
        data.x_train,
        data.y_train,
        data.x_test,
        data.y_test,
        seed=0,
        epochs=4,
        batch_size=32,
        lr=0.1,
        weight_decay=5e-4,
        warmup_ratio=0.1,
        momentum=0.9,
        num_checkpoints=1,
        eval_batch_size=128,
        log=lambda _: None,
    ).params
    save_params(tmp_path / "model.msgpack", params)
    write_npz(
        tmp_path / "labels.npz",
        noisy=data.y_train,
        clean=data.y_train,
        mask=np.zeros(len(data.y_train), bool),
    )
    recipe = {
        "calibration": {
            "grid": [0.05, 0.5],
            "tolerance": "auto",
            "refine": 0,
            "pilot_chains": "all",
        },
        "stages": 2,
        "ft_steps": 4,
        "batch_size": 32,
        "augment": "none",
        "ft_lr": "auto",
        "member_check": "drop",
    }
    pretrain_recipe = {"weight_decay": 5e-4, "momentum": 0.9, "bn_batches": 2}
    results = []
    broken = data._replace(
        x_test=np.full_like(data.x_test, np.nan), y_test=(data.y_test + 1) % 10
    )
    for name, stored in (("real", data), ("broken", broken)):
        folder = tmp_path / name
        folder.mkdir()
        save_dataset(str(folder / "data.npz"), stored)
        common = dict(
            data_path=str(folder / "data.npz"),
            labels_path=str(tmp_path / "labels.npz"),
            model_name="mlp",
            model_path=str(tmp_path / "model.msgpack"),
            seed=0,
            recipe=recipe,
            pretrain_recipe=pretrain_recipe,
            eval_batch_size=128,
        )
        record = run_calibration(
            **common,
            chains=2,
            outputs={
                "record": str(folder / "calibration.json"),
                "plot": str(folder / "calibration.png"),
                "pilots": str(folder / "pilots.msgpack"),
            },
        )
        run_ensemble_chains(
            **common,
            chains=[0, 1],
            outputs={
                "losses": str(folder / "chains.npz"),
                "members": str(folder / "chains.msgpack"),
            },
            calibration_path=str(folder / "calibration.json"),
            pilots_path=str(folder / "pilots.msgpack"),
        )
        chains = read_npz(folder / "chains.npz", ("val_accuracy", "kept"))
        results.append((record, chains))
    (real, real_chains), (other, other_chains) = results
    assert real == other
    assert real["heldout_size"] == len(data.y_val) == 60
    assert real["pilot_chains"] == [0, 1]
    assert real["tolerance"] == pytest.approx(2 * real["standard_error"])
    for key in ("val_accuracy", "kept"):
        np.testing.assert_array_equal(real_chains[key], other_chains[key])
    # the chains started from the pilots: each chain's first member is its pilot
    assert real["first_members"] == [0, 1]
    pilots = load_params_list(tmp_path / "real" / "pilots.msgpack", params)
    members = load_params_list(tmp_path / "real" / "chains.msgpack", params)
    for pilot, member in zip(pilots, members[::2], strict=True):
        same = jax.tree_util.tree_map(np.array_equal, pilot, member)
        assert all(jax.tree_util.tree_leaves(same))


def test_a_pilots_file_that_does_not_match_its_record_is_named(tmp_path):
    """The chains read the pilots the calibration record names; a file holding
    another count (written by another run) is an error naming both files."""
    from gex_core.workflow.checkpoints import save_params
    from gex_core.workflow.io import write_json
    from gex_core.workflow.stages.ensemble import read_pilots

    params = tiny_mlp().init(jax.random.key(0))
    record, pilots = tmp_path / "calibration.json", tmp_path / "pilots.msgpack"
    write_json(record, {"ft_lr": 0.1, "first_members": [0, 1]})
    save_params(pilots, [params, params])
    read = read_pilots(str(record), str(pilots), params, "mlp")
    assert sorted(read) == [0, 1]
    assert read_pilots(str(record), None, params, "mlp") == {}  # no calibration
    save_params(pilots, [params])
    with pytest.raises(
        ValueError, match="holds 1 pilots but .*calibration.json names 2"
    ):
        read_pilots(str(record), str(pilots), params, "mlp")
