"""The review workflow in one place, shared by the Slicer module's Logic and the command line.

A :class:`ReviewService` owns what a review session needs: the open collection
and its case list, the browser that loads cases into a scene, the DICOM header
cache, the review store (and the check that a read-only collection folder
needs a store elsewhere, chosen by the caller), the last QA results and the
snapshot policy. The Slicer Logic is a camelCase adapter over it and the
``sllb`` command line calls it directly, so both produce the same verdicts and
the same report.

Importing this module is light (standard library only): recording a verdict
from the command line must not pay for VTK, highdicom or pandas. Everything
heavy is imported on first use.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import DataError
from .progress import ProgressCallback, sub_progress

__all__ = ["ReviewService", "DEFAULT_HEADER_CACHE"]

logger = logging.getLogger(__name__)

#: Pass as ``header_cache`` to keep DICOM headers in the default cache file (``$SLLB_INDEX_CACHE`` or ~/.cache).
DEFAULT_HEADER_CACHE = "default"


class ReviewService:
    """One review session over one collection folder at a time.

    :param scene: the MRML scene cases load into (Slicer's own in the
        application); None for command-line use, where QA opens its own
        headless scene and no case is loaded interactively.
    :param header_cache: a file for the DICOM header cache,
        :data:`DEFAULT_HEADER_CACHE`, or None for no cache. It is set up on the
        first discovery or load, never just to record a verdict.
    :param snapshots: whether QA renders a snapshot of every case for the
        report (the same policy for the module and the command line).
    :param application_logic: the application logic of ``scene`` for
        rendering snapshots (Slicer's own when None).
    """

    def __init__(self, scene: Any = None, header_cache: Any = DEFAULT_HEADER_CACHE, snapshots: bool = True,
                 application_logic: Any = None) -> None:
        self.scene = scene
        self.header_cache = header_cache
        self.snapshots = snapshots
        self.application_logic = application_logic
        self.collection: Any = None
        #: the open collection folder (also when only its verdicts are open, see :meth:`open_for_verdicts`)
        self.root: Optional[Path] = None
        self.qa_result: Any = None
        self._collection_key: Optional[str] = None
        #: annotation folders outside the collection folder the user named (see :meth:`open`)
        self._annotation_roots: List[Path] = []
        self._known_case_ids: Optional[List[str]] = None
        self._browser: Any = None
        self._cases: Optional[List[Any]] = None
        self._store: Any = None
        self._store_path: Optional[Path] = None
        self._header_cache_ready = False
        self._snapshot_folder: Optional[Path] = None
        #: the reader whose verdicts this session records (see :meth:`set_reader`)
        self.reader: Optional[str] = None
        #: whether the reader sees other readers' verdicts only after giving their own
        self.blinded = False

    # ------------------------------------------------------------------ set-up
    def _ensure_header_cache(self) -> None:
        """Keep DICOM headers between runs, so re-indexing an unchanged folder is quick (once per service)."""
        if self._header_cache_ready or self.header_cache is None:
            return
        self._header_cache_ready = True
        from .formats.dicom_series import set_default_index_cache
        from .formats.index_cache import IndexCache, default_cache_path

        path = default_cache_path() if self.header_cache == DEFAULT_HEADER_CACHE else Path(self.header_cache)
        try:
            set_default_index_cache(IndexCache(path))
        except Exception as error:  # noqa: BLE001 - sqlite3.Error, read-only home, full disk: index without it
            logger.warning("DICOM header cache unavailable at %s (%s); indexing without it", path, error)

    @property
    def browser(self) -> Any:
        """The :class:`~.browser.CollectionBrowser` loading into :attr:`scene` (needs a scene)."""
        if self._browser is None:
            if self.scene is None:
                raise RuntimeError("this review service has no scene to load cases into")
            from .browser import CollectionBrowser

            self._ensure_header_cache()
            self._browser = CollectionBrowser(self.scene)
            self._browser.collection = self.collection
            self._browser._cases = self._cases
        return self._browser

    def open(self, folder: Path, collection_key: Optional[str] = None, annotations: Sequence[Path] = ()) -> Any:
        """Open a collection folder (detected unless ``collection_key`` names it); forgets the previous one.

        :param annotations: annotation folders outside ``folder`` to read too
            (Lung-PET-CT-Dx's ``Annotation`` trees; ``--annotations``). Only
            these and folders inside ``folder`` are read, never siblings.
        :raises NotACollectionError: if the folder holds no known collection.
        :raises DataError: if ``annotations`` do not apply to the collection or a folder is unusable.
        """
        self._annotation_roots = [Path(root) for root in annotations]
        collection = self._open_collection(Path(folder), collection_key)
        self.close_store()
        self._store_path = None
        return collection

    def _open_collection(self, folder: Path, collection_key: Optional[str]) -> Any:
        from .registry import open_collection

        collection = open_collection(folder, collection_key, self._annotation_roots)
        self.collection = collection
        self.root = Path(collection.root)
        self._collection_key = collection.key
        self._known_case_ids = None
        self._cases = None
        self.qa_result = None
        if self._browser is not None:
            self._browser.collection = collection
            self._browser._cases = None
        return collection

    def open_for_verdicts(self, folder: Path, collection_key: Optional[str] = None,
                          store_path: Optional[Path] = None, annotations: Sequence[Path] = (),
                          read_only: bool = False) -> None:
        """Open a collection folder only to record verdicts, as cheaply as possible.

        When the review store already knows the folder's case IDs (recorded
        whenever the collection was indexed with this store), nothing is
        detected or indexed and nothing heavy is imported; a case ID the store
        does not know makes the folder be opened and indexed after all (cases
        may have been added). Otherwise the folder is opened as by :meth:`open`.

        :param annotations: as for :meth:`open`, used when the folder is opened.
        :param read_only: only to read verdicts (reads, agreement): an existing store is opened read-only and
            its bytes stay as they were; no store is created.
        :raises DataError: if the folder does not exist or the store cannot be opened there.
        """
        folder = Path(folder)
        self._annotation_roots = [Path(root) for root in annotations]
        if not folder.is_dir():
            raise DataError(folder, "does not exist" if not folder.exists() else "is not a folder")
        self.close_store()
        self.collection, self._cases, self.qa_result = None, None, None
        self.root, self._collection_key = folder, collection_key
        self._store_path = Path(store_path) if store_path is not None else None
        store = self.existing_store(read_only=True) if read_only else self.store()
        known = store.known_cases(folder) if store is not None else None
        if known is not None and collection_key in (None, known[0]):
            self._collection_key, self._known_case_ids = known[0], known[1]
        else:
            self._open_collection(folder, collection_key)

    def _require_collection(self) -> Any:
        """The open collection, opening it now if only its verdicts were opened."""
        if self.collection is None:
            if self.root is None:
                raise RuntimeError("open a collection folder first")
            self._open_collection(self.root, self._collection_key)
        return self.collection

    def _require_root(self) -> Path:
        if self.root is None:
            raise RuntimeError("open a collection folder first")
        return self.root

    # ------------------------------------------------------------------ cases
    def cases(self, progress: Optional[ProgressCallback] = None, refresh: bool = False) -> List[Any]:
        """The collection's cases (discovered once, then kept); their IDs are recorded in an existing store."""
        collection = self._require_collection()
        if self._cases is None or refresh:
            self._ensure_header_cache()
            self._cases = list(collection.discover_cases(progress))
            if self._browser is not None:
                self._browser._cases = self._cases
            self._record_known_cases()
        return self._cases

    def case_ids(self) -> List[str]:
        """The IDs of :meth:`cases`, in collection order (the store's list when only verdicts are open)."""
        if self.collection is None and self._known_case_ids is not None:
            return list(self._known_case_ids)
        return [case.case_id for case in self.cases()]

    def _record_known_cases(self) -> None:
        """Let the store remember the case IDs, so a later command-line verdict can check its case ID without
        detecting and indexing the collection again. Only into a store already open for writing: indexing
        never creates a store, and commands that only read (index, qa, exports) never change one's bytes."""
        if self._cases is None:
            return
        store = self._store
        if store is None or getattr(store, "read_only", False):
            return
        try:
            store.record_known_cases(self.collection.root, self.collection.key, self.case_ids_of(self._cases))
        except DataError as error:  # a read-only store still serves verdicts; the next verdict re-indexes
            logger.warning("%s", error)

    @staticmethod
    def case_ids_of(cases: Sequence[Any]) -> List[str]:
        return [case.case_id for case in cases]

    def canonical_case_id(self, case_id: str) -> str:
        """The collection's spelling of ``case_id`` (case-insensitive).

        :raises DataError: naming the collection folder, if it has no such case.
        """
        for known in self.case_ids():
            if known.lower() == case_id.lower():
                return known
        if self.collection is None:
            # The store's case list may be out of date: index the folder and look again.
            self._require_collection()
            return self.canonical_case_id(case_id)
        shown = ", ".join(self.case_ids()[:5])
        raise DataError(self._require_collection().root,
                        f"has no case {case_id!r} (cases found: {shown or 'none'})")

    def neighbour_case_id(self, case_id: Optional[str], step: int) -> Optional[str]:
        """The case ``step`` places after ``case_id`` in the case list (wrapping), or None for no cases."""
        case_ids = self.case_ids()
        if not case_ids:
            return None
        if case_id not in case_ids:
            return case_ids[0]
        return case_ids[(case_ids.index(case_id) + step) % len(case_ids)]

    # ------------------------------------------------------------------ loading
    def load_case(self, case_id: str, progress: Optional[ProgressCallback] = None, close_others: bool = True) -> Any:
        """Load one case into the scene (whole or not at all); the previous case is removed once it has loaded."""
        browser = self.browser
        self.cases()
        previous = list(browser.loaded) if close_others else []
        loaded = browser.load_case(case_id, progress)
        for other_id in previous:
            if other_id != loaded.case.case_id:
                browser.unload_case(other_id)
        return loaded

    # ------------------------------------------------------------------ review store
    def set_store_path(self, path: Optional[Path]) -> None:
        """Keep verdicts in ``path`` instead of beside the collection (needed for a read-only collection)."""
        self.close_store()
        self._store_path = Path(path) if path is not None else None

    @property
    def store_path(self) -> Path:
        """Where the verdicts are (or would be) kept."""
        from .review.store import default_store_path

        return self._store_path or default_store_path(self._require_root())

    def store_location_problem(self) -> Optional[str]:
        """Why the store cannot be kept where it would be (e.g. a read-only collection folder), or None.

        The caller then chooses another file (the widget asks the user; the
        command line needs ``--store``) and calls :meth:`set_store_path`.
        """
        from .review.store import store_location_problem

        if self._store_path is not None:
            return None
        return store_location_problem(self._require_root())

    def store(self) -> Any:
        """The review store (created beside the collection unless another path was set).

        :raises DataError: naming the file, when it cannot be kept there; a
            read-only collection folder asks for another file.
        """
        if self._store is not None and getattr(self._store, "read_only", False):
            self.close_store()  # opened read-only for a report; a verdict needs the store writable
        if self._store is None:
            from .review.store import open_review_store

            self._store = open_review_store(self._require_root(), self._store_path)
            self._record_known_cases_in(self._store)
        return self._store

    def use_store(self, path: Path) -> Any:
        """Switch to the review store in ``path`` and open it now (e.g. chosen by the user for a read-only
        collection); an existing store there is opened, never replaced.

        :raises DataError: naming the file, if it cannot be opened; the current store then stays in use.
        """
        from .review.store import open_review_store

        store = open_review_store(self._require_root(), Path(path))
        try:
            self._record_known_cases_in(store)
        except Exception:
            store.close()
            raise
        self.close_store()
        self._store, self._store_path = store, Path(path)
        return store

    def _record_known_cases_in(self, store: Any) -> None:
        if self._cases is not None and self.collection is not None and not getattr(store, "read_only", False):
            store.record_known_cases(self.collection.root, self.collection.key, self.case_ids_of(self._cases))

    def existing_store(self, read_only: bool = False) -> Any:
        """The review store if one was chosen or exists beside the collection, else None (nothing is created).

        :param read_only: for reports and exports, which only read verdicts: the
            file is opened read-only and never rewritten (a store in a read-only
            collection folder is still read, and its bytes stay as they were).
        """
        if self._store is not None:
            return self._store
        if self._store_path is None and not self.store_path.is_file():
            return None
        if not read_only:
            return self.store()
        if not self.store_path.is_file():
            return None  # a chosen store not written yet: no verdicts to read, and reading creates nothing
        from .review.store import open_review_store

        self._store = open_review_store(self._require_root(), self._store_path, read_only=True)
        return self._store

    def store_for_reading(self) -> Any:
        """The store to show verdicts from: :meth:`store`, except for a collection that cannot hold its store
        (read-only folder, no other file chosen), whose existing store is opened read-only (None if it has
        none), so its verdicts are still shown and exported; recording a verdict there still asks for a file."""
        if self.store_location_problem() is not None:
            return self.existing_store(read_only=True)
        return self.store()

    def read_view(self) -> Any:
        """:meth:`view` of the store opened read-only (see :meth:`existing_store`); None when there is no store."""
        store = self.existing_store(read_only=True)
        if store is None:
            return None
        return store.as_reader(self.reader, self.blinded) if self.reader else store

    def close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    # ------------------------------------------------------------------ readers
    def set_reader(self, reader: Optional[str], blinded: Optional[bool] = None) -> None:
        """Who is reading (None: nobody in particular) and whether their reads are blinded.

        Blinded, every verdict, comment, history entry and adjudication this
        service returns is the reader's own, or on an item the reader has
        already given a verdict on.
        """
        self.reader = reader.strip() if reader and reader.strip() else None
        if blinded is not None:
            self.blinded = blinded

    def view(self) -> Any:
        """The store as the current reader sees it (the whole store when no reader is set)."""
        store = self.store()
        return store.as_reader(self.reader, self.blinded) if self.reader else store

    def set_verdict(self, case_id: str, verdict: str, comment: str, reviewer: Optional[str] = None,
                    annotation: str = "", item_type: str = "") -> Any:
        """Record a reader's verdict on a case of the collection; it is on disk when this returns.

        :param reviewer: the reader (default: the service's reader).
        """
        reviewer = reviewer or self.reader
        if not reviewer:
            raise ValueError("a verdict needs the reviewer's name")
        case_id = self.canonical_case_id(case_id)
        return self.store().set_verdict(case_id, annotation, verdict, comment, reviewer, item_type=item_type)

    def adjudicate(self, case_id: str, verdict: str, comment: str, adjudicator: str, annotation: str = "") -> Any:
        """Record the final verdict on an item, linked to the readers' verdicts it settles."""
        case_id = self.canonical_case_id(case_id)
        return self.store().adjudicate(case_id, annotation, verdict, comment, adjudicator)

    def verdict_of(self, case_id: str, annotation: str = "") -> Any:
        """The verdict to show for an item: the reader's own when a reader is set (blinded or not:
        what they are asked to give), else the adjudicated or latest verdict. None when there is none."""
        store = self.store_for_reading()
        if store is None:
            return None
        if self.reader:
            return store.verdict(case_id, annotation, reader=self.reader)
        return store.verdict(case_id, annotation)

    def reads(self, case_id: str, annotation: str = "") -> List[Any]:
        """Every reader's verdict on an item side by side, as far as the current reader may see them."""
        store = self.store_for_reading()
        if store is None:
            return []
        return (store.as_reader(self.reader, self.blinded) if self.reader else store).reads(case_id, annotation)

    def history(self, case_id: Optional[str] = None) -> List[Any]:
        """The verdict history (of one case), as far as the current reader may see it."""
        return self.view().history(case_id)

    def agreement(self) -> List[Any]:
        """Agreement between the readers, over the collection and per item type (see :mod:`.review.agreement`).

        A blinded reader gets it only once they have read every item the
        statistics would use; until then it would hint at the others' verdicts.
        """
        from .review.agreement import reader_agreement

        store = self.existing_store(read_only=True)  # statistics only read: the store's bytes stay as they were
        if store is None:
            return []
        if self.reader and self.blinded:
            mine = {(r.case_id, r.annotation) for r in store.verdicts(reader=self.reader)}
            if any((r.case_id, r.annotation) not in mine for r in store.verdicts()):
                raise PermissionError(f"{self.reader} reads blinded and has not yet read every item; "
                                      "agreement is shown once they have")
        return reader_agreement(store.verdicts())

    def review_progress(self) -> Tuple[int, int]:
        """(cases with a whole-case verdict (by the current reader, if set), number of cases)."""
        store = self.store_for_reading()
        if store is None:
            return 0, len(self.case_ids())
        return store.progress(self.case_ids(), reader=self.reader)

    def next_unreviewed_case_id(self, case_id: Optional[str] = None) -> Optional[str]:
        """The first case after ``case_id`` (wrapping) without a whole-case verdict (by the current reader,
        if set), or None when all have one."""
        store = self.store_for_reading()
        if store is None:
            return self.neighbour_case_id(case_id, 1)  # no store, no verdicts: every case is unreviewed
        return store.next_unreviewed(self.case_ids(), after=case_id, reader=self.reader)

    # ------------------------------------------------------------------ QA and report
    def _default_snapshot_folder(self) -> Path:
        """A folder of this service's own for snapshots, removed on :meth:`close` (the report embeds them)."""
        if self._snapshot_folder is None:
            self._snapshot_folder = Path(tempfile.mkdtemp(prefix="sllb-snapshots-"))
        return self._snapshot_folder

    def run_qa(self, progress: Optional[ProgressCallback] = None, snapshot_folder: Optional[Path] = None,
               workers: int = 1, scheduler: Any = None, journal: Optional[Path] = None) -> Any:
        """Run every check over every case; with the snapshot policy on, render one PNG per case.

        Cases load one at a time and are removed again. With snapshots, QA
        runs in a private headless scene of its own, for the module exactly as
        for the command line: rendering adds view nodes (slice, composite,
        display) that must not appear in, or take over the views of, the
        user's scene, and one path makes both reports the same. Without
        snapshots, cases load into :attr:`scene` (a private one when None).
        The result is kept for :meth:`export_report`.

        :param workers: check cases in this many worker processes, each with a
            scene of its own (the user's scene is never touched); the findings
            are the same as one process's, in the same order.
        :param scheduler: check cases on the Dask distributed cluster of this
            scheduler address instead (needs the optional packages dask and distributed).
        :param journal: a QA journal file: each case's result is recorded there
            as it arrives, and results it holds for unchanged inputs are reused
            (an interrupted run resumes; see :mod:`.review.qa_journal`).
        """
        from .review.qa import run_collection_qa

        collection = self._require_collection()
        cases = self.cases()
        if self.snapshots and snapshot_folder is None:
            snapshot_folder = self._default_snapshot_folder()
        in_workers = workers > 1 or scheduler is not None
        scene, application_logic = ((None, None) if self.snapshots or in_workers
                                    else (self.scene, self.application_logic))
        self.qa_result = run_collection_qa(collection, progress, scene=scene,
                                           snapshot_folder=snapshot_folder if self.snapshots else None, cases=cases,
                                           application_logic=application_logic, workers=workers,
                                           scheduler=scheduler, journal=journal)
        return self.qa_result

    def describe_qa(self, result: Any = None) -> str:
        from .review.qa import describe_collection_qa

        return describe_collection_qa(result if result is not None else self.qa_result)

    def export_report(self, output_folder: Path, qa_result: Any = None, progress: Optional[ProgressCallback] = None,
                      reviewer: Optional[str] = None, verdicts: bool = True) -> List[Path]:
        """Write ``review.csv``, ``findings.csv`` (when QA ran) and the self-contained ``report.html``.

        :param qa_result: default: the last :meth:`run_qa` result.
        :param reviewer: who prepared the report (shown in its header).
        :param verdicts: False for a QA-only report without the review store.
        """
        from .review.report import export_review

        store = self.existing_store(read_only=True) if verdicts else None
        qa_result = qa_result if qa_result is not None else self.qa_result
        cases = None
        if qa_result is None:
            # The cases kept since the collection was indexed; indexing (first half) only if it never was.
            cases = self.cases(sub_progress(progress, 0.0, 0.5))
            progress = sub_progress(progress, 0.5, 1.0)
        return export_review(Path(output_folder), self._require_collection(), store, qa_result, progress=progress,
                             cases=cases, reviewer=reviewer)

    def annotation_table(self, progress: Optional[ProgressCallback] = None) -> Any:
        """Every annotation of the collection as a pandas DataFrame (see :mod:`.review.annotations`), with
        each reader's latest verdict when a review store exists (blinded: as far as the reader may see).

        Cases load one at a time into a private headless scene (as QA with
        snapshots does) so the user's scene is never touched.
        """
        from .review.annotations import add_verdict_columns, collection_annotation_table

        table = collection_annotation_table(self._require_collection(), self.cases(), None, progress)
        store = self.existing_store(read_only=True)
        if store is not None:
            view = store.as_reader(self.reader, self.blinded) if self.reader else store
            add_verdict_columns(table, view.verdicts(), view.adjudications())
        return table

    def close(self) -> None:
        """Close the store and remove this service's own snapshot folder."""
        self.close_store()
        if self._snapshot_folder is not None:
            shutil.rmtree(self._snapshot_folder, ignore_errors=True)
            self._snapshot_folder = None

    def __enter__(self) -> "ReviewService":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
