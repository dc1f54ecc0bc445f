"""Job start-up: GPU memory policy, the compilation cache and the compile-time record."""

import json
import os
import subprocess
import sys

from gex_core.workflow.jobenv import COMPILE_REPORT
from gex_core.workflow.provenance import read_provenance
from tests.workflow_util import ROOT

JOB = """
from gex_core.workflow.jobenv import start_job
start_job(None, rule="demo")
import os, jax, jax.numpy as jnp
print("env", os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"],
      os.environ.get("XLA_CLIENT_MEM_FRACTION"),
      os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
      os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()
"""


def run_job(tmp_path, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XLA_", "JAX_COMPILATION", "JAX_ENABLE_COMPILATION"))
    }
    result = subprocess.run(
        [sys.executable, "-c", JOB],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    settings = next(line for line in lines if line.startswith("env ")).split()[1:]
    report = next(line for line in lines if line.startswith(COMPILE_REPORT))
    return settings, json.loads(report.split(" ", 1)[1])


def test_jobs_allocate_gpu_memory_on_demand_and_cache_compiles(tmp_path):
    settings, report = run_job(tmp_path)
    # preallocation off; neither memory fraction set (jaxlib refuses both together)
    assert settings == ["false", "None", "None", str(tmp_path / ".jax_cache")]
    assert report["rule"] == "demo" and report["cache_misses"] >= 1
    assert 0 < report["compile_s"] <= report["job_s"]
    assert any((tmp_path / ".jax_cache").iterdir())
    # the second job of the same function reads the cache instead of compiling
    _, again = run_job(tmp_path)
    assert again["cache_hits"] >= 1 and again["cache_misses"] == 0


def test_a_users_settings_win(tmp_path):
    settings, report = run_job(
        tmp_path,
        XLA_PYTHON_CLIENT_PREALLOCATE="true",
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "elsewhere"),
        JAX_ENABLE_COMPILATION_CACHE="false",
    )
    assert settings[0] == "true" and settings[3] == str(tmp_path / "elsewhere")
    # cache off: nothing written, every compile is a real one
    assert not (tmp_path / "elsewhere").exists()
    assert report["cache_hits"] == 0 and report["compile_s"] > 0


def test_a_finished_job_ends_at_once_with_its_log_and_outputs_complete(tmp_path):
    """finish() ends the process (`end_process`): exit status 0, nothing after it runs,
    yet the atexit handlers ran (the compile report is the log's last line), the log
    holds everything printed, the outputs' records and the compiled program are on
    disk."""
    script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from tests.test_provenance import fake_snakemake
from gex_core.workflow.jobenv import begin_job
tmp = Path({str(tmp_path)!r})
job = begin_job(fake_snakemake(tmp, ["out.txt"], rule="demo"))
import jax, jax.numpy as jnp
print("sum", float(jax.jit(lambda x: jnp.sin(x).sum())(jnp.ones(3))))
(tmp / "out.txt").write_text("done")
job.finish()
(tmp / "after_finish").write_text("ran")
"""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPIL")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**clean, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (tmp_path / "job.log").read_text().splitlines()
    assert done.returncode == 0, done.stderr + "\n".join(log)
    assert not (tmp_path / "after_finish").exists()
    assert any(line.startswith("sum 2.524") for line in log)  # 3 sin(1) = 2.5244
    report = json.loads(log[-1].removeprefix(COMPILE_REPORT + " "))
    assert report["rule"] == "demo" and report["cache_misses"] >= 1
    assert read_provenance(tmp_path / "out.txt")["rule"] == "demo"
    assert any((tmp_path / "cache").iterdir())
