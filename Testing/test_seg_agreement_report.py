"""Expert vs AI segmentation agreement of a CRLM case, end to end: QA report, CSVs and the table node.

The AI SEG is written like IDC's BAMF/AIMI ones (liver as SCT Liver, one
tumour segment coded Morphologically Altered Structure / Neoplasm, Primary),
so the expert's ``Tumor_n`` (Neoplasm) and the AI's "Liver tumor" match only
by their codes. The expected numbers are computed here by hand from the
generated ground-truth masks: Dice by counting voxels, HD95 from surfaces found
by explicit neighbour loops and a k-d tree (not the library's distance transform).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from SarcomaLungLiverBrowserLib.formats.dicom_seg import ExportSegment, SegCode, write_seg
from SarcomaLungLiverBrowserLib.formats.dicom_series import group_by_series, read_series, scan_folder
from SarcomaLungLiverBrowserLib.samples import crlm as crlm_sample
from SarcomaLungLiverBrowserLib.service import ReviewService

BAMF_LIVER = (SegCode("123037004", "SCT", "Anatomical Structure"), SegCode("10200004", "SCT", "Liver"))
BAMF_TUMOUR = (SegCode("49755003", "SCT", "Morphologically Altered Structure"),
               SegCode("86049000", "SCT", "Neoplasm, Primary"))
PATIENT = "CRLM-CT-1001"
AI_NODE = f"{PATIENT} AIMI liver-tumor AI segmentation"


# ---------------------------------------------------------------------- hand computations
def _surface_points(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Centres (mm) of mask voxels with a 6-neighbour outside the mask, found by explicit loops."""
    points = []
    for k, j, i in zip(*np.nonzero(mask)):
        for step in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
            neighbour = (k + step[0], j + step[1], i + step[2])
            if not all(0 <= neighbour[a] < mask.shape[a] for a in range(3)) or not mask[neighbour]:
                points.append((k, j, i))
                break
    return np.array(points, dtype=float) * spacing


def hand_dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * int((a & b).sum()) / (int(a.sum()) + int(b.sum()))


def hand_hd95(a: np.ndarray, b: np.ndarray, spacing: Tuple[float, float, float]) -> float:
    from scipy.spatial import cKDTree

    sa, sb = _surface_points(a, np.array(spacing)), _surface_points(b, np.array(spacing))
    forward, _ = cKDTree(sb).query(sa)
    backward, _ = cKDTree(sa).query(sb)
    return max(float(np.percentile(forward, 95)), float(np.percentile(backward, 95)))


# ---------------------------------------------------------------------- the collection
@pytest.fixture(scope="module")
def crlm_with_ai(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Dict[str, object]]:
    """The CRLM sample with a BAMF-coded AI SEG added to CRLM-CT-1001 (NBIA layout), and the masks it holds."""
    root = crlm_sample.generate(tmp_path_factory.mktemp("crlm-ai"))
    summary, masks = crlm_sample.load_ground_truth(root, PATIENT)
    labels = [segment["label"] for segment in summary["segments"]]
    truth = dict(zip(labels, masks))
    tumours = [label for label in labels if label.startswith("Tumor")]
    assert len(tumours) == 2
    ct = read_series(group_by_series(scan_folder(root).instances)[summary["ct_series_instance_uid"]])
    # The AI's liver one row smaller; its one tumour segment holds Tumor_1 grown by one column, misses
    # Tumor_2, and adds a false positive in a corner.
    ai_liver = truth["Liver"].copy()
    ai_liver[:, 1:, :] &= truth["Liver"][:, :-1, :]
    grown = truth[tumours[0]].copy()
    grown[:, :, 1:] |= truth[tumours[0]][:, :, :-1]
    false_positive = np.zeros_like(grown)
    false_positive[0:2, 2:5, 2:5] = True
    ai_tumour = grown | false_positive
    study_folder = (root / summary["seg_path"]).parent.parent
    write_seg(study_folder / "300.000000-AIMI liver-tumor AI segmentation-70011" / "1-1.dcm", [
        ExportSegment("Liver", ai_liver, *BAMF_LIVER, algorithm_type="AUTOMATIC", algorithm_name="AIMI liver-tumor"),
        ExportSegment("Liver tumor", ai_tumour, *BAMF_TUMOUR, anatomic_region=BAMF_LIVER[1],
                      algorithm_type="AUTOMATIC", algorithm_name="AIMI liver-tumor"),
    ], ct, series_description="AIMI liver-tumor AI segmentation", manufacturer="QIICR",
        manufacturer_model_name="git@github.com:QIICR/dcmqi.git")
    # The sample codes Liver Remnant as Liver (as dcmqi's CRLM SEGs do): by codes, the expert liver is both.
    expert_liver = truth["Liver"] | truth[labels[1]]
    spacing = (float(summary["slice_spacing"]), float(summary["pixel_spacing"]), float(summary["pixel_spacing"]))
    expected = {
        "liver dice": hand_dice(expert_liver, ai_liver),
        "liver hd95": hand_hd95(expert_liver, ai_liver, spacing),
        "liver difference": (int(ai_liver.sum()) - int(expert_liver.sum())) * float(np.prod(spacing)) / 1000.0,
        "union dice": hand_dice(truth[tumours[0]] | truth[tumours[1]], ai_tumour),
        "union hd95": hand_hd95(truth[tumours[0]] | truth[tumours[1]], ai_tumour, spacing),
        "pair dice": hand_dice(truth[tumours[0]], grown),
        "pair hd95": hand_hd95(truth[tumours[0]], grown, spacing),
        "tumours": tumours,
    }
    return root, expected


def _rows_by_kind(rows: List[Dict[str, str]]) -> Dict[Tuple[str, str], Dict[str, str]]:
    return {(row["kind"], row["reference_labels"] if row["kind"].startswith("tumour ") and row["kind"] != "tumour union"
             else row["structure"]): row for row in rows}


def test_collection_report_lists_each_cases_agreement_matching_a_hand_computation(crlm_with_ai, tmp_path: Path):
    root, expected = crlm_with_ai
    with ReviewService(header_cache=None, snapshots=False) as service:
        service.open(root)
        result = service.run_qa()
        written = service.export_report(tmp_path / "report", verdicts=False)
    names = sorted(path.name for path in written)
    assert "segmentation_agreement.csv" in names and "segmentation_agreement_summary.csv" in names
    with open(tmp_path / "report" / "segmentation_agreement.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    # Both cases with an AI SEG are listed (1003 ships one in the sample), each against its own expert SEG.
    assert {row["case_id"] for row in rows} == {PATIENT, "CRLM-CT-1003"}
    mine = _rows_by_kind([row for row in rows if row["case_id"] == PATIENT])
    assert {row["test"] for row in mine.values()} == {AI_NODE}
    assert {row["reference"] for row in mine.values()} == {f"{PATIENT} segmentation"}
    liver = mine[("structure", "Liver")]
    assert float(liver["dice"]) == pytest.approx(expected["liver dice"], abs=1e-6)
    assert float(liver["hd95_mm"]) == pytest.approx(expected["liver hd95"], abs=1e-6)
    assert float(liver["volume_difference_ml"]) == pytest.approx(expected["liver difference"], abs=1e-9)
    assert 0.5 < expected["liver dice"] < 1.0 and expected["liver hd95"] > 0  # the hand values are not trivial
    union = mine[("tumour union", "tumour")]
    assert float(union["dice"]) == pytest.approx(expected["union dice"], abs=1e-6)
    assert float(union["hd95_mm"]) == pytest.approx(expected["union hd95"], abs=1e-6)
    first, second = expected["tumours"]
    pair = mine[("tumour pair", first)]
    assert float(pair["dice"]) == pytest.approx(expected["pair dice"], abs=1e-6)
    assert float(pair["hd95_mm"]) == pytest.approx(expected["pair hd95"], abs=1e-6)
    assert ("tumour missed", second) in mine
    assert [row["kind"] for row in rows if row["case_id"] == PATIENT].count("tumour extra") == 1
    # Vessels the AI does not segment: reference only, Dice 0, HD95 undefined (an empty cell, not "nan").
    hepatic = mine[("reference only", "Hepatic vein")]
    assert float(hepatic["dice"]) == 0.0 and hepatic["hd95_mm"] == ""
    # The per-case metrics the report was written from are the QA result's.
    case_rows = result.case(PATIENT).metrics["seg_agreement"]
    assert [row["kind"] for row in case_rows] == [row["kind"] for row in rows if row["case_id"] == PATIENT]

    # The collection summary: the liver over both cases.
    with open(tmp_path / "report" / "segmentation_agreement_summary.csv", newline="", encoding="utf-8") as stream:
        summary = {(row["kind"], row["structure"]): row for row in csv.DictReader(stream)}
    liver_dices = [float(row["dice"]) for row in rows if (row["kind"], row["structure"]) == ("structure", "Liver")]
    assert summary[("structure", "Liver")]["cases"] == "2"
    assert float(summary[("structure", "Liver")]["dice_mean"]) == pytest.approx(sum(liver_dices) / 2, abs=1e-9)
    assert summary[("reference only", "Hepatic vein")]["hd95_mean_mm"] == ""  # no defined HD95: empty, not 0

    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Expert vs AI segmentation agreement</h2>" in page
    section = page[page.index(f"<h2>{PATIENT}</h2>"):page.index("</section>", page.index(f"<h2>{PATIENT}</h2>"))]
    assert "Expert vs AI segmentation" in section and AI_NODE in section
    assert f"<td>{expected['liver dice']:.4f}</td>" in section
    assert f"<td>{expected['union dice']:.4f}</td>" in section
    untouched = page[page.index("<h2>CRLM-CT-1002</h2>"):page.index("</section>", page.index("<h2>CRLM-CT-1002</h2>"))]
    assert "Expert vs AI" not in untouched  # a case without an AI SEG has no agreement table


def test_loading_a_case_with_an_ai_seg_adds_the_agreement_table_node(crlm_with_ai, headless):
    root, expected = crlm_with_ai
    with ReviewService(headless.scene, header_cache=None, snapshots=False) as service:
        service.open(root)
        loaded = service.load_case(PATIENT)
        tables = [node for node in loaded.tables if node.GetName() == f"{AI_NODE} vs expert agreement"]
        assert len(tables) == 1
        table = tables[0].GetTable()
        columns = [table.GetColumnName(index) for index in range(table.GetNumberOfColumns())]
        assert columns[:5] == ["reference", "test", "test_description", "kind", "structure"]

        def value(row: int, column: str) -> object:
            array = table.GetColumnByName(column)
            return array.GetValue(row)

        by_key = {}
        for row in range(table.GetNumberOfRows()):
            kind, labels = value(row, "kind"), value(row, "reference_labels")
            by_key[(kind, value(row, "structure") if kind in ("structure", "tumour union", "reference only")
                    else labels)] = row
        liver = by_key[("structure", "Liver")]
        assert value(liver, "dice") == pytest.approx(expected["liver dice"], abs=1e-6)
        assert value(liver, "hd95_mm") == pytest.approx(expected["liver hd95"], abs=1e-6)
        union = by_key[("tumour union", "tumour")]
        assert value(union, "dice") == pytest.approx(expected["union dice"], abs=1e-6)
        assert value(union, "hd95_mm") == pytest.approx(expected["union hd95"], abs=1e-6)
        pair = by_key[("tumour pair", expected["tumours"][0])]
        assert value(pair, "dice") == pytest.approx(expected["pair dice"], abs=1e-6)
        assert math.isnan(value(by_key[("reference only", "Hepatic vein")], "hd95_mm"))
        # The table sits with the case's study and leaves with the case.
        hierarchy = headless.scene.GetSubjectHierarchyNode()
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(tables[0])) == hierarchy.GetItemParent(
            hierarchy.GetItemByDataNode(loaded.volumes[0]))
        table_id = tables[0].GetID()
        service.browser.unload_case(PATIENT)
        assert headless.scene.GetNodeByID(table_id) is None
