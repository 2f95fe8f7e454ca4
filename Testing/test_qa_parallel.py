"""QA at scale: worker processes and a Dask cluster give the serial findings, survive a killed worker, and resume.

Not timed: these tests assert what the results are (identical to one process,
nothing lost, nothing duplicated), never how fast they came. The speed-up is
measured in benchmarks/bench_qa_parallel.py.

A worker is killed mid-case through the test hook of
:data:`~SarcomaLungLiverBrowserLib.review.parallel.PAUSE_FOLDER_VARIABLE`: each
worker marks the case it starts (``<index>.<pid>.started``) and waits while
``<index>.hold`` exists, so the test knows which process holds which case.
"""
from __future__ import annotations

import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Set

import pytest

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.findings import ERROR, INFO, WARNING, Finding
from SarcomaLungLiverBrowserLib.formats.atomic import check_output_set
from SarcomaLungLiverBrowserLib.registry import open_collection
from SarcomaLungLiverBrowserLib.review.parallel import CHECK_WORKER_LOST, PAUSE_FOLDER_VARIABLE
from SarcomaLungLiverBrowserLib.review.qa import CaseQA, CollectionQA, run_collection_qa
from SarcomaLungLiverBrowserLib.review.qa_journal import (JOURNAL_NAME, QAJournal, decode_case_result,
                                                          encode_case_result)
from SarcomaLungLiverBrowserLib.review.report import write_findings_csv
from SarcomaLungLiverBrowserLib.samples import SAMPLE_MODULES

from test_review_service import HEAVY_MODULES, imported_top_level_modules, sllb

#: Long enough for a worker to import slicer-core on a machine shared with other jobs; reached only on failure.
PATIENCE_SECONDS = 600


def sample_roots(sample_collections: Path) -> Dict[str, Path]:
    return {folder.name: folder for folder in sorted(sample_collections.iterdir()) if folder.is_dir()}


def comparable(result: CollectionQA) -> tuple:
    """Everything a report shows of a QA result, in report order."""
    return ([(case.case_id, case.loaded, case.status, tuple(case.findings)) for case in result.cases],
            tuple(result.collection_findings), tuple(result.notes))


@pytest.fixture(scope="module")
def serial_results(sample_collections: Path) -> Dict[str, CollectionQA]:
    """Every sample collection checked in one process: the reference."""
    return {name: run_collection_qa(open_collection(root)) for name, root in sample_roots(sample_collections).items()}


@pytest.fixture(scope="module")
def dask_pause_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dask_pause")


@pytest.fixture(scope="module")
def dask_cluster(dask_pause_folder: Path):
    """One local Dask cluster of two worker processes for the module (its start-up costs seconds)."""
    import distributed  # in requirements-lock.txt: the test environment has it (the extension needs it only for --scheduler)

    with pytest.MonkeyPatch.context() as patch:
        # The workers inherit the hook's folder, also those the nannies (in this process) start after a kill;
        # nothing waits unless a test puts a hold file there.
        patch.setenv(PAUSE_FOLDER_VARIABLE, str(dask_pause_folder))
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None)
        try:
            yield cluster
        finally:
            cluster.close()


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def started(folder: Path, index: int) -> List[int]:
    """The process IDs that started checking case ``index`` (oldest first)."""
    markers = sorted(folder.glob(f"{index}.*.started"), key=lambda path: path.stat().st_mtime_ns)
    return [int(path.name.split(".")[1]) for path in markers]


def started_cases(folder: Path) -> Set[int]:
    return {int(path.name.split(".")[0]) for path in folder.glob("*.started")}


def kill_workers_holding(folder: Path, index: int, kills: int) -> threading.Thread:
    """A thread that, ``kills`` times, waits for a new worker to start case ``index`` and kills it mid-case."""
    (folder / f"{index}.hold").touch()
    errors: List[BaseException] = []

    def run() -> None:
        try:
            killed: List[int] = []
            for _ in range(kills):
                wait_for(lambda: [pid for pid in started(folder, index) if pid not in killed], f"case {index} to start")
                pid = [pid for pid in started(folder, index) if pid not in killed][0]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        except BaseException as error:  # noqa: BLE001 - reported by the test through the thread object
            errors.append(error)
        finally:
            (folder / f"{index}.hold").unlink()

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def assert_killer_done(thread: threading.Thread) -> None:
    thread.join(PATIENCE_SECONDS)
    assert not thread.is_alive()
    assert not thread.errors, thread.errors  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- identical findings
def test_two_worker_processes_give_the_serial_findings_on_every_sample_collection(sample_collections,
                                                                                   serial_results):
    assert len(serial_results) == len(SAMPLE_MODULES)  # every sample collection
    for name, root in sample_roots(sample_collections).items():
        parallel = run_collection_qa(open_collection(root), workers=2)
        assert comparable(parallel) == comparable(serial_results[name]), name
        # the reference itself is not empty: the comparison can fail
        assert serial_results[name].all_findings(), name


def test_two_worker_processes_give_the_serial_findings_on_a_larger_generated_collection(tmp_path):
    """The benchmark's collection at scale (crlm.scaled_patients: the sample plans under new PatientIDs), smaller:
    every case a patient of its own, each checked once, findings as one process gives them."""
    from SarcomaLungLiverBrowserLib.samples import crlm

    patients = crlm.scaled_patients(5, slices=12)
    assert len({plan.patient_id for plan in patients}) == 5 and len({plan.seed for plan in patients}) == 5
    collection = open_collection(crlm.generate(tmp_path, patients))
    serial = run_collection_qa(collection)
    assert [case.case_id for case in serial.cases] == sorted(plan.patient_id for plan in patients)
    parallel = run_collection_qa(open_collection(collection.root), workers=2)
    assert comparable(parallel) == comparable(serial)
    assert serial.all_findings()  # the reference is not empty: the comparison can fail


def test_a_local_dask_cluster_gives_the_serial_findings_on_every_sample_collection(sample_collections,
                                                                                    serial_results, dask_cluster):
    for name, root in sample_roots(sample_collections).items():
        distributed = run_collection_qa(open_collection(root), scheduler=dask_cluster.scheduler_address)
        assert comparable(distributed) == comparable(serial_results[name]), name


# ---------------------------------------------------------------------- a worker killed mid-case
def crlm(sample_collections: Path) -> Path:
    return sample_roots(sample_collections)["Colorectal-Liver-Metastases"]


def test_a_worker_process_killed_mid_case_loses_and_duplicates_nothing(sample_collections, serial_results,
                                                                       tmp_path, monkeypatch):
    pause = tmp_path / "pause"
    pause.mkdir()
    monkeypatch.setenv(PAUSE_FOLDER_VARIABLE, str(pause))
    killer = kill_workers_holding(pause, 1, kills=1)
    result = run_collection_qa(open_collection(crlm(sample_collections)), workers=2,
                               journal=tmp_path / JOURNAL_NAME)
    assert_killer_done(killer)
    assert len(started(pause, 1)) == 2, "the killed case was not checked again in a new worker"
    assert comparable(result) == comparable(serial_results["Colorectal-Liver-Metastases"])
    with QAJournal(tmp_path / JOURNAL_NAME) as journal:
        assert journal.case_ids() == ["CRLM-CT-1001", "CRLM-CT-1002", "CRLM-CT-1003"]


def test_a_case_that_kills_every_worker_is_reported_and_the_others_are_checked(sample_collections, serial_results,
                                                                               tmp_path, monkeypatch):
    pause = tmp_path / "pause"
    pause.mkdir()
    monkeypatch.setenv(PAUSE_FOLDER_VARIABLE, str(pause))
    killer = kill_workers_holding(pause, 0, kills=3)
    result = run_collection_qa(open_collection(crlm(sample_collections)), workers=2)
    assert_killer_done(killer)
    reference = serial_results["Colorectal-Liver-Metastases"]
    lost = result.cases[0]
    assert not lost.loaded and [finding.check for finding in lost.findings] == [CHECK_WORKER_LOST]
    assert "CRLM-CT-1001" in lost.findings[0].message and "died 3 time(s)" in lost.findings[0].message
    # The cases that only shared a pool with it were checked again alone, not blamed.
    assert [(case.case_id, tuple(case.findings)) for case in result.cases[1:]] == \
        [(case.case_id, tuple(case.findings)) for case in reference.cases[1:]]


def test_a_dask_worker_killed_mid_case_loses_and_duplicates_nothing(sample_collections, serial_results,
                                                                    dask_cluster, dask_pause_folder):
    for marker in dask_pause_folder.iterdir():
        marker.unlink()
    killer = kill_workers_holding(dask_pause_folder, 1, kills=1)
    result = run_collection_qa(open_collection(crlm(sample_collections)), scheduler=dask_cluster.scheduler_address)
    assert_killer_done(killer)
    assert len(started(dask_pause_folder, 1)) == 2, "the killed case was not rescheduled on a live worker"
    assert comparable(result) == comparable(serial_results["Colorectal-Liver-Metastases"])


# ---------------------------------------------------------------------- resuming an interrupted run
def journal_case_ids(path: Path) -> List[str]:
    if not path.exists():
        return []
    try:
        with QAJournal(path) as journal:
            return journal.case_ids()
    except DataError:
        return []  # being created by the run


def sllb_process(*arguments: object, environment: Dict[str, str]) -> subprocess.Popen:
    library_parent = Path(__file__).resolve().parents[1] / "SarcomaLungLiverBrowser"
    environment = dict(os.environ, **environment,
                       PYTHONPATH=os.pathsep.join([str(library_parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-m", "SarcomaLungLiverBrowserLib", "--no-cache", *map(str, arguments)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
                            start_new_session=True)


def test_a_killed_run_resumes_with_the_cases_it_had_not_recorded(sample_collections, serial_results, tmp_path):
    root = crlm(sample_collections)
    out, pause = tmp_path / "report", tmp_path / "pause"
    pause.mkdir()
    journal = out / JOURNAL_NAME
    (pause / "2.hold").touch()
    run = sllb_process("qa", root, "--out", out, "--workers", "2",
                       environment={PAUSE_FOLDER_VARIABLE: str(pause)})
    try:
        wait_for(lambda: started(pause, 2) and len(journal_case_ids(journal)) == 2 or run.poll() is not None,
                 "two cases recorded while the third is held")
        assert run.poll() is None, run.communicate()
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the whole run, workers included, as a crash or kill -9 would
        run.communicate()
        (pause / "2.hold").unlink()
    assert journal_case_ids(journal) == ["CRLM-CT-1001", "CRLM-CT-1002"]
    assert not check_output_set(out, "report").complete, "an interrupted run must not look complete"

    # Resumed in one process (the journal does not depend on how cases run): only the third case is checked.
    resumed = sllb("-v", "qa", root, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    assert checked_cases(resumed.stderr) == ["CRLM-CT-1003"]
    assert "2 of 3 case(s) already checked with the same inputs" in resumed.stderr
    reference = tmp_path / "serial_findings.csv"
    write_findings_csv(reference, serial_results["Colorectal-Liver-Metastases"])
    assert (out / "findings.csv").read_bytes() == reference.read_bytes()
    assert check_output_set(out, "report").complete
    assert journal_case_ids(journal) == ["CRLM-CT-1001", "CRLM-CT-1002", "CRLM-CT-1003"]

    # A case whose files changed is checked again; --no-resume checks every case.
    case = open_collection(root).discover_cases()[0]
    files = [path for source in case.source_paths()
             for path in ([source] if source.is_file() else sorted(source.rglob("*"))) if path.is_file()]
    status = files[0].stat()
    os.utime(files[0], ns=(status.st_atime_ns, status.st_mtime_ns + 10_000_000_000))
    try:
        again = sllb("-v", "qa", root, "--out", out)
    finally:
        os.utime(files[0], ns=(status.st_atime_ns, status.st_mtime_ns))
    assert again.returncode == 0, again.stderr
    assert checked_cases(again.stderr) == ["CRLM-CT-1001"]
    fresh = sllb("-v", "qa", root, "--out", out, "--no-resume")
    assert fresh.returncode == 0, fresh.stderr
    assert checked_cases(fresh.stderr) == ["CRLM-CT-1001", "CRLM-CT-1002", "CRLM-CT-1003"]
    assert (out / "findings.csv").read_bytes() == reference.read_bytes()


def checked_cases(progress_log: str) -> List[str]:
    """The cases a serial ``sllb -v qa`` run checked, from its progress lines."""
    return re.findall(r"Case \d+ of \d+: checking (\S+)$", progress_log, flags=re.MULTILINE)


# ---------------------------------------------------------------------- the journal and the command line
def test_the_journal_keeps_findings_exactly_and_refuses_a_file_that_is_not_one(tmp_path):
    from SarcomaLungLiverBrowserLib.registry import CaseInfo

    case = CaseInfo("tiny", "T1", tmp_path)
    shared = Finding(WARNING, "tiny.table", "table says 5")
    findings = [Finding(ERROR, "a.b", "x", "T1", "/p", "node", "seg", (1.0, -2.5, 3.25), float("inf")),
                shared, Finding(INFO, "c", "y", "T1", value=2)]
    result = CaseQA(case, findings, {"dice": 0.5}, loaded=True)
    result.unattributed = [shared]
    with QAJournal(tmp_path / JOURNAL_NAME) as journal:
        journal.record("T1", "fingerprint", encode_case_result(result, ["a note"]))
        assert journal.recorded("T1", "other inputs") is None
        decoded, notes = decode_case_result(case, journal.recorded("T1", "fingerprint"))
    assert decoded.findings == findings and decoded.unattributed == [shared] and notes == ["a note"]
    assert decoded.findings[0].ras == (1.0, -2.5, 3.25) and decoded.metrics == {"dice": 0.5}

    # Undefined measures are nan (e.g. the HD95 of a structure the AI did not segment): kept as nan, not refused.
    agreement = {"seg_agreement": [{"structure": "Liver", "dice": 0.9, "hd95_mm": float("nan"),
                                    "volume_difference_ml": float("-inf")}]}
    with QAJournal(tmp_path / JOURNAL_NAME) as journal:
        journal.record("T1", "nan", encode_case_result(CaseQA(case, [], agreement, loaded=True), []))
        kept = decode_case_result(case, journal.recorded("T1", "nan"))[0].metrics["seg_agreement"][0]
    assert kept["dice"] == 0.9 and math.isnan(kept["hd95_mm"]) and kept["volume_difference_ml"] == float("-inf")

    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE verdicts (x)")
    before = other.read_bytes()
    with pytest.raises(DataError, match="other.sqlite.*is not a QA journal"):
        QAJournal(other)
    assert other.read_bytes() == before


def test_command_line_options_are_checked_and_do_not_import_dask_at_start_up(tmp_path):
    both = sllb("qa", tmp_path, "--out", tmp_path / "out", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert both.returncode == 2 and "not both" in both.stderr
    none = sllb("qa", tmp_path, "--out", tmp_path / "out", "--workers", "0")
    assert none.returncode == 2 and "--workers" in none.stderr
    light = sllb("qa", "--help", python_options=("-X", "importtime"))
    assert light.returncode == 0 and "--scheduler" in light.stdout
    imported = imported_top_level_modules(light.stderr)
    assert "SarcomaLungLiverBrowserLib" in imported, "the import log was not read"
    assert not imported & {"dask", "distributed", "tornado", *HEAVY_MODULES}, sorted(imported)


def test_without_dask_installed_a_scheduler_address_gets_a_message_saying_what_to_install(tmp_path, monkeypatch):
    from SarcomaLungLiverBrowserLib.review.parallel import run_on_dask

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(RuntimeError, match=r"needs the packages dask and distributed.*pip install"):
        list(run_on_dask([], "tcp://127.0.0.1:8786"))
