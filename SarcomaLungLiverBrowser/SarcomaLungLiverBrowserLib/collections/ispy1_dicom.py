"""ISPY1 (I-SPY 1 / ACRIN 6657) in DICOM, as IDC and NBIA serve it: DCE-MRI series and the vendor SEGs.

The NIfTI ISPY1-Tumor-SEG-Radiomics tree (:mod:`.ispy1`) was derived from
this collection; users of Imaging Data Commons have this form. Facts used
(``shared/notes/idc_tables.md`` "Collection ispy1" and the ``idc_index``
table of ``idc-index-data`` 25.0.5, queried for ISPY1_1001, ISPY1_1002,
ISPY1_1007 and ISPY1_1060):

* 222 patients ``ISPY1_1001``..; up to four MR studies (visits) each;
* the DCE acquisition is one series holding every phase at the same slice
  positions (GE ``Dynamic-3dfgre``, 180 = 3 x 60 instances; Philips
  ``... 6DYN``, 420 = 6 x 70), or one series per phase with the same
  SeriesDescription (Siemens ``Penn-HighRisk/T1_3D_SE_SAG``, series 3, 4, 5);
* vendor CAD maps of it, ``<DCE description>: SER`` and ``: PE1`` / ``: PE2``
  (SeriesNumber n1000, n1001 / n1002), and four single-instance SEG series
  per study: ``PE Segmentation thresh=<70|90|100|140>`` (n2000),
  ``Breast Tissue Segmentation`` (n2001) and their ``VOI ...`` variants
  (n2100, n2101), Manufacturer the scanner's vendor.

Not known here (no ISPY1 file could be downloaded): which series a SEG
references (the DCE series or a map; both are handled, by the SEG's
ReferencedSeriesSequence and its frames' source images), the SEGs' segment
labels and codes, and which header attribute orders the phases of a
multi-phase series (:func:`split_phases` tries them in turn and says which it
used).

How the case loads: the patient is the case; each study with a DCE series
(or a series a SEG references) is a subject-hierarchy study holding the
DCE phases as volumes (``<case> <date> <SeriesDescription> phase 1
(pre-contrast)``; by the I-SPY 1 protocol the first phase is the
pre-contrast scan), the SER / PE maps, and every SEG as a segmentation on
the series it references. Localisers, T2 and diffusion series are not loaded.

QA, as for the NIfTI form: segment volumes, empty segments, segment voxels
in the image background, frames outside the image (the SEG decoder), the
SEG's identity against its images (another patient's SEG is refused and not
drawn; another frame of reference is an error finding), and -- when the
NIfTI tree of the same patient lies in the chosen folder or beside it --
Dice between each ``PE Segmentation`` SEG of the baseline (first) study and
the NIfTI FTV mask, which the publisher derived from the same enhancement
threshold.

Layouts: cases are found by their DICOM headers (:func:`find_patient_series`,
through :mod:`..formats.dicom_inventory`), whatever the folders are named or
nested: IDC (``ispy1/ISPY1_1001/<StudyUID>/<Modality>_<SeriesUID>/<uuid>.dcm``),
NBIA (``manifest-*/ISPY1/ISPY1_1001/<date-study>/<n.000000-description-xxxxx>/1-001.dcm``),
IDC's flat download (every file in one folder), folders named by
SeriesInstanceUID or any s5cmd / idc-index directory template. Folder names
are only a cheap detection hint, and name a case only when its PatientID is
not an ISPY1 ID (an anonymised re-export kept in ISPY1 patient folders).
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..case_data import ATTRIBUTE_PREFIX, CaseData, LoadedCase, Placement, SegmentationData, SegmentSpec, VolumeData
from ..errors import DataError
from ..findings import ERROR, INFO, WARNING, Finding
from ..formats.dicom_inventory import (
    SEG_SOP_CLASS_UIDS,
    DicomInventory,
    canonical_id,
    patient_key,
    inventory_or_empty,
    stray_series_problems,
)
from ..formats.dicom_series import DicomVolume, InstanceHeader, read_series, split_stackable
from ..formats.folders import is_dir_entry
from ..geometry import apply_matrix
from ..progress import ProgressCallback, report, sub_progress
from .base import CaseRecord, Collection
# A segment's share in the image background is judged as for the NIfTI form of the same masks.
from .ispy1 import BACKGROUND_WARNING_FRACTION

if TYPE_CHECKING:  # highdicom (via dicom_seg) loads where a case is read, so detection stays light
    from ..formats.dicom_seg import DecodedSegmentation, SegHeader

__all__ = [
    "Ispy1DicomCollection",
    "Ispy1DicomCase",
    "ImageSeries",
    "SegSeries",
    "PatientSeries",
    "COLLECTIONS",
    "find_patient_series",
    "ispy1_case_id",
    "split_phases",
    "phase_label",
    "is_tumour_segmentation",
    "display_date",
    "DICE_WARNING_BELOW",
]

#: Collection folder names: IDC's collection_id and NBIA's collection folder (compared case-insensitively).
COLLECTION_FOLDER_NAMES = ("ispy1",)
#: Folder names of ISPY1 patients in NBIA's and IDC's layouts (a cheap detection hint only).
PATIENT_FOLDER = re.compile(r"^ISPY1_\d{3,5}$", re.IGNORECASE)
#: What an ISPY1 PatientID looks like in the headers, spelled any way (``ISPY1_1001``, ``ispy1-1001``).
PATIENT_ID = re.compile(r"^ISPY1[-_ ]?(?P<number>\d{1,6})$", re.IGNORECASE)
#: The vendor CAD maps of a DCE series: "<DCE description>: SER", ": PE1", ": PE2".
MAP_DESCRIPTION = re.compile(r"^(?P<source>.*?)\s*:\s*(?P<map>SER|PE\d)\s*$", re.IGNORECASE)
#: DCE acquisitions named in studies without vendor maps (GE 3dfgre, Siemens fl3d / T1_3D, IR-SPGR, VIBE,
#: Philips 6DYN), subtractions excluded; from the MR SeriesDescriptions of ``ispy1`` in ``idc_index``.
DCE_DESCRIPTION = re.compile(r"dyn|3dfgre|fl3d|spgr|vibe|t1[-_ ]?3d", re.IGNORECASE)
SUBTRACTION_DESCRIPTION = re.compile(r"sub", re.IGNORECASE)
#: The SEGs that segment enhancing tumour (compared with the NIfTI FTV mask).
TUMOUR_SEG_DESCRIPTION = re.compile(r"\bPE\s+Segmentation\b", re.IGNORECASE)
#: Dice with the NIfTI FTV below this is a warning (the two forms should hold the same mask).
DICE_WARNING_BELOW = 0.95

_TUMOUR_COLOR = (0.90, 0.20, 0.20)
_TISSUE_COLOR = (0.95, 0.80, 0.70)
_OTHER_COLOR = (0.60, 0.60, 0.90)

#: Header attributes that can order the phases of a multi-phase series, most specific first.
PHASE_ORDER_KEYWORDS = ("TemporalPositionIdentifier", "TriggerTime", "AcquisitionTime", "AcquisitionNumber",
                        "InstanceNumber")


# ---------------------------------------------------------------------------------------------- records
@dataclass
class ImageSeries:
    """An image series of a case as one of its headers describes it (pixels are not read while discovering)."""

    series_instance_uid: str
    modality: str
    description: str
    series_number: Optional[int]
    study_instance_uid: str
    study_date: str
    study_description: str
    folders: List[Path] = field(default_factory=list)
    #: The series' files' headers, as discovery read them (sorted by path).
    instances: List[InstanceHeader] = field(default_factory=list, compare=False, repr=False)

    @property
    def map_source(self) -> Optional[str]:
        """The DCE description this vendor map (``X: SER``, ``X: PE1``) was computed from, or None."""
        match = MAP_DESCRIPTION.match(self.description)
        return match.group("source").strip() if match else None


@dataclass
class SegSeries:
    """A SEG file of a case, from its header (frames are not read while discovering)."""

    path: Path
    series_instance_uid: str
    description: str
    series_number: Optional[int]
    study_instance_uid: str
    patient_id: str
    referenced_series_uids: List[str] = field(default_factory=list)
    segment_labels: List[str] = field(default_factory=list)


@dataclass
class PatientSeries:
    """What :func:`find_patient_series` found for one patient.

    :param folders: where the patient lies (see :func:`_location`).
    :param layouts: how its series are laid out (:meth:`.DicomInventory.layout_of`), for the case table.
    :param spellings: PatientIDs of the patient spelled otherwise than the case ID -> their files.
    """

    folders: List[Path] = field(default_factory=list)
    images: List[ImageSeries] = field(default_factory=list)
    segs: List[SegSeries] = field(default_factory=list)
    layouts: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    spellings: Dict[str, List[Path]] = field(default_factory=dict)


@dataclass
class Ispy1DicomCase(CaseRecord):
    """One ISPY1 patient in DICOM: its image series, its SEGs and, if present, its NIfTI FTV mask.

    :param patient_folders: where the patient lies: its patient folder, or the largest folders holding its
        files and no other patient's (a flat download: the folder itself).
    :param images: the image series (MR, and any other a SEG references).
    :param segs: every SEG file found.
    :param nifti_ftv: the patient's ``masks_ftv`` file of the NIfTI tree, when found.
    :param patient_id_spellings: PatientIDs spelled otherwise than the case ID -> their files (a warning).
    """

    patient_folders: List[Path] = field(default_factory=list)
    images: List[ImageSeries] = field(default_factory=list)
    segs: List[SegSeries] = field(default_factory=list)
    nifti_ftv: Optional[Path] = None
    patient_id_spellings: Dict[str, List[Path]] = field(default_factory=dict)

    def location(self) -> Optional[Path]:
        return self.patient_folders[0] if self.patient_folders else None

    def image(self, series_instance_uid: str) -> Optional[ImageSeries]:
        """The image series with this UID, or None."""
        return next((series for series in self.images if series.series_instance_uid == series_instance_uid), None)


# ---------------------------------------------------------------------------------------------- discovery
def _subfolders(folder: Path) -> List[Path]:
    try:
        return sorted(Path(entry.path) for entry in os.scandir(folder)
                      if is_dir_entry(entry) and not entry.name.startswith((".", "_")))
    except OSError:
        return []


def ispy1_case_id(patient_id: str) -> Optional[str]:
    """``ISPY1_1001`` for a PatientID spelled like one (``ispy1_1001``, ``ISPY1-1001``, ``ISPY1 01001``: any
    case, separator, zero padding and DICOM padding), else None: one patient spelled differently is one case,
    as the collection spells it (its reader names the other spellings in a warning)."""
    return canonical_id(PATIENT_ID, patient_id, lambda match: f"ISPY1_{int(match.group('number')):04d}")


def _spelling_key(patient_id: str) -> str:
    """What identifies a patient when comparing an annotation's PatientID with its images' (identity checks)."""
    return ispy1_case_id(patient_id) or patient_key(patient_id)


def _is_seg(instance: InstanceHeader) -> bool:
    return instance.modality == "SEG" or instance.sop_class_uid in SEG_SOP_CLASS_UIDS


def _named_folder_case(inventory: DicomInventory, instances: Sequence[InstanceHeader]) -> Optional[str]:
    """The ISPY1 case a folder holding all of ``instances`` is named after (the nearest such folder, up to the
    root), or None: the case of a patient whose PatientID is not an ISPY1 ID (an anonymised or re-exported
    download kept in the collection's patient folders)."""
    named = set()
    for instance in instances:
        found = None
        for folder in instance.path.parents:
            found = ispy1_case_id(folder.name)
            if found is not None or folder == inventory.root:
                break
        named.add(found)
    return named.pop() if len(named) == 1 else None


def _case_ids(inventory: DicomInventory) -> Callable[[str], Optional[str]]:
    """PatientID -> case ID: the canonical ISPY1 ID, or for another PatientID the ISPY1 patient folder that
    holds all of that patient's files (a warning names it when the case is read); None for other patients."""
    by_folder: Dict[str, str] = {}
    for key, patient in inventory.patients.items():
        if key and ispy1_case_id(patient.patient_id) is None:
            named = _named_folder_case(inventory, patient.instances)
            if named is not None:
                by_folder[key] = named
    return lambda patient_id: ispy1_case_id(patient_id) or by_folder.get(patient_key(patient_id))


def _most_common(values: Sequence[str]) -> str:
    """The most frequent value (ties: the first in sorted order, so file order does not matter)."""
    counts: Dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return sorted(counts, key=lambda value: (-counts[value], value))[0] if counts else ""


def _image_series(instances: List[InstanceHeader]) -> ImageSeries:
    """An image series of a case from its instances' headers (the majority value where files disagree)."""
    instances = sorted(instances, key=lambda instance: str(instance.path))
    numbers = [instance.series_number for instance in instances if instance.series_number is not None]
    study_uid = _most_common([instance.study_instance_uid for instance in instances])
    in_study = [instance for instance in instances if instance.study_instance_uid == study_uid]
    return ImageSeries(instances[0].series_instance_uid,
                       _most_common([instance.modality for instance in instances]),
                       _most_common([instance.series_description.strip() for instance in instances]),
                       min(numbers) if numbers else None, study_uid,
                       _most_common([instance.study_date for instance in in_study]),
                       _most_common([instance.study_description for instance in in_study]),
                       sorted({instance.path.parent for instance in instances}), instances)


def _seg_series(instance: InstanceHeader, problems: List[str]) -> Optional[SegSeries]:
    """A SEG file's header (frames are not read), or None with a problem naming the file."""
    from ..formats.dicom_seg import read_seg_header

    try:
        seg = read_seg_header(instance.path)
    except DataError as error:
        problems.append(str(error))
        return None
    return SegSeries(instance.path, seg.series_instance_uid, seg.series_description, seg.series_number,
                     seg.study_instance_uid, seg.patient_id, list(seg.referenced_series_uids),
                     list(seg.segment_labels))


def _location(inventory: DicomInventory, case_id: str, instances: Sequence[InstanceHeader]) -> List[Path]:
    """Where a case lies, for the case table and messages: the folder named after the patient that holds all its
    files (NBIA's and IDC's patient folder), else the largest folders holding its files and no other patient's."""
    named = set()
    for instance in instances:
        named.add(next((folder for folder in instance.path.parents if ispy1_case_id(folder.name) == case_id
                        and (folder == inventory.root or inventory.root in folder.parents)), None))
    if len(named) == 1 and None not in named:
        return [named.pop()]
    return inventory.case_folders(instances)


def _spellings(case_id: str, instances: Sequence[InstanceHeader]) -> Dict[str, List[Path]]:
    """PatientID -> its files, for every spelling of the case's ISPY1 ID other than the case ID itself."""
    spelled: Dict[str, List[Path]] = {}
    for instance in instances:
        patient_id = instance.patient_id.strip(" \x00")
        if patient_id and patient_id != case_id and ispy1_case_id(patient_id) == case_id:
            spelled.setdefault(patient_id, []).append(instance.path)
    return {spelling: sorted(paths) for spelling, paths in sorted(spelled.items())}


def _assign_segs(inventory: DicomInventory, by_case: Dict[str, List[InstanceHeader]],
                 patients: Dict[str, PatientSeries]) -> None:
    """Every SEG of the inventory to the case whose image series it references, else to its own case.

    Every SEG is looked at, whatever its PatientID: another patient's SEG
    drawn on this patient's images belongs here, to be refused by name when
    the case is read. An unreadable SEG header is a problem of its own case.
    """
    case_of_series = {series.series_instance_uid: case_id for case_id, found in patients.items()
                      for series in found.images}
    case_of_file = {instance.path: case_id for case_id, instances in by_case.items() for instance in instances}
    for instance in (instance for instance in inventory.instances if _is_seg(instance)):
        own_case = case_of_file.get(instance.path)
        problems: List[str] = patients[own_case].problems if own_case is not None else []
        seg = _seg_series(instance, problems)
        if seg is None:
            continue
        owner = next((case_of_series[uid] for uid in seg.referenced_series_uids if uid in case_of_series), own_case)
        if owner is None:
            continue
        patients[owner].segs.append(seg)
        if owner != own_case:
            by_case.setdefault(owner, []).append(instance)


def _describe_case(inventory: DicomInventory, case_id: str, found: PatientSeries,
                   instances: Sequence[InstanceHeader]) -> None:
    """Fill in where a case lies, its layouts, spellings and problems, and sort its series (studies by date)."""
    own = [instance for instance in instances
           if not _is_seg(instance) or any(seg.path == instance.path for seg in found.segs)]
    found.folders = _location(inventory, case_id, own)
    found.spellings = _spellings(case_id, own)
    found.images.sort(key=lambda s: (s.study_date, s.study_instance_uid, s.series_number or 0,
                                     s.series_instance_uid))
    dates = {series.study_instance_uid: series.study_date for series in found.images}
    found.segs.sort(key=lambda s: (dates.get(s.study_instance_uid, "~"), s.study_instance_uid,
                                   s.series_number or 0, str(s.path)))
    series_entries = inventory.series_by_uid()
    for uid in [*(series.series_instance_uid for series in found.images),
                *(seg.series_instance_uid for seg in found.segs)]:
        layout = inventory.layout_of(series_entries[uid]) if uid in series_entries else "?"
        if layout not in found.layouts:
            found.layouts.append(layout)
    case_folders = inventory.case_folders(own)
    found.problems.extend(str(error) for error in inventory.errors
                          if any(folder in Path(error.path).parents for folder in case_folders))
    found.problems.extend(stray_series_problems(own))


def find_patient_series(root: Path, progress: Optional[ProgressCallback] = None) -> Dict[str, PatientSeries]:
    """Case ID (``ISPY1_1001``) -> the patient's image series and SEG files, below ``root``, by their headers.

    Every file's header is read once (:func:`.dicom_inventory.read_inventory`,
    with the persistent header cache) and grouped by PatientID, study, series,
    modality and SOP class, whatever the folders are named or nested (NBIA,
    idc-index, IDC's flat download, folders named by SeriesInstanceUID).
    PatientIDs spelled differently (``ispy1-1001``) are one case; a patient
    whose PatientID is not an ISPY1 ID is a case only when all its files lie in
    a folder named like an ISPY1 patient. A SEG belongs to the case whose
    series it references (so another patient's SEG drawn on this patient's
    images is refused by name when loading), else to its own PatientID's case.
    """
    inventory = inventory_or_empty(Path(root), progress)
    by_case = inventory.instances_by_case(_case_ids(inventory))
    patients: Dict[str, PatientSeries] = {}
    for case_id, instances in by_case.items():
        by_series: Dict[str, List[InstanceHeader]] = {}
        for instance in instances:
            if not _is_seg(instance):
                by_series.setdefault(instance.series_instance_uid, []).append(instance)
        patients[case_id] = PatientSeries(images=[_image_series(members) for members in by_series.values()])
    _assign_segs(inventory, by_case, patients)
    for case_id, instances in sorted(by_case.items()):
        found = patients[case_id]
        if not found.images and not found.segs and not found.problems:
            del patients[case_id]  # e.g. only a SEG that belongs, by its reference, to another case's images
            continue
        _describe_case(inventory, case_id, found, instances)
    return patients


def _nifti_ftv_masks(root: Path) -> Dict[str, Path]:
    """Case ID -> ``masks_ftv`` file of an ISPY1-Tumor-SEG-Radiomics tree in ``root`` or up to two levels above."""
    from .ispy1 import Ispy1Collection

    for candidate in dict.fromkeys((root, root.parent, root.parent.parent)):  # distinct, nearest first
        if Ispy1Collection.detect(candidate):
            cases = Ispy1Collection(candidate).discover_cases()
            return {case.case_id.upper(): Path(case.ftv) for case in cases if case.ftv}
    return {}


# ---------------------------------------------------------------------------------------------- phases
def phase_label(phase: int) -> str:
    """``pre-contrast`` for phase 1, ``post-contrast n`` after it (the I-SPY 1 DCE protocol)."""
    return "pre-contrast" if phase == 1 else f"post-contrast {phase - 1}"


def _phase_keys(instances: Sequence[InstanceHeader]) -> Dict[str, List[Optional[float]]]:
    """Each keyword of :data:`PHASE_ORDER_KEYWORDS` -> its value per instance (None where absent)."""
    import pydicom

    values: Dict[str, List[Optional[float]]] = {keyword: [] for keyword in PHASE_ORDER_KEYWORDS}
    for instance in instances:
        try:
            dataset = pydicom.dcmread(str(instance.path), stop_before_pixels=True,
                                      specific_tags=list(PHASE_ORDER_KEYWORDS))
        except Exception as error:  # pydicom raises many types for damaged files
            raise DataError(instance.path, f"its header cannot be read again ({type(error).__name__}: {error})") \
                from error
        for keyword in PHASE_ORDER_KEYWORDS:
            values[keyword].append(_as_number(dataset.get(keyword), keyword))
    return values


def _as_number(value: Any, keyword: str) -> Optional[float]:
    """A header value as a number (DICOM times ``HHMMSS.frac`` as seconds); None if absent or unreadable."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    try:
        if keyword == "AcquisitionTime":
            hours, minutes, seconds = int(text[0:2]), int(text[2:4] or 0), float(text[4:] or 0)
            return hours * 3600.0 + minutes * 60.0 + seconds
        return float(text)
    except ValueError:
        return None


def split_phases(instances: Sequence[InstanceHeader]) -> Tuple[List[List[InstanceHeader]], str]:
    """The phases of a series whose slice positions repeat (all DCE phases in one series).

    Instances are grouped by position along the slice normal; within each
    position they are ordered by the first attribute of
    :data:`PHASE_ORDER_KEYWORDS` that every instance has and that differs
    within every position. When that attribute takes exactly one value per
    phase (TemporalPositionIdentifier 1..n) the value decides the phase, so a
    slice missing from one phase leaves a gap in that phase only; otherwise
    the n-th image of each position is in phase n.

    :returns: the phases (one list per phase; a single list when no position
        repeats) and the attribute that ordered them ("" for one phase).
    :raises DataError: naming the series' folder, if no attribute orders the
        repeated positions.
    """
    if not instances:
        return [], ""
    orientation = np.asarray(instances[0].image_orientation, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions: Dict[float, List[int]] = {}
    for index, instance in enumerate(instances):
        distance = round(float(np.dot(instance.image_position, normal)), 2)  # type: ignore[arg-type]
        positions.setdefault(distance, []).append(index)
    depth = max(len(members) for members in positions.values())
    if depth == 1:
        return [list(instances)], ""
    keys = _phase_keys(instances)
    for keyword in PHASE_ORDER_KEYWORDS:
        values = keys[keyword]
        if any(value is None for value in values):
            continue
        if not all(len({values[i] for i in members}) == len(members) for members in positions.values()):
            continue
        phases: List[List[InstanceHeader]] = [[] for _ in range(depth)]
        distinct = sorted(set(values))  # type: ignore[type-var]
        if len(distinct) == depth:
            # One value per phase (e.g. TemporalPositionIdentifier): a slice missing from one phase
            # leaves a gap in that phase only.
            for index, value in enumerate(values):
                phases[distinct.index(value)].append(instances[index])
        else:
            # Values that vary within a phase too (per-slice times): the n-th of each position.
            for members in positions.values():
                for rank, index in enumerate(sorted(members, key=lambda i: values[i])):  # type: ignore[arg-type]
                    phases[rank].append(instances[index])
        return phases, keyword
    raise DataError(instances[0].path.parent, f"series {instances[0].series_instance_uid} holds {depth} images at "
                                              f"one slice position, and none of {', '.join(PHASE_ORDER_KEYWORDS)} "
                                              "tells its phases apart")


def display_date(study_date: str) -> str:
    """``1984-11-02`` for a DICOM date ``19841102`` (other text as it is)."""
    text = study_date.strip()
    return f"{text[0:4]}-{text[4:6]}-{text[6:8]}" if re.fullmatch(r"\d{8}", text) else text


def is_tumour_segmentation(description: str) -> bool:
    """True for the vendor's enhancing-tumour SEGs (``PE Segmentation thresh=N``, ``VOI PE Segmentation ...``)."""
    return TUMOUR_SEG_DESCRIPTION.search(description) is not None


# ---------------------------------------------------------------------------------------------- reading
@dataclass
class _ReadImage:
    """An image volume of the case: the DicomVolume, the instances of its other phases, its key."""

    key: str
    series: ImageSeries
    volume: DicomVolume
    phase: int = 0  # 0: not a DCE phase
    other_phase_instances: List[InstanceHeader] = field(default_factory=list)


@dataclass
class _ReadSeg:
    """A decoded SEG with what the checks need."""

    seg: SegSeries
    decoded: "DecodedSegmentation"
    image: _ReadImage
    node_name: str
    segment_ids: Dict[int, str]


def _finding(case_id: str, severity: str, check: str, message: str, **details: Any) -> Finding:
    path = details.pop("path", "")
    return Finding(severity, f"ispy1_dicom.{check}", message, case_id=case_id, path=str(path), **details)


class Ispy1DicomCollection(Collection):
    """ISPY1 as DICOM (IDC ``ispy1`` or NBIA ``ISPY1``): DCE-MRI phases, vendor maps and SEGs."""

    key = "ispy1_dicom"
    title = "ISPY1 DICOM (DCE-MRI and SEG, IDC / NBIA)"
    looks_for = ("PatientIDs ISPY1_nnnn in the DICOM headers, a folder named ispy1 or ISPY1 (IDC / NBIA download) "
                 "within two levels, or ISPY1_nnnn patient folders holding DICOM series folders")
    record_type = Ispy1DicomCase
    patient_id_patterns = ("ISPY1_nnnn",)

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._nifti_cache: Optional[Dict[str, Path]] = None

    @classmethod
    def detect(cls, root: Path) -> bool:
        """The collection's folder names (a cheap hint), else ISPY1 PatientIDs in the DICOM headers.

        The headers are read once per unchanged tree for every collection that
        looks (:func:`.dicom_inventory.read_inventory`), so a flat IDC download
        or folders named by SeriesInstanceUID are found without a second walk.
        """
        root = Path(root)
        if root.name.lower() in COLLECTION_FOLDER_NAMES:
            return True
        children = _subfolders(root)
        for child in children:
            if child.name.lower() in COLLECTION_FOLDER_NAMES or any(
                    grandchild.name.lower() in COLLECTION_FOLDER_NAMES for grandchild in _subfolders(child)):
                return True
        if PATIENT_FOLDER.match(root.name) and children:
            return True
        if any(PATIENT_FOLDER.match(child.name) and _subfolders(child) for child in children):
            return True
        return bool(inventory_or_empty(root).instances_by_case(ispy1_case_id))

    # ------------------------------------------------------------------ discovery
    def nifti_ftv_masks(self) -> Dict[str, Path]:
        """Case ID -> NIfTI FTV mask of the ISPY1-Tumor-SEG-Radiomics tree in or beside the root (read once)."""
        if self._nifti_cache is None:
            self._nifti_cache = _nifti_ftv_masks(self.root)
        return self._nifti_cache

    def discover_cases(self, progress: Optional[ProgressCallback] = None) -> List[Ispy1DicomCase]:
        """Every ISPY1 patient in the DICOM headers below the root (:func:`find_patient_series`)."""
        report(progress, "Reading DICOM headers", 0.0)
        patients = find_patient_series(self.root, sub_progress(progress, 0.0, 0.9))
        nifti = self.nifti_ftv_masks()
        cases = []
        for case_id, found in sorted(patients.items()):
            studies = {series.study_instance_uid for series in found.images}
            summary: Dict[str, Any] = {
                "layout": "+".join(found.layouts) or "?",
                "studies": len(studies),
                "MR series": sum(1 for series in found.images if series.modality == "MR"),
                "SEG": len(found.segs),
                "NIfTI FTV": "yes" if case_id in nifti else "no",
            }
            if found.problems:
                summary["problems"] = len(found.problems)
            cases.append(Ispy1DicomCase(self.key, case_id, self.root, summary=summary, problems=list(found.problems),
                                        patient_folders=list(found.folders), images=list(found.images),
                                        segs=list(found.segs), nifti_ftv=nifti.get(case_id),
                                        patient_id_spellings=dict(found.spellings)))
        report(progress, f"Found {len(cases)} ISPY1 DICOM cases", 1.0)
        return cases

    # ------------------------------------------------------------------ reading
    def read_case(self, case: Ispy1DicomCase, progress: Optional[ProgressCallback] = None) -> CaseData:
        """The DCE phases, vendor maps and SEGs of every study of the patient that has them, as plain data.

        :raises DataError: naming the file, if the case holds no DCE series
            (nor any series a SEG references) that can be read.
        """
        return _CaseReader(self, case, progress).run()

    def check_case(self, data: CaseData) -> List[Finding]:
        """Segment volumes, empty segments, segment voxels in the image background, and Dice of the baseline
        study's PE SEGs with the NIfTI FTV mask; the measurements also go to ``data.metrics``."""
        findings: List[Finding] = []
        for read in data.provenance.get("segmentations", []):
            findings.extend(_segment_quality(data, read))
        findings.extend(_compare_with_nifti(data))
        return findings

    # ------------------------------------------------------------------ corrections
    def save_corrections(self, loaded: LoadedCase, scene: Any, output_folder: Path,
                         progress: Optional[ProgressCallback] = None) -> List[Path]:
        """Each SEG segmentation of the case, as edited, as a DICOM SEG: ``<out>/<case_id>/<node name>.dcm``.

        The SEG references the series the node was loaded on, as read at load
        (a multi-phase DCE series: its first phase's instances), keeps the
        segments' names, codes and colours, and is described as the source
        SEG's SeriesDescription with "(corrected)". Every target is checked
        before the first file is written.

        :raises DataError: if the folder is refused, no segmentation is left in
            the scene, or the series a node was drawn on is not known.
        """
        from ..scene.segment_export import export_segmentation_node

        case = loaded.case
        plan = self.plan_segmentation_files(loaded, scene, output_folder, lambda node: node.GetName())
        images: Dict[str, _ReadImage] = loaded.data.provenance.get("images", {}) if loaded.data is not None else {}
        references = []
        for node, target in plan:
            image = images.get(node.GetAttribute(ATTRIBUTE_PREFIX + "ispy1_dicom.reference") or "")
            if image is None:
                raise DataError(target, f"{node.GetName()}: the series it was drawn on is not known (it was not "
                                        "loaded from an ISPY1 DICOM case); nothing was written")
            references.append(image)
        written = []
        for index, ((node, target), image) in enumerate(zip(plan, references)):
            report(progress, f"Writing {target.name}", index / len(plan))
            source = node.GetAttribute(ATTRIBUTE_PREFIX + "ispy1_dicom.seg_description") or "Segmentation"
            try:
                written.append(export_segmentation_node(node, image.volume, target,
                                                        series_description=f"{source[:52]} (corrected)"))
            except ValueError as error:  # a segment no longer on the series' grid
                raise DataError(target, f"{node.GetName()}: {error}") from error
        report(progress, f"Saved {len(written)} SEG file(s) of {case.case_id}", 1.0)
        return written


class _CaseReader:
    """Reads one case: studies -> DCE phases and maps -> SEGs on the series they reference."""

    def __init__(self, collection: Ispy1DicomCollection, case: Ispy1DicomCase,
                 progress: Optional[ProgressCallback]) -> None:
        self.collection = collection
        self.case = case
        self.case_id = case.case_id
        self.progress = progress
        self.data = CaseData(case=case)
        self.images: Dict[str, _ReadImage] = {}  # key -> image
        self.by_series: Dict[str, List[_ReadImage]] = {}  # SeriesInstanceUID -> its phase volumes (first = phase 1)
        self.dce_series: List[ImageSeries] = []  # the series recognised as DCE acquisitions

    def finding(self, severity: str, check: str, message: str, **details: Any) -> None:
        self.data.findings.append(_finding(self.case_id, severity, check, message, **details))

    def run(self) -> CaseData:
        report(self.progress, f"Reading {self.case_id}", 0.0)
        for problem in self.case.problems:
            self.finding(WARNING, "unreadable_file", problem)
        for spelling, paths in self.case.patient_id_spellings.items():
            shown = ", ".join(path.name for path in paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3
                                                                  else "")
            self.finding(WARNING, "patient_id_spelling",
                         f"{len(paths)} file(s) give PatientID {spelling!r}, spelled differently from "
                         f"{self.case_id!r} ({shown}); read as {self.case_id}'s", path=paths[0])
        plan = self._plan()
        if not plan:
            raise DataError(self.case.location() or self.collection.root,
                            f"{self.case_id} has no DCE series (no '<description>: SER/PE' map names one) and no "
                            "series that a SEG references; nothing to load")
        jobs = [series for _, members in plan for series in members]
        for index, series in enumerate(jobs):
            self._read_image_series(series, sub_progress(self.progress, 0.6 * index / len(jobs),
                                                         0.6 * (index + 1) / len(jobs)))
        if not self.images:
            raise DataError(self.case.location() or self.collection.root,
                            f"{self.case_id}: none of its DCE series could be read (see the files named above)")
        self._read_segs(sub_progress(self.progress, 0.6, 0.95))
        self._check_patient_folder()
        first = next(iter(self.images.values()))
        self.data.display.background = first.key
        self.data.provenance["images"] = dict(self.images)
        self.data.provenance["baseline_study"] = plan[0][0]
        if self.case.nifti_ftv is not None:
            self._read_nifti_ftv(Path(self.case.nifti_ftv))
        report(self.progress, f"Read {self.case_id}", 1.0)
        return self.data

    # ---------------------------------------------------------------------------------- which series
    def _plan(self) -> List[Tuple[str, List[ImageSeries]]]:
        """(StudyInstanceUID, the series to load: DCE series, then maps, then other referenced series) per study.

        Studies are in date order, so the first is the baseline visit.
        """
        referenced = {uid for seg in self.case.segs for uid in seg.referenced_series_uids}
        studies: Dict[str, List[ImageSeries]] = {}
        for series in self.case.images:
            studies.setdefault(series.study_instance_uid, []).append(series)
        plan = []
        skipped = 0
        for study_uid, members in studies.items():
            dce_names = {series.map_source.lower() for series in members if series.map_source}
            dce = [s for s in members if s.description.lower() in dce_names and s.map_source is None]
            if not dce_names and not any(s.series_instance_uid in referenced for s in members):
                dce = [s for s in members if s.modality == "MR" and DCE_DESCRIPTION.search(s.description)
                       and not SUBTRACTION_DESCRIPTION.search(s.description)]
                if dce:
                    self.finding(INFO, "dce_by_description",
                                 f"{self.case_id} {display_date(members[0].study_date)}: no vendor map names the "
                                 "DCE series; "
                                 f"{', '.join(sorted({s.description for s in dce}))} loaded as DCE by description")
            maps = [s for s in members if s.map_source is not None and s.map_source.lower() in
                    {d.description.lower() for d in dce}]
            others = [s for s in members if s.series_instance_uid in referenced and s not in dce and s not in maps]
            self.dce_series.extend(dce)
            chosen = [*dce, *maps, *others]
            skipped += len(members) - len(chosen)
            if chosen:
                plan.append((study_uid, chosen))
        if skipped:
            self.finding(INFO, "series_not_loaded", f"{self.case_id}: {skipped} series that are neither DCE, its "
                                                    "maps nor referenced by a SEG (localisers, T2, diffusion) "
                                                    "were not loaded")
        return plan

    def _placement(self, series: ImageSeries) -> Placement:
        name = " ".join(part for part in (series.study_description.strip() or "MR", display_date(series.study_date))
                        if part)
        return Placement(self.case_id, self.case_id, series.study_instance_uid, name)

    # ---------------------------------------------------------------------------------- images
    def _instances(self, series: ImageSeries) -> List[InstanceHeader]:
        """The series' instances that stack into a volume (as discovery read their headers); the others are
        reported by name (unreadable files and strays in its folders are the case's problems, from discovery)."""
        stackable, left_out = split_stackable(series.instances)
        for error in left_out:
            self.finding(WARNING, "file_left_out", f"{error}; not in the volume", path=error.path)
        return stackable

    def _read_image_series(self, series: ImageSeries, progress: Optional[ProgressCallback]) -> None:
        """Read a series as one volume per phase; problems become findings naming the files."""
        try:
            instances = self._instances(series)
            if not instances:
                raise DataError(series.folders[0], f"holds no readable image of series {series.series_instance_uid}")
            phases, keyword = split_phases(instances)
            is_dce = series in self.dce_series
            same_description = [s for s in self.dce_series if s.study_instance_uid == series.study_instance_uid
                                and s.description.lower() == series.description.lower()]
            volumes = [read_series(phase, sub_progress(progress, n / len(phases), (n + 1) / len(phases)))
                       for n, phase in enumerate(phases)]
        except DataError as error:
            self.finding(ERROR, "unreadable_series", f"{error}; series {series.description!r} not loaded",
                         path=error.path)
            return
        if keyword:
            self.finding(INFO, "phases", f"{series.description}: {len(phases)} phases in one series, ordered by "
                                         f"{keyword}", path=series.folders[0])
        for index, volume in enumerate(volumes):
            if len(volumes) > 1:
                phase = index + 1
            elif is_dce and len(same_description) > 1:  # one series per phase: ordered by SeriesNumber
                phase = same_description.index(series) + 1
            else:
                phase = 1 if is_dce else 0
            self._add_volume(series, volume, phase, [i for n, p in enumerate(phases) if n != index for i in p])
        for problem in (problem for volume in volumes for problem in volume.problems()):
            self.finding(WARNING, "stack", f"{series.description}: {problem}", path=series.folders[0])

    def _add_volume(self, series: ImageSeries, volume: DicomVolume, phase: int,
                    other_phase_instances: List[InstanceHeader]) -> None:
        key = f"{series.series_instance_uid}/phase{phase}" if phase else series.series_instance_uid
        label = f" phase {phase} ({phase_label(phase)})" if phase else ""
        name = f"{self.case_id} {display_date(series.study_date)} {series.description or series.modality}{label}"
        attributes = {"case_id": self.case_id, "SeriesInstanceUID": series.series_instance_uid,
                      "ispy1_dicom.folder": str(series.folders[0]), "ispy1_dicom.series": series.description}
        if phase:
            attributes["ispy1_dicom.phase"] = str(phase)
            # The NIfTI form's phase names and one "family" per acquisition: the view layout then shows
            # pre- and early post-contrast phases one above the other, as it does for the NIfTI form.
            attributes["ispy1.phase"] = f"DCE_{phase - 1:04d}"
            attributes["ispy1.family"] = f"dicom {series.study_instance_uid} {series.description}"
        self.data.volumes.append(VolumeData(key, name, volume.voxels, volume.ijk_to_ras, self._placement(series),
                                            attributes=attributes, share_memory=True))
        image = _ReadImage(key, series, volume, phase, other_phase_instances)
        self.images[key] = image
        self.by_series.setdefault(series.series_instance_uid, []).append(image)
        self.by_series[series.series_instance_uid].sort(key=lambda item: item.phase)

    # ---------------------------------------------------------------------------------- SEGs
    def _reference_for(self, seg: SegSeries) -> Optional[_ReadImage]:
        """The volume a SEG is drawn on: its referenced series' (first phase), or the study's only DCE phase 1."""
        for uid in seg.referenced_series_uids:
            if uid in self.by_series:
                return self.by_series[uid][0]
        if not seg.referenced_series_uids:
            in_study = [images[0] for images in self.by_series.values()
                        if images[0].series.study_instance_uid == seg.study_instance_uid and images[0].phase == 1]
            if len(in_study) == 1:
                return in_study[0]
        return None

    def _read_segs(self, progress: Optional[ProgressCallback]) -> None:
        from ..formats.dicom_seg import decode_seg

        read: List[_ReadSeg] = []
        taken: List[str] = []
        for index, seg in enumerate(self.case.segs):
            count = max(1, len(self.case.segs))
            part = sub_progress(progress, index / count, (index + 1) / count)
            image = self._reference_for(seg)
            if image is None:
                self.finding(WARNING, "seg_unpaired", f"{seg.path.name}: {seg.description!r} references series "
                             f"{', '.join(seg.referenced_series_uids) or '(none)'}, which is not loaded in "
                             f"{self.case_id}; not drawn", path=seg.path)
                continue
            try:
                if not self._identity_allows(seg, image):
                    continue
                # Frames of a multi-phase series may name any phase's instance at their position.
                reference = dataclasses.replace(image.volume,
                                                duplicates=[*image.volume.duplicates, *image.other_phase_instances])
                decoded = decode_seg(seg.path, reference, self.case_id, part)
            except DataError as error:
                self.finding(ERROR, "seg_unreadable", f"{error}; this SEG was not loaded", path=error.path)
                continue
            name = f"{self.case_id} {display_date(image.series.study_date)} {seg.description or 'segmentation'}"
            if name in taken:
                name = f"{name} {seg.series_instance_uid[-6:]}"
            taken.append(name)
            segmentation, segment_ids = self._segmentation_data(seg, decoded, image, name)
            self.data.segmentations.append(segmentation)
            self.data.findings.extend(dataclasses.replace(finding, node_name=name) for finding in decoded.findings)
            read.append(_ReadSeg(seg, decoded, image, name, segment_ids))
        self.data.provenance["segmentations"] = read

    def _identity_allows(self, seg: SegSeries, image: _ReadImage) -> bool:
        """Identity findings of a SEG against its images; False (and an error finding) for another patient's SEG."""
        from ..formats.dicom_seg import read_seg_header
        from ..formats.identity import CHECK_PATIENT, identity_findings

        header: "SegHeader" = read_seg_header(seg.path)
        findings = identity_findings(header, image.volume.present_instances[:1], seg.path, self.case_id,
                                     spelling_key=_spelling_key)
        refused = [f for f in findings if f.severity == ERROR and f.check == CHECK_PATIENT]
        self.data.findings.extend(f for f in findings if f not in refused)
        for finding in refused:
            self.data.findings.append(dataclasses.replace(
                finding, message=f"{finding.message}; refused, not drawn on {image.series.description!r}"))
        return not refused

    def _segmentation_data(self, seg: SegSeries, decoded: "DecodedSegmentation", image: _ReadImage,
                           name: str) -> Tuple[SegmentationData, Dict[int, str]]:
        from ..formats.dicom_seg import segment_tags, terminology_entry

        tumour = is_tumour_segmentation(seg.description)
        specs = []
        segment_ids: Dict[int, str] = {}
        for segment in decoded.segments:
            if segment.is_background:
                continue
            segment_id = re.sub(r"\W+", "_", segment.label).strip("_") or f"Segment_{segment.number}"
            while segment_id in segment_ids.values():
                segment_id = f"{segment_id}_{segment.number}"
            segment_ids[segment.number] = segment_id
            color = segment.color or (_TUMOUR_COLOR if tumour else
                                      _TISSUE_COLOR if "tissue" in seg.description.lower() else _OTHER_COLOR)
            specs.append(SegmentSpec(
                segment.label, color, segment.box, segment_id=segment_id, offset=segment.offset,
                terminology=terminology_entry(segment.category, segment.type, segment.type_modifier,
                                              segment.anatomic_region) or None,
                tags=segment_tags(segment)))
        attributes = {"case_id": self.case_id, "SeriesInstanceUID": seg.series_instance_uid,
                      "ispy1_dicom.seg_path": str(seg.path), "ispy1_dicom.seg_description": seg.description,
                      "ispy1_dicom.reference": image.key}
        return SegmentationData(f"seg/{seg.series_instance_uid}", name, image.key, specs,
                                self._placement(image.series), attributes), segment_ids

    # ---------------------------------------------------------------------------------- identity of the folder
    def _check_patient_folder(self) -> None:
        """A warning when the images' PatientID is not an ISPY1 ID: the case is then named after the ISPY1
        patient folder holding them (an anonymised or re-exported download, or a mixed-up folder)."""
        seen = sorted({instance.patient_id.strip(" \x00") for image in self.images.values()
                       for instance in image.volume.present_instances[:1] if instance.patient_id.strip(" \x00")})
        others = [patient for patient in seen if ispy1_case_id(patient) != self.case_id]
        if others:
            self.finding(WARNING, "patient_folder", f"folder {self.case_id} holds images of patient(s) "
                                                    f"{', '.join(others)}; loaded as {self.case_id}, the folder's "
                                                    "name", path=self.case.location() or "")

    # ---------------------------------------------------------------------------------- NIfTI
    def _read_nifti_ftv(self, path: Path) -> None:
        from ..formats.nifti import read_nifti

        try:
            volume = read_nifti(path)
        except DataError as error:
            self.finding(ERROR, "nifti_unreadable", f"{error}; the DICOM SEGs are not compared with it", path=path)
            return
        self.data.provenance["nifti_ftv"] = (path, np.asarray(volume.voxels) != 0, volume.ijk_to_ras)


# ---------------------------------------------------------------------------------------------- checks
def _centroid_ras(mask: np.ndarray, offset: Sequence[int], ijk_to_ras: np.ndarray) -> Optional[Tuple[float, ...]]:
    indices = np.argwhere(mask)
    if indices.size == 0:
        return None
    centre_kji = indices.mean(axis=0) + np.asarray(offset, dtype=float)
    return tuple(float(v) for v in apply_matrix(ijk_to_ras, centre_kji[::-1]))


def _background_image(data: CaseData, read: _ReadSeg) -> Optional[DicomVolume]:
    """The image whose minimum is "outside the body" for a SEG: its own series if a DCE phase, else the study's
    first DCE phase on the same grid (a PE or SER map is zero wherever nothing enhances, tissue included)."""
    if read.image.phase:
        return read.image.volume
    images: Dict[str, _ReadImage] = data.provenance.get("images", {})
    for image in images.values():
        if (image.phase == 1 and image.series.study_instance_uid == read.image.series.study_instance_uid
                and image.volume.voxels.shape == read.image.volume.voxels.shape
                and np.allclose(image.volume.ijk_to_ras, read.image.volume.ijk_to_ras, atol=1e-3)):
            return image.volume
    return None


def _segment_quality(data: CaseData, read: _ReadSeg) -> List[Finding]:
    """Volume, emptiness and background share of every segment of one SEG; metrics into ``data``."""
    case_id = data.case.case_id
    path = read.seg.path
    ijk_to_ras = read.image.volume.ijk_to_ras
    voxel_cm3 = abs(float(np.linalg.det(np.asarray(ijk_to_ras)[:3, :3]))) / 1000.0
    background_image = _background_image(data, read)
    findings: List[Finding] = []
    volumes: Dict[str, float] = {}
    background: Dict[str, float] = {}
    for segment in read.decoded.segments:
        if segment.is_background:
            continue
        segment_id = read.segment_ids[segment.number]
        details = dict(path=path, node_name=read.node_name, segment_id=segment_id)
        if segment.is_empty:
            findings.append(_finding(case_id, WARNING, "empty_segment",
                                     f"{path.name}: segment {segment.number} {segment.label!r} of "
                                     f"{read.seg.description!r} has no voxels", value=0.0, **details))
            volumes[segment_id] = 0.0
            continue
        volume_cm3 = segment.voxel_count * voxel_cm3
        volumes[segment_id] = volume_cm3
        findings.append(_finding(case_id, INFO, "segment_volume",
                                 f"{read.seg.description} / {segment.label}: {volume_cm3:.3f} cm³", value=volume_cm3,
                                 ras=_centroid_ras(segment.box, segment.offset, ijk_to_ras), **details))
        if background_image is None:
            continue
        window = tuple(slice(o, o + n) for o, n in zip(segment.offset, segment.box.shape))
        image = background_image.voxels
        lowest = float(image.min())
        in_background = segment.box & (image[window] <= lowest + 1e-6 * max(1.0, abs(lowest)))
        fraction = float(np.count_nonzero(in_background)) / float(segment.voxel_count)
        background[segment_id] = fraction
        if fraction > 0:
            findings.append(_finding(case_id, WARNING if fraction >= BACKGROUND_WARNING_FRACTION else INFO,
                                     "segment_in_background",
                                     f"{path.name}: {fraction:.1%} of {segment.label!r} ({read.seg.description}) lies "
                                     "in the image background", value=fraction,
                                     ras=_centroid_ras(in_background, segment.offset, ijk_to_ras), **details))
    per_seg = data.metrics.setdefault("per_segmentation", {})
    per_seg[read.node_name] = {"seg_path": str(path), "description": read.seg.description,
                               "segment_volumes_cm3": volumes, "background_fraction": background,
                               "unplaced_frames": len(read.decoded.unplaced_frames),
                               "geometry_mismatches": list(read.decoded.geometry_mismatches)}
    return findings


def _compare_with_nifti(data: CaseData) -> List[Finding]:
    """Dice of each PE SEG of the baseline study with the NIfTI FTV mask (moved onto the SEG's grid)."""
    from ..formats.nifti import count_outside_grid, resample_mask_to_grid
    from ..formats.seg_agreement import dice

    nifti = data.provenance.get("nifti_ftv")
    if nifti is None:
        return []
    path, ftv, ftv_ijk_to_ras = nifti
    case_id = data.case.case_id
    baseline = data.provenance.get("baseline_study")
    findings: List[Finding] = []
    results: Dict[str, float] = {}
    for read in data.provenance.get("segmentations", []):
        if read.image.series.study_instance_uid != baseline or not is_tumour_segmentation(read.seg.description):
            continue
        grid = read.image.volume
        shape = grid.voxels.shape
        union = np.zeros(shape, dtype=bool)
        for segment in read.decoded.segments:
            if not segment.is_background and not segment.is_empty:
                union |= segment.mask
        moved = resample_mask_to_grid(ftv, ftv_ijk_to_ras, shape, grid.ijk_to_ras)
        outside = count_outside_grid(ftv, ftv_ijk_to_ras, shape, grid.ijk_to_ras)
        value = dice(moved, union)
        results[read.node_name] = value
        if np.isnan(value):
            findings.append(_finding(case_id, INFO, "nifti_dice", f"{read.seg.description} and {path.name} (FTV) "
                                     "are both empty: no Dice", path=read.seg.path, node_name=read.node_name))
            continue
        severity = INFO if value >= DICE_WARNING_BELOW else WARNING
        message = (f"Dice {read.seg.description} (DICOM SEG) vs {path.parent.name}/{path.name} (NIfTI FTV) "
                   f"{value:.4f}" + (f"; {outside} FTV voxel(s) lie outside {read.image.series.description}"
                                     if outside else ""))
        findings.append(_finding(case_id, severity, "nifti_dice", message, path=read.seg.path,
                                 node_name=read.node_name, value=value))
    if results:
        data.metrics["nifti_ftv_dice"] = results
        data.metrics["nifti_ftv_path"] = str(path)
    return findings


COLLECTIONS = [Ispy1DicomCollection]
