"""Lung-PET-CT-Dx: CT and PET series with PASCAL VOC tumour boxes as ROI markups.

Facts used (``shared/notes/lung_voc.md``; cited as facts, not code):

* Cases are patients ``Lung_Dx-A0001``; the letter is the histology class
  (A adenocarcinoma, B small cell, E large cell, G squamous cell carcinoma).
* Images come in the NBIA layout
  (``manifest-*/Lung-PET-CT-Dx/Lung_Dx-A0001/<study>/<series>/1-01.dcm`` with
  ``metadata.csv`` in the manifest folder) or idc-index's layout
  (``lung_pet_ct_dx/Lung_Dx-A0001/<StudyUID>/<Modality>_<SeriesUID>/<uuid>.dcm``).
  File names are never trusted; headers are read.
* Boxes live in a separate tree ``Annotation/A0001/<SOPInstanceUID>.xml``: one
  file per annotated 2-D image; the XML names no series, so the box goes to
  whichever loaded series holds that SOPInstanceUID (CT or PET; every
  reconstruction series of a study is annotated separately, §2).
* Box values are 0-based (column, row) pixel indices of the stored array
  (§1.3). A box here covers those pixels whole: its edges lie half a pixel
  outside the given indices. The notes give the remaining ambiguity as at
  most half a pixel.
* About a third of the referenced images in the full collection lack
  PixelSpacing or ImagePositionPatient (§3.5); such images cannot carry a
  ROI and are reported, not fatal. So are XMLs whose image is absent (§3.1).

Each box becomes a thin ROI on its slice, one slice spacing thick (so it
covers exactly that slice's voxels and shows on that slice only, and boxes
on neighbouring slices touch without overlapping). Per series, boxes on
contiguous slices that overlap in-plane are chained into lesions (notes §3.7,
a suggestion there); each lesion gets one 3-D ROI: the in-plane union, from
the first to the last slice ± half the spacing.
"""
from __future__ import annotations

import csv
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..formats.dicom_series import (
    DicomVolume,
    InstanceHeader,
    group_by_series,
    mixed_series_folders,
    read_series,
    scan_folder,
    split_stackable,
)
from ..errors import DataError
from ..findings import ERROR, INFO, WARNING, Finding
from ..geometry import apply_matrix, box_from_roi_corners, box_roi_geometry, directions_from_matrix, spacing_from_matrix
from ..progress import ProgressCallback, report, sub_progress
from ..registry import CaseInfo, Collection, LoadedCase
from ..scene.builder import ATTRIBUTE_PREFIX, WindowPreset, array_from_vtk_matrix
from ..formats.voc_xml import VocObject, annotation_for_objects, iter_xml_files, parse_voc, write_voc

__all__ = [
    "LungPetCtDxCollection",
    "COLLECTIONS",
    "DIAGNOSIS_BY_LETTER",
    "CT_WINDOW_PRESETS",
    "PET_COLOR_NODE_ID",
    "SliceBox",
    "Lesion",
    "CorrectedBox",
    "patient_letter",
    "box_roi_geometry",
    "box_from_roi_corners",
    "group_lesions",
    "corrected_boxes",
    "export_voc",
    "export_sr",
    "pet_ct_layers",
]

#: Histology class by the letter in the patient ID (collection description).
DIAGNOSIS_BY_LETTER = {
    "A": "Adenocarcinoma",
    "B": "Small cell carcinoma",
    "E": "Large cell carcinoma",
    "G": "Squamous cell carcinoma",
}

#: The windows the collection's readers used: mediastinum 350/40, lung 1400/-700.
CT_WINDOW_PRESETS = (WindowPreset("Mediastinum", 350.0, 40.0), WindowPreset("Lung", 1400.0, -700.0))

#: Slice's procedural PET colour map (present in a slicer-core scene as well).
PET_COLOR_NODE_ID = "vtkMRMLPETProceduralColorNodePET-Heat"
#: Used when the PET map is missing from the scene.
PET_FALLBACK_COLOR_NODE_ID = "vtkMRMLColorTableNodeRainbow"

#: Opacity suggested for the PET layer over CT.
PET_FOREGROUND_OPACITY = 0.5

#: Boxes of one lesion may skip this many slices (the gap is reported).
MAX_GAP_SLICES = 2

PATIENT_FOLDER = re.compile(r"^Lung_Dx-([A-Za-z])(\d+)$")
ANNOTATION_PATIENT_FOLDER = re.compile(r"^[A-Za-z]\d+$")
UID_NAME = re.compile(r"^[0-9.]+$")
COLLECTION_FOLDER_NAMES = ("lung-pet-ct-dx", "lung_pet_ct_dx")
IMAGE_MODALITIES = ("CT", "PT")

ROLE_SLICE_BOX = "slice_box"
ROLE_LESION = "lesion"

LESION_COLORS = {"CT": (1.0, 0.85, 0.0), "PT": (0.0, 0.9, 1.0)}
SLICE_BOX_COLOR = (1.0, 0.5, 0.0)

Box = Tuple[float, float, float, float]


# ---------------------------------------------------------------------- data
@dataclass
class SliceBox:
    """One box of one XML ``<object>``, placed on a slice of a loaded series.

    ``box`` is (xmin, ymin, xmax, ymax) after clamping to the image;
    ``original`` is as written in the file.
    """

    xml_path: Path
    object_index: int
    voc_object: VocObject
    sop_instance_uid: str
    series_instance_uid: str
    slice_index: int
    original: Box
    box: Box
    clamped: bool = False
    duplicate: bool = False
    lesion: int = 0

    @property
    def name(self) -> str:
        return self.voc_object.name


@dataclass
class Lesion:
    """Boxes of one series chained over neighbouring slices."""

    series_instance_uid: str
    boxes: List[SliceBox] = field(default_factory=list)

    @property
    def slices(self) -> List[int]:
        return sorted({box.slice_index for box in self.boxes})

    @property
    def missing_slices(self) -> List[int]:
        present = set(self.slices)
        return [k for k in range(self.slices[0], self.slices[-1] + 1) if k not in present]

    @property
    def union_box(self) -> Box:
        return (
            min(b.box[0] for b in self.boxes), min(b.box[1] for b in self.boxes),
            max(b.box[2] for b in self.boxes), max(b.box[3] for b in self.boxes),
        )


@dataclass(frozen=True)
class CorrectedBox:
    """A box read back from a per-slice ROI node, in the image's pixel units."""

    sop_instance_uid: str
    series_instance_uid: str
    slice_index: int
    name: str
    difficult: bool
    truncated: bool
    xmin: int
    ymin: int
    xmax: int
    ymax: int
    rows: int
    columns: int
    node_name: str = ""


@dataclass
class _LoadedSeries:
    volume: DicomVolume
    node: Any
    label: str
    sop_to_slice: Dict[str, int]


# ---------------------------------------------------------------------- pure helpers
def patient_letter(case_id: str) -> str:
    """The class letter of a patient ID such as ``Lung_Dx-A0001`` (upper case), or ""."""
    match = PATIENT_FOLDER.match(case_id)
    return match.group(1).upper() if match else ""


def annotation_folder_name(case_id: str) -> str:
    """``Lung_Dx-A0001`` -> ``A0001``, the annotation tree's folder name."""
    return case_id.split("-", 1)[1] if "-" in case_id else case_id


def _overlap(a: Box, b: Box) -> float:
    """Area in pixels shared by two inclusive pixel boxes (0 if disjoint)."""
    width = min(a[2], b[2]) - max(a[0], b[0]) + 1
    height = min(a[3], b[3]) - max(a[1], b[1]) + 1
    return max(0.0, width) * max(0.0, height)


def group_lesions(boxes: Sequence[SliceBox], max_gap: int = MAX_GAP_SLICES) -> List[Lesion]:
    """Chain the boxes of one series into lesions.

    A box joins the lesion with a box on the same slice or at most
    ``max_gap + 1`` slices before it that overlaps it in-plane (the latest
    such slice wins, then the larger overlap); otherwise it starts a lesion.
    Duplicate boxes are left out. Lesions are numbered from 1 in order of
    their first slice and their position.
    """
    lesions: List[Lesion] = []
    ordered = sorted((b for b in boxes if not b.duplicate),
                     key=lambda b: (b.slice_index, b.box[0], b.box[1]))
    for box in ordered:
        best: Optional[Tuple[int, float, Lesion]] = None
        for lesion in lesions:
            for other in lesion.boxes:
                distance = box.slice_index - other.slice_index
                if not 0 <= distance <= max_gap + 1:
                    continue
                area = _overlap(box.box, other.box)
                if area <= 0:
                    continue
                candidate = (-distance, area, lesion)
                if best is None or candidate[:2] > best[:2]:
                    best = candidate
        if best is None:
            lesions.append(Lesion(series_instance_uid=box.series_instance_uid, boxes=[box]))
        else:
            best[2].boxes.append(box)
    for number, lesion in enumerate(lesions, start=1):
        for box in lesion.boxes:
            box.lesion = number
    return lesions


def _clamp(box: Box, rows: int, columns: int) -> Tuple[Optional[Box], bool]:
    """The box clamped to the image; None if nothing of it is inside."""
    xmin, ymin, xmax, ymax = box
    if xmax < 0 or ymax < 0 or xmin > columns - 1 or ymin > rows - 1:
        return None, True
    clamped = (max(0.0, xmin), max(0.0, ymin), min(float(columns - 1), xmax), min(float(rows - 1), ymax))
    return clamped, clamped != tuple(box)


# ---------------------------------------------------------------------- discovery
def _walk_dirs(base: Path, max_depth: int) -> Iterable[Tuple[Path, int]]:
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


def _layout_of(patient_folder: Path) -> str:
    """``"idc"`` when study folders are named by UID, else ``"nbia"``."""
    try:
        names = [p.name for p in patient_folder.iterdir() if p.is_dir()]
    except OSError:
        return "nbia"
    return "idc" if names and all(UID_NAME.match(name) for name in names) else "nbia"


def _find_patient_folders(root: Path, max_depth: int = 4) -> Dict[str, List[Path]]:
    found: Dict[str, List[Path]] = defaultdict(list)
    if PATIENT_FOLDER.match(root.name):
        found[root.name].append(root)
        return found
    skipped: List[Path] = []
    for folder, _ in _walk_dirs(root, max_depth):
        if any(parent in folder.parents for parent in skipped):
            continue
        if folder.name.lower() in ("annotation", "annotations"):
            skipped.append(folder)
        elif PATIENT_FOLDER.match(folder.name):
            match = PATIENT_FOLDER.match(folder.name)
            case_id = f"Lung_Dx-{match.group(1).upper()}{match.group(2)}"  # type: ignore[union-attr]
            found[case_id].append(folder)
            skipped.append(folder)
    return found


def _is_annotation_root(folder: Path) -> bool:
    if folder.name.lower() not in ("annotation", "annotations"):
        return False
    try:
        return any(p.is_dir() and ANNOTATION_PATIENT_FOLDER.match(p.name) for p in folder.iterdir())
    except OSError:
        return False


def find_annotation_roots(root: Path) -> List[Path]:
    """``Annotation`` folders inside ``root`` (3 levels deep) or beside it or one of its three parents.

    Three parents reach the download folder from a chosen patient folder of
    the NBIA layout (``<download>/manifest-*/Lung-PET-CT-Dx/Lung_Dx-A0001``).
    """
    roots: List[Path] = []
    seen = set()

    def add(folder: Path) -> None:
        key = folder.resolve()
        if key not in seen and _is_annotation_root(folder):
            seen.add(key)
            roots.append(folder)

    if _is_annotation_root(root):
        add(root)
    for folder, _ in _walk_dirs(root, 3):
        add(folder)
    ancestor = root
    for _ in range(3):
        ancestor = ancestor.parent
        if ancestor == ancestor.parent:
            break
        for folder, _ in _walk_dirs(ancestor, 2):
            if root not in folder.parents and folder != root:
                add(folder)
    return roots


def _annotation_folders(case_id: str, annotation_roots: Sequence[Path]) -> List[Path]:
    wanted = annotation_folder_name(case_id).upper()
    folders = []
    for annotation_root in annotation_roots:
        for child in sorted(annotation_root.iterdir()):
            if child.is_dir() and child.name.upper() == wanted:
                folders.append(child)
    return folders


def _metadata_rows(patient_folder: Path, case_id: str) -> Tuple[Optional[Path], List[Dict[str, str]]]:
    """NBIA ``metadata.csv`` rows of this patient (manifest is two levels up)."""
    manifest = patient_folder.parent.parent
    path = manifest / "metadata.csv"
    if not path.is_file():
        return None, []
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            rows = [row for row in csv.DictReader(stream) if row.get("Subject ID", "") == case_id]
    except (OSError, csv.Error, UnicodeDecodeError):
        return path, []
    return path, rows


def _series_summary(patient_folder: Path, layout: str, metadata: List[Dict[str, str]]) -> List[str]:
    """Modalities of the patient's series, cheaply (metadata.csv or IDC folder names)."""
    if metadata:
        return [row.get("Modality", "") for row in metadata]
    if layout == "idc":
        return [series.name.split("_", 1)[0] for study in patient_folder.iterdir() if study.is_dir()
                for series in study.iterdir() if series.is_dir() and "_" in series.name]
    # NBIA folder names carry no modality; only the count is known without reading headers.
    return ["" for study in patient_folder.iterdir() if study.is_dir()
            for series in study.iterdir() if series.is_dir()]


# ---------------------------------------------------------------------- collection
class LungPetCtDxCollection(Collection):
    """Lung-PET-CT-Dx in NBIA and/or IDC layout, with its ``Annotation`` tree."""

    key = "lung_pet_ct_dx"
    title = "Lung-PET-CT-Dx (CT/PET with VOC tumour boxes)"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._source_headers: Dict[str, Dict[str, InstanceHeader]] = {}

    @classmethod
    def detect(cls, root: Path) -> bool:
        root = Path(root)
        names = [root.name]
        for folder, _ in _walk_dirs(root, 2):
            names.append(folder.name)
        return any(name.lower() in COLLECTION_FOLDER_NAMES or PATIENT_FOLDER.match(name) for name in names)

    def discover_cases(self, progress: Optional[ProgressCallback] = None) -> List[CaseInfo]:
        report(progress, "Looking for Lung-PET-CT-Dx patients", 0.0)
        patients = _find_patient_folders(self.root)
        annotation_roots = find_annotation_roots(self.root)
        cases = []
        for case_id in sorted(patients):
            folders = patients[case_id]
            layouts = [_layout_of(folder) for folder in folders]
            annotation_folders = _annotation_folders(case_id, annotation_roots)
            metadata_paths, modalities = [], []
            for folder, layout in zip(folders, layouts):
                metadata_path, rows = _metadata_rows(folder, case_id) if layout == "nbia" else (None, [])
                if metadata_path is not None:
                    metadata_paths.append(metadata_path)
                modalities.extend(_series_summary(folder, layout, rows))
            xml_files = [path for folder in annotation_folders for path in iter_xml_files(folder)]
            cases.append(CaseInfo(
                collection=self.key,
                case_id=case_id,
                root=self.root,
                diagnosis=DIAGNOSIS_BY_LETTER.get(patient_letter(case_id), "unknown"),
                files={
                    "image_folders": folders,
                    "annotation_folders": annotation_folders,
                    "metadata_csv": metadata_paths,
                },
                summary={
                    "layout": "+".join(sorted({layout.upper() for layout in layouts})),
                    "series": len(modalities),
                    "modalities": ", ".join(sorted({m for m in modalities if m})),
                    "xml_files": len(xml_files),
                },
            ))
        report(progress, f"Found {len(cases)} patients", 1.0)
        return cases

    # ------------------------------------------------------------------ loading
    def load_case(self, case: CaseInfo, builder: Any, progress: Optional[ProgressCallback] = None) -> LoadedCase:
        with builder.transaction():
            return _CaseLoader(self, case, builder, progress).load()

    def source_headers(self, case: CaseInfo) -> Dict[str, InstanceHeader]:
        """SOPInstanceUID -> header of every image of the case (cached from loading)."""
        if case.case_id not in self._source_headers:
            headers: Dict[str, InstanceHeader] = {}
            for folder in case.files.get("image_folders", []):
                for instance in scan_folder(Path(folder)).instances:
                    headers[instance.sop_instance_uid] = instance
            self._source_headers[case.case_id] = headers
        return self._source_headers[case.case_id]

    def export_case(self, loaded: LoadedCase, scene: Any, voc_root: Optional[Path] = None,
                    sr_folder: Optional[Path] = None) -> Dict[str, List[Path]]:
        """Write the case's (possibly edited) per-slice boxes as VOC XML and/or DICOM SR."""
        boxes = corrected_boxes(scene, loaded.case.case_id)
        written: Dict[str, List[Path]] = {}
        if voc_root is not None:
            written["voc"] = export_voc(boxes, voc_root, loaded.case.case_id)
        if sr_folder is not None:
            written["sr"] = export_sr(boxes, self.source_headers(loaded.case), sr_folder, loaded.case.case_id)
        return written

    def save_corrections(self, loaded: LoadedCase, scene: Any, output_folder: Path,
                         progress: Optional[ProgressCallback] = None) -> List[Path]:
        """The case's per-slice boxes as they are now in the scene, in the collection's own formats.

        VOC XML in the published layout, ``<out>/Annotation/<A0001>/<SOPInstanceUID>.xml``
        (one file per annotated image), and one DICOM SR per annotated series
        under ``<out>/SR/`` (see :func:`export_sr`). Every target is checked
        before the first file is written. Corrections saved earlier for this
        case's images that no longer hold a box are removed from the output
        folder, so it always shows the case as corrected (a deleted box must
        not come back from an older save).

        :raises DataError: if the folder is refused (inside the collection or
            among the sources), a name from the data would leave it, or no box
            of the case is left in the scene.
        """
        from ..formats.output_paths import safe_output_path

        case = loaded.case
        boxes = corrected_boxes(scene, case.case_id)
        if not boxes:
            raise DataError(self.root, f"{case.case_id} has no box ROI in the scene to save")
        folder = self.corrections_folder(output_folder, case)
        sources = self.source_paths(case)
        voc_root = self.check_corrections_target(case, folder / "Annotation", sources)
        case_folder = self.check_corrections_target(
            case, safe_output_path(voc_root, annotation_folder_name(case.case_id)), sources)
        for sop_uid in sorted({box.sop_instance_uid for box in boxes}):
            self.check_corrections_target(case, safe_output_path(case_folder, f"{sop_uid}.xml", ".xml"), sources)
        sr_folder = self.check_corrections_target(case, folder / "SR", sources)
        self._refuse_sr_name_clash(case, boxes, sr_folder)
        report(progress, f"Writing corrected boxes of {case.case_id}", 0.1)
        written = self.export_case(loaded, scene, voc_root=voc_root, sr_folder=sr_folder)
        voc, sr = written.get("voc", []), written.get("sr", [])
        self._remove_stale_corrections(case, case_folder, sr_folder, voc + sr)
        report(progress, f"Saved {len(voc)} VOC and {len(sr)} SR file(s) of {case.case_id}", 1.0)
        return voc + sr

    def _refuse_sr_name_clash(self, case: CaseInfo, boxes: Sequence[CorrectedBox], sr_folder: Path) -> None:
        """Refuse before writing if two annotated series would get the same SR file name.

        :func:`export_sr` names each SR after its source SeriesNumber, so a
        second series with the same number would silently replace the first's SR.
        """
        headers = self.source_headers(case)
        numbers: Dict[str, List[str]] = defaultdict(list)
        for series_uid in sorted({box.series_instance_uid for box in boxes}):
            sop = next(box.sop_instance_uid for box in boxes if box.series_instance_uid == series_uid)
            header = headers.get(sop)
            numbers[str((header.series_number if header is not None else None) or 0)].append(series_uid)
        clashes = {number: uids for number, uids in numbers.items() if len(uids) > 1}
        if clashes:
            number, uids = sorted(clashes.items())[0]
            raise DataError(sr_folder, f"annotated series {', '.join(uids)} of {case.case_id} share SeriesNumber "
                                       f"{number}; their SR files would have one name; nothing was written")

    def _remove_stale_corrections(self, case: CaseInfo, case_folder: Path, sr_folder: Path,
                                  written: Sequence[Path]) -> None:
        """Remove earlier corrections of this case that this save did not rewrite.

        Only files this collection writes are touched: ``<SOPInstanceUID>.xml``
        of the case's own images, and ``<case_id>_series*_boxes_SR.dcm``.
        """
        keep = {path.resolve() for path in written}
        images = set(self.source_headers(case))
        stale = [path for path in iter_xml_files(case_folder) if annotation_sop(path) in images]
        if sr_folder.is_dir():
            prefix = f"{case.case_id}_series"
            stale.extend(path for path in sr_folder.iterdir()
                         if path.is_file() and path.name.startswith(prefix) and path.name.endswith("_boxes_SR.dcm"))
        for path in stale:
            if path.resolve() not in keep:
                path.unlink()


class _CaseLoader:
    """Loads one case; split from the collection so each step is a small method."""

    def __init__(self, collection: LungPetCtDxCollection, case: CaseInfo, builder: Any,
                 progress: Optional[ProgressCallback]) -> None:
        self.collection = collection
        self.case = case
        self.builder = builder
        self.progress = progress
        self.result = LoadedCase(case=case)
        self.series: Dict[str, _LoadedSeries] = {}
        self.without_geometry: Dict[str, InstanceHeader] = {}
        self.skipped_series_sops: Dict[str, str] = {}
        self.headers: Dict[str, InstanceHeader] = {}
        self.patient_item = 0
        self.study_items: Dict[str, int] = {}
        self.size_claims: Dict[Tuple[str, str, str], List[Path]] = {}

    # -------------------------------------------------------------- findings
    def finding(self, severity: str, check: str, message: str, path: Any = "", node_name: str = "",
                ras: Optional[Sequence[float]] = None, value: Optional[float] = None) -> None:
        self.result.findings.append(Finding(
            severity=severity, check=check, message=message, case_id=self.case.case_id,
            path=str(path) if path else "", node_name=node_name,
            ras=tuple(float(v) for v in ras) if ras is not None else None, value=value,
        ))

    # -------------------------------------------------------------- steps
    def load(self) -> LoadedCase:
        report(self.progress, f"Reading {self.case.case_id} headers", 0.0)
        instances = self._scan(sub_progress(self.progress, 0.0, 0.2))
        self.patient_item = self.builder.patient_item(self.case.case_id, self.case.case_id, uid_name="DICOM")
        self._load_series(instances, sub_progress(self.progress, 0.2, 0.8))
        report(self.progress, "Reading annotations", 0.8)
        boxes = self._read_boxes()
        report(self.progress, "Placing boxes", 0.9)
        lesion_count = self._place_boxes(boxes)
        self._add_box_table(boxes)
        self._choose_layers()
        self.result.metrics.update({
            "series": len(self.series),
            "boxes": sum(1 for b in boxes if not b.duplicate),
            "lesions": lesion_count,
            "findings": len(self.result.findings),
        })
        self.collection._source_headers[self.case.case_id] = self.headers
        report(self.progress, f"Loaded {self.case.case_id}", 1.0)
        return self.result

    def _scan(self, progress: Optional[ProgressCallback]) -> List[InstanceHeader]:
        instances: List[InstanceHeader] = []
        folders = list(self.case.files.get("image_folders", []))
        for index, folder in enumerate(folders):
            scan = scan_folder(Path(folder), sub_progress(progress, index / len(folders), (index + 1) / len(folders)))
            instances.extend(scan.instances)
            for error in scan.errors:
                self.finding(WARNING, "lung.unreadable_dicom", str(error), path=error.path)
            for problem in mixed_series_folders(scan.instances):
                self.finding(WARNING, "lung.mixed_series_folder", str(problem), path=problem.path)
        for instance in instances:
            self.headers[instance.sop_instance_uid] = instance
        return instances

    def _study_item(self, instance: InstanceHeader) -> int:
        uid = instance.study_instance_uid
        if uid not in self.study_items:
            name = " ".join(part for part in (instance.study_date, instance.study_description) if part) or uid
            self.study_items[uid] = self.builder.study_item(self.patient_item, uid, name, uid_name="DICOM")
        return self.study_items[uid]

    def _load_series(self, instances: List[InstanceHeader], progress: Optional[ProgressCallback]) -> None:
        groups = group_by_series(instances)
        order = sorted(groups, key=lambda uid: (
            IMAGE_MODALITIES.index(groups[uid][0].modality) if groups[uid][0].modality in IMAGE_MODALITIES else 9,
            groups[uid][0].series_number if groups[uid][0].series_number is not None else 0, uid))
        for index, uid in enumerate(order):
            report(progress, f"Loading series {index + 1}/{len(order)}", index / max(1, len(order)))
            self._load_one_series(groups[uid], sub_progress(progress, index / len(order), (index + 1) / len(order)))

    def _series_label(self, instance: InstanceHeader) -> str:
        number = "" if instance.series_number is None else f"{instance.series_number} "
        return f"{number}{instance.modality} {instance.series_description}".strip()

    def _load_one_series(self, instances: List[InstanceHeader], progress: Optional[ProgressCallback]) -> None:
        first = instances[0]
        label = self._series_label(first)
        if first.modality not in IMAGE_MODALITIES:
            self.finding(INFO, "lung.series_skipped",
                         f"series {label} ({first.modality}) is not CT or PET and was not loaded", path=first.path.parent)
            for instance in instances:
                self.skipped_series_sops[instance.sop_instance_uid] = label
            return
        placeable = [instance for instance in instances if not instance.missing_geometry]
        lacking = [instance for instance in instances if instance.missing_geometry]
        if lacking:
            missing = sorted({name for instance in lacking for name in instance.missing_geometry})
            self.finding(WARNING, "lung.missing_geometry",
                         f"series {label}: {len(lacking)} of {len(instances)} images lack {', '.join(missing)} "
                         f"(e.g. {lacking[0].path.name}); they are left out of the volume and boxes on them "
                         "cannot be placed", path=lacking[0].path, value=float(len(lacking)))
            for instance in lacking:
                self.without_geometry[instance.sop_instance_uid] = instance
        placeable, left_out = split_stackable(placeable)
        for error in left_out:
            self.finding(WARNING, "lung.slice_left_out", f"series {label}: {error}; left out of the volume",
                         path=error.path)
        if not placeable:
            return
        try:
            volume = read_series(placeable, progress)
        except DataError as error:
            self.finding(ERROR, "lung.series_unreadable", f"series {label} was not loaded: {error}", path=error.path)
            for instance in placeable:
                self.skipped_series_sops[instance.sop_instance_uid] = label
            return
        for problem in volume.problems():
            self.finding(WARNING, "lung.stack_irregular", f"series {label}: {problem}", path=first.path.parent)
        node = self._add_volume(volume, label)
        sop_to_slice = {instance.sop_instance_uid: k for k, instance in enumerate(volume.instances)}
        for duplicate in volume.duplicates:
            k = volume.slice_index(duplicate.sop_instance_uid)
            if k is not None:
                sop_to_slice[duplicate.sop_instance_uid] = k
        self.series[volume.series_instance_uid] = _LoadedSeries(volume, node, label, sop_to_slice)

    def _add_volume(self, volume: DicomVolume, label: str) -> Any:
        first = volume.instances[0]
        name = f"{self.case.case_id} {label}"
        attributes = {
            "collection": self.collection.key, "case_id": self.case.case_id,
            "series_instance_uid": volume.series_instance_uid, "modality": volume.modality,
        }
        if volume.modality == "PT":
            scene = self.builder.scene
            color = PET_COLOR_NODE_ID if scene.GetNodeByID(PET_COLOR_NODE_ID) else PET_FALLBACK_COLOR_NODE_ID
            if color != PET_COLOR_NODE_ID:
                self.finding(INFO, "lung.no_pet_colormap", f"the scene has no {PET_COLOR_NODE_ID}; "
                             f"{name} uses {color}", node_name=name)
            node = self.builder.add_volume(name, volume.voxels, volume.ijk_to_ras, (), color,
                                           self._study_item(first), attributes, share_memory=True)
        else:
            # The node uses the freshly read voxels in place (never changed afterwards): one copy, not two.
            node = self.builder.add_volume(name, volume.voxels, volume.ijk_to_ras, CT_WINDOW_PRESETS, None,
                                           self._study_item(first), attributes, share_memory=True)
        # Slicer's DICOM plugin stores the same list under this name; exports map slices back with it.
        node.SetAttribute("DICOM.instanceUIDs", " ".join(i.sop_instance_uid for i in volume.instances))
        self.result.volumes.append(node)
        return node

    # -------------------------------------------------------------- annotations
    def _read_boxes(self) -> List[SliceBox]:
        folders = list(self.case.files.get("annotation_folders", []))
        if not folders:
            self.finding(WARNING, "lung.no_annotations",
                         f"no Annotation/{annotation_folder_name(self.case.case_id)} folder was found beside or "
                         f"inside {self.case.root}")
            return []
        boxes: List[SliceBox] = []
        seen_files: Dict[str, Path] = {}
        for folder in folders:
            for path in iter_xml_files(folder):
                stem = path.name[:-4]
                if stem in seen_files:
                    self.finding(WARNING, "lung.duplicate_xml", f"{path.name} exists in {seen_files[stem].parent} "
                                 f"and {path.parent}; both are read", path=path)
                seen_files.setdefault(stem, path)
                boxes.extend(self._boxes_of_file(path))
        self._flag_duplicates(boxes)
        for (label, claimed, actual), paths in self.size_claims.items():
            # One finding per series: the real files say 512x512 whatever the image (notes §1.1).
            self.finding(INFO, "lung.size_mismatch", f"{len(paths)} XML file(s) on series {label} give <size> "
                         f"{claimed} but the images are {actual} (e.g. {paths[0].name}); the images' size is used",
                         path=paths[0], value=float(len(paths)))
        return boxes

    def _boxes_of_file(self, path: Path) -> List[SliceBox]:
        try:
            annotation = parse_voc(path)
        except DataError as error:
            self.finding(ERROR, "lung.xml_unreadable", f"{path.name} skipped: {error.problem}", path=path)
            return []
        sop_uid = annotation.stem
        located = self._locate(sop_uid, path)
        if located is None:
            return []
        series, k = located
        instance = series.volume.instances[k]
        rows, columns = int(instance.rows or 0), int(instance.columns or 0)
        if not annotation.objects:
            self.finding(WARNING, "lung.xml_no_objects", f"{path.name} holds no <object>", path=path)
        if annotation.width and annotation.height and (annotation.width, annotation.height) != (columns, rows):
            key = (series.label, f"{annotation.width}x{annotation.height}", f"{columns}x{rows}")
            self.size_claims.setdefault(key, []).append(path)
        boxes = []
        for index, voc_object in enumerate(annotation.objects):
            box = self._box_of_object(path, index, voc_object, series, k, rows, columns)
            if box is not None:
                boxes.append(box)
        return boxes

    def _locate(self, sop_uid: str, path: Path) -> Optional[Tuple[_LoadedSeries, int]]:
        for series in self.series.values():
            if sop_uid in series.sop_to_slice:
                return series, series.sop_to_slice[sop_uid]
        if sop_uid in self.without_geometry:
            instance = self.without_geometry[sop_uid]
            self.finding(WARNING, "lung.box_no_geometry",
                         f"{path.name}: its image {instance.path.name} lacks "
                         f"{', '.join(instance.missing_geometry)}; the box cannot be placed in space", path=path)
        elif sop_uid in self.skipped_series_sops:
            self.finding(WARNING, "lung.xml_unmatched",
                         f"{path.name}: its image is in series {self.skipped_series_sops[sop_uid]}, which was not "
                         "loaded", path=path)
        else:
            self.finding(WARNING, "lung.xml_unmatched",
                         f"{path.name}: no loaded image has SOPInstanceUID {sop_uid}", path=path)
        return None

    def _check_label(self, path: Path, index: int, name: str) -> None:
        letter = patient_letter(self.case.case_id)
        if name == letter:
            return
        if name.upper() == letter:
            problem = f"is lower case ({name!r} for class {letter!r})"
        elif not name:
            problem = "is empty"
        else:
            problem = f"is {name!r}, but the patient's class letter is {letter!r}"
        self.finding(WARNING, "lung.label_mismatch", f"{path.name} object {index + 1}: <name> {problem}; "
                     f"the class is taken from the patient ID", path=path)

    def _box_of_object(self, path: Path, index: int, voc_object: VocObject, series: _LoadedSeries, k: int,
                       rows: int, columns: int) -> Optional[SliceBox]:
        self._check_label(path, index, voc_object.name)
        original = voc_object.box
        box = original
        if box[0] > box[2] or box[1] > box[3]:
            box = (min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3]))
            self.finding(WARNING, "lung.box_inverted", f"{path.name} object {index + 1}: min exceeds max "
                         f"in {original}; the corners were swapped", path=path)
        clamped, changed = _clamp(box, rows, columns)
        if clamped is None:
            self.finding(ERROR, "lung.box_outside_image", f"{path.name} object {index + 1}: box {original} lies "
                         f"wholly outside the {columns}x{rows} image; skipped", path=path)
            return None
        if changed:
            self.finding(WARNING, "lung.box_outside_image", f"{path.name} object {index + 1}: box {original} "
                         f"reaches outside the {columns}x{rows} image; clamped to {clamped}", path=path,
                         node_name=series.node.GetName())
        return SliceBox(path, index, voc_object, annotation_sop(path), series.volume.series_instance_uid, k,
                        original, clamped, clamped=changed)

    def _flag_duplicates(self, boxes: List[SliceBox]) -> None:
        seen: Dict[Tuple[str, Box], SliceBox] = {}
        for box in boxes:
            key = (box.sop_instance_uid, tuple(round(v, 6) for v in box.box))
            if key in seen:
                box.duplicate = True
                first = seen[key]
                self.finding(WARNING, "lung.duplicate_box",
                             f"{box.xml_path.name} object {box.object_index + 1} repeats the box of "
                             f"{first.xml_path.name} object {first.object_index + 1}; kept once", path=box.xml_path)
            else:
                seen[key] = box

    # -------------------------------------------------------------- ROIs
    def _place_boxes(self, boxes: List[SliceBox]) -> int:
        by_series: Dict[str, List[SliceBox]] = defaultdict(list)
        for box in boxes:
            by_series[box.series_instance_uid].append(box)
        lesion_count = 0
        lesion_rois, slice_rois = [], []
        for uid, series_boxes in by_series.items():
            series = self.series[uid]
            lesions = group_lesions(series_boxes)
            folder = self.builder.folder_item(self._study_item(series.volume.instances[0]),
                                              f"{series.node.GetName()} boxes")
            slice_folder = self.builder.folder_item(folder, "Per-slice boxes")
            for number, lesion in enumerate(lesions, start=1):
                lesion_rois.append(self._add_lesion_roi(series, lesion, number, folder))
            for box in series_boxes:
                if not box.duplicate:
                    slice_rois.append(self._add_slice_roi(series, box, slice_folder))
            lesion_count += len(lesions)
        self.result.rois.extend(lesion_rois + slice_rois)
        return lesion_count

    def _add_lesion_roi(self, series: _LoadedSeries, lesion: Lesion, number: int, folder: int) -> Any:
        slices = lesion.slices
        center, size, axes = box_roi_geometry(series.volume.ijk_to_ras, lesion.union_box, slices[0], slices[-1])
        name = f"{series.node.GetName()} lesion {number}"
        node = self.builder.add_roi(
            name, center, size, axes, LESION_COLORS.get(series.volume.modality, LESION_COLORS["CT"]),
            locked=True, parent_item=folder, attributes={
                "role": ROLE_LESION, "case_id": self.case.case_id, "lesion": number,
                "series_instance_uid": lesion.series_instance_uid, "volume_node_id": series.node.GetID(),
                "first_slice": slices[0], "last_slice": slices[-1], "boxes": len(lesion.boxes),
                "missing_slices": " ".join(str(k) for k in lesion.missing_slices),
            })
        if lesion.missing_slices:
            self.finding(WARNING, "lung.lesion_gap",
                         f"{name}: slice(s) {', '.join(str(k) for k in lesion.missing_slices)} between "
                         f"{slices[0]} and {slices[-1]} have no box", node_name=name, ras=center,
                         value=float(len(lesion.missing_slices)))
        return node

    def _add_slice_roi(self, series: _LoadedSeries, box: SliceBox, folder: int) -> Any:
        center, size, axes = box_roi_geometry(series.volume.ijk_to_ras, box.box, box.slice_index, box.slice_index)
        name = f"{series.node.GetName()} slice {box.slice_index} box {box.object_index + 1}"
        node = self.builder.add_roi(
            name, center, size, axes, SLICE_BOX_COLOR, locked=False, parent_item=folder, attributes={
                "role": ROLE_SLICE_BOX, "case_id": self.case.case_id, "lesion": box.lesion,
                "series_instance_uid": box.series_instance_uid, "volume_node_id": series.node.GetID(),
                "sop_instance_uid": box.sop_instance_uid, "slice_index": box.slice_index,
                "xml_file": box.xml_path.name, "object_index": box.object_index, "label": box.name,
                "difficult": int(box.voc_object.difficult), "truncated": int(box.voc_object.truncated),
                "clamped": int(box.clamped),
            })
        # Kept for editing and export, hidden so the lesion boxes stay readable.
        node.GetDisplayNode().SetVisibility(False)
        return node

    def _add_box_table(self, boxes: List[SliceBox]) -> None:
        if not boxes:
            return
        import pandas as pd  # imported here: only needed once boxes exist

        rows = []
        for box in boxes:
            series = self.series[box.series_instance_uid]
            rows.append({
                "xml_file": box.xml_path.name, "object": box.object_index + 1, "label": box.name,
                "series": series.label, "modality": series.volume.modality, "slice": box.slice_index,
                "sop_instance_uid": box.sop_instance_uid, "xmin": box.box[0], "ymin": box.box[1],
                "xmax": box.box[2], "ymax": box.box[3], "difficult": int(box.voc_object.difficult),
                "clamped": int(box.clamped), "duplicate": int(box.duplicate), "lesion": box.lesion,
            })
        table = self.builder.add_table(f"{self.case.case_id} boxes", pd.DataFrame(rows), self.patient_item,
                                       {"case_id": self.case.case_id, "role": "box_table"})
        self.result.tables.append(table)

    def _choose_layers(self) -> None:
        """Background CT and foreground PET: the widget shows PET over CT with these."""
        cts = [s for s in self.series.values() if s.volume.modality == "CT"]
        pets = [s for s in self.series.values() if s.volume.modality == "PT"]
        if not cts:
            return
        background = cts[0]
        foreground = None
        if pets:
            foreground = pets[0]
            same_frame = [ct for ct in cts if ct.volume.instances[0].frame_of_reference_uid
                          == foreground.volume.instances[0].frame_of_reference_uid]
            background = same_frame[0] if same_frame else cts[0]
        background.node.SetAttribute(ATTRIBUTE_PREFIX + "layer", "background")
        self.result.metrics["background_volume_id"] = background.node.GetID()
        if foreground is not None:
            foreground.node.SetAttribute(ATTRIBUTE_PREFIX + "layer", "foreground")
            self.result.metrics["foreground_volume_id"] = foreground.node.GetID()
            self.result.metrics["foreground_opacity"] = PET_FOREGROUND_OPACITY


def annotation_sop(path: Path) -> str:
    """The SOPInstanceUID an annotation file is named after."""
    name = Path(path).name
    return name[:-4] if name.lower().endswith(".xml") else name


def pet_ct_layers(loaded: LoadedCase, scene: Any) -> Tuple[Optional[Any], Optional[Any], float]:
    """(background CT node, foreground PET node or None, PET opacity) chosen at load time."""
    background = scene.GetNodeByID(loaded.metrics.get("background_volume_id", "")) \
        if loaded.metrics.get("background_volume_id") else None
    foreground = scene.GetNodeByID(loaded.metrics.get("foreground_volume_id", "")) \
        if loaded.metrics.get("foreground_volume_id") else None
    return background, foreground, float(loaded.metrics.get("foreground_opacity", PET_FOREGROUND_OPACITY))


# ---------------------------------------------------------------------- export
def _attribute(node: Any, key: str, default: str = "") -> str:
    value = node.GetAttribute(ATTRIBUTE_PREFIX + key)
    return default if value is None else value


def _roi_corners(node: Any) -> np.ndarray:
    """The 8 corners of a ROI node in RAS (its object-to-world matrix and size)."""
    object_to_world = array_from_vtk_matrix(node.GetObjectToWorldMatrix())
    size = np.array(node.GetSize(), dtype=float)
    signs = np.array([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])
    return apply_matrix(object_to_world, signs * size)


def corrected_boxes(scene: Any, case_id: str) -> List[CorrectedBox]:
    """The per-slice box ROIs of a case as they are now in the scene, in pixel units.

    Each ROI is mapped into its volume's voxel grid; the slice is the one
    nearest its centre (so a box dragged to another slice moves to that
    slice's image), and the edges are rounded to whole pixels and clamped.
    ROIs the user deleted are gone from the export; ROIs not made by the
    loader are ignored.
    """
    boxes = []
    nodes = scene.GetNodesByClass("vtkMRMLMarkupsROINode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if _attribute(node, "role") != ROLE_SLICE_BOX or _attribute(node, "case_id") != case_id:
            continue
        volume = scene.GetNodeByID(_attribute(node, "volume_node_id"))
        if volume is None or not volume.GetAttribute("DICOM.instanceUIDs"):
            continue
        uids = volume.GetAttribute("DICOM.instanceUIDs").split()
        matrix = vtk_ijk_to_ras(volume)
        columns, rows, slices = volume.GetImageData().GetDimensions()
        xmin, ymin, xmax, ymax, k = box_from_roi_corners(matrix, _roi_corners(node))
        k_index = int(min(max(round(k), 0), slices - 1))
        x0, x1 = sorted((int(round(xmin)), int(round(xmax))))
        y0, y1 = sorted((int(round(ymin)), int(round(ymax))))
        boxes.append(CorrectedBox(
            sop_instance_uid=uids[k_index],
            series_instance_uid=_attribute(node, "series_instance_uid"),
            slice_index=k_index,
            name=_attribute(node, "label"),
            difficult=_attribute(node, "difficult", "0") == "1",
            truncated=_attribute(node, "truncated", "0") == "1",
            xmin=min(max(x0, 0), columns - 1), ymin=min(max(y0, 0), rows - 1),
            xmax=min(max(x1, 0), columns - 1), ymax=min(max(y1, 0), rows - 1),
            rows=rows, columns=columns, node_name=node.GetName(),
        ))
    boxes.sort(key=lambda b: (b.series_instance_uid, b.slice_index, b.xmin, b.ymin))
    return boxes


def vtk_ijk_to_ras(volume_node: Any) -> np.ndarray:
    """A volume node's IJK-to-RAS matrix as numpy."""
    import vtk  # the library stays importable without VTK for pure helpers

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return array_from_vtk_matrix(matrix)


def export_voc(boxes: Sequence[CorrectedBox], annotation_root: Path, case_id: str) -> List[Path]:
    """Write boxes as ``<annotation_root>/<A0001>/<SOPInstanceUID>.xml``, one file per image.

    Files are in the collection's own style (see :mod:`..voc_xml`); ``<size>``
    is the image's Columns x Rows. Existing files of the same name are replaced.
    """
    folder_name = _safe_name(annotation_folder_name(case_id), Path(annotation_root), "case folder")
    folder = Path(annotation_root) / folder_name
    by_image: Dict[str, List[CorrectedBox]] = defaultdict(list)
    for box in boxes:
        by_image[box.sop_instance_uid].append(box)
    # Every name comes from the data (SOPInstanceUIDs): check them all before writing any file.
    for sop_uid in by_image:
        _safe_name(f"{sop_uid}.xml", folder, "annotation file")
    written = []
    for sop_uid in sorted(by_image):
        image_boxes = by_image[sop_uid]
        objects = [VocObject(b.name or patient_letter(case_id), b.xmin, b.ymin, b.xmax, b.ymax,
                             difficult=b.difficult, truncated=b.truncated) for b in image_boxes]
        annotation = annotation_for_objects(objects, image_boxes[0].columns, image_boxes[0].rows, 1)
        written.append(write_voc(folder, f"{sop_uid}.xml", annotation))
    return written


def _safe_name(name: str, folder: Path, what: str) -> str:
    """``name`` if it is a plain file name that stays inside ``folder``.

    :raises DataError: naming the folder, for separators, ``..``, absolute paths or NUL bytes.
    """
    if (not name or name.strip(".") == "" or "/" in name or "\\" in name or "\x00" in name
            or os.path.isabs(name) or (os.altsep is not None and os.altsep in name)):
        raise DataError(folder, f"refusing to write {what} {name!r}: a name taken from the data must not "
                                "leave the output folder")
    return name


def _finding_type(case_id: str) -> Any:
    from pydicom.sr.codedict import codes

    # As IDC's conversion does: the class from the letter, "Neoplasm" otherwise (notes §3, [SR]).
    by_letter = {"A": codes.SCT.Adenocarcinoma, "B": codes.SCT.SmallCellCarcinoma,
                 "E": codes.SCT.LargeCellCarcinoma, "G": codes.SCT.SquamousCellCarcinoma}
    return by_letter.get(patient_letter(case_id), codes.SCT.Neoplasm)


def export_sr(boxes: Sequence[CorrectedBox], source_headers: Mapping[str, InstanceHeader], output_folder: Path,
              case_id: str) -> List[Path]:
    """Write one DICOM Comprehensive 3D SR (TID 1500) per annotated series.

    Modelled on IDC's conversion of this collection (notes, "How [SR] builds
    the SR"): one planar ROI measurement group per box, a closed 5-point
    POLYLINE in the image's pixel coordinates holding the VOC values as they
    are, the source image as SourceImageForRegion, finding type from the
    patient letter, finding site lung, purpose "Bounded by"; series number =
    source series number + 100; description "Tumor bounding box".

    :raises DataError: if a box's source image is not among ``source_headers``.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    output_folder = Path(output_folder)
    _safe_name(f"{case_id}_series", output_folder, "SR file for case")
    output_folder.mkdir(parents=True, exist_ok=True)
    by_series: Dict[str, List[CorrectedBox]] = defaultdict(list)
    for box in boxes:
        by_series[box.series_instance_uid].append(box)
    written = []
    for series_uid in sorted(by_series):
        series_boxes = sorted(by_series[series_uid], key=lambda b: (b.slice_index, b.xmin, b.ymin))
        evidence = {}
        for box in series_boxes:
            header = source_headers.get(box.sop_instance_uid)
            if header is None:
                raise DataError(output_folder, f"source image {box.sop_instance_uid} of {box.node_name} is unknown")
            if box.sop_instance_uid not in evidence:
                evidence[box.sop_instance_uid] = pydicom.dcmread(str(header.path), stop_before_pixels=True)
        groups = []
        for number, box in enumerate(series_boxes, start=1):
            dataset = evidence[box.sop_instance_uid]
            corners = np.array([[box.xmin, box.ymin], [box.xmax, box.ymin], [box.xmax, box.ymax],
                                [box.xmin, box.ymax], [box.xmin, box.ymin]], dtype=float)
            region = hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=corners,
                source_image=hd.sr.SourceImageForRegion(str(dataset.SOPClassUID), box.sop_instance_uid),
            )
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"Box {number}"),
                referenced_region=region,
                finding_type=_finding_type(case_id),
                finding_sites=[hd.sr.FindingSite(codes.SCT.LungStructure)],
                geometric_purpose=codes.SCT.BoundedBy,
            ))
        observer = hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=hd.UID(), name="SarcomaLungLiverBrowser"),
        )
        report_content = hd.sr.MeasurementReport(
            observation_context=hd.sr.ObservationContext(observer_device_context=observer),
            procedure_reported=codes.SCT.ImagingProcedure,
            imaging_measurements=groups,
        )
        first = next(iter(evidence.values()))
        series_number = int(first.get("SeriesNumber", 0) or 0) + 100
        sr = hd.sr.Comprehensive3DSR(
            evidence=list(evidence.values()),
            content=report_content,
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="SarcomaLungLiverBrowser",
            series_description="Tumor bounding box",
        )
        path = output_folder / f"{case_id}_series{series_number - 100}_boxes_SR.dcm"
        sr.save_as(str(path))
        written.append(path)
    return written


COLLECTIONS = [LungPetCtDxCollection]
