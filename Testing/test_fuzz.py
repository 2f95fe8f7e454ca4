"""Property-based fuzzing of the readers that parse bytes from downloads.

Each reader either returns a result or raises :class:`DataError` naming the
input; nothing else may escape. The raw DICOM header reader must agree with
pydicom on every value it returns. CI runs a bounded, derandomised budget;
``SLLB_FUZZ_EXAMPLES=5000`` runs a longer campaign (see README, "Fuzzing").
"""
from __future__ import annotations

import gzip
import io
import os
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from SarcomaLungLiverBrowserLib.formats import dicom_series, fast_header
from SarcomaLungLiverBrowserLib.formats.dicom_seg import decode_seg, read_seg_header
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats.nifti import read_nifti
from SarcomaLungLiverBrowserLib.formats.voc_xml import parse_voc_bytes

pytestmark = pytest.mark.filterwarnings("ignore")

EXAMPLES = int(os.environ.get("SLLB_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 200, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------------------- seeds
@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, object]:
    """Real files of the generated samples: a CT slice, a SEG with its CT, a NIfTI header, a VOC file."""
    from SarcomaLungLiverBrowserLib.samples import crlm, ispy1, lung_pet_ct_dx

    parent = tmp_path_factory.mktemp("fuzz_seeds")
    crlm_root = crlm.generate(parent)
    scan = dicom_series.scan_folder(crlm_root)
    ct = sorted((i for i in scan.instances if i.modality == "CT" and "CRLM-CT-1001" in str(i.path)),
                key=lambda i: i.image_position[2])
    seg = next(i for i in scan.instances if i.modality == "SEG" and "CRLM-CT-1001" in str(i.path))
    lung_root = lung_pet_ct_dx.generate(parent)
    ispy_root = ispy1.generate(parent)
    nifti = sorted(ispy_root.rglob("masks_stv_manual/*.nii.gz"))[0]
    return {
        "ct_bytes": ct[len(ct) // 2].path.read_bytes(),
        "ct_instances": ct,
        "seg_bytes": seg.path.read_bytes(),
        "nifti_bytes": gzip.decompress(nifti.read_bytes()),
        "voc_bytes": sorted(lung_root.rglob("Annotation/*/*.xml"))[0].read_bytes(),
        "folder": parent,
    }


@st.composite
def mutated(draw: st.DrawFn, data: bytes, protect: int = 0, region: int = 0) -> bytes:
    """``data`` with bit flips, a truncation, inserted garbage or a deleted run (``region``: bytes to focus on)."""
    end = min(len(data), region) if region else len(data)
    buffer = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "byte"]))
        if len(buffer) <= protect + 1:
            break
        position = draw(st.integers(protect, max(protect, min(end, len(buffer)) - 1)))
        if kind == "flip":
            buffer[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            buffer[position] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del buffer[position:]
        elif kind == "insert":
            buffer[position:position] = draw(st.binary(min_size=1, max_size=64))
        else:
            del buffer[position:position + draw(st.integers(1, 64))]
    return bytes(buffer)


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------- XML
@FUZZ
@given(data=st.data())
def test_voc_parser_never_crashes_on_mutated_files(seeds, data):  # type: ignore[no-untyped-def]
    blob = data.draw(mutated(seeds["voc_bytes"]))
    try:
        annotation = parse_voc_bytes(blob, "fuzzed.xml")
    except DataError as error:
        assert "fuzzed.xml" in str(error)
        return
    for voc_object in annotation.objects:
        assert all(np.isfinite(voc_object.box))


_XML_PIECES = st.sampled_from([
    "<annotation>", "</annotation>", "<object>", "</object>", "<bndbox>", "</bndbox>", "<xmin>1</xmin>",
    "<ymin>2</ymin>", "<xmax>3e9</xmax>", "<ymax>-4</ymax>", "<name>A</name>", "&amp;", "&lol;", "<!--x-->",
    "<!DOCTYPE a [<!ENTITY lol \"lol\">]>", "<!DOCTYPE a SYSTEM \"http://x.invalid/a.dtd\">", "<![CDATA[x]]>",
    "<?pi x?>", "nan", "inf", "\x00", "\ufeff", "<size><width>9</width></size>",
])


@FUZZ
@given(pieces=st.lists(_XML_PIECES, max_size=30), encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_voc_parser_never_crashes_on_assembled_markup(pieces, encoding):  # type: ignore[no-untyped-def]
    text = "".join(pieces)
    try:
        blob = text.encode(encoding)
    except UnicodeEncodeError:
        return
    try:
        parse_voc_bytes(blob, "assembled.xml")
    except DataError as error:
        assert "assembled.xml" in str(error)


# ---------------------------------------------------------------------------------------------- DICOM headers
def _pydicom_values(blob: bytes) -> Dict[str, object]:
    dataset = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True, force=True)
    values: Dict[str, object] = {}
    for keyword in fast_header.WANTED_TAGS.values():
        element = dataset.file_meta.get(keyword) if keyword == "TransferSyntaxUID" else dataset.get(keyword)
        if element is not None:
            values[keyword] = element
    return values


def _agrees(raw: Dict[str, object], reference: Dict[str, object]) -> List[str]:
    """Keywords whose raw value differs from pydicom's (text compared as pydicom shows it)."""
    differences = []
    for keyword, value in raw.items():
        if value == "" and reference.get(keyword) in (None, ""):
            continue  # an empty element: pydicom shows None for empty numbers
        if keyword not in reference:
            differences.append(keyword)
            continue
        expected = reference[keyword]
        if isinstance(value, int):
            try:
                if int(expected) != value:  # type: ignore[call-overload]
                    differences.append(keyword)
            except (TypeError, ValueError):
                differences.append(keyword)
        else:
            shown = "\\".join(str(v) for v in expected) if isinstance(expected, pydicom.multival.MultiValue) \
                else str(expected)
            if keyword in ("PatientName",):
                continue  # person names are re-formatted by pydicom
            numbers = [part.strip("\0 ") for part in str(value).split("\\")]
            expected_parts = [part.strip("\0 ") for part in shown.split("\\")]
            try:
                same = np.allclose([float(p) for p in numbers], [float(p) for p in expected_parts], equal_nan=True)
            except (ValueError, OverflowError):
                same = numbers == expected_parts
            if not same:
                differences.append(keyword)
    return differences


@FUZZ
@given(data=st.data())
def test_raw_header_reader_agrees_with_pydicom_or_declines(seeds, data):  # type: ignore[no-untyped-def]
    original = seeds["ct_bytes"]
    header_end = original.rfind(b"\xe0\x7f\x10\x00")
    blob = data.draw(mutated(original, protect=0, region=header_end))
    try:
        raw = fast_header.read_raw_header(blob[:dicom_series.HEADER_PREFIX_BYTES],
                                          len(blob) <= dicom_series.HEADER_PREFIX_BYTES)
    except Exception as error:  # noqa: BLE001 - the reader must never raise
        pytest.fail(f"read_raw_header raised {type(error).__name__}: {error}")
    if raw is None:
        return
    try:
        reference = _pydicom_values(blob)
    except Exception:  # noqa: BLE001 - pydicom refuses bytes the raw reader accepted: values cannot be compared
        return
    differences = _agrees(raw, reference)
    assert not differences, "raw reader disagrees with pydicom: " + "; ".join(
        f"{keyword}: raw {raw[keyword]!r}, pydicom {reference.get(keyword)!r}" for keyword in differences)


@FUZZ
@given(data=st.data())
def test_read_header_returns_or_raises_data_error(seeds, data, tmp_path_factory):  # type: ignore[no-untyped-def]
    original = seeds["ct_bytes"]
    blob = data.draw(mutated(original, region=original.rfind(b"\xe0\x7f\x10\x00") + 16))
    path = _write(tmp_path_factory.mktemp("header"), "slice.dcm", blob)
    try:
        header = dicom_series.read_header(path)
    except DataError as error:
        assert "slice.dcm" in str(error)
        return
    assert header.path == path
    for value in (header.image_position, header.image_orientation, header.pixel_spacing):
        assert value is None or all(np.isfinite(value))


@FUZZ
@given(data=st.data())
def test_series_with_one_mutated_slice_stacks_or_reports_it(seeds, data, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Stacking a series in which one file is damaged: a volume of the rest, or a DataError; never a crash."""
    instances = list(seeds["ct_instances"])
    folder = tmp_path_factory.mktemp("series")
    victim = len(instances) // 2
    blob = data.draw(mutated(instances[victim].path.read_bytes()))
    damaged = _write(folder, "damaged.dcm", blob)
    try:
        header = dicom_series.read_header(damaged)
    except DataError:
        return
    candidates = instances[:victim] + [header] + instances[victim + 1:]
    candidates = [c for c in candidates if c.series_instance_uid == instances[0].series_instance_uid]
    kept, left_out = dicom_series.split_stackable(candidates)
    try:
        volume = dicom_series.read_series(kept) if kept else None
    except DataError as error:
        assert str(error)
        return
    if volume is not None:
        # A slice left out keeps its grid position, empty (instances[k] is None there).
        assert volume.voxels.shape[0] == len(volume.instances)
        assert len(volume.present_instances) <= len(candidates)
        assert all(error.path for error in left_out)


@FUZZ
@given(data=st.data())
def test_seg_header_reader_returns_or_raises_data_error(seeds, data, tmp_path_factory):  # type: ignore[no-untyped-def]
    original = seeds["seg_bytes"]
    blob = data.draw(mutated(original, region=original.rfind(b"\xe0\x7f\x10\x00") + 16))
    path = _write(tmp_path_factory.mktemp("seg"), "seg.dcm", blob)
    try:
        read_seg_header(path)
    except DataError as error:
        assert "seg.dcm" in str(error)


@settings(max_examples=max(10, EXAMPLES // 4), deadline=None, derandomize=EXAMPLES <= 200, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_seg_decoding_returns_or_raises_data_error(seeds, data, tmp_path_factory):  # type: ignore[no-untyped-def]
    original = seeds["seg_bytes"]
    blob = data.draw(mutated(original, region=original.rfind(b"\xe0\x7f\x10\x00") + 16))
    path = _write(tmp_path_factory.mktemp("segdecode"), "seg.dcm", blob)
    reference = dicom_series.read_series(seeds["ct_instances"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            decode_seg(path, reference, "CRLM-CT-1001")
        except DataError as error:
            assert "seg.dcm" in str(error)


# ---------------------------------------------------------------------------------------------- NIfTI
@FUZZ
@given(data=st.data(), compress=st.booleans())
def test_nifti_reader_returns_or_raises_data_error(seeds, data, compress, tmp_path_factory):  # type: ignore[no-untyped-def]
    original = seeds["nifti_bytes"]
    blob = data.draw(mutated(original, region=352))  # the 348-byte header and the extension flag
    name = "mask.nii.gz" if compress else "mask.nii"
    path = _write(tmp_path_factory.mktemp("nifti"), name, gzip.compress(blob, mtime=0) if compress else blob)
    try:
        volume = read_nifti(path)
    except DataError as error:
        assert name in str(error)
        return
    assert volume.voxels.ndim == 3
    assert np.all(np.isfinite(volume.ijk_to_ras))


# ---------------------------------------------------------------------------------------------- round two (issue 20)
# Bounded work: any size a header claims is either present in the file or refused with a DataError
# naming it, before an allocation proportional to the claim.
@settings(max_examples=max(10, EXAMPLES // 4), deadline=None, derandomize=EXAMPLES <= 200, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(frames=st.integers(1, 2 ** 31 - 1), rows=st.integers(1, 65535), columns=st.integers(1, 65535))
def test_seg_frame_claims_are_present_or_refused(seeds, frames, rows, columns, tmp_path_factory):  # type: ignore[no-untyped-def]
    from SarcomaLungLiverBrowserLib.formats.limits import check_seg_frames

    dataset = pydicom.dcmread(io.BytesIO(seeds["seg_bytes"]))
    dataset.NumberOfFrames, dataset.Rows, dataset.Columns = frames, rows, columns
    try:
        check_seg_frames(dataset, "claims.dcm")
    except DataError as error:
        assert "claims.dcm" in str(error)
        return
    # Accepted: the pixel data really holds every claimed bit, and the frame groups match.
    assert len(dataset.PixelData) * 8 >= frames * rows * columns
    assert len(dataset.PerFrameFunctionalGroupsSequence) == frames


@FUZZ
@given(dims=st.lists(st.integers(1, 32767), min_size=3, max_size=4), compress=st.booleans())
def test_nifti_dimension_claims_are_present_or_refused(seeds, dims, compress, tmp_path_factory):  # type: ignore[no-untyped-def]
    import struct

    blob = bytearray(seeds["nifti_bytes"])
    blob[40:56] = struct.pack("<8h", len(dims), *dims, *([1] * (7 - len(dims))))
    name = "claims.nii.gz" if compress else "claims.nii"
    path = _write(tmp_path_factory.mktemp("niftidims"), name,
                  gzip.compress(bytes(blob), mtime=0) if compress else bytes(blob))
    try:
        volume = read_nifti(path, volume_index=0 if len(dims) == 4 else None)
    except DataError as error:
        assert name in str(error)
        return
    assert volume.voxels.size == int(np.prod(dims[:3]))


@FUZZ
@given(declared=st.integers(0, 2 ** 40), compressed=st.integers(1, 2 ** 24))
def test_spreadsheet_member_claims_are_bounded_or_refused(declared, compressed, tmp_path_factory):  # type: ignore[no-untyped-def]
    import zipfile

    from SarcomaLungLiverBrowserLib.formats.limits import check_spreadsheet_archive, current_limits

    path = tmp_path_factory.mktemp("xlsx") / "claims.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("xl/worksheets/sheet1.xml", b"<worksheet/>")
    # Rewrite the declared sizes in the central directory, as a hostile archive would.
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    data[central + 20:central + 28] = struct_pack_sizes(min(compressed, 2 ** 32 - 1), min(declared, 2 ** 32 - 1))
    path.write_bytes(bytes(data))
    try:
        check_spreadsheet_archive(path)
    except DataError as error:
        assert "claims.xlsx" in str(error)
        return
    limits = current_limits()
    assert min(declared, 2 ** 32 - 1) <= limits.max_spreadsheet_bytes


def struct_pack_sizes(compressed: int, uncompressed: int) -> bytes:
    import struct

    return struct.pack("<II", compressed, uncompressed)


# Names: whatever text the data holds, the scene gets a bounded name without control characters and
# the disk a bounded file name that stays in its folder; distinct long names stay distinct.
@FUZZ
@given(text=st.text(min_size=0, max_size=600))
def test_names_from_data_are_sanitised_and_bounded(text, tmp_path_factory):  # type: ignore[no-untyped-def]
    from SarcomaLungLiverBrowserLib.formats.output_paths import (
        MAX_COMPONENT_BYTES, bounded_file_name, sanitise_file_name)
    from SarcomaLungLiverBrowserLib.scene.builder import MAX_NODE_NAME_LENGTH, sanitise_node_name

    node_name = sanitise_node_name(text)
    assert node_name and len(node_name) <= MAX_NODE_NAME_LENGTH
    assert not any(ord(character) < 32 or 127 <= ord(character) < 160 for character in node_name)
    assert sanitise_node_name(node_name) == node_name
    file_name = sanitise_file_name(text)
    assert file_name and "/" not in file_name and "\x00" not in file_name
    assert len(file_name.encode("utf-8", "surrogatepass")) <= MAX_COMPONENT_BYTES
    longer = bounded_file_name(text + "x" * 300)
    assert len(longer.encode("utf-8", "surrogatepass")) <= MAX_COMPONENT_BYTES
    assert longer != bounded_file_name(text + "x" * 301)


# ---------------------------------------------------------------------------------------------- regressions
# Inputs the fuzzers found, kept as fixed examples so that they run on every CI build.
def _replace_first(data: bytes, old: bytes, new: bytes, start: int = 132) -> bytes:
    index = data.index(old, start)
    return data[:index] + new + data[index + len(old):]


def test_raw_reader_declines_an_unknown_vr(seeds):  # type: ignore[no-untyped-def]
    blob = _replace_first(seeds["ct_bytes"], b"\x10\x00\x30\x00DA", b"\x10\x00\x30\x00dA")
    assert fast_header.read_raw_header(blob[:dicom_series.HEADER_PREFIX_BYTES], False) is None


def test_raw_reader_declines_a_number_that_swallowed_the_next_elements(seeds):  # type: ignore[no-untyped-def]
    data = seeds["ct_bytes"]
    index = data.index(b"\x20\x00\x11\x00IS", 132)
    length = int.from_bytes(data[index + 6:index + 8], "little")
    blob = data[:index + 6] + (length + 40).to_bytes(2, "little") + data[index + 8:]
    assert fast_header.read_raw_header(blob[:dicom_series.HEADER_PREFIX_BYTES], False) is None


def test_read_header_turns_an_unknown_vr_into_a_data_error(seeds, tmp_path):  # type: ignore[no-untyped-def]
    blob = _replace_first(seeds["ct_bytes"], b"\x28\x00\x11\x00US", b"\x28\x00\x11\x00U\x00")
    path = _write(tmp_path, "unknown_vr.dcm", blob)
    try:
        dicom_series.read_header(path)
    except DataError as error:
        assert "unknown_vr.dcm" in str(error)


def test_absurd_bits_stored_leaves_the_slice_out(seeds):  # type: ignore[no-untyped-def]
    import dataclasses

    instances = list(seeds["ct_instances"])
    instances[3] = dataclasses.replace(instances[3], bits_stored=65535)
    kept, left_out = dicom_series.split_stackable(instances)
    assert len(kept) == len(instances) - 1
    assert [Path(error.path) for error in left_out] == [instances[3].path]
    assert "BitsStored 65535" in str(left_out[0])
    volume = dicom_series.read_series(kept)
    assert len(volume.present_instances) == len(kept) and volume.empty_slices == [3]  # kept empty at its position
