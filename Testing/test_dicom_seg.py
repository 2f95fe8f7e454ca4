"""DICOM SEG reading onto a CT grid and writing back, against real public SEG files.

Expected voxels come from highdicom's own decoder (``get_pixels_by_source_instance``)
and, for dcmqi's sparse LABELMAP SEGs, from dcmqi's expected NRRD outputs.
"""
from __future__ import annotations

import copy
import gzip
from pathlib import Path
from typing import Dict, List

import highdicom as hd
import numpy as np
import pydicom
import pytest

from SarcomaLungLiverBrowserLib.formats.dicom_seg import (
    DecodedSegmentation,
    ExportSegment,
    SegCode,
    decode_seg,
    parse_terminology_entry,
    read_seg_header,
    terminology_entry,
    write_seg,
)
from SarcomaLungLiverBrowserLib.formats.dicom_series import DicomVolume, read_series, scan_folder
from SarcomaLungLiverBrowserLib.errors import DataError

DCMQI = "QIICR__dcmqi/data/segmentations"
HIGHDICOM = "ImagingDataCommons__highdicom/data/test_files"
CT2 = "pypi__pydicom-3.0.2/pydicom/data/test_files/dicomdirtests/77654033/CT2"

# highdicom warns about single-component patient names in the public test files.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _volume(folder: Path) -> DicomVolume:
    return read_series(scan_folder(folder).instances)


def _highdicom_masks(seg_path: Path, volume: DicomVolume) -> Dict[int, np.ndarray]:
    """Each segment's voxels as highdicom decodes them, placed on the CT grid by SOP instance."""
    seg = hd.seg.segread(str(seg_path))
    referenced = {str(uids[2]) for uids in seg.get_source_image_uids()}
    used = [instance.sop_instance_uid for instance in volume.present_instances if instance.sop_instance_uid in referenced]
    pixels = seg.get_pixels_by_source_instance(used, combine_segments=False, ignore_spatial_locations=True)
    masks = {}
    for index, number in enumerate(seg.segment_numbers):
        mask = np.zeros(volume.voxels.shape, dtype=bool)
        for row, uid in enumerate(used):
            # rescale_fractional=True gives fractions in [0, 1]; 0.5 is the threshold.
            mask[volume.slice_index(uid)] = pixels[row, :, :, index] >= 0.5
        masks[number] = mask
    return masks


def _assert_matches_highdicom(decoded: DecodedSegmentation, seg_path: Path, volume: DicomVolume) -> None:
    expected = _highdicom_masks(seg_path, volume)
    assert [segment.number for segment in decoded.segments] == sorted(expected)
    for segment in decoded.segments:
        assert np.array_equal(segment.mask, expected[segment.number]), segment.label
        assert segment.voxel_count == int(expected[segment.number].sum())


# ---------------------------------------------------------------------------------------------- real files
def test_dcmqi_partial_overlaps_is_voxel_exact(external_data: Path) -> None:
    volume = _volume(external_data / DCMQI / "ct-3slice")
    path = external_data / DCMQI / "partial_overlaps.dcm"
    decoded = decode_seg(path, volume)
    assert [s.label for s in decoded.segments] == ["GREEN", "ORANGE", "PURPLE", "LIGHT_BLUE", "DARK_BLUE"]
    assert decoded.segmentation_type == "BINARY"
    assert decoded.frames_placed == decoded.number_of_frames == 7
    assert decoded.findings == []
    _assert_matches_highdicom(decoded, path, volume)
    masks = [segment.mask for segment in decoded.segments]
    overlaps = sum(int(np.any(a & b)) for n, a in enumerate(masks) for b in masks[n + 1:])
    assert overlaps > 0, "the file's segments overlap; nothing may be lost to a single labelmap"
    assert all(segment.color is not None for segment in decoded.segments)
    assert decoded.segments[1].type == SegCode("51114001", "SCT", "Artery")
    # Segments cover only some slices (partial coverage, empty frames omitted).
    assert any(not segment.mask.any(axis=(1, 2)).all() for segment in decoded.segments)


@pytest.mark.parametrize("name, kind", [
    ("seg_image_ct_binary.dcm", "BINARY"),
    ("seg_image_ct_binary_overlap.dcm", "BINARY"),
    ("seg_image_ct_binary_fractional.dcm", "FRACTIONAL"),
    ("seg_image_ct_true_fractional.dcm", "FRACTIONAL"),
])
def test_highdicom_test_segs_are_voxel_exact(external_data: Path, name: str, kind: str) -> None:
    volume = _volume(external_data / CT2)
    path = external_data / HIGHDICOM / name
    decoded = decode_seg(path, volume)
    assert decoded.segmentation_type == kind
    _assert_matches_highdicom(decoded, path, volume)
    assert all(not segment.is_empty for segment in decoded.segments)


def test_true_fractional_threshold_is_half_of_maximum(external_data: Path) -> None:
    volume = _volume(external_data / CT2)
    decoded = decode_seg(external_data / HIGHDICOM / "seg_image_ct_true_fractional.dcm", volume)
    seg = hd.seg.segread(str(external_data / HIGHDICOM / "seg_image_ct_true_fractional.dcm"))
    stored = np.stack([seg.get_stored_frame(n + 1) for n in range(seg.NumberOfFrames)])
    assert set(np.unique(stored)) == {0, 64, 128}  # 0.25 and 0.5 of MaximumFractionalValue 255
    assert decoded.segments[0].voxel_count == int(np.count_nonzero(stored == 128))


def test_dcmqi_liver_and_unaligned_frames(external_data: Path) -> None:
    volume = _volume(external_data / DCMQI / "ct-3slice")
    path = external_data / DCMQI / "liver.dcm"
    _assert_matches_highdicom(decode_seg(path, volume), path, volume)
    # 38x23 pixels = 874 bits: frames do not start on byte boundaries.
    small = _volume(external_data / DCMQI / "23x38x3" / "image")
    label = external_data / DCMQI / "23x38x3" / "seg" / "label.seg"
    _assert_matches_highdicom(decode_seg(label, small), label, small)


def _nrrd(path: Path) -> np.ndarray:
    data = path.read_bytes()
    header, _, body = data.partition(b"\n\n")
    sizes = [int(v) for v in next(line for line in header.split(b"\n") if line.startswith(b"sizes:")).split()[1:]]
    return np.frombuffer(gzip.decompress(body), dtype="<i2").reshape(sizes[::-1])


@pytest.mark.parametrize("name, expected", [
    ("sparse-labelmap-ppv5.dcm", "sparse_labelmap_ppv5_seg.nrrd"),
    ("sparse-labelmap-noppv.dcm", "sparse_labelmap_noppv_seg.nrrd"),
])
def test_dcmqi_sparse_labelmaps(external_data: Path, name: str, expected: str) -> None:
    volume = _volume(external_data / DCMQI / "24x38x3" / "image")
    decoded = decode_seg(external_data / DCMQI / name, volume)
    assert decoded.sop_class_uid == "1.2.840.10008.5.1.4.1.1.66.7"
    assert decoded.segmentation_type == "LABELMAP"
    labels = _nrrd(external_data / DCMQI / expected)
    assert labels.shape == volume.voxels.shape
    for segment in decoded.segments:
        assert np.array_equal(segment.mask, labels == segment.number), segment.label
    background = decoded.segment(0)
    assert background.is_background and background.label == "Background"
    # The middle slice has no frame: padding (ppv5) is neither background nor liver; without PPV it is background.
    assert background.mask[1].all() == (name == "sparse-labelmap-noppv.dcm")
    assert not decoded.segment(1).mask[1].any()


def test_seg_on_the_wrong_ct_names_the_file(external_data: Path) -> None:
    volume = _volume(external_data / CT2)
    with pytest.raises(DataError) as error:
        decode_seg(external_data / DCMQI / "partial_overlaps.dcm", volume)
    assert "partial_overlaps.dcm" in str(error.value)
    assert "none of its 7 frames" in str(error.value)


def test_header_without_frames(external_data: Path) -> None:
    header = read_seg_header(external_data / DCMQI / "partial_overlaps.dcm")
    assert header.segment_labels[0] == "GREEN"
    assert header.referenced_series_uids == ["1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1"]
    assert header.manufacturer == "QIICR"
    with pytest.raises(DataError):
        read_seg_header(external_data / DCMQI / "ct-3slice" / "01.dcm")


# ---------------------------------------------------------------------------------------------- frame placement
def _shuffled_copy(source: Path, target: Path, order: List[int]) -> Path:
    """The SEG with its frames in another order (pixel data and per-frame groups alike)."""
    dataset = pydicom.dcmread(str(source))
    seg = hd.seg.segread(str(source))
    frames = np.stack([seg.get_stored_frame(n + 1) for n in range(seg.NumberOfFrames)])[order]
    dataset.PerFrameFunctionalGroupsSequence = [
        copy.deepcopy(dataset.PerFrameFunctionalGroupsSequence[n]) for n in order
    ]
    dataset.PixelData = np.packbits(frames.ravel(), bitorder="little").tobytes()
    dataset.save_as(str(target))
    return target


def test_frames_are_placed_by_reference_not_by_order(external_data: Path, tmp_path: Path) -> None:
    volume = _volume(external_data / DCMQI / "ct-3slice")
    source = external_data / DCMQI / "partial_overlaps.dcm"
    original = decode_seg(source, volume)
    shuffled = decode_seg(_shuffled_copy(source, tmp_path / "shuffled.dcm", [6, 3, 0, 5, 1, 4, 2]), volume)
    for a, b in zip(original.segments, shuffled.segments):
        assert np.array_equal(a.mask, b.mask)


def test_frames_without_references_are_placed_by_position(external_data: Path, tmp_path: Path) -> None:
    volume = _volume(external_data / DCMQI / "ct-3slice")
    source = external_data / DCMQI / "partial_overlaps.dcm"
    dataset = pydicom.dcmread(str(source))
    for item in dataset.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
    dataset.save_as(str(tmp_path / "noref.dcm"))
    decoded = decode_seg(tmp_path / "noref.dcm", volume)
    assert [f.check for f in decoded.findings] == ["seg.no_source_references"]
    for a, b in zip(decode_seg(source, volume).segments, decoded.segments):
        assert np.array_equal(a.mask, b.mask)


def test_missing_source_instances_and_geometry_mismatch_are_reported(external_data: Path, tmp_path: Path) -> None:
    volume = _volume(external_data / DCMQI / "ct-3slice")
    dataset = pydicom.dcmread(str(external_data / DCMQI / "partial_overlaps.dcm"))
    source = dataset.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    source.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    dataset.FrameOfReferenceUID = "1.2.3.4"
    dataset.save_as(str(tmp_path / "odd.dcm"))
    decoded = decode_seg(tmp_path / "odd.dcm", volume, case_id="X")
    checks = {finding.check for finding in decoded.findings}
    assert {"seg.missing_source_instances", "seg.geometry_mismatch"} <= checks
    assert decoded.frames_referencing_missing_instances == [(1, "1.2.3.4.5.6.7.8.9")]
    assert any("FrameOfReferenceUID" in problem for problem in decoded.geometry_mismatches)
    assert all(finding.case_id == "X" for finding in decoded.findings)
    # The frame is still placed, by its ImagePositionPatient.
    reference = decode_seg(external_data / DCMQI / "partial_overlaps.dcm", volume)
    for a, b in zip(reference.segments, decoded.segments):
        assert np.array_equal(a.mask, b.mask)


# ---------------------------------------------------------------------------------------------- export
def test_export_round_trip_keeps_voxels_names_and_codes(external_data: Path, tmp_path: Path) -> None:
    folder = external_data / DCMQI / "ct-3slice"
    assert pydicom.dcmread(str(folder / "01.dcm"), stop_before_pixels=True).SpecificCharacterSet == ""
    volume = _volume(folder)
    decoded = decode_seg(external_data / DCMQI / "partial_overlaps.dcm", volume)
    segments = [ExportSegment(name=s.label, mask=s.mask, category=s.category, type=s.type, color=s.color,
                              algorithm_type=s.algorithm_type) for s in decoded.segments]
    # An edit: one segment cleared entirely, one renamed.
    segments.append(ExportSegment(name="Empty", mask=np.zeros(volume.voxels.shape, dtype=bool)))
    segments[0].name = "GREEN edited"
    path = write_seg(tmp_path / "out.dcm", segments, volume, series_description="Edited")
    written = pydicom.dcmread(str(path))
    assert written.Modality == "SEG" and written.SeriesDescription == "Edited"
    assert [item.SeriesInstanceUID for item in written.ReferencedSeriesSequence] == [volume.series_instance_uid]
    reloaded = decode_seg(path, volume)
    assert reloaded.findings == []
    assert [s.label for s in reloaded.segments] == [s.name for s in segments]
    for exported, segment in zip(segments, reloaded.segments):
        assert np.array_equal(segment.mask, exported.mask), exported.name
        assert segment.category == exported.category and segment.type == exported.type
    assert reloaded.segments[-1].is_empty
    for original, segment in zip(decoded.segments, reloaded.segments):
        assert np.allclose(original.color, segment.color, atol=2 / 255)


def test_terminology_entry_round_trip() -> None:
    entry = terminology_entry(SegCode("123037004", "SCT", "Anatomical Structure"), SegCode("10200004", "SCT", "Liver"))
    assert entry == ("Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure"
                     "~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")
    parsed = parse_terminology_entry(entry)
    assert parsed["type"] == SegCode("10200004", "SCT", "Liver")
    assert parsed["type_modifier"] is None and parsed["anatomic_region"] is None
    assert terminology_entry(None, None) == ""


def test_reading_a_seg_header_does_not_import_highdicom(external_data: Path) -> None:
    """Indexing reads SEG headers only; highdicom is imported by decoding and writing, not before."""
    import subprocess
    import sys

    library = Path(__file__).resolve().parents[1] / "SarcomaLungLiverBrowser"
    seg = external_data / "QIICR__dcmqi" / "data" / "segmentations" / "liver.dcm"
    script = (
        "import sys\n"
        "from SarcomaLungLiverBrowserLib.formats import dicom_seg\n"
        f"header = dicom_seg.read_seg_header({str(seg)!r})\n"
        "assert header.segment_labels == ['Liver'], header.segment_labels\n"
        "print('highdicom' in sys.modules)\n"
        "dicom_seg.SegCode('85756007', 'SCT', 'Tissue').to_concept()\n"
        "print('highdicom' in sys.modules)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                               env={**__import__("os").environ, "PYTHONPATH": str(library)})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["False", "True"]


def test_seg_frames_with_invalid_orientation_are_not_placed(external_data: Path, tmp_path: Path) -> None:
    """A SEG whose ImageOrientationPatient vectors are doubled is refused naming the file, never rescaled."""
    volume = _volume(external_data / DCMQI / "ct-3slice")
    dataset = pydicom.dcmread(str(external_data / DCMQI / "partial_overlaps.dcm"))
    groups = list(dataset.get("SharedFunctionalGroupsSequence", [])) + list(dataset.PerFrameFunctionalGroupsSequence)
    changed = 0
    for group in groups:
        for item in group.get("PlaneOrientationSequence", []):
            item.ImageOrientationPatient = [2 * float(v) for v in item.ImageOrientationPatient]
            changed += 1
    assert changed
    target = tmp_path / "doubled.dcm"
    dataset.save_as(str(target))
    with pytest.raises(DataError) as raised:
        decode_seg(target, volume)
    assert "doubled.dcm" in str(raised.value) and "not 1" in str(raised.value)
