"""GEX: self- and test-influence from geometric-ensemble loss deviations.

Delta[m, n] = loss_n(theta_m) - max(loss_n(theta*), tau). With tau > 0 the pretrained loss
is clamped from below; tau = 0 disables the clamp. On a network that memorised its labels
(pretrained losses far below tau) the clamp makes Delta ~ -tau for almost all samples and
inverts the ranking; see the README.

Kernel (queries j): kernel[n, j] = mean_m Delta_q[m, j] * Delta[m, n] with the per-sample
test deviations Delta_q[m, j] = loss_j(theta_m) - max(loss_j(theta*), tau), from the same
saved member test losses (no extra pass). With tau = 0 the mean of Delta_q over every
test sample is Delta_te, so the kernel's mean over every test sample is test influence;
with tau > 0 each query's pretrained loss is clamped on its own, as the training losses.
"""

from __future__ import annotations

import numpy as np

from gex_core.influence.scores import Scores, as_query_indices


def loss_deviation(
    member_losses: np.ndarray, pretrained_losses: np.ndarray, tau: float
):
    """member_losses: (M, N); pretrained_losses: (N,) -> Delta (M, N)."""
    return member_losses - np.maximum(pretrained_losses, tau)[None, :]


def gex_scores(
    member_train_losses: np.ndarray,
    pretrained_train_losses: np.ndarray,
    member_test_losses: np.ndarray,
    pretrained_test_losses: np.ndarray,
    tau: float,
    queries: np.ndarray | None = None,
) -> Scores:
    """Self: mean_m Delta[m, n]^2. Test: mean_m Delta_te[m] * Delta[m, n], with
    Delta_te[m] = mean test loss of member m - max(mean pretrained test loss, tau).
    Kernel (N, Q): mean_m Delta_q[m, j] * Delta[m, n] for the query test indices
    (None without queries).

    member_train_losses: (M, N), pretrained_train_losses: (N,),
    member_test_losses: (M, N_te), pretrained_test_losses: (N_te,).
    """
    delta = loss_deviation(
        np.asarray(member_train_losses, np.float64),
        np.asarray(pretrained_train_losses, np.float64),
        tau,
    )
    delta_test = loss_deviation(
        np.asarray(member_test_losses, np.float64).mean(axis=1, keepdims=True),
        np.asarray(pretrained_test_losses, np.float64).mean(keepdims=True),
        tau,
    )[:, 0]
    self_influence = np.mean(delta**2, axis=0)
    # The covariance of loss deviations approximates g_te^T H^-1 g_n, minus the classic
    # up-weighting influence on the test loss: positive = helpful, as scores.py states.
    test_influence = np.mean(delta_test[:, None] * delta, axis=0)
    queries = as_query_indices(queries, np.shape(pretrained_test_losses)[0])
    kernel = None
    if queries.size:
        delta_query = loss_deviation(
            np.asarray(member_test_losses, np.float64)[:, queries],
            np.asarray(pretrained_test_losses, np.float64)[queries],
            tau,
        )
        kernel = delta.T @ delta_query / delta.shape[0]
    return Scores(self_influence, test_influence, kernel)


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"tau": float}."""
    member_train, member_test = inputs.member_losses
    train, test = inputs.pretrained_losses
    rows = inputs.scored_rows
    return gex_scores(
        member_train[:, rows],
        train[rows],
        member_test,
        test,
        float(hp["tau"]),
        queries=inputs.query_indices,
    )
