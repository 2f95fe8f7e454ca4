"""The collections this extension knows, and how to find which one a folder holds.

A collection is one class (in one file under ``collections/``, see
:mod:`.collections.base`) that can tell whether a folder holds it, list the
cases in it, read a case into plain data and check it. Adding a collection is
one file and one line: a module name in :data:`COLLECTION_MODULES` (a name
under ``collections/`` or a full dotted module path), or, from code outside
the package, ``register_collection(MyCollection)``.
"""
from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Type

from .case_data import LoadedCase
from .collections.base import CaseRecord
from .collections.base import Collection as BaseCollection
from .errors import DataError, NotACollectionError

__all__ = [
    "CaseRecord",
    "BaseCollection",
    "CaseInfo",
    "LoadedCase",
    "Collection",
    "COLLECTION_MODULES",
    "register_collection",
    "unregister_collection",
    "collection_classes",
    "open_collection",
    "accepts_annotation_roots",
    "get_collection_class",
    "describe_folder",
    "describe_headers",
]

#: Modules that define collections (in a module-level ``COLLECTIONS`` list), in detection order: a
#: name under ``SarcomaLungLiverBrowserLib.collections`` or a full dotted module path (``"mylab.my_collection"``).
COLLECTION_MODULES: List[str] = [
    "crlm",
    "lung_pet_ct_dx",
    "ispy1",
    "ispy1_dicom",
    "soft_tissue_sarcoma",
    "hermessi",
]

#: Collection classes registered from code with :func:`register_collection`, after the modules' ones.
_REGISTERED: List[Type[BaseCollection]] = []

#: How many entries of a folder that holds no collection are named in the error.
_LISTED_ENTRIES = 8


#: The names callers used before the collection contract; the same classes.
CaseInfo = CaseRecord
Collection = BaseCollection


def register_collection(collection_class: Type[BaseCollection]) -> Type[BaseCollection]:
    """Make ``collection_class`` known to detection, the browser, QA and the command line.

    One line adds a collection defined outside this package
    (``register_collection(MyCollection)``; also usable as a class decorator).
    Registering the same class twice has no further effect.

    :raises TypeError: if it is not a :class:`~.collections.base.Collection` with a key.
    :raises ValueError: if another collection already uses its key.
    """
    if not (isinstance(collection_class, type) and issubclass(collection_class, BaseCollection)):
        raise TypeError(f"{collection_class!r} is not a subclass of collections.base.Collection")
    if not collection_class.key:
        raise TypeError(f"{collection_class.__name__} has no key")
    if collection_class in _REGISTERED:
        return collection_class
    clash = next((known for known in collection_classes() if known.key == collection_class.key), None)
    if clash is not None:
        raise ValueError(f"collection key {collection_class.key!r} of {collection_class.__name__} is already "
                         f"used by {clash.__module__}.{clash.__name__}")
    _REGISTERED.append(collection_class)
    return collection_class


def unregister_collection(collection_class: Type[BaseCollection]) -> None:
    """Forget a class added with :func:`register_collection` (no effect if it was not)."""
    if collection_class in _REGISTERED:
        _REGISTERED.remove(collection_class)


def _collection_module(name: str) -> Any:
    """The module a :data:`COLLECTION_MODULES` entry names: a dotted path as is, else one under ``collections``."""
    return importlib.import_module(name if "." in name else f"{__package__}.collections.{name}")


def collection_classes() -> List[Type[Collection]]:
    """Every registered collection class, in registry order (modules first, then registered classes)."""
    classes: List[Type[Collection]] = []
    for module_name in COLLECTION_MODULES:
        classes.extend(getattr(_collection_module(module_name), "COLLECTIONS"))
    classes.extend(known for known in _REGISTERED if known not in classes)  # type: ignore[misc]
    return classes


def get_collection_class(key: str) -> Type[Collection]:
    """The collection class registered under ``key``."""
    for collection_class in collection_classes():
        if collection_class.key == key:
            return collection_class
    raise KeyError(f"no collection {key!r}; known: {[c.key for c in collection_classes()]}")


def accepts_annotation_roots(collection_class: Type[BaseCollection]) -> bool:
    """Whether the collection reads annotation folders the user names (an ``annotations`` argument)."""
    return "annotations" in inspect.signature(collection_class.__init__).parameters


def _instantiate(collection_class: Type[BaseCollection], root: Path, annotations: Sequence[Path]) -> Collection:
    if not annotations:
        return collection_class(root)
    if not accepts_annotation_roots(collection_class):
        raise DataError(root, f"holds {collection_class.title}, which reads no separate annotation folders; "
                              f"the annotation folder(s) named ({', '.join(map(str, annotations))}) do not apply")
    return collection_class(root, annotations=[Path(folder) for folder in annotations])  # type: ignore[call-arg]


def open_collection(root: Path, key: Optional[str] = None, annotations: Sequence[Path] = ()) -> Collection:
    """The collection held in ``root``, detected unless ``key`` names it.

    :param annotations: annotation folders outside ``root`` the user named
        (``--annotations``), for collections that read a separate annotation
        tree (Lung-PET-CT-Dx); none is ever found by walking upward from ``root``.
    :raises NotACollectionError: naming the folder and what was looked for.
    :raises DataError: if ``annotations`` are named for a collection that reads none, or one is unusable.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(root, "does not exist")
    if not root.is_dir():
        raise DataError(root, "is not a folder")
    if key is not None:
        return _instantiate(get_collection_class(key), root, annotations)
    classes = collection_classes()
    for collection_class in classes:
        if collection_class.detect(root):
            return _instantiate(collection_class, root, annotations)
    # No collection's own names or patient IDs: annotations decide (CT with SEG, images with RTSTRUCT).
    for collection_class in classes:
        if collection_class.detect_from_annotations(root):
            return _instantiate(collection_class, root, annotations)
    wanted = "; ".join(f"{c.title} looks for {c.looks_for or 'its own layout'}" for c in classes)
    raise NotACollectionError(root, f"holds none of the known collections ({wanted}); found there: "
                                    f"{describe_folder(root)}; in the DICOM headers: {describe_headers(root)}")


def describe_headers(folder: Path) -> str:
    """What the DICOM headers below ``folder`` hold, for messages ("found 12 DICOM file(s) of 2 patient(s)
    (IDs: X, Y; modalities: CT, SEG), none matching ...; no DICOM SEG or RTSTRUCT")."""
    from .formats.dicom_inventory import read_inventory

    try:
        inventory = read_inventory(folder)
    except DataError as error:
        return f"none readable ({error.problem})"
    patterns = [text for c in collection_classes() for text in getattr(c, "patient_id_patterns", ())]
    text = inventory.describe(patterns)
    series = [entry for patient in inventory.patients.values() for entry in patient.series]
    if inventory.instances and not any(entry.is_segmentation or entry.is_rtstruct for entry in series):
        text += "; no DICOM SEG or RTSTRUCT"
    return text


def describe_folder(folder: Path, limit: int = _LISTED_ENTRIES) -> str:
    """A short listing of what ``folder`` holds, for messages ("3 entries: a/, b.txt, ...")."""
    try:
        names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in os.scandir(folder))
    except OSError as error:
        return f"nothing readable ({error.strerror or error})"
    if not names:
        return "nothing (the folder is empty)"
    shown = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
    return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'}: {shown}"
