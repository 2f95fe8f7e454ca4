"""The collections this extension knows, and how to find which one a folder holds.

A collection is one class (in one file under ``collections/``) that can tell
whether a folder holds it, list the cases in it, and load a case into a scene.
Adding a fifth collection means adding one file and one line to
:data:`COLLECTION_MODULES`.
"""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

from .errors import DataError, NotACollectionError
from .findings import Finding
from .progress import ProgressCallback

__all__ = [
    "CaseInfo",
    "LoadedCase",
    "Collection",
    "COLLECTION_MODULES",
    "collection_classes",
    "open_collection",
    "get_collection_class",
]

#: Modules under ``SarcomaLungLiverBrowserLib.collections`` that define collections.
COLLECTION_MODULES: Sequence[str] = (
    "crlm",
    "lung_pet_ct_dx",
    "ispy1",
    "soft_tissue_sarcoma",
    "hermessi",
)


@dataclass
class CaseInfo:
    """One case of a collection as found on disk, before anything is loaded.

    :param collection: the collection's key, e.g. ``"crlm"``.
    :param case_id: the ID users know the case by (usually the PatientID).
    :param root: the collection folder the case was found in.
    :param diagnosis: a diagnosis or class, where the collection gives one.
    :param files: collection-specific paths (series folders, masks, XMLs).
    :param summary: short facts for the case table (counts, modalities).
    """

    collection: str
    case_id: str
    root: Path
    diagnosis: str = ""
    files: Dict[str, Any] = field(default_factory=dict)
    summary: Dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedCase:
    """What loading a case put into the scene, and what was found on the way."""

    case: CaseInfo
    volumes: List[Any] = field(default_factory=list)
    segmentations: List[Any] = field(default_factory=list)
    rois: List[Any] = field(default_factory=list)
    tables: List[Any] = field(default_factory=list)
    findings: List[Finding] = field(default_factory=list)
    metrics: Dict[str, Any] = field(default_factory=dict)

    @property
    def nodes(self) -> List[Any]:
        """Every node the load created, volumes first."""
        return [*self.volumes, *self.segmentations, *self.rois, *self.tables]

    def _volume_by_metric(self, key: str) -> Optional[Any]:
        wanted = self.metrics.get(key)
        return next((volume for volume in self.volumes if wanted and volume.GetID() == wanted), None)

    @property
    def background_volume(self) -> Optional[Any]:
        """The volume to show first: the one the collection names, else the first loaded."""
        return self._volume_by_metric("background_volume_id") or (self.volumes[0] if self.volumes else None)

    @property
    def foreground_volume(self) -> Optional[Any]:
        """A volume to blend over the background (e.g. PET over CT), if the collection names one."""
        return self._volume_by_metric("foreground_volume_id")

    @property
    def foreground_opacity(self) -> float:
        return float(self.metrics.get("foreground_opacity", 0.5))


class Collection(abc.ABC):
    """A collection on the user's disk.

    Subclasses set :attr:`key` and :attr:`title` and implement the abstract
    methods. Loading goes through a :class:`~.scene_builder.SceneBuilder`
    inside its transaction, so a failed load leaves the scene as it was.

    :param root: the folder the user chose.
    """

    key: ClassVar[str] = ""
    title: ClassVar[str] = ""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    @abc.abstractmethod
    def detect(cls, root: Path) -> bool:
        """True if ``root`` holds this collection (cheap: looks at names only)."""

    @abc.abstractmethod
    def discover_cases(self, progress: Optional[ProgressCallback] = None) -> List[CaseInfo]:
        """All cases under :attr:`root`, sorted by case ID."""

    @abc.abstractmethod
    def load_case(self, case: CaseInfo, builder: Any, progress: Optional[ProgressCallback] = None) -> LoadedCase:
        """Load ``case`` into the builder's scene; findings go into the result."""

    def find_case(self, case_id: str, progress: Optional[ProgressCallback] = None) -> CaseInfo:
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

    def corrections_folder(self, output_folder: Path, case: Optional[CaseInfo] = None) -> Path:
        """``output_folder`` resolved and created, if corrected files may be written there.

        Refused: the collection folder itself or any folder inside it (corrected
        files there would be discovered again as source data, and could replace
        the originals), and, given ``case``, any folder of the case's sources
        (e.g. an ``Annotation`` tree beside the collection folder).

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

    def source_paths(self, case: CaseInfo) -> List[Path]:
        """The existing files and folders named in ``case.files`` (resolved), and the collection folder."""
        found: List[Path] = [self.root.resolve()]

        def visit(value: Any) -> None:
            if isinstance(value, dict):
                for item in value.values():
                    visit(item)
            elif isinstance(value, (list, tuple, set)):
                for item in value:
                    visit(item)
            elif isinstance(value, (str, Path)) and str(value) and Path(value).is_absolute():
                # Only real paths: case.files also holds UIDs and problem messages.
                path = Path(value)
                if path.exists():
                    found.append(path.resolve())

        visit(case.files)
        return found

    def check_corrections_target(self, case: CaseInfo, target: Path,
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
        from .output_paths import safe_output_path, sanitise_file_name, unique_name

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
            plan.append((node, self.check_corrections_target(case, safe_output_path(case_folder, name, ".dcm"), sources)))
        return plan


def collection_classes() -> List[Type[Collection]]:
    """Every registered collection class, in registry order."""
    classes: List[Type[Collection]] = []
    for module_name in COLLECTION_MODULES:
        module = importlib.import_module(f"{__package__}.collections.{module_name}")
        classes.extend(getattr(module, "COLLECTIONS"))
    return classes


def get_collection_class(key: str) -> Type[Collection]:
    """The collection class registered under ``key``."""
    for collection_class in collection_classes():
        if collection_class.key == key:
            return collection_class
    raise KeyError(f"no collection {key!r}; known: {[c.key for c in collection_classes()]}")


def open_collection(root: Path, key: Optional[str] = None) -> Collection:
    """The collection held in ``root``, detected unless ``key`` names it.

    :raises NotACollectionError: naming the folder and what was looked for.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(root, "does not exist")
    if not root.is_dir():
        raise DataError(root, "is not a folder")
    if key is not None:
        return get_collection_class(key)(root)
    for collection_class in collection_classes():
        if collection_class.detect(root):
            return collection_class(root)
    titles = "; ".join(f"{c.title}" for c in collection_classes())
    raise NotACollectionError(root, f"holds none of the known collections ({titles})")
