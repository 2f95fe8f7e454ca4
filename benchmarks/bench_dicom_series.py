"""Target 1: a DICOM CT series to a volume, uncompressed and compressed, against SimpleITK's GDCM series reader.

SimpleITK's ``ImageSeriesReader`` (GDCM) is what Slicer's DICOM scalar-volume loading goes through. The same
generated 512x512 CT series (realistic headers, see _common.py) is measured uncompressed and re-encoded with
pydicom's own encoders: JPEG-LS lossless (pyjpegls), JPEG 2000 lossless (pylibjpeg-openjpeg), RLE lossless.
Each run happens in a fresh interpreter so neither side profits from the other's caches; the files are read
once beforehand so both read from the page cache; runs are interleaved. Targets: time <= 1.0x SimpleITK,
peak memory <= 1.5x the voxel bytes (peak resident memory of the load above the interpreter's resident
memory just before it).

It also measures whether decoding the compressed slices on two threads helps (the decoder must release the
GIL): serial vs a 2-thread pool over ``pydicom.pixels.pixel_array`` of every file, with the plugin read_series
uses. imagecodecs' openjpeg (JPEG 2000) does, so read_series decodes JPEG 2000 series on threads, one file
each (as many threads as cores, at most 4); pyjpegls and pylibjpeg-rle do not, so read_series decodes those
series of 32 slices or more with worker processes beside its own thread (one fewer than the cores, at most 3).
The "decoder" column names the plugin and the threads or workers. The peak column is the loading process's;
each worker's own peak resident memory (a Python interpreter with pydicom and numpy, plus the slices in hand)
is printed apart.

    python benchmarks/bench_dicom_series.py [--slices 200] [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import process_memory_mb  # noqa: E402

#: Encoding name -> transfer syntax UID (None: as written, explicit VR little endian).
ENCODINGS = {
    "uncompressed": None,
    "JPEG-LS lossless": "1.2.840.10008.1.2.4.80",
    "JPEG 2000 lossless": "1.2.840.10008.1.2.4.90",
    "RLE lossless": "1.2.840.10008.1.2.5",
}


def measure(kind: str, folder: str) -> None:
    import numpy as np  # noqa: F401  (imported before the baseline, like the reader's own imports)

    if kind == "simpleitk":
        import SimpleITK as sitk
    elif kind in ("decode-serial", "decode-threads"):
        from concurrent.futures import ThreadPoolExecutor

        import pydicom.pixels
    else:
        from SarcomaLungLiverBrowserLib.formats.dicom_series import read_series, scan_folder
    baseline = process_memory_mb("VmRSS")
    start = time.perf_counter()
    if kind == "simpleitk":
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
        voxels = sitk.GetArrayViewFromImage(reader.Execute())
    elif kind in ("decode-serial", "decode-threads"):
        from SarcomaLungLiverBrowserLib.formats.dicom_series import _fastest_plugin

        paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
        syntax = str(pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID)
        plugin = _fastest_plugin(syntax)  # the plugin read_series uses

        def decode(path: str) -> float:
            return pydicom.pixels.pixel_array(path, decoding_plugin=plugin).sum()

        if kind == "decode-serial":
            frames = [decode(path) for path in paths]
        else:
            with ThreadPoolExecutor(2) as pool:
                frames = list(pool.map(decode, paths))
        voxels = np.array(frames)
    else:
        scan = scan_folder(Path(folder), cache=None)
        voxels = read_series(scan.instances).voxels
    seconds = time.perf_counter() - start
    peak = process_memory_mb("VmHWM")
    import resource

    worker_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # reaped worker processes, if any
    print(json.dumps({"seconds": seconds, "peak_above_baseline_mb": peak - baseline, "worker_peak_mb": worker_peak,
                      "voxel_mb": voxels.nbytes / 2 ** 20, "shape": list(voxels.shape)}))


def encode_copies(source: List[Path], target: Path, syntax: str) -> None:
    """``source`` re-encoded to ``syntax`` with pydicom's encoders, same UIDs, into ``target``."""
    import pydicom
    from pydicom.uid import UID

    target.mkdir(parents=True, exist_ok=True)
    for path in source:
        dataset = pydicom.dcmread(str(path))
        dataset.compress(UID(syntax), generate_instance_uid=False)
        dataset.save_as(str(target / path.name), enforce_file_format=True)


def print_machine() -> None:
    from importlib import metadata

    versions = []
    for name in ("pydicom", "numpy", "SimpleITK", "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg",
                 "pylibjpeg-rle", "pyjpegls", "python-gdcm", "imagecodecs"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (absent)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"machine: {platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} at start; Python {platform.python_version()}")
    print("versions: " + ", ".join(versions))


def decoding_plugin(syntax: str, slices: int) -> str:
    """The pydicom plugin read_series decodes ``syntax`` with (its pinned one, else pydicom's first available), and
    the threads or worker processes that decode a series of ``slices`` slices on this machine."""
    import pydicom.pixels
    from pydicom.uid import UID

    from SarcomaLungLiverBrowserLib.formats.dicom_series import (
        _decodes_on_threads, _plugin, decode_workers, frame_decode_threads,
    )

    if _decodes_on_threads(syntax):
        return f"{_plugin(syntax, True)} on {frame_decode_threads()} thread(s), one file each"
    workers = decode_workers(slices)
    pinned = _plugin(syntax, workers > 0)
    plugin = pinned or list(pydicom.pixels.get_decoder(UID(syntax))._available)[0]  # pydicom's try order, not sorted
    return f"{plugin} + {workers} worker process(es)" if workers else f"{plugin} on one thread"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        measure(*arguments.measure)
        return 0
    from _common import median, run_isolated, write_ct_series

    print_machine()
    script = Path(__file__)
    with tempfile.TemporaryDirectory(prefix="sllb-bench-series-") as root:
        original = write_ct_series(Path(root) / "uncompressed", arguments.slices)
        folders = {"uncompressed": Path(root) / "uncompressed"}
        for name, syntax in ENCODINGS.items():
            if syntax is not None:
                folders[name] = Path(root) / name.replace(" ", "-")
                encode_copies(original, folders[name], syntax)
        for folder in folders.values():
            for path in folder.iterdir():  # warm the page cache for every reader
                path.read_bytes()
        print(f"series: {arguments.slices} slices of 512x512, median of {arguments.runs} interleaved runs")
        print(f"{'encoding':20} {'ours/SimpleITK time':>20} {'peak/voxel bytes':>17} {'2 threads/serial decode':>24}"
              f" {'worker peak MB':>15}  decoder")
        for name, folder in folders.items():
            kinds = ["simpleitk", "ours"] + (["decode-serial", "decode-threads"] if name != "uncompressed" else [])
            results: Dict[str, List[Dict[str, float]]] = {kind: [] for kind in kinds}
            for _ in range(arguments.runs):
                for kind in kinds:
                    results[kind].append(run_isolated(script, "--measure", kind, str(folder)))
            seconds = {kind: median([r["seconds"] for r in values]) for kind, values in results.items()}
            peak = median([r["peak_above_baseline_mb"] for r in results["ours"]])
            voxel_mb = results["ours"][0]["voxel_mb"]
            threads = f"{seconds['decode-threads'] / seconds['decode-serial']:.2f}" if "decode-threads" in seconds \
                else "-"
            decoder = decoding_plugin(ENCODINGS[name], arguments.slices) if ENCODINGS[name] else "raw read"
            worker_peak = median([r["worker_peak_mb"] for r in results["ours"]])
            print(f"{name:20} {seconds['ours'] / seconds['simpleitk']:20.2f} {peak / voxel_mb:17.2f} {threads:>24}"
                  f" {worker_peak:15.0f}  {decoder}", flush=True)
    print("targets: time ratio <= 1.0, peak <= 1.5x voxel bytes; a thread ratio near 1.0 means the decoder "
          "holds the GIL (no gain from a thread pool), near 0.5 that it releases it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
