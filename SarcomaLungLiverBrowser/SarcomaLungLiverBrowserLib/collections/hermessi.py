"""Hermessi, Mourali & Zagrouba 2019: liposarcoma (LPS) vs leiomyosarcoma (LMS) MRI slices.

The archive's layout is not documented anywhere we could find
(``shared/notes/datasets.md`` §3), so this reads what a user is likely to have:

* folders named by class (``LPS``/``LMS``, ``liposarcoma``/``leiomyosarcoma``) and
  by sequence (``T1``, ``T2FS``, ``STIR``) in either nesting order, any case;
* image files that are DICOM or PNG/JPEG, told apart by their first bytes,
  never by their extension;
* an optional patient token (``STS_012``, ``patient3``, ``P07``) in a folder or
  file name; a case is then a patient, otherwise a (class, sequence) group.

DICOM slices of one series are stacked by position; every other image is a
single-slice volume (PNG/JPEG with 1 mm pixels). The per-class, per-sequence
counts are compared with the published table (README of the dataset's
repository: LPS 676 / 457 / 219, LMS 472 / 409 / 63 for T1 / T2FS / STIR).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pydicom

from ..case_data import SUBJECT_HIERARCHY_UID_NAME, CaseData, Placement, TableData, VolumeData
from ..errors import DataError
from ..findings import WARNING, Finding
from ..formats.dicom_series import (
    InstanceHeader, group_by_series, header_from_dataset, read_header, read_series, split_stackable,
)
from ..geometry import LPS_TO_RAS, ijk_to_ras_from_slices
from ..progress import ProgressCallback, report
from .base import CaseRecord, Collection

if TYPE_CHECKING:  # pandas is imported where a table is made, so detection stays light
    import pandas as pd

__all__ = ["HermessiSarcomaMriCollection", "HermessiCase", "COLLECTIONS", "PUBLISHED_COUNTS", "CLASSES", "SEQUENCES",
           "ImageEntry", "scan_images", "count_table", "count_findings", "file_kind", "case_table"]

CLASSES = ("LPS", "LMS")
SEQUENCES = ("T1", "T2FS", "STIR")
CLASS_NAMES = {"LPS": "Liposarcoma (LPS)", "LMS": "Leiomyosarcoma (LMS)"}
#: Published 2-D image counts (class -> sequence -> count).
PUBLISHED_COUNTS = {"LPS": {"T1": 676, "T2FS": 457, "STIR": 219}, "LMS": {"T1": 472, "T2FS": 409, "STIR": 63}}

_CLASS_WORDS = {"lps": "LPS", "liposarcoma": "LPS", "liposarcomas": "LPS", "lms": "LMS",
                "leiomyosarcoma": "LMS", "leiomyosarcomas": "LMS"}
_SEQUENCE_WORDS = {"t1": "T1", "t1w": "T1", "t2fs": "T2FS", "t2": "T2FS", "t2wfs": "T2FS", "stir": "STIR"}
_PATIENT = re.compile(r"(?<![a-z0-9])(sts|patient|pat|case|subject|p)[ _-]?(\d{1,4})(?![0-9])", re.IGNORECASE)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
#: Folder depth searched for class and sequence folders by :meth:`detect`.
DETECT_DEPTH = 3


def _folder_word(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


def class_of_folder(name: str) -> Optional[str]:
    return _CLASS_WORDS.get(_folder_word(name))


def sequence_of_folder(name: str) -> Optional[str]:
    return _SEQUENCE_WORDS.get(_folder_word(name))


def file_kind(path: Path) -> Optional[str]:
    """``"dicom"``, ``"png"``, ``"jpeg"`` from the file's first bytes, or None for anything else."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(132)
    except OSError:
        return None
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    return None


#: Suffixes of files that are meant to be images even when their content says otherwise.
_IMAGE_SUFFIXES = (".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def patient_token(text: str) -> Optional[str]:
    """A patient ID in a folder or file name (``STS_012`` -> ``STS_012``, ``patient3`` -> ``P003``)."""
    match = _PATIENT.search(text)
    if match is None:
        return None
    prefix, number = match.group(1).lower(), int(match.group(2))
    return f"STS_{number:03d}" if prefix == "sts" else f"P{number:03d}"


@dataclass(frozen=True)
class ImageEntry:
    """One image file with what its folders and name say about it."""

    path: Path
    kind: str
    label: str          # LPS or LMS
    sequence: str       # T1, T2FS or STIR
    patient: Optional[str]

    @property
    def case_id(self) -> str:
        return self.patient or f"{self.label}_{self.sequence}"


def scan_images(root: Path, progress: Optional[ProgressCallback] = None) -> Tuple[List[ImageEntry], List[Path]]:
    """Every image file below ``root`` with a class and a sequence folder above it.

    :returns: (entries sorted by path, image files lacking a class or sequence folder).
    """
    root = Path(root)
    entries: List[ImageEntry] = []
    unlabelled: List[Path] = []
    walked = 0
    for directory, folders, files in os.walk(root):
        folders.sort()
        parts = Path(directory).relative_to(root).parts
        labels = [class_of_folder(part) for part in parts]
        sequences = [sequence_of_folder(part) for part in parts]
        label = next((value for value in reversed(labels) if value), None)
        sequence = next((value for value in reversed(sequences) if value), None)
        folder_patient = None
        for part, is_label, is_sequence in zip(parts, labels, sequences):
            if not is_label and not is_sequence:
                folder_patient = patient_token(part) or folder_patient
        for name in sorted(files):
            walked += 1
            if walked % 200 == 0:
                report(progress, f"Looking at image files ({walked})", 0.5)
            path = Path(directory) / name
            kind = file_kind(path)
            if kind is None and path.suffix.lower() in _IMAGE_SUFFIXES:
                # Named like an image but not one: loading reports it instead of skipping it silently.
                kind = "unreadable"
            if kind is None:
                continue
            if label is None or sequence is None:
                unlabelled.append(path)
                continue
            entries.append(ImageEntry(path, kind, label, sequence, folder_patient or patient_token(Path(name).stem)))
    return entries, unlabelled


def count_table(entries: Sequence[ImageEntry]) -> "pd.DataFrame":
    """Found vs published image counts per class and sequence (one row each, plus totals)."""
    import pandas as pd

    rows = []
    for label in CLASSES:
        for sequence in SEQUENCES:
            found = sum(1 for e in entries if e.label == label and e.sequence == sequence)
            published = PUBLISHED_COUNTS[label][sequence]
            rows.append({"Class": label, "Sequence": sequence, "Found": found, "Published": published,
                         "Difference": found - published})
        found = sum(1 for e in entries if e.label == label)
        published = sum(PUBLISHED_COUNTS[label].values())
        rows.append({"Class": label, "Sequence": "Total", "Found": found, "Published": published,
                     "Difference": found - published})
    return pd.DataFrame(rows, columns=["Class", "Sequence", "Found", "Published", "Difference"])


def count_findings(table: pd.DataFrame, root: Path) -> List[Finding]:
    """A warning per class and sequence whose count differs from the published table."""
    findings = []
    for row in table.itertuples(index=False):
        if row.Sequence == "Total" or row.Difference == 0:
            continue
        findings.append(Finding(
            WARNING, "hermessi.count_mismatch",
            f"{root}: {row.Class} {row.Sequence} has {row.Found} image(s); the published table has "
            f"{row.Published} ({row.Difference:+d})", path=str(root), value=float(row.Difference)))
    return findings


def case_table(cases: Sequence[CaseRecord]) -> "pd.DataFrame":
    """The case table a user sees: one row per case (ID, class, counts per sequence)."""
    import pandas as pd

    return pd.DataFrame([{"case_id": c.case_id, "diagnosis": c.diagnosis, **c.summary} for c in cases])


def _read_raster(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                pixels = np.asarray(image, dtype=np.int32)
            else:
                pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except Exception as error:  # Pillow raises many types for damaged files
        raise DataError(path, f"cannot be read as an image ({error})") from error
    return pixels


def _dicom_single(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Pixels [1, j, i] and IJK-to-RAS of a DICOM image that is not part of a stack.

    :raises DataError: naming the file, for undecodable pixels or non-numeric scaling/geometry.
    """
    try:
        voxels, ijk_to_ras = _dicom_single_unchecked(path)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
        raise DataError(path, f"has a header value that is not a number ({error})") from error
    if not np.all(np.isfinite(ijk_to_ras)):
        raise DataError(path, "has a non-finite PixelSpacing, SliceThickness or position")
    if voxels.dtype.kind == "f" and not np.all(np.isfinite(voxels)):
        raise DataError(path, "has a RescaleSlope or RescaleIntercept that is not a finite number")
    return voxels, ijk_to_ras


def _dicom_single_unchecked(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    try:
        dataset = pydicom.dcmread(str(path))
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for damaged pixel data
        raise DataError(path, f"pixel data cannot be decoded ({error})") from error
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4) and dataset.get("SamplesPerPixel", 1) > 1:
        pixels = pixels[..., :3] @ np.array([0.299, 0.587, 0.114])  # luminance of a colour capture
    if pixels.ndim == 2:
        pixels = pixels[None]
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    voxels = pixels.astype(np.float32) * slope + intercept if (slope, intercept) != (1.0, 0.0) else pixels
    thickness = float(dataset.get("SliceThickness") or 1.0)
    plane = header_from_dataset(dataset, path).plane if dataset.get("SeriesInstanceUID") else None
    if plane is not None:
        # A lone slice that still knows where it is in the patient keeps its position and orientation.
        ijk_to_ras, _ = ijk_to_ras_from_slices([plane], thickness)
        return np.asarray(voxels), ijk_to_ras
    spacing = dataset.get("PixelSpacing") or [1.0, 1.0]
    ijk_to_lps = np.diag([float(spacing[1]), float(spacing[0]), thickness, 1.0])
    return np.asarray(voxels), LPS_TO_RAS @ ijk_to_lps


@dataclass
class HermessiCase(CaseRecord):
    """A patient (or, without patient tokens, a class and sequence group) of the Hermessi archive.

    :param images: every image file of the case, with its class and sequence.
    """

    images: List[ImageEntry] = field(default_factory=list)

    def location(self) -> Optional[Path]:
        """The deepest folder holding every image of the case."""
        if not self.images:
            return None
        return Path(os.path.commonpath([str(entry.path.parent) for entry in self.images]))


class HermessiSarcomaMriCollection(Collection):
    """Hermessi et al. 2019 soft-tissue sarcoma MRI slices (LPS vs LMS)."""

    key = "hermessi"
    title = "Soft-tissue sarcoma MRI (Hermessi et al. 2019)"
    looks_for = ("class folders (LPS/LMS, liposarcoma/leiomyosarcoma) and sequence folders (T1, T2FS, STIR) "
                 f"within {DETECT_DEPTH} levels")
    record_type = HermessiCase

    @classmethod
    def detect(cls, root: Path) -> bool:
        """True when class folders and sequence folders appear within three levels."""
        root = Path(root)
        if not root.is_dir():
            return False
        seen_class = seen_sequence = False
        for directory, folders, _ in os.walk(root):
            depth = len(Path(directory).relative_to(root).parts)
            for name in folders:
                seen_class = seen_class or class_of_folder(name) is not None
                seen_sequence = seen_sequence or sequence_of_folder(name) is not None
            if seen_class and seen_sequence:
                return True
            if depth + 1 >= DETECT_DEPTH:
                folders[:] = []
        return False

    def discover_cases(self, progress: Optional[ProgressCallback] = None) -> List[HermessiCase]:
        entries, unlabelled = scan_images(self.root, progress)
        self._entries, self._unlabelled = entries, unlabelled
        by_case: Dict[str, List[ImageEntry]] = {}
        for entry in entries:
            by_case.setdefault(entry.case_id, []).append(entry)
        cases = []
        for case_id in sorted(by_case):
            members = by_case[case_id]
            labels = sorted({e.label for e in members})
            summary: Dict[str, Any] = {"class": "/".join(labels), "images": len(members)}
            for sequence in SEQUENCES:
                summary[sequence] = sum(1 for e in members if e.sequence == sequence)
            summary["grouping"] = "patient" if members[0].patient else "class and sequence"
            cases.append(HermessiCase(self.key, case_id, self.root,
                                      " / ".join(CLASS_NAMES[label] for label in labels), summary,
                                      images=list(members)))
        report(progress, f"Found {len(cases)} case(s) in {len(entries)} image(s)", 1.0)
        return cases

    def counts(self) -> "pd.DataFrame":
        """Found vs published counts over the whole folder."""
        if not hasattr(self, "_entries"):
            self.discover_cases()
        return count_table(self._entries)

    def collection_findings(self) -> List[Finding]:
        """Count mismatches and image files without class/sequence folders."""
        table = self.counts()
        findings = count_findings(table, self.root)
        if self._unlabelled:
            findings.append(Finding(WARNING, "hermessi.unlabelled_images",
                                    f"{len(self._unlabelled)} image file(s) lack a class or sequence folder, e.g. "
                                    f"{self._unlabelled[0]}", path=str(self._unlabelled[0]),
                                    value=float(len(self._unlabelled))))
        return findings

    # ------------------------------------------------------------------ reading
    def read_case(self, case: HermessiCase, progress: Optional[ProgressCallback] = None) -> CaseData:
        """Every image of the case as volumes (DICOM series stacked), grouped by class and sequence.

        Unreadable files are left out with a warning naming them; the case's
        table of found vs published counts goes under the patient.

        :raises DataError: if the case has no image at all.
        """
        if not case.images:
            raise DataError(self.root, f"case {case.case_id} has no images")
        data = CaseData(case=case)
        patient = Placement(patient_id=f"hermessi:{case.case_id}", patient_name=case.case_id,
                            uid_name=SUBJECT_HIERARCHY_UID_NAME)
        groups: Dict[Tuple[str, str], List[ImageEntry]] = {}
        for entry in case.images:
            groups.setdefault((entry.label, entry.sequence), []).append(entry)
        done = 0
        for (label, sequence), members in sorted(groups.items()):
            done = _read_group(case, label, sequence, members, patient.in_folder(f"{label} {sequence}"), data,
                               progress, done, len(case.images))
        table = self.counts()
        data.tables.append(TableData("counts", "Hermessi counts vs published", table, patient,
                                     {"collection": self.key, "case_id": case.case_id}))
        data.metrics["counts"] = table.to_dict("records")
        data.metrics["volumes"] = len(data.volumes)
        return data

    # ------------------------------------------------------------------ checks
    def check_case(self, data: CaseData) -> List[Finding]:
        """The folder-wide count checks, reported with every case (QA groups them as collection findings)."""
        return self.collection_findings()

    def check_collection(self, cases: Sequence[CaseRecord], results: Sequence[Any]) -> List[Finding]:
        """Count mismatches against the published table and image files without class/sequence folders."""
        return self.collection_findings()


def _read_group(case: HermessiCase, label: str, sequence: str, members: Sequence[ImageEntry],
                placement: Placement, data: CaseData, progress: Optional[ProgressCallback], done: int,
                total: int) -> int:
    """Read one class/sequence group of a case into ``data``: DICOM series stacked, other images one by one."""
    attributes = {"collection": HermessiSarcomaMriCollection.key, "case_id": case.case_id, "class": label,
                  "sequence": sequence}
    dicom = [e for e in members if e.kind == "dicom"]
    headers: List[InstanceHeader] = []
    singles: List[ImageEntry] = [e for e in members if e.kind != "dicom"]
    for entry in dicom:
        try:
            headers.append(read_header(entry.path))
        except DataError as error:
            data.findings.append(Finding(WARNING, "hermessi.unreadable_file", str(error),
                                         case_id=case.case_id, path=str(entry.path)))
    by_path = {e.path: e for e in dicom}
    for uid, series in group_by_series(headers).items():
        instances, left_out = split_stackable(series) if len(series) > 1 else (series, [])
        for problem in left_out:
            data.findings.append(Finding(WARNING, "hermessi.slice_left_out",
                                         f"{problem}; not stacked with series {uid}, shown on its own",
                                         case_id=case.case_id, path=problem.path))
            singles.extend(e for e in dicom if str(e.path) == problem.path)
        if len(instances) > 1 and all(i.plane is not None for i in instances):
            try:
                volume = read_series(instances)
            except DataError as error:
                data.findings.append(Finding(WARNING, "hermessi.not_stacked",
                                             f"series {uid} loaded slice by slice: {error}",
                                             case_id=case.case_id, path=error.path))
            else:
                name = f"{case.case_id} {label} {sequence} {instances[0].series_description or 'series'}"
                data.volumes.append(VolumeData(f"{label}/{sequence}/{uid}", name, volume.voxels, volume.ijk_to_ras,
                                               placement, attributes={**attributes, "file_type": "dicom",
                                                                      "slices": str(len(volume.instances))}))
                for problem in volume.problems():
                    data.findings.append(Finding(WARNING, "hermessi.slice_stack", f"{name}: {problem}",
                                                 case_id=case.case_id, node_name=name))
                done += len(instances)
                report(progress, f"Read {name}", done / max(1, total))
                continue
        singles.extend(by_path[i.path] for i in instances)
    for entry in sorted(singles, key=lambda e: e.path):
        try:
            if entry.kind == "dicom":
                voxels, ijk_to_ras = _dicom_single(entry.path)
            else:
                voxels, ijk_to_ras = _read_raster(entry.path)[None], LPS_TO_RAS.copy()
        except DataError as error:
            data.findings.append(Finding(WARNING, "hermessi.unreadable_file", str(error),
                                         case_id=case.case_id, path=str(entry.path)))
            continue
        name = f"{case.case_id} {label} {sequence} {entry.path.stem}"
        data.volumes.append(VolumeData(f"{label}/{sequence}/{entry.path}", name, voxels, ijk_to_ras, placement,
                                       attributes={**attributes, "file_type": entry.kind, "slices": "1"}))
        done += 1
        report(progress, f"Read {name}", done / max(1, total))
    return done


COLLECTIONS = [HermessiSarcomaMriCollection]
