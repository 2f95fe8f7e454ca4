"""Lung-PET-CT-Dx on disk: patients found by their DICOM headers, the ``Annotation`` tree, ``metadata.csv``.

Patients are the PatientIDs ``Lung_Dx-<letter><number>`` in the headers of the
files below the chosen folder, whatever the folders are named or nested (NBIA,
idc-index, IDC's flat download, series-UID folders; see
:mod:`...formats.dicom_inventory`), read once through the header cache. Their
boxes are in ``Annotation/<A0001>/<SOPInstanceUID>.xml`` trees inside the
chosen folder or named by the user. What is on disk decides the counts;
NBIA's ``metadata.csv`` only names the listed series that are not there. VOC
files whose image is not on disk are summarised per case, and annotation
folders of a patient without images become a case of their own that says so.
"""
from __future__ import annotations

import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple
from pathlib import Path

from ...formats.dicom_inventory import (
    DicomInventory, missing_series_problems, read_inventory, read_nbia_metadata, stray_series_problems,
)
from ...formats.folders import is_dir_entry, is_file_entry
from ...progress import ProgressCallback, report, sub_progress
from . import DIAGNOSIS_BY_LETTER, LungCase, annotation_folder_name, lung_case_id, patient_letter

__all__ = ["walk_dirs", "find_annotation_roots", "annotation_patients", "discover_cases"]

ANNOTATION_PATIENT_FOLDER = re.compile(r"^[A-Za-z]\d+$")
ANNOTATION_FOLDER_NAMES = ("annotation", "annotations")
#: How many names of VOC files without their image a message gives.
_NAMED_XMLS = 3


def walk_dirs(base: Path, max_depth: int) -> Iterable[Tuple[Path, int]]:
    """Folders below ``base`` (not ``base``) to ``max_depth`` levels, sorted; symbolic links to folders are
    listed but not entered, and link loops or unreadable entries are skipped."""
    stack = [(base, 0)]
    while stack:
        folder, depth = stack.pop()
        if depth >= max_depth:
            continue
        try:
            entries = [entry for entry in os.scandir(folder) if is_dir_entry(entry)]
        except OSError:
            continue
        for entry in sorted(entries, key=lambda item: item.name, reverse=True):
            child = Path(entry.path)
            yield child, depth + 1
            if not entry.is_symlink():
                stack.append((child, depth + 1))


def _is_annotation_root(folder: Path) -> bool:
    if folder.name.lower() not in ANNOTATION_FOLDER_NAMES:
        return False
    try:
        return any(ANNOTATION_PATIENT_FOLDER.match(entry.name) and is_dir_entry(entry) for entry in os.scandir(folder))
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
        for child in _child_folders(annotation_root):
            if child.name.upper() == wanted:
                folders.append(child)
    return folders


def annotation_patients(annotation_roots: Sequence[Path]) -> Dict[str, List[Path]]:
    """Case ID (``Lung_Dx-A0001``) -> its ``Annotation/<A0001>`` folders, for every patient folder of the trees."""
    found: Dict[str, List[Path]] = {}
    for annotation_root in annotation_roots:
        for child in _child_folders(annotation_root):
            if ANNOTATION_PATIENT_FOLDER.match(child.name):
                found.setdefault(f"Lung_Dx-{child.name[0].upper()}{child.name[1:]}", []).append(child)
    return found


def _child_folders(folder: Path) -> List[Path]:
    """The sub-folders of ``folder``, sorted (none if it cannot be read)."""
    try:
        return sorted(Path(entry.path) for entry in os.scandir(folder) if is_dir_entry(entry))
    except OSError:
        return []


def _xml_names(folder: Path) -> List[str]:
    """The names of the ``*.xml`` files directly in ``folder`` (link loops and special files skipped), sorted."""
    try:
        return sorted(entry.name for entry in os.scandir(folder)
                      if entry.name.lower().endswith(".xml") and is_file_entry(entry))
    except OSError:
        return []


def _layout(inventory: DicomInventory, instances: Sequence) -> Tuple[List[Path], List[str], str]:
    """(image folders, layout per folder, the case's layout label such as ``"NBIA"`` or ``"IDC+NBIA"``)."""
    folders = inventory.case_folders(instances)
    uids = {instance.series_instance_uid for instance in instances}
    series = [entry for uid, entry in inventory.series_by_uid().items() if uid in uids]
    per_folder = []
    for folder in folders:
        inside = sorted({inventory.layout_of(entry) for entry in series
                         if any(folder == held or folder in held.parents for held in entry.folders)})
        per_folder.append("+".join(inside))
    label = "+".join(sorted({inventory.layout_of(entry).upper() for entry in series}))
    return folders, per_folder, label


def _unmatched_xml_problems(case_id: str, annotations: Sequence[Path], on_disk: set,
                            missing_series: Sequence[str]) -> List[Tuple[int, str]]:
    """(count, message) per annotation folder whose VOC files name images that are not on disk."""
    problems = []
    for folder in annotations:
        unmatched = [name for name in _xml_names(folder) if Path(name).stem not in on_disk]
        if not unmatched:
            continue
        examples = ", ".join(unmatched[:_NAMED_XMLS]) + (", ..." if len(unmatched) > _NAMED_XMLS else "")
        if missing_series:
            reason = (f"metadata.csv lists {len(missing_series)} series of {case_id} that "
                      f"{'is' if len(missing_series) == 1 else 'are'} not on disk (named in separate findings)")
        else:
            reason = "their series was probably not downloaded (no metadata.csv names it)"
        problems.append((len(unmatched), f"{folder}: {len(unmatched)} VOC file(s) name images of {case_id} that are not on disk "
                        f"({examples}); {reason}"))
    return problems


def discover_cases(collection_key: str, root: Path, progress: Optional[ProgressCallback] = None,
                   named_annotation_roots: Sequence[Path] = ()) -> List[LungCase]:
    """Every patient in the headers below ``root`` (and every annotation-only patient), sorted by case ID.

    :param named_annotation_roots: annotation folders outside ``root`` the user named.
    """
    report(progress, "Reading DICOM headers", 0.0)
    inventory = read_inventory(root, sub_progress(progress, 0.0, 0.9))
    by_case = inventory.instances_by_case(lung_case_id)
    annotation_roots = find_annotation_roots(root, named_annotation_roots)
    annotated = annotation_patients(annotation_roots)
    metadata = read_nbia_metadata(root)
    cases = []
    for case_id in sorted(set(by_case) | set(annotated)):
        instances = by_case.get(case_id, [])
        annotations = annotation_folders(case_id, annotation_roots)
        xml_files = sum(len(_xml_names(folder)) for folder in annotations)
        folders, layouts, label = _layout(inventory, instances)
        on_disk_series = {instance.series_instance_uid for instance in instances}
        missing = missing_series_problems(case_id, metadata, on_disk_series,
                                          lambda subject: lung_case_id(subject) == case_id)
        problems = [*stray_series_problems(instances), *missing]
        unmatched: List[Tuple[int, str]] = []
        if instances:
            unmatched = _unmatched_xml_problems(case_id, annotations, {i.sop_instance_uid for i in instances},
                                                missing)
        else:
            problems.extend(f"{folder}: {len(_xml_names(folder))} VOC file(s) of {case_id}, but no DICOM image of "
                            f"{case_id} is below {root}; its boxes cannot be placed" for folder in annotations)
        modalities = sorted({instance.modality for instance in instances if instance.modality})
        summary = {"layout": label, "series": len(on_disk_series), "modalities": ", ".join(modalities),
                   "xml_files": xml_files}
        if missing:
            summary["missing series"] = len(missing)
        if unmatched:
            summary["xml_without_image"] = sum(count for count, _ in unmatched)
        if problems:
            summary["problems"] = len(problems)
        cases.append(LungCase(
            collection=collection_key,
            case_id=case_id,
            root=root,
            diagnosis=DIAGNOSIS_BY_LETTER.get(patient_letter(case_id), "unknown"),
            summary=summary,
            problems=problems,
            unmatched_xml=[message for _, message in unmatched],
            image_folders=folders,
            annotation_folders=annotations,
            metadata_csv=sorted({row.csv_path for row in metadata if lung_case_id(row.subject_id) == case_id}),
            layouts=layouts,
        ))
    report(progress, f"Found {len(cases)} patients", 1.0)
    return cases
