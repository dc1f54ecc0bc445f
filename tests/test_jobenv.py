"""Job start-up: GPU memory policy, the compilation cache and the compile-time record."""

import json
import os
import subprocess
import sys

from gex_core.workflow.jobenv import COMPILE_REPORT

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
