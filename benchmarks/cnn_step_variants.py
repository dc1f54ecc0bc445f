"""The digits CNN's training step on this machine's XLA backend, written three ways.

    python benchmarks/cnn_step_variants.py [--batches 64 128 256 512] [--repeats 5]

The same network (conv3x3(32)-ReLU-conv3x3(64)-ReLU-maxpool 2-Dense(128)-Dense(10)
on 8x8x1 images, SGD with momentum 0.9) with:

- reduce-window: flax's nn.max_pool, whose gradient is XLA's select-and-scatter
  (the CNN before commit ac4676b);
- select: `gex_core.training.models.max_pool_2x2`, reduce-window's forward with its
  derivative as elementwise selects (the CNN since 7ea90ec, bitwise the same
  training);
- select + patches: that pooling and each convolution as an explicit patches matrix
  times the kernel (im2col), which XLA runs as one matrix product. Not adopted: it
  changes the arithmetic (rounding only), and its patches outgrow the CPU's caches
  at larger batches.

Prints milliseconds per step (best of --repeats rounds of 50 steps) per batch size,
then, at the evaluation batch (--eval-batch), the milliseconds of a forward pass and of
the vector products with the parameters the scoring methods use (`jvp`: one tangent
through the forward; `vjp`: one cotangent of the logits back) for the first two.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gex_core.training.models import max_pool_2x2  # noqa: E402


def patches_conv(lhs, rhs, window_strides, padding, **_):
    """A stride-1 NHWC/HWIO convolution as (B*H*W, kh*kw*C) patches @ (kh*kw*C, F)."""
    kh, kw, cin, cout = rhs.shape
    n, h, w, _ = lhs.shape
    if isinstance(padding, str):
        padding = [((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)]
    padded = jnp.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    out_h, out_w = padded.shape[1] - kh + 1, padded.shape[2] - kw + 1
    columns = [
        padded[:, i : i + out_h, j : j + out_w, :] for i in range(kh) for j in range(kw)
    ]
    patches = jnp.concatenate(columns, axis=-1).reshape(n * out_h * out_w, -1)
    return (patches @ rhs.reshape(kh * kw * cin, cout)).reshape(n, out_h, out_w, cout)


class Variant(nn.Module):
    pool: str
    patches: bool

    @nn.compact
    def __call__(self, x):
        conv = patches_conv if self.patches else None
        x = nn.relu(nn.Conv(32, (3, 3), conv_general_dilated=conv)(x))
        x = nn.relu(nn.Conv(64, (3, 3), conv_general_dilated=conv)(x))
        if self.pool == "reduce-window":
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        else:
            x = max_pool_2x2(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(128)(x))
        return nn.Dense(10)(x)


VARIANTS = {
    "reduce-window": Variant("reduce-window", False),
    "select": Variant("select", False),
    "select + patches": Variant("select", True),
}


def best_ms(program, arguments: tuple, calls: int, repeats: int) -> float:
    """Milliseconds per call of the compiled program: the best of `repeats` rounds
    of `calls` calls, after one call that compiles it."""
    jax.block_until_ready(program(*arguments))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = program(*arguments)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def step_ms(module: nn.Module, batch: int, repeats: int) -> float:
    x = jax.random.normal(jax.random.key(0), (batch, 8, 8, 1))
    y = jnp.arange(batch) % 10
    params = VARIANTS["reduce-window"].init(jax.random.key(1), x)
    tx = optax.sgd(0.05, momentum=0.9)

    def loss(p):
        logits = module.apply(p, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def step(p, state):
        updates, state = tx.update(jax.grad(loss)(p), state, p)
        return optax.apply_updates(p, updates), state

    return best_ms(step, (params, tx.init(params)), 50, repeats)


def products_ms(module: nn.Module, batch: int, repeats: int) -> dict[str, float]:
    x = jax.random.normal(jax.random.key(0), (batch, 8, 8, 1))
    params = VARIANTS["reduce-window"].init(jax.random.key(1), x)
    tangent = jax.tree.map(jnp.ones_like, params)
    cotangent = jnp.ones((batch, 10))

    def forward(p):
        return module.apply(p, x)

    programs = {
        "forward": (jax.jit(forward), (params,)),
        "jvp": (
            jax.jit(lambda p, t: jax.jvp(forward, (p,), (t,))[1]),
            (params, tangent),
        ),
        "vjp": (jax.jit(lambda p, g: jax.vjp(forward, p)[1](g)), (params, cotangent)),
    }
    return {
        name: best_ms(program, arguments, 20, repeats)
        for name, (program, arguments) in programs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eval-batch", type=int, default=512)
    args = parser.parse_args()
    print(f"ms per training step on {jax.devices()[0].platform}")
    print("batch  " + "  ".join(f"{name:>16}" for name in VARIANTS))
    for batch in args.batches:
        times = [step_ms(m, batch, args.repeats) for m in VARIANTS.values()]
        print(f"{batch:>5}  " + "  ".join(f"{t:>16.2f}" for t in times))
    print(f"ms at batch {args.eval_batch}: forward, jvp, vjp")
    for name in ("reduce-window", "select"):
        times = products_ms(VARIANTS[name], args.eval_batch, args.repeats)
        print(f"{name:>16}  " + "  ".join(f"{k} {v:.2f}" for k, v in times.items()))


if __name__ == "__main__":
    main()
