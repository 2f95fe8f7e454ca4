"""Lung-PET-CT-Dx: CT and PET series with PASCAL VOC tumour boxes as ROI markups.

Facts used (``shared/notes/lung_voc.md``; cited as facts, not code):

* Cases are patients ``Lung_Dx-A0001``; the letter is the histology class
  (A adenocarcinoma, B small cell, E large cell, G squamous cell carcinoma).
* Images come in the NBIA layout
  (``manifest-*/Lung-PET-CT-Dx/Lung_Dx-A0001/<study>/<series>/1-01.dcm`` with
  ``metadata.csv`` in the manifest folder) or idc-index's layout
  (``lung_pet_ct_dx/Lung_Dx-A0001/<StudyUID>/<Modality>_<SeriesUID>/<uuid>.dcm``).
  File names are never trusted; headers are read.
* Boxes live in a separate tree ``Annotation/A0001/<SOPInstanceUID>.xml``: one
  file per annotated 2-D image; the XML names no series, so the box goes to
  whichever loaded series holds that SOPInstanceUID (CT or PET; every
  reconstruction series of a study is annotated separately, §2).
* Box values are 0-based (column, row) pixel indices of the stored array
  (§1.3). A box here covers those pixels whole: its edges lie half a pixel
  outside the given indices. The notes give the remaining ambiguity as at
  most half a pixel.
* About a third of the referenced images in the full collection lack
  PixelSpacing or ImagePositionPatient (§3.5); such images cannot carry a
  ROI and are reported, not fatal. So are XMLs whose image is absent (§3.1).

Each box becomes a thin ROI on its slice, one slice spacing thick (so it
covers exactly that slice's voxels and shows on that slice only, and boxes
on neighbouring slices touch without overlapping). Per series, boxes on
contiguous slices that overlap in-plane are chained into lesions (notes §3.7,
a suggestion there); each lesion gets one 3-D ROI: the in-plane union, from
the first to the last slice ± half the spacing.

The package follows the collection contract (:mod:`..base`), one concern per
module: :mod:`.discovery` (folders -> :class:`LungCase` records),
:mod:`.series` (CT/PET series -> volumes, layers), :mod:`.boxes` (VOC files
-> slice boxes, lesions, ROI and table data), :mod:`.reader` (one case ->
:class:`~...case_data.CaseData`), :mod:`.checks` (QA on the plain data) and
:mod:`.corrections` (edited boxes -> VOC XML and DICOM SR). This module stays
light: detecting the collection imports none of them.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ...case_data import CaseData, LoadedCase
from ...errors import DataError
from ...findings import Finding
from ...progress import ProgressCallback
from ..base import CaseRecord, Collection

__all__ = [
    "LungPetCtDxCollection",
    "LungCase",
    "COLLECTIONS",
    "DIAGNOSIS_BY_LETTER",
    "CT_WINDOW_PRESETS",
    "PET_COLOR_NODE_ID",
    "SliceBox",
    "Lesion",
    "CorrectedBox",
    "patient_letter",
    "lung_case_id",
    "annotation_folder_name",
    "box_roi_geometry",
    "box_from_roi_corners",
    "group_lesions",
    "corrected_boxes",
    "export_voc",
    "export_sr",
    "pet_ct_layers",
]

#: Histology class by the letter in the patient ID (collection description).
DIAGNOSIS_BY_LETTER = {
    "A": "Adenocarcinoma",
    "B": "Small cell carcinoma",
    "E": "Large cell carcinoma",
    "G": "Squamous cell carcinoma",
}

PATIENT_FOLDER = re.compile(r"^Lung_Dx-([A-Za-z])(\d+)$")
#: A Lung-PET-CT-Dx PatientID in the headers (any case; DICOM padding is stripped before matching).
PATIENT_ID = re.compile(r"^lung_dx-([a-z])(\d+)$", re.IGNORECASE)
COLLECTION_FOLDER_NAMES = ("lung-pet-ct-dx", "lung_pet_ct_dx")

#: Public names defined in the submodules, imported when first used (keeps detection light).
_LAZY_NAMES = {
    "CT_WINDOW_PRESETS": "series",
    "PET_COLOR_NODE_ID": "series",
    "PET_FALLBACK_COLOR_NODE_ID": "series",
    "PET_FOREGROUND_OPACITY": "series",
    "pet_ct_layers": "series",
    "SliceBox": "boxes",
    "Lesion": "boxes",
    "MAX_GAP_SLICES": "boxes",
    "group_lesions": "boxes",
    "annotation_sop": "boxes",
    "box_roi_geometry": "boxes",
    "box_from_roi_corners": "boxes",
    "find_annotation_roots": "discovery",
    "CorrectedBox": "corrections",
    "corrected_boxes": "corrections",
    "export_voc": "corrections",
    "export_sr": "corrections",
    "vtk_ijk_to_ras": "corrections",
}


def __getattr__(name: str) -> Any:
    """The submodules' public names, imported on first use (PEP 562)."""
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def patient_letter(case_id: str) -> str:
    """The class letter of a patient ID such as ``Lung_Dx-A0001`` (upper case), or ""."""
    match = PATIENT_FOLDER.match(case_id)
    return match.group(1).upper() if match else ""


def lung_case_id(patient_id: str) -> Optional[str]:
    """``Lung_Dx-A0001`` for a PatientID spelled like one (any case, DICOM padding ignored), else None."""
    match = PATIENT_ID.match(patient_id.strip(" \x00"))
    return f"Lung_Dx-{match.group(1).upper()}{match.group(2)}" if match else None


def annotation_folder_name(case_id: str) -> str:
    """``Lung_Dx-A0001`` -> ``A0001``, the annotation tree's folder name."""
    return case_id.split("-", 1)[1] if "-" in case_id else case_id


@dataclass
class LungCase(CaseRecord):
    """One Lung-PET-CT-Dx patient as found on disk.

    :param image_folders: the largest folders holding the patient's images and no other patient's (one
        folder shared with other patients in IDC's flat layout; the reader keeps this patient's files).
    :param annotation_folders: ``Annotation/<A0001>`` folders holding its XMLs.
    :param metadata_csv: NBIA ``metadata.csv`` files that list its series.
    :param layouts: how each image folder is laid out (see :meth:`.DicomInventory.layout_of`).
    :param unmatched_xml: one message per annotation folder whose VOC files name images not on disk, with
        their count (the case table's summary; loading reports each such file as it is read).
    """

    image_folders: List[Path] = field(default_factory=list)
    annotation_folders: List[Path] = field(default_factory=list)
    metadata_csv: List[Path] = field(default_factory=list)
    layouts: List[str] = field(default_factory=list)
    unmatched_xml: List[str] = field(default_factory=list)

    def location(self) -> Optional[Path]:
        """The patient folder, for the case table (None when the patient is in both layouts)."""
        return self.image_folders[0] if len(self.image_folders) == 1 else None


class LungPetCtDxCollection(Collection):
    """Lung-PET-CT-Dx in NBIA and/or IDC layout, with its ``Annotation`` tree."""

    key = "lung_pet_ct_dx"
    title = "Lung-PET-CT-Dx (CT/PET with VOC tumour boxes)"
    looks_for = ("PatientIDs Lung_Dx-A0001 in the DICOM headers, a VOC Annotation/<A0001>/ tree, or folders "
                 "named Lung-PET-CT-Dx / lung_pet_ct_dx / Lung_Dx-A0001")
    patient_id_patterns = ("Lung_Dx-Xnnnn",)
    record_type = LungCase

    def __init__(self, root: Path, annotations: Sequence[Path] = ()) -> None:
        """:param annotations: ``Annotation`` folders outside ``root`` to read too (named by the user;
        folders beside the collection are never found by walking upward).

        :raises DataError: naming a folder in ``annotations`` that does not exist
            or holds no ``Annotation`` tree (patient folders such as ``A0001``)
            within three levels: a mistyped name must not load no boxes silently.
        """
        from .discovery import find_annotation_roots  # light: os and pathlib only

        super().__init__(root)
        self.annotation_roots: List[Path] = [Path(folder) for folder in annotations]
        for folder in self.annotation_roots:
            if not folder.is_dir():
                raise DataError(folder, "was named as an annotation folder but "
                                        + ("is not a folder" if folder.exists() else "does not exist"))
            if not find_annotation_roots(folder):
                raise DataError(folder, "was named as an annotation folder but holds no Annotation folder of "
                                        "patient folders (A0001, B0002...) within three levels")

    @classmethod
    def detect(cls, root: Path) -> bool:
        """A Lung-PET-CT-Dx folder or patient folder name within two levels, Lung_Dx PatientIDs in the headers,
        or a VOC ``Annotation`` tree inside ``root``."""
        from ...errors import DataError
        from ...formats.dicom_inventory import read_inventory
        from .discovery import find_annotation_roots, walk_dirs  # light: no lxml, no scene

        root = Path(root)
        names = [root.name, *(folder.name for folder, _ in walk_dirs(root, 2))]
        if any(name.lower() in COLLECTION_FOLDER_NAMES or PATIENT_FOLDER.match(name) for name in names):
            return True
        if find_annotation_roots(root):
            return True
        try:
            return bool(read_inventory(root).instances_by_case(lung_case_id))
        except DataError:
            return False

    def discover_cases(self, progress: Optional[ProgressCallback] = None) -> List[LungCase]:
        from .discovery import discover_cases

        return discover_cases(self.key, self.root, progress, self.annotation_roots)

    def read_case(self, case: LungCase, progress: Optional[ProgressCallback] = None) -> CaseData:
        """The case's CT/PET volumes, box and lesion ROIs and box table, as plain data.

        ``provenance`` holds what corrections need later: ``source_headers``
        (SOPInstanceUID -> header of every image read), ``boxes`` and ``objects``.
        """
        from .reader import read_case

        return read_case(self.key, case, progress)

    def check_case(self, data: CaseData) -> List[Finding]:
        """Lesions with slices missing between their boxes; labels that disagree with the patient's class."""
        from .checks import check_case

        return check_case(data)

    # ------------------------------------------------------------------ corrections
    def source_headers(self, case: LungCase) -> Dict[str, Any]:
        """SOPInstanceUID -> header of every image of the case, read from its folders now.

        Corrections use the headers recorded when the case was read
        (``CaseData.provenance``); this reads them again, for scripts.
        """
        from .series import scan_headers

        return scan_headers(case.image_folders)

    def export_case(self, loaded: LoadedCase, scene: Any, voc_root: Optional[Path] = None,
                    sr_folder: Optional[Path] = None) -> Dict[str, List[Path]]:
        """Write the case's (possibly edited) per-slice boxes as VOC XML and/or DICOM SR."""
        from .corrections import export_case

        return export_case(loaded, scene, self._headers_of(loaded), voc_root, sr_folder)

    def save_corrections(self, loaded: LoadedCase, scene: Any, output_folder: Path,
                         progress: Optional[ProgressCallback] = None) -> List[Path]:
        """The case's per-slice boxes as they are now in the scene, in the collection's own formats.

        VOC XML in the published layout, ``<out>/Annotation/<A0001>/<SOPInstanceUID>.xml``
        (one file per annotated image), and one DICOM SR per annotated series
        under ``<out>/SR/`` (see :func:`.corrections.export_sr`). Every target
        is checked before the first file is written. Corrections saved earlier
        for this case's images that no longer hold a box are removed from the
        output folder, so it always shows the case as corrected (a deleted box
        must not come back from an older save). The source folders are not
        scanned again: the headers recorded when the case was read are used.

        :raises DataError: if the folder is refused (inside the collection or
            among the sources), a name from the data would leave it, or no box
            of the case is left in the scene.
        """
        from .corrections import save_corrections

        return save_corrections(self, loaded, scene, output_folder, self._headers_of(loaded), progress)

    def _headers_of(self, loaded: LoadedCase) -> Dict[str, Any]:
        """The source headers recorded when ``loaded`` was read, else read again."""
        if loaded.data is not None and "source_headers" in loaded.data.provenance:
            return loaded.data.provenance["source_headers"]
        return self.source_headers(loaded.case)


COLLECTIONS = [LungPetCtDxCollection]
