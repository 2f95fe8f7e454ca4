"""Command-line review: QA over a whole collection, verdicts, and the review exports.

    sllb qa <collection folder> --out report/ [--store review.sqlite] [--snapshots]
    sllb review <collection folder> <case id> --verdict accepted --comment "..." --reviewer "A. Reviewer"
    sllb review <collection folder> --export-csv review.csv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .review_store import VERDICTS, ReviewStore, default_store_path

__all__ = ["add_subcommands"]


def _open_store(arguments: argparse.Namespace, collection: Any) -> ReviewStore:
    return ReviewStore(Path(arguments.store) if arguments.store else default_store_path(collection.root))


def _progress(message: str, fraction: float) -> None:
    print(f"  {fraction * 100:5.1f}%  {message}", file=sys.stderr)


def command_qa(arguments: argparse.Namespace) -> int:
    from .qa import describe_collection_qa, run_collection_qa
    from .registry import open_collection
    from .review_report import export_review

    collection = open_collection(Path(arguments.folder), arguments.collection)
    out = Path(arguments.out)
    result = run_collection_qa(collection, _progress if arguments.verbose else None,
                               snapshot_folder=out / "snapshots" if arguments.snapshots else None)
    print(describe_collection_qa(result))
    with _open_store(arguments, collection) as store:
        for path in export_review(out, collection, store, result):
            print(f"written: {path}")
    return 0


def command_review(arguments: argparse.Namespace) -> int:
    from .registry import open_collection

    collection = open_collection(Path(arguments.folder), arguments.collection)
    with _open_store(arguments, collection) as store:
        if arguments.export_csv:
            case_ids = [case.case_id for case in collection.discover_cases()]
            print(f"written: {store.export_csv(Path(arguments.export_csv), case_ids)}")
            return 0
        if not arguments.case_id or not arguments.verdict or not arguments.reviewer:
            print("error: give a case ID, --verdict and --reviewer (or --export-csv)", file=sys.stderr)
            return 2
        case_ids = {case.case_id.lower(): case.case_id for case in collection.discover_cases()}
        case_id = case_ids.get(arguments.case_id.lower())
        if case_id is None:
            print(f"error: {collection.root}: has no case {arguments.case_id!r}", file=sys.stderr)
            return 2
        record = store.set_verdict(case_id, arguments.annotation, arguments.verdict.replace("-", " "),
                                   arguments.comment, arguments.reviewer)
        reviewed, total = store.progress(list(case_ids.values()))
        print(f"{record.case_id}: {record.verdict} by {record.reviewer} at {record.time} ({reviewed} of {total} reviewed)")
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Add ``qa`` and ``review`` to the ``sllb`` command line."""
    qa = subparsers.add_parser("qa", help="run every quality check on every case; write CSV and HTML reports")
    qa.add_argument("folder", type=Path)
    qa.add_argument("--out", type=Path, required=True, help="folder for findings.csv, review.csv, report.html")
    qa.add_argument("--collection", help="collection key, if detection should be skipped")
    qa.add_argument("--store", type=Path, help="review store (default: .sllb_review.sqlite in the collection)")
    qa.add_argument("--snapshots", action="store_true", help="render a snapshot of every case into the report")
    qa.set_defaults(func=command_qa)

    review = subparsers.add_parser("review", help="record a verdict on a case, or export the verdicts")
    review.add_argument("folder", type=Path)
    review.add_argument("case_id", nargs="?")
    review.add_argument("--verdict", choices=[verdict.replace(" ", "-") for verdict in VERDICTS])
    review.add_argument("--annotation", default="", help="a segment or ROI name (default: the whole case)")
    review.add_argument("--comment", default="")
    review.add_argument("--reviewer")
    review.add_argument("--collection", help="collection key, if detection should be skipped")
    review.add_argument("--store", type=Path, help="review store (default: .sllb_review.sqlite in the collection)")
    review.add_argument("--export-csv", type=Path, help="write every verdict to this CSV file")
    review.set_defaults(func=command_review)
