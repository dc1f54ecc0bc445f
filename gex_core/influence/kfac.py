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

Variables: a bare parameter tree, or a flax variables dict {"params": ..., "batch_stats":
...} (gex_core.training.models' batch-norm convention). Module paths (LayerInfo.path) are
relative to the parameter tree, i.e. looked up under "params" in a variables dict
(`_param_root`, `_lookup`). "batch_stats" leaves are state, not parameters: they have
no Fisher block and every posterior draw is exactly zero there.

Diagonal blocks: the parameters of a flax nn.BatchNorm (scale, bias) get a diagonal
Fisher block, as kfac_jax's ScaleAndShiftDiagonal: F_diag = E_x E_y[grad^2], from
per-sample gradients (vmapped) w.r.t. those leaves only, with the same Fisher batches
and the same sampled labels as the Kronecker factors. The research code multiplies the
diagonal factors by a hard-coded 100 (a hack, noted there as a bug); it is not copied.
Any other parameter outside a Dense/Conv/BatchNorm module is an error.
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

from gex_core.training.models import BATCH_STATS

Params = Any
PARAMS = "params"


class LayerInfo(NamedTuple):
    """A Dense or Conv layer found in a forward pass.

    path: the layer's module path, e.g. ("Conv_0",): its key path in a bare params tree,
    or under "params" in a variables dict (see `_lookup`).
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


class DiagonalInfo(NamedTuple):
    """A parameter leaf with a diagonal Fisher block (a flax nn.BatchNorm's scale or
    bias). path: the leaf's key path relative to the parameter tree, e.g.
    ("ConvBN_0", "BatchNorm_0", "scale"); shape: the leaf's shape."""

    path: tuple[str, ...]
    shape: tuple[int, ...]

    @property
    def name(self) -> str:
        return "/".join(self.path)

    @property
    def kind(self) -> str:
        return "diagonal"


BlockInfo = LayerInfo | DiagonalInfo


class KFACFactors(NamedTuple):
    """K-FAC factors of one layer: A (d_in + 1, d_in + 1), G (d_out, d_out), float64."""

    A: np.ndarray
    G: np.ndarray


class DiagonalFactor(NamedTuple):
    """Diagonal Fisher block of one leaf: F = E_x E_y[grad^2], shaped like the leaf,
    float64. It is its own eigendecomposition (the standard basis)."""

    F: np.ndarray


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
    apply: Callable,
    params: Params,
    x: jax.Array,
    taps: dict | None,
    norm_paths: set | None = None,
) -> tuple[jax.Array, dict, dict]:
    """Run apply(params, x), recording every Dense/Conv call.

    taps: {layer name: (B, *out_shape)} added to the layer outputs, or None.
    norm_paths: if a set, the module paths of the nn.BatchNorm calls are added to it.
    Returns logits (B, C), inputs {name: layer input}, infos {name: LayerInfo} (static,
    gathered while tracing).
    """
    inputs, infos = {}, {}

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if (
            norm_paths is not None
            and context.method_name == "__call__"
            and isinstance(module, nn.BatchNorm)
        ):
            norm_paths.add(tuple(module.path))
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


def _param_root(variables: Params) -> tuple[str, ...]:
    """Where module parameters live: ("params",) in a flax variables dict such as
    {"params": ..., "batch_stats": ...}, () in a bare parameter tree. (A bare tree
    whose root module has a child named "params" would be taken for a variables dict.)
    """
    if isinstance(variables, Mapping) and PARAMS in variables:
        return (PARAMS,)
    return ()


def _lookup(variables: Params, path: tuple[str, ...]):
    """The node at a module-relative path (LayerInfo.path, DiagonalInfo.path) in a bare
    parameter tree or in a variables dict."""
    full = (*_param_root(variables), *path)
    try:
        return _get_path(variables, full)
    except (KeyError, TypeError, IndexError):
        raise ValueError(
            f"K-FAC: {'/'.join(path)} is not in the parameters "
            f"(looked for {'/'.join(full)})"
        ) from None


def _key_path(key_path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", k)) for k in key_path)


def _leaf_paths(tree: Params) -> list[tuple[tuple[str, ...], Any]]:
    return [
        (_key_path(kp), leaf)
        for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def _is_state(variables: Params, path: tuple[str, ...]) -> bool:
    """Whether the leaf at a full key path is batch-norm state (not a parameter)."""
    return _param_root(variables) != () and path[:1] == (BATCH_STATS,)


class Blocks(NamedTuple):
    """The curvature blocks of a model: Kronecker layers in call order, diagonal
    leaves in name order."""

    layers: tuple[LayerInfo, ...]
    diagonal: tuple[DiagonalInfo, ...]


def discover_blocks(apply: Callable, params: Params, x: np.ndarray) -> Blocks:
    """The Dense/Conv layers (Kronecker blocks) and nn.BatchNorm parameter leaves
    (diagonal blocks) of a model; x: an example batch (B, ...). params: a bare
    parameter tree or a variables dict (see the module docstring); any leaf can be a
    jax.ShapeDtypeStruct, nothing is computed.

    Raises ValueError if any parameter belongs to none of them, since K-FAC would
    silently leave it out of the posterior. "batch_stats" leaves of a variables dict are
    state, not parameters, and need no block.
    """
    infos: dict[str, LayerInfo] = {}
    norm_paths: set[tuple[str, ...]] = set()

    def trace(p, xb):
        logits, _, found = _run_with_taps(apply, p, xb, None, norm_paths)
        infos.update(found)
        return logits

    jax.eval_shape(trace, params, jnp.asarray(x))
    if not infos:
        raise ValueError(
            "K-FAC: the model has no flax nn.Dense/nn.Conv layers (is it a flax model?)"
        )
    root = _param_root(params)
    covered = set()
    for info in infos.values():
        layer = _lookup(params, info.path)
        expected = {"kernel", "bias"} if info.use_bias else {"kernel"}
        if not isinstance(layer, Mapping) or set(layer) != expected:
            raise ValueError(f"K-FAC: unexpected parameters in layer {info.name}")
        if tuple(layer["kernel"].shape) != info.kernel_shape:
            raise ValueError(f"K-FAC: kernel shape mismatch in layer {info.name}")
        covered.update((*root, *info.path, k) for k in expected)
    diagonal, orphans = [], []
    for path, leaf in _leaf_paths(params):
        if path in covered or _is_state(params, path):
            continue
        rel = path[len(root) :]
        if path[: len(root)] == root and rel[:-1] in norm_paths:
            diagonal.append(DiagonalInfo(rel, tuple(leaf.shape)))
        else:
            orphans.append(path)
    if orphans:
        raise ValueError(
            "K-FAC covers only flax Dense/Conv layers (Kronecker blocks) and BatchNorm "
            "parameters (diagonal blocks); these parameters belong to none: "
            f"{['/'.join(p) for p in sorted(orphans)]}"
        )
    return Blocks(tuple(infos.values()), tuple(sorted(diagonal)))


def discover_layers(apply: Callable, params: Params, x: np.ndarray) -> list[LayerInfo]:
    """The Dense/Conv layers of a model, in call order (see `discover_blocks`, which
    also checks that every parameter has a block)."""
    return list(discover_blocks(apply, params, x).layers)


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
        lambda kp, leaf: leaves.get(_key_path(kp), leaf), variables
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
    root = _param_root(params)
    leaves = {d.name: _lookup(params, d.path) for d in diagonal}

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


def layer_infos(apply: Callable, params: Params, x: np.ndarray) -> dict[str, BlockInfo]:
    """{name: LayerInfo} for the Dense/Conv layers and {name: DiagonalInfo} for the
    BatchNorm leaves; x an example batch."""
    blocks = discover_blocks(apply, params, x)
    return {info.name: info for info in (*blocks.layers, *blocks.diagonal)}


def layer_block(info: BlockInfo, params: Params) -> jax.Array:
    """The layer's parameters as Wb (d_in + 1, d_out), matching the factors' order;
    for a diagonal block, the leaf itself. params: a bare tree or a variables dict."""
    if isinstance(info, DiagonalInfo):
        return _lookup(params, info.path)
    layer = _lookup(params, info.path)
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
    root = _param_root(params)
    blocks = []
    for name in names:
        info, eigen = infos[name], eigens[name]
        scale = 1.0 / np.sqrt(_precision(eigen, num_train, alpha, sigma))
        if isinstance(info, DiagonalInfo):
            dtype = _lookup(params, info.path).dtype
            blocks.append((jnp.asarray(scale.reshape(info.shape), dtype),))
        else:
            dtype = _lookup(params, info.path)["kernel"].dtype
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

    def delta(key_path, leaf):
        path = _key_path(key_path)
        if path in leaves:
            used.add(path)
            return leaves[path]
        if _is_state(params, path):
            return jnp.zeros((num_samples, *leaf.shape), leaf.dtype)
        raise ValueError(f"K-FAC: no block covers the parameter {'/'.join(path)}")

    deltas = jax.tree_util.tree_map_with_path(delta, params)
    if used != set(leaves):
        raise ValueError(
            "K-FAC: blocks outside the parameter tree: "
            f"{['/'.join(p) for p in sorted(set(leaves) - used)]}"
        )
    return deltas
