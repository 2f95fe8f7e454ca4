"""Download a collection from Imaging Data Commons through idc-index's own downloader.

No S3 client is written here: the series to fetch are chosen from IDC's index
(``idc-index-data``, see :mod:`.completeness`), written as an s5cmd manifest
of the series URLs the index lists, and handed to
``idc_index.IDCClient.download_from_manifest`` (pinned:
:data:`IDC_INDEX_REQUIREMENT`, an optional dependency installed at first use),
which validates the manifest against the index and runs ``s5cmd``.

* Layout: idc-index's default hierarchy,
  ``<folder>/<collection_id>/<PatientID>/<StudyInstanceUID>/<Modality>_<SeriesInstanceUID>/<uuid>.dcm``,
  which the collections discover (notes ``lung_voc.md`` §5 "IDC").
* Progress: idc-index's progress callback (bytes on disk against the
  index's series sizes) is passed to the caller's callback; when that asks to
  cancel, the s5cmd processes this download started (children of this
  process) are ended by their process IDs and :class:`~..errors.LoadCancelled`
  is raised.
* Resumable: ``missing_only`` fetches only the series that are absent or have
  fewer instances on disk than the index lists (checked from the headers, as
  :func:`.completeness.check_completeness` does); a series is fetched whole.
* Verified: afterwards every chosen series is counted against the index's
  ``instanceCount``; the returned report says what is still missing, since
  idc-index logs s5cmd failures rather than raising them.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from ..errors import DataError, LoadCancelled
from ..formats.atomic import write_text_atomically
from ..progress import ProgressCallback, report, sub_progress
from .completeness import (
    IndexUnavailable,
    CompletenessReport,
    check_completeness,
    index_parquet_path,
    import_or_install,
    read_index,
    scan_disk,
    write_selection,
)

__all__ = [
    "IDC_INDEX_REQUIREMENT",
    "DOWNLOAD_HIERARCHY",
    "MANIFEST_FILE",
    "DownloadPlan",
    "plan_download",
    "write_manifest",
    "idc_client",
    "run_download",
]

#: The downloader; it pins idc-index-data 25.0.5, the index :mod:`.completeness` reads.
IDC_INDEX_REQUIREMENT = "idc-index==0.13.4"

#: idc-index's default folder template (``DOWNLOAD_HIERARCHY_DEFAULT``), spelled out so plans need no idc-index.
DOWNLOAD_HIERARCHY = "%collection_id/%PatientID/%StudyInstanceUID/%Modality_%SeriesInstanceUID"

#: The manifest handed to idc-index, kept beside the data (hidden, so scans skip it).
MANIFEST_FILE = ".sllb_idc_manifest.s5cmd"


@dataclass
class DownloadPlan:
    """Which series to fetch and where they will land.

    :param series: index rows of the chosen series, with a ``destination`` column.
    :param skipped: series already complete on disk (with ``missing_only``).
    """

    collection_id: str
    folder: Path
    patients: Optional[List[str]]
    missing_only: bool
    series: Any
    skipped: int = 0
    notes: List[str] = field(default_factory=list)

    @property
    def size_mb(self) -> float:
        return float(self.series["series_size_MB"].sum()) if len(self.series) else 0.0

    @property
    def instances(self) -> int:
        return int(self.series["instanceCount"].sum()) if len(self.series) else 0

    def describe(self) -> str:
        who = f"{len(self.patients)} patient(s)" if self.patients else "every patient"
        text = (f"{self.collection_id}, {who}: {len(self.series)} series, {self.instances} instances, "
                f"{self.size_mb / 1024:.2f} GB into {self.folder}")
        if self.missing_only:
            text += f" ({self.skipped} series already complete on disk)"
        return text


def series_destination(folder: Path, row: Any) -> Path:
    """Where idc-index puts a series under :data:`DOWNLOAD_HIERARCHY`."""
    return (Path(folder) / row["collection_id"] / row["PatientID"] / row["StudyInstanceUID"]
            / f"{row['Modality']}_{row['SeriesInstanceUID']}")


def plan_download(collection_id: str, folder: Path, patients: Optional[Sequence[str]] = None,
                  missing_only: bool = False, index_path: Optional[Path] = None,
                  progress: Optional[ProgressCallback] = None) -> DownloadPlan:
    """Choose the series of a download from IDC's index (offline).

    :raises DataError: naming the folder, for an unknown collection or patients the collection lacks.
    """
    folder = Path(folder)
    index_path = Path(index_path) if index_path is not None else index_parquet_path()
    report(progress, f"Looking up {collection_id} in IDC's index", 0.0)
    rows = read_index(collections=[collection_id], path=index_path,
                      extra_columns=["series_aws_url"])
    if rows.empty:
        raise DataError(folder, f"IDC's index has no collection {collection_id!r} (IDs are like lung_pet_ct_dx, "
                                "colorectal_liver_metastases)")
    chosen = sorted(set(patients)) if patients else None
    if chosen:
        unknown = sorted(set(chosen) - set(rows["PatientID"]))
        if unknown:
            raise DataError(folder, f"IDC's {collection_id} has no patient(s) {', '.join(unknown)}")
        rows = rows[rows["PatientID"].isin(chosen)]
    rows = rows.copy()
    rows["destination"] = [str(series_destination(folder, row)) for _, row in rows.iterrows()]
    skipped = 0
    if missing_only and folder.is_dir():
        on_disk, _ = scan_disk(folder, sub_progress(progress, 0.1, 1.0))
        complete = [uid in on_disk and len(on_disk[uid].sop_instance_uids) >= int(count)
                    for uid, count in zip(rows["SeriesInstanceUID"], rows["instanceCount"])]
        skipped = int(sum(complete))
        rows = rows[[not done for done in complete]]
    report(progress, "Download planned", 1.0)
    return DownloadPlan(collection_id, folder, chosen, missing_only, rows.reset_index(drop=True), skipped)


def write_manifest(plan: DownloadPlan, path: Path) -> Path:
    """The plan as an s5cmd manifest in IDC's form (one ``cp <series URL> .`` per series)."""
    lines = [f"cp {url} ." for url in plan.series["series_aws_url"]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomically(path, "\n".join(lines) + "\n")


def idc_client(install: bool = False) -> Any:
    """idc-index's client (loading its index takes a few seconds); installs the pinned idc-index if asked.

    :raises IndexUnavailable: when idc-index is missing and ``install`` is False.
    """
    idc_index = import_or_install("idc_index", IDC_INDEX_REQUIREMENT, "IDC's downloader", install)
    return idc_index.IDCClient.client()


def _end_own_s5cmd_processes() -> List[int]:
    """End the s5cmd processes this process started (by process ID); returns their IDs."""
    import psutil  # an idc-index dependency

    ended = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            names = " ".join(child.cmdline()[:2])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "s5cmd" in names:
            try:
                child.terminate()
                ended.append(child.pid)
            except psutil.NoSuchProcess:
                pass
    return ended


def run_download(plan: DownloadPlan, client: Any = None, progress: Optional[ProgressCallback] = None,
                 quiet: bool = True) -> CompletenessReport:
    """Fetch the planned series with idc-index, then verify instance counts against the index.

    :param client: an ``idc_index.IDCClient`` (default: :func:`idc_client`).
    :returns: the completeness of the chosen patients after the download.
    :raises LoadCancelled: when ``progress`` asked to stop (files fetched so far stay; resume with
        ``missing_only``).
    """
    folder = Path(plan.folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_selection(folder, plan.collection_id, plan.patients)
    if len(plan.series):
        client = client if client is not None else idc_client()
        manifest = write_manifest(plan, folder / MANIFEST_FILE)
        cancelled = []
        fetching = sub_progress(progress, 0.0, 0.9)

        def on_bytes(done: float, total: float, unit: str, description: str) -> None:
            if cancelled:
                return
            fraction = float(done) / float(total) if total else 0.0
            message = f"{description}: {done / 1e6:.1f} of {total / 1e6:.1f} MB"
            if fetching is not None and fetching(message, fraction):
                cancelled.extend(_end_own_s5cmd_processes() or [0])

        report(fetching, f"Downloading {plan.describe()}", 0.0)
        client.download_from_manifest(str(manifest), downloadDir=str(folder), quiet=quiet, validate_manifest=True,
                                      show_progress_bar=True, use_s5cmd_sync=False,
                                      dirTemplate=DOWNLOAD_HIERARCHY, progress_callback=on_bytes)
        if cancelled:
            raise LoadCancelled(f"download of {plan.collection_id} into {folder} cancelled; run it again with "
                                "--missing-only to resume")
    report(progress, "Verifying instance counts against IDC's index", 0.9)
    return check_completeness(folder, [plan.collection_id], plan.patients, progress=sub_progress(progress, 0.9, 1.0))
