"""Many VOC files at once (``parse_voc_files``), serial and in worker processes, on real and hostile files."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List

import pytest

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats.voc_xml import VocAnnotation, parse_voc, parse_voc_files


def _real_files(shared_samples: Path) -> List[Path]:
    files = sorted(shared_samples.rglob("*.xml"))
    assert len(files) >= 10, f"expected the real Lung-PET-CT-Dx XML samples in {shared_samples}"
    return files


def _mixed_tree(shared_samples: Path, folder: Path) -> List[Path]:
    """Real files, each followed by a hostile one, so errors sit between good files in every chunk."""
    folder.mkdir()
    hostile = [
        b'<!DOCTYPE a [<!ENTITY x "xx">]><annotation>&x;</annotation>',
        b'<!DOCTYPE annotation SYSTEM "http://example.invalid/a.dtd"><annotation/>',
        b"<annotation><object><bndbox><xmin>nan</xmin></bndbox></object>",
        b"<annotation><object><name>A</name></object></annotation>",
        b"\xff\xfe<\x00a\x00",
        b"",
    ]
    paths = []
    for index, source in enumerate(_real_files(shared_samples)):
        good = folder / f"{index:03d}_{source.name}"
        shutil.copyfile(source, good)
        bad = folder / f"{index:03d}_bad.xml"
        bad.write_bytes(hostile[index % len(hostile)])
        paths += [good, bad]
    return paths


def _same(a: object, b: object) -> bool:
    if isinstance(a, DataError) and isinstance(b, DataError):
        return (a.path, a.problem) == (b.path, b.problem)
    return isinstance(a, VocAnnotation) and a == b


def test_serial_results_equal_parse_voc_file_by_file(shared_samples: Path, tmp_path: Path) -> None:
    paths = _mixed_tree(shared_samples, tmp_path / "tree")
    results = parse_voc_files(paths)
    assert len(results) == len(paths)
    for path, result in zip(paths, results):
        try:
            expected: object = parse_voc(path)
        except DataError as error:
            expected = error
        assert _same(result, expected), path
    assert sum(isinstance(r, DataError) for r in results) == len(paths) // 2
    assert all(str(r.path) == str(p) for p, r in zip(paths, results))


def test_worker_processes_give_the_serial_results_in_order(shared_samples: Path, tmp_path: Path) -> None:
    paths = _mixed_tree(shared_samples, tmp_path / "tree")
    serial = parse_voc_files(paths)
    parallel = parse_voc_files(paths, workers=2, chunk_files=3)  # many small chunks: order must survive
    assert len(parallel) == len(serial)
    for path, a, b in zip(paths, serial, parallel):
        assert _same(a, b), path
    errors = [r for r in parallel if isinstance(r, DataError)]
    assert errors and all(Path(error.path).name in str(error) for error in errors)
    assert any("entities" in error.problem for error in errors)


def test_a_missing_file_is_an_error_in_its_place(shared_samples: Path, tmp_path: Path) -> None:
    paths = _mixed_tree(shared_samples, tmp_path / "tree")
    paths.insert(1, tmp_path / "tree" / "gone.xml")
    results = parse_voc_files(paths, workers=2, chunk_files=2)
    assert isinstance(results[1], DataError) and "gone.xml" in str(results[1])
    assert isinstance(results[0], VocAnnotation) and isinstance(results[2], DataError)
    assert isinstance(results[3], VocAnnotation)


@pytest.mark.parametrize("workers", [0, 1])
def test_one_worker_or_fewer_reads_in_this_process(shared_samples: Path, workers: int) -> None:
    paths = _real_files(shared_samples)
    assert parse_voc_files(paths, workers=workers) == [parse_voc(path) for path in paths]
