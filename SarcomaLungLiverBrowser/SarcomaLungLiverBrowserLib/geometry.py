"""Patient-space geometry: DICOM LPS, Slicer RAS and voxel (IJK) matrices.

Conventions used throughout the library:

* DICOM patient coordinates are LPS; Slicer's world is RAS. The two differ by
  negating the first two axes.
* Slicer's voxel index (i, j, k) is (column, row, slice); a numpy array of a
  volume is indexed ``array[k, j, i]``.
* ``PixelSpacing`` is (row spacing, column spacing): the distance between
  rows, then between columns. The first three ``ImageOrientationPatient``
  values are the direction in which the *column index* grows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "PixelBox",
    "box_roi_geometry",
    "box_from_roi_corners",
    "LPS_TO_RAS",
    "SlicePlane",
    "SliceStackReport",
    "SliceGrid",
    "IrregularSlices",
    "ijk_to_ras_from_slices",
    "slice_grid",
    "regular_runs",
    "orientation_problem",
    "lps_to_ras",
    "ras_to_lps",
    "pixel_to_lps",
    "slice_normal",
    "apply_matrix",
    "spacing_from_matrix",
    "directions_from_matrix",
]

#: Multiply an LPS point (homogeneous) by this to get RAS, and vice versa.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Relative tolerance on slice-to-slice distances before spacing counts as non-uniform.
SPACING_TOLERANCE = 0.01

#: A slice lies on a regular grid when its origin is within this fraction of the
#: slice spacing (along the normal) and of the pixel spacing (in plane) of its
#: grid position: a hundredth of a voxel, invisible, and wide enough for the
#: rounding of decimal strings in ImagePositionPatient.
GRID_TOLERANCE = 0.01

#: ImageOrientationPatient axes must have unit length and be orthogonal within this
#: (cosines have no unit; real files write 5-10 decimals, so 1e-3 passes every
#: honest file and catches vectors that would silently scale or skew the voxels).
ORIENTATION_TOLERANCE = 1e-3


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """Convert LPS points (..., 3) to RAS (the conversion is its own inverse)."""
    converted = np.array(points, dtype=float, copy=True)
    converted[..., 0] *= -1.0
    converted[..., 1] *= -1.0
    return converted


ras_to_lps = lps_to_ras


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 homogeneous matrix to points of shape (..., 3)."""
    points = np.asarray(points, dtype=float)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def orientation_problem(orientation: Sequence[float], tolerance: float = ORIENTATION_TOLERANCE) -> Optional[str]:
    """Why an ``ImageOrientationPatient`` cannot be used as given, or None when it can.

    The two direction cosines must each have unit length and be orthogonal
    within ``tolerance``. Voxel matrices are built from these vectors times the
    pixel spacing, so a doubled vector would double the pixel size and a
    skewed pair would shear the image: such files are refused, never rescaled.
    """
    values = np.asarray(orientation, dtype=float)
    if values.shape != (6,) or not np.all(np.isfinite(values)):
        return f"ImageOrientationPatient {list(orientation)} is not six finite numbers"
    row_direction, column_direction = values[:3], values[3:]
    lengths = np.linalg.norm(row_direction), np.linalg.norm(column_direction)
    rounded = [round(float(v), 6) for v in values]
    if np.linalg.norm(np.cross(row_direction, column_direction)) < 1e-6 * max(1e-12, lengths[0] * lengths[1]) \
            or min(lengths) == 0:
        return f"ImageOrientationPatient {rounded} has parallel (or zero) row and column axes"
    if max(abs(lengths[0] - 1.0), abs(lengths[1] - 1.0)) > tolerance:
        return (f"ImageOrientationPatient {rounded} has axes of length {lengths[0]:.6g} and {lengths[1]:.6g}, "
                f"not 1 (tolerance {tolerance:g}); the pixel size would be scaled")
    cosine = float(np.dot(row_direction, column_direction) / (lengths[0] * lengths[1]))
    if abs(cosine) > tolerance:
        angle = float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
        return (f"ImageOrientationPatient {rounded} has axes {angle:.4g} degrees apart, not 90 "
                f"(tolerance {tolerance:g} in cosine); the image would be skewed")
    return None


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal of an image plane from its ``ImageOrientationPatient``."""
    row_direction = np.asarray(orientation[:3], dtype=float)
    column_direction = np.asarray(orientation[3:6], dtype=float)
    normal = np.cross(row_direction, column_direction)
    length = np.linalg.norm(normal)
    if length < 1e-6:
        raise ValueError(f"ImageOrientationPatient {list(orientation)} has parallel axes")
    return normal / length


@dataclass(frozen=True)
class SlicePlane:
    """Where one 2-D DICOM image sits in patient (LPS) space."""

    position: Tuple[float, float, float]
    orientation: Tuple[float, float, float, float, float, float]
    pixel_spacing: Tuple[float, float]

    @property
    def row_direction(self) -> np.ndarray:
        """Direction in which the column index grows (first IOP triplet)."""
        return np.asarray(self.orientation[:3], dtype=float)

    @property
    def column_direction(self) -> np.ndarray:
        """Direction in which the row index grows (second IOP triplet)."""
        return np.asarray(self.orientation[3:6], dtype=float)

    @property
    def normal(self) -> np.ndarray:
        return slice_normal(self.orientation)

    def distance_along_normal(self) -> float:
        return float(np.dot(np.asarray(self.position, dtype=float), self.normal))


def pixel_to_lps(plane: SlicePlane, column: np.ndarray, row: np.ndarray) -> np.ndarray:
    """LPS position of pixel centres at (column, row) indices of an image plane."""
    column = np.asarray(column, dtype=float)[..., None]
    row = np.asarray(row, dtype=float)[..., None]
    row_spacing, column_spacing = plane.pixel_spacing
    return (
        np.asarray(plane.position, dtype=float)
        + column * column_spacing * plane.row_direction
        + row * row_spacing * plane.column_direction
    )


@dataclass
class SliceStackReport:
    """What was found while stacking 2-D slices into a volume.

    ``slice_spacing`` is the distance between neighbouring grid positions
    (from :func:`slice_grid`; the median step from :func:`ijk_to_ras_from_slices`).
    Gaps are given as (index of the slice before the gap, distance in mm);
    ``empty_slices`` are the grid indices k that no file fills (a missing
    slice keeps its place), ``max_deviation_mm`` how far the farthest slice
    origin lies from its grid position.
    """

    slice_spacing: float
    number_of_slices: int
    uniform: bool = True
    gaps: List[Tuple[int, float]] = field(default_factory=list)
    missing_slices: int = 0
    duplicate_positions: List[int] = field(default_factory=list)
    shear_degrees: float = 0.0
    empty_slices: List[int] = field(default_factory=list)
    max_deviation_mm: float = 0.0

    def problems(self) -> List[str]:
        """Human-readable descriptions of anything irregular, empty if none."""
        messages = []
        if self.duplicate_positions:
            messages.append(
                f"{len(self.duplicate_positions)} slice(s) share a position with another slice "
                f"(kept the first of each)"
            )
        if self.empty_slices:
            shown = ", ".join(str(k) for k in self.empty_slices[:10]) + (" ..." if len(self.empty_slices) > 10 else "")
            messages.append(
                f"{len(self.empty_slices)} slice position(s) have no image file (k = {shown}); they are kept "
                f"empty at their true place on the {self.slice_spacing:.4g} mm grid, so every other slice "
                "stays where its file puts it"
            )
        elif self.missing_slices:
            messages.append(
                f"about {self.missing_slices} slice(s) missing: gaps at "
                + ", ".join(f"after slice {index} ({distance:.3g} mm)" for index, distance in self.gaps)
            )
        elif not self.uniform:
            messages.append(
                "non-uniform slice spacing: "
                + ", ".join(f"after slice {index} ({distance:.3g} mm)" for index, distance in self.gaps)
                + f" against a median of {self.slice_spacing:.3g} mm"
            )
        if self.shear_degrees > 0.1:
            messages.append(
                f"slices are stacked {self.shear_degrees:.2f} degrees off their normal (gantry tilt); "
                "the volume uses the normal direction"
            )
        return messages


def _analyse_spacing(distances: np.ndarray) -> Tuple[float, bool, List[Tuple[int, float]], int]:
    steps = np.diff(distances)
    if steps.size == 0:
        return 1.0, True, [], 0
    spacing = float(np.median(steps))
    if spacing <= 0:
        return spacing, False, [], 0
    irregular = np.abs(steps - spacing) > SPACING_TOLERANCE * spacing + 1e-4
    gaps = [(int(index), float(steps[index])) for index in np.nonzero(irregular)[0]]
    missing = 0
    for _, step in gaps:
        multiple = step / spacing
        if round(multiple) >= 2 and abs(multiple - round(multiple)) < 0.1:
            missing += int(round(multiple)) - 1
    return spacing, not gaps, gaps, missing


def sort_slices(planes: Sequence[SlicePlane]) -> List[int]:
    """Indices of ``planes`` ordered along the slice normal of the first plane."""
    if not planes:
        return []
    distances = _distances_along(planes, planes[0].normal).tolist()
    return sorted(range(len(planes)), key=lambda index: distances[index])


def _distances_along(planes: Sequence[SlicePlane], normal: np.ndarray) -> np.ndarray:
    """Each plane's position projected on ``normal``, in one numpy call rather than one per plane.

    One 1x3 by 3x1 product per plane, not one n x 3 product: BLAS sums the
    latter in another order, so distances (and the spacing and matrix made
    from them) would move by a rounding step against ``np.dot`` per plane.
    """
    positions = np.array([plane.position for plane in planes], dtype=float).reshape(-1, 1, 3)
    return (positions @ np.asarray(normal, dtype=float).reshape(3, 1))[:, 0, 0]


def ijk_to_ras_from_slices(
    planes: Sequence[SlicePlane], fallback_slice_spacing: Optional[float] = None
) -> Tuple[np.ndarray, SliceStackReport]:
    """IJK-to-RAS matrix of a stack of parallel slices given in stacking order.

    The k axis follows the slice normal (row direction x column direction), so
    the planes must already be sorted along it (see :func:`sort_slices`). The
    slice spacing is the median distance between neighbours; irregular gaps,
    duplicates and gantry tilt are reported rather than silently absorbed.

    :param planes: the slices, sorted along the normal, duplicates removed.
    :param fallback_slice_spacing: spacing for a single-slice stack
        (e.g. ``SliceThickness``); 1 mm when not given.
    """
    if not planes:
        raise ValueError("no slices to stack")
    first = planes[0]
    normal = first.normal
    distances = _distances_along(planes, normal)
    spacing, uniform, gaps, missing = _analyse_spacing(distances)
    if len(planes) == 1:
        spacing = float(fallback_slice_spacing or 1.0)
    shear = 0.0
    if len(planes) > 1:
        span = np.asarray(planes[-1].position, dtype=float) - np.asarray(first.position, dtype=float)
        length = np.linalg.norm(span)
        if length > 0:
            cosine = float(np.clip(np.dot(span / length, normal), -1.0, 1.0))
            shear = float(np.degrees(np.arccos(cosine)))
    row_spacing, column_spacing = first.pixel_spacing
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, 0] = first.row_direction * column_spacing
    ijk_to_lps[:3, 1] = first.column_direction * row_spacing
    ijk_to_lps[:3, 2] = normal * spacing
    ijk_to_lps[:3, 3] = np.asarray(first.position, dtype=float)
    report = SliceStackReport(
        slice_spacing=spacing,
        number_of_slices=len(planes),
        uniform=uniform,
        gaps=gaps,
        missing_slices=missing,
        shear_degrees=shear,
    )
    return LPS_TO_RAS @ ijk_to_lps, report


class IrregularSlices(ValueError):
    """Slices that no regular grid holds exactly; ``plane_index`` is the first slice off it."""

    def __init__(self, plane_index: int, message: str) -> None:
        super().__init__(message)
        self.plane_index = plane_index


@dataclass
class SliceGrid:
    """A regular grid holding every slice of a stack at its own position.

    ``slice_indices[n]`` is the grid index k of the n-th plane; grid positions
    that no plane fills are listed in ``report.empty_slices``.
    """

    ijk_to_ras: np.ndarray
    slice_indices: List[int]
    report: SliceStackReport

    @property
    def depth(self) -> int:
        return self.report.number_of_slices


def _in_plane_drift(planes: Sequence[SlicePlane]) -> Tuple[np.ndarray, np.ndarray]:
    """(offsets along the normal, in-plane offsets in pixels [n, 2]) of each origin from the first."""
    first = planes[0]
    origins = np.array([p.position for p in planes], dtype=float)
    offsets = origins - origins[0]
    row_spacing, column_spacing = first.pixel_spacing
    in_plane = np.stack([offsets @ first.row_direction / column_spacing,
                         offsets @ first.column_direction / row_spacing], axis=1)
    return offsets @ first.normal, in_plane


def _fit_grid(distances: np.ndarray, spacing: float) -> Optional[Tuple[float, np.ndarray, float]]:
    """(fitted spacing, k of each slice, largest deviation mm) when ``spacing`` holds every slice, else None."""
    if not np.isfinite(spacing) or spacing <= 0:
        return None
    indices = np.rint(distances / spacing).astype(np.int64)
    if indices[0] != 0 or np.any(np.diff(indices) <= 0):
        return None
    # Least squares through the first slice: every later slice pulls the spacing equally.
    fitted = float(np.dot(indices, distances) / max(1, int(np.dot(indices, indices)))) if len(indices) > 1 else spacing
    deviation = float(np.max(np.abs(distances - indices * fitted)))
    if deviation > GRID_TOLERANCE * fitted:
        return None
    return fitted, indices, deviation


def slice_grid(planes: Sequence[SlicePlane], fallback_slice_spacing: Optional[float] = None,
               max_slices: Optional[int] = None) -> SliceGrid:
    """The regular grid on which every slice of a stack keeps its own position.

    The grid's k axis is the slice normal and its spacing the smallest step
    that is a whole divisor of every step between slices (tried: the median
    step, then the smallest), fitted by least squares. A missing slice
    becomes an empty grid position, so no voxel is ever moved to where its
    file does not put it (unlike stacking the slices as if contiguous).

    :param planes: the slices, sorted along the normal, duplicates removed.
    :param fallback_slice_spacing: spacing of a single-slice stack (e.g. ``SliceThickness``).
    :param max_slices: refuse grids deeper than this (e.g. a 2-slice series 600 mm apart).
    :raises IrregularSlices: when the origins drift in-plane (gantry tilt or a
        sheared stack: refused, not resampled), when the steps have no common
        divisor on which every slice lies within :data:`GRID_TOLERANCE`
        (variable spacing), or when the grid would exceed ``max_slices``.
    """
    if not planes:
        raise ValueError("no slices to stack")
    first = planes[0]
    distances, in_plane = _in_plane_drift(planes)
    drifting = np.nonzero(np.any(np.abs(in_plane) > GRID_TOLERANCE, axis=1))[0]
    if drifting.size:
        n = int(drifting[0])
        shift = float(np.linalg.norm(np.asarray(planes[n].position, dtype=float)
                                     - np.asarray(first.position, dtype=float) - distances[n] * first.normal))
        angle = float(np.degrees(np.arctan2(shift, abs(distances[n])))) if distances[n] else 90.0
        raise IrregularSlices(n, (
            f"lies {shift:.3g} mm beside the line through the first slice along its normal (the stack is "
            f"{angle:.3g} degrees off its normal: gantry tilt or a sheared stack); such a series is refused "
            "rather than resampled or shown sheared"))
    if len(planes) == 1:
        spacing, indices, deviation = float(fallback_slice_spacing or 1.0), np.zeros(1, dtype=np.int64), 0.0
    else:
        steps = np.diff(distances)
        if np.any(steps <= 1e-6):
            n = int(np.argmax(steps <= 1e-6)) + 1
            raise IrregularSlices(n, "does not lie beyond the previous slice along the normal (planes must be "
                                     "sorted and duplicates removed)")
        fit = None
        for candidate in (float(np.median(steps)), float(np.min(steps))):
            fit = _fit_grid(distances, candidate)
            if fit is not None:
                break
        if fit is None:
            base = float(np.min(steps))
            ratios = steps / base
            n = int(np.argmax(np.abs(ratios - np.rint(ratios)) > GRID_TOLERANCE)) + 1
            raise IrregularSlices(n, (
                f"is {steps[n - 1]:.4g} mm from the previous slice, not a whole multiple of the series' "
                f"{base:.4g} mm spacing (variable slice spacing); no regular grid holds every slice where "
                "its file puts it"))
        spacing, indices, deviation = fit
    depth = int(indices[-1]) + 1
    if max_slices is not None and depth > max_slices:
        raise IrregularSlices(len(planes) - 1, (
            f"lies {distances[-1]:.4g} mm from the first slice: a {spacing:.4g} mm grid holding all "
            f"{len(planes)} slices would need {depth} positions, more than the {max_slices} allowed"))
    steps_in_k = np.diff(indices)
    gaps = [(int(indices[n]), float(distances[n + 1] - distances[n])) for n in np.nonzero(steps_in_k > 1)[0]]
    present = set(int(k) for k in indices)
    empty = [k for k in range(depth) if k not in present]
    row_spacing, column_spacing = first.pixel_spacing
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, 0] = first.row_direction * column_spacing
    ijk_to_lps[:3, 1] = first.column_direction * row_spacing
    ijk_to_lps[:3, 2] = first.normal * spacing
    ijk_to_lps[:3, 3] = np.asarray(first.position, dtype=float)
    report = SliceStackReport(
        slice_spacing=spacing,
        number_of_slices=depth,
        uniform=not empty,
        gaps=gaps,
        missing_slices=len(empty),
        empty_slices=empty,
        max_deviation_mm=deviation,
    )
    return SliceGrid(LPS_TO_RAS @ ijk_to_lps, [int(k) for k in indices], report)


def regular_runs(planes: Sequence[SlicePlane], max_slices: Optional[int] = None) -> List[List[int]]:
    """Split a sorted stack into consecutive runs that each fit :func:`slice_grid`.

    For a series that no single grid holds (variable spacing): each run can be
    read as its own exact volume. Runs are grown greedily from the first slice;
    a slice that drifts in-plane from its predecessor starts a new run.
    """
    runs: List[List[int]] = []
    current: List[int] = []
    for index in range(len(planes)):
        trial = current + [index]
        try:
            slice_grid([planes[n] for n in trial], max_slices=max_slices)
        except IrregularSlices:
            runs.append(current)
            current = [index]
            continue
        current = trial
    if current:
        runs.append(current)
    return runs


def spacing_from_matrix(ijk_to_ras: np.ndarray) -> np.ndarray:
    """Voxel spacing (i, j, k) in mm: the lengths of the matrix columns."""
    return np.linalg.norm(np.asarray(ijk_to_ras)[:3, :3], axis=0)


def directions_from_matrix(ijk_to_ras: np.ndarray) -> np.ndarray:
    """Unit direction of each voxel axis, as the columns of a 3x3 matrix."""
    matrix = np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    return matrix / spacing_from_matrix(ijk_to_ras)


#: A pixel box on one slice, inclusive: (xmin, ymin, xmax, ymax).
PixelBox = Tuple[float, float, float, float]


def box_roi_geometry(ijk_to_ras: np.ndarray, box: PixelBox, first_slice: int, last_slice: int
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre RAS, size mm, axes as columns) of a ROI covering a pixel box on slices.

    The ROI covers pixels ``xmin..xmax`` x ``ymin..ymax`` whole (edges half a
    pixel outside the indices) and slices ``first..last`` ± half the spacing.
    Axes are the volume's own voxel axes, so oblique series stay exact.
    """
    xmin, ymin, xmax, ymax = box
    low = np.array([xmin - 0.5, ymin - 0.5, first_slice - 0.5])
    high = np.array([xmax + 0.5, ymax + 0.5, last_slice + 0.5])
    center = apply_matrix(ijk_to_ras, (low + high) / 2.0)
    size = (high - low) * spacing_from_matrix(ijk_to_ras)
    return center, size, directions_from_matrix(ijk_to_ras)


def box_from_roi_corners(ijk_to_ras: np.ndarray, corners_ras: np.ndarray) -> Tuple[float, float, float, float, float]:
    """Inverse of :func:`box_roi_geometry` for one slice: (xmin, ymin, xmax, ymax, k).

    Corners are mapped into voxel space; the result is not rounded.
    """
    ijk = apply_matrix(np.linalg.inv(ijk_to_ras), np.asarray(corners_ras, dtype=float))
    low, high = ijk.min(axis=0), ijk.max(axis=0)
    return (float(low[0] + 0.5), float(low[1] + 0.5), float(high[0] - 0.5), float(high[1] - 0.5),
            float((low[2] + high[2]) / 2.0))
