"""Bounded work before allocation: files whose headers claim huge sizes fail fast, naming the file.

Each bomb is read in a spawned interpreter under ``RLIMIT_AS`` (address
space) and ``RLIMIT_CPU`` limits far below what the claim would need, so a
reader that allocated or looped in proportion to the claim would be killed
(MemoryError, SIGXCPU) instead of printing the expected message. Time is not
measured; the CPU limit only bounds a runaway loop.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats.limits import (
    Limits, check_deflated_dicom, check_nifti_data_size, check_seg_frames, check_spreadsheet_archive,
    current_limits, use_limits)

REPOSITORY = Path(__file__).resolve().parents[1]
DCMQI = Path("QIICR__dcmqi") / "data" / "segmentations"

#: Address space for the child: enough for Python, numpy, pydicom, highdicom, pandas; far below every bomb.
ADDRESS_SPACE = 1536 << 20
#: CPU seconds for the child: imports plus a fast refusal; a loop over 5,000,000 frames would not finish.
CPU_SECONDS = 60


def _limit_resources() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def _run_limited(code: str) -> dict:
    """Run ``code`` under the limits; it must print one JSON line: {"error": message} or {"result": ...}."""
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "SarcomaLungLiverBrowser"),
                       OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    wrapper = textwrap.dedent("""
        import json, sys
        from SarcomaLungLiverBrowserLib.errors import DataError
        try:
        {body}
        except DataError as error:
            print(json.dumps({{"error": str(error)}}))
        """).format(body=textwrap.indent(textwrap.dedent(code), "    "))
    completed = subprocess.run([sys.executable, "-c", wrapper], env=environment, capture_output=True, text=True,
                               preexec_fn=_limit_resources, timeout=600)
    assert completed.returncode == 0, (f"the reader died under the limits (code {completed.returncode}): "
                                       f"{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- SEG frames
def _seg_claiming_frames(source: Path, target: Path, frames: int) -> Path:
    dataset = pydicom.dcmread(str(source))
    dataset.NumberOfFrames = frames
    dataset.save_as(str(target))
    return target


def test_a_real_seg_claiming_five_million_frames_fails_fast_naming_the_file(external_data: Path,
                                                                             tmp_path: Path) -> None:
    bomb = _seg_claiming_frames(external_data / DCMQI / "liver.dcm", tmp_path / "liver_5M.dcm", 5_000_000)
    assert bomb.stat().st_size < 200_000
    outcome = _run_limited(f"""
        from pathlib import Path
        from SarcomaLungLiverBrowserLib.formats.dicom_seg import decode_seg
        from SarcomaLungLiverBrowserLib.formats.dicom_series import read_series, scan_folder
        reference = read_series(scan_folder(Path({str(external_data / DCMQI / 'ct-3slice')!r})).instances)
        decode_seg(Path({str(bomb)!r}), reference)
        print(json.dumps({{"result": "decoded"}}))
        """)
    assert "liver_5M.dcm" in outcome["error"] and "5,000,000 frames" in outcome["error"]


def test_seg_frame_claims_are_checked_against_the_pixel_bytes(external_data: Path) -> None:
    dataset = pydicom.dcmread(str(external_data / DCMQI / "liver.dcm"))
    check_seg_frames(dataset, "liver.dcm")  # the real file passes
    dataset.NumberOfFrames = 4  # one frame more than its bits and functional groups hold
    with pytest.raises(DataError, match="per-frame functional groups"):
        check_seg_frames(dataset, "liver.dcm")
    del dataset.PerFrameFunctionalGroupsSequence
    with pytest.raises(DataError, match=r"liver.dcm.*pixel data holds"):
        check_seg_frames(dataset, "liver.dcm")
    dataset.NumberOfFrames = 3
    with use_limits(Limits(max_frames=2)):
        with pytest.raises(DataError, match="cap of 2"):
            check_seg_frames(dataset, "liver.dcm")
    with use_limits(Limits(max_decoded_bytes=1000)):
        with pytest.raises(DataError, match="SLLB_MAX_DECODED_BYTES"):
            check_seg_frames(dataset, "liver.dcm")


def test_default_caps_are_the_ones_the_readme_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLLB_MAX_FRAMES", "SLLB_MAX_DECODED_BYTES", "SLLB_MAX_EXPANSION_RATIO", "SLLB_MAX_SPREADSHEET_BYTES"):
        monkeypatch.delenv(name, raising=False)
    assert current_limits() == Limits(max_frames=200_000, max_decoded_bytes=8 << 30, max_expansion_ratio=200.0,
                                      max_spreadsheet_bytes=512 << 20)


def test_caps_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLLB_MAX_FRAMES", "12")
    monkeypatch.setenv("SLLB_MAX_EXPANSION_RATIO", "not a number")
    assert current_limits().max_frames == 12
    assert current_limits().max_expansion_ratio == Limits().max_expansion_ratio


# ---------------------------------------------------------------------------------------------- deflated DICOM
def _deflated_bomb(source: Path, target: Path, inflated_bytes: int) -> Path:
    """A real CT slice as deflated explicit VR little endian, padded with a private element of zeros."""
    dataset = pydicom.dcmread(str(source))
    dataset.add_new(0x00F10010, "LO", "SLLB bomb")
    dataset.add_new(0x00F11000, "OB", b"\x00" * 8)  # replaced by a long run of zeros below
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    # Re-deflate the data set with a huge zero element spliced in, streaming so the test itself stays small.
    meta_end = _meta_end(data)
    plain = zlib.decompress(data[meta_end:], -zlib.MAX_WBITS)
    marker = b"\xf1\x00\x00\x10OB\x00\x00" + (8).to_bytes(4, "little") + b"\x00" * 8
    start = plain.index(marker)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(target, "wb") as stream:
        stream.write(data[:meta_end])
        stream.write(compressor.compress(plain[:start] + b"\xf1\x00\x00\x10OB\x00\x00"
                                         + inflated_bytes.to_bytes(4, "little")))
        remaining = inflated_bytes
        while remaining:
            block = min(remaining, 1 << 24)
            stream.write(compressor.compress(b"\x00" * block))
            remaining -= block
        stream.write(compressor.compress(plain[start + len(marker):]))
        stream.write(compressor.flush())
    return target


def _meta_end(data: bytes) -> int:
    group_length = int.from_bytes(data[140:144], "little")
    return 144 + group_length


def test_a_deflated_dicom_inflating_to_gigabytes_fails_fast_naming_the_file(external_data: Path,
                                                                            tmp_path: Path) -> None:
    ct = external_data / "ImagingDataCommons__highdicom" / "data" / "test_files" / "ct_image.dcm"
    bomb = _deflated_bomb(ct, tmp_path / "deflate_bomb.dcm", 3 << 30)  # 3 GiB of zeros
    assert bomb.stat().st_size < 8 << 20
    outcome = _run_limited(f"""
        from pathlib import Path
        from SarcomaLungLiverBrowserLib.formats.dicom_series import read_header
        read_header(Path({str(bomb)!r}))
        print(json.dumps({{"result": "read"}}))
        """)
    assert "deflate_bomb.dcm" in outcome["error"] and "inflate" in outcome["error"]


def test_a_small_deflated_file_is_read_and_plain_files_are_not_inflated(external_data: Path,
                                                                        tmp_path: Path) -> None:
    from SarcomaLungLiverBrowserLib.formats.dicom_series import read_header

    ct = external_data / "ImagingDataCommons__highdicom" / "data" / "test_files" / "ct_image.dcm"
    small = _deflated_bomb(ct, tmp_path / "small.dcm", 1 << 16)
    check_deflated_dicom(small)
    assert read_header(small).rows == pydicom.dcmread(str(ct)).Rows
    check_deflated_dicom(ct)  # not deflated: accepted untouched
    with use_limits(Limits(max_expansion_ratio=2)):
        with pytest.raises(DataError, match="small.dcm"):
            check_deflated_dicom(small)


# ---------------------------------------------------------------------------------------------- xlsx
def _xlsx_bomb(target: Path, member_bytes: int) -> Path:
    """A real workbook written by pandas, with a worksheet member of ``member_bytes`` of XML whitespace."""
    buffer = io.BytesIO()
    pd.DataFrame({"Patient-ID": ["CRLM-CT-1001"], "age": [61]}).to_excel(buffer, index=False)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                with archive.open(item.filename, "w", force_zip64=True) as stream:
                    stream.write(data[:data.index(b"<sheetData")])
                    block = b" " * (1 << 24)
                    for _ in range(member_bytes // len(block)):
                        stream.write(block)
                    stream.write(data[data.index(b"<sheetData"):])
            else:
                archive.writestr(item, data)
    return target


def test_an_xlsx_zip_bomb_fails_fast_naming_the_file(tmp_path: Path) -> None:
    bomb = _xlsx_bomb(tmp_path / "clinical_bomb.xlsx", 2 << 30)
    assert bomb.stat().st_size < 4 << 20
    outcome = _run_limited(f"""
        from pathlib import Path
        from SarcomaLungLiverBrowserLib.formats.tables import read_table
        read_table(Path({str(bomb)!r}))
        print(json.dumps({{"result": "read"}}))
        """)
    assert "clinical_bomb.xlsx" in outcome["error"] and "zip bomb" in outcome["error"]


def test_a_real_workbook_passes_the_archive_check(tmp_path: Path) -> None:
    from SarcomaLungLiverBrowserLib.formats.tables import read_table

    path = tmp_path / "clinical.xlsx"
    pd.DataFrame({"Patient-ID": [f"CRLM-CT-{n}" for n in range(1000, 1200)], "age": range(200)}).to_excel(
        path, index=False)
    check_spreadsheet_archive(path)
    assert len(read_table(path)) == 200
    with use_limits(Limits(max_spreadsheet_bytes=1000)):
        with pytest.raises(DataError, match="clinical.xlsx"):
            read_table(path)


# ---------------------------------------------------------------------------------------------- NIfTI
def _nifti_claiming(target: Path, shape: tuple) -> Path:
    image = nib.Nifti1Image(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4))
    image.to_filename(str(target))
    with nib.openers.ImageOpener(str(target)) as stream:
        raw = nib.Nifti1Header.from_fileobj(stream)
    raw.set_data_shape(shape)
    with nib.openers.ImageOpener(str(target), "wb") as stream:
        raw.write_to(stream)
        stream.write(b"\x00" * 16)  # 16 bytes of voxels, whatever the header claims
    return target


def test_a_tiny_nifti_gz_claiming_billions_of_voxels_fails_before_allocation(tmp_path: Path) -> None:
    bomb = _nifti_claiming(tmp_path / "ftv_bomb.nii.gz", (2048, 1024, 1024))  # 2^31 voxels, 4 GiB of int16
    assert bomb.stat().st_size < 100  # the README quotes "a 76-byte .nii.gz"
    outcome = _run_limited(f"""
        from SarcomaLungLiverBrowserLib.formats.nifti import read_nifti
        read_nifti({str(bomb)!r})
        print(json.dumps({{"result": "read"}}))
        """)
    assert "ftv_bomb.nii.gz" in outcome["error"] and "cannot hold" in outcome["error"]


def test_nifti_claims_against_file_size_and_cap(tmp_path: Path) -> None:
    plain = _nifti_claiming(tmp_path / "short.nii", (64, 64, 64))
    with pytest.raises(DataError, match=r"short.nii.*truncated"):
        check_nifti_data_size(plain, 352, 64 ** 3 * 2)
    with use_limits(Limits(max_decoded_bytes=100)):
        with pytest.raises(DataError, match="SLLB_MAX_DECODED_BYTES"):
            check_nifti_data_size(plain, 352, 101)
    check_nifti_data_size(plain, 352, 16)  # what is really there passes
