"""The QA journal: each case's QA result on disk as soon as it is known, so an interrupted run resumes.

A QA run over a large collection (or an archive on a cluster) can be killed
part-way: by the user, a crash, a machine going down. The journal is an SQLite
file in the report folder (``qa-journal.sqlite``) that receives every case's
findings, metrics, snapshot and notes in its own transaction the moment the
case is done, whatever order the workers finish in. Re-running QA into the same
folder reads it back and checks again only the cases whose result is missing
or whose inputs changed.

"The same inputs" is a fingerprint per case: the collection key, the case
record as discovery found it (its files and folders), the size and
modification time of every file under the case's source paths, the same for
the files directly in the collection folder (published tables, clinical
spreadsheets that every case is compared with), whether a snapshot was asked
for, and the journal format. A changed, added or removed file changes it, and
the case is checked again. A newer version of this extension is not part of
it: after an upgrade, run once with ``--no-resume``.

The journal holds plain JSON, never pickles: a report folder handed over by
someone else must not be able to run code when QA resumes in it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sqlite3
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..errors import DataError
from ..findings import Finding
from ..registry import CaseInfo

__all__ = ["JOURNAL_NAME", "QAJournal", "case_fingerprint", "encode_case_result", "decode_case_result"]

#: File name of the journal inside the report folder.
JOURNAL_NAME = "qa-journal.sqlite"
#: Bump when the meaning of a recorded result changes; older records are then never reused.
_FORMAT = 1
_APPLICATION_ID = 0x534C4251  # "SLBQ": tells our journal from any other SQLite file


def _file_stats(path: Path) -> Iterator[Tuple[str, int, int]]:
    """(path, size, mtime_ns) of ``path`` if a file, else of every file below it (sorted); nothing if missing."""
    try:
        status = path.stat()
    except OSError:
        return
    if not path.is_dir():
        yield str(path), status.st_size, status.st_mtime_ns
        return
    for folder, folder_names, file_names in os.walk(path):
        folder_names.sort()
        for name in sorted(file_names):
            file_path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                file_status = os.stat(file_path)
                yield file_path, file_status.st_size, file_status.st_mtime_ns


def _collection_file_stats(root: Path) -> List[Tuple[str, int, int]]:
    """The files directly in the collection folder: tables every case is checked against live there."""
    stats = []
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(root), key=lambda item: item.name):
            with contextlib.suppress(OSError):
                if entry.is_file():
                    status = entry.stat()
                    stats.append((entry.name, status.st_size, status.st_mtime_ns))
    return stats


def case_fingerprint(collection_key: str, case: CaseInfo, snapshot: bool,
                     collection_files: Optional[Sequence[Tuple[str, int, int]]] = None) -> str:
    """A SHA-256 over everything a case's QA result depends on (see the module docstring).

    :param collection_files: :func:`collection_files` of the case's collection
        folder, computed once for all cases (computed here when None).
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([_FORMAT, collection_key, repr(case), bool(snapshot)]).encode("utf-8", "surrogatepass"))
    sources = case.source_paths() if callable(getattr(case, "source_paths", None)) else []
    for source in sorted({str(path) for path in sources}):
        for stat in _file_stats(Path(source)):
            digest.update(json.dumps(stat).encode("utf-8", "surrogatepass"))
    files = collection_files if collection_files is not None else _collection_file_stats(Path(case.root))
    digest.update(json.dumps(list(files)).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def collection_files(root: Path) -> List[Tuple[str, int, int]]:
    """(name, size, mtime_ns) of every file directly in the collection folder, for :func:`case_fingerprint`."""
    return _collection_file_stats(Path(root))


# ---------------------------------------------------------------------- encoding
def _plain(value: Any) -> Any:
    """A metric value as JSON can hold it (NumPy scalars and arrays become numbers and lists)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return {_NON_FINITE: repr(value)}  # JSON has no nan/inf; undefined measures (e.g. HD95) are nan
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


#: The key of a non-finite float in the journal's JSON (``{"__non_finite_float__": "nan"}``).
_NON_FINITE = "__non_finite_float__"


def _unplain(value: Any) -> Any:
    """A metric value as :func:`_plain` wrote it, non-finite floats restored."""
    if isinstance(value, dict):
        if set(value) == {_NON_FINITE}:
            return float(value[_NON_FINITE])
        return {key: _unplain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unplain(item) for item in value]
    return value


def _encode_finding(finding: Finding) -> Dict[str, Any]:
    document = dataclasses.asdict(finding)
    if finding.ras is not None:
        document["ras"] = [float(value) for value in finding.ras]
    if isinstance(finding.value, float) and not math.isfinite(finding.value):
        document["value"] = {"float": repr(finding.value)}  # JSON has no inf/nan
    return document


def _decode_finding(document: Dict[str, Any]) -> Finding:
    values = dict(document)
    if values.get("ras") is not None:
        values["ras"] = tuple(values["ras"])
    if isinstance(values.get("value"), dict):
        values["value"] = float(values["value"]["float"])
    return Finding(**values)


def encode_case_result(result: Any, notes: Sequence[str]) -> str:
    """A :class:`~.qa.CaseQA` (without its case record, which the run has) and its run notes as JSON."""
    unattributed = [index for index, finding in enumerate(result.findings)
                    if any(finding is other for other in result.unattributed)]
    return json.dumps({
        "findings": [_encode_finding(finding) for finding in result.findings],
        "unattributed": unattributed,
        "metrics": _plain(result.metrics),
        "loaded": bool(result.loaded),
        "snapshot": str(result.snapshot) if result.snapshot is not None else None,
        "notes": list(notes),
    }, allow_nan=False)


def decode_case_result(case: CaseInfo, text: str) -> Tuple[Any, List[str]]:
    """The :class:`~.qa.CaseQA` and notes :func:`encode_case_result` wrote, for ``case``."""
    from .qa import CaseQA

    document = json.loads(text)
    findings = [_decode_finding(item) for item in document["findings"]]
    result = CaseQA(case, findings, _unplain(dict(document["metrics"])), loaded=bool(document["loaded"]),
                    snapshot=Path(document["snapshot"]) if document["snapshot"] else None)
    result.unattributed = [findings[index] for index in document["unattributed"]]
    return result, [str(note) for note in document["notes"]]


# ---------------------------------------------------------------------- the file
class QAJournal:
    """The journal file of one report folder (created when missing).

    :raises DataError: naming the file, if it exists and is not a QA journal
        (it is left untouched), or cannot be opened.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        existed = self.path.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        except (OSError, sqlite3.Error) as error:
            raise DataError(self.path, f"cannot be opened as the QA journal ({error})") from error
        try:
            self._set_up(existed)
        except sqlite3.DatabaseError as error:
            self._connection.close()
            raise DataError(self.path, f"is not a QA journal ({error}); choose another report folder "
                                       "or remove the file") from error

    def _set_up(self, existed: bool) -> None:
        application_id = self._connection.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in self._connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if existed and (application_id != _APPLICATION_ID or "case_results" not in tables) and tables:
            raise sqlite3.DatabaseError("it holds other tables")
        self._connection.execute("PRAGMA synchronous=FULL")  # a recorded case survives a power cut
        self._connection.execute(f"PRAGMA application_id={_APPLICATION_ID}")
        self._connection.execute("CREATE TABLE IF NOT EXISTS case_results (case_id TEXT PRIMARY KEY, "
                                 "fingerprint TEXT NOT NULL, result TEXT NOT NULL)")

    def recorded(self, case_id: str, fingerprint: str) -> Optional[str]:
        """The encoded result of ``case_id`` if it was recorded for these inputs, else None."""
        row = self._connection.execute("SELECT fingerprint, result FROM case_results WHERE case_id = ?",
                                       (case_id,)).fetchone()
        if row is None or row[0] != fingerprint:
            return None
        return row[1]

    def record(self, case_id: str, fingerprint: str, encoded_result: str) -> None:
        """Keep a case's result (replacing an older one); it is on disk when this returns."""
        with self._connection:
            self._connection.execute("BEGIN IMMEDIATE")
            self._connection.execute("INSERT OR REPLACE INTO case_results VALUES (?, ?, ?)",
                                     (case_id, fingerprint, encoded_result))

    def case_ids(self) -> List[str]:
        """Every case with a recorded result (whatever its inputs were), sorted."""
        return [row[0] for row in self._connection.execute("SELECT case_id FROM case_results ORDER BY case_id")]

    def forget(self, case_ids: Optional[Iterable[str]] = None) -> None:
        """Drop the results of ``case_ids`` (every case when None): the next run checks them again."""
        with self._connection:
            self._connection.execute("BEGIN IMMEDIATE")
            if case_ids is None:
                self._connection.execute("DELETE FROM case_results")
            else:
                self._connection.executemany("DELETE FROM case_results WHERE case_id = ?",
                                             [(case_id,) for case_id in case_ids])

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "QAJournal":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
