"""Time lost to a SIGKILL in the middle of an ensemble chain, from the job logs.

Runs the default config (one seed) in a scratch folder: pretraining, then one chain
job uninterrupted (its job seconds T_ref, from the log's `jax-compile` line); then the
same chain again, killing Snakemake and the job with SIGKILL once the chain has done
`--kill-at` of its steps (T_killed: from the log's start line to the kill), `snakemake
--unlock`, and a rerun that resumes (T_resumed). Prints

    overhead = T_killed + T_resumed - T_ref

and its parts: work redone since the last save, and the resumed job's start-up (its
time until the "resumed from" line: imports, data, restoring the state). The results of
the resumed run are checked bitwise against the uninterrupted ones.

    python benchmarks/resume_overhead.py --stages 4 --ft-steps 400 --every 10
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAVED = re.compile(r"resume: saved step (\d+) .*\(t\+([\d.]+) s\)")
RESUMED = re.compile(r"resume: resumed from step (\d+) .*\(t\+([\d.]+) s\)")
STARTED = re.compile(r"job ensemble_chains started (\S+)")
JOB_S = re.compile(r'jax-compile .*"job_s": ([\d.]+)')


def snakemake(workdir: Path, *args: str, background: bool = False):
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
    command += ["--directory", str(workdir), *args]
    if background:
        return subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    subprocess.run(command, check=True, capture_output=True)


def chain_paths(config: dict) -> tuple[str, Path]:
    """The chain 0 target of seed 0 and its log (relative to the workdir)."""
    from gex_core.workflow import paths
    from gex_core.workflow.config import validate_config

    validate_config(config, ROOT / "schemas" / "config.schema.yaml")
    target = paths.chain_files(config, 0)[0]
    return target, Path(paths.log_file(target))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gex-resume-bench"))
    parser.add_argument("--stages", type=int, default=4)
    parser.add_argument("--ft-steps", type=int, default=400)
    parser.add_argument("--every", type=float, default=10.0, help="resume_every_s")
    parser.add_argument("--kill-at", type=float, default=0.5)
    args = parser.parse_args()

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["seeds"] = [0]
    config["ensemble"].update(chains=1, stages=args.stages, ft_steps=args.ft_steps)
    config["resume_every_s"] = args.every
    (args.workdir / "config.yaml").write_text(yaml.safe_dump(config))
    target, log = chain_paths(dict(config))
    log = args.workdir / log
    total_steps = args.stages * args.ft_steps

    snakemake(args.workdir, "--cores", "2", target)  # pretraining + reference chain
    t_ref = float(JOB_S.findall(log.read_text())[-1])
    reference = {
        p: (args.workdir / p).read_bytes()
        for p in (target, target.replace(".npz", ".msgpack"))
    }
    for path in reference:
        (args.workdir / path).unlink()

    log.unlink()  # the reference run's
    process = snakemake(args.workdir, "--cores", "2", target, background=True)
    while True:
        text = log.read_text() if log.exists() else ""
        saves = SAVED.findall(text) if STARTED.search(text) else []
        done = int(saves[-1][0]) if saves else 0
        if done >= args.kill_at * total_steps:
            break
        if process.poll() is not None:
            raise SystemExit("the chain finished before the kill: lower --every")
        time.sleep(0.05)
    # keep waiting past the save so the kill lands between saves, as a real one would
    time.sleep(args.every / 2)
    os.killpg(process.pid, signal.SIGKILL)
    killed_at = time.time()
    process.wait()
    killed_log = log.read_text()
    started = datetime.fromisoformat(STARTED.search(killed_log).group(1)).timestamp()
    t_killed = killed_at - started
    last_save = SAVED.findall(killed_log)[-1]

    snakemake(args.workdir, "--unlock")
    snakemake(args.workdir, "--cores", "2", target)
    resumed_log = log.read_text()
    t_resumed = float(JOB_S.findall(resumed_log)[-1])
    resumed = RESUMED.search(resumed_log)
    for path, data in reference.items():
        new = (args.workdir / path).read_bytes()
        if path.endswith(".npz"):
            with np.load(args.workdir / path) as a, np.load(io.BytesIO(data)) as b:
                same = all(
                    a[k].tobytes() == b[k].tobytes()
                    for k in a.files
                    if not k.endswith("_seconds")
                )
        else:
            same = new == data
        if not same:
            raise SystemExit(f"{path}: the resumed result differs from the reference")

    report = {
        "chain_steps": total_steps,
        "resume_every_s": args.every,
        "T_ref_s": round(t_ref, 2),
        "T_killed_s": round(t_killed, 2),
        "killed_after_save_at_step": int(last_save[0]),
        "redone_since_last_save_s": round(t_killed - float(last_save[1]), 2),
        "resumed_from_step": int(resumed.group(1)),
        "resumed_startup_s": float(resumed.group(2)),
        "T_resumed_s": round(t_resumed, 2),
        "overhead_s": round(t_killed + t_resumed - t_ref, 2),
        "overhead_ratio": round((t_killed + t_resumed) / t_ref, 3),
        "results_bitwise_equal": True,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
