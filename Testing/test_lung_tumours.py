"""Lung-PET-CT-Dx lesions as physical tumours: lesions of different series of one frame of reference that
overlap in RAS are one tumour; the case's lesion count (QA metrics) is the tumour count."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np
import pydicom
import pytest

from conftest import require_shared_data
from SarcomaLungLiverBrowserLib.case_data import RoiData
from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import LungPetCtDxCollection
from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx.boxes import group_tumours, ras_bounds
from SarcomaLungLiverBrowserLib.review.qa import run_collection_qa
from SarcomaLungLiverBrowserLib.samples import lung_pet_ct_dx as sample

FRAME = "1.2.3.4"
CASE = "Lung_Dx-A0002"


def _lesion(series: str, number: int, center: Sequence[float], size: Sequence[float],
            axes: np.ndarray = np.eye(3)) -> RoiData:
    return RoiData(key=f"{series}/lesion/{number}", name=f"{series} lesion {number}", center=np.array(center, float),
                   size=np.array(size, float), axes=axes,
                   attributes={"series_instance_uid": series, "lesion": str(number)})


# ---------------------------------------------------------------------- the grouping rule
def test_two_series_of_one_frame_overlapping_in_ras_are_one_tumour() -> None:
    rois = [_lesion("ct2", 1, (0, 0, 0), (20, 20, 30)), _lesion("ct3", 1, (3, -2, 4), (18, 22, 26)),
            _lesion("pet", 1, (1, 1, 1), (30, 30, 30))]
    tumours = group_tumours(rois, {"ct2": FRAME, "ct3": FRAME, "pet": FRAME})
    assert [(t.number, t.lesions) for t in tumours] == [(1, [("ct2", 1), ("ct3", 1), ("pet", 1)])]


def test_another_frame_of_reference_or_no_overlap_gives_two_tumours() -> None:
    same_place = [_lesion("ct2", 1, (0, 0, 0), (20, 20, 30)), _lesion("ct3", 1, (0, 0, 0), (20, 20, 30))]
    assert len(group_tumours(same_place, {"ct2": FRAME, "ct3": "9.9.9"})) == 2
    assert len(group_tumours(same_place, {"ct2": "", "ct3": ""})) == 2  # no frame stated: nothing to conclude
    apart = [_lesion("ct2", 1, (0, 0, 0), (20, 20, 30)), _lesion("ct3", 1, (0, 0, 60), (20, 20, 30))]
    assert len(group_tumours(apart, {"ct2": FRAME, "ct3": FRAME})) == 2
    touching = [_lesion("ct2", 1, (0, 0, 0), (20, 20, 30)), _lesion("ct3", 1, (20, 0, 0), (20, 20, 30))]
    assert len(group_tumours(touching, {"ct2": FRAME, "ct3": FRAME})) == 2  # a shared face is not a shared tumour


def test_lesions_of_one_series_are_joined_only_through_another_series() -> None:
    overlapping_in_one_series = [_lesion("ct2", 1, (0, 0, 0), (20, 20, 30)), _lesion("ct2", 2, (5, 0, 0), (20, 20, 30))]
    assert len(group_tumours(overlapping_in_one_series, {"ct2": FRAME})) == 2
    spanned = [_lesion("ct2", 1, (0, 0, -20), (20, 20, 10)), _lesion("ct2", 2, (0, 0, 20), (20, 20, 10)),
               _lesion("ct3", 1, (0, 0, 0), (20, 20, 60))]
    tumours = group_tumours(spanned, {"ct2": FRAME, "ct3": FRAME})
    assert [sorted(t.lesions) for t in tumours] == [[("ct2", 1), ("ct2", 2), ("ct3", 1)]]


def test_ras_bounds_of_an_oblique_box_enclose_its_corners() -> None:
    angle = np.radians(30)
    axes = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    center, size = np.array([10.0, -5.0, 3.0]), np.array([40.0, 10.0, 6.0])
    low, high = ras_bounds(center, size, axes)
    corners = np.array([center + axes @ (np.array(signs) * size / 2)
                        for signs in np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).T.reshape(-1, 3)])
    assert np.allclose(low, corners.min(axis=0)) and np.allclose(high, corners.max(axis=0))


# ---------------------------------------------------------------------- generated sample (CT, CT and PET of one study)
def test_sample_tumour_boxed_on_both_reconstructions_and_pet_counts_once(tmp_path: Path) -> None:
    root = sample.generate(tmp_path)
    collection = LungPetCtDxCollection(root)
    data = collection.read_case(collection.find_case("Lung_Dx-A0001"))
    truth = sample.ground_truth()["Lung_Dx-A0001"]
    assert data.metrics["lesions"] == truth.tumours == 2
    assert data.metrics["series_lesions"] == truth.lesion_rois == 5  # the per-series ROIs are all kept
    lesion_rois = [roi for roi in data.rois if roi.attributes.get("role") == "lesion"]
    by_tumour = {}
    for roi in lesion_rois:
        by_tumour.setdefault(roi.attributes["tumour"], set()).add(roi.attributes["series_instance_uid"])
    assert sorted(len(series) for series in by_tumour.values()) == [2, 3]  # the big one is boxed on PET too
    boxes = data.tables[0].dataframe
    assert set(boxes.loc[boxes["duplicate"] == 0, "tumour"]) == {1, 2}


# ---------------------------------------------------------------------- real A0002 boxes, both reconstructions
def _real_case(shared_samples: Path, tmp_path: Path) -> Path:
    folder = shared_samples / "lung_pet_ct_dx_voc"
    if not (folder / "SOURCES.txt").is_file():
        require_shared_data("real VOC samples absent")
    return sample.generate_real_geometry_case(tmp_path, folder)


def _series_files(root: Path, description_part: str) -> List[Path]:
    return sorted(path for path in root.rglob("*.dcm") if description_part in path.parent.name)


def _rewrite(paths: Sequence[Path], change) -> None:  # type: ignore[no-untyped-def]
    for path in paths:
        dataset = pydicom.dcmread(str(path))
        change(dataset)
        dataset.save_as(str(path), enforce_file_format=True)


def _tumours_and_lesions(root: Path) -> tuple:
    collection = LungPetCtDxCollection(root)
    data = collection.read_case(collection.find_case(CASE))
    return data.metrics["lesions"], data.metrics["series_lesions"]


def test_real_boxes_of_both_reconstructions_are_one_tumour(shared_samples: Path, tmp_path: Path) -> None:
    """Real A0002: the B70f and B40f reconstructions are both annotated (three lesion ROIs); one tumour."""
    root = _real_case(shared_samples, tmp_path)
    assert _tumours_and_lesions(root) == (1, 3)
    result = run_collection_qa(LungPetCtDxCollection(root))
    assert [case.metrics["lesions"] for case in result.cases] == [1]


def test_real_reconstruction_in_another_frame_of_reference_is_another_tumour(shared_samples: Path,
                                                                             tmp_path: Path) -> None:
    root = _real_case(shared_samples, tmp_path)
    _rewrite(_series_files(root, "B40f"), lambda dataset: setattr(dataset, "FrameOfReferenceUID", "1.2.826.0.1.7"))
    assert _tumours_and_lesions(root) == (3, 3)


def test_real_reconstruction_moved_away_is_another_tumour(shared_samples: Path, tmp_path: Path) -> None:
    root = _real_case(shared_samples, tmp_path)

    def move(dataset: pydicom.Dataset) -> None:  # 300 mm towards the head: same frame, no overlap
        x, y, z = (float(v) for v in dataset.ImagePositionPatient)
        dataset.ImagePositionPatient = [x, y, z + 300.0]

    _rewrite(_series_files(root, "B40f"), move)
    assert _tumours_and_lesions(root) == (3, 3)


def test_report_gives_the_tumour_count(shared_samples: Path, tmp_path: Path) -> None:
    """The HTML report's case facts show the lesion count QA measured: tumours, not per-series lesions."""
    from SarcomaLungLiverBrowserLib.review.report import write_html_report

    root = _real_case(shared_samples, tmp_path)
    result = run_collection_qa(LungPetCtDxCollection(root))
    report = write_html_report(tmp_path / "report.html", "QA", [case.case for case in result.cases],
                               qa_result=result)
    assert "<dt>Lesions (tumours)</dt><dd>1</dd>" in Path(report).read_text()
