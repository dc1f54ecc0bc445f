"""Run real Snakemake on a copy of the workflow and read its dry-run plans."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = (
    "Snakefile",
    "rules",
    "workflow_scripts",
    "gex_core",
    "schemas",
    "profiles",
    "envs",
    "report",
)


def copy_workflow(target: Path) -> Path:
    """Copy the workflow sources (not results) so a test may edit them."""
    target.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(
                source, target / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, target / part)
    return target


def snakemake(workflow: Path, workdir: Path, *args: str, timeout: int = 1200):
    """Run snakemake with the workflow's Snakefile in workdir; returns CompletedProcess."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(workflow / "Snakefile"),
            "--directory",
            str(workdir),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def planned_jobs(result) -> dict[str, int]:
    """{rule: count} from a dry run's job stats table (empty when nothing to do)."""
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    counts = {}
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts
