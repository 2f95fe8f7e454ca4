"""Atomic writes and completion manifests: an interrupted run never leaves a damaged or complete-looking output.

One file is written to a temporary name in its own folder, flushed to disk
(``fsync``), renamed over the target (``os.replace`` is atomic on POSIX and
Windows) and the folder is flushed too, so after a crash or a kill the target
holds either the previous version or the new one, never part of one.

A set of files (a case's corrections, a QA report) is several such renames;
a kill between two of them leaves a mix of old and new files that each look
fine. So a set carries a manifest, written last: :func:`begin_output_set`
removes the manifest before the first file changes, :func:`complete_output_set`
writes it (names, sizes and SHA-256 of every file) after the last one, and
:func:`check_output_set` tells a complete set from an interrupted or damaged one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Union

from ..text import SPELL_OUT_UNDECODABLE

__all__ = [
    "MANIFEST_SUFFIX",
    "OutputSetState",
    "atomic_path",
    "begin_output_set",
    "check_output_set",
    "complete_output_set",
    "corrections_output_set",
    "fsync_directory",
    "manifest_path",
    "write_bytes_atomically",
    "write_text_atomically",
]

PathLike = Union[str, Path]

#: Ending of a completion manifest's file name.
MANIFEST_SUFFIX = ".complete.json"
#: Marks temporary files of this module, so leftovers of a killed writer are recognisable.
_PARTIAL_MARK = ".sllb-partial"


def fsync_directory(folder: PathLike) -> None:
    """Flush a folder's entries (a rename inside it) to disk; a no-op where folders cannot be opened (Windows)."""
    try:
        descriptor = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems (e.g. network shares) refuse fsync on folders; the rename itself is still atomic
    finally:
        os.close(descriptor)


def _fsync_file(path: Path) -> None:
    descriptor = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _partial_prefix(target: Path) -> str:
    # A name near the 255-byte limit has no room for the suffix: its temporary files go by a hash of it.
    if len(target.name.encode("utf-8", "surrogatepass")) > 180:
        return "." + hashlib.sha256(target.name.encode("utf-8", "surrogatepass")).hexdigest()[:16] + "."
    return f".{target.name}."


def _partial_name(target: Path) -> Path:
    # Hidden, in the same folder (a rename across file systems is not atomic), unique per writer.
    return target.with_name(f"{_partial_prefix(target)}{os.getpid()}.{secrets.token_hex(4)}{_PARTIAL_MARK}")


def _remove_stale_partials(target: Path) -> None:
    """Delete temporary files a killed writer of ``target`` left behind (its process is gone)."""
    prefix = _partial_prefix(target)
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(_PARTIAL_MARK)):
            continue
        pid_text = name[len(prefix):-len(_PARTIAL_MARK)].split(".")[0]
        if pid_text.isdigit() and _process_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """A temporary path to write ``target``'s new content to; renamed over ``target`` when the block succeeds.

    Any writer that takes a file name (``Dataset.save_as``, ``vtkPNGWriter``)
    can write atomically this way::

        with atomic_path(path) as partial:
            dataset.save_as(str(partial))

    If the block raises, the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    partial = _partial_name(target)
    try:
        yield partial
        if not partial.is_file():
            raise FileNotFoundError(f"{partial}: the writer produced no file")
        _fsync_file(partial)
        os.replace(str(partial), str(target))
        fsync_directory(target.parent)
    finally:
        if partial.exists():
            with contextlib.suppress(OSError):
                partial.unlink()


def write_bytes_atomically(target: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_path`); returns ``target``."""
    target = Path(target)
    with atomic_path(target) as partial:
        with open(partial, "xb") as stream:  # not mkstemp: the file gets the user's usual permissions
            stream.write(data)
    return target


def write_text_atomically(target: PathLike, text: Optional[str] = None, *, encoding: str = "utf-8",
                          newline: Optional[str] = None, write: Optional[Callable[[Any], None]] = None) -> Path:
    """Write ``text`` (or whatever ``write(stream)`` writes) to ``target`` atomically; returns ``target``.

    A byte of a file name that is not UTF-8 (a lone surrogate in ``text``) is written out as ``\\xe9``
    (:mod:`..text`): a report that names such a file is written, not refused.
    """
    target = Path(target)
    with atomic_path(target) as partial:
        with open(partial, "x", encoding=encoding, newline=newline, errors=SPELL_OUT_UNDECODABLE) as stream:
            if write is not None:
                write(stream)
            else:
                stream.write(text or "")
    return target


# ------------------------------------------------------------------------------------------ output sets
def manifest_path(folder: PathLike, set_name: str) -> Path:
    """Where the completion manifest of the set ``set_name`` (a plain file-name stem) lives in ``folder``."""
    return Path(folder) / f"{set_name}{MANIFEST_SUFFIX}"


def begin_output_set(folder: PathLike, set_name: str) -> Path:
    """Mark the set as being rewritten: remove its manifest (durably) before the first file changes."""
    manifest = manifest_path(folder, set_name)
    with contextlib.suppress(FileNotFoundError):
        manifest.unlink()
        fsync_directory(manifest.parent)
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def complete_output_set(folder: PathLike, set_name: str, files: Sequence[PathLike]) -> Path:
    """Write the set's manifest (relative name, size and SHA-256 of each file) last, atomically."""
    folder = Path(folder)
    entries = []
    for file in files:
        path = Path(file)
        try:
            relative = path.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            relative = str(path.resolve())
        entries.append({"path": relative, "size": path.stat().st_size, "sha256": _sha256(path)})
    document = {"format": "SarcomaLungLiverBrowser output set", "version": 1, "set": set_name, "files": entries}
    return write_text_atomically(manifest_path(folder, set_name), json.dumps(document, indent=1) + "\n")


@dataclasses.dataclass(frozen=True)
class OutputSetState:
    """What :func:`check_output_set` found: ``complete`` only when every listed file is as written."""

    complete: bool
    reason: str
    files: List[Path] = dataclasses.field(default_factory=list)


def check_output_set(folder: PathLike, set_name: str) -> OutputSetState:
    """Whether the set in ``folder`` was written to the end and is unchanged since.

    Incomplete: no manifest (the run was interrupted, or never finished), a
    manifest that cannot be read, or a listed file that is missing or differs
    in size or SHA-256 from what was written.
    """
    folder = Path(folder)
    manifest = manifest_path(folder, set_name)
    if not manifest.is_file():
        return OutputSetState(False, f"{manifest} is missing: the run that wrote {folder} did not finish")
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
        entries = list(document["files"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        return OutputSetState(False, f"{manifest} cannot be read ({error})")
    files = []
    for entry in entries:
        path = Path(entry["path"])
        path = path if path.is_absolute() else folder / path
        if not path.is_file():
            return OutputSetState(False, f"{path} is listed in {manifest.name} but missing")
        if path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
            return OutputSetState(False, f"{path} differs from what {manifest.name} records")
        files.append(path)
    return OutputSetState(True, f"{len(files)} file(s) complete", files)


def corrections_output_set(output_folder: PathLike, case_id: str) -> tuple:
    """(folder, set name) of a case's corrections: ``<output folder>/<case ID>.corrections.complete.json``."""
    from .output_paths import sanitise_file_name

    return Path(output_folder).expanduser().resolve(), f"{sanitise_file_name(case_id)}.corrections"
