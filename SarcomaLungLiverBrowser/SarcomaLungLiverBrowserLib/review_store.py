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

import csv
import datetime
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from .errors import DataError

__all__ = ["VERDICTS", "ReviewRecord", "ReviewStore", "default_store_path"]

#: The verdicts a reviewer can give.
VERDICTS = ("accepted", "needs correction", "rejected")

#: File name of the store kept beside a collection.
STORE_FILE_NAME = ".sllb_review.sqlite"

_SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS verdicts ("
    " case_id TEXT NOT NULL, annotation TEXT NOT NULL, verdict TEXT NOT NULL, comment TEXT NOT NULL,"
    " reviewer TEXT NOT NULL, time TEXT NOT NULL, PRIMARY KEY (case_id, annotation))",
    "CREATE TABLE IF NOT EXISTS history ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, case_id TEXT NOT NULL, annotation TEXT NOT NULL,"
    " verdict TEXT NOT NULL, comment TEXT NOT NULL, reviewer TEXT NOT NULL, time TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS history_case ON history (case_id)",
)


def default_store_path(collection_root: Path) -> Path:
    """Where a collection's verdicts are kept unless the user chooses another file."""
    return Path(collection_root) / STORE_FILE_NAME


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


def _normalise_verdict(verdict: str) -> str:
    normalised = verdict.strip().lower().replace("-", " ").replace("_", " ")
    if normalised not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}; got {verdict!r}")
    return normalised


class ReviewStore:
    """A review store in one SQLite file.

    :param path: the database file; created (with its folder) when missing.
    :raises DataError: naming the path, if it cannot be opened or written
        (for instance a read-only collection folder: choose another path).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
            self._connection.execute("PRAGMA busy_timeout=30000")
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (OSError, sqlite3.Error) as error:
            raise DataError(self.path, f"cannot be opened as a review store ({error}); "
                                       "choose a writable location for the review store") from error

    def _migrate(self) -> None:
        with self._transaction():
            version = self._connection.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise DataError(self.path, f"was written by a newer version (schema {version}); update the extension")
            for statement in _SCHEMA:
                self._connection.execute(statement)
            # Future schema changes go here, keyed on the stored version.
            self._connection.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    class _Transaction:
        def __init__(self, connection: sqlite3.Connection) -> None:
            self.connection = connection

        def __enter__(self) -> sqlite3.Connection:
            # IMMEDIATE takes the write lock up front, so concurrent writers queue instead of deadlocking.
            self.connection.execute("BEGIN IMMEDIATE")
            return self.connection

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.connection.execute("ROLLBACK" if exc_type else "COMMIT")

    def _transaction(self) -> "ReviewStore._Transaction":
        return ReviewStore._Transaction(self._connection)

    # ------------------------------------------------------------------ writing
    def set_verdict(self, case_id: str, annotation: str, verdict: str, comment: str, reviewer: str) -> ReviewRecord:
        """Record a verdict; it is durable on disk when this returns."""
        if not case_id:
            raise ValueError("a verdict needs a case ID")
        if not reviewer or not reviewer.strip():
            raise ValueError("a verdict needs the reviewer's name")
        record = ReviewRecord(case_id, annotation or "", _normalise_verdict(verdict), comment or "",
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
        """Write the current verdicts as CSV (cases without one get an empty row when listed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        records = self.verdicts()
        with open(path, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(["case_id", "annotation", "verdict", "comment", "reviewer", "time"])
            seen = set()
            for record in records:
                writer.writerow([record.case_id, record.annotation, record.verdict, record.comment,
                                 record.reviewer, record.time])
                seen.add(record.case_id)
            for case_id in case_ids or []:
                if case_id not in seen:
                    writer.writerow([case_id, "", "", "", "", ""])
        return path

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "ReviewStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
