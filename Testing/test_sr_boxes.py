"""TID 1500 SR bounding boxes (IDC's form and our own export) read to the same boxes as the VOC path.

The real Lung VOC samples (shared/samples) are put on series with their real
geometry (``generate_real_geometry_case``); SRs are then written the way
IDC's conversion does (notes lung_voc.md §3 "How [SR] builds the SR") and
with the Lung collection's own ``export_sr``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Sequence

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from conftest import REPOSITORY, require_shared_data
from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import CorrectedBox, export_sr
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats.dicom_series import DicomVolume, InstanceHeader, group_by_series, read_series, scan_folder
from SarcomaLungLiverBrowserLib.formats.sr_boxes import (
    BOX_SR_DESCRIPTION,
    SliceBoxRecord,
    check_sr_boxes_against_images,
    collect_sr_boxes,
    class_letter_of_code,
    class_letter_of_name,
    compare_voc_and_sr,
    is_box_sr_header,
    read_sr_boxes,
    voc_box_records,
)
from SarcomaLungLiverBrowserLib.formats.voc_xml import iter_xml_files
from SarcomaLungLiverBrowserLib.geometry import box_roi_geometry
from SarcomaLungLiverBrowserLib.samples import lung_pet_ct_dx as sample

IDC_FINDING_BY_LETTER = {"A": codes.SCT.Adenocarcinoma, "B": codes.SCT.SmallCellCarcinoma,
                         "E": codes.SCT.LargeCellCarcinoma, "G": codes.SCT.SquamousCellCarcinoma}


# ---------------------------------------------------------------------- fixtures
class RealCase:
    """The real A0002 sample XMLs on series with their real geometry, read back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.xml_files = list(iter_xml_files(root / "Annotation" / "A0002"))
        scan = scan_folder(root / "manifest-1675442780019")
        assert not scan.errors
        self.headers: Dict[str, InstanceHeader] = {h.sop_instance_uid: h for h in scan.instances}
        self.volumes: Dict[str, DicomVolume] = {uid: read_series(instances)
                                                for uid, instances in group_by_series(scan.instances).items()}
        self.voc = [record for path in self.xml_files for record in voc_box_records(path)]

    def roi(self, record: SliceBoxRecord):
        """(centre, size) of a record's slice ROI through the shared geometry."""
        series_uid = self.headers[record.sop_instance_uid].series_instance_uid
        volume = self.volumes[series_uid]
        k = volume.slice_index(record.sop_instance_uid)
        center, size, _ = box_roi_geometry(volume.ijk_to_ras, record.box, k, k)
        return center, size


@pytest.fixture(scope="module")
def real_case(tmp_path_factory: pytest.TempPathFactory) -> RealCase:
    folder = REPOSITORY.parent / "shared" / "samples" / "lung_pet_ct_dx_voc"
    if not (folder / "SOURCES.txt").is_file():
        require_shared_data(f"real VOC samples absent at {folder}")
    root = sample.generate_real_geometry_case(tmp_path_factory.mktemp("real_lung"), folder)
    return RealCase(root)


def write_idc_form_srs(records: Sequence[SliceBoxRecord], headers: Dict[str, InstanceHeader],
                       folder: Path) -> List[Path]:
    """SRs as IDC's conversion writes them (notes §3): one per series, boxes ordered by z, raw pixel values."""
    folder.mkdir(parents=True, exist_ok=True)
    by_series: Dict[str, List[SliceBoxRecord]] = {}
    for record in records:
        by_series.setdefault(headers[record.sop_instance_uid].series_instance_uid, []).append(record)
    written = []
    for series_uid, series_records in sorted(by_series.items()):
        series_records.sort(key=lambda r: headers[r.sop_instance_uid].image_position[2])
        evidence = {r.sop_instance_uid: pydicom.dcmread(str(headers[r.sop_instance_uid].path), stop_before_pixels=True)
                    for r in series_records}
        groups = []
        for number, record in enumerate(series_records, start=1):
            xmin, ymin, xmax, ymax = record.box
            corners = np.array([[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax], [xmin, ymin]], dtype=float)
            region = hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=corners,
                source_image=hd.sr.SourceImageForRegion(str(evidence[record.sop_instance_uid].SOPClassUID),
                                                        record.sop_instance_uid))
            groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=str(number)),
                referenced_region=region,
                finding_type=IDC_FINDING_BY_LETTER.get(record.label.upper(), codes.SCT.Neoplasm),
                finding_sites=[hd.sr.FindingSite(codes.SCT.LungStructure)],
                geometric_purpose=codes.SCT.BoundedBy))
        first = next(iter(evidence.values()))
        sr = hd.sr.Comprehensive3DSR(
            evidence=list(evidence.values()),
            content=hd.sr.MeasurementReport(
                observation_context=hd.sr.ObservationContext(),
                procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=groups),
            series_instance_uid=hd.UID(), series_number=int(first.SeriesNumber) + 100,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="Expert annotation from TCIA",
            series_description=BOX_SR_DESCRIPTION)
        path = folder / f"SR_{series_uid[-5:]}.dcm"
        sr.save_as(str(path))
        written.append(path)
    return written


def _sr_records(paths: Sequence[Path]) -> List[SliceBoxRecord]:
    records = []
    for path in paths:
        result = read_sr_boxes(path)
        assert result.problems == [], result.problems
        records.extend(result.records)
    return records


def _key(record: SliceBoxRecord):
    return (record.sop_instance_uid, record.class_letter, record.box)


def _assert_same_rois(case: RealCase, voc: Sequence[SliceBoxRecord], sr: Sequence[SliceBoxRecord]) -> None:
    by_sop = {r.sop_instance_uid: r for r in sr}
    assert len(by_sop) == len(voc)
    for record in voc:
        voc_center, voc_size = case.roi(record)
        sr_center, sr_size = case.roi(by_sop[record.sop_instance_uid])
        assert np.allclose(voc_center, sr_center, atol=1e-3) and np.allclose(voc_size, sr_size, atol=1e-3)


# ---------------------------------------------------------------------- IDC's form
def test_idc_form_srs_give_the_voc_boxes_and_rois(real_case: RealCase, tmp_path: Path) -> None:
    paths = write_idc_form_srs(real_case.voc, real_case.headers, tmp_path / "sr")
    assert len(paths) == 2  # one per annotated series, as in IDC
    for path in paths:
        dataset = pydicom.dcmread(str(path))
        assert dataset.SeriesDescription == BOX_SR_DESCRIPTION
        assert is_box_sr_header(dataset.Modality, dataset.SOPClassUID)
    sr = _sr_records(paths)
    assert len(real_case.voc) == 10
    assert sorted(map(_key, sr)) == sorted(map(_key, real_case.voc))
    assert {r.class_letter for r in sr} == {"A"}
    _assert_same_rois(real_case, real_case.voc, sr)
    # The ROI also equals an independent computation from the real IPP/IOP/PixelSpacing (notes "Suggested mapping").
    facts = {f.sop_instance_uid: f for f in sample.parse_sources_txt(
        REPOSITORY.parent / "shared" / "samples" / "lung_pet_ct_dx_voc" / "SOURCES.txt")}
    for record in sr:
        corners = sample.expected_real_geometry_corners(facts[record.sop_instance_uid], record.box, 8.0)
        center, size = real_case.roi(record)
        assert np.allclose(center, corners.mean(axis=0), atol=1e-3)
        assert np.allclose(size, corners.max(axis=0) - corners.min(axis=0), atol=1e-3)
    assert compare_voc_and_sr(real_case.voc, sr) == []


def test_our_exported_srs_give_the_voc_boxes_and_rois(real_case: RealCase, tmp_path: Path) -> None:
    boxes = []
    for record in real_case.voc:
        header = real_case.headers[record.sop_instance_uid]
        volume = real_case.volumes[header.series_instance_uid]
        boxes.append(CorrectedBox(record.sop_instance_uid, header.series_instance_uid,
                                  volume.slice_index(record.sop_instance_uid), record.label, False, False,
                                  int(record.xmin), int(record.ymin), int(record.xmax), int(record.ymax),
                                  int(header.rows), int(header.columns), f"box {record.index}"))
    paths = export_sr(boxes, real_case.headers, tmp_path / "own", "Lung_Dx-A0002")
    assert len(paths) == 2
    sr = _sr_records(paths)
    assert sorted(map(_key, sr)) == sorted(map(_key, real_case.voc))
    _assert_same_rois(real_case, real_case.voc, sr)
    assert compare_voc_and_sr(real_case.voc, sr) == []


def test_a_moved_box_and_a_changed_class_are_reported_naming_both_files(real_case: RealCase, tmp_path: Path) -> None:
    moved_sop = sorted(r.sop_instance_uid for r in real_case.voc)[3]
    relabelled_sop = sorted(r.sop_instance_uid for r in real_case.voc)[6]
    records = []
    for record in real_case.voc:
        if record.sop_instance_uid == moved_sop:
            record = SliceBoxRecord(record.sop_instance_uid, record.label, record.class_letter, record.xmin + 1,
                                    record.ymin, record.xmax + 1, record.ymax, record.source, record.index)
        if record.sop_instance_uid == relabelled_sop:
            record = SliceBoxRecord(record.sop_instance_uid, "G", "G", *record.box, record.source, record.index)
        records.append(record)
    paths = write_idc_form_srs(records, real_case.headers, tmp_path / "sr")
    sr = _sr_records(paths)
    findings = compare_voc_and_sr(real_case.voc, sr, case_id="Lung_Dx-A0002")
    assert sorted(f.check for f in findings) == ["lung.voc_sr_box_differs", "lung.voc_sr_class_differs"]
    moved = next(f for f in findings if f.check == "lung.voc_sr_box_differs")
    assert f"{moved_sop}.xml" in moved.message and moved_sop in moved.message
    assert any(p.name in moved.message for p in paths) and moved.value == 1.0
    relabelled = next(f for f in findings if f.check == "lung.voc_sr_class_differs")
    assert f"{relabelled_sop}.xml" in relabelled.message and "G" in relabelled.message


def test_half_a_pixel_is_within_tolerance_and_more_is_not(tmp_path: Path) -> None:
    voc = [SliceBoxRecord("1.2.3", "A", "A", 10, 20, 30, 40, tmp_path / "1.2.3.xml")]
    near = [SliceBoxRecord("1.2.3", "Adenocarcinoma", "A", 10.5, 19.5, 30, 40, tmp_path / "sr.dcm")]
    far = [SliceBoxRecord("1.2.3", "Adenocarcinoma", "A", 10.51, 20, 30, 40, tmp_path / "sr.dcm")]
    other_slice = [SliceBoxRecord("9.9", "Adenocarcinoma", "A", 0, 0, 1, 1, tmp_path / "sr.dcm")]
    assert compare_voc_and_sr(voc, near) == []
    assert [f.check for f in compare_voc_and_sr(voc, far)] == ["lung.voc_sr_box_differs"]
    assert compare_voc_and_sr(voc, other_slice) == []  # slices with one form only are not compared
    extra = near + [SliceBoxRecord("1.2.3", "Adenocarcinoma", "A", 100, 100, 120, 120, tmp_path / "sr.dcm")]
    assert [f.check for f in compare_voc_and_sr(voc, extra)] == ["lung.sr_box_not_in_voc"]


def test_class_letters_follow_idc_mapping() -> None:
    assert [class_letter_of_name(n) for n in ("A", "a", "g", "Q", "A0192", "")] == ["A", "A", "G", "", "", ""]
    for letter, code in IDC_FINDING_BY_LETTER.items():
        assert class_letter_of_code(code.value, code.meaning) == letter
    # Older SNOMED values (earlier toolkits) and the "Neoplasm" fallback.
    assert class_letter_of_code("35917007", "Adenocarcinoma, no subtype") == "A"
    assert class_letter_of_code("28899001", "Squamous cell carcinoma, no ICD-O subtype") == "G"
    assert class_letter_of_code(codes.SCT.Neoplasm.value, "Neoplasm") == ""


# ---------------------------------------------------------------------- hostile SRs
def _one_group_sr(real_case: RealCase, folder: Path, name: str, region: hd.sr.ImageRegion = None,
                  groups: bool = True, evidence_uid: str = "") -> Path:
    record = real_case.voc[0]
    dataset = pydicom.dcmread(str(real_case.headers[record.sop_instance_uid].path), stop_before_pixels=True)
    if evidence_uid:  # an image the SR's evidence lists but that is not on disk
        dataset.SOPInstanceUID = evidence_uid
    if groups:
        measurements = [hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="1"),
            referenced_region=region, finding_type=codes.SCT.Adenocarcinoma,
            geometric_purpose=codes.SCT.BoundedBy)]
    else:  # an image-level group only (TID 1501): a valid report that holds no box
        measurements = [hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="1"),
            finding_type=codes.SCT.Adenocarcinoma)]
    sr = hd.sr.Comprehensive3DSR(
        evidence=[dataset],
        content=hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(),
                                        procedure_reported=codes.SCT.ImagingProcedure,
                                        imaging_measurements=measurements),
        series_instance_uid=hd.UID(), series_number=102, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="test", series_description=BOX_SR_DESCRIPTION)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    sr.save_as(str(path))
    return path


def _region(real_case: RealCase, graphic_type, points, sop_uid: str = "") -> hd.sr.ImageRegion:
    record = real_case.voc[0]
    sop_class = str(pydicom.dcmread(str(real_case.headers[record.sop_instance_uid].path),
                                    stop_before_pixels=True).SOPClassUID)
    return hd.sr.ImageRegion(graphic_type=graphic_type, graphic_data=np.array(points, dtype=float),
                             source_image=hd.sr.SourceImageForRegion(sop_class, sop_uid or record.sop_instance_uid))


def test_an_sr_without_boxes_is_refused_naming_the_file(real_case: RealCase, tmp_path: Path) -> None:
    path = _one_group_sr(real_case, tmp_path, "empty_SR.dcm", groups=False)
    with pytest.raises(DataError, match="holds no bounding box") as error:
        read_sr_boxes(path)
    assert str(path) in str(error.value)


def test_a_wrong_graphic_type_is_refused_naming_file_and_group(real_case: RealCase, tmp_path: Path) -> None:
    circle = _region(real_case, hd.sr.GraphicTypeValues.CIRCLE, [[100, 100], [110, 100]])
    path = _one_group_sr(real_case, tmp_path, "circle_SR.dcm", circle)
    with pytest.raises(DataError) as error:
        read_sr_boxes(path)
    message = str(error.value)
    assert str(path) in message and "circle_SR.dcm measurement group 1" in message and "CIRCLE" in message
    skewed = _region(real_case, hd.sr.GraphicTypeValues.POLYLINE,
                     [[10, 10], [40, 12], [40, 50], [10, 50], [10, 10]])
    path = _one_group_sr(real_case, tmp_path, "skewed_SR.dcm", skewed)
    with pytest.raises(DataError, match="not an axis-aligned rectangle"):
        read_sr_boxes(path)


def test_out_of_image_and_unknown_instances_are_reported_naming_the_file(real_case: RealCase, tmp_path: Path) -> None:
    sizes = {uid: (int(h.rows), int(h.columns)) for uid, h in real_case.headers.items()}
    outside = _region(real_case, hd.sr.GraphicTypeValues.POLYLINE,
                      [[500, 20], [530, 20], [530, 60], [500, 60], [500, 20]])
    far_outside = _region(real_case, hd.sr.GraphicTypeValues.POLYLINE,
                          [[600, 20], [630, 20], [630, 60], [600, 60], [600, 20]])
    unknown = _region(real_case, hd.sr.GraphicTypeValues.POLYLINE,
                      [[5, 5], [9, 5], [9, 9], [5, 9], [5, 5]], sop_uid="1.2.826.0.1.3680043.99.1")
    found = {}
    for name, region in (("outside_SR.dcm", outside), ("far_SR.dcm", far_outside), ("unknown_SR.dcm", unknown)):
        evidence_uid = "1.2.826.0.1.3680043.99.1" if region is unknown else ""
        path = _one_group_sr(real_case, tmp_path, name, region, evidence_uid=evidence_uid)
        findings = check_sr_boxes_against_images(read_sr_boxes(path).records, sizes, "Lung_Dx-A0002")
        assert len(findings) == 1 and name in findings[0].message and findings[0].path == str(path)
        found[name] = findings[0]
    assert found["outside_SR.dcm"].severity == "warning" and "reaches outside the 512x512" in found["outside_SR.dcm"].message
    assert found["far_SR.dcm"].severity == "error" and "wholly outside" in found["far_SR.dcm"].message
    assert "1.2.826.0.1.3680043.99.1" in found["unknown_SR.dcm"].message


def test_non_sr_files_are_refused_naming_the_file(real_case: RealCase, tmp_path: Path) -> None:
    ct = real_case.headers[real_case.voc[0].sop_instance_uid].path
    with pytest.raises(DataError, match="is not a structured report") as error:
        read_sr_boxes(ct)
    assert str(ct) in str(error.value)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(os.urandom(300))
    with pytest.raises(DataError) as error:
        read_sr_boxes(garbage)
    assert "garbage.dcm" in str(error.value)
    truncated = tmp_path / "truncated_SR.dcm"
    path = _one_group_sr(real_case, tmp_path, "whole_SR.dcm",
                         _region(real_case, hd.sr.GraphicTypeValues.POLYLINE,
                                 [[5, 5], [9, 5], [9, 9], [5, 9], [5, 5]]))
    truncated.write_bytes(path.read_bytes()[:700])
    with pytest.raises(DataError) as error:
        read_sr_boxes(truncated)
    assert "truncated_SR.dcm" in str(error.value)


def test_collect_sr_boxes_turns_every_problem_into_a_finding(real_case: RealCase, tmp_path: Path) -> None:
    good = write_idc_form_srs(real_case.voc, real_case.headers, tmp_path / "sr")
    empty = _one_group_sr(real_case, tmp_path / "bad", "empty_SR.dcm", groups=False)
    garbage = tmp_path / "bad" / "garbage_SR.dcm"
    garbage.write_bytes(b"\0" * 200)
    sizes = {uid: (int(h.rows), int(h.columns)) for uid, h in real_case.headers.items()
             if uid != real_case.voc[0].sop_instance_uid}  # one annotated image is not on disk
    records, findings = collect_sr_boxes([*good, empty, garbage], sizes, "Lung_Dx-A0002")
    assert sorted(map(_key, records)) == sorted(map(_key, real_case.voc))
    assert sorted((f.check, Path(f.path).name) for f in findings) == sorted([
        ("lung.sr_unreadable", "empty_SR.dcm"), ("lung.sr_unreadable", "garbage_SR.dcm"),
        ("lung.sr_unmatched", next(r.source.name for r in records
                                   if r.sop_instance_uid == real_case.voc[0].sop_instance_uid))])
    assert all(Path(f.path).name in f.message for f in findings)


# ---------------------------------------------------------------------- through the Lung-PET-CT-Dx collection
def _slice_rois(loaded) -> List[tuple]:
    """(SOPInstanceUID, centre, size) of every per-slice box ROI a load read, in a stable order."""
    rois = [roi for roi in loaded.data.rois if roi.attributes.get("role") == "slice_box"]
    return sorted((roi.attributes["sop_instance_uid"], tuple(np.round(roi.center, 6)), tuple(np.round(roi.size, 6)))
                  for roi in rois)


def _idc_copy(real_case: RealCase, tmp_path: Path, with_xml: bool, move_first_box: float = 0.0) -> Path:
    """The real case as IDC serves it: the same images, an SR series beside them, the XMLs only if asked."""
    import shutil

    root = tmp_path / "idc"
    shutil.copytree(real_case.root, root)
    if not with_xml:
        shutil.rmtree(root / "Annotation")
    records = list(real_case.voc)
    if move_first_box:
        first = records[0]
        records[0] = SliceBoxRecord(first.sop_instance_uid, first.label, first.class_letter, first.xmin + move_first_box,
                                    first.ymin, first.xmax + move_first_box, first.ymax, first.source, first.index)
    image = real_case.headers[records[0].sop_instance_uid].path.relative_to(real_case.root)
    sr_folder = root / image.parent.parent / "300.000000-Tumor bounding box-00001"
    write_idc_form_srs(records, real_case.headers, sr_folder)
    return root


def test_the_collection_places_idc_sr_boxes_where_it_places_the_voc_boxes(real_case: RealCase, tmp_path: Path,
                                                                          builder) -> None:
    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import LungPetCtDxCollection

    def load(root: Path):
        collection = LungPetCtDxCollection(root)
        return collection.load_case(collection.find_case("Lung_Dx-A0002"), builder)

    from_voc = load(real_case.root)
    from_sr = load(_idc_copy(real_case, tmp_path, with_xml=False))
    assert _slice_rois(from_voc) and len(_slice_rois(from_voc)) == len(real_case.voc)
    voc_rois, sr_rois = _slice_rois(from_voc), _slice_rois(from_sr)
    assert [roi[0] for roi in voc_rois] == [roi[0] for roi in sr_rois]
    for (_, voc_center, voc_size), (_, sr_center, sr_size) in zip(voc_rois, sr_rois):
        assert np.allclose(voc_center, sr_center, atol=1e-3) and np.allclose(voc_size, sr_size, atol=1e-3)
    assert from_sr.metrics["lesions"] == from_voc.metrics["lesions"]
    checks = {finding.check for finding in from_sr.findings}
    assert "lung.no_annotations" not in checks and "lung.series_skipped" not in checks, checks


def test_the_collection_compares_voc_and_sr_boxes_and_reports_a_moved_one(real_case: RealCase, tmp_path: Path,
                                                                          builder) -> None:
    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import LungPetCtDxCollection

    agreeing = _idc_copy(real_case, tmp_path / "same", with_xml=True)
    collection = LungPetCtDxCollection(agreeing)
    loaded = collection.load_case(collection.find_case("Lung_Dx-A0002"), builder)
    assert not [f for f in loaded.findings if f.check.startswith("lung.voc_sr") or f.check.endswith("not_in_sr")]
    assert len(_slice_rois(loaded)) == len(real_case.voc), "an image boxed in both forms gets its box once"

    moved = _idc_copy(real_case, tmp_path / "moved", with_xml=True, move_first_box=3.0)
    collection = LungPetCtDxCollection(moved)
    loaded = collection.load_case(collection.find_case("Lung_Dx-A0002"), builder)
    differs = [f for f in loaded.findings if f.check == "lung.voc_sr_box_differs"]
    assert len(differs) == 1 and real_case.voc[0].source.name in differs[0].message


def test_an_sr_in_another_frame_of_reference_or_spelled_differently_is_reported(real_case: RealCase,
                                                                              tmp_path: Path, builder) -> None:
    """The SR's identity is compared with the images its boxes name (as CRLM does for SEGs)."""
    import pydicom

    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import LungPetCtDxCollection

    def load(root: Path):
        collection = LungPetCtDxCollection(root)
        return collection.load_case(collection.find_case("Lung_Dx-A0002"), builder)

    clean = load(_idc_copy(real_case, tmp_path / "clean", with_xml=False))
    assert not [f for f in clean.findings if f.check.startswith("identity.")]
    for name, change in (("frame", lambda ds: setattr(ds, "FrameOfReferenceUID", "1.2.826.0.1.3680043.8.498.77")),
                         ("patient", lambda ds: setattr(ds, "PatientID", "lung_dx-a0002 "))):
        root = _idc_copy(real_case, tmp_path / name, with_xml=False)
        sr_path = next(path for path in root.rglob("*.dcm") if "Tumor bounding box" in str(path.parent))
        dataset = pydicom.dcmread(str(sr_path))
        change(dataset)
        dataset.save_as(str(sr_path))
        loaded = load(root)
        identity = [f for f in loaded.findings if f.check.startswith("identity.")]
        assert identity and all(sr_path.name in f.message for f in identity), [f.message for f in loaded.findings]
        if name == "frame":
            assert [f.severity for f in identity] == ["error"] and "frame" in identity[0].message.lower()
        else:  # the same patient spelled differently: a warning, the boxes still placed
            assert [f.severity for f in identity] == ["warning"] and "spelled differently" in identity[0].message
        assert len(_slice_rois(loaded)) == len(_slice_rois(clean))
