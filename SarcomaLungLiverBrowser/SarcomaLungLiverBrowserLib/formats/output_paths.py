"""Names of files written from data (node names, case IDs, UIDs) that stay inside their folder.

Two kinds of names reach the writers:

* identifiers that a layout needs exactly (a case ID as a folder, a
  SOPInstanceUID as ``<uid>.xml``): :func:`safe_output_path` takes them as
  they are, or refuses them with a :class:`~.errors.DataError`, because a
  changed identifier would no longer name the right image or case;
* free text chosen by people (a segmentation's name, an RTSTRUCT's
  description): :func:`sanitise_file_name` turns it into one harmless path
  component, so a reviewer who renames a node "Liver/Tumour" still saves.

Every path is checked once more after it is resolved, so a symbolic link
inside the output folder cannot lead a file out of it either.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Optional, Union

from ..errors import DataError

__all__ = ["sanitise_file_name", "safe_output_path", "unique_name", "is_within"]

#: Longest component written (most file systems allow 255 bytes; leave room for suffixes).
MAX_NAME_LENGTH = 120

#: Characters that separate paths or are not allowed in names on Windows, and control characters.
_UNSAFE_CHARACTERS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
#: Names Windows reserves for devices, with or without a suffix.
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)

PathLike = Union[str, Path]


def sanitise_file_name(text: str, fallback: str = "unnamed", max_length: int = MAX_NAME_LENGTH) -> str:
    """``text`` as one file-name component that cannot leave a folder.

    Separators, characters Windows forbids and control characters become
    ``_``; leading and trailing dots and spaces are dropped (so ``..`` cannot
    survive); device names such as ``CON`` get a leading ``_``; the result is
    cut to ``max_length`` characters. Empty results become ``fallback``.
    """
    name = _UNSAFE_CHARACTERS.sub("_", str(text))
    name = re.sub(r"\s+", " ", name).strip(" .")
    name = name[:max_length].rstrip(" .")
    if not name:
        name = fallback
    if _RESERVED.match(name):
        name = "_" + name
    return name


def is_within(path: PathLike, folder: PathLike) -> bool:
    """True if ``path`` is ``folder`` or lies below it, after resolving symbolic links."""
    resolved, base = Path(path).resolve(), Path(folder).resolve()
    return resolved == base or base in resolved.parents


def safe_output_path(folder: PathLike, file_name: str, suffix: Optional[str] = None) -> Path:
    """``folder / file_name``, refusing names that would leave ``folder``.

    :param suffix: if given, the name must end in it (case-insensitive).
    :raises DataError: naming the folder, if ``file_name`` is empty, ``.`` or
        ``..``, holds a path separator or NUL, is absolute, lacks the suffix,
        or resolves outside ``folder`` (e.g. through a symbolic link).
    """
    folder = Path(folder)
    name = str(file_name)
    if (not name or name.strip(".") == "" or "/" in name or "\\" in name or "\x00" in name
            or os.path.isabs(name) or (os.altsep is not None and os.altsep in name)):
        raise DataError(folder, f"refusing to write {name!r}: a name taken from the data must not "
                                "leave the output folder")
    if suffix is not None and not name.lower().endswith(suffix.lower()):
        raise DataError(folder, f"refusing to write {name!r}: the name must end in {suffix}")
    target = folder / name
    if target.resolve().parent != folder.resolve():
        raise DataError(folder, f"refusing to write {name!r}: it resolves outside the output folder")
    return target


def unique_name(name: str, taken: Iterable[str], suffix: str = "") -> str:
    """``name + suffix``, or ``name_2 + suffix``, ``name_3 + suffix``... if that is taken (case-insensitive)."""
    used = {value.lower() for value in taken}
    candidate = name + suffix
    number = 2
    while candidate.lower() in used:
        candidate = f"{name}_{number}{suffix}"
        number += 1
    return candidate
