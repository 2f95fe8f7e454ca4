"""The header cache is never trusted on its own, and never harms a file that is not ours.

Real CT slices (pydicom's CT2 series from /work/shared/external_testdata) are
indexed, edited behind the cache's back with size and mtime restored, and the
cache is pointed at foreign and damaged SQLite files.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pydicom
import pytest

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats import dicom_series
from SarcomaLungLiverBrowserLib.formats.dicom_series import FolderListing, scan_folder
from SarcomaLungLiverBrowserLib.formats.index_cache import APPLICATION_ID, IndexCache, file_key

REPOSITORY = Path(__file__).resolve().parents[1]
CT2 = Path("pypi__pydicom-3.0.2")


def _real_slices(external_data: Path, folder: Path, count: int = 2) -> list:
    sources = sorted(path for path in (external_data / CT2).rglob("*") if path.is_file())
    datasets = []
    for source in sources:
        try:
            dataset = pydicom.dcmread(str(source))
        except Exception:  # noqa: BLE001 - DICOMDIR and friends
            continue
        if "PixelData" in dataset and "ImagePositionPatient" in dataset:
            datasets.append(dataset)
        if len(datasets) == count:
            break
    if len(datasets) < count:
        pytest.fail(f"fewer than {count} real CT slices below {external_data / CT2}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, dataset in enumerate(datasets):
        path = folder / f"slice{number}.dcm"
        dataset.save_as(str(path))
        paths.append(path)
    return paths


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_changed_with_size_and_mtime_restored_is_read_again(external_data: Path, tmp_path: Path) -> None:
    paths = _real_slices(external_data, tmp_path / "series")
    dataset = pydicom.dcmread(str(paths[0]))
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        first = {header.path.name: header.sop_instance_uid for header in scan_folder(tmp_path / "series",
                                                                                      cache=cache).instances}
        # Same length UID, same size; restore the modification time as `touch -r` would.
        stat = paths[0].stat()
        old_uid = dataset.SOPInstanceUID
        new_uid = old_uid[:-1] + ("1" if old_uid[-1] != "1" else "2")
        dataset.SOPInstanceUID = new_uid
        dataset.save_as(str(paths[0]))
        os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert paths[0].stat().st_size == stat.st_size and paths[0].stat().st_mtime_ns == stat.st_mtime_ns
        second = {header.path.name: header.sop_instance_uid for header in scan_folder(tmp_path / "series",
                                                                                       cache=cache).instances}
    assert first["slice0.dcm"] == old_uid and second["slice0.dcm"] == new_uid
    assert second["slice1.dcm"] == first["slice1.dcm"]


def test_swapped_slices_with_restored_times_are_not_served_from_the_cache(external_data: Path,
                                                                          tmp_path: Path) -> None:
    paths = _real_slices(external_data, tmp_path / "series")
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        before = {h.path.name: h.sop_instance_uid for h in scan_folder(tmp_path / "series", cache=cache).instances}
        stats = [path.stat() for path in paths]
        swap = tmp_path / "swap.dcm"
        shutil.move(str(paths[0]), str(swap))
        shutil.move(str(paths[1]), str(paths[0]))
        shutil.move(str(swap), str(paths[1]))
        for path, stat in zip(paths, stats):
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        after = {h.path.name: h.sop_instance_uid for h in scan_folder(tmp_path / "series", cache=cache).instances}
    assert after == {"slice0.dcm": before["slice1.dcm"], "slice1.dcm": before["slice0.dcm"]}


def test_renamed_files_whose_keys_a_rename_keeps_are_read_again(external_data: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows a rename keeps every part of a file's key (ctime is the creation time there and ``os.scandir``
    reports no inode): a folder whose names changed is not served as it was recorded, however equal its keys."""
    _real_slices(external_data, tmp_path / "series")
    folder = str(tmp_path / "series")
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        scan_folder(tmp_path / "series", cache=cache)
        keys = {path.name: file_key(path.stat()) for path in (tmp_path / "series").iterdir()}
        renamed = {"renamed-" + name: key for name, key in keys.items()}
        entries, unchanged = cache.folder_entries(folder, FolderListing.of_keys(renamed))
    assert not unchanged and entries == {}


def test_keys_wider_than_their_fields_are_folded_the_same_way_every_time() -> None:
    """Python 3.12 on Windows reports inodes of up to 128 bits (ReFS): such a key still packs into a listing,
    identically each time, and files that differ only there still get different keys."""
    from types import SimpleNamespace

    def stat(inode: int) -> SimpleNamespace:
        return SimpleNamespace(st_size=5, st_mtime_ns=-10**9, st_ctime_ns=10**18, st_ino=inode)

    wide, wider = file_key(stat(2**100 + 7)), file_key(stat(2**100 + 8))
    assert wide == file_key(stat(2**100 + 7)) and wide != wider
    assert file_key(stat(12345)) == (5, -10**9, 10**18, 12345), "keys that fit are kept as they are"
    listing = FolderListing.of_keys({"a.dcm": wide, "b.dcm": wider})
    assert listing.file_keys() == {"a.dcm": wide, "b.dcm": wider}


def test_unchanged_files_are_served_from_the_cache(external_data: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _real_slices(external_data, tmp_path / "series")
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        first = scan_folder(tmp_path / "series", cache=cache)

        def must_not_read(path: Path) -> None:
            raise AssertionError(f"{path} was read although unchanged")

        monkeypatch.setattr(dicom_series, "read_header", must_not_read)
        monkeypatch.setattr(dicom_series, "looks_like_dicom", must_not_read)
        again = scan_folder(tmp_path / "series", cache=cache)
        keys = {path.name: file_key(path.stat()) for path in (tmp_path / "series").iterdir()}
        # As listed, and as a file system listing the same files in another order would list them.
        listed = cache.folder_entries(str(tmp_path / "series"), FolderListing.of_keys(keys))
        reordered = cache.folder_entries(str(tmp_path / "series"), FolderListing.of_keys(dict(reversed(keys.items()))))
    assert again.instances == first.instances and len(again.instances) == 2
    for entries, unchanged in (listed, reordered):
        assert unchanged and all(header is not None for _, header, _ in entries.values())
        assert {path for path, _, _ in entries.values()} == {str(tmp_path / "series" / name) for name in keys}


def test_headers_holding_pydicom_value_types_are_still_served_from_the_cache(external_data: Path, tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Records load no class; pydicom's str, int and float subclasses are stored as the plain values they equal."""
    import dataclasses

    from pydicom.multival import MultiValue
    from pydicom.uid import UID
    from pydicom.valuerep import IS, DSfloat

    _real_slices(external_data, tmp_path / "series")
    expected = scan_folder(tmp_path / "series", cache=None).instances
    read_header = dicom_series.read_header

    def with_pydicom_values(path: Path) -> dicom_series.InstanceHeader:
        header = read_header(path)
        return dataclasses.replace(
            header, sop_instance_uid=UID(header.sop_instance_uid), instance_number=IS(header.instance_number),
            rescale_intercept=DSfloat(header.rescale_intercept), image_position=MultiValue(DSfloat, header.image_position))

    monkeypatch.setattr(dicom_series, "read_header", with_pydicom_values)
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        first = scan_folder(tmp_path / "series", cache=cache)
        assert isinstance(first.instances[0].sop_instance_uid, UID)

        def must_not_read(path: Path) -> None:
            raise AssertionError(f"{path} was read although unchanged")

        monkeypatch.setattr(dicom_series, "read_header", must_not_read)
        monkeypatch.setattr(dicom_series, "looks_like_dicom", must_not_read)
        again = scan_folder(tmp_path / "series", cache=cache)
    assert again.instances == expected
    served = again.instances[0]
    assert type(served.sop_instance_uid) is str and type(served.instance_number) is int
    assert type(served.rescale_intercept) is float and type(served.image_position) is tuple


def test_a_folder_whose_values_cannot_be_cached_is_indexed_and_read_again_next_time(
        external_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A header value the record cannot hold costs that folder its record, not the scan (the warning names it)."""
    import dataclasses

    _real_slices(external_data, tmp_path / "series")
    read_header = dicom_series.read_header
    reads = []

    def with_an_odd_value(path: Path) -> dicom_series.InstanceHeader:
        reads.append(path)
        return dataclasses.replace(read_header(path), series_description=object())  # type: ignore[arg-type]

    monkeypatch.setattr(dicom_series, "read_header", with_an_odd_value)
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        first = scan_folder(tmp_path / "series", cache=cache)
        again = scan_folder(tmp_path / "series", cache=cache)
    assert len(first.instances) == len(again.instances) == 2 and not first.errors
    assert len(reads) == 4, "the folder was read again: it had no record"
    assert str(tmp_path / "series") in caplog.text and "cannot be cached" in caplog.text


def _foreign_database(path: Path) -> Path:
    connection = sqlite3.connect(str(path))
    connection.execute("CREATE TABLE files (name TEXT, owner TEXT)")
    connection.execute("INSERT INTO files VALUES ('thesis.tex', 'me')")
    connection.execute("CREATE TABLE verdicts (case_id TEXT)")
    connection.commit()
    connection.close()
    return path


@pytest.mark.parametrize("kind", ["foreign", "review_store", "damaged", "text"])
def test_a_file_that_is_not_our_cache_is_refused_and_left_byte_identical(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    if kind == "foreign":
        _foreign_database(path)
    elif kind == "review_store":
        from SarcomaLungLiverBrowserLib.review.store import ReviewStore

        ReviewStore(path).close()
    elif kind == "damaged":
        _foreign_database(path)
        data = bytearray(path.read_bytes())
        data[100:400] = b"\xff" * 300
        path.write_bytes(bytes(data))
    else:
        path.write_text("not a database at all\n")
    before = _sha256(path)
    siblings = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError, match="other.sqlite"):
        IndexCache(path)
    assert _sha256(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings  # no -wal/-shm/-journal left either


def test_the_command_line_indexes_without_a_cache_it_must_refuse(external_data: Path, tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    _real_slices(external_data, tmp_path / "collection" / "series")
    foreign = _foreign_database(tmp_path / "foreign.sqlite")
    before = _sha256(foreign)
    from SarcomaLungLiverBrowserLib.service import ReviewService

    os.environ["SLLB_INDEX_CACHE"] = str(foreign)
    try:
        # What every command does first (the command line and the Logic share the service's set-up).
        ReviewService(header_cache="default", snapshots=False)._ensure_header_cache()
    finally:
        del os.environ["SLLB_INDEX_CACHE"]
        from SarcomaLungLiverBrowserLib.formats.dicom_series import set_default_index_cache
        set_default_index_cache(None)
    assert "foreign.sqlite" in caplog.text and "left untouched" in caplog.text
    assert _sha256(foreign) == before
    connection = sqlite3.connect(f"{foreign.as_uri()}?mode=ro", uri=True)
    assert connection.execute("SELECT name FROM files").fetchall() == [("thesis.tex",)]
    connection.close()


def test_our_old_cache_is_upgraded_and_marked_as_ours(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    connection = sqlite3.connect(str(path))
    connection.execute("CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, header TEXT, "
                       "error TEXT)")
    connection.execute("PRAGMA user_version=2")
    connection.commit()
    connection.close()
    IndexCache(path).close()
    connection = sqlite3.connect(str(path))
    assert connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    connection.close()


def test_damaged_rows_and_a_locked_cache_are_cache_misses(external_data: Path, tmp_path: Path) -> None:
    paths = _real_slices(external_data, tmp_path / "series")
    cache_path = tmp_path / "cache.sqlite"
    with IndexCache(cache_path) as cache:
        expected = sorted(h.sop_instance_uid for h in scan_folder(tmp_path / "series", cache=cache).instances)
    connection = sqlite3.connect(str(cache_path))
    damaged = connection.execute("UPDATE folders SET files = substr(files, 1, 40) WHERE path = ?",
                                 (os.fsencode(paths[0].parent),)).rowcount
    connection.commit()
    connection.close()
    assert damaged == 1
    with IndexCache(cache_path) as cache:
        assert sorted(h.sop_instance_uid for h in scan_folder(tmp_path / "series", cache=cache).instances) == expected
        blocker = sqlite3.connect(str(cache_path), timeout=0.1)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the cache
        try:
            again = sorted(h.sop_instance_uid for h in scan_folder(tmp_path / "series", cache=cache).instances)
        finally:
            blocker.rollback()
            blocker.close()
    assert again == expected
