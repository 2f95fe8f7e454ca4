"""Agreement between two segmentations of one image (expert vs AI): Dice, HD95, volume difference.

Scene-free and array-based: every structure is a bool mask ``[k, j, i]`` on
one shared grid (decode both SEGs onto the same CT with
:func:`~.dicom_seg.decode_seg`), plus the grid's voxel spacing in mm.

Structures are matched by their segmented-property *codes*, never by label:
IDC's AI SEGs of CRLM (``bamf_aimi_annotations``, "AIMI liver-tumor AI
segmentation") call the liver "Liver" like the expert SEG but code and name
their lesions differently, and labels vary by tool ("Liver Remnant" /
"Liver_Remnant"). The key of a structure is its property type code (SNOMED
"SRT" spelled "SCT"), with its type modifier when it has one. Every lesion
code in :data:`LESION_TYPE_CODES`, and every segment whose category is a
morphologically abnormal / altered structure, is one structure, "tumour":
the expert's Neoplasm ``Tumor_1 .. Tumor_N`` and BAMF's malignant-neoplasm
label then compare with each other.

Tumours are compared twice:

* as a union (all lesion segments of each side merged), and
* one-to-one: the lesions of each side (each lesion segment; or, when a side
  has a single lesion segment holding all tumours, as AI outputs do, its
  26-connected components) are paired by the Hungarian method on voxel
  overlap (``scipy.optimize.linear_sum_assignment``). Lesions without an
  overlapping partner are listed as missed (reference only) or extra (test only).

Definitions (stated because tools differ):

* Dice = 2 |A ∩ B| / (|A| + |B|); undefined (NaN) when both are empty.
* Surfaces are the mask voxels with a 6-neighbour outside the mask; the
  distance of a surface voxel to the other surface is the Euclidean distance
  between voxel centres in mm (grid spacing per axis).
* HD95 = the larger of the two directed 95th percentiles (numpy's linear
  interpolation) of those distances; NaN when either mask is empty.
* Volumes in mL = voxels x voxel volume / 1000; difference = test - reference.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .dicom_seg import DecodedSegmentation, SegCode

__all__ = [
    "Structure",
    "AgreementRow",
    "Agreement",
    "LESION_TYPE_CODES",
    "LESION_CATEGORY_CODES",
    "TUMOUR",
    "structure_key",
    "structures_from_decoded",
    "dice",
    "hausdorff95",
    "volume_ml",
    "compare_structures",
]

#: The key every lesion code maps to.
TUMOUR = "tumour"

#: Segmented property types that denote a lesion (SCT code values).
LESION_TYPE_CODES = frozenset({
    "108369006",  # Neoplasm (the expert CRLM SEGs' tumours; IDC's "Neoplasm" fallback)
    "86049000",   # Neoplasm, malignant (primary) - SegDB NEOPLASM_MALIGNANT_PRIMARY, used by BAMF/AIMI SEGs
    "14799000",   # Neoplasm, metastatic
    "4147007",    # Mass
    "52988006",   # Lesion
    "363346000",  # Malignant neoplastic disease
    "1240414004",  # Malignant neoplasm (newer SNOMED release)
})

#: Segmented property categories that denote a lesion whatever its type.
LESION_CATEGORY_CODES = frozenset({
    "49755003",   # Morphologically abnormal structure / Morphologically altered structure
})


@dataclass
class Structure:
    """One segment of one segmentation: its codes, its label and its mask on the shared grid."""

    label: str
    mask: np.ndarray
    category: Optional[SegCode] = None
    type: Optional[SegCode] = None
    type_modifier: Optional[SegCode] = None
    number: int = 0

    @property
    def key(self) -> str:
        return structure_key(self.category, self.type, self.type_modifier)


@dataclass
class AgreementRow:
    """One compared structure (or lesion pair).

    :param kind: ``"structure"``, ``"tumour union"``, ``"tumour pair"``,
        ``"tumour missed"`` (reference only), ``"tumour extra"`` (test only),
        ``"reference only"`` / ``"test only"`` for an unmatched structure.
    """

    kind: str
    structure: str
    reference_labels: str
    test_labels: str
    dice: float
    hd95_mm: float
    reference_ml: float
    test_ml: float
    volume_difference_ml: float
    volume_difference_percent: float

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class Agreement:
    """All rows of one comparison, with the grid it was measured on."""

    spacing: Tuple[float, float, float]
    rows: List[AgreementRow] = field(default_factory=list)

    def row(self, kind: str, structure: str) -> AgreementRow:
        for row in self.rows:
            if row.kind == kind and row.structure == structure:
                return row
        raise KeyError(f"no {kind} row for {structure!r}")

    def to_dataframe(self) -> Any:
        import pandas as pd

        columns = list(AgreementRow.__dataclass_fields__)
        return pd.DataFrame([row.to_dict() for row in self.rows], columns=columns)


# ---------------------------------------------------------------------- keys
def _scheme(code: SegCode) -> str:
    return "SCT" if code.scheme.upper() in ("SRT", "SNM3", "SCT") else code.scheme.upper()


def structure_key(category: Optional[SegCode], type_: Optional[SegCode],
                  type_modifier: Optional[SegCode] = None) -> str:
    """The matching key of a segment from its codes (see the module text); "" when it has no type code."""
    if type_ is None:
        return ""
    if (_scheme(type_) == "SCT" and type_.value in LESION_TYPE_CODES) or (
            category is not None and _scheme(category) == "SCT" and category.value in LESION_CATEGORY_CODES):
        return TUMOUR
    key = f"{_scheme(type_)}:{type_.value}"
    if type_modifier is not None:
        key += f"+{_scheme(type_modifier)}:{type_modifier.value}"
    return key


def _meaning(structures: Sequence[Structure]) -> str:
    first = structures[0]
    return TUMOUR if first.key == TUMOUR else (first.type.meaning if first.type else first.label)


def structures_from_decoded(decoded: DecodedSegmentation) -> List[Structure]:
    """The non-background segments of a decoded SEG as structures (masks on its CT grid)."""
    return [Structure(segment.label, segment.mask, segment.category, segment.type, segment.type_modifier,
                      segment.number)
            for segment in decoded.segments if not segment.is_background]


# ---------------------------------------------------------------------- measures
def dice(reference: np.ndarray, test: np.ndarray) -> float:
    """Dice coefficient of two bool masks of one shape; NaN when both are empty."""
    reference, test = np.asarray(reference, dtype=bool), np.asarray(test, dtype=bool)
    total = int(np.count_nonzero(reference)) + int(np.count_nonzero(test))
    if total == 0:
        return math.nan
    return 2.0 * int(np.count_nonzero(reference & test)) / total


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a bool mask in millilitres."""
    return int(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0


def _crop(*masks: np.ndarray) -> Tuple[slice, ...]:
    """The bounding box of all masks, one voxel wider (the surfaces need a neighbour outside)."""
    union = np.logical_or.reduce([np.asarray(m, dtype=bool) for m in masks])
    indices = np.nonzero(union)
    return tuple(slice(max(0, int(axis.min()) - 1), int(axis.max()) + 2) for axis in indices)


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    six_neighbours = ndimage.generate_binary_structure(3, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=six_neighbours, border_value=0)


def _directed_distances(from_surface: np.ndarray, to_surface: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    from scipy import ndimage

    # Distance of every voxel to the nearest voxel of to_surface (zeros of the inverted array).
    distance_map = ndimage.distance_transform_edt(~to_surface, sampling=tuple(float(s) for s in spacing))
    return distance_map[from_surface]


def hausdorff95(reference: np.ndarray, test: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile symmetric Hausdorff distance in mm between two bool masks [k, j, i].

    :param spacing: voxel spacing along (k, j, i) in mm.
    :returns: NaN when either mask is empty.
    """
    reference, test = np.asarray(reference, dtype=bool), np.asarray(test, dtype=bool)
    if reference.shape != test.shape:
        raise ValueError(f"masks of different shapes {reference.shape} and {test.shape}")
    if not reference.any() or not test.any():
        return math.nan
    window = _crop(reference, test)
    reference, test = reference[window], test[window]
    reference_surface, test_surface = _surface(reference), _surface(test)
    forward = _directed_distances(reference_surface, test_surface, spacing)
    backward = _directed_distances(test_surface, reference_surface, spacing)
    return float(max(np.percentile(forward, 95), np.percentile(backward, 95)))


def _row(kind: str, structure: str, reference: Optional[np.ndarray], test: Optional[np.ndarray],
         reference_labels: str, test_labels: str, spacing: Sequence[float], shape: Tuple[int, ...]) -> AgreementRow:
    empty = np.zeros(shape, dtype=bool)
    reference = empty if reference is None else reference
    test = empty if test is None else test
    reference_ml, test_ml = volume_ml(reference, spacing), volume_ml(test, spacing)
    difference = test_ml - reference_ml
    percent = 100.0 * difference / reference_ml if reference_ml > 0 else math.nan
    return AgreementRow(kind, structure, reference_labels, test_labels, dice(reference, test),
                        hausdorff95(reference, test, spacing), reference_ml, test_ml, difference, percent)


# ---------------------------------------------------------------------- lesions
def _lesions(structures: Sequence[Structure]) -> List[Tuple[str, np.ndarray]]:
    """(name, mask) of each lesion: each segment, or the components of a single lesion segment."""
    if len(structures) != 1:
        return [(s.label, np.asarray(s.mask, dtype=bool)) for s in structures]
    from scipy import ndimage

    only = np.asarray(structures[0].mask, dtype=bool)
    labelled, count = ndimage.label(only, structure=np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return [(structures[0].label, only)]
    return [(f"{structures[0].label} component {n}", labelled == n) for n in range(1, count + 1)]


def _pair_lesions(reference: Sequence[Tuple[str, np.ndarray]], test: Sequence[Tuple[str, np.ndarray]]
                  ) -> List[Tuple[int, int]]:
    """Index pairs maximising total overlap (Hungarian); pairs that do not overlap are dropped."""
    from scipy.optimize import linear_sum_assignment

    if not reference or not test:
        return []
    overlap = np.array([[np.count_nonzero(r & t) for _, t in test] for _, r in reference], dtype=float)
    rows, columns = linear_sum_assignment(overlap, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, columns) if overlap[r, c] > 0]


def _compare_tumours(reference: Sequence[Structure], test: Sequence[Structure], spacing: Sequence[float],
                     shape: Tuple[int, ...]) -> List[AgreementRow]:
    rows = []
    union_reference = np.logical_or.reduce([np.asarray(s.mask, dtype=bool) for s in reference]) if reference else None
    union_test = np.logical_or.reduce([np.asarray(s.mask, dtype=bool) for s in test]) if test else None
    rows.append(_row("tumour union", TUMOUR, union_reference, union_test,
                     ", ".join(s.label for s in reference), ", ".join(s.label for s in test), spacing, shape))
    reference_lesions, test_lesions = _lesions(reference), _lesions(test)
    pairs = _pair_lesions(reference_lesions, test_lesions)
    for r, t in pairs:
        rows.append(_row("tumour pair", TUMOUR, reference_lesions[r][1], test_lesions[t][1],
                         reference_lesions[r][0], test_lesions[t][0], spacing, shape))
    paired_reference = {r for r, _ in pairs}
    paired_test = {t for _, t in pairs}
    for index, (name, mask) in enumerate(reference_lesions):
        if index not in paired_reference:
            rows.append(_row("tumour missed", TUMOUR, mask, None, name, "", spacing, shape))
    for index, (name, mask) in enumerate(test_lesions):
        if index not in paired_test:
            rows.append(_row("tumour extra", TUMOUR, None, mask, "", name, spacing, shape))
    return rows


# ---------------------------------------------------------------------- comparison
def compare_structures(reference: Sequence[Structure], test: Sequence[Structure],
                       spacing: Sequence[float]) -> Agreement:
    """Per-structure agreement of a test segmentation (e.g. AI) with a reference (e.g. expert).

    Structures with the same key (see :func:`structure_key`) are merged per
    side and compared; tumours are compared as a union and one-to-one.
    Structures on one side only get a row with NaN Dice and HD95. Segments
    without a type code cannot be matched and are skipped.

    :param spacing: voxel spacing along (k, j, i) in mm.
    :raises ValueError: when the masks are not all on one grid.
    """
    shapes = {tuple(np.shape(s.mask)) for s in (*reference, *test)}
    if len(shapes) > 1:
        raise ValueError(f"the segmentations are not on one grid: mask shapes {sorted(shapes)}")
    shape = shapes.pop() if shapes else (0, 0, 0)
    spacing = tuple(float(s) for s in spacing)
    by_key_reference: Dict[str, List[Structure]] = {}
    by_key_test: Dict[str, List[Structure]] = {}
    for structure in reference:
        if structure.key:
            by_key_reference.setdefault(structure.key, []).append(structure)
    for structure in test:
        if structure.key:
            by_key_test.setdefault(structure.key, []).append(structure)
    agreement = Agreement(spacing=spacing)  # type: ignore[arg-type]
    keys = list(dict.fromkeys([*by_key_reference, *by_key_test]))
    for key in keys:
        reference_group, test_group = by_key_reference.get(key, []), by_key_test.get(key, [])
        if key == TUMOUR:
            agreement.rows.extend(_compare_tumours(reference_group, test_group, spacing, shape))
            continue
        name = _meaning(reference_group or test_group)
        kind = "structure" if reference_group and test_group else ("reference only" if reference_group
                                                                   else "test only")
        merged_reference = (np.logical_or.reduce([np.asarray(s.mask, dtype=bool) for s in reference_group])
                            if reference_group else None)
        merged_test = (np.logical_or.reduce([np.asarray(s.mask, dtype=bool) for s in test_group])
                       if test_group else None)
        agreement.rows.append(_row(kind, name, merged_reference, merged_test,
                                   ", ".join(s.label for s in reference_group),
                                   ", ".join(s.label for s in test_group), spacing, shape))
    return agreement


def grid_spacing_kji(ijk_to_ras: np.ndarray) -> Tuple[float, float, float]:
    """Voxel spacing along (k, j, i) from an IJK-to-RAS matrix (the order the masks are indexed in)."""
    matrix = np.asarray(ijk_to_ras, dtype=float)[:3, :3]
    i, j, k = np.linalg.norm(matrix, axis=0)
    return float(k), float(j), float(i)


def collection_agreement(per_case: Dict[str, Agreement]) -> Tuple[Any, Any]:
    """(every row with its case, a summary per kind and structure) for a collection's report.

    The summary gives the number of cases and the mean and median Dice and
    HD95 over the cases where they are defined, and the mean volume difference.
    """
    import pandas as pd

    frames = [agreement.to_dataframe().assign(case_id=case_id) for case_id, agreement in per_case.items()]
    columns = ["case_id", *AgreementRow.__dataclass_fields__]
    rows = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    summary = (rows.groupby(["kind", "structure"], sort=False)
               .agg(cases=("case_id", "nunique"), dice_mean=("dice", "mean"), dice_median=("dice", "median"),
                    hd95_mean_mm=("hd95_mm", "mean"), hd95_median_mm=("hd95_mm", "median"),
                    volume_difference_mean_ml=("volume_difference_ml", "mean"))
               .reset_index()) if len(rows) else pd.DataFrame()
    return rows, summary


__all__ += ["grid_spacing_kji", "collection_agreement"]


def _segment_window(segmentations: Sequence[DecodedSegmentation]) -> Optional[Tuple[slice, ...]]:
    """The bounding box, on the shared grid, of every non-empty segment of the segmentations (None: all empty)."""
    low: Optional[np.ndarray] = None
    high: Optional[np.ndarray] = None
    for segmentation in segmentations:
        for segment in segmentation.segments:
            if segment.is_background or segment.is_empty:
                continue
            start = np.asarray(segment.offset, dtype=int)
            end = start + np.asarray(segment.box.shape, dtype=int)
            low = start if low is None else np.minimum(low, start)
            high = end if high is None else np.maximum(high, end)
    if low is None or high is None:
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def _cropped_structures(segmentation: DecodedSegmentation, window: Tuple[slice, ...]) -> List[Structure]:
    """The segmentation's structures with masks cut to ``window`` (which holds every voxel of every segment)."""
    shape = tuple(part.stop - part.start for part in window)
    origin = np.array([part.start for part in window], dtype=int)
    structures = []
    for segment in segmentation.segments:
        if segment.is_background:
            continue
        mask = np.zeros(shape, dtype=bool)
        if segment.box.size and not segment.is_empty:
            k, j, i = (np.asarray(segment.offset, dtype=int) - origin)
            depth, rows, columns = segment.box.shape
            mask[k:k + depth, j:j + rows, i:i + columns] = segment.box
        structures.append(Structure(segment.label, mask, segment.category, segment.type, segment.type_modifier,
                                    segment.number))
    return structures


def compare_segmentations(reference: DecodedSegmentation, test: DecodedSegmentation,
                          ijk_to_ras: np.ndarray) -> Agreement:
    """:func:`compare_structures` of two SEGs decoded onto one CT, measured inside their segments' bounding box.

    Every measure depends only on the voxels of the two segmentations (the
    surfaces' outside neighbours lie in the box or outside every mask, and
    every distance is between voxels in the box), so cutting the grid to that
    box gives the same numbers as the whole CT grid while a 40-segment CRLM
    SEG on a 512 x 512 x 240 CT needs 40 box-sized masks, not 40 CT-sized ones.

    :param ijk_to_ras: the CT's IJK-to-RAS matrix (for the voxel spacing).
    :raises ValueError: when the two were not decoded onto grids of one shape.
    """
    reference_shapes = {s.grid_shape for s in reference.segments if not s.is_background}
    test_shapes = {s.grid_shape for s in test.segments if not s.is_background}
    if len(reference_shapes | test_shapes) > 1:
        raise ValueError(f"{reference.path.name} and {test.path.name} are not decoded onto one grid "
                         f"({sorted(reference_shapes | test_shapes)})")
    spacing = grid_spacing_kji(ijk_to_ras)
    window = _segment_window([reference, test]) or (slice(0, 1),) * 3
    return compare_structures(_cropped_structures(reference, window), _cropped_structures(test, window), spacing)


#: Columns of a case's expert vs AI rows (``metrics["seg_agreement"]``, its table node, the report's CSV):
#: which segmentation nodes were compared, then an :class:`AgreementRow`.
CASE_AGREEMENT_COLUMNS = ["reference", "test", "test_description", *AgreementRow.__dataclass_fields__]

__all__ += ["compare_segmentations", "CASE_AGREEMENT_COLUMNS"]
