"""Soft-tissue-Sarcoma identity checks on mirp's real STS files: another patient's RTSTRUCT is refused by name,
another frame of reference is an error finding, a PatientID spelled differently is named (never dropped silently)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, List

import pydicom
import pytest

from conftest import require_shared_data
from SarcomaLungLiverBrowserLib.collections.soft_tissue_sarcoma import SoftTissueSarcomaCollection, patient_key
from SarcomaLungLiverBrowserLib.findings import ERROR, WARNING
from SarcomaLungLiverBrowserLib.formats.identity import CHECK_FRAME_OF_REFERENCE, CHECK_PATIENT
from SarcomaLungLiverBrowserLib.samples import soft_tissue_sarcoma as sample

MIRP_STS = Path("oncoray__mirp") / "test" / "data" / "sts_images"
CT_MASK = Path("CT") / "dicom" / "mask" / "RS.dcm"
CT_SEGMENTATION = "STS_002 IBSI_1_STS_002_CT_mask"


@pytest.fixture
def mirp_sts(external_data: Path, tmp_path: Path) -> Path:
    """A copy of mirp's STS_001 and STS_002 (DICOM only), to change."""
    source = external_data / MIRP_STS
    if not source.is_dir():
        require_shared_data(f"{source} not present")
    root = tmp_path / "sts_images"
    for patient in ("STS_001", "STS_002"):
        shutil.copytree(source / patient, root / patient, ignore=shutil.ignore_patterns("nifti"))
    return root


def _edit(paths: List[Path], change: Callable[[pydicom.Dataset], None]) -> None:
    for path in paths:
        dataset = pydicom.dcmread(str(path))
        change(dataset)
        dataset.save_as(str(path), enforce_file_format=True)


def _read(root: Path, case_id: str = "STS_002"):  # type: ignore[no-untyped-def]
    collection = SoftTissueSarcomaCollection(root)
    return collection.read_case(collection.find_case(case_id))


def _identity_findings(data) -> list:  # type: ignore[no-untyped-def]
    return [f for f in data.findings if f.check.startswith("identity.") or f.check in
            ("sts.patient_id_spelling", "sts.other_patient_files")]


def test_patient_key_joins_spellings_of_one_patient_only() -> None:
    assert patient_key("STS_001") == patient_key("sts-01") == patient_key(" STS001 ") == patient_key("STS_1")
    assert patient_key("STS_001") != patient_key("STS_010")
    assert patient_key("STS_002") != patient_key("STS_020")


def test_real_rtstructs_on_their_own_images_have_no_identity_finding(mirp_sts: Path) -> None:
    data = _read(mirp_sts)
    assert len(data.segmentations) == 3
    assert _identity_findings(data) == []


def test_another_patients_rtstruct_is_refused_with_a_message_naming_it(mirp_sts: Path) -> None:
    """STS_001's real CT RTSTRUCT copied into STS_002's folder: refused, STS_002's own three still load."""
    intruder = mirp_sts / "STS_002" / "CT" / "dicom" / "mask" / "RS_of_STS_001.dcm"
    shutil.copyfile(mirp_sts / "STS_001" / CT_MASK, intruder)
    data = _read(mirp_sts)
    assert len(data.segmentations) == 3
    assert not any("RS_of_STS_001" in segmentation.key for segmentation in data.segmentations)
    refused = [f for f in data.findings if f.check == CHECK_PATIENT]
    assert [f.severity for f in refused] == [ERROR]
    assert "RS_of_STS_001.dcm" in refused[0].message and "'STS_001'" in refused[0].message
    assert "refused" in refused[0].message and refused[0].path == str(intruder)


def test_an_rtstruct_relabelled_to_another_patient_is_refused(mirp_sts: Path) -> None:
    """Its references still fit STS_002's CT: only the PatientID tells it is not this patient's."""
    _edit([mirp_sts / "STS_002" / CT_MASK], lambda dataset: setattr(dataset, "PatientID", "STS_031"))
    data = _read(mirp_sts)
    assert CT_SEGMENTATION not in [segmentation.name for segmentation in data.segmentations]
    assert len(data.segmentations) == 2
    refused = [f for f in data.findings if f.check == CHECK_PATIENT]
    assert len(refused) == 1 and refused[0].severity == ERROR
    assert refused[0].message.startswith("RS.dcm:") and "'STS_031'" in refused[0].message


def test_patient_id_spelled_differently_is_named_and_still_read(mirp_sts: Path) -> None:
    ct_files = sorted((mirp_sts / "STS_002" / "CT" / "dicom" / "image").glob("*.dcm"))
    _edit(ct_files, lambda dataset: setattr(dataset, "PatientID", "STS-02"))
    _edit([mirp_sts / "STS_002" / CT_MASK], lambda dataset: setattr(dataset, "PatientID", "sts_0002"))
    data = _read(mirp_sts)
    assert len(data.volumes) == 3 and len(data.segmentations) == 3
    spelling = [f for f in data.findings if f.check == "sts.patient_id_spelling"]
    assert {f.severity for f in spelling} == {WARNING}
    images = next(f for f in spelling if "'STS-02'" in f.message)
    assert f"{len(ct_files)} file(s)" in images.message and ct_files[0].name in images.message
    structure = next(f for f in spelling if "'sts_0002'" in f.message)
    assert "RS.dcm" in structure.message
    assert any(f.check == CHECK_PATIENT and f.severity == WARNING and "spelled differently" in f.message
               for f in data.findings)


def test_another_patients_images_in_the_patients_folder_stay_that_patients(mirp_sts: Path) -> None:
    """Cases come from the headers: STS_001's PET slices copied into STS_002's folder are STS_001's (named there
    as repeated instances, left out of its volume) and change nothing in STS_002."""
    stray = sorted((mirp_sts / "STS_001" / "PET" / "dicom" / "image").glob("*.dcm"))[:2]
    folder = mirp_sts / "STS_002" / "strays"
    folder.mkdir()
    for path in stray:
        shutil.copyfile(path, folder / f"stray_{path.name}")
    data = _read(mirp_sts)
    assert len(data.volumes) == 3
    assert not [f for f in data.findings if f.severity != "info" and "stray_" in f.message]
    first = _read(mirp_sts, "STS_001")
    named = [f for f in first.findings if "stray_" in f.message]
    assert len(named) == 2 and all(f.severity == WARNING and "repeats the SOPInstanceUID" in f.message
                                   for f in named)


def test_flat_export_keeps_other_patients_files_to_their_own_cases(mirp_sts: Path, tmp_path: Path) -> None:
    """Every file of both patients in one folder: each case reads its own, with no identity finding."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for index, path in enumerate(sorted(mirp_sts.rglob("*.dcm"))):
        shutil.copyfile(path, flat / f"{index:05d}.dcm")
    collection = SoftTissueSarcomaCollection(flat)
    for case in collection.discover_cases():
        data = collection.read_case(case)
        assert len(data.segmentations) == 3, case.case_id
        assert _identity_findings(data) == [], case.case_id


# ---------------------------------------------------------------------- generated sample: references by instance
def test_rtstruct_in_another_frame_of_reference_is_an_error_finding(tmp_path: Path) -> None:
    """The sample's RTSTRUCTs reference their images' instances, so the images are found; the frame is not theirs."""
    root = sample.generate(tmp_path)
    collection = SoftTissueSarcomaCollection(root)
    case = collection.find_case("STS_001")
    data = collection.read_case(case)
    target = Path(data.provenance["rtstruct_files"][0])
    other = "1.2.826.0.1.3680043.8.498.77"

    def other_frame(dataset: pydicom.Dataset) -> None:
        dataset.FrameOfReferenceUID = other
        for item in dataset.get("ReferencedFrameOfReferenceSequence", []):
            item.FrameOfReferenceUID = other
        for item in dataset.StructureSetROISequence:
            item.ReferencedFrameOfReferenceUID = other

    _edit([target], other_frame)
    data = collection.read_case(case)
    frames = [f for f in data.findings if f.check == CHECK_FRAME_OF_REFERENCE]
    assert len(frames) == 1 and frames[0].severity == ERROR
    assert frames[0].message.startswith(f"{target.name}:") and other in frames[0].message


# ---------------------------------------------------------------------- colours of ROIs the file gives none
def test_rois_without_display_colour_get_distinct_colours(mirp_sts: Path) -> None:
    """The real CT RTSTRUCT's ROI copied into nine non-GTV ROIs without ROIDisplayColor: nine colours."""
    import copy

    from SarcomaLungLiverBrowserLib.formats.rtstruct import DEFAULT_COLOR, read_rtstruct

    path = mirp_sts / "STS_002" / CT_MASK

    def nine_nodes(dataset: pydicom.Dataset) -> None:
        roi, contours = dataset.StructureSetROISequence[0], dataset.ROIContourSequence[0]
        dataset.StructureSetROISequence, dataset.ROIContourSequence = [], []
        for number in range(1, 10):
            item, contour = copy.deepcopy(roi), copy.deepcopy(contours)
            item.ROINumber, item.ROIName = number, f"Node_{number}"
            contour.ReferencedROINumber = number
            if "ROIDisplayColor" in contour:
                del contour.ROIDisplayColor
            dataset.StructureSetROISequence.append(item)
            dataset.ROIContourSequence.append(contour)
        dataset.pop("RTROIObservationsSequence", None)

    assert read_rtstruct(path).rois[0].display_color_given  # the real file gives its colour
    _edit([path], nine_nodes)
    assert not any(roi.display_color_given for roi in read_rtstruct(path).rois)
    data = _read(mirp_sts)
    segmentation = next(s for s in data.segmentations if s.name == CT_SEGMENTATION)
    colours = {spec.segment_id: tuple(spec.color) for spec in segmentation.segments}
    assert sorted(colours) == [f"Node_{number}" for number in range(1, 10)]
    assert len(set(colours.values())) == 9 and colours["Node_9"] != colours["Node_1"]
    assert DEFAULT_COLOR not in colours.values()
