"""Colorectal-Liver-Metastases: discovery in NBIA and IDC layouts, loading, QA, export, failure.

Ground truth is the generator's own label masks (``_ground_truth/<PatientID>.npz``).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import pydicom
import pytest
import slicer
import vtk

from SarcomaLungLiverBrowserLib.collections.crlm import (
    CrlmCase,
    CrlmCollection,
    canonical_segment_name,
    export_segmentation,
    find_clinical_row,
    read_clinical_table,
    structure_kind,
)
from SarcomaLungLiverBrowserLib.formats.dicom_seg import decode_seg, read_seg_header
from SarcomaLungLiverBrowserLib.formats.dicom_series import read_series, scan_folder
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.samples import crlm as sample
from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder, segment_mask

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def crlm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample.generate(tmp_path_factory.mktemp("crlm"))


@pytest.fixture(scope="module")
def cases(crlm_root: Path) -> Dict[str, CrlmCase]:
    return {case.case_id: case for case in CrlmCollection(crlm_root).discover_cases()}


def _node_ids(scene) -> List[str]:
    return [scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())]


# ---------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("label, name, kind", [
    ("Liver", "Liver", "liver"),
    ("Liver Remnant", "Liver_Remnant", "remnant"),
    ("Liver_remnant", "Liver_Remnant", "remnant"),
    ("liver-remnant", "Liver_Remnant", "remnant"),
    ("Hepatic", "Hepatic", "hepatic"),
    ("Portal", "Portal", "portal"),
    ("Tumor_12", "Tumor_12", "tumour"),
    ("tumor 3", "Tumor_3", "tumour"),
    ("Spleen", "Spleen", "other"),
])
def test_segment_names_are_normalised(label: str, name: str, kind: str) -> None:
    assert canonical_segment_name(label) == name
    assert structure_kind(label) == kind


# ---------------------------------------------------------------------------------------------- sample
def test_sample_carries_the_real_quirks(crlm_root: Path) -> None:
    nbia = crlm_root / sample.MANIFEST_FOLDER / "Colorectal-Liver-Metastases"
    assert (crlm_root / sample.MANIFEST_FOLDER / "metadata.csv").is_file()
    seg_files = sorted(nbia.glob("CRLM-CT-*/*/100.000000-Segmentation-*/*"))
    assert [path.name for path in seg_files] == ["1-1.dcm", "1-1.dcm"]
    idc = crlm_root / "colorectal_liver_metastases" / "CRLM-CT-1003"
    assert len(list(idc.glob("*/SEG_*/*.dcm"))) == 2 and len(list(idc.glob("*/CT_*/*.dcm"))) == 20
    labels = [read_seg_header(path).segment_labels[1] for path in seg_files]
    assert labels == ["Liver Remnant", "Liver_Remnant"]
    seg = pydicom.dcmread(str(seg_files[1]))
    assert seg.Manufacturer == "QIICR" and seg.SegmentationType == "BINARY"
    assert "SegmentsOverlap" not in seg
    numbers = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
               for f in seg.PerFrameFunctionalGroupsSequence]
    assert numbers == sorted(numbers), "frames are grouped by segment"
    ct_slices = len(list(seg_files[1].parent.parent.glob("101.000000-*/*.dcm")))
    assert len(numbers) < ct_slices * len(seg.SegmentSequence), "empty frames are omitted"
    first_of_tumour = next(f for f in seg.PerFrameFunctionalGroupsSequence
                           if f.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 5)
    assert list(first_of_tumour.FrameContentSequence[0].DimensionIndexValues) == [5, 1]
    total = sum(path.stat().st_size for path in crlm_root.rglob("*") if path.is_file())
    assert total < 15e6


def test_clinical_workbook(crlm_root: Path) -> None:
    table, notes = read_clinical_table(crlm_root / sample.CLINICAL_FILE)
    assert notes == []
    assert list(table.columns) == sample.CLINICAL_COLUMNS
    row = find_clinical_row(table, "CRLM-CT-1001")
    assert len(row) == 1
    assert np.isnan(row["carcinoembryonic_antigen"].iloc[0]) and np.isnan(row["NASH_score"].iloc[0])
    assert not np.isnan(row["age"].iloc[0])
    assert find_clinical_row(table, "CRLM-CT-1999").empty


# ---------------------------------------------------------------------------------------------- discovery
def test_detect(crlm_root: Path, tmp_path: Path) -> None:
    assert CrlmCollection.detect(crlm_root)
    assert CrlmCollection.detect(crlm_root.parent)
    assert CrlmCollection.detect(crlm_root / "colorectal_liver_metastases" / "CRLM-CT-1003")
    (tmp_path / "other" / "STS_001").mkdir(parents=True)
    assert not CrlmCollection.detect(tmp_path / "other")


def test_discovery_pairs_segs_and_filters_ai(cases: Dict[str, CrlmCase]) -> None:
    assert sorted(cases) == ["CRLM-CT-1001", "CRLM-CT-1002", "CRLM-CT-1003"]
    assert cases["CRLM-CT-1001"].summary["layout"] == "nbia"
    assert cases["CRLM-CT-1003"].summary["layout"] == "idc"
    assert [case.summary["segments"] for case in cases.values()] == [6, 12, 5]
    idc = cases["CRLM-CT-1003"]
    assert len(idc.seg_files) == 1 and len(idc.ai_seg_files) == 1
    assert read_seg_header(idc.ai_seg_files[0]).series_description.startswith("AIMI")
    assert read_seg_header(idc.seg_files[0]).series_description == "Segmentation"
    for case in cases.values():
        (seg_path, ct_uid), = CrlmCollection.pair_segmentations(case)
        summary, _ = sample.load_ground_truth(case.root, case.case_id)
        assert ct_uid == summary["ct_series_instance_uid"]
        assert seg_path == case.root / summary["seg_path"]


# ---------------------------------------------------------------------------------------------- loading
@pytest.mark.parametrize("case_id", ["CRLM-CT-1001", "CRLM-CT-1002", "CRLM-CT-1003"])
def test_case_round_trips_ground_truth(crlm_root: Path, cases: Dict[str, CrlmCase], builder: SceneBuilder,
                                       case_id: str) -> None:
    loaded = CrlmCollection(crlm_root).load_case(cases[case_id], builder)
    summary, masks = sample.load_ground_truth(crlm_root, case_id)
    assert len(loaded.volumes) == 1
    # 1003 (IDC layout) also has a bamf AI SEG: it loads as a second segmentation (see test_ai_seg_...).
    assert len(loaded.segmentations) == (2 if summary["ai_seg_path"] else 1)
    assert loaded.segmentations[0].GetName() == f"{case_id} segmentation"
    shape, ijk_to_ras = SceneBuilder.volume_geometry(loaded.volumes[0])
    assert list(shape) == summary["shape_kji"]
    node = loaded.segmentations[0]
    segmentation = node.GetSegmentation()
    assert 5 <= segmentation.GetNumberOfSegments() == len(masks) <= 39
    ids = loaded.metrics["segment_ids"]
    for index, (truth, mask) in enumerate(zip(summary["segments"], masks)):
        segment_id = ids[truth["number"]]
        assert segmentation.GetNthSegmentID(index) == segment_id, "segments keep the SEG's order"
        segment = segmentation.GetSegment(segment_id)
        assert segment.GetName() == canonical_segment_name(truth["label"])
        assert np.array_equal(segment_mask(node, segment_id, shape, ijk_to_ras), mask), segment_id
        label = vtk.mutable("")
        assert segment.GetTag("DICOM.SegmentLabel", label) and str(label) == truth["label"]
    assert segmentation.GetSegment("Liver_Remnant") is not None
    terminology = vtk.mutable("")
    segmentation.GetSegment("Liver").GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology)
    assert "SCT^10200004^Liver" in str(terminology)
    # Metrics against ground truth.
    spacing = summary["pixel_spacing"] ** 2 * summary["slice_spacing"] / 1000.0
    for truth in summary["segments"]:
        assert loaded.metrics["segment_volumes_cm3"][ids[truth["number"]]] == pytest.approx(truth["voxels"] * spacing,
                                                                                            rel=1e-3)
    assert loaded.metrics["tumour_count"] == summary["tumour_count"]
    assert loaded.metrics["tumour_voxels_outside_liver_by_segment"] == summary["tumour_voxels_outside_liver"]
    assert loaded.metrics["empty_segments"] == []
    assert loaded.metrics["frames_referencing_missing_instances"] == 0
    assert loaded.metrics["geometry_mismatch"] is False
    outside = [f for f in loaded.findings if f.check == "crlm.tumour_outside_liver"]
    assert len(outside) == sum(1 for count in summary["tumour_voxels_outside_liver"].values() if count)
    assert all(f.ras is not None and f.segment_id for f in outside)


def test_ai_seg_loads_beside_the_expert_seg_named_from_its_series(crlm_root: Path, cases: Dict[str, CrlmCase],
                                                                  builder: SceneBuilder) -> None:
    collection = CrlmCollection(crlm_root)
    case = cases["CRLM-CT-1003"]
    assert case.summary["AI SEG"] == 1
    loaded = collection.load_case(case, builder)
    expert, ai = loaded.segmentations
    assert ai.GetName() == "CRLM-CT-1003 AIMI liver-tumor AI segmentation"
    assert ai.GetAttribute("SarcomaLungLiverBrowser.crlm.seg_role") == "ai"
    assert expert.GetAttribute("SarcomaLungLiverBrowser.crlm.seg_role") == "expert"
    # Both on the one CT, in the same study.
    hierarchy = builder.hierarchy
    study = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(loaded.volumes[0]))
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(ai)) == study
    # The AI masks, as the sample wrote them: the liver eroded by one row, every tumour merged into one label.
    summary, masks = sample.load_ground_truth(crlm_root, case.case_id)
    liver = masks[0].copy()
    liver[:, 1:, :] &= masks[0][:, :-1, :]
    tumour = np.any([mask for truth, mask in zip(summary["segments"], masks) if truth["label"].startswith("Tumor")],
                    axis=0)
    shape, ijk_to_ras = SceneBuilder.volume_geometry(loaded.volumes[0])
    segmentation = ai.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == \
        ["Liver", "Liver tumor"]
    assert np.array_equal(segment_mask(ai, "Liver", shape, ijk_to_ras), liver)
    assert np.array_equal(segment_mask(ai, "Liver tumor", shape, ijk_to_ras), tumour)
    # The expert SEG's measurements stay the case's; each SEG is measured on its own too.
    assert loaded.metrics["seg_path"] == str(case.seg_files[0])
    assert set(loaded.metrics["per_segmentation"]) == {expert.GetName(), ai.GetName()}
    voxel_cm3 = abs(np.linalg.det(ijk_to_ras[:3, :3])) / 1000
    assert loaded.metrics["per_segmentation"][ai.GetName()]["segment_volumes_cm3"]["Liver"] == \
        pytest.approx(np.count_nonzero(liver) * voxel_cm3, rel=1e-3)
    info = [f for f in loaded.findings if f.check == "crlm.ai_segmentation"]
    assert len(info) == 1 and info[0].node_name == ai.GetName() and "AIMI liver-tumor" in info[0].message


def test_ai_seg_whose_ct_is_missing_is_named_and_the_expert_seg_still_loads(crlm_root: Path, tmp_path: Path,
                                                                           builder: SceneBuilder) -> None:
    root = tmp_path / "Colorectal-Liver-Metastases"
    shutil.copytree(crlm_root / "colorectal_liver_metastases", root / "colorectal_liver_metastases")
    collection = CrlmCollection(root)
    case = collection.find_case("CRLM-CT-1003")
    ai_path = case.ai_seg_files[0]
    seg = pydicom.dcmread(str(ai_path))
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = "1.2.3.4.5"
    seg.save_as(str(ai_path))
    loaded = collection.load_case(collection.find_case("CRLM-CT-1003"), builder)
    assert [node.GetName() for node in loaded.segmentations] == ["CRLM-CT-1003 segmentation"]
    unpaired = [f for f in loaded.findings if f.check == "crlm.ai_segmentation_unpaired"]
    assert len(unpaired) == 1 and ai_path.name in unpaired[0].message and "1.2.3.4.5" in unpaired[0].message


def test_damaged_ai_seg_is_named_and_the_expert_seg_still_loads(crlm_root: Path, tmp_path: Path,
                                                                builder: SceneBuilder) -> None:
    root = tmp_path / "Colorectal-Liver-Metastases"
    shutil.copytree(crlm_root / "colorectal_liver_metastases", root / "colorectal_liver_metastases")
    collection = CrlmCollection(root)
    case = collection.find_case("CRLM-CT-1003")
    ai_path = case.ai_seg_files[0]
    content = ai_path.read_bytes()
    ai_path.write_bytes(content[: len(content) * 2 // 3])  # the header survives, the frames do not
    loaded = collection.load_case(case, builder)
    assert [node.GetName() for node in loaded.segmentations] == ["CRLM-CT-1003 segmentation"]
    unreadable = [f for f in loaded.findings if f.check == "crlm.ai_segmentation_unreadable"]
    assert len(unreadable) == 1 and unreadable[0].path == str(ai_path) and ai_path.name in unreadable[0].message


def test_colours_from_seg_or_defaults(crlm_root: Path, cases: Dict[str, CrlmCase], builder: SceneBuilder) -> None:
    collection = CrlmCollection(crlm_root)
    with_colours = collection.load_case(cases["CRLM-CT-1001"], builder).segmentations[0].GetSegmentation()
    without = collection.load_case(cases["CRLM-CT-1002"], builder).segmentations[0].GetSegmentation()
    # 1001's SEG recommends the sample colours (CIELab -> RGB); 1002's recommends none.
    assert np.allclose(with_colours.GetSegment("Hepatic").GetColor(), np.array(sample._COLORS["hepatic"]) / 255,
                       atol=2 / 255)
    assert np.allclose(without.GetSegment("Liver").GetColor(), (221 / 255, 130 / 255, 101 / 255))
    tumour_colours = {tuple(without.GetSegment(f"Tumor_{n}").GetColor()) for n in range(1, 9)}
    assert len(tumour_colours) == 8, "tumours without recommended colours never share one"
    anatomy = [np.array(without.GetSegment(name).GetColor()) for name in ("Liver", "Liver_Remnant", "Hepatic", "Portal")]
    assert all(np.abs(np.array(colour) - other).max() > 0.1 for colour in tumour_colours for other in anatomy)
    assert np.abs(anatomy[3] - anatomy[0]).max() > 0.3, "Portal must be told apart from Liver at a glance"


def test_hierarchy_and_clinical_tables(crlm_root: Path, cases: Dict[str, CrlmCase], builder: SceneBuilder) -> None:
    collection = CrlmCollection(crlm_root)
    first = collection.load_case(cases["CRLM-CT-1001"], builder)
    second = collection.load_case(cases["CRLM-CT-1002"], builder)
    hierarchy = builder.hierarchy
    for loaded in (first, second):
        study = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(loaded.volumes[0]))
        patient = hierarchy.GetItemParent(study)
        assert hierarchy.GetItemName(patient) == loaded.case.case_id
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(loaded.segmentations[0])) == study
        row_table = loaded.tables[-1]
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(row_table)) == study
        frame = slicer.util.dataframeFromTable(row_table)
        assert len(frame) == 1
    # The whole sheet is loaded once and reused by the next case.
    assert len(first.tables) == 2 and len(second.tables) == 1
    full = slicer.util.dataframeFromTable(first.tables[0])
    assert len(full) == 8 and "relevant_notes" in full.columns
    assert np.isnan(slicer.util.dataframeFromTable(first.tables[1])["carcinoembryonic_antigen"][0])


def test_clinical_workbook_with_spaces_in_its_name(crlm_root: Path, tmp_path: Path, builder: SceneBuilder) -> None:
    root = tmp_path / "Colorectal-Liver-Metastases"
    shutil.copytree(crlm_root / "colorectal_liver_metastases", root / "colorectal_liver_metastases")
    shutil.copy(crlm_root / sample.CLINICAL_FILE, root / "Colorectal Liver Metastases Clinical data April 2023.xlsx")
    collection = CrlmCollection(root)
    loaded = collection.load_case(collection.find_case("crlm-ct-1003"), builder)
    # (1003 also has an AI SEG, whose agreement with the expert SEG is a table of its own.)
    assert [node.GetName() for node in loaded.tables] == [
        "Colorectal-Liver-Metastases clinical data", "CRLM-CT-1003 clinical data",
        "CRLM-CT-1003 AIMI liver-tumor AI segmentation vs expert agreement"]


# ---------------------------------------------------------------------------------------------- export
def test_edited_segmentation_exports_and_reloads(crlm_root: Path, cases: Dict[str, CrlmCase],
                                                 builder: SceneBuilder, tmp_path: Path) -> None:
    loaded = CrlmCollection(crlm_root).load_case(cases["CRLM-CT-1002"], builder)
    node = loaded.segmentations[0]
    segmentation = node.GetSegmentation()
    segmentation.RemoveSegment("Tumor_2")  # an edit: drop a segment ...
    segmentation.GetSegment("Tumor_8").SetName("Tumor_8 (extrahepatic)")  # ... and rename another
    path = export_segmentation(node, tmp_path / "edited.dcm", series_description="Edited CRLM")
    shape, ijk_to_ras = SceneBuilder.volume_geometry(loaded.volumes[0])
    folder = Path(node.GetAttribute("SarcomaLungLiverBrowser.crlm.ct_folder"))
    volume = read_series(scan_folder(folder).instances)
    reloaded = decode_seg(path, volume)
    assert reloaded.findings == []
    original = decode_seg(Path(loaded.metrics["seg_path"]), volume)
    kept = [s for s in original.segments if s.label != "Tumor_2"]
    assert len(reloaded.segments) == segmentation.GetNumberOfSegments() == 11
    for index, (before, after) in enumerate(zip(kept, reloaded.segments)):
        segment_id = segmentation.GetNthSegmentID(index)
        assert after.label == segmentation.GetSegment(segment_id).GetName()
        assert (after.category, after.type) == (before.category, before.type)
        assert np.array_equal(after.mask, segment_mask(node, segment_id, shape, ijk_to_ras))
        assert np.array_equal(after.mask, before.mask)
    assert reloaded.segments[-1].label == "Tumor_8 (extrahepatic)"
    written = pydicom.dcmread(str(path), stop_before_pixels=True)
    assert written.ReferencedSeriesSequence[0].SeriesInstanceUID == volume.series_instance_uid
    referenced = {item.ReferencedSOPInstanceUID for item in written.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced <= {instance.sop_instance_uid for instance in volume.instances}


# ---------------------------------------------------------------------------------------------- failures
def _copy_case(crlm_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "Colorectal-Liver-Metastases"
    shutil.copytree(crlm_root / sample.MANIFEST_FOLDER, root / sample.MANIFEST_FOLDER)
    return root


def test_seg_whose_ct_is_missing_loads_nothing(crlm_root: Path, tmp_path: Path, builder: SceneBuilder) -> None:
    root = _copy_case(crlm_root, tmp_path)
    patient = root / sample.MANIFEST_FOLDER / "Colorectal-Liver-Metastases" / "CRLM-CT-1001"
    shutil.rmtree(next(patient.glob("*/101.000000-*")))
    collection = CrlmCollection(root)
    case = collection.find_case("CRLM-CT-1001")
    scene = builder.scene
    before = _node_ids(scene)
    with pytest.raises(DataError) as error:
        collection.load_case(case, builder)
    message = str(error.value)
    assert "1-1.dcm" in message and "references CT series" in message and "nothing was loaded" in message
    assert _node_ids(scene) == before


def test_damaged_seg_rolls_the_scene_back(crlm_root: Path, tmp_path: Path, builder: SceneBuilder) -> None:
    root = _copy_case(crlm_root, tmp_path)
    collection = CrlmCollection(root)
    case = collection.find_case("CRLM-CT-1002")
    seg_path = case.seg_files[0]
    data = seg_path.read_bytes()
    seg_path.write_bytes(data[: len(data) // 2])
    scene = builder.scene
    collection.load_case(collection.find_case("CRLM-CT-1001"), builder)  # an earlier case stays
    before = _node_ids(scene)
    with pytest.raises(DataError) as error:
        collection.load_case(case, builder)
    assert seg_path.name in str(error.value)
    assert _node_ids(scene) == before


def test_a_damaged_jpeg2000_ct_slice_is_named_and_rolls_the_scene_back(crlm_root: Path, tmp_path: Path,
                                                                         builder: SceneBuilder) -> None:
    """The CT re-encoded as JPEG 2000 (as IDC serves much of its data) is decoded by threads; one truncated slice
    stops the load naming that file, and the scene keeps the earlier case and nothing of this one."""
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    root = _copy_case(crlm_root, tmp_path)
    patient = root / sample.MANIFEST_FOLDER / "Colorectal-Liver-Metastases" / "CRLM-CT-1002"
    ct_files = sorted(next(patient.glob("*/101.000000-*")).glob("*.dcm"))
    for path in ct_files:
        dataset = pydicom.dcmread(str(path))
        dataset.compress(JPEG2000Lossless, generate_instance_uid=False)
        dataset.save_as(str(path), enforce_file_format=True)
    victim = ct_files[len(ct_files) // 2]
    victim.write_bytes(victim.read_bytes()[:-2000])
    collection = CrlmCollection(root)
    scene = builder.scene
    collection.load_case(collection.find_case("CRLM-CT-1001"), builder)  # an earlier case stays
    before = _node_ids(scene)
    with pytest.raises(DataError) as error:
        collection.load_case(collection.find_case("CRLM-CT-1002"), builder)
    assert victim.name in str(error.value) and str(victim.parent) in str(error.value)
    assert _node_ids(scene) == before


def _with_sample_seg_changed(crlm_root: Path, tmp_path: Path, keyword: str, value: str) -> Path:
    """A copy of the sample in which CRLM-CT-1001's expert SEG has ``keyword`` set to ``value``."""
    import pydicom

    root = _copy_case(crlm_root, tmp_path)
    patient = root / sample.MANIFEST_FOLDER / "Colorectal-Liver-Metastases" / "CRLM-CT-1001"
    seg_path = next(patient.glob("*/100.000000-*/1-1.dcm"))
    dataset = pydicom.dcmread(str(seg_path))
    setattr(dataset, keyword, value)
    dataset.save_as(str(seg_path))
    return root


@pytest.mark.parametrize("keyword, value, expected", [
    ("PatientID", "CRLM-CT-1999", "another patient's annotation"),
])
def test_another_patients_seg_pointing_at_this_ct_is_refused_naming_it(crlm_root: Path, tmp_path: Path,
                                                                      builder: SceneBuilder, keyword: str,
                                                                      value: str, expected: str) -> None:
    """A SEG whose series reference was rewritten to this CT, but whose identity says otherwise, is not drawn."""
    root = _with_sample_seg_changed(crlm_root, tmp_path, keyword, value)
    collection = CrlmCollection(root)
    before = _node_ids(builder.scene)
    with pytest.raises(DataError) as error:
        collection.load_case(collection.find_case("CRLM-CT-1001"), builder)
    assert "1-1.dcm" in str(error.value) and expected in str(error.value)
    assert _node_ids(builder.scene) == before


def test_a_seg_whose_patient_id_is_only_spelled_differently_loads_with_a_warning(crlm_root: Path, tmp_path: Path,
                                                                                builder: SceneBuilder) -> None:
    root = _with_sample_seg_changed(crlm_root, tmp_path, "PatientID", "crlm-ct-1001 ")
    collection = CrlmCollection(root)
    loaded = collection.load_case(collection.find_case("CRLM-CT-1001"), builder)
    assert loaded.segmentations
    assert any("spelled differently" in f.message and f.severity == "warning" for f in loaded.findings)


def test_a_seg_in_another_frame_of_reference_is_an_error_finding_naming_it(crlm_root: Path, tmp_path: Path,
                                                                          builder: SceneBuilder) -> None:
    root = _with_sample_seg_changed(crlm_root, tmp_path, "FrameOfReferenceUID", "1.2.826.0.1.3680043.8.498.999")
    collection = CrlmCollection(root)
    loaded = collection.load_case(collection.find_case("CRLM-CT-1001"), builder)
    frame = [f for f in loaded.findings if "in another frame" in f.message]
    assert frame and frame[0].severity == "error" and "1-1.dcm" in frame[0].message
