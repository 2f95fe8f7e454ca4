"""QA of a collection in one process, in two worker processes, and on a local Dask cluster of two workers.

    python benchmarks/bench_qa_parallel.py [--runs 3] [--collections crlm,hermessi,...]

Writes the generated sample collections to a temporary folder and runs ``sllb qa <collection> --out ...
--no-resume`` on each, every run a fresh process (what a user pays, start-up included), interleaved so load on a
shared machine affects the three alike:

* the named peer: the serial command (one process, one scene);
* ``--workers 2``: two spawned worker processes, each importing slicer-core and keeping one scene;
* ``--scheduler ADDRESS``: a ``dask.distributed.LocalCluster(n_workers=2, processes=True)`` started once before
  the runs (a cluster outlives one QA run; its start-up is printed as a ratio of its own).

Prints the median seconds' ratios (speed-up = serial / parallel), with the machine and versions, and checks that
every mode wrote the same ``findings.csv`` as serial. The sample collections have three cases each, so worker
start-up (importing slicer-core, a few seconds) weighs heavily; on a collection of hundreds of cases it is paid once
per worker.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Sequence

REPOSITORY = Path(__file__).resolve().parents[1]
LIBRARY_PARENT = REPOSITORY / "SarcomaLungLiverBrowser"


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe_machine() -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"machine: {platform.platform()}, {os.cpu_count()} CPU(s), load average {load}\n"
            f"versions: Python {platform.python_version()}, slicer-core {version('slicer-core')}, "
            f"dask {version('dask')}, distributed {version('distributed')}")


def qa_command(root: Path, out: Path, extra: Sequence[str]) -> List[str]:
    return [sys.executable, "-m", "SarcomaLungLiverBrowserLib", "--no-cache", "qa", str(root), "--out", str(out),
            "--no-resume", *extra]


def timed(command: Sequence[str]) -> float:
    """Wall-clock seconds of one fresh process of ``command`` (which must succeed)."""
    environment = dict(os.environ, PYTHONPATH=str(LIBRARY_PARENT))
    start = time.perf_counter()
    result = subprocess.run(list(command), capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per mode and collection (median reported)")
    parser.add_argument("--collections", default="",
                        help="comma-separated sample module names (default: every sample collection)")
    arguments = parser.parse_args()
    sys.path.insert(0, str(LIBRARY_PARENT))
    from distributed import LocalCluster

    from SarcomaLungLiverBrowserLib.samples import generate_all

    print(describe_machine())
    work = Path(tempfile.mkdtemp(prefix="sllb-bench-qa-"))
    try:
        roots = generate_all(work / "data")
        wanted = [name for name in arguments.collections.split(",") if name] or list(roots)
        start = time.perf_counter()
        os.environ["PYTHONPATH"] = str(LIBRARY_PARENT)  # the cluster's worker processes import the library
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        cluster_seconds = time.perf_counter() - start
        modes: Dict[str, List[str]] = {"serial": [], "workers2": ["--workers", "2"],
                                       "dask2": ["--scheduler", cluster.scheduler_address]}
        totals = {mode: 0.0 for mode in modes}
        print(f"\n{'collection':<22} {'serial s':>9} {'--workers 2':>12} {'Dask(2)':>9}   speed-up: workers  Dask")
        try:
            for name in wanted:
                seconds: Dict[str, List[float]] = {mode: [] for mode in modes}
                for run in range(arguments.runs):
                    for mode, extra in modes.items():
                        seconds[mode].append(timed(qa_command(roots[name], work / "out" / name / mode, extra)))
                medians = {mode: statistics.median(values) for mode, values in seconds.items()}
                for mode in modes:
                    totals[mode] += medians[mode]
                serial_csv = (work / "out" / name / "serial" / "findings.csv").read_bytes()
                same = all((work / "out" / name / mode / "findings.csv").read_bytes() == serial_csv for mode in modes)
                print(f"{name:<22} {medians['serial']:>9.1f} {medians['workers2']:>12.1f} {medians['dask2']:>9.1f}"
                      f"   {medians['serial'] / medians['workers2']:>16.2f}x {medians['serial'] / medians['dask2']:>5.2f}x"
                      f"   findings {'identical' if same else 'DIFFER'}")
                if not same:
                    return 1
        finally:
            cluster.close()
        print(f"{'all':<22} {totals['serial']:>9.1f} {totals['workers2']:>12.1f} {totals['dask2']:>9.1f}"
              f"   {totals['serial'] / totals['workers2']:>16.2f}x {totals['serial'] / totals['dask2']:>5.2f}x")
        print(f"\nLocalCluster(2) start-up (once per cluster): {cluster_seconds / (totals['serial'] / len(wanted)):.2f}"
              f" x the mean serial QA run of one collection")
        print("speed-up = serial seconds / parallel seconds of the same command, start-up included; "
              "the seconds are this machine's and only the ratios compare")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
