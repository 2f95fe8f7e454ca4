"""QA checks of a Lung-PET-CT-Dx case on its plain data (no scene, no file read)."""
from __future__ import annotations

from typing import List, Sequence

from ...case_data import CaseData, RoiData
from ...findings import WARNING, Finding
from . import patient_letter
from .boxes import ROLE_LESION, AnnotatedObject

__all__ = ["check_case", "lesion_gaps", "label_mismatches"]

CHECK_LESION_GAP = "lung.lesion_gap"
CHECK_LABEL_MISMATCH = "lung.label_mismatch"


def lesion_gaps(case_id: str, rois: Sequence[RoiData]) -> List[Finding]:
    """A warning per lesion whose boxes skip slices (the gap is bridged, but a box may be missing)."""
    findings = []
    for roi in rois:
        missing = roi.attributes.get("missing_slices", "")
        if roi.attributes.get("role") != ROLE_LESION or not missing:
            continue
        slices = missing.split()
        findings.append(Finding(
            WARNING, CHECK_LESION_GAP,
            f"{roi.name}: slice(s) {', '.join(slices)} between {roi.attributes['first_slice']} and "
            f"{roi.attributes['last_slice']} have no box", case_id=case_id, node_name=roi.name,
            ras=tuple(float(v) for v in roi.center), value=float(len(slices))))
    return findings


def label_mismatches(case_id: str, objects: Sequence[AnnotatedObject]) -> List[Finding]:
    """A warning per ``<name>`` that is not the patient's class letter (the class comes from the patient ID)."""
    letter = patient_letter(case_id)
    findings = []
    for item in objects:
        name = item.name
        if name == letter:
            continue
        if name.upper() == letter:
            problem = f"is lower case ({name!r} for class {letter!r})"
        elif not name:
            problem = "is empty"
        else:
            problem = f"is {name!r}, but the patient's class letter is {letter!r}"
        findings.append(Finding(WARNING, CHECK_LABEL_MISMATCH,
                                f"{item.xml_path.name} object {item.object_index + 1}: <name> {problem}; "
                                "the class is taken from the patient ID", case_id=case_id, path=str(item.xml_path)))
    return findings


def check_case(data: CaseData) -> List[Finding]:
    """Lesion gaps (from the lesion ROIs) and class-label mismatches (from the objects read)."""
    case_id = data.case.case_id
    return [*lesion_gaps(case_id, data.rois), *label_mismatches(case_id, data.provenance.get("objects", []))]
