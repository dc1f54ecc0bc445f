"""GEX: self- and test-influence from geometric-ensemble loss deviations.

Delta[m, n] = loss_n(theta_m) - max(loss_n(theta*), tau). With tau > 0 the pretrained loss
is clamped from below; tau = 0 disables the clamp. On a network that memorised its labels
(pretrained losses far below tau) the clamp makes Delta ~ -tau for almost all samples and
inverts the ranking; see docs/methods.md.

Kernel (queries j): kernel[n, j] = mean_m Delta_q[m, j] * Delta[m, n] with the per-sample
test deviations Delta_q[m, j] = loss_j(theta_m) - max(loss_j(theta*), tau), from the same
saved member test losses (no extra pass). With tau = 0 the mean of Delta_q over every
test sample is Delta_te, so the kernel's mean over every test sample is test influence;
with tau > 0 each query's pretrained loss is clamped on its own, as the training losses.
"""

from __future__ import annotations

import numpy as np

from gex_core.influence.scores import Scores, as_query_indices

REFERENCES = ("clamped", "pretrained", "ensemble_mean")


def reference_losses(
    member_losses: np.ndarray,
    pretrained_losses: np.ndarray,
    reference: str,
    tau: float = 0.0,
) -> np.ndarray:
    """The loss each member's loss is compared with, (N,) from member_losses (M, N) and
    pretrained_losses (N,):

    clamped: max(loss(theta*), tau), the paper; on a network that memorised its labels
        (pretrained losses far below tau) it is tau for almost every sample, and the
        score (tau - loss)^2 then ranks the best-fit samples first: it can invert.
    pretrained: loss(theta*) (clamped with tau = 0).
    ensemble_mean: mean_m loss(theta_m); the score is the members' loss variance, which
        ignores where the members started and cannot be flattened by a clamp either.
    """
    if reference == "clamped":
        return np.maximum(pretrained_losses, tau)
    if reference == "pretrained":
        return np.asarray(pretrained_losses)
    if reference == "ensemble_mean":
        return np.mean(member_losses, axis=0)
    raise ValueError(
        f"unknown GEX reference {reference!r}; choose one of {', '.join(REFERENCES)}"
    )


def loss_deviation(
    member_losses: np.ndarray,
    pretrained_losses: np.ndarray,
    tau: float,
    reference: str = "pretrained",
):
    """member_losses: (M, N); pretrained_losses: (N,) -> Delta (M, N), the members'
    losses minus the reference (`reference_losses`)."""
    ref = reference_losses(member_losses, pretrained_losses, reference, tau)
    return member_losses - ref[None, :]


def gex_scores(
    member_train_losses: np.ndarray,
    pretrained_train_losses: np.ndarray,
    member_test_losses: np.ndarray,
    pretrained_test_losses: np.ndarray,
    tau: float,
    queries: np.ndarray | None = None,
    reference: str = "pretrained",
) -> Scores:
    """Self: mean_m Delta[m, n]^2. Test: mean_m Delta_te[m] * Delta[m, n], with
    Delta_te[m] = mean test loss of member m - the reference of the mean test loss
    (clamped: max(mean pretrained test loss, tau); pretrained: the mean pretrained test
    loss; ensemble_mean: the members' mean of their mean test losses). Kernel (N, Q):
    mean_m Delta_q[m, j] * Delta[m, n] for the query test indices (None without
    queries), each query's deviation from its own reference.

    member_train_losses: (M, N), pretrained_train_losses: (N,),
    member_test_losses: (M, N_te), pretrained_test_losses: (N_te,).
    """
    delta = loss_deviation(
        np.asarray(member_train_losses, np.float64),
        np.asarray(pretrained_train_losses, np.float64),
        tau,
        reference,
    )
    delta_test = loss_deviation(
        np.asarray(member_test_losses, np.float64).mean(axis=1, keepdims=True),
        np.asarray(pretrained_test_losses, np.float64).mean(keepdims=True),
        tau,
        reference,
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
            reference,
        )
        kernel = delta.T @ delta_query / delta.shape[0]
    return Scores(self_influence, test_influence, kernel)


def compute(inputs, hp: dict) -> Scores:
    """Registry entry: hp = {"reference": one of REFERENCES, "tau": float (clamped
    only)}. The member losses are those of the kept members (collapsed ones are left
    out where the ensemble was fit: `members.collapsed_members`)."""
    member_train, member_test = inputs.member_losses
    train, test = inputs.pretrained_losses
    rows = inputs.scored_rows
    return gex_scores(
        member_train[:, rows],
        train[rows],
        member_test,
        test,
        float(hp.get("tau", 0.0)),
        queries=inputs.query_indices,
        reference=str(hp.get("reference", "pretrained")),
    )
