"""Provenance records: git state, device, and what a job leaves beside its outputs."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from gex_core.workflow.provenance import (
    git_state,
    provenance_path,
    read_provenance,
    write_provenance,
)
from tests.workflow_util import ROOT


def test_git_commit_inside_and_outside_a_checkout(tmp_path):
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode != 0:
        pytest.skip("the tests do not run from a git checkout")
    state = git_state(str(ROOT))
    assert state["commit"] == head.stdout.strip()
    assert isinstance(state["dirty"], bool)
    assert git_state(str(tmp_path)) == {"commit": "unknown", "dirty": None}


def fake_snakemake(tmp_path, outputs, rule="detect"):
    """The attributes of Snakemake's script object that begin_job and finish read."""
    return SimpleNamespace(
        rule=rule,
        input=["in.npz"],
        output=[str(tmp_path / name) for name in outputs],
        log=[str(tmp_path / "job.log")],
        params=SimpleNamespace(
            items=lambda: [("model", "mlp"), ("recipe", {"lr": 0.1})]
        ),
        wildcards=SimpleNamespace(items=lambda: [("seed", "3")]),
        config={"resume_every_s": 60.0},
        scriptdir=str(tmp_path / "workflow_scripts"),
    )


def test_a_job_replaces_stale_records_and_describes_each_output(tmp_path):
    """begin_job removes records an earlier run left beside the outputs; finish writes
    one per output with its own digest. Runs in a subprocess: begin_job redirects
    stdout and stderr to the job log."""
    (tmp_path / "a.json").write_text("old")
    write_provenance(tmp_path / "a.json", {"rule": "earlier"})
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from tests.test_provenance import fake_snakemake
from pathlib import Path
from gex_core.workflow.jobenv import begin_job
tmp = Path({str(tmp_path)!r})
smk = fake_snakemake(tmp, ["a.json", "b.tsv"])
job = begin_job(smk, uses_jax=False)
assert not (tmp / "a.json.provenance.json").exists()
(tmp / "a.json").write_text("{{}}")
(tmp / "b.tsv").write_text("x\\n1\\n")
job.finish()
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr + (tmp_path / "job.log").read_text()
    a, b = read_provenance(tmp_path / "a.json"), read_provenance(tmp_path / "b.tsv")
    assert a["rule"] == b["rule"] == "detect"
    assert (a["artifact"], b["artifact"]) == ("a.json", "b.tsv")
    assert a["sha256"] != b["sha256"] and a["bytes"] == 2
    assert a["seed"] == 3 and a["params"] == {"model": "mlp", "recipe": {"lr": 0.1}}
    assert a["inputs"] == ["in.npz"]
    # a job that never imported JAX does not pay for it to name a device
    assert a["device"]["kind"] == "none (no JAX in this job)"
    assert "job detect started" in (tmp_path / "job.log").read_text()


def test_unreadable_record_reads_as_none(tmp_path):
    assert read_provenance(tmp_path / "x.npz") is None
    provenance_path(tmp_path / "x.npz").write_text("{not json")
    assert read_provenance(tmp_path / "x.npz") is None
    provenance_path(tmp_path / "x.npz").write_text(json.dumps({"rule": "r"}))
    assert read_provenance(tmp_path / "x.npz") == {"rule": "r"}
