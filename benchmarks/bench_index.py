"""Target 4: indexing a folder of DICOM files, first run and re-run with the header cache.

Peer: plain ``pydicom.dcmread`` of every file (what a straightforward indexer
does). Targets: first index at least 3x the peer's rate; re-indexing an
unchanged folder at most 5% of the first run's time (cache keyed on path,
size and modification time). Files are 128x128 CT slices with realistic
headers, copied from one written template with new UIDs, in NBIA-like series
folders of 200 files.

    python benchmarks/bench_index.py [--files 20000] [--runs 3]     # the issue's figure: --files 100000
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_folder(root: Path, count: int) -> None:
    """``count`` files: one template slice copied with unique, equal-length UIDs patched in."""
    from _common import write_ct_series

    template_folder = root / "_template"
    template = write_ct_series(template_folder, 1, size=128)[0]
    data = template.read_bytes()
    sop_uid = template.name  # placeholder, replaced below
    import pydicom

    dataset = pydicom.dcmread(str(template))
    sop_uid, series_uid = str(dataset.SOPInstanceUID).encode(), str(dataset.SeriesInstanceUID).encode()
    for index in range(count):
        series = index // 200
        new_sop = (sop_uid[: len(sop_uid) - 8] + f"{index:08d}".encode())
        new_series = (series_uid[: len(series_uid) - 6] + f"{series:06d}".encode())
        folder = root / "collection" / f"PAT-{series // 10:04d}" / f"{series:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"1-{index % 200 + 1:03d}.dcm").write_bytes(
            data.replace(sop_uid, new_sop).replace(series_uid, new_series))
    for path in template_folder.iterdir():
        path.unlink()
    template_folder.rmdir()


def measure(kind: str, folder: str, cache: str) -> None:
    import pydicom

    from SarcomaLungLiverBrowserLib.formats.dicom_series import scan_folder
    from SarcomaLungLiverBrowserLib.formats.index_cache import IndexCache

    start = time.perf_counter()
    if kind == "pydicom":
        count = 0
        for directory, _, names in os.walk(folder):
            for name in names:
                pydicom.dcmread(os.path.join(directory, name))
                count += 1
    else:
        with IndexCache(Path(cache)) as index_cache:
            count = len(scan_folder(Path(folder), cache=index_cache).instances)
    print(json.dumps({"seconds": time.perf_counter() - start, "files": count}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--measure", nargs=3, metavar=("KIND", "FOLDER", "CACHE"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        measure(*arguments.measure)
        return 0
    from _common import median, run_isolated

    with tempfile.TemporaryDirectory(prefix="sllb-bench-index-") as root:
        make_folder(Path(root), arguments.files)
        folder = str(Path(root) / "collection")
        run_isolated(Path(__file__), "--measure", "pydicom", folder, "-")  # warm the page cache
        peer, first, again = [], [], []
        for run in range(arguments.runs):
            cache = str(Path(root) / f"cache-{run}.sqlite")
            peer.append(run_isolated(Path(__file__), "--measure", "pydicom", folder, "-")["seconds"])
            first.append(run_isolated(Path(__file__), "--measure", "ours", folder, cache)["seconds"])
            again.append(run_isolated(Path(__file__), "--measure", "ours", folder, cache)["seconds"])
    peer_time, first_time, again_time = median(peer), median(first), median(again)
    print(f"{arguments.files} files, median of {arguments.runs} runs")
    print(f"pydicom.dcmread of every file: {peer_time:.2f} s ({arguments.files / peer_time:.0f} files/s)")
    print(f"first index (no cache):        {first_time:.2f} s ({arguments.files / first_time:.0f} files/s)")
    print(f"re-index (unchanged, cached):  {again_time:.2f} s")
    print(f"re-index / first index: {again_time / first_time:.3f} (target <= 0.05)")
    print(f"first-index rate / pydicom rate: {peer_time / first_time:.2f} (target >= 3.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
