"""Folder walks meet symbolic-link loops; `sllb index --csv` meets formulas in the data."""
from __future__ import annotations

import csv
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from SarcomaLungLiverBrowserLib import cli
from SarcomaLungLiverBrowserLib.formats.dicom_series import scan_folder
from SarcomaLungLiverBrowserLib.samples import crlm

DCMQI = Path("QIICR__dcmqi") / "data" / "segmentations"


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLLB_INDEX_CACHE", str(tmp_path / "header-cache.sqlite"))


def test_a_symbolic_link_loop_in_a_series_folder_is_skipped_with_a_warning(external_data: Path, tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "series"
    shutil.copytree(external_data / DCMQI / "ct-3slice", folder)
    os.symlink("loop.dcm", folder / "loop.dcm")
    os.symlink("b.dcm", folder / "a.dcm")
    os.symlink("a.dcm", folder / "b.dcm")
    with caplog.at_level(logging.WARNING):
        scan = scan_folder(folder)
    assert len(scan.instances) == 3
    assert f"{folder / 'loop.dcm'}: skipped, it is a symbolic link loop" in caplog.text  # the whole path
    assert "a.dcm" in caplog.text


@pytest.mark.parametrize("by_descriptor", [True, False])
def test_listing_through_a_descriptor_finds_what_listing_by_path_finds(tmp_path: Path, by_descriptor: bool,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk lists folders through open descriptors where the platform can (one name per stat to resolve);
    both ways give the same folders and keys, and neither follows a subfolder that is a link."""
    from SarcomaLungLiverBrowserLib.formats import dicom_series

    (tmp_path / "tree" / "a" / "b").mkdir(parents=True)
    for relative in ("x.dcm", "a/y.dcm", "a/b/z.dcm", "a/.hidden.dcm"):
        (tmp_path / "tree" / relative).write_bytes(b"data " + relative.encode())
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "outside.dcm").write_bytes(b"outside")
    os.symlink(tmp_path / "elsewhere", tmp_path / "tree" / "a" / "link")
    expected = {str(tmp_path / "tree"): {"x.dcm"}, str(tmp_path / "tree" / "a"): {"y.dcm"},
                str(tmp_path / "tree" / "a" / "b"): {"z.dcm"}}
    monkeypatch.setattr(dicom_series, "_LIST_BY_DESCRIPTOR", by_descriptor and dicom_series._LIST_BY_DESCRIPTOR)
    found = dicom_series._walk_folders(tmp_path / "tree")
    assert {folder: set(listing.names) for folder, listing in found} == expected
    for folder, listing in found:
        for name, key in listing.file_keys().items():
            status = os.stat(os.path.join(folder, name))
            assert key == (status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino)


def test_a_file_whose_inode_is_wider_than_64_bits_is_listed_with_its_folded_key(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.12 on Windows reports ReFS inodes of up to 128 bits: the walk still lists such a file, with the key
    ``file_key`` folds it to, beside a file whose key fits."""
    from types import SimpleNamespace

    from SarcomaLungLiverBrowserLib.formats import dicom_series

    (tmp_path / "wide.dcm").write_bytes(b"wide")
    (tmp_path / "plain.dcm").write_bytes(b"plain")
    real_scandir = os.scandir

    class WideInode:
        """A directory entry whose stat reports a 128-bit inode."""

        def __init__(self, entry: os.DirEntry) -> None:
            self.entry, self.name = entry, entry.name

        def is_dir(self, follow_symlinks: bool = True) -> bool:
            return self.entry.is_dir(follow_symlinks=follow_symlinks)

        def stat(self) -> SimpleNamespace:
            status = self.entry.stat()
            return SimpleNamespace(st_mode=status.st_mode, st_size=status.st_size, st_mtime_ns=status.st_mtime_ns,
                                   st_ctime_ns=status.st_ctime_ns, st_ino=2**100 + status.st_ino)

    def scandir(path):  # type: ignore[no-untyped-def]
        return [WideInode(entry) if entry.name == "wide.dcm" else entry for entry in real_scandir(path)]

    monkeypatch.setattr(dicom_series.os, "scandir", scandir)
    ((folder, listing),) = dicom_series._walk_folders(tmp_path)
    keys = listing.file_keys()
    wide, plain = os.stat(tmp_path / "wide.dcm"), os.stat(tmp_path / "plain.dcm")
    assert keys["wide.dcm"] == dicom_series.file_key(SimpleNamespace(
        st_size=wide.st_size, st_mtime_ns=wide.st_mtime_ns, st_ctime_ns=wide.st_ctime_ns, st_ino=2**100 + wide.st_ino))
    assert keys["plain.dcm"] == (plain.st_size, plain.st_mtime_ns, plain.st_ctime_ns, plain.st_ino)


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="O_NOFOLLOW is POSIX")
def test_a_subfolder_replaced_by_a_link_after_listing_is_not_followed(tmp_path: Path) -> None:
    """A folder listed as a folder may be swapped for a link before it is opened: the walk then skips it."""
    from SarcomaLungLiverBrowserLib.formats import dicom_series

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "outside.dcm").write_bytes(b"outside")
    os.symlink(tmp_path / "elsewhere", tmp_path / "swapped")
    pending: list = []
    assert dicom_series._list_folder(str(tmp_path / "swapped"), False, pending, True) is None
    # The root itself may be a link: the user asked for it by that name.
    assert dicom_series._list_folder(str(tmp_path / "swapped"), True, pending, True).names == ["outside.dcm"]


def test_links_to_files_are_followed_and_dangling_links_and_fifos_skipped_quietly(
        external_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The walk stats each entry once, following links as ``is_file()`` does: a link to a slice is that slice,
    a link to nothing and a FIFO are not files (and no warning, as there is nothing to fix)."""
    folder = tmp_path / "series"
    shutil.copytree(external_data / DCMQI / "ct-3slice", folder)
    first = sorted(folder.iterdir())[0]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    first.rename(outside / first.name)
    os.symlink(outside / first.name, folder / first.name)  # the slice itself lives elsewhere
    os.symlink(tmp_path / "gone.dcm", folder / "dangling.dcm")
    os.mkfifo(folder / "fifo.dcm")  # opening it would block the scan forever
    with caplog.at_level(logging.WARNING):
        scan = scan_folder(folder)
    assert len(scan.instances) == 3 and scan.errors == []
    assert str(folder / first.name) in {str(header.path) for header in scan.instances}
    assert "dangling.dcm" not in caplog.text and "fifo.dcm" not in caplog.text


def test_index_and_qa_end_with_a_message_naming_the_loop_not_a_traceback(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    root = crlm.generate(tmp_path / "collection")
    os.symlink("loop.dcm", root / "loop.dcm")
    # Discovery walks skip the loop with a warning naming it; the cases are indexed all the same.
    with caplog.at_level(logging.WARNING):
        assert cli.main(["index", str(root)]) == 0
    output = capsys.readouterr()
    assert "loop.dcm: skipped, it is a symbolic link loop" in caplog.text and "Traceback" not in output.err
    assert "3 case(s)" in output.out


def test_index_csv_keeps_formulas_from_the_data_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Text from the data (a diagnosis cell, a folder name) must not run as a formula in a spreadsheet."""
    from SarcomaLungLiverBrowserLib import browser

    root = crlm.generate(tmp_path / "collection")
    real_table = browser.cases_table

    def hostile_table(cases):  # type: ignore[no-untyped-def]
        table = real_table(cases)
        table.loc[0, "diagnosis"] = '=HYPERLINK("http://example.invalid/x","click")'
        table.loc[1, "diagnosis"] = float("nan")  # an empty cell stays empty, not "nan"
        return table

    monkeypatch.setattr(browser, "cases_table", hostile_table)
    out = tmp_path / "cases.csv"
    assert cli.main(["index", str(root), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert rows[0]["diagnosis"] == '\'=HYPERLINK("http://example.invalid/x","click")'
    assert rows[1]["diagnosis"] == ""
    assert len(pd.read_csv(out)) == len(rows)
