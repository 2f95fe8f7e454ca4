"""Folder walking that survives what users' disks hold: symbolic-link loops and unreadable entries.

``os.DirEntry.is_file()`` follows symbolic links and raises ``OSError`` for a
link that points to itself (``loop.dcm -> loop.dcm``: "Too many levels of
symbolic links"), which would end an index or QA run with a traceback. These
helpers answer False for such an entry instead and log a warning naming it,
so a walk goes on and the user learns which file was skipped and why.
"""
from __future__ import annotations

import errno
import logging
import os
from typing import Optional

__all__ = ["is_dir_entry", "is_file_entry", "warn_skipped_entry"]

logger = logging.getLogger(__name__)


def warn_skipped_entry(entry: "os.DirEntry[str]", error: OSError, path: Optional[str] = None) -> None:
    """Name an entry a walk skips because stat-ing it failed.

    An entry that vanished since it was listed, or a link to nothing, is
    skipped silently, as ``DirEntry.is_file()`` answers False for both.

    :param path: the entry's path, for a folder listed through a descriptor (whose entries know only their name).
    """
    if error.errno == errno.ENOENT:
        return
    reason = "a symbolic link loop" if error.errno == errno.ELOOP else "unreadable"
    logger.warning("%s: skipped, it is %s (%s)", path or entry.path, reason, error.strerror or error)


def _skipped(entry: "os.DirEntry[str]", error: OSError) -> bool:
    warn_skipped_entry(entry, error)
    return False


def is_file_entry(entry: "os.DirEntry[str]") -> bool:
    """``entry.is_file()``, or False (with a warning naming it) for a link loop or an unreadable entry."""
    try:
        return entry.is_file()
    except OSError as error:
        return _skipped(entry, error)


def is_dir_entry(entry: "os.DirEntry[str]", follow_symlinks: bool = True) -> bool:
    """``entry.is_dir()``, or False (with a warning naming it) for a link loop or an unreadable entry."""
    try:
        return entry.is_dir(follow_symlinks=follow_symlinks)
    except OSError as error:
        return _skipped(entry, error)
