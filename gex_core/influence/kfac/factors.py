"""The Fisher factors of every block over a set of batches: A and G of each Kronecker
block (labels sampled from the model), the diagonal of each BatchNorm block."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gex_core.influence.kfac.blocks import (
    DiagonalInfo,
    LayerInfo,
    Params,
    discover_blocks,
    key_path,
    lookup,
    param_root,
    run_with_taps,
)


class KFACFactors(NamedTuple):
    """K-FAC factors of one layer: A (d_in + 1, d_in + 1), G (d_out, d_out), float64."""

    A: np.ndarray
    G: np.ndarray


class DiagonalFactor(NamedTuple):
    """Diagonal Fisher block of one leaf: F = E_x E_y[grad^2], shaped like the leaf,
    float64. It is its own eigendecomposition (the standard basis)."""

    F: np.ndarray


def _layer_rows(info: LayerInfo, layer_input: jax.Array) -> jax.Array:
    """abar: (B, T, d_in + 1) augmented inputs at every output position."""
    batch = layer_input.shape[0]
    if info.kind == "dense":
        rows = layer_input.reshape((batch, -1, layer_input.shape[-1]))
    else:
        kernel_size, strides, padding, dilation = info.conv
        n = len(kernel_size)
        if n > 3:
            raise NotImplementedError("K-FAC: Conv with more than 3 spatial dims")
        spatial = "HWD"[:n]
        lhs_spec = "N" + spatial + "C"
        patches = jax.lax.conv_general_dilated_patches(
            layer_input,
            kernel_size,
            strides,
            padding,
            rhs_dilation=dilation,
            dimension_numbers=(lhs_spec, spatial + "IO", lhs_spec),
        )
        c_in = layer_input.shape[-1]
        positions = patches.shape[1:-1]
        # lax orders patch features (C_in, *kernel_size); flax's kernel is
        # (*kernel_size, C_in, C_out), so move C_in last before flattening.
        patches = patches.reshape((batch, *positions, c_in, *kernel_size))
        patches = jnp.moveaxis(patches, n + 1, -1)
        rows = patches.reshape((batch, -1, int(np.prod(kernel_size)) * c_in))
    if info.use_bias:
        ones = jnp.ones((*rows.shape[:-1], 1), rows.dtype)
        rows = jnp.concatenate([rows, ones], axis=-1)
    return rows


def _output_rows(info: LayerInfo, g: jax.Array) -> jax.Array:
    """g: (..., B, *out_shape) -> (..., B, T, d_out)."""
    lead = g.shape[: g.ndim - len(info.out_shape)]
    return g.reshape((*lead, -1, info.d_out))


def _with_leaves(variables: Params, leaves: Mapping[tuple[str, ...], Any]) -> Params:
    """variables with the leaves at these full key paths replaced."""
    return jax.tree_util.tree_map_with_path(
        lambda kp, leaf: leaves.get(key_path(kp), leaf), variables
    )


def _diagonal_sums(
    apply: Callable,
    params: Params,
    x: jax.Array,
    diagonal: tuple[DiagonalInfo, ...],
    cotangents: jax.Array,
    weights: jax.Array,
) -> dict[str, jax.Array]:
    """{name: sum_b sum_s weights[s, b] (J_b^T cotangents[s, b])^2} for the diagonal
    leaves: squared per-sample gradients w.r.t. those leaves only, one sample per
    vmapped vjp (J_b: the Jacobian of sample b's logits w.r.t. the leaves)."""
    root = param_root(params)
    leaves = {d.name: lookup(params, d.path) for d in diagonal}

    def one_sample(xi, cot):  # xi (...), cot (S, C) -> {name: (S, *shape)}
        def logits_of(values):
            swapped = {(*root, *d.path): values[d.name] for d in diagonal}
            return apply(_with_leaves(params, swapped), xi[None])[0]

        _, vjp_fn = jax.vjp(logits_of, leaves)
        return jax.vmap(lambda c: vjp_fn(c)[0])(cot)

    grads = jax.vmap(one_sample, in_axes=(0, 1))(x, cotangents)  # (B, S, *shape)
    return {
        d.name: jnp.einsum("sb,bs...->...", weights, jnp.square(grads[d.name]))
        for d in diagonal
    }


@functools.cache
def _make_batch_factors(
    apply: Callable,
    layers: tuple[LayerInfo, ...],
    exact: bool,
    diagonal: tuple[DiagonalInfo, ...] = (),
):
    """Jitted fn(params, x (B, ...), key) -> {name: (A_sum, G_sum)} of one batch, plus
    {name: F_sum} for the diagonal leaves.

    A_sum = sum_b (1/T) sum_t abar abar^T, G_sum = sum_b E_y sum_t g g^T,
    F_sum = sum_b E_y grad_b^2 (sums over the batch, so batches of any size average
    correctly on the host). The diagonal blocks use the labels (or class weights) of
    the Kronecker factors; they add a separate vmapped per-sample pass, so the
    Kronecker factors are computed as without them.
    """

    @jax.jit
    def batch_factors(params, x, key):
        batch = x.shape[0]
        taps = {
            info.name: jnp.zeros((batch, *info.out_shape), x.dtype) for info in layers
        }

        def logits_of(t):
            logits, inputs, _ = run_with_taps(apply, params, x, t)
            return logits, inputs

        logits, vjp_fn, inputs = jax.vjp(logits_of, taps, has_aux=True)
        probs = jax.nn.softmax(logits)
        num_classes = logits.shape[-1]
        if exact:
            # d loss / d logits for label c is p - e_c; weight class c by p_c.
            eye = jnp.eye(num_classes, dtype=logits.dtype)
            cotangents = probs[None] - eye[:, None, :]  # (C, B, C)
            weights = probs.T  # (C, B)
        else:
            labels = jax.random.categorical(key, logits)
            cotangents = (
                probs - jax.nn.one_hot(labels, num_classes, dtype=probs.dtype)
            )[None]
            weights = jnp.ones((1, batch), logits.dtype)
        # Each sample's tap gradient depends only on its own logits' cotangent.
        grads = jax.vmap(lambda c: vjp_fn(c)[0])(cotangents)
        result = {}
        for info in layers:
            rows = _layer_rows(info, inputs[info.name])  # (B, T, d_in+1)
            a_sum = jnp.einsum("bti,btj->ij", rows, rows) / rows.shape[1]
            g = _output_rows(info, grads[info.name])  # (S, B, T, d_out)
            g_sum = jnp.einsum("sb,sbti,sbtj->ij", weights, g, g)
            result[info.name] = (a_sum, g_sum)
        if diagonal:
            result.update(
                _diagonal_sums(apply, params, x, diagonal, cotangents, weights)
            )
        return result

    return batch_factors


def kfac_factors(
    apply: Callable,
    params: Params,
    x: np.ndarray,
    batches: Iterable[np.ndarray],
    key: jax.Array,
    *,
    exact_labels: bool = False,
) -> dict[str, KFACFactors | DiagonalFactor]:
    """K-FAC factors averaged over the samples of `batches` (index arrays into x).

    key: labels of batch i are drawn with fold_in(key, i); unused with exact_labels.
    Returns {layer name: KFACFactors} for the Dense/Conv layers (call order) and
    {leaf name: DiagonalFactor} for the BatchNorm leaves (name order), in float64; every
    sample weighs equally. F_diag = mean over samples of the squared per-sample gradient
    of the loss at the same sampled label as the Kronecker factors (E_y exactly with
    exact_labels), as kfac_jax's ScaleAndShiftDiagonal; no x100 (see module docstring).
    """
    batches = [np.asarray(b) for b in batches]
    blocks = discover_blocks(apply, params, x[batches[0]])
    batch_factors = _make_batch_factors(
        apply, blocks.layers, exact_labels, blocks.diagonal
    )
    sums = {info.name: [0.0, 0.0] for info in blocks.layers}
    diag_sums = {d.name: 0.0 for d in blocks.diagonal}
    count = 0
    for i, idx in enumerate(batches):
        out = batch_factors(params, jnp.asarray(x[idx]), jax.random.fold_in(key, i))
        for name, value in out.items():
            if name in diag_sums:
                diag_sums[name] = diag_sums[name] + np.asarray(value, np.float64)
                continue
            a_sum, g_sum = value
            sums[name][0] = sums[name][0] + np.asarray(a_sum, np.float64)
            sums[name][1] = sums[name][1] + np.asarray(g_sum, np.float64)
        count += len(idx)
    factors: dict[str, KFACFactors | DiagonalFactor] = {
        name: KFACFactors(a / count, g / count) for name, (a, g) in sums.items()
    }
    factors.update({name: DiagonalFactor(f / count) for name, f in diag_sums.items()})
    return factors
