"""Target 1: a DICOM CT series to a volume, against SimpleITK's GDCM series reader.

SimpleITK's ``ImageSeriesReader`` (GDCM) is what Slicer's DICOM scalar-volume
loading goes through. Each run happens in a fresh interpreter so neither side
profits from the other's caches; the files are read once beforehand so both
read from the page cache. Targets: time <= 1.0x SimpleITK, peak memory <= 1.5x
the voxel bytes (peak resident memory of the load above the interpreter's
resident memory just before it).

    python benchmarks/bench_dicom_series.py [--slices 200] [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import process_memory_mb  # noqa: E402


def measure(kind: str, folder: str) -> None:
    import numpy as np  # noqa: F401  (imported before the baseline, like the reader's own imports)

    if kind == "simpleitk":
        import SimpleITK as sitk
    else:
        from SarcomaLungLiverBrowserLib.formats.dicom_series import read_series, scan_folder
    baseline = process_memory_mb("VmRSS")
    start = time.perf_counter()
    if kind == "simpleitk":
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
        voxels = sitk.GetArrayViewFromImage(reader.Execute())
    else:
        scan = scan_folder(Path(folder), cache=None)
        voxels = read_series(scan.instances).voxels
    seconds = time.perf_counter() - start
    peak = process_memory_mb("VmHWM")
    print(json.dumps({"seconds": seconds, "peak_above_baseline_mb": peak - baseline,
                      "voxel_mb": voxels.nbytes / 2 ** 20, "shape": list(voxels.shape)}))


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

    with tempfile.TemporaryDirectory(prefix="sllb-bench-series-") as folder:
        paths = write_ct_series(Path(folder), arguments.slices)
        for path in paths:  # warm the page cache for both readers
            path.read_bytes()
        results = {"simpleitk": [], "ours": []}
        for _ in range(arguments.runs):
            for kind in results:
                results[kind].append(run_isolated(Path(__file__), "--measure", kind, folder))
    ours_time = median([r["seconds"] for r in results["ours"]])
    peer_time = median([r["seconds"] for r in results["simpleitk"]])
    ours_peak = median([r["peak_above_baseline_mb"] for r in results["ours"]])
    voxel_mb = results["ours"][0]["voxel_mb"]
    print(f"series: {arguments.slices} slices of 512x512, {voxel_mb:.0f} MB of voxels, median of {arguments.runs} runs")
    print(f"SimpleITK ImageSeriesReader (GDCM): {peer_time:.3f} s")
    print(f"SarcomaLungLiverBrowser scan_folder + read_series: {ours_time:.3f} s")
    print(f"peak memory above baseline: {ours_peak:.0f} MB = {ours_peak / voxel_mb:.2f}x voxel bytes (target <= 1.5x)")
    print(f"time ratio ours/SimpleITK: {ours_time / peer_time:.2f} (target <= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
