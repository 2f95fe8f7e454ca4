"""Saving a reviewer's corrections in each collection's own format, never over the sources.

Each test loads a generated sample case, edits its annotation in the scene as
a reviewer would (Segment Editor-style array edits, a dragged ROI), saves the
corrections and reads the written files back with the project's own readers:
the edit must be in them exactly, everything untouched must be unchanged, and
every source file must be byte-identical to before.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
from pathlib import Path
from typing import Dict, List

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import slicer

from SarcomaLungLiverBrowserLib.browser import CollectionBrowser
from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import corrected_boxes
from SarcomaLungLiverBrowserLib.formats.dicom_seg import decode_seg
from SarcomaLungLiverBrowserLib.formats.dicom_series import read_series, scan_folder
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats.nifti import read_nifti
from SarcomaLungLiverBrowserLib.formats.output_paths import safe_output_path, sanitise_file_name, unique_name
from SarcomaLungLiverBrowserLib.registry import LoadedCase
from SarcomaLungLiverBrowserLib.samples import crlm, hermessi, ispy1, lung_pet_ct_dx, soft_tissue_sarcoma
from SarcomaLungLiverBrowserLib.scene.builder import ATTRIBUTE_PREFIX, SceneBuilder
from SarcomaLungLiverBrowserLib.formats.voc_xml import parse_voc

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ---------------------------------------------------------------------------------------------- helpers
def _hashes(root: Path) -> Dict[str, str]:
    """SHA-256 of every file below ``root`` (the sources must not change)."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def _open(headless, root: Path) -> CollectionBrowser:
    browser = CollectionBrowser(headless.scene)
    browser.open(root)
    return browser


def _segment_array(node, segment_id: str, volume_node) -> np.ndarray:
    """A segment as a [k, j, i] array on a volume's grid, as the Segment Editor's numpy helpers give it."""
    return slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume_node).astype(bool)


def _set_segment(node, segment_id: str, mask: np.ndarray, volume_node) -> None:
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), node, segment_id, volume_node)


def _reference_node(node):
    return node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole())


def _erase_half_and_add_a_voxel(mask: np.ndarray) -> np.ndarray:
    """An edit with a known result: the lower half (in k) of a segment erased, one far voxel added."""
    edited = mask.copy()
    ks = np.flatnonzero(edited.any(axis=(1, 2)))
    edited[: int(ks[len(ks) // 2])] = False
    edited[-1, 0, 0] = True
    assert edited.any() and not np.array_equal(edited, mask)
    return edited


@pytest.fixture(scope="module")
def crlm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return crlm.generate(tmp_path_factory.mktemp("crlm"))


@pytest.fixture(scope="module")
def lung_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lung_pet_ct_dx.generate(tmp_path_factory.mktemp("lung"))


@pytest.fixture(scope="module")
def ispy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ispy1.generate(tmp_path_factory.mktemp("ispy"))


@pytest.fixture(scope="module")
def sts_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return soft_tissue_sarcoma.generate(tmp_path_factory.mktemp("sts"))


# ---------------------------------------------------------------------------------------------- names
@pytest.mark.parametrize("text, expected", [
    ("CRLM-CT-1001 segmentation", "CRLM-CT-1001 segmentation"),
    ("../../etc/passwd", "_.._etc_passwd"),
    ("..", "unnamed"),
    ("a\\b:c*d?", "a_b_c_d_"),
    ("CON", "_CON"),
    ("nul.dcm", "_nul.dcm"),
    ("  .hidden. ", "hidden"),
    ("tab\there\x00", "tab_here_"),
])
def test_sanitised_names_are_one_harmless_component(text: str, expected: str) -> None:
    assert sanitise_file_name(text) == expected


def test_safe_output_path_refuses_names_that_leave_the_folder(tmp_path: Path) -> None:
    assert safe_output_path(tmp_path, "1.2.3.xml", ".xml") == tmp_path / "1.2.3.xml"
    for name in ("../x.xml", "..", ".", "", "a/b.xml", "a\\b.xml", "/abs.xml", "x\x00.xml"):
        with pytest.raises(DataError, match="must not leave"):
            safe_output_path(tmp_path, name)
    with pytest.raises(DataError, match="must end in .xml"):
        safe_output_path(tmp_path, "1.2.3.dcm", ".xml")
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    outside.mkdir()
    (tmp_path / "link.xml").symlink_to(outside / "target.xml")
    with pytest.raises(DataError, match="resolves outside"):
        safe_output_path(tmp_path, "link.xml")
    assert unique_name("Seg", ["seg.dcm", "Seg_2.dcm"], ".dcm") == "Seg_3.dcm"


# ---------------------------------------------------------------------------------------------- CRLM
def test_crlm_edited_segments_are_saved_as_dicom_seg(headless, crlm_root: Path, tmp_path: Path) -> None:
    before = _hashes(crlm_root)
    browser = _open(headless, crlm_root)
    loaded = browser.load_case("CRLM-CT-1001")
    node, ct_node = loaded.segmentations[0], loaded.volumes[0]
    segmentation = node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
    assert ids == ["Liver", "Liver_Remnant", "Hepatic", "Portal", "Tumor_1", "Tumor_2"]
    originals = {segment_id: _segment_array(node, segment_id, ct_node) for segment_id in ids}
    # The reviewer erases half of Tumor_1 (adding a stray voxel) and renames Tumor_2.
    edited = _erase_half_and_add_a_voxel(originals["Tumor_1"])
    _set_segment(node, "Tumor_1", edited, ct_node)
    segmentation.GetSegment("Tumor_2").SetName("Tumor_2 (extrahepatic)")

    out = tmp_path / "corrections"
    written = browser.save_corrections("crlm-ct-1001", out)
    assert written == [out.resolve() / "CRLM-CT-1001" / "CRLM-CT-1001 segmentation.dcm"]

    ct = read_series(scan_folder(Path(node.GetAttribute(ATTRIBUTE_PREFIX + "crlm.ct_folder"))).instances)
    reloaded = decode_seg(written[0], ct)
    source = decode_seg(Path(loaded.metrics["seg_path"]), ct)
    assert reloaded.findings == []
    assert [s.label for s in reloaded.segments] == ["Liver", "Liver_Remnant", "Hepatic", "Portal", "Tumor_1",
                                                    "Tumor_2 (extrahepatic)"]
    assert np.array_equal(reloaded.segments[4].mask, edited)
    for index, segment_id in enumerate(ids):
        if segment_id != "Tumor_1":
            assert np.array_equal(reloaded.segments[index].mask, source.segments[index].mask), segment_id
            assert np.array_equal(reloaded.segments[index].mask, originals[segment_id]), segment_id
        assert (reloaded.segments[index].category, reloaded.segments[index].type) == \
            (source.segments[index].category, source.segments[index].type)
    dataset = pydicom.dcmread(str(written[0]), stop_before_pixels=True)
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.series_instance_uid
    assert dataset.SeriesDescription.endswith("(corrected)")
    assert _hashes(crlm_root) == before


def test_crlm_names_from_the_data_never_leave_the_output_folder(headless, crlm_root: Path, tmp_path: Path) -> None:
    browser = _open(headless, crlm_root)
    loaded = browser.load_case("CRLM-CT-1002")
    loaded.segmentations[0].SetName("../../escaped/segmentation")
    out = tmp_path / "out"
    written = browser.save_corrections("CRLM-CT-1002", out)
    assert [path.relative_to(out.resolve()).parts for path in written] == \
        [("CRLM-CT-1002", "_.._escaped_segmentation.dcm")]
    assert not (tmp_path / "escaped").exists()
    # A case ID is an identifier the layout needs as it is: one that would leave the folder is refused.
    collection = browser.collection
    renamed = LoadedCase(case=dataclasses.replace(loaded.case, case_id="../CRLM-CT-1002"),
                         segmentations=loaded.segmentations)
    with pytest.raises(DataError, match="must not leave"):
        collection.save_corrections(renamed, headless.scene, tmp_path / "other")
    # A case folder in the output that is a link to somewhere else is refused too.
    linked = tmp_path / "linked"
    linked.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (linked / "CRLM-CT-1002").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DataError, match="resolves outside"):
        browser.save_corrections("CRLM-CT-1002", linked)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_output_folder_inside_the_collection_is_refused(headless, crlm_root: Path) -> None:
    before = _hashes(crlm_root)
    browser = _open(headless, crlm_root)
    browser.load_case("CRLM-CT-1001")
    for folder in (crlm_root, crlm_root / "corrections", next(crlm_root.rglob("CRLM-CT-1001"))):
        with pytest.raises(DataError, match="inside the Colorectal-Liver-Metastases folder"):
            browser.save_corrections("CRLM-CT-1001", folder)
    assert _hashes(crlm_root) == before
    with pytest.raises(DataError, match="not loaded"):
        browser.save_corrections("CRLM-CT-1003", crlm_root.parent / "out")


# ---------------------------------------------------------------------------------------------- Lung-PET-CT-Dx
def _slice_rois(loaded) -> List:
    return [node for node in loaded.rois if node.GetAttribute(ATTRIBUTE_PREFIX + "role") == "slice_box"]


def _voc_boxes(folder: Path) -> Dict[str, List]:
    return {path.name[:-4]: sorted((o.name, o.box) for o in parse_voc(path).objects)
            for path in sorted(folder.glob("*.xml"))}


def test_lung_moved_box_is_saved_as_voc_and_sr(headless, lung_root: Path, tmp_path: Path) -> None:
    before = _hashes(lung_root)
    browser = _open(headless, lung_root)
    case_id = "Lung_Dx-G0003"
    loaded = browser.load_case(case_id)
    scene = headless.scene
    as_loaded = corrected_boxes(scene, case_id)
    # Move one box by exactly one pixel along its image's columns, as a drag would.
    node = _slice_rois(loaded)[0]
    volume = scene.GetNodeByID(node.GetAttribute(ATTRIBUTE_PREFIX + "volume_node_id"))
    _, ijk_to_ras = SceneBuilder.volume_geometry(volume)
    center = np.array(node.GetCenter())
    node.SetCenter(*(center + ijk_to_ras[:3, 0]))
    moved_sop = node.GetAttribute(ATTRIBUTE_PREFIX + "sop_instance_uid")
    source_xml = lung_root / "Annotation" / "G0003" / f"{moved_sop}.xml"
    source_box = parse_voc(source_xml).objects[int(node.GetAttribute(ATTRIBUTE_PREFIX + "object_index"))]

    out = tmp_path / "corrections"
    written = browser.save_corrections(case_id, out)
    voc_folder = out.resolve() / "Annotation" / "G0003"
    voc = [path for path in written if path.suffix == ".xml"]
    sr = [path for path in written if path.suffix == ".dcm"]
    assert {path.parent for path in voc} == {voc_folder}
    assert {path.parent for path in sr} == {out.resolve() / "SR"}
    assert len(sr) == len({box.series_instance_uid for box in as_loaded})

    # The moved box is one column further in its own image's file; every other box is as loaded.
    expected: Dict[str, List] = {}
    for box in as_loaded:
        shift = 1 if box.node_name == node.GetName() else 0
        expected.setdefault(box.sop_instance_uid, []).append(
            (box.name, (box.xmin + shift, box.ymin, box.xmax + shift, box.ymax)))
    assert _voc_boxes(voc_folder) == {sop: sorted(boxes) for sop, boxes in expected.items()}
    moved = [b for b in _voc_boxes(voc_folder)[moved_sop]]
    assert ("G", (source_box.xmin + 1, source_box.ymin, source_box.xmax + 1, source_box.ymax)) in moved

    # The SR of the moved box's series holds the moved polyline on the same image.
    series_uid = node.GetAttribute(ATTRIBUTE_PREFIX + "series_instance_uid")
    polylines = {}
    for path in sr:
        report = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(str(path)))
        for group in report.content.get_planar_roi_measurement_groups():
            sop = group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
            data = group.roi.value
            polylines.setdefault(sop, []).append((data[:, 0].min(), data[:, 1].min(), data[:, 0].max(),
                                                  data[:, 1].max()))
    assert (source_box.xmin + 1, source_box.ymin, source_box.xmax + 1, source_box.ymax) in polylines[moved_sop]
    assert sum(len(boxes) for boxes in polylines.values()) == len(as_loaded)
    assert any(box.series_instance_uid == series_uid for box in as_loaded)

    # Deleting the only box of an image and saving again removes that image's earlier correction.
    alone = [roi for roi in _slice_rois(loaded)
             if sum(b.sop_instance_uid == roi.GetAttribute(ATTRIBUTE_PREFIX + "sop_instance_uid")
                    for b in as_loaded) == 1 and roi is not node][0]
    deleted_sop = alone.GetAttribute(ATTRIBUTE_PREFIX + "sop_instance_uid")
    assert (voc_folder / f"{deleted_sop}.xml").is_file()
    scene.RemoveNode(alone)
    browser.save_corrections(case_id, out)
    assert not (voc_folder / f"{deleted_sop}.xml").exists()
    assert set(_voc_boxes(voc_folder)) == set(expected) - {deleted_sop}
    assert _hashes(lung_root) == before


def test_lung_corrections_never_replace_source_annotations(headless, lung_root: Path) -> None:
    """Opened at the NBIA collection folder with the Annotation tree beside it named: writing there is refused."""
    before = _hashes(lung_root)
    collection_folder = lung_root / lung_pet_ct_dx.MANIFEST / "Lung-PET-CT-Dx"
    browser = _open(headless, collection_folder)
    browser.collection.annotation_roots = [lung_root / "Annotation"]  # as the user names it
    browser.cases(refresh=True)
    browser.load_case("Lung_Dx-G0003")
    with pytest.raises(DataError, match="source files of Lung_Dx-G0003"):
        browser.save_corrections("Lung_Dx-G0003", lung_root)  # would write lung_root/Annotation/G0003/*.xml
    with pytest.raises(DataError, match="holds source files of Lung_Dx-G0003"):
        browser.save_corrections("Lung_Dx-G0003", lung_root / "Annotation" / "G0003")
    assert _hashes(lung_root) == before


def test_lung_series_whose_sr_names_would_clash_are_refused_before_writing(headless, lung_root: Path,
                                                                          tmp_path: Path) -> None:
    browser = _open(headless, lung_root)
    loaded = browser.load_case("Lung_Dx-G0003")
    headers = loaded.data.provenance["source_headers"]  # recorded when read: saving does not scan again
    headers.update({sop: dataclasses.replace(header, series_number=7)
                    for sop, header in headers.items()})  # every series numbered 7
    with pytest.raises(DataError, match="share SeriesNumber 7"):
        browser.save_corrections("Lung_Dx-G0003", tmp_path / "out")
    assert [path for path in (tmp_path / "out").rglob("*") if path.is_file()] == []


# ---------------------------------------------------------------------------------------------- ISPY1
def test_ispy_edited_stv_is_saved_as_nifti_with_the_source_conventions(headless, ispy_root: Path,
                                                                        tmp_path: Path) -> None:
    before = _hashes(ispy_root)
    browser = _open(headless, ispy_root)
    loaded = browser.load_case("ISPY1_1002")
    stv_node = next(n for n in loaded.segmentations if n.GetSegmentation().GetSegment("STV_manual") is not None)
    reference = _reference_node(stv_node)
    original = _segment_array(stv_node, "STV_manual", reference)
    edited = _erase_half_and_add_a_voxel(original)
    _set_segment(stv_node, "STV_manual", edited, reference)
    stv_node.GetSegmentation().GetSegment("STV_manual").SetName("STV manual (corrected)")  # IDs identify masks

    out = tmp_path / "corrections"
    written = browser.save_corrections("ISPY1_1002", out)
    layout = sorted(path.relative_to(out.resolve()).as_posix() for path in written)
    assert layout == ["masks_ftv/ISPY1_1002.nii.gz", "masks_stv_manual/ISPY1_1002.nii.gz",
                      "masks_stv_resunet/ISPY1_1002.nii.gz"]
    nifti_root = ispy_root / "NIfTI-Files"

    manual_out = out / "masks_stv_manual" / "ISPY1_1002.nii.gz"
    manual_source = nifti_root / "masks_stv_manual" / "ISPY1_1002.nii.gz"
    reread, source = read_nifti(manual_out), read_nifti(manual_source)
    assert np.array_equal(reread.voxels != 0, edited)
    assert set(np.unique(reread.voxels)) == {0.0, 1.0} and reread.voxels.dtype == np.float32
    assert np.array_equal(reread.ijk_to_ras, source.ijk_to_ras)
    assert (reread.qform_code, reread.sform_code) == (source.qform_code, source.sform_code) == (1, 0)
    # The header block is the source's, byte for byte (matrices, codes, pixdim, units, type, scaling).
    assert gzip.open(manual_out).read(348) == gzip.open(manual_source).read(348)

    # Untouched masks come back byte-identical once decompressed: FTV uint8 0/255 with scl_slope 1/255, STV float32.
    for folder in ("masks_ftv", "masks_stv_resunet"):
        assert gzip.open(out / folder / "ISPY1_1002.nii.gz").read() == \
            gzip.open(nifti_root / folder / "ISPY1_1002.nii.gz").read(), folder
    ftv = nib.load(str(out / "masks_ftv" / "ISPY1_1002.nii.gz"))
    assert ftv.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(ftv.dataobj.get_unscaled()))) == {0, 255}
    assert ftv.dataobj.slope == pytest.approx(1 / 255)
    assert _hashes(ispy_root) == before


def test_write_mask_like_keeps_an_uncompressed_scaled_big_endian_source_convention(tmp_path: Path) -> None:
    from SarcomaLungLiverBrowserLib.formats.nifti import write_mask_like

    affine = np.array([[0, 0, 2.0, 10], [-0.5, 0, 0, 20], [0, 0.5, 0, -30], [0, 0, 0, 1]])
    stored = np.zeros((6, 5, 4), dtype=">i2")
    stored[1:3, 1:3, 1:3] = 510
    image = nib.Nifti1Image(stored, affine, nib.Nifti1Header(endianness=">"))
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=2)
    image.set_data_dtype(">i2")
    raw = bytearray(image.to_bytes())
    raw[112:120] = np.array([1 / 510, 0.0], dtype=">f4").tobytes()  # scl_slope, scl_inter as stored
    source = tmp_path / "mask.nii"
    source.write_bytes(bytes(raw))
    assert raw[:4] == (348).to_bytes(4, "big")  # a big-endian file
    mask = np.zeros((4, 5, 6), dtype=bool)  # [k, j, i]
    mask[0, 4, 5] = mask[3, 0, 0] = True
    target = write_mask_like(source, mask, tmp_path / "out" / "mask.nii")
    assert target.read_bytes()[:348] == source.read_bytes()[:348]
    reread = read_nifti(target)
    assert np.array_equal(reread.voxels != 0, mask) and set(np.unique(reread.voxels)) == {0.0, 1.0}
    assert set(np.unique(np.asarray(nib.load(str(target)).dataobj.get_unscaled()))) == {0, 510}
    with pytest.raises(DataError, match="not the grid"):
        write_mask_like(source, mask[:3], tmp_path / "out" / "bad.nii")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mask.nii"]  # no partial file left


# ---------------------------------------------------------------------------------------------- Soft-tissue-Sarcoma
def test_sts_edited_gtv_is_saved_as_dicom_seg_on_its_image(headless, sts_root: Path, tmp_path: Path) -> None:
    before = _hashes(sts_root)
    browser = _open(headless, sts_root)
    loaded = browser.load_case("STS_001")
    node = next(n for n in loaded.segmentations if n.GetSegmentation().GetSegment("GTV_Mass") is not None)
    reference = _reference_node(node)
    segmentation = node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
    originals = {segment_id: _segment_array(node, segment_id, reference) for segment_id in ids}
    edited = _erase_half_and_add_a_voxel(originals["GTV_Mass"])
    _set_segment(node, "GTV_Mass", edited, reference)
    others = {n.GetID(): {s: _segment_array(n, s, _reference_node(n))
                          for s in [n.GetSegmentation().GetNthSegmentID(i)
                                    for i in range(n.GetSegmentation().GetNumberOfSegments())]}
              for n in loaded.segmentations if n is not node}

    out = tmp_path / "corrections"
    written = browser.save_corrections("STS_001", out)
    descriptions = [n.GetAttribute(ATTRIBUTE_PREFIX + "series_description") for n in loaded.segmentations]
    assert [path.name for path in written] == [f"{sanitise_file_name(d)}.dcm" for d in descriptions]
    assert {path.parent for path in written} == {out.resolve() / "STS_001"}

    for segmentation_node, path in zip(loaded.segmentations, written):
        uid = segmentation_node.GetAttribute(ATTRIBUTE_PREFIX + "reference_series_instance_uid")
        folder = Path(segmentation_node.GetAttribute(ATTRIBUTE_PREFIX + "reference_folder"))
        image = read_series([i for i in scan_folder(folder).instances if i.series_instance_uid == uid])
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
        assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
        reloaded = decode_seg(path, image)
        assert reloaded.findings == []
        masks = {segment.label: segment.mask for segment in reloaded.segments}
        if segmentation_node is node:
            assert np.array_equal(masks["GTV_Mass"], edited)
            assert all(np.array_equal(masks[s], originals[s]) for s in ids if s != "GTV_Mass")
            gtv = next(segment for segment in reloaded.segments if segment.label == "GTV_Mass")
            assert gtv.type.meaning == "Neoplasm"
        else:
            expected = others[segmentation_node.GetID()]
            assert set(masks) == set(expected)
            assert all(np.array_equal(masks[s], expected[s]) for s in expected)
    assert _hashes(sts_root) == before


# ---------------------------------------------------------------------------------------------- Hermessi
def test_hermessi_has_nothing_to_correct(headless, tmp_path: Path) -> None:
    root = hermessi.generate(tmp_path / "data")
    browser = _open(headless, root)
    case_id = browser.cases()[0].case_id
    browser.load_case(case_id)
    with pytest.raises(DataError, match="has no annotations to correct"):
        browser.save_corrections(case_id, tmp_path / "out")
    assert not (tmp_path / "out").exists()
