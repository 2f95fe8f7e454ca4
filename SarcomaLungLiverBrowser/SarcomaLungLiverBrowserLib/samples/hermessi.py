"""A tiny Hermessi-style LPS/LMS MRI slice folder (T1 / T2FS / STIR).

The real archive's layout is undocumented (``shared/notes/datasets.md`` §3), so
the sample covers what the loader accepts: class folders and sequence folders
in both nesting orders, short and long class names, DICOM and PNG (and one
JPEG) told apart only by content, and patient tokens in file names or in
folder names. :func:`write_layout` writes the same logical slices as DICOM or
as PNG, so both can be checked to give identical case tables.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

from .dicom_writer import SeriesSpec, uid_from_seed, write_series

__all__ = ["generate", "write_layout", "CONTENT", "slice_pixels", "expected_counts"]

#: (class, sequence) -> patient -> number of 2-D slices.
CONTENT: Dict[Tuple[str, str], Dict[str, int]] = {
    ("LPS", "T1"): {"STS_003": 3, "STS_011": 2},
    ("LPS", "T2FS"): {"STS_003": 2, "STS_011": 2},
    ("LPS", "STIR"): {"STS_011": 2},
    ("LMS", "T1"): {"STS_005": 3},
    ("LMS", "T2FS"): {"STS_005": 2},
    ("LMS", "STIR"): {"STS_020": 1},
}
LONG_CLASS_NAMES = {"LPS": "Liposarcoma", "LMS": "Leiomyosarcoma"}
SIZE = 32
#: In-plane resolution and slice thickness the paper gives per sequence (mm).
SPACING = {"T1": (0.74, 5.5), "T2FS": (0.63, 5.0), "STIR": (0.86, 5.0)}


def expected_counts() -> Dict[Tuple[str, str], int]:
    """Slices per (class, sequence) in :data:`CONTENT`."""
    return {key: sum(patients.values()) for key, patients in CONTENT.items()}


def slice_pixels(label: str, sequence: str, patient: str, index: int) -> np.ndarray:
    """Deterministic 8-bit pixels of one slice: a bright disc on noise."""
    seed = sum(map(ord, f"{label}{sequence}{patient}")) * 100 + index
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    disc = (x - 16) ** 2 + (y - 15) ** 2 < (6 + index) ** 2
    return np.clip(rng.normal(60, 10, (SIZE, SIZE)) + 120 * disc, 0, 255).astype(np.uint8)


def _folder(root: Path, label: str, sequence: str, nesting: str, long_names: bool) -> Path:
    class_folder = LONG_CLASS_NAMES[label] if long_names else label
    if nesting == "class/sequence":
        return root / class_folder / sequence
    if nesting == "sequence/class":
        return root / sequence / class_folder
    raise ValueError(f"unknown nesting {nesting!r}")


def _write_png(path: Path, pixels: np.ndarray, image_format: str = "PNG") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=image_format)


def write_layout(
    root: Path,
    file_type: str = "dicom",
    nesting: str = "class/sequence",
    patients: Optional[str] = "file",
    long_names: bool = False,
    groups: Optional[Iterable[Tuple[str, str]]] = None,
    extension: Optional[str] = None,
) -> Path:
    """Write :data:`CONTENT` (or the given ``groups`` of it) below ``root``.

    :param file_type: ``"dicom"`` (one MR series per patient and sequence) or ``"png"``.
    :param nesting: ``"class/sequence"`` or ``"sequence/class"``.
    :param patients: ``"file"`` (token in file names), ``"folder"`` (a folder per
        patient) or None (no patient is identifiable).
    :param extension: file extension to use instead of the usual one (content decides the type).
    """
    root = Path(root)
    running = 0
    for (label, sequence), by_patient in CONTENT.items():
        if groups is not None and (label, sequence) not in set(groups):
            continue
        folder = _folder(root, label, sequence, nesting, long_names)
        for patient, count in by_patient.items():
            target = folder / patient if patients == "folder" else folder
            names = []
            for index in range(count):
                running += 1
                if patients == "file":
                    names.append(f"{patient}_{sequence}_{index + 1:02d}")
                elif patients == "folder":
                    names.append(f"{sequence}_{index + 1:02d}")
                else:
                    names.append(f"img_{running:04d}")
            pixels = [slice_pixels(label, sequence, patient, index) for index in range(count)]
            if file_type == "png":
                for name, image in zip(names, pixels):
                    _write_png(target / f"{name}{extension if extension is not None else '.png'}", image)
            elif file_type == "dicom":
                in_plane, thickness = SPACING[sequence]
                spec = SeriesSpec(
                    patient_id=patient, study_instance_uid=uid_from_seed("hermessi", patient, "study"),
                    series_instance_uid=uid_from_seed("hermessi", patient, sequence),
                    frame_of_reference_uid=uid_from_seed("hermessi", patient, "for"), modality="MR",
                    series_number=SEQUENCES_NUMBER[sequence], series_description=f"{sequence} {label}",
                    stored_values=np.stack(pixels).astype(np.uint16),
                    positions=[(-SIZE * in_plane / 2, -SIZE * in_plane / 2, index * thickness)
                               for index in range(count)],
                    pixel_spacing=(in_plane, in_plane), slice_thickness=thickness,
                )
                written = write_series(spec, target, file_names="sop")
                for path, name in zip(written.paths, names):
                    path.rename(target / f"{name}{extension if extension is not None else '.dcm'}")
            else:
                raise ValueError(f"unknown file type {file_type!r}")
    return root


SEQUENCES_NUMBER = {"T1": 3, "T2FS": 5, "STIR": 7}


def generate(parent: Path) -> Path:
    """A mixed Hermessi-style folder under ``parent/hermessi`` (both nestings, DICOM, PNG, JPEG)."""
    root = Path(parent) / "hermessi"
    # LPS: <class>/<sequence>/ with patient tokens in the file names; T1 as DICOM, the rest PNG.
    write_layout(root, "dicom", "class/sequence", "file", groups=[("LPS", "T1")])
    write_layout(root, "png", "class/sequence", "file", groups=[("LPS", "T2FS")])
    # PNG content under a misleading extension: the loader must go by the bytes.
    write_layout(root, "png", "class/sequence", "file", groups=[("LPS", "STIR")], extension=".dat")
    # LMS: <sequence>/<long class name>/<patient>/ ; DICOM without extension, PNG, and a JPEG.
    write_layout(root, "dicom", "sequence/class", "folder", long_names=True, groups=[("LMS", "T1")], extension="")
    write_layout(root, "png", "sequence/class", "folder", long_names=True, groups=[("LMS", "T2FS")])
    stir = root / "STIR" / "Leiomyosarcoma" / "STS_020"
    _write_png(stir / "STIR_01.jpg", slice_pixels("LMS", "STIR", "STS_020", 0), image_format="JPEG")
    (root / "README.txt").write_text("Hermessi-style sample: LPS vs LMS, T1 / T2FS / STIR (generated).\n")
    return root
