"""The review store: durable verdicts, concurrent writers, killed writers, resume."""
from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time

import pytest

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.review_store import ReviewStore, default_store_path


def test_verdicts_history_progress_and_resume(tmp_path):
    path = tmp_path / "review.sqlite"
    cases = ["C1", "C2", "C3"]
    with ReviewStore(path) as store:
        assert store.next_unreviewed(cases) == "C1"
        store.set_verdict("C1", "", "accepted", "fine", "Ann")
        store.set_verdict("C1", "", "needs-correction", "tumour 2 leaks", "Bob")
        store.set_verdict("C2", "Tumor_1", "rejected", "not a tumour", "Ann")
        assert store.verdict("C1").verdict == "needs correction" and store.verdict("C1").reviewer == "Bob"
        assert store.verdict("C2") is None and store.verdict("C2", "Tumor_1").verdict == "rejected"
        assert [r.verdict for r in store.history("C1")] == ["accepted", "needs correction"]
        assert store.progress(cases) == (1, 3)
        assert store.next_unreviewed(cases, after="C1") == "C2"
        assert store.next_unreviewed(cases, after="C3") == "C2"
    with ReviewStore(path) as reopened:  # resume after closing
        assert reopened.verdict("C1").comment == "tumour 2 leaks"
        for case_id in cases:
            reopened.set_verdict(case_id, "", "accepted", "", "Ann")
        assert reopened.next_unreviewed(cases) is None
        exported = reopened.export_csv(tmp_path / "review.csv", cases + ["C4"])
        text = exported.read_text()
        assert text.splitlines()[0] == "case_id,annotation,verdict,comment,reviewer,time"
        assert "C4,,,,," in text


def test_bad_verdicts_and_unwritable_locations_are_refused(tmp_path):
    with ReviewStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(ValueError, match="verdict must be one of"):
            store.set_verdict("C1", "", "maybe", "", "Ann")
        with pytest.raises(ValueError, match="reviewer"):
            store.set_verdict("C1", "", "accepted", "", " ")
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError) as raised:
        ReviewStore(blocker / "review.sqlite")
    assert "a file" in str(raised.value)
    assert default_store_path(tmp_path) == tmp_path / ".sllb_review.sqlite"


def _writer(path, prefix, count, barrier):
    barrier.wait()
    with ReviewStore(path) as store:
        for index in range(count):
            store.set_verdict(f"{prefix}{index:03d}", "", "accepted" if index % 2 else "rejected", "", prefix)


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "review.sqlite"
    ReviewStore(path).close()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_writer, args=(str(path), prefix, 150, barrier)) for prefix in ("A", "B")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    with ReviewStore(path) as store:
        assert len(store.verdicts()) == 300
        assert len(store.history()) == 300
    assert sqlite3.connect(str(path)).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _endless_writer(path, confirmed_log):
    with ReviewStore(path) as store:
        index = 0
        while True:
            store.set_verdict(f"K{index:06d}", "", "accepted", "x" * 200, "writer")
            # Only a verdict whose set_verdict returned is "confirmed".
            with open(confirmed_log, "a") as log:
                log.write(f"K{index:06d}\n")
                log.flush()
                os.fsync(log.fileno())
            index += 1


def kill_writer_runs(tmp_path, runs: int) -> None:
    """Kill a writer mid-stream ``runs`` times; every confirmed verdict must survive (issue 10 runs 100)."""
    path = tmp_path / "review.sqlite"
    confirmed_log = tmp_path / "confirmed.txt"
    ReviewStore(path).close()
    context = multiprocessing.get_context("fork")
    for run in range(runs):
        worker = context.Process(target=_endless_writer, args=(str(path), str(confirmed_log)))
        worker.start()
        time.sleep(0.02 + (run % 5) * 0.01)
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)
    confirmed = set(confirmed_log.read_text().split()) if confirmed_log.exists() else set()
    assert confirmed, "the writer never confirmed a verdict"
    with ReviewStore(path) as store:
        stored = {record.case_id for record in store.verdicts()}
    assert confirmed <= stored
    assert sqlite3.connect(str(path)).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_writer_killed_mid_write_loses_no_confirmed_verdict(tmp_path):
    kill_writer_runs(tmp_path, int(os.environ.get("SLLB_KILL_RUNS", "100")))
