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
inside the output folder cannot lead a file out of it either. Names longer
than file systems allow (a 300-character PatientID) are shortened the same
way by both: the start of the name, ``~`` and a hash of the whole name, so
two long names never shorten alike and the same name always shortens the same.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Iterable, Optional, Union

from ..errors import DataError

__all__ = ["sanitise_file_name", "safe_output_path", "unique_name", "is_within", "bounded_file_name"]

#: Longest component written (most file systems allow 255 bytes; leave room for suffixes).
MAX_NAME_LENGTH = 120

#: Longest file-name component, in bytes of UTF-8, that common file systems accept (ext4, NTFS, APFS: 255).
MAX_COMPONENT_BYTES = 255

#: Characters that separate paths or are not allowed in names on Windows, and control characters.
_UNSAFE_CHARACTERS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
#: Names Windows reserves for devices, with or without a suffix.
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)

PathLike = Union[str, Path]


def sanitise_file_name(text: str, fallback: str = "unnamed", max_length: int = MAX_NAME_LENGTH) -> str:
    """``text`` as one file-name component that cannot leave a folder.

    Separators, characters Windows forbids and control characters become
    ``_``; leading and trailing dots and spaces are dropped (so ``..`` cannot
    survive); device names such as ``CON`` get a leading ``_``; a result over
    ``max_length`` characters or UTF-8 bytes is shortened by
    :func:`bounded_file_name` (start + hash). Empty results become ``fallback``.
    """
    name = _UNSAFE_CHARACTERS.sub("_", str(text))
    name = re.sub(r"\s+", " ", name).strip(" .")
    name = bounded_file_name(name, max_bytes=max_length)
    if not name:
        name = fallback
    if _RESERVED.match(name):
        name = "_" + name
    return name


def bounded_file_name(name: str, suffix: str = "", max_bytes: int = MAX_COMPONENT_BYTES) -> str:
    """``name`` if it fits in ``max_bytes`` of UTF-8, else its start + ``~`` + 16 hex digits of its SHA-256.

    ``suffix`` (e.g. ``.nii.gz``), if ``name`` ends in it, is kept at the end.
    Deterministic and collision-free in practice: the same long name always
    gives the same short one, two long names sharing a prefix give two.
    """
    if len(name.encode("utf-8")) <= max_bytes and len(name) <= max_bytes:
        return name
    keep = suffix if suffix and name.lower().endswith(suffix.lower()) else ""
    stem = name[:len(name) - len(keep)] if keep else name
    digest = "~" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    room = max(max_bytes - len(digest) - len(keep.encode("utf-8")), 1)
    cut = stem.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore").rstrip(" .")
    return cut + digest + keep


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
    name = bounded_file_name(name, suffix or "")  # a 300-character PatientID must not end in "File name too long"
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
