"""The contract every collection implements.

A collection is one module under ``collections/`` (one file, or a package for
a large one) registered by one line in :data:`..registry.COLLECTION_MODULES`.
It answers five questions, each without the others' side effects:

1. :meth:`Collection.detect` -- does this folder hold the collection? Cheap and
   light: importing the module and detecting must not import VTK, slicer,
   highdicom, pandas, nibabel or lxml (so detection, indexing and the review
   command line start fast). Heavy imports go inside the methods below.
2. :meth:`Collection.discover_cases` -- the cases on disk, as typed
   :class:`CaseRecord` subclasses (never an untyped dict of paths).
3. :meth:`Collection.read_case` -- one case as plain data
   (:class:`~..case_data.CaseData`): arrays with their IJK-to-RAS matrices,
   segment masks, boxes, tables, findings made while reading, and the
   provenance a correction writer needs later. No scene.
4. :meth:`Collection.check_case` / :meth:`Collection.check_collection` -- QA
   findings from plain data, using the shared check IDs below where a check
   means the same thing in several collections.
5. :func:`~..scene.put_case.put_case` -- the one shared path from plain data to
   nodes; collections do not build nodes themselves.

:meth:`Collection.load_case` is read -> check -> put, the same for all.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

from ..case_data import CaseData, LoadedCase, source_paths
from ..errors import DataError
from ..findings import Finding
from ..progress import ProgressCallback, report, sub_progress

__all__ = [
    "CaseRecord",
    "Collection",
    "case_location",
    "SharedCheck",
    "LIGHT_IMPORT_FORBIDDEN",
]

#: Modules that importing a collection module and calling ``detect`` must not load.
LIGHT_IMPORT_FORBIDDEN = ("vtk", "slicer", "highdicom", "pandas", "nibabel", "lxml")


class SharedCheck:
    """Check IDs that mean the same thing in every collection that has them.

    A collection reports these IDs (not a collection-specific spelling) so a
    QA report can count, say, missing slices across collections.
    """

    MISSING_SLICES = "missing_slices"
    IRREGULAR_SPACING = "irregular_spacing"
    FILE_LEFT_OUT = "file_left_out"
    EMPTY_SEGMENT = "empty_segment"
    GEOMETRY_MISMATCH = "geometry_mismatch"
    MISSING_ANNOTATION = "missing_annotation"
    MISSING_REFERENCE = "missing_reference"
    IDENTITY_MISMATCH = "identity_mismatch"
    CLINICAL_ROW_MISSING = "clinical_row_missing"


@dataclass
class CaseRecord:
    """One case of a collection as found on disk, before anything is read.

    Collections subclass this with typed fields for their own files (series
    folders, masks, XMLs). The base fields are what every table of cases shows.

    :param collection: the collection's key, e.g. ``"crlm"``.
    :param case_id: the ID users know the case by (usually the PatientID).
    :param root: the collection folder the case was found in.
    :param diagnosis: a diagnosis or class, where the collection gives one.
    :param summary: short facts for the case table (counts, modalities).
    :param problems: messages about files that could not be read while
        discovering (each names its file); reported as findings on load.
    """

    collection: str
    case_id: str
    root: Path
    diagnosis: str = ""
    summary: Dict[str, Any] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    def location(self) -> Optional[Path]:
        """The folder that holds the case, for the case table (None where no one folder does)."""
        return None

    def source_paths(self) -> List[Path]:
        """Every absolute path this record names (files and folders of the case's sources)."""
        return source_paths({name: getattr(self, name) for name in self.__dataclass_fields__
                             if name not in ("root", "summary", "problems")})


def case_location(case: Any) -> str:
    """The folder of a case for tables and messages: :meth:`CaseRecord.location`, a legacy record's
    ``files["case_folder"]``, or '' when neither names one."""
    legacy = getattr(case, "files", None)
    if isinstance(legacy, dict):
        return str(legacy.get("case_folder", "") or "")
    location = case.location() if callable(getattr(case, "location", None)) else None
    return str(location) if location else ""


class Collection(abc.ABC):
    """A collection on the user's disk (see the module docstring for the contract).

    :param root: the folder the user chose.
    """

    key: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: What :meth:`detect` looks for, for the message when a folder holds no collection.
    looks_for: ClassVar[str] = ""
    #: The PatientIDs of the collection in words (``"CRLM-CT-nnnn"``), for that message, if it has DICOM.
    patient_id_patterns: ClassVar[Tuple[str, ...]] = ()
    #: The :class:`CaseRecord` subclass :meth:`discover_cases` returns.
    record_type: ClassVar[Type[CaseRecord]] = CaseRecord

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ the contract
    @classmethod
    @abc.abstractmethod
    def detect(cls, root: Path) -> bool:
        """True if ``root`` holds this collection (cheap, light imports only)."""

    @classmethod
    def detect_from_annotations(cls, root: Path) -> bool:
        """True if ``root`` holds annotations this collection reads (e.g. CT with DICOM SEG) although nothing
        names the collection; asked only when no collection's :meth:`detect` claimed the folder."""
        return False

    @abc.abstractmethod
    def discover_cases(self, progress: Optional[ProgressCallback] = None) -> List[CaseRecord]:
        """All cases under :attr:`root`, sorted by case ID."""

    @abc.abstractmethod
    def read_case(self, case: CaseRecord, progress: Optional[ProgressCallback] = None) -> CaseData:
        """Read ``case`` from disk into plain data; no scene is touched.

        :raises DataError: naming the file, if the case cannot be read.
        """

    def check_case(self, data: CaseData) -> List[Finding]:
        """QA findings about a case, from its plain data (read-time findings are already in ``data``)."""
        return []

    def check_collection(self, cases: Sequence[CaseRecord], results: Sequence[Any]) -> List[Finding]:
        """Findings about the collection as a whole (counts, duplicates across cases).

        :param results: per-case QA results, in the order of ``cases``.
        """
        return []

    # ------------------------------------------------------------------ shared behaviour
    def load_case(self, case: CaseRecord, builder: Any, progress: Optional[ProgressCallback] = None) -> LoadedCase:
        """Read, check and put a case into the builder's scene; all or nothing.

        :raises DataError: naming the file, if the case cannot be read; the
            scene is then unchanged.
        """
        from ..scene.put_case import put_case  # the scene only when a scene is used

        data = self.read_case(case, sub_progress(progress, 0.0, 0.8))
        data.findings.extend(self.check_case(data))
        loaded = put_case(data, builder, sub_progress(progress, 0.8, 1.0))
        report(progress, f"Loaded {case.case_id}", 1.0)
        return loaded

    def find_case(self, case_id: str, progress: Optional[ProgressCallback] = None) -> CaseRecord:
        """The case with this ID (case-insensitive).

        :raises DataError: if there is none, listing a few that exist.
        """
        cases = self.discover_cases(progress)
        for case in cases:
            if case.case_id.lower() == case_id.lower():
                return case
        known = ", ".join(case.case_id for case in cases[:5])
        raise DataError(self.root, f"has no case {case_id!r} (cases found: {known or 'none'})")

    # ------------------------------------------------------------------ corrections
    def save_corrections(self, loaded: LoadedCase, scene: Any, output_folder: Path,
                         progress: Optional[ProgressCallback] = None) -> List[Path]:
        """Write the case's annotations as they are now in ``scene`` (after review edits).

        Files go below ``output_folder`` in the collection's own format and
        layout, never over the source files (see :meth:`corrections_folder`).
        Collections with annotations override this.

        :returns: the files written.
        :raises DataError: here, always: this collection has no annotations to correct.
        """
        raise DataError(self.root, f"{self.title} has no annotations to correct")

    def corrections_folder(self, output_folder: Path, case: Optional[CaseRecord] = None) -> Path:
        """``output_folder`` resolved and created, if corrected files may be written there.

        Refused: the collection folder itself or any folder inside it (corrected
        files there would be discovered again as source data, and could replace
        the originals), and, given ``case``, any folder of the case's sources.

        :raises DataError: naming the folder and why it is refused.
        """
        folder = Path(output_folder).expanduser().resolve()
        root = self.root.resolve()
        if folder == root or root in folder.parents:
            raise DataError(folder, f"is inside the {self.title} folder {root}; corrected files there would be "
                                    "read again as source data and could replace the originals; choose an output "
                                    "folder outside the collection")
        if case is not None:
            for source in self.source_paths(case):
                if source.is_dir() and (folder == source or source in folder.parents):
                    raise DataError(folder, f"is inside {source}, which holds source files of {case.case_id}; "
                                            "choose an output folder outside the collection")
        if folder.exists() and not folder.is_dir():
            raise DataError(folder, "is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(folder, f"cannot be created ({error.strerror or error})") from error
        return folder

    def source_paths(self, case: CaseRecord) -> List[Path]:
        """The existing files and folders the case record names (resolved), and the collection folder."""
        found: List[Path] = [self.root.resolve()]
        legacy = getattr(case, "files", None)  # records that still carry a dict of paths
        for path in [*case.source_paths(), *(source_paths(legacy) if legacy else [])]:
            if path.exists():
                found.append(path.resolve())
        return found

    def check_corrections_target(self, case: CaseRecord, target: Path,
                                 sources: Optional[Sequence[Path]] = None) -> Path:
        """``target`` if writing it cannot touch a source of ``case``.

        :param sources: :meth:`source_paths` of the case, if already known.
        :raises DataError: naming the file, if it resolves to a source file of
            the case or lies in a source folder (or the collection folder).
        """
        target = Path(target)
        resolved = target.resolve()
        for source in self.source_paths(case) if sources is None else sources:
            if resolved == source or (source.is_dir() and source in resolved.parents):
                raise DataError(target, f"would be written over or among the source files of {case.case_id} "
                                        f"({source}); corrections are never written there")
        return target

    def plan_segmentation_files(self, loaded: LoadedCase, scene: Any, output_folder: Path,
                                name_of: Callable[[Any], str]) -> List[Tuple[Any, Path]]:
        """(segmentation node, ``<out>/<case_id>/<name>.dcm``) for every segmentation of the case still in the scene.

        Names come from ``name_of(node)``, sanitised and made unique; every
        target is checked before anything is written.

        :raises DataError: if no segmentation is left, or a target is unsafe.
        """
        from ..formats.output_paths import safe_output_path, sanitise_file_name, unique_name

        case = loaded.case
        nodes = [node for node in loaded.segmentations if scene.GetNodeByID(node.GetID()) is not None]
        if not nodes:
            raise DataError(self.root, f"{case.case_id} has no segmentation in the scene to save")
        case_folder = safe_output_path(self.corrections_folder(output_folder, case), case.case_id)
        sources = self.source_paths(case)
        plan: List[Tuple[Any, Path]] = []
        taken: List[str] = []
        for node in nodes:
            name = unique_name(sanitise_file_name(name_of(node), fallback="segmentation"), taken, ".dcm")
            taken.append(name)
            plan.append((node, self.check_corrections_target(case, safe_output_path(case_folder, name, ".dcm"),
                                                             sources)))
        return plan
