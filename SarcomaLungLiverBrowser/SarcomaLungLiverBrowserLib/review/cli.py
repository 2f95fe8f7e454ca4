"""Command-line review: QA over a whole collection, verdicts, and the review exports.

    sllb qa <collection folder> --out report/ [--reviewer NAME] [--store review.sqlite] [--snapshots]
    sllb review <collection folder> <case id> --verdict accepted [--annotation KEY] --comment "..." --reviewer NAME
    sllb review <collection folder> --export-csv review.csv

The review store is ``.sllb_review.sqlite`` in the collection folder unless
``--store`` names another file; a read-only collection folder needs ``--store``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import DataError
from .store import VERDICTS, ReviewStore, default_store_path, open_review_store

__all__ = ["add_subcommands", "command_qa", "command_review"]


def _progress_printer(arguments: argparse.Namespace) -> Optional[Callable[[str, float], None]]:
    if not getattr(arguments, "verbose", False):
        return None

    def show(message: str, fraction: float) -> None:
        print(f"  {fraction * 100:5.1f}%  {message}", file=sys.stderr)

    return show


def _store_for_report(arguments: argparse.Namespace, collection: Any) -> Optional[ReviewStore]:
    """The store whose verdicts go into the QA report, or None (with a note) when there is none to read.

    QA only reads verdicts, so it never creates a store file in the collection
    folder, and a store it cannot open does not stop the report.
    """
    if arguments.store is None and not default_store_path(collection.root).is_file():
        print(f"note: no review store at {default_store_path(collection.root)}; the report lists no verdicts",
              file=sys.stderr)
        return None
    try:
        return open_review_store(collection.root, arguments.store, read_only=True)  # QA never writes the store
    except DataError as error:
        print(f"warning: {error}; the report lists no verdicts", file=sys.stderr)
        return None


def command_qa(arguments: argparse.Namespace) -> int:
    """Run QA over every case; write findings.csv, review.csv and report.html into --out."""
    from .qa import describe_collection_qa, run_collection_qa
    from ..registry import open_collection
    from .report import export_review

    collection = open_collection(Path(arguments.folder), arguments.collection)
    out = Path(arguments.out)
    if arguments.snapshots:
        try:
            from ..scene import render  # noqa: F401 - only to learn whether snapshots can be drawn here
        except ImportError as error:
            print(f"warning: snapshots skipped, the renderer is not available ({error})", file=sys.stderr)
            arguments.snapshots = False
    result = run_collection_qa(collection, _progress_printer(arguments),
                               snapshot_folder=out / "snapshots" if arguments.snapshots else None)
    print(describe_collection_qa(result))
    store = _store_for_report(arguments, collection)
    try:
        for path in export_review(out, collection, store, result, reviewer=arguments.reviewer):
            print(f"written: {path}")
    finally:
        if store is not None:
            store.close()
    return 0


def command_review(arguments: argparse.Namespace) -> int:
    """Record one verdict, or export every verdict as CSV."""
    from ..registry import open_collection

    collection = open_collection(Path(arguments.folder), arguments.collection)
    if not arguments.export_csv and (not arguments.case_id or not arguments.verdict or not arguments.reviewer):
        print("error: give a case ID, --verdict and --reviewer (or --export-csv PATH)", file=sys.stderr)
        return 2
    cases = collection.discover_cases()
    with open_review_store(collection.root, arguments.store, read_only=bool(arguments.export_csv)) as store:
        if arguments.export_csv:
            path = store.export_csv(Path(arguments.export_csv), [case.case_id for case in cases])
            print(f"written: {path} (verdicts from {store.path})")
            return 0
        case_ids = {case.case_id.lower(): case.case_id for case in cases}
        case_id = case_ids.get(arguments.case_id.lower())
        if case_id is None:
            known = ", ".join(case.case_id for case in cases[:5])
            print(f"error: {collection.root}: has no case {arguments.case_id!r} (cases found: {known or 'none'})",
                  file=sys.stderr)
            return 2
        try:
            record = store.set_verdict(case_id, arguments.annotation, arguments.verdict, arguments.comment,
                                       arguments.reviewer)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        reviewed, total = store.progress([case.case_id for case in cases])
        on = f" ({record.annotation})" if record.annotation else ""
        print(f"{record.case_id}{on}: {record.verdict} by {record.reviewer} at {record.time} "
              f"({reviewed} of {total} reviewed; saved in {store.path})")
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Add ``qa`` and ``review`` to the ``sllb`` command line (each sets ``func`` returning an exit code)."""
    qa = subparsers.add_parser("qa", help="run every quality check on every case; write CSV and HTML reports")
    qa.add_argument("folder", type=Path, help="the collection folder")
    qa.add_argument("--out", type=Path, required=True, help="folder for findings.csv, review.csv, report.html")
    qa.add_argument("--reviewer", help="who prepared the report (shown in its header)")
    qa.add_argument("--collection", help="collection key, if detection should be skipped")
    qa.add_argument("--store", type=Path, help="review store to read verdicts from "
                                                "(default: .sllb_review.sqlite in the collection)")
    qa.add_argument("--snapshots", action="store_true", help="render a snapshot of every case into the report")
    qa.set_defaults(func=command_qa)

    review = subparsers.add_parser("review", help="record a verdict on a case, or export the verdicts")
    review.add_argument("folder", type=Path, help="the collection folder")
    review.add_argument("case_id", nargs="?", help="the case the verdict is on")
    review.add_argument("--verdict", choices=[verdict.replace(" ", "-") for verdict in VERDICTS])
    review.add_argument("--annotation", default="", help="a segment ID, ROI or mask name (default: the whole case)")
    review.add_argument("--comment", default="")
    review.add_argument("--reviewer", help="the reviewer's name")
    review.add_argument("--collection", help="collection key, if detection should be skipped")
    review.add_argument("--store", type=Path, help="review store (default: .sllb_review.sqlite in the collection; "
                                                    "needed when the collection folder is read-only)")
    review.add_argument("--export-csv", type=Path, help="write every verdict to this CSV file")
    review.set_defaults(func=command_review)
