"""SUVbw from real PET headers (mirp's copies of TCIA Soft-tissue-Sarcoma PETs), checked by hand."""
from __future__ import annotations

import copy
from pathlib import Path

import pydicom
import pytest

from SarcomaLungLiverBrowserLib.formats.suv import scale_attributes, scale_from_attributes, suv_bw_scale


def pet_header(external_data: Path, patient: str) -> pydicom.Dataset:
    folder = external_data / "oncoray__mirp" / "test" / "data" / "sts_images" / patient / "PET" / "dicom" / "image"
    first = sorted(folder.glob("*.dcm"))[0]
    return pydicom.dcmread(first, stop_before_pixels=True)


def test_gml_pet_is_already_suvbw(external_data):
    header = pet_header(external_data, "STS_001")
    assert header.Units == "GML"
    scale = suv_bw_scale(header)
    assert scale.is_suv and scale.factor == 1.0 and scale.units == "SUVbw (g/ml)"


def test_bqml_decay_corrected_to_series_start_matches_hand_computation(external_data):
    header = copy.deepcopy(pet_header(external_data, "STS_001"))
    header.Units, header.DecayCorrection = "BQML", "START"
    # By hand from the header: 71.0 kg; 3.88777472e8 Bq injected at 10:35:00; half-life 6588 s;
    # series at 11:20:11, i.e. 45 min 11 s = 2711 s after injection.
    decayed_dose = 3.88777472e8 * 0.5 ** (2711 / 6588)
    expected = 71.0 * 1000 / decayed_dose  # g / Bq
    scale = suv_bw_scale(header)
    assert scale.is_suv
    assert scale.factor == pytest.approx(expected, rel=1e-9)
    assert scale.factor == pytest.approx(2.4290e-4, rel=1e-3)  # the same, worked out on paper
    # A voxel of 10 kBq/ml in a 71 kg patient at this dose is an SUVbw of about 2.43.
    assert 10_000 * scale.factor == pytest.approx(2.429, abs=0.01)


def test_shifted_injection_date_falls_back_to_times_of_day(external_data):
    header = copy.deepcopy(pet_header(external_data, "STS_002"))
    header.Units, header.DecayCorrection = "BQML", "START"
    # The real header's injection date (20060129) is a day after its SeriesDate (20060128):
    # de-identification shifted the dates apart, the times of day still hold.
    assert header.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime.startswith("20060129")
    assert header.SeriesDate == "20060128"
    # 13:51:00 -> 14:57:59 is 4019 s; 99 kg; 433344096 Bq.
    expected = 99.0 * 1000 / (433344096 * 0.5 ** (4019 / 6588))
    scale = suv_bw_scale(header)
    assert scale.factor == pytest.approx(expected, rel=1e-9)
    assert "times of day used" in scale.explanation


def test_admin_decay_correction_uses_the_injected_dose(external_data):
    header = copy.deepcopy(pet_header(external_data, "STS_003"))
    header.Units = "BQML"
    assert header.DecayCorrection == "ADMIN"
    assert suv_bw_scale(header).factor == pytest.approx(80.0 * 1000 / 359884960, rel=1e-9)


@pytest.mark.parametrize("change, reason", [
    ({"Units": "CNTS"}, "Units is CNTS"),
    ({"PatientWeight": None}, "PatientWeight"),
    ({"CorrectedImage": ["ATTN"]}, "lacks DECY"),
    ({"DecayCorrection": "NONE"}, "DecayCorrection is NONE"),
    ({"SeriesTime": "090000"}, "not within a day before"),
])
def test_headers_that_do_not_allow_suv_keep_stored_units_and_say_why(external_data, change, reason):
    header = copy.deepcopy(pet_header(external_data, "STS_001"))
    header.Units, header.DecayCorrection = "BQML", "START"
    for keyword, value in change.items():
        if value is None:
            delattr(header, keyword)
        else:
            setattr(header, keyword, value)
    if "SeriesTime" in change:
        header.AcquisitionTime = change["SeriesTime"]
    scale = suv_bw_scale(header)
    assert not scale.is_suv and scale.factor == 1.0
    assert reason in scale.explanation
    assert scale.explanation.startswith("stored units")


def test_scale_round_trips_through_node_attributes(external_data):
    header = copy.deepcopy(pet_header(external_data, "STS_001"))
    header.Units, header.DecayCorrection = "BQML", "START"
    scale = suv_bw_scale(header)
    assert scale_from_attributes(scale_attributes(scale)) == scale
    assert scale_from_attributes({}) is None
