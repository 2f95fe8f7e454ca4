"""``sllb completeness`` and ``sllb download``: the collections as Imaging Data Commons serves them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = ["add_subcommands", "command_completeness", "command_download"]


def _patient_list(text: str) -> list:
    """``--patients A,B`` (one value per flag, so a folder after it is never taken for a patient)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _printer(verbose: bool) -> Optional[Any]:
    if not verbose:
        return None

    def show(message: str, fraction: float) -> None:
        print(f"  {fraction * 100:5.1f}%  {message}", file=sys.stderr)

    return show


def command_completeness(arguments: argparse.Namespace) -> int:
    """Print what is missing; write CSV/HTML if asked. Exit code 1 while anything is missing."""
    from .completeness import IndexUnavailable, check_completeness, index_parquet_path

    try:
        index_path = arguments.index or index_parquet_path(install=not arguments.no_install)
    except IndexUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = check_completeness(arguments.folder, arguments.collection or None, arguments.patients or None,
                                index_path, _printer(getattr(arguments, "verbose", False)))
    for row in result.summary:
        print(f"{row['collection_id']}: {row['patients_on_disk']}/{row['patients_expected']} patients, "
              f"{row['series_complete']}/{row['series_expected']} series complete, "
              f"{row['instances_on_disk']}/{row['instances_expected']} instances")
    _print_report_rows(result)
    if not result.rows:
        print("complete: every expected series is on disk with IDC's instance count")
    if arguments.csv:
        print(f"table written to {result.write_csv(arguments.csv)}")
    if arguments.html:
        Path(arguments.html).parent.mkdir(parents=True, exist_ok=True)
        from ..formats.atomic import write_text_atomically

        write_text_atomically(arguments.html, result.to_html())
        print(f"HTML fragment written to {arguments.html}")
    return 0 if result.complete else 1


def _print_report_rows(result: Any) -> None:
    for row in result.rows:
        where = " ".join(part for part in (row["collection_id"], row["PatientID"], row["SeriesInstanceUID"]) if part)
        print(f"  [{row['status']}] {where}: {row['detail']}")


def command_download(arguments: argparse.Namespace) -> int:
    """Plan (offline), then fetch with idc-index and verify. Exit 1 if anything is still missing after it."""
    from .completeness import IndexUnavailable, index_parquet_path
    from .download import idc_client, plan_download, run_download

    try:
        index_path = index_parquet_path(install=not arguments.no_install)
    except IndexUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    progress = _printer(getattr(arguments, "verbose", False))
    plan = plan_download(arguments.collection, arguments.folder, arguments.patients, arguments.missing_only,
                         index_path, progress)
    print(f"plan: {plan.describe()}")
    if arguments.dry_run:
        for _, row in plan.series.iterrows():
            print(f"  {row['PatientID']} {row['Modality']} {row['SeriesInstanceUID']} ({row['instanceCount']} "
                  f"instances) -> {row['destination']}")
        return 0
    try:
        client = idc_client(install=not arguments.no_install) if len(plan.series) else None
    except IndexUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = run_download(plan, client, progress, quiet=not getattr(arguments, "verbose", False))
    _print_report_rows(result)
    if result.complete:
        print("verified: every series of the selection is on disk with IDC's instance count")
        return 0
    print("incomplete: run the same command with --missing-only to fetch what is missing", file=sys.stderr)
    return 1


def add_subcommands(subparsers: Any) -> None:
    """Add ``completeness`` (and ``download``) to the ``sllb`` command line."""
    completeness = subparsers.add_parser(
        "completeness", help="compare a downloaded folder with IDC's index (idc-index-data, installed at first use)")
    completeness.add_argument("folder", type=Path)
    completeness.add_argument("--collection", action="append",
                              help="IDC collection ID, e.g. lung_pet_ct_dx (repeatable; default: from the data)")
    completeness.add_argument("--patients", action="extend", type=_patient_list,
                              help="the patients expected, comma-separated or repeated "
                                   "(default: the download's selection, else every patient of the collection)")
    completeness.add_argument("--csv", type=Path, help="write the table to this CSV file")
    completeness.add_argument("--html", type=Path, help="write an HTML fragment for the report to this file")
    completeness.add_argument("--index", type=Path, help="idc_index.parquet to use instead of idc-index-data's")
    completeness.add_argument("--no-install", action="store_true",
                              help="do not install idc-index-data when it is missing")
    completeness.set_defaults(func=command_completeness)

    download = subparsers.add_parser(
        "download", help="download a collection from IDC with idc-index (installed at first use), then verify it")
    download.add_argument("collection", help="IDC collection ID, e.g. lung_pet_ct_dx or colorectal_liver_metastases")
    download.add_argument("folder", type=Path)
    download.add_argument("--patients", action="extend", type=_patient_list,
                          help="only these patients, comma-separated or repeated (default: the whole collection)")
    download.add_argument("--missing-only", action="store_true",
                          help="fetch only series absent or incomplete on disk (resume an interrupted download)")
    download.add_argument("--dry-run", action="store_true", help="print the plan (series, destinations) only")
    download.add_argument("--no-install", action="store_true",
                          help="do not install idc-index-data / idc-index when they are missing")
    download.set_defaults(func=command_download)
