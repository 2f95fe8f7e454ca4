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
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from ..formats.dicom_series import (
    DicomVolume, InstanceHeader, group_by_series, mixed_series_folders, read_series, scan_folder, split_stackable,
)
from ..errors import DataError
from ..findings import ERROR, INFO, WARNING, Finding
from ..progress import ProgressCallback, report, sub_progress
from ..registry import CaseInfo, Collection, LoadedCase
from ..formats.rtstruct import (
    RTSTRUCT_SOP_CLASS_UID, ReferenceChoice, StructureSet, choose_reference_image, raster_findings,
    rasterize_roi_on_volume, read_rtstruct, volume_kind,
)
from ..scene.builder import SceneBuilder, SegmentSpec, WindowPreset
from ..formats.suv import scale_attributes_of_file
from ..formats.tables import read_table

__all__ = ["SoftTissueSarcomaCollection", "COLLECTIONS", "normalise_roi_name", "read_clinical_table",
           "EXPECTED_RTSTRUCTS_PER_PATIENT"]

PATIENT_FOLDER = re.compile(r"^STS[_-]?\d{1,4}$", re.IGNORECASE)
COLLECTION_NAMES = ("soft-tissue-sarcoma", "soft_tissue_sarcoma", "sts_images")
CLINICAL_NAME = re.compile(r"infoclinical.*sts.*\.(xlsx|xls|csv)$", re.IGNORECASE)
#: Every patient in the TCIA collection has exactly six RTSTRUCT series (IDC v25).
EXPECTED_RTSTRUCTS_PER_PATIENT = 6
IMAGE_MODALITIES = ("CT", "PT", "MR")
#: How deep below the chosen folder patient folders are looked for (NBIA: parent/manifest/Collection/STS_001).
SEARCH_DEPTH = 4

_SEGMENT_COLORS = {"GTV_Mass": (0.86, 0.16, 0.16), "GTV_Edema": (0.95, 0.75, 0.2)}
_CT_WINDOWS = [WindowPreset("Soft tissue", 400.0, 40.0), WindowPreset("Bone", 2000.0, 400.0)]
_SUFFIX = re.compile(r"(_?(ct|pet|pt|mr|mri|t1|t2|t2fs|stir|aligned))+$", re.IGNORECASE)


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


def _find_clinical(root: Path) -> Optional[Path]:
    for directory, folders, files in os.walk(root):
        depth = len(Path(directory).relative_to(root).parts)
        folders[:] = [] if depth >= 2 else sorted(f for f in folders if not PATIENT_FOLDER.match(f))
        for name in sorted(files):
            if CLINICAL_NAME.match(name) and not name.startswith("~$"):
                return Path(directory) / name
    return None


def read_clinical_table(path: Path) -> pd.DataFrame:
    """The clinical table indexed by patient ID (upper case), whatever row holds the header.

    :raises DataError: naming the file, when no ``Patient ID`` column is found.
    """
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


def _patient_folders(root: Path) -> Dict[str, List[Path]]:
    found: Dict[str, List[Path]] = {}
    if PATIENT_FOLDER.match(root.name):
        return {root.name.upper(): [root]}
    for directory, folders, _ in os.walk(root):
        depth = len(Path(directory).relative_to(root).parts)
        keep = []
        for name in sorted(folders):
            if PATIENT_FOLDER.match(name):
                found.setdefault(name.upper(), []).append(Path(directory) / name)
            elif depth + 1 < SEARCH_DEPTH:
                keep.append(name)
        folders[:] = keep
    return found


def _study_name(instance: InstanceHeader) -> str:
    date = instance.study_date
    text = instance.study_description or "Study"
    return f"{text} ({date[:4]}-{date[4:6]}-{date[6:]})" if len(date) == 8 else text


@dataclass
class _Series:
    uid: str
    instances: List[InstanceHeader]

    @property
    def first(self) -> InstanceHeader:
        return self.instances[0]


class SoftTissueSarcomaCollection(Collection):
    """TCIA Soft-tissue-Sarcoma in NBIA, IDC or mirp layout."""

    key = "soft_tissue_sarcoma"
    title = "Soft-tissue-Sarcoma (TCIA)"

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
        for directory, folders, files in os.walk(root):
            depth = len(Path(directory).relative_to(root).parts)
            if any(PATIENT_FOLDER.match(name) for name in folders):
                return True
            if any(CLINICAL_NAME.match(name) for name in files):
                return True
            if any(name.lower() in COLLECTION_NAMES for name in folders):
                return True
            if depth + 1 >= SEARCH_DEPTH:
                folders[:] = []
        return False

    # ------------------------------------------------------------------ discovery
    def _clinical(self) -> Tuple[Optional[pd.DataFrame], Optional[Path], Optional[DataError]]:
        path = _find_clinical(self.root)
        if path is None:
            return None, None, None
        try:
            return read_clinical_table(path), path, None
        except DataError as error:
            return None, path, error

    def discover_cases(self, progress: Optional[ProgressCallback] = None) -> List[CaseInfo]:
        report(progress, "Looking for STS patient folders", 0.0)
        folders = _patient_folders(self.root)
        clinical, clinical_path, clinical_error = self._clinical()
        if not folders:
            folders = self._patients_from_headers(progress)
        cases = []
        for patient_id in sorted(folders):
            summary: Dict[str, Any] = {"folders": len(folders[patient_id])}
            diagnosis = ""
            if clinical is not None and patient_id in clinical.index:
                row = clinical.loc[patient_id]
                if isinstance(row, pd.DataFrame):
                    row = row.iloc[0]
                diagnosis = str(row.get("Histological type", "") or "").strip()
                for column in ("Sex", "Age", "Site of primary STS", "MSKCC type", "Grade"):
                    if column in row.index and pd.notna(row[column]):
                        summary[column] = row[column]
            files: Dict[str, Any] = {"folders": folders[patient_id]}
            if clinical_path is not None:
                files["clinical"] = clinical_path
            if clinical_error is not None:
                files["clinical_error"] = str(clinical_error)
            cases.append(CaseInfo(self.key, patient_id, self.root, diagnosis, files, summary))
        report(progress, f"Found {len(cases)} patient(s)", 1.0)
        return cases

    def _patients_from_headers(self, progress: Optional[ProgressCallback]) -> Dict[str, List[Path]]:
        """Patients named by PatientID when no folder is named like a patient (a flat export)."""
        scan = scan_folder(self.root, sub_progress(progress, 0.0, 0.9))
        patients: Dict[str, List[Path]] = {}
        for instance in scan.instances:
            if instance.patient_id:
                patients.setdefault(instance.patient_id.upper(), [self.root])
        return patients

    # ------------------------------------------------------------------ loading
    def load_case(self, case: CaseInfo, builder: SceneBuilder,
                  progress: Optional[ProgressCallback] = None) -> LoadedCase:
        loaded = LoadedCase(case=case)
        if case.files.get("clinical_error"):
            loaded.findings.append(Finding(WARNING, "sts.clinical_unreadable", case.files["clinical_error"],
                                           case_id=case.case_id, path=str(case.files.get("clinical", ""))))
        elif case.files.get("clinical") and not case.diagnosis:
            clinical_path = Path(case.files["clinical"])
            loaded.findings.append(Finding(WARNING, "sts.no_clinical_row",
                                           f"{clinical_path.name} has no row for {case.case_id}",
                                           case_id=case.case_id, path=str(clinical_path)))
        image_series, structure_paths = self._index_case(case, loaded, sub_progress(progress, 0.0, 0.2))
        if not image_series and not structure_paths:
            raise DataError(case.root, f"case {case.case_id} has no DICOM images or RTSTRUCTs under "
                                       f"{', '.join(map(str, case.files.get('folders', [])))}")
        with builder.transaction():
            patient = builder.patient_item(case.case_id)
            volumes, nodes = self._load_images(case, image_series, builder, patient, loaded,
                                               sub_progress(progress, 0.2, 0.8))
            self._load_structures(case, structure_paths, volumes, nodes, builder, patient, loaded,
                                  sub_progress(progress, 0.8, 1.0))
        self._count_findings(case, structure_paths, loaded)
        report(progress, f"Loaded {case.case_id}", 1.0)
        return loaded

    def _index_case(self, case: CaseInfo, loaded: LoadedCase,
                    progress: Optional[ProgressCallback]) -> Tuple[List[_Series], List[Path]]:
        instances: List[InstanceHeader] = []
        for folder in case.files.get("folders", [case.root]):
            scan = scan_folder(Path(folder), progress)
            instances.extend(scan.instances)
            for error in scan.errors:
                loaded.findings.append(Finding(WARNING, "sts.unreadable_file", str(error), case_id=case.case_id,
                                               path=error.path))
            for problem in mixed_series_folders(scan.instances):
                loaded.findings.append(Finding(WARNING, "sts.mixed_series_folder", str(problem),
                                               case_id=case.case_id, path=problem.path))
        # A flat export holds several patients in one folder: keep this case's.
        instances = [i for i in instances if not i.patient_id or i.patient_id.upper() == case.case_id.upper()]
        structures = sorted({i.path for i in instances
                             if i.sop_class_uid == RTSTRUCT_SOP_CLASS_UID or i.modality == "RTSTRUCT"})
        images = [_Series(uid, members) for uid, members in group_by_series(
            [i for i in instances if i.modality in IMAGE_MODALITIES and i.path not in structures]).items()]
        images.sort(key=lambda s: (s.first.study_date, s.first.study_instance_uid,
                                   s.first.series_number or 0, s.first.series_description))
        return images, structures

    def _load_images(self, case: CaseInfo, series_list: Sequence[_Series], builder: SceneBuilder, patient: int,
                     loaded: LoadedCase, progress: Optional[ProgressCallback]) -> Tuple[List[DicomVolume], List[Any]]:
        volumes: List[DicomVolume] = []
        nodes: List[Any] = []
        for index, series in enumerate(series_list):
            first = series.first
            report(progress, f"Reading {first.modality} {first.series_description}", index / max(1, len(series_list)))
            stackable, left_out = split_stackable(series.instances)
            for problem in left_out:
                loaded.findings.append(Finding(WARNING, "sts.slice_left_out",
                                               f"{first.modality} series {first.series_description!r}: {problem}; "
                                               "left out of the volume", case_id=case.case_id, path=problem.path))
            try:
                if not stackable:
                    raise DataError(first.path.parent, "no slice of the series can be stacked")
                volume = read_series(stackable)
            except DataError as error:
                loaded.findings.append(Finding(ERROR, "sts.series_not_loaded",
                                               f"{first.modality} series {first.series_description!r} was not "
                                               f"loaded: {error}", case_id=case.case_id, path=error.path))
                continue
            kind, aligned = volume_kind(first.modality, first.series_description)
            name = f"{case.case_id} {first.modality} {first.series_description or first.series_instance_uid[-8:]}"
            study = builder.study_item(patient, first.study_instance_uid, _study_name(first))
            presets = _CT_WINDOWS if first.modality == "CT" else []
            if first.modality != "CT" and volume.window is not None:
                presets = [WindowPreset("DICOM", volume.window[0], volume.window[1])]
            node = builder.add_volume(
                name, volume.voxels, volume.ijk_to_ras, window_presets=presets,
                color_node_id="vtkMRMLColorTableNodeInvertedGrey" if first.modality == "PT" else None,
                parent_item=study,
                attributes={"collection": self.key, "case_id": case.case_id, "modality": first.modality,
                            "kind": kind, "aligned_to_pet": int(aligned),
                            "series_instance_uid": first.series_instance_uid,
                            "series_description": first.series_description,
                            "frame_of_reference_uid": first.frame_of_reference_uid,
                            **(scale_attributes_of_file(first.path) if first.modality == "PT" else {})},
            )
            for problem in volume.problems():
                loaded.findings.append(Finding(WARNING, "sts.slice_stack", f"{name}: {problem}",
                                               case_id=case.case_id, node_name=node.GetName(),
                                               path=str(first.path.parent)))
            volumes.append(volume)
            nodes.append(node)
            loaded.volumes.append(node)
        return volumes, nodes

    def _load_structures(self, case: CaseInfo, paths: Sequence[Path], volumes: Sequence[DicomVolume],
                         nodes: Sequence[Any], builder: SceneBuilder, patient: int, loaded: LoadedCase,
                         progress: Optional[ProgressCallback]) -> None:
        volumes_cm3: Dict[str, Dict[str, float]] = loaded.metrics.setdefault("gtv_volume_cm3", {})
        methods: Dict[str, str] = loaded.metrics.setdefault("reference_method", {})
        references: Dict[str, str] = loaded.metrics.setdefault("reference_image", {})
        for index, path in enumerate(paths):
            report(progress, f"Converting {path.name}", index / max(1, len(paths)))
            try:
                structure = read_rtstruct(path)
            except DataError as error:
                loaded.findings.append(Finding(ERROR, "sts.rtstruct_unreadable", str(error), case_id=case.case_id,
                                               path=str(path)))
                continue
            for problem in structure.problems:
                loaded.findings.append(Finding(WARNING, "sts.rtstruct_problem", f"{path.name}: {problem}",
                                               case_id=case.case_id, path=str(path)))
            choice = choose_reference_image(structure, volumes)
            label = structure.description
            if choice is None:
                for roi in structure.rois:
                    loaded.findings.append(Finding(
                        ERROR, "sts.roi_without_image",
                        f"{path.name} ({label}) ROI {roi.name!r}: no loaded image shares its frame of reference "
                        f"{structure.frame_of_reference_uid or '(none)'} or holds the images it references",
                        case_id=case.case_id, path=str(path)))
                continue
            self._convert(case, structure, choice, volumes[choice.index], nodes[choice.index], builder, loaded,
                          volumes_cm3, methods, references)

    def _convert(self, case: CaseInfo, structure: StructureSet, choice: ReferenceChoice, volume: DicomVolume,
                 volume_node: Any, builder: SceneBuilder, loaded: LoadedCase, volumes_cm3: Dict[str, Dict[str, float]],
                 methods: Dict[str, str], references: Dict[str, str]) -> None:
        path = structure.path
        label = structure.description
        image_name = volume_node.GetName()
        voxel_mm3 = SceneBuilder.voxel_volume_mm3(volume.ijk_to_ras)
        specs: List[SegmentSpec] = []
        findings: List[Finding] = []
        volumes: List[Tuple[str, str, float]] = []
        used_ids: Dict[str, int] = {}
        for roi in structure.rois:
            result = rasterize_roi_on_volume(roi, volume)
            segment_name = normalise_roi_name(roi.name)
            segment_id = segment_name if segment_name not in used_ids else roi.name
            used_ids[segment_id] = 1
            findings.extend(raster_findings(structure, roi, result, "sts.rtstruct", case.case_id, "",
                                            segment_id, image_name))
            if not roi.closed_planar:
                continue
            volumes.append((segment_id, roi.name, result.voxel_count * voxel_mm3 / 1000.0))
            specs.append(SegmentSpec(
                name=segment_id,
                color=_SEGMENT_COLORS.get(segment_id, roi.color),
                mask=result.mask,
                segment_id=segment_id,
                tags={"SarcomaLungLiverBrowser.OriginalName": roi.name,
                      "SarcomaLungLiverBrowser.ROINumber": str(roi.number)},
            ))
        node_name = f"{case.case_id} {label}"
        if specs:
            study = builder.hierarchy.GetItemParent(builder.hierarchy.GetItemByDataNode(volume_node))
            node = builder.add_segmentation(
                node_name, volume_node, specs, parent_item=study,
                attributes={"collection": self.key, "case_id": case.case_id, "rtstruct": str(path),
                            "series_description": label, "reference_method": choice.method,
                            "reference_series_instance_uid": volume.series_instance_uid,
                            # Where the reference image's files are, to write corrections as DICOM SEG.
                            "reference_folder": str(volume.instances[0].path.parent)},
            )
            loaded.segmentations.append(node)
            node_name = node.GetName()
        methods[node_name] = choice.method
        references[node_name] = image_name
        if choice.method == "frame_of_reference":
            loaded.findings.append(Finding(
                WARNING if choice.ambiguous else INFO, "sts.reference_by_frame_of_reference",
                f"{path.name} ({label}) references images that are not on disk; matched to {image_name!r} by "
                f"frame of reference ({choice.reason})" + ("; the choice is ambiguous" if choice.ambiguous else ""),
                case_id=case.case_id, path=str(path), node_name=node_name))
        if choice.kind_mismatch:
            loaded.findings.append(Finding(
                WARNING, "sts.reference_kind_mismatch",
                f"{path.name} ({label}) names another kind of image than {image_name!r}, and no image of that "
                "kind shares its frame of reference; its contours were rasterised on this one", case_id=case.case_id, path=str(path),
                node_name=node_name))
        loaded.findings.extend(replace(finding, node_name=node_name) for finding in findings)
        for segment_id, original, cm3 in volumes:
            volumes_cm3.setdefault(node_name, {})[segment_id] = cm3
            if segment_id.startswith("GTV"):
                loaded.findings.append(Finding(INFO, "sts.gtv_volume",
                                               f"{node_name}: {segment_id} ({original}) on {image_name}: {cm3:.1f} cm³",
                                               case_id=case.case_id, path=str(path), node_name=node_name,
                                               segment_id=segment_id, value=cm3))

    def _count_findings(self, case: CaseInfo, structure_paths: Sequence[Path], loaded: LoadedCase) -> None:
        count = len(structure_paths)
        loaded.metrics["rtstruct_count"] = count
        if count == 0:
            loaded.findings.append(Finding(WARNING, "sts.rtstruct_count",
                                           f"{case.case_id} has no RTSTRUCT (the collection has "
                                           f"{EXPECTED_RTSTRUCTS_PER_PATIENT} per patient)",
                                           case_id=case.case_id, value=0.0))
        elif count != EXPECTED_RTSTRUCTS_PER_PATIENT:
            loaded.findings.append(Finding(INFO, "sts.rtstruct_count",
                                           f"{case.case_id} has {count} RTSTRUCT(s); the TCIA collection has "
                                           f"{EXPECTED_RTSTRUCTS_PER_PATIENT} per patient", case_id=case.case_id,
                                           value=float(count)))

    # ------------------------------------------------------------------ corrections
    def save_corrections(self, loaded: LoadedCase, scene: Any, output_folder: Path,
                         progress: Optional[ProgressCallback] = None) -> List[Path]:
        """Each RTSTRUCT-derived segmentation, as edited, as a DICOM SEG: ``<out>/<case_id>/<description>.dcm``.

        ``<description>`` is the RTSTRUCT's SeriesDescription (``RTstruct_CT``...)
        made a safe file name. The SEG references the image series the
        contours were rasterised on (read again from its folder) and holds the
        edited voxels exactly; segments keep their names, with GTV_Mass coded
        as Neoplasm and GTV_Edema as Edema unless the reviewer gave codes.

        Writing RTSTRUCT is out of scope: it would need contours traced from
        the edited voxels, a lossy step, while a SEG stores the voxels as edited.

        :raises DataError: if the folder is refused (inside the collection, or a
            target is a source file), no segmentation of the case is left in the
            scene, or a reference image series is gone.
        """
        from ..formats.dicom_seg import write_seg
        from ..scene.builder import ATTRIBUTE_PREFIX

        def description_of(node: Any) -> str:
            return node.GetAttribute(ATTRIBUTE_PREFIX + "series_description") or node.GetName()

        case = loaded.case
        plan = [(node, description_of(node), target)
                for node, target in self.plan_segmentation_files(loaded, scene, output_folder, description_of)]
        references: Dict[str, DicomVolume] = {}
        written = []
        for index, (node, description, target) in enumerate(plan):
            report(progress, f"Writing {target.name}", index / len(plan))
            reference = self._reference_volume(case, node, references)
            try:
                segments = _coded_segments(node, reference)
            except ValueError as error:  # a segment no longer on the reference grid
                raise DataError(target, f"{node.GetName()}: {error}") from error
            written.append(write_seg(target, segments, reference,
                                     series_description=f"{description[:52]} (corrected)"))
        report(progress, f"Saved {len(written)} SEG file(s) of {case.case_id}", 1.0)
        return written

    def _reference_volume(self, case: CaseInfo, node: Any, cache: Dict[str, DicomVolume]) -> DicomVolume:
        """The image series a segmentation was rasterised on, read again as at load (bad slices left out)."""
        import numpy as np

        from ..scene.builder import ATTRIBUTE_PREFIX

        uid = node.GetAttribute(ATTRIBUTE_PREFIX + "reference_series_instance_uid") or ""
        if uid in cache:
            return cache[uid]
        recorded = node.GetAttribute(ATTRIBUTE_PREFIX + "reference_folder")
        # The series must come back on the grid it was loaded on (a folder may hold only part of it).
        reference_node = node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole())
        expected = SceneBuilder.volume_geometry(reference_node) if reference_node is not None else None
        candidates = [[Path(recorded)]] if recorded else []
        candidates.append([Path(folder) for folder in case.files.get("folders", [case.root])])
        for folders in candidates:
            instances = [instance for folder in folders if Path(folder).is_dir()
                         for instance in scan_folder(Path(folder)).instances
                         if instance.series_instance_uid == uid and instance.modality in IMAGE_MODALITIES]
            stackable, _ = split_stackable(instances)
            if stackable:
                volume = read_series(stackable)
                if expected is None or (tuple(volume.voxels.shape) == tuple(expected[0])
                                        and np.allclose(volume.ijk_to_ras, expected[1], atol=1e-4)):
                    cache[uid] = volume
                    return volume
        raise DataError(recorded or case.root, f"no longer holds the image series {uid or '(unknown)'} that "
                                               f"{node.GetName()} was drawn on, as it was loaded")


def _coded_segments(node: Any, reference: DicomVolume) -> List[Any]:
    """The node's segments for :func:`~..dicom_seg.write_seg`, with GTV codes where none were given.

    The original ROI name (``GTV_Res+edema``...) becomes the segment description.
    """
    from pydicom.sr.codedict import codes

    from ..formats.dicom_seg import TISSUE, SegCode
    from ..scene.segment_export import segments_from_node
    from ..scene.builder import segment_tag

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
        original = segment_tag(source, "SarcomaLungLiverBrowser.OriginalName")
        if original and not segment.description:
            segment = replace(segment, description=original)
        exported.append(segment)
    return exported


COLLECTIONS = [SoftTissueSarcomaCollection]
