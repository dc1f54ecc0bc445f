"""Find label issues in an image folder nobody told the workflow about.

    python benchmarks/label_issues_folder.py [--out benchmarks/out/label_issues]
        [--seeds 10 11 12] [--moved 0.05] [--cores N]

Writes the bundled digits as PNG class folders (train/ and test/), twice: once with a
fraction `--moved` of the training images put in a wrong class folder (which ones is
kept outside the data folder), once with none moved. Each folder runs the default
config with `dataset: folder` and `noise.kind: none` (so the workflow knows nothing of
the moves) for gex, cl, el2n and randproj on the given seeds (fresh ones: the defaults
were set on seeds 0-2). Prints, and writes to <out>/results.md, per method the mean ±
sample std over seeds of precision and recall of the moved images among the flagged
ones (the relabel experiment's Otsu flag) and in the top k of label_issues.tsv (k = the
number moved), and for the folder with none moved the fraction flagged and the GEX
members dropped as collapsed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.default_run import commit  # noqa: E402
from gex_core.data.datasets import load_digits  # noqa: E402
from gex_core.workflow import paths  # noqa: E402
from gex_core.workflow.config import validate_config  # noqa: E402
from tests.formats import as_uint8, write_image_folder  # noqa: E402

METHODS = ["gex", "cl", "el2n", "randproj"]
NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def write_folder(root: Path, fraction: float, seed: int = 2026) -> set[str]:
    """Digits as PNG class folders under root, `fraction` of the training images in a
    uniformly drawn wrong class's folder; returns the moved files (relative to root)."""
    digits = load_digits()
    labels = digits.y_train.copy()
    rng = np.random.default_rng(seed)
    moved = rng.choice(labels.size, round(fraction * labels.size), replace=False)
    labels[moved] = (labels[moved] + rng.integers(1, 10, moved.size)) % 10
    files = write_image_folder(root, as_uint8(digits.x_train), labels, NAMES)
    write_image_folder(root, as_uint8(digits.x_test), digits.y_test, NAMES, "test")
    by_row = {int(f.stem): f.relative_to(root).as_posix() for f in files}
    return {by_row[int(i)] for i in moved}


def run(out: Path, seeds: list[int], cores: str) -> dict:
    """Run the workflow on the folder out/data; returns the validated config."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config.update(dataset="folder", data_dir=str(out / "digit_pngs"), seeds=seeds)
    config.update(methods=METHODS, queries=0)
    config["noise"] = {"kind": "none"}
    config["relabel"] = {"methods": []}
    config["prune"] = {"methods": []}
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
    command += ["--directory", str(out), "--cores", cores]
    subprocess.run(command, check=True, capture_output=True)
    validate_config(config, ROOT / "schemas" / "config.schema.yaml")
    return config


def dropped_members(out: Path, config: dict, seed: int) -> int:
    """GEX members left out as collapsed in a seed (the scoring job's warning)."""
    log = out / paths.log_file(paths.result(config, "scores", seed=seed, method="gex"))
    found = re.search(r"dropped (\d+) of \d+ ensemble members", log.read_text())
    return int(found.group(1)) if found else 0


def detection(out: Path, config: dict, moved: set[str]) -> pd.DataFrame:
    """Per (method, seed): flagged, and precision and recall of the moved files among
    the flagged and among the top k."""
    rows = []
    for method in METHODS:
        for seed in config["seeds"]:
            table = pd.read_csv(
                out / paths.result(config, "label_issues", seed=seed, method=method),
                sep="\t",
            )
            is_moved = table.file.isin(moved).to_numpy()
            flagged = table.flagged.to_numpy()
            top = np.arange(len(table)) < len(moved)
            row = {"method": method, "seed": seed, "flagged": flagged.mean()}
            if moved:
                row["flag_precision"] = is_moved[flagged].mean() if flagged.any() else 0
                row["flag_recall"] = is_moved[flagged].sum() / len(moved)
                row["topk_precision"] = is_moved[top].mean()
                row["topk_recall"] = is_moved[top].sum() / len(moved)
            if method == "gex":
                row["gex_dropped"] = dropped_members(out, config, seed)
            rows.append(row)
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame, columns: list[str]) -> str:
    grouped = frame.groupby("method", sort=False)[columns]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    lines = [
        "| method | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for method in mean.index:
        cells = [f"{mean.at[method, c]:.3f} ± {std.at[method, c]:.3f}" for c in columns]
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/out/label_issues"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    parser.add_argument("--moved", type=float, default=0.05)
    parser.add_argument("--cores", default="all")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    report = [
        f"commit {commit()}, `python benchmarks/label_issues_folder.py --seeds "
        f"{' '.join(map(str, args.seeds))} --moved {args.moved}`; default config, "
        "`dataset: folder`, `noise.kind: none`; mean ± std over seeds"
    ]
    for name, fraction in (("moved", args.moved), ("none_moved", 0.0)):
        work = out / name
        work.mkdir(parents=True)
        moved = write_folder(work / "digit_pngs", fraction)
        start = time.perf_counter()
        config = run(work, args.seeds, args.cores)
        minutes = (time.perf_counter() - start) / 60
        frame = detection(work, config, moved)
        frame.to_csv(work / "per_seed.tsv", sep="\t", index=False)
        columns = ["flagged"]
        if moved:
            columns += [
                "flag_precision",
                "flag_recall",
                "topk_precision",
                "topk_recall",
            ]
        report.append(
            f"\n{name}: {len(moved)} of 1437 training images moved, k = {len(moved)}, "
            f"{minutes:.1f} minutes; GEX members dropped as collapsed per seed: "
            f"{frame.gex_dropped.dropna().astype(int).tolist()}\n\n"
            + markdown(frame, columns)
        )
    text = "\n".join(report) + "\n"
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
