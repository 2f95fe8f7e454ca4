"""RTSTRUCT reading and rasterisation: pydicom's test file, synthetic polygons, mirp's real STS subset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom.data
import pytest

from conftest import require_shared_data

from SarcomaLungLiverBrowserLib.formats.dicom_series import group_by_series, read_series, scan_folder
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.geometry import LPS_TO_RAS
from SarcomaLungLiverBrowserLib.formats.rtstruct import (
    Contour, RoiContours, choose_reference_image, image_kind_hint, raster_findings, rasterize_roi,
    rasterize_roi_on_volume, read_rtstruct, roi_polygon_volume_mm3,
)

PYDICOM_RTSTRUCT = Path(pydicom.data.__file__).parent / "test_files" / "rtstruct.dcm"
MIRP_STS = Path("oncoray__mirp") / "test" / "data" / "sts_images"


def grid(origin_lps, spacing, shape):
    """IJK-to-RAS of an axis-aligned LPS grid: (i, j, k) grow along L, P, S."""
    ijk_to_lps = np.diag([spacing[0], spacing[1], spacing[2], 1.0])
    ijk_to_lps[:3, 3] = origin_lps
    return LPS_TO_RAS @ ijk_to_lps, tuple(shape)


def square(x0, y0, x1, y1, z):
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)


def in_plane_boundary_band(mask: np.ndarray) -> np.ndarray:
    """Voxels next to the contour on either side (4-neighbourhood within each slice)."""
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    neighbours = [padded[:, 2:, 1:-1], padded[:, :-2, 1:-1], padded[:, 1:-1, 2:], padded[:, 1:-1, :-2]]
    all_inside = np.logical_and.reduce(neighbours)
    any_inside = np.logical_or.reduce(neighbours)
    return (mask & ~all_inside) | (~mask & any_inside)


# ------------------------------------------------------------------------------------------ pydicom's file
def test_pydicom_rtstruct_reads_without_file_meta():
    structure = read_rtstruct(PYDICOM_RTSTRUCT)
    assert [roi.name for roi in structure.rois] == ["patient", "Isocenter 1", "Isocenter 2"]
    assert [roi.number for roi in structure.rois] == [1, 2, 3]
    assert structure.frame_of_reference_uid == "1.2.826.0.1.3680043.8.498.2010020400001.2"
    assert structure.referenced_series_uids == ["1.2.826.0.1.3680043.8.498.2010020400001.2.1.1"]
    patient = structure.rois[0]
    assert patient.color == pytest.approx((220 / 255, 160 / 255, 120 / 255))
    assert patient.interpreted_type == "EXTERNAL"
    assert [len(c.points) for c in patient.contours] == [5, 6, 6]
    assert [c.points[0, 2] for c in patient.contours] == [-200.0, -190.0, -180.0]
    assert [c.geometric_type for c in structure.rois[1].contours] == ["POINT"]


def test_pydicom_rtstruct_rasterises_to_its_rectangles():
    # The 'patient' ROI is the rectangle x -200..200, y -150..150 on z = -200, -190, -180.
    structure = read_rtstruct(PYDICOM_RTSTRUCT)
    ijk_to_ras, shape = grid((-195.0, -145.0, -200.0), (10.0, 10.0, 10.0), (3, 30, 40))
    result = rasterize_roi(structure.rois[0], shape, ijk_to_ras)
    assert result.mask.all()
    assert result.slices_used == [0, 1, 2]
    assert roi_polygon_volume_mm3(structure.rois[0], 10.0) == pytest.approx(3 * 400 * 300 * 10)
    point = rasterize_roi(structure.rois[1], shape, ijk_to_ras)
    assert not point.mask.any() and point.other_types == {"POINT": 1}
    checks = [f.check for f in raster_findings(structure, structure.rois[1], point, "rt")]
    assert checks == ["rt.not_a_surface"]


def test_non_dicom_file_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("not dicom at all")
    with pytest.raises(DataError, match="notes.dcm"):
        read_rtstruct(path)


# ------------------------------------------------------------------------------------------ synthetic polygons
def test_hole_is_xor_and_bad_contours_are_reported():
    ijk_to_ras, shape = grid((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), (4, 20, 20))
    roi = RoiContours(1, "GTV", (1.0, 0.0, 0.0), contours=[
        Contour(square(1.5, 1.5, 11.5, 11.5, 2.0), "CLOSED_PLANAR", index=0),   # 10x10 centres 2..11
        Contour(square(4.5, 4.5, 8.5, 8.5, 2.0), "CLOSED_PLANAR", index=1),     # hole: 4x4 centres 5..8
        Contour(square(1.5, 1.5, 5.5, 5.5, 4.3), "CLOSED_PLANAR", index=2),     # 0.3 mm off slice 2: kept
        Contour(square(1.5, 1.5, 5.5, 5.5, 9.0), "CLOSED_PLANAR", index=3),     # 3 mm beyond the last slice
        Contour(np.array([[1.0, 1.0, 0.0], [5.0, 5.0, 0.0]]), "CLOSED_PLANAR", index=4),  # 2 points
        Contour(np.array([[1.0, 1.0, 0.0], [5.0, 1.0, 4.0], [5.0, 5.0, 2.0]]), "CLOSED_PLANAR", index=5),
        Contour(square(30.5, 30.5, 40.5, 40.5, 0.0), "CLOSED_PLANAR", index=6),  # outside the image
    ])
    result = rasterize_roi(roi, shape, ijk_to_ras)
    assert result.mask[1].sum() == 100 - 16
    assert not result.mask[1, 5:9, 5:9].any() and result.mask[1, 2:12, 2:12].sum() == 84
    assert result.mask[2].sum() == 16 and result.mask[2, 2:6, 2:6].all()
    assert result.voxel_count == 100
    assert result.too_few_points == [4]
    assert [index for index, _ in result.off_slice] == [3]
    assert result.off_slice[0][1] == pytest.approx(3.0)
    assert result.not_parallel == [5]
    assert result.outside_image == [6]
    checks = {f.check for f in raster_findings_for(roi, result)}
    assert {"x.too_few_points", "x.contour_off_slice", "x.contour_not_parallel", "x.contour_outside_image"} <= checks
    # Polygon volume: (100 - 16 + 16 + 16) x 1 x 1 mm² x 2 mm, minus nothing for the skipped ones.
    assert roi_polygon_volume_mm3(
        RoiContours(1, "GTV", (1, 0, 0), contours=roi.contours[:3]), 2.0) == pytest.approx((100 - 16 + 16) * 2.0)


def raster_findings_for(roi, result):
    from SarcomaLungLiverBrowserLib.formats.rtstruct import StructureSet

    structure = StructureSet(Path("RS.dcm"), "", "", "", "", "", "", "", "", [], [], set(), set(), set(), [roi])
    return raster_findings(structure, roi, result, "x")


def test_irregular_slices_use_real_positions():
    # Slices at z = 0, 2, 6 (one missing); the matrix alone would put z = 6 at k = 3.
    ijk_to_ras, shape = grid((0.0, 0.0, 0.0), (1.0, 1.0, 2.0), (3, 8, 8))
    roi = RoiContours(1, "GTV", (1.0, 0.0, 0.0), contours=[Contour(square(0.5, 0.5, 3.5, 3.5, 6.0), "CLOSED_PLANAR")])
    result = rasterize_roi(roi, shape, ijk_to_ras, slice_positions=[0.0, 2.0, 6.0])
    assert result.slices_used == [2] and result.mask[2].sum() == 9
    # z = 4 falls in the gap: 2 mm from both neighbours, more than half their spacing.
    gap = RoiContours(1, "GTV", (1.0, 0.0, 0.0), contours=[Contour(square(0.5, 0.5, 3.5, 3.5, 4.0), "CLOSED_PLANAR")])
    result = rasterize_roi(gap, shape, ijk_to_ras, slice_positions=[0.0, 2.0, 6.0])
    assert not result.mask.any() and [index for index, _ in result.off_slice] == [0]


@pytest.mark.parametrize("text, expected", [
    ("RTstruct_AlignedT!toPET", ("T1", True)), ("RTStruct_PET", ("PET", False)), ("RTstruct_CT", ("CT", False)),
    ("RTstruct_Aligned_STIRtoPET", ("STIR", True)), ("RTstruct_T2FS", ("T2FS", False)),
    ("AXIAL SE T2 FAT SAT - RESEARCH", ("T2FS", False)), ("IBSI_1_STS_001_MR_T1_mask", ("T1", False)),
    ("GTV_Mass_CT", ("CT", False)),
])
def test_image_kind_hints(text, expected):
    assert image_kind_hint(text) == expected


# ------------------------------------------------------------------------------------------ mirp's real subset
@pytest.mark.parametrize("patient", ["STS_001", "STS_002", "STS_003"])
def test_mirp_rtstruct_matches_its_mask_nifti(external_data, patient):
    """Real TCIA STS data re-exported by mirp: its RS.dcm references SOP UIDs of the original
    267-slice CT that are not on disk, and CT, T1 and PET share one frame of reference.

    Bound: a voxel is in the mask when its centre is inside the polygon. A contour edge that
    cuts a voxel leaves at most half of the voxel on the far side of its centre, so the
    rasterised volume differs from the polygon volume by at most half a voxel per voxel on the
    contour; those voxels lie in the in-plane boundary band, hence
    |V_polygon − V_mask| ≤ ½ · N_band · v_voxel. The rasterisation itself is compared with
    mirp's mask voxel by voxel (same centre rule), and its volume within the same bound.
    """
    nibabel = pytest.importorskip("nibabel")
    base = external_data / MIRP_STS / patient
    if not base.is_dir():
        require_shared_data(f"{base} not present")
    scan = scan_folder(base)
    images = [i for i in scan.instances if i.modality != "RTSTRUCT"]
    volumes = [read_series(series) for series in group_by_series(images).values()]
    modalities = {"CT": "CT", "MR_T1": "MR", "PET": "PT"}
    for folder, modality in modalities.items():
        structure = read_rtstruct(base / folder / "dicom" / "mask" / "RS.dcm")
        on_disk = {i.sop_instance_uid for i in images}
        assert structure.referenced_sop_instance_uids and not (structure.referenced_sop_instance_uids & on_disk)
        choice = choose_reference_image(structure, volumes)
        assert choice is not None and choice.method == "frame_of_reference" and not choice.ambiguous
        volume = volumes[choice.index]
        assert volume.modality == modality
        roi = structure.rois[0]
        assert roi.name.startswith("GTV_Mass")
        result = rasterize_roi_on_volume(roi, volume)
        assert not (result.too_few_points or result.off_slice or result.not_parallel or result.outside_image)

        nifti = nibabel.load(str(base / folder / "nifti" / "mask" / "mask.nii.gz"))
        assert np.allclose(nifti.affine, volume.ijk_to_ras, atol=1e-3)  # same grid, same RAS
        reference = np.transpose(np.asarray(nifti.dataobj) > 0, (2, 1, 0))
        assert reference.shape == result.mask.shape
        voxel = float(np.prod(np.linalg.norm(volume.ijk_to_ras[:3, :3], axis=0)))
        v_mask = reference.sum() * voxel
        band = in_plane_boundary_band(reference).sum()
        bound = 0.5 * band * voxel
        v_contour = result.voxel_count * voxel
        v_polygon = roi_polygon_volume_mm3(roi, float(np.linalg.norm(volume.ijk_to_ras[:3, 2])))
        assert abs(v_polygon - v_mask) <= bound, (folder, v_polygon, v_mask, bound)
        assert abs(v_contour - v_mask) <= bound, (folder, v_contour, v_mask, bound)
        agreement = 2 * np.count_nonzero(result.mask & reference) / (result.voxel_count + reference.sum())
        assert agreement >= 0.999, (folder, agreement)
