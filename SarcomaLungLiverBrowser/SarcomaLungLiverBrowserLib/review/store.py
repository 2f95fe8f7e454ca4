"""Reviewers' verdicts, kept in SQLite so that no confirmed verdict is ever lost.

Every :meth:`ReviewStore.set_verdict` is one committed transaction in
write-ahead-log mode with ``synchronous=FULL``: when it returns, the verdict
is on disk and survives a crash or a killed process. Several processes (two
Slicer instances, the command line) may write the same store; SQLite's
locking serialises them and ``busy_timeout`` makes a writer wait rather than
fail. Every change is also appended to a history table, so a verdict that was
changed can be traced.
"""
from __future__ import annotations

import datetime
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import DataError
from .store_files import check_store_file, connect_read_only

__all__ = ["VERDICTS", "ReviewRecord", "ReviewStore", "default_store_path", "open_review_store",
           "normalise_verdict", "SCHEMA_VERSION", "MIGRATIONS"]

#: The verdicts a reviewer can give.
VERDICTS = ("accepted", "needs correction", "rejected")

#: Columns of :meth:`ReviewStore.export_csv`.
REVIEW_STORE_CSV_COLUMNS = ["case_id", "annotation", "verdict", "comment", "reviewer", "time"]

#: File name of the store kept beside a collection.
STORE_FILE_NAME = ".sllb_review.sqlite"

#: The schema this code writes; stored in the database's ``user_version``.
SCHEMA_VERSION = 1


def _create_version_1(connection: sqlite3.Connection) -> None:
    """Version 0 (an empty file) to 1: current verdicts and the append-only history."""
    connection.execute(
        "CREATE TABLE IF NOT EXISTS verdicts ("
        " case_id TEXT NOT NULL, annotation TEXT NOT NULL, verdict TEXT NOT NULL, comment TEXT NOT NULL,"
        " reviewer TEXT NOT NULL, time TEXT NOT NULL, PRIMARY KEY (case_id, annotation))")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS history ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT, case_id TEXT NOT NULL, annotation TEXT NOT NULL,"
        " verdict TEXT NOT NULL, comment TEXT NOT NULL, reviewer TEXT NOT NULL, time TEXT NOT NULL)")
    connection.execute("CREATE INDEX IF NOT EXISTS history_case ON history (case_id)")


#: Migration hook: ``MIGRATIONS[n]`` upgrades a store from schema ``n`` to ``n + 1`` inside the
#: opening transaction. A later schema adds ``MIGRATIONS[1] = ...`` and raises SCHEMA_VERSION.
MIGRATIONS: Dict[int, Callable[[sqlite3.Connection], None]] = {0: _create_version_1}


def default_store_path(collection_root: Path) -> Path:
    """Where a collection's verdicts are kept unless the user chooses another file."""
    return Path(collection_root) / STORE_FILE_NAME


def open_review_store(collection_root: Path, chosen: Optional[Path] = None,
                      read_only: bool = False) -> "ReviewStore":
    """The review store of a collection: ``chosen`` if given, else the file beside the collection.

    :param read_only: for commands that only read verdicts (reports, exports):
        the file is opened read-only and never rewritten, so a store in a
        read-only collection folder is still read.
    :raises DataError: naming the file; when the collection folder cannot hold
        the store (a read-only folder, a DVD, a shared archive) the message says
        so and asks for another file, since verdicts must never be kept only in memory.
    """
    if read_only:
        return ReviewStore(Path(chosen) if chosen is not None else default_store_path(collection_root),
                           read_only=True)
    if chosen is not None:
        return ReviewStore(Path(chosen))
    path = default_store_path(collection_root)
    folder = Path(collection_root)
    if folder.is_dir() and not os.access(str(folder), os.W_OK):
        raise DataError(path, "the collection folder is read-only, so the review store cannot be kept beside it; "
                              "choose another file for the review store")
    try:
        return ReviewStore(path)
    except DataError as error:
        raise DataError(path, f"{error.problem}. The review store cannot be kept beside the collection "
                              "(is the collection folder read-only?); choose another file for the review store") \
            from error


@dataclass(frozen=True)
class ReviewRecord:
    """One verdict on a case (``annotation == ""``) or on one of its annotations."""

    case_id: str
    annotation: str
    verdict: str
    comment: str
    reviewer: str
    time: str


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def normalise_verdict(verdict: str) -> str:
    """``"needs-correction"``, ``"Needs_Correction"`` ... as ``"needs correction"``.

    :raises ValueError: if it is none of :data:`VERDICTS`.
    """
    normalised = " ".join(str(verdict).strip().lower().replace("-", " ").replace("_", " ").split())
    if normalised not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}; got {verdict!r}")
    return normalised


class ReviewStore:
    """A review store in one SQLite file.

    :param path: the database file; created (with its folder) when missing.
    :raises DataError: naming the path, if it cannot be opened or written
        (for instance a read-only collection folder: choose another path), is
        not a review store, or was written by a newer schema.
    """

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self._connection: sqlite3.Connection
        self._open = False
        check_store_file(self.path)  # a foreign or damaged file is refused before SQLite can convert it
        if read_only:
            self._open_read_only()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; every write below is an explicit one.
            self._connection = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self._open = True
            # Another Slicer instance may hold the write lock for a moment: wait for it rather than fail.
            self._connection.execute("PRAGMA busy_timeout=30000")
            # WAL keeps readers and one writer apart; where WAL is unavailable (some network shares)
            # SQLite stays in its rollback journal, which is just as durable with synchronous=FULL.
            self.journal_mode = str(self._connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            # FULL: a commit returns only after the log is synced to disk, so a crash keeps it.
            self._connection.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (OSError, sqlite3.Error) as error:
            self._close_quietly()
            raise DataError(self.path, f"cannot be opened as a review store ({error}); "
                                       "choose a writable location for the review store") from error
        except DataError:
            self._close_quietly()
            raise

    def _open_read_only(self) -> None:
        """Open for reading only: no WAL switch, no migration, no byte of the file written."""
        self._connection = connect_read_only(self.path)
        self._open = True
        self.journal_mode = "read-only"
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            self._close_quietly()
            newer = version > SCHEMA_VERSION
            raise DataError(self.path, f"has review store schema {version}; this version reads {SCHEMA_VERSION}"
                                       + (" (update the extension)" if newer else " (open it once for writing to "
                                                                                    "upgrade it)"))

    def _close_quietly(self) -> None:
        if self._open:
            self._open = False
            try:
                self._connection.close()
            except sqlite3.Error:
                pass

    def _migrate(self) -> None:
        """Bring the schema up to :data:`SCHEMA_VERSION`, one step at a time, in one transaction."""
        with self._transaction():
            version = self._connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DataError(self.path, f"was written by a newer version of the extension (review store schema "
                                           f"{version}, this version reads up to {SCHEMA_VERSION}); update it")
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](self._connection)
                version += 1
            # PRAGMA takes no parameters; the value is an int from this module.
            self._connection.execute(f"PRAGMA user_version={int(version)}")

    class _Transaction:
        def __init__(self, connection: sqlite3.Connection) -> None:
            self.connection = connection

        def __enter__(self) -> sqlite3.Connection:
            # IMMEDIATE takes the write lock up front, so concurrent writers queue instead of deadlocking.
            self.connection.execute("BEGIN IMMEDIATE")
            return self.connection

        def __exit__(self, exc_type: object, *rest: object) -> None:
            if exc_type is not None:
                self.connection.execute("ROLLBACK")
                return
            try:
                self.connection.execute("COMMIT")
            except sqlite3.Error:
                # A failed COMMIT (disk full, I/O error) leaves the transaction open: end it, then report.
                if self.connection.in_transaction:
                    self.connection.execute("ROLLBACK")
                raise

    def _transaction(self) -> "ReviewStore._Transaction":
        return ReviewStore._Transaction(self._connection)

    # ------------------------------------------------------------------ writing
    def set_verdict(self, case_id: str, annotation: str, verdict: str, comment: str, reviewer: str) -> ReviewRecord:
        """Record a verdict; it is durable on disk when this returns."""
        if not case_id:
            raise ValueError("a verdict needs a case ID")
        if not reviewer or not reviewer.strip():
            raise ValueError("a verdict needs the reviewer's name")
        record = ReviewRecord(case_id, annotation or "", normalise_verdict(verdict), comment or "",
                              reviewer.strip(), _now())
        values = (record.case_id, record.annotation, record.verdict, record.comment, record.reviewer, record.time)
        try:
            with self._transaction() as connection:
                connection.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)", values)
                connection.execute("INSERT INTO history (case_id, annotation, verdict, comment, reviewer, time)"
                                   " VALUES (?, ?, ?, ?, ?, ?)", values)
        except sqlite3.Error as error:
            raise DataError(self.path, f"the verdict could not be saved ({error})") from error
        return record

    # ------------------------------------------------------------------ reading
    def verdict(self, case_id: str, annotation: str = "") -> Optional[ReviewRecord]:
        """The current verdict on a case (or one annotation), or None."""
        row = self._connection.execute(
            "SELECT case_id, annotation, verdict, comment, reviewer, time FROM verdicts"
            " WHERE case_id = ? AND annotation = ?", (case_id, annotation or "")).fetchone()
        return ReviewRecord(*row) if row else None

    def verdicts(self, case_id: Optional[str] = None) -> List[ReviewRecord]:
        """Current verdicts, of one case or of all, ordered by case and annotation."""
        query = "SELECT case_id, annotation, verdict, comment, reviewer, time FROM verdicts"
        rows = (self._connection.execute(query + " WHERE case_id = ? ORDER BY annotation", (case_id,))
                if case_id is not None else self._connection.execute(query + " ORDER BY case_id, annotation"))
        return [ReviewRecord(*row) for row in rows]

    def history(self, case_id: Optional[str] = None) -> List[ReviewRecord]:
        """Every change ever recorded (of one case, or all), oldest first."""
        query = "SELECT case_id, annotation, verdict, comment, reviewer, time FROM history"
        rows = (self._connection.execute(query + " WHERE case_id = ? ORDER BY id", (case_id,))
                if case_id is not None else self._connection.execute(query + " ORDER BY id"))
        return [ReviewRecord(*row) for row in rows]

    def reviewed_case_ids(self) -> List[str]:
        """Cases with a whole-case verdict."""
        rows = self._connection.execute("SELECT case_id FROM verdicts WHERE annotation = '' ORDER BY case_id")
        return [row[0] for row in rows]

    def progress(self, case_ids: Sequence[str]) -> Tuple[int, int]:
        """(how many of ``case_ids`` have a whole-case verdict, how many there are)."""
        reviewed = set(self.reviewed_case_ids())
        return sum(1 for case_id in case_ids if case_id in reviewed), len(case_ids)

    def next_unreviewed(self, case_ids: Sequence[str], after: Optional[str] = None) -> Optional[str]:
        """The first case after ``after`` (wrapping round) without a whole-case verdict, or None."""
        reviewed = set(self.reviewed_case_ids())
        start = case_ids.index(after) + 1 if after in case_ids else 0
        for offset in range(len(case_ids)):
            case_id = case_ids[(start + offset) % len(case_ids)]
            if case_id not in reviewed:
                return case_id
        return None

    def export_csv(self, path: Path, case_ids: Optional[Iterable[str]] = None) -> Path:
        """Write the current verdicts as CSV, one row per case and annotation.

        Cases in ``case_ids`` without any verdict get a row with empty verdict
        columns, so the file lists every case that still needs review.
        """
        from .report import write_csv

        rows = []
        seen = set()
        for record in self.verdicts():
            rows.append([record.case_id, record.annotation, record.verdict, record.comment, record.reviewer,
                         record.time])
            seen.add(record.case_id)
        rows.extend([case_id, "", "", "", "", ""] for case_id in case_ids or [] if case_id not in seen)
        return write_csv(path, REVIEW_STORE_CSV_COLUMNS, rows)

    def close(self) -> None:
        """Close the database (every verdict is already on disk)."""
        self._close_quietly()

    def __enter__(self) -> "ReviewStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
