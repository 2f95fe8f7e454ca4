"""A small ISPY1 sample in DICOM, as IDC and NBIA serve it, written from the NIfTI sample's own images and masks.

The NIfTI sample (:mod:`.ispy1`) is written first, beside this one; its
native-grid DCE images become the DICOM phases voxel for voxel, and its FTV
mask becomes the vendor-style ``PE Segmentation`` SEG, so the two forms of a
patient agree exactly where they should. Structure from the ``idc_index``
table of ``idc-index-data`` 25.0.5 (``shared/notes/idc_tables.md``; patients
ISPY1_1001, ISPY1_1002 (GE) and ISPY1_1007 (Siemens)):

* ``ISPY1_1002``, IDC layout ``ispy1/ISPY1_1002/<StudyUID>/<Modality>_<SeriesUID>/<uuid>.dcm``, GE:
  series 3 ``Dynamic-3dfgre`` holding the three phases at the same positions
  (3 x 20 instances, phase-major InstanceNumbers, TemporalPositionIdentifier
  1..3), 31000 ``Dynamic-3dfgre: SER``, 31001 ``Dynamic-3dfgre: PE1``, SEGs
  32000 ``PE Segmentation thresh=70`` (on the PE1 map; = the NIfTI FTV), 32001
  ``Breast Tissue Segmentation`` (on the DCE series) and 32100 ``VOI PE
  Segmentation thresh=70`` (on the DCE series; the FTV with one slice removed
  and a 3x3x2 box added: :data:`VOI_CHANGE`), plus a localiser not loaded;
* ``ISPY1_1005``, NBIA layout ``manifest-*/ISPY1/ISPY1_1005/<date-study>/<n.000000-description-xxxxx>/1-01.dcm``
  with ``metadata.csv``, Siemens: one series per phase with the same
  description (3, 4, 5 ``Penn-HighRisk/T1_3D_SE_SAG``), its SER and PE1 maps,
  ``PE Segmentation thresh=90`` on the PE1 map and ``Breast Tissue
  Segmentation`` on phase 1; and a second (follow-up) study whose PE SEG is
  not compared with the baseline NIfTI mask.

SEG Manufacturer is the scanner's vendor, as in IDC. The SEGs' segment labels
and codes, and which series the real SEGs reference, are not known (no real
ISPY1 SEG was available): labels here are ``Enhancing tumour`` (Neoplasm) and
``Breast tissue`` (Breast).
"""
from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from . import ispy1 as nifti_sample
from .dicom_writer import (
    SeriesSpec,
    WrittenSeries,
    facts_of,
    idc_series_folder,
    nbia_series_folder,
    nbia_series_folder_name,
    uid_from_seed,
    write_nbia_metadata_csv,
    write_series,
)

__all__ = ["generate", "COLLECTION_FOLDER", "IDC_FOLDER", "NBIA_MANIFEST", "VOI_CHANGE", "ftv_mask_ijk",
           "voi_mask_ijk", "SEGMENTATION_SOP_CLASS_UID"]

#: The folder this sample writes (beside the NIfTI sample's ISPY1-Tumor-SEG-Radiomics).
COLLECTION_FOLDER = "ISPY1-DICOM"
IDC_FOLDER = "ispy1"
NBIA_MANIFEST = "manifest-1600000000000"
NBIA_COLLECTION = "ISPY1"
DOI_URL = "https://doi.org/10.7937/K9/TCIA.2016.HdHpgJLK"
SEGMENTATION_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"

#: The deliberate difference of the VOI SEG of ISPY1_1002 from the FTV: every FTV voxel of the native
#: slice (NIfTI k) holding the most FTV voxels removed, and the voxels of ``added_box``
#: ((i0, i1), (j0, j1), (k0, k1), half-open NIfTI indices, outside the FTV) added.
VOI_CHANGE = {"case_id": "ISPY1_1002", "added_box": ((4, 7), (30, 33), (9, 11))}


@dataclass(frozen=True)
class StudyPlan:
    """One study (visit) of a sample patient."""

    key: str
    study_date: str
    study_description: str
    follow_up: bool = False


@dataclass(frozen=True)
class PatientPlan:
    """One sample patient: layout, vendor style and studies."""

    case_id: str
    layout: str  # "idc" or "nbia"
    vendor: str  # "ge" (phases in one series) or "siemens" (one series per phase)
    studies: Tuple[StudyPlan, ...]


PATIENTS: Tuple[PatientPlan, ...] = (
    PatientPlan("ISPY1_1002", "idc", "ge", (StudyPlan("baseline", "19841102", "MR BREASTUNI UE"),)),
    PatientPlan("ISPY1_1005", "nbia", "siemens", (StudyPlan("baseline", "19850216", "MR BREAST"),
                                                  StudyPlan("follow-up", "19850317", "MR BREAST", True))),
)

_DCE_DESCRIPTION = {"ge": "Dynamic-3dfgre", "siemens": "Penn-HighRisk/T1_3D_SE_SAG"}
_MANUFACTURER = {"ge": ("GE MEDICAL SYSTEMS", "SIGNA EXCITE"), "siemens": ("SIEMENS", "MAGNETOM VISION")}
_THRESHOLD = {"ge": 70, "siemens": 90}


# ---------------------------------------------------------------------------------------------- NIfTI side
def _nifti_case_folder(nifti_root: Path, case_id: str) -> Path:
    return nifti_root / "NIfTI-Files" / "images_bias-corrected_nifti" / case_id


def _native_phases(nifti_root: Path, case_id: str) -> Tuple[List[np.ndarray], np.ndarray]:
    """The three native-grid DCE images ([i, j, k] int16) of the NIfTI sample and their affine."""
    import nibabel as nib

    images = []
    affine = None
    for phase in range(3):
        image = nib.load(str(_nifti_case_folder(nifti_root, case_id) / f"{case_id}_DCE_000{phase}_N3.nii.gz"))
        images.append(np.asarray(image.dataobj).astype(np.int16))
        affine = image.affine
    return images, np.asarray(affine, dtype=float)


def ftv_mask_ijk(nifti_root: Path, case_id: str) -> np.ndarray:
    """The NIfTI sample's FTV mask as an [i, j, k] bool array (native grid)."""
    import nibabel as nib

    image = nib.load(str(nifti_root / "NIfTI-Files" / "masks_ftv" / f"{case_id}.nii.gz"))
    return np.asarray(image.dataobj) != 0


def _removed_slice(ftv: np.ndarray) -> int:
    """The NIfTI k with the most FTV voxels (the slice the VOI SEG leaves out)."""
    return int(np.argmax(ftv.sum(axis=(0, 1))))


def voi_mask_ijk(ftv: np.ndarray) -> np.ndarray:
    """The VOI SEG's mask: the FTV changed as :data:`VOI_CHANGE` says."""
    changed = ftv.copy()
    changed[:, :, _removed_slice(ftv)] = False
    (i0, i1), (j0, j1), (k0, k1) = VOI_CHANGE["added_box"]  # type: ignore[misc]
    if ftv[i0:i1, j0:j1, k0:k1].any():
        raise ValueError("the added box of VOI_CHANGE overlaps the FTV")
    changed[i0:i1, j0:j1, k0:k1] = True
    return changed


# ---------------------------------------------------------------------------------------------- DICOM geometry
def _lps(vector: np.ndarray) -> np.ndarray:
    return np.array([-vector[0], -vector[1], vector[2]], dtype=float)


def _geometry(affine: np.ndarray, depth: int) -> Tuple[List[float], Tuple[float, float], List[List[float]]]:
    """ImageOrientationPatient, PixelSpacing and per-slice ImagePositionPatient of the NIfTI grid.

    DICOM pixel (row j, column i) of slice k is NIfTI voxel (i, j, k).
    """
    column_step, row_step = affine[:3, 0], affine[:3, 1]
    orientation = [*(_lps(column_step) / np.linalg.norm(column_step)), *(_lps(row_step) / np.linalg.norm(row_step))]
    spacing = (float(np.linalg.norm(row_step)), float(np.linalg.norm(column_step)))
    positions = [list(_lps(affine[:3, 3] + k * affine[:3, 2])) for k in range(depth)]
    return [float(v) for v in orientation], spacing, positions


def _slices(volume_ijk: np.ndarray) -> np.ndarray:
    """[k, rows (j), columns (i)] from [i, j, k]."""
    return np.ascontiguousarray(np.transpose(volume_ijk, (2, 1, 0)))


# ---------------------------------------------------------------------------------------------- writing
@dataclass
class _Written:
    """The series of one study, as written."""

    dce: List[WrittenSeries]
    maps: Dict[str, WrittenSeries]
    study_uid: str
    metadata: List[Tuple[Path, Dict[str, str]]]


def _spec(plan: PatientPlan, study: StudyPlan, description: str, number: int, values: np.ndarray,
          geometry: Tuple[List[float], Tuple[float, float], List[List[float]]], repeat: int = 1,
          extra: Optional[Dict[int, Dict[str, object]]] = None) -> SeriesSpec:
    orientation, spacing, positions = geometry
    manufacturer, model = _MANUFACTURER[plan.vendor]
    return SeriesSpec(
        patient_id=plan.case_id,
        study_instance_uid=uid_from_seed(plan.case_id, study.key, "study"),
        series_instance_uid=uid_from_seed(plan.case_id, study.key, description, number),
        frame_of_reference_uid=uid_from_seed(plan.case_id, study.key, "frame-of-reference"),
        modality="MR", series_number=number, series_description=description, stored_values=values,
        positions=positions * repeat, orientation=orientation, pixel_spacing=spacing, slice_thickness=2.0,
        study_date=study.study_date, study_description=study.study_description, manufacturer=manufacturer,
        extra={"ManufacturerModelName": model, "MagneticFieldStrength": "1.5", "ScanningSequence": "GR"},
        per_instance_extra=extra or {},
    )


def _series_folder(root: Path, plan: PatientPlan, spec: SeriesSpec) -> Path:
    if plan.layout == "idc":
        return idc_series_folder(root / IDC_FOLDER, plan.case_id, spec.study_instance_uid, "MR",
                                 spec.series_instance_uid)
    return nbia_series_folder(root / NBIA_MANIFEST / NBIA_COLLECTION, spec)


def _maps(phases: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
    """SER = (S1 - S0) / (S2 - S0) x 100 and PE1 = (S1 - S0) / S0 x 100, clipped to int16, where S0 > 0."""
    pre, early, late = (phase.astype(float) for phase in phases)
    inside = pre > 0
    pe1 = np.where(inside, 100.0 * (early - pre) / np.maximum(pre, 1.0), 0.0)
    ser = np.where(inside & (np.abs(late - pre) > 1.0), 100.0 * (early - pre) / np.where(late == pre, 1.0, late - pre),
                   0.0)
    return {name: np.clip(np.rint(values), 0, 32767).astype(np.int16) for name, values in (("SER", ser), ("PE1", pe1))}


def _write_study(root: Path, plan: PatientPlan, study: StudyPlan, phases: List[np.ndarray],
                 affine: np.ndarray) -> _Written:
    depth = phases[0].shape[2]
    geometry = _geometry(affine, depth)
    description = _DCE_DESCRIPTION[plan.vendor]
    number = 3
    written_dce: List[WrittenSeries] = []
    if plan.vendor == "ge":
        values = np.concatenate([_slices(phase) for phase in phases])
        extra = {index: {"TemporalPositionIdentifier": index // depth + 1, "NumberOfTemporalPositions": 3,
                         "TriggerTime": f"{90000 * (index // depth)}"} for index in range(values.shape[0])}
        spec = _spec(plan, study, description, number, values, geometry, repeat=3, extra=extra)
        written_dce.append(write_series(spec, _series_folder(root, plan, spec), _file_names(plan)))
    else:
        for offset, phase in enumerate(phases):
            spec = _spec(plan, study, description, number + offset, _slices(phase), geometry)
            written_dce.append(write_series(spec, _series_folder(root, plan, spec), _file_names(plan)))
    maps: Dict[str, WrittenSeries] = {}
    for index, (name, values) in enumerate(_maps(phases).items()):
        spec = _spec(plan, study, f"{description}: {name}", number * 10000 + 1000 + index, _slices(values), geometry)
        maps[name] = write_series(spec, _series_folder(root, plan, spec), _file_names(plan))
    localiser_spec = _spec(plan, study, "T1-axial-locator", 1, _slices(phases[0][:, :, :2]),
                           (geometry[0], geometry[1], geometry[2][:2]))
    localiser = write_series(localiser_spec, _series_folder(root, plan, localiser_spec), _file_names(plan))
    series = [*written_dce, *maps.values(), localiser]
    return _Written(written_dce, maps, written_dce[0].spec.study_instance_uid,
                    [(item.folder, facts_of(item)) for item in series])


def _file_names(plan: PatientPlan) -> str:
    return "idc" if plan.layout == "idc" else "nbia"


def _segment(label: str, tumour: bool) -> hd.seg.SegmentDescription:
    if tumour:
        category, type_, color = codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm, (230, 50, 50)
    else:
        category, type_, color = codes.SCT.Tissue, codes.SCT.Breast, (240, 205, 180)
    return hd.seg.SegmentDescription(
        segment_number=1, segment_label=label, segmented_property_category=category,
        segmented_property_type=type_, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(name="PE threshold" if tumour else
                                                                    "Breast tissue", version="1",
                                                                    family=codes.DCM.ArtificialIntelligence),
        display_color=hd.color.CIELabColor.from_rgb(*color))


def _write_seg(root: Path, plan: PatientPlan, study: StudyPlan, source: WrittenSeries, mask_ijk: np.ndarray,
               description: str, number: int, tumour: bool, metadata: List[Tuple[Path, Dict[str, str]]]) -> Path:
    """A single-segment BINARY SEG of ``mask_ijk`` on ``source`` (its first len(k) instances: phase 1)."""
    depth = mask_ijk.shape[2]
    sources = [pydicom.dcmread(str(path)) for path in source.paths[:depth]]
    pixels = _slices(mask_ijk).astype(np.uint8)
    series_uid = uid_from_seed(plan.case_id, study.key, description, "seg")
    manufacturer, model = _MANUFACTURER[plan.vendor]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[_segment("Enhancing tumour" if tumour else "Breast tissue", tumour)],
            series_instance_uid=series_uid, series_number=number,
            sop_instance_uid=uid_from_seed(series_uid, "instance"), instance_number=1,
            manufacturer=manufacturer, manufacturer_model_name=model, software_versions="1",
            device_serial_number="1", series_description=description, omit_empty_frames=True)
    seg.SeriesDate = seg.ContentDate = study.study_date
    seg.SeriesTime = seg.ContentTime = "120000"
    spec = source.spec
    if plan.layout == "idc":
        folder = idc_series_folder(root / IDC_FOLDER, plan.case_id, spec.study_instance_uid, "SEG", series_uid)
        path = folder / f"{uuid.uuid5(uuid.NAMESPACE_OID, series_uid)}.dcm"
    else:
        folder = source.folder.parent / nbia_series_folder_name(number, description, series_uid)
        path = folder / "1-1.dcm"
    folder.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(path))
    metadata.append((folder, {
        "SeriesInstanceUID": series_uid, "PatientID": plan.case_id, "StudyInstanceUID": spec.study_instance_uid,
        "StudyDescription": spec.study_description, "StudyDate": study.study_date, "SeriesDescription": description,
        "Manufacturer": manufacturer, "Modality": "SEG", "SOPClassUID": SEGMENTATION_SOP_CLASS_UID}))
    return path


def _breast_mask(pre_contrast: np.ndarray) -> np.ndarray:
    return pre_contrast > 0


def _write_patient(root: Path, nifti_root: Path, plan: PatientPlan) -> List[Tuple[Path, Dict[str, str]]]:
    phases, affine = _native_phases(nifti_root, plan.case_id)
    ftv = ftv_mask_ijk(nifti_root, plan.case_id)
    metadata: List[Tuple[Path, Dict[str, str]]] = []
    threshold = _THRESHOLD[plan.vendor]
    for study in plan.studies:
        study_phases = phases
        study_ftv = ftv
        if study.follow_up:  # the tumour has shrunk: one voxel eroded from every side of the FTV
            from scipy import ndimage

            study_ftv = ndimage.binary_erosion(ftv)
            study_phases = [np.where(ftv & ~study_ftv & (index > 0), phase // 2, phase).astype(np.int16)
                            for index, phase in enumerate(phases)]
        written = _write_study(root, plan, study, study_phases, affine)
        metadata.extend(written.metadata)
        base = 32000
        _write_seg(root, plan, study, written.maps["PE1"], study_ftv, f"PE Segmentation thresh={threshold}", base,
                   True, metadata)
        _write_seg(root, plan, study, written.dce[0], _breast_mask(study_phases[0]), "Breast Tissue Segmentation",
                   base + 1, False, metadata)
        if plan.case_id == VOI_CHANGE["case_id"] and not study.follow_up:
            _write_seg(root, plan, study, written.dce[0], voi_mask_ijk(study_ftv),
                       f"VOI PE Segmentation thresh={threshold}", base + 100, True, metadata)
    return metadata


def generate(parent: Path) -> Path:
    """Write the NIfTI sample (if needed, identical bytes) and the DICOM sample below ``parent``.

    :returns: ``parent/ISPY1-DICOM`` (holding ``ispy1/`` in IDC layout and an NBIA manifest folder).
    """
    parent = Path(parent)
    nifti_root = nifti_sample.generate(parent)
    root = parent / COLLECTION_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    nbia_rows: List[Tuple[Path, Dict[str, str]]] = []
    for plan in PATIENTS:
        rows = _write_patient(root, nifti_root, plan)
        if plan.layout == "nbia":
            nbia_rows.extend(rows)
    if nbia_rows:
        write_nbia_metadata_csv(root / NBIA_MANIFEST, NBIA_COLLECTION, DOI_URL, nbia_rows)
    return root
