import numpy as np
import pytest

from gex_core.influence.gex import gex_scores, loss_deviation


def test_gex_matches_a_hand_computation():
    # M = 2 members, N = 3 training samples, N_te = 2 test samples.
    members = np.array([[0.30, 0.02, 1.00], [0.10, 0.06, 0.50]])
    pretrained = np.array([0.20, 0.01, 0.40])
    members_test = np.array([[0.5, 0.7], [0.2, 0.2]])  # member test means 0.6, 0.2
    pretrained_test = np.array([0.3, 0.1])  # mean 0.2
    scores = gex_scores(
        members, pretrained, members_test, pretrained_test, 0.05, reference="clamped"
    )
    # Delta = member - max(pretrained, 0.05): the 0.01 is clamped to 0.05.
    delta = np.array([[0.10, -0.03, 0.60], [-0.10, 0.01, 0.10]])
    np.testing.assert_allclose(
        scores.self_influence,
        [(0.01 + 0.01) / 2, (0.0009 + 0.0001) / 2, (0.36 + 0.01) / 2],
    )
    delta_test = np.array([0.6 - 0.2, 0.2 - 0.2])
    np.testing.assert_allclose(
        scores.test_influence, (delta_test[:, None] * delta).mean(0)
    )
    np.testing.assert_allclose(scores.test_influence, [0.02, -0.006, 0.12])


def test_tau_zero_disables_the_clamp():
    members = np.array([[0.02], [0.04]])
    pretrained = np.array([0.01])
    delta = loss_deviation(members, pretrained, tau=0.0, reference="clamped")
    np.testing.assert_allclose(delta, [[0.01], [0.03]])
    clamped = loss_deviation(members, pretrained, tau=0.05, reference="clamped")
    np.testing.assert_allclose(clamped, [[-0.03], [-0.01]])


def test_clamp_inverts_the_ranking_of_a_memorised_set():
    # Pretrained losses far below tau and members that barely move: the clamp makes the
    # best-fit (clean) sample look most influential, which tau = 0 does not.
    pretrained = np.array([0.001, 0.02])  # sample 1 is the noisy one
    members = np.array([[0.002, 0.04], [0.001, 0.03]])
    test = np.zeros((2, 1))
    with_clamp = gex_scores(
        members, pretrained, test, np.zeros(1), 0.05, reference="clamped"
    ).self_influence
    without = gex_scores(
        members, pretrained, test, np.zeros(1), 0.0, reference="clamped"
    ).self_influence
    assert with_clamp[0] > with_clamp[1]
    assert without[1] > without[0]


def test_scores_follow_members_and_samples():
    rng = np.random.default_rng(0)
    members, pretrained = rng.random((5, 7)), rng.random(7)
    members_test, pretrained_test = rng.random((5, 3)), rng.random(3)
    scores = gex_scores(members, pretrained, members_test, pretrained_test, 0.05)
    delta = members - pretrained  # the default reference: the pretrained loss
    delta_test = members_test.mean(1) - pretrained_test.mean()
    np.testing.assert_allclose(scores.self_influence, (delta**2).mean(0))
    np.testing.assert_allclose(
        scores.test_influence, (delta_test[:, None] * delta).mean(0)
    )
    assert scores.kernel is None


@pytest.mark.parametrize("tau", [0.0, 0.05])
def test_self_influence_is_mean_squared_deviation(tau):
    rng = np.random.default_rng(1)
    members, pretrained = rng.random((4, 6)), rng.random(6) * 0.1
    scores = gex_scores(
        members, pretrained, rng.random((4, 2)), rng.random(2), tau, reference="clamped"
    )
    expected = ((members - np.maximum(pretrained, tau)) ** 2).mean(0)
    np.testing.assert_allclose(scores.self_influence, expected)


# M = 2 members, N = 3 training samples, N_te = 2 test samples (as above)
MEMBERS = np.array([[0.30, 0.02, 1.00], [0.10, 0.06, 0.50]])
PRETRAINED = np.array([0.20, 0.01, 0.40])
MEMBERS_TEST = np.array([[0.5, 0.7], [0.2, 0.2]])  # member test means 0.6, 0.2
PRETRAINED_TEST = np.array([0.3, 0.1])  # mean 0.2


@pytest.mark.parametrize(
    "reference, self_influence, test_influence, kernel",
    [
        # Delta = member - pretrained: [[0.10, 0.01, 0.60], [-0.10, 0.05, 0.10]];
        # Delta_te = [0.6 - 0.2, 0.2 - 0.2]; query 1: [0.7 - 0.1, 0.2 - 0.1]
        (
            "pretrained",
            [0.01, 0.0013, 0.185],
            [0.02, 0.002, 0.12],
            [0.025, 0.0055, 0.185],
        ),
        # Delta = member - member mean [0.20, 0.04, 0.75]:
        # [[0.10, -0.02, 0.25], [-0.10, 0.02, -0.25]]; Delta_te = [0.6 - 0.4, 0.2 - 0.4];
        # query 1: [0.7 - 0.45, 0.2 - 0.45]
        (
            "ensemble_mean",
            [0.01, 0.0004, 0.0625],
            [0.02, -0.004, 0.05],
            [0.025, -0.005, 0.0625],
        ),
    ],
)
def test_each_reference_matches_a_hand_computation(
    reference, self_influence, test_influence, kernel
):
    scores = gex_scores(
        MEMBERS,
        PRETRAINED,
        MEMBERS_TEST,
        PRETRAINED_TEST,
        tau=0.05,  # only the clamped reference uses it
        queries=np.array([1]),
        reference=reference,
    )
    np.testing.assert_allclose(scores.self_influence, self_influence, atol=1e-15)
    np.testing.assert_allclose(scores.test_influence, test_influence, atol=1e-15)
    np.testing.assert_allclose(scores.kernel[:, 0], kernel, atol=1e-15)


def test_pretrained_reference_is_the_default_as_in_the_config_schema():
    import yaml

    from tests.workflow_util import ROOT

    schema = yaml.safe_load((ROOT / "schemas/config.schema.yaml").read_text())
    gex_schema = schema["properties"]["influence"]["properties"]["gex"]
    assert gex_schema["properties"]["reference"]["default"] == "pretrained"
    default = gex_scores(MEMBERS, PRETRAINED, MEMBERS_TEST, PRETRAINED_TEST, 0.05)
    np.testing.assert_allclose(default.self_influence, [0.01, 0.0013, 0.185])
    clamped = gex_scores(
        MEMBERS, PRETRAINED, MEMBERS_TEST, PRETRAINED_TEST, 0.05, reference="clamped"
    )
    np.testing.assert_allclose(
        clamped.self_influence, [(0.01 + 0.01) / 2, (0.0009 + 0.0001) / 2, 0.185]
    )


def test_unknown_reference_is_named():
    with pytest.raises(ValueError, match="unknown GEX reference 'mean'; choose one of"):
        gex_scores(
            MEMBERS, PRETRAINED, MEMBERS_TEST, PRETRAINED_TEST, 0.0, reference="mean"
        )


def test_neither_new_reference_inverts_a_memorised_set():
    # the case where the clamp inverts (test_clamp_inverts_the_ranking_of_a_memorised_set)
    pretrained = np.array([0.001, 0.02])  # sample 1 is the noisy one
    members = np.array([[0.002, 0.04], [0.001, 0.03]])
    test = np.zeros((2, 1))
    for reference in ("pretrained", "ensemble_mean"):
        scores = gex_scores(
            members, pretrained, test, np.zeros(1), 0.05, reference=reference
        )
        assert scores.self_influence[1] > scores.self_influence[0], reference


@pytest.mark.parametrize("reference", ["pretrained", "ensemble_mean"])
def test_kernel_mean_over_every_test_sample_is_test_influence(reference):
    rng = np.random.default_rng(2)
    scores = gex_scores(
        rng.random((6, 5)),
        rng.random(5),
        rng.random((6, 4)),
        rng.random(4),
        tau=0.5,  # ignored by these references
        queries=np.arange(4),
        reference=reference,
    )
    np.testing.assert_allclose(scores.kernel.mean(axis=1), scores.test_influence)


def test_a_collapsed_member_is_dropped_and_counted():
    """A member nearer chance than the trained model on validation data is not kept;
    the scores are those of the kept members; fewer than half kept is an error."""
    from types import SimpleNamespace

    from gex_core.influence import gex
    from gex_core.influence.members import check_kept, checkable, collapsed_members

    # 10 classes, trained model 0.9: the midpoint is (0.1 + 0.9) / 2 = 0.5, less two
    # standard errors at 0.5 on 144 samples: p = 74 / 148, 2 sqrt(p (1 - p) / 148)
    floor = 0.5 - 2 * np.sqrt(0.25 / 148)
    assert floor == pytest.approx(0.4178, abs=1e-4)
    accuracy = np.array([0.88, 0.12, floor + 1e-9, floor - 1e-9])
    kept = ~collapsed_members(accuracy, 0.9, 10, 144)
    assert kept.tolist() == [True, False, True, False]
    # on 8 validation samples chance variation is wide: nothing counts as collapsed
    assert not collapsed_members(np.array([0.25]), 0.9, 10, 8).any()
    check_kept(kept)  # half kept: allowed
    # a trained model within two standard errors of chance leaves nothing to check
    assert checkable(0.9, 10, 144) and not checkable(0.2, 10, 20)
    with pytest.raises(ValueError, match=r"only 1 of 4 .*collapsed: \[1, 2, 3\]"):
        check_kept(np.array([True, False, False, False]))

    rng = np.random.default_rng(0)
    train = rng.uniform(0.0, 1.0, (4, 30))
    test = rng.uniform(0.0, 1.0, (4, 12))
    pretrained = (rng.uniform(0.0, 0.2, 30), rng.uniform(0.0, 0.2, 12))
    inputs = SimpleNamespace(
        member_losses=(train[kept], test[kept]),
        pretrained_losses=pretrained,
        scored_rows=slice(None),
        query_indices=np.arange(0),
    )
    scores = gex.compute(inputs, {"reference": "pretrained"})
    expected = ((train[kept] - pretrained[0]) ** 2).mean(axis=0)
    np.testing.assert_allclose(scores.self_influence, expected)


def test_member_loss_control_is_the_members_mean_loss():
    """The control scores mean_m loss_n(theta_m) by hand; where the members agree
    and sit far above a near-zero pretrained loss (Delta ~ loss) it ranks exactly as
    GEX with the pretrained reference, which is what it controls for."""
    from gex_core.influence.member_loss import member_loss_scores

    losses = np.array([[0.5, 2.0, 0.1], [1.5, 4.0, 0.3]])
    scores = member_loss_scores(losses)
    np.testing.assert_allclose(scores.self_influence, [1.0, 3.0, 0.2])
    assert scores.test_influence is None and scores.kernel is None
    rng = np.random.default_rng(0)
    members = np.tile(rng.uniform(1.0, 5.0, size=50), (4, 1))
    pretrained = np.full(50, 1e-4)
    gex = gex_scores(members, pretrained, members[:, :3], pretrained[:3], 0.0)
    np.testing.assert_array_equal(
        np.argsort(gex.self_influence),
        np.argsort(member_loss_scores(members).self_influence),
    )
