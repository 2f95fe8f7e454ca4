"""Re-indexing with the per-folder header cache: unchanged files are never read, every change is.

The cache keeps one record per folder; a file is served from it only while its size, mtime, ctime and
inode are those recorded (compared from the walk's own stat, the file is not opened). These tests count
the files actually read on the second scan and compare its result with a scan without cache.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import List

import pydicom
import pytest
from pydicom.data import get_testdata_file

from SarcomaLungLiverBrowserLib.errors import LoadCancelled
from SarcomaLungLiverBrowserLib.formats import dicom_series
from SarcomaLungLiverBrowserLib.formats.dicom_series import FolderScan, scan_folder
from SarcomaLungLiverBrowserLib.formats.index_cache import IndexCache


def _write_tree(root: Path) -> List[Path]:
    """Two series folders of real CT slices (pydicom's CT_small with new UIDs), a text file and a damaged file."""
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    paths = []
    for series in range(2):
        folder = root / "PAT-1" / f"series-{series}"
        folder.mkdir(parents=True)
        for number in range(3):
            template.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.7.{series}"
            template.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.7.{series}.{number}"
            template.ImagePositionPatient = [0.0, 0.0, 5.0 * number]
            path = folder / f"1-{number:03d}.dcm"
            template.save_as(str(path), enforce_file_format=True)
            paths.append(path)
    (root / "PAT-1" / "notes.txt").write_text("not an image")
    (root / "PAT-1" / "series-0" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    return paths


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    """Names of the files opened by the scans from now on (header reads and DICOM sniffing)."""
    opened: List[str] = []
    read_header, looks_like_dicom = dicom_series.read_header, dicom_series.looks_like_dicom

    def counting_read_header(path: Path):  # type: ignore[no-untyped-def]
        opened.append(Path(path).name)
        return read_header(path)

    def counting_looks_like_dicom(path: Path) -> bool:
        opened.append(Path(path).name)
        return looks_like_dicom(path)

    monkeypatch.setattr(dicom_series, "read_header", counting_read_header)
    monkeypatch.setattr(dicom_series, "looks_like_dicom", counting_looks_like_dicom)
    return opened


def _summary(scan: FolderScan) -> tuple:
    return ([(str(h.path), h.sop_instance_uid, h.image_position) for h in scan.instances],
            [(str(e.path), e.problem) for e in scan.errors])


def test_an_unchanged_tree_is_served_whole_from_the_cache(tmp_path: Path, reads: List[str]) -> None:
    _write_tree(tmp_path / "tree")
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        first = scan_folder(tmp_path / "tree", cache=cache)
        reads.clear()
        again = scan_folder(tmp_path / "tree", cache=cache)
    assert reads == []
    assert again.instances == first.instances and _summary(again) == _summary(first)
    assert _summary(again) == _summary(scan_folder(tmp_path / "tree", cache=None))
    assert len(again.instances) == 6 and [Path(e.path).name for e in again.errors] == ["broken.dcm"]


def test_a_file_rewritten_in_place_with_its_times_restored_is_read_again_alone(tmp_path: Path,
                                                                               reads: List[str]) -> None:
    paths = _write_tree(tmp_path / "tree")
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        scan_folder(tmp_path / "tree", cache=cache)
        victim = paths[4]
        stat, folder_stat = victim.stat(), victim.parent.stat()
        data = victim.read_bytes()
        old, new = b"0.0\\0.0\\5.0", b"0.0\\0.0\\7.0"  # ImagePositionPatient, same length
        assert data.count(old) == 1
        with open(victim, "r+b") as stream:  # in place: same inode, folder mtime untouched
            stream.write(data.replace(old, new))
        os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert victim.stat().st_size == stat.st_size and victim.stat().st_ino == stat.st_ino
        assert victim.parent.stat().st_mtime_ns == folder_stat.st_mtime_ns
        reads.clear()
        again = scan_folder(tmp_path / "tree", cache=cache)
    assert reads == [victim.name]
    changed = next(h for h in again.instances if h.path == victim)
    assert changed.image_position == (0.0, 0.0, 7.0)
    assert _summary(again) == _summary(scan_folder(tmp_path / "tree", cache=None))


def test_a_file_replaced_by_another_is_read_again(tmp_path: Path, reads: List[str]) -> None:
    paths = _write_tree(tmp_path / "tree")
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        scan_folder(tmp_path / "tree", cache=cache)
        stats = [path.stat() for path in paths[:2]]
        os.replace(paths[1], paths[0])  # the first slice's name now holds the second's file (another inode)
        os.utime(paths[0], ns=(stats[0].st_atime_ns, stats[0].st_mtime_ns))
        reads.clear()
        again = scan_folder(tmp_path / "tree", cache=cache)
    assert sorted(reads) == [paths[0].name]
    assert next(h for h in again.instances if h.path == paths[0]).sop_instance_uid.endswith(".0.1")
    assert paths[1] not in [h.path for h in again.instances]
    assert _summary(again) == _summary(scan_folder(tmp_path / "tree", cache=None))


def test_added_and_removed_files_and_folders_are_seen(tmp_path: Path, reads: List[str]) -> None:
    paths = _write_tree(tmp_path / "tree")
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        scan_folder(tmp_path / "tree", cache=cache)
        paths[0].unlink()
        (paths[3].parent / "copy.dcm").write_bytes(paths[3].read_bytes())
        new_folder = tmp_path / "tree" / "PAT-2"
        new_folder.mkdir()
        (new_folder / "slice.dcm").write_bytes(paths[5].read_bytes())
        reads.clear()
        again = scan_folder(tmp_path / "tree", cache=cache)
        reads_after_change = sorted(reads)
        reads.clear()
        third = scan_folder(tmp_path / "tree", cache=cache)
    assert reads_after_change == ["copy.dcm", "slice.dcm"]
    assert reads == []
    assert _summary(again) == _summary(third) == _summary(scan_folder(tmp_path / "tree", cache=None))
    assert paths[0] not in [h.path for h in again.instances]


class _RunsWhenLoaded:
    """Unpickling this calls os.system: a cache record must never get that far."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch ran",))


def test_a_damaged_folder_record_costs_only_that_folder(tmp_path: Path, reads: List[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    paths = _write_tree(tmp_path / "tree")
    cache_path = tmp_path / "cache.sqlite"
    with IndexCache(cache_path) as cache:
        first = scan_folder(tmp_path / "tree", cache=cache)
    connection = sqlite3.connect(str(cache_path))
    folder_key = os.fsencode(paths[0].parent)
    (record,) = connection.execute("SELECT files FROM folders WHERE path = ?", (folder_key,)).fetchone()
    names, keys, others, shared, varying, columns = pickle.loads(record)
    assert others, "the folder's damaged file is recorded as such"
    files = len(names.split("\0"))
    damages = [
        record[:40],  # cut short
        '{"files": 3}',  # text, as schema 6 kept records
        pickle.dumps({"files": 3}),  # another layout
        pickle.dumps((names, keys, others, shared, varying, [column[:-1] for column in columns])),  # a value short
        pickle.dumps((names, keys, others, shared, varying, columns[:-1])),  # a varying field without its column
        pickle.dumps((names, keys, {}, shared, varying, columns)),  # a file with a key but no entry
        pickle.dumps((names, keys[:-1], others, shared, varying, columns)),  # a key cut short
        pickle.dumps((names, keys, {files: None}, shared, varying, columns)),  # no such file
        pickle.dumps((names, keys, {index: b"bytes" for index in others}, shared, varying, columns)),  # not text
        pickle.dumps((names, keys, others, {**shared, "modality": Path("CT")}, varying, columns)),  # names a class
        pickle.dumps((names, keys, others, shared, varying, columns + [_RunsWhenLoaded()])),  # would run a command
    ]
    monkeypatch.chdir(tmp_path)
    for damage in damages:
        changed = connection.execute("UPDATE folders SET files = ? WHERE path = ?", (damage, folder_key)).rowcount
        connection.commit()
        assert changed == 1
        with IndexCache(cache_path) as cache:
            reads.clear()
            again = scan_folder(tmp_path / "tree", cache=cache)
        assert sorted(reads) == sorted(path.name for path in paths[0].parent.iterdir()), damage
        assert _summary(again) == _summary(first)
    connection.close()
    assert not (tmp_path / "ran").exists(), "loading a cache record ran a command"


def test_headers_served_from_the_cache_behave_as_headers_read_from_the_files(tmp_path: Path) -> None:
    """A cached header keeps its path as text until first used; nothing that handles headers can tell."""
    import copy
    import dataclasses
    import pickle

    _write_tree(tmp_path / "tree")
    read = scan_folder(tmp_path / "tree", cache=None).instances
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        scan_folder(tmp_path / "tree", cache=cache)
        served = scan_folder(tmp_path / "tree", cache=cache).instances
    assert [type(header) for header in served] == [dicom_series.InstanceHeader] * 6
    # Pickled (as QA sends headers to worker processes) and copied before the path was ever used.
    unpickled = pickle.loads(pickle.dumps(served[0]))
    copied = copy.copy(served[1])
    replaced = dataclasses.replace(served[2], modality="MR")
    assert unpickled == read[0] and hash(unpickled) == hash(read[0]) and copied == read[1]
    assert replaced.path == read[2].path and replaced.modality == "MR"
    for header, expected in zip(served, read):
        assert isinstance(header.path, Path) and header.path == expected.path
        assert dataclasses.asdict(header) == dataclasses.asdict(expected) and header == expected
    with pytest.raises(AttributeError, match="no attribute 'no_such_field'"):
        getattr(served[3], "no_such_field")
    assert not hasattr(served[3], "_no_such_field")


def test_a_header_served_from_the_cache_takes_no_more_memory_than_one_read_from_its_file(tmp_path: Path) -> None:
    """Its attribute dictionary shares its keys with the class, as one filled by ``__init__`` does (a plain
    dictionary of the same ~30 values took nearly three times the memory: tens of MB for a large collection)."""
    import sys

    _write_tree(tmp_path / "tree")
    read = scan_folder(tmp_path / "tree", cache=None).instances
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        scan_folder(tmp_path / "tree", cache=cache)
        served = scan_folder(tmp_path / "tree", cache=cache).instances
    plain = dict(vars(served[0]))
    for header, expected in zip(served, read):
        assert sys.getsizeof(vars(header)) <= sys.getsizeof(vars(expected)) < sys.getsizeof(plain)
        assert header.path == expected.path  # the path made from its text on first use keeps the keys shared
        assert sys.getsizeof(vars(header)) <= sys.getsizeof(vars(expected))
        assert header == expected


@pytest.mark.parametrize("collector_was_enabled", [True, False])
def test_a_scan_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, collector_was_enabled: bool) -> None:
    import gc

    _write_tree(tmp_path / "tree")
    was = gc.isenabled()
    try:
        (gc.enable if collector_was_enabled else gc.disable)()
        with IndexCache(tmp_path / "cache.sqlite") as cache:
            scan_folder(tmp_path / "tree", cache=cache)
            assert gc.isenabled() is collector_was_enabled
            scan_folder(tmp_path / "tree", cache=cache)
            assert gc.isenabled() is collector_was_enabled
        with pytest.raises(LoadCancelled):
            scan_folder(tmp_path / "tree", progress=lambda message, fraction: True)  # the user cancels
        assert gc.isenabled() is collector_was_enabled
        with pytest.raises(RuntimeError, match="progress bar broke"):
            scan_folder(tmp_path / "tree", progress=_failing_progress)
        assert gc.isenabled() is collector_was_enabled
    finally:
        (gc.enable if was else gc.disable)()


_HOST_FREEZES = """
import gc, sys
from pathlib import Path
from SarcomaLungLiverBrowserLib.formats.dicom_series import scan_folder
from SarcomaLungLiverBrowserLib.formats.index_cache import IndexCache
tree, cache_path = Path(sys.argv[1]), Path(sys.argv[2])
gc.freeze()  # the host's own frozen objects (as a server does before forking workers)
frozen = gc.get_freeze_count()
with IndexCache(cache_path) as cache:
    first, again = scan_folder(tree, cache=cache), scan_folder(tree, cache=cache)
assert len(first.instances) == len(again.instances) == 6, (first, again)
print(frozen, gc.get_freeze_count())
"""


def test_a_scan_never_releases_objects_the_host_froze(tmp_path: Path) -> None:
    """The scan promotes its objects through freeze + unfreeze only when nothing else is frozen: a host's
    frozen objects stay frozen, and none of the scan's join them (in a fresh interpreter, so this process's
    collector is left as it was)."""
    import subprocess
    import sys

    _write_tree(tmp_path / "tree")
    completed = subprocess.run([sys.executable, "-c", _HOST_FREEZES, str(tmp_path / "tree"),
                                str(tmp_path / "cache.sqlite")], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    frozen_before, frozen_after = map(int, completed.stdout.split())
    # A frozen object the interpreter frees (a temporary of the imports) leaves the count: a few may go.
    assert frozen_before > 1000 and frozen_before - 100 <= frozen_after <= frozen_before


def test_a_scan_leaves_its_objects_in_the_oldest_generation_when_nothing_is_frozen(tmp_path: Path) -> None:
    """With no frozen objects, the scan's headers end in the oldest generation (no young collection traverses
    every header it made); with some (CPython 3.12.1 starts so), the scan leaves the generations alone."""
    import gc

    import subprocess
    import sys

    _write_tree(tmp_path / "tree")
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    at_start = subprocess.run([sys.executable, "-I", "-c", "import gc; print(gc.get_freeze_count())"],
                              capture_output=True, text=True, check=True, timeout=60).stdout
    assert frozen <= int(at_start)  # no earlier scan of this process left anything frozen
    if sys.version_info[:3] == (3, 12, 1):
        assert int(at_start) > 0  # the README: Slicer 5.12's Python starts with objects frozen
    scan = scan_folder(tmp_path / "tree")
    oldest = {id(thing) for thing in gc.get_objects(generation=2)}
    assert scan.instances and gc.get_freeze_count() == frozen
    assert all(id(header) in oldest for header in scan.instances) is (frozen == 0)


def _failing_progress(message: str, fraction: float) -> None:
    raise RuntimeError("progress bar broke")


def _recorded_folders(cache_path: Path) -> List[str]:
    connection = sqlite3.connect(str(cache_path))
    try:
        return sorted(os.fsdecode(row[0]) for row in connection.execute("SELECT path FROM folders"))
    finally:
        connection.close()


def test_records_of_removed_and_renamed_folders_are_dropped_and_other_trees_kept(tmp_path: Path) -> None:
    import shutil

    _write_tree(tmp_path / "tree")
    _write_tree(tmp_path / "tree-b")  # a sibling whose name starts like the scanned tree's
    (tmp_path / "tree" / "PAT-1" / ".hidden").mkdir()
    cache_path = tmp_path / "cache.sqlite"
    with IndexCache(cache_path) as cache:
        scan_folder(tmp_path / "tree", cache=cache)
        scan_folder(tmp_path / "tree-b", cache=cache)
        scan_folder(tmp_path / "tree" / "PAT-1" / ".hidden", cache=cache)  # the walk of "tree" skips it
        before = _recorded_folders(cache_path)
        shutil.rmtree(tmp_path / "tree" / "PAT-1" / "series-0")
        (tmp_path / "tree" / "PAT-1" / "series-1").rename(tmp_path / "tree" / "PAT-1" / "renamed")
        again = scan_folder(tmp_path / "tree", cache=cache)
    after = _recorded_folders(cache_path)
    tree = str(tmp_path / "tree")
    assert {tree + "/PAT-1/series-0", tree + "/PAT-1/series-1"} <= set(before)
    assert tree + "/PAT-1/series-0" not in after and tree + "/PAT-1/series-1" not in after
    assert tree + "/PAT-1/renamed" in after and tree + "/PAT-1/.hidden" in after
    assert [folder for folder in before if folder.startswith(str(tmp_path / "tree-b"))] == \
        [folder for folder in after if folder.startswith(str(tmp_path / "tree-b"))] != []
    assert len(again.instances) == 3


def test_a_tree_given_by_a_relative_path_is_cached_under_its_absolute_path(tmp_path: Path, reads: List[str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``sllb index data`` in two projects names two trees: the cache tells them apart and serves each from any
    working directory, while the scan's paths stay as the caller wrote them."""
    _write_tree(tmp_path / "project-a" / "data")
    _write_tree(tmp_path / "project-b" / "data")
    cache_path = tmp_path / "cache.sqlite"
    with IndexCache(cache_path) as cache:
        monkeypatch.chdir(tmp_path / "project-a")
        first = scan_folder(Path("data"), cache=cache)
        monkeypatch.chdir(tmp_path / "project-b")
        scan_folder(Path("data"), cache=cache)  # another tree of the same relative name: its own records
        monkeypatch.chdir(tmp_path)
        reads.clear()
        again = scan_folder(Path("project-a/./data/"), cache=cache)
    assert reads == [], "the tree was indexed from another working directory and is served from the cache"
    assert [str(header.path) for header in first.instances][0].startswith("data" + os.sep)
    assert [str(header.path) for header in again.instances][0].startswith(os.path.join("project-a", "data", ""))
    assert {os.path.relpath(header.path, "project-a") for header in again.instances} == \
        {str(header.path) for header in first.instances}
    recorded = _recorded_folders(cache_path)
    assert all(os.path.isabs(folder) for folder in recorded)
    assert str(tmp_path / "project-a" / "data" / "PAT-1" / "series-0") in recorded
    assert str(tmp_path / "project-b" / "data" / "PAT-1" / "series-0") in recorded


def test_opening_a_current_cache_writes_nothing_so_another_writer_never_blocks_a_reindex(tmp_path: Path,
                                                                                        reads: List[str]) -> None:
    _write_tree(tmp_path / "tree")
    cache_path = tmp_path / "cache.sqlite"
    with IndexCache(cache_path) as cache:
        first = scan_folder(tmp_path / "tree", cache=cache)
    reads.clear()
    writer = sqlite3.connect(str(cache_path), timeout=0.1)
    writer.execute("BEGIN IMMEDIATE")  # another process is writing to the cache
    try:
        with IndexCache(cache_path) as cache:
            again = scan_folder(tmp_path / "tree", cache=cache)
    finally:
        writer.rollback()
        writer.close()
    assert reads == [] and _summary(again) == _summary(first)
