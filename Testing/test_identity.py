"""Identity checks between annotations and images, on real headers from /work/shared/external_testdata."""
from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.findings import ERROR, WARNING
from SarcomaLungLiverBrowserLib.formats.dicom_seg import read_seg_header
from SarcomaLungLiverBrowserLib.formats.dicom_series import scan_folder
from SarcomaLungLiverBrowserLib.formats.identity import (
    CHECK_DUPLICATE_SOP, CHECK_FRAME_OF_REFERENCE, CHECK_PATIENT, CHECK_STUDY, duplicate_instance_findings,
    identity_findings, identity_of, instance_for_placement)
from SarcomaLungLiverBrowserLib.formats.rtstruct import read_rtstruct

DCMQI = Path("QIICR__dcmqi") / "data" / "segmentations"
HIGHDICOM = Path("ImagingDataCommons__highdicom") / "data" / "test_files"
STS = Path("oncoray__mirp") / "test" / "data" / "sts_images"


def _checks(findings) -> dict:  # type: ignore[no-untyped-def]
    return {finding.check: finding.severity for finding in findings}


def test_a_seg_on_its_own_ct_has_no_identity_finding(external_data: Path) -> None:
    seg = read_seg_header(external_data / DCMQI / "liver.dcm")
    ct = scan_folder(external_data / DCMQI / "ct-3slice").instances
    assert identity_of(seg).patient_id == "99000"
    assert identity_findings(seg, ct, seg.path) == []


def test_another_patients_seg_is_an_error_naming_the_file(external_data: Path) -> None:
    """highdicom's SEG belongs to patient 77654033; its ct_image.dcm is patient 1CT1, another frame."""
    seg = read_seg_header(external_data / HIGHDICOM / "seg_image_ct_binary.dcm")
    other_ct = scan_folder(external_data / HIGHDICOM).instances
    other_ct = [instance for instance in other_ct if instance.modality == "CT"]
    findings = identity_findings(seg, other_ct, seg.path, case_id="1CT1")
    assert _checks(findings) == {CHECK_PATIENT: ERROR, CHECK_FRAME_OF_REFERENCE: ERROR, CHECK_STUDY: WARNING}
    assert all(finding.message.startswith("seg_image_ct_binary.dcm:") for finding in findings)
    assert "'77654033'" in findings[0].message and "'1CT1'" in findings[0].message


def test_a_seg_with_its_series_reference_rewritten_to_another_patient_is_caught(external_data: Path,
                                                                               tmp_path: Path) -> None:
    """Geometry alone would only warn; PatientID and frame of reference make it an error."""
    dataset = pydicom.dcmread(str(external_data / DCMQI / "liver.dcm"))
    ct = scan_folder(external_data / STS / "STS_001" / "CT" / "dicom" / "image").instances
    dataset.ReferencedSeriesSequence[0].SeriesInstanceUID = ct[0].series_instance_uid
    dataset.save_as(str(tmp_path / "rewritten.dcm"))
    seg = read_seg_header(tmp_path / "rewritten.dcm")
    assert seg.referenced_series_uids == [ct[0].series_instance_uid]
    assert _checks(identity_findings(seg, ct, seg.path))[CHECK_PATIENT] == ERROR


def test_rtstruct_identity_against_its_ct_and_another_patients_ct(external_data: Path) -> None:
    structure = read_rtstruct(external_data / STS / "STS_001" / "CT" / "dicom" / "mask" / "RS.dcm")
    own = scan_folder(external_data / STS / "STS_001" / "CT" / "dicom" / "image").instances
    other = scan_folder(external_data / STS / "STS_002" / "CT" / "dicom" / "image").instances
    assert CHECK_PATIENT not in _checks(identity_findings(structure, own, structure.path))
    assert _checks(identity_findings(structure, other, structure.path))[CHECK_PATIENT] == ERROR


def test_patient_id_spelled_differently_is_a_warning(external_data: Path) -> None:
    ct = scan_folder(external_data / DCMQI / "ct-3slice").instances
    dataset = pydicom.dcmread(str(external_data / DCMQI / "liver.dcm"), stop_before_pixels=True)
    dataset.PatientID = " 99000 "
    assert identity_findings(dataset, ct, "liver.dcm") == []  # padding is not part of the value
    dataset.PatientID = "sts_001"
    ct_sts = scan_folder(external_data / STS / "STS_001" / "CT" / "dicom" / "image").instances
    patient = ct_sts[0].patient_id
    dataset.PatientID = patient.lower() if patient.lower() != patient else patient.upper()
    dataset.FrameOfReferenceUID = ct_sts[0].frame_of_reference_uid
    dataset.StudyInstanceUID = ct_sts[0].study_instance_uid
    assert _checks(identity_findings(dataset, ct_sts, "liver.dcm")) == {CHECK_PATIENT: WARNING}


def _two_series_sharing_one_uid(external_data: Path, root: Path) -> Path:
    """The real 3-slice CT, and a copy as a second series whose middle slice keeps its SOPInstanceUID."""
    first = root / "series1"
    shutil.copytree(external_data / DCMQI / "ct-3slice", first)
    second = root / "series2"
    second.mkdir()
    series_uid = generate_uid()
    for number, path in enumerate(sorted(first.glob("*.dcm"))):
        dataset = pydicom.dcmread(str(path))
        dataset.SeriesInstanceUID = series_uid
        if number != 1:
            dataset.SOPInstanceUID = generate_uid()
        dataset.save_as(str(second / path.name))
    return root


def test_a_sop_instance_uid_in_two_series_is_a_finding_and_never_a_placement(external_data: Path,
                                                                              tmp_path: Path) -> None:
    root = _two_series_sharing_one_uid(external_data, tmp_path / "case")
    instances = scan_folder(root).instances
    shared = pydicom.dcmread(str(root / "series1" / "02.dcm"), stop_before_pixels=True).SOPInstanceUID
    findings = duplicate_instance_findings(instances, case_id="Lung_Dx-A0001")
    assert len(findings) == 1 and findings[0].severity == ERROR and findings[0].check == CHECK_DUPLICATE_SOP
    assert shared in findings[0].message
    box = tmp_path / f"{shared}.xml"
    with pytest.raises(DataError, match=rf"{shared}.xml.*2 files in 2 series"):
        instance_for_placement(shared, instances, box)
    unique = pydicom.dcmread(str(root / "series1" / "01.dcm"), stop_before_pixels=True).SOPInstanceUID
    assert instance_for_placement(unique, instances, box).path.parent.name == "series1"
    with pytest.raises(DataError, match="not among the images"):
        instance_for_placement("1.2.3.4", instances, box)
    series2 = next(i.series_instance_uid for i in instances if i.path.parent.name == "series2")
    with pytest.raises(DataError, match="lies in another series"):
        instance_for_placement(unique, instances, box, series_instance_uid=series2)


def test_the_same_file_twice_in_one_series_is_a_warning(external_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "series"
    shutil.copytree(external_data / DCMQI / "ct-3slice", folder)
    shutil.copy(folder / "01.dcm", folder / "01 copy.dcm")
    findings = duplicate_instance_findings(scan_folder(folder).instances)
    assert [finding.severity for finding in findings] == [WARNING]
