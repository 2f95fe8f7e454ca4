"""Command-line review: QA over a whole collection, verdicts, and the review exports.

    sllb qa <collection folder> --out report/ [--reviewer NAME] [--store review.sqlite] [--snapshots]
            [--workers N | --scheduler tcp://host:8786] [--no-resume]
    sllb review <collection folder> <case id> --verdict accepted [--annotation KEY] --comment "..." --reviewer NAME
    sllb review <collection folder> <case id> --verdict rejected --adjudicate --reviewer NAME
    sllb review <collection folder> --export-csv review.csv
    sllb review <collection folder> --agreement [--agreement-csv agreement.csv]
    sllb review <collection folder> <case id> --reads [--reviewer NAME --blinded]
    sllb annotations <collection folder> --csv annotations.csv --parquet annotations.parquet

The review store is ``.sllb_review.sqlite`` in the collection folder unless
``--store`` names another file; a read-only collection folder needs ``--store``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import DataError
from ..service import DEFAULT_HEADER_CACHE, ReviewService
from .store import VERDICTS

__all__ = ["add_subcommands", "add_annotations_option", "command_qa", "command_review"]


def _progress_printer(arguments: argparse.Namespace) -> Optional[Callable[[str, float], None]]:
    if not getattr(arguments, "verbose", False):
        return None

    shown = {"line": ""}

    def show(message: str, fraction: float) -> None:
        line = f"  {fraction * 100:5.1f}%  {message}"
        if line != shown["line"]:  # QA in workers asks again while waiting (that is how Cancel is noticed)
            shown["line"] = line
            print(line, file=sys.stderr)

    return show


def _service(arguments: argparse.Namespace) -> ReviewService:
    """The review service the command runs on, with the header cache unless ``--no-cache``."""
    return ReviewService(header_cache=None if getattr(arguments, "no_cache", False) else DEFAULT_HEADER_CACHE,
                         snapshots=bool(getattr(arguments, "snapshots", False)))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _qa_journal(out: Path, fresh: bool) -> Path:
    """The QA journal in the report folder; with ``fresh``, emptied so every case is checked again."""
    from .qa_journal import JOURNAL_NAME, QAJournal

    out.mkdir(parents=True, exist_ok=True)
    path = out / JOURNAL_NAME
    if fresh and path.exists():
        with QAJournal(path) as journal:
            journal.forget()
    return path


def command_qa(arguments: argparse.Namespace) -> int:
    """Run QA over every case; write findings.csv, review.csv and report.html into --out.

    Each case's result goes into the QA journal in --out as it arrives; run
    again after an interruption and only the cases not yet recorded (or whose
    files changed) are checked. The report files are written once every case
    is done, their completion manifest last.
    """
    if arguments.workers > 1 and arguments.scheduler:
        print("error: give --workers or --scheduler, not both", file=sys.stderr)
        return 2
    out = Path(arguments.out)
    with _service(arguments) as service:
        service.open(Path(arguments.folder), arguments.collection, arguments.annotations)
        service.set_store_path(arguments.store)
        # The report files (and their completion manifest) change only when the report is written at the end.
        journal = _qa_journal(out, arguments.no_resume)
        try:
            result = service.run_qa(_progress_printer(arguments),
                                    snapshot_folder=out / "snapshots" if service.snapshots else None,
                                    workers=arguments.workers, scheduler=arguments.scheduler, journal=journal)
        except RuntimeError as error:  # e.g. a Dask cluster that cannot be reached or cannot run the QA
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(service.describe_qa(result))
        # QA only reads verdicts: it never creates a store file, and a store it cannot open does not stop it.
        if arguments.store is None and not service.store_path.is_file():
            print(f"note: no review store at {service.store_path}; the report lists no verdicts", file=sys.stderr)
        try:
            verdicts = service.existing_store(read_only=True) is not None
        except DataError as error:
            print(f"warning: {error}; the report lists no verdicts", file=sys.stderr)
            verdicts = False
        written = service.export_report(out, reviewer=arguments.reviewer, verdicts=verdicts)
        for path in written:
            print(f"written: {path}")
    return 0


def _print_reads(arguments: argparse.Namespace) -> int:
    """Print every reader's verdict on a case (or --annotation) side by side, and its adjudication.

    With ``--reviewer NAME --blinded`` only what that reader may see: nothing
    of the others until they have given their own verdict on it.
    """
    if not arguments.case_id:
        print("error: --reads needs a case ID", file=sys.stderr)
        return 2
    with _service(arguments) as service:
        service.open_for_verdicts(Path(arguments.folder), arguments.collection, arguments.store,
                                  arguments.annotations, read_only=True)
        service.set_reader(arguments.reviewer, arguments.blinded)
        case_id = service.canonical_case_id(arguments.case_id)
        view = service.read_view()  # printing reads never rewrites the store
        if view is None:
            print(f"{case_id}: no review store")
            return 0
        reads = view.reads(case_id, arguments.annotation)
        on = f"{case_id} ({arguments.annotation})" if arguments.annotation else case_id
        if not reads:
            hidden = " (blinded: others' verdicts show once you have given yours)" if service.blinded else ""
            print(f"{on}: no verdicts{hidden}")
        for read in reads:
            comment = f" — {read.comment}" if read.comment else ""
            print(f"{on}: {read.reviewer}: {read.verdict}{comment} ({read.time})")
        final = view.adjudication(case_id, arguments.annotation)
        if final is not None:
            print(f"{on}: adjudicated {final.verdict} by {final.adjudicator} ({final.time})")
    return 0


def _print_agreement(arguments: argparse.Namespace) -> int:
    """Print agreement between readers (collection, then per item type); optionally write it as CSV."""
    from .agreement import AGREEMENT_COLUMNS, agreement_rows
    from .report import write_csv

    with _service(arguments) as service:
        service.open_for_verdicts(Path(arguments.folder), arguments.collection, arguments.store,
                                  arguments.annotations, read_only=True)
        service.set_reader(arguments.reviewer, arguments.blinded)
        try:
            rows = agreement_rows(service.agreement())
        except PermissionError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    widths = [max(len(str(value)) for value in [column] + [row[index] for row in rows])
              for index, column in enumerate(AGREEMENT_COLUMNS)]
    for values in [AGREEMENT_COLUMNS] + rows:
        print("  ".join(str(value).ljust(width) for value, width in zip(values, widths)).rstrip())
    if arguments.agreement_csv:
        print(f"written: {write_csv(Path(arguments.agreement_csv), AGREEMENT_COLUMNS, rows)}")
    return 0


def command_review(arguments: argparse.Namespace) -> int:
    """Record one verdict (or adjudication), or export every verdict as CSV."""
    if arguments.export_csv:
        from .report import write_verdicts_csv

        with _service(arguments) as service:
            service.open(Path(arguments.folder), arguments.collection, arguments.annotations)
            service.set_store_path(arguments.store)
            service.set_reader(arguments.reviewer, arguments.blinded)
            view = service.read_view()  # an export only reads: the store is never rewritten
            if view is None:
                print(f"error: {service.store_path}: no review store to export", file=sys.stderr)
                return 2
            path = write_verdicts_csv(Path(arguments.export_csv), view, service.case_ids())
            print(f"written: {path} (verdicts from {service.store_path}"
                  + (f", as {service.reader} may see them blinded)" if service.reader and service.blinded else ")"))
        return 0
    if arguments.reads:
        return _print_reads(arguments)
    if arguments.agreement:
        return _print_agreement(arguments)
    if not arguments.case_id or not arguments.verdict or not arguments.reviewer:
        print("error: give a case ID, --verdict and --reviewer (or --export-csv PATH)", file=sys.stderr)
        return 2
    with _service(arguments) as service:
        # Light: when the store knows this folder's cases, nothing is detected or indexed.
        service.open_for_verdicts(Path(arguments.folder), arguments.collection, arguments.store,
                                  arguments.annotations)
        try:
            if arguments.adjudicate:
                final = service.adjudicate(arguments.case_id, arguments.verdict, arguments.comment,
                                           arguments.reviewer, arguments.annotation)
                reads = ", ".join(f"{read.reviewer}: {read.verdict}" for read in final.settles)
                on = f" ({final.annotation})" if final.annotation else ""
                print(f"{final.case_id}{on}: adjudicated {final.verdict} by {final.adjudicator} at {final.time}, "
                      f"settling {reads} (saved in {service.store_path})")
                return 0
            record = service.set_verdict(arguments.case_id, arguments.verdict, arguments.comment,
                                         arguments.reviewer, arguments.annotation)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        service.set_reader(record.reviewer)
        reviewed, total = service.review_progress()
        on = f" ({record.annotation})" if record.annotation else ""
        print(f"{record.case_id}{on}: {record.verdict} by {record.reviewer} at {record.time} "
              f"({reviewed} of {total} reviewed by {record.reviewer}; saved in {service.store_path})")
    return 0


def command_annotations(arguments: argparse.Namespace) -> int:
    """Write the collection's annotation table (one row per box, lesion, segment, contour) as CSV and/or Parquet."""
    from .annotations import write_annotation_table

    if not arguments.csv and not arguments.parquet:
        print("error: give --csv PATH and/or --parquet PATH", file=sys.stderr)
        return 2
    with _service(arguments) as service:
        service.open(Path(arguments.folder), arguments.collection, arguments.annotations)
        service.set_store_path(arguments.store)
        table = service.annotation_table(_progress_printer(arguments))
        for path in write_annotation_table(table, arguments.csv, arguments.parquet):
            print(f"written: {path}")
        print(f"{len(table)} annotation(s) in {table['case_id'].nunique()} case(s)")
        for skipped in table.attrs.get("skipped", []):
            print(f"warning: left out {skipped}", file=sys.stderr)
    return 0


def add_annotations_option(parser: argparse.ArgumentParser) -> None:
    """``--annotations FOLDER`` (repeatable): annotation folders outside the collection folder to read too."""
    parser.add_argument("--annotations", type=Path, action="append", default=[], metavar="FOLDER",
                        help="Lung-PET-CT-Dx: an Annotation folder (or a folder holding one) outside the collection "
                             "folder to read too; repeatable. Folders beside the collection are never read unless "
                             "named here")


def add_subcommands(subparsers: Any) -> None:
    """Add ``qa`` and ``review`` to the ``sllb`` command line (each sets ``func`` returning an exit code)."""
    qa = subparsers.add_parser("qa", help="run every quality check on every case; write CSV and HTML reports")
    qa.add_argument("folder", type=Path, help="the collection folder")
    qa.add_argument("--out", type=Path, required=True, help="folder for findings.csv, review.csv, report.html")
    qa.add_argument("--reviewer", help="who prepared the report (shown in its header)")
    qa.add_argument("--collection", help="collection key, if detection should be skipped")
    add_annotations_option(qa)
    qa.add_argument("--store", type=Path, help="review store to read verdicts from "
                                                "(default: .sllb_review.sqlite in the collection)")
    qa.add_argument("--snapshots", action="store_true", help="render a snapshot of every case into the report")
    qa.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                    help="check cases in N worker processes (same findings, same order as one process)")
    qa.add_argument("--scheduler", metavar="ADDRESS",
                    help="check cases on the Dask distributed cluster at this scheduler address "
                         "(e.g. tcp://host:8786; needs dask and distributed, and this extension on every worker)")
    qa.add_argument("--no-resume", action="store_true",
                    help="check every case again, ignoring results an earlier run recorded in the QA journal "
                         "(qa-journal.sqlite in --out; by default a re-run checks only cases not recorded yet "
                         "or whose files changed)")
    qa.set_defaults(func=command_qa)

    review = subparsers.add_parser("review", help="record a verdict on a case, or export the verdicts")
    review.add_argument("folder", type=Path, help="the collection folder")
    review.add_argument("case_id", nargs="?", help="the case the verdict is on")
    review.add_argument("--verdict", choices=[verdict.replace(" ", "-") for verdict in VERDICTS])
    review.add_argument("--annotation", default="", help="a segment ID, ROI or mask name (default: the whole case)")
    review.add_argument("--comment", default="")
    review.add_argument("--reviewer", help="the reviewer's name")
    review.add_argument("--collection", help="collection key, if detection should be skipped")
    add_annotations_option(review)
    review.add_argument("--store", type=Path, help="review store (default: .sllb_review.sqlite in the collection; "
                                                    "needed when the collection folder is read-only)")
    review.add_argument("--export-csv", type=Path, help="write every reader's verdicts to this CSV file")
    review.add_argument("--adjudicate", action="store_true",
                        help="record the final verdict on the case (or --annotation), settling the readers' verdicts")
    review.add_argument("--reads", action="store_true",
                        help="print every reader's verdict on the case (or --annotation) side by side")
    review.add_argument("--blinded", action="store_true",
                        help="with --reviewer: show (--reads, --export-csv, --agreement) only what that reader may "
                             "see: no other reader's verdict on an item before their own")
    review.add_argument("--agreement", action="store_true",
                        help="print agreement between readers (percent, Cohen's / Fleiss' kappa, item counts)")
    review.add_argument("--agreement-csv", type=Path, help="with --agreement: also write it to this CSV file")
    review.set_defaults(func=command_review)

    annotations = subparsers.add_parser(
        "annotations", help="one table of every box, lesion, segment and contour (CSV and/or Parquet)")
    annotations.add_argument("folder", type=Path, help="the collection folder")
    annotations.add_argument("--csv", type=Path, help="write the table as CSV")
    annotations.add_argument("--parquet", type=Path, help="write the table as Parquet (needs pyarrow)")
    annotations.add_argument("--collection", help="collection key, if detection should be skipped")
    add_annotations_option(annotations)
    annotations.add_argument("--store", type=Path, help="review store whose verdicts are added "
                                                        "(default: .sllb_review.sqlite in the collection, if any)")
    annotations.set_defaults(func=command_annotations)
