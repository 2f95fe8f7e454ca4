"""QA of a collection in one process, in two worker processes, and on a local Dask cluster of two workers.

    python benchmarks/bench_qa_parallel.py [--runs 3] [--scaled-cases 32] [--scaled-slices 96]
                                           [--collections crlm,hermessi,...|none]

Runs ``sllb qa <collection> --out ... --no-resume`` on each collection, every run a fresh process (what a user
pays, start-up included), interleaved so load on a shared machine affects the three alike:

* the named peer: the serial command (one process, one scene);
* ``--workers 2``: two spawned worker processes, each importing slicer-core and keeping one scene;
* ``--scheduler ADDRESS``: a ``dask.distributed.LocalCluster(n_workers=2, processes=True)`` started once before
  the runs (a cluster outlives one QA run; its start-up is printed as a ratio of its own).

The collections: by default a generated CRLM collection of ``--scaled-cases`` patients (the sample writer's
three patient plans in turn, each under a PatientID and seed of its own, ``--scaled-slices`` CT slices each), so
that per-case work, not the workers' start-up, decides the result (``--scaled-cases 0`` skips it); and the
generated sample collections (``--collections``, default all; ``none`` for none), whose three cases each are
dominated by worker start-up (importing slicer-core and making a scene: seconds per worker, paid once).

Prints the median seconds' ratios (speed-up = serial / parallel), with the machine, load and versions, and
checks that every mode wrote byte-identical ``findings.csv`` to serial (a difference fails the benchmark).
"""
from __future__ import annotations

import argparse
import csv
import io
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


def measure(name: str, root: Path, out: Path, modes: Dict[str, List[str]], runs: int) -> Dict[str, float]:
    """Median seconds of each mode on ``root``; exits non-zero when a mode's findings differ from serial's."""
    seconds: Dict[str, List[float]] = {mode: [] for mode in modes}
    for _ in range(runs):
        for mode, extra in modes.items():
            seconds[mode].append(timed(qa_command(root, out / mode, extra)))
    medians = {mode: statistics.median(values) for mode, values in seconds.items()}
    serial_csv = (out / "serial" / "findings.csv").read_bytes()
    differing = [mode for mode in modes if (out / mode / "findings.csv").read_bytes() != serial_csv]
    print(f"{name:<26} {medians['serial']:>9.1f} {medians['workers2']:>12.1f} {medians['dask2']:>9.1f}"
          f"   {medians['serial'] / medians['workers2']:>16.2f}x {medians['serial'] / medians['dask2']:>5.2f}x"
          f"   findings {'DIFFER: ' + ', '.join(differing) if differing else 'identical'}"
          f" ({len(list(csv.reader(io.StringIO(serial_csv.decode('utf-8'))))) - 1} findings)", flush=True)
    if differing:
        raise SystemExit(f"{name}: findings of {', '.join(differing)} differ from the serial run's")
    return medians


def scaled_crlm(parent: Path, cases: int, slices: int) -> Path:
    """A CRLM collection of ``cases`` generated patients (new PatientIDs) of ``slices`` CT slices each."""
    from SarcomaLungLiverBrowserLib.samples import crlm

    return crlm.generate(parent, crlm.scaled_patients(cases, slices))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per mode and collection (median reported)")
    parser.add_argument("--scaled-cases", type=int, default=32,
                        help="patients of the generated CRLM collection measured first (0: skip it)")
    parser.add_argument("--scaled-slices", type=int, default=96, help="CT slices of each of those patients")
    parser.add_argument("--collections", default="",
                        help="comma-separated sample module names (default: every sample collection; none: none)")
    arguments = parser.parse_args()
    sys.path.insert(0, str(LIBRARY_PARENT))
    from distributed import LocalCluster

    from SarcomaLungLiverBrowserLib.samples import SAMPLE_MODULES, generate_all

    print(describe_machine())
    work = Path(tempfile.mkdtemp(prefix="sllb-bench-qa-"))
    try:
        collections: Dict[str, Path] = {}
        if arguments.scaled_cases > 0:
            label = f"crlm x{arguments.scaled_cases} ({arguments.scaled_slices} sl.)"
            collections[label] = scaled_crlm(work / "scaled", arguments.scaled_cases, arguments.scaled_slices)
        if arguments.collections != "none":
            wanted = [name for name in arguments.collections.split(",") if name] or list(SAMPLE_MODULES)
            roots = generate_all(work / "data")
            collections.update({f"sample {name}": roots[name] for name in wanted})
        start = time.perf_counter()
        os.environ["PYTHONPATH"] = str(LIBRARY_PARENT)  # the cluster's worker processes import the library
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        cluster_seconds = time.perf_counter() - start
        modes: Dict[str, List[str]] = {"serial": [], "workers2": ["--workers", "2"],
                                       "dask2": ["--scheduler", cluster.scheduler_address]}
        totals = {mode: 0.0 for mode in modes}
        print(f"\n{'collection':<26} {'serial s':>9} {'--workers 2':>12} {'Dask(2)':>9}   speed-up: workers  Dask")
        try:
            for number, (name, root) in enumerate(collections.items()):
                medians = measure(name, root, work / "out" / str(number), modes, arguments.runs)
                for mode in modes:
                    totals[mode] += medians[mode]
        finally:
            cluster.close()
        print(f"{'all':<26} {totals['serial']:>9.1f} {totals['workers2']:>12.1f} {totals['dask2']:>9.1f}"
              f"   {totals['serial'] / totals['workers2']:>16.2f}x {totals['serial'] / totals['dask2']:>5.2f}x")
        print(f"\nLocalCluster(2) start-up (once per cluster): "
              f"{cluster_seconds / (totals['serial'] / len(collections)):.2f} x the mean serial QA run of one collection")
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
        print(f"load average at the end: {load}")
        print("speed-up = serial seconds / parallel seconds of the same command, start-up included; "
              "the seconds are this machine's and only the ratios compare")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
