"""The QA engine: run a collection's checks on one case or on every case.

The checks themselves live with each collection: loading a case reports what
it found as :class:`~.findings.Finding` objects and measures metrics (volumes,
counts, Dice). This module loads cases one after another, turns a case that
cannot be loaded into an error finding naming the file (instead of stopping),
and summarises the results for the review panel, the report and the command
line.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import DataError
from .findings import ERROR, INFO, WARNING, Finding
from .progress import ProgressCallback, report, sub_progress
from .registry import CaseInfo, Collection

__all__ = ["CaseQA", "CollectionQA", "run_case_qa", "run_collection_qa", "describe_collection_qa", "qa_status"]

STATUS_OK, STATUS_WARNINGS, STATUS_ERRORS = "ok", "warnings", "errors"


def qa_status(findings: List[Finding]) -> str:
    """``"errors"`` if any finding is an error, else ``"warnings"`` if any is a warning, else ``"ok"``."""
    severities = {finding.severity for finding in findings}
    if ERROR in severities:
        return STATUS_ERRORS
    if WARNING in severities:
        return STATUS_WARNINGS
    return STATUS_OK


@dataclass
class CaseQA:
    """The QA result of one case."""

    case: CaseInfo
    findings: List[Finding] = field(default_factory=list)
    metrics: Dict[str, Any] = field(default_factory=dict)
    loaded: bool = True
    snapshot: Optional[Path] = None

    @property
    def status(self) -> str:
        return qa_status(self.findings)

    def count(self, severity: str) -> int:
        return sum(1 for finding in self.findings if finding.severity == severity)


@dataclass
class CollectionQA:
    """The QA results of every case of a collection."""

    collection_title: str
    root: Path
    cases: List[CaseQA] = field(default_factory=list)

    def by_severity(self) -> Dict[str, int]:
        counts: Dict[str, int] = collections.Counter()
        for case in self.cases:
            for finding in case.findings:
                counts[finding.severity] += 1
        return dict(counts)

    def by_check(self) -> Dict[str, int]:
        counts: Dict[str, int] = collections.Counter()
        for case in self.cases:
            for finding in case.findings:
                counts[finding.check] += 1
        return dict(sorted(counts.items()))

    def by_status(self) -> Dict[str, int]:
        return dict(collections.Counter(case.status for case in self.cases))

    def case(self, case_id: str) -> Optional[CaseQA]:
        return next((result for result in self.cases if result.case.case_id == case_id), None)


def run_case_qa(collection: Collection, case: CaseInfo, scene: Any = None, progress: Optional[ProgressCallback] = None,
                snapshot_path: Optional[Path] = None, application_logic: Any = None) -> CaseQA:
    """Load ``case``, keep its findings and metrics, and remove it from the scene again.

    :param scene: the scene to load into (Slicer's own inside the application);
        a temporary headless scene is created and closed when None.
    :param snapshot_path: also render a PNG snapshot of the case there.
    :param application_logic: the application logic of ``scene`` (Slicer's own when None).
    :raises LoadCancelled: when the progress callback asks to stop.
    """
    if scene is None:
        from .headless import HeadlessSlicer

        with HeadlessSlicer(install_globals=False) as environment:
            return run_case_qa(collection, case, environment.scene, progress, snapshot_path,
                               environment.application_logic)
    from .browser import CollectionBrowser

    browser = CollectionBrowser(scene)
    browser.collection = collection
    browser._cases = [case]  # the case is known: do not index the collection again
    try:
        loaded = browser.load_case(case.case_id, progress)
    except DataError as error:
        finding = Finding(ERROR, "load.failed", f"{case.case_id} could not be loaded: {error}",
                          case_id=case.case_id, path=error.path)
        return CaseQA(case, [finding], {}, loaded=False)
    result = CaseQA(case, list(loaded.findings), dict(loaded.metrics))
    try:
        if snapshot_path is not None and loaded.volumes:
            try:
                from .render import render_case_snapshot

                result.snapshot = render_case_snapshot(scene, loaded, Path(snapshot_path),
                                                       application_logic=application_logic)
            except (RuntimeError, ValueError) as error:
                result.findings.append(Finding(INFO, "qa.no_snapshot", f"no snapshot of {case.case_id}: {error}",
                                               case_id=case.case_id))
    finally:
        browser.unload_case(loaded.case.case_id)
    return result


def run_collection_qa(collection: Collection, progress: Optional[ProgressCallback] = None, scene: Any = None,
                      snapshot_folder: Optional[Path] = None) -> CollectionQA:
    """Run :func:`run_case_qa` on every case; one failing case never stops the rest.

    Progress reads "k of N"; returning True from the callback cancels (raises
    :class:`LoadCancelled`).
    """
    cases = collection.discover_cases(sub_progress(progress, 0.0, 0.05))
    result = CollectionQA(collection.title, collection.root)
    environment = None
    application_logic = None
    if scene is None:
        from .headless import HeadlessSlicer

        environment = HeadlessSlicer(install_globals=False)
        scene, application_logic = environment.scene, environment.application_logic
    try:
        for index, case in enumerate(cases):
            report(progress, f"Checking {case.case_id} ({index + 1} of {len(cases)})", 0.05 + 0.95 * index / max(1, len(cases)))
            snapshot = None
            if snapshot_folder is not None:
                from .output_paths import sanitise_file_name

                snapshot = Path(snapshot_folder) / f"{sanitise_file_name(case.case_id)}.png"
            result.cases.append(run_case_qa(collection, case, scene, None, snapshot, application_logic))
        report(progress, f"Checked {len(cases)} case(s)", 1.0)
    finally:
        if environment is not None:
            environment.close()
    return result


def describe_collection_qa(result: CollectionQA) -> str:
    """A few lines summarising a collection's QA for a message box or a terminal."""
    statuses = result.by_status()
    severities = result.by_severity()
    lines = [
        f"{result.collection_title}: {len(result.cases)} case(s) checked",
        "  " + ", ".join(f"{statuses.get(status, 0)} {status}" for status in (STATUS_OK, STATUS_WARNINGS, STATUS_ERRORS)),
        "  findings: " + (", ".join(f"{count} {severity}" for severity, count in sorted(severities.items())) or "none"),
    ]
    for check, count in result.by_check().items():
        lines.append(f"    {check}: {count}")
    return "\n".join(lines)

