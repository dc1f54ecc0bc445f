"""SIGKILL Snakemake and its running ensemble chain job part-way; the rerun resumes
the chain from its last saved state and ends with bitwise the uninterrupted results."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from gex_core.workflow import paths
from tests.workflow_util import ROOT, assert_same_results, copy_workflow, snakemake

RUN = "results/digits/noise-sym0.2/mlp/sgd-e6-b128-lr0.1-wd0.0005-wu0.1-m0.9-T2-augnone/seed0"
ENSEMBLE = "ft-lr0.05-s1500-b128-S2"
TARGET = f"{RUN}/ensemble/{ENSEMBLE}/chains0-0.npz"
LOG = paths.log_file(TARGET)
SAVED = re.compile(r"resume: saved step (\d+) to ")
STEPS = 1500  # per stage


def make_workdir(path):
    path.mkdir()
    config = yaml.safe_load((ROOT / "tests" / "smoke" / "config.yaml").read_text())
    config["seeds"] = [0]
    # long enough to be caught mid-stage; saves every 10 steps
    config["ensemble"].update(chains=1, stages=2, ft_steps=STEPS)
    config["resume_every_s"] = 0.0
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def start(workflow, workdir):
    """Snakemake for TARGET in its own process group (its jobs inherit it)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(workflow / "Snakefile"),
            "--directory",
            str(workdir),
            "--cores",
            "2",
            TARGET,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_during_the_second_stage(process, log):
    """SIGKILL the whole process group once the chain saved inside stage 1; returns
    the step of the last save the log shows."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        saves = SAVED.findall(log.read_text()) if log.exists() else []
        if saves and int(saves[-1]) >= STEPS + 100:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            time.sleep(0.5)  # the group's jobs die with it
            return int(SAVED.findall(log.read_text())[-1])
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.01)
    raise AssertionError("the chain never reached its second stage")


@pytest.mark.slow
def test_killed_chain_resumes_and_ends_bitwise_as_an_uninterrupted_run(tmp_path):
    workflow = copy_workflow(tmp_path / "workflow")
    reference = make_workdir(tmp_path / "reference")
    result = snakemake(workflow, reference, "--cores", "2", TARGET)
    assert result.returncode == 0, result.stderr[-3000:]

    killed = make_workdir(tmp_path / "killed")
    log = killed / LOG
    step = kill_during_the_second_stage(start(workflow, killed), log)
    assert STEPS + 100 <= step < 2 * STEPS
    state = killed / "resume" / TARGET / "state.json"
    assert state.exists() and not (killed / TARGET).exists()

    # Snakemake was killed too: its lock stays until --unlock. The killed job's
    # outputs were never written (they are written whole at the end), so nothing is
    # incomplete and --rerun-incomplete is not needed.
    assert snakemake(workflow, killed, "--unlock").returncode == 0
    result = snakemake(workflow, killed, "--cores", "2", TARGET)
    assert result.returncode == 0, result.stderr[-3000:]
    # from the last save the log shows, or a later one completed before the kill
    resumed = re.search(r"resume: resumed from step (\d+)", log.read_text())
    assert resumed is not None
    assert step <= int(resumed.group(1)) < 2 * STEPS
    # pretraining had finished before the kill: only the chain ran again
    assert "rule pretrain:" not in result.stdout + result.stderr
    assert assert_same_results(reference, killed) == 24  # 12 artifacts + records
    assert not (killed / "resume").exists()
