"""A GPU check in one command: an MNIST-shaped pipeline, per-stage times, and GEX
scoring's ratio to its forward-pass floor.

    python benchmarks/gpu_check.py [--size full|tiny] [--out benchmarks/out/gpu_check]

full (for a machine with a GPU; meant to finish in under five minutes): 60,000
training and 10,000 test images of 28x28x1 (the bundled digits upsampled to MNIST's
size, tiled, with a little pixel noise, 10% symmetric label noise), the MNIST preset's
`vgg` (batch norm), 5 pretraining epochs at batch 128, GEX's default ensemble and
calibration, `gex` alone, one seed. tiny: 200 and 50 images, the small `cnn` (a CPU
compiles the VGG for minutes), 1 epoch, two one-stage chains of 5 steps: the same
rules and script on a CPU in under a minute (tests/test_benchmarks.py runs it).

It runs `snakemake` in <out> (a fresh working directory), then prints each stage's
wall seconds from the jobs' Snakemake benchmark files, GEX's detection AUC, and
`benchmarks/gex_throughput.py`'s ratio of the M members' loss pass to M forward passes
at the best batch size (the target is <= 1.3) on the same model and image size.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SIZES = {
    "full": dict(
        model="vgg", train=60000, test=10000, epochs=5, batch=128, repeats=3,
        ensemble={"ft_steps": 100}, batch_sizes=[256, 1024, 4096],
    ),
    # the same rules on a CPU in under a minute: two one-stage chains, one pilot rate
    "tiny": dict(
        model="cnn", train=200, test=50, epochs=1, batch=32, repeats=1,
        ensemble={"ft_steps": 5, "chains": 2, "stages": 1,
                  "calibration": {"grid": [0.05], "refine": 0}},
        batch_sizes=[64, 256],
    ),
}  # fmt: skip
STAGES = ("dataset", "labels", "pretrain", "calibrate", "ensemble_chains", "influence")


def tiled_digits(num: int, num_test: int, side: int, seed: int = 0) -> dict:
    """The bundled digits tiled to num + num_test images of side x side x 1 (8: as
    bundled; 28: MNIST's size, upsampled 3x and padded by 2), uint8 with a little pixel
    noise; labels follow the source images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images / 16.0
    if side == 28:
        images = np.pad(np.kron(images, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2)))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(images), num + num_test)
    x = np.clip(images[picks] + rng.normal(0, 0.05, (len(picks), side, side)), 0, 1)
    x = (x * 255).round().astype(np.uint8)[..., None]
    y = digits.target[picks].astype(np.int64)
    return dict(x_train=x[:num], y_train=y[:num], x_test=x[num:], y_test=y[num:])


def config(data_file: Path, size: dict) -> dict:
    return {
        "dataset": "npz",
        "data_file": str(data_file),
        "seeds": [0],
        "noise": {"kind": "symmetric", "ratio": 0.1},
        "model": size["model"],
        "pretrain": {
            "epochs": size["epochs"],
            "batch_size": size["batch"],
            "lr": 0.1,
            "num_checkpoints": 1,
            "bn_batches": 10 if size["train"] > 1000 else 2,
        },
        "ensemble": {**size["ensemble"], "batch_size": size["batch"]},
        "methods": ["gex"],
        "relabel": {"methods": []},
        "prune": {"methods": []},
        "eval_batch_size": 1024,
    }


def stage_seconds(workdir: Path) -> dict[str, float]:
    """Wall seconds per rule (summed over its jobs) from Snakemake's benchmark files."""
    totals: dict[str, float] = {}
    for path in (workdir / "benchmarks").rglob("*.tsv"):
        rule = rule_of(path)
        lines = path.read_text().splitlines()
        if rule and len(lines) > 1:
            totals[rule] = totals.get(rule, 0.0) + float(lines[1].split("\t")[0])
    return totals


def rule_of(path: Path) -> str | None:
    """The rule whose benchmark file this is, from the artifact it names."""
    name = path.name.removesuffix(".tsv")
    parts = path.parts
    if name == "data.npz":
        return "dataset"
    if "labels" in parts:
        return "labels"
    if name == "model.msgpack":
        return "pretrain"
    if name == "calibration.json":
        return "calibrate"
    if name.startswith("chains"):
        return "ensemble_chains"
    if name == "scores.npz":
        return "influence"
    if name == "detection.json":
        return "detect"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/out/gpu_check"))
    parser.add_argument("--cores", default="all")
    args = parser.parse_args()
    size = SIZES[args.size]
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    data_file = out / "mnist_shaped.npz"
    np.savez(data_file, **tiled_digits(size["train"], size["test"], 28))
    settings = config(data_file, size)
    (out / "config.yaml").write_text(yaml.safe_dump(settings))
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
         "--directory", str(out), "--cores", args.cores],
        capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"the pipeline failed:\n{result.stderr[-4000:]}")

    from gex_core.workflow import paths
    from gex_core.workflow.config import validate_config
    from gex_core.workflow.io import read_json

    validate_config(settings, ROOT / "schemas" / "config.schema.yaml")
    detection = read_json(
        out / paths.result(settings, "detection", seed=0, method="gex")
    )
    print(f"{args.size}: {size['train']} training images of 28x28x1, {size['model']}")
    print(f"pipeline wall {wall:.1f} s (snakemake, start to end)")
    seconds = stage_seconds(out)
    for stage in (*STAGES, "detect"):
        if stage in seconds:
            print(f"  {stage:16s} {seconds[stage]:7.1f} s")
    print(f"GEX detection AUC {detection['auc']:.4f}, AP {detection['ap']:.4f}")

    from gex_throughput import measure

    ensemble = settings["ensemble"]
    members = ensemble["chains"] * ensemble["stages"]
    ratio_args = argparse.Namespace(
        model=size["model"], classes=10, num_samples=min(size["train"], 8192),
        members=members, eval_batch_size=1024, batch_sizes=size["batch_sizes"],
        scales=[1], repeats=size["repeats"],
    )  # fmt: skip
    measured = measure(ratio_args)
    print(
        f"GEX member losses / ({members} forward passes at the best batch size): "
        f"{measured['ratio']['median']:.2f} (median of {size['repeats']}; target <= 1.3)"
    )


if __name__ == "__main__":
    main()
