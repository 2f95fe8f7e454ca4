"""ISPY1 in DICOM (IDC / NBIA): DCE phases, vendor maps, SEGs, QA and Dice against the NIfTI form.

Generated data: ``samples/ispy1_dicom.py`` writes the DICOM form from the
NIfTI sample's own images and FTV masks, so the expected values below are
worked out from those files (voxel counts), not from the reader.

Real data: a real TCIA MR series (mirp's STS_001 MR T1, 59 slices) and a
real dcmqi SEG with its CT (``24x38x3``), each laid out as an ISPY1 DICOM
case in IDC's layout; the MR's SEG is generated on the real MR files.
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any, List

import numpy as np
import pydicom
import pytest

from SarcomaLungLiverBrowserLib import registry
from SarcomaLungLiverBrowserLib.case_data import CaseData
from SarcomaLungLiverBrowserLib.collections.ispy1 import Ispy1Collection
from SarcomaLungLiverBrowserLib.collections.ispy1_dicom import (
    DICE_WARNING_BELOW,
    Ispy1DicomCollection,
    find_patient_series,
    split_phases,
)
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.findings import ERROR, INFO, WARNING, Finding
from SarcomaLungLiverBrowserLib.formats.dicom_series import scan_folder
from SarcomaLungLiverBrowserLib.samples import ispy1_dicom as sample

STS_MR = Path("oncoray__mirp/test/data/sts_images/STS_001/MR_T1/dicom/image")
DCMQI_24 = Path("QIICR__dcmqi/data/segmentations/24x38x3")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The parent folder holding the NIfTI sample and the DICOM sample (written once)."""
    parent = tmp_path_factory.mktemp("ispy1_dicom")
    sample.generate(parent)
    return parent


@pytest.fixture
def copy_of(generated: Path, tmp_path: Path) -> Path:
    """A private copy of both samples, for tests that damage files."""
    shutil.copytree(generated, tmp_path / "copy")
    return tmp_path / "copy"


def _read(root: Path, case_id: str) -> CaseData:
    collection = Ispy1DicomCollection(root)
    case = collection.find_case(case_id)
    data = collection.read_case(case)
    data.findings.extend(collection.check_case(data))
    return data


def _checks(findings: List[Finding], check: str) -> List[Finding]:
    return [finding for finding in findings if finding.check == check]


# ---------------------------------------------------------------------------------------------- discovery
def test_detection_keeps_the_nifti_form_apart(generated: Path) -> None:
    dicom_root = generated / sample.COLLECTION_FOLDER
    assert isinstance(registry.open_collection(dicom_root), Ispy1DicomCollection)
    assert isinstance(registry.open_collection(dicom_root / "ispy1"), Ispy1DicomCollection)
    assert isinstance(registry.open_collection(dicom_root / "ispy1" / "ISPY1_1002"), Ispy1DicomCollection)
    # The NIfTI tree (whose case folders are also named ISPY1_nnnn) still opens as the NIfTI collection.
    nifti_root = generated / "ISPY1-Tumor-SEG-Radiomics"
    assert isinstance(registry.open_collection(nifti_root), Ispy1Collection)
    assert not Ispy1DicomCollection.detect(nifti_root)
    assert not Ispy1DicomCollection.detect(nifti_root / "NIfTI-Files" / "images_bias-corrected_nifti" / "ISPY1_1002")


def test_discovery_finds_both_layouts_and_the_nifti_masks(generated: Path) -> None:
    collection = Ispy1DicomCollection(generated / sample.COLLECTION_FOLDER)
    cases = collection.discover_cases()
    assert [case.case_id for case in cases] == ["ISPY1_1002", "ISPY1_1005"]
    first, second = cases
    assert first.summary["layout"] == "idc" and second.summary["layout"] == "nbia"
    assert first.summary["studies"] == 1 and second.summary["studies"] == 2
    assert [seg.description for seg in first.segs] == [
        "PE Segmentation thresh=70", "Breast Tissue Segmentation", "VOI PE Segmentation thresh=70"]
    assert len(second.segs) == 4
    masks = generated / "ISPY1-Tumor-SEG-Radiomics" / "NIfTI-Files" / "masks_ftv"
    assert first.nifti_ftv == masks / "ISPY1_1002.nii.gz" and second.nifti_ftv == masks / "ISPY1_1005.nii.gz"
    # The discovery function is usable on its own (one place to switch to header-based discovery).
    found = find_patient_series(generated / sample.COLLECTION_FOLDER)
    assert sorted(found) == ["ISPY1_1002", "ISPY1_1005"]
    assert {series.description for series in found["ISPY1_1002"].images} == {
        "Dynamic-3dfgre", "Dynamic-3dfgre: SER", "Dynamic-3dfgre: PE1", "T1-axial-locator"}


# ---------------------------------------------------------------------------------------------- phases
def _nifti_phase(generated: Path, case_id: str, phase: int) -> Any:
    import nibabel as nib

    folder = generated / "ISPY1-Tumor-SEG-Radiomics" / "NIfTI-Files" / "images_bias-corrected_nifti" / case_id
    return nib.load(str(folder / f"{case_id}_DCE_000{phase}_N3.nii.gz"))


def _on_nifti_grid(voxels_kji: np.ndarray, ijk_to_ras: np.ndarray, nifti: Any) -> np.ndarray:
    """The DICOM volume's values at the NIfTI image's voxels ([i, j, k]), by exact RAS correspondence."""
    shape = nifti.shape
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    ras = ijk @ nifti.affine[:3, :3].T + nifti.affine[:3, 3]
    inverse = np.linalg.inv(ijk_to_ras)
    dicom_ijk = ras @ inverse[:3, :3].T + inverse[:3, 3]
    rounded = np.rint(dicom_ijk).astype(int)
    assert np.allclose(dicom_ijk, rounded, atol=1e-4), "the two forms share voxel centres"
    return voxels_kji[rounded[:, 2], rounded[:, 1], rounded[:, 0]].reshape(shape)


@pytest.mark.parametrize("case_id", ["ISPY1_1002", "ISPY1_1005"])  # phases in one series (GE) / one series each
def test_dce_phases_are_the_nifti_images_in_order(generated: Path, case_id: str) -> None:
    data = _read(generated / sample.COLLECTION_FOLDER, case_id)
    phases = [volume for volume in data.volumes if volume.attributes.get("ispy1_dicom.phase")]
    baseline = [volume for volume in phases if volume.placement.study_uid == phases[0].placement.study_uid]
    assert [volume.name.split(" phase ")[1] for volume in baseline] == [
        "1 (pre-contrast)", "2 (post-contrast 1)", "3 (post-contrast 2)"]
    for index, volume in enumerate(baseline):
        nifti = _nifti_phase(generated, case_id, index)
        assert np.array_equal(_on_nifti_grid(volume.voxels, volume.ijk_to_ras, nifti), np.asarray(nifti.dataobj))
    names = [volume.name for volume in data.volumes]
    assert not any("locator" in name for name in names), "localisers are not loaded"
    assert any(name.endswith("Dynamic-3dfgre: PE1") or name.endswith("T1_3D_SE_SAG: PE1") for name in names)


def test_phases_fall_back_to_trigger_time_and_refuse_when_nothing_orders_them(copy_of: Path) -> None:
    root = copy_of / sample.COLLECTION_FOLDER
    dce = next(series for series in find_patient_series(root)["ISPY1_1002"].images
               if series.description == "Dynamic-3dfgre")
    files = sorted(dce.folders[0].glob("*.dcm"))
    for path in files:  # no TemporalPositionIdentifier, InstanceNumbers reversed: only TriggerTime orders
        dataset = pydicom.dcmread(str(path))
        del dataset.TemporalPositionIdentifier
        dataset.InstanceNumber = 61 - int(dataset.InstanceNumber)
        dataset.save_as(str(path))
    instances = scan_folder(dce.folders[0]).instances
    phases, keyword = split_phases(instances)
    assert keyword == "TriggerTime" and [len(phase) for phase in phases] == [20, 20, 20]
    data = _read(root, "ISPY1_1002")
    nifti = _nifti_phase(copy_of, "ISPY1_1002", 2)
    late = next(volume for volume in data.volumes if volume.name.endswith("phase 3 (post-contrast 2)"))
    assert np.array_equal(_on_nifti_grid(late.voxels, late.ijk_to_ras, nifti), np.asarray(nifti.dataobj))
    for path in files:  # now nothing tells the phases apart
        dataset = pydicom.dcmread(str(path))
        for keyword in ("TriggerTime", "InstanceNumber"):
            delattr(dataset, keyword)
        dataset.save_as(str(path))
    with pytest.raises(DataError) as raised:
        split_phases(scan_folder(dce.folders[0]).instances)
    assert "tells its phases apart" in raised.value.problem and raised.value.path == str(dce.folders[0])
    data = _read(root, "ISPY1_1002")
    unreadable = _checks(data.findings, "ispy1_dicom.unreadable_series")
    assert unreadable and unreadable[0].severity == ERROR and "Dynamic-3dfgre" in unreadable[0].message
    # The SEG drawn on the map still loads; the ones drawn on the unreadable DCE series are reported.
    assert [s.name for s in data.segmentations] == ["ISPY1_1002 1984-11-02 PE Segmentation thresh=70"]
    assert len(_checks(data.findings, "ispy1_dicom.seg_unpaired")) == 2


# ---------------------------------------------------------------------------------------------- SEGs and QA
def test_segs_load_on_the_series_they_reference(generated: Path) -> None:
    data = _read(generated / sample.COLLECTION_FOLDER, "ISPY1_1002")
    by_name = {segmentation.name: segmentation for segmentation in data.segmentations}
    pe = by_name["ISPY1_1002 1984-11-02 PE Segmentation thresh=70"]
    voi = by_name["ISPY1_1002 1984-11-02 VOI PE Segmentation thresh=70"]
    tissue = by_name["ISPY1_1002 1984-11-02 Breast Tissue Segmentation"]
    assert data.volume(pe.reference).name.endswith("Dynamic-3dfgre: PE1")
    assert data.volume(voi.reference).name.endswith("phase 1 (pre-contrast)")
    assert data.volume(tissue.reference).name.endswith("phase 1 (pre-contrast)")
    ftv = sample.ftv_mask_ijk(generated / "ISPY1-Tumor-SEG-Radiomics", "ISPY1_1002")
    assert int(pe.segments[0].mask.sum()) == int(ftv.sum())
    assert int(voi.segments[0].mask.sum()) == int(sample.voi_mask_ijk(ftv).sum())
    volumes = _checks(data.findings, "ispy1_dicom.segment_volume")
    voxel_cm3 = 0.78125 * 0.78125 * 2.0 / 1000.0
    pe_volume = next(f for f in volumes if f.node_name == pe.name)
    assert pe_volume.value == pytest.approx(int(ftv.sum()) * voxel_cm3, rel=1e-9)
    assert not [f for f in data.findings if f.severity == ERROR]


def test_dice_with_the_nifti_ftv(generated: Path) -> None:
    """PE SEG = FTV: Dice 1; VOI SEG = FTV minus its fullest slice plus an 18-voxel box: Dice by hand."""
    data = _read(generated / sample.COLLECTION_FOLDER, "ISPY1_1002")
    ftv = sample.ftv_mask_ijk(generated / "ISPY1-Tumor-SEG-Radiomics", "ISPY1_1002")
    total = int(ftv.sum())
    removed = int(ftv.sum(axis=(0, 1)).max())  # the FTV voxels of its fullest slice
    (i0, i1), (j0, j1), (k0, k1) = sample.VOI_CHANGE["added_box"]
    added = (i1 - i0) * (j1 - j0) * (k1 - k0)
    assert added == 18 and not ftv[i0:i1, j0:j1, k0:k1].any()
    expected = 2.0 * (total - removed) / (total + (total - removed + added))
    dice = data.metrics["nifti_ftv_dice"]
    assert dice["ISPY1_1002 1984-11-02 PE Segmentation thresh=70"] == pytest.approx(1.0, abs=1e-12)
    assert dice["ISPY1_1002 1984-11-02 VOI PE Segmentation thresh=70"] == pytest.approx(expected, abs=1e-6)
    assert "ISPY1_1002 1984-11-02 Breast Tissue Segmentation" not in dice, "breast tissue is not a tumour mask"
    findings = {f.node_name: f for f in _checks(data.findings, "ispy1_dicom.nifti_dice")}
    assert findings["ISPY1_1002 1984-11-02 PE Segmentation thresh=70"].severity == INFO
    changed = findings["ISPY1_1002 1984-11-02 VOI PE Segmentation thresh=70"]
    assert expected < DICE_WARNING_BELOW and changed.severity == WARNING
    assert changed.value == pytest.approx(expected, abs=1e-6) and "masks_ftv" in changed.message


def test_only_the_baseline_study_is_compared_with_the_nifti_ftv(generated: Path) -> None:
    data = _read(generated / sample.COLLECTION_FOLDER, "ISPY1_1005")
    assert data.metrics["nifti_ftv_dice"] == {"ISPY1_1005 1985-02-16 PE Segmentation thresh=90": 1.0}
    follow_up = [s for s in data.segmentations if "1985-03-17" in s.name]
    assert len(follow_up) == 2, "the follow-up study's SEGs load"


def test_without_the_nifti_tree_there_is_no_comparison(copy_of: Path) -> None:
    shutil.rmtree(copy_of / "ISPY1-Tumor-SEG-Radiomics")
    data = _read(copy_of / sample.COLLECTION_FOLDER, "ISPY1_1002")
    assert "nifti_ftv_dice" not in data.metrics and not _checks(data.findings, "ispy1_dicom.nifti_dice")
    assert len(data.segmentations) == 3


def _seg_path(root: Path, case_id: str, description: str) -> Path:
    case = Ispy1DicomCollection(root).find_case(case_id)
    return next(seg.path for seg in case.segs if seg.description == description)


def test_another_patients_seg_is_refused_and_another_frame_is_an_error(copy_of: Path) -> None:
    root = copy_of / sample.COLLECTION_FOLDER
    foreign = _seg_path(root, "ISPY1_1002", "Breast Tissue Segmentation")
    dataset = pydicom.dcmread(str(foreign))
    dataset.PatientID = "ISPY1_1999"
    dataset.save_as(str(foreign))
    shifted = _seg_path(root, "ISPY1_1002", "VOI PE Segmentation thresh=70")
    dataset = pydicom.dcmread(str(shifted))
    dataset.FrameOfReferenceUID = "1.2.3.4.5"
    dataset.save_as(str(shifted))
    data = _read(root, "ISPY1_1002")
    names = [segmentation.name for segmentation in data.segmentations]
    assert "ISPY1_1002 1984-11-02 Breast Tissue Segmentation" not in names, "another patient's SEG is not drawn"
    patient = _checks(data.findings, "identity.patient_id")
    assert len(patient) == 1 and patient[0].severity == ERROR and "ISPY1_1999" in patient[0].message
    assert "refused" in patient[0].message and patient[0].path == str(foreign)
    frame = _checks(data.findings, "identity.frame_of_reference_uid")
    assert len(frame) == 1 and frame[0].severity == ERROR and frame[0].path == str(shifted)
    assert "ISPY1_1002 1984-11-02 VOI PE Segmentation thresh=70" in names, "another frame is reported, still drawn"


def test_a_damaged_seg_costs_only_itself(copy_of: Path) -> None:
    root = copy_of / sample.COLLECTION_FOLDER
    damaged = _seg_path(root, "ISPY1_1002", "VOI PE Segmentation thresh=70")
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    data = _read(root, "ISPY1_1002")
    problems = [f for f in data.findings if f.path == str(damaged) and f.severity == ERROR]
    assert problems and damaged.name in problems[0].message
    assert len(data.segmentations) == 2 and len([v for v in data.volumes]) == 5


def _write_seg_on(image_paths: List[Path], mask_kji: np.ndarray, path: Path, description: str) -> Path:
    """A BINARY SEG with one segment on the given single-frame images (in slice order)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(str(p)) for p in image_paths]
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Enhancing tumour",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=mask_kji.astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[segment],
            series_instance_uid=hd.UID(), series_number=42000, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="test", manufacturer_model_name="test", software_versions="1", device_serial_number="1",
            series_description=description, omit_empty_frames=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(path))
    return path


def test_empty_segment_and_segment_in_background(copy_of: Path) -> None:
    root = copy_of / sample.COLLECTION_FOLDER
    case = Ispy1DicomCollection(root).find_case("ISPY1_1002")
    dce = next(series for series in case.images if series.description == "Dynamic-3dfgre")
    instances = sorted(scan_folder(dce.folders[0]).instances, key=lambda i: i.instance_number or 0)[:20]
    ordered = sorted(instances, key=lambda i: float(np.dot(i.image_position, [1.0, 0.0, 0.0])))
    study = dce.folders[0].parent
    _write_seg_on([i.path for i in ordered], np.zeros((20, 64, 64), bool), study / "SEG_1.2.3.1" / "a.dcm",
                  "PE Segmentation thresh=140")
    corner = np.zeros((20, 64, 64), bool)
    corner[0:2, 0:3, 0:3] = True  # 18 voxels in a corner, outside the breast (image value 0)
    corner[10, 30:32, 30:32] = True  # 4 voxels in the middle of the breast
    _write_seg_on([i.path for i in ordered], corner, study / "SEG_1.2.3.2" / "b.dcm", "PE Segmentation thresh=100")
    data = _read(root, "ISPY1_1002")
    empty = _checks(data.findings, "ispy1_dicom.empty_segment")
    assert len(empty) == 1 and empty[0].severity == WARNING and "thresh=140" in empty[0].message
    background = [f for f in _checks(data.findings, "ispy1_dicom.segment_in_background") if "thresh=100" in f.node_name]
    phase1 = next(v for v in data.volumes if v.name.endswith("phase 1 (pre-contrast)"))
    segmentation = next(s for s in data.segmentations if s.name.endswith("thresh=100"))
    mask = segmentation.segments[0]
    full = np.zeros(phase1.voxels.shape, bool)
    k, j, i = mask.offset
    full[k:k + mask.mask.shape[0], j:j + mask.mask.shape[1], i:i + mask.mask.shape[2]] = mask.mask
    expected = float(np.count_nonzero(full & (phase1.voxels == phase1.voxels.min()))) / 22.0
    assert expected >= 18 / 22 - 1e-9
    assert len(background) == 1 and background[0].severity == WARNING
    assert background[0].value == pytest.approx(expected, abs=1e-12)


def test_a_case_without_dce_or_referenced_series_is_refused(copy_of: Path) -> None:
    root = copy_of / sample.COLLECTION_FOLDER
    patient = root / "ispy1" / "ISPY1_1002"
    for folder in list(patient.glob("*/*")):
        if folder.name.startswith("SEG_") or "Dynamic" in pydicom.dcmread(
                str(next(folder.glob("*.dcm"))), stop_before_pixels=True).SeriesDescription:
            shutil.rmtree(folder)
    collection = Ispy1DicomCollection(root)
    with pytest.raises(DataError) as raised:
        collection.read_case(collection.find_case("ISPY1_1002"))
    assert "no DCE series" in raised.value.problem and raised.value.path == str(patient)


def test_the_case_loads_into_the_scene(generated: Path, headless: Any) -> None:
    from SarcomaLungLiverBrowserLib.browser import CollectionBrowser

    browser = CollectionBrowser(headless.scene)
    browser.open(generated / sample.COLLECTION_FOLDER)
    loaded = browser.load_case("ISPY1_1002")
    assert [node.GetName() for node in loaded.segmentations] == [
        "ISPY1_1002 1984-11-02 PE Segmentation thresh=70", "ISPY1_1002 1984-11-02 Breast Tissue Segmentation",
        "ISPY1_1002 1984-11-02 VOI PE Segmentation thresh=70"]
    assert len(loaded.volumes) == 5
    assert all(node.GetSegmentation().GetNumberOfSegments() == 1 for node in loaded.segmentations)


# ---------------------------------------------------------------------------------------------- real files
def _idc_layout(files: List[Path], root: Path, patient_folder: str) -> Path:
    """Copy real files into ``root/ispy1/<patient_folder>/<StudyUID>/<Modality>_<SeriesUID>/`` (IDC's layout)."""
    folder = None
    for path in files:
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
        folder = (root / "ispy1" / patient_folder / str(dataset.StudyInstanceUID)
                  / f"{dataset.Modality}_{dataset.SeriesInstanceUID}")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, folder / (path.stem + ".dcm"))
    assert folder is not None
    return folder


def test_real_mr_series_with_a_seg_on_it(external_data: Path, tmp_path: Path) -> None:
    """Real: a TCIA MR T1 series (STS_001, 59 slices, via mirp). Generated: the SEG drawn on those files."""
    source = external_data / STS_MR
    files = sorted(source.glob("*.dcm"))
    assert len(files) == 59
    mr_folder = _idc_layout(files, tmp_path, "ISPY1_9001")
    headers = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in files]
    order = np.argsort([float(h.ImagePositionPatient[2]) for h in headers])
    ordered = [mr_folder / (files[n].stem + ".dcm") for n in order]
    reference = np.stack([pydicom.dcmread(str(p)).pixel_array for p in ordered]).astype(np.float64)
    mask = np.zeros(reference.shape, bool)
    mask[20:30, 60:90, 70:100] = reference[20:30, 60:90, 70:100] > np.median(reference[20:30, 60:90, 70:100])
    study = mr_folder.parent
    _write_seg_on(ordered, mask, study / "SEG_1.2.826.0.1.9001" / "seg.dcm", "PE Segmentation thresh=70")
    collection = registry.open_collection(tmp_path / "ispy1")
    assert isinstance(collection, Ispy1DicomCollection)
    data = _read(tmp_path / "ispy1", "ISPY1_9001")
    assert len(data.volumes) == 1 and data.volumes[0].voxels.shape == reference.shape
    slope = float(getattr(headers[0], "RescaleSlope", 1) or 1)
    intercept = float(getattr(headers[0], "RescaleIntercept", 0) or 0)
    assert np.allclose(data.volumes[0].voxels, reference * slope + intercept)
    (segmentation,) = data.segmentations
    spec = segmentation.segments[0]
    placed = np.zeros(reference.shape, bool)
    k, j, i = spec.offset
    placed[k:k + spec.mask.shape[0], j:j + spec.mask.shape[1], i:i + spec.mask.shape[2]] = spec.mask
    assert np.array_equal(placed, mask), "the SEG lies on the real MR voxels it was drawn on"
    folder_warning = _checks(data.findings, "ispy1_dicom.patient_folder")
    assert folder_warning and "STS_001" in folder_warning[0].message, "folder name and PatientID differ here"
    assert not [f for f in data.findings if f.severity == ERROR]


def test_real_dcmqi_seg_on_its_real_images(external_data: Path, tmp_path: Path) -> None:
    """Real: dcmqi's 24x38x3 SEG (1 segment "Liver", 315 voxels) and its three CT images."""
    base = external_data / DCMQI_24
    _idc_layout(sorted((base / "image").glob("*.dcm")), tmp_path, "ISPY1_9002")
    seg_source = base / "seg" / "label.seg"
    header = pydicom.dcmread(str(seg_source))
    seg_folder = tmp_path / "ispy1" / "ISPY1_9002" / str(header.StudyInstanceUID) / f"SEG_{header.SeriesInstanceUID}"
    seg_folder.mkdir(parents=True)
    shutil.copy2(seg_source, seg_folder / "label.dcm")
    data = _read(tmp_path / "ispy1", "ISPY1_9002")
    (segmentation,) = data.segmentations
    assert segmentation.segments[0].name == "Liver"
    assert int(segmentation.segments[0].mask.sum()) == int(header.pixel_array.sum()) == 315
    assert data.volume(segmentation.reference).voxels.shape == (3, 38, 24)
    volume = _checks(data.findings, "ispy1_dicom.segment_volume")
    assert len(volume) == 1 and volume[0].value > 0
    # The same real SEG claiming another patient is refused.
    header.PatientID = "ISPY1_0000"
    header.save_as(str(seg_folder / "label.dcm"))
    data = _read(tmp_path / "ispy1", "ISPY1_9002")
    assert not data.segmentations and _checks(data.findings, "identity.patient_id")[0].severity == ERROR


def test_a_slice_missing_from_one_phase_leaves_a_gap_in_that_phase_only(copy_of: Path) -> None:
    root = copy_of / sample.COLLECTION_FOLDER
    dce = next(series for series in find_patient_series(root)["ISPY1_1002"].images
               if series.description == "Dynamic-3dfgre")
    # InstanceNumber 30 is phase 2 (instances 21..40), its 10th position: an interrupted download lost it.
    lost = next(path for path in dce.folders[0].glob("*.dcm")
                if int(pydicom.dcmread(str(path), stop_before_pixels=True).InstanceNumber) == 30)
    lost.unlink()
    data = _read(root, "ISPY1_1002")
    for phase in (1, 3):
        nifti = _nifti_phase(copy_of, "ISPY1_1002", phase - 1)
        volume = next(v for v in data.volumes if v.attributes.get("ispy1_dicom.phase") == str(phase)
                      and "Dynamic" in v.name)
        assert np.array_equal(_on_nifti_grid(volume.voxels, volume.ijk_to_ras, nifti), np.asarray(nifti.dataobj))
    early = next(v for v in data.volumes if v.attributes.get("ispy1_dicom.phase") == "2")
    assert early.voxels.shape == (20, 64, 64)
    nifti = np.asarray(_nifti_phase(copy_of, "ISPY1_1002", 1).dataobj)
    on_grid = _on_nifti_grid(early.voxels, early.ijk_to_ras, _nifti_phase(copy_of, "ISPY1_1002", 1))
    differing = sorted({int(k) for k in np.argwhere(on_grid != nifti)[:, 2]})
    assert len(differing) == 1, "exactly one slice of phase 2 is empty"
    assert any(f.check == "ispy1_dicom.stack" and "Dynamic-3dfgre" in f.message
               for f in data.findings)


def test_dce_is_recognised_by_description_when_no_map_names_it(copy_of: Path) -> None:
    root = copy_of / sample.COLLECTION_FOLDER
    patient = root / "ispy1" / "ISPY1_1002"
    for folder in list(patient.glob("*/*")):
        description = pydicom.dcmread(str(next(folder.glob("*.dcm"))), stop_before_pixels=True).SeriesDescription
        if folder.name.startswith("SEG_") or ":" in description:
            shutil.rmtree(folder)
    data = _read(root, "ISPY1_1002")
    assert [v.name.split(" ", 2)[2] for v in data.volumes] == [
        "Dynamic-3dfgre phase 1 (pre-contrast)", "Dynamic-3dfgre phase 2 (post-contrast 1)",
        "Dynamic-3dfgre phase 3 (post-contrast 2)"]
    assert _checks(data.findings, "ispy1_dicom.dce_by_description")


def test_an_edited_seg_is_saved_as_dicom_seg_on_its_series(generated: Path, headless: Any, tmp_path: Path) -> None:
    import hashlib

    import slicer

    from SarcomaLungLiverBrowserLib.browser import CollectionBrowser
    from SarcomaLungLiverBrowserLib.formats.dicom_seg import decode_seg

    root = generated / sample.COLLECTION_FOLDER
    before = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    browser = CollectionBrowser(headless.scene)
    browser.open(root)
    loaded = browser.load_case("ISPY1_1002")
    node = next(n for n in loaded.segmentations if n.GetName().endswith("VOI PE Segmentation thresh=70"))
    volume_node = next(v for v in loaded.volumes if v.GetName().endswith("phase 1 (pre-contrast)"))
    segment_id = node.GetSegmentation().GetNthSegmentID(0)
    original = slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume_node).astype(bool)
    edited = original.copy()
    edited[: int(np.flatnonzero(original.any(axis=(1, 2)))[0]) + 1] = False  # the reviewer erases the first slice
    edited[0, 0, 0] = True
    slicer.util.updateSegmentBinaryLabelmapFromArray(edited.astype(np.uint8), node, segment_id, volume_node)
    written = browser.save_corrections("ISPY1_1002", tmp_path / "out")
    assert len(written) == 3
    target = tmp_path.resolve() / "out" / "ISPY1_1002" / "ISPY1_1002 1984-11-02 VOI PE Segmentation thresh=70.dcm"
    assert target in written
    phase1 = loaded.data.provenance["images"][node.GetAttribute("SarcomaLungLiverBrowser.ispy1_dicom.reference")]
    reloaded = decode_seg(target, phase1.volume)
    assert np.array_equal(reloaded.segments[0].mask, edited)
    dataset = pydicom.dcmread(str(target), stop_before_pixels=True)
    assert dataset.SeriesDescription == "VOI PE Segmentation thresh=70 (corrected)"
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == phase1.series.series_instance_uid
    after = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    assert after == before, "the source files are untouched"
    with pytest.raises(DataError, match="inside the ISPY1 DICOM"):
        browser.save_corrections("ISPY1_1002", root / "corrections")


def test_seg_frames_outside_the_image_are_an_error_finding(copy_of: Path) -> None:
    """As for the NIfTI masks (voxels outside the image): frames that lie off the series are reported, not drawn."""
    root = copy_of / sample.COLLECTION_FOLDER
    path = _seg_path(root, "ISPY1_1002", "VOI PE Segmentation thresh=70")
    dataset = pydicom.dcmread(str(path))
    frame = dataset.PerFrameFunctionalGroupsSequence[0]
    position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
    frame.PlanePositionSequence[0].ImagePositionPatient = [position[0], position[1] + 500.0, position[2]]
    dataset.save_as(str(path))
    data = _read(root, "ISPY1_1002")
    unplaced = [f for f in _checks(data.findings, "seg.unplaced_frames") if f.path == str(path)]
    assert len(unplaced) == 1 and unplaced[0].severity == ERROR and unplaced[0].value == 1.0
    assert unplaced[0].node_name == "ISPY1_1002 1984-11-02 VOI PE Segmentation thresh=70"


def test_the_dce_phases_open_one_above_the_other_like_the_nifti_form(generated: Path) -> None:
    from SarcomaLungLiverBrowserLib.browser import CollectionBrowser
    from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer
    from SarcomaLungLiverBrowserLib.scene.layout import THREE_OVER_THREE, plan_views

    with HeadlessSlicer() as environment:
        browser = CollectionBrowser(environment.scene)
        browser.open(generated / sample.COLLECTION_FOLDER)
        for case_id in ("ISPY1_1002", "ISPY1_1005"):  # phases in one series / one series per phase
            plan = plan_views(browser.load_case(case_id))
            assert plan.layout_id == THREE_OVER_THREE, plan.reason
            upper = environment.scene.GetNodeByID(plan.views[0].background_id).GetName()
            lower = environment.scene.GetNodeByID(plan.views[3].background_id).GetName()
            assert upper.endswith("phase 1 (pre-contrast)") and lower.endswith("phase 2 (post-contrast 1)")
            assert upper.split(" ")[1] == lower.split(" ")[1], "both phases of the baseline visit"


def test_a_seg_drawn_on_a_later_phase_of_the_dce_series_is_placed_by_its_references(copy_of: Path) -> None:
    """Frames naming phase-2 images of a multi-phase series land on the same voxels, without a missing-image note."""
    root = copy_of / sample.COLLECTION_FOLDER
    case = Ispy1DicomCollection(root).find_case("ISPY1_1002")
    dce = next(series for series in case.images if series.description == "Dynamic-3dfgre")
    phase2 = [i for i in scan_folder(dce.folders[0]).instances if 21 <= (i.instance_number or 0) <= 40]
    ordered = sorted(phase2, key=lambda i: float(np.dot(i.image_position, [1.0, 0.0, 0.0])))
    mask = np.zeros((20, 64, 64), bool)
    mask[5:8, 20:30, 25:35] = True
    path = _write_seg_on([i.path for i in ordered], mask, dce.folders[0].parent / "SEG_1.2.3.9" / "p2.dcm",
                         "PE Segmentation thresh=140")
    data = _read(root, "ISPY1_1002")
    segmentation = next(s for s in data.segmentations if s.name.endswith("thresh=140"))
    assert data.volume(segmentation.reference).name.endswith("phase 1 (pre-contrast)")
    spec = segmentation.segments[0]
    placed = np.zeros(mask.shape, bool)
    k, j, i = spec.offset
    placed[k:k + spec.mask.shape[0], j:j + spec.mask.shape[1], i:i + spec.mask.shape[2]] = spec.mask
    assert np.array_equal(placed, mask)
    assert not [f for f in data.findings if f.path == str(path) and f.check == "seg.missing_source_instances"]
