"""TCIA Soft-tissue-Sarcoma (Vallières 2015): PET/CT and MR with MIM RT Structure Sets.

Facts (``shared/notes/datasets.md`` §3, ``idc_tables.md``): 51 patients
``STS_001``..``STS_051``, two studies each (PET/CT and MR); CT, PT, MR T1 /
T2FS / STIR and ``Aligned_*toPET_BOX`` series; exactly six RTSTRUCTs per patient
(``RTstruct_T1``, ``RTstruct_CT``, ``RTStruct_PET``, ``RTstruct_AlignedT!toPET``...);
ROIs ``GTV_Mass`` and ``GTV_Edema`` (STS_030: ``GTV_Research``, ``GTV_Res+edema``;
mirp's subset: ``GTV_Mass_CT``, ``GTV_Mass_MR_T1``...). Clinical data:
``INFOclinical_STS.xlsx`` (``Patient ID``, ``Histological type``...; one copy
seen as a cp1252 CSV).

Cases are patient folders named ``STS_<n>`` wherever they are (NBIA's
``<Collection>/STS_001/<study>/<series>/``, IDC's ``soft_tissue_sarcoma/STS_001/
<StudyUID>/<Modality>_<SeriesUID>/``, mirp's ``STS_001/CT/dicom/image/``); inside
a case every file is identified by its header, never by its folder name.

The collection follows the contract of :mod:`.base`: :meth:`read_case` gives
the image volumes and one segmentation per RTSTRUCT (its contours rasterised
on the image it was drawn on) as plain data, :meth:`check_case` the clinical,
RTSTRUCT-count and GTV-volume findings. Importing this module and detecting a
folder stays light: DICOM, table and scene code are imported when used.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..case_data import (CaseData, LoadedCase, Placement, SegmentationData, SegmentSpec, TableData, VolumeData,
                         WindowPreset)
from ..errors import DataError
from ..findings import ERROR, INFO, WARNING, Finding
from ..formats.folders import is_dir_entry, is_file_entry
from ..progress import ProgressCallback, report, sub_progress
from .base import CaseRecord, Collection

if TYPE_CHECKING:  # imported for annotations only; reading imports them when it runs
    import pandas as pd

    from ..formats.dicom_inventory import DicomInventory
    from ..formats.dicom_series import DicomVolume, InstanceHeader
    from ..formats.rtstruct import ReferenceChoice, StructureSet

__all__ = ["SoftTissueSarcomaCollection", "SarcomaCase", "COLLECTIONS", "normalise_roi_name", "patient_key",
           "read_clinical_table", "EXPECTED_RTSTRUCTS_PER_PATIENT"]

PATIENT_FOLDER = re.compile(r"^STS[_-]?\d{1,4}$", re.IGNORECASE)
COLLECTION_NAMES = ("soft-tissue-sarcoma", "soft_tissue_sarcoma", "sts_images")
CLINICAL_NAME = re.compile(r"infoclinical.*sts.*\.(xlsx|xls|csv)$", re.IGNORECASE)
#: Every patient in the TCIA collection has exactly six RTSTRUCT series (IDC v25).
EXPECTED_RTSTRUCTS_PER_PATIENT = 6
IMAGE_MODALITIES = ("CT", "PT", "MR")
#: How deep below the chosen folder patient folders are looked for (NBIA: parent/manifest/Collection/STS_001).
SEARCH_DEPTH = 4
#: Columns of the clinical table shown in the case list.
SUMMARY_COLUMNS = ("Sex", "Age", "Site of primary STS", "MSKCC type", "Grade")

_SEGMENT_COLORS = {"GTV_Mass": (0.86, 0.16, 0.16), "GTV_Edema": (0.95, 0.75, 0.2)}
_CT_WINDOWS = [WindowPreset("Soft tissue", 400.0, 40.0), WindowPreset("Bone", 2000.0, 400.0)]
_PET_COLOR_NODE_ID = "vtkMRMLColorTableNodeInvertedGrey"
_SUFFIX = re.compile(r"(_?(ct|pet|pt|mr|mri|t1|t2|t2fs|stir|aligned))+$", re.IGNORECASE)
#: Segment tags holding the RTSTRUCT's own ROI name and number.
ORIGINAL_NAME_TAG = "SarcomaLungLiverBrowser.OriginalName"
ROI_NUMBER_TAG = "SarcomaLungLiverBrowser.ROINumber"


def normalise_roi_name(name: str) -> str:
    """``GTV_Mass`` or ``GTV_Edema`` for the collection's name variants, else the name unchanged.

    ``GTV_Research`` is STS_030's mass and ``GTV_Res+edema`` its edema; mirp's
    subset appends the modality (``GTV_Mass_MR_T1``); case and separators vary.
    """
    stripped = _SUFFIX.sub("", name.strip())
    key = re.sub(r"[^a-z0-9+]", "", stripped.lower())
    if "edema" in key or "oedema" in key:
        return "GTV_Edema"
    if key in ("gtvmass", "gtvresearch", "gtvtumor", "gtvtumour", "gtv"):
        return "GTV_Mass"
    return name.strip()


def patient_key(patient_id: str) -> str:
    """What identifies an STS patient in a PatientID: letters and numbers, the numbers without leading zeros.

    ``STS_001``, ``sts-01`` and `` STS001 `` give ``STS1``: one patient spelled
    differently (as files re-exported by other tools are), never another one.
    """
    text = re.sub(r"[^A-Z0-9]", "", str(patient_id).upper())
    return re.sub(r"\d+", lambda number: str(int(number.group())), text)


@dataclass
class SarcomaCase(CaseRecord):
    """One Soft-tissue-Sarcoma patient as found on disk.

    :param folders: the patient's folders (the collection folder itself for a flat export).
    :param clinical_table: the ``INFOclinical_STS`` file, if one was found.
    :param clinical_error: why that file could not be read, if it could not.
    """

    folders: List[Path] = field(default_factory=list)
    clinical_table: Optional[Path] = None
    clinical_error: str = ""

    def location(self) -> Optional[Path]:
        """The patient folder, for the case table (None when the patient's files are in several)."""
        return self.folders[0] if len(self.folders) == 1 else None


# ---------------------------------------------------------------------- discovery
def _walk(root: Path, max_depth: int, skip_folder: Callable[[str], bool] = lambda name: False
          ) -> Iterator[Tuple[Path, List[str], List[str]]]:
    """(folder, sub-folder names, file names) to ``max_depth`` levels below ``root``, sorted; symbolic links to
    folders are not followed and link loops or special files are not taken for files."""
    pending = [(root, 0)]
    while pending:
        folder, depth = pending.pop(0)
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            continue
        folders = [entry.name for entry in entries if is_dir_entry(entry, follow_symlinks=False)]
        files = [entry.name for entry in entries if is_file_entry(entry)]
        yield folder, folders, files
        if depth < max_depth:
            pending.extend((folder / name, depth + 1) for name in folders
                           if not name.startswith(".") and not skip_folder(name))


def _find_clinical(root: Path) -> Optional[Path]:
    for directory, _, files in _walk(root, 2, skip_folder=lambda name: PATIENT_FOLDER.match(name) is not None):
        for name in files:
            if CLINICAL_NAME.match(name) and not name.startswith("~$"):
                return directory / name
    return None


def sts_case_id(patient_id: str) -> Optional[str]:
    """``STS_001`` for a PatientID spelled like one (``sts-01``, ``STS_0001``, ``STS1``: any case, separator,
    zero padding and DICOM padding), else None: one patient spelled differently is one case, as the
    collection spells it (its reader names the other spellings in a warning)."""
    match = PATIENT_FOLDER.match(patient_id.strip(" \x00"))
    if not match:
        return None
    return f"STS_{int(re.sub(r'[^0-9]', '', match.group(0))):03d}"


def read_clinical_table(path: Path) -> "pd.DataFrame":
    """The clinical table indexed by patient ID (upper case), whatever row holds the header.

    :raises DataError: naming the file, when no ``Patient ID`` column is found.
    """
    from ..formats.tables import read_table

    table = read_table(path)
    if "Patient ID" not in [str(c).strip() for c in table.columns]:
        # A title row above the header: find the row that holds "Patient ID".
        for row_index in range(min(10, len(table))):
            values = [str(v).strip() for v in table.iloc[row_index].tolist()]
            if "Patient ID" in values:
                table = table.iloc[row_index + 1:].copy()
                table.columns = values
                break
        else:
            raise DataError(path, f"has no 'Patient ID' column (columns: {', '.join(map(str, table.columns[:8]))})")
    table.columns = [str(c).strip() for c in table.columns]
    table = table[table["Patient ID"].notna()].copy()
    table.index = [str(v).strip().upper() for v in table["Patient ID"]]
    return table


def _clinical_facts(clinical: "pd.DataFrame", patient_id: str) -> Tuple[str, Dict[str, Any]]:
    """(diagnosis, summary columns) of a patient's clinical row; ("", {}) without one."""
    import pandas as pd

    if patient_id not in clinical.index:
        return "", {}
    row = clinical.loc[patient_id]
    if isinstance(row, pd.DataFrame):
        row = row.iloc[0]
    summary = {column: row[column] for column in SUMMARY_COLUMNS if column in row.index and pd.notna(row[column])}
    histology = row.get("Histological type", "")
    # An empty cell is NaN, which is truthy: it must give "", never "nan".
    return (str(histology).strip() if pd.notna(histology) else ""), summary


def clinical_rows(clinical: "pd.DataFrame", patient_id: str) -> "pd.DataFrame":
    """The clinical table's rows of a patient (matched as :func:`patient_key` spells it), index reset."""
    keys = [patient_key(value) for value in clinical.index]
    wanted = patient_key(patient_id)
    return clinical[[key == wanted for key in keys]].reset_index(drop=True)


def _cell_text(value: Any) -> str:
    """A spreadsheet cell as text: "" when empty, whole numbers without a decimal point."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def clinical_row_table(rows: "pd.DataFrame") -> "pd.DataFrame":
    """The patient's clinical rows for a table node: columns with an empty cell become text, the cell "".

    A number column with an empty cell would otherwise be a double column
    holding NaN, shown as "nan" in Slicer's table view.
    """
    table = rows.copy()
    for column in table.columns:
        if table[column].isna().any() or table[column].dtype == object:
            table[column] = [_cell_text(value) for value in table[column].tolist()]
    return table


# ---------------------------------------------------------------------- reading
@dataclass
class _Series:
    uid: str
    instances: List["InstanceHeader"]

    @property
    def first(self) -> "InstanceHeader":
        return self.instances[0]


@dataclass
class _ReadImage:
    """An image series read: its volume and the plain data that will become its node."""

    volume: "DicomVolume"
    data: VolumeData


def _some_names(paths: Sequence[Path], shown: int = 3) -> str:
    """The first file names of a list, for a message ("a.dcm, b.dcm, c.dcm and 4 more")."""
    names = ", ".join(path.name for path in paths[:shown])
    return names + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def _study_name(instance: "InstanceHeader") -> str:
    date = instance.study_date
    text = instance.study_description or "Study"
    return f"{text} ({date[:4]}-{date[4:6]}-{date[6:]})" if len(date) == 8 else text


def _unique_name(name: str, taken: List[str]) -> str:
    """``name``, or ``name_1``, ``name_2``... as the scene names a second node of one name."""
    unique, number = name, 0
    while unique in taken:
        number += 1
        unique = f"{name}_{number}"
    taken.append(unique)
    return unique


def cropped_mask(mask: Any) -> Tuple[Any, Tuple[int, int, int]]:
    """(the mask's bounding box of set voxels, its first voxel (k, j, i)); one unset voxel at 0 if none is set.

    The case's data stays with the loaded case, so a GTV a few centimetres
    wide is kept as its box, not as a copy of the whole image grid.
    """
    import numpy as np

    set_voxels = np.nonzero(mask)
    if set_voxels[0].size == 0:
        return np.zeros((1, 1, 1), dtype=bool), (0, 0, 0)
    low = [int(axis.min()) for axis in set_voxels]
    high = [int(axis.max()) + 1 for axis in set_voxels]
    box = np.ascontiguousarray(mask[low[0]:high[0], low[1]:high[1], low[2]:high[2]])
    return box, (low[0], low[1], low[2])


def voxel_volume_mm3(ijk_to_ras: Any) -> float:
    """Volume of one voxel in mm³."""
    import numpy as np

    from ..geometry import spacing_from_matrix

    return float(np.prod(spacing_from_matrix(ijk_to_ras)))


def segment_volumes_cm3(data: CaseData) -> Dict[str, Dict[str, float]]:
    """Segmentation name -> segment ID -> volume in cm³, from the masks and their reference volume's voxels."""
    import numpy as np

    volumes: Dict[str, Dict[str, float]] = {}
    for segmentation in data.segmentations:
        voxel = voxel_volume_mm3(data.volume(segmentation.reference).ijk_to_ras)
        volumes[segmentation.name] = {spec.segment_id or spec.name: int(np.count_nonzero(spec.mask)) * voxel / 1000.0
                                      for spec in segmentation.segments}
    return volumes


class _CaseReader:
    """Reads one case into plain data; each step a small method, findings naming their files."""

    def __init__(self, collection_key: str, case: SarcomaCase,
                 clinical_table: Optional[Any] = None) -> None:
        """:param clinical_table: reads the clinical spreadsheet at a path (the collection's, cached)."""
        self.key = collection_key
        self.case = case
        self.clinical_table = clinical_table or read_clinical_table
        self.findings: List[Finding] = []
        self.names: List[str] = []

    def finding(self, severity: str, check: str, message: str, **fields: Any) -> None:
        self.findings.append(Finding(severity, check, message, case_id=self.case.case_id, **fields))

    def read(self, progress: Optional[ProgressCallback]) -> CaseData:
        case = self.case
        image_series, structure_paths = self._index(sub_progress(progress, 0.0, 0.2))
        if not image_series and not structure_paths:
            raise DataError(case.root, f"case {case.case_id} has no DICOM images or RTSTRUCTs under "
                                       f"{', '.join(map(str, case.folders or [case.root]))}")
        for problem in case.problems:  # found while discovering (e.g. a stray slice in a series folder)
            self.finding(WARNING, "sts.discovery", problem)
        images = self._read_images(image_series, sub_progress(progress, 0.2, 0.8))
        data = CaseData(case=case, volumes=[image.data for image in images])
        data.metrics.update({"reference_method": {}, "reference_image": {}})
        self._read_structures(structure_paths, images, data, sub_progress(progress, 0.8, 1.0))
        self._read_clinical(data)
        data.findings = self.findings
        data.metrics["gtv_volume_cm3"] = segment_volumes_cm3(data)
        data.metrics["rtstruct_count"] = len(structure_paths)
        # Corrections write DICOM SEG on these series without reading the source folders again.
        data.provenance["reference_volumes"] = {image.volume.series_instance_uid: image.volume for image in images}
        data.provenance["rtstruct_files"] = list(structure_paths)
        report(progress, f"Read {case.case_id}", 1.0)
        return data

    def _index(self, progress: Optional[ProgressCallback]) -> Tuple[List[_Series], List[Path]]:
        from ..formats.dicom_series import group_by_series, scan_folder
        from ..formats.rtstruct import RTSTRUCT_SOP_CLASS_UID

        instances: List[InstanceHeader] = []
        for folder in self.case.folders or [self.case.root]:
            scan = scan_folder(Path(folder), progress)
            instances.extend(scan.instances)
            for error in scan.errors:
                self.finding(WARNING, "sts.unreadable_file", str(error), path=error.path)
        instances += self._rtstructs_elsewhere_in_own_studies(instances, RTSTRUCT_SOP_CLASS_UID)
        instances, claimed_structures = self._own_instances(instances, RTSTRUCT_SOP_CLASS_UID)
        # In series order, not path order: what loads must not depend on how the folders are named.
        own_structures = {i.path: i for i in instances
                          if i.sop_class_uid == RTSTRUCT_SOP_CLASS_UID or i.modality == "RTSTRUCT"}
        structures = [i.path for i in sorted(own_structures.values(),
                                             key=lambda i: (i.study_date, i.study_instance_uid,
                                                            i.series_description.lower(), i.series_instance_uid,
                                                            i.path.name))]
        structures += sorted(set(claimed_structures) - set(own_structures))
        images = [_Series(uid, members) for uid, members in group_by_series(
            [i for i in instances if i.modality in IMAGE_MODALITIES and i.path not in structures]).items()]
        images.sort(key=lambda s: (s.first.study_date, s.first.study_instance_uid,
                                   s.first.series_number or 0, s.first.series_description))
        return images, structures

    def _read_clinical(self, data: CaseData) -> None:
        """The patient's row(s) of the clinical spreadsheet as a table under the patient (as CRLM's).

        Nothing is added when there is no spreadsheet or no row: the checks
        report those (:func:`clinical_findings`). A spreadsheet that became
        unreadable since the cases were listed is a warning naming it.
        """
        case = self.case
        if case.clinical_table is None or case.clinical_error:
            return
        try:
            clinical = self.clinical_table(case.clinical_table)
        except DataError as error:
            self.finding(WARNING, "sts.clinical_unreadable", str(error), path=str(case.clinical_table))
            return
        rows = clinical_rows(clinical, case.case_id)
        if rows.empty:
            return
        data.tables.append(TableData(
            "clinical row", f"{case.case_id} clinical data", clinical_row_table(rows),
            Placement(patient_id=case.case_id, patient_name=case.case_id),
            {"collection": self.key, "case_id": case.case_id, "sts.clinical_source": str(case.clinical_table)}))

    def _rtstructs_elsewhere_in_own_studies(self, instances: Sequence["InstanceHeader"], rtstruct_class: str
                                            ) -> List["InstanceHeader"]:
        """RTSTRUCTs outside the case's folders whose study is one of the case's but whose PatientID is another
        patient's (a relabelled or misfiled structure set): discovery files them under that other PatientID,
        but they claim this patient's images, so the identity check must see them and refuse them by name."""
        studies = {instance.study_instance_uid for instance in instances if instance.study_instance_uid}
        seen = {instance.path for instance in instances}
        if not studies:
            return []
        return [instance for instance in _sts_inventory(Path(self.case.root)).instances
                if (instance.sop_class_uid == rtstruct_class or instance.modality == "RTSTRUCT")
                and instance.study_instance_uid in studies and instance.path not in seen]

    def _own_instances(self, instances: Sequence["InstanceHeader"], rtstruct_class: str
                       ) -> Tuple[List["InstanceHeader"], List[Path]]:
        """The case's instances, and other patients' RTSTRUCTs that claim its place (to be refused by name).

        A flat export holds several patients in one folder: other patients'
        files are left to their own cases silently, unless they lie in a
        folder of this case only (then the images are named in a warning) or
        are RTSTRUCTs in one of this case's studies (then they go on to the
        identity check, which refuses them with a message naming the file).
        Files whose PatientID is this case's spelled differently
        (:func:`patient_key`) are the case's, named in a warning.
        """
        wanted = self.case.case_id.upper()
        own: List["InstanceHeader"] = []
        spelled: Dict[str, List[Path]] = {}
        foreign: List["InstanceHeader"] = []
        for instance in instances:
            patient_id = instance.patient_id.strip()
            if not patient_id or patient_id.upper() == wanted:
                own.append(instance)
            elif patient_key(patient_id) == patient_key(wanted):
                own.append(instance)
                spelled.setdefault(patient_id, []).append(instance.path)
            else:
                foreign.append(instance)
        for spelling, paths in sorted(spelled.items()):
            self.finding(WARNING, "sts.patient_id_spelling",
                         f"{len(paths)} file(s) give PatientID {spelling!r}, spelled differently from "
                         f"{self.case.case_id!r} ({_some_names(paths)}); read as {self.case.case_id}'s",
                         path=str(paths[0]))
        studies = {instance.study_instance_uid for instance in own if instance.study_instance_uid}
        dedicated = [Path(folder) for folder in self.case.folders if Path(folder) != Path(self.case.root)]
        claimed: List[Path] = []
        misplaced: Dict[str, List[Path]] = {}
        for instance in foreign:
            in_own_folder = any(folder in instance.path.parents for folder in dedicated)
            if instance.sop_class_uid == rtstruct_class or instance.modality == "RTSTRUCT":
                if in_own_folder or instance.study_instance_uid in studies:
                    claimed.append(instance.path)
            elif in_own_folder:
                misplaced.setdefault(instance.patient_id.strip(), []).append(instance.path)
        for patient_id, paths in sorted(misplaced.items()):
            self.finding(WARNING, "sts.other_patient_files",
                         f"{len(paths)} file(s) in {self.case.case_id}'s folder belong to patient {patient_id!r} "
                         f"({_some_names(paths)}); not read as {self.case.case_id}'s", path=str(paths[0]))
        return own, claimed

    def _placement(self, instance: "InstanceHeader") -> Placement:
        return Placement(patient_id=self.case.case_id, patient_name=self.case.case_id,
                         study_uid=instance.study_instance_uid, study_name=_study_name(instance))

    def _read_images(self, series_list: Sequence[_Series], progress: Optional[ProgressCallback]) -> List[_ReadImage]:
        from ..formats.dicom_series import read_series, split_stackable
        from ..formats.rtstruct import volume_kind
        from ..formats.suv import scale_attributes_of_file

        images: List[_ReadImage] = []
        for index, series in enumerate(series_list):
            first = series.first
            report(progress, f"Reading {first.modality} {first.series_description}", index / max(1, len(series_list)))
            stackable, left_out = split_stackable(series.instances)
            for problem in left_out:
                self.finding(WARNING, "sts.slice_left_out", f"{first.modality} series {first.series_description!r}: "
                             f"{problem}; left out of the volume", path=problem.path)
            try:
                if not stackable:
                    raise DataError(first.path.parent, "no slice of the series can be stacked")
                volume = read_series(stackable)
            except DataError as error:
                self.finding(ERROR, "sts.series_not_loaded", f"{first.modality} series "
                             f"{first.series_description!r} was not loaded: {error}", path=error.path)
                continue
            kind, aligned = volume_kind(first.modality, first.series_description)
            name = _unique_name(f"{self.case.case_id} {first.modality} "
                                f"{first.series_description or first.series_instance_uid[-8:]}", self.names)
            windows = _CT_WINDOWS if first.modality == "CT" else []
            if first.modality != "CT" and volume.window is not None:
                windows = [WindowPreset("DICOM", volume.window[0], volume.window[1])]
            images.append(_ReadImage(volume, VolumeData(
                key=volume.series_instance_uid, name=name, voxels=volume.voxels, ijk_to_ras=volume.ijk_to_ras,
                placement=self._placement(first), windows=windows,
                color_table=_PET_COLOR_NODE_ID if first.modality == "PT" else None,
                # The node uses the voxels read (never changed afterwards): one copy in memory, not two.
                share_memory=True,
                attributes={"collection": self.key, "case_id": self.case.case_id, "modality": first.modality,
                             "kind": kind, "aligned_to_pet": str(int(aligned)),
                             "series_instance_uid": first.series_instance_uid,
                             "series_description": first.series_description,
                             "frame_of_reference_uid": first.frame_of_reference_uid,
                             # SUVbw scale from the PET headers, so previews and users see SUV where possible.
                             **(scale_attributes_of_file(first.path) if first.modality == "PT" else {})},
            )))
            for problem in volume.problems():
                self.finding(WARNING, "sts.slice_stack", f"{name}: {problem}", node_name=name,
                             path=str(first.path.parent))
        return images

    def _read_structures(self, paths: Sequence[Path], images: Sequence[_ReadImage], data: CaseData,
                         progress: Optional[ProgressCallback]) -> None:
        from ..formats.identity import CHECK_PATIENT, identity_findings
        from ..formats.rtstruct import choose_reference_image, read_rtstruct

        volumes = [image.volume for image in images]
        for index, path in enumerate(paths):
            report(progress, f"Converting {path.name}", index / max(1, len(paths)))
            try:
                structure = read_rtstruct(path)
            except DataError as error:
                self.finding(ERROR, "sts.rtstruct_unreadable", str(error), path=str(path))
                continue
            for problem in structure.problems:
                self.finding(WARNING, "sts.rtstruct_problem", f"{path.name}: {problem}", path=str(path))
            if not self._same_patient(structure, images):
                continue
            choice = choose_reference_image(structure, volumes)
            if choice is None:
                for roi in structure.rois:
                    self.finding(ERROR, "sts.roi_without_image",
                                 f"{path.name} ({structure.description}) ROI {roi.name!r}: no loaded image shares "
                                 f"its frame of reference {structure.frame_of_reference_uid or '(none)'} or holds "
                                 "the images it references", path=str(path))
                continue
            self.findings.extend(finding for finding in identity_findings(
                structure, images[choice.index].volume.instances[:1], path, self.case.case_id,
                spelling_key=patient_key) if finding.check != CHECK_PATIENT)
            self._convert(structure, choice, images[choice.index], data)

    def _same_patient(self, structure: "StructureSet", images: Sequence[_ReadImage]) -> bool:
        """True if the RTSTRUCT is this patient's; else an error finding naming the file refuses it.

        Another patient's RTSTRUCT whose references were rewritten would be
        drawn, plausibly, on this patient's images; its PatientID is compared
        with the images' (or the case's, without images). A spelling that
        :func:`patient_key` takes as the same patient is a warning.
        """
        from ..formats.identity import CHECK_PATIENT, Identity, identity_findings

        references = [image.volume.instances[0] for image in images] or [Identity(self.case.case_id, "", "")]
        findings = [finding for finding in identity_findings(structure, references, structure.path,
                                                             self.case.case_id, spelling_key=patient_key)
                    if finding.check == CHECK_PATIENT]
        refused = [finding for finding in findings if finding.severity == ERROR]
        for finding in refused:
            self.findings.append(replace(finding, message=f"{finding.message}; {structure.path.name} is refused, "
                                                          f"not drawn on {self.case.case_id}'s images"))
        if not refused:
            self.findings.extend(findings)
        return not refused

    def _segments(self, structure: "StructureSet", image: _ReadImage) -> Tuple[List[SegmentSpec], List[Finding]]:
        """The closed-planar ROIs of ``structure`` rasterised on ``image``, and the rasterisation findings."""
        from ..formats.rtstruct import raster_findings, rasterize_roi_on_volume

        from ..colors import distinct_colors

        specs: List[SegmentSpec] = []
        findings: List[Finding] = []
        used_ids: List[str] = []
        # ROIs the file gives no colour (and that are not a GTV) get distinct colours, never one shared grey-green.
        uncoloured = [roi.number for roi in structure.rois if not roi.display_color_given
                      and normalise_roi_name(roi.name) not in _SEGMENT_COLORS]
        fallback = dict(zip(uncoloured, distinct_colors(len(uncoloured), avoid=_SEGMENT_COLORS.values())))
        for roi in structure.rois:
            result = rasterize_roi_on_volume(roi, image.volume)
            segment_name = normalise_roi_name(roi.name)
            segment_id = segment_name if segment_name not in used_ids else roi.name
            used_ids.append(segment_id)
            findings.extend(raster_findings(structure, roi, result, "sts.rtstruct", self.case.case_id, "",
                                            segment_id, image.data.name))
            if not roi.closed_planar:
                continue
            mask, offset = cropped_mask(result.mask)
            specs.append(SegmentSpec(name=segment_id,
                                     color=_SEGMENT_COLORS.get(segment_id, fallback.get(roi.number, roi.color)),
                                     mask=mask, offset=offset, segment_id=segment_id,
                                     tags={ORIGINAL_NAME_TAG: roi.name, ROI_NUMBER_TAG: str(roi.number)}))
        return specs, findings

    def _convert(self, structure: "StructureSet", choice: "ReferenceChoice", image: _ReadImage,
                 data: CaseData) -> None:
        path, label, image_name = structure.path, structure.description, image.data.name
        specs, raster = self._segments(structure, image)
        node_name = f"{self.case.case_id} {label}"
        if specs:  # a node will have this name: unique, as the scene would make it
            node_name = _unique_name(node_name, self.names)
            data.segmentations.append(SegmentationData(
                key=str(path), name=node_name, reference=image.data.key, segments=specs,
                placement=image.data.placement,
                attributes={"collection": self.key, "case_id": self.case.case_id, "rtstruct": str(path),
                            "series_description": label, "reference_method": choice.method,
                            "reference_series_instance_uid": image.volume.series_instance_uid,
                            # Where the reference image's files are (for scripts; corrections use provenance).
                            "reference_folder": str(image.volume.instances[0].path.parent)}))
        self.findings.extend(replace(finding, node_name=node_name) for finding in raster)
        data.metrics["reference_method"][node_name] = choice.method
        data.metrics["reference_image"][node_name] = image_name
        if choice.method == "frame_of_reference":
            self.finding(WARNING if choice.ambiguous else INFO, "sts.reference_by_frame_of_reference",
                         f"{path.name} ({label}) references images that are not on disk; matched to {image_name!r} "
                         f"by frame of reference ({choice.reason})"
                         + ("; the choice is ambiguous" if choice.ambiguous else ""),
                         path=str(path), node_name=node_name)
        if choice.kind_mismatch:
            self.finding(WARNING, "sts.reference_kind_mismatch",
                         f"{path.name} ({label}) names another kind of image than {image_name!r}, and no image of "
                         "that kind shares its frame of reference; its contours were rasterised on this one",
                         path=str(path), node_name=node_name)


# ---------------------------------------------------------------------- checks
def clinical_findings(case: SarcomaCase) -> List[Finding]:
    """The clinical table could not be read, or has no row for the patient."""
    if case.clinical_error:
        return [Finding(WARNING, "sts.clinical_unreadable", case.clinical_error, case_id=case.case_id,
                        path=str(case.clinical_table or ""))]
    if case.clinical_table is not None and not case.diagnosis:
        return [Finding(WARNING, "sts.no_clinical_row", f"{case.clinical_table.name} has no row for {case.case_id}",
                        case_id=case.case_id, path=str(case.clinical_table))]
    return []


def rtstruct_count_findings(case_id: str, count: int) -> List[Finding]:
    """The patient has not the collection's six RTSTRUCTs (none is a warning; another number is noted)."""
    if count == 0:
        return [Finding(WARNING, "sts.rtstruct_count", f"{case_id} has no RTSTRUCT (the collection has "
                                                       f"{EXPECTED_RTSTRUCTS_PER_PATIENT} per patient)",
                        case_id=case_id, value=0.0)]
    if count != EXPECTED_RTSTRUCTS_PER_PATIENT:
        return [Finding(INFO, "sts.rtstruct_count", f"{case_id} has {count} RTSTRUCT(s); the TCIA collection has "
                                                    f"{EXPECTED_RTSTRUCTS_PER_PATIENT} per patient",
                        case_id=case_id, value=float(count))]
    return []


def gtv_volume_findings(data: CaseData) -> List[Finding]:
    """The volume of every GTV segment on its image, in cm³ (for the review table)."""
    findings = []
    for segmentation_name, volumes in segment_volumes_cm3(data).items():
        segmentation = next(s for s in data.segmentations if s.name == segmentation_name)
        image_name = data.volume(segmentation.reference).name
        for spec in segmentation.segments:
            segment_id = spec.segment_id or spec.name
            if not segment_id.startswith("GTV"):
                continue
            cm3 = volumes[segment_id]
            findings.append(Finding(INFO, "sts.gtv_volume", f"{segmentation_name}: {segment_id} "
                                    f"({spec.tags.get(ORIGINAL_NAME_TAG, segment_id)}) on {image_name}: {cm3:.1f} cm³",
                                    case_id=data.case.case_id, path=segmentation.attributes.get("rtstruct", ""),
                                    node_name=segmentation_name, segment_id=segment_id, value=cm3))
    return findings


# ---------------------------------------------------------------------- collection
class SoftTissueSarcomaCollection(Collection):
    """TCIA Soft-tissue-Sarcoma in NBIA, IDC or mirp layout."""

    key = "soft_tissue_sarcoma"
    title = "Soft-tissue-Sarcoma (TCIA)"
    looks_for = ("PatientIDs STS_001 in the DICOM headers (or, if no collection matches, images with an RTSTRUCT), "
                 "patient folders STS_001, a Soft-tissue-Sarcoma folder or INFOclinical_STS.xlsx")
    patient_id_patterns = ("STS_nnn",)
    record_type = SarcomaCase

    @classmethod
    def detect(cls, root: Path) -> bool:
        root = Path(root)
        if not root.is_dir():
            return False
        from .hermessi import HermessiSarcomaMriCollection

        if HermessiSarcomaMriCollection.detect(root):
            return False
        if root.name.lower() in COLLECTION_NAMES or PATIENT_FOLDER.match(root.name):
            return True
        for _, folders, files in _walk(root, SEARCH_DEPTH - 1):
            if any(PATIENT_FOLDER.match(name) or name.lower() in COLLECTION_NAMES for name in folders):
                return True
            if any(CLINICAL_NAME.match(name) for name in files):
                return True
        return bool(_sts_inventory(root).instances_by_case(sts_case_id))

    @classmethod
    def detect_from_annotations(cls, root: Path) -> bool:
        """Images with an RTSTRUCT, whatever the PatientIDs: loaded as this collection when no other claims it."""
        series = [entry for patient in _sts_inventory(Path(root)).patients.values() for entry in patient.series]
        return any(entry.is_rtstruct for entry in series) and \
            any(entry.modality in IMAGE_MODALITIES for entry in series)

    # ------------------------------------------------------------------ discovery
    def _clinical(self) -> Tuple[Optional["pd.DataFrame"], Optional[Path], Optional[DataError]]:
        path = _find_clinical(self.root)
        if path is None:
            return None, None, None
        try:
            return read_clinical_table(path), path, None
        except DataError as error:
            return None, path, error

    def discover_cases(self, progress: Optional[ProgressCallback] = None) -> List[SarcomaCase]:
        """Every patient in the headers below the root, whatever the folders are named or nested.

        Cases are PatientIDs ``STS_nnn`` (or, when there is none, every patient
        with an RTSTRUCT); each case's folders are the largest ones holding its
        files and no other patient's (:meth:`.DicomInventory.case_folders`).
        """
        from ..formats.dicom_inventory import stray_series_problems

        report(progress, "Reading DICOM headers", 0.0)
        inventory = _sts_inventory(self.root, sub_progress(progress, 0.0, 0.9))
        by_case = inventory.instances_by_case(self._case_ids(inventory))
        clinical, clinical_path, clinical_error = self._clinical()
        cases = []
        for patient_id, instances in by_case.items():
            diagnosis, facts = _clinical_facts(clinical, patient_id) if clinical is not None else ("", {})
            structures = sum(1 for instance in instances if instance.modality == "RTSTRUCT")
            images = {instance.series_instance_uid for instance in instances if instance.modality in IMAGE_MODALITIES}
            cases.append(SarcomaCase(
                collection=self.key, case_id=patient_id, root=self.root, diagnosis=diagnosis,
                problems=stray_series_problems(instances),
                summary={"image series": len(images), "RTSTRUCT": structures, **facts},
                folders=inventory.case_folders(instances), clinical_table=clinical_path,
                clinical_error=str(clinical_error) if clinical_error is not None else ""))
        report(progress, f"Found {len(cases)} patient(s)", 1.0)
        return cases

    @staticmethod
    def _case_ids(inventory: "DicomInventory") -> Callable[[str], Optional[str]]:
        """PatientID -> case ID: STS IDs; without any, the IDs of patients with an RTSTRUCT (upper case)."""
        from ..formats.dicom_inventory import patient_key

        if inventory.instances_by_case(sts_case_id):
            return sts_case_id
        with_rtstruct = {key: key for key, patient in inventory.patients.items()
                         if key and any(series.is_rtstruct for series in patient.series)}
        return lambda patient_id: with_rtstruct.get(patient_key(patient_id))

    # ------------------------------------------------------------------ reading and checks
    def read_case(self, case: SarcomaCase, progress: Optional[ProgressCallback] = None) -> CaseData:
        """The case's CT/PET/MR volumes and one segmentation per RTSTRUCT, as plain data.

        The patient's clinical spreadsheet row(s) become a table under the
        patient (empty cells empty, never "nan").

        Metrics: ``reference_image`` and ``reference_method`` (segmentation ->
        image it was rasterised on, and how it was matched), ``gtv_volume_cm3``,
        ``rtstruct_count``. ``provenance["reference_volumes"]`` keeps each
        image series read (by SeriesInstanceUID) for writing corrections.

        :raises DataError: naming the folders, if the case has no image and no RTSTRUCT.
        """
        return _CaseReader(self.key, case, self._clinical_table).read(progress)

    def _clinical_table(self, path: Path) -> "pd.DataFrame":
        """The clinical spreadsheet at ``path``, read once per collection object (every case reads it)."""
        cache: Dict[Path, "pd.DataFrame"] = self.__dict__.setdefault("_clinical_tables", {})
        if path not in cache:
            cache[path] = read_clinical_table(path)
        return cache[path]

    def check_case(self, data: CaseData) -> List[Finding]:
        """Clinical row, RTSTRUCT count and GTV volumes."""
        case = data.case
        return [*clinical_findings(case), *rtstruct_count_findings(case.case_id, data.metrics.get("rtstruct_count", 0)),
                *gtv_volume_findings(data)]

    # ------------------------------------------------------------------ corrections
    def save_corrections(self, loaded: LoadedCase, scene: Any, output_folder: Path,
                         progress: Optional[ProgressCallback] = None) -> List[Path]:
        """Each RTSTRUCT-derived segmentation, as edited, as a DICOM SEG: ``<out>/<case_id>/<description>.dcm``.

        ``<description>`` is the RTSTRUCT's SeriesDescription (``RTstruct_CT``...)
        made a safe file name. The SEG references the image series the
        contours were rasterised on (as read with the case: the source
        folders are not scanned again) and holds the edited voxels exactly;
        segments keep their names, with GTV_Mass coded as Neoplasm and
        GTV_Edema as Edema unless the reviewer gave codes.

        Writing RTSTRUCT is out of scope: it would need contours traced from
        the edited voxels, a lossy step, while a SEG stores the voxels as edited.

        :raises DataError: if the folder is refused (inside the collection, or a
            target is a source file), no segmentation of the case is left in the
            scene, or a segmentation's reference image is not the one read.
        """
        from ..formats.dicom_seg import write_seg
        from ..scene.builder import ATTRIBUTE_PREFIX

        def description_of(node: Any) -> str:
            return node.GetAttribute(ATTRIBUTE_PREFIX + "series_description") or node.GetName()

        case = loaded.case
        plan = [(node, description_of(node), target)
                for node, target in self.plan_segmentation_files(loaded, scene, output_folder, description_of)]
        references = [_reference_volume(loaded, node, target) for node, _, target in plan]
        written = []
        for index, ((node, description, target), reference) in enumerate(zip(plan, references)):
            report(progress, f"Writing {target.name}", index / len(plan))
            try:
                segments = _coded_segments(node, reference)
            except ValueError as error:  # a segment no longer on the reference grid
                raise DataError(target, f"{node.GetName()}: {error}") from error
            written.append(write_seg(target, segments, reference,
                                     series_description=f"{description[:52]} (corrected)"))
        report(progress, f"Saved {len(written)} SEG file(s) of {case.case_id}", 1.0)
        return written


def _reference_volume(loaded: LoadedCase, node: Any, target: Path) -> "DicomVolume":
    """The image series ``node`` was rasterised on, as read with the case.

    :raises DataError: naming ``target``, if the case was not read with its
        provenance or the node's reference volume is no longer on that grid.
    """
    import numpy as np

    from ..scene.builder import ATTRIBUTE_PREFIX, SceneBuilder

    uid = node.GetAttribute(ATTRIBUTE_PREFIX + "reference_series_instance_uid") or ""
    volumes = loaded.data.provenance.get("reference_volumes", {}) if loaded.data is not None else {}
    volume = volumes.get(uid)
    if volume is None:
        raise DataError(target, f"{node.GetName()} was drawn on image series {uid or '(unknown)'}, which was not "
                                "read with this case; load the case again to save it")
    reference_node = node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole())
    if reference_node is not None:
        shape, ijk_to_ras = SceneBuilder.volume_geometry(reference_node)
        if tuple(shape) != tuple(volume.voxels.shape) or not np.allclose(ijk_to_ras, volume.ijk_to_ras, atol=1e-4):
            raise DataError(target, f"{node.GetName()}: its reference volume {reference_node.GetName()!r} is no "
                                    f"longer on the grid of image series {uid} as read")
    return volume


def _coded_segments(node: Any, reference: "DicomVolume") -> List[Any]:
    """The node's segments for :func:`~..formats.dicom_seg.write_seg`, with GTV codes where none were given.

    The original ROI name (``GTV_Res+edema``...) becomes the segment description.
    """
    from pydicom.sr.codedict import codes

    from ..formats.dicom_seg import TISSUE, SegCode
    from ..scene.builder import segment_tag
    from ..scene.segment_export import segments_from_node

    def code(concept: Any) -> SegCode:
        return SegCode(concept.value, concept.scheme_designator, concept.meaning)

    category = code(codes.SCT.MorphologicallyAbnormalStructure)
    types = {"GTV_Mass": code(codes.SCT.Neoplasm), "GTV_Edema": code(codes.SCT.Edema)}
    segmentation = node.GetSegmentation()
    exported = []
    for index, segment in enumerate(segments_from_node(node, reference)):
        source = segmentation.GetSegment(segmentation.GetNthSegmentID(index))
        kind = normalise_roi_name(segmentation.GetNthSegmentID(index))
        if segment.category == TISSUE and segment.type == TISSUE and kind in types:
            segment = replace(segment, category=category, type=types[kind])
        original = segment_tag(source, ORIGINAL_NAME_TAG)
        if original and not segment.description:
            segment = replace(segment, description=original)
        exported.append(segment)
    return exported


COLLECTIONS = [SoftTissueSarcomaCollection]


def _sts_inventory(root: Path, progress: Optional[ProgressCallback] = None) -> "DicomInventory":
    from ..formats.dicom_inventory import inventory_or_empty  # lazily: detection imports stay light

    return inventory_or_empty(root, progress)
