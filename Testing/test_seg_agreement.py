"""Expert vs AI segmentation agreement: Dice, HD95 and volumes by segmented-property codes."""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
from pydicom.sr.codedict import codes

from SarcomaLungLiverBrowserLib.formats.dicom_seg import ExportSegment, SegCode, decode_seg, write_seg
from SarcomaLungLiverBrowserLib.formats.dicom_series import group_by_series, read_series, scan_folder
from SarcomaLungLiverBrowserLib.formats.seg_agreement import (
    TUMOUR,
    Structure,
    collection_agreement,
    compare_structures,
    dice,
    grid_spacing_kji,
    hausdorff95,
    structure_key,
    structures_from_decoded,
    volume_ml,
)
from SarcomaLungLiverBrowserLib.samples import crlm as crlm_sample

# How IDC's BAMF/AIMI liver-tumour SEGs code their two labels (SegDB LIVER and
# LIVER+NEOPLASM_MALIGNANT_PRIMARY); the expert CRLM SEGs call lesions "Neoplasm".
BAMF_LIVER = (SegCode("123037004", "SCT", "Anatomical Structure"), SegCode("10200004", "SCT", "Liver"))
BAMF_TUMOUR = (SegCode("49755003", "SCT", "Morphologically Altered Structure"),
               SegCode("86049000", "SCT", "Neoplasm, Primary"))


# ---------------------------------------------------------------------- independent brute force
def _brute_surface(mask: np.ndarray) -> List[Tuple[int, int, int]]:
    """Voxels with a 6-neighbour outside the mask (or outside the array), by explicit loops."""
    points = []
    shape = mask.shape
    for k, j, i in zip(*np.nonzero(mask)):
        for dk, dj, di in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
            n = (k + dk, j + dj, i + di)
            if not all(0 <= n[a] < shape[a] for a in range(3)) or not mask[n]:
                points.append((int(k), int(j), int(i)))
                break
    return points


def _brute_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    sa = np.array(_brute_surface(a), dtype=float) * spacing
    sb = np.array(_brute_surface(b), dtype=float) * spacing
    ab = [min(math.dist(p, q) for q in sb) for p in sa]
    ba = [min(math.dist(p, q) for q in sa) for p in sb]
    return max(float(np.percentile(ab, 95)), float(np.percentile(ba, 95)))


def _kd_tree_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """The same definition through a k-d tree over the loop-found surfaces (for masks too big for pairs)."""
    from scipy.spatial import cKDTree

    sa = np.array(_brute_surface(a), dtype=float) * spacing
    sb = np.array(_brute_surface(b), dtype=float) * spacing
    ab, _ = cKDTree(sb).query(sa)
    ba, _ = cKDTree(sa).query(sb)
    return max(float(np.percentile(ab, 95)), float(np.percentile(ba, 95)))


# ---------------------------------------------------------------------- hand computations
def test_single_voxels_three_slices_apart() -> None:
    a = np.zeros((5, 4, 4), dtype=bool)
    b = np.zeros_like(a)
    a[0, 1, 1] = b[3, 1, 1] = True
    spacing = (2.0, 0.5, 0.7)
    assert dice(a, b) == 0.0
    assert hausdorff95(a, b, spacing) == pytest.approx(6.0, abs=1e-6)  # 3 slices x 2 mm


def test_two_voxels_against_one_by_hand() -> None:
    a = np.zeros((3, 3, 4), dtype=bool)
    b = np.zeros_like(a)
    a[1, 1, 1:3] = True
    b[1, 1, 1] = True
    spacing = (1.0, 1.0, 0.7)
    assert dice(a, b) == pytest.approx(2 / 3, abs=1e-6)
    # A->B distances {0, 0.7}: the 95th percentile interpolates to 0.95 x 0.7; B->A {0}.
    assert hausdorff95(a, b, spacing) == pytest.approx(0.665, abs=1e-6)
    assert volume_ml(a, spacing) == pytest.approx(2 * 0.7 / 1000, abs=1e-12)


def test_shifted_cubes_match_brute_force() -> None:
    a = np.zeros((8, 9, 10), dtype=bool)
    b = np.zeros_like(a)
    a[2:5, 2:5, 2:6] = True
    b[3:7, 3:6, 2:5] = True
    spacing = np.array([2.5, 0.8, 0.6])
    expected_dice = 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))
    assert dice(a, b) == pytest.approx(expected_dice, abs=1e-6)
    assert hausdorff95(a, b, spacing) == pytest.approx(_brute_hd95(a, b, spacing), abs=1e-6)
    assert hausdorff95(a, a, spacing) == 0.0


def test_empty_masks_give_nan_not_a_number_that_looks_valid() -> None:
    empty = np.zeros((2, 2, 2), dtype=bool)
    one = empty.copy()
    one[0, 0, 0] = True
    assert math.isnan(dice(empty, empty))
    assert math.isnan(hausdorff95(empty, one, (1, 1, 1)))
    with pytest.raises(ValueError, match="different shapes"):
        hausdorff95(one, np.ones((3, 2, 2), dtype=bool), (1, 1, 1))


def test_structures_match_by_codes_not_labels() -> None:
    liver = SegCode("10200004", "SCT", "Liver")
    anatomy = SegCode("123037004", "SCT", "Anatomical Structure")
    old_anatomy = SegCode("T-D000A", "SRT", "Anatomical Structure")
    assert structure_key(anatomy, liver) == structure_key(old_anatomy, SegCode("10200004", "SRT", "Liver"))
    neoplasm = SegCode("108369006", "SCT", "Neoplasm")
    assert structure_key(SegCode("49755003", "SCT", "Morphologically abnormal structure"), neoplasm) == TUMOUR
    assert structure_key(*BAMF_TUMOUR) == TUMOUR
    assert structure_key(anatomy, SegCode("86049000", "SCT", "x")) == TUMOUR
    left = SegCode("7771000", "SCT", "Left")
    assert structure_key(anatomy, SegCode("64033007", "SCT", "Kidney"), left) != structure_key(
        anatomy, SegCode("64033007", "SCT", "Kidney"))
    # Same label, different codes: not matched.
    grid = np.zeros((3, 3, 3), dtype=bool)
    grid[1, 1, 1] = True
    agreement = compare_structures([Structure("Organ", grid, anatomy, liver)],
                                   [Structure("Organ", grid, anatomy, SegCode("64033007", "SCT", "Kidney"))],
                                   (1, 1, 1))
    assert sorted(r.kind for r in agreement.rows) == ["reference only", "test only"]


def test_tumours_union_and_one_to_one(tmp_path: Path) -> None:
    shape = (10, 20, 20)
    spacing = (2.0, 1.0, 1.0)
    t1, t2, t3 = (np.zeros(shape, dtype=bool) for _ in range(3))
    t1[2:5, 2:6, 2:6] = True
    t2[5:8, 12:16, 12:16] = True
    t3[1:3, 15:18, 2:4] = True  # missed by the AI
    ai = np.zeros(shape, dtype=bool)
    ai[2:5, 3:7, 2:6] = True   # t1 moved by one row
    ai[5:8, 12:16, 12:16] = True  # t2 exactly
    ai[8:10, 1:3, 16:19] = True  # extra
    tumour_codes = (SegCode("49755003", "SCT", "Morphologically abnormal structure"),
                    SegCode("108369006", "SCT", "Neoplasm"))
    expert = [Structure(f"Tumor_{n}", m, *tumour_codes) for n, m in enumerate((t1, t2, t3), start=1)]
    agreement = compare_structures(expert, [Structure("Liver tumor", ai, *BAMF_TUMOUR)], spacing)
    union = agreement.row("tumour union", TUMOUR)
    expert_union = t1 | t2 | t3
    assert union.dice == pytest.approx(dice(expert_union, ai), abs=1e-6)
    assert union.hd95_mm == pytest.approx(_brute_hd95(expert_union, ai, np.array(spacing)), abs=1e-6)
    pairs = [r for r in agreement.rows if r.kind == "tumour pair"]
    assert sorted(r.reference_labels for r in pairs) == ["Tumor_1", "Tumor_2"]
    pair_1 = next(r for r in pairs if r.reference_labels == "Tumor_1")
    moved = np.zeros(shape, dtype=bool)
    moved[2:5, 3:7, 2:6] = True
    assert pair_1.dice == pytest.approx(dice(t1, moved), abs=1e-6)
    assert pair_1.hd95_mm == pytest.approx(_brute_hd95(t1, moved, np.array(spacing)), abs=1e-6)
    assert next(r for r in pairs if r.reference_labels == "Tumor_2").dice == 1.0
    assert [r.reference_labels for r in agreement.rows if r.kind == "tumour missed"] == ["Tumor_3"]
    extra = [r for r in agreement.rows if r.kind == "tumour extra"]
    assert len(extra) == 1 and extra[0].test_ml == pytest.approx(volume_ml(ai[8:10, 1:3, 16:19], spacing))
    table = agreement.to_dataframe()
    assert list(table["kind"]).count("tumour pair") == 2 and "hd95_mm" in table.columns


# ---------------------------------------------------------------------- a CRLM-like case from SEG files
@pytest.fixture(scope="module")
def crlm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return crlm_sample.generate(tmp_path_factory.mktemp("crlm"))


def test_expert_and_bamf_coded_ai_seg_give_per_structure_results(crlm_root: Path, tmp_path: Path) -> None:
    patient = "CRLM-CT-1001"
    summary, truth_masks = crlm_sample.load_ground_truth(crlm_root, patient)
    scan = scan_folder(crlm_root)
    ct = read_series(group_by_series(scan.instances)[summary["ct_series_instance_uid"]])
    expert = decode_seg(crlm_root / summary["seg_path"], ct, patient)
    labels = [s["label"] for s in summary["segments"]]
    truth = dict(zip(labels, truth_masks))
    tumour_labels = [label for label in labels if label.startswith("Tumor")]
    assert len(tumour_labels) >= 2
    # An AI result like BAMF's: liver one row smaller, one tumour label holding all tumours but the last,
    # and a false positive far from the others.
    ai_liver = truth["Liver"].copy()
    ai_liver[:, 1:, :] &= truth["Liver"][:, :-1, :]
    ai_tumour = np.logical_or.reduce([truth[label] for label in tumour_labels[:-1]])
    false_positive = np.zeros_like(ai_tumour)
    false_positive[0:2, 2:5, 2:5] = True
    ai_tumour |= false_positive
    ai_path = write_seg(tmp_path / "ai_seg.dcm", [
        ExportSegment("Liver", ai_liver, *BAMF_LIVER, algorithm_type="AUTOMATIC", algorithm_name="AIMI liver-tumor"),
        ExportSegment("Liver tumor", ai_tumour, *BAMF_TUMOUR, anatomic_region=BAMF_LIVER[1],
                      algorithm_type="AUTOMATIC", algorithm_name="AIMI liver-tumor"),
    ], ct, series_description="AIMI liver-tumor AI segmentation", manufacturer="QIICR",
        manufacturer_model_name="git@github.com:QIICR/dcmqi.git")
    ai = decode_seg(ai_path, ct, patient)
    spacing = grid_spacing_kji(ct.ijk_to_ras)
    agreement = compare_structures(structures_from_decoded(expert), structures_from_decoded(ai), spacing)

    rows = {(r.kind, r.structure): r for r in agreement.rows}
    # The expert's liver and remnant share the Liver code (the sample codes the remnant as liver): one structure.
    liver = rows[("structure", "Liver")]
    expert_liver = truth["Liver"] | truth[labels[1]]
    assert liver.dice == pytest.approx(dice(expert_liver, ai_liver), abs=1e-6)
    assert liver.hd95_mm == pytest.approx(_kd_tree_hd95(expert_liver, ai_liver, np.array(spacing)), abs=1e-6)
    assert liver.volume_difference_ml == pytest.approx(
        volume_ml(ai_liver, spacing) - volume_ml(expert_liver, spacing), abs=1e-9)
    assert liver.volume_difference_percent == pytest.approx(
        100.0 * liver.volume_difference_ml / volume_ml(expert_liver, spacing), abs=1e-9)  # AI minus expert, in %
    assert liver.dice < 1.0 and liver.hd95_mm > 0
    # The AI segments no vessels: the expert's hepatic and portal veins are reported as reference only.
    only = {(r.structure, r.reference_labels) for r in agreement.rows if r.kind == "reference only"}
    assert only == {("Hepatic vein", "Hepatic"), ("Portal vein", "Portal")}
    assert not [r for r in agreement.rows if r.kind == "test only"]
    union = rows[("tumour union", TUMOUR)]
    expert_union = np.logical_or.reduce([truth[label] for label in tumour_labels])
    assert union.dice == pytest.approx(dice(expert_union, ai_tumour), abs=1e-6)
    pairs = [r for r in agreement.rows if r.kind == "tumour pair"]
    assert sorted(r.reference_labels for r in pairs) == sorted(tumour_labels[:-1])
    assert all(r.dice == pytest.approx(1.0) for r in pairs)
    assert [r.reference_labels for r in agreement.rows if r.kind == "tumour missed"] == [tumour_labels[-1]]
    assert len([r for r in agreement.rows if r.kind == "tumour extra"]) == 1


def test_collection_summary_over_cases() -> None:
    anatomy, liver = SegCode("123037004", "SCT", "Anatomical Structure"), SegCode("10200004", "SCT", "Liver")
    a = np.zeros((4, 4, 4), dtype=bool)
    a[1:3, 1:3, 1:3] = True
    b = np.zeros_like(a)
    b[1:3, 1:3, 1:4] = True
    per_case = {
        "case 1": compare_structures([Structure("Liver", a, anatomy, liver)], [Structure("Liver", a, anatomy, liver)],
                                     (1, 1, 1)),
        "case 2": compare_structures([Structure("Liver", a, anatomy, liver)], [Structure("Liver", b, anatomy, liver)],
                                     (1, 1, 1)),
    }
    rows, summary = collection_agreement(per_case)
    assert list(rows.case_id) == ["case 1", "case 2"]
    liver_row = summary[(summary.kind == "structure") & (summary.structure == "Liver")].iloc[0]
    assert liver_row.cases == 2
    assert liver_row.dice_mean == pytest.approx((1.0 + dice(a, b)) / 2, abs=1e-9)
