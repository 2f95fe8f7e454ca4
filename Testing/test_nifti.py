"""NIfTI reader: placement as Slicer/ITK place voxels, nibabel's orientation test files, bad files."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any, Optional

import nibabel as nib
import numpy as np
import pytest
import slicer
import vtk

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats.nifti import (
    Grid,
    count_outside_grid,
    read_nifti,
    read_nifti_geometry,
    resample_mask_to_grid,
    same_grid,
    voxel_centres_ras,
)
from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder, array_from_vtk_matrix

NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"

#: nibabel's orientation edge cases: file -> (volume to read, NaNs expected).
NIBABEL_FILES = {
    "anatomical.nii": (None, False),  # LAS, big-endian int16, q/s codes 2/2
    "standard.nii.gz": (None, False),  # qform code 0, sform code 2
    "example4d.nii.gz": (1, False),  # 4-D, two volumes
    "reoriented_anat_moved.nii": (None, False),  # RAS, big-endian float32
    "resampled_anat_moved.nii": (None, True),  # LAS, contains NaNs
    "functional.nii": (7, False),  # 4-D, 20 volumes
}

#: A sagittal (P, S, R) matrix like ISPY1's: i -> -y, j -> +z, k -> +x.
SAGITTAL = np.array([[0, 0, 2.0, 10.0], [-1.5, 0, 0, 20.0], [0, 1.5, 0, -30.0], [0, 0, 0, 1.0]])


def nibabel_data(path: Path, volume: Optional[int]) -> np.ndarray:
    data = np.asanyarray(nib.load(str(path)).dataobj)
    return data[..., volume] if volume is not None else data


def sample_indices(shape_kji, count: int = 40, seed: int = 3) -> np.ndarray:
    """Corner voxels plus random ones, as (N, 3) [k, j, i]."""
    random = np.random.default_rng(seed)
    corners = [[k, j, i] for k in (0, shape_kji[0] - 1) for j in (0, shape_kji[1] - 1) for i in (0, shape_kji[2] - 1)]
    others = np.stack([random.integers(0, n, count) for n in shape_kji], axis=1)
    return np.concatenate([np.array(corners), others])


# ---------------------------------------------------------------------------------------------- nibabel files


@pytest.mark.parametrize("name", sorted(NIBABEL_FILES))
def test_nibabel_file_lands_where_nibabel_puts_it(name: str, builder: SceneBuilder) -> None:
    volume_index, has_nan = NIBABEL_FILES[name]
    path = NIBABEL_DATA / name
    image = nib.load(str(path))
    volume = read_nifti(path, volume_index=volume_index, allow_nan=has_nan)

    np.testing.assert_allclose(volume.ijk_to_ras, image.affine, atol=1e-5)
    expected = nibabel_data(path, volume_index)
    if has_nan:
        assert any("NaN" in warning for warning in volume.warnings)
        expected = np.nan_to_num(expected, nan=0.0)
    assert volume.voxels.shape == expected.T.shape
    if volume.scaled:
        # nibabel scales to float64; the reader keeps float32 as Slicer does.
        assert volume.voxels.dtype == np.float32
        expected = expected.astype(np.float32)
    np.testing.assert_array_equal(volume.voxels, expected.T)
    assert volume.voxels.dtype.isnative

    node = builder.add_volume(name, volume.voxels, volume.ijk_to_ras)
    shape, node_matrix = SceneBuilder.volume_geometry(node)
    assert shape == volume.voxels.shape
    # Voxel -> RAS through the node's IJKToRAS equals nibabel's affine.
    indices = sample_indices(shape)
    ras_from_node = voxel_centres_ras(node_matrix, indices)
    ijk = indices[:, ::-1].astype(float)
    ras_from_nibabel = ijk @ image.affine[:3, :3].T + image.affine[:3, 3]
    np.testing.assert_allclose(ras_from_node, ras_from_nibabel, atol=1e-4)
    # The node's array is nibabel's data transposed.
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), expected.T)


def test_nan_file_is_an_error_naming_it_by_default() -> None:
    with pytest.raises(DataError, match=r"resampled_anat_moved\.nii: has 153 NaN"):
        read_nifti(NIBABEL_DATA / "resampled_anat_moved.nii")


@pytest.mark.parametrize("name", ["example4d.nii.gz", "functional.nii"])
def test_real_4d_file_needs_a_volume_index(name: str) -> None:
    with pytest.raises(DataError, match=rf"{name.replace('.', '[.]')}: is 4-D with \d+ volumes"):
        read_nifti(NIBABEL_DATA / name)
    with pytest.raises(DataError, match="does not exist"):
        read_nifti(NIBABEL_DATA / name, volume_index=99)


@pytest.mark.parametrize("name, kind", [("test.mgz", "MGHImage"), ("tiny.mnc", "Minc1Image"),
                                        ("analyze.hdr", "AnalyzeImage")])
def test_other_formats_are_not_nifti(name: str, kind: str) -> None:
    with pytest.raises(DataError, match=rf"{name.replace('.', '[.]')}: is a \w*{kind}, not a NIfTI file"):
        read_nifti(NIBABEL_DATA / name)


# ---------------------------------------------------------------------------------------------- vs Slicer's reader


def write_header_case(path: Path, data: np.ndarray, qform: np.ndarray, qform_code: int, sform: np.ndarray,
                      sform_code: int, slope: float = 1.0) -> Path:
    """A NIfTI with exactly these forms and codes (nibabel would rewrite them on a normal save)."""
    header = nib.Nifti1Header()
    header.set_data_dtype(data.dtype)
    header.set_data_shape(data.shape)
    header.set_qform(qform, int(qform_code))
    header.set_sform(sform, int(sform_code))
    header.set_zooms((1.5, 1.5, 2.0) + data.shape[3:])
    raw = bytearray(nib.Nifti1Image(data, None, header=header).to_bytes())
    if slope != 1.0:
        raw[112:120] = struct.pack("<ff", slope, 0.0)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(bytes(raw)))
    else:
        path.write_bytes(bytes(raw))
    return path


def load_with_slicer(headless: Any, path: Path) -> Any:
    return headless.logic("volumes").AddArchetypeVolume(str(path), "slicer reader", 0)


def assert_same_voxels_at_same_positions(volume, node) -> None:
    """Every voxel of ``volume`` has the same value as Slicer's voxel at its RAS position."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    slicer_matrix = array_from_vtk_matrix(matrix)
    slicer_array = slicer.util.arrayFromVolume(node)
    indices = np.argwhere(np.ones(volume.voxels.shape, dtype=bool))
    ras = voxel_centres_ras(volume.ijk_to_ras, indices)
    slicer_ijk = (ras - slicer_matrix[:3, 3]) @ np.linalg.inv(slicer_matrix[:3, :3]).T
    np.testing.assert_allclose(slicer_ijk, np.rint(slicer_ijk), atol=1e-3)
    i, j, k = np.rint(slicer_ijk).astype(int).T
    assert slicer_array.shape == volume.voxels.shape
    np.testing.assert_array_equal(slicer_array[k, j, i], volume.voxels[tuple(indices.T)])


SHIFTED = SAGITTAL.copy()
SHIFTED[:3, 3] += 5.0
STRETCHED = SAGITTAL.copy()
STRETCHED[:3, 0] *= 1.5
SHEARED = SAGITTAL.copy()
SHEARED[0, 1] = 0.7

#: name -> (qform, qform code, sform, sform code, matrix Slicer uses, source).
HEADER_CASES = {
    "no_codes": (SAGITTAL, 0, SAGITTAL, 0, np.diag([-1.5, -1.5, 2.0, 1.0]), "default"),
    "qform_only": (SAGITTAL, 1, SHIFTED, 0, SAGITTAL, "qform"),
    "sform_scanner_differs": (SAGITTAL, 1, SHIFTED, 1, SHIFTED, "sform"),
    "sform_aligned_differs": (SAGITTAL, 1, SHIFTED, 2, SAGITTAL, "qform"),
    "sform_talairach_differs": (SAGITTAL, 2, SHIFTED, 3, SAGITTAL, "qform"),
    "sform_scale_not_pixdim": (SAGITTAL, 0, STRETCHED, 1, SAGITTAL, "sform"),
    "sform_shear_with_qform": (SAGITTAL, 1, SHEARED, 1, SAGITTAL, "qform"),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_matrix_choice_matches_slicer_reader(case: str, headless, tmp_path: Path) -> None:
    qform, qform_code, sform, sform_code, expected, source = HEADER_CASES[case]
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = write_header_case(tmp_path / f"{case}.nii", data, qform, qform_code, sform, sform_code)
    volume = read_nifti(path)
    assert volume.affine_source == source
    np.testing.assert_allclose(volume.ijk_to_ras, expected, atol=1e-5)
    np.testing.assert_array_equal(volume.voxels, data.T)
    node = load_with_slicer(headless, path)
    assert node is not None
    assert_same_voxels_at_same_positions(volume, node)


@pytest.mark.parametrize("name", ["anatomical.nii", "standard.nii.gz", "reoriented_anat_moved.nii"])
def test_nibabel_files_match_slicer_reader(name: str, headless) -> None:
    volume = read_nifti(NIBABEL_DATA / name)
    assert_same_voxels_at_same_positions(volume, load_with_slicer(headless, NIBABEL_DATA / name))


def test_sheared_sform_without_qform_is_refused_like_slicer(tmp_path: Path) -> None:
    data = np.zeros((4, 5, 6), dtype=np.int16)
    path = write_header_case(tmp_path / "shear.nii", data, SAGITTAL, 0, SHEARED, 1)
    with pytest.raises(DataError, match=r"shear\.nii: has an sform with shear"):
        read_nifti(path)


def test_scaled_uint8_mask_reads_as_zero_one_like_slicer(headless, tmp_path: Path) -> None:
    data = np.zeros((4, 5, 6), dtype=np.uint8)
    data[1:3, 2:4, 3:5] = 255
    path = write_header_case(tmp_path / "ftv.nii.gz", data, SAGITTAL, 1, SAGITTAL, 1,
                             slope=float(np.float32(1 / 255)))
    volume = read_nifti(path)
    assert volume.disk_dtype == np.uint8 and volume.voxels.dtype == np.float32
    assert volume.slope == pytest.approx(1 / 255, rel=1e-6)
    assert set(np.unique(volume.voxels)) == {0.0, 1.0}
    np.testing.assert_array_equal(volume.voxels != 0, (data != 0).T)
    assert_same_voxels_at_same_positions(volume, load_with_slicer(headless, path))


def test_single_volume_4d_and_2d_files_load(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6, 1)
    path = write_header_case(tmp_path / "one.nii", data, SAGITTAL, 1, SAGITTAL, 1)
    volume = read_nifti(path)
    assert volume.shape == (6, 5, 4) and volume.volumes == 1
    np.testing.assert_array_equal(volume.voxels, data[..., 0].T)
    flat = nib.Nifti1Image(np.arange(12, dtype=np.int16).reshape(3, 4), np.eye(4))
    nib.save(flat, tmp_path / "flat.nii")
    assert read_nifti(tmp_path / "flat.nii").voxels.shape == (1, 4, 3)


def test_vector_data_is_refused(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5, 1, 3), dtype=np.float32), np.eye(4)), tmp_path / "vec.nii")
    with pytest.raises(DataError, match=r"vec\.nii: has 5-D data"):
        read_nifti(tmp_path / "vec.nii")


# ---------------------------------------------------------------------------------------------- bad files


@pytest.fixture
def good_nifti(tmp_path: Path) -> Path:
    data = np.arange(20 * 20 * 10, dtype=np.int16).reshape(20, 20, 10)
    return write_header_case(tmp_path / "good.nii", data, SAGITTAL, 1, SAGITTAL, 1)


def test_truncated_uncompressed_file(good_nifti: Path) -> None:
    cut = good_nifti.with_name("cut.nii")
    cut.write_bytes(good_nifti.read_bytes()[:2000])
    with pytest.raises(DataError, match=r"cut\.nii: is truncated: 2000 bytes on disk, the header needs 8352"):
        read_nifti(cut)


def test_truncated_compressed_file(good_nifti: Path) -> None:
    compressed = gzip.compress(good_nifti.read_bytes())
    cut = good_nifti.with_name("cut.nii.gz")
    cut.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match=r"cut\.nii\.gz: .*(truncated|damaged)"):
        read_nifti(cut)
    header_only = good_nifti.with_name("stub.nii.gz")
    header_only.write_bytes(compressed[:40])
    with pytest.raises(DataError, match=r"stub\.nii\.gz"):
        read_nifti(header_only)


@pytest.mark.parametrize("content, problem", [(b"", "is empty"), (b"not an image at all\n" * 40, "not a NIfTI file")])
def test_non_nifti_content(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "ISPY1_1002.nii.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=rf"ISPY1_1002\.nii\.gz: .*{problem}"):
        read_nifti(path)


def test_missing_file_and_missing_image_half(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent\.nii: does not exist"):
        read_nifti(tmp_path / "absent.nii")
    with pytest.raises(DataError, match=r"nifti1\.hdr: its image data file is missing"):
        read_nifti(NIBABEL_DATA / "nifti1.hdr")


def test_geometry_without_voxels(good_nifti: Path) -> None:
    geometry = read_nifti_geometry(good_nifti)
    assert geometry.shape == (10, 20, 20)
    assert geometry.axis_codes == ("P", "S", "R")
    np.testing.assert_allclose(geometry.ijk_to_ras, SAGITTAL, atol=1e-6)


# ---------------------------------------------------------------------------------------------- grids


def test_same_grid() -> None:
    grid = Grid((10, 20, 30), SAGITTAL)
    moved = SAGITTAL.copy()
    moved[0, 3] += 0.01
    assert same_grid(grid, ((10, 20, 30), SAGITTAL.copy()))
    assert not same_grid(grid, Grid((10, 20, 31), SAGITTAL))
    assert not same_grid(grid, Grid((10, 20, 30), moved))
    assert same_grid(grid, Grid((10, 20, 30), moved), tol=0.02)
    # Same corners reached with a reversed axis is a different grid (voxel order differs).
    flipped = SAGITTAL.copy()
    flipped[:3, 2] *= -1
    flipped[:3, 3] += SAGITTAL[:3, 2] * 9
    assert not same_grid(grid, Grid((10, 20, 30), flipped))


def test_resample_mask_between_native_and_1mm_grids() -> None:
    """A box given in mm lands on the voxels whose centres lie in it, on both grids."""
    origin = np.array([40.1, 106.2, -88.2])
    native = np.array([[0, 0, 2.0, 0], [-0.78125, 0, 0, 0], [0, 0.78125, 0, 0], [0, 0, 0, 1]])
    native[:3, 3] = origin
    one_mm = np.array([[0, 0, 1.0, 0], [-1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])
    one_mm[:3, 3] = origin
    source = np.zeros((40, 50, 50), dtype=bool)  # [k, j, i] on the 1 mm grid
    source[10:20, 12:30, 5:25] = True
    moved = resample_mask_to_grid(source, one_mm, (20, 64, 64), native)
    # Independent nearest-neighbour: each native voxel centre -> nearest 1 mm index.
    indices = np.argwhere(np.ones((20, 64, 64), dtype=bool))
    ras = voxel_centres_ras(native, indices)
    ijk = np.floor((ras - origin) @ np.linalg.inv(one_mm[:3, :3]).T + 0.5).astype(int)
    inside = np.all((ijk >= 0) & (ijk < [50, 50, 40]), axis=1)
    expected = np.zeros(len(indices), dtype=bool)
    expected[inside] = source[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]]
    np.testing.assert_array_equal(moved, expected.reshape(20, 64, 64))
    # Same grid: unchanged.
    np.testing.assert_array_equal(resample_mask_to_grid(source, one_mm, source.shape, one_mm), source)


def test_count_outside_grid() -> None:
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[0, 0, 0:3] = True  # i = 0, 1, 2
    shifted = np.eye(4)
    shifted[0, 3] = 2.0  # target grid starts 2 mm further along x = i
    assert count_outside_grid(mask, np.eye(4), (4, 4, 4), shifted) == 2
    assert count_outside_grid(mask, np.eye(4), (4, 4, 4), np.eye(4)) == 0
