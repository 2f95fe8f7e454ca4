"""The fast VOC path (one read sized by fstat, one pass per element, lesions found among nearby slices, the ROI
geometry of a series at once) gives exactly what the straightforward path gave: same annotations, same error
messages, same lesions, same ROI numbers, same findings.

The oracle is the previous implementation, kept here as plain readable code: it reads the file with one
capped ``read``, looks every field up by name among the children, compares each box with every box of every
lesion, and computes each ROI alone with :func:`geometry.box_roi_geometry`.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pytest
from lxml import etree

from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import LungPetCtDxCollection
from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import boxes as boxes_module
from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx.boxes import (
    Lesion,
    SliceBox,
    box_roi_geometries,
    group_lesions,
)
from SarcomaLungLiverBrowserLib.errors import DataError
from SarcomaLungLiverBrowserLib.formats import voc_xml
from SarcomaLungLiverBrowserLib.formats.voc_xml import (
    MAX_FILE_BYTES,
    VocAnnotation,
    VocObject,
    format_voc,
    iter_xml_files,
    parse_voc,
    parse_voc_bytes,
)
from SarcomaLungLiverBrowserLib.geometry import box_roi_geometry
from SarcomaLungLiverBrowserLib.samples import lung_pet_ct_dx as sample


# ---------------------------------------------------------------------- the oracle: the previous implementation
def _reference_children(element: Optional[etree._Element]) -> Dict[str, List[etree._Element]]:
    children: Dict[str, List[etree._Element]] = {}
    if element is None:
        return children
    for child in element:
        if isinstance(child.tag, str):
            children.setdefault(child.tag.rpartition("}")[2].lower(), []).append(child)
    return children


def _reference_first(children: Dict[str, List[etree._Element]], name: str) -> Optional[etree._Element]:
    found = children.get(name)
    return found[0] if found else None


def _reference_text(element: Optional[etree._Element], default: str = "") -> str:
    return default if element is None else (element.text or "").strip()


def _reference_number(element: Optional[etree._Element], what: str, path: Union[str, Path]) -> float:
    if element is None:
        raise DataError(path, f"{what} is missing")
    text = _reference_text(element)
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, f"{what} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise DataError(path, f"{what} is {text!r}, not a finite number")
    return value


def _reference_optional_int(element: Optional[etree._Element], what: str, path: Union[str, Path]) -> Optional[int]:
    if element is None or not _reference_text(element):
        return None
    return int(round(_reference_number(element, what, path)))


def _reference_flag(element: Optional[etree._Element], what: str, path: Union[str, Path]) -> bool:
    if element is None or not _reference_text(element):
        return False
    return _reference_number(element, what, path) != 0


def _reference_object(element: etree._Element, index: int, path: Union[str, Path]) -> VocObject:
    label = f"<object> {index + 1}"
    children = _reference_children(element)
    box = _reference_first(children, "bndbox")
    if box is None:
        raise DataError(path, f"{label} has no <bndbox>")
    corners = _reference_children(box)
    values = [_reference_number(_reference_first(corners, key), f"{label} <{key}>", path)
              for key in ("xmin", "ymin", "xmax", "ymax")]
    return VocObject(
        name=_reference_text(_reference_first(children, "name")), xmin=values[0], ymin=values[1], xmax=values[2],
        ymax=values[3], difficult=_reference_flag(_reference_first(children, "difficult"), f"{label} <Difficult>", path),
        truncated=_reference_flag(_reference_first(children, "truncated"), f"{label} <truncated>", path),
        pose=_reference_text(_reference_first(children, "pose"), "Unspecified") or "Unspecified",
    )


def reference_parse_voc_bytes(data: bytes, path: Union[str, Path] = "<memory>") -> VocAnnotation:
    """The previous ``parse_voc_bytes``, sharing only the safety checks (which the fast path did not change)."""
    if len(data) > MAX_FILE_BYTES:
        raise DataError(path, f"is {len(data)} bytes; a VOC annotation is well under {MAX_FILE_BYTES}")
    voc_xml._refuse_entities(data, path)
    try:
        root = etree.fromstring(data, voc_xml._new_safe_parser())
    except etree.XMLSyntaxError as error:
        raise DataError(path, f"is not well-formed XML ({error})") from None
    if root is None:
        raise DataError(path, "is empty")
    voc_xml._refuse_unresolved_entities(root, path)
    if not isinstance(root.tag, str) or root.tag.rpartition("}")[2].lower() != "annotation":
        raise DataError(path, f"has root <{root.tag}>, expected <annotation> (PASCAL VOC)")
    children = _reference_children(root)
    size = _reference_children(_reference_first(children, "size"))
    source = _reference_first(children, "source")
    database = _reference_first(_reference_children(source), "database")
    objects = [_reference_object(element, index, path) for index, element in enumerate(children.get("object", []))]
    return VocAnnotation(
        path=path if isinstance(path, Path) else Path(path),
        width=_reference_optional_int(_reference_first(size, "width"), "<width>", path),
        height=_reference_optional_int(_reference_first(size, "height"), "<height>", path),
        depth=_reference_optional_int(_reference_first(size, "depth"), "<depth>", path),
        objects=objects, verified=root.get("verified"),
        folder=_reference_text(_reference_first(children, "folder")),
        filename=_reference_text(_reference_first(children, "filename")),
        image_path=_reference_text(_reference_first(children, "path")),
        source=_reference_text(source),
        database=_reference_text(database) if database is not None else None,
        segmented=_reference_optional_int(_reference_first(children, "segmented"), "<segmented>", path) or 0,
    )


def reference_parse_voc(path: Union[str, Path]) -> VocAnnotation:
    path = Path(path)
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise DataError(path, f"is {size} bytes; a VOC annotation is well under {MAX_FILE_BYTES}")
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise DataError(path, f"cannot be read ({error.strerror or error})") from error
    return reference_parse_voc_bytes(data, path)


def _reference_overlap(a: Sequence[float], b: Sequence[float]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0]) + 1
    height = min(a[3], b[3]) - max(a[1], b[1]) + 1
    return max(0.0, width) * max(0.0, height)


def reference_group_lesions(boxes: Sequence[SliceBox], max_gap: int = boxes_module.MAX_GAP_SLICES) -> List[Lesion]:
    """The previous ``group_lesions``: every box compared with every box of every lesion."""
    lesions: List[Lesion] = []
    ordered = sorted((b for b in boxes if not b.duplicate), key=lambda b: (b.slice_index, b.box[0], b.box[1]))
    for box in ordered:
        best: Optional[Tuple[int, float, Lesion]] = None
        for lesion in lesions:
            for other in lesion.boxes:
                distance = box.slice_index - other.slice_index
                if not 0 <= distance <= max_gap + 1:
                    continue
                area = _reference_overlap(box.box, other.box)
                if area <= 0:
                    continue
                candidate = (-distance, area, lesion)
                if best is None or candidate[:2] > best[:2]:
                    best = candidate
        if best is None:
            lesions.append(Lesion(series_instance_uid=box.series_instance_uid, boxes=[box]))
        else:
            best[2].boxes.append(box)
    for number, lesion in enumerate(lesions, start=1):
        for box in lesion.boxes:
            box.lesion = number
    return lesions


def reference_box_roi_geometries(ijk_to_ras: np.ndarray, boxes: np.ndarray, first_slices: np.ndarray,
                                 last_slices: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One :func:`box_roi_geometry` call per box, stacked."""
    results = [box_roi_geometry(ijk_to_ras, tuple(box), int(first), int(last))
               for box, first, last in zip(np.asarray(boxes, dtype=float).reshape(-1, 4), first_slices, last_slices)]
    return (np.array([r[0] for r in results]).reshape(-1, 3), np.array([r[1] for r in results]).reshape(-1, 3),
            results[0][2] if results else np.eye(3))


# ---------------------------------------------------------------------- helpers
def _outcome(parse, source: Union[Path, bytes], path: Union[str, Path] = "h.xml") -> object:
    """An annotation, or (path, problem) of the error raised."""
    try:
        return parse(source) if isinstance(source, Path) else parse(source, path)
    except DataError as error:
        return ("DataError", str(error.path), error.problem)


_BOX = "<bndbox><xmin>10</xmin><ymin>20</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>"

#: Generated and hostile files: real style, two objects, missing and odd fields, boxes outside the image,
#: entity declarations, external DTDs, other encodings, namespaces, comments, parts, broken markup.
HOSTILE_FILES: List[bytes] = [
    format_voc(VocAnnotation(None, 512, 512, 1, [VocObject("A", 1, 2, 3, 4)])).encode(),
    format_voc(VocAnnotation(None, 512, 512, 1, [VocObject("B", 1, 2, 30, 40),
                                                 VocObject("B", 41, 42, 80, 90, difficult=True)])).encode(),
    format_voc(VocAnnotation(None, 512, 512, 1, [VocObject("E", -40, -30, -1, -2), VocObject("E", 500, 9, 700, 30),
                                                 VocObject("G", 30.5, 40.25, 20, 10)])).encode(),
    b"<annotation/>",
    b"<annotation verified='yes'><size><width></width><height>7.6</height></size><segmented/></annotation>",
    b"<annotation><object><name>A</name></object></annotation>",
    b"<annotation><object>" + _BOX.replace("<ymax>40</ymax>", "").encode() + b"</object></annotation>",
    b"<annotation><object>" + _BOX.replace(">10<", ">ten<").encode() + b"</object></annotation>",
    b"<annotation><object>" + _BOX.replace(">10<", ">inf<").encode() + b"</object></annotation>",
    b"<annotation><object>" + _BOX.replace(">10<", "> 1e1 <").encode() + b"<Difficult>x</Difficult></object>"
    b"</annotation>",
    b"<annotation><object>" + _BOX.encode() + b"<truncated>2</truncated><difficult>0</difficult><DIFFICULT>1"
    b"</DIFFICULT></object><object>" + _BOX.encode() + b"</object><size><depth>nan</depth></size></annotation>",
    b"<annotation><size><width>5</width></size><size><width>9</width></size><folder>a</folder><folder>b</folder>"
    b"<source>x<!-- c --><?pi y?><database>d</database>z</source></annotation>",
    b"<v:Annotation xmlns:v='urn:x'><v:Object><v:Name>A</v:Name>" + _BOX.encode() + b"</v:Object></v:Annotation>",
    b"<annotation><object><name>A</name><part><name>hand</name>" + _BOX.encode() + b"</part></object></annotation>",
    b"<annotation><object><name><![CDATA[A & B]]></name>" + _BOX.encode() + b"</object></annotation>",
    b"<annotation><object><name>A</name>" + _BOX.encode() + b"</object><object><name>B</name></object></annotation>",
    b'<!DOCTYPE a [<!ENTITY x "xx">]><annotation>&x;</annotation>',
    b'<!DOCTYPE a [<!eNtItY x SYSTEM "file:///etc/passwd">]><annotation>&x;</annotation>',
    b'<!DOCTYPE annotation SYSTEM "http://example.invalid/a.dtd"><annotation/>',
    b'<!DOCTYPE annotation PUBLIC "-//x//y" "a.dtd"><annotation/>',
    b"<!DOCTYPE annotation><annotation verified='no'/>",
    b"<annotation><folder>&nope;</folder></annotation>",
    '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><annotation>&x;</annotation>'
    .encode("utf-16"),
    '<?xml version="1.0" encoding="UTF-16"?><annotation><folder>é</folder></annotation>'.encode("utf-16"),
    "<annotation><object><name>Ä</name>".encode("latin-1") + _BOX.encode() + b"</object></annotation>",
    b"\xff\xfe<\x00a\x00",
    b"<html><body/></html>",
    b"<annotation><object><name>A</name><bndbox><xmin>1",
    b"",
    b"   ",
    b"<annotation>" + b" " * (MAX_FILE_BYTES + 1) + b"</annotation>",
]


# ---------------------------------------------------------------------- parsing
def test_real_files_parse_exactly_as_the_reference(shared_samples: Path) -> None:
    files = sorted(shared_samples.rglob("*.xml"))
    assert len(files) >= 10, f"expected the real Lung-PET-CT-Dx XML samples in {shared_samples}"
    for path in files:
        fast, reference = parse_voc(path), reference_parse_voc(path)
        assert fast == reference and fast.objects, path


@pytest.mark.parametrize("data", HOSTILE_FILES, ids=range(len(HOSTILE_FILES)))
def test_generated_and_hostile_files_give_the_reference_result_or_message(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "1.2.3.4.xml"
    path.write_bytes(data)
    expected = _outcome(reference_parse_voc, path)
    assert _outcome(parse_voc, path) == expected
    assert _outcome(parse_voc_bytes, data, path) == _outcome(reference_parse_voc_bytes, data, path)
    if isinstance(expected, tuple):
        assert str(path) in expected[1]  # every error names the file


# ---------------------------------------------------------------------- the one-regex path for the real layout
def test_every_real_file_takes_the_regex_path_and_gives_the_lxml_result(shared_samples: Path) -> None:
    files = sorted(shared_samples.rglob("*.xml"))
    assert len(files) >= 10, f"expected the real Lung-PET-CT-Dx XML samples in {shared_samples}"
    for path in files:
        data = path.read_bytes()
        fast = voc_xml._parse_canonical(data, path)
        assert fast is not None, f"{path} is in the real layout but the regex path declined it"
        assert fast == reference_parse_voc_bytes(data, path)


def test_the_file_pattern_refers_to_its_own_difficulty_tag() -> None:
    """The object pattern's back-reference is renumbered inside the file pattern; a wrong number would match the
    wrong group (or none) and send every real file to the slow path."""
    assert voc_xml._CANONICAL_OBJECT.groups == 9
    assert voc_xml._CANONICAL_FILE.groups == voc_xml._GROUPS_BEFORE_OBJECTS + 9
    real_style = format_voc(VocAnnotation(None, 512, 512, 1, [VocObject("A", 1, 2, 3, 4)])).encode()
    assert voc_xml._parse_canonical(real_style, Path("x.xml")) is not None
    mismatched = real_style.replace(b"</Difficult>", b"</difficult>")
    assert voc_xml._parse_canonical(mismatched, Path("x.xml")) is None
    assert "not well-formed" in _outcome(parse_voc_bytes, mismatched)[2]  # type: ignore[index]


#: What the regex path must leave to lxml: each is valid XML read differently, or not XML at all.
DECLINED = [
    b"<annotation verified=\"no\"><!-- c --><size><width>1</width><height>1</height><depth>1</depth></size>"
    b"</annotation>",
    b"<annotation><size><width>1</width><height>1</height><depth>1</depth></size><object><name>A &amp; B</name>"
    b"<pose>U</pose><truncated>0</truncated><difficult>0</difficult>" + _BOX.encode() + b"</object></annotation>",
    b"<annotation><size><width>1</width><height>1</height><depth>1</depth></size><object><name><![CDATA[A]]>"
    b"</name><pose>U</pose><truncated>0</truncated><difficult>0</difficult>" + _BOX.encode() +
    b"</object></annotation>",
    b"<annotation><size><width>1</width><height>1</height><depth>1</depth></size><object><name>A\r\nB</name>"
    b"<pose>U</pose><truncated>0</truncated><difficult>0</difficult>" + _BOX.encode() + b"</object></annotation>",
    "<annotation><size><width>1</width><height>1</height><depth>1</depth></size><object><name>\u00c4</name>"
    "<pose>U</pose><truncated>0</truncated><difficult>0</difficult>".encode() + _BOX.encode() +
    b"</object></annotation>",
    b"<annotation verified='no'><size><width>1</width><height>1</height><depth>1</depth></size></annotation>",
    b"<annotation verified=\"a\tb\"><size><width>1</width><height>1</height><depth>1</depth></size></annotation>",
    b"<annotation><size><width>1e3</width><height>1</height><depth>1</depth></size></annotation>",
    b"<annotation><size><width>12345678901</width><height>1</height><depth>1</depth></size></annotation>",
    b"<annotation><size><height>1</height><width>1</width><depth>1</depth></size></annotation>",
    b"  <?xml version=\"1.0\"?><annotation><size><width>1</width><height>1</height><depth>1</depth></size>"
    b"</annotation>",
    b"\xef\xbb\xbf<annotation><size><width>1</width><height>1</height><depth>1</depth></size></annotation>",
    b"<annotation><size><width>1</width><height>1</height><depth>1</depth></size></annotation><x/>",
    b"<annotation><size><width>1</width><height>1</height><depth>1</depth></size><object><name>A</name>"
    b"<pose>U</pose><truncated>0</truncated><difficult>0</difficult>" + _BOX.replace(">10<", ">+10<").encode() +
    b"</object></annotation>",
    b"<annotation><size><width>1</width><height>1</height><depth>1</depth></size><object><name>A</name>"
    b"<pose>U</pose><truncated>0</truncated><difficult>0</difficult>" + _BOX.replace(">10<", ">]]><").encode() +
    b"</object></annotation>",
]


@pytest.mark.parametrize("data", DECLINED, ids=range(len(DECLINED)))
def test_the_regex_path_leaves_everything_else_to_lxml(data: bytes) -> None:
    assert voc_xml._parse_canonical(data, Path("h.xml")) is None
    assert _outcome(parse_voc_bytes, data) == _outcome(reference_parse_voc_bytes, data)


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGALRM"), reason="the hang guard needs SIGALRM")
@pytest.mark.parametrize("old, new", [
    (b"<width>512", b"<width>" + b" " * 900_000 + b"x"),
    (b"<Difficult>0", b"<Difficult>" + b" " * 900_000 + b"x"),
    (b"</segmented>", b"</segmented>" + b" " * 900_000 + b"<"),
    (b"<source>Unknow", b"<source>" + b" " * 900_000 + b"\x01"),
    (b"</database>", b"</database>" + b" " * 900_000 + b"x"),
])
def test_long_white_space_runs_cannot_stall_the_regex(shared_samples: Path, old: bytes, new: bytes) -> None:
    """A hostile file just under the size cap, a run of spaces where the pattern could split it among neighbouring
    runs before failing: the regex must give up in one pass, not in quadratically many. Durability, not speed:
    the alarm only turns a stall of minutes into a failure instead of a hung test run."""
    import signal

    data = sorted(shared_samples.rglob("*.xml"))[0].read_bytes().replace(old, new, 1)
    assert len(data) < MAX_FILE_BYTES

    def stalled(*_: object) -> None:
        raise AssertionError(f"the regex path stalled on a run of spaces after {old!r}")

    previous = signal.signal(signal.SIGALRM, stalled)
    signal.alarm(120)
    try:
        assert voc_xml._parse_canonical(data, Path("h.xml")) is None
        assert _outcome(parse_voc_bytes, data) == _outcome(reference_parse_voc_bytes, data)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


#: Bytes a mutation inserts: markup, references, quotes, white space of every kind, digits and number syntax.
_MUTATION_BYTES = list(b"<>/&;!?\"'= \t\r\n0123456789.-+eE[]xX") + [0, 0x0b, 0x7f, 0xc3, 0xe9]


def _mutations(data: bytes, count: int, seed: int) -> List[bytes]:
    """``count`` copies of ``data``, each with one to three random byte insertions, deletions, replacements or
    tag renamings."""
    import random

    rng = random.Random(seed)
    tags = [b"annotation", b"folder", b"source", b"database", b"size", b"width", b"depth", b"segmented",
            b"object", b"name", b"pose", b"truncated", b"Difficult", b"bndbox", b"xmin", b"ymax"]
    result = []
    for _ in range(count):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(mutated) + 1)
            kind = rng.random()
            if kind < 0.35:
                mutated[position:position] = bytes([rng.choice(_MUTATION_BYTES)])
            elif kind < 0.6 and position < len(mutated):
                del mutated[position:position + rng.randint(1, 12)]
            elif kind < 0.85 and position < len(mutated):
                mutated[position] = rng.choice(_MUTATION_BYTES)
            else:
                old, new = rng.choice(tags), rng.choice(tags)
                mutated = bytearray(bytes(mutated).replace(old, new, 1))
        result.append(bytes(mutated))
    return result


def _value_edits(data: bytes, count: int, seed: int) -> List[bytes]:
    """``count`` copies of ``data`` with one to four element texts (or the white space between elements) replaced
    by random short strings: numbers in every spelling, names, white space, now and then a markup character."""
    import random
    import re

    rng = random.Random(seed)
    spans = [match.span(1) for match in re.finditer(rb">([^<]*)<", data)]
    pieces = [b"", b" ", b"\t", b"\n", b"\r\n", b"  \n    ", b"0", b"1", b"-0", b"-7", b"512", b"3.25", b"-4.5",
              b"1.", b".5", b"1e2", b"0x1", b"A", b"B C", b"Unknow", b"yes", b"&", b"<", b">", b"]]>", b"\"", b"\xc3"]
    result = []
    for _ in range(count):
        mutated = data
        for start, end in sorted(rng.sample(spans, rng.randint(1, 4)), reverse=True):
            text = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 3)))
            mutated = mutated[:start] + text + mutated[end:]
        result.append(mutated)
    return result


def test_mutated_real_files_give_the_lxml_result_or_message(shared_samples: Path) -> None:
    """Thousands of one- to three-byte edits of the real files: whatever the regex path accepts, lxml reads the
    same; what it declines gets lxml's result or message. Both kinds occur, so the test sees both paths."""
    files = sorted(shared_samples.rglob("*.xml"))
    assert len(files) >= 10, f"expected the real Lung-PET-CT-Dx XML samples in {shared_samples}"
    accepted = declined = 0
    for number, path in enumerate(files):
        data = path.read_bytes()
        one_object = data[data.index(b"<object>"):data.index(b"</object>") + len(b"</object>")]
        two_objects = data.replace(b"</object>", b"</object>\n  " + one_object, 1)
        data_sets = (_mutations(data, 300, number), _mutations(two_objects, 100, 1000 + number),
                     _value_edits(data, 200, 2000 + number), _value_edits(two_objects, 100, 3000 + number))
        for mutated in (mutated for data_set in data_sets for mutated in data_set):
            fast = voc_xml._parse_canonical(mutated, Path("h.xml"))
            expected = _outcome(reference_parse_voc_bytes, mutated)
            if fast is not None:
                accepted += 1
                assert fast == expected, mutated
            else:
                declined += 1
            assert _outcome(parse_voc_bytes, mutated) == expected, mutated
    assert accepted > 500 and declined > 500, (accepted, declined)


def test_unreadable_paths_give_the_reference_message(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.xml", tmp_path):
        assert _outcome(parse_voc, path) == _outcome(reference_parse_voc, path)
        assert "cannot be read" in _outcome(parse_voc, path)[2]  # type: ignore[index]


def _lying_fstat(real_fstat, claimed: int):
    def fstat(descriptor: int) -> os.stat_result:
        status = list(real_fstat(descriptor))
        status[6] = claimed  # st_size
        return os.stat_result(status)
    return fstat


def test_the_size_cap_does_not_trust_fstat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file larger than fstat says (it grew, or its file system lies) is read to its end, never past the cap."""
    good = tmp_path / "grown.xml"
    good.write_bytes(HOSTILE_FILES[1])
    big = tmp_path / "big.xml"
    big.write_bytes(HOSTILE_FILES[-1])
    monkeypatch.setattr(voc_xml.os, "fstat", _lying_fstat(os.fstat, 10))
    assert parse_voc(good) == reference_parse_voc_bytes(good.read_bytes(), good)
    with pytest.raises(DataError, match=f"big.xml.*is {MAX_FILE_BYTES + 1} bytes"):
        parse_voc(big)


def test_a_fifo_is_read_to_its_end(tmp_path: Path) -> None:
    """A FIFO claims size 0 and its reads may come short: it is read until the writer closes it."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    import threading

    fifo = tmp_path / "fifo.xml"
    os.mkfifo(fifo)
    data = HOSTILE_FILES[2]

    def write() -> None:
        with open(fifo, "wb", buffering=0) as stream:
            for start in range(0, len(data), 100):
                stream.write(data[start : start + 100])

    writer = threading.Thread(target=write, daemon=True)  # never keeps pytest alive if the read failed early
    writer.start()
    try:
        annotation = parse_voc(fifo)
    finally:
        writer.join(10)
    assert annotation == reference_parse_voc_bytes(data, fifo)


def test_listing_matches_sorted_paths(tmp_path: Path) -> None:
    names = ["b.xml", "A.XML", "a.xml", ".xml", "c.txt", "1.2.3.Xml", "z.xml"]
    for name in names:
        (tmp_path / name).write_bytes(b"<annotation/>")
    (tmp_path / "d.xml").mkdir()
    (tmp_path / "link.xml").symlink_to(tmp_path / "z.xml")
    expected = sorted(path for path in tmp_path.iterdir() if path.is_file() and path.suffix.lower() == ".xml")
    assert list(iter_xml_files(tmp_path)) == expected


# ---------------------------------------------------------------------- mapping
def _random_boxes(rng: np.random.Generator, count: int) -> List[SliceBox]:
    boxes = []
    for index in range(count):
        k = int(rng.integers(0, 40))
        x, y = rng.integers(0, 60, 2)
        width, height = rng.integers(0, 25, 2)
        box = (float(x), float(y), float(x + width), float(y + height))
        boxes.append(SliceBox(Path(f"{index}.xml"), 0, VocObject("A", *box), f"sop{index}", "s", k, box, box,
                              duplicate=bool(rng.random() < 0.05)))
    return boxes


@pytest.mark.parametrize("seed", range(40))
def test_lesions_are_the_reference_lesions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, int(rng.integers(1, 120)))
    max_gap = int(rng.integers(-1, 4))
    fast = group_lesions(boxes, max_gap)
    fast_numbers = [box.lesion for box in boxes]
    reference = reference_group_lesions(boxes, max_gap)
    assert [[id(box) for box in lesion.boxes] for lesion in fast] == \
        [[id(box) for box in lesion.boxes] for lesion in reference]
    assert fast_numbers == [box.lesion for box in boxes]


def _matrices(rng: np.random.Generator) -> List[np.ndarray]:
    axial = np.diag([-0.7, -0.7, 2.5, 1.0])
    axial[:3, 3] = [180.0, 200.5, -310.25]
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    oblique = np.eye(4)
    oblique[:3, :3] = rotation * [0.8, 0.8, 3.27]
    oblique[:3, 3] = rng.uniform(-300, 300, 3)
    return [axial, oblique]


@pytest.mark.parametrize("seed", range(10))
def test_roi_geometry_of_a_series_is_the_per_box_geometry(seed: int) -> None:
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 60))
    boxes = np.sort(rng.uniform(-5, 520, (count, 2, 2)), axis=1).reshape(count, 4)[:, [0, 2, 1, 3]]
    boxes[: count // 2] = np.round(boxes[: count // 2])
    first = rng.integers(0, 300, count)
    last = first + rng.integers(0, 6, count)
    for matrix in _matrices(rng):
        fast = box_roi_geometries(matrix, boxes, first, last)
        reference = reference_box_roi_geometries(matrix, boxes, first, last)
        for fast_part, reference_part in zip(fast, reference):
            assert np.array_equal(fast_part, reference_part)  # exactly, not approximately


def _write_hostile_annotations(root: Path, case_id: str, sop_uids: Sequence[str]) -> None:
    """Replace and add box files of a case: two objects, missing fields, boxes outside the image, entities."""
    folder = root / "Annotation" / case_id.split("-")[1]
    files = [HOSTILE_FILES[1], HOSTILE_FILES[2], HOSTILE_FILES[5], HOSTILE_FILES[6], HOSTILE_FILES[10],
             HOSTILE_FILES[16], HOSTILE_FILES[17], HOSTILE_FILES[3], HOSTILE_FILES[27]]
    for sop_uid, data in zip(sop_uids, files):
        (folder / f"{sop_uid}.xml").write_bytes(data)
    (folder / "1.2.826.0.1.3680043.10.9999.7.xml").write_bytes(HOSTILE_FILES[0])  # names no image


def _roi_record(roi) -> tuple:
    return (roi.key, roi.name, roi.center.tolist(), roi.size.tolist(), None if roi.axes is None else roi.axes.tolist(),
            roi.color, roi.locked, roi.placement, sorted(roi.attributes.items()), roi.visible, roi.reference)


def test_case_reading_gives_the_reference_rois_and_findings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated case with hostile box files, read by the fast path and by the reference path."""
    root = sample.generate(tmp_path / "lung")
    collection = LungPetCtDxCollection(root)
    first_read = collection.read_case(collection.find_case("Lung_Dx-A0001"))
    annotated = sorted({box.sop_instance_uid for box in first_read.provenance["boxes"]})
    others = sorted(set(first_read.provenance["source_headers"]) - set(annotated))
    _write_hostile_annotations(root, "Lung_Dx-A0001", annotated[:4] + others[:5])

    def read() -> object:
        fresh = LungPetCtDxCollection(root)
        return fresh.read_case(fresh.find_case("Lung_Dx-A0001"))

    fast = read()
    with monkeypatch.context() as patch:
        patch.setattr(boxes_module, "parse_voc", reference_parse_voc)
        patch.setattr(boxes_module, "group_lesions", reference_group_lesions)
        patch.setattr(boxes_module, "box_roi_geometries", reference_box_roi_geometries)
        reference = read()
    assert [_roi_record(roi) for roi in fast.rois] == [_roi_record(roi) for roi in reference.rois]
    assert fast.findings == reference.findings
    assert fast.metrics == reference.metrics
    assert fast.tables[0].dataframe.equals(reference.tables[0].dataframe)
    checks = {finding.check for finding in fast.findings}
    assert {"lung.xml_unreadable", "lung.box_outside_image", "lung.box_inverted", "lung.xml_no_objects",
            "lung.xml_unmatched"} <= checks, checks
    assert any("entities" in finding.message for finding in fast.findings)
    assert sum(roi.attributes["role"] == "slice_box" for roi in fast.rois) > 0


# ---------------------------------------------------------------------- slice stacking
@pytest.mark.parametrize("seed", range(20))
def test_slice_distances_are_the_per_plane_dot_products(seed: int) -> None:
    """Sorting and stacking project all positions in one call; order, spacing and matrix stay those of np.dot."""
    from SarcomaLungLiverBrowserLib.geometry import SlicePlane, ijk_to_ras_from_slices, sort_slices

    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    orientation = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0) if seed % 2 else tuple(rotation[:, 0]) + tuple(rotation[:, 1])
    normal = np.cross(orientation[:3], orientation[3:])
    positions = [tuple(rng.uniform(-300, 300, 3) * 0 + normal * rng.uniform(0.5, 5) * k + rng.normal(0, 1e-3, 3))
                 for k in range(int(rng.integers(1, 150)))]
    rng.shuffle(positions)
    planes = [SlicePlane(position, orientation, (0.7, 0.7)) for position in positions]
    along = planes[0].normal
    distances = [float(np.dot(np.asarray(plane.position, dtype=float), along)) for plane in planes]
    order = sorted(range(len(planes)), key=lambda index: distances[index])
    assert sort_slices(planes) == order
    matrix, report = ijk_to_ras_from_slices([planes[index] for index in order])
    steps = np.diff([distances[index] for index in order])
    if steps.size:
        assert report.slice_spacing == float(np.median(steps))
        assert np.array_equal(matrix[:3, 2], np.array([-1.0, -1.0, 1.0]) * along * report.slice_spacing)
