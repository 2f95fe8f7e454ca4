"""Body-weight standardised uptake value (SUVbw) of PET images, from their DICOM headers.

SUVbw = activity concentration (Bq/ml) x body weight (g) / injected dose (Bq),
the dose decayed to the time the image values are decay-corrected to. The
rules follow the PET module's attributes (DICOM PS3.3 C.8.9.1, Units,
DecayCorrection, CorrectedImage) and the QIBA FDG-PET profile's SUV
computation:

* ``Units`` ``GML`` means the values already are SUVbw in g/ml (GE and MIM
  exports, e.g. the TCIA Soft-tissue-Sarcoma PETs): factor 1;
* ``Units`` ``BQML`` with attenuation and decay correction (``ATTN``, ``DECY``
  in ``CorrectedImage``) converts: with ``DecayCorrection`` ``START`` the dose
  is decayed from injection to the series start; with ``ADMIN`` the values
  are already decay-corrected to the injection time, so the dose is used as is;
* anything else (counts, missing weight or dose, no decay correction) cannot be
  converted: the values stay in their stored units and the reason is kept so a
  preview can say so.

Plain functions over pydicom datasets; nothing here touches the scene.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, Mapping, Optional

__all__ = [
    "PetScale",
    "suv_bw_scale",
    "scale_attributes",
    "scale_from_attributes",
    "scale_attributes_of_file",
    "STORED_UNIT_NAMES",
]

#: How DICOM PET ``Units`` are written for a reader (PS3.3 C.8.9.1.1.3).
STORED_UNIT_NAMES = {
    "CNTS": "counts", "NONE": "unitless", "CM2": "cm2", "CM2ML": "cm2/ml", "PCNT": "percent",
    "CPS": "counts/s", "BQML": "Bq/ml", "MGMINML": "mg/min/ml", "UMOLMINML": "umol/min/ml",
    "MLMING": "ml/min/g", "MLG": "ml/g", "1CM": "1/cm", "UMOLML": "umol/ml", "PROPCNTS": "proportional to counts",
    "PROPCPS": "proportional to counts/s", "MLMINML": "ml/min/ml", "MLML": "ml/ml", "GML": "g/ml",
    "STDDEV": "standard deviations",
}

#: Node attribute names under which a PET volume carries its scale (see :func:`scale_attributes`).
_FACTOR, _UNITS, _IS_SUV, _EXPLANATION = "pet.scale_factor", "pet.units", "pet.is_suv", "pet.scale_explanation"
_ONE_DAY_S = 24 * 3600.0


@dataclass(frozen=True)
class PetScale:
    """How to turn a PET volume's stored (rescaled) values into the values to show.

    :param factor: multiply the stored values by this.
    :param units: the units of the shown values, e.g. ``"SUVbw (g/ml)"`` or ``"Bq/ml"``.
    :param is_suv: True when the shown values are SUVbw.
    :param explanation: how the factor was found, or why SUVbw could not be computed.
    """

    factor: float
    units: str
    is_suv: bool
    explanation: str


def _text(dataset: Any, keyword: str) -> str:
    value = getattr(dataset, keyword, None)
    return "" if value is None else str(value).strip()


def _positive(dataset: Any, keyword: str) -> Optional[float]:
    """A header number if present and > 0, else None (a zero weight or dose means 'not recorded')."""
    value = getattr(dataset, keyword, None)
    try:
        number = float(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and math.isfinite(number) and number > 0 else None


def _date_time(date: str, time: str) -> Optional[datetime]:
    """A DICOM DA + TM pair (TM may omit seconds and carry fractions)."""
    if len(date) != 8 or not date.isdigit() or len(time) < 4:
        return None
    whole, _, fraction = time.partition(".")
    whole = whole.ljust(6, "0")
    try:
        moment = datetime.strptime(date + whole[:6], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    digits = (fraction + "000000")[:6]
    return moment + timedelta(microseconds=int(digits)) if digits.isdigit() else moment


def _stored_scale(units: str, reason: str) -> PetScale:
    name = STORED_UNIT_NAMES.get(units, units or "unknown units")
    return PetScale(1.0, name, False, f"stored units ({name}): {reason}")


def _injection_time(dataset: Any, drug: Any, scan_date: str) -> Optional[datetime]:
    """Injection time: RadiopharmaceuticalStartDateTime, else the series date with RadiopharmaceuticalStartTime."""
    full = _text(drug, "RadiopharmaceuticalStartDateTime")
    if len(full) >= 12:
        return _date_time(full[:8], full[8:].split("+")[0].split("-")[0])
    start = _text(drug, "RadiopharmaceuticalStartTime")
    return _date_time(scan_date, start) if start else None


def _scan_start(dataset: Any) -> Optional[datetime]:
    """The series start; the acquisition time when earlier (re-processed series carry a later SeriesTime)."""
    series = _date_time(_text(dataset, "SeriesDate"), _text(dataset, "SeriesTime"))
    acquisition = _date_time(_text(dataset, "AcquisitionDate") or _text(dataset, "SeriesDate"),
                             _text(dataset, "AcquisitionTime"))
    candidates = [moment for moment in (series, acquisition) if moment is not None]
    return min(candidates) if candidates else None


def suv_bw_scale(dataset: Any) -> PetScale:
    """The factor from stored PET values to SUVbw, or the stored units with the reason SUVbw is not possible.

    :param dataset: the header of one image of the PET series (pydicom Dataset;
        pixel data not needed). Every image of a series shares these attributes.
    """
    units = _text(dataset, "Units").upper()
    if _text(dataset, "Modality") not in ("", "PT"):
        return _stored_scale(units, f"modality is {_text(dataset, 'Modality')}, not PT")
    if units == "GML":
        return PetScale(1.0, "SUVbw (g/ml)", True, "values are stored as SUVbw (Units GML)")
    if units != "BQML":
        return _stored_scale(units, f"Units is {units or 'missing'}, not BQML or GML")
    corrections = {str(item).upper() for item in (getattr(dataset, "CorrectedImage", None) or [])}
    if isinstance(getattr(dataset, "CorrectedImage", None), str):
        corrections = {dataset.CorrectedImage.upper()}
    missing = sorted({"ATTN", "DECY"} - corrections)
    if missing:
        return _stored_scale(units, f"CorrectedImage lacks {', '.join(missing)}")
    weight_kg = _positive(dataset, "PatientWeight")
    if weight_kg is None:
        return _stored_scale(units, "PatientWeight is missing or zero")
    drugs = getattr(dataset, "RadiopharmaceuticalInformationSequence", None) or []
    if not drugs:
        return _stored_scale(units, "RadiopharmaceuticalInformationSequence is missing")
    drug = drugs[0]
    dose_bq = _positive(drug, "RadionuclideTotalDose")
    half_life_s = _positive(drug, "RadionuclideHalfLife")
    if dose_bq is None or half_life_s is None:
        return _stored_scale(units, "RadionuclideTotalDose or RadionuclideHalfLife is missing or zero")
    decay_correction = _text(dataset, "DecayCorrection").upper()
    if decay_correction == "ADMIN":
        decayed_dose, how = dose_bq, "values decay-corrected to injection (DecayCorrection ADMIN)"
    elif decay_correction == "START":
        scan = _scan_start(dataset)
        injection = _injection_time(dataset, drug, _text(dataset, "SeriesDate"))
        if scan is None or injection is None:
            return _stored_scale(units, "series or injection time is missing")
        elapsed_s = (scan - injection).total_seconds()
        note = ""
        if not 0 <= elapsed_s < _ONE_DAY_S and injection.date() != scan.date():
            # De-identification shifts dates inconsistently (a real TCIA STS header has the
            # injection a day after its series): the times of day are still right.
            elapsed_s = (scan - datetime.combine(scan.date(), injection.time())).total_seconds()
            note = f"; injection date {injection.date()} differs from series date {scan.date()}, times of day used"
        if not 0 <= elapsed_s < _ONE_DAY_S:
            return _stored_scale(units, f"injection time {injection} is not within a day before the series "
                                        f"start {scan}")
        decayed_dose = dose_bq * 2.0 ** (-elapsed_s / half_life_s)
        how = (f"dose decayed over {elapsed_s:.0f} s from injection to series start (half-life {half_life_s:g} s)"
               + note)
    else:
        return _stored_scale(units, f"DecayCorrection is {decay_correction or 'missing'}, not START or ADMIN")
    factor = weight_kg * 1000.0 / decayed_dose
    return PetScale(factor, "SUVbw (g/ml)", True,
                    f"SUVbw = Bq/ml x {weight_kg:g} kg / {decayed_dose:.4g} Bq; {how}")


def scale_attributes(scale: PetScale) -> Dict[str, str]:
    """Node attributes that carry ``scale`` with a PET volume (read back by :func:`scale_from_attributes`)."""
    return {_FACTOR: repr(float(scale.factor)), _UNITS: scale.units, _IS_SUV: str(int(scale.is_suv)),
            _EXPLANATION: scale.explanation}


def scale_from_attributes(attributes: Mapping[str, Optional[str]]) -> Optional[PetScale]:
    """The scale stored by :func:`scale_attributes`, or None when the volume carries none."""
    factor = attributes.get(_FACTOR)
    if not factor:
        return None
    try:
        value = float(factor)
    except ValueError:
        return None
    return PetScale(value, attributes.get(_UNITS) or "stored units", attributes.get(_IS_SUV) == "1",
                    attributes.get(_EXPLANATION) or "")


def scale_attributes_of_file(path: Any) -> Dict[str, str]:
    """:func:`scale_attributes` of the PET image file at ``path`` (header only).

    A header that cannot be read gives stored units with the reason, so a
    volume that loaded is never refused for its SUV information.
    """
    import pydicom  # imported here: this module's functions otherwise take datasets

    try:
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as error:
        return scale_attributes(PetScale(1.0, "stored units", False,
                                         f"stored units: the header of {path} could not be read ({error})"))
    return scale_attributes(suv_bw_scale(dataset))
