"""ISPY1-Tumor-SEG-Radiomics (TCIA analysis result, Chitalia et al. 2022): NIfTI DCE-MRI and tumour masks.

Facts used here (shared/notes/datasets.md §2):

* the published tree under ``NIfTI-Files/``: ``images_bias-corrected_nifti/<case>/<case>_DCE_000{0,1,2}_N3.nii.gz``
  (native grid), ``images_bias-corrected_resampled_zscored_nifti/<case>/<case>_DCE_000x_N3_zscored.nii.gz``
  (1 mm grid), ``masks_ftv/<case>.nii.gz`` (native grid), ``masks_stv_manual/<case>.nii.gz`` and
  ``masks_stv_resunet/<case>.nii.gz`` (1 mm grid); one third-party listing shows ``.nii`` and no
  ``_zscored`` suffix, so both spellings are accepted;
* DCE_0000 is pre-contrast, DCE_0001 the first (early) and DCE_0002 the second (late) post-contrast
  phase of the baseline exam;
* ``ISPY_DataPaper_features.xlsx`` (``SubjectID`` numeric without ``ISPY1_``, then CaPTk features of
  the manual STV on the 1 mm z-scored images) and ``captk_parameter_file_ispy1.csv``.

CaPTk's volumetric features (FeatureExtraction ``CalculateVolumetric``) are ``Pixels`` (voxel
count) and ``Volume`` (count times voxel volume, mm³); its horizontal output names columns
``<Modality>_<ROILabel>_<FeatureFamily>_<Feature>``, so the volume column ends in
``Volumetric_Volume``. Without such a column, a column with ``Volume`` in its name is used.

QA definitions
--------------
* **Dice** between STV manual and ResUNet on their common grid: 2|A∩B| / (|A|+|B|).
* **Hausdorff distance** (symmetric, mm) between the *surface voxels* of the two masks —
  voxels inside the mask with at least one of their 6 face neighbours outside (or at the
  grid edge) — measured between voxel *centres* in RAS (so anisotropic or oblique grids
  are measured correctly); HD95 is the 95th percentile of both directed distance sets
  (the usual MedPy/DeepMind surface-distance convention).
* **Volume** (cm³) of each mask on its own grid: voxel count times voxel volume.
* **Background**: mask voxels where the image it is shown on has its minimum value
  (zero in the native images; the z-score of zero in the z-scored ones).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..case_data import (
    ATTRIBUTE_PREFIX, SUBJECT_HIERARCHY_UID_NAME, CaseData, LoadedCase, Placement, SegmentationData, SegmentSpec,
    TableData, VolumeData,
)
from ..errors import DataError
from ..findings import ERROR, INFO, WARNING, Finding
from ..formats.nifti import (
    NiftiVolume,
    count_outside_grid,
    is_nifti_name,
    read_nifti,
    resample_mask_to_grid,
    same_grid,
    voxel_centres_ras,
)
from ..progress import ProgressCallback, report, sub_progress
from .base import CaseRecord, Collection

if TYPE_CHECKING:  # pandas is imported where a table is read, so detection stays light
    import pandas as pd

__all__ = [
    "Ispy1Collection",
    "Ispy1Case",
    "COLLECTIONS",
    "TIMEPOINTS",
    "MASK_KINDS",
    "HausdorffResult",
    "dice_coefficient",
    "hausdorff_distance",
    "surface_voxels",
    "mask_volume_cm3",
    "find_volume_columns",
    "features_row",
]

NATIVE_FOLDER = "images_bias-corrected_nifti"
ZSCORED_FOLDER = "images_bias-corrected_resampled_zscored_nifti"
FTV_FOLDER = "masks_ftv"
STV_MANUAL_FOLDER = "masks_stv_manual"
STV_RESUNET_FOLDER = "masks_stv_resunet"
FEATURES_FILE = "ISPY_DataPaper_features.xlsx"
CAPTK_FILE = "captk_parameter_file_ispy1.csv"
KNOWN_FOLDERS = (NATIVE_FOLDER, ZSCORED_FOLDER, FTV_FOLDER, STV_MANUAL_FOLDER, STV_RESUNET_FOLDER)

#: DCE phase -> what it is (publisher README: pre contrast and first two post contrast scans).
TIMEPOINTS: Dict[str, str] = {
    "DCE_0000": "pre-contrast",
    "DCE_0001": "early post-contrast",
    "DCE_0002": "late post-contrast",
}

#: Image families: key -> (folder, label used in node names).
IMAGE_FAMILIES: Dict[str, Tuple[str, str]] = {
    "native": (NATIVE_FOLDER, "N3"),
    "zscored": (ZSCORED_FOLDER, "N3 1mm z-scored"),
}


@dataclass(frozen=True)
class MaskKind:
    """One of the three mask folders and how it is shown."""

    key: str
    folder: str
    segment_name: str
    family: str  # image family whose grid the mask is published on
    color: Tuple[float, float, float]


MASK_KINDS: Tuple[MaskKind, ...] = (
    MaskKind("stv_manual", STV_MANUAL_FOLDER, "STV manual", "zscored", (0.90, 0.20, 0.20)),
    MaskKind("stv_resunet", STV_RESUNET_FOLDER, "STV ResUNet", "zscored", (0.20, 0.60, 1.00)),
    MaskKind("ftv", FTV_FOLDER, "FTV", "native", (1.00, 0.80, 0.10)),
)

_CASE_RE = re.compile(r"^ISPY1_\d+$", re.IGNORECASE)
_IMAGE_RE = re.compile(r"^(ISPY1_\d+)_(DCE_000[0-2])_N3(?:_zscored)?\.nii(?:\.gz)?$", re.IGNORECASE)
_MASK_RE = re.compile(r"^(ISPY1_\d+)\.nii(?:\.gz)?$", re.IGNORECASE)
_CAPTK_VOLUME_RE = re.compile(r"(?:^|_)Volumetric_Volume$", re.IGNORECASE)

#: Share of a mask in the image background above which that is a warning.
BACKGROUND_WARNING_FRACTION = 0.05
#: Relative difference between mask and spreadsheet volume above which that is a warning.
VOLUME_MISMATCH_FRACTION = 0.05
#: Reference phase preference for a segmentation's grid (the tumour enhances in DCE_0001).
_REFERENCE_ORDER = ("DCE_0001", "DCE_0000", "DCE_0002")
#: Largest (chunk x other-set) block of pairwise distances computed at once.
_DISTANCE_BLOCK = 4_000_000


# ---------------------------------------------------------------------------------------------- metrics


def mask_volume_cm3(mask: np.ndarray, ijk_to_ras: np.ndarray) -> float:
    """Volume of a [k, j, i] mask in cm³ (voxel count times voxel volume)."""
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(ijk_to_ras, dtype=float)[:3, :3])))
    return float(np.count_nonzero(mask)) * voxel_mm3 / 1000.0


def dice_coefficient(mask_a: np.ndarray, mask_b: np.ndarray) -> Optional[float]:
    """2|A∩B| / (|A|+|B|) of two masks on the same grid; None if both are empty."""
    a, b = np.asarray(mask_a) != 0, np.asarray(mask_b) != 0
    if a.shape != b.shape:
        raise ValueError(f"Dice needs masks on one grid, got shapes {a.shape} and {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return None
    return 2.0 * float(np.logical_and(a, b).sum()) / float(total)


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """[k, j, i] indices (N, 3) of mask voxels with a face neighbour outside the mask or grid."""
    inside = np.asarray(mask) != 0
    padded = np.pad(inside, 1, constant_values=False)
    interior = inside.copy()
    for axis in range(3):
        for step in (-1, 1):
            interior &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
    return np.argwhere(inside & ~interior)


def _nearest_distances(points: np.ndarray, others: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For each point, the distance to the nearest of ``others`` and that one's index.

    The block search uses |a|²+|b|²-2a·b on centred coordinates; the returned
    distance is then recomputed exactly for the pair found.
    """
    centre = np.concatenate([points, others]).mean(axis=0)
    a, b = points - centre, others - centre
    b_squared = np.einsum("ij,ij->i", b, b)
    chunk = max(1, _DISTANCE_BLOCK // max(len(b), 1))
    nearest = np.empty(len(a), dtype=np.int64)
    for start in range(0, len(a), chunk):
        block = a[start : start + chunk]
        squared = np.einsum("ij,ij->i", block, block)[:, None] + b_squared[None, :] - 2.0 * block @ b.T
        nearest[start : start + chunk] = np.argmin(squared, axis=1)
    distances = np.linalg.norm(points - others[nearest], axis=1)
    return distances, nearest


@dataclass(frozen=True)
class HausdorffResult:
    """Symmetric surface Hausdorff distance and where it is reached.

    :param distance_mm: max of both directed distances.
    :param distance95_mm: 95th percentile of both directed distance sets.
    :param point_ras: the surface voxel centre farthest from the other mask.
    """

    distance_mm: float
    distance95_mm: float
    point_ras: Tuple[float, float, float]


def hausdorff_distance(mask_a: np.ndarray, ijk_to_ras_a: np.ndarray, mask_b: np.ndarray,
                       ijk_to_ras_b: np.ndarray) -> Optional[HausdorffResult]:
    """Symmetric Hausdorff distance (mm) between the surface voxel centres of two masks.

    The masks may lie on different grids: each one's surface is found on its
    own grid and the distances are measured between RAS positions. Returns
    None if either mask is empty.
    """
    points_a = voxel_centres_ras(np.asarray(ijk_to_ras_a, dtype=float), surface_voxels(mask_a))
    points_b = voxel_centres_ras(np.asarray(ijk_to_ras_b, dtype=float), surface_voxels(mask_b))
    if len(points_a) == 0 or len(points_b) == 0:
        return None
    a_to_b, _ = _nearest_distances(points_a, points_b)
    b_to_a, _ = _nearest_distances(points_b, points_a)
    if a_to_b.max() >= b_to_a.max():
        distance, point = float(a_to_b.max()), points_a[int(np.argmax(a_to_b))]
    else:
        distance, point = float(b_to_a.max()), points_b[int(np.argmax(b_to_a))]
    percentile = float(np.percentile(np.concatenate([a_to_b, b_to_a]), 95))
    return HausdorffResult(distance, percentile, tuple(float(v) for v in point))  # type: ignore[arg-type]


def _centroid_ras(mask: np.ndarray, ijk_to_ras: np.ndarray) -> Optional[Tuple[float, float, float]]:
    indices = np.argwhere(mask)
    if indices.size == 0:
        return None
    centre = voxel_centres_ras(ijk_to_ras, indices.mean(axis=0, keepdims=True))[0]
    return tuple(float(v) for v in centre)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- features


def find_volume_columns(columns: Sequence[Any]) -> Tuple[List[str], str]:
    """Columns of a features table that hold a tumour volume, and their unit.

    CaPTk's ``..._Volumetric_Volume`` columns are in mm³; otherwise any
    column with "volume" in its name, in cm³ if the name says so, else mm³.
    """
    names = [str(column) for column in columns]
    captk = [name for name in names if _CAPTK_VOLUME_RE.search(name)]
    if captk:
        return captk, "mm3"
    generic = [name for name in names if "volume" in name.lower()]
    unit = "cm3" if generic and re.search(r"cm|cc", generic[0], re.IGNORECASE) else "mm3"
    return generic, unit


def _subject_number(value: Any) -> Optional[int]:
    """``1002``, ``1002.0``, ``"1002"`` or ``"ISPY1_1002"`` -> 1002."""
    text = str(value).strip()
    text = re.sub(r"^ISPY1_", "", text, flags=re.IGNORECASE)
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if np.isfinite(number) and number == int(number) else None


def features_row(table: "pd.DataFrame", case_id: str, path: Path) -> Optional["pd.Series"]:
    """The row of ``table`` whose ``SubjectID`` is the case's number, or None."""
    from ..formats.tables import require_columns

    require_columns(table, ["SubjectID"], path)
    wanted = _subject_number(case_id)
    matches = table[table["SubjectID"].map(_subject_number) == wanted]
    if matches.empty:
        return None
    return matches.iloc[0]


def _row_as_table(row: "pd.Series") -> "pd.DataFrame":
    """A two-column (Feature, Value) table: readable for hundreds of features."""
    import pandas as pd

    values = pd.to_numeric(pd.Series(row.values), errors="coerce")
    if values.isna().sum() > pd.Series(row.values).isna().sum():
        values = pd.Series([str(v) for v in row.values])
    return pd.DataFrame({"Feature": [str(name) for name in row.index], "Value": values.values})


# ---------------------------------------------------------------------------------------------- collection


def _nifti_root(root: Path) -> Optional[Path]:
    """The folder holding the five NIfTI folders: ``root``, ``root/NIfTI-Files`` or one level deeper."""
    candidates = [root, root / "NIfTI-Files", root / "ISPY1-Tumor-SEG-Radiomics" / "NIfTI-Files"]
    for candidate in candidates:
        if candidate.is_dir() and any((candidate / name).is_dir() for name in KNOWN_FOLDERS):
            return candidate
    return None


def _find_file(folders: Sequence[Path], name: str) -> Optional[Path]:
    """``name`` (case-insensitive) in the first of ``folders`` that has it."""
    for folder in folders:
        if not folder.is_dir():
            continue
        for child in sorted(folder.iterdir()):
            if child.is_file() and child.name.lower() == name.lower():
                return child
    return None


def _prefer(existing: Optional[Path], candidate: Path) -> Path:
    """Between ``x.nii`` and ``x.nii.gz`` of the same name, keep the published ``.nii.gz``."""
    if existing is None:
        return candidate
    return candidate if candidate.name.lower().endswith(".gz") and not existing.name.lower().endswith(".gz") else existing


@dataclass
class Ispy1Case(CaseRecord):
    """One ISPY1 subject: its DCE phases in both image families, its three masks and the collection's tables.

    :param native: phase (``DCE_0000``..) -> file in ``images_bias-corrected_nifti``.
    :param zscored: phase -> file in ``images_bias-corrected_resampled_zscored_nifti``.
    :param stv_manual: the ``masks_stv_manual`` file, if any (likewise ``stv_resunet``, ``ftv``).
    :param features: ``ISPY_DataPaper_features.xlsx``, if found; ``captk`` the CaPTk parameter file.
    :param unrecognised: files in the case's image folders that are not DCE_000x images.
    :param missing: ``<folder>/<phase>`` or mask folders with no file for this case.
    """

    native: Dict[str, Path] = field(default_factory=dict)
    zscored: Dict[str, Path] = field(default_factory=dict)
    stv_manual: Optional[Path] = None
    stv_resunet: Optional[Path] = None
    ftv: Optional[Path] = None
    features: Optional[Path] = None
    captk: Optional[Path] = None
    unrecognised: List[Path] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)

    def location(self) -> Optional[Path]:
        """The case's folder of native images (else of z-scored images)."""
        for images in (self.native, self.zscored):
            if images:
                return next(iter(images.values())).parent
        return None

    def images(self, family: str) -> Dict[str, Path]:
        """Phase -> file of one image family (``"native"`` or ``"zscored"``)."""
        return self.native if family == "native" else self.zscored

    def mask(self, kind: "MaskKind") -> Optional[Path]:
        """The mask file of one kind, if the case has it."""
        return getattr(self, kind.key)


class Ispy1Collection(Collection):
    """The ISPY1-Tumor-SEG-Radiomics NIfTI tree."""

    key = "ispy1"
    title = "ISPY1-Tumor-SEG-Radiomics (DCE-MRI NIfTI, STV/FTV masks, radiomics)"
    looks_for = (f"one of the folders {', '.join(KNOWN_FOLDERS)} in the chosen folder, in NIfTI-Files/ or in "
                 "ISPY1-Tumor-SEG-Radiomics/NIfTI-Files/")
    record_type = Ispy1Case

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.nifti_root = _nifti_root(self.root) or self.root
        self._tables: Dict[Path, "pd.DataFrame"] = {}

    @classmethod
    def detect(cls, root: Path) -> bool:
        return _nifti_root(Path(root)) is not None

    # -------------------------------------------------------------------------------------- discovery
    def table_files(self) -> Dict[str, Optional[Path]]:
        """The features spreadsheet and CaPTk parameter file, beside or above ``NIfTI-Files``."""
        folders = [self.nifti_root, self.nifti_root.parent, self.root]
        return {"features": _find_file(folders, FEATURES_FILE), "captk": _find_file(folders, CAPTK_FILE)}

    def discover_cases(self, progress: Optional[ProgressCallback] = None) -> List[Ispy1Case]:
        report(progress, "Listing ISPY1 cases", 0.0)
        files: Dict[str, Dict[str, Any]] = {}

        def entry(case_id: str) -> Dict[str, Any]:
            return files.setdefault(case_id.upper(), {"native": {}, "zscored": {}, "unrecognised": []})

        for family, (folder_name, _) in IMAGE_FAMILIES.items():
            folder = self.nifti_root / folder_name
            if not folder.is_dir():
                continue
            for case_folder in sorted(folder.iterdir()):
                if not case_folder.is_dir() or not _CASE_RE.match(case_folder.name):
                    continue
                case_files = entry(case_folder.name)
                for child in sorted(case_folder.iterdir()):
                    match = _IMAGE_RE.match(child.name)
                    if child.is_file() and match and match.group(1).upper() == case_folder.name.upper():
                        phase = match.group(2).upper()
                        case_files[family][phase] = _prefer(case_files[family].get(phase), child)
                    elif child.is_file():
                        case_files["unrecognised"].append(child)
        for kind in MASK_KINDS:
            folder = self.nifti_root / kind.folder
            if not folder.is_dir():
                continue
            for child in sorted(folder.iterdir()):
                match = _MASK_RE.match(child.name)
                if child.is_file() and match:
                    case_files = entry(match.group(1))
                    case_files[kind.key] = _prefer(case_files.get(kind.key), child)
        tables = self.table_files()
        cases = []
        for case_id in sorted(files):
            case_files = files[case_id]
            missing = self._missing(case_files)
            summary = {
                "native images": len(case_files["native"]),
                "z-scored images": len(case_files["zscored"]),
                "masks": ", ".join(kind.segment_name for kind in MASK_KINDS if case_files.get(kind.key)) or "none",
                "missing": "; ".join(missing),
            }
            cases.append(Ispy1Case(
                self.key, case_id, self.root, "", summary, native=case_files["native"],
                zscored=case_files["zscored"], unrecognised=case_files["unrecognised"], missing=missing,
                features=tables["features"], captk=tables["captk"],
                **{kind.key: case_files.get(kind.key) for kind in MASK_KINDS}))
        report(progress, f"Found {len(cases)} ISPY1 cases", 1.0)
        return cases

    @staticmethod
    def _missing(case_files: Dict[str, Any]) -> List[str]:
        missing = []
        for family, (folder, _) in IMAGE_FAMILIES.items():
            for phase in TIMEPOINTS:
                if phase not in case_files[family]:
                    missing.append(f"{folder}/{phase}")
        for kind in MASK_KINDS:
            if not case_files.get(kind.key):
                missing.append(kind.folder)
        return missing

    # -------------------------------------------------------------------------------------- loading
    def read_case(self, case: Ispy1Case, progress: Optional[ProgressCallback] = None) -> CaseData:
        """The case's DCE images, its masks as segmentations on an image's grid, and its tables.

        Unreadable files become findings naming them; the QA measurements
        (:meth:`check_case`) need the masks on their own grids, which are kept
        in ``provenance["masks"]`` (:class:`PlacedMask`).

        :raises DataError: if no image of the case can be read.
        """
        return _CaseReader(self, case, progress).run()

    def check_case(self, data: CaseData) -> List[Finding]:
        """Mask volumes, mask voxels in the image background, STV manual vs ResUNet (Dice, Hausdorff) and the
        STV manual volume against the features spreadsheet; the measurements also go to ``data.metrics``."""
        return _check_case(data)

    def read_table_cached(self, path: Path) -> "pd.DataFrame":
        """A spreadsheet read once per collection object."""
        from ..formats.tables import read_table

        if path not in self._tables:
            self._tables[path] = read_table(path)
        return self._tables[path]

    # -------------------------------------------------------------------------------------- corrections
    def save_corrections(self, loaded: LoadedCase, scene: Any, output_folder: Path,
                         progress: Optional[ProgressCallback] = None) -> List[Path]:
        """Each tumour mask segment, as edited, back to NIfTI in the published layout.

        ``<out>/masks_stv_manual/<case>.nii.gz``, ``masks_stv_resunet/`` and
        ``masks_ftv/``, on the grid of the mask file the segment was loaded
        from and with that file's header as stored (qform/sform and codes,
        data type, scaling): FTV stays uint8 0/255 with ``scl_slope`` 1/255,
        STV float32 0/1 (see :func:`~..nifti.write_mask_like`). A mask that
        was resampled onto an image at load is resampled back (nearest
        neighbour). Segments are recognised by their IDs (``STV_manual``,
        ``STV_ResUNet``, ``FTV``), so renaming one does not lose it.

        :raises DataError: if the folder is refused, no mask segment is left
            in the scene, or a source mask file is gone.
        """
        from ..formats.nifti import read_nifti_geometry, write_mask_like
        from ..formats.output_paths import safe_output_path

        case = loaded.case
        segments = _mask_segments(scene, loaded)
        if not segments:
            raise DataError(self.nifti_root, f"{case.case_id} has no tumour mask segment in the scene to save")
        folder = self.corrections_folder(output_folder, case)
        sources = self.source_paths(case)
        plan = []
        for kind, (node, segment_id, source) in segments.items():
            kind_folder = safe_output_path(folder, kind.folder)
            target = safe_output_path(kind_folder, f"{case.case_id}.nii.gz", ".nii.gz")
            plan.append((kind, node, segment_id, source, self.check_corrections_target(case, target, sources)))
        written = []
        for index, (kind, node, segment_id, source, target) in enumerate(plan):
            report(progress, f"Writing {kind.folder}/{target.name}", index / len(plan))
            if not source.is_file():
                raise DataError(source, f"the {kind.segment_name} mask file is gone; its header is needed to "
                                        "write the correction")
            geometry = read_nifti_geometry(source)
            mask = _segment_on_grid(node, segment_id, geometry.shape, geometry.ijk_to_ras)
            written.append(write_mask_like(source, mask, target))
        report(progress, f"Saved {len(written)} mask(s) of {case.case_id}", 1.0)
        return written


@dataclass
class _ReadImage:
    family: str
    phase: str
    volume: NiftiVolume
    key: str


@dataclass
class PlacedMask:
    """A mask as read, and as placed on the grid of the image it is shown on.

    :param own_mask: on the mask file's grid (``own_ijk_to_ras``): what volumes and distances are measured on.
    :param mask: on the reference image's grid (``reference_key`` names that volume in the case data).
    """

    kind: MaskKind
    path: Path
    own_mask: np.ndarray
    own_ijk_to_ras: np.ndarray
    mask: np.ndarray
    reference_key: str


def _finding(case_id: str, severity: str, check: str, message: str, **details: Any) -> Finding:
    path = details.pop("path", "")
    return Finding(severity, f"ispy1.{check}", message, case_id=case_id, path=str(path), **details)


class _CaseReader:
    """Reads one case into plain data: images, masks placed on an image grid, tables, read-time findings."""

    def __init__(self, collection: Ispy1Collection, case: Ispy1Case, progress: Optional[ProgressCallback]) -> None:
        self.collection = collection
        self.case = case
        self.case_id = case.case_id
        self.progress = progress
        self.data = CaseData(case=case)
        self.images: List[_ReadImage] = []
        self.masks: Dict[str, PlacedMask] = {}
        self.patient = Placement(self.case_id, self.case_id, uid_name=SUBJECT_HIERARCHY_UID_NAME)
        self.study = Placement(self.case_id, self.case_id, f"{self.case_id}/DCE-MRI baseline", "DCE-MRI baseline",
                               uid_name=SUBJECT_HIERARCHY_UID_NAME)

    def finding(self, severity: str, check: str, message: str, **details: Any) -> None:
        self.data.findings.append(_finding(self.case_id, severity, check, message, **details))

    def run(self) -> CaseData:
        report(self.progress, f"Reading {self.case_id}", 0.0)
        for missing in self.case.missing:
            self.finding(WARNING, "missing_file", f"{self.case_id}: no file in {missing}")
        for path in self.case.unrecognised:
            self.finding(INFO, "unrecognised_file", f"{path.name} is not a DCE_000x image name; ignored", path=path)
        self._read_images(sub_progress(self.progress, 0.0, 0.5))
        if not self.images:
            raise DataError(self.collection.nifti_root, f"{self.case_id} has no readable image "
                                                        "(see the files named above)")
        self._read_masks(sub_progress(self.progress, 0.5, 0.85))
        self._add_segmentations()
        report(self.progress, f"{self.case_id}: tables", 0.9)
        self._add_tables()
        self.data.provenance["masks"] = dict(self.masks)
        self.data.provenance["image_grids"] = {image.key: (image.volume.shape, image.volume.ijk_to_ras)
                                               for image in self.images}
        report(self.progress, f"Read {self.case_id}", 1.0)
        return self.data

    # ---------------------------------------------------------------------------------- images
    def _read(self, path: Path) -> Optional[NiftiVolume]:
        try:
            volume = read_nifti(path)
        except DataError as error:
            self.finding(ERROR, "unreadable_file", str(error), path=path)
            return None
        for warning in volume.warnings:
            self.finding(WARNING, "nifti_header", f"{path.name}: {warning}", path=path)
        return volume

    def _read_images(self, progress: Optional[ProgressCallback]) -> None:
        jobs = [(family, phase, path) for family in IMAGE_FAMILIES
                for phase, path in sorted(self.case.images(family).items())]
        for index, (family, phase, path) in enumerate(jobs):
            report(progress, f"Reading {path.name}", index / max(len(jobs), 1))
            volume = self._read(path)
            if volume is None:
                continue
            name = f"{self.case_id} {phase} {TIMEPOINTS[phase]} ({IMAGE_FAMILIES[family][1]})"
            key = f"{family}/{phase}"
            self.data.volumes.append(VolumeData(
                key, name, volume.voxels, volume.ijk_to_ras, self.study,
                attributes={"ispy1.phase": phase, "ispy1.family": family, "sourceFile": str(path)},
                share_memory=True))  # the loaded case keeps its data: one copy of the voxels, not two
            self.images.append(_ReadImage(family, phase, volume, key))

    def _reference_for(self, family: str) -> Optional[_ReadImage]:
        ranked = sorted((image for image in self.images if image.family == family),
                        key=lambda image: _REFERENCE_ORDER.index(image.phase))
        return ranked[0] if ranked else None

    # ---------------------------------------------------------------------------------- masks
    def _binary(self, kind: MaskKind, path: Path, voxels: np.ndarray) -> np.ndarray:
        """Inside = non-zero for {0, c} masks; otherwise >= 0.5 with a warning."""
        values = np.unique(voxels)
        if len(values) <= 2 and values.min() == 0:
            label = float(values.max())
            if label not in (0.0, 1.0):
                self.finding(INFO, "mask_label", f"{path.name}: {kind.segment_name} label value is "
                                                 f"{label:g} (1 expected after scaling)", path=path, value=label)
            return voxels != 0
        self.finding(WARNING, "mask_not_binary", f"{path.name}: {kind.segment_name} has {len(values)} distinct "
                                                 "values; voxels >= 0.5 are taken as inside", path=path)
        return voxels >= 0.5

    def _read_masks(self, progress: Optional[ProgressCallback]) -> None:
        kinds = [kind for kind in MASK_KINDS if self.case.mask(kind)]
        for index, kind in enumerate(kinds):
            path = Path(self.case.mask(kind))  # type: ignore[arg-type]
            report(progress, f"Reading {path.name} ({kind.segment_name})", index / max(len(kinds), 1))
            volume = self._read(path)
            if volume is None:
                continue
            own_mask = self._binary(kind, path, volume.voxels)
            placed = self._place(kind, path, own_mask, volume)
            if placed is not None:
                self.masks[kind.key] = placed

    def _place(self, kind: MaskKind, path: Path, own_mask: np.ndarray, volume: NiftiVolume) -> Optional[PlacedMask]:
        """Put a mask on the grid of an image: its own family's, another matching one, or resampled."""
        expected = self._reference_for(kind.family)
        if expected is not None and same_grid(volume.grid, expected.volume.grid):
            return PlacedMask(kind, path, own_mask, volume.ijk_to_ras, own_mask, expected.key)
        for image in sorted(self.images, key=lambda image: _REFERENCE_ORDER.index(image.phase)):
            if same_grid(volume.grid, image.volume.grid):
                self.finding(WARNING, "mask_grid", f"{path.name}: {kind.segment_name} is on the grid of "
                             f"{image.volume.path.name}, not of the {IMAGE_FAMILIES[kind.family][0]} images; "
                             "shown with that image", path=path)
                return PlacedMask(kind, path, own_mask, volume.ijk_to_ras, own_mask, image.key)
        target = expected or self._reference_for("zscored") or self._reference_for("native")
        if target is None:
            self.finding(ERROR, "mask_without_image", f"{path.name}: no image to show {kind.segment_name} on",
                         path=path)
            return None
        shape, matrix = target.volume.shape, target.volume.ijk_to_ras
        moved = resample_mask_to_grid(own_mask, volume.ijk_to_ras, shape, matrix)
        self.finding(WARNING, "mask_resampled", f"{path.name}: {kind.segment_name} grid {volume.shape} "
                     f"differs from every image; resampled (nearest neighbour) onto {target.volume.path.name}",
                     path=path, ras=_centroid_ras(own_mask, volume.ijk_to_ras))
        outside = count_outside_grid(own_mask, volume.ijk_to_ras, shape, matrix)
        if outside:
            total = int(np.count_nonzero(own_mask))
            self.finding(WARNING if outside < total else ERROR, "mask_outside_image",
                         f"{path.name}: {outside} of {total} {kind.segment_name} voxels lie outside "
                         f"{target.volume.path.name}", path=path, value=float(outside),
                         ras=_centroid_ras(own_mask, volume.ijk_to_ras))
        return PlacedMask(kind, path, own_mask, volume.ijk_to_ras, moved, target.key)

    def _add_segmentations(self) -> None:
        groups: Dict[str, List[PlacedMask]] = {}
        for placed in self.masks.values():
            groups.setdefault(placed.reference_key, []).append(placed)
        for reference_key, members in groups.items():
            reference = self.data.volume(reference_key)
            grid = "1 mm" if reference_key.startswith("zscored/") else "native grid"
            specs = [
                SegmentSpec(placed.kind.segment_name, placed.kind.color, placed.mask,
                            segment_id=placed.kind.segment_name.replace(" ", "_"),
                            tags={ATTRIBUTE_PREFIX + "SourceFile": str(placed.path)})
                for placed in members
            ]
            self.data.segmentations.append(SegmentationData(
                f"masks/{reference_key}", f"{self.case_id} tumour masks ({grid})", reference_key, specs, self.study,
                attributes={"ispy1.referenceVolume": reference.name}))

    # ---------------------------------------------------------------------------------- tables
    def _collection_table(self, path: Path, name: str, kind: str) -> bool:
        """Add a collection-wide table (one node shared by every case); False if it cannot be read."""
        try:
            table = self.collection.read_table_cached(path)
        except DataError as error:
            self.finding(ERROR, "unreadable_file", str(error), path=path)
            return False
        self.data.tables.append(TableData(f"collection/{kind}", name, table,
                                          Placement(folders=("ISPY1-Tumor-SEG-Radiomics",)),
                                          {"sourceFile": str(path), "ispy1.table": kind}, shared_key=str(path)))
        return True

    def _add_tables(self) -> None:
        if self.case.captk:
            self._collection_table(Path(self.case.captk), "ISPY1 CaPTk parameters", "captk")
        if not self.case.features:
            self.finding(INFO, "no_features_table", f"{FEATURES_FILE} not found beside the NIfTI files")
            return
        features_path = Path(self.case.features)
        if not self._collection_table(features_path, "ISPY1 radiomic features", "features"):
            return
        table = self.collection.read_table_cached(features_path)
        try:
            row = features_row(table, self.case_id, features_path)
        except DataError as error:
            self.finding(ERROR, "features_table", str(error), path=features_path)
            return
        if row is None:
            self.finding(WARNING, "features_missing_row", f"{features_path.name} has no SubjectID "
                         f"{_subject_number(self.case_id)} for {self.case_id}", path=features_path)
            return
        self.data.tables.append(TableData(
            "case features", f"{self.case_id} radiomic features", _row_as_table(row), self.study,
            {"sourceFile": str(features_path), "ispy1.table": "case features"}))
        self.data.provenance["features_row"] = row
        self.data.provenance["features_path"] = features_path


# ---------------------------------------------------------------------------------------------- checks


def _check_case(data: CaseData) -> List[Finding]:
    """The QA checks of a read case (see the module docstring); measurements go to ``data.metrics``."""
    masks: Dict[str, PlacedMask] = data.provenance.get("masks", {})
    findings: List[Finding] = []
    findings.extend(_check_masks(data, masks))
    findings.extend(_compare_stv(data, masks))
    row = data.provenance.get("features_row")
    if row is not None:
        findings.extend(_compare_volume(data, masks, row, data.provenance["features_path"]))
    return findings


def _check_masks(data: CaseData, masks: Dict[str, PlacedMask]) -> List[Finding]:
    case_id = data.case.case_id
    findings: List[Finding] = []
    volumes: Dict[str, float] = {}
    background: Dict[str, float] = {}
    for placed in masks.values():
        name = placed.kind.segment_name
        volume_cm3 = mask_volume_cm3(placed.own_mask, placed.own_ijk_to_ras)
        volumes[name] = volume_cm3
        if volume_cm3 == 0:
            findings.append(_finding(case_id, WARNING, "empty_mask", f"{placed.path.name}: {name} is empty",
                                     path=placed.path, segment_id=name.replace(" ", "_")))
            continue
        findings.append(_finding(case_id, INFO, "mask_volume", f"{name} volume {volume_cm3:.3f} cm³",
                                 path=placed.path, segment_id=name.replace(" ", "_"), value=volume_cm3,
                                 ras=_centroid_ras(placed.own_mask, placed.own_ijk_to_ras)))
        reference = data.volume(placed.reference_key)
        fraction, point = _background_fraction(placed, reference)
        background[name] = fraction
        if fraction > 0:
            severity = WARNING if fraction >= BACKGROUND_WARNING_FRACTION else INFO
            source = Path(reference.attributes.get("sourceFile", reference.name)).name
            findings.append(_finding(case_id, severity, "mask_in_background",
                                     f"{placed.path.name}: {fraction:.1%} of {name} lies in the image background "
                                     f"of {source}", path=placed.path, segment_id=name.replace(" ", "_"),
                                     value=fraction, ras=point))
    data.metrics["volume_cm3"] = volumes
    data.metrics["background_fraction"] = background
    return findings


def _background_fraction(placed: PlacedMask, reference: VolumeData) -> Tuple[float, Optional[Tuple[float, float, float]]]:
    image = reference.voxels
    inside = placed.mask
    total = int(np.count_nonzero(inside))
    if total == 0:
        return 0.0, None
    lowest = image.min()
    in_background = inside & (image <= lowest + 1e-6 * max(1.0, abs(float(lowest))))
    count = int(np.count_nonzero(in_background))
    return count / total, _centroid_ras(in_background, reference.ijk_to_ras)


def _compare_stv(data: CaseData, masks: Dict[str, PlacedMask]) -> List[Finding]:
    case_id = data.case.case_id
    manual, resunet = masks.get("stv_manual"), masks.get("stv_resunet")
    if manual is None or resunet is None:
        return []
    findings: List[Finding] = []
    if manual.reference_key == resunet.reference_key:
        mask_b = resunet.mask
    else:
        target, source = data.volume(manual.reference_key), data.volume(resunet.reference_key)
        mask_b = resample_mask_to_grid(resunet.mask, source.ijk_to_ras, target.voxels.shape, target.ijk_to_ras)
    dice = dice_coefficient(manual.mask, mask_b)
    data.metrics["stv_dice"] = dice
    if dice is None:
        findings.append(_finding(case_id, INFO, "stv_dice", "STV manual and ResUNet are both empty: no Dice"))
    else:
        findings.append(_finding(case_id, INFO, "stv_dice", f"Dice STV manual vs ResUNet {dice:.4f}", value=dice))
    hausdorff = hausdorff_distance(manual.own_mask, manual.own_ijk_to_ras, resunet.own_mask, resunet.own_ijk_to_ras)
    data.metrics["stv_hausdorff_mm"] = None if hausdorff is None else hausdorff.distance_mm
    data.metrics["stv_hausdorff95_mm"] = None if hausdorff is None else hausdorff.distance95_mm
    if hausdorff is not None:
        findings.append(_finding(case_id, INFO, "stv_hausdorff", f"Hausdorff distance STV manual vs ResUNet "
                                 f"{hausdorff.distance_mm:.2f} mm (95th percentile {hausdorff.distance95_mm:.2f} mm)",
                                 value=hausdorff.distance_mm, ras=hausdorff.point_ras))
    return findings


def _compare_volume(data: CaseData, masks: Dict[str, PlacedMask], row: "pd.Series", path: Path) -> List[Finding]:
    case_id = data.case.case_id
    columns, unit = find_volume_columns(row.index)
    manual = masks.get("stv_manual")
    if not columns or manual is None:
        return []
    column = columns[0]
    try:
        table_mm3 = float(row[column]) * (1000.0 if unit == "cm3" else 1.0)
    except (TypeError, ValueError):
        return [_finding(case_id, WARNING, "features_volume", f"{path.name}: {column} = {row[column]!r} is not a number",
                         path=path)]
    mask_mm3 = mask_volume_cm3(manual.own_mask, manual.own_ijk_to_ras) * 1000.0
    difference = (mask_mm3 - table_mm3) / table_mm3 if table_mm3 else float("inf")
    data.metrics["features_volume_mm3"] = table_mm3
    data.metrics["features_volume_column"] = column
    data.metrics["features_volume_difference"] = difference
    message = (f"STV manual {mask_mm3:.1f} mm³ vs {path.name} {column} {table_mm3:.1f} mm³ "
               f"({difference:+.1%})")
    check = "features_volume_mismatch" if abs(difference) > VOLUME_MISMATCH_FRACTION else "features_volume"
    severity = WARNING if abs(difference) > VOLUME_MISMATCH_FRACTION else INFO
    return [_finding(case_id, severity, check, message, path=path, value=difference, segment_id="STV_manual")]


# ---------------------------------------------------------------------------------------------- corrections


def _mask_segments(scene: Any, loaded: LoadedCase) -> Dict[MaskKind, Tuple[Any, str, Path]]:
    """Mask kind -> (segmentation node, segment ID, source file) of the case's segments still in the scene."""
    from ..scene.builder import segment_tag

    found: Dict[MaskKind, Tuple[Any, str, Path]] = {}
    for node in loaded.segmentations:
        if scene.GetNodeByID(node.GetID()) is None:
            continue
        segmentation = node.GetSegmentation()
        for kind in MASK_KINDS:
            segment_id = kind.segment_name.replace(" ", "_")
            segment = segmentation.GetSegment(segment_id)
            if segment is None or kind in found:
                continue
            source = segment_tag(segment, ATTRIBUTE_PREFIX + "SourceFile") or loaded.case.mask(kind)
            if source:
                found[kind] = (node, segment_id, Path(source))
    return found


def _segment_on_grid(node: Any, segment_id: str, shape: Sequence[int], ijk_to_ras: np.ndarray) -> np.ndarray:
    """A segment's voxels as a [k, j, i] bool array on any grid.

    The segment's labelmap is taken on its own geometry and moved onto the
    grid by nearest neighbour, which is exact when the grids coincide (the
    usual case) and the best available when the mask was resampled at load.
    """
    import slicer
    import vtk
    from vtk.util import numpy_support

    from ..scene.builder import array_from_vtk_matrix

    segment = node.GetSegmentation().GetSegment(segment_id)
    representation = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    result = np.zeros(tuple(int(n) for n in shape), dtype=bool)
    if representation is None:
        return result
    extent = representation.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return result
    own_shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    labels = numpy_support.vtk_to_numpy(representation.GetPointData().GetScalars()).reshape(own_shape)
    matrix = vtk.vtkMatrix4x4()
    representation.GetImageToWorldMatrix(matrix)
    box_to_ras = array_from_vtk_matrix(matrix)
    # Index (0, 0, 0) of the labelmap array is voxel (i0, j0, k0) of its image.
    box_to_ras[:3, 3] = box_to_ras[:3, 3] + box_to_ras[:3, :3] @ np.array([extent[0], extent[2], extent[4]], float)
    return resample_mask_to_grid(labels == segment.GetLabelValue(), box_to_ras, result.shape, ijk_to_ras)


COLLECTIONS = [Ispy1Collection]
