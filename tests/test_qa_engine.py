"""The QA engine over each collection, the review exports and the review command line."""
from __future__ import annotations

import csv
import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from SarcomaLungLiverBrowserLib.errors import DataError, LoadCancelled
from SarcomaLungLiverBrowserLib.findings import ERROR, WARNING, Finding
from SarcomaLungLiverBrowserLib.qa import run_case_qa, run_collection_qa
from SarcomaLungLiverBrowserLib.registry import CaseInfo, Collection, LoadedCase, open_collection
from SarcomaLungLiverBrowserLib.review_report import export_review
from SarcomaLungLiverBrowserLib.review_store import ReviewStore
from SarcomaLungLiverBrowserLib.scene_builder import SegmentSpec


class TinyCollection(Collection):
    """Three cases: clean, one with an empty segment, one whose file is broken."""

    key = "tiny"
    title = "Tiny <test> collection"

    @classmethod
    def detect(cls, root):
        return False

    def discover_cases(self, progress=None):
        return [CaseInfo("tiny", case_id, self.root, diagnosis="d") for case_id in ("T1", "T2", "T3")]

    def load_case(self, case, builder, progress=None):
        if case.case_id == "T3":
            raise DataError(self.root / "T3" / "broken.dcm", "truncated")
        loaded = LoadedCase(case)
        volume = builder.add_volume(f"{case.case_id} CT", np.zeros((3, 8, 8), np.int16), np.eye(4))
        mask = np.zeros((3, 8, 8), bool)
        if case.case_id == "T1":
            mask[1, 2:5, 2:5] = True
        loaded.volumes.append(volume)
        loaded.segmentations.append(builder.add_segmentation(f"{case.case_id} seg", volume,
                                                             [SegmentSpec("Lesion", (1, 0, 0), mask)]))
        if not mask.any():
            loaded.findings.append(Finding(WARNING, "tiny.empty_segment", f"{case.case_id}: Lesion is empty",
                                           case_id=case.case_id, segment_id="Lesion"))
        loaded.metrics["voxels"] = int(mask.sum())
        return loaded


def test_engine_reports_findings_turns_load_failures_into_errors_and_cleans_up(headless, tmp_path):
    collection = TinyCollection(tmp_path)
    nodes_before = headless.scene.GetNumberOfNodes()
    result = run_collection_qa(collection, scene=headless.scene)
    assert [case.status for case in result.cases] == ["ok", "warnings", "errors"]
    assert result.cases[0].metrics["voxels"] == 9
    failed = result.cases[2]
    assert not failed.loaded and failed.findings[0].severity == ERROR and "broken.dcm" in failed.findings[0].message
    assert result.by_status() == {"ok": 1, "warnings": 1, "errors": 1}
    assert headless.scene.GetNumberOfNodes() == nodes_before, "QA must leave the scene as it found it"


def test_engine_can_be_cancelled(tmp_path):
    calls = []

    def cancel_at_second_case(message, fraction):
        calls.append(message)
        return "2 of 3" in message

    with pytest.raises(LoadCancelled):
        run_collection_qa(TinyCollection(tmp_path), cancel_at_second_case)
    assert any("1 of 3" in message for message in calls)


def test_single_case_qa_in_its_own_scene_with_snapshot(tmp_path):
    collection = TinyCollection(tmp_path)
    result = run_case_qa(collection, collection.discover_cases()[0], snapshot_path=tmp_path / "T1.png")
    assert result.status == "ok" and result.snapshot.read_bytes()[:4] == b"\x89PNG"


SAMPLES = ["crlm", "lung_pet_ct_dx", "ispy1", "soft_tissue_sarcoma", "hermessi"]


@pytest.mark.parametrize("module_name", SAMPLES)
def test_engine_over_a_generated_collection_of_each_kind(module_name, tmp_path):
    root = importlib.import_module(f"SarcomaLungLiverBrowserLib.samples.{module_name}").generate(tmp_path)
    collection = open_collection(root)
    result = run_collection_qa(collection)
    cases = collection.discover_cases()
    assert [case.case.case_id for case in result.cases] == [case.case_id for case in cases]
    assert all(case.loaded for case in result.cases), [f.message for c in result.cases for f in c.findings]
    # The samples carry known quirks, so every collection but the clean ones yields findings.
    assert sum(len(case.findings) for case in result.cases) > 0


def test_report_is_self_contained_escaped_and_complete(tmp_path):
    collection = TinyCollection(tmp_path)
    qa_result = run_collection_qa(collection, snapshot_folder=tmp_path / "snaps")
    with ReviewStore(tmp_path / "review.sqlite") as store:
        store.set_verdict("T1", "", "accepted", "<script>alert(1)</script>", "Dr <b>X</b>")
        store.set_verdict("T2", "Lesion", "rejected", "empty", "Dr Y")
        paths = export_review(tmp_path / "out", collection, store, qa_result)
    names = sorted(path.name for path in paths)
    assert names == ["findings.csv", "report.html", "review.csv"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page and "Tiny &lt;test&gt; collection" in page
    assert not re.search(r"""(src|href)=["']https?:""", page), "the report must not load anything from the web"
    assert page.count("data:image/png;base64,") == 2  # T1 and T2 loaded; T3 failed
    rows = list(csv.DictReader(open(tmp_path / "out" / "review.csv")))
    assert [row["case_id"] for row in rows] == ["T1", "T2", "T3"]
    assert rows[0]["verdict"] == "accepted" and rows[2]["qa_status"] == "errors"
    assert rows[1]["annotation_verdicts"] == "Lesion: rejected"
    findings = list(csv.DictReader(open(tmp_path / "out" / "findings.csv")))
    assert {row["check"] for row in findings} == {"tiny.empty_segment", "load.failed"}


def test_command_line_runs_qa_and_records_verdicts(tmp_path):
    from SarcomaLungLiverBrowserLib.samples import crlm

    root = crlm.generate(tmp_path / "data")
    store = tmp_path / "review.sqlite"
    run = [sys.executable, "-m", "SarcomaLungLiverBrowserLib", "--no-cache"]
    result = subprocess.run(run + ["review", str(root), "crlm-ct-1001", "--verdict", "needs-correction",
                                   "--comment", "remnant", "--reviewer", "CLI", "--store", str(store)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "CRLM-CT-1001: needs correction by CLI" in result.stdout and "1 of 3 reviewed" in result.stdout
    result = subprocess.run(run + ["qa", str(root), "--out", str(tmp_path / "report"), "--store", str(store)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report" / "report.html").is_file() and (tmp_path / "report" / "findings.csv").is_file()
    rows = list(csv.DictReader(open(tmp_path / "report" / "review.csv")))
    assert rows[0]["verdict"] == "needs correction"
    result = subprocess.run(run + ["review", str(root), "CRLM-CT-9999", "--verdict", "accepted", "--reviewer", "x",
                                   "--store", str(store)], capture_output=True, text=True)
    assert result.returncode == 2 and "CRLM-CT-9999" in result.stderr
