"""Lung-PET-CT-Dx ``--annotations``: the commands that open a collection (index, load, qa, review, annotations)
and the review service read a named annotation root; a sibling ``Annotation`` copy outside the chosen folder
is never read; absolute, relative and symlinked paths give identical results."""
from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

import pandas as pd
import pytest

from SarcomaLungLiverBrowserLib.cli import main
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.registry import open_collection
from SarcomaLungLiverBrowserLib.samples import lung_pet_ct_dx as sample
from SarcomaLungLiverBrowserLib.service import ReviewService

TRUTH = sample.ground_truth()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """``download/<manifest>/Lung-PET-CT-Dx`` (images only, chosen), ``boxes/Annotation`` (named: A0001 only),
    and two edited copies that must never be read: ``download/Annotation`` (the published tree, above the
    chosen folder) and ``download/<manifest>/Annotation`` (beside it, with an extra box)."""
    base = tmp_path_factory.mktemp("annotation_roots")
    download = base / "download"
    shutil.copytree(sample.generate(base / "sample"), download)
    chosen = download / sample.MANIFEST / "Lung-PET-CT-Dx"
    named = base / "boxes" / "Annotation"
    shutil.copytree(download / "Annotation", named, ignore=shutil.ignore_patterns("B0002", "G0003"))
    sibling = download / sample.MANIFEST / "Annotation"
    shutil.copytree(download / "Annotation", sibling)
    for xml in sorted((sibling / "A0001").glob("*.xml"))[:3]:
        text = xml.read_text()
        xml.write_text(text.replace("</annotation>", text[text.index("<object>"):text.index("</object>") + 9]
                                    .replace("<xmin>", "<xmin>1") + "</annotation>"))
    os.symlink(download, base / "download_link")
    os.symlink(base / "boxes", base / "boxes_link")
    return {"base": base, "chosen": chosen, "named": named,
            "chosen_link": base / "download_link" / sample.MANIFEST / "Lung-PET-CT-Dx",
            "named_link": base / "boxes_link" / "Annotation"}


def _forms(layout: Dict[str, Path]) -> Dict[str, Tuple[str, str]]:
    """(collection folder, annotation folder) typed absolute, relative to ``base`` and through symlinks."""
    base = layout["base"]
    return {
        "absolute": (str(layout["chosen"]), str(layout["named"])),
        "relative": (os.path.relpath(layout["chosen"], base), os.path.relpath(layout["named"], base)),
        "symlinked": (str(layout["chosen_link"]), str(layout["named_link"])),
    }


def _index_rows(layout: Dict[str, Path], folder: str, annotations: str, out: Path) -> List[Tuple[str, str, str]]:
    assert main(["--no-cache", "index", folder, "--annotations", annotations, "--csv", str(out)]) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert {Path(layout["base"], location).resolve() for location in table["location"]} == \
        {(layout["chosen"] / case_id).resolve() for case_id in table["case_id"]}
    return list(zip(table["case_id"], table["diagnosis"], table["summary"]))


def test_index_reads_the_named_root_only_however_the_paths_are_typed(  # type: ignore[no-untyped-def]
        layout, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(layout["base"])
    results = {form: _index_rows(layout, folder, annotations, tmp_path / f"{form}.csv")
               for form, (folder, annotations) in _forms(layout).items()}
    assert results["absolute"] == results["relative"] == results["symlinked"]
    summaries = {case_id: summary for case_id, _, summary in results["absolute"]}
    assert f"xml_files: {TRUTH['Lung_Dx-A0001'].xml_files}" in summaries["Lung_Dx-A0001"]
    assert "xml_files: 0" in summaries["Lung_Dx-G0003"]  # not in the named root; the copies elsewhere unread


def test_service_and_load_read_the_named_root_never_the_sibling(  # type: ignore[no-untyped-def]
        layout, capsys, monkeypatch) -> None:
    monkeypatch.chdir(layout["base"])
    folders = {}
    printed = {}
    for form, (folder, annotations) in _forms(layout).items():
        with ReviewService(header_cache=None) as service:
            service.open(Path(folder), annotations=[Path(annotations)])
            cases = {case.case_id: case for case in service.cases()}
        folders[form] = {case_id: [p.resolve() for p in case.annotation_folders] for case_id, case in cases.items()}
        capsys.readouterr()
        assert main(["--no-cache", "load", folder, "Lung_Dx-A0001", "--annotations", annotations]) == 0
        printed[form] = [line for line in capsys.readouterr().out.splitlines()
                         if "ROI(s)" in line or "lung.duplicate" in line]
    assert folders["absolute"] == folders["relative"] == folders["symlinked"] == {
        "Lung_Dx-A0001": [(layout["named"] / "A0001").resolve()], "Lung_Dx-G0003": []}
    assert printed["absolute"] == printed["relative"] == printed["symlinked"]
    # The sibling's copies were not read: no XML read twice, only the sample's own repeated box.
    assert not any("lung.duplicate_xml" in line for line in printed["absolute"])
    assert sum("lung.duplicate_box" in line for line in printed["absolute"]) == \
        TRUTH["Lung_Dx-A0001"].findings["lung.duplicate_box"]
    truth = TRUTH["Lung_Dx-A0001"]
    assert f"{truth.lesion_rois + truth.placed_boxes} ROI(s)" in printed["absolute"][0]


def test_qa_and_annotations_commands_take_the_named_root(  # type: ignore[no-untyped-def]
        layout, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(layout["base"])
    checks = {}
    for form, (folder, annotations) in _forms(layout).items():
        out = tmp_path / form
        assert main(["--no-cache", "qa", folder, "--annotations", annotations, "--out", str(out)]) == 0
        findings = pd.read_csv(out / "findings.csv", keep_default_na=False)
        checks[form] = Counter(zip(findings["case_id"], findings["check"]))
        assert main(["--no-cache", "annotations", folder, "--annotations", annotations,
                     "--csv", str(out / "annotations.csv")]) == 0
        table = pd.read_csv(out / "annotations.csv", keep_default_na=False)
        assert set(table.loc[table["kind"].isin(["box", "lesion"]), "case_id"]) == {"Lung_Dx-A0001"}
    assert checks["absolute"] == checks["relative"] == checks["symlinked"]
    assert not any(check in ("lung.duplicate_xml", "lung.duplicate_box") and case_id == "Lung_Dx-A0001"
                   and count > TRUTH["Lung_Dx-A0001"].findings.get(check, 0)
                   for (case_id, check), count in checks["absolute"].items())
    assert ("Lung_Dx-G0003", "lung.no_annotations") in checks["absolute"]


def test_review_command_accepts_the_option(layout, tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder, annotations = _forms(layout)["absolute"]
    assert main(["--no-cache", "review", folder, "Lung_Dx-A0001", "--verdict", "accepted", "--reviewer", "r1",
                 "--store", str(tmp_path / "store.sqlite"), "--annotations", annotations]) == 0


def test_a_named_folder_that_is_unusable_or_does_not_apply_is_refused_by_name(  # type: ignore[no-untyped-def]
        layout, tmp_path, capsys) -> None:
    missing = tmp_path / "no_such_folder"
    assert main(["--no-cache", "index", str(layout["chosen"]), "--annotations", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no Annotation folder"):
        open_collection(layout["chosen"], annotations=[empty])
    from SarcomaLungLiverBrowserLib.samples import crlm

    crlm_root = crlm.generate(tmp_path / "crlm")
    with pytest.raises(DataError, match="reads no separate annotation folders"):
        open_collection(crlm_root, annotations=[layout["named"]])
