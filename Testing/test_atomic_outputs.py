"""Atomic writes and completion manifests: an interrupted run never leaves a damaged or complete-looking output.

The kill loops fork a writer from this (already warmed-up) process, let it
re-save over and over, and SIGKILL it at a random moment; after every kill
the output must be either a complete set whose manifest matches every file
byte for byte, or recognisably incomplete (no manifest), and every file
present must be whole (the previous version or the new one). They assert
durability only; no timing is checked.
"""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pydicom
import pytest
import slicer

from SarcomaLungLiverBrowserLib.browser import CollectionBrowser
from SarcomaLungLiverBrowserLib.formats.atomic import (
    atomic_path, begin_output_set, check_output_set, complete_output_set, corrections_output_set,
    manifest_path, write_bytes_atomically, write_text_atomically)
from SarcomaLungLiverBrowserLib.formats.voc_xml import VocObject, annotation_for_objects, parse_voc, write_voc
from SarcomaLungLiverBrowserLib.samples import crlm, hermessi

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: Kills per loop (the issue asks for at least 100).
KILLS = 100
REPOSITORY = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- single files
def test_atomic_write_replaces_the_file_or_leaves_it_untouched(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_text_atomically(target, "first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as partial:
            partial.write_text("half of the sec")
            raise RuntimeError("the writer died")
    assert target.read_text() == "first"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.txt"]  # no temporary file left
    write_bytes_atomically(target, b"second")
    assert target.read_bytes() == b"second"


def test_a_writer_that_writes_nothing_does_not_empty_the_target(tmp_path: Path) -> None:
    target = tmp_path / "seg.dcm"
    target.write_bytes(b"previous")
    with pytest.raises(FileNotFoundError, match="produced no file"):
        with atomic_path(target):
            pass
    assert target.read_bytes() == b"previous"


def test_leftovers_of_a_killed_writer_are_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "a.xml"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".a.xml.{int(dead.stdout)}.0badc0de.sllb-partial"
    stale.write_bytes(b"half")
    other = tmp_path / ".b.xml.1.0badc0de.sllb-partial"  # another target's: not ours to remove
    other.write_bytes(b"half")
    write_text_atomically(target, "<annotation/>")
    assert not stale.exists() and other.exists()


def test_manifest_tells_a_complete_set_from_an_interrupted_or_changed_one(tmp_path: Path) -> None:
    files = [write_text_atomically(tmp_path / "review.csv", "a"), write_text_atomically(tmp_path / "report.html", "b")]
    assert not check_output_set(tmp_path, "report").complete  # never completed
    complete_output_set(tmp_path, "report", files)
    state = check_output_set(tmp_path, "report")
    assert state.complete and state.files == files
    begin_output_set(tmp_path, "report")
    assert not manifest_path(tmp_path, "report").exists()
    assert "did not finish" in check_output_set(tmp_path, "report").reason
    complete_output_set(tmp_path, "report", files)
    (tmp_path / "review.csv").write_text("changed later")
    assert "differs" in check_output_set(tmp_path, "report").reason
    (tmp_path / "review.csv").unlink()
    assert "missing" in check_output_set(tmp_path, "report").reason
    manifest_path(tmp_path, "report").write_text("{not json")
    assert "cannot be read" in check_output_set(tmp_path, "report").reason


# ---------------------------------------------------------------------------------------------- kill loops
def _kill_loop(write_forever: Callable[[], None], check: Callable[[int], None], first_duration: float) -> int:
    """Fork ``write_forever`` KILLS times, SIGKILL it at a random moment, run ``check`` after each kill."""
    generator = random.Random(20)
    kills = 0
    while kills < KILLS:
        pid = os.fork()
        if pid == 0:  # the child: write until killed
            try:
                write_forever()
            finally:
                os._exit(0)
        # Uniform over a few whole re-saves, so kills land in every phase of one.
        time.sleep(generator.uniform(0.0, 2.5 * first_duration))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), f"the writer ended by itself (status {status}) instead of being killed"
        kills += 1
        check(kills)
    return kills


def _whole_seg(path: Path) -> None:
    """A SEG file that pydicom reads to the end, with all the pixel data its header claims."""
    dataset = pydicom.dcmread(str(path))
    frames, rows, columns = int(dataset.NumberOfFrames), int(dataset.Rows), int(dataset.Columns)
    assert len(dataset.PixelData) >= (frames * rows * columns + 7) // 8, path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kills_during_a_corrections_re_save_never_leave_a_damaged_or_complete_looking_set(
        headless, tmp_path: Path) -> None:
    root = crlm.generate(tmp_path / "collection")
    browser = CollectionBrowser(headless.scene)
    browser.open(root)
    loaded = browser.load_case("CRLM-CT-1001")
    node, ct_node = loaded.segmentations[0], loaded.volumes[0]
    out = tmp_path / "corrections"
    started = time.monotonic()
    first = browser.save_corrections("CRLM-CT-1001", out)
    duration = time.monotonic() - started
    folder, set_name = corrections_output_set(out, "CRLM-CT-1001")
    assert check_output_set(folder, set_name).complete
    first_hash = _sha256(first[0])

    def write_forever() -> None:
        segmentation = node.GetSegmentation()
        tumour = slicer.util.arrayFromSegmentBinaryLabelmap(node, "Tumor_1", ct_node).astype(np.uint8)
        for round_number in range(10 ** 6):
            edited = tumour.copy()
            edited.flat[round_number % edited.size] ^= 1  # every save differs from the one before
            slicer.util.updateSegmentBinaryLabelmapFromArray(edited, node, "Tumor_1", ct_node)
            segmentation.GetSegment("Tumor_2").SetName(f"Tumor_2 round {round_number}")
            browser.save_corrections("CRLM-CT-1001", out)

    outcomes = {"complete": 0, "incomplete": 0}

    def check(kill: int) -> None:
        state = check_output_set(folder, set_name)
        segs = sorted((folder / "CRLM-CT-1001").glob("*.dcm"))
        assert [path.name for path in segs] == ["CRLM-CT-1001 segmentation.dcm"], f"kill {kill}: {segs}"
        _whole_seg(segs[0])  # never a SEG without its pixel data
        if manifest_path(folder, set_name).exists():
            # A manifest present means every file is exactly what it lists: no complete-looking mix.
            assert state.complete, f"kill {kill}: {state.reason}"
            outcomes["complete"] += 1
        else:
            outcomes["incomplete"] += 1

    assert _kill_loop(write_forever, check, duration) >= 100
    # The loop really interrupted saves. (How many saves completed between kills depends on the machine's
    # speed, so a completed re-save is required only when one was seen: durability, not speed, is asserted.)
    assert outcomes["incomplete"], outcomes
    if outcomes["complete"]:
        assert _sha256(folder / "CRLM-CT-1001" / "CRLM-CT-1001 segmentation.dcm") != first_hash
    leftovers = [path for path in (folder / "CRLM-CT-1001").iterdir() if not path.name.endswith(".dcm")]
    assert all(path.name.endswith(".sllb-partial") for path in leftovers)
    # The next save completes and clears what killed writers left behind.
    browser.save_corrections("CRLM-CT-1001", out)
    assert check_output_set(folder, set_name).complete
    assert sorted(path.name for path in (folder / "CRLM-CT-1001").iterdir()) == ["CRLM-CT-1001 segmentation.dcm"]


def test_kills_during_a_voc_re_save_leave_the_previous_or_the_new_file(tmp_path: Path) -> None:
    uid = "1.2.3.4.5"
    first = write_voc(tmp_path, f"{uid}.xml", annotation_for_objects([VocObject("A", 1, 2, 3, 4)], 512, 512))
    boxes = [VocObject("B", 5, 5, 25, 40) for _ in range(200)]
    started = time.monotonic()
    for _ in range(20):
        write_voc(tmp_path / "timing", f"{uid}.xml", annotation_for_objects(boxes, 512, 512))
    duration = (time.monotonic() - started) / 20  # one re-save of the 200-box file the child writes

    def write_forever() -> None:
        for number in range(10 ** 9):
            boxes = [VocObject("B", number % 400, 5, number % 400 + 20, 40) for _ in range(200)]
            write_voc(tmp_path, f"{uid}.xml", annotation_for_objects(boxes, 512, 512))

    def check(kill: int) -> None:
        annotation = parse_voc(first)  # raises on a truncated or empty file
        assert len(annotation.objects) in (1, 200), f"kill {kill}"

    assert _kill_loop(write_forever, check, duration) >= 100


@pytest.fixture(scope="module")
def hermessi_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hermessi.generate(tmp_path_factory.mktemp("hermessi"))


def _run_qa(root: Path, out: Path) -> subprocess.Popen:
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "SarcomaLungLiverBrowser"))
    return subprocess.Popen([sys.executable, "-m", "SarcomaLungLiverBrowserLib", "qa", str(root), "--out", str(out)],
                            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _report_set_is_whole_or_incomplete(out: Path, kill: int) -> str:
    present = manifest_path(out, "report").exists()
    state = check_output_set(out, "report")
    if present:
        assert state.complete, f"kill {kill}: {state.reason}"
        return "complete"
    return "incomplete"


def test_kills_during_qa_never_leave_a_complete_looking_report_set(hermessi_root: Path, tmp_path: Path) -> None:
    """A few kills of the real ``sllb qa`` process, then 100 during its writing phase (the one touching --out)."""
    from SarcomaLungLiverBrowserLib.registry import open_collection
    from SarcomaLungLiverBrowserLib.review.qa import run_collection_qa
    from SarcomaLungLiverBrowserLib.review.report import export_review

    out = tmp_path / "report"
    process = _run_qa(hermessi_root, out)
    started = time.monotonic()
    assert process.wait(timeout=600) == 0, process.stderr.read().decode()
    whole_run = time.monotonic() - started
    assert check_output_set(out, "report").complete
    generator = random.Random(7)
    for kill in range(6):
        process = _run_qa(hermessi_root, out)
        time.sleep(generator.uniform(0.0, whole_run))
        process.kill()
        process.wait()
        _report_set_is_whole_or_incomplete(out, kill)

    collection = open_collection(hermessi_root)
    result = run_collection_qa(collection)
    started = time.monotonic()
    export_review(out, collection, None, result)
    duration = time.monotonic() - started
    outcomes: Dict[str, int] = {"complete": 0, "incomplete": 0}

    def write_forever() -> None:
        for number in range(10 ** 9):
            export_review(out, collection, None, result, reviewer=f"round {number}")

    def check(kill: int) -> None:
        outcomes[_report_set_is_whole_or_incomplete(out, kill)] += 1
        html = (out / "report.html").read_text(encoding="utf-8")
        assert html.rstrip().endswith("</html>"), f"kill {kill}: report.html is cut short"

    assert _kill_loop(write_forever, check, duration) >= 100
    # The loop really interrupted writes. A kill finds the set complete only in the moment between one write's
    # manifest and the next write's removal of it, so whether any of 100 kills lands there is chance (a CI run saw
    # none): each check asserts durability, and the set a whole write leaves is checked complete below.
    assert outcomes["incomplete"], outcomes
    export_review(out, collection, None, result)
    assert _report_set_is_whole_or_incomplete(out, KILLS + 1) == "complete"
