"""A small ISPY1-Tumor-SEG-Radiomics sample in the published NIfTI tree.

Layout and header quirks follow shared/notes/datasets.md §2 (the publisher's
checksum list and the decoded ISPY1_1002 headers):

* ``ISPY1-Tumor-SEG-Radiomics/NIfTI-Files/images_bias-corrected_nifti/<case>/<case>_DCE_000{0,1,2}_N3.nii.gz``:
  int16, native grid (real 256x256x60 at 0.78125x0.78125x2 mm; here 64x64x20),
  qform and sform code 1, a header extension so ``vox_offset`` is 2672;
* ``images_bias-corrected_resampled_zscored_nifti/<case>/<case>_DCE_000x_N3_zscored.nii.gz``:
  float32 z-scores on the 1 mm grid of the same physical extent (real
  200x200x120; here 50x50x40), **qform only** (sform code 0);
* ``masks_stv_manual/<case>.nii.gz``: float32 {0, 1}, 1 mm grid, qform only;
* ``masks_stv_resunet/<case>.nii.gz``: float32 {0, 1}, 1 mm grid, qform and sform;
* ``masks_ftv/<case>.nii.gz``: uint8 stored {0, 255} with ``scl_slope = 1/255``, native grid;
* every matrix is sagittal, axis codes (P, S, R), with the same origin for both grids;
* ``ISPY_DataPaper_features.xlsx`` (``SubjectID`` numeric without the ``ISPY1_`` prefix,
  then CaPTk-style ``Modality_ROILabel_FeatureFamily_Feature`` columns; the real
  column names are not known) and ``captk_parameter_file_ispy1.csv`` beside ``NIfTI-Files``
  (the publisher's checksum list of ``NIfTI-Files`` holds only NIfTI files).

The STV masks are boxes with known offsets so that Dice and Hausdorff distance
are known exactly (:data:`EXPECTED`); each mask has several connected components.
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd

__all__ = ["generate", "CASES", "EXPECTED", "COLLECTION_FOLDER", "SampleCase", "native_affine", "resampled_affine"]

COLLECTION_FOLDER = "ISPY1-Tumor-SEG-Radiomics"

#: Native grid (i, j, k) and spacing; 64 * 0.78125 = 50 mm and 20 * 2 = 40 mm.
NATIVE_SIZE = (64, 64, 20)
NATIVE_SPACING = (0.78125, 0.78125, 2.0)
#: The 1 mm resampled grid over the same extent.
RESAMPLED_SIZE = (50, 50, 40)

#: scl_slope of the FTV masks (stored 255 -> 1.0).
FTV_SLOPE = np.float32(1.0 / 255.0)

#: Bytes of the comment extension that puts vox_offset at 2672 like the real native images.
_EXTENSION_BYTES = 2312


@dataclass(frozen=True)
class SampleCase:
    """One generated case: where its tumour boxes are on the 1 mm grid, as (i, j, k) ranges.

    :param tumour: main STV box, half-open ranges ``((i0, i1), (j0, j1), (k0, k1))``.
    :param satellite: a second, small STV component present in both STV masks.
    :param shift: (di, dj, dk) voxels from the manual to the ResUNet main box.
    :param false_positive: an extra ResUNet-only box (in the background), or None.
    :param origin: RAS position of voxel (0, 0, 0) of both grids.
    """

    case_id: str
    tumour: Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]
    satellite: Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]
    shift: Tuple[int, int, int]
    false_positive: Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]] = None  # type: ignore[assignment]
    origin: Tuple[float, float, float] = (40.1, 106.2, -88.2)


CASES: Tuple[SampleCase, ...] = (
    SampleCase("ISPY1_1002", ((18, 30), (20, 32), (14, 24)), ((36, 39), (24, 27), (26, 28)), (3, 0, 0)),
    SampleCase("ISPY1_1005", ((16, 28), (18, 28), (12, 22)), ((34, 37), (33, 36), (28, 30)), (2, 0, 1),
               origin=(36.5, 98.0, -80.4)),
    SampleCase("ISPY1_1010", ((20, 30), (20, 30), (15, 25)), ((34, 37), (32, 35), (27, 29)), (0, 1, 0),
               false_positive=((1, 6), (1, 6), (1, 6)), origin=(44.0, 110.6, -91.0)),
)


def _box_voxels(box: Tuple[Tuple[int, int], ...]) -> int:
    return int(np.prod([b - a for a, b in box]))


def _expected(case: SampleCase) -> Dict[str, float]:
    """Dice and Hausdorff (mm, surface voxel centres) between the STV masks, worked out by hand.

    Both masks hold the satellite box unchanged; the ResUNet main box is the
    manual one shifted by ``shift`` voxels (1 mm), so overlap is the product of
    the shortened sides and every surface voxel is at most ``|shift|`` mm from
    the other surface, with the box corners exactly that far.
    """
    main = _box_voxels(case.tumour)
    satellite = _box_voxels(case.satellite)
    overlap = int(np.prod([(b - a) - abs(s) for (a, b), s in zip(case.tumour, case.shift)]))
    extra = _box_voxels(case.false_positive) if case.false_positive else 0
    dice = 2.0 * (overlap + satellite) / (2 * (main + satellite) + extra)
    result = {"dice": dice, "manual_voxels": float(main + satellite),
              "resunet_voxels": float(main + satellite + extra)}
    if case.false_positive is None:
        result["hausdorff_mm"] = float(np.linalg.norm(case.shift))
    return result


#: Case ID -> expected "dice", "hausdorff_mm" (when known by hand), voxel counts.
EXPECTED: Dict[str, Dict[str, float]] = {case.case_id: _expected(case) for case in CASES}


def native_affine(origin: Tuple[float, float, float]) -> np.ndarray:
    """Sagittal (P, S, R) IJK-to-RAS of the native grid: i -> -y, j -> +z, k -> +x."""
    dx, dy, dz = NATIVE_SPACING
    return np.array([[0, 0, dz, origin[0]], [-dx, 0, 0, origin[1]], [0, dy, 0, origin[2]], [0, 0, 0, 1.0]])


def resampled_affine(origin: Tuple[float, float, float]) -> np.ndarray:
    """Sagittal (P, S, R) IJK-to-RAS of the 1 mm grid with the same origin."""
    return np.array([[0, 0, 1.0, origin[0]], [-1.0, 0, 0, origin[1]], [0, 1.0, 0, origin[2]], [0, 0, 0, 1.0]])


# ---------------------------------------------------------------------------------------------- writing


def _nifti_bytes(data_ijk: np.ndarray, affine: np.ndarray, qform_code: int, sform_code: int,
                 extension: bool = False, slope: float = 1.0) -> bytes:
    """A single-file NIfTI-1 with exactly the codes and scaling asked for.

    nibabel recomputes ``scl_slope`` when saving an array, so the slope is
    written into the header bytes afterwards (offset 112, little endian).
    """
    import nibabel as nib

    image = nib.Nifti1Image(data_ijk, affine)
    header = image.header
    header.set_qform(affine, code=int(qform_code))
    header.set_sform(affine, code=int(sform_code))
    header.set_xyzt_units("mm", "sec")
    header["descrip"] = b"ISPY1 sample (generated)"
    if extension:
        text = b"N3 bias-corrected DCE-MRI; generated sample header extension\n"
        header.extensions.append(nib.nifti1.Nifti1Extension(6, text.ljust(_EXTENSION_BYTES, b" ")))
    raw = bytearray(image.to_bytes())
    if slope != 1.0:
        raw[112:120] = struct.pack("<ff", float(np.float32(slope)), 0.0)
    return bytes(raw)


def _write(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip bytes identical between runs.
    with open(path, "wb") as handle:
        with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as compressed:
            compressed.write(payload)


def _box_mask(size: Tuple[int, int, int], boxes: List[Tuple[Tuple[int, int], ...]],
              shift: Tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """An [i, j, k] boolean array with the boxes set (the first one shifted)."""
    mask = np.zeros(size, dtype=bool)
    for index, box in enumerate(boxes):
        offset = shift if index == 0 else (0, 0, 0)
        (i0, i1), (j0, j1), (k0, k1) = [(a + s, b + s) for (a, b), s in zip(box, offset)]
        mask[i0:i1, j0:j1, k0:k1] = True
    return mask


def _ras_of_grid(size: Tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """RAS of every voxel centre, shape (i, j, k, 3)."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in size], indexing="ij"), axis=-1)
    return grid @ affine[:3, :3].T + affine[:3, 3]


def _inside_boxes(ras: np.ndarray, case: SampleCase, boxes: List[Tuple[Tuple[int, int], ...]]) -> np.ndarray:
    """Which RAS points fall inside boxes given on the 1 mm grid (voxel edges included)."""
    to_index = np.linalg.inv(resampled_affine(case.origin))
    ijk = ras @ to_index[:3, :3].T + to_index[:3, 3]
    inside = np.zeros(ras.shape[:-1], dtype=bool)
    for box in boxes:
        hit = np.ones(ras.shape[:-1], dtype=bool)
        for axis, (a, b) in enumerate(box):
            hit &= (ijk[..., axis] >= a - 0.5) & (ijk[..., axis] < b - 0.5)
        inside |= hit
    return inside


def _breast(ras: np.ndarray, case: SampleCase) -> np.ndarray:
    """A half-ellipsoid of tissue against the chest wall; outside it the image is 0."""
    centre = resampled_affine(case.origin) @ np.array([25.0, 20.0, 20.0, 1.0])
    radii = np.array([22.0, 24.0, 21.0])  # R-L, A-P, S-I semi-axes in mm
    scaled = (ras - centre[:3]) / radii
    return np.sum(scaled**2, axis=-1) <= 1.0


def _native_images(case: SampleCase, random: np.random.Generator) -> List[np.ndarray]:
    """Pre-contrast, early and late post-contrast int16 images on the native grid."""
    ras = _ras_of_grid(NATIVE_SIZE, native_affine(case.origin))
    breast = _breast(ras, case)
    tumour = _inside_boxes(ras, case, [case.tumour, case.satellite])
    images = []
    for tissue, lesion in ((320.0, 340.0), (380.0, 1150.0), (410.0, 900.0)):
        image = np.where(breast, tissue, 0.0)
        image = np.where(breast & tumour, lesion, image)
        image = image + np.where(breast, random.normal(0.0, 25.0, size=image.shape), 0.0)
        images.append(np.clip(np.rint(image), 0, 32767).astype(np.int16))
    return images


def _zscored(images: List[np.ndarray], case: SampleCase) -> List[np.ndarray]:
    """The native images moved to the 1 mm grid and z-scored across the three time points."""
    ras = _ras_of_grid(RESAMPLED_SIZE, resampled_affine(case.origin))
    to_native = np.linalg.inv(native_affine(case.origin))
    ijk = np.floor(ras @ to_native[:3, :3].T + to_native[:3, 3] + 0.5).astype(int)
    for axis, size in enumerate(NATIVE_SIZE):
        ijk[..., axis] = np.clip(ijk[..., axis], 0, size - 1)
    resampled = [image[ijk[..., 0], ijk[..., 1], ijk[..., 2]].astype(np.float64) for image in images]
    stacked = np.stack(resampled)
    mean, std = stacked.mean(), stacked.std()
    return [((image - mean) / std).astype(np.float32) for image in resampled]


def _ftv(case: SampleCase, early: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """FTV: enhancing voxels (early / pre > 1.7) inside the tumour, plus two enhancing specks."""
    ras = _ras_of_grid(NATIVE_SIZE, native_affine(case.origin))
    near_tumour = _inside_boxes(ras, case, [case.tumour, case.satellite])
    ratio = early.astype(float) / np.maximum(pre.astype(float), 1.0)
    mask = near_tumour & (ratio > 1.7)
    (i0, i1), (j0, j1), (k0, k1) = case.tumour
    # Two specks in the native grid near the main tumour (FTV masks have several components).
    centre = np.array([(i0 + i1) / 2.0, (j0 + j1) / 2.0, (k0 + k1) / 2.0])
    native_centre = np.linalg.inv(native_affine(case.origin)) @ resampled_affine(case.origin) @ np.append(centre, 1)
    ci, cj, ck = (int(round(v)) for v in native_centre[:3])
    mask[ci + 12: ci + 14, cj - 14: cj - 12, ck] = True
    mask[ci - 14: ci - 12, cj + 12: cj + 14, ck] = True
    return np.where(mask, 255, 0).astype(np.uint8)


def _features(cases: Tuple[SampleCase, ...], random: np.random.Generator) -> pd.DataFrame:
    """CaPTk-style radiomics table: one row per subject, ``SubjectID`` first.

    ``Volumetric_Volume`` is CaPTk's voxel count times voxel volume in mm³
    (FeatureExtraction ``CalculateVolumetric``) of the manual STV on the 1 mm grid.
    """
    rows = []
    subjects = list(cases) + [None]  # one subject without images on disk, as in a partial download
    for case in subjects:
        if case is None:
            subject, voxels = 1239, 5321
        else:
            subject, voxels = int(case.case_id.split("_")[1]), int(EXPECTED[case.case_id]["manual_voxels"])
        row: Dict[str, object] = {"SubjectID": subject}
        for modality in ("DCE0", "DCE1", "DCE2"):
            row[f"{modality}_TT_Intensity_Mean"] = round(float(random.normal(1.0, 0.3)), 6)
            row[f"{modality}_TT_Intensity_StandardDeviation"] = round(float(abs(random.normal(0.4, 0.1))), 6)
            row[f"{modality}_TT_GLCM_Energy_Bins-20_Radius-1_Offset-Average"] = round(float(random.uniform(0.01, 0.2)), 6)
        row["DCE1_TT_Volumetric_Pixels"] = voxels
        row["DCE1_TT_Volumetric_Volume"] = float(voxels)  # 1 mm³ voxels
        row["DCE1_TT_Morphologic_Elongation"] = round(float(random.uniform(0.4, 0.95)), 6)
        row["DCE1_TT_Morphologic_Perimeter"] = round(float(random.uniform(200, 900)), 3)
        rows.append(row)
    return pd.DataFrame(rows)


def _captk_parameters() -> pd.DataFrame:
    """A CaPTk FeatureExtraction parameter file (header as CaPTk's samples; comments are ours)."""
    rows = [
        ("Generic", "Quantization_Extent", "String", "Image:ROI", "ROI", "Quantize intensities per ROI"),
        ("Generic", "Quantization_Type", "String", "FixedBinNumber:FixedBinSize:Equal", "FixedBinNumber", "Binning rule"),
        ("Generic", "Resampling", "mm", "0:10", "1.0", "Resample images and masks to this spacing first"),
        ("Generic", "ResamplingInterpolator_Image", "mm", "Nearest:Linear:BSpline", "Linear", "Image interpolator"),
        ("Generic", "ResamplingInterpolator_Mask", "mm", "Nearest:NearestLabel:Linear:BSpline", "Nearest", "Mask interpolator"),
        ("Intensity", "", "", "", "", ""),
        ("Volumetric", "Dimension", "String", "[2D:3D]", "3D", "Full 3D volume"),
        ("Morphologic", "Range", "Int", "(0:25)", "0", "Largest connected component"),
        ("GLCM", "Bins", "Int", "", "20", "Number of bins"),
        ("GLCM", "Radius", "Int", "(1:9)", "1", "Neighbourhood radius"),
        ("GLCM", "Offset", "String", "[Individual:Average:Combined]", "Average", "Offset handling"),
    ]
    return pd.DataFrame(rows, columns=["FeatureName", "ParamName", "Type", "Range", "Default", "Comments"])


def _write_case(nifti_root: Path, case: SampleCase, random: np.random.Generator) -> None:
    native = native_affine(case.origin)
    resampled = resampled_affine(case.origin)
    images = _native_images(case, random)
    for index, image in enumerate(images):
        path = nifti_root / "images_bias-corrected_nifti" / case.case_id / f"{case.case_id}_DCE_000{index}_N3.nii.gz"
        _write(path, _nifti_bytes(image, native, 1, 1, extension=True))
    for index, image in enumerate(_zscored(images, case)):
        folder = nifti_root / "images_bias-corrected_resampled_zscored_nifti" / case.case_id
        _write(folder / f"{case.case_id}_DCE_000{index}_N3_zscored.nii.gz", _nifti_bytes(image, resampled, 1, 0))
    manual = _box_mask(RESAMPLED_SIZE, [case.tumour, case.satellite]).astype(np.float32)
    boxes = [case.tumour, case.satellite] + ([case.false_positive] if case.false_positive else [])
    resunet = _box_mask(RESAMPLED_SIZE, boxes, shift=case.shift).astype(np.float32)
    _write(nifti_root / "masks_stv_manual" / f"{case.case_id}.nii.gz", _nifti_bytes(manual, resampled, 1, 0))
    _write(nifti_root / "masks_stv_resunet" / f"{case.case_id}.nii.gz", _nifti_bytes(resunet, resampled, 1, 1))
    ftv = _ftv(case, images[1], images[0])
    _write(nifti_root / "masks_ftv" / f"{case.case_id}.nii.gz", _nifti_bytes(ftv, native, 1, 1, slope=FTV_SLOPE))


def generate(parent: Path) -> Path:
    """Write the sample below ``parent``; returns ``parent/ISPY1-Tumor-SEG-Radiomics``."""
    root = Path(parent) / COLLECTION_FOLDER
    nifti_root = root / "NIfTI-Files"
    random = np.random.default_rng(20220601)
    for case in CASES:
        _write_case(nifti_root, case, random)
    _features(CASES, random).to_excel(root / "ISPY_DataPaper_features.xlsx", index=False)
    _captk_parameters().to_csv(root / "captk_parameter_file_ispy1.csv", index=False)
    return root
