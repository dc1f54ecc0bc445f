"""Is one vmapped step for G chains faster than G one-chain steps on this device?

Times `ensemble.run_chains` on the bundled digits data (or random images of the given
shape) for G chains advanced one step per chain (`ensemble.batched: false`) and with
one vmapped step (`batched: true`), after a warm-up run that compiles both. Prints the
time per member of each, and their ratio: below 1, set `ensemble.batched: true` on
this device for this model.

    python benchmarks/chain_batching.py --model cnn --chains 4
    python benchmarks/chain_batching.py --model resnet18 --shape 32 32 3 --n 4096
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gex_core.influence.ensemble import FineTuning, run_chains  # noqa: E402
from gex_core.training.devices import data_mesh, describe  # noqa: E402
from gex_core.training.hooks import no_log  # noqa: E402
from gex_core.training.models import make_model  # noqa: E402


def load(shape: list[int] | None, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    if shape is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[..., None]
        return x, digits.target.astype(np.int32), 10
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    return x, rng.integers(0, 10, n).astype(np.int32), 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--ft-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shape", type=int, nargs=3, default=None)
    parser.add_argument("--n", type=int, default=2048)
    args = parser.parse_args()
    x, y, classes = load(args.shape, args.n)
    model = make_model(args.model, classes, x.shape[1:])
    pretrained = model.init(jax.random.key(0))
    recipe = FineTuning(
        stages=args.stages,
        ft_lr=0.05,
        ft_steps=args.ft_steps,
        batch_size=args.batch_size,
        weight_decay=5.0e-4,
        momentum=0.9,
    )
    options = dict(seed=0, eval_batch_size=512, log=no_log)
    chains = list(range(args.chains))
    seconds = {}
    data = (model, pretrained, (x, y, x[:64], y[:64]))
    for batched in (False, True):
        # warm-up: compiles the step, evaluation and batch-norm functions
        warm_up = recipe._replace(stages=1, ft_steps=2)
        run_chains(*data, warm_up, chains=chains, batched=batched, **options)
        start = time.perf_counter()
        run_chains(*data, recipe, chains=chains, batched=batched, **options)
        seconds[batched] = time.perf_counter() - start
    members = args.chains * args.stages
    print(
        json.dumps(
            {
                "devices": describe(data_mesh()),
                "model": args.model,
                "chains": args.chains,
                "members": members,
                "per_member_s_one_step_each": seconds[False] / members,
                "per_member_s_batched": seconds[True] / members,
                "batched_over_one_step_each": seconds[True] / seconds[False],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
