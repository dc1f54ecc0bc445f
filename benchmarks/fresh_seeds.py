"""Detection on seeds nobody tuned on, with paired bootstrap intervals against GEX.

    python benchmarks/fresh_seeds.py [--out benchmarks/out/fresh_seeds]
        [--seeds 10 11 12 13 14] [--settings sym0.1 sym0.3 asym0.2] [--cores N]

Seeds 0-2 are for development (the defaults were chosen looking at them); this runs
the repository's config.yaml unchanged except for the seeds, the noise setting, the
`member_loss` control added and relabel and prune turned off, once per setting (digits at symmetric 10% and 30% and
asymmetric 20% by default), every method. It writes <out>/results.md: per setting and
method the mean ± sample std over seeds of ROC-AUC and AP, GEX's members kept per seed,
and the paired bootstrap 95% interval of ΔAUC and ΔAP = GEX − the method
(`gex_core.evaluation.bootstrap`, 1,000 resamples of the training samples of every
seed, the same draw for both methods).
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
from gex_core.evaluation.bootstrap import paired_bootstrap  # noqa: E402
from gex_core.evaluation.metrics import detection_metrics  # noqa: E402
from gex_core.workflow import paths  # noqa: E402
from gex_core.workflow.artifacts import load_members, load_scores  # noqa: E402
from gex_core.workflow.config import validate_config  # noqa: E402
from gex_core.workflow.io import read_npz  # noqa: E402


def noise_config(setting: str) -> dict:
    """sym0.1 -> symmetric 0.1; asym0.2 -> asymmetric 0.2 with the usual pairs."""
    found = re.fullmatch(r"(sym|asym)([0-9.]+)", setting)
    if not found:
        raise ValueError(f"setting {setting!r}: expected sym<ratio> or asym<ratio>")
    kind = {"sym": "symmetric", "asym": "asymmetric"}[found.group(1)]
    return {"kind": kind, "ratio": float(found.group(2))}


def run_setting(
    out: Path, setting: str, seeds: list[int], cores: str, extra: list[str]
) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config.update(seeds=seeds, noise=noise_config(setting))
    # the control: how much of GEX's ranking its members' losses alone give
    config["methods"] = [*config["methods"], "member_loss"]
    config["relabel"] = {"methods": []}
    config["prune"] = {"methods": []}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
    # keep going: a seed whose GEX ensemble mostly collapsed fails its scoring job by
    # design, and the other seeds and methods still finish
    command += ["--directory", str(out), "--cores", cores, "--keep-going", *extra]
    subprocess.run(command, capture_output=True)
    validate_config(config, ROOT / "schemas" / "config.schema.yaml")
    return config


def failure(out: Path, config: dict, seed: int, method: str) -> str:
    """The last line of a failed scoring job's log (why it has no scores)."""
    log = out / paths.log_file(paths.result(config, "scores", seed=seed, method=method))
    lines = log.read_text().strip().splitlines() if log.exists() else ["no log"]
    errors = [line for line in lines if "Error:" in line]
    return (errors or lines)[-1]


def interval_text(
    scores: list[np.ndarray],
    others: list[np.ndarray],
    masks: list[np.ndarray],
    metric: str,
) -> str:
    """'+0.0012 [+0.0003, +0.0021]': the paired bootstrap interval of metric(scores)
    - metric(others) over the seeds (`paired_bootstrap`)."""
    interval = paired_bootstrap(scores, others, masks, metric)
    return f"{interval.delta:+.4f} [{interval.low:+.4f}, {interval.high:+.4f}]"


def setting_table(out: Path, config: dict) -> tuple[pd.DataFrame, list[str]]:
    """Per method: AUC and AP (mean, std over the seeds it has scores for) and the
    paired intervals against GEX on the seeds both have; notes on GEX's members kept
    and on every failed scoring job."""
    seeds = config["seeds"]
    masks = {
        s: read_npz(out / paths.result(config, "labels", seed=s), ("mask",))["mask"]
        for s in seeds
    }
    scores, notes = {}, []
    for method in config["methods"]:
        scores[method] = {}
        for seed in seeds:
            path = out / paths.result(config, "scores", seed=seed, method=method)
            if path.exists():
                scores[method][seed] = load_scores(path).self_influence
            else:
                notes.append(
                    f"{method}, seed {seed}: no scores ({failure(out, config, seed, method)})"
                )
    kept = []
    for seed in seeds:
        path = out / paths.result(config, "scores", seed=seed, method="gex")
        members = load_members(path) if path.exists() else None
        kept.append("failed" if members is None else f"{members[0]} of {members[1]}")
    notes.insert(0, "GEX members kept per seed: " + ", ".join(kept))
    rows = []
    for method, by_seed in scores.items():
        row = {"method": method, "seeds": len(by_seed)}
        metrics = [
            detection_metrics(x, masks[s].astype(bool)) for s, x in by_seed.items()
        ]
        common = [s for s in by_seed if s in scores["gex"]]
        for name in ("auc", "ap"):
            values = np.array([m[name] for m in metrics])
            row[name] = f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"
            row[f"{name}_mean"] = values.mean()
            if method != "gex" and common:
                row[f"gex_minus_{name}"] = interval_text(
                    [scores["gex"][s] for s in common],
                    [by_seed[s] for s in common],
                    [masks[s] for s in common],
                    name,
                )
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("auc_mean", ascending=False)
    return table, notes


def markdown(table: pd.DataFrame) -> str:
    lines = [
        "| method | seeds | ROC-AUC | AP | ΔAUC GEX − method [95% CI] "
        "| ΔAP GEX − method [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        delta_auc = r.get("gex_minus_auc", "")
        delta_ap = r.get("gex_minus_ap", "")
        delta_auc = "" if not isinstance(delta_auc, str) else delta_auc
        delta_ap = "" if not isinstance(delta_ap, str) else delta_ap
        lines.append(
            f"| `{r['method']}` | {r['seeds']} | {r['auc']} | {r['ap']} | {delta_auc} "
            f"| {delta_ap} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/out/fresh_seeds"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    parser.add_argument(
        "--settings", nargs="+", default=["sym0.1", "sym0.3", "asym0.2"]
    )
    parser.add_argument("--cores", default="all")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the finished jobs of an earlier run in --out (CPU runs are bitwise "
        "reproducible, so the numbers are the same; the minutes are not)",
    )
    parser.add_argument(
        "--snakemake-args",
        default="",
        help='more snakemake arguments, e.g. "--rerun-triggers mtime" with --reuse to '
        "rerun only what a deleted file or a new method needs",
    )
    args = parser.parse_args()
    out = Path(args.out)
    if not args.reuse:
        shutil.rmtree(out, ignore_errors=True)
    report = [
        f"commit {commit()}, `python benchmarks/fresh_seeds.py --seeds "
        f"{' '.join(map(str, args.seeds))} --settings {' '.join(args.settings)}`; "
        "mean ± std over seeds; intervals: paired bootstrap, 1,000 resamples"
    ]
    for setting in args.settings:
        start = time.perf_counter()
        config = run_setting(
            out / setting, setting, args.seeds, args.cores, args.snakemake_args.split()
        )
        minutes = (time.perf_counter() - start) / 60
        table, notes = setting_table(out / setting, config)
        table.to_csv(out / setting / "table.tsv", sep="\t", index=False)
        report.append(
            f"\n### digits, {setting}\n\n{minutes:.1f} minutes\n\n"
            + "".join(f"- {note}\n" for note in notes)
            + "\n"
            + markdown(table)
        )
    text = "\n".join(report) + "\n"
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
