"""Training and evaluation throughput of the research models, and what a preset costs.

Times jitted training steps (SGD + momentum, coupled L2, the preset's augmentation) and
evaluation forward passes on synthetic data of the real shape (vgg: 28x28x1, resnet18:
32x32x3), after a compiling warm-up, on whatever device JAX uses. Reports images/s and
the step / forward ratio measured in the same run. With --preset, also estimates the
device hours of that preset's training work (pretraining, ensemble members, EL2N, CL,
relabel and pruning retraining) and forward-equivalent scoring from the measured rates. Usage:

    python benchmarks/throughput.py [--models vgg resnet18] [--batch-size 128]
        [--steps 10] [--preset configs/cifar10.yaml --num-train 50000]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import yaml

from gex_core.training.models import make_model, num_params
from gex_core.training.steps import make_eval_fn, make_train_step

SHAPES = {"vgg": ((28, 28, 1), "crop"), "resnet18": ((32, 32, 3), "crop_flip")}


def measure(name: str, batch_size: int, steps: int, classes: int) -> dict:
    """Images/s of training steps and of evaluation forward passes for one model."""
    shape, augment = SHAPES[name]
    model = make_model(name, classes, shape)
    rng = np.random.default_rng(0)
    n = 4 * batch_size
    x = jnp.asarray(rng.normal(size=(n, *shape)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, classes, n).astype(np.int32))
    params = model.init(jax.random.key(0))
    tx = optax.sgd(0.01, momentum=0.9)
    step = make_train_step(model.train_forward, tx, 5.0e-4, augment)
    eval_fn = make_eval_fn(model.apply)
    opt_state = tx.init(params)
    batches = [np.arange(i * batch_size, (i + 1) * batch_size) % n for i in range(4)]
    key = jax.random.key(0)

    start = time.perf_counter()
    out = step(params, opt_state, x, y, batches[0], key, 0)
    jax.block_until_ready(out)
    compile_step = time.perf_counter() - start
    params, opt_state = out.params, out.opt_state
    start = time.perf_counter()
    for i in range(steps):
        out = step(params, opt_state, x, y, batches[i % 4], key, i + 1)
        params, opt_state = out.params, out.opt_state
    jax.block_until_ready(out)
    step_s = (time.perf_counter() - start) / steps

    xb, yb = x[:batch_size], y[:batch_size]
    jax.block_until_ready(eval_fn(params, xb, yb))
    start = time.perf_counter()
    for _ in range(steps):
        result = eval_fn(params, xb, yb)
    jax.block_until_ready(result)
    forward_s = (time.perf_counter() - start) / steps
    return {
        "model": name,
        "parameters": num_params(params),
        "device": jax.devices()[0].device_kind,
        "batch_size": batch_size,
        "train_images_per_s": batch_size / step_s,
        "eval_images_per_s": batch_size / forward_s,
        "step_over_forward": step_s / forward_s,
        "step_compile_s": compile_step,
    }


# Forward-pass equivalents per training sample of each scoring method, from the
# digits measurements in docs/results.md's cost table (randproj/tracinrp vjp ~30 per
# direction block, GEX one forward per member, ...); order-of-magnitude only.
SCORING_FORWARDS = {
    "gex": lambda c: c["ensemble"]["chains"] * c["ensemble"]["stages"],
    "la_kfac": lambda c: 3 * c["influence"]["la_kfac"]["members"],
    "randproj": lambda c: 30,
    "tracinrp": lambda c: 30 * c["pretrain"]["num_checkpoints"],
    "arnoldi": lambda c: 30,
    "knn": lambda c: c["pretrain"]["num_checkpoints"],
}


def preset_cost(config: dict, num_train: int, rates: dict) -> dict:
    """Estimated device hours per seed and for all seeds of a validated preset."""
    train_rate = rates["train_images_per_s"]
    forward_rate = rates["eval_images_per_s"]
    pre, ens, methods = config["pretrain"], config["ensemble"], config["methods"]
    trained = {"pretrain": pre["epochs"] * num_train}
    if "gex" in methods:
        trained["ensemble"] = (
            ens["chains"] * ens["stages"] * ens["ft_steps"] * ens["batch_size"]
        )
    if "el2n" in methods:
        hp = config["influence"]["el2n"]
        trained["el2n"] = hp["repeats"] * hp["epochs"] * num_train
    if "cl" in methods:
        folds = config["influence"]["cl"]["folds"]
        trained["cl"] = pre["epochs"] * num_train * (folds - 1)
    relabel = config["relabel"]["methods"]
    if relabel:  # each method, plus the oracle and all-predicted baselines
        trained["relabel"] = (len(relabel) + 2) * pre["epochs"] * num_train
    pruned = config["prune"]["methods"]
    if pruned:  # random is always added
        runs = len(set(pruned) | {"random"})
        kept = sum(1 - f for f in config["prune"]["fractions"])
        trained["prune"] = runs * kept * pre["epochs"] * num_train
    hours = {stage: images / train_rate / 3600 for stage, images in trained.items()}
    scoring = sum(SCORING_FORWARDS[m](config) for m in methods if m in SCORING_FORWARDS)
    hours["scoring"] = scoring * num_train / forward_rate / 3600
    per_seed = sum(hours.values())
    return {
        "hours_per_seed": {k: round(v, 2) for k, v in hours.items()},
        "total_hours_per_seed": round(per_seed, 2),
        "total_hours_all_seeds": round(per_seed * len(config["seeds"]), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SHAPES))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--preset", help="a configs/*.yaml to estimate")
    parser.add_argument("--num-train", type=int, help="training-set size of the preset")
    args = parser.parse_args()

    results = [
        measure(name, args.batch_size, args.steps, args.classes) for name in args.models
    ]
    for row in results:
        print(
            json.dumps(
                {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}
            )
        )
    if args.preset:
        from gex_core.workflow.config import validate_config

        with open(args.preset) as f:
            config = yaml.safe_load(f)
        validate_config(config, "schemas/config.schema.yaml")
        rates = next(r for r in results if r["model"] == config["model"])
        print(json.dumps(preset_cost(config, args.num_train, rates)))


if __name__ == "__main__":
    main()
