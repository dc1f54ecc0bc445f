"""In-progress state of long jobs, so a killed job continues where it stopped.

Snakemake deletes a job's declared outputs before it runs, so the state lives in an
undeclared folder, `resume/<the job's first output path>/` (`job_resume_folder`):
`state-<digest>.msgpack` (arrays, flax msgpack: never pickle) and `state.json` (the
job's identity, the loop's progress and the name and sha256 of its arrays file, written
after it, so a kill at any moment leaves the last complete save). The identity is the rule, wildcards and resolved params, the
code fingerprint among them: state saved by other settings or other code is refused
(deleted, with a log line), never resumed from. The job deletes the folder once its
outputs are in place.

A loop asks `due()` at each point where it could stop (an epoch, a few steps, an
Arnoldi iteration) and `save`s its whole state when it is: every `every_s` seconds
(0: at every point). Saving changes nothing the loop computes, and resuming restores
exactly the saved arrays and replays the host random streams up to the saved step, so a
resumed run's results are bitwise those of an uninterrupted one (tests/test_resume.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gex_core.workflow.io import write_json

RESUME_ROOT = "resume"
DEFAULT_EVERY_S = 60.0
Log = Callable[[str], None]


def job_resume_folder(first_output: str, root: str = RESUME_ROOT) -> Path:
    """resume/<first output path>: keyed by the same hyperparameter path as the job."""
    return Path(root) / Path(first_output)


def canonical(obj: Any) -> Any:
    """A JSON-compatible copy (sorted keys, tuples as lists, other objects as str)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


class Resume:
    """Save and restore one job's in-progress state. folder None: disabled (nothing is
    saved or restored), as in library calls outside a workflow job."""

    def __init__(
        self,
        folder: str | Path | None,
        identity: Mapping[str, Any] | None = None,
        *,
        every_s: float = DEFAULT_EVERY_S,
        log: Log = print,
    ) -> None:
        self.folder = None if folder is None else Path(folder)
        self.identity = canonical(dict(identity or {}))
        self.every_s = float(every_s)
        self.log = log
        self._last_save = self._created = time.monotonic()

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def due(self) -> bool:
        """Whether the loop should save now (every_s seconds since the last save)."""
        return self.enabled and time.monotonic() - self._last_save >= self.every_s

    def save(self, progress: Mapping[str, Any], state: Any) -> None:
        """Write `state` (a pytree of arrays) and `progress` (JSON-able: where the loop
        is, and any Python numbers it needs) atomically."""
        if self.folder is None:
            return
        from gex_core.workflow.checkpoints import save_params

        # arrays first, under a new name, then the json naming them: a kill at any
        # moment leaves the last complete pair
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / "arrays.msgpack.new"
        save_params(tmp, state)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        arrays = f"state-{digest[:16]}.msgpack"
        tmp.replace(self.folder / arrays)
        write_json(
            self.folder / "state.json",
            {
                "identity": self.identity,
                "progress": canonical(dict(progress)),
                "arrays": arrays,
                "sha256": digest,
            },
        )
        for old in self.folder.glob("state-*.msgpack"):
            if old.name != arrays:
                old.unlink()
        self._last_save = time.monotonic()
        self.log(f"resume: saved {brief(progress)} to {self.folder} ({self._clock()})")

    def restore(
        self, template_for: Callable[[dict[str, Any]], Any]
    ) -> tuple[dict[str, Any], Any] | None:
        """(progress, state) of the last save, or None when there is none or it does
        not belong to this job. template_for(progress) builds a pytree of the saved
        structure; every array's shape is checked against it."""
        if self.folder is None or not (self.folder / "state.json").exists():
            return None
        import jax
        import numpy as np

        from gex_core.workflow.checkpoints import load_params

        try:
            meta = json.loads((self.folder / "state.json").read_text())
            arrays = self.folder / str(meta.get("arrays"))
            if meta.get("identity") != self.identity:
                return self._refuse(
                    "it was saved by a job with other settings or code "
                    f"(differs in {differing_keys(meta.get('identity'), self.identity)})"
                )
            if hashlib.sha256(arrays.read_bytes()).hexdigest() != meta["sha256"]:
                return self._refuse("its arrays do not match its state.json")
            progress = meta["progress"]
            state = load_params(arrays, template_for(progress))
            # msgpack's arrays are read-only views; loops update theirs in place
            state = jax.tree.map(np.array, state)
        except (OSError, ValueError, KeyError, TypeError) as err:
            return self._refuse(f"it cannot be read ({err})")
        self.log(
            f"resume: resumed from {brief(progress)} saved in {self.folder} "
            f"({self._clock()})"
        )
        self._last_save = time.monotonic()
        return progress, state

    def _clock(self) -> str:
        """Seconds since the store was made (at the job's start), for the log."""
        return f"t+{time.monotonic() - self._created:.2f} s"

    def _refuse(self, why: str) -> None:
        self.log(f"resume: not resuming from {self.folder}: {why}; starting afresh")
        self.clear()
        return None

    def clear(self) -> None:
        """Delete the saved state (the job's outputs are in place, or it is stale)."""
        if self.folder is None:
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        if RESUME_ROOT not in self.folder.parts:
            return
        for parent in self.folder.parents:  # empty folders up to resume/ go too
            if not parent.is_dir() or any(parent.iterdir()):
                break
            parent.rmdir()
            if parent.name == RESUME_ROOT:
                break


def brief(progress: Mapping[str, Any]) -> str:
    """The loop position of a progress record (its numbers), for log lines."""
    return ", ".join(
        f"{k} {v}" for k, v in progress.items() if isinstance(v, int | float)
    )


def differing_keys(saved: Any, current: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two identity dicts (for the log)."""
    if not isinstance(saved, Mapping):
        return ["<all>"]
    found = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            found += [f"{key}.{k}" for k in differing_keys(a, b)]
        elif a != b:
            found.append(key)
    return found


NO_RESUME = Resume(None)
