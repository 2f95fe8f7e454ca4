"""PASCAL VOC reading and writing against the real Lung-PET-CT-Dx files and hostile input."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import require_shared_data
from hypothesis import given, settings
from hypothesis import strategies as st

from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.samples.lung_pet_ct_dx import parse_sources_txt
from SarcomaLungLiverBrowserLib.formats.voc_xml import (
    VocAnnotation,
    VocObject,
    format_voc,
    parse_voc,
    parse_voc_bytes,
    safe_output_path,
    write_voc,
)

REAL_FOLDER = "lung_pet_ct_dx_voc"


def _real_files(shared_samples: Path):
    folder = shared_samples / REAL_FOLDER
    files = sorted(folder.glob("*/*.xml"))
    if not files:
        require_shared_data(f"no real VOC files under {folder}")
    return folder, files


# ---------------------------------------------------------------------- real files
def test_real_files_parse_with_their_quirks(shared_samples: Path) -> None:
    folder, files = _real_files(shared_samples)
    facts = {fact.xml_name: fact for fact in parse_sources_txt(folder / "SOURCES.txt")}
    assert len(files) == 10 and len(facts) == 10
    for path in files:
        annotation = parse_voc(path)
        assert annotation.path == path
        assert annotation.stem == path.name[:-4] == facts[path.name].sop_instance_uid
        assert (annotation.width, annotation.height, annotation.depth) == (512, 512, 1)
        assert annotation.verified == "no"
        assert annotation.folder == annotation.filename == annotation.image_path == annotation.source == "Unknow"
        assert annotation.database == "Unknown"
        assert len(annotation.objects) == 1
        voc_object = annotation.objects[0]
        assert voc_object.name == "A" and voc_object.difficult is False and voc_object.truncated is False
        assert all(isinstance(value, float) for value in voc_object.box)


def test_real_boxes_match_sources_txt(shared_samples: Path) -> None:
    folder, _ = _real_files(shared_samples)
    text = (folder / "SOURCES.txt").read_text()
    # SOURCES.txt gives "A xmin,ymin,xmax,ymax" for each file; compare independently of the parser's regex.
    for line in text.splitlines():
        if ".xml |" not in line:
            continue
        columns = [part.strip() for part in line.split("|")]
        relative = columns[1].split("Annotation/", 1)[1]
        label, numbers = columns[4].split(" ")
        expected = tuple(float(v) for v in numbers.split(","))
        voc_object = parse_voc(folder / relative).objects[0]
        assert voc_object.name == label
        assert voc_object.box == expected


def test_real_files_format_back_to_identical_bytes(shared_samples: Path) -> None:
    _, files = _real_files(shared_samples)
    for path in files:
        assert format_voc(parse_voc(path)).encode("ascii") == path.read_bytes()


# ---------------------------------------------------------------------- tolerated variants
def test_case_insensitive_tags_floats_several_objects_and_mixed_source() -> None:
    data = b"""<?xml version="1.0" encoding="utf-8"?>
<Annotation>
  <source>Unknow<DataBase>Unknown</DataBase> trailing text
  </source>
  <Size><Width>200</Width><HEIGHT>200</HEIGHT></Size>
  <object><name>G</name><DIFFICULT>1</DIFFICULT>
    <BndBox><XMin>10.5</XMin><ymin>12</ymin><XMAX>30.25</XMAX><ymax>40</ymax></BndBox></object>
  <!-- a comment -->
  <object><name> g </name><difficult>0</difficult><truncated>1</truncated>
    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax></bndbox></object>
</Annotation>"""
    annotation = parse_voc_bytes(data, "x.xml")
    assert (annotation.width, annotation.height, annotation.depth) == (200, 200, None)
    assert annotation.verified is None
    assert annotation.source == "Unknow" and annotation.database == "Unknown"
    assert [o.name for o in annotation.objects] == ["G", "g"]
    assert annotation.objects[0].box == (10.5, 12.0, 30.25, 40.0)
    assert annotation.objects[0].difficult is True and annotation.objects[1].difficult is False
    assert annotation.objects[1].truncated is True


def test_file_without_objects_parses_empty() -> None:
    annotation = parse_voc_bytes(b"<annotation verified='no'><size><width>5</width></size></annotation>", "e.xml")
    assert annotation.objects == [] and annotation.width == 5


# ---------------------------------------------------------------------- refused input
@pytest.mark.parametrize(
    "data, words",
    [
        (b"<annotation><object><name>A</name><bndbox><xmin>1</xmin>", "not well-formed"),
        (b"", "not well-formed"),
        (b"<html><body/></html>", "expected <annotation>"),
        (b"<annotation><object><name>A</name></object></annotation>", "no <bndbox>"),
        (b"<annotation><object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax></bndbox></object></annotation>",
         "<ymax> is missing"),
        (b"<annotation><object><bndbox><xmin>one</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox>"
         b"</object></annotation>", "'one', not a number"),
        (b"<annotation><object><bndbox><xmin>nan</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox>"
         b"</object></annotation>", "not a finite number"),
    ],
)
def test_malformed_files_raise_data_error_naming_the_file(tmp_path: Path, data: bytes, words: str) -> None:
    path = tmp_path / "1.2.3.xml"
    path.write_bytes(data)
    with pytest.raises(DataError) as raised:
        parse_voc(path)
    assert str(path) in str(raised.value)
    assert words in str(raised.value)


XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotation><object><name>&secret;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>
</bndbox></object></annotation>"""

NETWORK_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE annotation SYSTEM "http://example.invalid/voc.dtd">
<annotation></annotation>"""


def _billion_laughs(levels: int = 10) -> bytes:
    lines = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels):
        lines.append(f'<!ENTITY lol{level} "' + f"&lol{level - 1};" * 10 + '">')
    return ('<?xml version="1.0"?><!DOCTYPE annotation [' + "".join(lines) + "]>"
            f"<annotation><folder>&lol{levels - 1};</folder></annotation>").encode("ascii")


@pytest.mark.parametrize(
    "data, words",
    [
        (XXE_FILE, "entities"),
        (_billion_laughs(), "entities"),
        (XXE_FILE.replace(b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="UTF-16"?>').decode("ascii")
         .encode("utf-16"), "entities"),
        (NETWORK_DTD, "external DTD"),
        (b'<!DOCTYPE annotation [<!eNtItY x "y">]><annotation>&x;</annotation>', "entities"),
    ],
    ids=["external-entity", "billion-laughs", "utf16-external-entity", "network-dtd", "mixed-case-entity"],
)
def test_entities_and_external_dtds_are_refused(tmp_path: Path, data: bytes, words: str) -> None:
    path = tmp_path / "evil.xml"
    path.write_bytes(data)
    with pytest.raises(DataError) as raised:
        parse_voc(path)
    assert "evil.xml" in str(raised.value) and words in str(raised.value)


def test_undeclared_entity_reference_is_refused() -> None:
    with pytest.raises(DataError, match="not well-formed|entity"):
        parse_voc_bytes(b"<annotation><folder>&nope;</folder></annotation>", "u.xml")


def test_oversized_file_is_refused_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    path.write_bytes(b"<annotation>" + b" " * 1_100_000 + b"</annotation>")
    with pytest.raises(DataError, match="big.xml.*bytes"):
        parse_voc(path)


def test_doctype_without_entities_is_accepted() -> None:
    annotation = parse_voc_bytes(b"<!DOCTYPE annotation><annotation verified='no'></annotation>", "d.xml")
    assert annotation.verified == "no"


# ---------------------------------------------------------------------- writing
def test_writer_matches_the_real_style(tmp_path: Path) -> None:
    annotation = VocAnnotation(None, 128, 128, 1, [
        VocObject("A", 10, 20, 30, 40, difficult=True),
        VocObject("A & <B>", 1.5, 2, 3, 4),
    ])
    path = write_voc(tmp_path / "A0001", "1.2.3.xml", annotation)
    text = path.read_text()
    assert path == tmp_path / "A0001" / "1.2.3.xml"
    assert text.startswith('<annotation verified="no">\n  <folder>Unknow</folder>\n')
    assert "<?xml" not in text and "\t" not in text and not text.endswith("\n")
    assert "  <source>Unknow<database>Unknown</database>\n  </source>" in text
    assert "<Difficult>1</Difficult>" in text and "<difficult>" not in text
    assert "<xmin>10</xmin>" in text and "<xmin>1.5</xmin>" in text
    back = parse_voc(path)
    assert back.objects == annotation.objects
    assert (back.width, back.height, back.depth) == (128, 128, 1)


@pytest.mark.parametrize("name", ["../escape.xml", "sub/x.xml", "..", ".", "", "/tmp/abs.xml", "a\\b.xml",
                                  "x.txt", "nul\x00.xml"])
def test_writer_refuses_names_leaving_the_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError, match="refusing"):
        write_voc(tmp_path / "out", name, VocAnnotation(None, 1, 1, 1, []))
    assert not (tmp_path / "escape.xml").exists()


def test_writer_refuses_a_symlink_pointing_outside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "victim.xml"
    outside.write_text("keep")
    os.symlink(outside, out / "link.xml")
    with pytest.raises(DataError, match="outside"):
        safe_output_path(out, "link.xml")
    assert outside.read_text() == "keep"


# Names are read stripped of surrounding white space, so none is generated (any Unicode space counts).
_NAMES = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF,
                                        exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                 min_size=1, max_size=8)
_COORDINATES = st.one_of(st.integers(-50, 5000).map(float),
                         st.floats(-50, 5000, allow_nan=False, allow_infinity=False))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_NAMES, _COORDINATES, _COORDINATES, _COORDINATES, _COORDINATES, st.booleans(),
                          st.booleans()), max_size=4))
def test_format_then_parse_is_lossless(rows) -> None:
    objects = [VocObject(name, x0, y0, x1, y1, difficult=d, truncated=t) for name, x0, y0, x1, y1, d, t in rows]
    annotation = VocAnnotation(None, 512, 512, 1, objects)
    back = parse_voc_bytes(format_voc(annotation).encode("utf-8"), "p.xml")
    assert back.objects == objects
