"""What DICOM a folder holds, grouped by its headers whatever the folder names and nesting.

Downloads arrive in many layouts: NBIA's ``<collection>/<patient>/<study>/<series>/``,
idc-index's ``<patient>/<study>/<Modality>_<SeriesUID>/``, IDC's flat folder
(every file of every patient in one place), folders named by SeriesInstanceUID,
a patient folder chosen directly, a collection inside a download folder, a CT
and its SEG side by side. A :class:`DicomInventory` reads every file's header
once (through :func:`.dicom_series.scan_folder`, so the persistent header cache
applies and no pixel is decoded) and groups the instances by PatientID,
StudyInstanceUID, SeriesInstanceUID, Modality and SOP class. Collections find
their cases in it; folder names never decide what a file is.

An inventory of the same, unchanged tree is kept in memory
(:func:`read_inventory`): detection by several collections and the discovery
that follows walk the tree's headers once. "Unchanged" is checked on every call
by a walk that only ``stat``s (path, size, modification and change time,
inode), so an edited, added or removed file reads the headers again.
"""
from __future__ import annotations

import csv
import os
import re
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Pattern, Sequence, Tuple

from ..errors import DataError
from ..progress import ProgressCallback
from .dicom_series import InstanceHeader, scan_folder, tree_file_keys
from .folders import is_dir_entry, is_file_entry

__all__ = [
    "SEG_SOP_CLASS_UIDS",
    "RTSTRUCT_SOP_CLASS_UID",
    "SeriesEntry",
    "PatientEntry",
    "DicomInventory",
    "MetadataRow",
    "read_nbia_metadata",
    "missing_series_problems",
    "stray_series_problems",
    "patient_key",
    "canonical_id",
    "read_inventory",
    "inventory_or_empty",
    "forget_inventories",
]

#: Segmentation Storage and Label Map Segmentation Storage (no highdicom import: inventories stay light).
SEG_SOP_CLASS_UIDS = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")
RTSTRUCT_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.481.3"
#: How many patient IDs a description names before "and N more".
_NAMED_PATIENTS = 6
#: How many inventories stay in memory (one per folder recently opened).
_REMEMBERED = 4


def patient_key(patient_id: str) -> str:
    """The grouping key of a PatientID: without DICOM's padding (space, NUL), case-insensitive."""
    return patient_id.strip(" \x00").upper()


def canonical_id(pattern: Pattern[str], text: str, spell: Callable[["re.Match[str]"], str]) -> Optional[str]:
    """``spell(match)`` if ``text`` (stripped of DICOM padding) fully matches ``pattern``, else None."""
    match = pattern.match(text.strip(" \x00"))
    return spell(match) if match else None


@dataclass(frozen=True)
class SeriesEntry:
    """One series of one patient as its headers describe it.

    :param instances: its files' headers, sorted by path.
    """

    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str
    sop_class_uids: Tuple[str, ...]
    series_description: str
    series_number: Optional[int]
    instances: Tuple[InstanceHeader, ...]

    @property
    def files(self) -> List[Path]:
        """The series' files, sorted."""
        return [instance.path for instance in self.instances]

    @property
    def folders(self) -> List[Path]:
        """The folders holding the series' files, sorted."""
        return sorted({instance.path.parent for instance in self.instances})

    @property
    def is_segmentation(self) -> bool:
        """A DICOM SEG series."""
        return self.modality == "SEG" or any(uid in SEG_SOP_CLASS_UIDS for uid in self.sop_class_uids)

    @property
    def is_rtstruct(self) -> bool:
        """An RT Structure Set series."""
        return self.modality == "RTSTRUCT" or RTSTRUCT_SOP_CLASS_UID in self.sop_class_uids


@dataclass(frozen=True)
class PatientEntry:
    """One patient: the PatientID as most of its files spell it, and its series.

    :param spellings: every spelling of the PatientID found (same :func:`patient_key`).
    """

    patient_id: str
    spellings: Tuple[str, ...]
    series: Tuple[SeriesEntry, ...]

    @property
    def modalities(self) -> List[str]:
        """The distinct modalities of its series, sorted."""
        return sorted({series.modality for series in self.series if series.modality})

    @property
    def instances(self) -> List[InstanceHeader]:
        """Every instance of the patient."""
        return [instance for series in self.series for instance in series.instances]


@dataclass
class DicomInventory:
    """Every DICOM instance below :attr:`root`, grouped by patient and series.

    :param instances: the headers read, sorted by path.
    :param errors: files that look like DICOM but could not be read (each names its file).
    :param other_files: how many files were not DICOM (spreadsheets, XML, NIfTI...).
    """

    root: Path
    instances: List[InstanceHeader] = field(default_factory=list)
    errors: List[DataError] = field(default_factory=list)
    other_files: int = 0
    _patients: Optional[Dict[str, PatientEntry]] = field(default=None, repr=False)
    _folder_patients: Optional[Dict[Path, frozenset]] = field(default=None, repr=False)
    _series_by_folder: Optional[Dict[Path, set]] = field(default=None, repr=False)

    # ------------------------------------------------------------------ grouping
    @property
    def patients(self) -> Dict[str, PatientEntry]:
        """:func:`patient_key` -> the patient, sorted by key (instances without a PatientID under "")."""
        if self._patients is None:
            self._patients = _group_patients(self.instances)
        return self._patients

    def series_by_uid(self) -> Dict[str, SeriesEntry]:
        """SeriesInstanceUID -> its series (the first patient's, if a UID is shared by patients)."""
        found: Dict[str, SeriesEntry] = {}
        for patient in self.patients.values():
            for series in patient.series:
                found.setdefault(series.series_instance_uid, series)
        return found

    def instances_by_case(self, case_id_of: Callable[[str], Optional[str]]
                          ) -> Dict[str, List[InstanceHeader]]:
        """The instances of each case, a case being what ``case_id_of`` makes of a PatientID.

        ``case_id_of`` returns the case ID for a PatientID, or None when the
        PatientID is not one of the collection's. A file without a PatientID
        goes to the case its nearest enclosing folder (below :attr:`root`, or
        the root itself) is named after, if any: a last resort for damaged
        headers, never used when the header names the patient.
        """
        cases: Dict[str, List[InstanceHeader]] = {}
        for instance in self.instances:
            case_id = case_id_of(instance.patient_id) if instance.patient_id.strip(" \x00") else \
                self._case_of_folder(instance.path, case_id_of)
            if case_id is not None:
                cases.setdefault(case_id, []).append(instance)
        return dict(sorted(cases.items()))

    def _case_of_folder(self, path: Path, case_id_of: Callable[[str], Optional[str]]) -> Optional[str]:
        for folder in path.parents:
            case_id = case_id_of(folder.name)
            if case_id is not None:
                return case_id
            if folder == self.root:
                return None
        return None

    def case_folders(self, instances: Sequence[InstanceHeader]) -> List[Path]:
        """The largest folders that hold ``instances`` and no other patient's files, sorted.

        In NBIA's and IDC's layouts this is the patient folder; in a flat
        folder holding several patients it is that folder (its other files are
        told apart by their headers when the case is read).
        """
        keys = {patient_key(instance.patient_id) for instance in instances}
        folder_patients = self._folders_with_patients()
        chosen = set()
        for folder in {instance.path.parent for instance in instances}:
            while folder != self.root and folder_patients.get(folder.parent, frozenset()) <= keys \
                    and self.root in folder.parents:
                folder = folder.parent
            chosen.add(folder)
        return sorted(folder for folder in chosen if not any(other in folder.parents for other in chosen))

    def _folders_with_patients(self) -> Dict[Path, frozenset]:
        """Folder -> the patient keys of every DICOM file below it (for :meth:`case_folders`)."""
        if self._folder_patients is None:
            below: Dict[Path, set] = {}
            for folder, keys in _keys_by_folder(self.instances).items():
                for ancestor in (folder, *folder.parents):
                    below.setdefault(ancestor, set()).update(keys)
                    if ancestor == self.root:
                        break
            self._folder_patients = {folder: frozenset(keys) for folder, keys in below.items()}
        return self._folder_patients

    def layout_of(self, series: SeriesEntry) -> str:
        """How a series' files are laid out: ``"idc"`` (a ``<Modality>_<SeriesUID>`` folder), ``"uid"`` (a
        folder named by the SeriesInstanceUID), ``"shared"`` (its folder holds other series too: IDC's flat
        download, a CT beside its SEG) or ``"nbia"`` (a folder of its own, named otherwise)."""
        if self._series_by_folder is None:
            by_folder: Dict[Path, set] = {}
            for instance in self.instances:
                by_folder.setdefault(instance.path.parent, set()).add(instance.series_instance_uid)
            self._series_by_folder = by_folder
        folders = series.folders
        if any(len(self._series_by_folder.get(folder, ())) > 1 for folder in folders):
            return "shared"
        uid = series.series_instance_uid
        if all(folder.name == f"{series.modality}_{uid}" for folder in folders):
            return "idc"
        if all(folder.name == uid for folder in folders):
            return "uid"
        return "nbia"

    # ------------------------------------------------------------------ messages
    def describe(self, looked_for: Iterable[str] = ()) -> str:
        """What was found, for a message: "found 12 DICOM files of 2 patients (IDs: X, Y), none matching ...".

        :param looked_for: the patient-ID patterns that were looked for, in words.
        """
        if not self.instances:
            text = "found no readable DICOM file"
        else:
            names = [patient.patient_id or "(no PatientID)" for patient in self.patients.values()]
            shown = ", ".join(names[:_NAMED_PATIENTS]) + (f" and {len(names) - _NAMED_PATIENTS} more"
                                                          if len(names) > _NAMED_PATIENTS else "")
            modalities = sorted({instance.modality or "?" for instance in self.instances})
            text = (f"found {len(self.instances)} DICOM file(s) of {len(names)} patient(s) (IDs: {shown}; "
                    f"modalities: {', '.join(modalities)})")
            wanted = list(looked_for)
            if wanted:
                text += f", none matching {' or '.join(wanted)}"
        if self.errors:
            text += f"; {len(self.errors)} unreadable DICOM file(s) (e.g. {self.errors[0]})"
        return text


@dataclass(frozen=True)
class MetadataRow:
    """One row of NBIA's ``metadata.csv``: a series the download was meant to hold.

    :param images: the number of images it lists ("" when the column is missing).
    """

    csv_path: Path
    subject_id: str
    series_instance_uid: str
    modality: str
    series_description: str
    images: str


def read_nbia_metadata(root: Path, depth: int = 3, levels_up: int = 2) -> List[MetadataRow]:
    """The rows of every NBIA ``metadata.csv`` within ``depth`` folders below ``root`` and in its
    ``levels_up`` parent folders (the manifest folder lies two levels above a patient folder).

    Used only to name series that are listed but not on disk; an unreadable
    file is skipped (it costs only those names).
    """
    root = Path(root)
    candidates = [folder / "metadata.csv" for folder in list(root.absolute().parents)[:levels_up]]
    pending = [(str(root), 0)]
    while pending:
        directory, level = pending.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            if entry.name.lower() == "metadata.csv" and is_file_entry(entry):
                candidates.append(Path(entry.path))
            elif level < depth and not entry.name.startswith(".") and is_dir_entry(entry, follow_symlinks=False):
                pending.append((entry.path, level + 1))
    rows: List[MetadataRow] = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            with open(path, newline="", encoding="utf-8-sig") as stream:
                for row in csv.DictReader(stream):
                    rows.append(MetadataRow(path, (row.get("Subject ID") or "").strip(),
                                            (row.get("Series UID") or "").strip(), (row.get("Modality") or "").strip(),
                                            (row.get("Series Description") or "").strip(),
                                            (row.get("Number of Images") or "").strip()))
        except (OSError, csv.Error, UnicodeDecodeError):
            continue
    return rows


def missing_series_problems(case_id: str, rows: Sequence[MetadataRow], on_disk: Iterable[str],
                            subject_matches: Callable[[str], bool]) -> List[str]:
    """One message per series that ``metadata.csv`` lists for the case but no file on disk belongs to."""
    present = set(on_disk)
    problems = []
    seen = set()
    for row in rows:
        if not subject_matches(row.subject_id) or not row.series_instance_uid:
            continue
        if row.series_instance_uid in present or row.series_instance_uid in seen:
            continue
        seen.add(row.series_instance_uid)
        images = f", {row.images} image(s)" if row.images else ""
        description = f" {row.series_description!r}" if row.series_description else ""
        problems.append(f"{row.csv_path}: lists series {row.series_instance_uid} ({row.modality or '?'}"
                        f"{description}{images}) of {case_id}, which is not on disk (not downloaded?)")
    return problems


#: Modalities of objects that annotate or accompany images (they may share a folder with their images).
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "SR", "PR", "KO", "REG", "RTPLAN", "RTDOSE", "RWV", "DOC"})


def stray_series_problems(instances: Sequence[InstanceHeader]) -> List[str]:
    """One message per folder that holds several image series of a case whose files are otherwise spread
    over folders of their own (a slice of another series dropped into a series folder).

    Image series sharing a folder are a layout, not a problem, when the case
    keeps everything in one folder (IDC's flat download, a patient folder
    with its CT, PET and MR); SEG, RTSTRUCT and SR files beside their images
    never count.
    """
    if len({instance.path.parent for instance in instances}) < 2:
        return []
    by_folder: Dict[Path, Dict[str, List[InstanceHeader]]] = {}
    for instance in instances:
        if instance.modality in NON_IMAGE_MODALITIES or instance.sop_class_uid in SEG_SOP_CLASS_UIDS \
                or instance.sop_class_uid == RTSTRUCT_SOP_CLASS_UID:
            continue
        by_folder.setdefault(instance.path.parent, {}).setdefault(instance.series_instance_uid, []).append(instance)
    problems = []
    for folder, series in sorted(by_folder.items()):
        if len(series) < 2:
            continue
        groups = sorted(series.values(), key=lambda group: (-len(group), group[0].series_instance_uid))
        others = ", ".join(f"{len(group)} file(s) of series {group[0].series_instance_uid} "
                           f"(e.g. {min(instance.path.name for instance in group)})" for group in groups[1:])
        problems.append(f"{folder}: holds {len(groups[0])} file(s) of series {groups[0][0].series_instance_uid} "
                        f"and {others}, while the case's other files are in folders of their own; each series is "
                        "read on its own")
    return problems


def _keys_by_folder(instances: Sequence[InstanceHeader]) -> Dict[Path, set]:
    folders: Dict[Path, set] = {}
    for instance in instances:
        folders.setdefault(instance.path.parent, set()).add(patient_key(instance.patient_id))
    return folders


def _most_common(values: Sequence[str]) -> str:
    """The most frequent value; ties go to the first in sorted order (so the result ignores file order)."""
    counts = Counter(values)
    return sorted(counts, key=lambda value: (-counts[value], value))[0] if counts else ""


def _series_entry(instances: List[InstanceHeader]) -> SeriesEntry:
    instances = sorted(instances, key=lambda instance: str(instance.path))
    numbers = [instance.series_number for instance in instances if instance.series_number is not None]
    return SeriesEntry(
        patient_id=_most_common([instance.patient_id.strip(" \x00") for instance in instances]),
        study_instance_uid=_most_common([instance.study_instance_uid for instance in instances]),
        series_instance_uid=instances[0].series_instance_uid,
        modality=_most_common([instance.modality for instance in instances]),
        sop_class_uids=tuple(sorted({instance.sop_class_uid for instance in instances})),
        series_description=_most_common([instance.series_description for instance in instances]),
        series_number=min(numbers) if numbers else None,
        instances=tuple(instances),
    )


def _group_patients(instances: Sequence[InstanceHeader]) -> Dict[str, PatientEntry]:
    grouped: Dict[str, Dict[str, List[InstanceHeader]]] = {}
    for instance in instances:
        grouped.setdefault(patient_key(instance.patient_id), {}).setdefault(
            instance.series_instance_uid, []).append(instance)
    patients: Dict[str, PatientEntry] = {}
    for key in sorted(grouped):
        series = [_series_entry(members) for members in grouped[key].values()]
        series.sort(key=lambda entry: (entry.study_instance_uid, entry.series_number or 0,
                                       entry.series_instance_uid))
        spellings = [instance.patient_id.strip(" \x00") for entry in series for instance in entry.instances]
        patients[key] = PatientEntry(_most_common(spellings), tuple(sorted(set(spellings))), tuple(series))
    return patients


# ---------------------------------------------------------------------------------------------- reading
def _tree_signature(root: Path) -> Tuple[Tuple[str, int, int, int, int], ...]:
    """What an inventory depends on: every visible file's (path, size, mtime, ctime, inode), walked as
    :func:`.dicom_series.scan_folder` walks but silently (the scan that follows names each skipped entry once)."""
    return tree_file_keys(root)


_remembered: "OrderedDict[str, Tuple[Tuple[Tuple[str, int, int, int, int], ...], DicomInventory]]" = OrderedDict()
_remembered_lock = threading.Lock()


def forget_inventories() -> None:
    """Drop the inventories kept in memory (the next :func:`read_inventory` reads headers again)."""
    with _remembered_lock:
        _remembered.clear()


def read_inventory(root: Path, progress: Optional[ProgressCallback] = None) -> DicomInventory:
    """The DICOM inventory of ``root`` (headers only; no pixel is decoded).

    Reuses the inventory of an earlier call while no file below ``root`` has
    changed, and the persistent header cache (see
    :func:`.dicom_series.set_default_index_cache`) across runs.

    :raises DataError: if ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "is not a folder")
    # As typed and as resolved against the working folder: a relative root's paths stay valid only there.
    key = f"{root}\x00{root.absolute()}"
    signature = _tree_signature(root)
    with _remembered_lock:
        known = _remembered.get(key)
        if known is not None and known[0] == signature:
            _remembered.move_to_end(key)
            return known[1]
    scan = scan_folder(root, progress)
    instances = sorted(scan.instances, key=lambda instance: str(instance.path))
    dicom_paths = {str(instance.path) for instance in instances} | {str(error.path) for error in scan.errors}
    inventory = DicomInventory(root=root, instances=instances, errors=list(scan.errors),
                               other_files=sum(1 for entry in signature if entry[0] not in dicom_paths))
    with _remembered_lock:
        _remembered[key] = (signature, inventory)
        while len(_remembered) > _REMEMBERED:
            _remembered.popitem(last=False)
    return inventory


def inventory_or_empty(root: Path, progress: Optional[ProgressCallback] = None) -> DicomInventory:
    """:func:`read_inventory` of ``root``, or an empty inventory if it is not a folder (detection must not fail)."""
    try:
        return read_inventory(root, progress)
    except DataError:
        return DicomInventory(root=Path(root))
