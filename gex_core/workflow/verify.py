"""Verified reads: a cached artifact is used only if it is the file its job wrote.

Every job's outputs carry a provenance record with their size and sha256
(`provenance.write_provenance`). A job checks each input that has one before it reads
anything (`verify_inputs`, from `jobenv.begin_job`): flipped bytes, a truncated copy
or a hand edit that kept the modification time is a named error, never a result
computed from the damaged file. From the shell,

    python -m gex_core.workflow.verify [results]

checks every artifact under a folder and prints the command that rebuilds the damaged
ones and everything made from them: `snakemake --cores all --forcerun <files>`
(Snakemake does not remake a missing intermediate file whose results exist, so
deleting it alone would not do).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

from gex_core.workflow.provenance import SUFFIX, file_digest, read_provenance


class CorruptArtifactError(RuntimeError):
    """A cached artifact differs from what its job wrote."""


def artifact_problem(path: str | os.PathLike) -> str | None:
    """Why the artifact at path is not the file its provenance records (size, then
    sha256), or None when it matches or has no record to check against."""
    record = read_provenance(path)
    if record is None or "sha256" not in record:
        return None
    size = Path(path).stat().st_size
    if record.get("bytes") is not None and size != record["bytes"]:
        return f"it has {size} bytes, its job wrote {record['bytes']} (truncated?)"
    if file_digest(path) != record["sha256"]:
        return "its sha256 differs from the one its job recorded (corrupted or edited)"
    return None


def rebuild_command(paths: Iterable[str | os.PathLike]) -> str:
    """The command that remakes the files and everything made from them."""
    return "snakemake --cores all --forcerun " + " ".join(str(p) for p in paths)


def verify_inputs(inputs: Iterable[str | os.PathLike]) -> None:
    """Raise CorruptArtifactError naming every input file whose content is not what
    its job wrote, and how to rebuild it."""
    damaged = [
        (path, problem)
        for path in inputs
        if Path(path).is_file() and (problem := artifact_problem(path))
    ]
    if damaged:
        raise CorruptArtifactError(
            "damaged cached artifact(s), not used:\n  "
            + "\n  ".join(f"{path}: {problem}" for path, problem in damaged)
            + "\nRebuild them and what was made from them: "
            + rebuild_command(path for path, _ in damaged)
        )


def damaged_artifacts(root: str | os.PathLike) -> list[tuple[Path, str]]:
    """(artifact, why) for every artifact under root whose record does not match."""
    found = []
    for record in sorted(Path(root).rglob(f"*{SUFFIX}")):
        artifact = Path(str(record)[: -len(SUFFIX)])
        if artifact.is_file() and (problem := artifact_problem(artifact)):
            found.append((artifact, problem))
    return found


def main(argv: list[str] | None = None) -> int:
    """Check every artifact under the folder; exit status 1 when any is damaged."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="results")
    args = parser.parse_args(argv)
    damaged = damaged_artifacts(args.root)
    for artifact, problem in damaged:
        print(f"{artifact}: {problem}")
    checked = len(list(Path(args.root).rglob(f"*{SUFFIX}")))
    print(f"{checked} artifact records checked, {len(damaged)} damaged")
    if damaged:
        print("Rebuild: " + rebuild_command(artifact for artifact, _ in damaged))
    return 1 if damaged else 0


if __name__ == "__main__":
    raise SystemExit(main())
