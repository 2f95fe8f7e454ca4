"""The QA engine: findings and metrics per case, load failures as findings, cancellation, every collection."""
from __future__ import annotations

import csv
import importlib
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from SarcomaLungLiverBrowserLib.errors import DataError, LoadCancelled
from SarcomaLungLiverBrowserLib.findings import ERROR, INFO, WARNING, Finding
from SarcomaLungLiverBrowserLib.progress import report
from SarcomaLungLiverBrowserLib.review.qa import describe_collection_qa, run_case_qa, run_collection_qa
from SarcomaLungLiverBrowserLib.case_data import CaseData, SegmentationData, VolumeData
from SarcomaLungLiverBrowserLib.registry import CaseInfo, Collection, LoadedCase, open_collection
from SarcomaLungLiverBrowserLib.scene.builder import SegmentSpec


class TinyCollection(Collection):
    """Four cases with known problems.

    T1 is clean; T2's segment is empty; T3's file is broken (DataError); T4's
    reader crashes half-way (a bug, not a data error). T1 and T2 also report
    a collection-wide table mismatch without naming a case, as a collection
    comparing the folder with a published table does on every load.
    """

    key = "tiny"
    title = "Tiny <test> collection"
    case_ids = ("T1", "T2", "T3", "T4")

    @classmethod
    def detect(cls, root):
        return False

    def discover_cases(self, progress=None):
        return [CaseInfo("tiny", case_id, self.root, diagnosis="d") for case_id in self.case_ids]

    def read_case(self, case, progress=None):
        if case.case_id == "T3":
            raise DataError(self.root / "T3" / "broken.dcm", "truncated")
        report(progress, f"building {case.case_id}", 0.5)
        if case.case_id == "T4":
            raise ZeroDivisionError("a reader bug")
        mask = np.zeros((3, 8, 8), bool)
        if case.case_id == "T1":
            mask[1, 2:5, 2:5] = True
        data = CaseData(case)
        data.volumes.append(VolumeData("ct", f"{case.case_id} CT", np.full((3, 8, 8), 10, np.int16), np.eye(4)))
        data.segmentations.append(SegmentationData("seg", f"{case.case_id} seg", "ct",
                                                   [SegmentSpec("Lesion", (1, 0, 0), mask)]))
        data.findings.append(Finding(WARNING, "tiny.table_mismatch", f"{self.root}/counts.csv: 3 cases, table says 5",
                                     path=str(self.root / "counts.csv")))
        data.findings.append(Finding(INFO, "tiny.voxels", f"{case.case_id}: {int(mask.sum())} voxels",
                                     case_id=case.case_id, value=float(mask.sum())))
        data.metrics["voxels"] = int(mask.sum())
        return data

    def check_case(self, data):
        mask = data.segmentations[0].segments[0].mask
        if mask.any():
            return []
        return [Finding(WARNING, "tiny.empty_segment", f"{data.case.case_id}: Lesion is empty", segment_id="Lesion")]


def scene_size(headless):
    hierarchy = headless.scene.GetSubjectHierarchyNode()
    return headless.scene.GetNumberOfNodes(), hierarchy.GetNumberOfItems()


def test_engine_reports_findings_turns_failures_into_errors_and_leaves_the_scene_as_it_was(headless, tmp_path):
    collection = TinyCollection(tmp_path)
    before = scene_size(headless)
    result = run_collection_qa(collection, scene=headless.scene)
    assert scene_size(headless) == before, "QA must leave the scene as it found it"

    assert [case.case_id for case in result.cases] == ["T1", "T2", "T3", "T4"]
    assert [case.status for case in result.cases] == ["ok", "warnings", "errors", "errors"]
    assert [case.loaded for case in result.cases] == [True, True, False, False]
    assert result.cases[0].metrics == {"voxels": 9} and result.cases[1].metrics == {"voxels": 0}

    broken = result.cases[2].findings
    assert len(broken) == 1 and broken[0].check == "load.failed" and broken[0].severity == ERROR
    assert broken[0].path == str(tmp_path / "T3" / "broken.dcm") and "broken.dcm: truncated" in broken[0].message
    crashed = result.cases[3].findings
    assert len(crashed) == 1 and crashed[0].check == "load.unexpected_error"
    assert "ZeroDivisionError" in crashed[0].message and "T4" in crashed[0].message

    # Every case finding names its case, even when the collection left case_id empty.
    assert all(f.case_id == case.case_id for case in result.cases for f in case.findings)
    empty = [f for f in result.cases[1].findings if f.check == "tiny.empty_segment"]
    assert len(empty) == 1 and empty[0].segment_id == "Lesion"

    # The table mismatch both loaded cases repeat is one collection-wide finding, not one per case.
    assert [(f.check, f.case_id) for f in result.collection_findings] == [("tiny.table_mismatch", "")]
    assert not any(f.check == "tiny.table_mismatch" for case in result.cases for f in case.findings)
    assert result.by_status() == {"ok": 1, "warnings": 1, "errors": 2}
    assert result.by_severity() == {"warning": 2, "info": 2, "error": 2}
    assert result.by_check() == {"load.failed": 1, "load.unexpected_error": 1, "tiny.empty_segment": 1,
                                 "tiny.table_mismatch": 1, "tiny.voxels": 2}
    text = describe_collection_qa(result)
    assert "4 case(s) checked" in text and "1 ok, 1 warnings, 2 errors" in text and "tiny.empty_segment: 1" in text


def test_progress_reads_k_of_n_and_moves_forward(tmp_path):
    calls = []
    run_collection_qa(TinyCollection(tmp_path), lambda message, fraction: calls.append((message, fraction)))
    messages = [message for message, _ in calls]
    for k in range(1, 5):
        assert any(message.startswith(f"Case {k} of 4") for message in messages), messages
    assert any(message == "Case 2 of 4: building T2" for message in messages)  # the case's own progress
    fractions = [fraction for _, fraction in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_cancelling_between_cases_stops_the_run(tmp_path):
    seen = []

    def cancel_at_second_case(message, fraction):
        seen.append(message)
        return message.startswith("Case 2 of 4")

    with pytest.raises(LoadCancelled):
        run_collection_qa(TinyCollection(tmp_path), cancel_at_second_case)
    assert any(message.startswith("Case 1 of 4") for message in seen)
    assert not any(message.startswith("Case 3 of 4") for message in seen)


def test_cancelling_inside_a_case_removes_its_partial_load(headless, tmp_path):
    before = scene_size(headless)
    with pytest.raises(LoadCancelled):
        run_collection_qa(TinyCollection(tmp_path), lambda message, fraction: message.endswith("building T2"),
                          scene=headless.scene)
    assert scene_size(headless) == before


def test_single_case_in_its_own_scene_with_a_snapshot_and_a_failure_that_does_not_raise(tmp_path):
    collection = TinyCollection(tmp_path)
    cases = collection.discover_cases()
    result = run_case_qa(collection, cases[0], snapshot_path=tmp_path / "T1.png")
    assert result.loaded and result.snapshot == tmp_path / "T1.png"
    assert result.snapshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Alone, the case keeps the table mismatch: there is no second case to show it is collection-wide.
    assert result.status == "warnings" and {f.case_id for f in result.findings} == {"T1"}
    failed = run_case_qa(collection, cases[2])
    assert not failed.loaded and failed.status == "errors" and failed.findings[0].path.endswith("broken.dcm")


# ---------------------------------------------------------------------- every collection kind
SAMPLES = ["crlm", "lung_pet_ct_dx", "ispy1", "soft_tissue_sarcoma", "hermessi"]

#: What the sample generators deliberately put in (see samples/<name>.py):
#: QA status per case, checks a case must report, checks the collection as a whole must report.
EXPECTED = {
    "crlm": ({"CRLM-CT-1001": "ok", "CRLM-CT-1002": "warnings", "CRLM-CT-1003": "ok"},
             {"CRLM-CT-1002": {"crlm.tumour_outside_liver"}, "CRLM-CT-1003": {"crlm.ai_segmentation"}},
             set()),
    "lung_pet_ct_dx": ({"Lung_Dx-A0001": "warnings", "Lung_Dx-B0002": "errors", "Lung_Dx-G0003": "ok"},
                       {"Lung_Dx-A0001": {"lung.box_outside_image", "lung.duplicate_box", "lung.lesion_gap"},
                        "Lung_Dx-B0002": {"lung.xml_unreadable", "lung.missing_geometry"}},
                       set()),
    "ispy1": ({"ISPY1_1002": "ok", "ISPY1_1005": "ok", "ISPY1_1010": "warnings"},
              {"ISPY1_1010": {"ispy1.mask_in_background"}, "ISPY1_1002": {"ispy1.stv_dice"}},
              set()),
    "soft_tissue_sarcoma": ({"STS_001": "warnings", "STS_002": "ok"},
                            {"STS_001": {"sts.rtstruct.too_few_points"},
                             "STS_002": {"sts.reference_by_frame_of_reference"}},
                            set()),
    # The sample has a few slices per class; the published counts table has hundreds: a collection-wide finding.
    "hermessi": ({"STS_003": "ok", "STS_005": "ok", "STS_011": "ok", "STS_020": "ok"},
                 {}, {"hermessi.count_mismatch"}),
}



@pytest.mark.parametrize("module_name", SAMPLES)
def test_engine_over_a_generated_collection_of_each_kind(module_name, tmp_path):
    root = importlib.import_module(f"SarcomaLungLiverBrowserLib.samples.{module_name}").generate(tmp_path)
    collection = open_collection(root)
    result = run_collection_qa(collection)
    statuses, case_checks, collection_checks = EXPECTED[module_name]
    assert {case.case_id: case.status for case in result.cases} == statuses, \
        {case.case_id: [(f.severity, f.check) for f in case.findings] for case in result.cases}
    assert all(case.loaded for case in result.cases)
    for case_id, checks in case_checks.items():
        found = {finding.check for finding in result.case(case_id).findings}
        assert checks <= found, (case_id, found)
    assert {finding.check for finding in result.collection_findings} == collection_checks
    assert all(f.case_id == case.case_id for case in result.cases for f in case.findings)
    assert all(case.metrics for case in result.cases), "every loaded case measures something"
    total = sum(len(case.findings) for case in result.cases) + len(result.collection_findings)
    assert sum(result.by_severity().values()) == sum(result.by_check().values()) == total


# ---------------------------------------------------------------------- command line
def _sllb(*arguments):
    return subprocess.run([sys.executable, "-m", "SarcomaLungLiverBrowserLib", "--no-cache", *map(str, arguments)],
                          capture_output=True, text=True)


def test_command_line_runs_qa_and_records_verdicts(tmp_path):
    from SarcomaLungLiverBrowserLib.samples import crlm

    root = crlm.generate(tmp_path / "data")
    store = tmp_path / "review.sqlite"
    result = _sllb("review", root, "crlm-ct-1001", "--verdict", "needs-correction", "--comment", "remnant",
                   "--reviewer", "CLI", "--store", store)
    assert result.returncode == 0, result.stderr
    assert "CRLM-CT-1001: needs correction by CLI" in result.stdout and "1 of 3 reviewed" in result.stdout
    result = _sllb("review", root, "CRLM-CT-1002", "--annotation", "Tumor_8", "--verdict", "rejected",
                   "--comment", "outside the liver", "--reviewer", "CLI", "--store", store)
    assert result.returncode == 0 and "1 of 3 reviewed" in result.stdout, result.stderr

    out = tmp_path / "report"
    result = _sllb("qa", root, "--out", out, "--store", store, "--reviewer", "Dr QA")
    assert result.returncode == 0, result.stderr
    assert "3 case(s) checked" in result.stdout
    # 1003 has an AI SEG: its agreement with the expert SEG comes as two CSVs more; the journal lets a re-run resume.
    assert sorted(path.name for path in out.iterdir()) == [
        "findings.csv", "qa-journal.sqlite", "report.complete.json", "report.html", "review.csv",
        "segmentation_agreement.csv", "segmentation_agreement_summary.csv"]
    rows = list(csv.DictReader(open(out / "review.csv", encoding="utf-8")))
    assert [(row["case_id"], row["qa_status"], row["verdict"]) for row in rows] == [
        ("CRLM-CT-1001", "ok", "needs correction"), ("CRLM-CT-1002", "warnings", ""), ("CRLM-CT-1003", "ok", "")]
    assert rows[1]["annotation_verdicts"] == "Tumor_8: rejected"
    findings = list(csv.DictReader(open(out / "findings.csv", encoding="utf-8")))
    assert ("CRLM-CT-1002", "crlm.tumour_outside_liver") in {(row["case_id"], row["check"]) for row in findings}
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "prepared by Dr QA" in page and "1 of 3 case(s) reviewed" in page

    exported = tmp_path / "verdicts.csv"
    result = _sllb("review", root, "--export-csv", exported, "--store", store)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(exported, encoding="utf-8")))
    assert [(row["case_id"], row["annotation"], row["verdict"]) for row in rows] == [
        ("CRLM-CT-1001", "", "needs correction"), ("CRLM-CT-1002", "Tumor_8", "rejected"), ("CRLM-CT-1003", "", "")]

    result = _sllb("review", root, "CRLM-CT-9999", "--verdict", "accepted", "--reviewer", "x", "--store", store)
    assert result.returncode == 2 and "CRLM-CT-9999" in result.stderr
    result = _sllb("review", root, "CRLM-CT-1001", "--verdict", "accepted", "--store", store)
    assert result.returncode == 2 and "--reviewer" in result.stderr
    # QA without a store beside the collection reports without verdicts and creates no file there.
    result = _sllb("qa", root, "--out", tmp_path / "report2")
    assert result.returncode == 0 and "no review store" in result.stderr
    assert not (root / ".sllb_review.sqlite").exists()


class CountingTinyCollection(TinyCollection):
    """TinyCollection whose own collection check compares the case count with its table, given every result."""

    def check_collection(self, cases, results):
        self.checked = ([case.case_id for case in cases], [result.case.case_id for result in results])
        return [Finding(WARNING, "tiny.table_mismatch", f"{self.root}/counts.csv: 3 cases, table says 5",
                        path=str(self.root / "counts.csv")),
                Finding(ERROR, "tiny.duplicate_patient", "T1 and T2 are the same patient", case_id="T1")]


def test_the_collections_own_check_sees_every_case_and_its_findings_are_kept_once(tmp_path):
    collection = CountingTinyCollection(tmp_path)
    result = run_collection_qa(collection, cases=collection.discover_cases()[:1])  # one case: nothing repeats
    assert collection.checked == (["T1"], ["T1"])
    assert [(f.check, f.case_id) for f in result.collection_findings] == [("tiny.table_mismatch", ""),
                                                                         ("tiny.duplicate_patient", "")]
    # The mismatch T1's load reported is the collection's own finding now, so it is not on T1 too.
    assert [f.check for f in result.cases[0].findings] == ["tiny.voxels"]
    assert result.by_check()["tiny.table_mismatch"] == 1


def test_a_failing_collection_check_is_an_error_finding_and_the_cases_stand(tmp_path):
    class BrokenCheck(TinyCollection):
        def check_collection(self, cases, results):
            raise KeyError("counts.csv has no 'Patient' column")

    result = run_collection_qa(BrokenCheck(tmp_path))
    assert [case.status for case in result.cases] == ["ok", "warnings", "errors", "errors"]
    failed = [f for f in result.collection_findings if f.check == "qa.collection_check_failed"]
    assert len(failed) == 1 and failed[0].severity == ERROR and "KeyError" in failed[0].message
    assert "'Patient' column" in failed[0].message and failed[0].path == str(tmp_path)
    assert [f.check for f in result.collection_findings] == ["tiny.table_mismatch", "qa.collection_check_failed"]
