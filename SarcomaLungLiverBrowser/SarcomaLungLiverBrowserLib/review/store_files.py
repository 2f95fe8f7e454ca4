"""Checks on a review store's file before it is opened: a foreign or damaged file is refused, untouched.

``--store`` pointed by mistake at another application's SQLite database must
not turn it into a review store (SQLite would happily add our tables and
switch it to WAL mode); a damaged store must not stop a QA report. Both are
refused with a message naming the file, after looking at it without a lock
or a byte written: the header is read directly, the schema and integrity
through an ``immutable`` read-only connection (no ``-wal``/``-shm`` files).

Read-only commands (``qa``, ``review --export-csv``) open the store through
:func:`connect_read_only`, which never writes the file either, so a store on
read-only media or in a read-only collection folder still shows its verdicts.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import DataError

__all__ = ["REVIEW_STORE_TABLES", "check_store_file", "connect_read_only"]

#: Tables a review store may hold, in every schema version (``sqlite_sequence`` comes with AUTOINCREMENT);
#: Testing/test_store_files.py checks this against the tables a new store really has.
REVIEW_STORE_TABLES = frozenset({"verdicts", "history", "sqlite_sequence", "verdicts_by_reader", "adjudications",
                                 "adjudication_reads", "known_cases"})

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _immutable_uri(path: Path) -> str:
    return f"{path.resolve().as_uri()}?mode=ro&immutable=1"


def check_store_file(path: Path) -> None:
    """Refuse ``path`` if it exists and is not a (readable, undamaged) review store; never changes it.

    A missing or empty file passes (a new store is created there).

    :raises DataError: naming the file: not SQLite, another application's
        database (its tables are listed), or failing SQLite's quick check.
    """
    path = Path(path)
    try:
        if not path.exists() or path.stat().st_size == 0:
            return
        with open(path, "rb") as stream:
            header = stream.read(100)
    except OSError as error:
        raise DataError(path, f"cannot be read as a review store ({error})") from error
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise DataError(path, "is not a review store (not an SQLite database); it is left untouched: "
                              "choose another file for --store")
    try:
        # Through the write-ahead log when there is one: a writer killed mid-checkpoint leaves the main file
        # inconsistent until the log is replayed, and an ``immutable`` read of it alone would look damaged.
        connection = connect_read_only(path)
    except DataError:
        raise
    except sqlite3.Error as error:
        raise DataError(path, f"cannot be opened as a review store ({error}); it is left untouched") from error
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        foreign = sorted(tables - REVIEW_STORE_TABLES)
        if foreign:
            raise DataError(path, f"is another application's SQLite database (tables: {', '.join(foreign)}), "
                                  "not a review store; it is left untouched: choose another file for --store")
    except sqlite3.DatabaseError as error:
        raise DataError(path, f"is a damaged review store ({error}); it is left untouched: restore it from a "
                              "backup or choose another file") from error
    finally:
        connection.close()
    _quick_check(path)


def _quick_check(path: Path) -> None:
    """SQLite's quick check, through a read-only connection that sees concurrent writers' commits.

    (Not ``immutable``: a store another Slicer writes at this moment would look damaged mid-checkpoint.)
    """
    connection = connect_read_only(path)
    try:
        problems = [str(row[0]) for row in connection.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as error:
        problems = [str(error)]
    finally:
        connection.close()
    if problems != ["ok"]:
        raise DataError(path, f"is a damaged review store ({'; '.join(problems[:3])}); it is left untouched: "
                              "restore it from a backup or choose another file")


def connect_read_only(path: Path, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection that can never write ``path`` nor leave files beside it.

    With no write-ahead log beside the store, every committed verdict is in
    the file itself (the last writer checkpointed it on closing), so it is
    opened ``immutable``: no lock, no ``-wal``/``-shm`` files created. While
    a log exists (a writer is open), ``mode=ro`` reads through it so the
    writer's latest verdicts are seen; on read-only media, where SQLite
    cannot create the shared-memory file, ``immutable`` is used again.

    :raises DataError: naming the file, if it does not exist or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "does not exist: there are no verdicts to read yet")
    if not Path(f"{path}-wal").exists():
        return _connect_immutable(path)
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout,
                                     isolation_level=None)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.OperationalError:
        pass  # e.g. "unable to open database file" for a WAL store in a read-only folder
    except sqlite3.DatabaseError as error:
        raise DataError(path, f"is a damaged review store ({error}); it is left untouched: restore it from a "
                              "backup or choose another file") from error
    return _connect_immutable(path)


def _connect_immutable(path: Path) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(_immutable_uri(path), uri=True, isolation_level=None)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return connection
    except sqlite3.Error as error:
        raise DataError(path, f"cannot be opened read-only as a review store ({error})") from error
