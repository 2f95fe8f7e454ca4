"""Review stores: foreign or damaged files are refused untouched; read-only commands never write the store."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from SarcomaLungLiverBrowserLib import cli
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats.atomic import check_output_set
from SarcomaLungLiverBrowserLib.review import store as store_module
from SarcomaLungLiverBrowserLib.review.report import write_verdicts_csv
from SarcomaLungLiverBrowserLib.review.store import ReviewStore, default_store_path, open_review_store
from SarcomaLungLiverBrowserLib.samples import hermessi


def _fingerprint(folder: Path) -> dict:
    """Name -> SHA-256 of every file in ``folder`` (new -wal/-shm files count as changes too)."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())
            if path.is_file()}


def _foreign(path: Path) -> Path:
    connection = sqlite3.connect(str(path))
    connection.execute("CREATE TABLE files (path TEXT, size INTEGER)")
    connection.execute("INSERT INTO files VALUES ('/data/a.dcm', 12)")
    connection.commit()
    connection.close()
    return path


def _damaged_store(path: Path) -> Path:
    with ReviewStore(path) as store:
        for number in range(400):
            store.set_verdict(f"case-{number}", "", "accepted", "x" * 100, "reviewer")
    connection = sqlite3.connect(str(path))
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.close()
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    data[page_size * 3:page_size * 3 + 200] = b"\xa5" * 200  # one page of the verdicts table
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line's header cache goes to the test's folder, never to $HOME."""
    monkeypatch.setenv("SLLB_INDEX_CACHE", str(tmp_path / "header-cache.sqlite"))


@pytest.fixture(scope="module")
def hermessi_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hermessi.generate(tmp_path_factory.mktemp("hermessi"))


def test_store_option_at_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    foreign = _foreign(tmp_path / "thesis.sqlite")
    before = _fingerprint(tmp_path)
    with pytest.raises(DataError, match=r"thesis.sqlite.*another application's SQLite database \(tables: files\)"):
        ReviewStore(foreign)
    with pytest.raises(DataError, match="thesis.sqlite"):
        open_review_store(tmp_path, foreign, read_only=True)
    assert _fingerprint(tmp_path) == before


@pytest.mark.parametrize("content", [b"", b"not sqlite at all, just text\n" * 10])
def test_empty_files_become_stores_and_text_files_are_refused(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    path.write_bytes(content)
    if not content:
        ReviewStore(path).close()
        return
    with pytest.raises(DataError, match="not an SQLite database"):
        ReviewStore(path)
    assert path.read_bytes() == content


def test_a_damaged_store_is_refused_untouched_and_qa_still_writes_its_report(hermessi_root: Path,
                                                                              tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "stores"
    folder.mkdir()
    damaged = _damaged_store(folder / "review.sqlite")
    before = _fingerprint(folder)
    with pytest.raises(DataError, match=r"review.sqlite.*damaged review store"):
        ReviewStore(damaged)
    assert _fingerprint(folder) == before
    out = tmp_path / "report"
    assert cli.main(["qa", str(hermessi_root), "--out", str(out), "--store", str(damaged)]) == 0
    assert "damaged review store" in capsys.readouterr().err
    assert check_output_set(out, "report").complete
    assert _fingerprint(folder) == before


def test_read_only_commands_never_write_the_store(hermessi_root: Path, tmp_path: Path) -> None:
    stores = tmp_path / "stores"
    stores.mkdir()
    path = stores / "review.sqlite"
    from SarcomaLungLiverBrowserLib.registry import open_collection

    case_id = open_collection(hermessi_root).discover_cases()[0].case_id
    assert cli.main(["review", str(hermessi_root), case_id, "--verdict", "accepted", "--reviewer", "ann",
                     "--store", str(path)]) == 0
    before = _fingerprint(stores)
    mtime = path.stat().st_mtime_ns
    export = tmp_path / "verdicts.csv"
    assert cli.main(["review", str(hermessi_root), "--export-csv", str(export), "--store", str(path)]) == 0
    assert cli.main(["qa", str(hermessi_root), "--out", str(tmp_path / "report"), "--store", str(path)]) == 0
    assert _fingerprint(stores) == before and path.stat().st_mtime_ns == mtime
    assert case_id in export.read_text()
    assert "1 of" in (tmp_path / "report" / "report.html").read_text()


def test_index_annotations_and_agreement_never_write_the_collection_store(hermessi_root: Path,
                                                                          tmp_path: Path) -> None:
    import shutil

    from SarcomaLungLiverBrowserLib.registry import open_collection

    root = tmp_path / "collection"
    shutil.copytree(hermessi_root, root)
    case_id = open_collection(root).discover_cases()[0].case_id
    assert cli.main(["review", str(root), case_id, "--verdict", "accepted", "--reviewer", "ann"]) == 0
    store = default_store_path(root)
    assert store.exists()
    before, mtime = _fingerprint(root), store.stat().st_mtime_ns
    assert cli.main(["--no-cache", "index", str(root), "--csv", str(tmp_path / "index.csv")]) == 0
    assert cli.main(["annotations", str(root), "--csv", str(tmp_path / "annotations.csv")]) == 0
    assert cli.main(["review", str(root), "--agreement", "--agreement-csv", str(tmp_path / "agreement.csv")]) == 0
    assert _fingerprint(root) == before and store.stat().st_mtime_ns == mtime
    assert case_id in (tmp_path / "index.csv").read_text()


def test_a_read_only_collection_with_a_store_still_shows_and_exports_its_verdicts(
        hermessi_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from SarcomaLungLiverBrowserLib.registry import open_collection

    collection = open_collection(hermessi_root)
    case_ids = [case.case_id for case in collection.discover_cases()]
    with open_review_store(hermessi_root) as store:
        store.set_verdict(case_ids[0], "", "needs correction", "contour leaks", "ann")
    before = _fingerprint(hermessi_root)
    # The folder now reports itself read-only (tests run as root, for whom chmod does not stop writes).
    real_access = store_module.os.access
    monkeypatch.setattr(store_module.os, "access",
                        lambda path, mode: False if mode == store_module.os.W_OK else real_access(path, mode))
    with pytest.raises(DataError, match="read-only"):
        open_review_store(hermessi_root)  # writing still needs another file
    with open_review_store(hermessi_root, read_only=True) as store:
        assert store.progress(case_ids)[0] == 1
        exported = write_verdicts_csv(tmp_path / "verdicts.csv", store, case_ids)
    assert "contour leaks" in exported.read_text()
    assert _fingerprint(hermessi_root) == before
    default_store_path(hermessi_root).unlink()


def test_every_table_of_a_current_store_is_known_as_a_review_store_table(tmp_path: Path) -> None:
    """A store this version writes (schema, readers, adjudications, known cases) is never taken for a foreign one."""
    import sqlite3

    from SarcomaLungLiverBrowserLib.review.store import ReviewStore
    from SarcomaLungLiverBrowserLib.review.store_files import REVIEW_STORE_TABLES, check_store_file

    path = tmp_path / "review.sqlite"
    store = ReviewStore(path)
    store.close()
    with sqlite3.connect(str(path)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables <= REVIEW_STORE_TABLES, tables - REVIEW_STORE_TABLES
    check_store_file(path)  # does not raise
