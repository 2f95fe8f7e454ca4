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

import collections
import csv
import datetime
import html
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from ..findings import Finding
from ..formats.atomic import begin_output_set, complete_output_set, write_text_atomically
from ..formats.output_paths import safe_output_path
from ..progress import ProgressCallback, report
from ..scene.preview_layout import read_montage
from .qa import CaseQA, CollectionQA

__all__ = [
    "FINDINGS_CSV_COLUMNS",
    "REVIEW_CSV_COLUMNS",
    "csv_cell",
    "write_csv",
    "write_findings_csv",
    "write_review_csv",
    "write_verdicts_csv",
    "write_segmentation_agreement_csvs",
    "write_html_report",
    "export_review",
]

#: Columns of ``findings.csv``: one row per finding (collection-wide findings have no case ID).
FINDINGS_CSV_COLUMNS = ["case_id", "collection", "severity", "check", "message", "path", "node_name", "segment_id",
                        "ras", "value"]

#: Columns of ``review.csv``: one row per case.
REVIEW_CSV_COLUMNS = ["case_id", "collection", "diagnosis", "qa_status", "errors", "warnings", "findings", "verdict",
                      "comment", "reviewer", "time", "annotation_verdicts"]

#: Characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
table { max-width: 100%; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; word-break: break-word; }
dd { overflow-wrap: anywhere; }
.path { font-family: monospace; font-size: 0.9em; }
.adjudication { background: #eef5ff; }
th { background: #eee; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { font-weight: bold; } dd { margin: 0; }
.error { color: #a00; } .warning { color: #a60; } .info { color: #555; } .ok { color: #070; }
.errors { color: #a00; } .warnings { color: #a60; }
.comment { white-space: pre-wrap; }
section.case { border-top: 2px solid #ccc; padding-top: 0.5em; }
figure.montage { margin: 0.5em 0 1em; }
figure.montage img { max-width: 100%; height: auto; border: 1px solid #888; cursor: zoom-in; }
figure.montage img.zoomed { position: fixed; inset: 0; margin: auto; max-width: 98vw; max-height: 98vh;
  width: auto; z-index: 10; cursor: zoom-out; box-shadow: 0 0 0 100vmax rgba(0, 0, 0, 0.85); }
figure.montage figcaption { color: #444; font-size: 0.9em; }
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


def write_verdicts_csv(path: Path, store: Any, case_ids: Optional[Iterable[str]] = None) -> Path:
    """Every reader's current verdict (columns :data:`~.store.REVIEW_STORE_CSV_COLUMNS`), one row per reader
    and item, with the item's adjudicated verdict and the reader's own history of it (oldest first).

    Cases in ``case_ids`` without any verdict get a row with empty verdict
    columns, so the file lists every case that still needs review.
    """
    from .store import REVIEW_STORE_CSV_COLUMNS

    history: Dict[Any, List[str]] = {}
    for record in store.history():
        history.setdefault((record.case_id, record.annotation, record.reviewer), []).append(
            f"{record.time} {record.verdict}")
    adjudicated = {(item.case_id, item.annotation): item for item in store.adjudications()}
    rows = []
    seen = set()
    for record in store.verdicts():
        final = adjudicated.get((record.case_id, record.annotation))
        rows.append([record.case_id, record.annotation, record.item_type, record.verdict, record.comment,
                     record.reviewer, record.time, final.verdict if final else "", final.adjudicator if final else "",
                     " | ".join(history.get((record.case_id, record.annotation, record.reviewer), []))])
        seen.add(record.case_id)
    rows.extend([case_id] + [""] * (len(REVIEW_STORE_CSV_COLUMNS) - 1)
                for case_id in case_ids or [] if case_id not in seen)
    return write_csv(path, REVIEW_STORE_CSV_COLUMNS, rows)


def write_segmentation_agreement_csvs(output_folder: Path, qa_result: CollectionQA) -> List[Path]:
    """``segmentation_agreement.csv`` (every case's expert vs AI rows) and ``segmentation_agreement_summary.csv``
    (per AI series, kind and structure), when any case has an AI segmentation compared; else nothing.

    Numbers are written in full (Python's shortest exact form), so the CSV gives back the measured values.
    """
    from .agreement import (SEGMENTATION_AGREEMENT_CSV_COLUMNS, SEGMENTATION_SUMMARY_COLUMNS,
                            segmentation_agreement_rows, segmentation_agreement_summary)

    rows = segmentation_agreement_rows(qa_result.cases)
    if not rows:
        return []
    summary = segmentation_agreement_summary(rows)
    return [
        write_csv(safe_output_path(output_folder, "segmentation_agreement.csv"), SEGMENTATION_AGREEMENT_CSV_COLUMNS,
                  [[_number_cell(row[column]) for column in SEGMENTATION_AGREEMENT_CSV_COLUMNS] for row in rows]),
        write_csv(safe_output_path(output_folder, "segmentation_agreement_summary.csv"), SEGMENTATION_SUMMARY_COLUMNS,
                  [[_number_cell(row[column]) for column in SEGMENTATION_SUMMARY_COLUMNS] for row in summary]),
    ]


def _number_cell(value: Any) -> Any:
    """NaN (undefined Dice or HD95) as an empty cell, not the text "nan" a spreadsheet would read as a word."""
    if isinstance(value, float) and value != value:
        return ""
    return value


def _case_id(case: CaseLike) -> str:
    return case if isinstance(case, str) else case.case_id


def _qa_index(qa_result: Optional[CollectionQA]) -> Dict[str, CaseQA]:
    return {case.case.case_id: case for case in qa_result.cases} if qa_result is not None else {}


def _annotation_verdicts(records: Sequence[Any]) -> str:
    """``"Tumor_8: rejected; ..."``; with several readers on an annotation, each verdict names its reader."""
    readers_per_annotation = collections.Counter(record.annotation for record in records if record.annotation)
    return "; ".join(
        f"{record.annotation}: {record.verdict}" + (f" ({record.reviewer})"
                                                    if readers_per_annotation[record.annotation] > 1 else "")
        for record in records if record.annotation)


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
        whole = store.verdict(case_id) if store is not None else None
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
            _annotation_verdicts(records),
        ])
    return write_csv(path, REVIEW_CSV_COLUMNS, rows)


# ---------------------------------------------------------------------- HTML
def _text(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _image_tag(path: Optional[Path], alt: str) -> str:
    """The case's preview montage inline with its caption (click to enlarge), or a note when it is unusable."""
    if path is None:
        return ""
    path = Path(path)
    try:
        montage = read_montage(path)
    except OSError:
        return f"<p>Snapshot {_text(path.name)} could not be read.</p>"
    except ValueError:
        return f"<p>Snapshot {_text(path.name)} is not a PNG image; left out.</p>"
    return (f'<figure class="montage"><img alt="{_text(alt)}" src="{montage.data_uri}" width="{montage.width}" '
            f'title="Click to enlarge" onclick="this.classList.toggle(\'zoomed\')">'
            f"<figcaption>{_text(montage.caption)}</figcaption></figure>")


def _where_html(finding: Finding) -> str:
    """Where a finding is, with its path in a wrapping monospace span (long paths must not widen the page)."""
    parts = [_text(part) for part in (finding.node_name, finding.segment_id and f"segment {finding.segment_id}")
             if part]
    if finding.path:
        parts.append(f'<span class="path">{_text(finding.path)}</span>')
    return " · ".join(parts)


def _findings_table(findings: Sequence[Finding]) -> str:
    if not findings:
        return "<p>No findings.</p>"
    rows = "".join(
        f'<tr class="{_text(f.severity)}"><td>{_text(f.severity)}</td><td>{_text(f.check)}</td>'
        f"<td>{_text(f.message)}</td><td>{_where_html(f)}</td></tr>"
        for f in findings)
    return f"<table><tr><th>severity</th><th>check</th><th>finding</th><th>where</th></tr>{rows}</table>"


def _verdicts_table(records: Sequence[Any], adjudications: Sequence[Any] = ()) -> str:
    """Every reader's current verdict per item, side by side, and the adjudicated verdicts."""
    if not records and not adjudications:
        return "<p>Not reviewed yet.</p>"
    rows = "".join(
        f"<tr><td>{_text(r.annotation or 'whole case')}</td><td>{_text(r.reviewer)}</td><td>{_text(r.verdict)}</td>"
        f'<td class="comment">{_text(r.comment)}</td><td>{_text(r.time)}</td></tr>'
        for r in records)
    rows += "".join(
        f'<tr class="adjudication"><td>{_text(a.annotation or "whole case")}</td>'
        f"<td>{_text(a.adjudicator)} (adjudicator)</td><td>{_text(a.verdict)}</td>"
        f'<td class="comment">{_text(a.comment)}'
        f"{_text(' — settles ' + ', '.join(f'{r.reviewer}: {r.verdict}' for r in a.settles))}</td>"
        f"<td>{_text(a.time)}</td></tr>"
        for a in adjudications)
    return ("<table><tr><th>on</th><th>reader</th><th>verdict</th><th>comment</th><th>time (UTC)</th></tr>"
            f"{rows}</table>")


def _summary_verdict(store: Any, case_id: str) -> str:
    """The whole-case verdict for the summary: the adjudicated one, else each reader's."""
    final = store.adjudication(case_id)
    if final is not None:
        return f"{final.verdict} (adjudicated)"
    reads = store.reads(case_id)
    if len(reads) == 1:
        return reads[0].verdict
    return "; ".join(f"{read.reviewer}: {read.verdict}" for read in reads)


def _history_list(history: Sequence[Any]) -> str:
    """Every verdict ever given on the case, oldest first (collapsed, so long histories stay out of the way)."""
    if not history:
        return ""
    items = "".join(
        f"<li>{_text(r.time)}: {_text(r.reviewer)} — {_text(r.annotation or 'whole case')}: {_text(r.verdict)}"
        + (f' <span class="comment">({_text(r.comment)})</span>' if r.comment else "") + "</li>"
        for r in history)
    return f"<details><summary>History ({len(history)} verdict(s))</summary><ol>{items}</ol></details>"


def _agreement_table(agreements: Sequence[Any]) -> str:
    from .agreement import AGREEMENT_COLUMNS

    header = "".join(f"<th>{_text(column.replace('_', ' '))}</th>" for column in AGREEMENT_COLUMNS)
    rows = "".join("<tr>" + "".join(f"<td>{_text(value)}</td>" for value in agreement.row()) + "</tr>"
                   for agreement in agreements)
    return f"<h2>Agreement between readers</h2><table><tr>{header}</tr>{rows}</table>"


def _measure(value: Any, digits: int) -> str:
    """A measured number for the HTML report, "—" when undefined (None or NaN)."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{float(value):.{digits}f}"


#: (column, heading, digits) of the HTML agreement tables; None digits: text.
_SEGMENTATION_COLUMNS = [("kind", "compared", None), ("structure", "structure", None),
                         ("reference_labels", "expert segments", None), ("test_labels", "AI segments", None),
                         ("dice", "Dice", 4), ("hd95_mm", "HD95 (mm)", 2), ("reference_ml", "expert (mL)", 2),
                         ("test_ml", "AI (mL)", 2), ("volume_difference_ml", "difference (mL)", 2),
                         ("volume_difference_percent", "difference (%)", 1)]


def _segmentation_agreement_html(rows: Sequence[Dict[str, Any]]) -> str:
    """A case's expert vs AI agreement: one table per AI segmentation compared."""
    if not rows:
        return ""
    parts = ["<h3>Expert vs AI segmentation</h3>"]
    by_test: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        by_test.setdefault(str(row.get("test", "")), []).append(row)
    header = "".join(f"<th>{_text(title)}</th>" for _, title, _ in _SEGMENTATION_COLUMNS)
    for test, members in by_test.items():
        body = "".join(
            "<tr>" + "".join(f"<td>{_text(row.get(column) if digits is None else _measure(row.get(column), digits))}"
                             "</td>" for column, _, digits in _SEGMENTATION_COLUMNS) + "</tr>"
            for row in members)
        parts.append(f"<p>{_text(test)} against {_text(members[0].get('reference', ''))}</p>"
                     f"<table><tr>{header}</tr>{body}</table>")
    return "".join(parts)


def _segmentation_summary_html(summary: Sequence[Dict[str, Any]]) -> str:
    """The collection's expert vs AI agreement per AI series, kind and structure."""
    if not summary:
        return ""
    columns = [("test_description", "AI series", None), ("kind", "compared", None), ("structure", "structure", None),
               ("cases", "cases", None), ("dice_mean", "Dice mean", 4), ("dice_median", "Dice median", 4),
               ("hd95_mean_mm", "HD95 mean (mm)", 2), ("hd95_median_mm", "HD95 median (mm)", 2),
               ("volume_difference_mean_ml", "volume difference mean (mL)", 2)]
    header = "".join(f"<th>{_text(title)}</th>" for _, title, _ in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_text(row.get(column) if digits is None else _measure(row.get(column), digits))}"
                         "</td>" for column, _, digits in columns) + "</tr>"
        for row in summary)
    return ("<h2>Expert vs AI segmentation agreement</h2><p>Structures matched by their segmented-property codes; "
            "tumours as a union and one-to-one. Means and medians over the cases where a measure is defined.</p>"
            f"<table><tr>{header}</tr>{body}</table>")


def _case_section(anchor: str, case: Any, case_qa: Optional[CaseQA], records: Sequence[Any],
                  snapshot: Optional[Path], adjudications: Sequence[Any] = (), history: Sequence[Any] = ()) -> str:
    findings = case_qa.findings if case_qa else []
    status = case_qa.status if case_qa else "not checked"
    facts = [("Case", case.case_id), ("Collection", case.collection), ("Diagnosis", case.diagnosis or "—"),
             ("QA status", status), ("Findings", str(len(findings)))]
    metrics = case_qa.metrics if case_qa else {}
    # Physical tumours: Lung-PET-CT-Dx lesions seen on several series count once; CRLM's empty segments not at all.
    counts = (("lesions", "Lesions (tumours)"), ("tumour_count", "Tumours"))
    facts += [(label, str(metrics[key])) for key, label in counts if key in metrics]
    details = "".join(f"<dt>{_text(name)}</dt><dd>{_text(value)}</dd>" for name, value in facts)
    return (f'<section class="case" id="{_text(anchor)}"><h2>{_text(case.case_id)}</h2><dl>{details}</dl>'
            f"{_image_tag(snapshot, case.case_id)}<h3>Findings</h3>{_findings_table(findings)}"
            f"{_segmentation_agreement_html(case_qa.metrics.get('seg_agreement', []) if case_qa else [])}"
            f"<h3>Review</h3>{_verdicts_table(records, adjudications)}{_history_list(history)}</section>")


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
        whole = store.verdict(case.case_id) if store is not None else None
        reviewed += whole is not None
        status = case_qa.status if case_qa else ""
        # Anchors by position: case IDs may hold any character and may sanitise alike.
        anchor = f"case-{number}"
        summary_rows.append(
            f'<tr><td><a href="#{anchor}">{_text(case.case_id)}</a></td><td>{_text(case.diagnosis)}</td>'
            f'<td class="{_text(status)}">{_text(status)}</td><td>{len(case_qa.findings) if case_qa else ""}</td>'
            f"<td>{_text(_summary_verdict(store, case.case_id) if store is not None else '')}</td></tr>")
        snapshot = snapshots.get(case.case_id) or (case_qa.snapshot if case_qa else None)
        adjudications = store.adjudications(case.case_id) if store is not None else []
        history = store.history(case.case_id) if store is not None else []
        sections.append(_case_section(anchor, case, case_qa, records, snapshot, adjudications, history))
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [f"Generated {generated}", f"{reviewed} of {len(cases)} case(s) reviewed"]
    if reviewer:
        header.append(f"prepared by {reviewer}")
    collection_part = ""
    if qa_result is not None and (qa_result.collection_findings or qa_result.notes):
        notes = "".join(f"<li>{_text(note)}</li>" for note in qa_result.notes)
        collection_part = ("<h2>The collection as a whole</h2>" + _findings_table(qa_result.collection_findings)
                           + (f"<ul>{notes}</ul>" if notes else ""))
    agreement_part = ""
    if qa_result is not None:
        from .agreement import segmentation_agreement_rows, segmentation_agreement_summary

        agreement_part = _segmentation_summary_html(
            segmentation_agreement_summary(segmentation_agreement_rows(qa_result.cases)))
    if store is not None:
        from .agreement import reader_agreement

        verdicts = store.verdicts()
        if verdicts:
            agreement_part += _agreement_table(reader_agreement(verdicts))
    document = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_text(title)}</h1><p>{_text('; '.join(header))}.</p>"
        "<table><tr><th>case</th><th>diagnosis</th><th>QA status</th><th>findings</th><th>verdict</th></tr>"
        + "".join(summary_rows) + "</table>" + agreement_part + collection_part + "".join(sections)
        + "</body></html>\n")
    return _write_atomically(Path(path), lambda stream: stream.write(document))


def export_review(output_folder: Path, collection: Any, store: Any = None, qa_result: Optional[CollectionQA] = None,
                  progress: Optional[ProgressCallback] = None, snapshots: Optional[Dict[str, Path]] = None,
                  cases: Optional[Sequence[Any]] = None, reviewer: Optional[str] = None) -> List[Path]:
    """Write ``review.csv``, ``findings.csv`` (when QA ran) and ``report.html`` into ``output_folder``, with
    ``segmentation_agreement.csv`` and ``segmentation_agreement_summary.csv`` when QA compared AI segmentations.

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
        written.extend(write_segmentation_agreement_csvs(output_folder, qa_result))
    report(progress, "Writing the HTML report", 0.6)
    written.append(write_html_report(safe_output_path(output_folder, "report.html"), f"Review of {collection.title}",
                                     cases, store, qa_result, snapshots, reviewer))
    complete_output_set(output_folder, "report", written)  # last: marks the set complete
    report(progress, "Report written", 1.0)
    return written
