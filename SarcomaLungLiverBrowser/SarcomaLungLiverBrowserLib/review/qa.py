"""The QA engine: run a collection's checks on one case or on every case.

The checks themselves live with each collection: loading a case reports what
it found as :class:`~.findings.Finding` objects and measures metrics (volumes,
counts, Dice). This module loads cases one after another into a scene and
removes them again, turns a case that cannot be loaded into an error finding
naming the file (instead of stopping), and summarises the results for the
review panel, the report and the command line.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import DataError, LoadCancelled
from ..findings import ERROR, INFO, WARNING, Finding
from ..progress import ProgressCallback, report, sub_progress
from ..registry import CaseInfo, Collection
from ..collections.base import case_location

__all__ = [
    "CaseQA",
    "CollectionQA",
    "run_case_qa",
    "run_collection_qa",
    "describe_collection_qa",
    "qa_status",
    "snapshot_paths",
    "STATUS_OK",
    "STATUS_WARNINGS",
    "STATUS_ERRORS",
]

logger = logging.getLogger(__name__)

STATUS_OK, STATUS_WARNINGS, STATUS_ERRORS = "ok", "warnings", "errors"

#: Check names the engine itself reports (the collections report the rest).
CHECK_LOAD_FAILED = "load.failed"
CHECK_LOAD_CRASHED = "load.unexpected_error"
CHECK_NO_SNAPSHOT = "qa.no_snapshot"
CHECK_COLLECTION_CHECK_FAILED = "qa.collection_check_failed"


def qa_status(findings: Iterable[Finding]) -> str:
    """``"errors"`` if any finding is an error, else ``"warnings"`` if any is a warning, else ``"ok"``."""
    severities = {finding.severity for finding in findings}
    if ERROR in severities:
        return STATUS_ERRORS
    if WARNING in severities:
        return STATUS_WARNINGS
    return STATUS_OK


@dataclass
class CaseQA:
    """The QA result of one case.

    :param loaded: False when the case could not be loaded (its findings then
        hold the error naming the file).
    :param snapshot: a PNG of the case, when one was rendered.
    """

    case: CaseInfo
    findings: List[Finding] = field(default_factory=list)
    metrics: Dict[str, Any] = field(default_factory=dict)
    loaded: bool = True
    snapshot: Optional[Path] = None
    #: findings that came without a case ID (candidates for collection-wide findings)
    unattributed: List[Finding] = field(default_factory=list, repr=False, compare=False)

    @property
    def case_id(self) -> str:
        return self.case.case_id

    @property
    def status(self) -> str:
        """``"ok"``, ``"warnings"`` or ``"errors"``."""
        return qa_status(self.findings)

    def count(self, severity: str) -> int:
        """How many findings of this severity the case has."""
        return sum(1 for finding in self.findings if finding.severity == severity)


@dataclass
class CollectionQA:
    """The QA results of every case of a collection.

    :param collection_findings: findings about the collection as a whole
        (e.g. a published count table that disagrees with the files), which
        every case's load reports again; kept once here, not per case.
    :param notes: remarks about the run itself (e.g. snapshots unavailable).
    """

    collection_title: str
    root: Path
    cases: List[CaseQA] = field(default_factory=list)
    collection_findings: List[Finding] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def all_findings(self) -> List[Finding]:
        """The collection's findings, then every case's, in case order."""
        return list(self.collection_findings) + [finding for case in self.cases for finding in case.findings]

    def by_severity(self) -> Dict[str, int]:
        """Number of findings per severity."""
        return dict(collections.Counter(finding.severity for finding in self.all_findings()))

    def by_check(self) -> Dict[str, int]:
        """Number of findings per check, sorted by check name."""
        return dict(sorted(collections.Counter(finding.check for finding in self.all_findings()).items()))

    def by_status(self) -> Dict[str, int]:
        """Number of cases per QA status."""
        return dict(collections.Counter(case.status for case in self.cases))

    def case(self, case_id: str) -> Optional[CaseQA]:
        """The result of one case, or None."""
        return next((result for result in self.cases if result.case.case_id == case_id), None)


def snapshot_paths(folder: Path, case_ids: Sequence[str], suffix: str = ".png") -> Dict[str, Path]:
    """One file per case ID in ``folder``, never outside it and never shared.

    Case IDs come from the data, so ``"../x"`` or ``"/etc/x"`` must not steer
    a file out of the folder; two IDs that sanitise alike (``"A/B"``,
    ``"A_B"``) get distinct names, or one case's picture would show another.
    """
    from ..formats.output_paths import safe_output_path, sanitise_file_name, unique_name

    taken: List[str] = []
    paths: Dict[str, Path] = {}
    for case_id in case_ids:
        name = unique_name(sanitise_file_name(case_id, fallback="case"), taken, suffix)
        taken.append(name)
        paths[case_id] = safe_output_path(Path(folder), name, suffix)
    return paths


def _with_case_id(findings: Iterable[Finding], case_id: str) -> List[Finding]:
    """The findings, each naming its case (collections may leave ``case_id`` empty)."""
    return [finding if finding.case_id else dataclasses.replace(finding, case_id=case_id) for finding in findings]


def _failure_finding(case: CaseInfo, error: Exception) -> Finding:
    """An error finding for a case that could not be loaded, naming the file when known."""
    if isinstance(error, DataError):
        return Finding(ERROR, CHECK_LOAD_FAILED, f"{case.case_id} could not be loaded: {error}",
                       case_id=case.case_id, path=error.path)
    # A reader bug or an unforeseen file must not stop the review of the other cases.
    logger.exception("unexpected error while loading %s", case.case_id)
    where = case_location(case) or str(case.root)
    return Finding(ERROR, CHECK_LOAD_CRASHED,
                   f"{case.case_id} could not be loaded from {where}: unexpected {type(error).__name__}: {error}",
                   case_id=case.case_id, path=where)


def _render_snapshot(scene: Any, loaded: Any, png_path: Path, application_logic: Any) -> Path:
    """Render a snapshot; ImportError when the renderer is not available here."""
    from ..scene.render import render_case_snapshot

    return render_case_snapshot(scene, loaded, Path(png_path), application_logic=application_logic)


def _case_qa_in_scene(collection: Collection, case: CaseInfo, scene: Any, progress: Optional[ProgressCallback],
                      snapshot_path: Optional[Path], application_logic: Any, notes: List[str]) -> CaseQA:
    from ..browser import CollectionBrowser

    browser = CollectionBrowser(scene)
    browser.collection = collection
    browser._cases = [case]  # the case is known: do not index the collection again
    try:
        loaded = browser.load_case(case.case_id, progress)
    except LoadCancelled:
        raise
    except Exception as error:  # noqa: BLE001 - every failure becomes a finding; the transaction cleaned up
        return CaseQA(case, [_failure_finding(case, error)], {}, loaded=False)
    result = CaseQA(case, _with_case_id(loaded.findings, case.case_id), dict(loaded.metrics))
    result.unattributed = [finding for finding, original in zip(result.findings, loaded.findings)
                           if not original.case_id]
    try:
        if snapshot_path is not None and loaded.volumes:
            try:
                result.snapshot = _render_snapshot(scene, loaded, Path(snapshot_path), application_logic)
            except ImportError as error:
                note = f"snapshots skipped: the renderer is not available here ({error})"
                if note not in notes:
                    logger.warning(note)
                    notes.append(note)
            except (RuntimeError, ValueError, OSError, DataError) as error:
                result.findings.append(Finding(INFO, CHECK_NO_SNAPSHOT, f"no snapshot of {case.case_id}: {error}",
                                               case_id=case.case_id))
    finally:
        browser.unload_case(loaded.case.case_id)
    return result


def run_case_qa(collection: Collection, case: CaseInfo, progress: Optional[ProgressCallback] = None, *,
                scene: Any = None, snapshot_path: Optional[Path] = None, application_logic: Any = None,
                notes: Optional[List[str]] = None) -> CaseQA:
    """Load ``case``, keep its findings and metrics, and remove it from the scene again.

    A case that cannot be loaded does not raise: its result holds one error
    finding naming the file, and ``loaded`` is False.

    :param scene: the scene to load into (Slicer's own inside the application);
        a temporary headless scene is created and closed when None.
    :param snapshot_path: also render a PNG snapshot of the case there.
    :param application_logic: the application logic of ``scene`` (Slicer's own when None).
    :param notes: receives remarks about the run (e.g. snapshots unavailable).
    :raises LoadCancelled: when the progress callback asks to stop.
    """
    notes = notes if notes is not None else []
    if scene is not None:
        return _case_qa_in_scene(collection, case, scene, progress, snapshot_path, application_logic, notes)
    from ..scene.headless import HeadlessSlicer

    with HeadlessSlicer(install_globals=False) as environment:
        return _case_qa_in_scene(collection, case, environment.scene, progress, snapshot_path,
                                 environment.application_logic, notes)


def _case_progress(progress: Optional[ProgressCallback], index: int, total: int) -> Optional[ProgressCallback]:
    """The collection's callback, for case ``index``: messages say "k of N", fractions map to its share."""
    if progress is None:
        return None
    scaled = sub_progress(progress, 0.05 + 0.95 * index / total, 0.05 + 0.95 * (index + 1) / total)
    assert scaled is not None

    def case_progress(message: str, fraction: float) -> Optional[bool]:
        return scaled(f"Case {index + 1} of {total}: {message}", fraction)

    return case_progress


def _finding_key(finding: Finding) -> Tuple[Any, ...]:
    """What makes two findings the same finding, whichever case reported it."""
    return (finding.severity, finding.check, finding.message, finding.path, finding.node_name, finding.segment_id)


def _split_collection_findings(cases: List[CaseQA]) -> List[Finding]:
    """Move findings that several cases repeat without naming a case to the collection.

    Some collections compare the whole folder with a published table on every
    load; counting that once per case would mark every case as faulty.
    """
    seen_in: Dict[Tuple[Any, ...], set] = collections.defaultdict(set)
    first: Dict[Tuple[Any, ...], Finding] = {}
    for case in cases:
        for finding in case.unattributed:
            seen_in[_finding_key(finding)].add(case.case_id)
            first.setdefault(_finding_key(finding), finding)
    shared = {item for item, case_ids in seen_in.items() if len(case_ids) > 1}
    if not shared:
        return []
    for case in cases:
        case.findings = [finding for finding in case.findings
                         if not (_finding_key(finding) in shared and finding in case.unattributed)]
        case.unattributed = [finding for finding in case.unattributed if _finding_key(finding) not in shared]
    return [dataclasses.replace(first[item], case_id="") for item in first if item in shared]


def _collection_findings(collection: Collection, cases: Sequence[CaseInfo], case_results: List[CaseQA]
                         ) -> List[Finding]:
    """The findings about the collection as a whole: its own check of all cases, and what several cases repeat.

    A finding the collection's check reports that a case also reported
    without naming a case is kept once, here, not on the case. A failing
    collection check is an error finding; the cases' results stand.
    """
    findings = _split_collection_findings(case_results)
    try:
        checked = list(collection.check_collection(cases, case_results))
    except Exception as error:  # noqa: BLE001 - a broken collection check must not cost the cases' results
        logger.exception("%s: the collection check failed", collection.title)
        checked = [Finding(ERROR, CHECK_COLLECTION_CHECK_FAILED,
                           f"the check of the collection as a whole failed: {type(error).__name__}: {error}",
                           path=str(collection.root))]
    known = {_finding_key(finding) for finding in findings}
    for finding in checked:
        if _finding_key(finding) not in known:
            known.add(_finding_key(finding))
            findings.append(dataclasses.replace(finding, case_id=""))
    for case in case_results:
        repeated = [finding for finding in case.unattributed if _finding_key(finding) in known]
        if repeated:
            case.findings = [finding for finding in case.findings
                             if not (_finding_key(finding) in known and finding in case.unattributed)]
            case.unattributed = [finding for finding in case.unattributed if _finding_key(finding) not in known]
    return findings


def run_collection_qa(collection: Collection, progress: Optional[ProgressCallback] = None, scene: Any = None,
                      snapshot_folder: Optional[Path] = None, cases: Optional[Sequence[CaseInfo]] = None,
                      application_logic: Any = None, *, workers: int = 1, scheduler: Any = None,
                      journal: Optional[Path] = None) -> CollectionQA:
    """Run the checks on every case; one failing case never stops the rest.

    Progress messages read "Case k of N: ..."; returning True from the
    callback cancels (raises :class:`LoadCancelled`): serially also in the
    middle of a case, whose partial load is then removed from the scene; with
    workers, no new case starts and the running ones finish first.

    The result is the same whichever way the cases run: cases, findings and
    notes are in case order, never in the order workers finish.

    :param scene: the scene to load into serially; a temporary headless scene
        is created (and closed) when None. Workers always use scenes of their own.
    :param snapshot_folder: render a PNG per case into this folder (names
        from :func:`snapshot_paths`).
    :param cases: the cases to check (default: every case of the collection).
    :param workers: check cases in this many worker processes (see :mod:`.parallel`).
    :param scheduler: check cases on the Dask cluster of this scheduler address
        (or ``distributed.Client``) instead.
    :param journal: record each case's result in this QA journal file as it
        arrives, and reuse results it holds for unchanged inputs (see :mod:`.qa_journal`).
    """
    if cases is None:
        cases = collection.discover_cases(sub_progress(progress, 0.0, 0.05))
    cases = list(cases)
    if scheduler is not None and workers > 1:
        raise ValueError("choose worker processes or a Dask scheduler, not both")
    snapshots = snapshot_paths(Path(snapshot_folder), [case.case_id for case in cases]) if snapshot_folder else {}
    results: Dict[int, Tuple[CaseQA, List[str]]] = {}
    recorder = _JournalRecorder(journal, collection, cases, bool(snapshots)) if journal is not None else None
    try:
        if recorder is not None:
            results.update(recorder.recorded_results(snapshots))
            if results:
                report(progress, f"{len(results)} of {len(cases)} case(s) already checked with the same inputs "
                                 f"(QA journal {journal})", 0.05)
        pending = [index for index in range(len(cases)) if index not in results]

        def accept(index: int, case_result: CaseQA, notes: List[str]) -> None:
            results[index] = (case_result, notes)
            if recorder is not None:
                recorder.record(index, case_result, notes)

        if scheduler is None and workers <= 1:
            _run_serially(collection, cases, pending, accept, progress, scene, snapshots, application_logic)
        else:
            _run_in_workers(collection, cases, pending, accept, progress, snapshots, workers, scheduler)
    finally:
        if recorder is not None:
            recorder.close()
    result = CollectionQA(collection.title, collection.root)
    for index in range(len(cases)):
        case_result, notes = results[index]
        result.cases.append(case_result)
        result.notes.extend(note for note in notes if note not in result.notes)
    result.collection_findings = _collection_findings(collection, cases, result.cases)
    report(progress, f"Checked {len(cases)} case(s)", 1.0)
    return result


Accept = Callable[[int, CaseQA, List[str]], None]


def _run_serially(collection: Collection, cases: List[CaseInfo], pending: List[int], accept: Accept,
                  progress: Optional[ProgressCallback], scene: Any, snapshots: Dict[str, Path],
                  application_logic: Any) -> None:
    """Check the cases at positions ``pending`` one after another in ``scene`` (a private one when None)."""
    environment = None
    if scene is None and pending:
        from ..scene.headless import HeadlessSlicer

        environment = HeadlessSlicer(install_globals=False)
        scene, application_logic = environment.scene, environment.application_logic
    try:
        total = max(1, len(cases))
        for index in pending:
            case = cases[index]
            report(progress, f"Case {index + 1} of {len(cases)}: checking {case.case_id}", 0.05 + 0.95 * index / total)
            notes: List[str] = []
            case_result = run_case_qa(collection, case, _case_progress(progress, index, total), scene=scene,
                                      snapshot_path=snapshots.get(case.case_id),
                                      application_logic=application_logic, notes=notes)
            accept(index, case_result, notes)
    finally:
        if environment is not None:
            environment.close()


def _run_in_workers(collection: Collection, cases: List[CaseInfo], pending: List[int], accept: Accept,
                    progress: Optional[ProgressCallback], snapshots: Dict[str, Path], workers: int,
                    scheduler: Any) -> None:
    """Check the cases at positions ``pending`` in worker processes or on a Dask cluster, as they finish."""
    from .parallel import CaseTask, run_in_processes, run_on_dask

    tasks = [CaseTask(index, collection.key, Path(collection.root), cases[index], snapshots.get(cases[index].case_id))
             for index in pending]
    where = f"the Dask cluster at {scheduler}" if scheduler is not None else f"{workers} worker processes"
    state = {"message": f"Checking {len(tasks)} case(s) in {where}", "fraction": 0.05, "cancelled": False}

    def should_stop() -> bool:
        try:
            report(progress, str(state["message"]), float(state["fraction"]))
        except LoadCancelled:
            state["cancelled"] = True
        return bool(state["cancelled"])

    should_stop()
    outcomes = (run_on_dask(tasks, scheduler, should_stop=should_stop) if scheduler is not None
                else run_in_processes(tasks, workers, should_stop=should_stop))
    done = len(cases) - len(pending)
    for index, case_result, notes in outcomes:
        accept(index, case_result, notes)
        done += 1
        state["message"] = f"Case {done} of {len(cases)} done: {case_result.case_id} ({case_result.status})"
        state["fraction"] = 0.05 + 0.95 * done / max(1, len(cases))
        if not state["cancelled"]:
            should_stop()
    if state["cancelled"]:
        raise LoadCancelled(f"QA cancelled after {done} of {len(cases)} case(s); the rest were not checked")


class _JournalRecorder:
    """The QA journal of one run: fingerprints of the run's cases, what is recorded for them, recording more."""

    def __init__(self, path: Path, collection: Collection, cases: List[CaseInfo], snapshots: bool) -> None:
        from .qa_journal import QAJournal, case_fingerprint, collection_files

        self.journal = QAJournal(Path(path))
        self.cases = cases
        shared = collection_files(Path(collection.root))
        self.fingerprints = [case_fingerprint(collection.key, case, snapshots, shared) for case in cases]

    def recorded_results(self, snapshots: Dict[str, Path]) -> Dict[int, Tuple[CaseQA, List[str]]]:
        """Results recorded for unchanged inputs (a result whose snapshot file is gone is checked again)."""
        from .qa_journal import decode_case_result

        found: Dict[int, Tuple[CaseQA, List[str]]] = {}
        for index, case in enumerate(self.cases):
            text = self.journal.recorded(case.case_id, self.fingerprints[index])
            if text is None:
                continue
            try:
                case_result, notes = decode_case_result(case, text)
            except (ValueError, KeyError, TypeError) as error:
                logger.warning("%s: the recorded result of %s is unreadable (%s); checking it again",
                               self.journal.path, case.case_id, error)
                continue
            wanted = snapshots.get(case.case_id)
            if wanted is not None and case_result.snapshot is not None and not Path(case_result.snapshot).is_file():
                continue
            found[index] = (case_result, notes)
        return found

    def record(self, index: int, case_result: CaseQA, notes: List[str]) -> None:
        from .qa_journal import encode_case_result

        self.journal.record(self.cases[index].case_id, self.fingerprints[index], encode_case_result(case_result, notes))

    def close(self) -> None:
        self.journal.close()


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
    if result.collection_findings:
        lines.append(f"  {len(result.collection_findings)} finding(s) concern the whole collection")
    lines.extend(f"  note: {note}" for note in result.notes)
    return "\n".join(lines)
