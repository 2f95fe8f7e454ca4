"""Colorectal-Liver-Metastases (TCIA, Simpson et al. 2024): CT + DICOM SEG + clinical workbook.

Facts (``shared/notes/datasets.md`` §1, ``idc_tables.md``): 197 patients
``CRLM-CT-1001``..; one portal-venous CT and one dcmqi-written BINARY SEG each,
with segments 1 Liver, 2 Liver Remnant (``"Liver Remnant"`` or
``"Liver_Remnant"``), 3 Hepatic, 4 Portal, 5.. Tumor_n (5 to 39 segments).
Segments overlap by design (the liver contains tumours and remnant; vessels
leave the liver), and dcmqi omits empty frames, so a SEG covers only part of
the CT. IDC holds, under the same collection, bamf AIMI AI SEGs ("AIMI
liver-tumor AI segmentation") beside the original SEG ("Segmentation",
Manufacturer QIICR); each SEG loads as its own segmentation on its CT, the
original named ``<case> segmentation`` and the others from their series
(:func:`segmentation_names`), and each is checked alike.

Layouts: NBIA (``manifest-*/Colorectal-Liver-Metastases/CRLM-CT-1001/<study>/
<series>/1-01.dcm``, SEG ``100.000000-Segmentation-*/1-1.dcm``, ``metadata.csv``)
and IDC (``colorectal_liver_metastases/CRLM-CT-1001/<StudyUID>/<Modality>_<SeriesUID>/
<uuid>.dcm``). The clinical workbook
``Colorectal-Liver-Metastases-Clinical-data-April-2023.xlsx`` (also spelled
with spaces), sheet ``TCIA_n=197``, codes missing values as 999 / -999.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..case_data import (
    ATTRIBUTE_PREFIX, CaseData, LoadedCase, Placement, SegmentationData, SegmentSpec, TableData, VolumeData,
    WindowPreset,
)
from ..errors import DataError
from ..colors import distinct_colors
from ..findings import ERROR, INFO, WARNING, Finding
from ..formats.dicom_inventory import (
    SEG_SOP_CLASS_UIDS,
    DicomInventory,
    MetadataRow,
    canonical_id,
    missing_series_problems,
    patient_key,
    inventory_or_empty,
    read_nbia_metadata,
    stray_series_problems,
)
from ..formats.dicom_series import (
    DicomVolume,
    InstanceHeader,
    read_series,
    scan_folder,
    split_stackable,
)
from ..formats.folders import is_dir_entry, is_file_entry
from ..geometry import apply_matrix
from ..progress import ProgressCallback, report, sub_progress
from .base import CaseRecord, Collection

if TYPE_CHECKING:  # highdicom (via dicom_seg) and pandas load where a case is read, so detection stays light
    import pandas as pd

    from ..formats.dicom_seg import DecodedSegment, DecodedSegmentation, SegHeader

__all__ = [
    "CrlmCollection",
    "CrlmCase",
    "SegFile",
    "COLLECTIONS",
    "canonical_segment_name",
    "structure_kind",
    "is_ai_segmentation",
    "segmentation_names",
    "read_clinical_table",
    "find_clinical_row",
    "export_segmentation",
    "CLINICAL_SHEET",
]

PATIENT_FOLDER = re.compile(r"^CRLM-CT-\d{3,5}$", re.IGNORECASE)
COLLECTION_NAMES = ("colorectal-liver-metastases", "colorectal_liver_metastases")
CLINICAL_NAME = re.compile(r"^colorectal[-_ ]liver[-_ ]metastases[-_ ]clinical[-_ ]data.*\.(xlsx|xls|csv)$",
                           re.IGNORECASE)
CLINICAL_SHEET = "TCIA_n=197"
CLINICAL_ID_COLUMN = "Patient-ID"
CLINICAL_SENTINELS = (999, -999)
#: What a CRLM PatientID looks like in the headers (folder names only help detection, never decide a case).
PATIENT_ID = PATIENT_FOLDER

ABDOMEN_WINDOWS = [WindowPreset("Abdomen", 400.0, 40.0), WindowPreset("Liver", 150.0, 90.0)]

#: Colours when the SEG recommends none (Slicer's generic anatomy colours for liver and veins).
DEFAULT_COLORS = {
    "liver": (221 / 255, 130 / 255, 101 / 255),
    "remnant": (241 / 255, 214 / 255, 145 / 255),
    "hepatic": (0 / 255, 151 / 255, 206 / 255),
    # Not Slicer's portal-vein red, which is hard to tell from the liver beside it.
    "portal": (120 / 255, 80 / 255, 220 / 255),
    "other": (0.6, 0.6, 0.6),
}

_STRUCTURES = {
    "liver": "liver",
    "liver_remnant": "remnant",
    "remnant": "remnant",
    "hepatic": "hepatic",
    "hepatic_vein": "hepatic",
    "hepatic_veins": "hepatic",
    "portal": "portal",
    "portal_vein": "portal",
}
_CANONICAL = {"liver": "Liver", "remnant": "Liver_Remnant", "hepatic": "Hepatic", "portal": "Portal"}
_TUMOUR = re.compile(r"^(tumou?r|lesion|metastas[ie]s)_?(\d*)$")


# ---------------------------------------------------------------------------------------------- names
def _label_key(label: str) -> str:
    return re.sub(r"[\s\-]+", "_", label.strip()).lower()


def structure_kind(label: str) -> str:
    """``liver``, ``remnant``, ``hepatic``, ``portal``, ``tumour`` or ``other`` for a SegmentLabel."""
    key = _label_key(label)
    if key in _STRUCTURES:
        return _STRUCTURES[key]
    if _TUMOUR.match(key):
        return "tumour"
    return "other"


def canonical_segment_name(label: str) -> str:
    """One spelling per structure: "Liver Remnant"/"Liver_remnant" -> "Liver_Remnant", "tumor 3" -> "Tumor_3".

    The collection's co-author replaces spaces with underscores ("No spaces in
    returned labels!", datasets.md §1); other labels are kept as they are.
    """
    key = _label_key(label)
    kind = structure_kind(label)
    if kind in _CANONICAL:
        return _CANONICAL[kind]
    match = _TUMOUR.match(key)
    if match:
        return f"Tumor_{match.group(2)}" if match.group(2) else "Tumor"
    return label.strip()


def is_ai_segmentation(header: "SegHeader") -> bool:
    """True for the bamf AIMI AI SEGs that IDC files under the collection (not the original SEG)."""
    description = header.series_description.lower()
    return ("aimi" in description or re.search(r"\bai\b", description) is not None
            or "bamf" in header.manufacturer.lower())


# ---------------------------------------------------------------------------------------------- clinical
def _find_clinical(root: Path) -> Optional[Path]:
    """The clinical workbook in ``root`` (2 levels down) or beside it."""
    candidates: List[Path] = []
    for folder, depth in ((root, 2), (root.parent, 0)):
        for path in _walk_files(folder, depth):
            if CLINICAL_NAME.match(path.name) and not path.name.startswith("~$"):
                candidates.append(path)
        if candidates:
            break
    candidates.sort(key=lambda path: (path.suffix.lower() != ".xlsx", len(path.parts), str(path)))
    return candidates[0] if candidates else None


def _walk_files(folder: Path, depth: int) -> Iterator[Path]:
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if is_file_entry(entry):
            yield Path(entry.path)
        elif depth > 0 and is_dir_entry(entry, follow_symlinks=False) and not entry.name.startswith((".", "_")):
            yield from _walk_files(Path(entry.path), depth - 1)


def read_clinical_table(path: Path) -> Tuple["pd.DataFrame", List[str]]:
    """The clinical sheet with 999 / -999 turned into NaN, and notes about how it was read.

    :raises DataError: naming the file, if it cannot be read or lacks ``Patient-ID``.
    """
    from ..formats.tables import read_table, replace_sentinels

    notes: List[str] = []
    try:
        table = read_table(path, sheet=CLINICAL_SHEET)
    except DataError as error:
        if "has no sheet" not in error.problem:
            raise
        table = read_table(path, sheet=CLINICAL_SHEET, fallback_to_first_sheet=True)
        notes.append(f"{error.problem}; read the first sheet instead")
    if CLINICAL_ID_COLUMN not in table.columns:
        raise DataError(path, f"lacks the column {CLINICAL_ID_COLUMN!r} "
                              f"(has {', '.join(map(str, list(table.columns)[:6]))}...)")
    return replace_sentinels(table, CLINICAL_SENTINELS), notes


def find_clinical_row(table: "pd.DataFrame", case_id: str) -> "pd.DataFrame":
    """The rows of ``table`` for a case, matching ``CRLM-CT-1001`` or its number 1001."""
    identifiers = table[CLINICAL_ID_COLUMN].astype(str).str.strip()
    exact = identifiers.str.lower() == case_id.lower()
    if exact.any():
        return table[exact]
    number = re.search(r"(\d+)$", case_id)
    if number is None:
        return table.iloc[0:0]
    numbers = identifiers.str.extract(r"(\d+)(?:\.0+)?$")[0]
    return table[numbers.fillna("").map(lambda value: value.lstrip("0")) == number.group(1).lstrip("0")]


# ---------------------------------------------------------------------------------------------- discovery
@dataclass
class SegFile:
    """A DICOM SEG file of a case, as its header describes it (frames are not read while discovering).

    :param referenced_series_uids: the CT series its ReferencedSeriesSequence names.
    :param segment_labels: its segments' SegmentLabels, in order.
    :param is_ai: a bamf AIMI AI SEG that IDC files beside the collection's own SEG.
    """

    path: Path
    series_instance_uid: str
    series_description: str
    content_creator_name: str = ""
    manufacturer: str = ""
    referenced_series_uids: List[str] = field(default_factory=list)
    segment_labels: List[str] = field(default_factory=list)
    is_ai: bool = False


@dataclass
class CrlmCase(CaseRecord):
    """One CRLM patient: its CT series and the SEG files beside them.

    :param patient_folders: the patient's folders (NBIA and IDC layouts may both hold one).
    :param ct_series: CT SeriesInstanceUID -> the folders holding its files.
    :param segs: every SEG file found, the collection's own and IDC's AI ones.
    """

    patient_folders: List[Path] = field(default_factory=list)
    ct_series: Dict[str, List[Path]] = field(default_factory=dict)
    segs: List[SegFile] = field(default_factory=list)

    @property
    def seg_files(self) -> List[Path]:
        """The collection's own (expert) SEG files, in series order (the same whatever the folders)."""
        return [seg.path for seg in sorted(self.segs, key=_seg_order) if not seg.is_ai]

    @property
    def ai_seg_files(self) -> List[Path]:
        """IDC's AI (and radiologist-corrected AI) SEG files, in series order."""
        return [seg.path for seg in sorted(self.segs, key=_seg_order) if seg.is_ai]

    def location(self) -> Optional[Path]:
        return self.patient_folders[0] if self.patient_folders else None

    def seg(self, path: Path) -> SegFile:
        """The SEG file record for ``path``."""
        return next(seg for seg in self.segs if seg.path == Path(path))


def _seg_order(seg: SegFile) -> Tuple[str, str, str]:
    """SEGs by series (description, UID) and file name: an order that does not depend on the folders."""
    return seg.series_description, seg.series_instance_uid, seg.path.name


def crlm_case_id(patient_id: str) -> Optional[str]:
    """``CRLM-CT-1001`` for a PatientID spelled like one (any case, DICOM padding ignored), else None."""
    return canonical_id(PATIENT_ID, patient_id, lambda match: match.group(0).upper())


def _seg_files(inventory: DicomInventory, problems: Dict[str, List[str]]) -> List[Tuple[SegFile, str]]:
    """Every DICOM SEG of the inventory with its header read (frames are not), and its own PatientID.

    A SEG that cannot be read is remembered under its PatientID's key in ``problems``.
    """
    from ..formats.dicom_seg import read_seg_header

    segs: List[Tuple[SegFile, str]] = []
    for patient in inventory.patients.values():
        for series in patient.series:
            if not series.is_segmentation:
                continue
            for instance in series.instances:
                try:
                    header = read_seg_header(instance.path)
                except DataError as error:
                    problems.setdefault(patient_key(instance.patient_id), []).append(str(error))
                    continue
                segs.append((SegFile(instance.path, header.series_instance_uid, header.series_description,
                                     header.content_creator_name, header.manufacturer,
                                     list(header.referenced_series_uids), list(header.segment_labels),
                                     is_ai_segmentation(header)), instance.patient_id))
    return segs


@dataclass
class _Clinical:
    """The clinical workbook as read once per collection object."""

    path: Optional[Path]
    table: Optional["pd.DataFrame"]
    notes: List[str]
    error: Optional[str]


@dataclass
class _ReadSegmentation:
    """A decoded SEG with what the checks need: its segment IDs in the scene and the CT it lies on."""

    decoded: "DecodedSegmentation"
    ct_uid: str
    segment_ids: Dict[int, str]
    node_name: str


class CrlmCollection(Collection):
    """Colorectal-Liver-Metastases in NBIA or IDC layout (or both under one folder)."""

    key = "crlm"
    title = "Colorectal-Liver-Metastases"
    looks_for = ("PatientIDs CRLM-CT-nnnn in the DICOM headers (or, if no collection matches, CT with DICOM SEG), "
                 "a folder named Colorectal-Liver-Metastases, colorectal_liver_metastases or CRLM-CT-nnnn within "
                 "two levels, or the clinical workbook Colorectal-Liver-Metastases-Clinical-data-*.xlsx")
    patient_id_patterns = ("CRLM-CT-nnnn",)
    record_type = CrlmCase

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._clinical_cache: Optional[_Clinical] = None

    # ------------------------------------------------------------------ detection
    @classmethod
    def detect(cls, root: Path) -> bool:
        """A CRLM folder or patient folder name, the clinical workbook, or CRLM PatientIDs in the headers."""
        root = Path(root)
        if cls._names_match(root.name):
            return True
        for child in _subfolders(root):
            if cls._names_match(child.name) or any(cls._names_match(g.name) for g in _subfolders(child)):
                return True
        try:
            if any(CLINICAL_NAME.match(entry.name) for entry in os.scandir(root) if is_file_entry(entry)):
                return True
        except OSError:
            return False
        return bool(inventory_or_empty(root).instances_by_case(crlm_case_id))

    @classmethod
    def detect_from_annotations(cls, root: Path) -> bool:
        """CT with DICOM SEG, whatever the PatientIDs: loaded as this collection when no other claims it."""
        patients = inventory_or_empty(Path(root)).patients.values()
        series = [entry for patient in patients for entry in patient.series]
        return any(entry.is_segmentation for entry in series) and any(entry.modality == "CT" for entry in series)

    @staticmethod
    def _names_match(name: str) -> bool:
        return name.lower() in COLLECTION_NAMES or PATIENT_FOLDER.match(name) is not None

    # ------------------------------------------------------------------ discovery
    def discover_cases(self, progress: Optional[ProgressCallback] = None) -> List[CrlmCase]:
        """Every CRLM patient in the headers below the root, with its CT series and SEG files paired.

        Cases are PatientIDs ``CRLM-CT-nnnn`` (or, when there is none, every
        patient with a CT and a DICOM SEG), found by the headers whatever the
        folders are named or nested (:mod:`..formats.dicom_inventory`). A SEG
        belongs to the case whose CT it references (so another patient's SEG
        pointing at this CT is refused by name when loading), else to its own
        PatientID's case. SEG headers are read (not their frames) to tell
        original from AI SEGs. NBIA's ``metadata.csv`` only names listed
        series that are not on disk.
        """
        report(progress, "Reading DICOM headers", 0.0)
        inventory = inventory_or_empty(self.root, sub_progress(progress, 0.0, 0.8))
        case_id_of = self._case_ids(inventory)
        problems: Dict[str, List[str]] = {}
        by_case = inventory.instances_by_case(case_id_of)
        case_of_series = {instance.series_instance_uid: case_id for case_id, instances in by_case.items()
                          for instance in instances if instance.modality == "CT"}
        report(progress, "Reading SEG headers", 0.8)
        segs: Dict[str, List[SegFile]] = {}
        for seg, own_patient_id in _seg_files(inventory, problems):
            owner = next((case_of_series[uid] for uid in seg.referenced_series_uids if uid in case_of_series),
                         case_id_of(own_patient_id))
            if owner is not None:
                segs.setdefault(owner, []).append(seg)
        metadata = read_nbia_metadata(self.root)
        cases = []
        for case_id, instances in by_case.items():
            images = [instance for instance in instances if instance.modality != "SEG"
                      and instance.sop_class_uid not in SEG_SOP_CLASS_UIDS]
            own_segs = sorted(segs.get(case_id, []), key=_seg_order)
            if not own_segs and not any(instance.modality == "CT" for instance in images):
                continue  # e.g. only a SEG that belongs, by its reference, to another case's CT
            case_problems = [problem for key in {patient_key(i.patient_id) for i in instances}
                             for problem in problems.get(key, [])]
            cases.append(self._case_record(case_id, inventory, instances, images, own_segs, metadata,
                                           case_problems))
        report(progress, f"Found {len(cases)} CRLM cases", 1.0)
        return cases

    @staticmethod
    def _case_ids(inventory: DicomInventory) -> Callable[[str], Optional[str]]:
        """PatientID -> case ID: CRLM IDs; without any, the IDs of patients with a DICOM SEG."""
        if inventory.instances_by_case(crlm_case_id):
            return crlm_case_id
        with_seg = {key: patient.patient_id for key, patient in inventory.patients.items()
                    if key and any(series.is_segmentation for series in patient.series)}
        return lambda patient_id: with_seg.get(patient_key(patient_id))

    def _case_record(self, case_id: str, inventory: DicomInventory, instances: List[InstanceHeader],
                     images: List[InstanceHeader], segs: List[SegFile], metadata: List[MetadataRow],
                     problems: List[str]) -> CrlmCase:
        folders = inventory.case_folders(instances)
        ct_series: Dict[str, List[Path]] = {}
        for instance in sorted(images, key=lambda i: (i.series_number or 0, i.series_instance_uid, str(i.path))):
            if instance.modality == "CT":
                held = ct_series.setdefault(instance.series_instance_uid, [])
                if instance.path.parent not in held:
                    held.append(instance.path.parent)
        uids = {instance.series_instance_uid for instance in instances}
        series_entries = [entry for uid, entry in inventory.series_by_uid().items() if uid in uids]
        layouts: List[str] = []
        for entry in sorted(series_entries, key=lambda e: (e.series_number or 0, e.series_instance_uid)):
            layout = inventory.layout_of(entry)
            if layout not in layouts:
                layouts.append(layout)
        ct_folders = {folder for held in ct_series.values() for folder in held}
        # Unreadable files in a CT folder are reported when the CT is read; the others here.
        problems = [*problems, *(str(error) for error in inventory.errors if Path(error.path).parent not in ct_folders
                                 and any(folder in Path(error.path).parents for folder in folders))]
        problems.extend(stray_series_problems(instances))
        problems.extend(missing_series_problems(
            case_id, metadata, {entry.series_instance_uid for entry in series_entries},
            lambda subject: crlm_case_id(subject) == case_id or subject == case_id))
        expert = [seg for seg in segs if not seg.is_ai]
        first_labels = expert[0].segment_labels if expert else []
        kinds = [structure_kind(label) for label in first_labels]
        summary: Dict[str, Any] = {
            "layout": "+".join(layouts) or "?",
            "CT series": len(ct_series),
            "SEG": len(expert),
            "AI SEG": len(segs) - len(expert),
            "segments": len(first_labels),
            "tumours": kinds.count("tumour"),
        }
        if problems:
            summary["problems"] = len(problems)
        return CrlmCase(self.key, case_id, self.root, summary=summary, problems=problems,
                        patient_folders=folders, ct_series=ct_series, segs=segs)

    # ------------------------------------------------------------------ pairing
    @staticmethod
    def pair_segmentations(case: CrlmCase) -> List[Tuple[Path, str]]:
        """(original SEG file, SeriesInstanceUID of the CT it references) for each original SEG.

        :raises DataError: naming the SEG, if the CT it references is not in the case.
        """
        pairs = []
        for seg_path in case.seg_files:
            referenced = case.seg(seg_path).referenced_series_uids
            present = [uid for uid in referenced if uid in case.ct_series]
            if present:
                pairs.append((seg_path, present[0]))
                continue
            if not referenced and len(case.ct_series) == 1:
                # No ReferencedSeriesSequence: the frames' own references are checked when decoding.
                pairs.append((seg_path, next(iter(case.ct_series))))
                continue
            found = ", ".join(sorted(case.ct_series)) or "none"
            wanted = ", ".join(referenced) or "no series (and the case has several CT series)"
            raise DataError(seg_path, f"references CT series {wanted}, which is not in case {case.case_id} "
                                      f"(CT series found: {found}); nothing was loaded")
        return pairs

    @staticmethod
    def pair_ai_segmentations(case: CrlmCase) -> Tuple[List[Tuple[Path, str]], List[Finding]]:
        """(AI SEG file, SeriesInstanceUID of its CT) for each AI SEG whose CT is in the case, and a warning
        naming each one whose CT is not (the expert annotation still loads without it)."""
        pairs: List[Tuple[Path, str]] = []
        unpaired: List[Finding] = []
        for seg_path in case.ai_seg_files:
            referenced = case.seg(seg_path).referenced_series_uids
            present = [uid for uid in referenced if uid in case.ct_series]
            if not present and not referenced and len(case.ct_series) == 1:
                present = list(case.ct_series)
            if present:
                pairs.append((seg_path, present[0]))
                continue
            unpaired.append(Finding(
                WARNING, "crlm.ai_segmentation_unpaired",
                f"{seg_path.name}: AI segmentation references CT series {', '.join(referenced) or '(none)'}, "
                f"which is not in case {case.case_id}; not loaded", case_id=case.case_id, path=str(seg_path)))
        return pairs, unpaired

    # ------------------------------------------------------------------ reading
    def read_case(self, case: CrlmCase, progress: Optional[ProgressCallback] = None) -> CaseData:
        """The CT, every SEG (original, then AI) as a segmentation on it and the clinical data, as plain data.

        Everything is read and decoded here; :meth:`check_case` measures the
        decoded segments. ``provenance["ct_volumes"]`` keeps each CT as read
        (its instance headers and files), so corrections reference the CT
        without scanning its folder again.

        :raises DataError: naming the file, if the CT or SEG cannot be read.
        """
        from ..formats.dicom_seg import decode_seg

        data = CaseData(case=case)
        pairs = self.pair_segmentations(case)
        ct_uids = list(case.ct_series)
        if not ct_uids:
            raise DataError(case.patient_folders[0], f"case {case.case_id} has no CT series")
        volumes: Dict[str, DicomVolume] = {}
        for index, uid in enumerate(ct_uids):
            volumes[uid] = self._read_ct(case, uid, sub_progress(progress, 0.5 * index / len(ct_uids),
                                                                 0.5 * (index + 1) / len(ct_uids)), data)
        ai_pairs, unpaired = self.pair_ai_segmentations(case)
        data.findings.extend(unpaired)
        every_pair = [*pairs, *ai_pairs]  # the expert SEG first: its measurements are the case's metrics
        decoded: List[Tuple["DecodedSegmentation", str]] = []
        for index, (seg_path, uid) in enumerate(every_pair):
            part = sub_progress(progress, 0.5 + 0.3 * index / len(every_pair),
                                0.5 + 0.3 * (index + 1) / len(every_pair))
            try:
                data.findings.extend(_identity_check(case, seg_path, volumes[uid]))
                decoded.append((decode_seg(seg_path, volumes[uid], case.case_id, part), uid))
            except DataError as error:
                if not case.seg(seg_path).is_ai:
                    raise  # the collection's own annotation: all or nothing
                # A damaged AI SEG (e.g. a partial download) must not keep the expert annotation from review.
                data.findings.append(Finding(WARNING, "crlm.ai_segmentation_unreadable",
                                             f"{error}; this AI segmentation was not loaded",
                                             case_id=case.case_id, path=str(seg_path)))
        report(progress, f"Arranging {case.case_id}", 0.85)
        for uid, volume in volumes.items():
            first = volume.instances[0]
            data.volumes.append(VolumeData(
                uid, f"{case.case_id} CT", volume.voxels, volume.ijk_to_ras, _study_placement(case, first),
                ABDOMEN_WINDOWS,
                {"case_id": case.case_id, "SeriesInstanceUID": uid, "crlm.ct_folder": str(first.path.parent)},
                # The loaded case keeps its data (and the CT for corrections): one copy of the voxels, not two.
                share_memory=True))
        read_segmentations: List[_ReadSegmentation] = []
        names = segmentation_names(case, [case.seg(result.path) for result, _ in decoded])
        for (result, uid), name in zip(decoded, names):
            segmentation, segment_ids = _segmentation_data(case, result, volumes[uid], name, case.seg(result.path))
            data.segmentations.append(segmentation)
            read_segmentations.append(_ReadSegmentation(result, uid, segment_ids, segmentation.name))
            data.findings.extend(_with_node(finding, segmentation.name) for finding in result.findings)
            if case.seg(result.path).is_ai:
                data.findings.append(Finding(
                    INFO, "crlm.ai_segmentation",
                    f"{result.path.name}: AI segmentation ({_series_label(case.seg(result.path), result)}) "
                    f"loaded as {name!r} beside the collection's SEG", case_id=case.case_id, path=str(result.path),
                    node_name=name))
        if not pairs:
            data.findings.append(Finding(
                WARNING, "crlm.no_segmentation",
                f"{case.case_id}: no original DICOM SEG found; "
                + ("only AI segmentations were loaded" if ai_pairs else "only the CT was loaded"),
                case_id=case.case_id, path=str(case.patient_folders[0])))
        for problem in case.problems:
            data.findings.append(Finding(WARNING, "crlm.unreadable_file", problem, case_id=case.case_id))
        self._read_clinical(case, _study_placement(case, volumes[ct_uids[0]].instances[0]), data)
        data.display.background = ct_uids[0]
        data.provenance["ct_volumes"] = volumes
        data.provenance["segmentations"] = read_segmentations
        report(progress, f"Read {case.case_id}", 1.0)
        return data

    def _read_ct(self, case: CrlmCase, uid: str, progress: Optional[ProgressCallback],
                 data: Optional[CaseData] = None) -> DicomVolume:
        """Stack a CT series; unreadable or unplaceable files are left out and reported in ``data``."""
        instances: List[InstanceHeader] = []
        errors: List[DataError] = []
        for folder in case.ct_series[uid]:
            scan = scan_folder(Path(folder))
            instances.extend(instance for instance in scan.instances if instance.series_instance_uid == uid)
            errors.extend(scan.errors)  # (a folder holding several series is a layout, not a problem)
        stackable, left_out = split_stackable(instances)
        errors.extend(left_out)
        if not stackable:
            detail = f" ({errors[0]})" if errors else ""
            raise DataError(case.ct_series[uid][0], f"holds no readable slice of CT series {uid}{detail}")
        volume = read_series(stackable, progress)
        if data is not None:
            for error in errors:
                data.findings.append(Finding(WARNING, "crlm.ct_file_left_out", f"{error}; not in the CT volume",
                                             case_id=case.case_id, path=error.path))
            for problem in volume.problems():
                data.findings.append(Finding(WARNING, "crlm.ct_stack", f"{case.case_id} CT: {problem}",
                                             case_id=case.case_id, path=str(stackable[0].path.parent)))
        return volume

    # ------------------------------------------------------------------ checks
    def check_case(self, data: CaseData) -> List[Finding]:
        """Per SEG: empty segments, tumour voxels outside the liver, unexpected segment lists and a summary;
        the measurements (volumes, tumour count...) also go to ``data.metrics``."""
        findings: List[Finding] = []
        ct_volumes: Dict[str, DicomVolume] = data.provenance.get("ct_volumes", {})
        for read in data.provenance.get("segmentations", []):
            findings.extend(_quality(data, read, ct_volumes[read.ct_uid].ijk_to_ras))
        _expert_ai_agreement(data, ct_volumes)
        return findings

    # ------------------------------------------------------------------ clinical
    def _clinical(self) -> _Clinical:
        if self._clinical_cache is None:
            path = _find_clinical(self.root)
            table, notes, error = None, [], None
            if path is not None:
                try:
                    table, notes = read_clinical_table(path)
                except DataError as problem:
                    error = str(problem)
            self._clinical_cache = _Clinical(path, table, notes, error)
        return self._clinical_cache

    def _read_clinical(self, case: CrlmCase, study: Placement, data: CaseData) -> None:
        """The whole clinical sheet (one node for the collection) and the case's row, or findings saying why not."""
        clinical = self._clinical()
        path, table = clinical.path, clinical.table
        if clinical.error is not None:
            data.findings.append(Finding(WARNING, "crlm.clinical_unreadable", clinical.error, case_id=case.case_id,
                                         path=str(path)))
            return
        if path is None or table is None:
            data.findings.append(Finding(
                INFO, "crlm.no_clinical_data",
                f"no clinical workbook (Colorectal-Liver-Metastases-Clinical-data-April-2023.xlsx) in {self.root}",
                case_id=case.case_id))
            return
        for note in clinical.notes:
            data.findings.append(Finding(WARNING, "crlm.clinical_sheet", f"{path}: {note}",
                                         case_id=case.case_id, path=str(path)))
        data.tables.append(TableData("clinical", f"{self.title} clinical data", table,
                                     Placement(folders=(f"{self.title} clinical data",)),
                                     {"crlm.clinical_source": str(path)}, shared_key=f"crlm.clinical:{path}"))
        rows = find_clinical_row(table, case.case_id)
        if rows.empty:
            data.findings.append(Finding(
                WARNING, "crlm.no_clinical_row",
                f"{path.name}: sheet {CLINICAL_SHEET} has no row for {case.case_id}",
                case_id=case.case_id, path=str(path)))
            return
        if len(rows) > 1:
            data.findings.append(Finding(
                WARNING, "crlm.duplicate_clinical_rows",
                f"{path.name}: {len(rows)} rows for {case.case_id}; all are shown",
                case_id=case.case_id, path=str(path)))
        data.tables.append(TableData("clinical row", f"{case.case_id} clinical data", rows.reset_index(drop=True),
                                     study, {"case_id": case.case_id, "crlm.clinical_source": str(path)}))

    # ------------------------------------------------------------------ corrections
    def save_corrections(self, loaded: LoadedCase, scene: Any, output_folder: Path,
                         progress: Optional[ProgressCallback] = None) -> List[Path]:
        """Each segmentation node of the case, as edited, as a DICOM SEG: ``<out>/<case_id>/<node name>.dcm``.

        The SEG references the CT the node was loaded on -- the CT as read at
        load (``provenance["ct_volumes"]``), so its folder is not scanned
        again -- and keeps the segments' names, codes and colours (see
        :func:`export_segmentation`); decoding it on that CT gives the edited
        masks. Node names are made safe file names; every name is checked
        before the first file is written.

        :raises DataError: if the folder is refused (inside the collection, or a
            target is a source file), the case has no segmentation left in the
            scene, or a node's CT is gone.
        """
        case = loaded.case
        plan = self.plan_segmentation_files(loaded, scene, output_folder, lambda node: node.GetName())
        provenance = loaded.data.provenance if loaded.data is not None else {}
        ct_volumes: Dict[str, DicomVolume] = provenance.get("ct_volumes", {})
        descriptions = {str(seg.path): seg.series_description for seg in getattr(case, "segs", [])}
        written = []
        for index, (node, target) in enumerate(plan):
            report(progress, f"Writing {target.name}", index / len(plan))
            reference = ct_volumes.get(node.GetAttribute(ATTRIBUTE_PREFIX + "crlm.ct_series_uid") or "")
            description = _corrected_description(node, descriptions)
            try:
                written.append(export_segmentation(node, target, reference=reference,
                                                   series_description=description))
            except ValueError as error:  # a segment no longer on the CT grid
                raise DataError(target, f"{node.GetName()}: {error}") from error
        report(progress, f"Saved {len(written)} SEG file(s) of {case.case_id}", 1.0)
        return written


# ---------------------------------------------------------------------------------------------- segmentations
def _series_label(seg: SegFile, result: Optional["DecodedSegmentation"] = None) -> str:
    """What a SEG series calls itself: SeriesDescription, else its segments' algorithm, else its content creator."""
    algorithms = [segment.algorithm_name for segment in (result.segments if result is not None else [])
                  if segment.algorithm_name]
    return (seg.series_description.strip() or (algorithms[0] if algorithms else "")
            or seg.content_creator_name.strip() or ("AI segmentation" if seg.is_ai else "segmentation"))


def segmentation_names(case: CrlmCase, segs: Sequence[SegFile]) -> List[str]:
    """Node names for a case's SEGs, in order, all distinct.

    The collection's own SEG keeps the name it always had, ``<case> segmentation``
    (with the end of its series UID when a case has several); each AI or
    corrected SEG is named from its series, ``<case> <SeriesDescription>``
    (or its algorithm or content creator), so a reviewer tells them apart.
    """
    experts = [seg for seg in segs if not seg.is_ai]
    names: List[str] = []
    for seg in segs:
        if not seg.is_ai:
            name = f"{case.case_id} segmentation" + (f" {seg.series_instance_uid[-6:]}" if len(experts) > 1 else "")
        else:
            name = f"{case.case_id} {_series_label(seg)}"
        if name in names:
            name = f"{name} {seg.series_instance_uid[-6:]}"
        names.append(name)
    return names


def _segmentation_data(case: CrlmCase, result: "DecodedSegmentation", volume: DicomVolume, node_name: str,
                       seg: SegFile) -> Tuple[SegmentationData, Dict[int, str]]:
    """The segmentation of a decoded SEG (canonical names, SEG or default colours) and SEG number -> segment ID."""
    from ..formats.dicom_seg import segment_tags, terminology_entry

    specs = []
    segment_ids: Dict[int, str] = {}
    tumour_index = 0
    uncoloured_tumours = sum(1 for segment in result.segments if not segment.is_background
                             and segment.color is None and structure_kind(segment.label) == "tumour")
    # Tumours without a recommended colour get distinct colours (no repeats up to 40), kept apart from the anatomy.
    tumour_colors = distinct_colors(uncoloured_tumours, avoid=DEFAULT_COLORS.values())
    for segment in result.segments:
        if segment.is_background:
            continue
        name = canonical_segment_name(segment.label)
        kind = structure_kind(segment.label)
        if segment.color is not None:
            color = segment.color
        elif kind == "tumour":
            color = tumour_colors[tumour_index]
            tumour_index += 1
        else:
            color = DEFAULT_COLORS.get(kind, DEFAULT_COLORS["other"])
        segment_id = name
        suffix = 2
        while segment_id in segment_ids.values():
            segment_id = f"{name}_{suffix}"
            suffix += 1
        segment_ids[segment.number] = segment_id
        tags = segment_tags(segment)
        tags["CRLM.Structure"] = kind
        specs.append(SegmentSpec(
            name=name, color=color, mask=segment.box, offset=segment.offset, segment_id=segment_id,
            terminology=terminology_entry(segment.category, segment.type, segment.type_modifier,
                                          segment.anatomic_region) or None,
            tags=tags,
        ))
    first = volume.instances[0]
    segmentation = SegmentationData(
        f"seg/{result.series_instance_uid}", node_name, volume.series_instance_uid, specs,
        _study_placement(case, first),
        {"case_id": case.case_id, "SeriesInstanceUID": result.series_instance_uid, "crlm.seg_path": str(result.path),
         "crlm.ct_folder": str(first.path.parent), "crlm.ct_series_uid": volume.series_instance_uid,
         "crlm.seg_role": "ai" if seg.is_ai else "expert", "crlm.seg_description": seg.series_description})
    return segmentation, segment_ids


def _quality(data: CaseData, read: _ReadSegmentation, ijk_to_ras: np.ndarray) -> List[Finding]:
    """Volumes, tumour count, tumour voxels outside the liver, empty segments of one SEG; metrics into ``data``.

    The tumour count is the number of tumour segments holding voxels: a
    Tumor_n segment without any is reported (``crlm.empty_segment``), not counted.
    """
    result, segment_ids, node_name = read.decoded, read.segment_ids, read.node_name
    case_id = data.case.case_id
    findings: List[Finding] = []
    voxel_cm3 = abs(float(np.linalg.det(ijk_to_ras[:3, :3]))) / 1000.0
    segments = [segment for segment in result.segments if not segment.is_background]
    volumes = {segment_ids[s.number]: round(s.voxel_count * voxel_cm3, 4) for s in segments}
    kinds = {s.number: structure_kind(s.label) for s in segments}
    # A tumour segment without voxels is not a tumour: counted apart, and said so in its finding.
    tumour_segments = [s for s in segments if kinds[s.number] == "tumour"]
    tumours = [s for s in tumour_segments if not s.is_empty]
    empty_tumours = [segment_ids[s.number] for s in tumour_segments if s.is_empty]
    livers = [s for s in segments if kinds[s.number] == "liver"]
    empty = [segment_ids[s.number] for s in segments if s.is_empty]
    outside_by_segment: Dict[str, int] = {}
    for segment in segments:
        if segment.is_empty:
            counted = "; not counted as a tumour" if kinds[segment.number] == "tumour" else ""
            findings.append(Finding(
                WARNING, "crlm.empty_segment",
                f"{result.path.name}: segment {segment.number} {segment.label!r} has no voxels{counted}",
                case_id=case_id, path=str(result.path), node_name=node_name,
                segment_id=segment_ids[segment.number], value=0.0))
    if not livers:
        findings.append(Finding(
            WARNING, "crlm.no_liver_segment",
            f"{result.path.name}: no segment is labelled Liver; tumour containment not checked",
            case_id=case_id, path=str(result.path), node_name=node_name))
    else:
        liver = livers[0]
        for tumour in tumours:
            outside, centre = _outside(tumour, liver)
            outside_by_segment[segment_ids[tumour.number]] = outside
            if outside:
                ras = tuple(float(v) for v in apply_matrix(ijk_to_ras, centre[::-1]))
                findings.append(Finding(
                    WARNING, "crlm.tumour_outside_liver",
                    f"{result.path.name}: {outside} voxel(s) of {tumour.label!r} "
                    f"({outside * voxel_cm3:.3g} cm³) lie outside {liver.label!r}",
                    case_id=case_id, path=str(result.path), node_name=node_name,
                    segment_id=segment_ids[tumour.number], ras=ras, value=float(outside)))  # type: ignore[arg-type]
    expected = ["liver", "remnant", "hepatic", "portal"]
    found = [kinds[s.number] for s in segments[:4]]
    if found != expected[: len(found)] or not tumour_segments:
        findings.append(Finding(
            INFO, "crlm.unexpected_segments",
            f"{result.path.name}: segments are {[s.label for s in segments]}; the collection's SEGs hold "
            "Liver, Liver Remnant, Hepatic, Portal and one or more Tumor_n",
            case_id=case_id, path=str(result.path), node_name=node_name))
    liver_volume = volumes.get(segment_ids[livers[0].number]) if livers else None
    findings.append(Finding(
        INFO, "crlm.summary",
        f"{result.path.name}: {len(segments)} segments, {len(tumours)} tumour(s)"
        + (f" ({len(empty_tumours)} empty tumour segment(s) not counted: {', '.join(empty_tumours)})"
           if empty_tumours else "")
        + (f", liver {liver_volume:.1f} cm³" if liver_volume is not None else ""),
        case_id=case_id, path=str(result.path), node_name=node_name, value=float(len(tumours))))
    metrics = {
        "seg_path": str(result.path),
        "segment_count": len(segments),
        "segment_ids": dict(segment_ids),
        "segment_volumes_cm3": volumes,
        "tumour_count": len(tumours),
        "empty_tumour_segments": empty_tumours,
        "tumour_voxels_outside_liver": int(sum(outside_by_segment.values())),
        "tumour_voxels_outside_liver_by_segment": outside_by_segment,
        "empty_segments": empty,
        "frames_referencing_missing_instances": len(result.frames_referencing_missing_instances),
        "unplaced_frames": len(result.unplaced_frames),
        "geometry_mismatch": bool(result.geometry_mismatches),
        "geometry_mismatches": list(result.geometry_mismatches),
    }
    if "per_segmentation" not in data.metrics:
        data.metrics.update(metrics)
    data.metrics.setdefault("per_segmentation", {})[node_name] = metrics
    return findings


def _expert_ai_agreement(data: CaseData, ct_volumes: Dict[str, DicomVolume]) -> None:
    """Compare each AI SEG with the expert SEG on its CT (structures matched by codes, see
    :mod:`..formats.seg_agreement`): rows into ``data.metrics["seg_agreement"]``, one table per AI SEG."""
    import pandas as pd

    from ..formats.seg_agreement import CASE_AGREEMENT_COLUMNS, compare_segmentations

    case = data.case
    reads: List[_ReadSegmentation] = data.provenance.get("segmentations", [])
    experts = [read for read in reads if not case.seg(read.decoded.path).is_ai]
    for read in reads:
        seg = case.seg(read.decoded.path)
        expert = next((other for other in experts if other.ct_uid == read.ct_uid), None)
        if not seg.is_ai or expert is None:
            continue
        agreement = compare_segmentations(expert.decoded, read.decoded, ct_volumes[read.ct_uid].ijk_to_ras)
        rows = [{"reference": expert.node_name, "test": read.node_name, "test_description": seg.series_description,
                 **row.to_dict()} for row in agreement.rows]
        data.metrics.setdefault("seg_agreement", []).extend(rows)
        data.tables.append(TableData(
            f"seg agreement/{read.decoded.series_instance_uid}", f"{read.node_name} vs expert agreement",
            pd.DataFrame(rows, columns=CASE_AGREEMENT_COLUMNS),
            _study_placement(case, ct_volumes[read.ct_uid].instances[0]),
            {"case_id": case.case_id, "crlm.seg_agreement_reference": expert.node_name,
             "crlm.seg_agreement_test": read.node_name}))


# ---------------------------------------------------------------------------------------------- helpers
def _subfolders(folder: Path) -> List[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(folder) if is_dir_entry(entry, follow_symlinks=False)]
    except OSError:
        return []


def _study_name(instance: InstanceHeader) -> str:
    parts = [instance.study_description or "Study"]
    if instance.study_date:
        parts.append(instance.study_date)
    return " ".join(parts)


def _study_placement(case: CrlmCase, instance: InstanceHeader) -> Placement:
    """Patient (the case ID) / the study of ``instance``, by DICOM UIDs."""
    return Placement(case.case_id, case.case_id, instance.study_instance_uid, _study_name(instance))


def _with_node(finding: Finding, node_name: str) -> Finding:
    return Finding(finding.severity, finding.check, finding.message, finding.case_id, finding.path, node_name,
                   finding.segment_id, finding.ras, finding.value)


def _outside(tumour: "DecodedSegment", liver: "DecodedSegment") -> Tuple[int, np.ndarray]:
    """Voxels of ``tumour`` not in ``liver``, and their centroid (k, j, i)."""
    if tumour.is_empty:
        return 0, np.zeros(3)
    inside = np.zeros(tumour.box.shape, dtype=bool)
    low = np.maximum(tumour.offset, liver.offset)
    high = np.minimum(np.add(tumour.offset, tumour.box.shape), np.add(liver.offset, liver.box.shape))
    if np.all(high > low):
        t = tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(low, high, tumour.offset))
        l_ = tuple(slice(int(a - o), int(b - o)) for a, b, o in zip(low, high, liver.offset))
        inside[t] = liver.box[l_]
    outside = tumour.box & ~inside
    count = int(np.count_nonzero(outside))
    if not count:
        return 0, np.zeros(3)
    return count, np.argwhere(outside).mean(axis=0) + np.asarray(tumour.offset)


def export_segmentation(segmentation_node: Any, path: Path, reference: Optional[DicomVolume] = None,
                        **options: Any) -> Path:
    """Write a (possibly edited) CRLM segmentation node back as a DICOM SEG.

    :param reference: the CT the node was loaded on, as read at load; without
        it, the CT is read again from the folder recorded on the node, so the
        SEG references the CT's own instances either way. ``options`` go to
        :func:`~..formats.dicom_seg.write_seg`.
    :raises DataError: if the node does not come from a CRLM load or its CT is gone.
    """
    from ..scene.segment_export import export_segmentation_node

    if reference is None:
        folder = segmentation_node.GetAttribute(ATTRIBUTE_PREFIX + "crlm.ct_folder")
        uid = segmentation_node.GetAttribute(ATTRIBUTE_PREFIX + "crlm.ct_series_uid")
        if not folder or not uid:
            raise DataError(segmentation_node.GetName(), "was not loaded from a CRLM case (no CT folder recorded)")
        scan = scan_folder(Path(folder))
        instances = [instance for instance in scan.instances if instance.series_instance_uid == uid]
        if not instances:
            raise DataError(folder, f"no longer holds CT series {uid}")
        reference = read_series(instances)
    return export_segmentation_node(segmentation_node, reference, Path(path), **options)


def _corrected_description(segmentation_node: Any, known: Optional[Dict[str, str]] = None) -> str:
    """The source SEG's SeriesDescription with "(corrected)" added, within DICOM's 64 characters.

    :param known: SEG path -> SeriesDescription read while discovering; the
        source SEG's header is read again only for a node not in it.
    """
    from ..formats.dicom_seg import read_seg_header

    source = segmentation_node.GetAttribute(ATTRIBUTE_PREFIX + "crlm.seg_path")
    description = "Segmentation"
    if source and known and known.get(source):
        description = known[source]
    elif source:
        try:
            description = read_seg_header(Path(source)).series_description or description
        except DataError:
            pass  # the source SEG is not needed to write the correction
    return f"{description[:52]} (corrected)"


COLLECTIONS = [CrlmCollection]


def _identity_check(case: CrlmCase, seg_path: Path, volume: DicomVolume) -> List[Finding]:
    """Findings where a SEG's PatientID / Study / FrameOfReference differ from its CT's.

    Geometry alone does not catch another patient's SEG whose series reference
    was rewritten: it would be drawn, plausibly, on this patient's CT. Another
    frame of reference is reported (an error finding) and the frames are still
    placed by their positions, as the geometry checks report them.

    :raises DataError: naming the SEG, if it belongs to another patient.
    """
    from ..formats.dicom_seg import read_seg_header
    from ..formats.identity import CHECK_PATIENT, identity_findings

    images = [instance for instance in volume.instances if getattr(instance, "patient_id", None) is not None][:1]
    findings = identity_findings(read_seg_header(seg_path), images, seg_path, case.case_id)
    errors = [finding for finding in findings if finding.severity == ERROR and finding.check == CHECK_PATIENT]
    if errors:
        raise DataError(seg_path, f"{errors[0].message.split(': ', 1)[-1]}; it is not drawn on CT series "
                                  f"{volume.series_instance_uid}")
    return findings
