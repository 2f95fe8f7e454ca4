"""Soft-tissue-Sarcoma: the patient's clinical spreadsheet row becomes a table node under the patient,
through the same path as CRLM's (TableData -> put_case); empty cells are empty, never "nan"."""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from SarcomaLungLiverBrowserLib.collections.soft_tissue_sarcoma import SoftTissueSarcomaCollection
from SarcomaLungLiverBrowserLib.samples import soft_tissue_sarcoma as sample


@pytest.fixture(scope="module")
def sts_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample.generate(tmp_path_factory.mktemp("sts_clinical"))


def _cells(table_node) -> dict:  # type: ignore[no-untyped-def]
    """Column name -> the text of row 0 as Slicer's table view shows it."""
    table = table_node.GetTable()
    return {table.GetColumnName(column): table_node.GetCellText(0, column)
            for column in range(table.GetNumberOfColumns())}


def _clinical_nodes(loaded) -> list:  # type: ignore[no-untyped-def]
    return [node for node in loaded.tables if node.GetName().endswith("clinical data")]


def test_clinical_row_is_a_table_node_under_the_patient(  # type: ignore[no-untyped-def]
        sts_sample: Path, builder) -> None:
    import slicer

    collection = SoftTissueSarcomaCollection(sts_sample)
    loaded = collection.load_case(collection.find_case("STS_001"), builder)
    nodes = _clinical_nodes(loaded)
    assert [node.GetName() for node in nodes] == ["STS_001 clinical data"]
    cells = _cells(nodes[0])
    assert cells["Patient ID"] == "STS_001" and cells["Age"] == "63" and cells["Sex"] == "M"
    assert nodes[0].GetTable().GetNumberOfRows() == 1
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(builder.scene)
    parent = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(nodes[0]))
    assert hierarchy.GetItemName(parent) == "STS_001"
    assert hierarchy.GetItemLevel(parent) == "Patient"


def test_empty_cells_show_empty_never_nan(  # type: ignore[no-untyped-def]
        sts_sample: Path, tmp_path: Path, builder) -> None:
    root = tmp_path / "copy"
    shutil.copytree(sts_sample, root)
    sheet = root / "INFOclinical_STS.xlsx"
    table = pd.read_excel(sheet)
    table["Age"] = table["Age"].astype(float)
    table.loc[table["Patient ID"] == "STS_002", ["Age", "Histological type", "Grade"]] = [float("nan"), None, None]
    sheet.unlink()
    table.to_excel(sheet, index=False)
    collection = SoftTissueSarcomaCollection(root)
    case = collection.find_case("STS_002")
    assert case.diagnosis == ""  # an empty diagnosis cell is not "nan"
    loaded = collection.load_case(case, builder)
    cells = _cells(_clinical_nodes(loaded)[0])
    assert cells["Age"] == "" and cells["Histological type"] == "" and cells["Grade"] == ""
    assert "nan" not in {text.lower() for text in cells.values()}
    assert cells["Patient ID"] == "STS_002" and cells["Sex"] == "F"
    other = collection.load_case(collection.find_case("STS_001"), builder)
    assert _cells(_clinical_nodes(other)[0])["Age"] == "63"  # whole numbers stay whole in a text column


def test_no_row_gives_no_table_and_the_finding_says_why(  # type: ignore[no-untyped-def]
        sts_sample: Path, tmp_path: Path, builder) -> None:
    root = tmp_path / "copy"
    shutil.copytree(sts_sample, root)
    sheet = root / "INFOclinical_STS.xlsx"
    table = pd.read_excel(sheet)
    sheet.unlink()
    table[table["Patient ID"] != "STS_002"].to_excel(sheet, index=False)
    collection = SoftTissueSarcomaCollection(root)
    loaded = collection.load_case(collection.find_case("STS_002"), builder)
    assert _clinical_nodes(loaded) == []
    assert any(f.check == "sts.no_clinical_row" and "STS_002" in f.message for f in loaded.findings)
