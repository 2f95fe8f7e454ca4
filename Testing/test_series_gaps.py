"""A series with a missing slice, a 202 mm jump, variable spacing or a tilt, on real CT files.

Removing any one middle slice of a real series must leave every remaining
voxel where its own file puts it (to 1e-3 mm), its values unchanged, and the
SEG / RTSTRUCT voxels of every remaining slice unchanged; annotations drawn at
the missing position stay at that position (an empty grid slice), never on a
neighbour. Expected positions come straight from each file's own header via
pydicom, not from the reader under test.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pydicom
import pydicom.data
import pytest

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats.dicom_seg import ExportSegment, SegCode, decode_seg, write_seg
from SarcomaLungLiverBrowserLib.formats.dicom_series import (
    DicomVolume, InstanceHeader, MissingSlice, group_by_series, read_header, read_series, scan_folder, split_regular,
)
from SarcomaLungLiverBrowserLib.formats.rtstruct import rasterize_roi_on_volume, read_rtstruct
from SarcomaLungLiverBrowserLib.geometry import SlicePlane, apply_matrix, lps_to_ras, pixel_to_lps
from SarcomaLungLiverBrowserLib.samples.dicom_writer import SeriesSpec, write_series

PYDICOM_TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"
MIRP = Path("oncoray__mirp") / "test" / "data"
DCMQI = Path("QIICR__dcmqi") / "data" / "segmentations"

#: Real CT series (relative to the external test data, or absolute for pydicom's installed files).
REAL_SERIES = {
    "pydicom CT5N": PYDICOM_TEST_FILES / "dicomdirtests" / "98892001" / "CT5N",
    "mirp STS_001 CT": MIRP / "sts_images" / "STS_001" / "CT" / "dicom" / "image",
    "mirp CRLM-CT-1004": MIRP / "ct_images_seg" / "CRLM-CT-1004" / "image",
    "dcmqi ct-3slice": DCMQI / "ct-3slice",
    "dcmqi 24x38x3": DCMQI / "24x38x3" / "image",
}


def _series(external_data: Path, name: str) -> List[InstanceHeader]:
    folder = REAL_SERIES[name]
    folder = folder if folder.is_absolute() else external_data / folder
    (instances,) = group_by_series(scan_folder(folder).instances).values()
    return instances


def _by_position(instances: Sequence[InstanceHeader]) -> List[InstanceHeader]:
    normal = instances[0].plane.normal
    return sorted(instances, key=lambda instance: float(np.dot(instance.image_position, normal)))


def _corner_ras_from_file(path: Path, rows: int, columns: int) -> np.ndarray:
    dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
    plane = SlicePlane(tuple(map(float, dataset.ImagePositionPatient)),
                       tuple(map(float, dataset.ImageOrientationPatient)),
                       tuple(map(float, dataset.PixelSpacing)))
    columns_, rows_ = np.array([0, columns - 1, 0, columns - 1, columns // 2]), np.array([0, 0, rows - 1, rows - 1, rows // 3])
    return lps_to_ras(pixel_to_lps(plane, columns_, rows_))


def _assert_voxels_at_their_files(volume: DicomVolume, full: DicomVolume, expected_ras: Dict[str, np.ndarray]) -> None:
    rows, columns = volume.voxels.shape[1:]
    ijk_columns = np.array([0, columns - 1, 0, columns - 1, columns // 2])
    ijk_rows = np.array([0, 0, rows - 1, rows - 1, rows // 3])
    for k, instance in enumerate(volume.instances):
        if isinstance(instance, MissingSlice):
            continue
        ijk = np.stack([ijk_columns, ijk_rows, np.full(5, k)], axis=1)
        actual = apply_matrix(volume.ijk_to_ras, ijk)
        assert np.allclose(actual, expected_ras[instance.sop_instance_uid], atol=1e-3), (instance.path, k)
        assert np.array_equal(volume.voxels[k], full.voxels[full.slice_index(instance.sop_instance_uid)]), instance.path


@pytest.mark.parametrize("name", sorted(REAL_SERIES))
def test_removing_any_middle_slice_leaves_every_voxel_at_its_file(external_data: Path, name: str) -> None:
    instances = _by_position(_series(external_data, name))
    full = read_series(instances)
    assert full.empty_slices == []
    rows, columns = full.voxels.shape[1:]
    expected = {i.sop_instance_uid: _corner_ras_from_file(i.path, rows, columns) for i in instances}
    _assert_voxels_at_their_files(full, full, expected)
    for removed in range(1, len(instances) - 1):
        remaining = instances[:removed] + instances[removed + 1:]
        volume = read_series(remaining)
        _assert_voxels_at_their_files(volume, full, expected)
        if len(instances) > 3:
            # The missing position stays, empty and flagged, so nothing after it moves.
            assert volume.voxels.shape == full.voxels.shape
            assert volume.empty_slices == [removed]
            # A stand-in keeps instances[k] aligned with k; it sits where the removed file was.
            stand_in = volume.instances[removed]
            assert isinstance(stand_in, MissingSlice) and stand_in.sop_instance_uid == f"missing-slice-{removed}"
            assert np.allclose(stand_in.image_position, instances[removed].image_position, atol=1e-3)
            assert volume.slice_index(instances[removed + 1].sop_instance_uid) == removed + 1
            assert np.all(volume.voxels[removed] == volume.empty_value)
            assert volume.empty_value == full.voxels[[k for k in range(len(instances)) if k != removed]].min()
            assert any("no image file" in problem for problem in volume.problems())


def _assert_remaining_slices_equal(full_mask: np.ndarray, full: DicomVolume, mask: np.ndarray,
                                   volume: DicomVolume) -> None:
    for k, instance in enumerate(volume.instances):
        if not isinstance(instance, MissingSlice):
            assert np.array_equal(mask[k], full_mask[full.slice_index(instance.sop_instance_uid)]), instance.path


def test_seg_frames_of_a_missing_slice_stay_at_their_position(external_data: Path, tmp_path: Path) -> None:
    """A SEG written on the real CRLM-CT-1004 CT, decoded after removing each middle slice in turn.

    Voxels on the remaining slices are unchanged, and the missing slice's
    frames land on the empty grid position at their true place: the
    neighbours do not grow (today's merge made a 97-voxel tumour 481 voxels).
    """
    instances = _by_position(_series(external_data, "mirp CRLM-CT-1004"))
    full = read_series(instances)
    k_grid, j_grid, i_grid = np.indices(full.voxels.shape)
    depth = full.voxels.shape[0]
    # Two blobs that change from slice to slice, so a merge into a neighbour shows.
    blob = ((k_grid - depth / 2) ** 2 / 40.0 + (j_grid - 250) ** 2 / 900.0 + (i_grid - 260) ** 2 / 700.0) < 1.0
    ring = (np.abs(np.hypot(j_grid - 300, i_grid - 180) - (8 + k_grid % 7)) < 2) & (k_grid > 2) & (k_grid < depth - 2)
    seg_path = write_seg(tmp_path / "seg.dcm", [
        ExportSegment("Blob", blob, type=SegCode("108369006", "SCT", "Neoplasm")),
        ExportSegment("Ring", ring),
    ], full)
    reference = decode_seg(seg_path, full)
    full_masks = [segment.mask for segment in reference.segments]
    assert np.array_equal(full_masks[0], blob) and np.array_equal(full_masks[1], ring)
    for removed in range(1, depth - 1):
        volume = read_series(instances[:removed] + instances[removed + 1:])
        decoded = decode_seg(seg_path, volume)
        for full_mask, segment in zip(full_masks, decoded.segments):
            mask = segment.mask
            _assert_remaining_slices_equal(full_mask, full, mask, volume)
            assert np.array_equal(mask[removed], full_mask[removed]), (segment.label, removed)
            assert segment.voxel_count == int(full_mask.sum())
        if full_masks[0][removed].any() or full_masks[1][removed].any():
            assert any(f.check == "seg.frames_on_missing_slices" for f in decoded.findings)


def test_real_seg_on_a_three_slice_ct_without_its_middle_slice(external_data: Path) -> None:
    """dcmqi's partial_overlaps SEG on ct-3slice: the middle frames fall between the two remaining
    slices (2 mm apart): they are reported as unplaced, and the outer slices keep their voxels."""
    instances = _by_position(_series(external_data, "dcmqi ct-3slice"))
    full = read_series(instances)
    seg = external_data / DCMQI / "partial_overlaps.dcm"
    reference = decode_seg(seg, full)
    volume = read_series([instances[0], instances[2]])
    decoded = decode_seg(seg, volume)
    for full_segment, segment in zip(reference.segments, decoded.segments):
        _assert_remaining_slices_equal(full_segment.mask, full, segment.mask, volume)
    middle_frames = sum(int(s.mask[1].any()) for s in reference.segments)
    assert middle_frames and len(decoded.unplaced_frames) == middle_frames


def test_rtstruct_contours_of_a_missing_slice_stay_at_their_position(external_data: Path) -> None:
    """mirp's real STS_001 CT with its GTV contours, each middle slice removed in turn."""
    instances = _by_position(_series(external_data, "mirp STS_001 CT"))
    full = read_series(instances)
    structure = read_rtstruct(external_data / MIRP / "sts_images" / "STS_001" / "CT" / "dicom" / "mask" / "RS.dcm")
    roi = structure.rois[0]
    full_mask = rasterize_roi_on_volume(roi, full).mask
    assert full_mask.any()
    for removed in range(1, len(instances) - 1):
        volume = read_series(instances[:removed] + instances[removed + 1:])
        result = rasterize_roi_on_volume(roi, volume)
        assert not result.off_slice
        _assert_remaining_slices_equal(full_mask, full, result.mask, volume)
        assert np.array_equal(result.mask[removed], full_mask[removed])


# ---------------------------------------------------------------------------------------------- refused stacks
def _write(tmp_path: Path, positions: Sequence[Sequence[float]], name: str = "s", **extra: object) -> List[Path]:
    spec = SeriesSpec(
        patient_id="GEO", study_instance_uid="1.2.77", series_instance_uid=f"1.2.77.{len(name)}",
        frame_of_reference_uid="1.2.77.9", modality="CT", series_number=1, series_description=name,
        stored_values=np.arange(len(positions) * 16, dtype=np.int16).reshape(len(positions), 4, 4),
        positions=[list(p) for p in positions], **extra,  # type: ignore[arg-type]
    )
    return write_series(spec, tmp_path / name).paths


def test_variable_spacing_is_refused_naming_the_file_and_splits_into_exact_parts(tmp_path: Path) -> None:
    paths = _write(tmp_path, [[0, 0, z] for z in (0.0, 2.0, 4.0, 7.0, 10.0, 13.0)])
    headers = [read_header(path) for path in paths]
    with pytest.raises(DataError) as raised:
        read_series(headers)
    assert str(paths[3]) in str(raised.value) and "variable slice spacing" in str(raised.value)
    parts = split_regular(headers)
    assert [len(part) for part in parts] == [3, 3]
    for part in parts:
        volume = read_series(part)
        assert volume.empty_slices == []
        for k, instance in enumerate(volume.instances):
            assert np.allclose(apply_matrix(volume.ijk_to_ras, [0, 0, k]), lps_to_ras(instance.image_position))


def test_gantry_tilt_is_refused_naming_the_file(tmp_path: Path) -> None:
    """Axial slices whose origins step sideways (a tilted gantry): refused, not shown sheared."""
    step = np.array([0.0, np.tan(np.radians(15.0)) * 2.5, 2.5])
    paths = _write(tmp_path, [list(k * step) for k in range(4)], name="tilt")
    with pytest.raises(DataError) as raised:
        read_series([read_header(path) for path in paths])
    assert str(paths[1]) in str(raised.value) and "gantry tilt" in str(raised.value)
    assert "15 degrees" in str(raised.value)


def test_far_apart_slices_are_refused_rather_than_allocating_an_empty_grid(tmp_path: Path) -> None:
    paths = _write(tmp_path, [[0, 0, 0.0], [0, 0, 0.5], [0, 0, 900.0]], name="far")
    with pytest.raises(DataError) as raised:
        read_series([read_header(path) for path in paths])
    assert str(paths[2]) in str(raised.value) and "positions" in str(raised.value)


def test_seg_voxels_on_a_missing_slice_cannot_be_written_silently(external_data: Path, tmp_path: Path) -> None:
    instances = _by_position(_series(external_data, "pydicom CT5N"))
    volume = read_series(instances[:2] + instances[3:])
    mask = np.zeros(volume.voxels.shape, dtype=bool)
    mask[2, 10:20, 10:20] = True
    with pytest.raises(DataError) as raised:
        write_seg(tmp_path / "out.dcm", [ExportSegment("Lesion", mask)], volume)
    assert "no image file" in str(raised.value) and "Lesion" in str(raised.value)
    assert not (tmp_path / "out.dcm").exists()
