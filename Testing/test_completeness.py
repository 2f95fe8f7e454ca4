"""Completeness against IDC's real index (idc-index-data 25.0.5): exactly what was removed is reported.

The tree is built from the index itself: the real series UIDs of a few CRLM
patients (collection ``colorectal_liver_metastases``), each series with as
many tiny placeholder DICOM files as IDC lists, in idc-index's layout.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from SarcomaLungLiverBrowserLib.cli import main
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.review.completeness import (
    COLUMNS,
    IDC_INDEX_DATA_REQUIREMENT,
    SELECTION_FILE,
    check_completeness,
    index_parquet_path,
    read_index,
    write_selection,
)

CRLM = "colorectal_liver_metastases"
PATIENTS = ["CRLM-CT-1040", "CRLM-CT-1085", "CRLM-CT-1090", "CRLM-CT-1094"]
SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "SEG": "1.2.840.10008.5.1.4.1.1.66.4",
             "SR": "1.2.840.10008.5.1.4.1.1.88.34", "PT": "1.2.840.10008.5.1.4.1.1.128"}


@pytest.fixture(scope="module")
def index_path() -> Path:
    try:
        return index_parquet_path()
    except Exception as error:  # the pinned package is part of the test environment (requirements-lock.txt)
        pytest.fail(f"{IDC_INDEX_DATA_REQUIREMENT} must be installed for these tests: {error}", pytrace=False)


@pytest.fixture(scope="module")
def crlm_index(index_path: Path):
    rows = read_index(collections=[CRLM], path=index_path)
    return rows[rows.PatientID.isin(PATIENTS)]


def write_placeholder(path: Path, series, sop_uid: str, number: int) -> None:
    """A tiny but real DICOM file carrying the series' identity (generated 2x2 pixels)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASS.get(series.Modality, SOP_CLASS["CT"])
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = meta.MediaStorageSOPClassUID
    dataset.SOPInstanceUID = sop_uid
    dataset.PatientID = series.PatientID
    dataset.StudyInstanceUID = series.StudyInstanceUID
    dataset.SeriesInstanceUID = series.SeriesInstanceUID
    dataset.Modality = series.Modality
    dataset.SeriesDescription = series.SeriesDescription or ""
    dataset.InstanceNumber = number
    dataset.Rows = dataset.Columns = 2
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.SamplesPerPixel = 1
    dataset.PixelRepresentation = 0
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.PixelData = np.arange(4, dtype=np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(str(path), enforce_file_format=True)


def build_tree(root: Path, index_rows) -> Dict[str, Path]:
    """idc-index's layout: collection/PatientID/StudyUID/Modality_SeriesUID/<n>.dcm; series folder by UID."""
    folders = {}
    for series in index_rows.itertuples():
        folder = root / CRLM / series.PatientID / series.StudyInstanceUID / f"{series.Modality}_{series.SeriesInstanceUID}"
        for number in range(1, int(series.instanceCount) + 1):
            write_placeholder(folder / f"{number:04d}.dcm", series, generate_uid(), number)
        folders[series.SeriesInstanceUID] = folder
    return folders


@pytest.fixture
def tree(tmp_path: Path, crlm_index):
    root = tmp_path / "idc"
    return root, build_tree(root, crlm_index)


def test_a_complete_tree_is_complete(tree, crlm_index, index_path: Path) -> None:
    root, _ = tree
    result = check_completeness(root, collections=[CRLM], patients=PATIENTS, index_path=index_path)
    assert result.rows == [] and result.complete
    summary = result.summary[0]
    assert summary["series_expected"] == summary["series_complete"] == len(crlm_index)
    assert summary["instances_on_disk"] == int(crlm_index.instanceCount.sum())
    assert summary["analysis_results"] == "bamf_aimi_annotations"


def test_one_patient_one_series_ten_instances_and_an_ai_seg_removed(tree, crlm_index, index_path: Path,
                                                                     tmp_path: Path) -> None:
    root, folders = tree
    rows = crlm_index.set_index("SeriesInstanceUID")
    # 1. a whole patient
    shutil.rmtree(root / CRLM / "CRLM-CT-1090")
    # 2. the expert SEG series of another patient
    expert_seg = crlm_index[(crlm_index.PatientID == "CRLM-CT-1040") & (crlm_index.Modality == "SEG")
                            & (crlm_index.analysis_result_id == "")].SeriesInstanceUID.item()
    shutil.rmtree(folders[expert_seg])
    # 3. ten CT instances of a third
    ct = crlm_index[(crlm_index.PatientID == "CRLM-CT-1094") & (crlm_index.Modality == "CT")].SeriesInstanceUID.item()
    for path in sorted(folders[ct].glob("*.dcm"))[:10]:
        path.unlink()
    # 4. the AI SEG (analysis result) of a fourth
    ai_seg = crlm_index[(crlm_index.PatientID == "CRLM-CT-1085")
                        & (crlm_index.analysis_result_id == "bamf_aimi_annotations")].SeriesInstanceUID.tolist()
    for uid in ai_seg:
        shutil.rmtree(folders[uid])
    # 5. a generated series IDC does not know, and a file that is not readable DICOM
    unknown_uid = generate_uid()
    stray = SimpleNamespace(PatientID="CRLM-CT-1094", StudyInstanceUID=rows.loc[ct].StudyInstanceUID,
                            SeriesInstanceUID=unknown_uid, Modality="CT", SeriesDescription="local reformat")
    write_placeholder(root / "extra" / "1.dcm", stray, generate_uid(), 1)
    (root / "extra" / "broken.dcm").write_bytes(b"not dicom at all")

    write_selection(root, CRLM, PATIENTS)
    result = check_completeness(root, index_path=index_path)  # scope from the selection file
    found = sorted((r["status"], r["PatientID"], r["SeriesInstanceUID"]) for r in result.rows)
    expected_count = int(rows.loc[ct].instanceCount)
    assert found == sorted([
        ("patient missing", "CRLM-CT-1090", ""),
        ("series missing", "CRLM-CT-1040", expert_seg),
        ("instances missing", "CRLM-CT-1094", ct),
        ("analysis result missing", "CRLM-CT-1085", " ".join(ai_seg)),
        ("series unknown to IDC", "CRLM-CT-1094", unknown_uid),
        ("unreadable file", "", ""),
    ])
    instances = result.rows_with("instances missing")[0]
    assert (instances["expected_instances"], instances["instances_on_disk"]) == (expected_count, expected_count - 10)
    assert result.rows_with("analysis result missing")[0]["analysis_result_id"] == "bamf_aimi_annotations"
    assert "broken.dcm" in result.rows_with("unreadable file")[0]["detail"]
    assert not result.complete

    # CSV and HTML carry the same rows.
    import pandas as pd

    csv = pd.read_csv(result.write_csv(tmp_path / "completeness.csv"), dtype=str, keep_default_na=False)
    assert list(csv.columns) == COLUMNS and len(csv) == 6
    assert set(csv.status) == {r["status"] for r in result.rows}
    fragment = result.to_html()
    assert fragment.startswith("<section") and "CRLM-CT-1090" in fragment and "25.0.5" in fragment

    # The command line reports the same and exits 1 while something is missing.
    code = main(["--no-cache", "completeness", str(root), "--csv", str(tmp_path / "cli.csv"),
                 "--html", str(tmp_path / "cli.html"), "--index", str(index_path)])
    assert code == 1
    assert len(pd.read_csv(tmp_path / "cli.csv")) == 6
    assert "patient missing" in (tmp_path / "cli.html").read_text()


def test_scope_defaults_to_the_collections_found_on_disk(tree, index_path: Path) -> None:
    root, _ = tree
    result = check_completeness(root, index_path=index_path)
    missing = result.rows_with("patient missing")
    # Every CRLM patient but the four on disk is expected and absent.
    assert len(missing) == 197 - len(PATIENTS)
    assert {r["PatientID"] for r in missing}.isdisjoint(PATIENTS)
    assert set(r["status"] for r in result.rows) == {"patient missing"}


def test_generated_sample_collections_are_unknown_to_idc(tmp_path: Path, index_path: Path) -> None:
    from SarcomaLungLiverBrowserLib.formats.dicom_series import group_by_series, scan_folder
    from SarcomaLungLiverBrowserLib.samples import crlm, lung_pet_ct_dx

    for generate in (crlm.generate, lung_pet_ct_dx.generate):
        root = generate(tmp_path / generate.__module__.rsplit(".", 1)[-1])
        series = group_by_series(scan_folder(root).instances)
        result = check_completeness(root, index_path=index_path)
        unknown = result.rows_with("series unknown to IDC")
        assert sorted(r["SeriesInstanceUID"] for r in unknown) == sorted(series)
        assert {r["status"] for r in result.rows} <= {"series unknown to IDC", "unreadable file"}
        assert result.summary == []  # no real series, so no collection is in scope
    # Asked about a real CRLM patient, the generated series of that ID do not count as IDC's.
    root = tmp_path / "crlm"
    result = check_completeness(root, collections=[CRLM], patients=["CRLM-CT-1001"], index_path=index_path)
    assert [(r["status"], r["PatientID"]) for r in result.rows_with("patient missing")] == [
        ("patient missing", "CRLM-CT-1001")]


def test_bad_arguments_name_what_is_wrong(tmp_path: Path, index_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        check_completeness(tmp_path / "absent", index_path=index_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no collection no_such_collection"):
        check_completeness(tmp_path / "empty", collections=["no_such_collection"], index_path=index_path)
    (tmp_path / "empty" / SELECTION_FILE).write_text("{not json")
    with pytest.raises(DataError, match=SELECTION_FILE.replace(".", r"\.")):
        check_completeness(tmp_path / "empty", index_path=index_path)
    result = check_completeness(tmp_path / "empty", collections=[CRLM], patients=["Nobody"], index_path=index_path)
    assert [r["detail"] for r in result.rows] == [f"IDC's {CRLM} has no patient Nobody"]


def test_the_index_is_installed_at_first_use_or_named_when_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    import sys

    from SarcomaLungLiverBrowserLib.review import completeness

    import idc_index_data as real_module
    monkeypatch.setitem(sys.modules, "idc_index_data", None)  # as if not installed
    (tmp_path / "data").mkdir()
    assert main(["--no-cache", "completeness", str(tmp_path / "data"), "--no-install"]) == 2
    assert f"pip install {IDC_INDEX_DATA_REQUIREMENT}" in capsys.readouterr().err
    installed = []

    def fake_install(requirement: str) -> None:  # stands in for pip; makes the package importable again
        installed.append(requirement)
        sys.modules["idc_index_data"] = real_module

    monkeypatch.setattr(completeness, "install_requirement", fake_install)
    assert completeness.index_parquet_path(install=True).name == "idc_index.parquet"
    assert installed == [IDC_INDEX_DATA_REQUIREMENT]
