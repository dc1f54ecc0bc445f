"""Process setup for workflow jobs. Import and call before anything imports JAX."""

from __future__ import annotations

import os
import sys

DEFAULT_COMPILATION_CACHE = ".jax_cache"


def start_job(log_path: str | None) -> None:
    """Send stdout/stderr to the rule's log file and set JAX up for many short jobs.

    - XLA_PYTHON_CLIENT_PREALLOCATE=false stops each job from grabbing 75% of GPU memory
      at start-up, so concurrent jobs can share a device. Only this variable is set
      (never both memory-fraction variables, which jaxlib rejects together).
    - The persistent compilation cache (JAX_COMPILATION_CACHE_DIR, default .jax_cache/
      in the working directory) lets every job after the first reuse compiled steps:
      it halves an ensemble chain job on a CPU. Set the variable yourself to move it;
      the cache is trusted code, so never share it with untrusted users.
    """
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault(
        "JAX_COMPILATION_CACHE_DIR", os.path.abspath(DEFAULT_COMPILATION_CACHE)
    )
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    if log_path:
        stream = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives with the job
        sys.stdout = sys.stderr = stream


def local_gpu_count() -> int:
    """NVIDIA GPUs visible on this host, from device files (no JAX import, no driver)."""
    import glob

    return len(glob.glob("/dev/nvidia[0-9]*"))


def run_inputs(smk, **extra):
    """MethodInputs of the run a job belongs to, from the Snakemake object of a rule
    with inputs data and labels and params model, recipe, pretrain_dir and
    eval_batch_size (wildcard seed); extra: further MethodInputs arguments."""
    from gex_core.influence.inputs import MethodInputs

    return MethodInputs(
        data_path=smk.input.data,
        labels_path=smk.input.labels,
        pretrain_dir=smk.params.pretrain_dir,
        model_name=smk.params.model,
        seed=int(smk.wildcards.seed),
        eval_batch_size=smk.params.eval_batch_size,
        recipe=smk.params.recipe,
        **extra,
    )
