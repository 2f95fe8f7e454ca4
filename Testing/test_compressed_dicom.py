"""Compressed and otherwise encoded DICOM: the header fast path agrees with pydicom, pixels equal pydicom's.

Real files only: pydicom's own test files (shipped in its wheel: JPEG, JPEG-LS, JPEG 2000, RLE, deflated,
big endian, implicit), the shared real CT/MR/PET series, and those series re-encoded with pydicom's own
encoders (pyjpegls, pylibjpeg-openjpeg, pylibjpeg-rle), so that every transfer syntax is tried on real
scanner headers and real pixel values.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_rescale
from pydicom.uid import (
    UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000,
    JPEG2000Lossless, JPEGLSLossless, JPEGLSNearLossless, RLELossless,
)

from conftest import external_data_root, require_shared_data
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats import dicom_series, fast_header, threaded_jpeg2000
from SarcomaLungLiverBrowserLib.formats.dicom_series import (
    HEADER_PREFIX_BYTES, InstanceHeader, header_from_dataset, read_header, read_series, scan_folder,
)

#: Real series in the shared folder: a 512x512 CT (explicit VR, integer rescale), a PET (implicit VR,
#: fractional rescale: float32 voxels) and an MR (UTF-8 character set).
REAL_SERIES = {
    "CT": Path("oncoray__mirp/test/data/ct_images_seg/CRLM-CT-1004/image"),
    "PET": Path("oncoray__mirp/test/data/sts_images/STS_001/PET/dicom/image"),
    "MR": Path("oncoray__mirp/test/data/sts_images/STS_001/MR_T1/dicom/image"),
}
SLICES_PER_SERIES = 4

#: Lossless encodings: the decoded volume must equal the original's exactly.
LOSSLESS = {"JPEG-LS lossless": JPEGLSLossless, "JPEG 2000 lossless": JPEG2000Lossless, "RLE lossless": RLELossless,
            "implicit VR": ImplicitVRLittleEndian, "deflated": DeflatedExplicitVRLittleEndian}
#: Lossy encodings: the volume must equal what pydicom decodes, value for value.
LOSSY = {"JPEG-LS near-lossless": JPEGLSNearLossless, "JPEG 2000 lossy": JPEG2000}

#: Syntaxes whose headers the raw reader must take itself rather than hand to pydicom.
FAST_PATH_SYNTAXES = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless, JPEGLSNearLossless,
                      JPEG2000Lossless, JPEG2000, RLELossless}


def _shared_series(kind: str) -> List[Path]:
    root = external_data_root()
    folder = root / REAL_SERIES[kind]
    if not folder.is_dir():
        require_shared_data(f"real {kind} series not found at {folder}")
    paths = sorted(path for path in folder.iterdir() if path.is_file())
    if len(paths) < SLICES_PER_SERIES:
        pytest.fail(f"fewer than {SLICES_PER_SERIES} files in {folder}")
    return paths[:SLICES_PER_SERIES]


def _encode(source: Path, target: Path, syntax: UID) -> None:
    """Write ``source`` again in ``syntax`` with pydicom (its own encoders for compressed syntaxes)."""
    dataset = pydicom.dcmread(str(source))
    if syntax.is_compressed:
        options: Dict[str, object] = {"generate_instance_uid": False}  # keep the UIDs, to compare with the original
        if syntax == JPEGLSNearLossless:
            options["jls_error"] = 3
        elif syntax == JPEG2000:
            options["j2k_cr"] = [20]
        dataset.compress(syntax, **options)
    else:
        dataset.file_meta.TransferSyntaxUID = syntax
    dataset.save_as(str(target), enforce_file_format=True)


@pytest.fixture(scope="module")
def encoded_series(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Dict[str, List[Path]]]:
    """kind -> encoding name -> re-encoded copies of the first slices of a real series (plus the originals)."""
    series: Dict[str, Dict[str, List[Path]]] = {}
    for kind in REAL_SERIES:
        sources = _shared_series(kind)
        series[kind] = {"original": sources}
        for name, syntax in {**LOSSLESS, **LOSSY}.items():
            folder = tmp_path_factory.mktemp(f"{kind}-{name.replace(' ', '-')}")
            paths = []
            for number, source in enumerate(sources):
                target = folder / f"{number:03d}.dcm"
                _encode(source, target, syntax)
                paths.append(target)
            series[kind][name] = paths
    return series


def _pydicom_header(path: Path) -> Optional[InstanceHeader]:
    """What pydicom alone makes of the file (None if pydicom refuses it or it lacks the UIDs indexing needs)."""
    try:
        return header_from_dataset(pydicom.dcmread(str(path), stop_before_pixels=True), path)
    except Exception:  # noqa: BLE001 - pydicom raises many types for files it refuses
        return None


def _raw_header(path: Path) -> Optional[Dict[str, object]]:
    with open(path, "rb") as stream:
        prefix = stream.read(HEADER_PREFIX_BYTES)
        whole_file = len(prefix) < HEADER_PREFIX_BYTES or not stream.read(1)
    return fast_header.read_raw_header(prefix, whole_file)


def _same_header(ours: InstanceHeader, reference: InstanceHeader) -> List[str]:
    """Fields that differ (NaN equal to NaN: a damaged rescale value reads as NaN on both paths)."""
    differences = []
    for field in dataclasses.fields(InstanceHeader):
        mine, theirs = getattr(ours, field.name), getattr(reference, field.name)
        if isinstance(mine, float) and isinstance(theirs, float) and math.isnan(mine) and math.isnan(theirs):
            continue
        if mine != theirs:
            differences.append(f"{field.name}: ours {mine!r}, pydicom {theirs!r}")
    return differences


def _check_header_agrees(path: Path) -> None:
    reference = _pydicom_header(path)
    try:
        ours = read_header(path)
    except DataError:
        assert reference is None, f"{path.name}: read_header refused a file pydicom reads"
        return
    assert reference is not None, f"{path.name}: read_header accepted a file pydicom's header lacks UIDs for"
    differences = _same_header(ours, reference)
    assert not differences, f"{path.name}: " + "; ".join(differences)


def _pydicom_test_files() -> List[Path]:
    folder = Path(get_testdata_file("CT_small.dcm")).parent
    return sorted(path for path in folder.rglob("*.dcm"))


@pytest.mark.parametrize("path", _pydicom_test_files(), ids=lambda path: path.name)
def test_header_agrees_with_pydicom_on_pydicoms_test_files(path: Path) -> None:
    """Every transfer syntax pydicom ships a test file for: same InstanceHeader as pydicom's, or both refuse."""
    _check_header_agrees(path)


def test_the_raw_reader_takes_encapsulated_and_implicit_files_itself() -> None:
    """The fast path is really used for compressed files, not silently left to pydicom."""
    taken = {}
    for path in _pydicom_test_files():
        try:
            syntax = pydicom.dcmread(str(path), stop_before_pixels=True).file_meta.TransferSyntaxUID
        except Exception:  # noqa: BLE001 - files without a file meta group
            continue
        if _raw_header(path) is not None:
            taken.setdefault(str(syntax), []).append(path.name)
    for syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70",
                   "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
                   "1.2.840.10008.1.2.5"):
        assert taken.get(syntax), f"no {UID(syntax).name} file was read by the raw reader"
    assert "1.2.840.10008.1.2.2" not in taken, "a big-endian file was read by the little-endian reader"
    assert "1.2.840.10008.1.2.1.99" not in taken, "a deflated file was read without inflating it"


@pytest.mark.parametrize("kind", sorted(REAL_SERIES))
@pytest.mark.parametrize("encoding", sorted(LOSSLESS) + sorted(LOSSY))
def test_header_agrees_with_pydicom_on_reencoded_real_series(encoded_series, kind: str, encoding: str) -> None:
    paths = encoded_series[kind][encoding]
    for path in paths:
        _check_header_agrees(path)
    syntax = UID(pydicom.dcmread(str(paths[0]), stop_before_pixels=True).file_meta.TransferSyntaxUID)
    if syntax in FAST_PATH_SYNTAXES:
        assert _raw_header(paths[0]) is not None, f"{encoding} {kind} was not read by the raw reader"
    # Apart from the transfer syntax, the header is the original's.
    original = read_header(encoded_series[kind]["original"][0])
    encoded = read_header(paths[0])
    assert dataclasses.replace(encoded, path=original.path, transfer_syntax_uid=original.transfer_syntax_uid) \
        == original


def _pydicom_volume(paths: List[Path], order: List[Path]) -> np.ndarray:
    """pydicom's rescaled values of each file, stacked in ``order``."""
    slices = {}
    for path in paths:
        dataset = pydicom.dcmread(str(path))
        slices[path.name] = apply_rescale(dataset.pixel_array, dataset)
    return np.stack([slices[path.name] for path in order])


@pytest.mark.parametrize("kind", sorted(REAL_SERIES))
@pytest.mark.parametrize("encoding", sorted(LOSSLESS) + sorted(LOSSY))
def test_series_values_equal_pydicoms_pixel_array(encoded_series, kind: str, encoding: str) -> None:
    paths = encoded_series[kind][encoding]
    volume = read_series(scan_folder(paths[0].parent, cache=None).instances)
    order = [instance.path for instance in volume.instances]
    expected = _pydicom_volume(paths, order)
    if volume.voxels.dtype == np.float32:
        expected = expected.astype(np.float32)  # float64 rounded once, as read_series documents
    assert volume.voxels.shape == expected.shape
    assert np.array_equal(volume.voxels, expected), f"{encoding} {kind}: values differ from pydicom's"
    if encoding in LOSSLESS:
        original = read_series(scan_folder(encoded_series[kind]["original"][0].parent, cache=None).instances)
        assert _same_values_by_uid(volume, original), f"{encoding} {kind}: lossless copy differs from the original"


def _same_values_by_uid(volume, original) -> bool:  # type: ignore[no-untyped-def]
    """The lossless copy's slice of each SOPInstanceUID equals the original's slice of that UID."""
    by_uid = {instance.sop_instance_uid: k for k, instance in enumerate(original.instances)}
    for k, instance in enumerate(volume.instances):
        if not np.array_equal(volume.voxels[k], original.voxels[by_uid[instance.sop_instance_uid]]):
            return False
    return True


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
                                  "JPEG2000.dcm", "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                                  "MR_small_expb.dcm", "JPGExtended.dcm", "JPEG-lossy.dcm"])
def test_pydicom_compressed_files_read_as_pydicom_decodes_them(name: str) -> None:
    """pydicom's own compressed files (made by other encoders: GDCM, DCMTK) decode to its pixel_array."""
    path = Path(get_testdata_file(name))
    header = read_header(path)
    dataset = pydicom.dcmread(str(path))
    try:
        stored = dataset.pixel_array
    except Exception:  # noqa: BLE001 - no installed plugin decodes it (12-bit JPEG extended): ours must say so
        with pytest.raises(DataError, match=name):
            dicom_series._stored_pixels(header)
        return
    expected = apply_rescale(stored, dataset)
    if header.plane is None:
        # No geometry to stack on: compare the decoded slice itself.
        assert np.array_equal(dicom_series._stored_pixels(header), stored)
        return
    voxels = read_series([header]).voxels[0]
    assert np.array_equal(voxels, expected.astype(voxels.dtype)) and np.allclose(voxels, expected)


@pytest.mark.parametrize("encoding", ["JPEG-LS lossless", "JPEG 2000 lossless", "RLE lossless"])
def test_truncated_compressed_pixel_data_is_an_error_naming_the_file(encoded_series, encoding: str,
                                                                     tmp_path: Path) -> None:
    source = encoded_series["CT"][encoding][0]
    data = source.read_bytes()
    pixel_data = data.rfind(b"\xe0\x7f\x10\x00")
    damaged = tmp_path / "damaged.dcm"
    damaged.write_bytes(data[:pixel_data + (len(data) - pixel_data) // 2])  # cut inside the only fragment
    header = read_header(damaged)  # the header before Pixel Data is intact
    assert header.sop_instance_uid == read_header(source).sop_instance_uid
    with pytest.raises(DataError) as raised:
        read_series([header])
    assert "damaged.dcm" in str(raised.value)


def test_a_truncated_slice_inside_a_jpeg2000_series_is_an_error_naming_it(encoded_series, tmp_path: Path) -> None:
    """A damaged slice in the middle of a series stops the load and names that file, whichever plugin decodes."""
    for source in encoded_series["CT"]["JPEG 2000 lossless"]:
        (tmp_path / source.name).write_bytes(source.read_bytes())
    victim = sorted(tmp_path.iterdir())[2]
    data = victim.read_bytes()
    victim.write_bytes(data[:len(data) - 5000])
    instances = scan_folder(tmp_path, cache=None).instances
    with pytest.raises(DataError) as raised:
        read_series(instances)
    assert victim.name in str(raised.value)


def _installed_jpeg2000_plugins() -> List[str]:
    """The installed JPEG 2000 plugins in the order pydicom tries them (``available_plugins`` is sorted by name)."""
    return list(pydicom.pixels.get_decoder(JPEG2000Lossless)._available)


@pytest.mark.parametrize("encoding", ["JPEG 2000 lossless", "JPEG 2000 lossy"])
@pytest.mark.parametrize("kind", sorted(REAL_SERIES))
def test_jpeg2000_series_values_are_the_same_with_every_installed_plugin(encoded_series, monkeypatch,
                                                                         kind: str, encoding: str) -> None:
    """imagecodecs decodes JPEG 2000 for read_series (the fast path); GDCM, pylibjpeg-openjpeg and Pillow, pydicom's
    own plugins, must give the very same volume, lossy streams included."""
    threaded_jpeg2000.add_to_pydicom()
    plugins = _installed_jpeg2000_plugins()
    assert {"gdcm", "pylibjpeg", threaded_jpeg2000.PLUGIN} <= set(plugins), \
        f"the test environment lacks a JPEG 2000 decoder: {plugins}"
    instances = scan_folder(encoded_series[kind][encoding][0].parent, cache=None).instances
    volumes = {}
    try:
        for plugin in plugins:
            monkeypatch.setitem(dicom_series._FASTEST_PLUGINS, instances[0].transfer_syntax_uid, plugin)
            dicom_series._plugin.cache_clear()
            volumes[plugin] = read_series(instances).voxels
    finally:
        dicom_series._plugin.cache_clear()  # no pinned plugin outlives the test
    for plugin, voxels in volumes.items():
        assert np.array_equal(voxels, volumes["gdcm"]), f"{encoding} {kind}: {plugin} differs from gdcm"


def test_imagecodecs_decodes_jpeg2000_for_read_series_and_pydicoms_own_order_is_left_alone() -> None:
    """The benchmark's JPEG 2000 figure depends on this choice: imagecodecs' openjpeg, several threads per frame,
    with or without worker processes beside it. Other code in the interpreter still gets pydicom's order, GDCM
    first; the added plugin comes last."""
    assert threaded_jpeg2000.add_to_pydicom(), "imagecodecs, a module requirement, is not installed"
    for syntax in (JPEG2000Lossless, JPEG2000):
        assert dicom_series._fastest_plugin(str(syntax)) == threaded_jpeg2000.PLUGIN
        assert dicom_series._plugin(str(syntax), True) == threaded_jpeg2000.PLUGIN
        plugins = list(pydicom.pixels.get_decoder(syntax)._available)
        assert plugins[0] == "gdcm" and plugins[-1] == threaded_jpeg2000.PLUGIN, plugins


def test_without_imagecodecs_jpeg2000_goes_to_gdcm_alone_and_to_pylibjpeg_beside_worker_processes(
        encoded_series, monkeypatch) -> None:
    monkeypatch.setattr(threaded_jpeg2000, "_jpeg2k_decode", lambda: None)
    dicom_series._plugin.cache_clear()
    try:
        assert not threaded_jpeg2000.add_to_pydicom()
        assert dicom_series._fastest_plugin(str(JPEG2000Lossless)) == ""  # pydicom's order: GDCM's threads first
        assert dicom_series._plugin(str(JPEG2000Lossless), True) == "pylibjpeg"
        started = _count_shared_decodes(monkeypatch)
        _read_with_helpers(encoded_series["CT"]["JPEG 2000 lossless"], monkeypatch)
        assert started == [1]  # worker processes, as for the other compressions
    finally:
        dicom_series._plugin.cache_clear()


def test_the_threaded_plugin_is_not_added_to_a_pydicom_whose_plugin_interface_it_does_not_speak(
        monkeypatch, caplog) -> None:
    import logging

    monkeypatch.setattr(pydicom, "__version__", "3.1.0")
    with caplog.at_level(logging.INFO, logger=threaded_jpeg2000.__name__):
        assert not threaded_jpeg2000.add_to_pydicom()
    assert "pydicom 3.1.0" in caplog.text and "one thread each" in caplog.text


def _jpeg2000_test_files() -> List[Path]:
    """pydicom's own JPEG 2000 files (other encoders: signed, an unsigned codestream under a signed Pixel
    Representation, colour through the reversible colour transform, 13 to 16 bits, lossy and lossless)."""
    files = []
    for path in _pydicom_test_files():
        try:
            syntax = pydicom.dcmread(str(path), stop_before_pixels=True).file_meta.TransferSyntaxUID
        except Exception:  # noqa: BLE001 - not every test file has a file meta
            continue
        if syntax in threaded_jpeg2000.DECODER_DEPENDENCIES:
            files.append(path)
    return files


def _decoded_or_none(path: Path, plugin: str, **options: object) -> Optional[np.ndarray]:
    try:
        return pydicom.pixels.pixel_array(str(path), decoding_plugin=plugin, **options)
    except Exception:  # noqa: BLE001 - the plugin refuses the file
        return None


@pytest.mark.parametrize("path", _jpeg2000_test_files(), ids=lambda path: path.name)
def test_the_threaded_plugin_decodes_pydicoms_jpeg2000_files_as_pydicoms_own_plugins_do(path: Path) -> None:
    """Whatever pylibjpeg-openjpeg (the same openjpeg, one thread) decodes, the threaded plugin decodes to the same
    values, as GDCM does; a grey file it refuses (a damaged codestream GDCM still reads) reaches read_series'
    slices through pydicom's own plugins, with their values."""
    assert threaded_jpeg2000.add_to_pydicom()
    ours = _decoded_or_none(path, threaded_jpeg2000.PLUGIN, **{threaded_jpeg2000.THREADS_OPTION: 3})
    by_openjpeg = _decoded_or_none(path, "pylibjpeg")
    by_gdcm = _decoded_or_none(path, "gdcm")
    if by_openjpeg is not None:
        assert ours is not None, f"{path.name}: refused, where pylibjpeg-openjpeg decodes it"
        assert ours.dtype == by_openjpeg.dtype and np.array_equal(ours, by_openjpeg)
    if ours is not None and by_gdcm is not None:
        assert np.array_equal(ours, by_gdcm)
    reference = ours if ours is not None else by_gdcm
    header = read_header(path)
    if reference is None or reference.ndim != 2:  # no decoder reads it, or colour: refused, naming the file
        with pytest.raises(DataError, match=path.name):
            dicom_series._stored_pixels(header)
        return
    assert np.array_equal(dicom_series._stored_pixels(header), reference)


def test_the_threaded_plugin_tells_pydicom_what_it_returns() -> None:
    """pydicom's plugin contract: a colour frame through the reversible colour transform comes out as RGB, colour
    by pixel, in bytes sized by the codestream's precision, and the runner is told so."""
    from pydicom.encaps import generate_frames
    from pydicom.pixels.decoders.base import DecodeRunner

    dataset = pydicom.dcmread(get_testdata_file("examples_jpeg2k.dcm"))
    assert dataset.PhotometricInterpretation == "YBR_RCT"
    runner = DecodeRunner(dataset.file_meta.TransferSyntaxUID)
    runner.set_source(dataset)
    runner.set_option("planar_configuration", 1)  # whatever the data set said, the codec's output is by pixel
    frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    decoded = threaded_jpeg2000.decode_frame(frame, runner)
    assert runner.photometric_interpretation == "RGB" and runner.planar_configuration == 0
    assert runner.bits_allocated == 8 and len(decoded) == dataset.Rows * dataset.Columns * 3
    assert isinstance(decoded, bytearray)  # writable: pydicom corrects values in place without a copy


def test_pydicoms_jpeg2000_test_files_cover_signedness_colour_and_lossy_streams() -> None:
    """What the test above covers: a codestream whose signedness pydicom corrects, colour, lossy and lossless."""
    names = {path.name for path in _jpeg2000_test_files()}
    assert {"J2K_pixelrep_mismatch.dcm", "GDCMJ2K_TextGBR.dcm", "MR_small_jp2klossless.dcm",
            "JPEG2000.dcm", "693_J2KI.dcm"} <= names, sorted(names)


def _count_shared_decodes(monkeypatch) -> List[int]:  # type: ignore[no-untyped-def]
    """A list that counts the series read with worker processes from now on (one item, growing)."""
    started = [0]
    real_init = dicom_series._SharedDecode.__init__

    def counting_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        started[0] += 1
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(dicom_series._SharedDecode, "__init__", counting_init)
    return started


def _read_with_helpers(paths: List[Path], monkeypatch):  # type: ignore[no-untyped-def]
    """The series of ``paths`` read where its length and SLLB_DECODE_WORKERS=2 ask for worker processes."""
    monkeypatch.setenv("SLLB_DECODE_WORKERS", "2")
    monkeypatch.setattr(dicom_series, "PARALLEL_DECODE_MIN_SLICES", 1)
    monkeypatch.setattr(dicom_series, "DECODE_CHUNK_SLICES", 1)
    return read_series(scan_folder(paths[0].parent, cache=None).instances)


def test_a_jpeg2000_series_is_decoded_by_threads_side_by_side_without_worker_processes(encoded_series,
                                                                                      monkeypatch) -> None:
    """Frames go to the codec one thread each, two of them at the same moment (that the codec then runs them side
    by side, the GIL released, is what the benchmark's thread column shows); no worker process is started; the
    volume equals the one read on this thread."""
    import threading

    real = threaded_jpeg2000._jpeg2k_decode()
    calls: List[tuple] = []
    lock = threading.Lock()
    meeting = threading.Barrier(2, timeout=30)

    def recording(src: bytes, numthreads: int):  # type: ignore[no-untyped-def]
        with lock:
            calls.append((numthreads, threading.current_thread().name))
            position = len(calls)
        if position <= 2:
            meeting.wait()  # the first two frames must reach the codec together, or the barrier breaks
        return real(src, numthreads=numthreads)

    monkeypatch.setattr(threaded_jpeg2000, "_jpeg2k_decode", lambda: recording)
    started = _count_shared_decodes(monkeypatch)
    paths = encoded_series["PET"]["JPEG 2000 lossless"]  # fractional rescale: float32 voxels
    volume = _read_with_helpers(paths, monkeypatch)
    assert started == [0] and not meeting.broken
    assert len(calls) == len(paths) and {numthreads for numthreads, _ in calls} == {1}
    assert all(name.startswith(dicom_series.DECODE_THREAD_PREFIX) for _, name in calls)
    assert not [thread for thread in threading.enumerate() if thread.name.startswith(dicom_series.DECODE_THREAD_PREFIX)]
    monkeypatch.setenv("SLLB_DECODE_WORKERS", "0")  # one thread: this one
    calls.clear()
    meeting = threading.Barrier(1)
    serial = read_series(scan_folder(paths[0].parent, cache=None).instances)
    assert calls == [(1, threading.current_thread().name)] * len(paths)
    assert volume.voxels.dtype == np.float32 and np.array_equal(volume.voxels, serial.voxels)


def test_a_cancelled_jpeg2000_read_leaves_no_decoding_thread(encoded_series, monkeypatch) -> None:
    import threading

    from SarcomaLungLiverBrowserLib.errors import LoadCancelled

    monkeypatch.setenv("SLLB_DECODE_WORKERS", "3")
    instances = scan_folder(encoded_series["CT"]["JPEG 2000 lossless"][0].parent, cache=None).instances
    with pytest.raises(LoadCancelled):
        read_series(instances, progress=lambda message, fraction: True)  # the user cancels at the first report
    assert not [thread for thread in threading.enumerate() if thread.name.startswith(dicom_series.DECODE_THREAD_PREFIX)]


def test_a_jpeg2000_frame_read_alone_is_decoded_on_several_threads(encoded_series, monkeypatch) -> None:
    real = threaded_jpeg2000._jpeg2k_decode()
    asked: List[int] = []

    def recording(src: bytes, numthreads: int):  # type: ignore[no-untyped-def]
        asked.append(numthreads)
        return real(src, numthreads=numthreads)

    monkeypatch.setattr(threaded_jpeg2000, "_jpeg2k_decode", lambda: recording)
    monkeypatch.setenv("SLLB_DECODE_WORKERS", "2")
    header = read_header(encoded_series["CT"]["JPEG 2000 lossless"][0])
    dicom_series._stored_pixels(header)
    assert asked == [3]


def test_threads_decoding_a_series_hold_at_most_two_files_each(monkeypatch) -> None:
    """Three threads: no file is started more than five files ahead of the slice last given out (six in hand),
    from the first slice to the last; slices come out in order."""
    import threading

    ahead: List[int] = []
    given_out = [0]
    lock = threading.Lock()

    def decode(instance, beside_workers: bool = False):  # type: ignore[no-untyped-def]
        with lock:
            ahead.append(instance - given_out[0])
        return np.full((2, 2), instance)

    monkeypatch.setattr(dicom_series, "_stored_pixels", decode)
    for index, stored in dicom_series._decoded_on_threads(list(range(40)), 3):
        assert index == given_out[0] and int(stored[0, 0]) == index
        given_out[0] += 1
    assert given_out == [40] and len(ahead) == 40
    assert max(ahead) <= 5, max(ahead)


def test_two_damaged_slices_decoded_by_threads_are_named_in_slice_order(encoded_series, tmp_path: Path,
                                                                        monkeypatch) -> None:
    """The later damaged slice fails first on its thread; the error still names the first in slice order, and
    no decoding thread outlives the failed read."""
    import threading
    import time

    for source in encoded_series["CT"]["JPEG 2000 lossless"]:
        (tmp_path / source.name).write_bytes(source.read_bytes())
    kept = _kept_slices(sorted(tmp_path.iterdir()))
    for victim in (kept[1].path, kept[3].path):
        victim.write_bytes(victim.read_bytes()[:-5000])
    real = dicom_series._stored_pixels
    failed: List[Path] = []

    def later_for_the_first(instance, beside_workers: bool = False):  # type: ignore[no-untyped-def]
        if instance.path == kept[1].path:
            time.sleep(0.5)  # the first damaged slice fails after the second
        try:
            return real(instance, beside_workers)
        except DataError:
            failed.append(instance.path)
            raise

    monkeypatch.setattr(dicom_series, "_stored_pixels", later_for_the_first)
    monkeypatch.setenv("SLLB_DECODE_WORKERS", "3")
    with pytest.raises(DataError) as raised:
        read_series(kept)
    assert failed == [kept[3].path, kept[1].path]
    assert kept[1].path.name in str(raised.value) and kept[3].path.name not in str(raised.value)
    assert not [thread for thread in threading.enumerate() if thread.name.startswith(dicom_series.DECODE_THREAD_PREFIX)]


def test_how_many_threads_decode_one_frame(monkeypatch) -> None:
    monkeypatch.delenv("SLLB_DECODE_WORKERS", raising=False)
    monkeypatch.setattr(dicom_series.os, "cpu_count", lambda: 8)
    assert dicom_series.frame_decode_threads() == dicom_series.MAX_DECODE_WORKERS + 1
    monkeypatch.setattr(dicom_series.os, "cpu_count", lambda: 2)
    assert dicom_series.frame_decode_threads() == 2
    monkeypatch.setattr(dicom_series.os, "cpu_count", lambda: None)  # unknown: one
    assert dicom_series.frame_decode_threads() == 1
    monkeypatch.setattr(dicom_series.os, "cpu_count", lambda: 8)
    monkeypatch.setenv("SLLB_DECODE_WORKERS", "0")
    assert dicom_series.frame_decode_threads() == 1
    monkeypatch.setenv("SLLB_DECODE_WORKERS", "5")  # N helpers asked for: N + 1 threads, whatever the cores
    assert dicom_series.frame_decode_threads() == 6
    monkeypatch.delenv("SLLB_DECODE_WORKERS")
    monkeypatch.setattr(dicom_series, "in_worker_process", lambda: True)  # a QA worker: one core per case
    assert dicom_series.frame_decode_threads() == 1


@pytest.mark.parametrize("helpers", ["0", "1"], ids=["one thread", "threads"])
def test_a_jpeg2000_frame_imagecodecs_refuses_is_decoded_by_pydicoms_own_plugins(encoded_series, monkeypatch,
                                                                                  caplog, helpers: str) -> None:
    """pydicom's own order gets the frame, on one thread or several: here only GDCM is left to read it."""
    import logging

    paths = encoded_series["CT"]["JPEG 2000 lossless"]
    expected = read_series(scan_folder(paths[0].parent, cache=None).instances).voxels

    def refusing(src: bytes, numthreads: int):  # type: ignore[no-untyped-def]
        raise RuntimeError("opj_decode failed")

    monkeypatch.setattr(threaded_jpeg2000, "_jpeg2k_decode", lambda: refusing)
    decoder = pydicom.pixels.get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {name: function for name, function in decoder._available.items()
                                                if name in ("gdcm", threaded_jpeg2000.PLUGIN)})
    monkeypatch.setenv("SLLB_DECODE_WORKERS", helpers)
    with caplog.at_level(logging.INFO, logger=dicom_series.__name__):
        volume = read_series(scan_folder(paths[0].parent, cache=None).instances)
    assert np.array_equal(volume.voxels, expected)
    refusals = [record.getMessage() for record in caplog.records if "imagecodecs refused" in record.getMessage()]
    assert len(refusals) == len(paths) and all("opj_decode failed" in message for message in refusals)
    assert sorted(message.split(":")[0] for message in refusals) == sorted(str(path) for path in paths)


# ----------------------------------------------------------------------------------- property: raw vs pydicom
_TEXT = st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\\\0"), max_size=20)
_DECIMAL = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e5, max_value=1e5).map(
    lambda value: f"{value:.6g}")


@settings(max_examples=60, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(syntax=st.sampled_from(sorted(FAST_PATH_SYNTAXES | {DeflatedExplicitVRLittleEndian})),
       description=_TEXT, patient_id=_TEXT, position=st.lists(_DECIMAL, min_size=3, max_size=3),
       spacing=st.lists(_DECIMAL, min_size=2, max_size=2), intercept=_DECIMAL,
       pad=st.sampled_from(["", " ", "  "]), private_items=st.integers(0, 3))
def test_raw_reader_and_pydicom_agree_on_generated_headers(tmp_path_factory, syntax, description, patient_id,
                                                           position, spacing, intercept, pad,
                                                           private_items) -> None:  # type: ignore[no-untyped-def]
    """Text with leading/trailing spaces, odd decimals, sequences before the wanted tags, every syntax."""
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    dataset.SeriesDescription = pad + description + pad
    dataset.PatientID = patient_id
    dataset.ImagePositionPatient = position
    dataset.PixelSpacing = spacing
    dataset.RescaleIntercept = intercept
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    dataset.ReferencedImageSequence = [item] * private_items
    path = tmp_path_factory.mktemp("generated") / "slice.dcm"
    _encode_dataset(dataset, path, UID(syntax))
    _check_header_agrees(path)


def _encode_dataset(dataset: pydicom.Dataset, target: Path, syntax: UID) -> None:
    if syntax.is_compressed:
        options: Dict[str, object] = {"jls_error": 2} if syntax == JPEGLSNearLossless else {}
        if syntax == JPEG2000:
            options["j2k_cr"] = [10]
        dataset.compress(syntax, **options)
    else:
        dataset.file_meta.TransferSyntaxUID = syntax
    dataset.save_as(str(target), enforce_file_format=True)


@pytest.mark.parametrize("encoding", ["JPEG-LS lossless", "RLE lossless"])
def test_a_compressed_slice_claiming_more_pixels_than_the_cap_is_refused_before_decoding(
        encoded_series, encoding: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compressed bytes cannot bound the decoded size, so the claim meets SLLB_MAX_DECODED_BYTES first."""
    source = encoded_series["CT"][encoding][0]
    dataset = pydicom.dcmread(str(source))
    dataset.Rows, dataset.Columns = 40000, 40000  # 3.2 GB of 16-bit pixels claimed by a file of kilobytes
    claimed = tmp_path / "claims_too_much.dcm"
    dataset.save_as(str(claimed))
    decoded: List[Path] = []
    monkeypatch.setattr(dicom_series, "_decoded_pixels", lambda instance: decoded.append(instance.path))
    monkeypatch.setenv("SLLB_MAX_DECODED_BYTES", str(1 << 30))
    with pytest.raises(DataError) as raised:
        read_series([read_header(claimed)])
    assert "claims_too_much.dcm" in str(raised.value) and "SLLB_MAX_DECODED_BYTES" in str(raised.value)
    assert decoded == []  # refused before any decoder ran


def test_a_series_whose_volume_exceeds_the_cap_is_refused_before_allocation(encoded_series,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    slices = [read_header(path) for path in encoded_series["CT"]["RLE lossless"]]
    assert len(slices) >= 2
    one_slice = int(slices[0].rows) * int(slices[0].columns) * 2
    monkeypatch.setenv("SLLB_MAX_DECODED_BYTES", str(one_slice * (len(slices) - 1)))  # each slice fits, not all
    with pytest.raises(DataError, match="a volume of .* SLLB_MAX_DECODED_BYTES"):
        read_series(slices)


# ----------------------------------------------------------------------------------- JPEG Lossless (process 14)
def _jpeg_lossless_series(target: Path) -> List[Path]:
    """The shared real CT slices re-encoded as JPEG Lossless SV1 by GDCM (pydicom has no encoder for it)."""
    import gdcm  # python-gdcm is a module requirement: the test environments must have it

    target.mkdir(parents=True)
    paths = []
    for source in _shared_series("CT"):
        reader = gdcm.ImageReader()
        reader.SetFileName(str(source))
        assert reader.Read(), f"GDCM cannot read {source}"
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        assert change.Change(), f"GDCM cannot encode {source} as JPEG Lossless"
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(target / source.name))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        assert writer.Write()
        paths.append(target / source.name)
    return paths


def test_jpeg_lossless_is_read_through_gdcm_without_the_gpl_decoder(tmp_path: Path, monkeypatch) -> None:
    """JPEG Lossless (older CT) decodes through python-gdcm (BSD), with pylibjpeg-libjpeg (GPL-3.0) absent."""
    _jpeg_lossless_series(tmp_path / "jpeg-lossless")
    instances = scan_folder(tmp_path / "jpeg-lossless", cache=None).instances
    assert {instance.transfer_syntax_uid for instance in instances} == {"1.2.840.10008.1.2.4.70"}
    decoder = pydicom.pixels.get_decoder(UID("1.2.840.10008.1.2.4.70"))
    assert "gdcm" in decoder._available, "python-gdcm, a module requirement, is not installed"
    monkeypatch.setattr(decoder, "_available", {"gdcm": decoder._available["gdcm"]})  # as without the GPL package
    volume = read_series(instances)
    original = read_series([read_header(path) for path in _shared_series("CT")])
    assert np.array_equal(volume.voxels, original.voxels)


def test_a_compression_no_installed_package_decodes_is_refused_naming_the_file_and_the_compression(
        tmp_path: Path, monkeypatch) -> None:
    paths = _jpeg_lossless_series(tmp_path / "jpeg-lossless")
    decoder = pydicom.pixels.get_decoder(UID("1.2.840.10008.1.2.4.70"))
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"gdcm": ("gdcm>=3.0.10",),
                                                  "pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-libjpeg>=2.1")})
    with pytest.raises(DataError) as raised:
        read_series(scan_folder(tmp_path / "jpeg-lossless", cache=None).instances)
    message = str(raised.value)
    assert str(paths[0].parent) in message and "JPEG Lossless" in message
    assert "no installed package decodes it" in message and "gdcm>=3.0.10" in message
    assert "pylibjpeg-libjpeg>=2.1" in message and "Resources/requirements.txt" in message


# ---------------------------------------------------------------------- decoding with worker processes
def _kept_slices(paths: List[Path]) -> List[InstanceHeader]:
    return dicom_series._ordered_unique(scan_folder(paths[0].parent, cache=None).instances)[0]


def _drain_with_workers_first(kept: List[InstanceHeader], monkeypatch) -> tuple:  # type: ignore[no-untyped-def]
    """Decode ``kept`` with one worker, chunks of one slice; the worker finishes everything queued before this
    thread takes its second slice, so the split between the two is known. Returns (decoder, slices)."""
    monkeypatch.setattr(dicom_series, "DECODE_CHUNK_SLICES", 1)
    decoder = dicom_series._SharedDecode(kept, 1)
    slices = decoder.slices()
    first = next(slices)  # this thread decodes slice 0; the worker starts on the others, last first
    for pending in list(decoder.queued.values()):
        pending.exception()  # waits until it is done
    return decoder, [first, *slices]


@pytest.mark.parametrize("encoding", ["JPEG-LS lossless", "JPEG 2000 lossless", "RLE lossless"])
def test_slices_a_worker_process_decoded_are_the_values_this_thread_decodes(encoded_series, monkeypatch,
                                                                            encoding: str) -> None:
    kept = _kept_slices(encoded_series["CT"][encoding])
    decoder, slices = _drain_with_workers_first(kept, monkeypatch)
    assert sorted(index for index, _ in slices) == list(range(len(kept)))  # every slice once
    assert decoder.worker_slices == len(kept) - 1  # all but this thread's first came from the worker
    assert decoder.processes and not any(process.is_alive() for process in decoder.processes)  # no worker outlives the read
    for index, stored in slices:
        assert np.array_equal(stored, dicom_series._stored_pixels(kept[index])), kept[index].path.name


def test_a_series_read_with_worker_processes_equals_the_series_read_on_one_thread(encoded_series,
                                                                                  monkeypatch) -> None:
    paths = encoded_series["PET"]["JPEG-LS lossless"]  # fractional rescale: float32 voxels
    monkeypatch.setenv("SLLB_DECODE_WORKERS", "0")
    serial = read_series(scan_folder(paths[0].parent, cache=None).instances)
    started = _count_shared_decodes(monkeypatch)
    parallel = _read_with_helpers(paths, monkeypatch)
    assert started == [1]
    assert parallel.voxels.dtype == serial.voxels.dtype == np.float32
    assert np.array_equal(parallel.voxels, serial.voxels)
    assert [i.path for i in parallel.instances] == [i.path for i in serial.instances]


def test_a_worker_killed_mid_series_leaves_its_slices_to_this_thread(encoded_series, monkeypatch) -> None:
    kept = _kept_slices(encoded_series["CT"]["JPEG 2000 lossless"])
    monkeypatch.setattr(dicom_series, "DECODE_CHUNK_SLICES", 1)
    decoder = dicom_series._SharedDecode(kept, 1)
    slices = decoder.slices()
    first = next(slices)
    decoder.queued[len(kept) - 1].result()  # the worker is up and has done the last slice: the next is in its hands
    for process in decoder.processes:
        process.kill()
    rest = list(slices)
    assert sorted(index for index, _ in [first, *rest]) == list(range(len(kept)))  # each once, none waited for
    for index, stored in [first, *rest]:
        assert np.array_equal(stored, dicom_series._stored_pixels(kept[index]))


def test_a_worker_killed_while_waiting_for_work_does_not_hang_the_end_of_the_read(encoded_series,
                                                                                monkeypatch) -> None:
    """A worker killed between tasks dies holding the task queue's lock: stopping the workers must not wait for
    that lock (multiprocessing's Pool.terminate() did, forever)."""
    import signal
    import time

    kept = _kept_slices(encoded_series["CT"]["JPEG 2000 lossless"])
    monkeypatch.setattr(dicom_series, "DECODE_CHUNK_SLICES", 1)
    decoder = dicom_series._SharedDecode(kept, 1)
    slices = decoder.slices()
    first = next(slices)
    for pending in list(decoder.queued.values()):
        pending.exception()  # waits until it is done: the worker has nothing left to do
    time.sleep(0.5)  # and is now blocked reading the task queue, holding its lock
    for process in decoder.processes:
        process.kill()

    def stuck(signum: int, frame: object) -> None:
        raise TimeoutError("the end of the read waited for a dead worker")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(60)
    try:
        rest = list(slices)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert sorted(index for index, _ in [first, *rest]) == list(range(len(kept)))
    assert not any(process.is_alive() for process in decoder.processes)


def test_workers_end_by_themselves_when_the_read_ends(encoded_series, monkeypatch) -> None:
    """None is killed: a worker killed while sending its result leaves half a message in the executor's pipe, and
    the executor's thread then waited for the rest forever (a benchmark read hung so)."""
    kept = _kept_slices(encoded_series["CT"]["JPEG 2000 lossless"])
    monkeypatch.setattr(dicom_series, "DECODE_CHUNK_SLICES", 1)
    decoder = dicom_series._SharedDecode(kept, 1)
    slices = list(decoder.slices())
    assert sorted(index for index, _ in slices) == list(range(len(kept)))
    assert decoder.processes and [process.exitcode for process in decoder.processes] == [0] * len(decoder.processes)


def test_a_worker_stuck_past_the_grace_period_is_killed_and_the_read_still_ends(encoded_series, tmp_path: Path,
                                                                                monkeypatch, caplog) -> None:
    """The last slice is a named pipe nobody writes to: the worker that takes it blocks reading it forever.
    The warning names the series and its folder."""
    import dataclasses
    import signal
    import time

    kept = _kept_slices(encoded_series["CT"]["JPEG 2000 lossless"])
    fifo = tmp_path / "never-written.dcm"
    os.mkfifo(fifo)
    kept = kept[:-1] + [dataclasses.replace(kept[-1], path=fifo)]
    monkeypatch.setattr(dicom_series, "DECODE_CHUNK_SLICES", 1)
    monkeypatch.setattr(dicom_series, "WORKER_GRACE_SECONDS", 1.0)
    decoder = dicom_series._SharedDecode(kept, 1)
    slices = decoder.slices()
    next(slices)  # the worker starts on the last chunk first: the pipe
    deadline = time.monotonic() + 60
    while True:  # opening the writing end without blocking succeeds once the worker has the pipe open to read
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert time.monotonic() < deadline, "the worker never opened the pipe"
            time.sleep(0.05)

    def stuck(signum: int, frame: object) -> None:
        raise TimeoutError("the end of the read waited for a stuck worker")

    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(60)
    try:
        slices.close()  # the read is cancelled: the worker is still blocked reading the pipe
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.close(writer)
    assert [process.exitcode for process in decoder.processes] == [-signal.SIGKILL]
    (warning,) = [record.getMessage() for record in caplog.records if "still busy" in record.getMessage()]
    assert kept[0].series_instance_uid in warning and str(kept[0].path.parent) in warning


def test_a_damaged_slice_decoded_by_a_worker_is_named_by_this_thread_in_slice_order(encoded_series, tmp_path: Path,
                                                                                    monkeypatch) -> None:
    """Two damaged slices, both handed to the worker: the error names the first in slice order, as one thread does."""
    for source in encoded_series["CT"]["JPEG 2000 lossless"]:
        (tmp_path / source.name).write_bytes(source.read_bytes())
    kept = _kept_slices(sorted(tmp_path.iterdir()))
    for victim in (kept[1].path, kept[3].path):
        data = victim.read_bytes()
        victim.write_bytes(data[:len(data) - 5000])
    with pytest.raises(DataError) as raised:
        _drain_with_workers_first(kept, monkeypatch)
    assert kept[1].path.name in str(raised.value) and kept[3].path.name not in str(raised.value)


def test_a_failed_read_stops_its_worker_processes(encoded_series, tmp_path: Path, monkeypatch) -> None:
    for source in encoded_series["CT"]["JPEG 2000 lossless"]:
        (tmp_path / source.name).write_bytes(source.read_bytes())
    kept = _kept_slices(sorted(tmp_path.iterdir()))
    kept[2].path.write_bytes(kept[2].path.read_bytes()[:-5000])
    monkeypatch.setattr(dicom_series, "DECODE_CHUNK_SLICES", 1)
    decoder = dicom_series._SharedDecode(kept, 1)
    with pytest.raises(DataError, match=kept[2].path.name):
        list(decoder.slices())
    assert decoder.processes and not any(process.is_alive() for process in decoder.processes)


def test_a_worker_skips_a_chunk_this_thread_took_and_decodes_under_the_callers_caps(encoded_series,
                                                                                    monkeypatch) -> None:
    """The worker functions, run here: a flagged chunk is left alone; the caps are the ones the caller passed
    (a deflated file over a stricter expansion cap fails in the worker, so the calling thread names it)."""
    import ctypes

    from SarcomaLungLiverBrowserLib.formats.limits import Limits

    kept = _kept_slices(encoded_series["CT"]["deflated"])
    taken = (ctypes.c_byte * 2)(0, 1)
    monkeypatch.setattr(dicom_series, "_worker_taken", None)
    monkeypatch.setattr(dicom_series, "_worker_limits", None)
    dicom_series._start_decode_worker(taken, Limits())
    frames = dicom_series._decode_in_worker(0, kept[:1])
    assert frames is not None and np.array_equal(frames[0], dicom_series._stored_pixels(kept[0]))
    assert dicom_series._decode_in_worker(1, kept[:1]) is None  # flagged: this thread has it
    dicom_series._start_decode_worker(taken, dataclasses.replace(Limits(), max_expansion_ratio=1))
    assert dicom_series._decode_in_worker(0, kept[:1]) is None


def test_a_decode_worker_count_that_is_not_a_number_is_named_and_ignored(monkeypatch, caplog) -> None:
    import logging

    monkeypatch.setenv("SLLB_DECODE_WORKERS", "two")
    with caplog.at_level(logging.WARNING):
        assert dicom_series.decode_workers(dicom_series.PARALLEL_DECODE_MIN_SLICES) == 0
    assert "SLLB_DECODE_WORKERS='two' is not a whole number" in caplog.text


def test_who_decodes_with_worker_processes(monkeypatch) -> None:
    monkeypatch.delenv("SLLB_DECODE_WORKERS", raising=False)
    monkeypatch.setattr(dicom_series.os, "cpu_count", lambda: 8)
    many = dicom_series.PARALLEL_DECODE_MIN_SLICES
    assert dicom_series.decode_workers(many) == dicom_series.MAX_DECODE_WORKERS
    assert dicom_series.decode_workers(many - 1) == 0  # a short series is not worth starting a process
    monkeypatch.setattr(dicom_series.os, "cpu_count", lambda: 1)
    assert dicom_series.decode_workers(many) == 0
    monkeypatch.setenv("SLLB_DECODE_WORKERS", "0")
    monkeypatch.setattr(dicom_series.os, "cpu_count", lambda: 8)
    assert dicom_series.decode_workers(many) == 0
    monkeypatch.setenv("SLLB_DECODE_WORKERS", "2")
    assert dicom_series.decode_workers(many) == 2
    monkeypatch.setattr(dicom_series, "in_worker_process", lambda: True)  # a QA worker starts no helpers
    assert dicom_series.decode_workers(many) == 0


def test_a_cancelled_read_stops_its_worker_processes(encoded_series, monkeypatch) -> None:
    from SarcomaLungLiverBrowserLib.errors import LoadCancelled

    decoders = []
    real_init = dicom_series._SharedDecode.__init__

    def remembering_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_init(self, *args, **kwargs)
        decoders.append(self)

    monkeypatch.setattr(dicom_series._SharedDecode, "__init__", remembering_init)
    monkeypatch.setenv("SLLB_DECODE_WORKERS", "1")
    monkeypatch.setattr(dicom_series, "PARALLEL_DECODE_MIN_SLICES", 1)
    monkeypatch.setattr(dicom_series, "DECODE_CHUNK_SLICES", 1)
    instances = scan_folder(encoded_series["CT"]["RLE lossless"][0].parent, cache=None).instances
    with pytest.raises(LoadCancelled):
        read_series(instances, progress=lambda message, fraction: True)  # the user cancels at the first report
    assert len(decoders) == 1 and decoders[0].pool is not None
    assert decoders[0].processes and not any(process.is_alive() for process in decoders[0].processes)
