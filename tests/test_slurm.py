"""The workflow on a real one-node SLURM cluster, through profiles/slurm.

A private cluster (tests/slurm_cluster.py: munged, slurmctld and slurmd on this
machine) runs the detection part of the smoke config (seed 0) through
`snakemake --executor slurm` with profiles/slurm/config.yaml, adapted to the
GPU-less test node by code (`derive_test_profile`), so the real profile is what runs.
A local run of the same targets runs alongside, and every result must be bitwise the
same.

Needs root and the slurm-wlm and munge packages; skipped without them unless
GEX_REQUIRE_SLURM=1 (set by .ci/run), which turns the skip into a failure.
"""

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.slurm_cluster import (
    PARTITION,
    SlurmCluster,
    derive_test_profile,
    unavailable_reason,
)
from tests.workflow_util import (
    ROOT,
    assert_same_results,
    copy_workflow,
    result_files,
    snakemake,
)

pytestmark = pytest.mark.slurm

PROFILE = ROOT / "profiles" / "slurm" / "config.yaml"
RUN = "results/digits/noise-sym0.2/mlp/sgd-e6-b128-lr0.1-wd0.0005-wu0.1-m0.9-T2-augnone"
# The detection part of the smoke config for its seed 0: data, labels, pretraining,
# ensemble chains, gex and randproj scores and their detection, and the two summaries
# that need nothing else. The retraining experiments (relabel, prune) and seed 1 are
# left out to keep the test short (the DAG has the same stages, and gex's and
# randproj's jobs still run side by side); the experiments' profile entries are the
# influence rule's.
TARGETS = (f"{RUN}/summary/detection.tsv", f"{RUN}/summary/rank_agreement.tsv")
# Jobs of the JAX rules among them, which must have gone through SLURM (scores come
# from influence jobs, or from influence_shard jobs where shard_size is set).
JAX_JOBS = {"pretrain": 1, "ensemble_chains": 1}
SCORING_RULES = ("influence", "influence_shard")
RULE_BLOCK = re.compile(r"^(?:rule|checkpoint) (\w+):\n((?:[ \t]+.*\n|\n)*)", re.M)

# Runs Snakemake like `python -m snakemake`, with one change for speed: plugin 2.8.0
# waits 10 s longer after every status check that sees no job finish (up to 180 s),
# a hard-coded back-off that no option changes, and that cost ~140 s of a ~300 s run
# on 2 cores (every stage of the DAG waited 17-33 s for its inputs' jobs to be seen
# finished). Here each check is followed by at most STATUS_INTERVAL_S seconds.
# Submission, status queries and their parsing are the plugin's own.
STATUS_INTERVAL_S = 2
SNAKEMAKE_POLLING_FAST = f"""
import runpy, sys
from snakemake_executor_plugin_slurm import Executor

check_active_jobs = Executor.check_active_jobs

async def check_then_cap_the_wait(self, active_jobs):
    async for job in check_active_jobs(self, active_jobs):
        yield job
    self.next_seconds_between_status_checks = min(
        self.next_seconds_between_status_checks, {STATUS_INTERVAL_S}
    )

Executor.check_active_jobs = check_then_cap_the_wait
sys.argv[0] = "snakemake"
runpy.run_module("snakemake", run_name="__main__", alter_sys=True)
"""

SLURM_ARGS = (
    "--executor",
    "slurm",
    # no slurmdbd here: job states come from squeue, which lists finished jobs for
    # MinJobAge seconds
    "--slurm-status-command",
    "squeue",
    # a no-op in plugin 2.8.0 (the derived profile has no account); for later versions
    "--slurm-no-account",
    # the first status check 1 s after the first submission instead of 40 s, and
    # the plugin's wait after a check that sees a job finish
    "--slurm-init-seconds-before-status-checks",
    "1",
    # Snakemake's own first wait (the plugin sets the later ones)
    "--seconds-between-status-checks",
    "1",
    # the SLURM logs of successful jobs show that they ran under SLURM
    "--slurm-keep-successful-logs",
    # a failed job fails the test at once instead of after two resubmissions
    "--retries",
    "0",
)


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("GEX_REQUIRE_SLURM") == "1":
            pytest.fail(f"GEX_REQUIRE_SLURM=1 but no SLURM test cluster: {reason}")
        pytest.skip(reason)
    cluster = SlurmCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def rule_blocks() -> dict[str, str]:
    """{rule name: its indented body} of every rule in rules/*.smk."""
    return {
        name: body
        for path in sorted((ROOT / "rules").glob("*.smk"))
        for name, body in RULE_BLOCK.findall(path.read_text())
    }


def test_profile_sends_exactly_the_gpu_rules_to_gpus():
    """Without SLURM: set-resources names only real rules (Snakemake silently ignores
    unknown names, so a typo would go unnoticed), every rule that declares a gpu
    resource gets a GPU in another partition than the default, and no other rule
    nor the defaults ask for one."""
    profile = yaml.safe_load(PROFILE.read_text())
    defaults, per_rule = profile["default-resources"], profile["set-resources"]
    blocks = rule_blocks()
    assert set(per_rule) <= set(blocks)
    declares_gpu = {
        name for name, body in blocks.items() if re.search(r"^\s+gpu\s*=", body, re.M)
    }
    assert {rule for rule, res in per_rule.items() if res.get("gpu")} == declares_gpu
    assert "gpu" not in defaults
    assert profile["resources"]["gpu"] >= 1  # the cluster-wide cap
    for rule in declares_gpu:
        assert per_rule[rule]["gpu"] == 1
        assert per_rule[rule]["cpus_per_gpu"] >= 1
        assert per_rule[rule]["slurm_partition"] != defaults["slurm_partition"]


def run_workflow(workflow: Path, workdir: Path, *args: str, slurm: bool = False):
    """The smoke config's TARGETS for seed 0 in a fresh working directory."""
    workdir.mkdir()
    config = yaml.safe_load((ROOT / "tests" / "smoke" / "config.yaml").read_text())
    (workdir / "config.yaml").write_text(yaml.safe_dump({**config, "seeds": [0]}))
    start = time.monotonic()
    if slurm:
        command = [sys.executable, "-c", SNAKEMAKE_POLLING_FAST]
        command += ["-s", str(workflow / "Snakefile"), "--directory", str(workdir)]
        result = subprocess.run(
            [*command, *args, *TARGETS], capture_output=True, text=True, timeout=900
        )
    else:
        result = snakemake(workflow, workdir, *args, *TARGETS, timeout=900)
    print(f"{workdir.name} run: {time.monotonic() - start:.0f} s")
    return result


def jobs_of(output: str) -> tuple[dict[str, str], dict[str, bool]]:
    """From Snakemake's output: {job: rule} and {job: whether it was a local rule}."""
    rule, local = {}, {}
    header = r"^(local)?(?:rule|checkpoint) (\w+):\n(?:[ \t]+.*\n)*?[ \t]+jobid: (\d+)$"
    for is_local, name, job in re.findall(header, output, re.M):
        rule[job], local[job] = name, bool(is_local)
    return rule, local


@pytest.mark.slow
def test_slurm_run_matches_a_local_run(slurm_cluster, tmp_path, monkeypatch):
    workflow = copy_workflow(tmp_path / "workflow")
    profile = derive_test_profile(
        PROFILE, tmp_path / "profile", PARTITION, slurm_cluster.memory_mb
    )
    # sbatch, squeue and the jobs' srun find the test cluster through SLURM_CONF and
    # PATH (jobs inherit the environment: the plugin submits with --export=ALL, so
    # they also run the same Python); the local run ignores both.
    for name in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(name, slurm_cluster.env[name])
    # Both runs share the session's persistent JAX compilation cache (tests/conftest.py),
    # so JAX code is compiled once, not once per run. A cached executable is the
    # compiled one: results stay the same, as the comparison below checks.

    # Both runs at once: the SLURM run spends much of its time starting jobs and
    # waiting for status checks, and the local run uses the cores meanwhile.
    with ThreadPoolExecutor(2) as pool:
        local_run = pool.submit(
            run_workflow, workflow, tmp_path / "local", "--cores", "2"
        )
        slurm_run = pool.submit(
            run_workflow,
            workflow,
            tmp_path / "slurm",
            "--workflow-profile",
            str(profile),
            *SLURM_ARGS,
            slurm=True,
        )
        local, remote = local_run.result(), slurm_run.result()
    assert local.returncode == 0, local.stderr[-5000:]
    output = remote.stdout + remote.stderr
    assert remote.returncode == 0, output[-8000:] + "\n" + slurm_cluster.logs()

    # Every job of a non-local rule went through SLURM: Snakemake submitted it with
    # a SLURM job id, slurmd ran it (its SLURM log, kept on request, lies under the
    # rule's name), and SLURM saw it complete; local rules ran locally.
    rule, local_rule = jobs_of(output)
    submitted = {
        job: int(slurm_id)
        for job, slurm_id in re.findall(
            r"^Job (\d+) has been submitted with SLURM jobid (\d+)", output, re.M
        )
    }
    assert set(submitted) == {job for job in rule if not local_rule[job]}, output
    assert len(set(submitted.values())) == len(submitted)
    remote_rules = [rule[job] for job in submitted]
    assert {name: remote_rules.count(name) for name in JAX_JOBS} == JAX_JOBS
    assert sum(remote_rules.count(name) for name in SCORING_RULES) >= 2
    queue = slurm_cluster.run("squeue", "--states=all", "--noheader", "--format=%i|%T")
    states = dict(line.split("|") for line in queue.stdout.split())
    assert {states.get(str(i)) for i in submitted.values()} == {"COMPLETED"}, (
        queue.stdout
    )
    log_dir = tmp_path / "slurm" / ".snakemake" / "slurm_logs"
    logs = {
        int(p.stem): p.relative_to(log_dir).parts[0] for p in log_dir.rglob("*.log")
    }
    assert logs == {i: f"rule_{rule[job]}" for job, i in submitted.items()}

    # The same results, bit for bit: JAX on the CPU is deterministic, and the SLURM
    # jobs run the same Python with the same environment (JAX_PLATFORMS included)
    # and, with task/none, see every core as the local jobs do.
    local_files = result_files(tmp_path / "local")
    assert sum(name.endswith("scores.npz") for name in local_files) == 2
    # model, trajectory and the one job's chains
    assert sum(name.endswith(".msgpack") for name in local_files) == 3
    assert assert_same_results(tmp_path / "local", tmp_path / "slurm") == len(
        local_files
    )
