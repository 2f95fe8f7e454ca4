"""Is a download complete? Compare a folder of DICOM files with Imaging Data Commons' index.

The PyPI package ``idc-index-data`` (pinned: :data:`IDC_INDEX_DATA_REQUIREMENT`)
ships IDC's series-level index offline (``idc_index.parquet``, one row per
series: collection, patient, study, modality, description, analysis result,
instance count; notes ``idc_tables.md``). It is an optional dependency of
this extension (79 MB wheel), installed at first use.

What is compared, per collection and patient:

* the series IDC lists against the series on disk (by SeriesInstanceUID,
  read from the headers; file names and folders are never trusted, so the
  NBIA and idc-index layouts are both understood);
* per series, distinct SOPInstanceUIDs on disk against IDC's
  ``instanceCount`` (the index has no instance UIDs, so *which* instances are
  missing cannot be told, only how many);
* series of analysis results (``analysis_result_id``: the Lung SR boxes,
  BAMF's AI SEGs) are reported per patient and analysis result, apart from
  the collection's own series;
* DICOM files whose series IDC does not list (generated data, local
  derivations, another archive's re-identification) and files that cannot be
  read as DICOM headers.

Which patients are expected: the ``patients`` given; else the selection a
``sllb download`` wrote beside the data (:data:`SELECTION_FILE`); else every
patient of the collections the series on disk belong to.
"""
from __future__ import annotations

import functools
import html
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ..errors import DataError
from ..formats.atomic import write_text_atomically
from ..formats.dicom_series import scan_folder
from ..progress import ProgressCallback, report, sub_progress

__all__ = [
    "IDC_INDEX_DATA_REQUIREMENT",
    "SELECTION_FILE",
    "COLUMNS",
    "STATUSES",
    "IndexUnavailable",
    "DiskSeries",
    "CompletenessReport",
    "index_parquet_path",
    "import_or_install",
    "install_requirement",
    "read_index",
    "scan_disk",
    "read_selection",
    "write_selection",
    "check_completeness",
]

#: The pinned index release (IDC data release v25); idc-index 0.13.4 pins the same.
IDC_INDEX_DATA_REQUIREMENT = "idc-index-data==25.0.5"

#: What ``sllb download`` records beside the data: the collection and patients asked for.
SELECTION_FILE = ".sllb_idc_selection.json"

#: The index columns this module reads.
INDEX_COLUMNS = ["collection_id", "analysis_result_id", "PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                 "Modality", "SeriesDescription", "instanceCount", "series_size_MB"]

#: Columns of the report table.
COLUMNS = ["collection_id", "PatientID", "status", "SeriesInstanceUID", "Modality", "SeriesDescription",
           "analysis_result_id", "expected_instances", "instances_on_disk", "detail"]

STATUS_PATIENT_MISSING = "patient missing"
STATUS_SERIES_MISSING = "series missing"
STATUS_INSTANCES_MISSING = "instances missing"
STATUS_EXTRA_INSTANCES = "more instances than IDC lists"
STATUS_ANALYSIS_MISSING = "analysis result missing"
STATUS_UNKNOWN_SERIES = "series unknown to IDC"
STATUS_UNREADABLE = "unreadable file"
STATUSES = (STATUS_PATIENT_MISSING, STATUS_SERIES_MISSING, STATUS_INSTANCES_MISSING, STATUS_EXTRA_INSTANCES,
            STATUS_ANALYSIS_MISSING, STATUS_UNKNOWN_SERIES, STATUS_UNREADABLE)


class IndexUnavailable(RuntimeError):
    """``idc-index-data`` is not installed (and was not to be installed); the message says how to get it."""


# ---------------------------------------------------------------------- the index
def install_requirement(requirement: str) -> None:
    """``pip install`` one pinned requirement into the running Python (Slicer's included).

    :raises IndexUnavailable: when pip fails; its output is in the message.
    """
    command = [sys.executable, "-m", "pip", "install", requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise IndexUnavailable(f"'{' '.join(command)}' failed ({result.returncode}):\n{result.stderr[-2000:]}")


def import_or_install(module_name: str, requirement: str, what: str, install: bool) -> Any:
    """Import an optional module, pip-installing its pinned ``requirement`` first when asked.

    :param what: the module's role in messages ("IDC's index").
    :raises IndexUnavailable: when the module is missing and ``install`` is False (the message
        names the pip command), or when pip fails.
    """
    import importlib

    try:
        return importlib.import_module(module_name)
    except ImportError:
        if not install:
            raise IndexUnavailable(f"{what} is not installed; install it with: "
                                   f"{sys.executable} -m pip install {requirement}") from None
    install_requirement(requirement)
    importlib.invalidate_caches()
    return importlib.import_module(module_name)


def index_parquet_path(install: bool = False) -> Path:
    """Where ``idc-index-data`` keeps ``idc_index.parquet``; installs the pinned release first if asked.

    :raises IndexUnavailable: when the package is missing and ``install`` is False.
    """
    idc_index_data = import_or_install("idc_index_data", IDC_INDEX_DATA_REQUIREMENT, "IDC's index", install)
    path = idc_index_data.IDC_INDEX_PARQUET_FILEPATH
    if path is None or not Path(path).is_file():
        raise IndexUnavailable(f"idc-index-data {getattr(idc_index_data, '__version__', '?')} has no idc_index.parquet")
    return Path(path)


def index_version() -> str:
    """The installed ``idc-index-data`` version ("" when absent)."""
    try:
        import idc_index_data
    except ImportError:
        return ""
    return str(getattr(idc_index_data, "__version__", ""))


def read_index(series_uids: Optional[Iterable[str]] = None, collections: Optional[Iterable[str]] = None,
               path: Optional[Path] = None, extra_columns: Sequence[str] = ()) -> Any:
    """Rows of IDC's series index for some series and/or collections, as a DataFrame.

    Filters are pushed into the parquet reader, so only the matching rows
    become Python objects (the whole file is 1 million series). The last few
    results are kept (a plan, then its verification, read the same rows).

    :param extra_columns: index columns wanted besides :data:`INDEX_COLUMNS`.
    """
    path = Path(path) if path is not None else index_parquet_path()
    columns = tuple([*INDEX_COLUMNS, *[c for c in extra_columns if c not in INDEX_COLUMNS]])
    uids = frozenset(series_uids) if series_uids is not None else None
    chosen = frozenset(collections) if collections is not None else None
    return _read_index_cached(str(path), path.stat().st_mtime_ns, uids, chosen, columns).copy()


@functools.lru_cache(maxsize=8)
def _read_index_cached(path: str, mtime_ns: int, series_uids: Optional[frozenset], collections: Optional[frozenset],
                       columns: Tuple[str, ...]) -> Any:
    import pyarrow.parquet as parquet

    filters: List[Any] = []
    if series_uids is not None:
        filters.append(("SeriesInstanceUID", "in", sorted(series_uids)))
    if collections is not None:
        filters.append(("collection_id", "in", sorted(collections)))
    if any(len(f[2]) == 0 for f in filters):
        frame = parquet.read_schema(path).empty_table().select(list(columns)).to_pandas()
    else:
        frame = parquet.read_table(path, columns=list(columns), filters=[filters] if filters else None).to_pandas()
    frame["analysis_result_id"] = frame["analysis_result_id"].fillna("").astype(str)
    frame["SeriesDescription"] = frame["SeriesDescription"].fillna("").astype(str)
    frame["instanceCount"] = frame["instanceCount"].astype("int64")
    return frame


# ---------------------------------------------------------------------- the disk
@dataclass
class DiskSeries:
    """The files of one series found on disk."""

    series_instance_uid: str
    patient_id: str
    modality: str
    series_description: str
    sop_instance_uids: Set[str] = field(default_factory=set)
    files: int = 0
    folder: str = ""


def scan_disk(folder: Path, progress: Optional[ProgressCallback] = None):
    """(series by SeriesInstanceUID, unreadable-file errors) of every DICOM file below ``folder``."""
    scan = scan_folder(Path(folder), progress)
    series: Dict[str, DiskSeries] = {}
    for instance in scan.instances:
        entry = series.get(instance.series_instance_uid)
        if entry is None:
            entry = series[instance.series_instance_uid] = DiskSeries(
                instance.series_instance_uid, instance.patient_id, instance.modality, instance.series_description,
                folder=str(Path(instance.path).parent))
        entry.sop_instance_uids.add(instance.sop_instance_uid)
        entry.files += 1
    return series, scan.errors


# ---------------------------------------------------------------------- selection
def write_selection(folder: Path, collection_id: str, patients: Optional[Sequence[str]]) -> Path:
    """Record what a download asked for, so a later completeness check expects exactly that."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SELECTION_FILE
    existing = read_selection(folder) or {}
    selections = [s for s in existing.get("selections", []) if s.get("collection_id") != collection_id]
    selections.append({"collection_id": collection_id, "patients": sorted(patients) if patients else None})
    return write_text_atomically(path, json.dumps({"idc_index_data": index_version(), "selections": selections},
                                                   indent=1))


def read_selection(folder: Path) -> Optional[Dict[str, Any]]:
    """The selection recorded by a download, or None.

    :raises DataError: naming the file, when it exists but is not a selection.
    """
    path = Path(folder) / SELECTION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        selections = data["selections"]
        for selection in selections:
            if not isinstance(selection["collection_id"], str):
                raise TypeError("collection_id is not text")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(path, f"is not a download selection ({type(error).__name__}: {error}); "
                              "delete it or pass --collection/--patients") from None
    return data


# ---------------------------------------------------------------------- the report
@dataclass
class CompletenessReport:
    """What is missing or unknown, one row per finding (:data:`COLUMNS`), and a per-collection summary."""

    folder: Path
    rows: List[Dict[str, Any]]
    summary: List[Dict[str, Any]]
    index_version: str = ""

    @property
    def table(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=COLUMNS)

    @property
    def summary_table(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.summary, columns=["collection_id", "patients_expected", "patients_on_disk",
                                                   "series_expected", "series_complete", "instances_expected",
                                                   "instances_on_disk", "analysis_results"])

    @property
    def complete(self) -> bool:
        return not any(row["status"] != STATUS_UNKNOWN_SERIES for row in self.rows)

    def rows_with(self, status: str) -> List[Dict[str, Any]]:
        return [row for row in self.rows if row["status"] == status]

    def write_csv(self, path: Path) -> Path:
        """The table as CSV (text cells made spreadsheet-safe, written atomically)."""
        from .report import write_csv

        return write_csv(Path(path), COLUMNS, ([row[c] for c in COLUMNS] for row in self.rows))

    def to_html(self) -> str:
        """An HTML fragment (a section with the summary and the table) for the review report."""
        counts = {status: len(self.rows_with(status)) for status in STATUSES}
        words = ", ".join(f"{count} {status}" for status, count in counts.items() if count) or "nothing missing"
        parts = [f'<section class="completeness"><h2>Completeness against IDC\'s index '
                 f'(idc-index-data {html.escape(self.index_version or "?")})</h2>',
                 f"<p>{html.escape(str(self.folder))}: {html.escape(words)}.</p>",
                 self.summary_table.to_html(index=False, escape=True, na_rep=""),
                 self.table.to_html(index=False, escape=True, na_rep=""), "</section>"]
        return "\n".join(parts)


def _row(collection: str, patient: str, status: str, detail: str, series: Any = None, on_disk: Any = "",
         expected: Any = "") -> Dict[str, Any]:
    return {
        "collection_id": collection, "PatientID": patient, "status": status,
        "SeriesInstanceUID": series["SeriesInstanceUID"] if series is not None else "",
        "Modality": series["Modality"] if series is not None else "",
        "SeriesDescription": series["SeriesDescription"] if series is not None else "",
        "analysis_result_id": series["analysis_result_id"] if series is not None else "",
        "expected_instances": expected, "instances_on_disk": on_disk, "detail": detail,
    }


def _expected_patients(collection: str, index_rows: Any, patients: Optional[Sequence[str]],
                       selection: Optional[Dict[str, Any]]) -> List[str]:
    if patients:
        return sorted(set(patients))
    for chosen in (selection or {}).get("selections", []):
        if chosen.get("collection_id") == collection and chosen.get("patients"):
            return sorted(set(chosen["patients"]))
    return sorted(set(index_rows["PatientID"]))


def _check_patient(collection: str, patient: str, series_rows: Any, disk: Dict[str, DiskSeries]) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    present = [uid for uid in series_rows["SeriesInstanceUID"] if uid in disk]
    if not present:
        return [_row(collection, patient, STATUS_PATIENT_MISSING,
                     f"none of its {len(series_rows)} series is on disk", expected=int(series_rows.instanceCount.sum()),
                     on_disk=0)]
    absent_analysis: Dict[str, List[Any]] = {}
    for _, series in series_rows.iterrows():
        uid, expected = series["SeriesInstanceUID"], int(series["instanceCount"])
        found = disk.get(uid)
        if found is None:
            if series["analysis_result_id"]:
                absent_analysis.setdefault(series["analysis_result_id"], []).append(series)
            else:
                rows.append(_row(collection, patient, STATUS_SERIES_MISSING, "not on disk", series, 0, expected))
            continue
        count = len(found.sop_instance_uids)
        if count < expected:
            rows.append(_row(collection, patient, STATUS_INSTANCES_MISSING,
                             f"{expected - count} of {expected} instance(s) missing in {found.folder}",
                             series, count, expected))
        elif count > expected:
            rows.append(_row(collection, patient, STATUS_EXTRA_INSTANCES,
                             f"{count - expected} more instance(s) than IDC's {expected} in {found.folder} "
                             "(another release of the series?)", series, count, expected))
    for analysis, missing in absent_analysis.items():
        total = int((series_rows["analysis_result_id"] == analysis).sum())
        descriptions = "; ".join(sorted({s["SeriesDescription"] or s["Modality"] for s in missing}))
        rows.append({**_row(collection, patient, STATUS_ANALYSIS_MISSING,
                            f"{len(missing)} of {total} series absent ({descriptions})",
                            expected=int(sum(int(s["instanceCount"]) for s in missing)), on_disk=0),
                     "analysis_result_id": analysis,
                     "Modality": ", ".join(sorted({s["Modality"] for s in missing})),
                     "SeriesInstanceUID": " ".join(s["SeriesInstanceUID"] for s in missing)})
    return rows


def check_completeness(folder: Path, collections: Optional[Sequence[str]] = None,
                       patients: Optional[Sequence[str]] = None, index_path: Optional[Path] = None,
                       progress: Optional[ProgressCallback] = None) -> CompletenessReport:
    """Compare the DICOM files below ``folder`` with IDC's index (see the module text).

    :param collections: IDC collection IDs (e.g. ``lung_pet_ct_dx``); default:
        those of the download selection, else those the series on disk belong to.
    :param patients: the patients expected; default: the download selection, else all.
    :param index_path: ``idc_index.parquet`` to use (default: the installed ``idc-index-data``).
    :raises DataError: naming the folder, if it is not a folder.
    :raises IndexUnavailable: if ``idc-index-data`` is not installed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "is not a folder")
    index_path = Path(index_path) if index_path is not None else index_parquet_path()
    disk, errors = scan_disk(folder, sub_progress(progress, 0.0, 0.7))
    report(progress, "Looking the series up in IDC's index", 0.7)
    known = read_index(series_uids=disk.keys(), path=index_path)
    # Explicit collections and patients win; the download's record is only read to fill what is not given.
    selection = read_selection(folder) if not (collections and patients) else None
    if collections:
        scope = sorted(set(collections))
    elif selection:
        scope = sorted({s["collection_id"] for s in selection["selections"]})
    else:
        scope = sorted(set(known["collection_id"]))
    expected = read_index(collections=scope, path=index_path) if scope else known.iloc[0:0]
    unknown_ids = sorted(set(scope) - set(expected["collection_id"]))
    if unknown_ids:
        raise DataError(folder, f"IDC's index {index_version()} has no collection {', '.join(unknown_ids)}")
    rows: List[Dict[str, Any]] = []
    summary: List[Dict[str, Any]] = []
    for number, collection in enumerate(scope):
        report(progress, f"Comparing {collection}", 0.75 + 0.25 * number / max(1, len(scope)))
        collection_rows = expected[expected["collection_id"] == collection]
        wanted = _expected_patients(collection, collection_rows, patients, selection)
        not_in_collection = sorted(set(wanted) - set(collection_rows["PatientID"]))
        for patient in not_in_collection:
            rows.append(_row(collection, patient, STATUS_PATIENT_MISSING, f"IDC's {collection} has no patient {patient}"))
        by_patient = {p: r for p, r in collection_rows.groupby("PatientID")}
        series_complete = 0
        for patient in wanted:
            if patient not in by_patient:
                continue
            patient_rows = by_patient[patient]
            rows.extend(_check_patient(collection, patient, patient_rows, disk))
            for uid, count in zip(patient_rows["SeriesInstanceUID"], patient_rows["instanceCount"]):
                if uid in disk and len(disk[uid].sop_instance_uids) == int(count):
                    series_complete += 1
        scoped = collection_rows[collection_rows["PatientID"].isin(wanted)]
        summary.append({
            "collection_id": collection, "patients_expected": len(wanted),
            "patients_on_disk": len({s.patient_id for uid, s in disk.items() if uid in set(scoped.SeriesInstanceUID)}),
            "series_expected": len(scoped), "series_complete": series_complete,
            "instances_expected": int(scoped["instanceCount"].sum()),
            "instances_on_disk": sum(len(disk[uid].sop_instance_uids) for uid in scoped["SeriesInstanceUID"]
                                     if uid in disk),
            "analysis_results": ", ".join(sorted(a for a in set(scoped["analysis_result_id"]) if a)),
        })
    known_uids = set(known["SeriesInstanceUID"])
    for uid, series in sorted(disk.items(), key=lambda item: (item[1].patient_id, item[0])):
        if uid not in known_uids:
            rows.append({**_row("", series.patient_id, STATUS_UNKNOWN_SERIES,
                                f"{series.files} file(s) in {series.folder}", on_disk=len(series.sop_instance_uids)),
                         "SeriesInstanceUID": uid, "Modality": series.modality,
                         "SeriesDescription": series.series_description})
    for error in errors:
        rows.append(_row("", "", STATUS_UNREADABLE, str(error)))
    report(progress, "Completeness checked", 1.0)
    return CompletenessReport(folder, rows, summary, index_version())
