"""Process setup for workflow jobs. Import and call before anything imports JAX."""

from __future__ import annotations

import os
import sys


def start_job(log_path: str | None) -> None:
    """Send stdout/stderr to the rule's log file and make JAX share a GPU politely.

    XLA_PYTHON_CLIENT_PREALLOCATE=false stops each job from grabbing 75% of GPU memory
    at start-up, so concurrent jobs can share a device. Only this variable is set (never
    both memory-fraction variables, which jaxlib rejects together).
    """
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if log_path:
        stream = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives with the job
        sys.stdout = sys.stderr = stream
