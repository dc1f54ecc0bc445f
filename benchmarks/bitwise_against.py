"""Are this tree's results bitwise those of another commit, for one config?

    python benchmarks/bitwise_against.py REV [--config tests/smoke/config.yaml]

Checks out REV into a temporary git worktree, runs `snakemake` with the config there
and here (each in an empty working directory, --cores 2), and compares every result
file but the provenance records: arrays, checkpoints, tables and figures byte for byte,
measured seconds aside (`tests.workflow_util.assert_same_result`). Prints the count of
files compared and every one that differs; exits 1 if any does. For refactors that
must not change a number.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.workflow_util import assert_same_result, result_files  # noqa: E402


def run(snakefile: Path, config: Path, workdir: Path) -> None:
    workdir.mkdir(parents=True)
    shutil.copy(config, workdir / "config.yaml")
    command = [sys.executable, "-m", "snakemake", "-s", str(snakefile)]
    subprocess.run(
        [*command, "--directory", str(workdir), "--cores", "2"],
        check=True,
        capture_output=True,
    )


def compare(first: Path, second: Path) -> list[str]:
    """Result files missing on one side or differing (provenance aside)."""
    a, b = (
        {k: v for k, v in result_files(d).items() if not k.endswith(".provenance.json")}
        for d in (first, second)
    )
    problems = [f"only in one run: {name}" for name in sorted(set(a) ^ set(b))]
    for name in sorted(set(a) & set(b)):
        try:
            assert_same_result(name, a[name], b[name])
        except AssertionError:
            problems.append(f"differs: {name}")
    print(f"compared {len(set(a) & set(b))} files")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev")
    parser.add_argument("--config", default=str(ROOT / "tests/smoke/config.yaml"))
    args = parser.parse_args()
    config = Path(args.config).resolve()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        old = scratch / "old-tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.rev],
            check=True,
            capture_output=True,
        )
        try:
            # the old tree's own gex_core must run its jobs, not this one's
            run(old / "Snakefile", config, scratch / "old")
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                check=True,
                capture_output=True,
            )
        run(ROOT / "Snakefile", config, scratch / "new")
        problems = compare(scratch / "old", scratch / "new")
    print("\n".join(problems) or f"bitwise equal to {args.rev}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
