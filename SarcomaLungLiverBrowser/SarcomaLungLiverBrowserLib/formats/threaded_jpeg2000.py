"""JPEG 2000 frames decoded on several threads: imagecodecs' openjpeg, added to pydicom as a decoding plugin.

Why a plugin of our own: the JPEG 2000 plugins pydicom ships decode a frame
on one core while holding the GIL (pylibjpeg-openjpeg, Pillow), or on
GDCM's threads inside a C++ call that also holds it, so neither a thread
pool nor more than one frame at a time helps; reading a series in parallel
then needs worker processes, each paying an interpreter start. imagecodecs
(a well-kept codec library, BSD) calls the same openjpeg with the GIL
released, and takes a thread count per frame: two threads decoding one
file each keep two cores busy (0.49 of the serial time over a 200-slice
CT), and one frame decoded on two threads takes 0.52-0.54 of its one-thread
time, with nothing to start (``benchmarks/bench_dicom_series.py``).

It is added with pydicom's own plugin interface
(:meth:`pydicom.pixels.decoders.base.Decoder.add_plugin`), so pydicom still
finds the frame, reads the codestream's precision and signedness, and
applies its own corrections (a codestream whose signedness disagrees with
Pixel Representation, colour spaces) to what the codec returns: only the
call to the codec is ours. The plugin's label is :data:`PLUGIN`; it is
added after pydicom's own plugins, so other code calling ``pixel_array`` in
the same interpreter (Slicer's DICOM modules) decodes as before: it reaches
this plugin only where every one of pydicom's refuses a frame.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Optional

import pydicom
import pydicom.pixels
from pydicom.uid import JPEG2000, UID, JPEG2000Lossless

logger = logging.getLogger(__name__)

__all__ = ["PLUGIN", "THREADS_OPTION", "DECODER_DEPENDENCIES", "is_available", "decode_frame", "add_to_pydicom"]

#: The plugin's label among pydicom's JPEG 2000 decoding plugins.
PLUGIN = "imagecodecs"
#: The decoding option (``pydicom.pixels.pixel_array(..., sllb_decode_threads=n)``) giving the threads per frame.
THREADS_OPTION = "sllb_decode_threads"
#: What pydicom lists as missing when the plugin cannot decode a syntax.
DECODER_DEPENDENCIES = {
    JPEG2000Lossless: ("imagecodecs>=2026.3",),
    JPEG2000: ("imagecodecs>=2026.3",),
}
#: The pydicom releases whose plugin interface this module is written against: 3.0 keeps what a plugin changes
#: about the decoded frame in ``DecodeRunner.set_option``; later releases keep it per frame
#: (``set_frame_option``), which this module does not speak, so it is not added there.
PYDICOM_SERIES = (3, 0)


@functools.lru_cache(maxsize=None)
def _jpeg2k_decode() -> Optional[Callable[..., Any]]:
    """imagecodecs' JPEG 2000 decoder, or None where imagecodecs or its JPEG 2000 codec is missing."""
    try:
        import imagecodecs  # imported on first use: only JPEG 2000 series need it (a second of imports spared)
    except ImportError:
        return None
    if not getattr(getattr(imagecodecs, "JPEG2K", None), "available", False):
        return None
    return imagecodecs.jpeg2k_decode


def is_available(uid: UID) -> bool:
    """pydicom's question to a plugin: can it decode this transfer syntax here."""
    return uid in DECODER_DEPENDENCIES and _jpeg2k_decode() is not None


def decode_frame(src: bytes, runner: Any) -> bytearray:
    """One frame's codestream decoded, as pydicom's plugin interface asks: the values in a container sized by the
    codestream's precision (as pylibjpeg-openjpeg returns them), colour by pixel, with the runner told so."""
    decode = _jpeg2k_decode()
    if decode is None:
        raise RuntimeError("imagecodecs with its JPEG 2000 codec is not installed")
    threads = max(1, int(runner.get_option(THREADS_OPTION, 1)))
    frame = decode(src, numthreads=threads)
    # openjpeg applies the inverse multi-component transform itself: YBR_ICT / YBR_RCT frames come out as RGB.
    if runner.photometric_interpretation in ("YBR_ICT", "YBR_RCT"):
        runner.set_option("photometric_interpretation", "RGB")
    runner.set_option("bits_allocated", frame.dtype.itemsize * 8)
    if runner.samples_per_pixel > 1:
        runner.set_option("planar_configuration", 0)
    return bytearray(frame.astype(frame.dtype.newbyteorder("<"), copy=False))


def add_to_pydicom() -> bool:
    """Add the plugin to pydicom's JPEG 2000 decoders, once; whether it can decode here.

    False, with nothing added, where imagecodecs (or its JPEG 2000 codec) is
    missing or pydicom is not of :data:`PYDICOM_SERIES`: pydicom's own
    plugins then decode as before.
    """
    if _jpeg2k_decode() is None:
        return False
    series = tuple(int(part) for part in pydicom.__version__.split(".")[:2] if part.isdigit())
    if series != PYDICOM_SERIES:
        logger.info("pydicom %s: JPEG 2000 frames are decoded by pydicom's own plugins, on one thread each "
                    "(the threaded plugin speaks pydicom %d.%d's plugin interface)", pydicom.__version__,
                    *PYDICOM_SERIES)
        return False
    for syntax in DECODER_DEPENDENCIES:
        decoder = pydicom.pixels.get_decoder(syntax)
        if PLUGIN in decoder.available_plugins:
            continue
        try:
            decoder.add_plugin(PLUGIN, (__name__, "decode_frame"))
        except ValueError:  # another plugin of that name, which pydicom finds unavailable: leave it and ours out
            return False
    return True
