"""``sllb completeness`` and ``sllb download``: the collections as Imaging Data Commons serves them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = ["add_subcommands", "command_completeness"]


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
    for row in result.rows:
        where = " ".join(part for part in (row["collection_id"], row["PatientID"], row["SeriesInstanceUID"]) if part)
        print(f"  [{row['status']}] {where}: {row['detail']}")
    if not result.rows:
        print("complete: every expected series is on disk with IDC's instance count")
    if arguments.csv:
        print(f"table written to {result.write_csv(arguments.csv)}")
    if arguments.html:
        Path(arguments.html).parent.mkdir(parents=True, exist_ok=True)
        Path(arguments.html).write_text(result.to_html(), encoding="utf-8")
        print(f"HTML fragment written to {arguments.html}")
    return 0 if result.complete else 1


def add_subcommands(subparsers: Any) -> None:
    """Add ``completeness`` (and ``download``) to the ``sllb`` command line."""
    completeness = subparsers.add_parser(
        "completeness", help="compare a downloaded folder with IDC's index (idc-index-data, installed at first use)")
    completeness.add_argument("folder", type=Path)
    completeness.add_argument("--collection", action="append",
                              help="IDC collection ID, e.g. lung_pet_ct_dx (repeatable; default: from the data)")
    completeness.add_argument("--patients", nargs="+", help="the patients expected (default: the download's "
                                                            "selection, else every patient of the collection)")
    completeness.add_argument("--csv", type=Path, help="write the table to this CSV file")
    completeness.add_argument("--html", type=Path, help="write an HTML fragment for the report to this file")
    completeness.add_argument("--index", type=Path, help="idc_index.parquet to use instead of idc-index-data's")
    completeness.add_argument("--no-install", action="store_true",
                              help="do not install idc-index-data when it is missing")
    completeness.set_defaults(func=command_completeness)
