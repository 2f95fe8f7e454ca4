"""Exports of a review: CSV tables and one self-contained HTML report.

The HTML file carries its style sheet and snapshot images inline (data URIs),
so it can be mailed or archived on its own; every piece of text that comes
from data is HTML-escaped. File names built from case IDs are sanitised and
never leave the output folder.
"""
from __future__ import annotations

import base64
import csv
import datetime
import html
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .findings import Finding
from .output_paths import safe_output_path, sanitise_file_name
from .progress import ProgressCallback, report
from .qa import CollectionQA

__all__ = ["write_findings_csv", "write_review_csv", "write_html_report", "export_review"]

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
.error { color: #a00; } .warning { color: #a60; } .info { color: #555; }
.ok { color: #070; }
section.case { border-top: 2px solid #ccc; padding-top: 0.5em; }
img { max-width: 384px; border: 1px solid #888; }
"""


def write_findings_csv(path: Path, qa_result: CollectionQA) -> Path:
    """One row per finding of every case."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["case_id", "severity", "check", "message", "path", "node_name", "segment_id", "value"])
        for case in qa_result.cases:
            for finding in case.findings:
                writer.writerow([case.case.case_id, finding.severity, finding.check, finding.message, finding.path,
                                 finding.node_name, finding.segment_id, "" if finding.value is None else finding.value])
    return path


def write_review_csv(path: Path, case_ids: Sequence[str], store: Any, qa_result: Optional[CollectionQA] = None) -> Path:
    """One row per case: QA status and counts, and the whole-case verdict with comment, reviewer and time."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["case_id", "qa_status", "errors", "warnings", "verdict", "comment", "reviewer", "time",
                         "annotation_verdicts"])
        for case_id in case_ids:
            case_qa = qa_result.case(case_id) if qa_result is not None else None
            record = store.verdict(case_id) if store is not None else None
            annotations = [r for r in store.verdicts(case_id) if r.annotation] if store is not None else []
            writer.writerow([
                case_id,
                case_qa.status if case_qa else "",
                case_qa.count("error") if case_qa else "",
                case_qa.count("warning") if case_qa else "",
                record.verdict if record else "", record.comment if record else "",
                record.reviewer if record else "", record.time if record else "",
                "; ".join(f"{r.annotation}: {r.verdict}" for r in annotations),
            ])
    return path


def _image_tag(path: Optional[Path], alt: str) -> str:
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _findings_table(findings: List[Finding]) -> str:
    if not findings:
        return "<p>No findings.</p>"
    rows = "".join(
        f'<tr class="{html.escape(f.severity)}"><td>{html.escape(f.severity)}</td><td>{html.escape(f.check)}</td>'
        f"<td>{html.escape(f.message)}</td></tr>"
        for f in findings)
    return f"<table><tr><th>severity</th><th>check</th><th>finding</th></tr>{rows}</table>"


def _verdicts_table(records: Sequence[Any]) -> str:
    if not records:
        return "<p>Not reviewed yet.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(r.annotation or 'whole case')}</td><td>{html.escape(r.verdict)}</td>"
        f"<td>{html.escape(r.comment)}</td><td>{html.escape(r.reviewer)}</td><td>{html.escape(r.time)}</td></tr>"
        for r in records)
    return f"<table><tr><th>on</th><th>verdict</th><th>comment</th><th>reviewer</th><th>time</th></tr>{rows}</table>"


def write_html_report(path: Path, title: str, cases: Sequence[Any], store: Any = None,
                      qa_result: Optional[CollectionQA] = None, snapshots: Optional[Dict[str, Path]] = None) -> Path:
    """A self-contained HTML report: summary table, then per case findings, verdicts and snapshot.

    :param cases: the collection's CaseInfo objects, in report order.
    :param snapshots: case ID -> PNG path (QA results' own snapshots are used otherwise).
    """
    snapshots = dict(snapshots or {})
    summary_rows = []
    sections = []
    for case in cases:
        case_qa = qa_result.case(case.case_id) if qa_result is not None else None
        findings = case_qa.findings if case_qa else []
        records = store.verdicts(case.case_id) if store is not None else []
        whole = next((r for r in records if not r.annotation), None)
        status = case_qa.status if case_qa else ""
        anchor = "case-" + sanitise_file_name(case.case_id)
        summary_rows.append(
            f'<tr><td><a href="#{html.escape(anchor)}">{html.escape(case.case_id)}</a></td>'
            f"<td>{html.escape(case.diagnosis)}</td><td class=\"{html.escape(status)}\">{html.escape(status)}</td>"
            f"<td>{len(findings)}</td><td>{html.escape(whole.verdict if whole else '')}</td></tr>")
        snapshot = snapshots.get(case.case_id) or (case_qa.snapshot if case_qa else None)
        sections.append(
            f'<section class="case" id="{html.escape(anchor)}"><h2>{html.escape(case.case_id)}</h2>'
            f"<p>{html.escape(case.collection)}{' — ' + html.escape(case.diagnosis) if case.diagnosis else ''}</p>"
            f"{_image_tag(snapshot, case.case_id)}<h3>Findings</h3>{_findings_table(findings)}"
            f"<h3>Review</h3>{_verdicts_table(records)}</section>")
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document = (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Generated {generated}.</p>"
        "<table><tr><th>case</th><th>diagnosis</th><th>QA status</th><th>findings</th><th>verdict</th></tr>"
        + "".join(summary_rows) + "</table>" + "".join(sections) + "</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path


def export_review(output_folder: Path, collection: Any, store: Any, qa_result: Optional[CollectionQA] = None,
                  progress: Optional[ProgressCallback] = None, snapshots: Optional[Dict[str, Path]] = None) -> List[Path]:
    """Write ``review.csv``, ``findings.csv`` (when QA ran) and ``report.html`` into ``output_folder``."""
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    report(progress, "Listing cases", 0.0)
    cases = collection.discover_cases()
    case_ids = [case.case_id for case in cases]
    written = [write_review_csv(safe_output_path(output_folder, "review.csv"), case_ids, store, qa_result)]
    report(progress, "Writing findings", 0.3)
    if qa_result is not None:
        written.append(write_findings_csv(safe_output_path(output_folder, "findings.csv"), qa_result))
    report(progress, "Writing the HTML report", 0.6)
    written.append(write_html_report(safe_output_path(output_folder, "report.html"), f"Review of {collection.title}",
                                     cases, store, qa_result, snapshots))
    report(progress, "Report written", 1.0)
    return written


