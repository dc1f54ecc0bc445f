"""Detection on seeds nobody tuned on, with paired bootstrap intervals against GEX.

    python benchmarks/fresh_seeds.py [--out benchmarks/out/fresh_seeds]
        [--seeds 10 11 12 13 14] [--settings sym0.1 sym0.3 asym0.2] [--cores N]

Seeds 0-2 are for development (the defaults were chosen looking at them); this runs
the repository's config.yaml unchanged except for the seeds, the noise setting, and
relabel and prune turned off, once per setting (digits at symmetric 10% and 30% and
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


def run_setting(out: Path, setting: str, seeds: list[int], cores: str) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config.update(seeds=seeds, noise=noise_config(setting))
    config["relabel"] = {"methods": []}
    config["prune"] = {"methods": []}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
    command += ["--directory", str(out), "--cores", cores]
    subprocess.run(command, check=True, capture_output=True)
    validate_config(config, ROOT / "schemas" / "config.schema.yaml")
    return config


def setting_table(out: Path, config: dict) -> tuple[pd.DataFrame, list]:
    """Per method: AUC and AP (mean, std) and the paired intervals against GEX; and
    GEX's members kept per seed."""
    seeds = config["seeds"]
    masks = [
        read_npz(out / paths.result(config, "labels", seed=s), ("mask",))["mask"]
        for s in seeds
    ]
    scores = {
        m: [
            load_scores(
                out / paths.result(config, "scores", seed=s, method=m)
            ).self_influence
            for s in seeds
        ]
        for m in config["methods"]
    }
    kept = [
        load_members(out / paths.result(config, "scores", seed=s, method="gex"))
        for s in seeds
    ]
    rows = []
    for method, per_seed in scores.items():
        metrics = [
            detection_metrics(x, m.astype(bool))
            for x, m in zip(per_seed, masks, strict=True)
        ]
        row = {"method": method}
        for name in ("auc", "ap"):
            values = np.array([m[name] for m in metrics])
            row[name] = f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"
            row[f"{name}_mean"] = values.mean()
            if method != "gex":
                interval = paired_bootstrap(scores["gex"], per_seed, masks, name)
                row[f"gex_minus_{name}"] = (
                    f"{interval.delta:+.4f} [{interval.low:+.4f}, {interval.high:+.4f}]"
                )
        rows.append(row)
    table = pd.DataFrame(rows).sort_values("auc_mean", ascending=False)
    return table, kept


def markdown(table: pd.DataFrame) -> str:
    lines = [
        "| method | ROC-AUC | AP | ΔAUC GEX − method [95% CI] | ΔAP GEX − method [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        delta_auc = r.get("gex_minus_auc", "")
        delta_ap = r.get("gex_minus_ap", "")
        delta_auc = "" if not isinstance(delta_auc, str) else delta_auc
        delta_ap = "" if not isinstance(delta_ap, str) else delta_ap
        lines.append(
            f"| `{r['method']}` | {r['auc']} | {r['ap']} | {delta_auc} | {delta_ap} |"
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
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    report = [
        f"commit {commit()}, `python benchmarks/fresh_seeds.py --seeds "
        f"{' '.join(map(str, args.seeds))} --settings {' '.join(args.settings)}`; "
        "mean ± std over seeds; intervals: paired bootstrap, 1,000 resamples"
    ]
    for setting in args.settings:
        start = time.perf_counter()
        config = run_setting(out / setting, setting, args.seeds, args.cores)
        minutes = (time.perf_counter() - start) / 60
        table, kept = setting_table(out / setting, config)
        table.to_csv(out / setting / "table.tsv", sep="\t", index=False)
        members = ", ".join(f"{k} of {n}" for k, n in kept)
        report.append(
            f"\n### digits, {setting}\n\n{minutes:.1f} minutes; GEX members kept per "
            f"seed: {members}\n\n" + markdown(table)
        )
    text = "\n".join(report) + "\n"
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
