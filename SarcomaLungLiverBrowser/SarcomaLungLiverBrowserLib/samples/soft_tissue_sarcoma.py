"""A two-patient TCIA Soft-tissue-Sarcoma sample with MIM-style RT Structure Sets.

Facts carried over (``shared/notes/datasets.md`` §3, ``idc_tables.md``):

* two studies per patient: a PET/CT study (CT, PT and the MR series resampled
  to PET, ``Aligned_T1toPET_BOX`` ...) sharing the PET/CT frame of reference,
  and an MR study (T1 plus T2FS or STIR) with its own;
* exactly six RTSTRUCTs per patient, one per image series, written by
  "MIM Software Inc." in Implicit VR Little Endian, with SeriesDescription
  variants ``RTstruct_T1``, ``RTStruct_PET``, ``RTstruct_AlignedT!toPET``,
  ``RTstruct_AlignedT1toPET_BOX``, ``RTstruct_Aligned_STIRtoPET``;
* ROI names ``GTV_Mass`` / ``GTV_Edema`` (the edema includes the mass) and
  STS_030's ``GTV_Research`` / ``GTV_Res+edema``;
* clinical data in ``INFOclinical_STS.xlsx`` (``Patient ID``, ``Histological type``...).

Deliberate quirks: STS_001 is written in the NBIA layout and STS_002 in
IDC's; STS_001's RTstruct_CT has a contour of two points; STS_002's
RTStruct_PET references SOP instances and a series that are not on disk (as
mirp's re-exported ``RS.dcm`` files do), so only the frame of reference ties
it to the PET.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ImplicitVRLittleEndian

from .dicom_writer import (
    SeriesSpec, WrittenSeries, facts_of, idc_series_folder, nbia_series_folder, uid_from_seed,
    write_nbia_metadata_csv, write_series,
)

__all__ = ["generate", "TUMOUR_CENTRE_LPS", "MASS_RADIUS_MM", "EDEMA_RADIUS_MM", "PATIENTS",
           "CONTOUR_POINTS", "write_rtstruct", "RoiSpec", "circle_polygon_area"]

COLLECTION_FOLDER = "Soft-tissue-Sarcoma"
DOI_URL = "https://doi.org/10.7937/K9/TCIA.2015.7GO2GSKS"
RTSTRUCT_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.481.3"

#: Tumour geometry shared by every image of a patient (a sphere and a larger edema sphere).
TUMOUR_CENTRE_LPS = (0.0, 0.0, 0.0)
MASS_RADIUS_MM = 14.0
EDEMA_RADIUS_MM = 20.0
#: Corners of each generated circular contour.
CONTOUR_POINTS = 24

#: Patient ID -> (layout, histological type, T2 sequence name).
PATIENTS = {
    "STS_001": ("nbia", "Liposarcoma", "T2FS"),
    "STS_002": ("idc", "Leiomyosarcoma", "STIR"),
}


@dataclass
class RoiSpec:
    """One ROI to write: a name, a colour, and polygons (LPS, (n, 3)) with the image each was drawn on."""

    number: int
    name: str
    color: Tuple[int, int, int]
    contours: List[Tuple[np.ndarray, str]]


def circle_polygon_area(radius: float, corners: int = CONTOUR_POINTS) -> float:
    """Area of the regular polygon the generator writes for a circle of ``radius``."""
    return 0.5 * corners * radius * radius * math.sin(2.0 * math.pi / corners)


def _circle(z: float, radius: float, corners: int = CONTOUR_POINTS) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * math.pi, corners, endpoint=False)
    return np.stack([TUMOUR_CENTRE_LPS[0] + radius * np.cos(angles),
                     TUMOUR_CENTRE_LPS[1] + radius * np.sin(angles),
                     np.full(corners, z)], axis=1)


def _section_radius(radius: float, z: float) -> float:
    height = z - TUMOUR_CENTRE_LPS[2]
    return math.sqrt(radius * radius - height * height) if abs(height) < radius else 0.0


@dataclass
class _ImageDesign:
    key: str            # CT, PET, T1, T2, ALIGNED_T1, ALIGNED_T2
    modality: str
    description: str
    study: str          # "petct" or "mr"
    size: int
    pixel_mm: float
    slices: int
    slice_mm: float
    base: float
    tumour: float


def _designs(t2_name: str) -> List[_ImageDesign]:
    t2_description = "AXIAL SE T2 FAT SAT - RESEARCH" if t2_name == "T2FS" else "AXIAL STIR - RESEARCH"
    return [
        _ImageDesign("CT", "CT", "CT IMAGES - RESEARCH", "petct", 48, 1.5, 9, 3.27, 40, 80),
        _ImageDesign("PET", "PT", "PET AC", "petct", 24, 3.0, 9, 3.27, 100, 2500),
        _ImageDesign("ALIGNED_T1", "MR", "Aligned_T1toPET_BOX", "petct", 24, 3.0, 9, 3.27, 200, 600),
        _ImageDesign("ALIGNED_T2", "MR", f"Aligned_{t2_name}toPET_BOX", "petct", 24, 3.0, 9, 3.27, 150, 700),
        _ImageDesign("T1", "MR", "AXIAL SE T1 - RESEARCH", "mr", 48, 1.5, 7, 5.5, 200, 600),
        _ImageDesign("T2", "MR", t2_description, "mr", 48, 1.5, 7, 5.0, 150, 700),
    ]


def _image_values(design: _ImageDesign, rng: np.random.Generator) -> Tuple[np.ndarray, List[Tuple[float, float, float]]]:
    half = design.size * design.pixel_mm / 2.0
    origin_xy = (TUMOUR_CENTRE_LPS[0] - half + design.pixel_mm / 2.0, TUMOUR_CENTRE_LPS[1] - half + design.pixel_mm / 2.0)
    z0 = TUMOUR_CENTRE_LPS[2] - design.slice_mm * (design.slices // 2)
    positions = [(origin_xy[0], origin_xy[1], z0 + k * design.slice_mm) for k in range(design.slices)]
    centres = origin_xy[0] + design.pixel_mm * np.arange(design.size)
    x, y = np.meshgrid(centres, origin_xy[1] + design.pixel_mm * np.arange(design.size))
    values = np.zeros((design.slices, design.size, design.size), dtype=np.int32)
    for k, (_, _, z) in enumerate(positions):
        radius = _section_radius(MASS_RADIUS_MM, z)
        inside = (x - TUMOUR_CENTRE_LPS[0]) ** 2 + (y - TUMOUR_CENTRE_LPS[1]) ** 2 <= radius * radius
        noise = rng.normal(0.0, 5.0, size=x.shape)
        values[k] = np.round(design.base + noise + design.tumour * inside).astype(np.int32)
    return values, positions


def _write_images(patient_id: str, layout: str, t2_name: str, collection_folder: Path,
                  rng: np.random.Generator) -> Dict[str, WrittenSeries]:
    studies = {
        "petct": (uid_from_seed(patient_id, "study", "petct"), "PET CT RESEARCH", "20061024"),
        "mr": (uid_from_seed(patient_id, "study", "mr"), "MRI RESEARCH", "20061012"),
    }
    frames = {"petct": uid_from_seed(patient_id, "for", "petct"), "mr": uid_from_seed(patient_id, "for", "mr")}
    written: Dict[str, WrittenSeries] = {}
    for number, design in enumerate(_designs(t2_name), start=1):
        study_uid, study_description, study_date = studies[design.study]
        values, positions = _image_values(design, rng)
        spec = SeriesSpec(
            patient_id=patient_id,
            study_instance_uid=study_uid,
            series_instance_uid=uid_from_seed(patient_id, "series", design.key),
            frame_of_reference_uid=frames[design.study],
            modality=design.modality,
            series_number=number,
            series_description=design.description,
            stored_values=values + (1024 if design.modality == "CT" else 0),
            positions=positions,
            pixel_spacing=(design.pixel_mm, design.pixel_mm),
            slice_thickness=design.slice_mm,
            rescale_intercept=-1024.0 if design.modality == "CT" else 0.0,
            study_date=study_date,
            study_description=study_description,
            manufacturer="GE MEDICAL SYSTEMS" if design.modality != "MR" or design.key.startswith("ALIGNED")
            else "SIEMENS",
            window=(400.0, 40.0) if design.modality == "CT" else None,
        )
        if design.key.startswith("ALIGNED"):
            spec.manufacturer = "SIEMENS / MIM Software"
        if layout == "nbia":
            folder = nbia_series_folder(collection_folder, spec)
            written[design.key] = write_series(spec, folder, file_names="nbia")
        else:
            folder = idc_series_folder(collection_folder, patient_id, study_uid, design.modality,
                                       spec.series_instance_uid)
            written[design.key] = write_series(spec, folder, file_names="idc")
    return written


def _contours_on(series: WrittenSeries, radius: float) -> List[Tuple[np.ndarray, str]]:
    contours = []
    for uid, position in zip(series.sop_instance_uids, series.spec.positions):
        section = _section_radius(radius, float(position[2]))
        if section > 0.5:
            contours.append((_circle(float(position[2]), section), uid))
    return contours


def write_rtstruct(
    path: Path,
    image: WrittenSeries,
    series_description: str,
    rois: Sequence[RoiSpec],
    series_instance_uid: str,
    referenced_series_uid: Optional[str] = None,
    referenced_sop_class_uid: Optional[str] = None,
) -> Path:
    """Write an RT Structure Set the way MIM exported them for this collection.

    :param referenced_series_uid: the series named in RTReferencedSeriesSequence
        (defaults to the image's; pass another to model a set whose images are elsewhere).
    """
    spec = image.spec
    sop_uid = uid_from_seed(series_instance_uid, "instance")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS_UID
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS_UID
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = spec.study_date
    ds.SeriesDate = spec.study_date
    ds.StudyTime = "120000"
    ds.Modality = "RTSTRUCT"
    ds.Manufacturer = "MIM Software Inc."
    ds.ManufacturerModelName = "MIM"
    ds.SoftwareVersions = "6.3.9"
    ds.StudyDescription = spec.study_description
    ds.SeriesDescription = series_description
    ds.PatientName = spec.patient_id
    ds.PatientID = spec.patient_id
    ds.StudyInstanceUID = spec.study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = spec.frame_of_reference_uid
    ds.StructureSetLabel = "RTstruct"
    ds.StructureSetDate = spec.study_date
    ds.StructureSetTime = "120000"
    class_uid = referenced_sop_class_uid or pydicom.dcmread(str(image.paths[0]), stop_before_pixels=True).SOPClassUID
    all_images = DicomSequence()
    for uid in {uid for roi in rois for _, uid in roi.contours} | set(image.sop_instance_uids if
                                                                        referenced_series_uid is None else []):
        item = Dataset()
        item.ReferencedSOPClassUID = class_uid
        item.ReferencedSOPInstanceUID = uid
        all_images.append(item)
    series_item = Dataset()
    series_item.SeriesInstanceUID = referenced_series_uid or spec.series_instance_uid
    series_item.ContourImageSequence = all_images
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_item.ReferencedSOPInstanceUID = spec.study_instance_uid
    study_item.RTReferencedSeriesSequence = DicomSequence([series_item])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = spec.frame_of_reference_uid
    frame_item.RTReferencedStudySequence = DicomSequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_item])
    structure_rois, contour_rois, observations = DicomSequence(), DicomSequence(), DicomSequence()
    for roi in rois:
        item = Dataset()
        item.ROINumber = roi.number
        item.ReferencedFrameOfReferenceUID = spec.frame_of_reference_uid
        item.ROIName = roi.name
        item.ROIGenerationAlgorithm = "MANUAL"
        structure_rois.append(item)
        contour_item = Dataset()
        contour_item.ROIDisplayColor = list(roi.color)
        contour_item.ReferencedROINumber = roi.number
        contours = DicomSequence()
        for points, uid in roi.contours:
            contour = Dataset()
            image_item = Dataset()
            image_item.ReferencedSOPClassUID = class_uid
            image_item.ReferencedSOPInstanceUID = uid
            contour.ContourImageSequence = DicomSequence([image_item])
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [f"{v:.6g}" for v in np.asarray(points).ravel()]
            contours.append(contour)
        contour_item.ContourSequence = contours
        contour_rois.append(contour_item)
        observation = Dataset()
        observation.ObservationNumber = roi.number
        observation.ReferencedROINumber = roi.number
        observation.ROIObservationLabel = roi.name
        observation.RTROIInterpretedType = "GTV"
        observation.ROIInterpreter = ""
        observations.append(observation)
    ds.StructureSetROISequence = structure_rois
    ds.ROIContourSequence = contour_rois
    ds.RTROIObservationsSequence = observations
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)


#: (image key, SeriesDescription) per patient; the spelling variants are the collection's own.
RTSTRUCT_DESCRIPTIONS = {
    "STS_001": {"CT": "RTstruct_CT", "PET": "RTstruct_PET", "T1": "RTstruct_T1", "T2": "RTstruct_T2FS",
                "ALIGNED_T1": "RTstruct_AlignedT!toPET", "ALIGNED_T2": "RTstruct_AlignedT2FStoPET"},
    "STS_002": {"CT": "RTstruct_CT", "PET": "RTStruct_PET", "T1": "RTstruct_T1", "T2": "RTstruct_STIR",
                "ALIGNED_T1": "RTstruct_AlignedT1toPET_BOX", "ALIGNED_T2": "RTstruct_Aligned_STIRtoPET"},
}


def _rtstruct_folder(layout: str, collection_folder: Path, image: WrittenSeries, description: str,
                     series_uid: str) -> Path:
    spec = image.spec
    if layout == "nbia":
        fake = SeriesSpec(spec.patient_id, spec.study_instance_uid, series_uid, spec.frame_of_reference_uid, "CT",
                          1, description, np.zeros((1, 1, 1)), [(0, 0, 0)], study_date=spec.study_date,
                          study_description=spec.study_description)
        return nbia_series_folder(collection_folder, fake)
    return idc_series_folder(collection_folder, spec.patient_id, spec.study_instance_uid, "RTSTRUCT", series_uid)


def _write_rtstructs(patient_id: str, layout: str, collection_folder: Path,
                     images: Dict[str, WrittenSeries]) -> List[Tuple[Path, Dict[str, str]]]:
    written = []
    for key, description in RTSTRUCT_DESCRIPTIONS[patient_id].items():
        image = images[key]
        mass_name, edema_name = "GTV_Mass", "GTV_Edema"
        if patient_id == "STS_002" and key == "T1":
            mass_name, edema_name = "GTV_Research", "GTV_Res+edema"
        mass = RoiSpec(1, mass_name, (255, 0, 0), _contours_on(image, MASS_RADIUS_MM))
        rois = [mass]
        if patient_id == "STS_001" or key == "T1":
            rois.append(RoiSpec(2, edema_name, (0, 255, 0), _contours_on(image, EDEMA_RADIUS_MM)))
        if patient_id == "STS_001" and key == "CT":
            # A stray two-point "contour" on the central slice, as a mis-click leaves behind.
            middle = len(image.sop_instance_uids) // 2
            z = float(image.spec.positions[middle][2])
            mass.contours.append((np.array([[30.0, 30.0, z], [31.0, 30.5, z]]), image.sop_instance_uids[middle]))
        referenced_series = None
        class_uid = None
        if patient_id == "STS_002" and key == "PET":
            # References the original PET instances, which this download does not hold.
            referenced_series = uid_from_seed(patient_id, "original-pet-series")
            mass.contours = [(points, uid_from_seed(patient_id, "original-pet", uid)) for points, uid in mass.contours]
            class_uid = "1.2.840.10008.5.1.4.1.1.128"
        series_uid = uid_from_seed(patient_id, "rtstruct", key)
        folder = _rtstruct_folder(layout, collection_folder, image, description, series_uid)
        name = "1-1.dcm" if layout == "nbia" else f"{uuid.uuid5(uuid.NAMESPACE_OID, series_uid)}.dcm"
        write_rtstruct(folder / name, image, description, rois, series_uid, referenced_series, class_uid)
        facts = {
            "SeriesInstanceUID": series_uid, "PatientID": patient_id,
            "StudyInstanceUID": image.spec.study_instance_uid, "StudyDescription": image.spec.study_description,
            "StudyDate": image.spec.study_date, "SeriesDescription": description,
            "Manufacturer": "MIM Software Inc.", "Modality": "RTSTRUCT", "SOPClassUID": RTSTRUCT_SOP_CLASS_UID,
        }
        written.append((folder, facts))
    return written


def _write_clinical(root: Path) -> Path:
    rows = []
    for number, (patient_id, (_, histology, _)) in enumerate(PATIENTS.items()):
        rows.append({
            "Patient ID": patient_id, "Sex": "M" if number == 0 else "F", "Age": 63 - 8 * number,
            "Site of primary STS": "Thigh" if number == 0 else "Pelvis", "Histological type": histology,
            "MSKCC type": "Liposarcoma" if histology == "Liposarcoma" else "Other",
            "Grade": "High" if number == 0 else "Intermediate",
            "Lung metastases (Yes/No)": "No" if number == 0 else "Yes",
            "Outcome (recurrence, mets)": "0" if number == 0 else "1",
        })
    path = root / "INFOclinical_STS.xlsx"
    pd.DataFrame(rows).to_excel(path, index=False, sheet_name="Sheet1")
    return path


def generate(parent: Path) -> Path:
    """Write the sample under ``parent/soft_tissue_sarcoma`` and return that folder."""
    root = Path(parent) / "soft_tissue_sarcoma"
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20150715)
    manifest = root / "manifest-1700000000000"
    nbia_collection = manifest / COLLECTION_FOLDER
    idc_collection = root / "idc" / "soft_tissue_sarcoma"
    nbia_rows: List[Tuple[Path, Dict[str, str]]] = []
    for patient_id, (layout, _, t2_name) in PATIENTS.items():
        collection_folder = nbia_collection if layout == "nbia" else idc_collection
        images = _write_images(patient_id, layout, t2_name, collection_folder, rng)
        structures = _write_rtstructs(patient_id, layout, collection_folder, images)
        if layout == "nbia":
            nbia_rows.extend((series.folder, facts_of(series)) for series in images.values())
            nbia_rows.extend(structures)
    write_nbia_metadata_csv(manifest, COLLECTION_FOLDER, DOI_URL, nbia_rows)
    _write_clinical(root)
    return root
