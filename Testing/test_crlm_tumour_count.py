"""CRLM tumour counts exclude empty segments, and tumours without recommended colours get distinct colours,
on a SEG written on mirp's real CRLM-CT-1004 CT (no recommended colours, ten Tumor_n, one of them empty)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from conftest import require_shared_data
from SarcomaLungLiverBrowserLib.collections.crlm import CrlmCollection
from SarcomaLungLiverBrowserLib.formats.dicom_seg import ExportSegment, SegCode, write_seg
from SarcomaLungLiverBrowserLib.formats.dicom_series import read_series, scan_folder

CRLM_CT = Path("oncoray__mirp") / "test" / "data" / "ct_images_seg" / "CRLM-CT-1004" / "image"
NEOPLASM = SegCode("108369006", "SCT", "Neoplasm")
LIVER = SegCode("10200004", "SCT", "Liver")
TUMOURS = 10
EMPTY_TUMOUR = 3


def _case_with_seg(external_data: Path, tmp_path: Path) -> Tuple[Path, Path]:
    """``CRLM-CT-1004/<study>/<CT series>/`` (the real CT) and a SEG series beside it; returns (root, SEG)."""
    source = external_data / CRLM_CT
    if not source.is_dir():
        require_shared_data(f"{source} not present")
    root = tmp_path / "Colorectal-Liver-Metastases"
    ct_folder = root / "CRLM-CT-1004" / "study" / "1.000000-CT"
    shutil.copytree(source, ct_folder)
    volume = read_series(sorted(scan_folder(ct_folder).instances, key=lambda i: i.instance_number or 0))
    depth, rows, columns = volume.voxels.shape
    k, j, i = np.indices((depth, rows, columns))
    liver = ((j - rows / 2) ** 2 + (i - columns / 2) ** 2) < (rows / 3) ** 2
    segments: List[ExportSegment] = [ExportSegment("Liver", liver, type=LIVER)]
    for number in range(1, TUMOURS + 1):
        mask = np.zeros_like(liver)
        if number != EMPTY_TUMOUR:
            centre_j, centre_i = rows / 2 - 60 + 12 * number, columns / 2 - 60 + 12 * number
            mask = ((j - centre_j) ** 2 + (i - centre_i) ** 2 < 16) & (k == depth // 2)
        segments.append(ExportSegment(f"Tumor_{number}", mask, category=NEOPLASM, type=NEOPLASM))
    seg = write_seg(root / "CRLM-CT-1004" / "study" / "100.000000-Segmentation" / "1-1.dcm", segments, volume,
                    series_description="Segmentation")
    return root, seg


@pytest.fixture
def loaded_case(external_data: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    root, seg = _case_with_seg(external_data, tmp_path)
    collection = CrlmCollection(root)
    data = collection.read_case(collection.find_case("CRLM-CT-1004"))
    data.findings.extend(collection.check_case(data))
    return data, seg


def test_tumour_count_excludes_the_empty_tumour_segment(loaded_case) -> None:  # type: ignore[no-untyped-def]
    data, seg = loaded_case
    assert data.metrics["tumour_count"] == TUMOURS - 1
    assert data.metrics["empty_tumour_segments"] == [f"Tumor_{EMPTY_TUMOUR}"]
    empty = [f for f in data.findings if f.check == "crlm.empty_segment"]
    assert len(empty) == 1 and empty[0].segment_id == f"Tumor_{EMPTY_TUMOUR}"
    assert "has no voxels; not counted as a tumour" in empty[0].message and seg.name in empty[0].message
    summary = next(f for f in data.findings if f.check == "crlm.summary")
    assert f"{TUMOURS - 1} tumour(s)" in summary.message and f"Tumor_{EMPTY_TUMOUR}" in summary.message
    assert summary.value == TUMOURS - 1


def test_tumours_without_recommended_colours_never_repeat(loaded_case) -> None:  # type: ignore[no-untyped-def]
    data, _ = loaded_case
    colours: Dict[str, Tuple[float, ...]] = {spec.segment_id: tuple(spec.color)
                                             for spec in data.segmentations[0].segments}
    assert colours["Tumor_9"] != colours["Tumor_1"]  # a fixed 8-colour list repeated here
    tumour_colours = [colours[f"Tumor_{n}"] for n in range(1, TUMOURS + 1)]
    assert len(set(tumour_colours)) == TUMOURS
    assert colours["Liver"] not in tumour_colours
