"""Compile time versus run time per rule, from the "jax-compile" lines JAX jobs log.

Every JAX job (pretrain, ensemble_chains, influence, influence_shard, relabel,
relabel_baseline, prune) prints at exit the seconds it spent tracing, lowering and
compiling (or reading the persistent compilation cache) and its wall seconds
(`gex_core.workflow.jobenv.track_compile_time`). This script sums them per rule for one or more
log folders, e.g. a run without the cache and the same run with it:

    JAX_ENABLE_COMPILATION_CACHE=false snakemake --cores all -d /tmp/cold
    snakemake --cores all -d /tmp/warm   # after one run filled .jax_cache
    python benchmarks/compile_time.py cold=/tmp/cold/logs warm=/tmp/warm/logs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from gex_core.workflow.jobenv import COMPILE_REPORT


def compile_records(log_dir: str | Path) -> list[dict]:
    """The jax-compile record of every job log under log_dir."""
    records = []
    for path in sorted(Path(log_dir).rglob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(f"{COMPILE_REPORT} "):
                records.append(json.loads(line.split(" ", 1)[1]))
    return records


def per_rule(records: list[dict]) -> pd.DataFrame:
    """jobs, compile and job seconds (sums), compile share, cache hits and misses."""
    frame = pd.DataFrame(records)
    table = frame.groupby("rule").agg(
        jobs=("rule", "size"),
        compile_s=("compile_s", "sum"),
        job_s=("job_s", "sum"),
        cache_hits=("cache_hits", "sum"),
        cache_misses=("cache_misses", "sum"),
    )
    table["compile_share"] = table["compile_s"] / table["job_s"]
    return table.reset_index()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="LABEL=LOG_DIR (or LOG_DIR)")
    parser.add_argument("--out", help="write the combined table as TSV here")
    args = parser.parse_args()
    tables = []
    for run in args.runs:
        label, _, folder = run.rpartition("=")
        records = compile_records(folder)
        if not records:
            raise SystemExit(f"{folder}: no '{COMPILE_REPORT}' lines in any *.log")
        table = per_rule(records)
        table.insert(0, "run", label or folder)
        tables.append(table)
    combined = pd.concat(tables, ignore_index=True)
    pd.set_option("display.width", 160)
    print(combined.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if args.out:
        combined.to_csv(args.out, sep="\t", index=False, float_format="%.4g")


if __name__ == "__main__":
    main()
