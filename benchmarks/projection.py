"""Which way of projecting per-sample gradients is faster: JVPs or vmapped gradients?

Times one full pass over the digits training set for each strategy (after a warm-up
call that compiles it), alternating strategies over several repeats, and reports each
as a multiple of one forward pass measured in the same process. Usage:

    python benchmarks/projection.py [--model cnn] [--dim 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from gex_core.data.load import load_dataset
from gex_core.influence.projection import (
    STRATEGIES,
    project_gradients,
    random_directions,
)
from gex_core.training.models import make_model, num_params
from gex_core.training.steps import evaluate, make_eval_fn


def timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    data = load_dataset("digits")
    model = make_model(args.model, data.num_classes, data.x_train.shape[1:])
    params = model.init(jax.random.key(0))
    directions = random_directions(jax.random.key(1), params, args.dim)
    x, y = data.x_train, data.y_train
    eval_fn = make_eval_fn(model.apply)

    def forward():
        return evaluate(eval_fn, params, x, y, args.batch_size)[0]

    def projection(strategy):
        return lambda: project_gradients(
            model.apply, params, directions, x, y, args.batch_size, strategy
        )

    compile_s = {"forward": timed(forward)}
    compile_s.update({s: timed(projection(s)) for s in STRATEGIES})
    runs = {name: [] for name in ("forward", *STRATEGIES)}
    for _ in range(args.repeats):
        runs["forward"].append(timed(forward))
        for strategy in STRATEGIES:
            runs[strategy].append(timed(projection(strategy)))
    forward_s = statistics.median(runs["forward"])
    print(
        f"model {args.model} ({num_params(params)} parameters), N={x.shape[0]}, "
        f"d={args.dim}, batch {args.batch_size}, {args.repeats} repeats, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}"
    )
    print(f"{'strategy':<10}{'median / forward pass':>24}{'first call / forward':>24}")
    for name in ("forward", *STRATEGIES):
        median = statistics.median(runs[name])
        print(
            f"{name:<10}{median / forward_s:>24.1f}{compile_s[name] / forward_s:>24.1f}"
        )


if __name__ == "__main__":
    main()
