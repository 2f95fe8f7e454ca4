"""Exports of a review: CSV tables and one self-contained HTML report.

The HTML file carries its style sheet and snapshot images inline (data URIs)
and refers to nothing outside itself, so it can be mailed or archived on its
own; every piece of text that comes from data or from reviewers is
HTML-escaped. The report's own files have fixed names; file names built from
case IDs (snapshots) come from :func:`.qa.snapshot_paths` and never leave the
output folder. Files are written to a temporary name first and then renamed,
so an interrupted export never leaves half a report under the real name.
"""
from __future__ import annotations

import base64
import csv
import datetime
import html
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from ..findings import Finding
from ..formats.atomic import begin_output_set, complete_output_set, write_text_atomically
from ..formats.output_paths import safe_output_path
from ..progress import ProgressCallback, report
from .qa import CaseQA, CollectionQA

__all__ = [
    "FINDINGS_CSV_COLUMNS",
    "REVIEW_CSV_COLUMNS",
    "csv_cell",
    "write_csv",
    "write_findings_csv",
    "write_review_csv",
    "write_html_report",
    "export_review",
]

#: Columns of ``findings.csv``: one row per finding (collection-wide findings have no case ID).
FINDINGS_CSV_COLUMNS = ["case_id", "collection", "severity", "check", "message", "path", "node_name", "segment_id",
                        "ras", "value"]

#: Columns of ``review.csv``: one row per case.
REVIEW_CSV_COLUMNS = ["case_id", "collection", "diagnosis", "qa_status", "errors", "warnings", "findings", "verdict",
                      "comment", "reviewer", "time", "annotation_verdicts"]

#: The first bytes of every PNG file.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; } dd { margin: 0; }
.error { color: #a00; } .warning { color: #a60; } .info { color: #555; } .ok { color: #070; }
.errors { color: #a00; } .warnings { color: #a60; }
.comment { white-space: pre-wrap; }
section.case { border-top: 2px solid #ccc; padding-top: 0.5em; }
img { max-width: 384px; border: 1px solid #888; }
"""

CaseLike = Union[str, Any]


# ---------------------------------------------------------------------- files
def _write_atomically(path: Path, write: Any, newline: Optional[str] = None) -> Path:
    """Write through ``write(stream)`` into a temporary file beside ``path``, then rename it over ``path``."""
    return write_text_atomically(path, write=write, newline=newline)  # fsync + rename (formats/atomic.py)


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that a spreadsheet shows as text, never runs as a formula.

    Text from the data or a reviewer (``=HYPERLINK(...)``, ``@SUM(...)``) would
    otherwise be evaluated when the file is opened in a spreadsheet; such text
    gets a leading apostrophe, as spreadsheets themselves do. Numbers and
    None (as "") pass unchanged.
    """
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a UTF-8 CSV file (atomically), every cell through :func:`csv_cell`."""
    def write(stream: Any) -> None:
        writer = csv.writer(stream)
        writer.writerow(list(header))
        for row in rows:
            writer.writerow([csv_cell(value) for value in row])

    return _write_atomically(Path(path), write, newline="")


# ---------------------------------------------------------------------- CSV
def _ras_text(finding: Finding) -> str:
    return "" if finding.ras is None else " ".join(f"{float(value):.2f}" for value in finding.ras)


def _finding_row(finding: Finding, collection: str) -> List[Any]:
    return [finding.case_id, collection, finding.severity, finding.check, finding.message, finding.path,
            finding.node_name, finding.segment_id, _ras_text(finding), finding.value]


def write_findings_csv(path: Path, qa_result: CollectionQA) -> Path:
    """One row per finding (columns :data:`FINDINGS_CSV_COLUMNS`): the collection's, then every case's."""
    rows = [_finding_row(finding, "") for finding in qa_result.collection_findings]
    for case in qa_result.cases:
        rows.extend(_finding_row(finding, case.case.collection) for finding in case.findings)
    return write_csv(path, FINDINGS_CSV_COLUMNS, rows)


def _case_id(case: CaseLike) -> str:
    return case if isinstance(case, str) else case.case_id


def _qa_index(qa_result: Optional[CollectionQA]) -> Dict[str, CaseQA]:
    return {case.case.case_id: case for case in qa_result.cases} if qa_result is not None else {}


def write_review_csv(path: Path, cases: Sequence[CaseLike], store: Any = None,
                     qa_result: Optional[CollectionQA] = None) -> Path:
    """One row per case (columns :data:`REVIEW_CSV_COLUMNS`): QA status and counts, and the verdicts.

    :param cases: CaseInfo objects (or plain case IDs), in report order.
    :param store: a :class:`~.review_store.ReviewStore`, or None for QA only.
    """
    by_id = _qa_index(qa_result)
    rows = []
    for case in cases:
        case_id = _case_id(case)
        case_qa = by_id.get(case_id)
        info = case_qa.case if case_qa is not None else (None if isinstance(case, str) else case)
        records = store.verdicts(case_id) if store is not None else []
        whole = next((record for record in records if not record.annotation), None)
        rows.append([
            case_id,
            info.collection if info is not None else "",
            info.diagnosis if info is not None else "",
            case_qa.status if case_qa else "",
            case_qa.count("error") if case_qa else "",
            case_qa.count("warning") if case_qa else "",
            len(case_qa.findings) if case_qa else "",
            whole.verdict if whole else "", whole.comment if whole else "",
            whole.reviewer if whole else "", whole.time if whole else "",
            "; ".join(f"{record.annotation}: {record.verdict}" for record in records if record.annotation),
        ])
    return write_csv(path, REVIEW_CSV_COLUMNS, rows)


# ---------------------------------------------------------------------- HTML
def _text(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _image_tag(path: Optional[Path], alt: str) -> str:
    """The PNG at ``path`` as an inline image, or a note when there is none (or it is not a PNG)."""
    if path is None:
        return ""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        return f"<p>Snapshot {_text(path.name)} could not be read.</p>"
    if not data.startswith(_PNG_SIGNATURE):
        return f"<p>Snapshot {_text(path.name)} is not a PNG image; left out.</p>"
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{_text(alt)}" src="data:image/png;base64,{encoded}">'


def _where(finding: Finding) -> str:
    parts = [finding.node_name, finding.segment_id and f"segment {finding.segment_id}", finding.path]
    return " · ".join(part for part in parts if part)


def _findings_table(findings: Sequence[Finding]) -> str:
    if not findings:
        return "<p>No findings.</p>"
    rows = "".join(
        f'<tr class="{_text(f.severity)}"><td>{_text(f.severity)}</td><td>{_text(f.check)}</td>'
        f"<td>{_text(f.message)}</td><td>{_text(_where(f))}</td></tr>"
        for f in findings)
    return f"<table><tr><th>severity</th><th>check</th><th>finding</th><th>where</th></tr>{rows}</table>"


def _verdicts_table(records: Sequence[Any]) -> str:
    if not records:
        return "<p>Not reviewed yet.</p>"
    rows = "".join(
        f"<tr><td>{_text(r.annotation or 'whole case')}</td><td>{_text(r.verdict)}</td>"
        f'<td class="comment">{_text(r.comment)}</td><td>{_text(r.reviewer)}</td><td>{_text(r.time)}</td></tr>'
        for r in records)
    return f"<table><tr><th>on</th><th>verdict</th><th>comment</th><th>reviewer</th><th>time (UTC)</th></tr>{rows}</table>"


def _case_section(anchor: str, case: Any, case_qa: Optional[CaseQA], records: Sequence[Any],
                  snapshot: Optional[Path]) -> str:
    findings = case_qa.findings if case_qa else []
    status = case_qa.status if case_qa else "not checked"
    facts = [("Case", case.case_id), ("Collection", case.collection), ("Diagnosis", case.diagnosis or "—"),
             ("QA status", status), ("Findings", str(len(findings)))]
    details = "".join(f"<dt>{_text(name)}</dt><dd>{_text(value)}</dd>" for name, value in facts)
    return (f'<section class="case" id="{_text(anchor)}"><h2>{_text(case.case_id)}</h2><dl>{details}</dl>'
            f"{_image_tag(snapshot, case.case_id)}<h3>Findings</h3>{_findings_table(findings)}"
            f"<h3>Review</h3>{_verdicts_table(records)}</section>")


def write_html_report(path: Path, title: str, cases: Sequence[Any], store: Any = None,
                      qa_result: Optional[CollectionQA] = None, snapshots: Optional[Dict[str, Path]] = None,
                      reviewer: Optional[str] = None) -> Path:
    """A self-contained HTML report: summary table, then per case its facts, snapshot, findings and verdicts.

    :param cases: the collection's CaseInfo objects, in report order.
    :param store: a :class:`~.review_store.ReviewStore`, or None for QA only.
    :param snapshots: case ID -> PNG path (the QA results' own snapshots are used otherwise).
    :param reviewer: who prepared the report, shown in its header.
    """
    snapshots = dict(snapshots or {})
    by_id = _qa_index(qa_result)
    summary_rows = []
    sections = []
    reviewed = 0
    for number, case in enumerate(cases, start=1):
        case_qa = by_id.get(case.case_id)
        records = store.verdicts(case.case_id) if store is not None else []
        whole = next((record for record in records if not record.annotation), None)
        reviewed += whole is not None
        status = case_qa.status if case_qa else ""
        # Anchors by position: case IDs may hold any character and may sanitise alike.
        anchor = f"case-{number}"
        summary_rows.append(
            f'<tr><td><a href="#{anchor}">{_text(case.case_id)}</a></td><td>{_text(case.diagnosis)}</td>'
            f'<td class="{_text(status)}">{_text(status)}</td><td>{len(case_qa.findings) if case_qa else ""}</td>'
            f"<td>{_text(whole.verdict if whole else '')}</td></tr>")
        snapshot = snapshots.get(case.case_id) or (case_qa.snapshot if case_qa else None)
        sections.append(_case_section(anchor, case, case_qa, records, snapshot))
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [f"Generated {generated}", f"{reviewed} of {len(cases)} case(s) reviewed"]
    if reviewer:
        header.append(f"prepared by {reviewer}")
    collection_part = ""
    if qa_result is not None and (qa_result.collection_findings or qa_result.notes):
        notes = "".join(f"<li>{_text(note)}</li>" for note in qa_result.notes)
        collection_part = ("<h2>The collection as a whole</h2>" + _findings_table(qa_result.collection_findings)
                           + (f"<ul>{notes}</ul>" if notes else ""))
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_text(title)}</h1><p>{_text('; '.join(header))}.</p>"
        "<table><tr><th>case</th><th>diagnosis</th><th>QA status</th><th>findings</th><th>verdict</th></tr>"
        + "".join(summary_rows) + "</table>" + collection_part + "".join(sections) + "</body></html>\n")
    return _write_atomically(Path(path), lambda stream: stream.write(document))


def export_review(output_folder: Path, collection: Any, store: Any = None, qa_result: Optional[CollectionQA] = None,
                  progress: Optional[ProgressCallback] = None, snapshots: Optional[Dict[str, Path]] = None,
                  cases: Optional[Sequence[Any]] = None, reviewer: Optional[str] = None) -> List[Path]:
    """Write ``review.csv``, ``findings.csv`` (when QA ran) and ``report.html`` into ``output_folder``.

    :param cases: the cases to report, in order (default: the QA result's
        cases, else every case of the collection).
    :returns: the files written.
    """
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    report(progress, "Listing cases", 0.0)
    if cases is None:
        cases = [case.case for case in qa_result.cases] if qa_result is not None else collection.discover_cases()
    begin_output_set(output_folder, "report")  # until report.complete.json is written again, the set is incomplete
    written = [write_review_csv(safe_output_path(output_folder, "review.csv"), cases, store, qa_result)]
    report(progress, "Writing findings", 0.3)
    if qa_result is not None:
        written.append(write_findings_csv(safe_output_path(output_folder, "findings.csv"), qa_result))
    report(progress, "Writing the HTML report", 0.6)
    written.append(write_html_report(safe_output_path(output_folder, "report.html"), f"Review of {collection.title}",
                                     cases, store, qa_result, snapshots, reviewer))
    complete_output_set(output_folder, "report", written)  # last: marks the set complete
    report(progress, "Report written", 1.0)
    return written
