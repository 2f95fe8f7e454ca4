"""Lung-PET-CT-Dx: discovery, CT/PET loading, boxes to ROIs, QA findings and export."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List

import highdicom as hd
import numpy as np
import pydicom
import pytest
import slicer.util

from conftest import require_shared_data
from scene_snapshot import describe_load, golden, normalised
import vtk

import SarcomaLungLiverBrowserLib
from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import (
    CT_WINDOW_PRESETS,
    PET_COLOR_NODE_ID,
    Lesion,
    LungCase,
    LungPetCtDxCollection,
    SliceBox,
    box_from_roi_corners,
    box_roi_geometry,
    corrected_boxes,
    export_sr,
    group_lesions,
    pet_ct_layers,
)
from SarcomaLungLiverBrowserLib.collections.base import LIGHT_IMPORT_FORBIDDEN
from SarcomaLungLiverBrowserLib.errors import LoadCancelled
from SarcomaLungLiverBrowserLib.samples import lung_pet_ct_dx as sample
from SarcomaLungLiverBrowserLib.samples.dicom_writer import SeriesSpec, nbia_series_folder, uid_from_seed, write_series
from SarcomaLungLiverBrowserLib.scene.builder import ATTRIBUTE_PREFIX, SceneBuilder
from SarcomaLungLiverBrowserLib.scene.put_case import put_case
from SarcomaLungLiverBrowserLib.formats.voc_xml import VocAnnotation, VocObject, format_voc, parse_voc

TRUTH = sample.ground_truth()


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample.generate(tmp_path_factory.mktemp("lung"))


def _attr(node, key: str) -> str:
    return node.GetAttribute(ATTRIBUTE_PREFIX + key) or ""


def _rois(loaded, role: str) -> List:
    return [node for node in loaded.rois if _attr(node, "role") == role]


def _roi_corners(node) -> np.ndarray:
    """The 8 corners of a ROI from its own matrix and size (independent of the loader's helper)."""
    matrix = node.GetObjectToWorldMatrix()
    size = node.GetSize()
    corners = []
    for sx in (-0.5, 0.5):
        for sy in (-0.5, 0.5):
            for sz in (-0.5, 0.5):
                corners.append(matrix.MultiplyPoint((sx * size[0], sy * size[1], sz * size[2], 1.0))[:3])
    return np.array(corners)


def _same_corners(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    """True if every corner of ``a`` has a corner of ``b`` within ``tolerance`` mm and vice versa."""
    distances = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    return bool(distances.min(axis=1).max() <= tolerance and distances.min(axis=0).max() <= tolerance)


def _load(root: Path, case_id: str, builder: SceneBuilder):
    collection = LungPetCtDxCollection(root)
    return collection, collection.load_case(collection.find_case(case_id), builder)


# ---------------------------------------------------------------------- discovery
def test_sample_is_small_and_detected(sample_root: Path) -> None:
    size = sum(path.stat().st_size for path in sample_root.rglob("*") if path.is_file())
    assert size < 15e6
    assert LungPetCtDxCollection.detect(sample_root)
    assert (sample_root / sample.MANIFEST / "metadata.csv").is_file()
    nbia = sample_root / sample.MANIFEST / "Lung-PET-CT-Dx" / "Lung_Dx-A0001"
    assert sorted(p.name for p in nbia.iterdir())[0].startswith("04-04-2007-NA-Chest-")
    assert any(p.name.startswith("2.000000-5mm-") for p in next(nbia.iterdir()).iterdir())
    idc = sample_root / "lung_pet_ct_dx" / "Lung_Dx-B0002"
    series = [p.name for study in idc.iterdir() for p in study.iterdir()]
    assert sorted(name.split("_")[0] for name in series) == ["CT", "CT", "PT"]


def test_discovery_finds_both_layouts_and_the_annotation_tree(sample_root: Path) -> None:
    cases = LungPetCtDxCollection(sample_root).discover_cases()
    assert [case.case_id for case in cases] == sorted(TRUTH)
    for case in cases:
        truth = TRUTH[case.case_id]
        assert case.diagnosis == truth.diagnosis
        assert case.summary["layout"] == truth.layout
        assert case.summary["xml_files"] == truth.xml_files
        assert case.summary["series"] == truth.series
        assert [p.name for p in case.annotation_folders] == [case.case_id.split("-")[1]]


def test_annotation_roots_are_inside_the_chosen_folder_or_named_never_found_upward(
        sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    download = tmp_path / "download"
    shutil.copytree(sample_root, download)
    chosen = download / sample.MANIFEST / "Lung-PET-CT-Dx"
    cases = LungPetCtDxCollection(chosen).discover_cases()
    assert [case.case_id for case in cases] == ["Lung_Dx-A0001", "Lung_Dx-G0003"]
    assert not any(case.annotation_folders for case in cases), "a sibling Annotation tree is not walked up to"
    named = LungPetCtDxCollection(chosen, annotations=[download / "Annotation"]).discover_cases()
    assert [[p.name for p in case.annotation_folders] for case in named] == [["A0001"], ["B0002"], ["G0003"]]
    # B0002's images are not in the chosen folder: its annotations are listed with that problem, not dropped.
    without_images = named[1]
    assert without_images.summary["series"] == 0 and not without_images.image_folders
    assert any("no DICOM image of Lung_Dx-B0002" in problem for problem in without_images.problems)
    # An edited copy beside the collection never changes what loads, however the folder is typed.
    shutil.copytree(download / "Annotation", tmp_path / "my_edits" / "Annotation")
    absolute = LungPetCtDxCollection(download.resolve()).discover_cases()
    monkeypatch.chdir(tmp_path)
    relative = LungPetCtDxCollection(Path("download")).discover_cases()
    assert [[p.resolve() for p in case.annotation_folders] for case in absolute] == \
        [[p.resolve() for p in case.annotation_folders] for case in relative] == \
        [[(download / "Annotation" / case_id).resolve()] for case_id in ("A0001", "B0002", "G0003")]


# ---------------------------------------------------------------------- the collection contract
def test_detection_imports_nothing_heavy(sample_root: Path) -> None:
    """Importing the package and detecting a folder loads none of VTK, slicer, highdicom, pandas, lxml..."""
    library = str(Path(SarcomaLungLiverBrowserLib.__file__).parents[1])
    code = ("import sys\n"
            "from pathlib import Path\n"
            "from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import LungPetCtDxCollection\n"
            f"assert LungPetCtDxCollection.detect(Path({str(sample_root)!r}))\n"
            f"print(sorted(m for m in {LIGHT_IMPORT_FORBIDDEN!r} if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": library}, check=True)
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.parametrize("case_id", sorted(TRUTH))
def test_read_case_is_plain_data_and_put_case_gives_the_nodes_of_before(sample_root: Path, builder: SceneBuilder,
                                                                         case_id: str) -> None:
    """read_case touches no scene; put_case of its data creates what the loader created before the contract.

    The golden files were written by the loader as it was before the split
    (node names, hierarchy, colours, windows, attributes, ROI geometry, findings).
    """
    collection = LungPetCtDxCollection(sample_root)
    case = collection.find_case(case_id)
    assert isinstance(case, LungCase) and case.image_folders and case.annotation_folders
    nodes_before = builder.scene.GetNumberOfNodes()
    data = collection.read_case(case)
    assert builder.scene.GetNumberOfNodes() == nodes_before
    assert pickle.loads(pickle.dumps(data)).volumes[0].voxels.shape == data.volumes[0].voxels.shape
    assert all(volume.share_memory for volume in data.volumes)
    assert set(data.provenance["source_headers"]) >= {box.sop_instance_uid for box in data.provenance["boxes"]}
    data.findings.extend(collection.check_case(data))
    loaded = put_case(data, builder)
    assert normalised(describe_load(builder.scene, loaded, sample_root.parent)) == golden(f"lung_pet_ct_dx_{case_id}")
    # The volume holds the voxels read, not a copy.
    assert np.shares_memory(slicer.util.arrayFromVolume(loaded.volumes[0]), data.volumes[0].voxels)


# ---------------------------------------------------------------------- loading the sample
@pytest.mark.parametrize("case_id", sorted(TRUTH))
def test_sample_cases_give_the_expected_lesions_boxes_and_findings(sample_root: Path, builder: SceneBuilder,
                                                                   case_id: str) -> None:
    truth = TRUTH[case_id]
    _, loaded = _load(sample_root, case_id, builder)
    assert len(loaded.volumes) == truth.series
    lesions_by_series: Dict[int, int] = Counter()
    number_of = {node.GetID(): int(node.GetName().split()[1]) for node in loaded.volumes}
    for node in _rois(loaded, "lesion"):
        lesions_by_series[number_of[_attr(node, "volume_node_id")]] += 1
    expected = {number: count for number, count in truth.lesions.items() if count}
    assert dict(lesions_by_series) == expected
    assert loaded.metrics["lesions"] == truth.tumours  # one tumour boxed on CT, CT and PET counts once
    assert loaded.metrics["series_lesions"] == truth.lesion_rois
    assert len(_rois(loaded, "slice_box")) == truth.placed_boxes
    checks = Counter(finding.check for finding in loaded.findings)
    for check, count in truth.findings.items():
        assert checks[check] == count, (check, [f.message for f in loaded.findings if f.check == check])
    for check in ("lung.xml_unreadable", "lung.duplicate_box", "lung.lesion_gap", "lung.xml_unmatched",
                  "lung.box_no_geometry", "lung.label_mismatch", "lung.box_outside_image"):
        if check not in truth.findings:
            assert checks[check] == 0, check
    assert all(finding.case_id == case_id for finding in loaded.findings)


def test_ct_windows_pet_colours_and_layers(sample_root: Path, builder: SceneBuilder) -> None:
    assert builder.scene.GetNodeByID(PET_COLOR_NODE_ID) is not None
    _, loaded = _load(sample_root, "Lung_Dx-A0001", builder)
    cts = [n for n in loaded.volumes if _attr(n, "modality") == "CT"]
    pets = [n for n in loaded.volumes if _attr(n, "modality") == "PT"]
    assert len(cts) == 2 and len(pets) == 1
    for node in cts:
        display = node.GetDisplayNode()
        assert (display.GetWindow(), display.GetLevel()) == (350.0, 40.0)
        assert display.GetNumberOfWindowLevelPresets() == len(CT_WINDOW_PRESETS) == 2
        assert (display.GetWindowPreset(1), display.GetLevelPreset(1)) == (1400.0, -700.0)
    assert pets[0].GetDisplayNode().GetColorNodeID() == PET_COLOR_NODE_ID
    background, foreground, opacity = pet_ct_layers(loaded, builder.scene)
    assert foreground is pets[0] or foreground.GetID() == pets[0].GetID()
    assert background.GetID() in {n.GetID() for n in cts} and 0 < opacity < 1
    uids = pets[0].GetAttribute("DICOM.instanceUIDs").split()
    assert len(uids) == pets[0].GetImageData().GetDimensions()[2] == 30


def test_pet_and_ct_lesions_meet_in_patient_space(sample_root: Path, builder: SceneBuilder) -> None:
    """PET boxes are in PET pixels (4.07 mm); mapped through each series' geometry the lesions coincide."""
    _, loaded = _load(sample_root, "Lung_Dx-A0001", builder)
    centres = {}
    for node in _rois(loaded, "lesion"):
        volume = builder.scene.GetNodeByID(_attr(node, "volume_node_id"))
        centres.setdefault(_attr(volume, "modality"), []).append(np.array(node.GetCenterWorld()))
    pet = centres["PT"][0]
    nearest_ct = min(centres["CT"], key=lambda c: np.linalg.norm(c - pet))
    assert np.linalg.norm(nearest_ct - pet) < 5.0
    lesion = sample.plan()[0].lesions[0]
    expected_ras = np.array([-lesion.center[0], -lesion.center[1], lesion.center[2]])
    assert np.linalg.norm(pet - expected_ras) < 5.0


def test_clamped_box_stays_inside_the_image(sample_root: Path, builder: SceneBuilder) -> None:
    _, loaded = _load(sample_root, "Lung_Dx-A0001", builder)
    clamped = [n for n in _rois(loaded, "slice_box") if _attr(n, "clamped") == "1"]
    assert len(clamped) == 1
    volume = builder.scene.GetNodeByID(_attr(clamped[0], "volume_node_id"))
    shape, ijk_to_ras = SceneBuilder.volume_geometry(volume)
    xmin, _, _, _, _ = box_from_roi_corners(ijk_to_ras, _roi_corners(clamped[0]))
    assert xmin == pytest.approx(0.0, abs=1e-3)


def test_cancelling_leaves_the_scene_unchanged(sample_root: Path, builder: SceneBuilder) -> None:
    before = builder.scene.GetNumberOfNodes()
    collection = LungPetCtDxCollection(sample_root)
    case = collection.find_case("Lung_Dx-A0001")
    with pytest.raises(LoadCancelled):
        collection.load_case(case, builder, progress=lambda message, fraction: fraction > 0.85)
    assert builder.scene.GetNumberOfNodes() == before


# ---------------------------------------------------------------------- bad XML
def test_malformed_and_external_entity_xml_are_named_and_skipped(sample_root: Path, tmp_path: Path,
                                                                  builder: SceneBuilder) -> None:
    root = tmp_path / "copy"
    shutil.copytree(sample_root, root)
    folder = root / "Annotation" / "G0003"
    victim = sorted(folder.glob("*.xml"))[0]
    evil = folder / "1.2.826.0.1.3680043.10.9999.1.xml"
    evil.write_bytes(b'<!DOCTYPE annotation [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                     b"<annotation><object><name>&x;</name></object></annotation>")
    broken = folder / "1.2.826.0.1.3680043.10.9999.2.xml"
    broken.write_bytes(b"<annotation verified='no'><object><name>G</name><bndbox><xmin>1")
    _, loaded = _load(root, "Lung_Dx-G0003", builder)
    unreadable = [f for f in loaded.findings if f.check == "lung.xml_unreadable"]
    assert sorted(Path(f.path).name for f in unreadable) == sorted([evil.name, broken.name])
    assert all(Path(f.path).name in f.message for f in unreadable)
    assert "entities" in next(f.message for f in unreadable if evil.name in f.path)
    truth = TRUTH["Lung_Dx-G0003"]
    assert loaded.metrics["lesions"] == truth.tumours  # one tumour boxed on CT, CT and PET counts once
    assert loaded.metrics["series_lesions"] == truth.lesion_rois
    assert len(_rois(loaded, "slice_box")) == truth.placed_boxes
    assert parse_voc(victim).objects  # untouched files still load


def test_xml_files_of_images_not_on_disk_are_one_finding_per_folder(sample_root: Path, shared_samples: Path,
                                                                    tmp_path: Path, builder: SceneBuilder) -> None:
    """A series not downloaded leaves dozens of VOC files without their image: summarised, not one finding each."""
    root = tmp_path / "copy"
    shutil.copytree(sample_root, root)
    folder = root / "Annotation" / "G0003"
    real = sorted((shared_samples / "lung_pet_ct_dx_voc").rglob("*.xml"))  # real files whose series is absent
    if not real:
        require_shared_data(f"no real VOC files in {shared_samples}")
    orphans = [shutil.copyfile(path, folder / path.name) for path in real[:7]]
    _, loaded = _load(root, "Lung_Dx-G0003", builder)
    unmatched = [f for f in loaded.findings if f.check == "lung.xml_unmatched"]
    assert len(unmatched) == 1, [f.message for f in unmatched]
    assert unmatched[0].value == float(len(orphans)) and f"{len(orphans)} XML file(s)" in unmatched[0].message
    assert sum(Path(orphan).name in unmatched[0].message for orphan in orphans) == min(5, len(orphans))
    assert loaded.metrics["lesions"] == TRUTH["Lung_Dx-G0003"].tumours  # the case's own boxes are unaffected


# ---------------------------------------------------------------------- geometry on real DICOM facts
def test_real_sample_boxes_land_on_their_real_slices(shared_samples: Path, tmp_path: Path,
                                                     builder: SceneBuilder) -> None:
    folder = shared_samples / "lung_pet_ct_dx_voc"
    if not (folder / "SOURCES.txt").is_file():
        require_shared_data("real VOC samples absent")
    facts = {fact.sop_instance_uid: fact for fact in sample.parse_sources_txt(folder / "SOURCES.txt")}
    root = sample.generate_real_geometry_case(tmp_path, folder)
    _, loaded = _load(root, "Lung_Dx-A0002", builder)
    boxes = _rois(loaded, "slice_box")
    assert len(boxes) == len(facts) == 10
    for node in boxes:
        fact = facts[_attr(node, "sop_instance_uid")]
        box = parse_voc(root / "Annotation" / "A0002" / f"{fact.sop_instance_uid}.xml").objects[0].box
        expected = sample.expected_real_geometry_corners(fact, box, slice_spacing=8.0)
        got = _roi_corners(node)
        assert _same_corners(got, expected, 1e-3), node.GetName()
        # Done-when: RAS bounds equal the box corners (pixel centres) to half a pixel.
        bounds = [0.0] * 6
        node.GetRASBounds(bounds)
        half = fact.pixel_spacing[0] / 2 + 1e-3
        corner_x = sorted(-(fact.position[0] + np.array([box[0], box[2]]) * fact.pixel_spacing[1]))
        corner_y = sorted(-(fact.position[1] + np.array([box[1], box[3]]) * fact.pixel_spacing[0]))
        assert np.allclose(bounds[0:2], corner_x, atol=half) and np.allclose(bounds[2:4], corner_y, atol=half)
        assert bounds[4] < fact.position[2] < bounds[5]
    # Series 2 has boxes on instances 11, 15 and 18 in these samples, series 3 on 9, 11 and 13-17:
    # gaps of up to two slices are bridged, so series 2 gives two lesions and series 3 one.
    per_series = Counter(_attr(node, "series_instance_uid")[-5:] for node in _rois(loaded, "lesion"))
    assert per_series == {"62919": 2, "10983": 1}


def _rotation(degrees_x: float, degrees_y: float) -> np.ndarray:
    a, b = np.radians(degrees_x), np.radians(degrees_y)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return ry @ rx


def test_oblique_series_boxes_follow_the_tilted_planes(tmp_path: Path, builder: SceneBuilder) -> None:
    rotation = _rotation(12.0, 7.0)
    row_dir, col_dir, normal = rotation[:, 0], rotation[:, 1], rotation[:, 2]
    origin = np.array([-40.0, -30.0, 100.0])
    pixel_spacing = (0.8, 0.7)  # row spacing differs from column spacing, to catch a swap
    step = 2.5
    positions = [origin + k * step * normal for k in range(10)]
    patient_id = "Lung_Dx-E0009"
    spec = SeriesSpec(
        patient_id=patient_id, study_instance_uid=uid_from_seed("oblique", "study"),
        series_instance_uid=uid_from_seed("oblique", "series"), frame_of_reference_uid=uid_from_seed("oblique", "f"),
        modality="CT", series_number=2, series_description="oblique", stored_values=np.zeros((10, 48, 64), np.uint16),
        positions=[tuple(p) for p in positions][::-1], orientation=tuple(row_dir) + tuple(col_dir),
        pixel_spacing=pixel_spacing, slice_thickness=step, rescale_intercept=-1024.0,
    )
    collection_folder = tmp_path / "manifest-1" / "Lung-PET-CT-Dx"
    written = write_series(spec, nbia_series_folder(collection_folder, spec), "nbia")
    annotation = tmp_path / "Annotation" / "E0009"
    annotation.mkdir(parents=True)
    boxes = {3: (10, 12, 30, 25), 4: (9, 11, 31, 27), 5: (11, 13, 29, 24)}
    for k, box in boxes.items():
        sop = written.sop_instance_uids[9 - k]  # files are written top-down
        text = format_voc(VocAnnotation(None, 512, 512, 1, [VocObject("E", *box)]))
        (annotation / f"{sop}.xml").write_text(text)
    _, loaded = _load(tmp_path, patient_id, builder)
    slice_boxes = _rois(loaded, "slice_box")
    assert len(slice_boxes) == 3
    for node in slice_boxes:
        k = int(_attr(node, "slice_index"))
        box = boxes[k]
        expected = []
        for x in (box[0] - 0.5, box[2] + 0.5):
            for y in (box[1] - 0.5, box[3] + 0.5):
                for dz in (-0.5, 0.5):
                    lps = positions[k] + x * pixel_spacing[1] * row_dir + y * pixel_spacing[0] * col_dir \
                        + dz * step * normal
                    expected.append([-lps[0], -lps[1], lps[2]])
        assert _same_corners(_roi_corners(node), np.array(expected), 1e-3), k
    lesions = _rois(loaded, "lesion")
    assert len(lesions) == 1
    union = (9, 11, 31, 27)
    expected = []
    for x in (union[0] - 0.5, union[2] + 0.5):
        for y in (union[1] - 0.5, union[3] + 0.5):
            for k in (2.5, 5.5):
                lps = origin + x * pixel_spacing[1] * row_dir + y * pixel_spacing[0] * col_dir + k * step * normal
                expected.append([-lps[0], -lps[1], lps[2]])
    assert _same_corners(_roi_corners(lesions[0]), np.array(expected), 1e-3)


# ---------------------------------------------------------------------- pure helpers
def _box(k: int, box, series: str = "s") -> SliceBox:
    return SliceBox(Path(f"{k}.xml"), 0, VocObject("A", *box), f"sop{k}", series, k, tuple(box), tuple(box))


def test_grouping_bridges_short_gaps_and_splits_far_or_disjoint_boxes() -> None:
    boxes = [_box(1, (10, 10, 20, 20)), _box(2, (11, 11, 21, 21)), _box(4, (12, 12, 22, 22)),  # gap at 3
             _box(8, (12, 12, 22, 22)),  # 4 slices later: a new lesion
             _box(2, (60, 60, 70, 70)),  # same slice, elsewhere: a new lesion
             _box(3, (71, 71, 80, 80))]  # next slice but not overlapping the previous box: new lesion
    lesions = group_lesions(boxes)
    slices = sorted(lesion.slices for lesion in lesions)
    assert slices == [[1, 2, 4], [2], [3], [8]]
    gapped = next(lesion for lesion in lesions if lesion.slices == [1, 2, 4])
    assert gapped.missing_slices == [3] and gapped.union_box == (10, 10, 22, 22)
    assert isinstance(gapped, Lesion)


def test_roi_geometry_inverts() -> None:
    rotation = _rotation(20.0, -9.0)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag([0.7, 0.8, 3.0])
    matrix[:3, 3] = (10.0, -20.0, 30.0)
    center, size, axes = box_roi_geometry(matrix, (5, 6, 15, 26), 4, 4)
    corners = np.array([center + axes @ (np.array([sx, sy, sz]) * size)
                        for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])
    assert np.allclose(box_from_roi_corners(matrix, corners), (5, 6, 15, 26, 4))
    assert np.allclose(size, (11 * 0.7, 21 * 0.8, 3.0))


# ---------------------------------------------------------------------- export
def test_voc_export_round_trips_and_follows_edits(sample_root: Path, tmp_path: Path, builder: SceneBuilder) -> None:
    collection, loaded = _load(sample_root, "Lung_Dx-A0001", builder)
    out = tmp_path / "Annotation"
    written = collection.export_case(loaded, builder.scene, voc_root=out)["voc"]
    assert all(path.parent == out / "A0001" for path in written)
    source = sample_root / "Annotation" / "A0001"
    for path in written:
        original = parse_voc(source / path.name)
        exported = parse_voc(path)
        assert path.read_text().startswith('<annotation verified="no">')
        expected = []
        for voc_object in original.objects:
            clamped = (max(0, voc_object.xmin), voc_object.ymin, voc_object.xmax, voc_object.ymax)
            if (voc_object.name, clamped) not in [(o.name, o.box) for o in expected]:
                expected.append(VocObject(voc_object.name, *clamped, difficult=voc_object.difficult))
        assert sorted(exported.objects, key=lambda o: o.box) == sorted(expected, key=lambda o: o.box)
        assert (exported.width, exported.height) in {(128, 128), (96, 96)}
    assert len(written) == len({p.name for p in source.glob("*.xml")})
    # Move one box by exactly one column and one slice; the export follows it to the next image.
    node = _rois(loaded, "slice_box")[0]
    volume = builder.scene.GetNodeByID(_attr(node, "volume_node_id"))
    _, ijk_to_ras = SceneBuilder.volume_geometry(volume)
    transform = vtk.vtkMatrix4x4()
    transform.DeepCopy(node.GetObjectToNodeMatrix())
    shift = ijk_to_ras[:3, 0] + ijk_to_ras[:3, 2]
    for axis in range(3):
        transform.SetElement(axis, 3, transform.GetElement(axis, 3) + shift[axis])
    node.SetAndObserveObjectToNodeMatrix(transform)
    moved = [b for b in corrected_boxes(builder.scene, "Lung_Dx-A0001") if b.node_name == node.GetName()][0]
    old = parse_voc(source / f"{_attr(node, 'sop_instance_uid')}.xml").objects[int(_attr(node, "object_index"))]
    uids = volume.GetAttribute("DICOM.instanceUIDs").split()
    assert moved.sop_instance_uid == uids[int(_attr(node, "slice_index")) + 1]
    assert (moved.xmin, moved.ymin, moved.xmax, moved.ymax) == (old.xmin + 1, old.ymin, old.xmax + 1, old.ymax)


def test_sr_export_parses_back_with_boxes_and_references(sample_root: Path, tmp_path: Path,
                                                         builder: SceneBuilder) -> None:
    collection, loaded = _load(sample_root, "Lung_Dx-B0002", builder)
    boxes = corrected_boxes(builder.scene, "Lung_Dx-B0002")
    paths = collection.export_case(loaded, builder.scene, sr_folder=tmp_path / "sr")["sr"]
    assert len(paths) == 3  # one SR per annotated series: two CT, one PET
    headers = collection.source_headers(loaded.case)
    for path in paths:
        dataset = pydicom.dcmread(str(path))
        sr = hd.sr.Comprehensive3DSR.from_dataset(dataset)
        assert sr.SeriesDescription == "Tumor bounding box"
        groups = sr.content.get_planar_roi_measurement_groups()
        referenced = [g.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID for g in groups]
        series_uid = headers[referenced[0]].series_instance_uid
        expected = sorted((b.sop_instance_uid, (b.xmin, b.ymin, b.xmax, b.ymax))
                          for b in boxes if b.series_instance_uid == series_uid)
        got = []
        for group, sop in zip(groups, referenced):
            data = group.roi.value
            assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE and np.array_equal(data[0], data[-1])
            got.append((sop, (data[:, 0].min(), data[:, 1].min(), data[:, 0].max(), data[:, 1].max())))
            assert group.finding_type.value == "74364000"  # small cell carcinoma, from the letter B
            assert headers[sop].series_instance_uid == series_uid
        assert sorted(got) == expected
        evidence = {item.ReferencedSOPInstanceUID
                    for study in dataset.CurrentRequestedProcedureEvidenceSequence
                    for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
        assert evidence == set(referenced)
        assert dataset.StudyInstanceUID == headers[referenced[0]].study_instance_uid
        assert dataset.PatientID == "Lung_Dx-B0002"


def test_sr_export_refuses_unknown_source_images(tmp_path: Path) -> None:
    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import CorrectedBox
    from SarcomaLungLiverBrowserLib.errors import DataError

    box = CorrectedBox("1.2.3", "1.2", 0, "A", False, False, 1, 1, 2, 2, 10, 10, "node")
    with pytest.raises(DataError, match="1.2.3"):
        export_sr([box], {}, tmp_path, "Lung_Dx-A0001")


def test_saving_corrections_does_not_scan_the_source_folders(sample_root: Path, tmp_path: Path,
                                                             builder: SceneBuilder,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """VOC XML and SR are written from the scene's boxes and the headers recorded when the case was read."""
    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import series as lung_series
    from SarcomaLungLiverBrowserLib.formats import dicom_series

    collection, loaded = _load(sample_root, "Lung_Dx-B0002", builder)

    def refuse(*args, **kwargs):
        raise AssertionError(f"source folder scanned again: {args}")

    monkeypatch.setattr(dicom_series, "scan_folder", refuse)
    monkeypatch.setattr(lung_series, "scan_folder", refuse)
    written = collection.save_corrections(loaded, builder.scene, tmp_path / "out")
    assert sorted({path.suffix for path in written}) == [".dcm", ".xml"]
    assert len([path for path in written if path.suffix == ".dcm"]) == 3


def test_a_box_whose_instance_uid_is_in_two_series_is_placed_on_neither(sample_root: Path, tmp_path: Path,
                                                                        builder: SceneBuilder) -> None:
    """One SOPInstanceUID in a CT and a PET series: the box would land on whichever came first; it is refused."""
    import pydicom

    root = tmp_path / "copy"
    shutil.copytree(sample_root, root)
    xml = sorted((root / "Annotation" / "A0001").glob("*.xml"))[0]
    sop = xml.name[:-4]
    pet_file = next(path for path in sorted(root.rglob("*.dcm"))
                    if "A0001" in str(path) and pydicom.dcmread(str(path), stop_before_pixels=True).Modality == "PT")
    dataset = pydicom.dcmread(str(pet_file))
    dataset.SOPInstanceUID = sop
    dataset.file_meta.MediaStorageSOPInstanceUID = sop
    dataset.save_as(str(pet_file))
    _, loaded = _load(root, "Lung_Dx-A0001", builder)
    refused = [f for f in loaded.findings if f.check == "lung.duplicate_sop_instance"]
    assert len(refused) == 1 and xml.name in refused[0].message and refused[0].severity == "error"
    assert all(roi.attributes.get("sop_instance_uid") != sop for roi in loaded.data.rois)
