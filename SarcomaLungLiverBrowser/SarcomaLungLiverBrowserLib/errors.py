"""Errors that carry the file they concern, so every message names it."""
from __future__ import annotations

from pathlib import Path
from typing import Union

__all__ = ["DataError", "NotACollectionError", "LoadCancelled"]

PathLike = Union[str, Path]


class DataError(Exception):
    """A problem with the user's data: names the file and what is wrong with it.

    :param path: the file or folder the problem is in.
    :param problem: what is wrong, in words a user can act on.
    """

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class NotACollectionError(DataError):
    """A folder that holds none of the collections this extension knows."""


class LoadCancelled(Exception):
    """The user cancelled a long operation through the progress callback."""
