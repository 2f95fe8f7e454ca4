"""A persistent cache of DICOM headers, keyed on path, size, times and file identity.

Re-indexing a 100,000-file collection should cost a ``stat`` per file, not a
header parse. An entry is used only while the file's size, modification time,
status-change time (ctime) and inode are all unchanged: size and mtime alone
can be restored after an edit (``touch -r``), the ctime cannot, and a file
replaced by another gets a new inode. Files that turned out not to be DICOM
are remembered too, so they are not sniffed again.

:func:`~.dicom_series.scan_folder` keeps one record per folder (all its
files' keys and headers in one row), so a re-index costs one query and one
decode per folder instead of per file. The folder's own stat is not a
shortcut: a file rewritten in place changes its own ctime but not its
folder's mtime, so every file's key is still compared -- from the
``os.scandir`` stat the walk makes anyway, without opening the file.

The cache is disposable, so it never risks anything else: a file that is not
one of our caches (another application's SQLite database, a review store, a
damaged file) is refused and left byte-identical, and any error while reading
or writing the cache (a damaged row, a locked database) is a cache miss.
"""
from __future__ import annotations

import collections
import collections.abc
import dataclasses
import io
import logging
import os
import pickle
import sqlite3
import struct
import threading
from itertools import repeat
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import DataError
from .dicom_series import (
    FILE_KEY_LAYOUT, LAZY_PATH_ATTRIBUTE, FileKey, FolderListing, InstanceHeader, file_key, folder_prefix,
)

__all__ = ["IndexCache", "default_cache_path", "APPLICATION_ID", "FileKey", "file_key"]

logger = logging.getLogger(__name__)

#: 5: the per-file table of versions 2-4 is gone. 6: folder paths are stored as their bytes (``os.fsencode``), so
#: that a folder whose name is not valid UTF-8 (an archive unpacked from another system) can be cached. 7: folder
#: records are restricted pickles instead of JSON (see :func:`_encode_folder_record`). 8: a record keeps its files'
#: names and keys as the walk lists them, one string and one packed bytes string (see ``FolderListing``). 9: the
#: header fields that vary within a folder are stored as one column per field instead of one row per file.
_SCHEMA_VERSION = 9
#: SQLite ``application_id`` of our cache files ("SLLC"), so that no other database is mistaken for one.
APPLICATION_ID = 0x534C4C43
#: The table of schema version 2, written before the application ID existed.
_LEGACY_FILES_COLUMNS = ["path", "size", "mtime_ns", "header", "error"]
_FOLDER_COLUMNS = "path BLOB PRIMARY KEY, files BLOB"

def default_cache_path() -> Path:
    """Where the command line and the module keep the cache unless told otherwise."""
    configured = os.environ.get("SLLB_INDEX_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "SarcomaLungLiverBrowser" / "dicom-index.sqlite"


_FIELDS = tuple(field.name for field in dataclasses.fields(InstanceHeader))


_HEADER_FIELDS = _FIELDS[1:]  # path is rebuilt from the folder and the file name
_HEADER_FIELD_SET = frozenset(_HEADER_FIELDS)
#: Pickle protocol of folder records: 4 is read by every Python a Slicer release bundles (3.6 and later).
_RECORD_PROTOCOL = 4


def _plain(value: object) -> object:
    """``value`` as exactly ``str``, ``int``, ``float``, ``bool`` or None, or a tuple of those (from any sequence).

    pydicom's value classes (``UID``, ``IS``, ``DSfloat``, ``MultiValue``)
    subclass these; a record holding one would name its class, which
    :class:`_PlainUnpickler` refuses to load, and the folder would never be
    served from the cache.

    :raises TypeError: for any other value (the scan's own header fields are never one).
    """
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, collections.abc.Sequence) and not isinstance(value, (str, bytes)):  # tuple, list, pydicom's MultiValue
        return tuple(_plain(item) for item in value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, int):
        return int.__int__(value)
    raise TypeError(f"a header value of type {type(value).__name__} cannot be cached")


#: Separates the file names of a folder record: the one character no file name can hold.
_NAME_SEPARATOR = "\0"


def _encode_folder_record(entries: Dict[str, Tuple[FileKey, Optional[InstanceHeader], Optional[str]]]) -> bytes:
    """One folder's files as a record: their names and keys as listed, header values by column, what the others were.

    ``entries`` is in the walk's listing order, and the record keeps it: the
    names joined into one string and the keys packed into one bytes string,
    exactly as :class:`~.dicom_series.FolderListing` holds them, so that an
    unchanged folder is recognised by comparing two strings. The files of a
    folder are mostly the slices of one series, so most header values (UIDs
    of study and series, patient, geometry but the position, pixel format)
    are the same in every file: such a field is stored once, each of the
    others as a column of its values, one per header in listing order (set
    across the folder's headers in one pass, see
    :func:`_decode_folder_record`). The record is a pickle of built-in
    containers and scalars only (see :class:`_PlainUnpickler`): loading it is
    several times faster than parsing the same values as JSON.

    :raises TypeError: for a value the record cannot hold (the folder then goes uncached).
    """
    names = [str(name) for name in entries]
    joined_names = _NAME_SEPARATOR.join(names)
    if joined_names.count(_NAME_SEPARATOR) != max(len(names) - 1, 0):
        raise TypeError("a file name holds a NUL character")
    try:
        packed_keys = b"".join(FILE_KEY_LAYOUT.pack(*key) for key, _, _ in entries.values())
    except struct.error as error:
        raise TypeError(f"a file key cannot be packed ({error})") from error
    others: Dict[int, Optional[str]] = {}  # index of the file -> its problem, None for a file that is not DICOM
    columns: Dict[str, list] = {name: [] for name in _HEADER_FIELDS}
    for index, (_, header, error) in enumerate(entries.values()):
        if header is None or error is not None:
            others[index] = None if error is None else str(error)
            continue
        for field_name in _HEADER_FIELDS:
            columns[field_name].append(_plain(getattr(header, field_name)))
    shared: Dict[str, object] = {}
    varying: List[str] = []
    for field_name, values in columns.items():
        if values and all(value == values[0] for value in values):
            shared[field_name] = values[0]
        else:
            varying.append(field_name)
    return pickle.dumps((joined_names, packed_keys, others, shared, tuple(varying),
                         [columns[name] for name in varying]), protocol=_RECORD_PROTOCOL)


class _PlainUnpickler(pickle.Unpickler):
    """Loads built-in containers and scalars only: a record that names any class or function is refused.

    This is pickle's own "restricting globals" recipe with nothing allowed:
    without a global nothing can be called, so a cache file written by
    someone else runs no code; at worst it is a damaged record, a cache miss.
    """

    def find_class(self, module: str, name: str) -> object:
        raise pickle.UnpicklingError(f"a header cache record names {module}.{name}")


def _load_folder_record(record: bytes) -> Tuple[str, bytes, int, Dict[int, Optional[str]], Dict[str, object],
                                                 Tuple[str, ...], List[list]]:
    """The parts of a folder record and how many files it records, its layout checked (per folder, not per file).

    :raises Exception: of whatever kind a damaged record gives (the caller treats any as a miss).
    """
    if not isinstance(record, bytes):
        raise TypeError(f"cached folder record is {type(record).__name__}, not bytes")
    joined_names, packed_keys, others, shared, varying, columns = _PlainUnpickler(io.BytesIO(record)).load()
    if not (type(joined_names) is str and type(packed_keys) is bytes and type(others) is dict
            and type(shared) is dict and type(varying) is tuple and type(columns) is list):
        raise ValueError("cached folder record has another layout")
    count = joined_names.count(_NAME_SEPARATOR) + 1 if joined_names else 0
    if len(packed_keys) != count * FILE_KEY_LAYOUT.size:
        raise ValueError(f"cached folder record has {len(packed_keys)} bytes of keys for {count} files")
    if set(shared) | set(varying) != _HEADER_FIELD_SET or len(shared) + len(varying) != len(_HEADER_FIELDS):
        raise ValueError("cached folder record has other header fields")
    if not all(type(index) is int and 0 <= index < count for index in others):
        raise ValueError("cached folder record has a problem of a file it does not name")
    if not all(problem is None or type(problem) is str for problem in others.values()):
        raise ValueError("cached folder record has a problem that is not text")
    header_count = count - len(others)
    if len(columns) != len(varying) or not all(type(column) is list and len(column) == header_count
                                               for column in columns):
        raise ValueError(f"cached folder record does not have {len(varying)} columns of {header_count} values")
    return joined_names, packed_keys, count, others, shared, varying, columns


#: A file served from the cache: its path (``folder_prefix(folder) + name``), its header or None, its problem or None.
CachedEntry = Tuple[str, Optional[InstanceHeader], Optional[str]]


def _decode_folder_record(folder: str, record: bytes, listing: FolderListing
                          ) -> Tuple[Dict[str, CachedEntry], int]:
    """The entries of a folder record whose file's key is still the one ``listing`` has, and how many it records.

    A re-index spends much of its time here, once per file, so each step is
    one pass over the folder's headers that runs in C (``map`` over a
    built-in method), not a Python loop: each header's attribute dictionary
    is a copy of the folder's shared values (see :func:`_shared_values`),
    each varying field is set from its column across all of them, and the
    instances are filled without ``__init__``. A header's path stays text
    until it is used (see ``InstanceHeader.__getattr__``), the same string
    the entry carries for the scan's results. An unchanged folder -- the
    common case -- is recognised by comparing the record's names and packed
    keys with the listing's, two string comparisons; otherwise each file's
    key is compared.

    :raises Exception: for a damaged record (see :func:`_load_folder_record`).
    """
    joined_names, packed_keys, count, others, shared, varying, columns = _load_folder_record(record)
    if packed_keys == listing.packed_keys and joined_names == _NAME_SEPARATOR.join(listing.names):
        names = listing.names  # every file as recorded, in the same order
        unchanged = None
    else:  # some file changed, was replaced, added or removed (or the folder lists in another order)
        names = joined_names.split(_NAME_SEPARATOR) if count else []
        current = listing.file_keys()
        unchanged = {name for name, key in zip(names, FILE_KEY_LAYOUT.iter_unpack(packed_keys))
                     if current.get(name) == key}
    header_names = [name for index, name in enumerate(names) if index not in others] if others else names
    other_files = [(names[index], problem) for index, problem in others.items()]
    if unchanged is not None:
        kept = [index for index, name in enumerate(header_names) if name in unchanged]
        header_names = [header_names[index] for index in kept]
        columns = [[column[index] for index in kept] for column in columns]
        other_files = [(name, problem) for name, problem in other_files if name in unchanged]
    prefix = folder_prefix(folder)
    paths = list(map(prefix.__add__, header_names))
    values = list(map(dict.copy, repeat(_shared_values(shared), len(paths))))
    for field_name, column in zip(varying, columns):
        _exhaust(map(_set_item, values, repeat(field_name), column))
    _exhaust(map(_set_item, values, repeat(LAZY_PATH_ATTRIBUTE), paths))
    headers = list(map(_new_header, repeat(InstanceHeader, len(paths))))
    # The dictionary itself, not a copy (see _shared_values).
    _exhaust(map(_set_attribute, headers, repeat("__dict__"), values))
    valid: Dict[str, CachedEntry] = dict(zip(header_names, zip(paths, headers, repeat(None))))
    for name, problem in other_files:
        valid[name] = (prefix + name, None, problem)
    return valid, count


def _exhaust(iterator: Iterable[object]) -> None:
    """Run ``iterator`` to its end, keeping nothing (a ``deque`` of no length consumes it in C)."""
    collections.deque(iterator, maxlen=0)


def _shared_values(shared: Dict[str, object]) -> Dict[str, object]:
    """The values every header of a folder record starts from, as a dictionary to copy once per header.

    It is the ``__dict__`` of a template header that has every field but
    ``path`` (the folder's shared values; None for the varying ones, each
    file's own row replaces them) and the lazy path: in CPython such an
    instance dictionary shares its keys with the class, and so does each
    copy, so a header restored from the cache takes the same ~300 bytes as
    one read from its file instead of ~830 for a plain dictionary of the same
    values (tens of MB for a large collection). Each copy then replaces
    values only, never adds a key, which keeps it that way.
    """
    template = _new_header(InstanceHeader)
    for name in _HEADER_FIELDS:
        _set_attribute(template, name, shared.get(name))
    _set_attribute(template, LAZY_PATH_ATTRIBUTE, None)
    return template.__dict__


_new_header = object.__new__
_set_attribute = object.__setattr__
_set_item = dict.__setitem__


def _inspect(path: Path) -> str:
    """"new", "ours" or a reason why ``path`` is not our cache, without changing a byte.

    The application ID is read from the file header directly; tables are
    listed through an ``immutable`` read-only connection, which takes no
    lock and creates no ``-wal``/``-shm`` file beside another application's
    database (a review store in WAL mode would otherwise get both).
    """
    try:
        if not path.exists() or path.stat().st_size == 0:
            return "new"
        with open(path, "rb") as stream:
            header = stream.read(100)
    except OSError as error:
        return f"cannot be examined ({error})"
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        return "is not an SQLite database"
    application_id = int.from_bytes(header[68:72], "big")
    if application_id == APPLICATION_ID:
        return "ours"
    if application_id != 0:
        return f"is another application's SQLite database (application ID {application_id:#x})"
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as error:
        return f"cannot be opened ({error})"
    try:
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        if tables == ["files"]:
            columns = [row[1] for row in connection.execute("PRAGMA table_info(files)")]
            if columns == _LEGACY_FILES_COLUMNS:
                return "ours"  # written by schema version 2, before the application ID
        if not tables and not Path(f"{path}-wal").exists():
            return "new"  # an empty database (with no pending write-ahead log that could hold tables)
        return f"is another application's database (tables: {', '.join(tables) or 'none yet'})"
    except sqlite3.Error as error:
        return f"is not a readable SQLite database ({error})"
    finally:
        connection.close()


_SQLITE_MAGIC = b"SQLite format 3\x00"


class IndexCache:
    """Headers of previously indexed files in an SQLite database.

    :param path: the database file (created with its folder when missing).
    :raises DataError: naming the file, if it exists and is not one of our
        caches (it is left untouched); callers index without a cache then.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        verdict = _inspect(self.path)
        if verdict not in ("new", "ours"):
            raise DataError(self.path, f"{verdict}; it is not a SarcomaLungLiverBrowser header cache and is left "
                                       "untouched (point SLLB_INDEX_CACHE at a file of its own)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(str(self.path), check_same_thread=False, timeout=2.0)
        try:
            self._connection.execute("PRAGMA busy_timeout=2000")
            if not self._is_current():
                self._set_up()
        except sqlite3.Error as error:
            self._connection.close()
            raise DataError(self.path, f"cannot be used as the header cache ({error})") from error

    def _is_current(self) -> bool:
        """Whether the database already has this schema version, our ID and its table (then opening writes nothing,
        so a re-index never waits for another process's lock just to open the cache)."""
        execute = self._connection.execute
        return (execute("PRAGMA user_version").fetchone()[0] == _SCHEMA_VERSION
                and execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
                and execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'folders'").fetchone()
                is not None)

    def _set_up(self) -> None:
        """Create the schema; a cache of another version (ours, checked by the caller) is disposable: rebuilt."""
        execute = self._connection.execute
        if execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
            execute("DROP TABLE IF EXISTS files")
            execute("DROP TABLE IF EXISTS folders")
            execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        execute(f"PRAGMA application_id={APPLICATION_ID}")
        execute("PRAGMA journal_mode=WAL")
        execute(f"CREATE TABLE IF NOT EXISTS folders ({_FOLDER_COLUMNS})")
        self._connection.commit()

    def forget_folders_gone_below(self, root: str, present: Iterable[str]) -> None:
        """Drop the records of folders at or below ``root`` that are not in ``present`` (removed or renamed since).

        Without this the cache would keep every folder ever indexed. Only
        ``root``'s own subtree is touched: records of other trees stay. Errors
        only cost the clean-up.
        """
        try:
            recorded = [os.fsdecode(row[0]) for row in self._rows_below(root, "path")]
        except sqlite3.Error as error:
            logger.warning("%s: header cache not cleaned up (%s)", self.path, error)
            return
        prefix = folder_prefix(root)
        present = set(present)
        # The walk skips hidden folders; a scan started inside one recorded them, and they are not gone.
        gone = sorted(folder for folder in recorded if folder not in present
                      and not any(part.startswith(".") for part in folder[len(prefix):].split(os.sep)))
        if gone:
            self._write_rows("DELETE FROM folders WHERE path = ?", [(os.fsencode(folder),) for folder in gone])

    def _rows_below(self, root: str, columns: str) -> List[tuple]:
        """``columns`` of the records of ``root`` and every folder below it, in one query.

        :raises sqlite3.Error: when the cache cannot be read.
        """
        root_bytes = os.fsencode(root)
        prefix = os.fsencode(folder_prefix(root))
        # Every path that starts with prefix sorts in [prefix, prefix with its separator's successor).
        upper = prefix[:-1] + bytes([prefix[-1] + 1])
        with self._lock:
            return self._connection.execute(
                f"SELECT {columns} FROM folders WHERE path = ? OR (path >= ? AND path < ?)",
                (root_bytes, prefix, upper)).fetchall()

    def records_below(self, root: str) -> Dict[str, bytes]:
        """The records of ``root`` and every folder below it, by folder, read in one query (a query per folder was
        a twentieth of a re-index); empty when the cache cannot be read. Pass each to :meth:`folder_entries`."""
        try:
            return {os.fsdecode(path): files for path, files in self._rows_below(root, "path, files")}
        except sqlite3.Error as error:
            logger.warning("%s: header cache unreadable (%s); reading headers from the files", self.path, error)
            return {}

    def folder_entries(self, folder: str, listing: FolderListing, record: Optional[bytes] = None
                       ) -> Tuple[Dict[str, CachedEntry], bool]:
        """Cached (path, header or None, error or None) of each file of ``folder`` whose key is unchanged.

        :param listing: every file now in the folder with its :func:`file_key`
            (from the walk's own ``os.scandir`` stat).
        :param record: the folder's record from :meth:`records_below`, if
            the caller read them all at once (None: read it now; a folder
            without a record is simply absent from that mapping, and a miss).
        :returns: the entries still valid, and whether the folder's record
            matches ``keys`` exactly (no file added, changed or removed), in
            which case it need not be written again. A damaged record or any
            database error is a miss for the whole folder.
        """
        if record is None:
            try:
                with self._lock:
                    row = self._connection.execute("SELECT files FROM folders WHERE path = ?",
                                                   (os.fsencode(folder),)).fetchone()
            except sqlite3.Error as error:
                logger.warning("%s: header cache unreadable (%s); reading headers from the files", self.path, error)
                return {}, False
            if row is None:
                return {}, False
            record = row[0]
        try:
            valid, recorded = _decode_folder_record(folder, record, listing)
        except Exception:  # noqa: BLE001 -- a record is data only (loading it runs no code): whatever a damaged
            # one raises, the folder's files are read again
            logger.warning("%s: damaged record of %s in the header cache; reading its files again", self.path, folder)
            return {}, False
        return valid, len(valid) == len(listing) == recorded

    def store_folders(self, folders: Iterable[Tuple[str, Dict[str, Tuple[FileKey, Optional[InstanceHeader],
                                                                           Optional[str]]]]]) -> None:
        """Remember, for each folder, every file's (key, header or None, error or None).

        The keys are those taken before the files were read: a file changed
        while being read then has another key at the next scan and is read
        again. Errors only cost the records.
        """
        rows = []
        for folder, entries in folders:
            try:
                rows.append((os.fsencode(folder), _encode_folder_record(entries)))
            except TypeError as error:  # a value the record cannot hold: the folder is read again next time
                logger.warning("%s: %s not cached (%s)", self.path, folder, error)
        if not rows:
            return
        self._write_rows("INSERT OR REPLACE INTO folders VALUES (?, ?)", rows)

    def _write_rows(self, statement: str, rows: Sequence[tuple]) -> None:
        """Write rows in one transaction; a failure only costs the records (logged, rolled back)."""
        try:
            with self._lock:
                self._connection.executemany(statement, rows)
                self._connection.commit()
        except sqlite3.Error as error:
            logger.warning("%s: header cache not updated (%s)", self.path, error)
            with self._lock:
                try:
                    self._connection.rollback()
                except sqlite3.Error:
                    pass

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> "IndexCache":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
