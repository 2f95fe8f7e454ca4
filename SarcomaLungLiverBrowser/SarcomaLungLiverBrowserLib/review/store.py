"""Readers' verdicts, kept in SQLite so that no confirmed verdict is ever lost.

Every :meth:`ReviewStore.set_verdict` is one committed transaction in
write-ahead-log mode with ``synchronous=FULL``: when it returns, the verdict
is on disk and survives a crash or a killed process. Several processes (two
Slicer instances, the command line) may write the same store; SQLite's
locking serialises them and ``busy_timeout`` makes a writer wait rather than
fail. Every change is also appended to a history table, so a verdict that was
changed can be traced.

A review can be a reading study: every verdict belongs to a reader, and
several readers' verdicts on the same case or annotation (an *item*) are kept
side by side, never over each other. An adjudicator records the final verdict
on an item, linked to the reads it settles. :meth:`ReviewStore.as_reader`
gives a blinded reader's view, which shows no other reader's verdict or
comment on an item until the reader has given their own.
"""
from __future__ import annotations

import datetime
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import DataError
from ..text import spell_out_undecodable
from .store_files import check_store_file, connect_read_only

__all__ = ["VERDICTS", "ReviewRecord", "Adjudication", "ReviewStore", "ReaderView", "default_store_path",
           "open_review_store", "store_location_problem", "normalise_verdict", "default_item_type",
           "SCHEMA_VERSION", "MIGRATIONS", "REVIEW_STORE_CSV_COLUMNS"]

#: The verdicts a reviewer can give.
VERDICTS = ("accepted", "needs correction", "rejected")

#: Columns of the verdict export (``sllb review --export-csv``): one row per reader and item.
REVIEW_STORE_CSV_COLUMNS = ["case_id", "annotation", "item_type", "verdict", "comment", "reviewer", "time",
                            "adjudicated_verdict", "adjudicator", "history"]

#: File name of the store kept beside a collection.
STORE_FILE_NAME = ".sllb_review.sqlite"

#: The schema this code writes; stored in the database's ``user_version``.
SCHEMA_VERSION = 2


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


def _readers_version_2(connection: sqlite3.Connection) -> None:
    """Version 1 to 2: one current verdict per reader and item, adjudications, item types, known cases.

    Version 1 kept one current verdict per item (the last writer's), but its
    history holds every change with its reviewer, so each reader's own latest
    verdict, overwritten in version 1 by another reader, is recovered from it.
    """
    connection.execute("ALTER TABLE history ADD COLUMN item_type TEXT NOT NULL DEFAULT ''")
    connection.execute(
        "CREATE TABLE verdicts_by_reader ("
        " case_id TEXT NOT NULL, annotation TEXT NOT NULL, reviewer TEXT NOT NULL, verdict TEXT NOT NULL,"
        " comment TEXT NOT NULL, time TEXT NOT NULL, item_type TEXT NOT NULL DEFAULT '',"
        " history_id INTEGER NOT NULL, PRIMARY KEY (case_id, annotation, reviewer))")
    connection.execute(
        "INSERT INTO verdicts_by_reader (case_id, annotation, reviewer, verdict, comment, time, history_id)"
        " SELECT h.case_id, h.annotation, h.reviewer, h.verdict, h.comment, h.time, h.id FROM history h"
        " WHERE h.id = (SELECT MAX(o.id) FROM history o WHERE o.case_id = h.case_id"
        " AND o.annotation = h.annotation AND o.reviewer = h.reviewer)")
    # A current verdict without its history row (only possible in a hand-edited store) is kept as well.
    connection.execute(
        "INSERT OR IGNORE INTO verdicts_by_reader (case_id, annotation, reviewer, verdict, comment, time, history_id)"
        " SELECT case_id, annotation, reviewer, verdict, comment, time, 0 FROM verdicts")
    connection.execute("DROP TABLE verdicts")
    connection.execute("ALTER TABLE verdicts_by_reader RENAME TO verdicts")
    # Version 1 recorded no item types: derive them as new verdicts without a given type get theirs.
    annotations = [row[0] for row in connection.execute("SELECT DISTINCT annotation FROM history"
                                                         " UNION SELECT DISTINCT annotation FROM verdicts")]
    for annotation in annotations:
        for table in ("verdicts", "history"):
            connection.execute(f"UPDATE {table} SET item_type = ? WHERE annotation = ?",
                               (default_item_type(annotation), annotation))
    connection.execute("CREATE INDEX IF NOT EXISTS history_item ON history (case_id, annotation, reviewer)")
    connection.execute(
        "CREATE TABLE adjudications ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT, case_id TEXT NOT NULL, annotation TEXT NOT NULL,"
        " verdict TEXT NOT NULL, comment TEXT NOT NULL, adjudicator TEXT NOT NULL, time TEXT NOT NULL,"
        " item_type TEXT NOT NULL DEFAULT '')")
    connection.execute("CREATE INDEX adjudications_item ON adjudications (case_id, annotation)")
    # The reads an adjudication settles, as they were when it was recorded (a history row each).
    connection.execute(
        "CREATE TABLE adjudication_reads ("
        " adjudication_id INTEGER NOT NULL REFERENCES adjudications (id),"
        " history_id INTEGER NOT NULL REFERENCES history (id), PRIMARY KEY (adjudication_id, history_id))")
    # The case IDs of a collection folder, so that recording a verdict can check its case ID
    # without detecting and indexing the collection again.
    connection.execute(
        "CREATE TABLE known_cases (root TEXT NOT NULL, collection TEXT NOT NULL, case_id TEXT NOT NULL,"
        " PRIMARY KEY (root, case_id))")


#: Migration hook: ``MIGRATIONS[n]`` upgrades a store from schema ``n`` to ``n + 1`` inside the
#: opening transaction. A later schema adds ``MIGRATIONS[2] = ...`` and raises SCHEMA_VERSION.
MIGRATIONS: Dict[int, Callable[[sqlite3.Connection], None]] = {0: _create_version_1, 1: _readers_version_2}


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
    problem = store_location_problem(collection_root)
    if problem is not None:
        raise DataError(path, problem)
    try:
        return ReviewStore(path)
    except DataError as error:
        raise DataError(path, f"{error.problem}. The review store cannot be kept beside the collection "
                              "(is the collection folder read-only?); choose another file for the review store") \
            from error


def store_location_problem(collection_root: Path) -> Optional[str]:
    """Why the review store cannot be kept beside the collection, or None if it can.

    A collection on a read-only share or disc needs a store elsewhere, chosen by the user.
    """
    folder = Path(collection_root)
    if folder.is_dir() and not os.access(str(folder), os.W_OK):
        return ("the collection folder is read-only, so the review store cannot be kept beside it; "
                "choose another file for the review store")
    return None


@dataclass(frozen=True)
class ReviewRecord:
    """One reader's verdict on a case (``annotation == ""``) or on one of its annotations.

    :param item_type: what the annotation is (``"case"``, a segment class,
        ``"roi"``, a finding's check ...); agreement is also reported per type.
    :param history_id: the history row this verdict was recorded as.
    """

    case_id: str
    annotation: str
    verdict: str
    comment: str
    reviewer: str
    time: str
    item_type: str = ""
    history_id: int = 0


@dataclass(frozen=True)
class Adjudication:
    """The final verdict on an item, given by an adjudicator after reading every reader's verdict.

    :param settles: the reads it settles, as they were when it was recorded.
    """

    id: int
    case_id: str
    annotation: str
    verdict: str
    comment: str
    adjudicator: str
    time: str
    item_type: str
    settles: Tuple[ReviewRecord, ...]


def default_item_type(annotation: str) -> str:
    """The type of an item when the caller names none: ``"case"`` for the whole case, else the
    annotation's name without its number (``"Tumor_8"`` and ``"Tumor 2"`` are both ``"Tumor"``)."""
    if not annotation:
        return "case"
    stem = re.sub(r"[\s_\-]*\d+$", "", annotation.strip())
    return stem or annotation.strip()


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
        #: True when opened for reading only (reports, exports): writes are refused by SQLite.
        self.read_only = read_only
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
    def set_verdict(self, case_id: str, annotation: str, verdict: str, comment: str, reviewer: str,
                    item_type: str = "") -> ReviewRecord:
        """Record ``reviewer``'s verdict on an item; durable on disk when this returns.

        It replaces only this reader's own earlier verdict on the item (which
        stays in the history); other readers' verdicts are untouched.
        """
        if not case_id:
            raise ValueError("a verdict needs a case ID")
        if not reviewer or not reviewer.strip():
            raise ValueError("a verdict needs the reviewer's name")
        annotation = annotation or ""
        item_type = item_type or default_item_type(annotation)
        values = (case_id, annotation, normalise_verdict(verdict), comment or "", reviewer.strip(), _now(), item_type)
        try:
            with self._transaction() as connection:
                cursor = connection.execute(
                    "INSERT INTO history (case_id, annotation, verdict, comment, reviewer, time, item_type)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", values)
                history_id = int(cursor.lastrowid)
                connection.execute(
                    "INSERT OR REPLACE INTO verdicts (case_id, annotation, verdict, comment, reviewer, time,"
                    " item_type, history_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values + (history_id,))
        except sqlite3.Error as error:
            raise DataError(self.path, f"the verdict could not be saved ({error})") from error
        return ReviewRecord(*values, history_id=history_id)

    def adjudicate(self, case_id: str, annotation: str, verdict: str, comment: str, adjudicator: str) -> Adjudication:
        """Record the final verdict on an item, linked to every reader's current verdict on it.

        :raises ValueError: if nobody has read the item yet, or the adjudicator
            is one of its readers (an adjudicator settles other people's reads).
        """
        if not adjudicator or not adjudicator.strip():
            raise ValueError("an adjudication needs the adjudicator's name")
        adjudicator = adjudicator.strip()
        annotation = annotation or ""
        verdict = normalise_verdict(verdict)
        try:
            with self._transaction() as connection:
                reads = self._reads(case_id, annotation)
                if not reads:
                    raise ValueError(f"{case_id} {annotation or '(whole case)'}: no reader has given a verdict "
                                     "yet, so there is nothing to adjudicate")
                if any(read.reviewer == adjudicator for read in reads):
                    raise ValueError(f"{adjudicator} read {case_id} {annotation or '(whole case)'} and so cannot "
                                     "adjudicate it")
                time = _now()
                item_type = reads[0].item_type
                cursor = connection.execute(
                    "INSERT INTO adjudications (case_id, annotation, verdict, comment, adjudicator, time, item_type)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", (case_id, annotation, verdict, comment or "", adjudicator,
                                                      time, item_type))
                adjudication_id = int(cursor.lastrowid)
                connection.executemany("INSERT INTO adjudication_reads VALUES (?, ?)",
                                       [(adjudication_id, read.history_id) for read in reads])
        except sqlite3.Error as error:
            raise DataError(self.path, f"the adjudication could not be saved ({error})") from error
        return Adjudication(adjudication_id, case_id, annotation, verdict, comment or "", adjudicator, time,
                            item_type, tuple(reads))

    def record_known_cases(self, collection_root: Path, collection_key: str, case_ids: Sequence[str]) -> None:
        """Remember the case IDs found in a collection folder (replacing what was remembered for it)."""
        root = _root_key(collection_root)
        try:
            with self._transaction() as connection:
                connection.execute("DELETE FROM known_cases WHERE root = ?", (root,))
                connection.executemany("INSERT OR IGNORE INTO known_cases VALUES (?, ?, ?)",
                                       [(root, collection_key, case_id) for case_id in case_ids])
        except sqlite3.Error as error:
            raise DataError(self.path, f"the case list could not be saved ({error})") from error

    # ------------------------------------------------------------------ reading
    _RECORD = "case_id, annotation, verdict, comment, reviewer, time, item_type, history_id"

    def _records(self, query: str, parameters: Sequence[object] = ()) -> List[ReviewRecord]:
        return [ReviewRecord(*row) for row in self._connection.execute(query, tuple(parameters))]

    def _reads(self, case_id: str, annotation: str) -> List[ReviewRecord]:
        return self._records(f"SELECT {self._RECORD} FROM verdicts WHERE case_id = ? AND annotation = ?"
                             " ORDER BY reviewer", (case_id, annotation))

    def reads(self, case_id: str, annotation: str = "") -> List[ReviewRecord]:
        """Every reader's current verdict on one item, side by side (ordered by reader)."""
        return self._reads(case_id, annotation or "")

    def verdict(self, case_id: str, annotation: str = "", reader: Optional[str] = None) -> Optional[ReviewRecord]:
        """The verdict on a case (or one annotation), or None.

        With ``reader``: that reader's own. Without: the adjudicated verdict if
        there is one (as a record by the adjudicator), else the latest read.
        """
        annotation = annotation or ""
        if reader is not None:
            found = self._records(f"SELECT {self._RECORD} FROM verdicts WHERE case_id = ? AND annotation = ?"
                                  " AND reviewer = ?", (case_id, annotation, reader.strip()))
            return found[0] if found else None
        adjudication = self.adjudication(case_id, annotation)
        if adjudication is not None:
            return ReviewRecord(case_id, annotation, adjudication.verdict, adjudication.comment,
                                adjudication.adjudicator, adjudication.time, adjudication.item_type)
        found = self._records(f"SELECT {self._RECORD} FROM verdicts WHERE case_id = ? AND annotation = ?"
                              " ORDER BY history_id DESC, time DESC LIMIT 1", (case_id, annotation))
        return found[0] if found else None

    def verdicts(self, case_id: Optional[str] = None, reader: Optional[str] = None) -> List[ReviewRecord]:
        """Current verdicts, one per reader and item (of one case and/or one reader, or all),
        ordered by case, annotation and reader."""
        conditions, parameters = _where(case_id=case_id, reviewer=reader)
        return self._records(f"SELECT {self._RECORD} FROM verdicts{conditions}"
                             " ORDER BY case_id, annotation, reviewer", parameters)

    def history(self, case_id: Optional[str] = None, reader: Optional[str] = None) -> List[ReviewRecord]:
        """Every verdict ever recorded (of one case and/or one reader, or all), oldest first."""
        conditions, parameters = _where(case_id=case_id, reviewer=reader)
        return self._records("SELECT case_id, annotation, verdict, comment, reviewer, time, item_type, id"
                             f" FROM history{conditions} ORDER BY id", parameters)

    def readers(self) -> List[str]:
        """Everyone who has given a verdict, by name."""
        return [row[0] for row in self._connection.execute("SELECT DISTINCT reviewer FROM verdicts ORDER BY reviewer")]

    def _adjudication(self, row: Sequence[Any]) -> Adjudication:
        settles = self._records(
            "SELECT h.case_id, h.annotation, h.verdict, h.comment, h.reviewer, h.time, h.item_type, h.id"
            " FROM adjudication_reads r JOIN history h ON h.id = r.history_id WHERE r.adjudication_id = ?"
            " ORDER BY h.reviewer", (row[0],))
        return Adjudication(*row, settles=tuple(settles))

    _ADJUDICATION = "id, case_id, annotation, verdict, comment, adjudicator, time, item_type"

    def adjudication(self, case_id: str, annotation: str = "") -> Optional[Adjudication]:
        """The latest adjudication of an item, or None."""
        row = self._connection.execute(
            f"SELECT {self._ADJUDICATION} FROM adjudications WHERE case_id = ? AND annotation = ?"
            " ORDER BY id DESC LIMIT 1", (case_id, annotation or "")).fetchone()
        return self._adjudication(row) if row else None

    def adjudications(self, case_id: Optional[str] = None, every: bool = False) -> List[Adjudication]:
        """The latest adjudication of each item (``every``: all of them, oldest first)."""
        conditions, parameters = _where(case_id=case_id)
        latest = "" if every else (" AND" if conditions else " WHERE") + (
            " id = (SELECT MAX(o.id) FROM adjudications o WHERE o.case_id = adjudications.case_id"
            " AND o.annotation = adjudications.annotation)")
        rows = self._connection.execute(f"SELECT {self._ADJUDICATION} FROM adjudications{conditions}{latest}"
                                        " ORDER BY id", parameters).fetchall()
        return [self._adjudication(row) for row in rows]

    def known_cases(self, collection_root: Path) -> Optional[Tuple[str, List[str]]]:
        """(collection key, case IDs) last recorded for a collection folder, or None."""
        rows = self._connection.execute("SELECT collection, case_id FROM known_cases WHERE root = ? ORDER BY rowid",
                                        (_root_key(collection_root),)).fetchall()
        if not rows:
            return None
        return rows[0][0], [row[1] for row in rows]

    def reviewed_case_ids(self, reader: Optional[str] = None) -> List[str]:
        """Cases with a whole-case verdict (by ``reader``, or by anyone)."""
        conditions, parameters = _where(reviewer=reader)
        extra = " AND" if conditions else " WHERE"
        rows = self._connection.execute(f"SELECT DISTINCT case_id FROM verdicts{conditions}{extra} annotation = ''"
                                        " ORDER BY case_id", parameters)
        return [row[0] for row in rows]

    def progress(self, case_ids: Sequence[str], reader: Optional[str] = None) -> Tuple[int, int]:
        """(how many of ``case_ids`` have a whole-case verdict (by ``reader``), how many there are)."""
        reviewed = set(self.reviewed_case_ids(reader))
        return sum(1 for case_id in case_ids if case_id in reviewed), len(case_ids)

    def next_unreviewed(self, case_ids: Sequence[str], after: Optional[str] = None,
                        reader: Optional[str] = None) -> Optional[str]:
        """The first case after ``after`` (wrapping round) without a whole-case verdict (by ``reader``), or None."""
        reviewed = set(self.reviewed_case_ids(reader))
        case_ids = list(case_ids)
        start = case_ids.index(after) + 1 if after in case_ids else 0
        for offset in range(len(case_ids)):
            case_id = case_ids[(start + offset) % len(case_ids)]
            if case_id not in reviewed:
                return case_id
        return None

    def as_reader(self, reader: str, blinded: bool = True) -> "ReaderView":
        """This store as ``reader`` sees it; blinded, other readers' verdicts on an item stay hidden until
        the reader has given their own on it."""
        return ReaderView(self, reader, blinded)

    def close(self) -> None:
        """Close the database (every verdict is already on disk)."""
        self._close_quietly()

    def __enter__(self) -> "ReviewStore":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _root_key(collection_root: Path) -> str:
    """One spelling of a collection folder, however it was given (a byte of its path that is not UTF-8 written
    out, as SQLite text must be UTF-8: see text.py)."""
    return spell_out_undecodable(Path(collection_root).expanduser().resolve())


def _where(**conditions: Optional[str]) -> Tuple[str, Tuple[str, ...]]:
    """`` WHERE a = ? AND b = ?`` for the conditions that are not None, and their values."""
    given = [(column, value) for column, value in conditions.items() if value is not None]
    if not given:
        return "", ()
    return " WHERE " + " AND ".join(f"{column} = ?" for column, _ in given), tuple(str(v) for _, v in given)


class ReaderView:
    """The review store as one reader sees it (see :meth:`ReviewStore.as_reader`).

    Blinded, every read method leaves out other readers' verdicts, comments,
    history and adjudications on an item until this reader has a verdict of
    their own on it, so no answer can be copied or anchored on.
    """

    def __init__(self, store: ReviewStore, reader: str, blinded: bool = True) -> None:
        if not reader or not reader.strip():
            raise ValueError("a reader's view needs the reader's name")
        self.store = store
        self.reader = reader.strip()
        self.blinded = blinded

    def _opened_items(self, case_id: Optional[str] = None) -> set:
        """Items on which this reader has given a verdict (so others' verdicts may be shown)."""
        return {(record.case_id, record.annotation) for record in self.store.verdicts(case_id, reader=self.reader)}

    def _visible(self, records: Iterable[Any], case_id: Optional[str] = None) -> List[Any]:
        records = list(records)
        if not self.blinded:
            return records
        opened = self._opened_items(case_id)
        return [record for record in records
                if getattr(record, "reviewer", None) == self.reader or (record.case_id, record.annotation) in opened]

    def set_verdict(self, case_id: str, annotation: str, verdict: str, comment: str,
                    item_type: str = "") -> ReviewRecord:
        """Record this reader's verdict."""
        return self.store.set_verdict(case_id, annotation, verdict, comment, self.reader, item_type=item_type)

    def verdict(self, case_id: str, annotation: str = "") -> Optional[ReviewRecord]:
        """This reader's own verdict on the item, or None."""
        return self.store.verdict(case_id, annotation, reader=self.reader)

    def reads(self, case_id: str, annotation: str = "") -> List[ReviewRecord]:
        """Every reader's verdict on the item, if this reader may see them; else only their own."""
        return self._visible(self.store.reads(case_id, annotation), case_id)

    def verdicts(self, case_id: Optional[str] = None) -> List[ReviewRecord]:
        return self._visible(self.store.verdicts(case_id), case_id)

    def history(self, case_id: Optional[str] = None) -> List[ReviewRecord]:
        return self._visible(self.store.history(case_id), case_id)

    def adjudication(self, case_id: str, annotation: str = "") -> Optional[Adjudication]:
        found = self._visible([adjudication for adjudication in [self.store.adjudication(case_id, annotation)]
                               if adjudication is not None], case_id)
        return found[0] if found else None

    def adjudications(self, case_id: Optional[str] = None) -> List[Adjudication]:
        return self._visible(self.store.adjudications(case_id), case_id)

    def progress(self, case_ids: Sequence[str]) -> Tuple[int, int]:
        return self.store.progress(case_ids, reader=self.reader)

    def next_unreviewed(self, case_ids: Sequence[str], after: Optional[str] = None) -> Optional[str]:
        return self.store.next_unreviewed(case_ids, after, reader=self.reader)
