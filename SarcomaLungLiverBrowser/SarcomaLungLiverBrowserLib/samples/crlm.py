"""A small Colorectal-Liver-Metastases sample: abdominal CT phantoms with dcmqi-style SEGs.

Facts carried over from ``shared/notes/datasets.md`` §1 and ``idc_tables.md``:

* one portal-venous CT (GE, signed 16 bit, RescaleIntercept -1024,
  PixelPaddingValue -2000, W400/L40, 5 mm slices, ~0.8 mm pixels) and one SEG
  per patient; the SEG is BINARY, written by dcmqi (Manufacturer ``QIICR``),
  frames grouped by segment, empty frames omitted, a per-segment running second
  DimensionIndexValue, no ``SegmentsOverlap`` attribute;
* segments 1 Liver, 2 Liver Remnant (``"Liver Remnant"`` with a space in one
  case, ``"Liver_Remnant"`` in another), 3 Hepatic, 4 Portal, then Tumor_1..n;
  liver contains remnant and tumours, vessels leave the liver, tumour
  instances may overlap each other (intrab's "overlapping" cases) and a tumour
  may stick out of the liver;
* NBIA layout (``manifest-*/Colorectal-Liver-Metastases/CRLM-CT-1001/<study>/
  <series>/1-01.dcm``, SEG series ``100.000000-Segmentation-xxxxx/1-1.dcm``,
  ``metadata.csv``) and IDC layout (``colorectal_liver_metastases/CRLM-CT-1003/
  <StudyUID>/<Modality>_<SeriesUID>/<uuid>.dcm``) with an extra bamf AIMI AI SEG;
* the clinical workbook ``Colorectal-Liver-Metastases-Clinical-data-April-2023.xlsx``,
  sheet ``TCIA_n=197``, missing values coded 999 / -999.

The images are 128x128 (not 512x512) to keep the sample small. Ground truth
(the label masks as generated) is written to ``_ground_truth/<PatientID>.npz``
with a JSON summary beside it; :func:`ground_truth_masks` regenerates it.
"""
from __future__ import annotations

import dataclasses
import json
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
from pydicom.sr.codedict import codes

from .dicom_writer import (
    SeriesSpec,
    facts_of,
    idc_series_folder,
    nbia_series_folder,
    nbia_series_folder_name,
    uid_from_seed,
    write_nbia_metadata_csv,
    write_series,
)

__all__ = ["generate", "scaled_patients", "ground_truth_masks", "load_ground_truth", "PATIENTS", "COLLECTION_FOLDER",
           "CLINICAL_FILE", "CLINICAL_SHEET", "CLINICAL_COLUMNS", "SEGMENTATION_SOP_CLASS_UID"]

COLLECTION_FOLDER = "Colorectal-Liver-Metastases"
IDC_COLLECTION_ID = "colorectal_liver_metastases"
MANIFEST_FOLDER = "manifest-1669817128730"
DOI_URL = "https://doi.org/10.7937/QXK2-QG03"
CLINICAL_FILE = "Colorectal-Liver-Metastases-Clinical-data-April-2023.xlsx"
CLINICAL_SHEET = "TCIA_n=197"
SEGMENTATION_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
GROUND_TRUTH_FOLDER = "_ground_truth"

#: Column names of the clinical sheet (datasets.md §1).
CLINICAL_COLUMNS = [
    "Patient-ID", "De-identify Scout Name", "age", "sex", "major_comorbidity", "body_mass_index",
    "node_positive_primary", "synchronous_crlm", "multiple_metastases", "clinrisk_score",
    "clinrisk_stratified", "carcinoembryonic_antigen", "max_tumor_size", "bilobar_disease",
    "extrahep_disease", "chemo_before_liver_resection", "preoperative_pve", "steatosis_yesno",
    "presence_sinusoidal_dilata", "NASH_score", "NASH_yesno", "NASH_greater_4", "total_response_percent",
    "necrosis_percent", "fibrosis_percent", "fibrosis_greater_40_percent", "mucin_percent",
    "overall_survival_months", "vital_status", "progression_or_recurrence", "months_to_DFS_progression",
    "vital_status_DFS", "progression_or_recurrence_liveronly", "months_to_liver_DFS_progression",
    "vital_status_liver_DFS", "relevant_notes",
]


@dataclass(frozen=True)
class PatientPlan:
    """How one sample patient is generated."""

    patient_id: str
    layout: str  # "nbia" or "idc"
    slices: int
    pixel_spacing: float
    tumours: int
    remnant_label: str
    seed: int
    study_date: str
    with_colors: bool = True
    tumour_outside_liver: bool = False
    overlapping_tumours: bool = False
    with_ai_seg: bool = False


PATIENTS: Tuple[PatientPlan, ...] = (
    PatientPlan("CRLM-CT-1001", "nbia", 24, 0.78125, 2, "Liver Remnant", 1001, "19920606"),
    PatientPlan("CRLM-CT-1002", "nbia", 32, 0.8203125, 8, "Liver_Remnant", 1002, "19950312",
                with_colors=False, tumour_outside_liver=True, overlapping_tumours=True),
    PatientPlan("CRLM-CT-1003", "idc", 20, 0.703125, 1, "Liver_Remnant", 1003, "19981109", with_ai_seg=True),
)

ROWS = COLUMNS = 128
SLICE_SPACING = 5.0
ANATOMY_CATEGORY = codes.SCT.AnatomicalStructure
TUMOUR_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure
_CODES = {
    "liver": (ANATOMY_CATEGORY, codes.SCT.Liver),
    "hepatic": (ANATOMY_CATEGORY, codes.SCT.HepaticVein),
    "portal": (ANATOMY_CATEGORY, codes.SCT.PortalVein),
    "tumour": (TUMOUR_CATEGORY, codes.SCT.Neoplasm),
}
_COLORS = {"liver": (221, 130, 101), "remnant": (241, 214, 145), "hepatic": (0, 151, 206),
           "portal": (216, 101, 79), "tumour": (144, 238, 144)}


# ---------------------------------------------------------------------------------------------- phantom
@dataclass
class Phantom:
    """The CT values (HU, [k, j, i]) and labelled masks of one sample patient, in SEG order."""

    hounsfield: np.ndarray
    labels: List[str]
    kinds: List[str]
    masks: List[np.ndarray]
    positions: List[Tuple[float, float, float]]


def _grid_mm(plan: PatientPlan) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel centre coordinates in mm relative to the volume centre (x: columns, y: rows, z: slices)."""
    k, j, i = np.meshgrid(np.arange(plan.slices), np.arange(ROWS), np.arange(COLUMNS), indexing="ij")
    x = (i - (COLUMNS - 1) / 2) * plan.pixel_spacing
    y = (j - (ROWS - 1) / 2) * plan.pixel_spacing
    z = (k - (plan.slices - 1) / 2) * SLICE_SPACING
    return x, y, z


def _ellipsoid(x: np.ndarray, y: np.ndarray, z: np.ndarray, centre: Sequence[float],
               radii: Sequence[float]) -> np.ndarray:
    return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 \
        + ((z - centre[2]) / radii[2]) ** 2


def _tube(x: np.ndarray, y: np.ndarray, z: np.ndarray, start: Sequence[float], end: Sequence[float],
          radius: float) -> np.ndarray:
    """Voxels within ``radius`` mm of the segment start-end."""
    start_point, end_point = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    axis = end_point - start_point
    points = np.stack([x - start_point[0], y - start_point[1], z - start_point[2]], axis=-1)
    t = np.clip(points @ axis / float(axis @ axis), 0.0, 1.0)
    closest = t[..., None] * axis
    return np.linalg.norm(points - closest, axis=-1) <= radius


def make_phantom(plan: PatientPlan) -> Phantom:
    """The abdomen phantom of a plan: body, spine, aorta, liver with vessels and tumours."""
    rng = np.random.default_rng(plan.seed)
    x, y, z = _grid_mm(plan)
    half_z = plan.slices * SLICE_SPACING / 2
    liver_centre = (-16.0 + rng.uniform(-2, 2), -4.0 + rng.uniform(-2, 2), 0.0)
    liver_radii = (27.0, 21.0, min(0.75 * half_z, 45.0))
    liver_shape = _ellipsoid(x, y, z, liver_centre, liver_radii)
    # A wedge cut makes the left lobe thinner, as livers are.
    liver = (liver_shape <= 1.0) & ((x - liver_centre[0]) * 0.35 + (y - liver_centre[1]) < 16.0)
    remnant = liver & (x > liver_centre[0] + 3.0)
    hepatic = np.zeros_like(liver)
    ivc = (liver_centre[0] + 23.0, liver_centre[1] - 5.0, liver_centre[2] + 0.8 * liver_radii[2])
    for offset in ((-14.0, -7.0, -0.3), (0.0, -10.0, -0.15), (11.0, -4.0, 0.0)):
        start = (liver_centre[0] + offset[0], liver_centre[1] + offset[1], liver_centre[2] + offset[2] * liver_radii[2])
        hepatic |= _tube(x, y, z, start, ivc, 2.6)
    hepatic |= _tube(x, y, z, ivc, (ivc[0], ivc[1], ivc[2] + 40.0), 3.5)  # the IVC, outside the liver
    portal_entry = (liver_centre[0] + 24.0, liver_centre[1] + 20.0, liver_centre[2] - 0.9 * liver_radii[2])
    hilum = (liver_centre[0] + 3.0, liver_centre[1] + 5.0, liver_centre[2] - 0.2 * liver_radii[2])
    portal = _tube(x, y, z, portal_entry, hilum, 3.2)
    portal |= _tube(x, y, z, hilum, (liver_centre[0] - 15.0, liver_centre[1] + 2.0, liver_centre[2] + 0.1 * liver_radii[2]), 2.3)
    portal |= _tube(x, y, z, hilum, (liver_centre[0] + 11.0, liver_centre[1] - 3.0, liver_centre[2] + 0.25 * liver_radii[2]), 2.1)
    tumours = _tumours(plan, rng, x, y, z, liver_centre, liver_radii, liver)
    for index, tumour in enumerate(tumours):
        if not (plan.tumour_outside_liver and index == len(tumours) - 1):
            liver |= tumour  # the liver contour includes its tumours
    remnant &= liver
    hounsfield = _hounsfield(plan, rng, x, y, z, liver, tumours, hepatic | portal)
    labels = ["Liver", plan.remnant_label, "Hepatic", "Portal"] + [f"Tumor_{n + 1}" for n in range(len(tumours))]
    kinds = ["liver", "remnant", "hepatic", "portal"] + ["tumour"] * len(tumours)
    origin = (-(COLUMNS - 1) / 2 * plan.pixel_spacing, -(ROWS - 1) / 2 * plan.pixel_spacing + 12.0, -120.0)
    # Slices are written head first (instance 1 = most superior), as the GE series are.
    positions = [(origin[0], origin[1], origin[2] + SLICE_SPACING * k) for k in range(plan.slices)]
    return Phantom(hounsfield, labels, kinds, [liver, remnant, hepatic, portal, *tumours], positions)


def _tumours(plan: PatientPlan, rng: np.random.Generator, x: np.ndarray, y: np.ndarray, z: np.ndarray,
             liver_centre: Sequence[float], liver_radii: Sequence[float], liver: np.ndarray) -> List[np.ndarray]:
    tumours: List[np.ndarray] = []
    slice_z = (np.arange(plan.slices) - (plan.slices - 1) / 2) * SLICE_SPACING
    attempts = 0
    while len(tumours) < plan.tumours and attempts < 500:
        attempts += 1
        last = len(tumours) == plan.tumours - 1
        radius = float(rng.uniform(3.5, 7.5))
        if plan.tumour_outside_liver and last:
            direction = np.array([-1.0, 0.25, 0.0]) / np.linalg.norm([-1.0, 0.25, 0.0])
            reach = 0.93
        elif plan.overlapping_tumours and len(tumours) == 3:
            previous = tumours[2]
            k, j, i = [float(np.mean(axis)) for axis in np.nonzero(previous)]
            centre = (x[0, 0, int(i)] + radius * 0.9, y[0, int(j), 0], z[int(round(k)), 0, 0])
            tumours.append(_ellipsoid(x, y, z, centre, (radius,) * 3) <= 1.0)
            continue
        else:
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            reach = float(rng.uniform(0.0, 0.55))
        centre = [liver_centre[axis] + reach * direction[axis] * liver_radii[axis] for axis in range(3)]
        # Snap to a slice centre so that every tumour shows on at least one slice.
        centre[2] = float(slice_z[np.argmin(np.abs(slice_z - centre[2]))])
        tumour = _ellipsoid(x, y, z, centre, (radius, radius, radius * 1.1)) <= 1.0
        if not tumour.any():
            continue
        inside_fraction = np.count_nonzero(tumour & liver) / np.count_nonzero(tumour)
        if last and plan.tumour_outside_liver:
            if 0.3 < inside_fraction < 0.95:
                tumours.append(tumour)
            continue
        if inside_fraction < 1.0 or any(np.any(tumour & other) for other in tumours):
            continue
        tumours.append(tumour)
    if len(tumours) != plan.tumours:
        raise RuntimeError(f"could not place {plan.tumours} tumours for {plan.patient_id}")
    return tumours


def _hounsfield(plan: PatientPlan, rng: np.random.Generator, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                liver: np.ndarray, tumours: Sequence[np.ndarray], vessels: np.ndarray) -> np.ndarray:
    body = (x / 50.0) ** 2 + ((y - 4.0) / 40.0) ** 2 <= 1.0
    fat = body & ((x / 50.0) ** 2 + ((y - 4.0) / 40.0) ** 2 > 0.78)
    spine = ((x - 4.0) ** 2 + (y - 28.0) ** 2) <= 8.0 ** 2
    aorta = ((x - 10.0) ** 2 + (y - 16.0) ** 2) <= 5.0 ** 2
    hounsfield = np.full(x.shape, -1000.0)
    hounsfield[body] = 40.0
    hounsfield[fat] = -95.0
    hounsfield[spine & body] = 650.0
    hounsfield[aorta & body] = 170.0
    hounsfield[liver] = 105.0
    hounsfield[vessels & body] = 175.0
    for tumour in tumours:
        hounsfield[tumour] = 35.0
    hounsfield[body] += rng.normal(0.0, 12.0, size=int(np.count_nonzero(body)))
    return np.rint(hounsfield).astype(np.int16)


# ---------------------------------------------------------------------------------------------- DICOM
def _ct_spec(plan: PatientPlan, phantom: Phantom, study_uid: str, frame_of_reference_uid: str) -> SeriesSpec:
    stored = phantom.hounsfield.astype(np.int32) + 1024
    # Outside the reconstruction circle GE stores PixelPaddingValue -2000.
    j, i = np.indices((ROWS, COLUMNS))
    outside = (i - (COLUMNS - 1) / 2) ** 2 + (j - (ROWS - 1) / 2) ** 2 > (ROWS / 2) ** 2
    stored[:, outside] = -2000
    # Reverse slice order: instance 1 is the most superior slice.
    order = list(range(plan.slices))[::-1]
    return SeriesSpec(
        patient_id=plan.patient_id,
        study_instance_uid=study_uid,
        series_instance_uid=uid_from_seed(plan.patient_id, "ct-series"),
        frame_of_reference_uid=frame_of_reference_uid,
        modality="CT",
        series_number=101 if plan.layout == "nbia" else 2,
        series_description="" if plan.layout == "nbia" else "CT ABD/PEL W/ CONTRAST",
        stored_values=stored[order].astype(np.int16),
        positions=[phantom.positions[k] for k in order],
        pixel_spacing=(plan.pixel_spacing, plan.pixel_spacing),
        slice_thickness=SLICE_SPACING,
        rescale_slope=1.0,
        rescale_intercept=-1024.0,
        study_date=plan.study_date,
        study_description="CT ANGIO ABD WITH PEL",
        patient_name=plan.patient_id,
        manufacturer="GE MEDICAL SYSTEMS",
        window=(400.0, 40.0),
        extra={"PixelPaddingValue": -2000, "PatientPosition": "FFS", "ConvolutionKernel": "STANDARD"},
    )


def _segment_description(number: int, label: str, kind: str, with_color: bool) -> hd.seg.SegmentDescription:
    category, type_ = _CODES["liver" if kind == "remnant" else kind]
    color = hd.color.CIELabColor.from_rgb(*_COLORS[kind]) if with_color else None
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=category,
        segmented_property_type=type_,
        algorithm_type="MANUAL",
        display_color=color,
    )


def _dcmqi_quirks(seg: pydicom.Dataset, algorithm_name: Optional[str]) -> None:
    """Make a highdicom SEG look like dcmqi's output in the CRLM collection."""
    if "SegmentsOverlap" in seg:
        del seg.SegmentsOverlap  # older dcmqi did not write it (datasets.md §1)
    seg.Manufacturer = "QIICR"
    seg.ManufacturerModelName = "git://github.com/QIICR/dcmqi.git"
    seg.SoftwareVersions = "1.0.4"
    seg.SeriesDescription = "Segmentation"
    seg.ContentLabel = "SEGMENTATION"
    seg.ContentCreatorName = "Reader1"
    running: Dict[int, int] = {}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        running[number] = running.get(number, 0) + 1
        # dcmqi's second index counts frames within a segment, not slice positions.
        frame.FrameContentSequence[0].DimensionIndexValues = [number, running[number]]
        for derivation in frame.get("DerivationImageSequence", []):
            for source in derivation.get("SourceImageSequence", []):
                if "SpatialLocationsPreserved" in source:
                    del source.SpatialLocationsPreserved
    if algorithm_name:
        for item in seg.SegmentSequence:
            item.SegmentAlgorithmType = "SEMIAUTOMATIC"
            item.SegmentAlgorithmName = algorithm_name


def _write_seg(plan: PatientPlan, phantom: Phantom, ct_paths: Sequence[Path], labels: Sequence[str],
               kinds: Sequence[str], masks: Sequence[np.ndarray], series_uid: str, path: Path,
               with_colors: bool, dcmqi_style: bool = True) -> Path:
    # write_series wrote slices in reversed k order; give highdicom the files in k order.
    sources = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in ct_paths][::-1]
    pixels = np.stack(masks, axis=-1)
    descriptions = [_segment_description(n + 1, label, kind, with_colors)
                    for n, (label, kind) in enumerate(zip(labels, kinds))]
    with warnings.catch_warnings():
        # TCIA's PatientName is the one-component ID ("CRLM-CT-1001"); highdicom warns about that.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name.*")
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=series_uid,
            series_number=100 if dcmqi_style else 1000,
            sop_instance_uid=uid_from_seed(series_uid, "instance"),
            instance_number=1,
            manufacturer="QIICR" if dcmqi_style else "BAMF Health",
            manufacturer_model_name="dcmqi" if dcmqi_style else "AIMI liver-tumor",
            software_versions="1",
            device_serial_number="1",
            omit_empty_frames=True,
        )
    if dcmqi_style:
        _dcmqi_quirks(seg, "Scout Liver")
    else:
        seg.SeriesDescription = "AIMI liver-tumor AI segmentation"
    # Deterministic content date/time, so that the sample is byte-reproducible in its meaning.
    seg.SeriesDate = seg.ContentDate = plan.study_date
    seg.SeriesTime = seg.ContentTime = "120000"
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(path))
    return path


def _ai_masks(phantom: Phantom) -> Tuple[List[str], List[str], List[np.ndarray]]:
    """A bamf-like AI result: a slightly eroded liver and one merged tumour label."""
    liver = phantom.masks[0].copy()
    liver[:, 1:, :] &= phantom.masks[0][:, :-1, :]
    tumour = np.zeros_like(liver)
    for label, mask in zip(phantom.labels, phantom.masks):
        if label.startswith("Tumor"):
            tumour |= mask
    return ["Liver", "Liver tumor"], ["liver", "tumour"], [liver, tumour]


def _generate_patient(plan: PatientPlan, root: Path) -> Tuple[Dict[str, object], List[Tuple[Path, Dict[str, str]]]]:
    phantom = make_phantom(plan)
    study_uid = uid_from_seed(plan.patient_id, "study")
    frame_of_reference_uid = uid_from_seed(plan.patient_id, "frame-of-reference")
    spec = _ct_spec(plan, phantom, study_uid, frame_of_reference_uid)
    seg_series_uid = uid_from_seed(plan.patient_id, "seg-series")
    metadata: List[Tuple[Path, Dict[str, str]]] = []
    if plan.layout == "nbia":
        collection = root / MANIFEST_FOLDER / COLLECTION_FOLDER
        ct_folder = nbia_series_folder(collection, spec)
        written = write_series(spec, ct_folder, file_names="nbia")
        seg_folder = ct_folder.parent / nbia_series_folder_name(100, "Segmentation", seg_series_uid)
        seg_path = seg_folder / "1-1.dcm"
        metadata.append((ct_folder, facts_of(written)))  # type: ignore[arg-type]
        metadata.append((seg_folder, {
            "SeriesInstanceUID": seg_series_uid, "PatientID": plan.patient_id, "StudyInstanceUID": study_uid,
            "StudyDescription": spec.study_description, "StudyDate": plan.study_date,
            "SeriesDescription": "Segmentation", "Manufacturer": "QIICR", "Modality": "SEG",
            "SOPClassUID": SEGMENTATION_SOP_CLASS_UID,
        }))
    else:
        collection = root / IDC_COLLECTION_ID
        ct_folder = idc_series_folder(collection, plan.patient_id, study_uid, "CT", spec.series_instance_uid)
        written = write_series(spec, ct_folder, file_names="idc")
        seg_folder = idc_series_folder(collection, plan.patient_id, study_uid, "SEG", seg_series_uid)
        seg_path = seg_folder / f"{uuid.uuid5(uuid.NAMESPACE_OID, seg_series_uid)}.dcm"
    _write_seg(plan, phantom, written.paths, phantom.labels, phantom.kinds, phantom.masks, seg_series_uid,
               seg_path, plan.with_colors)
    ai_path = None
    if plan.with_ai_seg:
        ai_series_uid = uid_from_seed(plan.patient_id, "bamf-ai-seg")
        ai_folder = idc_series_folder(collection, plan.patient_id, study_uid, "SEG", ai_series_uid)
        ai_path = ai_folder / f"{uuid.uuid5(uuid.NAMESPACE_OID, ai_series_uid)}.dcm"
        labels, kinds, masks = _ai_masks(phantom)
        _write_seg(plan, phantom, written.paths, labels, kinds, masks, ai_series_uid, ai_path, True,
                   dcmqi_style=False)
    truth = _write_ground_truth(root, plan, phantom, spec.series_instance_uid, seg_path, ai_path)
    return truth, metadata


def _write_ground_truth(root: Path, plan: PatientPlan, phantom: Phantom, ct_series_uid: str, seg_path: Path,
                        ai_path: Optional[Path]) -> Dict[str, object]:
    folder = root / GROUND_TRUTH_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    liver = phantom.masks[0]
    outside = {label: int(np.count_nonzero(mask & ~liver))
               for label, mask in zip(phantom.labels, phantom.masks) if label.startswith("Tumor")}
    summary: Dict[str, object] = {
        "patient_id": plan.patient_id,
        "layout": plan.layout,
        "ct_series_instance_uid": ct_series_uid,
        "seg_path": seg_path.relative_to(root).as_posix(),
        "ai_seg_path": ai_path.relative_to(root).as_posix() if ai_path else None,
        "shape_kji": list(phantom.hounsfield.shape),
        "pixel_spacing": plan.pixel_spacing,
        "slice_spacing": SLICE_SPACING,
        "segments": [{"number": n + 1, "label": label, "kind": kind, "voxels": int(np.count_nonzero(mask))}
                     for n, (label, kind, mask) in enumerate(zip(phantom.labels, phantom.kinds, phantom.masks))],
        "tumour_count": sum(1 for kind in phantom.kinds if kind == "tumour"),
        "tumour_voxels_outside_liver": outside,
        "has_colors": plan.with_colors,
    }
    (folder / f"{plan.patient_id}.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    np.savez_compressed(folder / f"{plan.patient_id}.npz",
                        **{f"segment_{n + 1:02d}": mask for n, mask in enumerate(phantom.masks)})
    return summary


def ground_truth_masks(patient_id: str) -> Dict[str, np.ndarray]:
    """The generated label masks of a sample patient ([k, j, i] in CT slice order), by label."""
    for plan in PATIENTS:
        if plan.patient_id == patient_id:
            phantom = make_phantom(plan)
            return dict(zip(phantom.labels, phantom.masks))
    raise KeyError(f"no sample patient {patient_id!r}")


def load_ground_truth(root: Path, patient_id: str) -> Tuple[Dict[str, object], List[np.ndarray]]:
    """The JSON summary and the masks (in SEG order) written beside a generated sample."""
    folder = Path(root) / GROUND_TRUTH_FOLDER
    summary = json.loads((folder / f"{patient_id}.json").read_text(encoding="utf-8"))
    with np.load(folder / f"{patient_id}.npz") as data:
        masks = [data[f"segment_{n + 1:02d}"] for n in range(len(summary["segments"]))]
    return summary, masks


# ---------------------------------------------------------------------------------------------- clinical
def _clinical_rows(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    # The sheet lists every patient of the collection; the sample has images for three of them.
    for number in range(1001, 1009):
        tumours = {1001: 2, 1002: 8, 1003: 1}.get(number, int(rng.integers(1, 6)))
        rows.append({
            "Patient-ID": number,
            "De-identify Scout Name": f"CRLM{number - 1000:03d}",
            "age": int(rng.integers(35, 80)),
            "sex": int(rng.integers(1, 3)),
            "major_comorbidity": int(rng.integers(0, 2)),
            "body_mass_index": round(float(rng.uniform(19, 36)), 1),
            "node_positive_primary": int(rng.integers(0, 2)),
            "synchronous_crlm": int(rng.integers(0, 2)),
            "multiple_metastases": int(tumours > 1),
            "clinrisk_score": int(rng.integers(0, 5)),
            "clinrisk_stratified": int(rng.integers(0, 2)),
            "carcinoembryonic_antigen": round(float(rng.uniform(0.5, 120)), 1),
            "max_tumor_size": round(float(rng.uniform(0.5, 9)), 1),
            "bilobar_disease": int(rng.integers(0, 2)),
            "extrahep_disease": 0,
            "chemo_before_liver_resection": int(rng.integers(0, 2)),
            "preoperative_pve": 0,
            "steatosis_yesno": int(rng.integers(0, 2)),
            "presence_sinusoidal_dilata": int(rng.integers(0, 2)),
            "NASH_score": int(rng.integers(0, 6)),
            "NASH_yesno": int(rng.integers(0, 2)),
            "NASH_greater_4": 0,
            "total_response_percent": int(rng.integers(0, 100)),
            "necrosis_percent": int(rng.integers(0, 100)),
            "fibrosis_percent": int(rng.integers(0, 100)),
            "fibrosis_greater_40_percent": int(rng.integers(0, 2)),
            "mucin_percent": int(rng.integers(0, 30)),
            "overall_survival_months": round(float(rng.uniform(3, 150)), 2),
            "vital_status": int(rng.integers(0, 2)),
            "progression_or_recurrence": int(rng.integers(0, 2)),
            "months_to_DFS_progression": round(float(rng.uniform(1, 120)), 2),
            "vital_status_DFS": int(rng.integers(0, 2)),
            "progression_or_recurrence_liveronly": int(rng.integers(0, 2)),
            "months_to_liver_DFS_progression": round(float(rng.uniform(1, 120)), 2),
            "vital_status_liver_DFS": int(rng.integers(0, 2)),
            "relevant_notes": "",
        })
    table = pd.DataFrame(rows, columns=CLINICAL_COLUMNS)
    # Missing values are coded 999 / -999 in the real sheet.
    table.loc[0, "carcinoembryonic_antigen"] = 999
    table.loc[0, "NASH_score"] = -999
    table.loc[1, "total_response_percent"] = -999
    table.loc[1, "necrosis_percent"] = 999
    table.loc[2, "months_to_DFS_progression"] = -999
    table.loc[1, "relevant_notes"] = "resection margin positive"
    return table


def _write_clinical(root: Path) -> Path:
    path = root / CLINICAL_FILE
    table = _clinical_rows(np.random.default_rng(197))
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        table.to_excel(writer, sheet_name=CLINICAL_SHEET, index=False)
    return path


# ---------------------------------------------------------------------------------------------- entry point
def scaled_patients(count: int, slices: Optional[int] = None) -> Tuple[PatientPlan, ...]:
    """``count`` patients for measurements at scale (benchmarks): the sample's plans in turn, each under a
    PatientID and seed of its own (CRLM-CT-1101, CRLM-CT-1102, ...), so every case is a different patient;
    ``slices`` CT slices each instead of the sample's 20-32 (longer livers, more work per case)."""
    plans = []
    for number in range(count):
        template = PATIENTS[number % len(PATIENTS)]
        plans.append(dataclasses.replace(template, patient_id=f"CRLM-CT-{1101 + number}", seed=1101 + number,
                                         slices=slices or template.slices))
    return tuple(plans)


def generate(parent: Path, patients: Sequence[PatientPlan] = PATIENTS) -> Path:
    """Write the CRLM sample (or ``patients``, e.g. :func:`scaled_patients`) under ``parent``; returns the
    collection folder."""
    root = Path(parent) / COLLECTION_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    metadata: List[Tuple[Path, Dict[str, str]]] = []
    for plan in patients:
        _, rows = _generate_patient(plan, root)
        metadata.extend(rows)
    manifest = root / MANIFEST_FOLDER
    write_nbia_metadata_csv(manifest, COLLECTION_FOLDER, DOI_URL, metadata)
    _write_clinical(root)
    return root
