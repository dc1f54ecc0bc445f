"""The Laplace posterior N(0, (N F / sigma^2 + I / alpha^2)^-1) from K-FAC factors:
their eigendecompositions and draws of parameter perturbations."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gex_core.influence.kfac.blocks import (
    BlockInfo,
    DiagonalInfo,
    Params,
    block_to_params,
    is_state,
    key_path,
    lookup,
    param_root,
)
from gex_core.influence.kfac.factors import DiagonalFactor, KFACFactors


class Eigen(NamedTuple):
    """Eigendecompositions A = Q_A diag(a) Q_A^T, G = Q_G diag(g) Q_G^T."""

    a: np.ndarray
    QA: np.ndarray
    g: np.ndarray
    QG: np.ndarray


def eigen_factors(factors: KFACFactors) -> Eigen:
    """Symmetric eigendecompositions in float64. Eigenvalues are clipped at 0: A and G
    are PSD, so negative values are rounding, and a_i g_j of mixed sign would make a
    precision entry meaningless. This is the only change made to the factors."""
    a, qa = np.linalg.eigh(factors.A)
    g, qg = np.linalg.eigh(factors.G)
    return Eigen(np.maximum(a, 0.0), qa, np.maximum(g, 0.0), qg)


def eigen_blocks(
    factors: Mapping[str, KFACFactors | DiagonalFactor],
) -> dict[str, Eigen | DiagonalFactor]:
    """`eigen_factors` of every Kronecker block; diagonal blocks are already in their
    eigenbasis and pass through unchanged (a mean of squares, so never negative)."""
    return {
        name: f if isinstance(f, DiagonalFactor) else eigen_factors(f)
        for name, f in factors.items()
    }


def _precision(
    eigen: Eigen | DiagonalFactor, num_train: int, alpha: float, sigma: float
) -> np.ndarray:
    """Eigenvalues num_train / sigma^2 * f + 1 / alpha^2 of the block's precision, with
    f = a_i g_j, (d_in + 1, d_out), for a Kronecker block and f = F_diag (the leaf's
    shape) for a diagonal block."""
    f = eigen.F if isinstance(eigen, DiagonalFactor) else np.outer(eigen.a, eigen.g)
    return num_train / sigma**2 * f + 1.0 / alpha**2


def _transform(qa: jax.Array, qg: jax.Array, scale: jax.Array, eps: jax.Array):
    """Q_A [(Q_A^T eps Q_G) * scale] Q_G^T over the trailing two axes of eps."""
    rotated = jnp.einsum("ji,...jk,kl->...il", qa, eps, qg)
    return jnp.einsum("ij,...jk,lk->...il", qa, rotated * scale, qg)


def posterior_transform(
    eigen: Eigen, eps: jax.Array, num_train: int, alpha: float, sigma: float
) -> jax.Array:
    """Map standard normal eps (..., d_in + 1, d_out) to delta with
    Cov[vec delta] = (num_train (A (x) G) / sigma^2 + I / alpha^2)^-1.

    delta = Q_A [(Q_A^T eps Q_G) / sqrt(num_train / sigma^2 * a g^T + 1 / alpha^2)] Q_G^T,
    i.e. delta = Cov^(1/2) eps with the symmetric square root. Unlike the cheaper
    (Q_A (x) Q_G) D^-1/2 eps (same distribution), it does not depend on which basis
    eigh returns inside a degenerate eigenspace (e.g. the null space of A), so a draw
    is the same whatever LAPACK computed the eigenvectors.
    """
    scale = 1.0 / np.sqrt(_precision(eigen, num_train, alpha, sigma))
    return _transform(
        jnp.asarray(eigen.QA, eps.dtype),
        jnp.asarray(eigen.QG, eps.dtype),
        jnp.asarray(scale, eps.dtype),
        eps,
    )


@functools.partial(jax.jit, static_argnums=(2, 3))
def _draw_layers(
    key: jax.Array, layers: tuple, infos: tuple[BlockInfo, ...], num_samples: int
) -> list:
    """layers: (Q_A, Q_G, scale) per LayerInfo and (scale,) per DiagonalInfo of `infos`
    -> M draws of each layer's {"kernel", "bias"} and of each diagonal leaf
    (M, *shape), delta = scale * eps there. All blocks share one normal draw
    (M, sum_l |block_l|), split in `infos` order: one threefry in the program compiles
    ~10x faster than one per layer.
    """
    sizes = [int(np.prod(block[-1].shape)) for block in layers]
    eps_all = jax.random.normal(key, (num_samples, sum(sizes)), layers[0][-1].dtype)
    out, start = [], 0
    for block, info, size in zip(layers, infos, sizes, strict=True):
        scale = block[-1]
        eps = eps_all[:, start : start + size].reshape((num_samples, *scale.shape))
        eps = eps.astype(scale.dtype)  # a no-op unless the blocks' dtypes differ
        start += size
        if isinstance(info, DiagonalInfo):
            out.append(eps * scale)
        else:
            qa, qg, _ = block
            out.append(block_to_params(info, _transform(qa, qg, scale, eps)))
    return out


def sample_posterior(
    eigens: Mapping[str, Eigen | DiagonalFactor],
    infos: Mapping[str, BlockInfo],
    params: Params,
    key: jax.Array,
    num_samples: int,
    num_train: int,
    alpha: float,
    sigma: float,
) -> Params:
    """M draws delta_m ~ N(0, (N F_kfac / sigma^2 + I / alpha^2)^-1), block-diagonal over
    layers and diagonal leaves. Returns a pytree shaped like params (a bare tree or a
    whole variables dict) with a leading (M,) on every leaf, in the dtype of each
    layer's kernel and of each diagonal leaf; exactly zero on "batch_stats" leaves,
    which are not parameters. On a diagonal leaf delta = (N F_diag / sigma^2 +
    1 / alpha^2)^(-1/2) * eps elementwise: the same precision as the Kronecker blocks'.

    The blocks (layers and diagonal leaves together) take consecutive slices of one
    normal draw in sorted name order, so the draws do not depend on the call order of
    the layers.
    """
    names = sorted(infos)
    root = param_root(params)
    blocks = []
    for name in names:
        info, eigen = infos[name], eigens[name]
        scale = 1.0 / np.sqrt(_precision(eigen, num_train, alpha, sigma))
        if isinstance(info, DiagonalInfo):
            dtype = lookup(params, info.path).dtype
            blocks.append((jnp.asarray(scale.reshape(info.shape), dtype),))
        else:
            dtype = lookup(params, info.path)["kernel"].dtype
            blocks.append(
                tuple(jnp.asarray(m, dtype) for m in (eigen.QA, eigen.QG, scale))
            )
    drawn = _draw_layers(
        key, tuple(blocks), tuple(infos[n] for n in names), int(num_samples)
    )
    leaves: dict[tuple[str, ...], jax.Array] = {}
    for name, block in zip(names, drawn, strict=True):
        path = (*root, *infos[name].path)
        if isinstance(block, dict):
            leaves.update({(*path, k): v for k, v in block.items()})
        else:
            leaves[path] = block
    used = set()

    def delta(where, leaf):
        path = key_path(where)
        if path in leaves:
            used.add(path)
            return leaves[path]
        if is_state(params, path):
            return jnp.zeros((num_samples, *leaf.shape), leaf.dtype)
        raise ValueError(f"K-FAC: no block covers the parameter {'/'.join(path)}")

    deltas = jax.tree_util.tree_map_with_path(delta, params)
    if used != set(leaves):
        raise ValueError(
            "K-FAC: blocks outside the parameter tree: "
            f"{['/'.join(p) for p in sorted(set(leaves) - used)]}"
        )
    return deltas
