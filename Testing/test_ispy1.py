"""ISPY1-Tumor-SEG-Radiomics: published tree, NIfTI geometry, masks as segments, QA metrics, bad files."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Dict, List

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import slicer

from SarcomaLungLiverBrowserLib.collections.ispy1 import (
    Ispy1Collection,
    dice_coefficient,
    find_volume_columns,
    hausdorff_distance,
    mask_volume_cm3,
    surface_voxels,
)
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats.nifti import read_nifti, voxel_centres_ras
from SarcomaLungLiverBrowserLib.registry import LoadedCase, open_collection
from SarcomaLungLiverBrowserLib.samples import ispy1 as sample
from SarcomaLungLiverBrowserLib.scene.builder import SUBJECT_HIERARCHY_UID_NAME, SceneBuilder, segment_mask


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample.generate(tmp_path_factory.mktemp("ispy1"))


@pytest.fixture
def collection_copy(generated: Path, tmp_path: Path) -> Path:
    """A private copy of the sample, for tests that damage files."""
    return Path(shutil.copytree(generated, tmp_path / generated.name))


def nifti_files(root: Path) -> Path:
    return root / "NIfTI-Files"


def load(root: Path, builder: SceneBuilder, case_id: str) -> LoadedCase:
    collection = Ispy1Collection(root)
    return collection.load_case(collection.find_case(case_id), builder)


def findings(result: LoadedCase, check: str) -> List:
    return [finding for finding in result.findings if finding.check == check]


# ---------------------------------------------------------------------------------------------- sample


def test_sample_has_published_layout_and_header_quirks(generated: Path) -> None:
    files = nifti_files(generated)
    for case in sample.CASES:
        cid = case.case_id
        for phase in ("0000", "0001", "0002"):
            native = files / "images_bias-corrected_nifti" / cid / f"{cid}_DCE_{phase}_N3.nii.gz"
            zscored = files / "images_bias-corrected_resampled_zscored_nifti" / cid / f"{cid}_DCE_{phase}_N3_zscored.nii.gz"
            native_header, zscored_header = nib.load(str(native)).header, nib.load(str(zscored)).header
            assert native_header.get_data_dtype() == np.int16
            assert (int(native_header["qform_code"]), int(native_header["sform_code"])) == (1, 1)
            assert nib.load(str(native)).dataobj.offset == 2672  # header extension, as the real files
            assert zscored_header.get_data_dtype() == np.float32
            assert (int(zscored_header["qform_code"]), int(zscored_header["sform_code"])) == (1, 0)
        manual = nib.load(str(files / "masks_stv_manual" / f"{cid}.nii.gz"))
        resunet = nib.load(str(files / "masks_stv_resunet" / f"{cid}.nii.gz"))
        ftv = nib.load(str(files / "masks_ftv" / f"{cid}.nii.gz"))
        assert manual.get_data_dtype() == np.float32 and int(manual.header["sform_code"]) == 0
        assert resunet.get_data_dtype() == np.float32 and int(resunet.header["sform_code"]) == 1
        assert ftv.get_data_dtype() == np.uint8
        assert ftv.dataobj.slope == pytest.approx(1 / 255, rel=1e-6)
        assert set(np.unique(ftv.dataobj.get_unscaled())) == {0, 255}
        for image in (manual, resunet, ftv):
            assert nib.aff2axcodes(image.affine) == ("P", "S", "R")
        # Same origin and same physical extent on both grids.
        np.testing.assert_allclose(manual.affine[:3, 3], ftv.affine[:3, 3], atol=1e-4)
        extent_native = np.array(ftv.shape) * np.array(ftv.header.get_zooms()[:3])
        extent_1mm = np.array(manual.shape) * np.array(manual.header.get_zooms()[:3])
        np.testing.assert_allclose(extent_native, extent_1mm)
    table = pd.read_excel(generated / "ISPY_DataPaper_features.xlsx")
    assert table.columns[0] == "SubjectID" and table["SubjectID"].tolist()[:3] == [1002, 1005, 1010]
    parameters = pd.read_csv(generated / "captk_parameter_file_ispy1.csv")
    assert list(parameters.columns) == ["FeatureName", "ParamName", "Type", "Range", "Default", "Comments"]


def test_masks_have_several_components(generated: Path) -> None:
    for folder in ("masks_stv_manual", "masks_stv_resunet", "masks_ftv"):
        data = np.asanyarray(nib.load(str(nifti_files(generated) / folder / "ISPY1_1002.nii.gz")).dataobj) > 0
        assert count_components(data) >= 2, folder


def count_components(mask: np.ndarray) -> int:
    """6-connected components by flood fill (test helper, independent of the library)."""
    seen = np.zeros_like(mask, dtype=bool)
    count = 0
    for start in map(tuple, np.argwhere(mask)):
        if seen[start]:
            continue
        count += 1
        stack = [start]
        seen[start] = True
        while stack:
            point = stack.pop()
            for axis in range(3):
                for step in (-1, 1):
                    neighbour = list(point)
                    neighbour[axis] += step
                    neighbour = tuple(neighbour)
                    if all(0 <= n < s for n, s in zip(neighbour, mask.shape)) and mask[neighbour] and not seen[neighbour]:
                        seen[neighbour] = True
                        stack.append(neighbour)
    return count


# ---------------------------------------------------------------------------------------------- discovery


@pytest.mark.parametrize("level", ["collection", "nifti", "parent"])
def test_detect_and_discover_from_any_level(generated: Path, level: str) -> None:
    root = {"collection": generated, "nifti": nifti_files(generated), "parent": generated.parent}[level]
    assert Ispy1Collection.detect(root)
    assert open_collection(root, "ispy1").key == "ispy1"
    cases = Ispy1Collection(root).discover_cases()
    assert [case.case_id for case in cases] == [case.case_id for case in sample.CASES]
    first = cases[0]
    assert set(first.native) == {"DCE_0000", "DCE_0001", "DCE_0002"}
    assert first.features.name == "ISPY_DataPaper_features.xlsx"
    assert first.captk.name == "captk_parameter_file_ispy1.csv"
    assert first.summary["missing"] == ""


def test_not_detected_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    assert not Ispy1Collection.detect(tmp_path)


def test_uncompressed_and_unsuffixed_names_are_accepted(collection_copy: Path, builder: SceneBuilder) -> None:
    """The openmedlab listing shows ``.nii`` files and no ``_zscored`` suffix."""
    files = nifti_files(collection_copy)
    for path in list(files.rglob("ISPY1_1005*.nii.gz")):
        name = path.name.replace("_zscored", "")[: -len(".gz")]
        path.with_name(name).write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    case = Ispy1Collection(collection_copy).find_case("ispy1_1005")
    assert case.zscored["DCE_0001"].name == "ISPY1_1005_DCE_0001_N3.nii"
    assert case.stv_manual.name == "ISPY1_1005.nii"
    result = load(collection_copy, builder, "ISPY1_1005")
    assert result.metrics["stv_dice"] == pytest.approx(sample.EXPECTED["ISPY1_1005"]["dice"], abs=1e-6)


# ---------------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("case_id", ["ISPY1_1002", "ISPY1_1005"])
def test_known_overlap_gives_expected_dice_and_hausdorff(generated: Path, builder: SceneBuilder, case_id: str) -> None:
    result = load(generated, builder, case_id)
    expected = sample.EXPECTED[case_id]
    assert result.metrics["stv_dice"] == pytest.approx(expected["dice"], abs=1e-6)
    assert result.metrics["stv_hausdorff_mm"] == pytest.approx(expected["hausdorff_mm"], abs=1e-6)
    assert result.metrics["volume_cm3"]["STV manual"] == pytest.approx(expected["manual_voxels"] / 1000, abs=1e-9)
    assert not [finding for finding in result.findings if finding.severity != "info"]


def test_false_positive_case_dice_hausdorff_and_background(generated: Path, builder: SceneBuilder) -> None:
    result = load(generated, builder, "ISPY1_1010")
    expected = sample.EXPECTED["ISPY1_1010"]
    assert result.metrics["stv_dice"] == pytest.approx(expected["dice"], abs=1e-6)
    manual = read_nifti(nifti_files(generated) / "masks_stv_manual" / "ISPY1_1010.nii.gz")
    resunet = read_nifti(nifti_files(generated) / "masks_stv_resunet" / "ISPY1_1010.nii.gz")
    brute = brute_force_hausdorff(manual.voxels > 0, resunet.voxels > 0, manual.ijk_to_ras)
    assert result.metrics["stv_hausdorff_mm"] == pytest.approx(brute, abs=1e-6)
    background = findings(result, "ispy1.mask_in_background")
    assert len(background) == 1 and background[0].severity == "warning"
    assert background[0].segment_id == "STV_ResUNet"
    box = sample.CASES[2].false_positive
    assert background[0].value == pytest.approx(np.prod([b - a for a, b in box]) / expected["resunet_voxels"])


def brute_force_hausdorff(a: np.ndarray, b: np.ndarray, ijk_to_ras: np.ndarray) -> float:
    """Symmetric Hausdorff over all pairs of surface voxel centres, surfaces found voxel by voxel."""
    def surface(mask: np.ndarray) -> np.ndarray:
        points = []
        for k, j, i in np.argwhere(mask):
            for dk, dj, di in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
                n = (k + dk, j + dj, i + di)
                if not all(0 <= v < s for v, s in zip(n, mask.shape)) or not mask[n]:
                    points.append((k, j, i))
                    break
        return voxel_centres_ras(ijk_to_ras, np.array(points))

    pa, pb = surface(a), surface(b)
    distances = np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=2)
    return float(max(distances.min(axis=1).max(), distances.min(axis=0).max()))


def test_volumes_segments_and_hierarchy(generated: Path, builder: SceneBuilder) -> None:
    result = load(generated, builder, "ISPY1_1002")
    files = nifti_files(generated)
    names = [node.GetName() for node in result.volumes]
    assert names == [
        "ISPY1_1002 DCE_0000 pre-contrast (N3)",
        "ISPY1_1002 DCE_0001 early post-contrast (N3)",
        "ISPY1_1002 DCE_0002 late post-contrast (N3)",
        "ISPY1_1002 DCE_0000 pre-contrast (N3 1mm z-scored)",
        "ISPY1_1002 DCE_0001 early post-contrast (N3 1mm z-scored)",
        "ISPY1_1002 DCE_0002 late post-contrast (N3 1mm z-scored)",
    ]
    # Volume arrays are nibabel's data transposed; IJKToRAS is the header affine.
    native = result.volumes[1]
    image = nib.load(str(files / "images_bias-corrected_nifti" / "ISPY1_1002" / "ISPY1_1002_DCE_0001_N3.nii.gz"))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(native), np.asanyarray(image.dataobj).T)
    np.testing.assert_allclose(SceneBuilder.volume_geometry(native)[1], image.affine, atol=1e-5)
    zscored = result.volumes[4]
    zimage = nib.load(str(files / "images_bias-corrected_resampled_zscored_nifti" / "ISPY1_1002"
                          / "ISPY1_1002_DCE_0001_N3_zscored.nii.gz"))
    np.testing.assert_allclose(SceneBuilder.volume_geometry(zscored)[1], zimage.affine, atol=1e-5)

    # Two segmentations: STV masks on the 1 mm grid, FTV on the native grid, each exact.
    by_name = {node.GetName(): node for node in result.segmentations}
    stv = by_name["ISPY1_1002 tumour masks (1 mm)"]
    ftv = by_name["ISPY1_1002 tumour masks (native grid)"]
    shape, matrix = SceneBuilder.volume_geometry(zscored)
    for segment_id, folder in (("STV_manual", "masks_stv_manual"), ("STV_ResUNet", "masks_stv_resunet")):
        mask = np.asanyarray(nib.load(str(files / folder / "ISPY1_1002.nii.gz")).dataobj).T > 0
        np.testing.assert_array_equal(segment_mask(stv, segment_id, shape, matrix), mask)
    shape, matrix = SceneBuilder.volume_geometry(native)
    ftv_mask = np.asanyarray(nib.load(str(files / "masks_ftv" / "ISPY1_1002.nii.gz")).dataobj).T > 0
    np.testing.assert_array_equal(segment_mask(ftv, "FTV", shape, matrix), ftv_mask)
    assert stv.GetSegmentation().GetSegment("STV_manual").GetName() == "STV manual"

    # Subject hierarchy: patient > "DCE-MRI baseline" > every case node.
    hierarchy = builder.hierarchy
    patient = hierarchy.GetItemByUID(SUBJECT_HIERARCHY_UID_NAME, "ISPY1_1002")
    study = hierarchy.GetItemByUID(SUBJECT_HIERARCHY_UID_NAME, "ISPY1_1002/DCE-MRI baseline")
    assert patient and study and hierarchy.GetItemParent(study) == patient
    assert hierarchy.GetItemName(study) == "DCE-MRI baseline"
    for node in [*result.volumes, *result.segmentations]:
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study


def test_tables_and_volume_comparison(generated: Path, builder: SceneBuilder) -> None:
    first = load(generated, builder, "ISPY1_1002")
    names = [node.GetName() for node in first.tables]
    assert names == ["ISPY1 CaPTk parameters", "ISPY1 radiomic features", "ISPY1_1002 radiomic features"]
    features = first.tables[1].GetTable()
    assert features.GetColumnName(0) == "SubjectID" and features.GetNumberOfRows() == 4
    captk = first.tables[0].GetTable()
    assert [captk.GetColumnName(i) for i in range(6)] == ["FeatureName", "ParamName", "Type", "Range", "Default",
                                                          "Comments"]
    row = first.tables[2].GetTable()
    values = {row.GetValue(r, 0).ToString(): row.GetValue(r, 1).ToDouble() for r in range(row.GetNumberOfRows())}
    assert values["SubjectID"] == 1002
    assert values["DCE1_TT_Volumetric_Volume"] == sample.EXPECTED["ISPY1_1002"]["manual_voxels"]
    assert first.metrics["features_volume_column"] == "DCE1_TT_Volumetric_Volume"
    assert first.metrics["features_volume_difference"] == 0.0
    # A second case reuses the collection tables instead of adding them again.
    second = load(generated, builder, "ISPY1_1005")
    assert [node.GetName() for node in second.tables] == ["ISPY1_1005 radiomic features"]
    assert builder.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 4


def test_volume_mismatch_with_features_table_is_a_warning(collection_copy: Path, builder: SceneBuilder) -> None:
    path = collection_copy / "ISPY_DataPaper_features.xlsx"
    table = pd.read_excel(path)
    table.loc[table["SubjectID"] == 1002, "DCE1_TT_Volumetric_Volume"] = 2000.0
    table.to_excel(path, index=False)
    result = load(collection_copy, builder, "ISPY1_1002")
    mismatch = findings(result, "ispy1.features_volume_mismatch")
    assert len(mismatch) == 1 and mismatch[0].value == pytest.approx(1458 / 2000 - 1)
    assert "ISPY_DataPaper_features.xlsx" in mismatch[0].message


def test_missing_features_row(collection_copy: Path, builder: SceneBuilder) -> None:
    path = collection_copy / "ISPY_DataPaper_features.xlsx"
    table = pd.read_excel(path)
    table[table["SubjectID"] != 1005].to_excel(path, index=False)
    result = load(collection_copy, builder, "ISPY1_1005")
    assert [f.message for f in findings(result, "ispy1.features_missing_row")] == [
        "ISPY_DataPaper_features.xlsx has no SubjectID 1005 for ISPY1_1005"]


# ---------------------------------------------------------------------------------------------- bad files


def test_truncated_and_non_nifti_files_are_reported_and_the_rest_loads(collection_copy: Path,
                                                                       builder: SceneBuilder) -> None:
    files = nifti_files(collection_copy)
    truncated = files / "images_bias-corrected_nifti" / "ISPY1_1005" / "ISPY1_1005_DCE_0002_N3.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[:300])
    not_nifti = files / "masks_stv_manual" / "ISPY1_1010.nii.gz"
    not_nifti.write_bytes(b"<html>download interrupted</html>\n")

    collection = Ispy1Collection(collection_copy)
    results: Dict[str, LoadedCase] = {case.case_id: collection.load_case(case, builder)
                                      for case in collection.discover_cases()}
    assert set(results) == {"ISPY1_1002", "ISPY1_1005", "ISPY1_1010"}

    errors = [f for f in results["ISPY1_1005"].findings if f.severity == "error"]
    assert len(errors) == 1 and errors[0].check == "ispy1.unreadable_file"
    assert errors[0].path == str(truncated) and "ISPY1_1005_DCE_0002_N3.nii.gz" in errors[0].message
    assert len(results["ISPY1_1005"].volumes) == 5
    assert results["ISPY1_1005"].metrics["stv_dice"] == pytest.approx(sample.EXPECTED["ISPY1_1005"]["dice"])

    errors = [f for f in results["ISPY1_1010"].findings if f.severity == "error"]
    assert len(errors) == 1 and errors[0].path == str(not_nifti) and "not a NIfTI file" in errors[0].message
    assert "stv_dice" not in results["ISPY1_1010"].metrics
    stv = [n for n in results["ISPY1_1010"].segmentations if "1 mm" in n.GetName()][0]
    assert stv.GetSegmentation().GetNumberOfSegments() == 1  # ResUNet only

    assert not [f for f in results["ISPY1_1002"].findings if f.severity != "info"]


def test_case_without_any_readable_image_leaves_scene_unchanged(collection_copy: Path, builder: SceneBuilder) -> None:
    for path in nifti_files(collection_copy).rglob("ISPY1_1002_DCE_*.nii.gz"):
        path.write_bytes(b"")
    nodes_before = builder.scene.GetNumberOfNodes()
    with pytest.raises(DataError, match="ISPY1_1002 has no readable image"):
        load(collection_copy, builder, "ISPY1_1002")
    assert builder.scene.GetNumberOfNodes() == nodes_before
    assert not builder.hierarchy.GetItemByUID(SUBJECT_HIERARCHY_UID_NAME, "ISPY1_1002")


def test_mask_on_another_grid_is_resampled_with_a_finding(collection_copy: Path, builder: SceneBuilder) -> None:
    """An FTV mask cropped to its bounding box (other shape and origin) still lands on the same voxels."""
    path = nifti_files(collection_copy) / "masks_ftv" / "ISPY1_1002.nii.gz"
    original = nib.load(str(path))
    data = np.asanyarray(original.dataobj.get_unscaled())
    crop = (slice(10, 60), slice(5, 50), slice(2, 18))
    cropped_affine = original.affine.copy()
    cropped_affine[:3, 3] = original.affine[:3, :3] @ np.array([10, 5, 2]) + original.affine[:3, 3]
    cropped = nib.Nifti1Image(data[crop], cropped_affine)
    cropped.header.set_qform(cropped_affine, 1)
    cropped.header.set_sform(cropped_affine, 1)
    nib.save(cropped, str(path))
    result = load(collection_copy, builder, "ISPY1_1002")
    assert len(findings(result, "ispy1.mask_resampled")) == 1
    assert not findings(result, "ispy1.mask_outside_image")
    native = result.volumes[1]
    shape, matrix = SceneBuilder.volume_geometry(native)
    ftv = [n for n in result.segmentations if "native" in n.GetName()][0]
    np.testing.assert_array_equal(segment_mask(ftv, "FTV", shape, matrix), data.T > 0)


def test_empty_mask_is_a_warning(collection_copy: Path, builder: SceneBuilder) -> None:
    path = nifti_files(collection_copy) / "masks_stv_resunet" / "ISPY1_1002.nii.gz"
    image = nib.load(str(path))
    empty = nib.Nifti1Image(np.zeros(image.shape, dtype=np.float32), image.affine)
    empty.header.set_qform(image.affine, 1)
    empty.header.set_sform(image.affine, 1)
    nib.save(empty, str(path))
    result = load(collection_copy, builder, "ISPY1_1002")
    assert [f.segment_id for f in findings(result, "ispy1.empty_mask")] == ["STV_ResUNet"]
    assert result.metrics["stv_dice"] == 0.0
    assert result.metrics["stv_hausdorff_mm"] is None


# ---------------------------------------------------------------------------------------------- metrics


def test_hausdorff_on_anisotropic_and_oblique_grids() -> None:
    """Boxes offset by 2 voxels along i and 1 along k on the native 0.78x0.78x2 mm grid."""
    native = sample.native_affine((40.1, 106.2, -88.2))
    a = np.zeros((20, 64, 64), dtype=bool)
    a[5:12, 20:35, 10:30] = True
    b = np.zeros_like(a)
    b[6:13, 20:35, 12:32] = True
    expected = np.hypot(2 * 0.78125, 1 * 2.0)
    assert hausdorff_distance(a, native, b, native).distance_mm == pytest.approx(expected, abs=1e-9)
    rotation = np.eye(4)
    angle = np.deg2rad(25)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    oblique = rotation @ native
    assert hausdorff_distance(a, oblique, b, oblique).distance_mm == pytest.approx(expected, abs=1e-9)
    overlap = 6 * 15 * 18
    assert dice_coefficient(a, b) == pytest.approx(2 * overlap / (2 * 7 * 15 * 20))
    assert mask_volume_cm3(a, native) == pytest.approx(7 * 15 * 20 * 0.78125 * 0.78125 * 2 / 1000)
    assert hausdorff_distance(a, native, np.zeros_like(a), native) is None
    assert dice_coefficient(np.zeros_like(a), np.zeros_like(a)) is None


def test_hausdorff_across_grids_uses_physical_positions() -> None:
    """The same box on the native grid and on the 1 mm grid is 0 mm apart where their surfaces coincide."""
    origin = (0.0, 0.0, 0.0)
    one_mm = sample.resampled_affine(origin)
    coarse = one_mm.copy()
    coarse[:3, :3] *= 2.0
    fine = np.zeros((20, 20, 20), dtype=bool)
    fine[4:12, 4:12, 4:12] = True
    coarse_mask = np.zeros((10, 10, 10), dtype=bool)
    coarse_mask[2:6, 2:6, 2:6] = True  # voxel centres at 4..10 mm, surfaces at 4 and 10 mm
    result = hausdorff_distance(fine, one_mm, coarse_mask, coarse)
    # Fine surface centres span 4..11 mm, coarse ones 4..10 mm: the fine corner (11, 11, 11) is
    # sqrt(3) mm from the coarse corner (10, 10, 10), and nothing is farther.
    assert result.distance_mm == pytest.approx(np.sqrt(3.0), abs=1e-9)


def test_surface_voxels_of_a_box() -> None:
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[1:4, 1:4, 1:4] = True
    assert len(surface_voxels(mask)) == 26  # all but the centre
    full = np.ones((3, 3, 3), dtype=bool)
    assert len(surface_voxels(full)) == 26  # grid edges count as outside


def test_find_volume_columns() -> None:
    assert find_volume_columns(["SubjectID", "DCE1_TT_Volumetric_Pixels", "DCE1_TT_Volumetric_Volume"]) == (
        ["DCE1_TT_Volumetric_Volume"], "mm3")
    assert find_volume_columns(["SubjectID", "Tumour volume (cm3)"]) == (["Tumour volume (cm3)"], "cm3")
    assert find_volume_columns(["SubjectID", "GLCM_Energy"]) == ([], "mm3")
