"""Lung-PET-CT-Dx on disk: patient folders of both layouts, the ``Annotation`` tree, ``metadata.csv``.

Only headers-free facts are used here (folder names, NBIA's ``metadata.csv``,
IDC's ``<Modality>_<SeriesUID>`` folder names), so listing the cases of the
whole collection reads no DICOM file.
"""
from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ...progress import ProgressCallback, report
from . import DIAGNOSIS_BY_LETTER, PATIENT_FOLDER, LungCase, annotation_folder_name, patient_letter

__all__ = ["walk_dirs", "find_annotation_roots", "discover_cases"]

ANNOTATION_PATIENT_FOLDER = re.compile(r"^[A-Za-z]\d+$")
UID_NAME = re.compile(r"^[0-9.]+$")
ANNOTATION_FOLDER_NAMES = ("annotation", "annotations")


def walk_dirs(base: Path, max_depth: int) -> Iterable[Tuple[Path, int]]:
    """Folders below ``base`` (not ``base``) to ``max_depth`` levels, sorted, no symlink loops."""
    stack = [(base, 0)]
    while stack:
        folder, depth = stack.pop()
        if depth >= max_depth:
            continue
        try:
            children = sorted((p for p in folder.iterdir() if p.is_dir()), reverse=True)
        except OSError:
            continue
        for child in children:
            yield child, depth + 1
            if not child.is_symlink():
                stack.append((child, depth + 1))


def layout_of(patient_folder: Path) -> str:
    """``"idc"`` when study folders are named by UID, else ``"nbia"``."""
    try:
        names = [p.name for p in patient_folder.iterdir() if p.is_dir()]
    except OSError:
        return "nbia"
    return "idc" if names and all(UID_NAME.match(name) for name in names) else "nbia"


def find_patient_folders(root: Path, max_depth: int = 4) -> Dict[str, List[Path]]:
    """Case ID -> its patient folders (a patient may be in both layouts), never inside ``Annotation``."""
    found: Dict[str, List[Path]] = defaultdict(list)
    if PATIENT_FOLDER.match(root.name):
        found[root.name].append(root)
        return found
    skipped: List[Path] = []
    for folder, _ in walk_dirs(root, max_depth):
        if any(parent in folder.parents for parent in skipped):
            continue
        match = PATIENT_FOLDER.match(folder.name)
        if folder.name.lower() in ANNOTATION_FOLDER_NAMES:
            skipped.append(folder)
        elif match:
            found[f"Lung_Dx-{match.group(1).upper()}{match.group(2)}"].append(folder)
            skipped.append(folder)
    return found


def _is_annotation_root(folder: Path) -> bool:
    if folder.name.lower() not in ANNOTATION_FOLDER_NAMES:
        return False
    try:
        return any(p.is_dir() and ANNOTATION_PATIENT_FOLDER.match(p.name) for p in folder.iterdir())
    except OSError:
        return False


def find_annotation_roots(root: Path, named: Sequence[Path] = ()) -> List[Path]:
    """``Annotation`` folders inside ``root`` (3 levels deep), and the folders the user ``named``.

    Never folders found by walking upward: an edited copy of ``Annotation``
    beside the collection would be read too, and what loads would depend on
    whether the path was typed relative or absolute.

    :param named: annotation folders given explicitly (each an ``Annotation``
        folder, or a folder holding one within 3 levels).
    """
    roots: List[Path] = []
    seen = set()

    def add(folder: Path) -> None:
        key = folder.resolve()
        if key not in seen and _is_annotation_root(folder):
            seen.add(key)
            roots.append(folder)

    for base in (root, *named):
        base = Path(base)
        add(base)
        for folder, _ in walk_dirs(base, 3):
            add(folder)
    return roots


def annotation_folders(case_id: str, annotation_roots: Sequence[Path]) -> List[Path]:
    """The ``Annotation/<A0001>`` folders of a case (folder names compared case-insensitively)."""
    wanted = annotation_folder_name(case_id).upper()
    folders = []
    for annotation_root in annotation_roots:
        for child in sorted(annotation_root.iterdir()):
            if child.is_dir() and child.name.upper() == wanted:
                folders.append(child)
    return folders


def metadata_rows(patient_folder: Path, case_id: str) -> Tuple[Optional[Path], List[Dict[str, str]]]:
    """NBIA ``metadata.csv`` rows of this patient (manifest is two levels up)."""
    path = patient_folder.parent.parent / "metadata.csv"
    if not path.is_file():
        return None, []
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            rows = [row for row in csv.DictReader(stream) if row.get("Subject ID", "") == case_id]
    except (OSError, csv.Error, UnicodeDecodeError):
        return path, []
    return path, rows


def series_modalities(patient_folder: Path, layout: str, metadata: List[Dict[str, str]]) -> List[str]:
    """Modalities of the patient's series, cheaply (metadata.csv or IDC folder names; "" when unknown)."""
    if metadata:
        return [row.get("Modality", "") for row in metadata]
    if layout == "idc":
        return [series.name.split("_", 1)[0] for study in patient_folder.iterdir() if study.is_dir()
                for series in study.iterdir() if series.is_dir() and "_" in series.name]
    # NBIA folder names carry no modality; only the count is known without reading headers.
    return ["" for study in patient_folder.iterdir() if study.is_dir()
            for series in study.iterdir() if series.is_dir()]


def discover_cases(collection_key: str, root: Path, progress: Optional[ProgressCallback] = None,
                   named_annotation_roots: Sequence[Path] = ()) -> List[LungCase]:
    """Every patient under ``root`` (either layout), with its annotation folders, sorted by case ID.

    :param named_annotation_roots: annotation folders outside ``root`` the user named.
    """
    from ...formats.voc_xml import iter_xml_files

    report(progress, "Looking for Lung-PET-CT-Dx patients", 0.0)
    patients = find_patient_folders(root)
    annotation_roots = find_annotation_roots(root, named_annotation_roots)
    cases = []
    for case_id in sorted(patients):
        folders = patients[case_id]
        layouts = [layout_of(folder) for folder in folders]
        annotations = annotation_folders(case_id, annotation_roots)
        metadata_paths: List[Path] = []
        modalities: List[str] = []
        for folder, layout in zip(folders, layouts):
            metadata_path, rows = metadata_rows(folder, case_id) if layout == "nbia" else (None, [])
            if metadata_path is not None:
                metadata_paths.append(metadata_path)
            modalities.extend(series_modalities(folder, layout, rows))
        xml_files = sum(1 for folder in annotations for _ in iter_xml_files(folder))
        cases.append(LungCase(
            collection=collection_key,
            case_id=case_id,
            root=root,
            diagnosis=DIAGNOSIS_BY_LETTER.get(patient_letter(case_id), "unknown"),
            summary={
                "layout": "+".join(sorted({layout.upper() for layout in layouts})),
                "series": len(modalities),
                "modalities": ", ".join(sorted({m for m in modalities if m})),
                "xml_files": xml_files,
            },
            image_folders=list(folders),
            annotation_folders=annotations,
            metadata_csv=metadata_paths,
            layouts=layouts,
        ))
    report(progress, f"Found {len(cases)} patients", 1.0)
    return cases
