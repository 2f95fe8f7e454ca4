"""Review as a reading study: readers, blinded reads, adjudication, migration, agreement statistics."""
from __future__ import annotations

import multiprocessing
import sqlite3
import time

import numpy as np
import pytest

from SarcomaLungLiverBrowserLib.review import store as review_store
from SarcomaLungLiverBrowserLib.review.agreement import (COHEN, FLEISS, cohen_kappa, fleiss_kappa, percent_agreement,
                                                         reader_agreement)
from SarcomaLungLiverBrowserLib.review.store import ReviewRecord, ReviewStore

inter_rater = pytest.importorskip("statsmodels.stats.inter_rater", reason="statsmodels is in the test extra")

#: The schema 1 store exactly as the current main writes it (review/store.py at b6e4d54: DDL of
#: ``_create_version_1``; each ``set_verdict`` an INSERT OR REPLACE into verdicts plus a history row).
MAIN_SCHEMA_1 = """
CREATE TABLE verdicts ( case_id TEXT NOT NULL, annotation TEXT NOT NULL, verdict TEXT NOT NULL, comment TEXT NOT NULL,
 reviewer TEXT NOT NULL, time TEXT NOT NULL, PRIMARY KEY (case_id, annotation));
CREATE TABLE history ( id INTEGER PRIMARY KEY AUTOINCREMENT, case_id TEXT NOT NULL, annotation TEXT NOT NULL,
 verdict TEXT NOT NULL, comment TEXT NOT NULL, reviewer TEXT NOT NULL, time TEXT NOT NULL);
CREATE INDEX history_case ON history (case_id);
PRAGMA user_version=1;
"""

MAIN_WRITES = [  # (case, annotation, verdict, comment, reviewer, time), in the order main wrote them
    ("C1", "", "accepted", "fine", "Ann", "2026-11-01T10:00:00.000+00:00"),
    ("C1", "", "needs correction", "tumour 2 leaks", "Bob", "2026-11-01T10:05:00.000+00:00"),  # overwrote Ann's
    ("C2", "Tumor_1", "rejected", "not a tumour", "Ann", "2026-11-01T10:06:00.000+00:00"),
    ("C2", "Tumor_1", "accepted", "changed my mind", "Ann", "2026-11-01T10:07:00.000+00:00"),
    ("C3", "", "rejected", "wrong patient, 'quoted' & <odd>", "Cy", "2026-11-01T10:08:00.000+00:00"),
]


def write_main_store(path) -> None:
    connection = sqlite3.connect(str(path))
    connection.executescript(MAIN_SCHEMA_1)
    for values in MAIN_WRITES:
        connection.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)", values)
        connection.execute("INSERT INTO history (case_id, annotation, verdict, comment, reviewer, time)"
                           " VALUES (?, ?, ?, ?, ?, ?)", values)
    connection.commit()
    connection.close()


def test_a_store_written_by_main_opens_after_migration_with_every_verdict_intact(tmp_path):
    path = tmp_path / "main.sqlite"
    write_main_store(path)
    with ReviewStore(path) as store:
        # Every verdict main had is there, and Ann's C1 read, overwritten by Bob under main, is back as her own.
        assert [(r.case_id, r.annotation, r.reviewer, r.verdict, r.comment) for r in store.verdicts()] == [
            ("C1", "", "Ann", "accepted", "fine"), ("C1", "", "Bob", "needs correction", "tumour 2 leaks"),
            ("C2", "Tumor_1", "Ann", "accepted", "changed my mind"),
            ("C3", "", "Cy", "rejected", "wrong patient, 'quoted' & <odd>")]
        assert [(r.case_id, r.verdict, r.reviewer, r.time) for r in store.history()] == [
            (case, verdict, reviewer, stamp) for case, _, verdict, _, reviewer, stamp in MAIN_WRITES]
        assert store.verdict("C1").reviewer == "Bob"  # what main showed as current is still current
        assert store.verdict("C2", "Tumor_1").item_type == "Tumor" and store.readers() == ["Ann", "Bob", "Cy"]
        assert {r.item_type for r in store.history("C1")} == {"case"}
        store.set_verdict("C1", "", "rejected", "", "Cy")
    connection = sqlite3.connect(str(path))
    assert connection.execute("PRAGMA user_version").fetchone()[0] == review_store.SCHEMA_VERSION == 2
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()


def test_readers_keep_their_own_verdicts_and_history(tmp_path):
    with ReviewStore(tmp_path / "r.sqlite") as store:
        store.set_verdict("C1", "Tumor_2", "accepted", "", "Ann")
        store.set_verdict("C1", "Tumor_2", "rejected", "outside the liver", "Bob")
        store.set_verdict("C1", "Tumor_2", "needs correction", "edge leaks", "Ann")  # Ann's own change
        reads = store.reads("C1", "Tumor_2")
        assert [(r.reviewer, r.verdict, r.item_type) for r in reads] == [("Ann", "needs correction", "Tumor"),
                                                                         ("Bob", "rejected", "Tumor")]
        assert [r.verdict for r in store.history("C1", reader="Ann")] == ["accepted", "needs correction"]
        assert store.verdict("C1", "Tumor_2", reader="Bob").comment == "outside the liver"


def test_a_blinded_reader_never_sees_another_readers_verdict_before_their_own(tmp_path):
    with ReviewStore(tmp_path / "b.sqlite") as store:
        store.set_verdict("C1", "", "rejected", "Bob's secret", "Bob")
        store.set_verdict("C2", "", "accepted", "Bob on C2", "Bob")
        ann = store.as_reader("Ann", blinded=True)
        hidden = [ann.reads("C1"), ann.verdicts(), ann.verdicts("C1"), ann.history(), ann.history("C1"),
                  ann.adjudications()]
        assert all(answer == [] for answer in hidden)
        assert ann.verdict("C1") is None and ann.progress(["C1", "C2"]) == (0, 2)
        assert ann.next_unreviewed(["C1", "C2"]) == "C1"
        ann.set_verdict("C1", "", "accepted", "Ann's own")
        # Now Ann sees the reads on C1 (hers is given) but still nothing of C2.
        assert [(r.reviewer, r.comment) for r in ann.reads("C1")] == [("Ann", "Ann's own"), ("Bob", "Bob's secret")]
        assert {r.case_id for r in ann.verdicts()} == {"C1"} and {r.case_id for r in ann.history()} == {"C1"}
        assert ann.reads("C2") == []
        unblinded = store.as_reader("Ann", blinded=False)
        assert {r.case_id for r in unblinded.verdicts()} == {"C1", "C2"}


def test_adjudication_settles_the_reads_it_saw(tmp_path):
    with ReviewStore(tmp_path / "a.sqlite") as store:
        with pytest.raises(ValueError, match="nothing to adjudicate"):
            store.adjudicate("C1", "", "accepted", "", "Ada")
        store.set_verdict("C1", "", "accepted", "", "Ann")
        store.set_verdict("C1", "", "rejected", "", "Bob")
        with pytest.raises(ValueError, match="cannot adjudicate"):
            store.adjudicate("C1", "", "accepted", "", "Ann")
        final = store.adjudicate("C1", "", "needs-correction", "both half right", "Ada")
        assert [(r.reviewer, r.verdict) for r in final.settles] == [("Ann", "accepted"), ("Bob", "rejected")]
        # A read changed afterwards does not change what the adjudication settled.
        store.set_verdict("C1", "", "needs correction", "", "Bob")
        again = store.adjudication("C1")
        assert [(r.reviewer, r.verdict) for r in again.settles] == [("Ann", "accepted"), ("Bob", "rejected")]
        assert store.verdict("C1").verdict == "needs correction" and store.verdict("C1").reviewer == "Ada"
        # Blinded readers see the adjudication only once they read the item themselves.
        assert store.as_reader("Cy").adjudications() == []
        assert store.as_reader("Ann").adjudication("C1").adjudicator == "Ada"


# ---------------------------------------------------------------------- several processes
ITEMS = [(f"P{index:03d}", annotation) for index in range(60) for annotation in ("", "Tumor_1")]


def _reader_process(path, reader, barrier):
    barrier.wait()
    with ReviewStore(path) as store:
        for number, (case_id, annotation) in enumerate(ITEMS):
            verdict = review_store.VERDICTS[(number + (reader == "Bob")) % 3]
            store.set_verdict(case_id, annotation, verdict, f"{reader} first", reader)
        for number, (case_id, annotation) in enumerate(ITEMS[::4]):  # every 4th item: the reader's own change
            store.set_verdict(case_id, annotation, "rejected", f"{reader} second", reader)


def _adjudicator_process(path, barrier):
    barrier.wait()
    pending = list(ITEMS[::3])
    deadline = time.monotonic() + 120
    with ReviewStore(path) as store:
        while pending and time.monotonic() < deadline:
            case_id, annotation = pending[0]
            if len(store.reads(case_id, annotation)) == 2:
                store.adjudicate(case_id, annotation, "accepted", "settled", "Ada")
                pending.pop(0)
            else:
                time.sleep(0.005)
    assert not pending


def test_two_readers_and_an_adjudicator_in_separate_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "study.sqlite")
    ReviewStore(path).close()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    workers = [context.Process(target=_reader_process, args=(path, reader, barrier)) for reader in ("Ann", "Bob")]
    workers.append(context.Process(target=_adjudicator_process, args=(path, barrier)))
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
        assert worker.exitcode == 0
    changed = set(ITEMS[::4])
    with ReviewStore(path) as store:
        verdicts = store.verdicts()
        assert len(verdicts) == 2 * len(ITEMS)  # one per reader and item, none overwritten by the other
        for record in verdicts:
            item = (record.case_id, record.annotation)
            expected = ("rejected", f"{record.reviewer} second") if item in changed else (
                review_store.VERDICTS[(ITEMS.index(item) + (record.reviewer == "Bob")) % 3],
                f"{record.reviewer} first")
            assert (record.verdict, record.comment) == expected
        history = store.history()
        assert len(history) == 2 * (len(ITEMS) + len(changed))
        for reader in ("Ann", "Bob"):
            own = [(r.case_id, r.annotation, r.comment) for r in history if r.reviewer == reader]
            assert own == ([(c, a, f"{reader} first") for c, a in ITEMS]
                           + [(c, a, f"{reader} second") for c, a in ITEMS[::4]])
        adjudications = store.adjudications()
        assert len(adjudications) == len(ITEMS[::3])
        for adjudication in adjudications:
            assert [r.reviewer for r in adjudication.settles] == ["Ann", "Bob"]
            for read in adjudication.settles:  # linked to the reads as they were when it was recorded
                assert read.history_id in {r.history_id for r in history}
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()


# ---------------------------------------------------------------------- agreement
#: Two readers, ten items; hand computation: 7 of 10 agree, p_o = 0.7.
#: Ann: A A A A A N N R R R ; Bob: A A A A N N R R R A  (A accepted, N needs correction, R rejected)
#: Ann's shares 0.5/0.2/0.3, Bob's 0.5/0.2/0.3 -> p_e = 0.25 + 0.04 + 0.09 = 0.38
#: kappa = (0.7 - 0.38) / (1 - 0.38) = 0.32 / 0.62 = 0.516129...
ANN = "AAAAANNRRR"
BOB = "AAAANNRRRA"
NAMES = {"A": "accepted", "N": "needs correction", "R": "rejected"}


def test_cohen_kappa_matches_hand_computation_and_statsmodels():
    first, second = [NAMES[v] for v in ANN], [NAMES[v] for v in BOB]
    assert percent_agreement(list(zip(first, second))) == pytest.approx(70.0)
    assert cohen_kappa(first, second) == pytest.approx(0.32 / 0.62, abs=1e-12)
    categories = sorted(NAMES.values())
    table = np.zeros((3, 3))
    for a, b in zip(first, second):
        table[categories.index(a), categories.index(b)] += 1
    assert cohen_kappa(first, second) == pytest.approx(inter_rater.cohens_kappa(table, return_results=False))
    assert cohen_kappa(first, first) == pytest.approx(1.0)
    assert cohen_kappa(["accepted"] * 3, ["accepted"] * 3) is None  # chance agreement 1: undefined


def test_fleiss_kappa_matches_hand_computation_and_statsmodels():
    # Four items, three readers, counts per category. By hand: P_i = 1, 1/3, 0, 1 -> P = 7/12;
    # category shares 5/12, 3/12, 4/12 -> P_e = (25 + 9 + 16) / 144 = 50/144; kappa = (7/12 - 50/144) / (94/144).
    counts = [[3, 0, 0], [1, 2, 0], [1, 1, 1], [0, 0, 3]]
    assert fleiss_kappa(counts) == pytest.approx((7 / 12 - 50 / 144) / (1 - 50 / 144))
    assert fleiss_kappa(counts) == pytest.approx(inter_rater.fleiss_kappa(np.array(counts), method="fleiss"))
    rng = np.random.default_rng(7)
    for _ in range(20):
        ratings = rng.integers(0, 3, size=(15, 4))
        table, _ = inter_rater.aggregate_raters(ratings, n_cat=3)
        assert fleiss_kappa(table.tolist()) == pytest.approx(inter_rater.fleiss_kappa(table, method="fleiss"))
        first, second = [str(v) for v in ratings[:, 0]], [str(v) for v in ratings[:, 1]]
        pair_table = np.zeros((3, 3))
        for a, b in zip(ratings[:, 0], ratings[:, 1]):
            pair_table[a, b] += 1
        assert cohen_kappa(first, second) == pytest.approx(inter_rater.cohens_kappa(pair_table,
                                                                                     return_results=False))


def test_agreement_per_collection_and_item_type_from_the_store(tmp_path):
    with ReviewStore(tmp_path / "k.sqlite") as store:
        for index, (a, b) in enumerate(zip(ANN, BOB)):
            store.set_verdict(f"C{index}", "", NAMES[a], "", "Ann")
            store.set_verdict(f"C{index}", "", NAMES[b], "", "Bob")
        store.set_verdict("C0", "Tumor_1", "accepted", "", "Ann")
        store.set_verdict("C0", "Tumor_1", "accepted", "", "Bob")
        store.set_verdict("C1", "Tumor_2", "rejected", "", "Ann")  # only Ann: not in the statistics
        rows = reader_agreement(store.verdicts())
    collection, case, tumour = rows
    assert (collection.group, collection.items, collection.statistic) == ("collection", 11, COHEN)
    assert (case.item_type, case.items, case.readers) == ("case", 10, ("Ann", "Bob"))
    assert case.kappa == pytest.approx(0.32 / 0.62) and case.percent_agreement == pytest.approx(70.0)
    assert (tumour.item_type, tumour.items, tumour.kappa, tumour.percent_agreement) == ("Tumor", 1, None, 100.0)
    assert "one category" in tumour.note
    three = reader_agreement([ReviewRecord("C1", "", "accepted", "", reader, "t", "case") for reader in "XYZ"])
    assert three[0].statistic == FLEISS and three[0].items == 1


def test_report_shows_each_reader_adjudications_history_and_agreement_escaped(tmp_path):
    from SarcomaLungLiverBrowserLib.registry import CaseInfo
    from SarcomaLungLiverBrowserLib.review.report import write_html_report

    cases = [CaseInfo("named", f"C{index}", tmp_path, diagnosis="x") for index in range(3)]
    with ReviewStore(tmp_path / "r.sqlite") as store:
        store.set_verdict("C0", "", "accepted", "<b>looks fine</b>", "Ann <a>")
        store.set_verdict("C0", "", "rejected", "first", "Bob")
        store.set_verdict("C0", "", "needs correction", "second thoughts", "Bob")
        store.set_verdict("C1", "", "accepted", "", "Ann <a>")
        store.set_verdict("C1", "", "accepted", "", "Bob")
        store.adjudicate("C0", "", "needs correction", "agreed with Bob", "Ada")
        page = write_html_report(tmp_path / "report.html", "Study", cases, store).read_text(encoding="utf-8")
    assert "<b>looks fine</b>" not in page and "&lt;b&gt;looks fine&lt;/b&gt;" in page
    assert "Ann &lt;a&gt;" in page and "<a>" not in page.replace('<a href="#', "")
    assert "needs correction (adjudicated)" in page and "Ada (adjudicator)" in page
    assert "settles Ann &lt;a&gt;: accepted, Bob: needs correction" in page
    assert "History (3 verdict(s))" in page and "first" in page  # Bob's changed verdict stays in the history
    assert "Agreement between readers" in page and "Cohen&#x27;s kappa" in page
    assert "overflow-wrap: anywhere" in page and 'src="http' not in page and "<link" not in page
