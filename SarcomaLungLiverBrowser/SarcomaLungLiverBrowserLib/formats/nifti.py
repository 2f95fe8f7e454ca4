"""Read NIfTI volumes and masks with nibabel, placed where Slicer would place them.

Which header matrix gives the voxel positions
---------------------------------------------
A NIfTI-1 header can hold two voxel-to-world matrices, the qform and the
sform, each with a code saying whether it is valid. nibabel's ``img.affine``
takes the sform when ``sform_code > 0``, else the qform when
``qform_code > 0``, else a centred default. Slicer reads NIfTI through ITK's
``NiftiImageIO``, whose rule (``SetImageIOOrientationFromNIfTI``) differs in
three corner cases, and this module follows ITK so that a volume lands where
*File > Add Data* would put it:

* the sform wins when it is orthonormal (rotation times scale, no shear) and
  either the qform code is 0, or ``sform_code == 1`` (scanner anatomy), or
  the sform and qform agree; an sform with another code (2 aligned,
  3 Talairach, 4 MNI) that *disagrees* with a valid qform loses to the qform
  (nibabel would take the sform);
* an sform with shear and no qform is an error (ITK refuses the file);
* with both codes 0, ITK puts the first voxel at the origin with identity
  LPS directions, i.e. IJK-to-RAS ``diag(-dx, -dy, dz)`` (nibabel centres
  the volume instead).

ITK also takes the voxel spacing from ``pixdim`` (scaled to mm by
``xyz_units``) and only the *directions* from the chosen matrix; a matrix
whose column lengths disagree with ``pixdim`` is reported in
:attr:`NiftiVolume.warnings`. All this was checked against slicer-core's
``vtkMRMLVolumeArchetypeStorageNode`` on crafted headers (Testing/test_nifti.py).
For every file in which the two rules agree (all of nibabel's test files, and
all ISPY1 files, whose sform code is 1 or 0), positions equal nibabel's affine.

Voxel order
-----------
:attr:`NiftiVolume.voxels` is nibabel's ``[i, j, k]`` array transposed to the
``[k, j, i]`` order of Slicer volume arrays, with the same IJK-to-RAS matrix.
Slicer's own reader additionally reverses k when the IJK frame is
left-handed (e.g. ISPY1's sagittal P,S,R stacks); that reindexes slices
but puts every voxel at the same RAS position as here.

Dimensions
----------
3-D files load as they are; 2-D files get one slice; trailing axes of length
1 (a "4-D" file with one volume) are dropped. A real 4-D file (several
volumes) is an error unless the caller names ``volume_index`` — Slicer
refuses it too ("load the file as a sequence"); 5-D vector/tensor data is an
error.
"""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DataError
from .atomic import atomic_path
from .limits import check_nifti_data_size

__all__ = [
    "Grid",
    "NiftiVolume",
    "NiftiGeometry",
    "NIFTI_SUFFIXES",
    "is_nifti_name",
    "strip_nifti_suffix",
    "read_nifti",
    "read_nifti_geometry",
    "choose_ijk_to_ras",
    "same_grid",
    "resample_mask_to_grid",
    "count_outside_grid",
    "voxel_centres_ras",
]

#: File name endings read as NIfTI (single-file and header/image pairs).
NIFTI_SUFFIXES = (".nii.gz", ".nii", ".hdr", ".hdr.gz")

#: Spacing scale to mm for NIfTI ``xyz_units`` codes (as ITK applies them).
_UNITS_TO_MM = {1: 1000.0, 2: 1.0, 3: 0.001}

#: Tolerances of ITK's NiftiImageIO checks.
_ORTHONORMAL_TOLERANCE = 1e-4
_SIMILAR_TOLERANCE = 1e-4
_SCALE_TOLERANCE = 1e-3


def is_nifti_name(path: Union[str, Path]) -> bool:
    """True if the file name ends like a NIfTI file (``.nii``, ``.nii.gz``, ``.hdr``)."""
    name = Path(path).name.lower()
    return any(name.endswith(suffix) for suffix in NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    """The file name without its NIfTI ending (``a.nii.gz`` -> ``a``)."""
    lowered = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class Grid:
    """A voxel grid: array shape ``[k, j, i]`` and its IJK-to-RAS matrix."""

    shape: Tuple[int, int, int]
    ijk_to_ras: np.ndarray

    @property
    def spacing(self) -> Tuple[float, float, float]:
        """Voxel size along i, j, k in mm."""
        return tuple(float(s) for s in np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.ijk_to_ras[:3, :3])))


@dataclass
class NiftiGeometry:
    """What a NIfTI header says, without reading the voxels.

    :param path: the file.
    :param shape: array shape ``[k, j, i]`` of the volume that :func:`read_nifti` returns.
    :param ijk_to_ras: voxel index (i, j, k) to RAS, chosen as ITK/Slicer choose it.
    :param affine_source: ``"sform"``, ``"qform"`` or ``"default"`` (both codes 0).
    :param qform_code: the header's qform code.
    :param sform_code: the header's sform code.
    :param disk_dtype: the stored voxel type (e.g. ``uint8`` for FTV masks).
    :param slope: ``scl_slope`` when it scales the data, else None.
    :param intercept: ``scl_inter`` when the data are scaled, else None.
    :param volumes: number of volumes along the 4th axis (1 for 3-D files).
    :param axis_codes: nibabel-style orientation codes of the matrix, e.g. ``("P", "S", "R")``.
    :param warnings: header oddities that do not stop the load.
    """

    path: Path
    shape: Tuple[int, int, int]
    ijk_to_ras: np.ndarray
    affine_source: str
    qform_code: int
    sform_code: int
    disk_dtype: np.dtype
    slope: Optional[float]
    intercept: Optional[float]
    volumes: int
    axis_codes: Tuple[str, str, str]
    warnings: List[str] = field(default_factory=list)

    @property
    def grid(self) -> Grid:
        return Grid(self.shape, self.ijk_to_ras)

    @property
    def scaled(self) -> bool:
        return self.slope is not None


@dataclass
class NiftiVolume(NiftiGeometry):
    """A NIfTI volume ready for :meth:`SceneBuilder.add_volume`.

    :param voxels: ``[k, j, i]`` array in native byte order; scaled values
        (``scl_slope``/``scl_inter`` applied, float32) when the header scales.
    """

    voxels: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))

    @property
    def dtype(self) -> np.dtype:
        """Type of :attr:`voxels` (after scaling)."""
        return self.voxels.dtype


# ---------------------------------------------------------------------------------------------- header


def _load_image(path: Path) -> Any:
    """nibabel image object for a NIfTI-1/NIfTI-2 file, or a DataError naming the file."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    if not path.exists():
        raise DataError(path, "does not exist")
    if not path.is_file():
        raise DataError(path, "is not a file")
    if path.stat().st_size == 0:
        raise DataError(path, "is empty (0 bytes), not a NIfTI file")
    try:
        image = nib.load(str(path), mmap=False)
    except ImageFileError as error:
        raise DataError(path, f"is not a NIfTI file ({error})") from error
    except MemoryError:
        raise
    except Exception as error:  # nibabel raises HeaderDataError, OSError, zlib.error... for damaged files
        raise DataError(path, f"cannot be read as NIfTI: the header is damaged or truncated "
                              f"({type(error).__name__}: {error})") from error
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image, nib.Nifti1Pair, nib.Nifti2Pair)):
        raise DataError(path, f"is a {type(image).__name__}, not a NIfTI file")
    return image


def _pixdim_spacing(header: Any) -> Tuple[np.ndarray, List[str]]:
    """Voxel spacing (mm) along i, j, k from ``pixdim``, as ITK reads it."""
    warnings: List[str] = []
    pixdim = np.abs(np.asarray(header["pixdim"][1:4], dtype=float))
    # nifti1_io replaces zero/non-finite pixdim by 1.
    pixdim = np.where((pixdim > 0) & np.isfinite(pixdim), pixdim, 1.0)
    units = int(header["xyzt_units"]) & 0x07
    scale = _UNITS_TO_MM.get(units, 1.0)
    if scale != 1.0:
        warnings.append(f"spatial units code {units} is not mm; spacing scaled by {scale:g} to mm as ITK does")
    return pixdim * scale, warnings


def _normalised_columns(matrix: np.ndarray) -> Optional[np.ndarray]:
    lengths = np.linalg.norm(matrix[:3, :3], axis=0)
    if np.any(lengths <= 0) or not np.all(np.isfinite(lengths)):
        return None
    return matrix[:3, :3] / lengths


def _is_orthonormal_affine(matrix: np.ndarray) -> bool:
    """True if the 3x3 part is a rotation times per-axis scales (ITK's test)."""
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        return False
    directions = _normalised_columns(matrix)
    if directions is None:
        return False
    return bool(np.allclose(directions @ directions.T, np.eye(3), atol=_ORTHONORMAL_TOLERANCE))


def _forms_agree(sform: np.ndarray, qform: np.ndarray) -> bool:
    """True if directions, column lengths and offsets agree (ITK's "very similar")."""
    s_directions, q_directions = _normalised_columns(sform), _normalised_columns(qform)
    if s_directions is None or q_directions is None:
        return False
    return bool(
        np.allclose(s_directions, q_directions, atol=_SIMILAR_TOLERANCE)
        and np.allclose(np.linalg.norm(sform[:3, :3], axis=0), np.linalg.norm(qform[:3, :3], axis=0),
                        atol=_SIMILAR_TOLERANCE)
        and np.allclose(sform[:3, 3], qform[:3, 3], atol=_SIMILAR_TOLERANCE)
    )


def choose_ijk_to_ras(header: Any, path: Union[str, Path] = "") -> Tuple[np.ndarray, str, List[str]]:
    """The IJK-to-RAS matrix ITK (and so Slicer) builds from a NIfTI header.

    :returns: (4x4 matrix, ``"sform"``/``"qform"``/``"default"``, warnings).
    :raises DataError: for an sform with shear and no valid qform (ITK refuses it).
    """
    qform_code = int(header["qform_code"])
    sform_code = int(header["sform_code"])
    spacing, warnings = _pixdim_spacing(header)
    if qform_code <= 0 and sform_code <= 0:
        warnings.append("qform_code and sform_code are both 0: no orientation; placed at the origin "
                        "with identity LPS directions, as Slicer does")
        matrix = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
        return matrix, "default", warnings
    sform = np.asarray(header.get_sform(), dtype=float)
    qform = np.asarray(header.get_qform(), dtype=float)
    prefer_sform = False
    if sform_code > 0 and _is_orthonormal_affine(sform):
        if qform_code <= 0 or sform_code == 1:
            prefer_sform = True
        else:
            prefer_sform = _forms_agree(sform, qform)
            if not prefer_sform:
                warnings.append(f"sform (code {sform_code}) disagrees with qform (code {qform_code}); "
                                "the qform is used, as Slicer does (nibabel would use the sform)")
    elif sform_code > 0:
        if qform_code <= 0:
            raise DataError(path, "has an sform with shear or a singular matrix and no qform; "
                                  "Slicer/ITK cannot place its voxels")
        warnings.append("sform has shear; the qform is used, as Slicer does")
    chosen, source = (sform, "sform") if prefer_sform else (qform, "qform")
    directions = _normalised_columns(chosen)
    if directions is None:
        raise DataError(path, f"has a singular {source} matrix")
    lengths = np.linalg.norm(chosen[:3, :3], axis=0)
    if np.any(np.abs(lengths - spacing) > _SCALE_TOLERANCE):
        warnings.append(f"{source} column lengths {np.round(lengths, 4).tolist()} differ from pixdim "
                        f"{np.round(spacing, 4).tolist()}; pixdim is used, as Slicer does")
    matrix = np.eye(4)
    matrix[:3, :3] = directions * spacing
    matrix[:3, 3] = chosen[:3, 3]
    return matrix, source, warnings


def _axis_codes(matrix: np.ndarray) -> Tuple[str, str, str]:
    import nibabel as nib

    return tuple(nib.aff2axcodes(matrix))  # type: ignore[return-value]


def _geometry(path: Path, image: Any, volume_index: Optional[int]) -> Tuple[NiftiGeometry, Tuple[Any, ...]]:
    """Header facts, plus the index that selects the 3-D block from nibabel's array."""
    header = image.header
    shape = tuple(int(n) for n in image.shape)
    if len(shape) > 4 and any(n != 1 for n in shape[4:]):
        raise DataError(path, f"has {len(shape)}-D data of shape {shape} (vectors or tensors per voxel); "
                              "only scalar volumes are read")
    volumes = shape[3] if len(shape) >= 4 else 1
    if len(shape) < 2:
        raise DataError(path, f"has {len(shape)}-D data of shape {shape}; a volume needs at least 2 axes")
    selector: Tuple[Any, ...]
    if volumes > 1:
        if volume_index is None:
            raise DataError(path, f"is 4-D with {volumes} volumes (shape {shape}); it holds a time series, "
                                  "not one volume (name the volume to read)")
        if not 0 <= volume_index < volumes:
            raise DataError(path, f"has {volumes} volumes; volume {volume_index} does not exist")
        selector = (slice(None), slice(None), slice(None), volume_index) + (0,) * (len(shape) - 4)
    else:
        selector = (slice(None),) * min(len(shape), 3) + (0,) * max(len(shape) - 3, 0)
    spatial = list(shape[:3]) + [1] * (3 - min(len(shape), 3))
    ijk_to_ras, source, warnings = choose_ijk_to_ras(header, path)
    # nibabel moves scl_slope/scl_inter from the header into the array proxy on load
    # (the image's header then says NaN), so read them from there.
    slope = getattr(image.dataobj, "slope", 1.0)
    intercept = getattr(image.dataobj, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) else float(slope)
    intercept = 0.0 if intercept is None or not np.isfinite(intercept) else float(intercept)
    if slope == 1.0 and intercept == 0.0:
        slope, intercept = None, None
    geometry = NiftiGeometry(
        path=path,
        shape=(spatial[2], spatial[1], spatial[0]),
        ijk_to_ras=ijk_to_ras,
        affine_source=source,
        qform_code=int(header["qform_code"]),
        sform_code=int(header["sform_code"]),
        disk_dtype=np.dtype(header.get_data_dtype()).newbyteorder("="),
        slope=None if slope is None else float(slope),
        intercept=None if slope is None else float(intercept or 0.0),
        volumes=volumes,
        axis_codes=_axis_codes(ijk_to_ras),
        warnings=warnings,
    )
    return geometry, selector


def _check_data_size(path: Path, image: Any) -> None:
    """Refuse dimensions that the file cannot hold (truncated ``.nii``, a tiny ``.nii.gz`` claiming
    billions of voxels) or above the cap, before any voxel is allocated (see :mod:`.limits`)."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return  # a header/image pair: nibabel reports a short image file itself
    header = image.header
    # The loaded image's header copy has its offset reset; the array proxy keeps it.
    offset = int(getattr(image.dataobj, "offset", header.get_data_offset()))
    voxels = 1
    for length in image.shape:
        voxels *= int(length)  # Python integers: 2^31 x 2^31 must not wrap around as numpy's product would
    check_nifti_data_size(path, offset, voxels * np.dtype(header.get_data_dtype()).itemsize)


def _check_gzip_integrity(path: Path) -> None:
    """Read a ``.gz`` file to its end so that its CRC and length are checked.

    nibabel stops reading once it has the voxels it needs, so a damaged
    stream (flipped bytes, wrong checksum) would otherwise load silently with
    wrong values.
    """
    if not path.name.lower().endswith(".gz"):
        return
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(path, f"is a damaged gzip file ({type(error).__name__}: {error})") from error


def read_nifti_geometry(path: Union[str, Path], volume_index: Optional[int] = None) -> NiftiGeometry:
    """Header facts of a NIfTI file (shape, placement, scaling) without reading voxels.

    :raises DataError: naming the file, if it is not a readable NIfTI volume.
    """
    path = Path(path)
    image = _load_image(path)
    geometry, _ = _geometry(path, image, volume_index)
    return geometry


def read_nifti(path: Union[str, Path], volume_index: Optional[int] = None, allow_nan: bool = False) -> NiftiVolume:
    """Read a NIfTI volume as a ``[k, j, i]`` array placed as Slicer would place it.

    :param volume_index: which volume of a 4-D file to read; a 4-D file with
        more than one volume is an error without it.
    :param allow_nan: replace NaN/inf voxels by 0 (with a warning) instead of failing.
    :raises DataError: naming the file, for missing, empty, non-NIfTI,
        truncated or damaged files, unsupported dimensions, and NaN/inf voxels.
    """
    path = Path(path)
    image = _load_image(path)
    try:
        geometry, selector = _geometry(path, image, volume_index)
    except (DataError, MemoryError):
        raise
    except Exception as error:  # header values nibabel cannot interpret (unknown codes, bad offsets)
        raise DataError(path, f"has a damaged header ({type(error).__name__}: {error})") from error
    _check_data_size(path, image)
    try:
        raw = np.asarray(image.dataobj.get_unscaled()[selector])
    except MemoryError as error:
        raise DataError(path, f"its {geometry.shape[2]}x{geometry.shape[1]}x{geometry.shape[0]} voxels do not fit "
                              "in memory (damaged dimensions?)") from error
    except FileNotFoundError as error:
        raise DataError(path, f"its image data file is missing ({error.filename})") from error
    except Exception as error:  # gzip/zlib/numpy raise many types for cut-off data
        raise DataError(path, f"voxel data cannot be read: the file is truncated or damaged "
                              f"({type(error).__name__}: {error})") from error
    _check_gzip_integrity(path)
    if raw.ndim == 2:
        raw = raw[:, :, np.newaxis]
    data = raw.astype(raw.dtype.newbyteorder("="), copy=False)
    if geometry.slope is not None:
        # Scale in float64, store float32 (as ITK's reader does for scaled files):
        # 255 * float32(1/255) rounds to exactly 1.0 this way.
        target = np.float64 if data.dtype == np.float64 else np.float32
        data = (data.astype(np.float64) * geometry.slope + (geometry.intercept or 0.0)).astype(target)
    warnings = list(geometry.warnings)
    if data.dtype.kind in "fc":
        bad = ~np.isfinite(data)
        count = int(bad.sum())
        if count:
            if not allow_nan:
                raise DataError(path, f"has {count} NaN or infinite voxel value(s)")
            data = np.where(bad, 0, data).astype(data.dtype)
            warnings.append(f"{count} NaN or infinite voxel value(s) replaced by 0")
    voxels = np.ascontiguousarray(data.transpose(2, 1, 0))
    values = {name: getattr(geometry, name) for name in NiftiGeometry.__dataclass_fields__}
    values["warnings"] = warnings
    return NiftiVolume(voxels=voxels, **values)


# ---------------------------------------------------------------------------------------------- grids


def _as_grid(item: Any) -> Grid:
    if isinstance(item, Grid):
        return item
    if isinstance(item, NiftiGeometry):
        return item.grid
    if isinstance(item, tuple) and len(item) == 2:
        return Grid(tuple(int(n) for n in item[0]), np.asarray(item[1], dtype=float))  # type: ignore[arg-type]
    raise TypeError(f"expected a Grid, NiftiGeometry or (shape, ijk_to_ras), got {type(item).__name__}")


def _corner_indices(shape: Sequence[int]) -> np.ndarray:
    """The 8 corner voxel indices (i, j, k) of a [k, j, i] shape."""
    k, j, i = (max(int(n) - 1, 0) for n in shape)
    return np.array([[a, b, c] for a in (0, i) for b in (0, j) for c in (0, k)], dtype=float)


def voxel_centres_ras(ijk_to_ras: np.ndarray, indices_kji: np.ndarray) -> np.ndarray:
    """RAS positions (N, 3) of voxel centres given as (N, 3) ``[k, j, i]`` indices."""
    indices = np.asarray(indices_kji, dtype=float)[:, ::-1]
    return indices @ ijk_to_ras[:3, :3].T + ijk_to_ras[:3, 3]


def same_grid(a: Any, b: Any, tol: float = 1e-3) -> bool:
    """True if two grids have the same shape and corner voxels within ``tol`` mm.

    ``a`` and ``b`` are :class:`Grid`, :class:`NiftiGeometry`/:class:`NiftiVolume`
    or ``(shape [k, j, i], ijk_to_ras)`` pairs. Comparing the corner voxel
    positions (rather than matrix entries) makes ``tol`` a distance in mm.
    """
    grid_a, grid_b = _as_grid(a), _as_grid(b)
    if tuple(grid_a.shape) != tuple(grid_b.shape):
        return False
    corners = _corner_indices(grid_a.shape)
    points_a = corners @ grid_a.ijk_to_ras[:3, :3].T + grid_a.ijk_to_ras[:3, 3]
    points_b = corners @ grid_b.ijk_to_ras[:3, :3].T + grid_b.ijk_to_ras[:3, 3]
    return bool(np.max(np.linalg.norm(points_a - points_b, axis=1)) <= tol)


def resample_mask_to_grid(
    mask: np.ndarray,
    source_ijk_to_ras: np.ndarray,
    target_shape: Sequence[int],
    target_ijk_to_ras: np.ndarray,
) -> np.ndarray:
    """A ``[k, j, i]`` mask moved onto another grid by nearest neighbour.

    Each target voxel takes the value of the source voxel whose centre is
    nearest to the target voxel's centre (in the source's index space);
    target voxels outside the source grid are False. Works slice by slice so
    that memory stays at a few target slices.
    """
    mask = np.asarray(mask) != 0
    target_shape = tuple(int(n) for n in target_shape)
    result = np.zeros(target_shape, dtype=bool)
    if not mask.any():
        return result
    target_to_source = np.linalg.inv(source_ijk_to_ras) @ np.asarray(target_ijk_to_ras, dtype=float)
    source_k, source_j, source_i = mask.shape
    nk, nj, ni = target_shape
    jj, ii = np.meshgrid(np.arange(nj, dtype=float), np.arange(ni, dtype=float), indexing="ij")
    for k in range(nk):
        # Source (i, j, k) of every target voxel centre in slice k.
        si = target_to_source[0, 0] * ii + target_to_source[0, 1] * jj + target_to_source[0, 2] * k + target_to_source[0, 3]
        sj = target_to_source[1, 0] * ii + target_to_source[1, 1] * jj + target_to_source[1, 2] * k + target_to_source[1, 3]
        sk = target_to_source[2, 0] * ii + target_to_source[2, 1] * jj + target_to_source[2, 2] * k + target_to_source[2, 3]
        # floor(x + 0.5) rounds halves up consistently (np.rint would round half to even).
        ri, rj, rk = (np.floor(v + 0.5).astype(np.int64) for v in (si, sj, sk))
        inside = (ri >= 0) & (ri < source_i) & (rj >= 0) & (rj < source_j) & (rk >= 0) & (rk < source_k)
        if not inside.any():
            continue
        values = np.zeros((nj, ni), dtype=bool)
        values[inside] = mask[rk[inside], rj[inside], ri[inside]]
        result[k] = values
    return result


def count_outside_grid(
    mask: np.ndarray,
    source_ijk_to_ras: np.ndarray,
    target_shape: Sequence[int],
    target_ijk_to_ras: np.ndarray,
) -> int:
    """How many mask voxels have their centre outside the target grid's voxels."""
    indices = np.argwhere(np.asarray(mask) != 0)
    if indices.size == 0:
        return 0
    ras = voxel_centres_ras(source_ijk_to_ras, indices)
    target_ijk = (ras - target_ijk_to_ras[:3, 3]) @ np.linalg.inv(target_ijk_to_ras[:3, :3]).T
    limits = np.array([target_shape[2], target_shape[1], target_shape[0]], dtype=float)
    outside = np.any((target_ijk < -0.5) | (target_ijk >= limits - 0.5), axis=1)
    return int(outside.sum())


# ---------------------------------------------------------------------------------------------- writing


def _raw_header(path: Path) -> Any:
    """The header (and extensions) of a single-file NIfTI exactly as stored, scaling fields included.

    ``nibabel.load`` moves ``scl_slope``/``scl_inter`` into the array proxy and
    blanks them in the image's header; reading the header block again keeps them.
    """
    import nibabel as nib

    if not str(path).lower().endswith((".nii", ".nii.gz")):
        raise DataError(path, "only single-file NIfTI (.nii, .nii.gz) masks can be written back")
    header_class = type(_load_image(path).header)
    try:
        with nib.openers.ImageOpener(str(path)) as stream:
            return header_class.from_fileobj(stream, check=False)
    except Exception as error:  # nibabel raises many types for damaged headers
        raise DataError(path, f"its header cannot be read again ({type(error).__name__}: {error})") from error


def _stored_values(path: Path, header: Any) -> Tuple[Any, Any]:
    """The stored (unscaled) values that mean "outside" and "inside" in a mask file.

    The source's own inside value when it has exactly one non-zero value
    (FTV: 255 with ``scl_slope`` 1/255; STV: 1.0); otherwise the stored value
    that the header's scaling turns into 1.
    """
    dtype = np.dtype(header.get_data_dtype())
    slope, intercept = float(header["scl_slope"]), float(header["scl_inter"])
    scaled = np.isfinite(slope) and slope != 0.0
    intercept = intercept if scaled and np.isfinite(intercept) else 0.0
    slope = slope if scaled else 1.0
    outside, inside = (0.0 - intercept) / slope, (1.0 - intercept) / slope
    image = _load_image(path)
    _check_data_size(path, image)
    stored = np.asarray(image.dataobj.get_unscaled())
    values = np.unique(stored[stored != outside])
    if len(values) == 1 and np.isfinite(values[0]):
        inside = values[0]
    if dtype.kind in "iu":
        outside, inside = np.round(outside), np.round(inside)
    return dtype.type(outside), dtype.type(inside)


def write_mask_like(source: Union[str, Path], mask: np.ndarray, target: Union[str, Path]) -> Path:
    """Write a ``[k, j, i]`` mask as a NIfTI file that follows ``source``'s conventions exactly.

    The header block of ``source`` is copied as stored (dimensions, pixdim,
    units, qform and sform with their codes, data type, ``scl_slope`` /
    ``scl_inter``, description, extensions), so only the voxels differ; inside
    and outside are stored as ``source`` stores them (see :func:`_stored_values`).
    ``.gz`` targets are gzip-compressed. The file is written beside the target
    and then renamed, so a failed write never leaves a half file.

    :raises DataError: naming the file, if ``source`` cannot be read or the
        mask is not on its grid.
    """
    from nibabel.volumeutils import array_to_file

    source, target = Path(source), Path(target)
    header = _raw_header(source)
    shape = tuple(int(n) for n in header.get_data_shape())
    spatial = shape[:3] + (1,) * (3 - min(len(shape), 3))
    mask = np.asarray(mask) != 0
    if mask.shape != (spatial[2], spatial[1], spatial[0]):
        raise DataError(target, f"mask shape {mask.shape} is not the grid of {source.name} "
                                f"({(spatial[2], spatial[1], spatial[0])})")
    outside, inside = _stored_values(source, header)
    data = np.where(mask.transpose(2, 1, 0), inside, outside).astype(header.get_data_dtype()).reshape(shape, order="F")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as partial:  # fsync + rename: a kill leaves the previous file or the new one
        with open(partial, "wb") as handle:
            stream: Any = gzip.GzipFile(filename="", mode="wb", fileobj=handle) \
                if target.name.lower().endswith(".gz") else handle
            try:
                header.write_to(stream)
                array_to_file(data, stream, header.get_data_dtype(), offset=int(header.get_data_offset()),
                              order="F", nan2zero=False)
            finally:
                if stream is not handle:
                    stream.close()
    return target


__all__ += ["write_mask_like"]
