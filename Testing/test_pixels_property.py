"""Voxel values equal pydicom's, for every BitsStored, signedness and rescale (property test).

The raw fast path reads uncompressed pixel data straight from the file; this
checks it against pydicom's ``pixel_array`` + ``apply_rescale`` over
BitsAllocated 8/16, BitsStored 8..16, PixelRepresentation 0/1, garbage in the
bits above BitsStored, integer and non-integer slopes and intercepts, and
both little-endian transfer syntaxes. int16 volumes must be exact; float32
volumes must equal pydicom's float64 result rounded once to float32. A volume
is int16 whenever the rescale is integral and every real value fits.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pydicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.pixels import apply_rescale
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from SarcomaLungLiverBrowserLib.formats.dicom_series import read_header, read_series

ROWS, COLUMNS = 3, 7
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

INTEGER_RESCALES = st.tuples(st.sampled_from(["1", "2", "-1", "1.0"]),
                             st.sampled_from(["0", "-1024", "-1024.0", "1000", "-32768", "-8192"]))
REAL_RESCALES = st.tuples(
    st.one_of(st.sampled_from(["0.5", "7.351088662e-05", "1.234567", "0.000244140625"]),
              st.floats(min_value=-50, max_value=50, allow_nan=False).filter(lambda v: abs(v) > 1e-6)
              .map(lambda v: format(v, ".9g"))),
    st.one_of(st.sampled_from(["0", "-1024", "0.5", "-3.25"]),
              st.floats(min_value=-5000, max_value=5000, allow_nan=False).map(lambda v: format(v, ".9g"))),
)


@st.composite
def pixel_files(draw: st.DrawFn) -> dict:
    bits_allocated = draw(st.sampled_from([8, 16]))
    bits_stored = draw(st.integers(min_value=8, max_value=bits_allocated))
    signed = draw(st.integers(min_value=0, max_value=1))
    # Any bit pattern: the bits above BitsStored may hold garbage that must be ignored.
    raw = draw(st.lists(st.integers(min_value=0, max_value=2 ** bits_allocated - 1),
                        min_size=ROWS * COLUMNS, max_size=ROWS * COLUMNS))
    slope, intercept = draw(st.one_of(INTEGER_RESCALES, REAL_RESCALES))
    explicit = draw(st.booleans())
    return dict(bits_allocated=bits_allocated, bits_stored=bits_stored, signed=signed, raw=raw,
                slope=slope, intercept=intercept, explicit=explicit)


def _write(folder: Path, spec: dict) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if spec["explicit"] else ImplicitVRLittleEndian
    dataset = FileDataset(str(folder / "slice.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.SOPClassUID = CT_IMAGE_STORAGE
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.FrameOfReferenceUID = generate_uid()
    dataset.PatientID, dataset.Modality = "PIXELS", "CT"
    dataset.ImagePositionPatient = [0, 0, 0]
    dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    dataset.PixelSpacing = [1, 1]
    dataset.Rows, dataset.Columns = ROWS, COLUMNS
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored = spec["bits_allocated"], spec["bits_stored"]
    dataset.HighBit, dataset.PixelRepresentation = spec["bits_stored"] - 1, spec["signed"]
    dataset.RescaleSlope, dataset.RescaleIntercept = spec["slope"], spec["intercept"]
    dtype = "<u2" if spec["bits_allocated"] == 16 else "u1"
    dataset.PixelData = np.array(spec["raw"], dtype=dtype).tobytes()
    if spec["bits_allocated"] == 8 and len(dataset.PixelData) % 2:
        dataset.PixelData += b"\0"
    dataset["PixelData"].VR = "OW" if spec["bits_allocated"] == 16 else "OB"
    path = folder / "slice.dcm"
    dataset.save_as(str(path), enforce_file_format=True)
    return path


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pixel_files())
def test_voxels_equal_pydicom(spec: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _write(Path(folder), spec)
        dataset = pydicom.dcmread(str(path))
        expected = np.asarray(apply_rescale(dataset.pixel_array, dataset), dtype=np.float64)
        volume = read_series([read_header(path)])
    actual = volume.voxels[0]
    integral = float(spec["slope"]) == int(float(spec["slope"])) and \
        float(spec["intercept"]) == int(float(spec["intercept"]))
    if integral and expected.min() >= -32768 and expected.max() <= 32767:
        assert actual.dtype == np.int16, spec
    if actual.dtype == np.int16:
        assert np.array_equal(actual.astype(np.float64), expected), (spec, actual, expected)
    else:
        assert actual.dtype == np.float32
        assert np.array_equal(actual, expected.astype(np.float32)), (spec, actual, expected)


def test_twelve_bit_signed_minus_one_is_minus_one(tmp_path: Path) -> None:
    """The reported case: 0x0FFF in a 12-bit signed image is -1 (it came out as 4095)."""
    path = _write(tmp_path, dict(bits_allocated=16, bits_stored=12, signed=1, raw=[0x0FFF] * (ROWS * COLUMNS),
                                 slope="1", intercept="0", explicit=True))
    assert np.all(read_series([read_header(path)]).voxels == -1)


def test_real_ge_style_ct_fits_int16(external_data: Path) -> None:
    """A real 16-bit signed CT with intercept -1024 (mirp's CRLM-CT-1004, GE): its values fit int16,
    so it is int16 (it was float32 from the header's theoretical range), equal to pydicom's values."""
    from SarcomaLungLiverBrowserLib.formats.dicom_series import scan_folder

    folder = external_data / "oncoray__mirp" / "test" / "data" / "ct_images_seg" / "CRLM-CT-1004" / "image"
    volume = read_series(scan_folder(folder).instances)
    assert volume.voxels.dtype == np.int16
    for k in (0, volume.voxels.shape[0] // 2, volume.voxels.shape[0] - 1):
        dataset = pydicom.dcmread(str(volume.instances[k].path))
        assert dataset.BitsStored == 16 and dataset.PixelRepresentation == 1 and float(dataset.RescaleIntercept) == -1024
        assert np.array_equal(volume.voxels[k], apply_rescale(dataset.pixel_array, dataset))
