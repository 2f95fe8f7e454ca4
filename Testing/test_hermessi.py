"""Hermessi et al. 2019 LPS/LMS MRI slices: layouts, content sniffing, counts, identical case tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from SarcomaLungLiverBrowserLib.collections.hermessi import (
    PUBLISHED_COUNTS, HermessiSarcomaMriCollection, case_table, file_kind,
)
from SarcomaLungLiverBrowserLib.collections.soft_tissue_sarcoma import SoftTissueSarcomaCollection
from SarcomaLungLiverBrowserLib.geometry import spacing_from_matrix
from SarcomaLungLiverBrowserLib.samples import hermessi as sample
from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory) -> Path:
    return sample.generate(tmp_path_factory.mktemp("hermessi"))


def table_of(root: Path) -> pd.DataFrame:
    return case_table(HermessiSarcomaMriCollection(root).discover_cases())


def test_published_table_is_the_readme_one():
    assert PUBLISHED_COUNTS == {"LPS": {"T1": 676, "T2FS": 457, "STIR": 219},
                                "LMS": {"T1": 472, "T2FS": 409, "STIR": 63}}


def test_detection_does_not_confuse_the_two_sarcoma_collections(mixed_root):
    assert HermessiSarcomaMriCollection.detect(mixed_root)
    assert not SoftTissueSarcomaCollection.detect(mixed_root)


def test_file_types_come_from_content(mixed_root):
    kinds = {p.relative_to(mixed_root).as_posix(): file_kind(p) for p in mixed_root.rglob("*") if p.is_file()}
    assert kinds["README.txt"] is None
    assert kinds["STIR/Leiomyosarcoma/STS_020/STIR_01.jpg"] == "jpeg"
    assert all(kind == "png" for name, kind in kinds.items() if name.endswith(".dat"))
    assert kinds["T1/Leiomyosarcoma/STS_005/T1_01"] == "dicom"  # no extension


@pytest.mark.parametrize("nesting", ["class/sequence", "sequence/class"])
@pytest.mark.parametrize("patients", ["file", "folder", None])
def test_dicom_and_png_layouts_give_identical_case_tables(tmp_path, nesting, patients):
    dicom = sample.write_layout(tmp_path / "dicom", "dicom", nesting, patients)
    png = sample.write_layout(tmp_path / "png", "png", "sequence/class" if nesting == "class/sequence"
                              else "class/sequence", patients, long_names=True)
    dicom_table, png_table = table_of(dicom), table_of(png)
    pd.testing.assert_frame_equal(dicom_table, png_table)
    if patients is None:
        expected_ids = sorted(f"{label}_{sequence}" for label, sequence in sample.CONTENT)
    else:
        expected_ids = sorted({patient for group in sample.CONTENT.values() for patient in group})
    assert dicom_table["case_id"].tolist() == expected_ids
    for label, sequence in sample.CONTENT:
        rows = dicom_table[dicom_table["class"] == label]
        assert rows[sequence].sum() == sample.expected_counts()[(label, sequence)]


def test_counts_against_published_table(mixed_root):
    collection = HermessiSarcomaMriCollection(mixed_root)
    counts = collection.counts().set_index(["Class", "Sequence"])
    for (label, sequence), found in sample.expected_counts().items():
        assert counts.loc[(label, sequence), "Found"] == found
        assert counts.loc[(label, sequence), "Difference"] == found - PUBLISHED_COUNTS[label][sequence]
    assert counts.loc[("LPS", "Total"), "Found"] == 11 and counts.loc[("LMS", "Total"), "Published"] == 944
    mismatches = [f for f in collection.collection_findings() if f.check == "hermessi.count_mismatch"]
    assert len(mismatches) == 6 and all(f.severity == "warning" for f in mismatches)


def test_full_counts_give_no_mismatch(tmp_path, monkeypatch):
    # Scale the published table down to the sample's own counts: then nothing is reported.
    import SarcomaLungLiverBrowserLib.collections.hermessi as module

    monkeypatch.setattr(module, "PUBLISHED_COUNTS", {
        label: {sequence: sample.expected_counts()[(label, sequence)] for sequence in module.SEQUENCES}
        for label in module.CLASSES})
    root = sample.write_layout(tmp_path / "h", "png", "class/sequence", "file")
    assert HermessiSarcomaMriCollection(root).collection_findings() == []


def test_load_patient_case_stacks_dicom_and_keeps_pngs_single(mixed_root, builder):
    collection = HermessiSarcomaMriCollection(mixed_root)
    case = collection.find_case("STS_003")
    assert case.diagnosis == "Liposarcoma (LPS)"
    loaded = collection.load_case(case, builder)
    by_sequence = {}
    for node in loaded.volumes:
        assert node.GetAttribute("SarcomaLungLiverBrowser.class") == "LPS"
        by_sequence.setdefault(node.GetAttribute("SarcomaLungLiverBrowser.sequence"), []).append(node)
    assert sorted(by_sequence) == ["T1", "T2FS"]
    (t1,) = by_sequence["T1"]
    shape, ijk_to_ras = SceneBuilder.volume_geometry(t1)
    assert shape == (3, 32, 32)
    assert spacing_from_matrix(ijk_to_ras) == pytest.approx([0.74, 0.74, 5.5])
    import slicer

    voxels = slicer.util.arrayFromVolume(t1)
    for index in range(3):
        assert np.array_equal(voxels[index], sample.slice_pixels("LPS", "T1", "STS_003", index))
    assert len(by_sequence["T2FS"]) == 2
    for index, node in enumerate(sorted(by_sequence["T2FS"], key=lambda n: n.GetName())):
        shape, ijk_to_ras = SceneBuilder.volume_geometry(node)
        assert shape == (1, 32, 32) and spacing_from_matrix(ijk_to_ras) == pytest.approx([1.0, 1.0, 1.0])
        assert node.GetAttribute("SarcomaLungLiverBrowser.file_type") == "png"
        assert np.array_equal(slicer.util.arrayFromVolume(node)[0],
                              sample.slice_pixels("LPS", "T2FS", "STS_003", index))
    assert len(loaded.tables) == 1
    assert loaded.tables[0].GetTable().GetNumberOfRows() == 8
    assert any(f.check == "hermessi.count_mismatch" for f in loaded.findings)


def test_group_cases_without_patients(tmp_path, builder):
    root = sample.write_layout(tmp_path / "h", "dicom", "sequence/class", None)
    collection = HermessiSarcomaMriCollection(root)
    case = collection.find_case("LPS_T1")
    assert case.summary["grouping"] == "class and sequence" and case.summary["T1"] == 5
    loaded = collection.load_case(case, builder)
    # Two patients' series, each stacked.
    shapes = sorted(SceneBuilder.volume_geometry(node)[0][0] for node in loaded.volumes)
    assert shapes == [2, 3]


def test_unreadable_image_is_reported_not_fatal(tmp_path, builder):
    root = sample.write_layout(tmp_path / "h", "png", "class/sequence", "file")
    broken = root / "LPS" / "T1" / "STS_003_T1_02.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"broken")  # PNG magic, no image
    collection = HermessiSarcomaMriCollection(root)
    loaded = collection.load_case(collection.find_case("STS_003"), builder)
    assert len(loaded.volumes) == 4
    assert any(f.check == "hermessi.unreadable_file" and "STS_003_T1_02.png" in f.message for f in loaded.findings)


def test_lone_dicom_slice_keeps_its_patient_position():
    import numpy as np
    import pydicom
    import pydicom.data

    from SarcomaLungLiverBrowserLib.collections.hermessi import _dicom_single
    from SarcomaLungLiverBrowserLib.geometry import apply_matrix, lps_to_ras

    path = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    dataset = pydicom.dcmread(str(path))
    voxels, ijk_to_ras = _dicom_single(path)
    assert voxels.shape == (1, dataset.Rows, dataset.Columns)
    assert np.allclose(apply_matrix(ijk_to_ras, [0, 0, 0]), lps_to_ras([float(v) for v in dataset.ImagePositionPatient]))
    row_spacing, column_spacing = (float(v) for v in dataset.PixelSpacing)
    expected = lps_to_ras(np.array([float(v) for v in dataset.ImagePositionPatient])
                          + 3 * column_spacing * np.array([float(v) for v in dataset.ImageOrientationPatient[:3]]))
    assert np.allclose(apply_matrix(ijk_to_ras, [3, 0, 0]), expected)
