"""A persistent cache of DICOM headers, keyed on path, size and modification time.

Re-indexing a 100,000-file collection should cost a ``stat`` per file, not a
header parse. An entry is used only while the file's size and modification
time (in nanoseconds) are unchanged; files that turned out not to be DICOM are
remembered too, so they are not sniffed again.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

from .dicom_series import InstanceHeader

__all__ = ["IndexCache", "default_cache_path"]

_SCHEMA_VERSION = 2
_TUPLE_FIELDS = ("image_position", "image_orientation", "pixel_spacing", "window")


def default_cache_path() -> Path:
    """Where the command line and the module keep the cache unless told otherwise."""
    configured = os.environ.get("SLLB_INDEX_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "SarcomaLungLiverBrowser" / "dicom-index.sqlite"


_FIELDS = tuple(field.name for field in dataclasses.fields(InstanceHeader))


def _header_to_json(header: InstanceHeader) -> str:
    # A positional list in field order: about five times faster to decode than dataclasses.asdict's dict.
    values = [getattr(header, name) for name in _FIELDS]
    values[0] = str(header.path)
    return json.dumps(values, separators=(",", ":"))


def _header_from_json(text: str) -> InstanceHeader:
    values = json.loads(text)
    if len(values) != len(_FIELDS):
        raise ValueError("cached header has another layout")
    values[0] = Path(values[0])
    for index in _TUPLE_INDEXES:
        if values[index] is not None:
            values[index] = tuple(values[index])
    return InstanceHeader(*values)


_TUPLE_INDEXES = tuple(_FIELDS.index(name) for name in _TUPLE_FIELDS)


class IndexCache:
    """Headers of previously indexed files in an SQLite database.

    :param path: the database file (created with its folder when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(str(self.path), check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA busy_timeout=10000")
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version != _SCHEMA_VERSION:
            # A cache is disposable: rebuild it rather than migrate it.
            self._connection.execute("DROP TABLE IF EXISTS files")
            self._connection.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
            "header TEXT, error TEXT)"
        )
        self._connection.commit()

    def lookup_many(self, paths: Iterable[str]) -> Dict[str, Tuple[int, int, Optional[str], Optional[str]]]:
        """Cached (size, mtime_ns, header JSON, error) for each of ``paths`` that has an entry."""
        found: Dict[str, Tuple[int, int, Optional[str], Optional[str]]] = {}
        paths = list(paths)
        with self._lock:
            for start in range(0, len(paths), 900):
                chunk = paths[start:start + 900]
                marks = ",".join("?" * len(chunk))
                rows = self._connection.execute(
                    f"SELECT path, size, mtime_ns, header, error FROM files WHERE path IN ({marks})", chunk
                )
                for path, size, mtime_ns, header, error in rows:
                    found[path] = (size, mtime_ns, header, error)
        return found

    def store_many(self, rows: Iterable[Tuple[str, int, int, Optional[InstanceHeader], Optional[str]]]) -> None:
        """Remember (path, size, mtime_ns, header or None, error or None) for each file."""
        encoded = [(path, size, mtime_ns, _header_to_json(header) if header else None, error)
                   for path, size, mtime_ns, header, error in rows]
        with self._lock:
            self._connection.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", encoded)
            self._connection.commit()

    @staticmethod
    def decode(header_json: str) -> InstanceHeader:
        return _header_from_json(header_json)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> "IndexCache":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
