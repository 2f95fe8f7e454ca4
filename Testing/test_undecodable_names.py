"""Folder and file names that are not UTF-8: indexed, cached, loaded, reviewed and reported, never a traceback.

On Linux a name is bytes; an archive unpacked from a Latin-1 system gives folders like ``b"\\xe9tude"``.
Python decodes such a byte to a lone surrogate, which SQLite, VTK, pyarrow and UTF-8 files all refuse.
"""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import require_shared_data
from SarcomaLungLiverBrowserLib import cli
from SarcomaLungLiverBrowserLib.formats import dicom_series
from SarcomaLungLiverBrowserLib.formats.atomic import write_text_atomically
from SarcomaLungLiverBrowserLib.formats.dicom_series import scan_folder
from SarcomaLungLiverBrowserLib.formats.index_cache import IndexCache
from SarcomaLungLiverBrowserLib.samples import lung_pet_ct_dx
from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder
from SarcomaLungLiverBrowserLib.text import spell_out_undecodable

DCMQI_CT = Path("QIICR__dcmqi") / "data" / "segmentations" / "ct-3slice"
#: "étude" as a Latin-1 system writes it: the byte 0xE9 is not UTF-8.
LATIN1_NAME = os.fsdecode(b"\xe9tude")


def _undecodable_folder(parent: Path) -> Path:
    folder = parent / LATIN1_NAME
    try:
        folder.mkdir()
    except (OSError, UnicodeError) as error:  # macOS and Windows refuse names that are not UTF-8
        pytest.skip(f"this file system does not take names that are not UTF-8 ({error})")
    return folder


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLLB_INDEX_CACHE", str(tmp_path / "header-cache.sqlite"))


def test_spelling_out_keeps_text_and_writes_each_undecodable_byte_as_python_prints_it() -> None:
    assert spell_out_undecodable(f"/data/{LATIN1_NAME}/1-1.dcm") == "/data/\\xe9tude/1-1.dcm"
    assert spell_out_undecodable("/données/études/ΑΒΓ") == "/données/études/ΑΒΓ"  # real characters are kept
    assert spell_out_undecodable(Path("/data/plain")) == "/data/plain"
    assert spell_out_undecodable("\ud800") == "\\ud800"  # a surrogate that stands for no byte: its code point


def test_a_text_output_naming_an_undecodable_file_is_written_as_utf8(tmp_path: Path) -> None:
    target = write_text_atomically(tmp_path / "report.csv", f"path\n/data/{LATIN1_NAME}/1-1.dcm\n")
    assert target.read_text(encoding="utf-8") == "path\n/data/\\xe9tude/1-1.dcm\n"


def test_a_series_in_an_undecodable_folder_is_indexed_and_then_served_from_the_cache(
        external_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real CT slices (dcmqi's) in a folder named in Latin-1, with a Latin-1 file name beside them."""
    folder = _undecodable_folder(tmp_path)
    shutil.copytree(external_data / DCMQI_CT, folder / "series")
    first_file = sorted((folder / "series").iterdir())[0]
    shutil.copy(first_file, folder / os.fsdecode(b"copie-\xe0.dcm"))
    with IndexCache(tmp_path / "cache.sqlite") as cache:
        first = scan_folder(tmp_path, cache=cache)
        assert len(first.instances) == 4 and not first.errors
        assert all(b"\xe9tude" in os.fsencode(header.path) for header in first.instances)
        assert all(header.path.is_file() for header in first.instances)  # the paths still open the files

        def must_not_read(path: Path) -> None:
            raise AssertionError(f"{path} was read again instead of served from the cache")

        monkeypatch.setattr(dicom_series, "read_header", must_not_read)
        again = scan_folder(tmp_path, cache=cache)
    assert again.instances == first.instances and not again.errors


def test_a_collection_below_an_undecodable_folder_is_indexed_loaded_reviewed_and_reported(
        shared_samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Real Lung-PET-CT-Dx boxes (the shared VOC samples, on DICOM with their real geometry) below a folder named
    in Latin-1: every command works and every output names the folder with its byte spelled out."""
    voc = shared_samples / "lung_pet_ct_dx_voc"
    if not (voc / "SOURCES.txt").is_file():
        require_shared_data("real VOC samples absent")
    root = str(lung_pet_ct_dx.generate_real_geometry_case(_undecodable_folder(tmp_path), voc))
    spelled = spell_out_undecodable(root)
    assert "\\xe9tude" in spelled

    assert cli.main(["index", root]) == 0
    output = capsys.readouterr()
    assert "1 case(s)" in output.out and spelled in output.out
    assert cli.main(["index", root, "--csv", str(tmp_path / "cases.csv")]) == 0
    (case,) = csv.DictReader((tmp_path / "cases.csv").open(encoding="utf-8"))
    case_id = case["case_id"]
    assert case["location"].startswith(spelled)

    assert cli.main(["load", root, case_id, "--mrb", str(tmp_path / "case.mrb")]) == 0
    assert (tmp_path / "case.mrb").stat().st_size > 0

    assert cli.main(["review", root, case_id, "--verdict", "accepted", "--reviewer", "reader-1"]) == 0
    assert cli.main(["review", root, "--export-csv", str(tmp_path / "verdicts.csv")]) == 0
    verdicts = list(csv.DictReader((tmp_path / "verdicts.csv").open(encoding="utf-8")))
    assert [(row["case_id"], row["verdict"]) for row in verdicts] == [(case_id, "accepted")]

    assert cli.main(["qa", root, "--out", str(tmp_path / "qa")]) == 0
    report = (tmp_path / "qa" / "report.html").read_text(encoding="utf-8")
    assert case_id in report

    assert cli.main(["annotations", root, "--csv", str(tmp_path / "boxes.csv"),
                     "--parquet", str(tmp_path / "boxes.parquet")]) == 0
    boxes = pd.read_parquet(tmp_path / "boxes.parquet")
    assert len(boxes) == len(pd.read_csv(tmp_path / "boxes.csv")) > 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_case_whose_series_folder_is_undecodable_loads_with_its_paths_spelled_out_in_the_scene(
        tmp_path: Path, builder: SceneBuilder) -> None:
    """The scene keeps each volume's source files as node attributes; VTK takes UTF-8 only."""
    from SarcomaLungLiverBrowserLib.collections.crlm import CrlmCollection
    from SarcomaLungLiverBrowserLib.samples import crlm

    root = crlm.generate(tmp_path / "collection")
    (study,) = next(root.rglob("CRLM-CT-1002")).iterdir()  # the study folder holds the CT and its SEG
    try:
        study.rename(study.with_name(LATIN1_NAME))
    except (OSError, UnicodeError) as error:
        pytest.skip(f"this file system does not take names that are not UTF-8 ({error})")
    (case,) = [case for case in CrlmCollection(root).discover_cases() if case.case_id == "CRLM-CT-1002"]
    loaded = CrlmCollection(root).load_case(case, builder)
    values = [volume.GetAttribute(name) for volume in loaded.volumes for name in volume.GetAttributeNames()]
    assert any("\\xe9tude" in value for value in values), values
    assert loaded.segmentations and not any("\udce9" in value for value in values)
