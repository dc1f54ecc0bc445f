"""The blocks of the K-FAC Fisher: which layers (Dense, Conv) get a Kronecker block and
which parameters (BatchNorm scale and bias) a diagonal one, found by running the model
with flax method interception; and how a block maps to parameter leaves."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    or under "params" in a variables dict (see `lookup`).
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


def run_with_taps(
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


def param_root(variables: Params) -> tuple[str, ...]:
    """Where module parameters live: ("params",) in a flax variables dict such as
    {"params": ..., "batch_stats": ...}, () in a bare parameter tree. (A bare tree
    whose root module has a child named "params" would be taken for a variables dict.)
    """
    if isinstance(variables, Mapping) and PARAMS in variables:
        return (PARAMS,)
    return ()


def lookup(variables: Params, path: tuple[str, ...]):
    """The node at a module-relative path (LayerInfo.path, DiagonalInfo.path) in a bare
    parameter tree or in a variables dict."""
    full = (*param_root(variables), *path)
    try:
        return _get_path(variables, full)
    except (KeyError, TypeError, IndexError):
        raise ValueError(
            f"K-FAC: {'/'.join(path)} is not in the parameters "
            f"(looked for {'/'.join(full)})"
        ) from None


def key_path(entries) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", k)) for k in entries)


def leaf_paths(tree: Params) -> list[tuple[tuple[str, ...], Any]]:
    return [
        (key_path(kp), leaf)
        for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def is_state(variables: Params, path: tuple[str, ...]) -> bool:
    """Whether the leaf at a full key path is batch-norm state (not a parameter)."""
    return param_root(variables) != () and path[:1] == (BATCH_STATS,)


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
        logits, _, found = run_with_taps(apply, p, xb, None, norm_paths)
        infos.update(found)
        return logits

    jax.eval_shape(trace, params, jnp.asarray(x))
    if not infos:
        raise ValueError(
            "K-FAC: the model has no flax nn.Dense/nn.Conv layers (is it a flax model?)"
        )
    root = param_root(params)
    covered = set()
    for info in infos.values():
        layer = lookup(params, info.path)
        expected = {"kernel", "bias"} if info.use_bias else {"kernel"}
        if not isinstance(layer, Mapping) or set(layer) != expected:
            raise ValueError(f"K-FAC: unexpected parameters in layer {info.name}")
        if tuple(layer["kernel"].shape) != info.kernel_shape:
            raise ValueError(f"K-FAC: kernel shape mismatch in layer {info.name}")
        covered.update((*root, *info.path, k) for k in expected)
    diagonal, orphans = [], []
    for path, leaf in leaf_paths(params):
        if path in covered or is_state(params, path):
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


def layer_infos(apply: Callable, params: Params, x: np.ndarray) -> dict[str, BlockInfo]:
    """{name: LayerInfo} for the Dense/Conv layers and {name: DiagonalInfo} for the
    BatchNorm leaves; x an example batch."""
    blocks = discover_blocks(apply, params, x)
    return {info.name: info for info in (*blocks.layers, *blocks.diagonal)}


def layer_block(info: BlockInfo, params: Params) -> jax.Array:
    """The layer's parameters as Wb (d_in + 1, d_out), matching the factors' order;
    for a diagonal block, the leaf itself. params: a bare tree or a variables dict."""
    if isinstance(info, DiagonalInfo):
        return lookup(params, info.path)
    layer = lookup(params, info.path)
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
