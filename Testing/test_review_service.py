"""The review service: one workflow for the Slicer Logic and the command line.

The module's Logic and ``sllb qa`` write the same report (with snapshots) for
the same collection and store, and recording a verdict from the command line
imports nothing heavy once the store knows the collection's cases.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.review.store import ReviewStore
from SarcomaLungLiverBrowserLib.service import ReviewService

from test_module import import_module_file

LIBRARY_PARENT = Path(__file__).resolve().parents[1] / "SarcomaLungLiverBrowser"

#: What recording a verdict must not import (the collection modules are being made light as well).
HEAVY_MODULES = ("vtk", "slicer", "highdicom", "pandas", "pydicom", "nibabel", "lxml", "numpy")


def sllb(*arguments: object, python_options: tuple = ()) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(LIBRARY_PARENT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, *python_options, "-m", "SarcomaLungLiverBrowserLib", "--no-cache",
                           *map(str, arguments)], capture_output=True, text=True, env=environment)


def imported_top_level_modules(importtime_log: str) -> set:
    """Top-level names of every module in a ``python -X importtime`` log."""
    names = set()
    for line in importtime_log.splitlines():
        match = re.match(r"import time:\s+\d+\s+\|\s+\d+\s+\|\s*(\S+)", line)
        if match:
            names.add(match.group(1).split(".")[0])
    return names


def without_timestamps(page: str) -> str:
    return re.sub(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "Generated <time>", page)


@pytest.fixture
def crlm_root(tmp_path: Path) -> Path:
    from SarcomaLungLiverBrowserLib.samples import crlm

    return crlm.generate(tmp_path / "data")


def test_logic_and_command_line_write_the_same_report_with_snapshots(headless, crlm_root, tmp_path):
    store_path = tmp_path / "review.sqlite"
    with ReviewStore(store_path) as store:
        store.set_verdict("CRLM-CT-1001", "", "accepted", "liver <fine> & clean", "Ann")
        store.set_verdict("CRLM-CT-1001", "", "rejected", "remnant missing", "Bob")
        store.set_verdict("CRLM-CT-1002", "Tumor_8", "needs correction", "", "Ann")

    module = import_module_file()
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    logic.openCollection(str(crlm_root))
    logic.setReviewStorePath(str(store_path))
    nodes_before = headless.scene.GetNumberOfNodes()
    logic.runCollectionQA()
    assert headless.scene.GetNumberOfNodes() == nodes_before, "QA left nodes in the user's scene"
    logic_paths = logic.exportReview(str(tmp_path / "from_logic"), reviewer="Dr QA")

    result = sllb("qa", crlm_root, "--out", tmp_path / "from_cli", "--store", store_path, "--snapshots",
                  "--reviewer", "Dr QA")
    assert result.returncode == 0, result.stderr

    logic_page = (tmp_path / "from_logic" / "report.html").read_text(encoding="utf-8")
    cli_page = (tmp_path / "from_cli" / "report.html").read_text(encoding="utf-8")
    # (1003's AI SEG brings the expert vs AI agreement CSVs.)
    assert {path.name for path in logic_paths} == {"review.csv", "findings.csv", "report.html",
                                                   "segmentation_agreement.csv", "segmentation_agreement_summary.csv"}
    # One snapshot per case, inline, in both.
    assert logic_page.count('src="data:image/png;base64,') == 3
    assert without_timestamps(logic_page) == without_timestamps(cli_page)
    for name in ("review.csv", "findings.csv", "segmentation_agreement.csv", "segmentation_agreement_summary.csv"):
        assert (tmp_path / "from_logic" / name).read_bytes() == (tmp_path / "from_cli" / name).read_bytes()
    assert "liver &lt;fine&gt; &amp; clean" in logic_page


def test_a_verdict_from_the_command_line_imports_nothing_heavy_once_the_store_knows_the_cases(crlm_root, tmp_path):
    store = tmp_path / "review.sqlite"
    # The first verdict indexes the collection and lets the store remember its case IDs.
    first = sllb("review", crlm_root, "CRLM-CT-1001", "--verdict", "accepted", "--reviewer", "Ann", "--store", store)
    assert first.returncode == 0, first.stderr
    with ReviewStore(store) as opened:
        assert opened.known_cases(crlm_root) == ("crlm", ["CRLM-CT-1001", "CRLM-CT-1002", "CRLM-CT-1003"])

    light = sllb("review", crlm_root, "crlm-ct-1002", "--verdict", "needs-correction", "--reviewer", "Bob",
                 "--store", store, python_options=("-X", "importtime"))
    assert light.returncode == 0, light.stderr
    assert "CRLM-CT-1002: needs correction by Bob" in light.stdout and "1 of 3 reviewed" in light.stdout
    imported = imported_top_level_modules(light.stderr)
    assert "sqlite3" in imported and "SarcomaLungLiverBrowserLib" in imported, "the import log was not read"
    assert not imported & set(HEAVY_MODULES), f"recording a verdict imported {sorted(imported & set(HEAVY_MODULES))}"
    # The light path never detected the collection either.
    assert not any(name.startswith("SarcomaLungLiverBrowserLib.collections.") for name in
                   re.findall(r"\|\s*(SarcomaLungLiverBrowserLib\.\S+)", light.stderr))

    # A case ID the store does not know makes the command index the folder after all, then refuse it.
    unknown = sllb("review", crlm_root, "CRLM-CT-9999", "--verdict", "accepted", "--reviewer", "Ann", "--store", store)
    assert unknown.returncode == 2 and "CRLM-CT-9999" in unknown.stderr and str(crlm_root) in unknown.stderr
    with ReviewStore(store) as opened:
        assert [(r.case_id, r.reviewer, r.verdict) for r in opened.verdicts()] == [
            ("CRLM-CT-1001", "Ann", "accepted"), ("CRLM-CT-1002", "Bob", "needs correction")]


def test_service_store_location_reading_and_a_read_only_collection(crlm_root, tmp_path, monkeypatch):
    with ReviewService(header_cache=None, snapshots=False) as service:
        service.open(crlm_root)
        assert service.store_location_problem() is None
        assert service.existing_store() is None and not (crlm_root / ".sllb_review.sqlite").exists()
        service.set_reader("Ann")
        record = service.set_verdict("crlm-ct-1003", "rejected", "wrong patient")
        assert (record.case_id, record.reviewer) == ("CRLM-CT-1003", "Ann")
        assert (crlm_root / ".sllb_review.sqlite").is_file()
        assert service.review_progress() == (1, 3) and service.next_unreviewed_case_id() == "CRLM-CT-1001"
        with pytest.raises(DataError, match="has no case 'NOPE'"):
            service.set_verdict("NOPE", "accepted", "")

    # A collection on a read-only share: the service says so, and takes a store the caller chose elsewhere.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == crlm_root and mode == os.W_OK
                        else real_access(path, mode))
    with ReviewService(header_cache=None, snapshots=False) as service:
        service.open(crlm_root)
        assert "read-only" in service.store_location_problem()
        with pytest.raises(DataError, match="choose another file"):
            service.store()
        service.set_store_path(tmp_path / "elsewhere.sqlite")
        assert service.store_location_problem() is None
        service.set_verdict("CRLM-CT-1001", "accepted", "", reviewer="Bob")
        assert service.store().path == tmp_path / "elsewhere.sqlite"


def test_blinded_readers_adjudication_and_agreement_through_the_logic_and_the_command_line(headless, crlm_root,
                                                                                            tmp_path):
    store_path = tmp_path / "study.sqlite"
    module = import_module_file()
    logic = module.SarcomaLungLiverBrowserLogic(headless.scene)
    logic.openCollection(str(crlm_root))
    logic.setReviewStorePath(str(store_path))
    case_ids = logic.caseIds()
    logic.setReader("Ann", blinded=True)
    for case_id in case_ids:
        logic.setVerdict(case_id, "accepted", f"Ann on {case_id}")
    logic.setReader("Bob", blinded=True)
    # Bob has read nothing: Ann's verdicts and comments are hidden from every call he can make.
    assert logic.verdictOf(case_ids[0]) == "" and logic.commentOf(case_ids[0]) == ""
    assert logic.reads(case_ids[0]) == [] and logic.service.history() == []
    assert logic.reviewProgress() == (0, 3) and logic.nextUnreviewedCaseId() == case_ids[0]
    with pytest.raises(PermissionError, match="blinded"):
        logic.agreement()
    logic.setVerdict(case_ids[0], "rejected", "Bob disagrees")
    assert [(r.reviewer, r.verdict) for r in logic.reads(case_ids[0])] == [("Ann", "accepted"), ("Bob", "rejected")]
    assert logic.reads(case_ids[1]) == []
    for case_id in case_ids[1:]:
        logic.setVerdict(case_id, "accepted", "")
    kinds = {row.item_type: row for row in logic.agreement()}
    assert kinds["case"].items == 3 and kinds["case"].percent_agreement == pytest.approx(200 / 3)

    logic.setReader("Ada", blinded=False)
    final = logic.adjudicate(case_ids[0].lower(), "needs-correction", "both half right", "Ada")
    assert final.case_id == case_ids[0] and [r.reviewer for r in final.settles] == ["Ann", "Bob"]
    node = logic.agreementTableNode()
    assert node.GetTable().GetNumberOfRows() == 2 and node.GetTable().GetColumnByName("kappa") is not None

    result = sllb("review", crlm_root, "--agreement", "--store", store_path, "--agreement-csv", tmp_path / "a.csv")
    assert result.returncode == 0, result.stderr
    assert "Cohen's kappa" in result.stdout and "Ann, Bob" in result.stdout
    assert (tmp_path / "a.csv").read_text(encoding="utf-8").startswith("group,item_type,readers,items,")
    adjudicated = sllb("review", crlm_root, case_ids[1], "--verdict", "accepted", "--adjudicate", "--reviewer", "Ada",
                       "--store", store_path)
    assert adjudicated.returncode == 0 and "settling Ann: accepted, Bob: accepted" in adjudicated.stdout


def test_command_line_reads_side_by_side_and_blinded(crlm_root, tmp_path):
    store = tmp_path / "study.sqlite"
    assert sllb("review", crlm_root, "CRLM-CT-1001", "--verdict", "rejected", "--comment", "Ann's reason",
                "--reviewer", "Ann", "--store", store).returncode == 0
    blinded = sllb("review", crlm_root, "CRLM-CT-1001", "--reads", "--reviewer", "Bob", "--blinded", "--store", store)
    assert blinded.returncode == 0, blinded.stderr
    assert "no verdicts (blinded" in blinded.stdout and "Ann" not in blinded.stdout
    exported = sllb("review", crlm_root, "--export-csv", tmp_path / "bob.csv", "--reviewer", "Bob", "--blinded",
                    "--store", store)
    assert exported.returncode == 0 and "Ann" not in (tmp_path / "bob.csv").read_text(encoding="utf-8")
    refused = sllb("review", crlm_root, "--agreement", "--reviewer", "Bob", "--blinded", "--store", store)
    assert refused.returncode == 2 and "blinded" in refused.stderr
    assert sllb("review", crlm_root, "CRLM-CT-1001", "--verdict", "accepted", "--reviewer", "Bob",
                "--store", store).returncode == 0
    both = sllb("review", crlm_root, "crlm-ct-1001", "--reads", "--reviewer", "Bob", "--blinded", "--store", store)
    assert "CRLM-CT-1001: Ann: rejected — Ann's reason" in both.stdout and "CRLM-CT-1001: Bob: accepted" in both.stdout
