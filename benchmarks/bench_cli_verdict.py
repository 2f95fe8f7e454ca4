"""Recording one verdict from the command line: this checkout against commit cad8013, side by side.

    python benchmarks/bench_cli_verdict.py [--runs 5] [--old-commit cad8013]

Runs ``python -m SarcomaLungLiverBrowserLib review <folder> CASE --verdict accepted`` on the generated CRLM sample
collection, each run a fresh process (what a user or a script pays), and prints the median of the runs for:

* this checkout, once the review store knows the collection's case IDs (the first verdict, not timed, indexes the
  folder and records them);
* the same command at ``--old-commit`` (extracted with ``git archive``; it detects and indexes the collection on
  every verdict, importing VTK, slicer-core and highdicom);
* the named peer ``python -c "import slicer, highdicom"``: the imports the old command paid for.

Target (issue 13): the new median under 1.5 s.
"""
from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import List, Sequence

REPOSITORY = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 1.5


def timed_runs(command: Sequence[str], runs: int, library_parent: Path) -> List[float]:
    """Wall-clock seconds of ``runs`` fresh processes of ``command`` (each must succeed)."""
    environment = dict(os.environ, PYTHONPATH=str(library_parent))
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(list(command), capture_output=True, text=True, env=environment)
        seconds.append(time.perf_counter() - start)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds


def extract_commit(commit: str, destination: Path) -> Path:
    """The library folder of ``commit``, extracted without touching any work tree or git metadata."""
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", "--format=tar", commit,
                              "SarcomaLungLiverBrowser"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")
    return destination / "SarcomaLungLiverBrowser"


def verdict_command(root: Path, store: Path, reviewer: str) -> List[str]:
    return [sys.executable, "-m", "SarcomaLungLiverBrowserLib", "--no-cache", "review", str(root), "CRLM-CT-1001",
            "--verdict", "accepted", "--reviewer", reviewer, "--store", str(store)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--old-commit", default="cad8013")
    arguments = parser.parse_args()

    new_library = REPOSITORY / "SarcomaLungLiverBrowser"
    sys.path.insert(0, str(new_library))
    from SarcomaLungLiverBrowserLib.samples import crlm

    with tempfile.TemporaryDirectory(prefix="sllb-bench-verdict-") as folder:
        work = Path(folder)
        root = crlm.generate(work / "data")
        new_store, old_store = work / "new.sqlite", work / "old.sqlite"
        # Not timed: the first verdict indexes the folder and the store records the case IDs.
        timed_runs(verdict_command(root, new_store, "warm-up"), 1, new_library)
        new = timed_runs(verdict_command(root, new_store, "bench"), arguments.runs, new_library)

        old_library = extract_commit(arguments.old_commit, work / "old")
        timed_runs(verdict_command(root, old_store, "warm-up"), 1, old_library)
        old = timed_runs(verdict_command(root, old_store, "bench"), arguments.runs, old_library)

        peer = timed_runs([sys.executable, "-c", "import slicer, highdicom"], arguments.runs, new_library)

    new_median, old_median, peer_median = (statistics.median(values) for values in (new, old, peer))
    print(f"sllb review ... --verdict accepted, CRLM sample collection, median of {arguments.runs} fresh processes")
    print(f"  this checkout:                      {new_median:6.2f} s")
    print(f"  commit {arguments.old_commit}:                     {old_median:6.2f} s   "
          f"(this checkout takes {new_median / old_median:.2f}x its time)")
    print(f"  peer 'import slicer, highdicom':    {peer_median:6.2f} s   "
          f"(this checkout takes {new_median / peer_median:.2f}x its time)")
    print(f"  target < {TARGET_SECONDS} s: {'met' if new_median < TARGET_SECONDS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
