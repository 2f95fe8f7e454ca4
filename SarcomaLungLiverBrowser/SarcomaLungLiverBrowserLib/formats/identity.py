"""Identity checks between an annotation and the images it is placed on, as plain functions.

Geometry checks alone do not catch another patient's SEG whose series
reference was rewritten, nor a VOC box whose SOPInstanceUID occurs in two
series: both would be drawn, plausibly, on the wrong images. These functions
compare what the headers say and return findings (or refuse a placement);
collections call them with the headers they already read:

* :func:`identity_findings`: PatientID, StudyInstanceUID and
  FrameOfReferenceUID of an annotation (SEG, RTSTRUCT, SR, VOC's instance)
  against its image series;
* :func:`duplicate_sop_instance_uids` / :func:`duplicate_instance_findings`:
  SOPInstanceUIDs shared by different series (or files) of a case;
* :func:`instance_for_placement`: the one instance an annotation names, or a
  :class:`~.errors.DataError` when it is absent or not unique, so a box is
  never placed on a series that does not contain its instance uniquely.

Every object with ``patient_id``, ``study_instance_uid`` and
``frame_of_reference_uid`` attributes (InstanceHeader, SegHeader,
StructureSet) or the DICOM keywords (a pydicom Dataset) can be compared.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from ..errors import DataError
from ..findings import ERROR, WARNING, Finding

__all__ = [
    "CHECK_PATIENT",
    "CHECK_STUDY",
    "CHECK_FRAME_OF_REFERENCE",
    "CHECK_DUPLICATE_SOP",
    "Identity",
    "identity_of",
    "identity_findings",
    "duplicate_sop_instance_uids",
    "duplicate_instance_findings",
    "instance_for_placement",
]

CHECK_PATIENT = "identity.patient_id"
CHECK_STUDY = "identity.study_instance_uid"
CHECK_FRAME_OF_REFERENCE = "identity.frame_of_reference_uid"
CHECK_DUPLICATE_SOP = "identity.duplicate_sop_instance_uid"

PathLike = Union[str, Path]


@dataclass(frozen=True)
class Identity:
    """Who and where an object belongs to; empty strings where the header does not say."""

    patient_id: str
    study_instance_uid: str
    frame_of_reference_uid: str


def _value(source: Any, attribute: str, keyword: str) -> str:
    value = getattr(source, attribute, None)
    if value is None and hasattr(source, "get"):
        value = source.get(keyword)
    if value is None and attribute == "frame_of_reference_uid":
        uids = getattr(source, "frame_of_reference_uids", None)  # an RTSTRUCT may list several
        value = uids[0] if uids and len(set(uids)) == 1 else None
    # DICOM pads to even length with a space (text) or NUL (UIDs); neither is part of the value.
    return str(value).strip(" \x00") if value is not None else ""


def identity_of(source: Any) -> Identity:
    """The identity an object's header states (attributes, else DICOM keywords)."""
    return Identity(_value(source, "patient_id", "PatientID"),
                    _value(source, "study_instance_uid", "StudyInstanceUID"),
                    _value(source, "frame_of_reference_uid", "FrameOfReferenceUID"))


def _declared_frames(source: Any) -> List[str]:
    """Every FrameOfReferenceUID an annotation declares.

    An RTSTRUCT lists its frames (ReferencedFrameOfReferenceSequence) and
    each ROI names the frame its contours are in; any of them may be the
    images' frame. Other objects state one.
    """
    frames: List[str] = []
    listed = getattr(source, "frame_of_reference_uids", None)
    if listed:
        frames.extend(str(uid).strip(" \x00") for uid in listed)
    for roi in getattr(source, "rois", None) or []:
        frames.append(str(getattr(roi, "frame_of_reference_uid", "") or "").strip(" \x00"))
    if not frames:
        frames.append(_value(source, "frame_of_reference_uid", "FrameOfReferenceUID"))
    return [frame for index, frame in enumerate(frames) if frame and frame not in frames[:index]]


def _image_identity(images: Sequence[Any]) -> Dict[str, List[str]]:
    """Distinct non-empty values of each identity attribute over a series' instances."""
    values: Dict[str, List[str]] = {"patient_id": [], "study_instance_uid": [], "frame_of_reference_uid": []}
    for image in images:
        identity = identity_of(image)
        for name in values:
            value = getattr(identity, name)
            if value and value not in values[name]:
                values[name].append(value)
    return values


def identity_findings(annotation: Any, images: Union[Any, Sequence[Any]], annotation_path: PathLike,
                      case_id: str = "", node_name: str = "",
                      spelling_key: Optional[Callable[[str], str]] = None) -> List[Finding]:
    """Findings where an annotation's identity differs from its image series' identity.

    * PatientID differs: ERROR (another patient's annotation);
      differing only in case or surrounding spaces, or giving the same
      ``spelling_key`` (a collection's rule, e.g. ``STS-01`` = ``STS_001``):
      WARNING (spelled differently).
    * FrameOfReferenceUID: none the annotation declares (an RTSTRUCT may list
      several, and each ROI names one) is the images': ERROR (coordinates of
      another frame mean nothing here).
    * StudyInstanceUID differs: WARNING (an annotation is normally stored in its images' study).

    A value missing on either side is not compared (nothing can be concluded).
    """
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    own = identity_of(annotation)
    theirs = _image_identity(images)
    name = Path(str(annotation_path)).name
    findings: List[Finding] = []

    def add(severity: str, check: str, message: str) -> None:
        findings.append(Finding(severity, check, f"{name}: {message}", case_id, str(annotation_path), node_name))

    def same_patient(first: str, second: str) -> bool:
        if first.strip().lower() == second.strip().lower():
            return True
        return spelling_key is not None and spelling_key(first) == spelling_key(second)

    patients = theirs["patient_id"]
    if own.patient_id and patients and own.patient_id not in patients:
        if any(same_patient(own.patient_id, value) for value in patients):
            add(WARNING, CHECK_PATIENT, f"PatientID {own.patient_id!r} is spelled differently from the images' "
                                        f"{patients[0]!r}")
        else:
            add(ERROR, CHECK_PATIENT, f"belongs to patient {own.patient_id!r}, the images to "
                                      f"{', '.join(map(repr, patients))}: it is another patient's annotation")
    frames = theirs["frame_of_reference_uid"]
    declared = _declared_frames(annotation)
    if declared and frames and not set(declared) & set(frames):
        add(ERROR, CHECK_FRAME_OF_REFERENCE, f"FrameOfReferenceUID {', '.join(declared)} is not the images' "
                                             f"({', '.join(frames)}): its coordinates are in another frame")
    studies = theirs["study_instance_uid"]
    if own.study_instance_uid and studies and own.study_instance_uid not in studies:
        add(WARNING, CHECK_STUDY, f"StudyInstanceUID {own.study_instance_uid} is not the images' "
                                  f"({', '.join(studies)})")
    return findings


def duplicate_sop_instance_uids(instances: Iterable[Any]) -> Dict[str, List[Any]]:
    """SOPInstanceUID -> the instances carrying it, for UIDs held by more than one file."""
    by_uid: Dict[str, List[Any]] = {}
    for instance in instances:
        uid = _value(instance, "sop_instance_uid", "SOPInstanceUID")
        if uid:
            by_uid.setdefault(uid, []).append(instance)
    return {uid: found for uid, found in by_uid.items() if len(found) > 1}


def duplicate_instance_findings(instances: Iterable[Any], case_id: str = "") -> List[Finding]:
    """One WARNING per SOPInstanceUID held by several files (ERROR when they lie in different series)."""
    findings = []
    for uid, found in sorted(duplicate_sop_instance_uids(instances).items()):
        series = sorted({_value(instance, "series_instance_uid", "SeriesInstanceUID") for instance in found})
        paths = [str(getattr(instance, "path", "") or "") for instance in found]
        where = ", ".join(Path(path).name or "?" for path in paths)
        if len(series) > 1:
            findings.append(Finding(ERROR, CHECK_DUPLICATE_SOP,
                                    f"SOPInstanceUID {uid} occurs in {len(series)} series ({', '.join(series)}; "
                                    f"files {where}): annotations naming it cannot be placed", case_id, paths[0]))
        else:
            findings.append(Finding(WARNING, CHECK_DUPLICATE_SOP,
                                    f"SOPInstanceUID {uid} is held by {len(found)} files ({where})", case_id,
                                    paths[0]))
    return findings


def instance_for_placement(sop_instance_uid: str, instances: Iterable[Any], annotation_path: PathLike,
                           series_instance_uid: Optional[str] = None) -> Any:
    """The one instance ``sop_instance_uid`` names, to place an annotation (a VOC box) on.

    :param series_instance_uid: if the annotation also names its series, the
        instance must be in it.
    :raises DataError: naming the annotation file, if no instance or more than
        one instance (in different series, or as different files) has the UID.
    """
    uid = str(sop_instance_uid).strip(" \x00")
    found = [instance for instance in instances if _value(instance, "sop_instance_uid", "SOPInstanceUID") == uid]
    if series_instance_uid:
        in_series = [i for i in found if _value(i, "series_instance_uid", "SeriesInstanceUID") == series_instance_uid]
        if found and not in_series:
            raise DataError(annotation_path, f"names instance {uid} of series {series_instance_uid}, but that "
                                             "instance lies in another series")
        found = in_series
    if not found:
        raise DataError(annotation_path, f"names instance {uid}, which is not among the images")
    series = {_value(instance, "series_instance_uid", "SeriesInstanceUID") for instance in found}
    if len(found) > 1:
        raise DataError(annotation_path, f"names instance {uid}, which {len(found)} files in {len(series)} "
                                         "series carry; the annotation is not placed on any of them")
    return found[0]
