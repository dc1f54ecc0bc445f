"""K-FAC Fisher factors of flax Dense/Conv layers and Laplace posterior samples from them.

Fisher, not empirical Fisher: labels are drawn from the model's own predictive
distribution p(y | x; theta) (or, with `exact_labels=True`, every class is weighted by its
predicted probability, which gives the exact expectation over y).

Per layer with kernel W and bias b, write the layer's parameters as the matrix
Wb = [W_mat; b] of shape (d_in + 1, d_out) (bias appended as the last row; no bias row
when the layer has none) and vec(Wb) for its row-major (C-order) flattening, i.e.
`concatenate([W_mat.ravel(), b])`. The output at one position t is s_t = a_t W_mat + b
with a_t the layer input (Dense) or the im2col patch (Conv), so the per-sample gradient is
vec(sum_t abar_t g_t^T) = sum_t abar_t (x) g_t with abar_t = [a_t, 1] and g_t = dl/ds_t.
The K-FAC approximation of the layer's block of F = E_x E_{y~p}[grad grad^T] is
F_layer ~= A (x) G in that same vec order, with

    A = E_x [ (1/T) sum_t abar_t abar_t^T ]   (d_in + 1, d_in + 1), mean over positions
    G = E_x E_y [ sum_t g_t g_t^T ]           (d_out, d_out), sum over positions

(KFC of Grosse & Martens 2016 under spatial homogeneity and spatially uncorrelated
derivatives; only the product A (x) G matters, and this split keeps A comparable to a
Dense layer's input factor). For a Dense layer T = 1 (or the product of any extra
leading input dims), so both factors are the textbook ones. With one input and T = 1
the factorisation is exact: the tests check it against the explicit Fisher.

Flax kernel layouts map to W_mat by a plain reshape: Dense (d_in, d_out); Conv
(kh, kw, C_in, C_out) -> (kh * kw * C_in, C_out), so the patch features are ordered
(kh, kw, C_in), which differs from `lax.conv_general_dilated_patches` (C_in first) and is
permuted here.

Layer inputs and output gradients are captured with `flax.linen.intercept_methods`:
every Dense/Conv `__call__` records its input and adds a zero "tap" to its output; the
gradient of the loss w.r.t. the tap is g. Models stay untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.linear import canonicalize_padding

Params = Any


class LayerInfo(NamedTuple):
    """A Dense or Conv layer found in a forward pass.

    path: the layer's key path in the params dict, e.g. ("Conv_0",).
    kind: "dense" | "conv". use_bias: whether a bias row is part of the block.
    kernel_shape: the flax kernel's shape. out_shape: one sample's output shape.
    conv: (kernel_size, strides, padding, kernel_dilation) for Conv, else None.
    """

    path: tuple[str, ...]
    kind: str
    use_bias: bool
    kernel_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    conv: tuple | None

    @property
    def name(self) -> str:
        return "/".join(self.path)

    @property
    def d_in(self) -> int:
        """Rows of Wb: kernel inputs plus one for the bias."""
        return int(np.prod(self.kernel_shape[:-1])) + int(self.use_bias)

    @property
    def d_out(self) -> int:
        return int(self.kernel_shape[-1])


class KFACFactors(NamedTuple):
    """K-FAC factors of one layer: A (d_in + 1, d_in + 1), G (d_out, d_out), float64."""

    A: np.ndarray
    G: np.ndarray


def _tuple(value, n: int) -> tuple[int, ...]:
    if value is None:
        return (1,) * n
    if isinstance(value, int):
        return (value,) * n
    return tuple(int(v) for v in value)


def _conv_config(module: nn.Conv, x: jax.Array) -> tuple:
    """(kernel_size, strides, padding, kernel_dilation) of a Conv we can im2col exactly."""
    ks = module.kernel_size
    kernel_size = (ks,) if isinstance(ks, int) else tuple(ks)
    n = len(kernel_size)
    padding = canonicalize_padding(module.padding, n)
    if isinstance(padding, str) and padding not in ("SAME", "VALID"):
        raise NotImplementedError(f"K-FAC: Conv padding {padding!r} is not supported")
    if not isinstance(padding, str):
        padding = tuple(tuple(int(p) for p in pair) for pair in padding)
    if _tuple(module.input_dilation, n) != (1,) * n:
        raise NotImplementedError("K-FAC: Conv input_dilation != 1 is not supported")
    if module.feature_group_count != 1 or module.mask is not None:
        raise NotImplementedError("K-FAC: grouped or masked Conv is not supported")
    if x.ndim != n + 2:
        raise NotImplementedError("K-FAC: Conv inputs need exactly one batch axis")
    return (
        kernel_size,
        _tuple(module.strides, n),
        padding,
        _tuple(module.kernel_dilation, n),
    )


def _run_with_taps(
    apply: Callable, params: Params, x: jax.Array, taps: dict | None
) -> tuple[jax.Array, dict, dict]:
    """Run apply(params, x), recording every Dense/Conv call.

    taps: {layer name: (B, *out_shape)} added to the layer outputs, or None.
    Returns logits (B, C), inputs {name: layer input}, infos {name: LayerInfo} (static,
    gathered while tracing).
    """
    inputs, infos = {}, {}

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if context.method_name != "__call__" or type(module) not in (nn.Dense, nn.Conv):
            return next_fun(*args, **kwargs)
        layer_input = args[0] if args else kwargs["inputs"]
        path = tuple(module.path)
        name = "/".join(path)
        if name in inputs:
            # A shared layer's Fisher block is a sum over its calls, which the
            # one-call-per-layer factors below do not model.
            raise NotImplementedError(f"K-FAC: layer {name} is called more than once")
        out = next_fun(*args, **kwargs)
        kind = "dense" if type(module) is nn.Dense else "conv"
        conv = _conv_config(module, layer_input) if kind == "conv" else None
        kernel_shape = (
            (layer_input.shape[-1], module.features)
            if kind == "dense"
            else (*conv[0], layer_input.shape[-1], module.features)
        )
        infos[name] = LayerInfo(
            path, kind, bool(module.use_bias), kernel_shape, tuple(out.shape[1:]), conv
        )
        inputs[name] = layer_input
        if taps is not None:
            out = out + taps[name]
        return out

    with nn.intercept_methods(interceptor):
        logits = apply(params, x)
    return logits, inputs, infos


def _get_path(tree: Params, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def discover_layers(apply: Callable, params: Params, x: np.ndarray) -> list[LayerInfo]:
    """The Dense/Conv layers of a model, in call order; x: an example batch (B, ...).

    Raises ValueError if any parameter belongs to no Dense/Conv layer, since K-FAC
    would silently leave it out of the posterior.
    """
    infos: dict[str, LayerInfo] = {}

    def trace(p, xb):
        logits, _, found = _run_with_taps(apply, p, xb, None)
        infos.update(found)
        return logits

    jax.eval_shape(trace, params, jnp.asarray(x))
    if not infos:
        raise ValueError(
            "K-FAC: the model has no flax nn.Dense/nn.Conv layers (is it a flax model?)"
        )
    covered = set()
    for info in infos.values():
        layer = _get_path(params, info.path)
        expected = {"kernel", "bias"} if info.use_bias else {"kernel"}
        if not isinstance(layer, Mapping) or set(layer) != expected:
            raise ValueError(f"K-FAC: unexpected parameters in layer {info.name}")
        if tuple(layer["kernel"].shape) != info.kernel_shape:
            raise ValueError(f"K-FAC: kernel shape mismatch in layer {info.name}")
        covered.update((*info.path, k) for k in expected)
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    all_paths = {tuple(str(getattr(k, "key", k)) for k in kp) for kp, _ in leaves}
    orphans = sorted(all_paths - covered)
    if orphans:
        raise ValueError(
            "K-FAC covers only flax Dense/Conv layers; these parameters belong to "
            f"none: {['/'.join(p) for p in orphans]}"
        )
    return list(infos.values())


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


@functools.cache
def _make_batch_factors(apply: Callable, layers: tuple[LayerInfo, ...], exact: bool):
    """Jitted fn(params, x (B, ...), key) -> {name: (A_sum, G_sum)} of one batch.

    A_sum = sum_b (1/T) sum_t abar abar^T, G_sum = sum_b E_y sum_t g g^T (sums over the
    batch, so batches of any size average correctly on the host).
    """

    @jax.jit
    def batch_factors(params, x, key):
        batch = x.shape[0]
        taps = {
            info.name: jnp.zeros((batch, *info.out_shape), x.dtype) for info in layers
        }

        def logits_of(t):
            logits, inputs, _ = _run_with_taps(apply, params, x, t)
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
) -> dict[str, KFACFactors]:
    """K-FAC factors averaged over the samples of `batches` (index arrays into x).

    key: labels of batch i are drawn with fold_in(key, i); unused with exact_labels.
    Returns {layer name: KFACFactors} in float64; every sample weighs equally.
    """
    batches = [np.asarray(b) for b in batches]
    layers = tuple(discover_layers(apply, params, x[batches[0]]))
    batch_factors = _make_batch_factors(apply, layers, exact_labels)
    sums = {info.name: [0.0, 0.0] for info in layers}
    count = 0
    for i, idx in enumerate(batches):
        out = batch_factors(params, jnp.asarray(x[idx]), jax.random.fold_in(key, i))
        for name, (a_sum, g_sum) in out.items():
            sums[name][0] = sums[name][0] + np.asarray(a_sum, np.float64)
            sums[name][1] = sums[name][1] + np.asarray(g_sum, np.float64)
        count += len(idx)
    return {name: KFACFactors(a / count, g / count) for name, (a, g) in sums.items()}


def layer_infos(apply: Callable, params: Params, x: np.ndarray) -> dict[str, LayerInfo]:
    """{name: LayerInfo} for the Dense/Conv layers; x an example batch."""
    return {info.name: info for info in discover_layers(apply, params, x)}


def layer_block(info: LayerInfo, params: Params) -> jax.Array:
    """The layer's parameters as Wb (d_in + 1, d_out), matching the factors' order."""
    layer = _get_path(params, info.path)
    rows = [jnp.reshape(layer["kernel"], (-1, info.d_out))]
    if info.use_bias:
        rows.append(jnp.reshape(layer["bias"], (1, -1)))
    return jnp.concatenate(rows)


def block_to_params(info: LayerInfo, block: jax.Array) -> dict:
    """Wb (..., d_in + 1, d_out) -> {"kernel": (..., *kernel_shape), "bias": (..., d_out)}."""
    lead = block.shape[:-2]
    n_kernel = int(np.prod(info.kernel_shape[:-1]))
    out = {"kernel": block[..., :n_kernel, :].reshape((*lead, *info.kernel_shape))}
    if info.use_bias:
        out["bias"] = block[..., n_kernel, :]
    return out


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


def _precision(eigen: Eigen, num_train: int, alpha: float, sigma: float) -> np.ndarray:
    """(d_in + 1, d_out) eigenvalues num_train / sigma^2 * a_i g_j + 1 / alpha^2."""
    return num_train / sigma**2 * np.outer(eigen.a, eigen.g) + 1.0 / alpha**2


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
    key: jax.Array, layers: tuple, infos: tuple[LayerInfo, ...], num_samples: int
) -> list[dict]:
    """layers: (Q_A, Q_G, scale) per layer of `infos` -> M draws of each layer's
    {"kernel", "bias"}. All layers share one normal draw (M, sum_l |Wb_l|), split in
    `infos` order: one threefry in the program compiles ~10x faster than one per layer.
    """
    sizes = [int(np.prod(scale.shape)) for _, _, scale in layers]
    eps_all = jax.random.normal(key, (num_samples, sum(sizes)), layers[0][2].dtype)
    out, start = [], 0
    for (qa, qg, scale), info, size in zip(layers, infos, sizes, strict=True):
        eps = eps_all[:, start : start + size].reshape((num_samples, *scale.shape))
        start += size
        out.append(block_to_params(info, _transform(qa, qg, scale, eps)))
    return out


def sample_posterior(
    eigens: dict[str, Eigen],
    infos: dict[str, LayerInfo],
    params: Params,
    key: jax.Array,
    num_samples: int,
    num_train: int,
    alpha: float,
    sigma: float,
) -> Params:
    """M draws delta_m ~ N(0, (N F_kfac / sigma^2 + I / alpha^2)^-1), block-diagonal over
    layers. Returns a pytree shaped like params with a leading (M,) on every leaf, in
    the dtype of each layer's kernel.

    The layers take consecutive slices of one normal draw in sorted name order, so the
    draws do not depend on the call order of the layers.
    """
    names = sorted(infos)
    layers = []
    for name in names:
        dtype = _get_path(params, infos[name].path)["kernel"].dtype
        scale = 1.0 / np.sqrt(_precision(eigens[name], num_train, alpha, sigma))
        layers.append(
            tuple(
                jnp.asarray(m, dtype) for m in (eigens[name].QA, eigens[name].QG, scale)
            )
        )
    drawn = _draw_layers(
        key, tuple(layers), tuple(infos[n] for n in names), int(num_samples)
    )
    deltas: dict = {}
    for name, layer in zip(names, drawn, strict=True):
        node = deltas
        for part in infos[name].path[:-1]:
            node = node.setdefault(part, {})
        node[infos[name].path[-1]] = layer
    if jax.tree_util.tree_structure(deltas) != jax.tree_util.tree_structure(params):
        raise ValueError("K-FAC: the layers do not cover the parameter tree")
    return deltas
