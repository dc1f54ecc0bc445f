"""Provenance: what made an artifact, written beside it as `<artifact>.provenance.json`.

Each record names the artifact (with its sha256 and size), the rule, wildcards, resolved
params (the code fingerprint among them), seed, input files, the gex_core version and
the git commit of the workflow ("unknown" outside a checkout, with whether tracked
sources had uncommitted edits), the Python, NumPy, JAX, jaxlib, flax and optax
versions, the device kind (for jobs that used JAX), XLA_FLAGS, the host, and the job's
start and end (UTC, ISO 8601) and wall seconds. Provenance is a measurement of the
run, not a result: it is the one file kind that differs between identical runs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gex_core

SUFFIX = ".provenance.json"
PACKAGES = ("numpy", "jax", "jaxlib", "flax", "optax")
# the workflow's tracked sources: an edit to any of them is in no commit
SOURCES = ("Snakefile", "rules", "workflow_scripts", "gex_core", "schemas")


def provenance_path(artifact: str | os.PathLike) -> Path:
    return Path(f"{artifact}{SUFFIX}")


@functools.cache
def git_state(workflow_dir: str) -> dict[str, Any]:
    """{"commit": HEAD's 40-hex id or "unknown", "dirty": whether tracked workflow
    sources differ from it (None when unknown)}."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", workflow_dir, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changes = git("status", "--porcelain", "--untracked-files=no", "--", *SOURCES)
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": bool(changes)}


@functools.cache
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_description() -> dict[str, Any]:
    """The JAX devices the job used; JAX is not imported by jobs that never did."""
    if "jax" not in sys.modules:
        return {"kind": "none (no JAX in this job)", "platform": None, "count": 0}
    import jax

    devices = jax.devices()
    return {
        "kind": devices[0].device_kind,
        "platform": devices[0].platform,
        "count": len(devices),
    }


def file_digest(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def job_provenance(
    *,
    rule: str,
    wildcards: Mapping[str, str],
    params: Mapping[str, Any],
    inputs: Sequence[str],
    workflow_dir: str,
    start: float,
    end: float,
) -> dict[str, Any]:
    """The record shared by every artifact of one job; start, end: time.time()."""
    seed = wildcards.get("seed")
    return {
        "rule": rule,
        "wildcards": dict(wildcards),
        "params": json.loads(json.dumps(dict(params), default=str)),
        "seed": None if seed is None else int(seed),
        "inputs": [str(path) for path in inputs],
        "gex_core_version": gex_core.__version__,
        "git": git_state(str(workflow_dir)),
        "versions": package_versions(),
        "device": device_description(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "host": socket.gethostname(),
        "start": iso_utc(start),
        "end": iso_utc(end),
        "wall_s": round(end - start, 3),
    }


def write_provenance(artifact: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Write the job's record, with this artifact's name, size and sha256, beside it."""
    from gex_core.workflow.io import write_json

    path = Path(artifact)
    write_json(
        provenance_path(path),
        {
            "artifact": path.name,
            "sha256": file_digest(path),
            "bytes": path.stat().st_size,
            **record,
        },
    )


def read_provenance(artifact: str | os.PathLike) -> dict[str, Any] | None:
    """The record beside an artifact, or None when it has none or it is unreadable."""
    try:
        return json.loads(provenance_path(artifact).read_text())
    except (OSError, ValueError):
        return None
