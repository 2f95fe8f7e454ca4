"""Write image series as real DICOM files in the layouts users download.

Used by the sample-collection generators. Layout facts (from
``shared/notes/lung_voc.md`` §5 and ``datasets.md`` §1):

* NBIA Data Retriever, descriptive names:
  ``manifest-<ms>/<Collection>/<PatientID>/<MM-DD-YYYY>-<StudyID or NA>-<StudyDescription>-<last 5 of StudyUID>/
  <SeriesNumber>.000000-<SeriesDescription>-<last 5 of SeriesUID>/1-<InstanceNumber>.dcm``, with ``^ ( )``
  dropped from descriptions and the instance number zero-padded to the width of the image count;
  ``metadata.csv`` beside the collection folder.
* IDC (idc-index default): ``<collection_id>/<PatientID>/<StudyUID>/<Modality>_<SeriesUID>/<uuid>.dcm``.
"""
from __future__ import annotations

import csv
import datetime
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

__all__ = [
    "SeriesSpec",
    "WrittenSeries",
    "write_series",
    "nbia_series_folder",
    "idc_series_folder",
    "write_nbia_metadata_csv",
    "uid_from_seed",
    "SOP_CLASS_BY_MODALITY",
]

SOP_CLASS_BY_MODALITY = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
}
SOP_CLASS_NAMES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.128": "Positron Emission Tomography Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set Storage",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR Storage",
}

#: TCIA's de-identified UIDs share this root (the sample Lung-PET-CT-Dx XML names start with it).
TCIA_UID_ROOT = "1.3.6.1.4.1.14519.5.2.1."


def uid_from_seed(*parts: object) -> str:
    """A deterministic UID under TCIA's root, so generated data is reproducible."""
    return generate_uid(prefix=TCIA_UID_ROOT, entropy_srcs=[str(part) for part in parts])


@dataclass
class SeriesSpec:
    """One image series to write.

    :param stored_values: [k, j, i] stored pixel values (before rescale).
    :param positions: LPS ImagePositionPatient of each slice, in k order.
    :param orientation: ImageOrientationPatient (row direction, column direction).
    :param pixel_spacing: (row spacing, column spacing) in mm.
    :param extra: further attributes set on every instance (keyword -> value);
        a value of ``None`` deletes the attribute (to model missing tags).
    :param per_instance_extra: attributes per slice index, same rules.
    """

    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    modality: str
    series_number: int
    series_description: str
    stored_values: np.ndarray
    positions: Sequence[Sequence[float]]
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    pixel_spacing: Tuple[float, float] = (1.0, 1.0)
    slice_thickness: float = 1.0
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    study_date: str = "20070404"
    study_description: str = ""
    study_id: str = ""
    patient_name: str = ""
    manufacturer: str = "SIEMENS"
    window: Optional[Tuple[float, float]] = None
    instance_numbers: Optional[Sequence[int]] = None
    extra: Dict[str, Any] = field(default_factory=dict)
    per_instance_extra: Dict[int, Dict[str, Any]] = field(default_factory=dict)


@dataclass
class WrittenSeries:
    """Where a series went and the UIDs of its slices (in k order)."""

    folder: Path
    paths: List[Path]
    sop_instance_uids: List[str]
    spec: SeriesSpec


def _base_dataset(spec: SeriesSpec, sop_instance_uid: str) -> FileDataset:
    sop_class_uid = SOP_CLASS_BY_MODALITY[spec.modality]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    dataset = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SpecificCharacterSet = "ISO_IR 100"
    dataset.SOPClassUID = sop_class_uid
    dataset.SOPInstanceUID = sop_instance_uid
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    dataset.StudyDate = spec.study_date
    dataset.SeriesDate = spec.study_date
    dataset.StudyTime = "120000"
    dataset.SeriesTime = "120000"
    dataset.AccessionNumber = ""
    dataset.Modality = spec.modality
    dataset.Manufacturer = spec.manufacturer
    dataset.ReferringPhysicianName = ""
    dataset.StudyDescription = spec.study_description
    dataset.SeriesDescription = spec.series_description
    dataset.PatientName = spec.patient_name or spec.patient_id
    dataset.PatientID = spec.patient_id
    dataset.PatientBirthDate = ""
    dataset.PatientSex = "O"
    dataset.PatientAge = ""
    dataset.BodyPartExamined = ""
    dataset.SliceThickness = f"{spec.slice_thickness:g}"
    dataset.PatientPosition = "HFS"
    dataset.StudyInstanceUID = spec.study_instance_uid
    dataset.SeriesInstanceUID = spec.series_instance_uid
    dataset.StudyID = spec.study_id
    dataset.SeriesNumber = spec.series_number
    dataset.FrameOfReferenceUID = spec.frame_of_reference_uid
    dataset.PositionReferenceIndicator = ""
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.ImageOrientationPatient = [f"{v:.10g}" for v in spec.orientation]
    dataset.PixelSpacing = [f"{v:.10g}" for v in spec.pixel_spacing]
    dataset.RescaleSlope = f"{spec.rescale_slope:.10g}"
    dataset.RescaleIntercept = f"{spec.rescale_intercept:.10g}"
    if spec.modality == "CT":
        dataset.RescaleType = "HU"
        dataset.KVP = "120"
    if spec.modality == "PT":
        dataset.Units = "BQML"
        dataset.CorrectedImage = ["ATTN", "DECY"]
        dataset.DecayCorrection = "START"
    if spec.window is not None:
        dataset.WindowWidth = f"{spec.window[0]:g}"
        dataset.WindowCenter = f"{spec.window[1]:g}"
    return dataset


def write_series(spec: SeriesSpec, folder: Path, file_names: str = "nbia") -> WrittenSeries:
    """Write ``spec`` as single-frame files into ``folder``.

    :param file_names: ``"nbia"`` (``1-01.dcm``...), ``"idc"`` (random UUIDs)
        or ``"sop"`` (the SOPInstanceUID).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    values = np.asarray(spec.stored_values)
    if values.ndim != 3 or len(spec.positions) != values.shape[0]:
        raise ValueError("stored_values must be [k, j, i] with one position per slice")
    signed = values.min() < 0
    fits_12_bits = (-2048 <= values.min() and values.max() <= 2047) if signed else values.max() <= 4095
    bits_stored = 12 if fits_12_bits else 16
    pixel_dtype = np.int16 if signed else np.uint16
    width = max(2, len(str(values.shape[0]))) if values.shape[0] > 1 else 1
    paths: List[Path] = []
    uids: List[str] = []
    for index in range(values.shape[0]):
        sop_uid = uid_from_seed(spec.series_instance_uid, index)
        dataset = _base_dataset(spec, sop_uid)
        number = spec.instance_numbers[index] if spec.instance_numbers else index + 1
        dataset.InstanceNumber = number
        dataset.ImagePositionPatient = [f"{v:.10g}" for v in spec.positions[index]]
        dataset.SliceLocation = f"{float(spec.positions[index][2]):.10g}"
        dataset.Rows, dataset.Columns = int(values.shape[1]), int(values.shape[2])
        dataset.BitsAllocated = 16
        # Scanners store 12 bits when the values fit (most CT), 16 otherwise.
        dataset.BitsStored = bits_stored
        dataset.HighBit = bits_stored - 1
        dataset.PixelRepresentation = 1 if signed else 0
        dataset.PixelData = np.ascontiguousarray(values[index].astype(pixel_dtype)).tobytes()
        for source in (spec.extra, spec.per_instance_extra.get(index, {})):
            for keyword, value in source.items():
                if value is None:
                    if keyword in dataset:
                        delattr(dataset, keyword)
                else:
                    setattr(dataset, keyword, value)
        if file_names == "nbia":
            name = f"1-{number:0{width}d}.dcm"
        elif file_names == "idc":
            name = f"{uuid.uuid5(uuid.NAMESPACE_OID, sop_uid)}.dcm"
        elif file_names == "sop":
            name = f"{sop_uid}.dcm"
        else:
            raise ValueError(f"unknown file naming {file_names!r}")
        path = folder / name
        dataset.save_as(str(path), enforce_file_format=True)
        paths.append(path)
        uids.append(sop_uid)
    return WrittenSeries(folder=folder, paths=paths, sop_instance_uids=uids, spec=spec)


_DROPPED = re.compile(r"[\^()<>:\"/\\|?*]")


def _sanitise(text: str) -> str:
    return _DROPPED.sub("", text).strip()


def nbia_study_folder_name(study_date: str, study_id: str, study_description: str, study_uid: str) -> str:
    """``MM-DD-YYYY-<StudyID or NA>-<description>-<last 5 of StudyUID>`` as NBIA writes it."""
    date = datetime.datetime.strptime(study_date, "%Y%m%d").strftime("%m-%d-%Y")
    parts = [date, study_id or "NA"]
    description = _sanitise(study_description)
    if description:
        parts.append(description)
    parts.append(study_uid.replace(".", "")[-5:])
    return "-".join(parts)


def nbia_series_folder_name(series_number: int, series_description: str, series_uid: str) -> str:
    """``<n>.000000-<description or NA>-<last 5 of SeriesUID>`` as NBIA writes it."""
    description = _sanitise(series_description) or "NA"
    return f"{series_number:d}.000000-{description}-{series_uid.replace('.', '')[-5:]}"


def nbia_series_folder(collection_folder: Path, spec: SeriesSpec) -> Path:
    """Folder for ``spec`` under an NBIA collection folder (``.../<Collection>/``)."""
    return (
        Path(collection_folder)
        / spec.patient_id
        / nbia_study_folder_name(spec.study_date, spec.study_id, spec.study_description, spec.study_instance_uid)
        / nbia_series_folder_name(spec.series_number, spec.series_description, spec.series_instance_uid)
    )


def idc_series_folder(collection_folder: Path, patient_id: str, study_uid: str, modality: str, series_uid: str) -> Path:
    """Folder for a series in idc-index's default download hierarchy."""
    return Path(collection_folder) / patient_id / study_uid / f"{modality}_{series_uid}"


METADATA_COLUMNS = [
    "Series UID", "Collection", "3rd Party Analysis", "Data Description URI", "Subject ID", "Study UID",
    "Study Description", "Study Date", "Series Description", "Manufacturer", "Modality", "SOP Class Name",
    "SOP Class UID", "Number of Images", "File Size", "File Location", "Download Timestamp",
]


def write_nbia_metadata_csv(manifest_folder: Path, collection: str, doi_url: str,
                            series: Sequence[Tuple[Path, Dict[str, Any]]]) -> Path:
    """Write NBIA's ``metadata.csv`` for series folders under ``manifest_folder``.

    :param series: (series folder, facts) pairs; facts holds the DICOM values
        (SeriesInstanceUID, PatientID, StudyInstanceUID, StudyDescription,
        StudyDate, SeriesDescription, Manufacturer, Modality, SOPClassUID).
    """
    manifest_folder = Path(manifest_folder)
    path = manifest_folder / "metadata.csv"
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(METADATA_COLUMNS)
        for folder, facts in series:
            files = sorted(Path(folder).glob("*.dcm"))
            size = sum(f.stat().st_size for f in files)
            date = datetime.datetime.strptime(facts["StudyDate"], "%Y%m%d").strftime("%m-%d-%Y")
            writer.writerow([
                facts["SeriesInstanceUID"], collection, "NO", doi_url, facts["PatientID"],
                facts["StudyInstanceUID"], facts.get("StudyDescription", ""), date,
                facts.get("SeriesDescription", ""), facts.get("Manufacturer", ""), facts["Modality"],
                SOP_CLASS_NAMES.get(facts["SOPClassUID"], ""), facts["SOPClassUID"], len(files),
                f"{size / 1e6:.2f} MB", "./" + Path(folder).relative_to(manifest_folder).as_posix(),
                "2026-11-23T00:00:00.000",
            ])
    return path


def facts_of(written: WrittenSeries) -> Dict[str, Any]:
    """The ``metadata.csv`` facts of a written image series."""
    spec = written.spec
    return {
        "SeriesInstanceUID": spec.series_instance_uid,
        "PatientID": spec.patient_id,
        "StudyInstanceUID": spec.study_instance_uid,
        "StudyDescription": spec.study_description,
        "StudyDate": spec.study_date,
        "SeriesDescription": spec.series_description,
        "Manufacturer": spec.manufacturer,
        "Modality": spec.modality,
        "SOPClassUID": SOP_CLASS_BY_MODALITY[spec.modality],
    }
