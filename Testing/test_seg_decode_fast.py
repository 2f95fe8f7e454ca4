"""The fast SEG decoder (frame facts from raw bytes, native frames sliced with numpy) against pydicom and highdicom.

Every real SEG in the shared test data and generated ones (odd frame sizes
whose BINARY frames do not start on a byte boundary, FRACTIONAL, implicit VR,
undefined-length sequences) must give the same frame facts as pydicom's
datasets and the same voxels as highdicom's own decoder.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, List

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.uid import ImplicitVRLittleEndian

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats.dicom_seg import DecodedSegmentation, decode_seg
from SarcomaLungLiverBrowserLib.formats.dicom_seg import frames as seg_frames
from SarcomaLungLiverBrowserLib.formats.dicom_series import DicomVolume, read_series, scan_folder
from SarcomaLungLiverBrowserLib.samples.dicom_writer import SeriesSpec, write_series

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DCMQI = "QIICR__dcmqi/data/segmentations"
HIGHDICOM = "ImagingDataCommons__highdicom/data/test_files"
CT2 = "pypi__pydicom-3.0.2/pydicom/data/test_files/dicomdirtests/77654033/CT2"

#: Every real SEG of the shared test data, with the CT folder it was drawn on.
REAL_SEGS = [
    (f"{HIGHDICOM}/seg_image_ct_binary.dcm", CT2),
    (f"{HIGHDICOM}/seg_image_ct_binary_overlap.dcm", CT2),
    (f"{HIGHDICOM}/seg_image_ct_binary_fractional.dcm", CT2),
    (f"{HIGHDICOM}/seg_image_ct_binary_single_frame.dcm", CT2),
    (f"{HIGHDICOM}/seg_image_ct_true_fractional.dcm", CT2),
    (f"{DCMQI}/liver.dcm", f"{DCMQI}/ct-3slice"),
    (f"{DCMQI}/partial_overlaps.dcm", f"{DCMQI}/ct-3slice"),
    (f"{DCMQI}/sparse-labelmap-noppv.dcm", f"{DCMQI}/24x38x3/image"),
    (f"{DCMQI}/sparse-labelmap-ppv5.dcm", f"{DCMQI}/24x38x3/image"),
    (f"{DCMQI}/24x38x3/seg/label.seg", f"{DCMQI}/24x38x3/image"),
    (f"{DCMQI}/23x38x3/seg/label.seg", f"{DCMQI}/23x38x3/image"),
]


def _volume(folder: Path) -> DicomVolume:
    return read_series(scan_folder(folder).instances)


def _assert_same_facts(fast: List[seg_frames._FrameInfo], slow: List[seg_frames._FrameInfo]) -> None:
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow):
        assert (a.number, a.segment_number, a.source_uids, a.multiframe_source, a.pixel_spacing,
                a.spacing_between_slices) == \
            (b.number, b.segment_number, b.source_uids, b.multiframe_source, b.pixel_spacing,
             b.spacing_between_slices)
        for x, y in ((a.position, b.position), (a.orientation, b.orientation)):
            assert (x is None) == (y is None)
            if x is not None:
                assert np.array_equal(x, y)


def _highdicom_masks(seg_path: Path, volume: DicomVolume) -> Dict[int, np.ndarray]:
    """Each segment's voxels as highdicom decodes them, placed on the CT grid by SOP instance."""
    seg = hd.seg.segread(str(seg_path))
    referenced = {str(uids[2]) for uids in seg.get_source_image_uids()}
    used = [i.sop_instance_uid for i in volume.present_instances if i.sop_instance_uid in referenced]
    pixels = seg.get_pixels_by_source_instance(used, combine_segments=False, ignore_spatial_locations=True)
    masks = {}
    for index, number in enumerate(seg.segment_numbers):
        mask = np.zeros(volume.voxels.shape, dtype=bool)
        for row, uid in enumerate(used):
            mask[volume.slice_index(uid)] = pixels[row, :, :, index] >= 0.5  # fractions in [0, 1]
        masks[number] = mask
    return masks


def _assert_matches_highdicom(decoded: DecodedSegmentation, seg_path: Path, volume: DicomVolume) -> None:
    expected = _highdicom_masks(seg_path, volume)
    assert [segment.number for segment in decoded.segments] == sorted(expected)
    for segment in decoded.segments:
        assert np.array_equal(segment.mask, expected[segment.number]), segment.label
        assert segment.voxel_count == int(expected[segment.number].sum()) > 0


# ---------------------------------------------------------------------------------------------- frame facts
@pytest.mark.parametrize("seg, ct", REAL_SEGS)
def test_raw_frame_facts_equal_pydicoms_on_real_segs(external_data: Path, seg: str, ct: str) -> None:
    path = external_data / seg
    fast = seg_frames._frame_infos_from_raw(pydicom.dcmread(str(path)))  # raises _NotPlain if it cannot
    _assert_same_facts(fast, seg_frames._frame_infos_by_pydicom(pydicom.dcmread(str(path))))


def _mark_undefined_lengths(element: DataElement) -> None:
    element.is_undefined_length = True
    for item in element.value:
        item.is_undefined_length_sequence_item = True
        for child in item:
            if child.VR == "SQ":
                _mark_undefined_lengths(child)


def _encoded_groups(dataset: pydicom.Dataset, implicit: bool) -> bytes:
    """The per-frame functional groups as written by pydicom with undefined-length items and sequences."""
    stream = DicomBytesIO()
    stream.is_little_endian, stream.is_implicit_VR = True, implicit
    element = DataElement(0x52009230, "SQ", dataset.PerFrameFunctionalGroupsSequence)
    _mark_undefined_lengths(element)
    write_data_element(stream, element)
    data = stream.getvalue()
    header = 8 if implicit else 12  # tag (+ VR and reserved) + length
    assert struct.unpack_from("<L", data, header - 4)[0] == 0xFFFFFFFF
    return data[header:]


@pytest.mark.parametrize("implicit", [True, False])
def test_raw_walker_reads_undefined_length_items_and_sequences(external_data: Path, implicit: bool) -> None:
    dataset = pydicom.dcmread(str(external_data / DCMQI / "partial_overlaps.dcm"))
    items, end = seg_frames._read_items(_encoded_groups(dataset, implicit), 0, None, implicit)
    data_length = len(_encoded_groups(dataset, implicit))
    assert end == data_length
    fast = [seg_frames._frame_info(n + 1, item, {}) for n, item in enumerate(items)]
    slow = [seg_frames._frame_info(n + 1, seg_frames._node_of_dataset(item), {})
            for n, item in enumerate(dataset.PerFrameFunctionalGroupsSequence)]
    _assert_same_facts(fast, slow)
    assert all(f.source_uids and f.position is not None and f.segment_number for f in fast)


@pytest.mark.parametrize("cut", [3, 9, 17, 40, 101])
def test_raw_walker_refuses_truncated_bytes_instead_of_guessing(external_data: Path, cut: int) -> None:
    dataset = pydicom.dcmread(str(external_data / DCMQI / "partial_overlaps.dcm"))
    data = _encoded_groups(dataset, False)
    with pytest.raises(seg_frames._NotPlain):
        seg_frames._read_items(data[:-cut], 0, None, False)
    with pytest.raises(seg_frames._NotPlain):  # a defined length claiming more than is there
        seg_frames._read_items(data[:cut] + b"\xfe\xff\x00\xe0\xff\xff\xff\x7f", 0, cut + 8, False)


def test_nested_sequences_deeper_than_the_limit_are_left_to_pydicom() -> None:
    item_start = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    sequence_start = struct.pack("<HH2sHL", 0x0008, 0x9124, b"SQ", 0, 0xFFFFFFFF)
    data = (item_start + sequence_start) * 5000
    with pytest.raises(seg_frames._NotPlain):
        seg_frames._read_items(data, 0, None, False)


# ---------------------------------------------------------------------------------------------- voxels
# Labelmaps are compared with dcmqi's NRRDs in test_dicom_seg.py; the single-frame SEG's CT is not in the data.
@pytest.mark.parametrize("seg, ct", [entry for entry in REAL_SEGS if "labelmap" not in entry[0]
                                     and not entry[0].endswith(("label.seg", "single_frame.dcm"))])
def test_decode_equals_highdicom_voxel_for_voxel_on_real_segs(external_data: Path, seg: str, ct: str) -> None:
    volume = _volume(external_data / ct)
    decoded = decode_seg(external_data / seg, volume)
    _assert_matches_highdicom(decoded, external_data / seg, volume)


def _generated_ct(folder: Path, rows: int = 29, columns: int = 37, slices: int = 6) -> List[pydicom.Dataset]:
    """A small CT whose frames hold rows x columns = an odd number of pixels (BINARY frames off byte boundaries)."""
    values = np.random.default_rng(7).integers(0, 1000, (slices, rows, columns), dtype=np.int16)
    spec = SeriesSpec(
        patient_id="SEG-FAST^1", study_instance_uid="1.2.826.0.1.3680043.8.498.71",
        series_instance_uid="1.2.826.0.1.3680043.8.498.71.1", frame_of_reference_uid="1.2.826.0.1.3680043.8.498.71.9",
        modality="CT", series_number=1, series_description="odd grid", stored_values=values,
        positions=[[-20.0, -15.0, 30.0 + 2.5 * k] for k in range(slices)], pixel_spacing=(0.8, 0.9),
        slice_thickness=2.5)
    written = write_series(spec, folder, file_names="sop")
    return [pydicom.dcmread(str(path)) for path in written.paths]


def _generated_seg(ct: List[pydicom.Dataset], path: Path, fractional: bool, implicit: bool) -> Path:
    """Three overlapping segments (one empty on most slices) written by highdicom, empty frames omitted."""
    shape = (len(ct), int(ct[0].Rows), int(ct[0].Columns))
    rng = np.random.default_rng(11)
    masks = np.zeros(shape + (3,), dtype=np.float32 if fractional else bool)
    masks[1:5, 3:20, 4:30, 0] = 1
    masks[2:4, 10:27, 20:36, 1] = 1
    masks[3, 5:9, 2:7, 2] = 1
    if fractional:
        masks[..., 0] *= rng.uniform(0.0, 1.0, shape).astype(np.float32)  # below and above 0.5
    description = [
        hd.seg.SegmentDescription(
            segment_number=n + 1, segment_label=f"Region {n + 1}",
            segmented_property_category=hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
            segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n in range(3)]
    seg = hd.seg.Segmentation(
        source_images=ct, pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL if fractional
        else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=description, series_instance_uid=hd.UID(), series_number=5,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test", manufacturer_model_name="test",
        software_versions="1", device_serial_number="1", omit_empty_frames=True,
        transfer_syntax_uid=ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian)
    seg.save_as(str(path))
    return path


@pytest.mark.parametrize("fractional", [False, True])
@pytest.mark.parametrize("implicit", [False, True])
def test_decode_equals_highdicom_voxel_for_voxel_on_generated_segs(tmp_path: Path, fractional: bool,
                                                                   implicit: bool) -> None:
    ct = _generated_ct(tmp_path / "ct")
    path = _generated_seg(ct, tmp_path / "seg.dcm", fractional, implicit)
    dataset = pydicom.dcmread(str(path))
    assert int(dataset.Rows) * int(dataset.Columns) % 8 != 0
    _assert_same_facts(seg_frames._frame_infos_from_raw(dataset),
                       seg_frames._frame_infos_by_pydicom(pydicom.dcmread(str(path))))
    volume = _volume(tmp_path / "ct")
    decoded = decode_seg(path, volume)
    assert decoded.segmentation_type == ("FRACTIONAL" if fractional else "BINARY")
    _assert_matches_highdicom(decoded, path, volume)


def test_truncated_native_pixel_data_names_the_file(tmp_path: Path) -> None:
    ct = _generated_ct(tmp_path / "ct")
    path = _generated_seg(ct, tmp_path / "seg.dcm", False, False)
    dataset = pydicom.dcmread(str(path))
    dataset.PixelData = dataset.PixelData[: len(dataset.PixelData) // 2]
    dataset.save_as(str(tmp_path / "short.dcm"))
    with pytest.raises(DataError, match="short.dcm"):
        decode_seg(tmp_path / "short.dcm", _volume(tmp_path / "ct"))
