"""Scoring cost against N, and the peak memory of one-job versus sharded scoring.

Runs the real workflow (snakemake, up to the scoring rules) on synthetic uint8 image
data sets of several sizes N (an .npz data set, 16x16x3, MLP, one seed), once with
one scoring job per method and, for the smallest and largest N, with `shard_size`.
Reads what the jobs themselves recorded: compute seconds of each scoring job (timing.json)
and peak RSS from the Snakemake benchmark files. Prints

- scoring seconds per method and their ratios t(N_i) / t(N_0), next to N_i / N_0,
  and the same seconds in forward passes over the scored samples timed in the same
  job (flat in N when the cost is linear; robust to a busy machine);
- peak RSS (MB) of the one-job scoring and of the largest shard job, per N.

    python benchmarks/shard_scaling.py [--sizes 10000 20000 40000] [--shard-size 5000]
        [--out benchmarks/out/shard_scaling]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from gex_core.workflow.io import write_npz
from gex_core.workflow.paths import benchmark_file, influence_dir

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["gex", "randproj"]
IMAGE_SHAPE = (16, 16, 3)


def write_data(path: Path, num_train: int, num_test: int = 1000) -> None:
    """Synthetic uint8 images whose label is the brightest of 10 pixel groups."""
    rng = np.random.default_rng(num_train)
    x = rng.integers(0, 256, (num_train + num_test, *IMAGE_SHAPE), dtype=np.uint8)
    groups = x.reshape(len(x), -1)[:, :760].reshape(len(x), 10, 76).mean(axis=2)
    y = groups.argmax(axis=1).astype(np.int32)
    write_npz(
        path,
        x_train=x[:num_train],
        y_train=y[:num_train],
        x_test=x[num_train:],
        y_test=y[num_train:],
    )


def make_config(data_file: Path, shard_size: int | None) -> dict:
    return {
        "dataset": "npz",
        "data_file": str(data_file),
        "seeds": [0],
        "noise": {"kind": "symmetric", "ratio": 0.1},
        "model": "mlp",
        "pretrain": {
            "epochs": 1,
            "batch_size": 128,
            "lr": 0.05,
            "weight_decay": 5.0e-4,
            "warmup_ratio": 0.1,
            "momentum": 0.9,
            "num_checkpoints": 1,
        },
        "ensemble": {
            "chains": 2,
            "stages": 2,
            "ft_lr": 0.05,
            "ft_steps": 10,
            "batch_size": 128,
        },
        "methods": METHODS,
        "influence": {"randproj": {"dim": 8, "strategy": "jvp"}},
        "relabel": {"methods": []},
        "prune": {"methods": []},
        "queries": 20,
        "eval_batch_size": 500,
        "shard_size": shard_size,
    }


def run_workflow(workdir: Path, config: dict) -> dict:
    """Run up to the scoring rules; returns the resolved config's scoring folders."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
        "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
        "--cores", "1", "--until", "influence", "influence_gather", "--quiet",
    ]  # fmt: skip
    subprocess.run(command, check=True)
    return {m: workdir / influence_dir(resolved(config), m, 0) for m in METHODS}


def resolved(config: dict) -> dict:
    """The config with the schema's defaults, as the workflow sees it."""
    import copy

    from gex_core.workflow.config import validate_config

    full = copy.deepcopy(config)
    validate_config(full, ROOT / "schemas" / "config.schema.yaml")
    return full


def max_rss(workdir: Path, output: Path) -> float:
    frame = pd.read_csv(
        workdir / benchmark_file(str(output.relative_to(workdir))), sep="\t"
    )
    return float(frame["max_rss"].max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 20000, 40000])
    parser.add_argument("--shard-size", type=int, default=5000)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/out/shard_scaling"
    )
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        data = args.out / f"synthetic{n}.npz"
        if not data.exists():
            write_data(data, n)
        modes = [None]
        if n in (min(args.sizes), max(args.sizes)):
            modes.append(args.shard_size)
        for shard_size in modes:
            label = "one-job" if shard_size is None else f"shards-{shard_size}"
            workdir = args.out / f"N{n}-{label}"
            folders = run_workflow(workdir, make_config(data, shard_size))
            for method, folder in folders.items():
                with open(folder / "timing.json") as f:
                    timing = json.load(f)
                if shard_size is None:
                    rss = max_rss(workdir, folder / "scores.npz")
                else:
                    rss = max(
                        max_rss(workdir, workdir / shard) for shard in timing["shards"]
                    )
                rows.append(
                    {
                        "N": n,
                        "mode": label,
                        "method": method,
                        "jobs": len(timing.get("shards", [None])),
                        "compute_s": timing["compute_seconds"],
                        "forward_passes": timing["forward_passes"],
                        "peak_rss_mb": rss,
                    }
                )
    table = pd.DataFrame(rows)
    base = table[(table["mode"] == "one-job") & (table["N"] == min(args.sizes))]
    base_s = dict(zip(base["method"], base["compute_s"], strict=True))
    table["N_ratio"] = table["N"] / min(args.sizes)
    table["time_ratio"] = [
        s / base_s[m] for s, m in zip(table["compute_s"], table["method"], strict=True)
    ]
    pd.set_option("display.width", 160)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    table.to_csv(args.out / "shard_scaling.tsv", sep="\t", index=False)


if __name__ == "__main__":
    main()
