"""Run real Snakemake on a copy of the workflow and read its dry-run plans."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

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


# Wall-clock measurements, the one thing identical runs do not reproduce: timing files,
# the cost tables made from them, `*_seconds` arrays, and in provenance records the
# times and the digests of measurement files.
MEASUREMENT_FILES = ("timing.json", "cost.tsv", "rule_cost.tsv")
PROVENANCE_TIMES = ("start", "end", "wall_s")


def result_files(workdir: Path) -> dict[str, Path]:
    """{path relative to workdir: path} of every file under workdir/results."""
    return {
        str(path.relative_to(workdir)): path
        for path in (workdir / "results").rglob("*")
        if path.is_file()
    }


def holds_seconds(path: Path) -> bool:
    """Whether an .npz holds measured `*_seconds` arrays beside its results."""
    if path.suffix != ".npz":
        return False
    with np.load(path) as arrays:
        return any(key.endswith("_seconds") for key in arrays.files)


def assert_same_result(name: str, first: Path, second: Path) -> None:
    """Bitwise equality of one result file of two runs, measurements aside: for
    those only the structure (keys, columns) must match."""
    base = Path(name).name
    if name.endswith(".provenance.json"):
        a, b = json.loads(first.read_text()), json.loads(second.read_text())
        assert a.keys() == b.keys(), name
        skip = PROVENANCE_TIMES
        artifact = first.with_name(base.removesuffix(".provenance.json"))
        if artifact.name in MEASUREMENT_FILES or holds_seconds(artifact):
            skip += ("sha256", "bytes")
        for key in a.keys() - set(skip):
            assert a[key] == b[key], (name, key)
    elif base in MEASUREMENT_FILES:
        if base.endswith(".json"):
            a, b = json.loads(first.read_text()), json.loads(second.read_text())
            assert a.keys() == b.keys(), name
        else:
            assert (
                first.read_text().splitlines()[0] == second.read_text().splitlines()[0]
            )
    elif name.endswith(".npz"):
        with np.load(first) as a, np.load(second) as b:
            assert sorted(a.files) == sorted(b.files), name
            for key in a.files:
                if key.endswith("_seconds"):
                    continue
                x, y = a[key], b[key]
                assert (x.dtype, x.shape) == (y.dtype, y.shape), (name, key)
                assert x.tobytes() == y.tobytes(), (name, key)
    else:  # checkpoints, json results, tsv tables, png figures
        assert first.read_bytes() == second.read_bytes(), name


def assert_same_results(first: Path, second: Path) -> int:
    """Two workdirs hold the same result files, equal as `assert_same_result` says;
    returns how many were compared."""
    a, b = result_files(first), result_files(second)
    assert sorted(a) == sorted(b)
    for name, path in a.items():
        assert_same_result(name, path, b[name])
    return len(a)


def pretraining_files(folder: Path) -> dict[str, str]:
    """MethodInputs' pretraining files of a run's pretrain/ folder, by name."""
    names = {
        "model": "model.msgpack",
        "trajectory": "trajectory.msgpack",
        "record": "record.npz",
        "losses": "losses.npz",
        "history": "history.tsv",
    }
    return {name: str(folder / file) for name, file in names.items()}
