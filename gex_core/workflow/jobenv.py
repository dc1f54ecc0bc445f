"""Process setup for workflow jobs. Import and call before anything imports JAX."""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_COMPILATION_CACHE = ".jax_cache"
# JAX's monitoring events for the three phases of turning a function into an executable
# (tracing, lowering to MLIR, XLA compile or persistent-cache read)
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
CACHE_EVENTS = {
    "/jax/compilation_cache/cache_hits": "cache_hits",
    "/jax/compilation_cache/cache_misses": "cache_misses",
}
COMPILE_REPORT = "jax-compile"


def start_job(log_path: str | None, rule: str | None = None) -> None:
    """Send stdout/stderr to the rule's log file and set JAX up for many short jobs.

    - XLA_PYTHON_CLIENT_PREALLOCATE=false stops each job from grabbing 75% of GPU memory
      at start-up, so concurrent jobs can share a device. Only this variable is set
      (never both memory-fraction variables, which jaxlib rejects together).
    - The persistent compilation cache (JAX_COMPILATION_CACHE_DIR, default .jax_cache/
      in the working directory) lets every job after the first reuse compiled steps:
      it halves an ensemble chain job on a CPU. Set the variable yourself to move it;
      the cache is trusted code, so never share it with untrusted users.
      JAX_ENABLE_COMPILATION_CACHE=false turns it off.
    - With `rule` (JAX jobs), the job's compile time is recorded and printed at exit as
      one line "jax-compile {json}" (`track_compile_time`).
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
    if rule:
        track_compile_time(rule)


class Job:
    """A running workflow job (`begin_job`): its in-progress store and its finish."""

    def __init__(self, smk, start: float) -> None:
        from gex_core.workflow.resume import DEFAULT_EVERY_S, Resume, job_resume_folder

        self.smk = smk
        self.start = start
        every_s = smk.config.get("resume_every_s", DEFAULT_EVERY_S)
        self.resume = Resume(
            None if every_s is None else job_resume_folder(smk.output[0]),
            {
                "rule": smk.rule,
                "wildcards": dict(smk.wildcards.items()),
                "params": dict(smk.params.items()),
            },
            every_s=0.0 if every_s is None else float(every_s),
        )

    def finish(self) -> None:
        """Call after every output is written: write each one's provenance record,
        delete the job's in-progress state and end the process (`end_process`):
        nothing may follow this call in a script."""
        from gex_core.workflow.provenance import job_provenance, write_provenance

        record = job_provenance(
            rule=self.smk.rule,
            wildcards=dict(self.smk.wildcards.items()),
            params=dict(self.smk.params.items()),
            inputs=list(self.smk.input),
            workflow_dir=str(Path(self.smk.scriptdir).parent),
            start=self.start,
            end=time.time(),
        )
        for output in self.smk.output:
            write_provenance(output, record)
        self.resume.clear()
        end_process()


def begin_job(smk, uses_jax: bool = True) -> Job:
    """Set a workflow job up from its Snakemake object: `start_job` (log, JAX
    settings, compile-time report for JAX jobs), remove provenance records left
    beside its outputs by an earlier run (Snakemake removed the outputs themselves),
    and check every input against the digest its provenance records (`verify`).
    Scripts call `job.finish()` last, once their outputs are written: it ends the
    process."""
    from gex_core.workflow.provenance import iso_utc, provenance_path

    start = time.time()
    start_job(smk.log[0], rule=smk.rule if uses_jax else None)
    print(f"job {smk.rule} started {iso_utc(start)}", flush=True)
    for output in smk.output:
        provenance_path(output).unlink(missing_ok=True)
    from gex_core.workflow.verify import verify_inputs

    verify_inputs(smk.input)
    return Job(smk, start)


def end_process() -> None:
    """End a finished job's process now, with exit status 0: run the atexit handlers
    (the compile report, logging's flush), flush the streams, and leave by os._exit.

    That skips the interpreter's teardown, which frees XLA's client and about a
    thousand modules: 0.25-0.45 s a job on a CPU (the default run's jobs added up to
    0.81x their time without it; docs/results.md), for nothing a job's outputs need (every file it wrote is closed by then).
    Where the interpreter offers no way to run the handlers first, the process ends
    normally, later."""
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None:
        return
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None and not stream.closed:
            stream.flush()
    os._exit(0)


def track_compile_time(rule: str) -> dict[str, float]:
    """Sum JAX's tracing, lowering and compile seconds and persistent-cache hits and
    misses from now on, and print them at exit with the job's wall seconds:
    `jax-compile {"rule", "compile_s", "job_s", "cache_hits", "cache_misses"}`
    (benchmarks/compile_time.py tabulates them per rule). Returns the live totals."""
    import jax.monitoring

    start = time.perf_counter()
    totals = {"compile_s": 0.0, "cache_hits": 0, "cache_misses": 0}

    def on_duration(event: str, duration: float, **_) -> None:
        if event in COMPILE_EVENTS:
            totals["compile_s"] += duration

    def on_event(event: str, **_) -> None:
        if event in CACHE_EVENTS:
            totals[CACHE_EVENTS[event]] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)

    def report() -> None:
        record = {"rule": rule, **totals, "job_s": time.perf_counter() - start}
        print(f"{COMPILE_REPORT} {json.dumps(record, sort_keys=True)}", flush=True)

    atexit.register(report)
    return totals


def local_gpu_count() -> int:
    """NVIDIA GPUs visible on this host, from device files (no JAX import, no driver)."""
    import glob

    return len(glob.glob("/dev/nvidia[0-9]*"))
