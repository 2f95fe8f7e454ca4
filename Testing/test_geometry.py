"""Geometry: LPS/RAS, IJK-to-RAS from DICOM slices, spacing irregularities."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest

from SarcomaLungLiverBrowserLib.formats.dicom_series import MissingSlice, read_header, read_series, scan_folder, group_by_series
from SarcomaLungLiverBrowserLib.geometry import (
    SlicePlane, apply_matrix, ijk_to_ras_from_slices, lps_to_ras, pixel_to_lps, sort_slices,
)
from SarcomaLungLiverBrowserLib.samples.dicom_writer import SeriesSpec, write_series

PYDICOM_TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def dicom_position_ras(path: Path, column: int, row: int) -> np.ndarray:
    """RAS of a pixel centre computed straight from one file's own header."""
    dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
    plane = SlicePlane(tuple(map(float, dataset.ImagePositionPatient)),
                       tuple(map(float, dataset.ImageOrientationPatient)),
                       tuple(map(float, dataset.PixelSpacing)))
    return lps_to_ras(pixel_to_lps(plane, column, row))


def assert_every_voxel_matches_its_file(volume, tolerance=1e-3):
    rows, columns = volume.voxels.shape[1:]
    for k, instance in enumerate(volume.instances):
        if isinstance(instance, MissingSlice):
            continue  # an empty grid position (missing slice)
        for column, row in [(0, 0), (columns - 1, 0), (0, rows - 1), (columns - 1, rows - 1), (columns // 2, rows // 3)]:
            expected = dicom_position_ras(instance.path, column, row)
            actual = apply_matrix(volume.ijk_to_ras, [column, row, k])
            assert np.allclose(actual, expected, atol=tolerance), (instance.path, column, row, actual, expected)


def test_lps_to_ras_negates_first_two_axes():
    assert np.allclose(lps_to_ras([1.0, 2.0, 3.0]), [-1.0, -2.0, 3.0])
    assert np.allclose(lps_to_ras(lps_to_ras([[4.0, -5.0, 6.0]])), [[4.0, -5.0, 6.0]])


def test_pydicom_ct_series_with_decreasing_z_is_sorted_by_position():
    folder = PYDICOM_TEST_FILES / "dicomdirtests" / "98892001" / "CT5N"
    scan = scan_folder(folder)
    assert not scan.errors
    (instances,) = group_by_series(scan.instances).values()
    volume = read_series(instances)
    z = [instance.image_position[2] for instance in volume.instances]
    assert z == sorted(z)
    assert volume.stack_report.uniform and volume.stack_report.slice_spacing == pytest.approx(2.5)
    assert_every_voxel_matches_its_file(volume)
    reference = pydicom.dcmread(str(volume.instances[2].path))
    expected = reference.pixel_array * float(reference.RescaleSlope) + float(reference.RescaleIntercept)
    assert np.array_equal(volume.voxels[2], expected)


def test_pydicom_ct_series_with_a_202_mm_jump_keeps_every_slice_at_its_position():
    """CT2: three slices 1.25 mm apart and one 202.5 mm away; stacked as contiguous, three sat ~200 mm off."""
    folder = PYDICOM_TEST_FILES / "dicomdirtests" / "77654033" / "CT2"
    instances = [read_header(path) for path in sorted(folder.iterdir())]
    volume = read_series(instances)
    report = volume.stack_report
    assert not report.uniform
    assert report.gaps and report.gaps[0][0] == 0 and report.gaps[0][1] == pytest.approx(202.5, abs=0.01)
    assert report.slice_spacing == pytest.approx(1.25) and volume.voxels.shape[0] == 165
    assert volume.empty_slices == list(range(1, 162)) and report.empty_slices == volume.empty_slices
    assert any("no image file" in problem for problem in volume.problems())
    assert_every_voxel_matches_its_file(volume)
    for k, instance in enumerate(volume.instances):
        if not isinstance(instance, MissingSlice):
            reference = pydicom.dcmread(str(instance.path))
            expected = reference.pixel_array * float(reference.RescaleSlope) + float(reference.RescaleIntercept)
            assert np.array_equal(volume.voxels[k], expected)
        else:
            assert np.all(volume.voxels[k] == volume.empty_value)


def test_series_with_different_orientations_is_refused_naming_a_file():
    folder = PYDICOM_TEST_FILES / "dicomdirtests" / "98892003" / "MR700"
    instances = [read_header(path) for path in sorted(folder.iterdir())]
    with pytest.raises(Exception) as raised:
        read_series(instances)
    assert "ImageOrientationPatient" in str(raised.value)
    assert str(folder) in str(raised.value)


def oblique_orientation(tilt_x_deg: float, tilt_z_deg: float) -> np.ndarray:
    a, b = np.radians(tilt_x_deg), np.radians(tilt_z_deg)
    rotate_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rotate_z = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    rotation = rotate_z @ rotate_x
    return np.concatenate([rotation[:, 0], rotation[:, 1]])


@pytest.mark.parametrize("tilts", [(12.0, 7.0), (-30.0, 45.0), (90.0, 0.0)])
def test_oblique_series_in_shuffled_files_matches_dicom_positions(tmp_path, tilts):
    orientation = oblique_orientation(*tilts)
    normal = np.cross(orientation[:3], orientation[3:])
    origin = np.array([-120.5, 80.25, 33.0])
    positions = [origin + k * 3.0 * normal for k in range(6)]
    values = np.arange(6 * 8 * 10, dtype=np.int16).reshape(6, 8, 10)
    spec = SeriesSpec(
        patient_id="OBL-1", study_instance_uid="1.2.3.1", series_instance_uid="1.2.3.1.1",
        frame_of_reference_uid="1.2.3.9", modality="MR", series_number=1, series_description="oblique",
        stored_values=values, positions=positions, orientation=tuple(orientation), pixel_spacing=(0.7, 0.9),
        # Instance numbers run against position, so neither they nor file names give the order.
        instance_numbers=[6, 2, 5, 1, 4, 3],
    )
    written = write_series(spec, tmp_path / "series", file_names="idc")
    volume = read_series([read_header(path) for path in written.paths])
    assert np.array_equal(volume.voxels, values)
    assert_every_voxel_matches_its_file(volume)


def test_missing_slice_is_counted(tmp_path):
    positions = [[0.0, 0.0, z] for z in (0.0, 2.0, 4.0, 8.0, 10.0)]
    spec = SeriesSpec(
        patient_id="GAP", study_instance_uid="1.2.4", series_instance_uid="1.2.4.1", frame_of_reference_uid="1.2.4.9",
        modality="CT", series_number=1, series_description="gap", stored_values=np.zeros((5, 4, 4), np.int16),
        positions=positions,
    )
    written = write_series(spec, tmp_path)
    volume = read_series([read_header(path) for path in written.paths])
    assert volume.stack_report.missing_slices == 1 and volume.empty_slices == [3]
    assert volume.voxels.shape[0] == 6
    assert "no image file" in volume.problems()[0]


def test_duplicate_positions_are_reported_and_first_kept(tmp_path):
    positions = [[0.0, 0.0, z] for z in (0.0, 2.0, 2.0, 4.0)]
    values = np.stack([np.full((4, 4), v, np.int16) for v in (1, 2, 3, 4)])
    spec = SeriesSpec(
        patient_id="DUP", study_instance_uid="1.2.5", series_instance_uid="1.2.5.1", frame_of_reference_uid="1.2.5.9",
        modality="CT", series_number=1, series_description="dup", stored_values=values, positions=positions,
    )
    written = write_series(spec, tmp_path)
    volume = read_series([read_header(path) for path in written.paths])
    assert volume.voxels.shape[0] == 3
    assert len(volume.duplicates) == 1
    assert volume.slice_index(written.sop_instance_uids[2]) == 1


def test_rescale_is_applied_per_slice(tmp_path):
    values = np.full((2, 4, 4), 100, np.int16)
    spec = SeriesSpec(
        patient_id="RS", study_instance_uid="1.2.6", series_instance_uid="1.2.6.1", frame_of_reference_uid="1.2.6.9",
        modality="PT", series_number=1, series_description="pet", stored_values=values,
        positions=[[0, 0, 0], [0, 0, 4]], rescale_slope=0.5, rescale_intercept=0.0,
        per_instance_extra={1: {"RescaleSlope": "0.25"}},
    )
    written = write_series(spec, tmp_path)
    volume = read_series([read_header(path) for path in written.paths])
    assert volume.voxels.dtype == np.float32
    assert np.allclose(volume.voxels[0], 50.0) and np.allclose(volume.voxels[1], 25.0)


def test_missing_geometry_names_the_file(tmp_path):
    spec = SeriesSpec(
        patient_id="NG", study_instance_uid="1.2.7", series_instance_uid="1.2.7.1", frame_of_reference_uid="1.2.7.9",
        modality="CT", series_number=1, series_description="nogeo", stored_values=np.zeros((2, 4, 4), np.int16),
        positions=[[0, 0, 0], [0, 0, 1]], per_instance_extra={1: {"PixelSpacing": None}},
    )
    written = write_series(spec, tmp_path)
    with pytest.raises(Exception) as raised:
        read_series([read_header(path) for path in written.paths])
    assert str(written.paths[1]) in str(raised.value) and "PixelSpacing" in str(raised.value)


def test_unreadable_file_is_reported_by_name_and_scan_continues(tmp_path):
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    (tmp_path / "notes.txt").write_text("not dicom")
    folder = PYDICOM_TEST_FILES / "dicomdirtests" / "98892001" / "CT5N"
    for path in folder.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    scan = scan_folder(tmp_path)
    assert len(scan.instances) == 5
    assert len(scan.errors) == 1 and "broken.dcm" in str(scan.errors[0])


def test_sort_slices_uses_the_normal_not_z():
    orientation = tuple(oblique_orientation(90.0, 0.0))  # sagittal-like: normal is not +z
    normal = np.cross(orientation[:3], orientation[3:])
    planes = [SlicePlane(tuple(normal * d), orientation, (1.0, 1.0)) for d in (5.0, -3.0, 1.0)]
    assert sort_slices(planes) == [1, 2, 0]
    matrix, report = ijk_to_ras_from_slices([planes[i] for i in sort_slices(planes)])
    assert report.slice_spacing == pytest.approx(4.0)


def test_index_cache_reuses_unchanged_files_and_rereads_changed_ones(tmp_path):
    from SarcomaLungLiverBrowserLib.formats.index_cache import IndexCache

    folder = PYDICOM_TEST_FILES / "dicomdirtests" / "98892001" / "CT5N"
    data = tmp_path / "data"
    data.mkdir()
    for path in folder.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    (data / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    (data / "README.txt").write_text("not dicom")
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        first = scan_folder(data, cache=cache)
        assert len(first.instances) == 5 and len(first.errors) == 1
        again = scan_folder(data, cache=cache)
        assert sorted(i.sop_instance_uid for i in again.instances) == sorted(i.sop_instance_uid for i in first.instances)
        assert again.instances[0] == first.instances[0]
        assert len(again.errors) == 1 and "broken.dcm" in str(again.errors[0])
        # A changed file is read again: replace one slice by a copy of another.
        victim = sorted(data.glob("[0-9]*"))[0]
        donor = sorted(data.glob("[0-9]*"))[1]
        victim.write_bytes(donor.read_bytes())
        changed = scan_folder(data, cache=cache)
        uids = [i.sop_instance_uid for i in changed.instances]
        assert len(uids) == 5 and len(set(uids)) == 4


def test_header_longer_than_the_read_prefix_is_read_whole(tmp_path):
    from SarcomaLungLiverBrowserLib.formats import dicom_series

    positions = [[0.0, 0.0, z] for z in (0.0, 2.0)]
    spec = SeriesSpec(
        patient_id="LONG", study_instance_uid="1.2.8", series_instance_uid="1.2.8.1", frame_of_reference_uid="1.2.8.9",
        modality="CT", series_number=1, series_description="long header", stored_values=np.zeros((2, 4, 4), np.int16),
        positions=positions, extra={"ImageComments": "x" * (dicom_series.HEADER_PREFIX_BYTES + 100)},
    )
    written = write_series(spec, tmp_path)
    header = read_header(written.paths[1])
    assert header.image_position == (0.0, 0.0, 2.0) and header.pixel_spacing == (1.0, 1.0)


def test_fast_header_reader_agrees_with_pydicom_on_every_file_it_accepts():
    """The raw reader must give the same header as pydicom wherever it does not defer to it."""
    import warnings

    from SarcomaLungLiverBrowserLib.formats.dicom_series import header_from_dataset, header_from_raw
    from SarcomaLungLiverBrowserLib.formats.fast_header import read_raw_header

    accepted = 0
    for path in sorted(p for p in PYDICOM_TEST_FILES.rglob("*") if p.is_file()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                expected = header_from_dataset(pydicom.dcmread(str(path), stop_before_pixels=True), path)
            except Exception:
                continue
        data = path.read_bytes()
        values = read_raw_header(data[:16384], len(data) <= 16384)
        if values is None:
            continue
        accepted += 1
        assert header_from_raw(values, path) == expected, path
    assert accepted >= 20


@pytest.mark.parametrize("orientation, words", [
    ((2.0, 0.0, 0.0, 0.0, 2.0, 0.0), "not 1"),                     # doubled vectors: loaded with doubled pixel size
    ((1.0, 0.0, 0.0, 0.0, 0.9, 0.1), "not 1"),                     # one axis short
    ((1.0, 0.0, 0.0, 0.1736482, 0.9848078, 0.0), "not 90"),        # unit axes 80 degrees apart (skewed)
    ((1.0, 0.0, 0.0, 1.0, 0.0, 0.0), "parallel"),                  # parallel axes
])
def test_invalid_orientation_is_refused_naming_the_file(tmp_path, orientation, words):
    """ImageOrientationPatient must be two orthogonal unit vectors (within 1e-3); never rescaled silently."""
    from SarcomaLungLiverBrowserLib.formats.dicom_series import split_stackable

    spec = SeriesSpec(
        patient_id="IOP", study_instance_uid="1.2.8", series_instance_uid="1.2.8.1", frame_of_reference_uid="1.2.8.9",
        modality="CT", series_number=1, series_description="iop", stored_values=np.zeros((3, 4, 4), np.int16),
        positions=[[0, 0, 0], [0, 0, 2], [0, 0, 4]],
        per_instance_extra={1: {"ImageOrientationPatient": [f"{v:.7g}" for v in orientation]}},
    )
    written = write_series(spec, tmp_path)
    headers = [read_header(path) for path in written.paths]
    with pytest.raises(Exception) as raised:
        read_series(headers)
    assert str(written.paths[1]) in str(raised.value) and words in str(raised.value)
    kept, left_out = split_stackable(headers)
    assert [Path(error.path) for error in left_out] == [written.paths[1]] and words in str(left_out[0])
    # Every file doubled: refused as a whole, not loaded with 2x pixel size.
    for index in (0, 2):
        spec.per_instance_extra[index] = {"ImageOrientationPatient": [f"{v:.7g}" for v in orientation]}
    written = write_series(spec, tmp_path / "all")
    with pytest.raises(Exception) as raised:
        read_series([read_header(path) for path in written.paths])
    assert words in str(raised.value)


def test_orientation_within_tolerance_is_accepted():
    from SarcomaLungLiverBrowserLib.geometry import ORIENTATION_TOLERANCE, orientation_problem

    assert orientation_problem((1.0, 0.0, 0.0, 0.0, 0.9999995, -0.000999)) is None
    assert ORIENTATION_TOLERANCE == 1e-3
    assert orientation_problem((1.0, 0.0, 0.0, 0.0, 1.002, 0.0)) is not None


def test_slice_grid_holds_mixed_steps_on_their_common_divisor():
    """Steps of 2.5 and 1.25 mm: a 1.25 mm grid holds every slice exactly; unsorted planes are refused."""
    from SarcomaLungLiverBrowserLib.geometry import IrregularSlices, slice_grid

    orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    planes = [SlicePlane((0.0, 0.0, z), orientation, (0.5, 0.5)) for z in (0.0, 2.5, 3.75, 5.0, 7.5)]
    grid = slice_grid(planes)
    assert grid.report.slice_spacing == pytest.approx(1.25)
    assert grid.slice_indices == [0, 2, 3, 4, 6] and grid.report.empty_slices == [1, 5]
    for plane, k in zip(planes, grid.slice_indices):
        assert np.allclose(apply_matrix(grid.ijk_to_ras, [0, 0, k]), lps_to_ras(plane.position), atol=1e-9)
    with pytest.raises(IrregularSlices):
        slice_grid([planes[1], planes[0]])
