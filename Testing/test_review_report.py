"""Review exports: CSV columns, a self-contained and escaped HTML report, file names that stay in their folder."""
from __future__ import annotations

import base64
import csv
import re

import numpy as np
import pytest

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.findings import WARNING, Finding
from SarcomaLungLiverBrowserLib.review.qa import run_collection_qa, snapshot_paths
from SarcomaLungLiverBrowserLib.case_data import CaseData, SegmentationData, VolumeData
from SarcomaLungLiverBrowserLib.registry import CaseInfo, Collection, LoadedCase
from SarcomaLungLiverBrowserLib.review.report import (FINDINGS_CSV_COLUMNS, REVIEW_CSV_COLUMNS, csv_cell,
                                                      export_review, write_html_report, write_verdicts_csv)
from SarcomaLungLiverBrowserLib.review.store import ReviewStore
from SarcomaLungLiverBrowserLib.scene.builder import SegmentSpec

#: Case IDs as hostile data could spell them.
HOSTILE_IDS = ["../escape", "/tmp/absolute_case", "A/B", "A_B", "..", "<b>bold</b> & co", "CON"]


class NamedCollection(Collection):
    """Cases with the given IDs; every case has one volume (distinct per case) and one finding."""

    key = "named"
    title = 'Named <collection> & "quotes"'

    def __init__(self, root, case_ids):
        super().__init__(root)
        self.case_ids = list(case_ids)

    @classmethod
    def detect(cls, root):
        return False

    def discover_cases(self, progress=None):
        return [CaseInfo("named", case_id, self.root, diagnosis="Sarcoma <G2> & more") for case_id in self.case_ids]

    def read_case(self, case, progress=None):
        number = self.case_ids.index(case.case_id)
        voxels = np.zeros((3, 16, 16), np.int16)
        voxels[1, number:number + 4, 2 + number:6 + number] = 1000  # a bright square in a different place per case
        mask = np.zeros((3, 16, 16), bool)
        mask[1, 2:5, 2:5] = True
        data = CaseData(case)
        data.volumes.append(VolumeData("volume", f"volume {number}", voxels, np.eye(4)))
        data.segmentations.append(SegmentationData("seg", f"seg {number}", "volume",
                                                   [SegmentSpec("Lesion", (1, 0, 0), mask)]))
        data.findings.append(Finding(WARNING, "named.check", f"<script>alert('{case.case_id}')</script>",
                                     case_id=case.case_id, node_name=f"seg {number}", segment_id="Lesion",
                                     path=f"/data/{case.case_id}.dcm", ras=(1.0, -2.5, 3.0), value=4.5))
        return data


def files_below(folder):
    return sorted(path for path in folder.rglob("*") if path.is_file())


def test_snapshot_paths_stay_in_their_folder_and_never_collide(tmp_path):
    folder = tmp_path / "out" / "snapshots"
    paths = snapshot_paths(folder, HOSTILE_IDS)
    assert list(paths) == HOSTILE_IDS
    assert len({path.name.lower() for path in paths.values()}) == len(HOSTILE_IDS)
    for path in paths.values():
        assert path.parent == folder and path.suffix == ".png"
        assert path.resolve().parent == folder.resolve()
        assert not path.name.startswith(".") and "/" not in path.name and "\\" not in path.name
    assert paths["CON"].name.lower() != "con.png"


def test_report_with_hostile_case_ids_is_self_contained_escaped_and_stays_in_its_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # An absolute ID pointing into tmp_path: had it escaped, the check of tmp_path below would see the file.
    case_ids = HOSTILE_IDS + [str(tmp_path / "absolute_target")]
    collection = NamedCollection(data, case_ids)
    out = tmp_path / "work" / "out"
    qa_result = run_collection_qa(collection, snapshot_folder=out / "snapshots")
    with ReviewStore(tmp_path / "review.sqlite") as store:
        store.set_verdict("../escape", "", "accepted", "<script>alert(1)</script>\nsecond line", "Dr <b>X</b>")
        store.set_verdict("A/B", "Lesion", "rejected", "=HYPERLINK(\"http://evil.example\")", "Dr Y")
        written = export_review(out, collection, store, qa_result, reviewer="Dr <i>Z</i>")

    # Nothing was written outside the output folder, and nothing left half-written.
    everything = files_below(tmp_path)
    assert all(path == tmp_path / "review.sqlite" or path.name.startswith("review.sqlite-")
               or out in path.parents for path in everything), everything
    assert sorted(path.name for path in written) == ["findings.csv", "report.html", "review.csv"]
    assert not [path for path in files_below(out) if path.name.endswith(".tmp")]
    snapshots = files_below(out / "snapshots")
    assert len(snapshots) == len(case_ids)

    page = (out / "report.html").read_text(encoding="utf-8")
    # Self-contained: no address of anything on the web, no external style sheet or script.
    assert not re.search(r"https?://", page.replace("http://evil.example", "")), "no web addresses"
    assert "<link" not in page and "<script" not in page and "@import" not in page
    for attribute in re.findall(r"""(?:src|href)="([^"]*)\"""", page):
        assert attribute.startswith(("data:image/png;base64,", "#case-")), attribute
    # Every piece of text from the data is escaped.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "Dr &lt;b&gt;X&lt;/b&gt;" in page
    assert "Named &lt;collection&gt; &amp; &quot;quotes&quot;" in page and "Sarcoma &lt;G2&gt; &amp; more" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page and "<b>bold</b>" not in page
    assert "prepared by Dr &lt;i&gt;Z&lt;/i&gt;" in page
    # Each case embeds its own snapshot, byte for byte.
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(case_ids)
    paths = snapshot_paths(out / "snapshots", case_ids)
    assert [base64.b64decode(image) for image in images] == [paths[case_id].read_bytes() for case_id in case_ids]
    assert len(set(images)) == len(case_ids), "each case shows its own picture"
    # Per case: ID, collection, diagnosis, QA status, findings, verdicts with comment, reviewer and time.
    section = page[page.index('id="case-1"'):page.index('id="case-2"')]
    for text in ("../escape", "named", "Sarcoma &lt;G2&gt;", "warnings", "named.check", "seg 0",
                 "segment Lesion", "/data/../escape.dcm", "accepted", "second line", "Dr &lt;b&gt;X&lt;/b&gt;"):
        assert text in section, text
    assert re.search(r"<td>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00</td>", section)
    assert "1 of 8 case(s) reviewed" in page


def test_csv_columns_rows_and_spreadsheet_safe_cells(tmp_path):
    collection = NamedCollection(tmp_path, ["P1", "P2", "P3"])
    qa_result = run_collection_qa(collection)
    with ReviewStore(tmp_path / "review.sqlite") as store:
        store.set_verdict("P1", "", "needs correction", "=1+1", "@Ann")
        store.set_verdict("P2", "Lesion", "rejected", "too small", "Bob")
        store.set_verdict("P2", "ROI 2", "accepted", "", "Bob")
        export_review(tmp_path / "out", collection, store, qa_result)
        write_verdicts_csv(tmp_path / "out" / "verdicts.csv", store, ["P1", "P2", "P3"])

    with open(tmp_path / "out" / "review.csv", encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == REVIEW_CSV_COLUMNS
        rows = list(reader)
    assert [row["case_id"] for row in rows] == ["P1", "P2", "P3"]
    assert rows[0]["verdict"] == "needs correction" and rows[0]["qa_status"] == "warnings"
    assert rows[0]["comment"] == "'=1+1" and rows[0]["reviewer"] == "'@Ann"  # never run as formulas
    assert (rows[0]["collection"], rows[0]["diagnosis"]) == ("named", "Sarcoma <G2> & more")
    assert (rows[0]["errors"], rows[0]["warnings"], rows[0]["findings"]) == ("0", "1", "1")
    assert rows[1]["verdict"] == "" and rows[1]["annotation_verdicts"] == "Lesion: rejected; ROI 2: accepted"

    with open(tmp_path / "out" / "findings.csv", encoding="utf-8", newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == FINDINGS_CSV_COLUMNS
        findings = list(reader)
    assert len(findings) == 3
    assert findings[0]["case_id"] == "P1" and findings[0]["check"] == "named.check"
    assert findings[0]["message"] == "<script>alert('P1')</script>"  # CSV keeps text as it is
    assert (findings[0]["ras"], findings[0]["value"], findings[0]["segment_id"]) == ("1.00 -2.50 3.00", "4.5", "Lesion")

    with open(tmp_path / "out" / "verdicts.csv", encoding="utf-8", newline="") as stream:
        verdicts = list(csv.reader(stream))
    assert verdicts[0] == ["case_id", "annotation", "item_type", "verdict", "comment", "reviewer", "time",
                           "adjudicated_verdict", "adjudicator", "history"]
    assert [row[:4] for row in verdicts[1:]] == [["P1", "", "case", "needs correction"],
                                                 ["P2", "Lesion", "Lesion", "rejected"],
                                                 ["P2", "ROI 2", "ROI", "accepted"], ["P3", "", "", ""]]
    assert verdicts[1][5] == "'@Ann" and verdicts[1][9].endswith(" needs correction")


def test_csv_cells_and_reports_without_qa_or_store(tmp_path):
    assert [csv_cell(value) for value in ("=A1", "+1", "-2", "@x", "\tx", "plain", 3.5, None, -1)] == [
        "'=A1", "'+1", "'-2", "'@x", "'\tx", "plain", 3.5, "", -1]
    collection = NamedCollection(tmp_path, ["P1"])
    cases = collection.discover_cases()
    not_png = tmp_path / "fake.png"
    not_png.write_text("<svg onload=alert(1)>")
    path = write_html_report(tmp_path / "r.html", "Plain", cases, snapshots={"P1": not_png})
    page = path.read_text(encoding="utf-8")
    assert "data:image" not in page and "not a PNG image" in page and "onload" not in page
    assert "Not reviewed yet." in page and "not checked" in page
    written = export_review(tmp_path / "only-verdicts", collection)  # no QA, no store
    assert sorted(p.name for p in written) == ["report.html", "review.csv"]


def test_report_files_refuse_to_follow_a_link_out_of_the_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").symlink_to(outside / "stolen.html")
    with pytest.raises(DataError, match="outside the output folder"):
        export_review(out, NamedCollection(tmp_path, ["P1"]))
    assert not (outside / "stolen.html").exists()
