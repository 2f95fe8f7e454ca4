"""Worker processes that start the same way in the Slicer application and in a plain interpreter.

Only the standard library is imported here: readers (series decoding) and the
review service (QA in parallel) both start workers through this module.
"""
from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path
from typing import Any

__all__ = ["spawn_context", "in_worker_process", "still_running"]


def spawn_context() -> Any:
    """A ``spawn`` context whose children run a real Python interpreter.

    Workers are spawned, never forked: a fork of a multi-threaded host (Slicer,
    VTK, Qt) can deadlock the child. Inside the Slicer application
    ``sys.executable`` is the PythonSlicer launcher, through which
    multiprocessing's start-up pipe does not reach the child (Slicer issue
    #7445); the interpreter beside it runs with the environment Slicer already
    has, which the child inherits.
    """
    context = multiprocessing.get_context("spawn")
    executable = Path(sys.executable)
    if executable.stem == "PythonSlicer":
        real = executable.with_name("python-real" + executable.suffix)
        if real.is_file():
            context.set_executable(str(real))
    return context


def in_worker_process() -> bool:
    """Whether this interpreter is a worker started by multiprocessing (which then starts no workers of its own:
    two QA workers each decoding with helpers would ask for more processes than the machine has cores)."""
    return multiprocessing.parent_process() is not None


def still_running(process: Any) -> bool:
    """Whether a worker process has not ended, judged by its sentinel (readable once it has ended), not by
    ``is_alive()``: that reaps it, and the pool's own thread may be reaping it at the same moment (so a kill
    decided on ``is_alive()`` could reach a reused process ID)."""
    import multiprocessing.connection  # sockets and all: only for a process that was started

    try:
        return not multiprocessing.connection.wait([process.sentinel], timeout=0)
    except (ValueError, OSError):  # already closed by its pool: ended
        return False
