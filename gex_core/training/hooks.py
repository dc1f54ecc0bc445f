"""What a long loop may be handed from outside: a checkpointer and a log.

The library never opens files for its own progress: a loop that can be resumed asks the
`Checkpointer` it was given. The workflow passes one that keeps the state on disk
(`gex_core.workflow.resume.Resume`); library calls get `NO_CHECKPOINTS`, which never
saves and never restores.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol

Log = Callable[[str], None]


def log_to_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def no_log(msg: str) -> None:
    """A log that drops every line."""


class Checkpointer(Protocol):
    """Saves and restores one loop's whole state.

    due(): whether the loop should save now. save(progress, state): progress is
    JSON-able (where the loop is), state a pytree of arrays. restore(template_for):
    (progress, state) of the last save, or None; template_for(progress) builds a pytree
    of the saved structure to read the arrays into.
    """

    def due(self) -> bool: ...

    def save(self, progress: Mapping[str, Any], state: Any) -> None: ...

    def restore(
        self, template_for: Callable[[dict[str, Any]], Any]
    ) -> tuple[dict[str, Any], Any] | None: ...


class _NoCheckpoints:
    """Never due, saves nothing, restores nothing."""

    def due(self) -> bool:
        return False

    def save(self, progress: Mapping[str, Any], state: Any) -> None:
        return None

    def restore(self, template_for: Callable[[dict[str, Any]], Any]) -> None:
        return None


NO_CHECKPOINTS: Checkpointer = _NoCheckpoints()
