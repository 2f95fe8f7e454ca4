"""The CT and PET series of a Lung-PET-CT-Dx case: headers, volumes, and which layer shows which.

Every image is identified by its header (never its file name). Series other
than CT and PET are reported and not read; images without geometry are left
out of their volume and remembered, so a box on them is reported by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ...case_data import DisplayHints, Placement, VolumeData, WindowPreset
from ...errors import DataError
from ...findings import ERROR, INFO, WARNING, Finding
from ...formats.dicom_series import (
    DicomVolume,
    InstanceHeader,
    group_by_series,
    read_series,
    scan_folder,
    split_stackable,
)
from ...progress import ProgressCallback, report, sub_progress

__all__ = [
    "CT_WINDOW_PRESETS",
    "PET_COLOR_NODE_ID",
    "PET_FALLBACK_COLOR_NODE_ID",
    "PET_FOREGROUND_OPACITY",
    "CaseFindings",
    "ReadSeries",
    "CaseSeries",
    "scan_headers",
    "read_case_series",
    "volume_data",
    "display_hints",
    "pet_ct_layers",
]

#: The windows the collection's readers used: mediastinum 350/40, lung 1400/-700.
CT_WINDOW_PRESETS = (WindowPreset("Mediastinum", 350.0, 40.0), WindowPreset("Lung", 1400.0, -700.0))

#: Slicer's procedural PET colour map (present in a slicer-core scene as well).
PET_COLOR_NODE_ID = "vtkMRMLPETProceduralColorNodePET-Heat"
#: Used when the PET map is missing from the scene.
PET_FALLBACK_COLOR_NODE_ID = "vtkMRMLColorTableNodeRainbow"

#: Opacity suggested for the PET layer over CT.
PET_FOREGROUND_OPACITY = 0.5

IMAGE_MODALITIES = ("CT", "PT")


class CaseFindings(List[Finding]):
    """The findings of one case, each naming the case."""

    def __init__(self, case_id: str) -> None:
        super().__init__()
        self.case_id = case_id

    def add(self, severity: str, check: str, message: str, path: Any = "", node_name: str = "",
            ras: Optional[Sequence[float]] = None, value: Optional[float] = None) -> None:
        """Record a finding; ``path`` may be a Path or a string."""
        self.append(Finding(
            severity=severity, check=check, message=message, case_id=self.case_id,
            path=str(path) if path else "", node_name=node_name,
            ras=tuple(float(v) for v in ras) if ras is not None else None, value=value,
        ))


@dataclass
class ReadSeries:
    """One CT or PET series read into a volume.

    :param name: the volume's name (``<case> <number> <modality> <description>``).
    :param sop_to_slice: SOPInstanceUID -> slice index k (duplicates map to their kept slice).
    """

    volume: DicomVolume
    label: str
    name: str
    sop_to_slice: Dict[str, int]

    @property
    def key(self) -> str:
        """The volume's key in the case data: its SeriesInstanceUID."""
        return self.volume.series_instance_uid


@dataclass
class CaseSeries:
    """Everything read from a case's image folders.

    :param series: SeriesInstanceUID -> the series read, CT first, then PET.
    :param without_geometry: SOPInstanceUID -> header, for images left out for lack of geometry.
    :param skipped_series_sops: SOPInstanceUID -> series label, for images of series not read.
    :param headers: SOPInstanceUID -> header of every image found.
    """

    series: Dict[str, ReadSeries] = field(default_factory=dict)
    without_geometry: Dict[str, InstanceHeader] = field(default_factory=dict)
    skipped_series_sops: Dict[str, str] = field(default_factory=dict)
    headers: Dict[str, InstanceHeader] = field(default_factory=dict)


def scan_headers(folders: Sequence[Path]) -> Dict[str, InstanceHeader]:
    """SOPInstanceUID -> header of every DICOM image in ``folders``."""
    return {instance.sop_instance_uid: instance
            for folder in folders for instance in scan_folder(Path(folder)).instances}


def _scan(folders: Sequence[Path], findings: CaseFindings, progress: Optional[ProgressCallback]
          ) -> List[InstanceHeader]:
    instances: List[InstanceHeader] = []
    for index, folder in enumerate(folders):
        scan = scan_folder(Path(folder), sub_progress(progress, index / len(folders), (index + 1) / len(folders)))
        instances.extend(scan.instances)
        for error in scan.errors:
            findings.add(WARNING, "lung.unreadable_dicom", str(error), path=error.path)
    return instances


def series_label(instance: InstanceHeader) -> str:
    """``<SeriesNumber> <Modality> <SeriesDescription>`` of a series' first image."""
    number = "" if instance.series_number is None else f"{instance.series_number} "
    return f"{number}{instance.modality} {instance.series_description}".strip()


def _read_one_series(case_id: str, instances: List[InstanceHeader], result: CaseSeries, findings: CaseFindings,
                     progress: Optional[ProgressCallback]) -> None:
    first = instances[0]
    label = series_label(first)
    if first.modality not in IMAGE_MODALITIES:
        from ...formats.sr_boxes import is_box_sr_header

        if not is_box_sr_header(first.modality, first.sop_class_uid):  # box SRs are read as annotations
            findings.add(INFO, "lung.series_skipped",
                         f"series {label} ({first.modality}) is not CT or PET and was not loaded",
                         path=first.path.parent)
        result.skipped_series_sops.update((instance.sop_instance_uid, label) for instance in instances)
        return
    placeable = [instance for instance in instances if not instance.missing_geometry]
    lacking = [instance for instance in instances if instance.missing_geometry]
    if lacking:
        missing = sorted({name for instance in lacking for name in instance.missing_geometry})
        findings.add(WARNING, "lung.missing_geometry",
                     f"series {label}: {len(lacking)} of {len(instances)} images lack {', '.join(missing)} "
                     f"(e.g. {lacking[0].path.name}); they are left out of the volume and boxes on them "
                     "cannot be placed", path=lacking[0].path, value=float(len(lacking)))
        result.without_geometry.update((instance.sop_instance_uid, instance) for instance in lacking)
    placeable, left_out = split_stackable(placeable)
    for error in left_out:
        findings.add(WARNING, "lung.slice_left_out", f"series {label}: {error}; left out of the volume",
                     path=error.path)
    if not placeable:
        return
    try:
        volume = read_series(placeable, progress)
    except DataError as error:
        findings.add(ERROR, "lung.series_unreadable", f"series {label} was not loaded: {error}", path=error.path)
        result.skipped_series_sops.update((instance.sop_instance_uid, label) for instance in placeable)
        return
    for problem in volume.problems():
        findings.add(WARNING, "lung.stack_irregular", f"series {label}: {problem}", path=first.path.parent)
    sop_to_slice = {instance.sop_instance_uid: k for k, instance in enumerate(volume.instances)}
    for duplicate in volume.duplicates:
        k = volume.slice_index(duplicate.sop_instance_uid)
        if k is not None:
            sop_to_slice[duplicate.sop_instance_uid] = k
    result.series[volume.series_instance_uid] = ReadSeries(volume, label, f"{case_id} {label}", sop_to_slice)


def read_case_series(case_id: str, folders: Sequence[Path], findings: CaseFindings,
                     progress: Optional[ProgressCallback] = None) -> CaseSeries:
    """Scan the case's folders and read every CT and PET series (CT first, then by series number)."""
    from . import lung_case_id

    result = CaseSeries()
    instances = _scan(folders, findings, sub_progress(progress, 0.0, 0.25)) if folders else []
    # A folder may hold other patients' files too (IDC's flat download): keep this case's.
    instances = [instance for instance in instances
                 if not instance.patient_id.strip(" \x00") or lung_case_id(instance.patient_id) == case_id]
    result.headers = {instance.sop_instance_uid: instance for instance in instances}
    groups = group_by_series(instances)

    def order(uid: str) -> Tuple[int, int, str]:
        first = groups[uid][0]
        rank = IMAGE_MODALITIES.index(first.modality) if first.modality in IMAGE_MODALITIES else 9
        return rank, first.series_number if first.series_number is not None else 0, uid

    ordered = sorted(groups, key=order)
    reading = sub_progress(progress, 0.25, 1.0)
    for index, uid in enumerate(ordered):
        report(reading, f"Reading series {index + 1}/{len(ordered)}", index / len(ordered))
        _read_one_series(case_id, groups[uid], result, findings,
                         sub_progress(reading, index / len(ordered), (index + 1) / len(ordered)))
    return result


def study_placement(case_id: str, instance: InstanceHeader) -> Placement:
    """The patient and study a series of the case goes under (study named by date and description)."""
    name = " ".join(part for part in (instance.study_date, instance.study_description) if part)
    return Placement(patient_id=case_id, patient_name=case_id, study_uid=instance.study_instance_uid,
                     study_name=name or instance.study_instance_uid)


def volume_data(collection_key: str, case_id: str, series: ReadSeries, layer: str = "") -> VolumeData:
    """The volume of a series: CT with the lung and mediastinum windows, PET in the PET colour map.

    The node uses the freshly read voxels in place (never changed afterwards):
    one copy in memory, not two.
    """
    volume = series.volume
    attributes = {"collection": collection_key, "case_id": case_id,
                  "series_instance_uid": volume.series_instance_uid, "modality": volume.modality}
    if layer:
        attributes["layer"] = layer
    is_pet = volume.modality == "PT"
    if is_pet:
        from ...formats.suv import scale_attributes_of_file

        # SUVbw scale from the PET headers (or why there is none), for previews and users.
        attributes.update(scale_attributes_of_file(volume.instances[0].path))
    return VolumeData(
        key=series.key,
        name=series.name,
        voxels=volume.voxels,
        ijk_to_ras=volume.ijk_to_ras,
        placement=study_placement(case_id, volume.instances[0]),
        windows=() if is_pet else CT_WINDOW_PRESETS,
        attributes=attributes,
        color_table=PET_COLOR_NODE_ID if is_pet else None,
        fallback_color_table=PET_FALLBACK_COLOR_NODE_ID if is_pet else None,
        share_memory=True,
        # Slicer's DICOM plugin stores the same list under this name; exports map slices back with it.
        slicer_attributes={"DICOM.instanceUIDs": " ".join(i.sop_instance_uid for i in volume.instances)},
    )


def display_hints(series: Sequence[ReadSeries]) -> DisplayHints:
    """Background CT and foreground PET: the widget shows PET over CT with these.

    The CT in the PET's frame of reference is preferred, else the first CT.
    """
    cts = [s for s in series if s.volume.modality == "CT"]
    pets = [s for s in series if s.volume.modality == "PT"]
    if not cts:
        return DisplayHints()
    if not pets:
        return DisplayHints(background=cts[0].key)
    foreground = pets[0]
    frame = foreground.volume.instances[0].frame_of_reference_uid
    same_frame = [ct for ct in cts if ct.volume.instances[0].frame_of_reference_uid == frame]
    background = same_frame[0] if same_frame else cts[0]
    return DisplayHints(background=background.key, foreground=foreground.key,
                        foreground_opacity=PET_FOREGROUND_OPACITY)


def pet_ct_layers(loaded: Any, scene: Any) -> Tuple[Optional[Any], Optional[Any], float]:
    """(background CT node, foreground PET node or None, PET opacity) chosen at load time."""
    background_id = loaded.metrics.get("background_volume_id")
    foreground_id = loaded.metrics.get("foreground_volume_id")
    background = scene.GetNodeByID(background_id) if background_id else None
    foreground = scene.GetNodeByID(foreground_id) if foreground_id else None
    return background, foreground, float(loaded.metrics.get("foreground_opacity", PET_FOREGROUND_OPACITY))
