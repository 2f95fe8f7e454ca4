"""One annotation table per collection: a row per box, lesion, segment and contour, as CSV and Parquet."""
from __future__ import annotations

import pandas as pd
import pytest

from SarcomaLungLiverBrowserLib.review.annotations import ANNOTATION_COLUMNS, write_annotation_table
from SarcomaLungLiverBrowserLib.review.store import ReviewStore
from SarcomaLungLiverBrowserLib.service import ReviewService

from test_review_finding_places import root_of
from test_review_service import sllb

pyarrow_parquet = pytest.importorskip("pyarrow.parquet", reason="pyarrow is in the test extra")


def annotations_in_scene(service: ReviewService) -> dict:
    """Per case, how many segments and ROIs loading it puts into the scene."""
    counts = {}
    for case in service.cases():
        loaded = service.load_case(case.case_id)
        segments = sum(node.GetSegmentation().GetNumberOfSegments() for node in loaded.segmentations)
        counts[case.case_id] = segments + len(loaded.rois)
    return counts


@pytest.mark.parametrize("key", ["lung_pet_ct_dx", "crlm", "ispy1", "soft_tissue_sarcoma", "hermessi"])
def test_one_row_per_annotation_in_the_scene_and_it_reads_back(headless, sample_collections, tmp_path, key):
    root = root_of(sample_collections, key)
    with ReviewService(headless.scene, header_cache=None, snapshots=False) as service:
        service.open(root)
        expected = annotations_in_scene(service)
        service.set_store_path(tmp_path / "review.sqlite")
        first = next((case for case, count in expected.items() if count), None)
        table = service.annotation_table()
        assert list(table.columns[:len(ANNOTATION_COLUMNS)]) == ANNOTATION_COLUMNS
        assert table.attrs["skipped"] == []
        assert len(table) == sum(expected.values())
        assert table.groupby("case_id").size().to_dict() == {case: n for case, n in expected.items() if n}
        if first is not None:
            annotation = table.loc[table["case_id"] == first, "annotation"].iloc[0]
            service.set_verdict(first, "rejected", "", reviewer="Ann", annotation=annotation)
            service.set_verdict(first, "accepted", "", reviewer="Bob", annotation=annotation)
            table = service.annotation_table()
            row = table[(table["case_id"] == first) & (table["annotation"] == annotation)].iloc[0]
            assert (row["verdict Ann"], row["verdict Bob"], row["adjudicated_verdict"]) == ("rejected", "accepted", "")
    # Every annotation has a place and a size.
    assert table[["center_r", "center_a", "center_s", "r_min", "s_max"]].notna().all().all()
    assert (table[["volume_mm3", "area_mm2"]].fillna(0).sum(axis=1) >= 0).all()
    assert (table["r_min"] <= table["center_r"]).all() and (table["center_r"] <= table["r_max"]).all()
    written = write_annotation_table(table, tmp_path / "a.csv", tmp_path / "a.parquet")
    assert [path.name for path in written] == ["a.csv", "a.parquet"]
    from_csv = pd.read_csv(tmp_path / "a.csv", keep_default_na=False)
    from_parquet = pyarrow_parquet.read_table(tmp_path / "a.parquet").to_pandas()
    assert len(from_csv) == len(from_parquet) == len(table)
    assert list(from_parquet.columns) == list(table.columns)
    if len(table):
        assert from_parquet["volume_mm3"].equals(table["volume_mm3"])
        assert set(from_csv["kind"]) == set(table["kind"])


def test_segment_measures_on_the_crlm_sample(headless, sample_collections):
    with ReviewService(headless.scene, header_cache=None, snapshots=False) as service:
        service.open(root_of(sample_collections, "crlm"))
        table = service.annotation_table()
        loaded = service.load_case("CRLM-CT-1001")
    node = loaded.segmentations[0]
    segment_id = node.GetSegmentation().GetSegmentIdBySegmentName("Liver")
    import numpy as np
    import vtk

    from SarcomaLungLiverBrowserLib.scene.builder import segment_mask

    volume = loaded.background_volume
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    ijk = np.array([[ijk_to_ras.GetElement(r, c) for c in range(4)] for r in range(4)])
    mask = segment_mask(node, segment_id, volume.GetImageData().GetDimensions()[::-1], ijk)
    row = table[(table["case_id"] == "CRLM-CT-1001") & (table["annotation"] == "Liver")].iloc[0]
    assert row["kind"] == "segment" and row["class"] == "Liver" and row["voxels"] == mask.sum()
    assert row["volume_mm3"] == pytest.approx(mask.sum() * abs(np.linalg.det(ijk[:3, :3])))
    assert row["source_file"].endswith(".dcm")


def test_command_line_writes_the_annotation_table(sample_collections, tmp_path):
    root = root_of(sample_collections, "crlm")
    with ReviewStore(tmp_path / "review.sqlite") as store:
        store.set_verdict("CRLM-CT-1002", "Tumor_8", "rejected", "", "Ann")
    result = sllb("annotations", root, "--csv", tmp_path / "a.csv", "--parquet", tmp_path / "a.parquet",
                  "--store", tmp_path / "review.sqlite")
    assert result.returncode == 0, result.stderr
    table = pyarrow_parquet.read_table(tmp_path / "a.parquet").to_pandas()
    assert f"{len(table)} annotation(s) in 3 case(s)" in result.stdout
    tumour = table[(table["case_id"] == "CRLM-CT-1002") & (table["annotation"] == "Tumor_8")]
    assert list(tumour["verdict Ann"]) == ["rejected"] and list(tumour["class"]) == ["Tumor"]
    assert len(pd.read_csv(tmp_path / "a.csv")) == len(table)
