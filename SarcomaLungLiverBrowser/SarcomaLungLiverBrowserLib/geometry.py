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
    "ijk_to_ras_from_slices",
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

    ``slice_spacing`` is the median distance between neighbouring slices.
    Gaps are given as (index of the slice before the gap, distance in mm).
    """

    slice_spacing: float
    number_of_slices: int
    uniform: bool = True
    gaps: List[Tuple[int, float]] = field(default_factory=list)
    missing_slices: int = 0
    duplicate_positions: List[int] = field(default_factory=list)
    shear_degrees: float = 0.0

    def problems(self) -> List[str]:
        """Human-readable descriptions of anything irregular, empty if none."""
        messages = []
        if self.duplicate_positions:
            messages.append(
                f"{len(self.duplicate_positions)} slice(s) share a position with another slice "
                f"(kept the first of each)"
            )
        if self.missing_slices:
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
    normal = planes[0].normal
    distances = [float(np.dot(np.asarray(p.position, dtype=float), normal)) for p in planes]
    return sorted(range(len(planes)), key=lambda index: distances[index])


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
    distances = np.array([np.dot(np.asarray(p.position, dtype=float), normal) for p in planes])
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
