"""How each stage's cost grows with the training set: fitted exponents and one plot.

    python benchmarks/scaling.py [--sizes 1000 4000 16000 64000] [--shape digits|mnist]
        [--methods gex randproj el2n] [--epochs 5] [--out benchmarks/out/scaling]

For each size N, a data set of N training images (the bundled digits tiled to N with
a little pixel noise, at digits' 8x8 or upsampled to MNIST's 28x28) runs the workflow
in its own working directory: pretraining (--epochs, so its cost is linear in N by
construction of the recipe), GEX's calibration and chains (a fixed number of steps,
plus one loss pass over the N samples per pilot and member) and each method's scoring,
one seed, relabel and prune off. Each rule's wall seconds come from its Snakemake
benchmark file. The exponent b of cost ~ a N^b is the least-squares slope of log cost
on log N over the sizes; <out>/scaling.png plots cost against N per stage on log-log
axes, and <out>/results.md tables the seconds and exponents. Process start-up and
compilation do not grow with N, so at small N the exponents understate the asymptote.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_check import rule_of, tiled_digits  # noqa: E402


def run_size(out: Path, n: int, args) -> dict[str, float]:
    """Seconds per stage of one workflow run on N training images."""
    workdir = out / f"n{n}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    side = 8 if args.shape == "digits" else 28
    # N training images after the 10% validation split
    np.savez(workdir / "data.npz", **tiled_digits(int(n / 0.9), 500, side))
    config = {
        "dataset": "npz",
        "data_file": str(workdir / "data.npz"),
        "seeds": [0],
        "model": "cnn",
        "pretrain": {"epochs": args.epochs, "num_checkpoints": 1},
        "methods": args.methods,
        "relabel": {"methods": []},
        "prune": {"methods": []},
        "influence": {"el2n": {"repeats": 1, "epochs": 1}},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
         "--directory", str(workdir), "--cores", args.cores],
        capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"N={n} failed:\n{result.stderr[-3000:]}")
    seconds: dict[str, float] = {}
    for path in (workdir / "benchmarks").rglob("*.tsv"):
        rule = rule_of(path)
        if rule == "influence":  # one row per method
            rule = f"score {path.parent.parent.name}"
        if rule in (None, "dataset", "labels", "detect"):
            continue
        wall = float(path.read_text().splitlines()[1].split("\t")[0])
        seconds[rule] = seconds.get(rule, 0.0) + wall
    return seconds


def exponent(sizes: list[int], costs: list[float]) -> float:
    """Least-squares slope of log cost on log N."""
    return float(np.polyfit(np.log(sizes), np.log(costs), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[1000, 4000, 16000, 64000]
    )
    parser.add_argument("--shape", choices=["digits", "mnist"], default="digits")
    parser.add_argument("--methods", nargs="+", default=["gex", "randproj", "el2n"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--cores", default="all")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/out/scaling"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    by_size = {n: run_size(out, n, args) for n in args.sizes}
    stages = sorted(set.intersection(*(set(s) for s in by_size.values())))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks.default_run import commit

    fig, ax = plt.subplots(figsize=(6, 4))
    lines = [
        f"commit {commit()}, `python benchmarks/scaling.py --sizes "
        f"{' '.join(map(str, args.sizes))} --shape {args.shape} --methods "
        f"{' '.join(args.methods)} --epochs {args.epochs}`",
        "",
        "| stage | " + " | ".join(f"N = {n}" for n in args.sizes) + " | exponent |",
        "|---" * (len(args.sizes) + 2) + "|",
    ]
    for stage in stages:
        costs = [by_size[n][stage] for n in args.sizes]
        b = exponent(args.sizes, costs)
        ax.plot(args.sizes, costs, marker="o", label=f"{stage} (N^{b:.2f})")
        lines.append(
            f"| {stage} | " + " | ".join(f"{c:.1f} s" for c in costs) + f" | {b:.2f} |"
        )
    ax.set(xscale="log", yscale="log", xlabel="training images N", ylabel="seconds")
    ax.set_title(f"cost per stage, {args.shape}-shaped images", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=120)
    text = "\n".join(lines) + "\n"
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
