"""GEX scoring throughput: member losses against forward passes, measured in one run.

GEX scores need every member's per-sample losses, computed in `ensemble.run_chain` as
`train.evaluate(eval_fn, member, x, y, eval_batch_size)` per member. This measures, on
synthetic data of the model's input shape and M perturbed copies of the initial
parameters, after a compiling warm-up of every shape:

1. the steady-state time of one jitted forward pass over the N samples
   (`train.evaluate`) at each candidate batch size, and the best of them;
2. the time of the (M, N) member losses the way the workflow computes them (the same
   loop of `evaluate` calls as run_chain), at the workflow's eval batch size and at
   the best batch size, alternating with the best forward pass;
3. ratio = member-loss time / (M x best forward-pass time); the target is <= 1.3;
4. the member-loss time at N, 2N and 4N samples (scoring cost grows linearly in N).

Every time is taken --repeats times, in rounds that alternate what is compared, and
reported as the median and the minimum (on a shared machine the minimum is the least
disturbed run). Usage:

    python benchmarks/gex_throughput.py [--model cnn] [--num-samples 1437]
        [--members 8] [--eval-batch-size 512] [--out benchmarks/out/gex_throughput.json]
    python benchmarks/gex_throughput.py --model resnet18 --num-samples 64 --members 2 \
        --batch-sizes 16 32 64 --repeats 3   # a CPU-sized run
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from throughput import SHAPES  # the research models' input shapes (vgg, resnet18)

from gex_core.training.models import make_model, num_params, trainable
from gex_core.training.steps import evaluate, make_eval_fn

# digits-size inputs for the small models
INPUT_SHAPES = {"cnn": (8, 8, 1), "mlp": (8, 8, 1)} | {
    name: shape for name, (shape, _) in SHAPES.items()
}


def perturbed_members(params, num: int, key: jax.Array, scale: float = 0.01) -> list:
    """num copies of params with N(0, scale^2) noise on every trainable leaf (batch-norm
    statistics are kept: they must stay valid variances)."""
    base = trainable(params)
    leaves, treedef = jax.tree.flatten(base)
    members = []
    for m in range(num):
        keys = jax.random.split(jax.random.fold_in(key, m), len(leaves))
        noisy = jax.tree.unflatten(
            treedef,
            [
                leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
                for leaf, k in zip(leaves, keys, strict=True)
            ],
        )
        members.append(noisy if base is params else {**params, **noisy})
    return members


def member_losses(
    eval_fn: Callable, members: list, x: np.ndarray, y: np.ndarray, batch_size: int
) -> np.ndarray:
    """(M, N) per-sample losses, one `evaluate` per member as `run_chain` does."""
    return np.stack([evaluate(eval_fn, m, x, y, batch_size)[0] for m in members])


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of `repeats` calls of each fn, after a warm-up call of each (compiling
    every shape), taken in rounds so every fn sees the same machine load."""
    for fn in fns.values():
        fn()
    runs = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            runs[name].append(seconds(fn))
    return runs


def summary(runs: list[float]) -> dict[str, float]:
    """Median, and minimum (the least disturbed run on a shared machine)."""
    return {"median": statistics.median(runs), "min": min(runs)}


def measure(args: argparse.Namespace) -> dict:
    shape = INPUT_SHAPES[args.model]
    model = make_model(args.model, args.classes, shape)
    rng = np.random.default_rng(0)
    largest = max(args.scales) * args.num_samples
    x_all = rng.normal(size=(largest, *shape)).astype(np.float32)
    y_all = rng.integers(0, args.classes, largest).astype(np.int32)
    params = model.init(jax.random.key(0))
    members = perturbed_members(params, args.members, jax.random.key(1))
    eval_fn = make_eval_fn(model.apply)
    n, m = args.num_samples, args.members
    x, y = x_all[:n], y_all[:n]

    def forward(batch_size: int) -> Callable[[], object]:
        return lambda: evaluate(eval_fn, params, x, y, batch_size)

    def losses(batch_size: int, num: int = n) -> Callable[[], object]:
        return lambda: member_losses(
            eval_fn, members, x_all[:num], y_all[:num], batch_size
        )

    # 1. the best batch size of one forward pass (sizes above N all mean N)
    sizes = sorted({min(b, n) for b in args.batch_sizes})
    by_size = interleaved({b: forward(b) for b in sizes}, args.repeats)
    forward_s = {b: summary(t) for b, t in by_size.items()}
    best = min(sizes, key=lambda b: forward_s[b]["median"])

    # 2. member losses as the workflow computes them, and at the best batch size,
    # alternating with the best forward pass
    eval_size = min(args.eval_batch_size, n)
    runs = interleaved(
        {
            "forward": forward(best),
            "workflow": losses(eval_size),
            "best": losses(best),
        },
        args.repeats,
    )
    t = {k: summary(v) for k, v in runs.items()}

    def ratio(key: str, stat: str) -> float:
        return t[key][stat] / (m * t["forward"][stat])

    # 3. linearity in N at the workflow's batch size
    scaled = interleaved(
        {s: losses(args.eval_batch_size, s * n) for s in args.scales}, args.repeats
    )
    linear = {s: summary(v) for s, v in scaled.items()}
    first = args.scales[0]
    return {
        "model": args.model,
        "parameters": num_params(params),
        "input_shape": list(shape),
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "num_samples": n,
        "members": m,
        "repeats": args.repeats,
        "forward_seconds_by_batch_size": {str(b): v for b, v in forward_s.items()},
        "best_batch_size": best,
        "forward_seconds_best": t["forward"],
        "eval_batch_size": args.eval_batch_size,
        "member_losses_seconds": t["workflow"],
        "member_losses_seconds_best_batch": t["best"],
        "ratio": {stat: ratio("workflow", stat) for stat in ("median", "min")},
        "ratio_best_batch": {stat: ratio("best", stat) for stat in ("median", "min")},
        "target_ratio": 1.3,
        "linearity_seconds": {str(s * n): v for s, v in linear.items()},
        "linearity_ratios": {
            f"t({s}N)/t(N)": {
                stat: linear[s][stat] / linear[first][stat]
                for stat in ("median", "min")
            }
            for s in args.scales[1:]
        },
    }


def print_table(r: dict) -> None:
    print(
        f"{r['model']} ({r['parameters']} parameters, input {r['input_shape']}), "
        f"N={r['num_samples']}, M={r['members']}, {r['devices']} x "
        f"{r['device_kind']}, jax {r['jax']}, {r['repeats']} repeats"
    )
    head = f"{'median s':>10}{'min s':>10}"
    print(f"{'forward pass over N, batch size':<40}{head}")
    for b, v in r["forward_seconds_by_batch_size"].items():
        mark = "  <- best" if int(b) == r["best_batch_size"] else ""
        print(f"{b:<40}{v['median']:>10.4f}{v['min']:>10.4f}{mark}")
    print(f"{'member losses (M x N)':<40}{head}{'ratio (median, min)':>24}")
    rows = [
        (
            f"workflow eval batch {r['eval_batch_size']}",
            "member_losses_seconds",
            "ratio",
        ),
        (
            f"best batch {r['best_batch_size']}",
            "member_losses_seconds_best_batch",
            "ratio_best_batch",
        ),
    ]
    for label, key, ratio in rows:
        v, q = r[key], r[ratio]
        print(
            f"{label:<40}{v['median']:>10.4f}{v['min']:>10.4f}"
            f"{q['median']:>12.3f}{q['min']:>12.3f}"
        )
    fwd = r["forward_seconds_best"]
    m = r["members"]
    print(
        f"{'M x best forward pass':<40}{m * fwd['median']:>10.4f}{m * fwd['min']:>10.4f}"
    )
    print(f"{'member losses at N samples':<40}{head}{'/ t(N) (median, min)':>24}")
    first = next(iter(r["linearity_seconds"].values()))
    for num, v in r["linearity_seconds"].items():
        print(
            f"{num:<40}{v['median']:>10.4f}{v['min']:>10.4f}"
            f"{v['median'] / first['median']:>12.3f}{v['min'] / first['min']:>12.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn", choices=sorted(INPUT_SHAPES))
    parser.add_argument("--num-samples", type=int, default=1437)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--eval-batch-size", type=int, default=512)
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024, 2048]
    )
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/out/gex_throughput.json")
    args = parser.parse_args()
    result = measure(args)
    print_table(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
