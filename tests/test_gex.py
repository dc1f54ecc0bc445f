import numpy as np
import pytest

from gex_core.influence.gex import gex_scores, loss_deviation


def test_gex_matches_a_hand_computation():
    # M = 2 members, N = 3 training samples, N_te = 2 test samples.
    members = np.array([[0.30, 0.02, 1.00], [0.10, 0.06, 0.50]])
    pretrained = np.array([0.20, 0.01, 0.40])
    members_test = np.array([[0.5, 0.7], [0.2, 0.2]])  # member test means 0.6, 0.2
    pretrained_test = np.array([0.3, 0.1])  # mean 0.2
    scores = gex_scores(members, pretrained, members_test, pretrained_test, tau=0.05)
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
    delta = loss_deviation(members, pretrained, tau=0.0)
    np.testing.assert_allclose(delta, [[0.01], [0.03]])
    clamped = loss_deviation(members, pretrained, tau=0.05)
    np.testing.assert_allclose(clamped, [[-0.03], [-0.01]])


def test_clamp_inverts_the_ranking_of_a_memorised_set():
    # Pretrained losses far below tau and members that barely move: the clamp makes the
    # best-fit (clean) sample look most influential, which tau = 0 does not.
    pretrained = np.array([0.001, 0.02])  # sample 1 is the noisy one
    members = np.array([[0.002, 0.04], [0.001, 0.03]])
    test = np.zeros((2, 1))
    with_clamp = gex_scores(members, pretrained, test, np.zeros(1), 0.05).self_influence
    without = gex_scores(members, pretrained, test, np.zeros(1), 0.0).self_influence
    assert with_clamp[0] > with_clamp[1]
    assert without[1] > without[0]


def test_shapes_follow_members_and_samples():
    rng = np.random.default_rng(0)
    scores = gex_scores(
        rng.random((5, 7)), rng.random(7), rng.random((5, 3)), rng.random(3), 0.05
    )
    assert scores.self_influence.shape == (7,)
    assert scores.test_influence.shape == (7,)
    assert (scores.self_influence >= 0).all()


@pytest.mark.parametrize("tau", [0.0, 0.05])
def test_self_influence_is_mean_squared_deviation(tau):
    rng = np.random.default_rng(1)
    members, pretrained = rng.random((4, 6)), rng.random(6) * 0.1
    scores = gex_scores(members, pretrained, rng.random((4, 2)), rng.random(2), tau)
    expected = ((members - np.maximum(pretrained, tau)) ** 2).mean(0)
    np.testing.assert_allclose(scores.self_influence, expected)
