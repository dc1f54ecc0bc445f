"""GEX's total cost against pretraining, and its cost per ensemble member, from the
workflow's own benchmark files.

Runs the default config with methods [gex] in a scratch folder per grouping of chains
(`ensemble.chains_per_job`: 1 = a job per chain, the layout before chains were
grouped; null = all K chains in one job) with `--cores 1`, so jobs never share the CPU
and each benchmark file times one job alone. Prints per grouping, averaged over seeds:

    pretrain_s   calibrate_s   chains_s   scoring_s   gex/pretrain   per_member/pretrain

where gex = calibrate + chains + scoring (everything GEX adds to pretraining) and
per_member = chains / (K * S): the ratios are measured within one run, so they carry
over between machines better than the seconds do.

    python benchmarks/gex_cost.py                 # both groupings, ~8 min on 2 cores
    python benchmarks/gex_cost.py --groupings all --batched   # vmapped chains
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gex_core.workflow import paths  # noqa: E402
from gex_core.workflow.config import validate_config  # noqa: E402
from gex_core.workflow.stages.evaluate import read_benchmark  # noqa: E402

GROUPINGS = {"one": 1, "all": None}


def run_grouping(workdir: Path, per_job: int | None, batched: bool) -> dict:
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["methods"] = ["gex"]
    config["ensemble"].update(chains_per_job=per_job, batched=batched)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    validate_config(config, ROOT / "schemas" / "config.schema.yaml")
    seeds = config["seeds"]
    targets = paths.per_method(config, "scores", ["gex"])
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
    command += ["--directory", str(workdir), "--cores", "1", *targets]
    subprocess.run(command, check=True, capture_output=True)

    def seconds(files: list[str]) -> float:
        return float(np.sum([read_benchmark(str(workdir / f))["s"] for f in files]))

    bench = paths.benchmark_files(config)
    ens = config["ensemble"]
    members = ens["chains"] * ens["stages"]
    row = {
        "pretrain_s": seconds(bench["pretrain"][""]) / len(seeds),
        "calibrate_s": seconds(bench["calibrate"].get("gex", [])) / len(seeds),
        "chains_s": seconds(bench["ensemble_chains"]["gex"]) / len(seeds),
        "chain_jobs": len(bench["ensemble_chains"]["gex"]) // len(seeds),
        "scoring_s": seconds(bench["influence"]["gex"]) / len(seeds),
    }
    gex = row["calibrate_s"] + row["chains_s"] + row["scoring_s"]
    row["gex_over_pretrain"] = gex / row["pretrain_s"]
    row["per_member_over_pretrain"] = row["chains_s"] / members / row["pretrain_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gex-cost-bench"))
    parser.add_argument(
        "--groupings", nargs="+", choices=sorted(GROUPINGS), default=["one", "all"]
    )
    parser.add_argument("--batched", action="store_true", help="ensemble.batched")
    args = parser.parse_args()
    rows = {}
    for name in args.groupings:
        rows[name] = run_grouping(args.workdir / name, GROUPINGS[name], args.batched)
        print(name, json.dumps({k: round(v, 3) for k, v in rows[name].items()}))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
