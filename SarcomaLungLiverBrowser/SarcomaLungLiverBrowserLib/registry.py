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

from .case_data import CaseData, LoadedCase
from .collections.base import CaseRecord
from .collections.base import Collection as BaseCollection
from .errors import DataError, NotACollectionError
from .progress import ProgressCallback

__all__ = [
    "CaseRecord",
    "BaseCollection",
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
    """A case record of a collection not yet moved to typed records (see :class:`~.collections.base.CaseRecord`).

    :param files: collection-specific paths (series folders, masks, XMLs).
    """

    collection: str
    case_id: str
    root: Path
    diagnosis: str = ""
    files: Dict[str, Any] = field(default_factory=dict)
    summary: Dict[str, Any] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    def source_paths(self) -> List[Path]:
        return []


class Collection(BaseCollection):
    """A collection that still builds its own nodes in ``load_case`` (being moved to the contract)."""

    def read_case(self, case: Any, progress: Optional[ProgressCallback] = None) -> CaseData:
        raise NotImplementedError(f"{type(self).__name__} does not read cases into plain data yet")

    @abc.abstractmethod
    def load_case(self, case: Any, builder: Any, progress: Optional[ProgressCallback] = None) -> LoadedCase:
        """Load ``case`` into the builder's scene; findings go into the result."""


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
