"""Read and write PASCAL VOC bounding-box XML as Lung-PET-CT-Dx ships it.

Facts about the real files (``shared/notes/lung_voc.md`` §1.1, checked on 38
files of the collection):

* no ``<?xml?>`` declaration, 2-space indentation, LF line ends, no newline
  after ``</annotation>``, ASCII;
* the root is ``<annotation verified="no">``; ``folder``, ``filename`` and
  ``path`` hold the placeholder "Unknow" (sic); ``<source>`` has mixed
  content ("Unknow" followed by ``<database>Unknown</database>``);
* the difficulty tag is spelled ``<Difficult>`` (stock labelImg writes
  ``<difficult>``), so tag names are matched case-insensitively;
* coordinates are integers, but other VOC tools write floats, so they are
  read as floats; a file may hold several ``<object>`` elements.

Nothing inside the file names the image: the file name is the image's
SOPInstanceUID (§2), so :attr:`VocAnnotation.path` is kept.

Parsing is defensive because the files come from a download: entities are
never expanded, nothing is fetched from the network, no DTD is loaded, and a
file that declares entities or an external DTD is refused with a
:class:`~.errors.DataError` naming the file before the parser sees it (so an
entity-expansion "billion laughs" file costs one scan of its bytes).
"""
from __future__ import annotations

import functools
import math
import os
import re
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from lxml import etree

from ..errors import DataError
from .atomic import write_bytes_atomically

__all__ = [
    "VocObject",
    "VocAnnotation",
    "PLACEHOLDER",
    "MAX_FILE_BYTES",
    "parse_voc",
    "parse_voc_bytes",
    "parse_voc_files",
    "format_voc",
    "write_voc",
    "safe_output_path",
]

#: The placeholder the real files carry in folder, filename, path and source (sic).
PLACEHOLDER = "Unknow"

#: Real files are about 540 bytes; anything this large is not an annotation.
MAX_FILE_BYTES = 1_000_000

_ENTITY_DECLARATION = re.compile(r"<!ENTITY", re.IGNORECASE)
_DOCTYPE = re.compile(r"<!DOCTYPE([^>\[]*)", re.IGNORECASE)
_EXTERNAL_ID = re.compile(r"\b(SYSTEM|PUBLIC)\b", re.IGNORECASE)


@dataclass(frozen=True)
class VocObject:
    """One ``<object>``: a class name and a box in pixel (column, row) units.

    The values are as written in the file: 0-based column (x) and row (y)
    indices of the stored pixel array (notes §1.3); no clamping is applied.
    """

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    truncated: bool = False
    pose: str = "Unspecified"

    @property
    def box(self) -> tuple:
        """(xmin, ymin, xmax, ymax)."""
        return (self.xmin, self.ymin, self.xmax, self.ymax)


@dataclass
class VocAnnotation:
    """One VOC XML file: the image size it claims and its objects.

    :param path: the file read (None for an annotation built in memory).
    :param width: ``<size><width>``, or None when absent.
    :param height: ``<size><height>``, or None when absent.
    :param depth: ``<size><depth>``, or None when absent.
    :param objects: every ``<object>``, in file order.
    """

    path: Optional[Path]
    width: Optional[int]
    height: Optional[int]
    depth: Optional[int]
    objects: List[VocObject] = field(default_factory=list)
    verified: Optional[str] = "no"
    folder: str = PLACEHOLDER
    filename: str = PLACEHOLDER
    image_path: str = PLACEHOLDER
    source: str = PLACEHOLDER
    database: Optional[str] = "Unknown"
    segmented: int = 0

    @functools.cached_property  # asked for several times per file by the box loader, 31k files per collection
    def stem(self) -> str:
        """The file name without ``.xml``: the annotated image's SOPInstanceUID."""
        if self.path is None:
            return ""
        # A Path knows its name; a str is split by os.path rather than parsed into a Path (31k files per collection).
        name = self.path.name if isinstance(self.path, PurePath) else os.path.basename(self.path)
        return name[:-4] if name.lower().endswith(".xml") else name


# ---------------------------------------------------------------------- reading
def _new_safe_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


_parsers = threading.local()


def _safe_parser() -> etree.XMLParser:
    """This thread's parser (an lxml parser serves one thread at a time; building one per file costs 10 µs+)."""
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = _parsers.parser = _new_safe_parser()
    return parser


def _text_for_scanning(data: bytes, path: Union[str, Path]) -> str:
    """The file as text for the entity pre-scan, whatever its encoding."""
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        encoding = "utf-32"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4]:
        encoding = "utf-16"
    else:
        # latin-1 maps every byte, so ASCII markup is found in any 8-bit encoding.
        return data.decode("latin-1")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DataError(path, f"is not readable text ({error})") from error


def _is_8_bit(data: bytes) -> bool:
    return not (data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")) or b"\x00" in data[:4])


def _refuse_entities(data: bytes, path: Union[str, Path]) -> None:
    if _is_8_bit(data) and b"<!" not in data:
        return  # 8-bit text is scanned as latin-1, byte for character: no "<!", no declaration
    text = _text_for_scanning(data, path)
    if _ENTITY_DECLARATION.search(text):
        raise DataError(path, "declares XML entities (<!ENTITY ...>); refused for safety, "
                              "real annotation files have none")
    doctype = _DOCTYPE.search(text)
    if doctype and _EXTERNAL_ID.search(doctype.group(1)):
        raise DataError(path, "refers to an external DTD (<!DOCTYPE ... SYSTEM/PUBLIC>); refused for safety")


def _lower_local_name(tag: str) -> str:
    """``{uri}Local`` or ``Local`` as ``local``, cached (a collection uses a dozen distinct tags, 31k times each)."""
    name = _LOCAL_NAMES.get(tag)
    if name is None:
        # lxml spells namespaced tags "{uri}local"; splitting the string is etree.QName(tag).localname, faster.
        name = tag.rpartition("}")[2].lower()
        if len(_LOCAL_NAMES) < _MAX_CACHED_NAMES:  # invented tags of hostile files must not grow it forever
            _LOCAL_NAMES[tag] = name
    return name


_LOCAL_NAMES: Dict[str, str] = {}
_MAX_CACHED_NAMES = 4096


def _local_name(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return _lower_local_name(tag)


def _first_children(element: Optional[etree._Element]) -> Dict[str, etree._Element]:
    """An element's first child of each lower-case local name, in one pass over its children."""
    children: Dict[str, etree._Element] = {}
    if element is None:
        return children
    for child in element:
        tag = child.tag
        if tag.__class__ is str:  # entity references have a function as tag, not a name
            name = _lower_local_name(tag)
            if name not in children:
                children[name] = child
    return children


def _text(element: Optional[etree._Element], default: str = "") -> str:
    if element is None:
        return default
    return (element.text or "").strip()


def _what(tag: str, object_index: Optional[int]) -> str:
    """How a message names a field: ``<width>`` or ``<object> 2 <xmin>`` (built only when something is wrong)."""
    return tag if object_index is None else f"<object> {object_index + 1} {tag}"


def _number_of_text(text: str, tag: str, object_index: Optional[int], path: Union[str, Path]) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, f"{_what(tag, object_index)} is {text!r}, not a number") from None
    if not math.isfinite(value):
        raise DataError(path, f"{_what(tag, object_index)} is {text!r}, not a finite number")
    return value


def _number(element: Optional[etree._Element], tag: str, path: Union[str, Path],
            object_index: Optional[int] = None) -> float:
    """A required number; ``tag`` and ``object_index`` name it in the error (e.g. ``<object> 1 <xmin>``)."""
    if element is None:
        raise DataError(path, f"{_what(tag, object_index)} is missing")
    return _number_of_text((element.text or "").strip(), tag, object_index, path)


def _optional_int(element: Optional[etree._Element], tag: str, path: Union[str, Path]) -> Optional[int]:
    text = "" if element is None else (element.text or "").strip()
    if not text:
        return None
    return int(round(_number_of_text(text, tag, None, path)))


def _flag(element: Optional[etree._Element], tag: str, object_index: int, path: Union[str, Path]) -> bool:
    text = "" if element is None else (element.text or "").strip()
    if not text:
        return False
    return _number_of_text(text, tag, object_index, path) != 0


def _parse_object(element: etree._Element, index: int, path: Union[str, Path]) -> VocObject:
    children = _first_children(element)
    box = children.get("bndbox")
    if box is None:
        raise DataError(path, f"<object> {index + 1} has no <bndbox>")
    corners = _first_children(box)
    get = corners.get
    xmin = _number(get("xmin"), "<xmin>", path, index)
    ymin = _number(get("ymin"), "<ymin>", path, index)
    xmax = _number(get("xmax"), "<xmax>", path, index)
    ymax = _number(get("ymax"), "<ymax>", path, index)
    return VocObject(
        _text(children.get("name")), xmin, ymin, xmax, ymax,
        _flag(children.get("difficult"), "<Difficult>", index, path),
        _flag(children.get("truncated"), "<truncated>", index, path),
        _text(children.get("pose"), "Unspecified") or "Unspecified",
    )


def _refuse_unresolved_entities(tree: etree._Element, path: Union[str, Path]) -> None:
    docinfo = tree.getroottree().docinfo
    dtd = docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise DataError(path, "declares XML entities; refused for safety")
    if docinfo.system_url or docinfo.public_id:
        raise DataError(path, "refers to an external DTD; refused for safety")
    for node in tree.iter(etree.Entity):  # lxml filters entity nodes in C
        raise DataError(path, f"uses the undeclared or unexpanded entity {node.text!r}")


def _root_children(root: etree._Element) -> Tuple[Dict[str, etree._Element], List[etree._Element]]:
    """The root's first child of each lower-case local name, and every ``<object>``, in one pass."""
    first: Dict[str, etree._Element] = {}
    objects: List[etree._Element] = []
    for child in root:
        tag = child.tag
        if tag.__class__ is not str:  # entity references (refused before) have a function as tag
            continue
        name = _lower_local_name(tag)
        if name == "object":
            objects.append(child)
        elif name not in first:
            first[name] = child
    return first, objects


# ---------------------------------------------------------------------- the fast path
# Real Lung-PET-CT-Dx files (and labelImg's) are one fixed layout of plain ASCII elements. A file in exactly that
# layout -- no declaration but a plain one, no comment, CDATA, entity or character reference, no other attribute,
# no namespace -- is read by one regular expression: for such a text, matching the layout *is* checking that it
# is well-formed, and the values are the same strings lxml would give. Anything else (a comment, a reordered or
# extra element, a float written as "1e3", a non-ASCII byte) does not match and goes to the lxml path with every
# check. The fast path reads a real file in a quarter of lxml's time; Testing/test_voc_fast_path.py holds it equal
# to the lxml path on the real files and on thousands of mutations of them.
_SPACE = r"[ \t\r\n]*"
#: Element text: printable ASCII and tabs, none of the characters markup or a character reference would need.
#: Line breaks are left out because XML turns "\r\n" into "\n" inside text, which the regex would not.
_TEXT = r"[^<>&\]\x00-\x08\x0a-\x1f\x7f-\U0010ffff]*"
# No two runs that can match the same characters stand side by side (white space, then optional digits, then
# white space would split a long run of spaces in quadratically many ways before failing).
_INTEGER = _SPACE + r"(?:(-?[0-9]{1,9})" + _SPACE + r")?"
_COORDINATE = _SPACE + r"(-?[0-9]{1,9}(?:\.[0-9]{1,9})?)" + _SPACE
_OBJECT = (
    r"<object>" + _SPACE
    + r"<name>(" + _TEXT + r")</name>" + _SPACE
    + r"<pose>(" + _TEXT + r")</pose>" + _SPACE
    + r"<truncated>" + _INTEGER + r"</truncated>" + _SPACE
    + r"<([Dd]ifficult)>" + _INTEGER + r"</\4>" + _SPACE
    + r"<bndbox>" + _SPACE
    + r"<xmin>" + _COORDINATE + r"</xmin>" + _SPACE
    + r"<ymin>" + _COORDINATE + r"</ymin>" + _SPACE
    + r"<xmax>" + _COORDINATE + r"</xmax>" + _SPACE
    + r"<ymax>" + _COORDINATE + r"</ymax>" + _SPACE
    + r"</bndbox>" + _SPACE
    + r"</object>" + _SPACE
)
_CANONICAL_OBJECT = re.compile(_OBJECT)
#: Groups of the file pattern up to and including the one holding all objects.
_GROUPS_BEFORE_OBJECTS = 14
_CANONICAL_FILE = re.compile(
    r"(?:<\?xml version=(['\"])1\.0\1(?: encoding=(['\"])(?:utf-8|UTF-8|ascii|US-ASCII)\2)?"
    r"(?: standalone=(['\"])(?:yes|no)\3)? ?\?>)?" + _SPACE
    + r"<annotation(?: verified=\"([^<&\"\x00-\x1f]*)\")?>" + _SPACE
    + r"(?:<folder>(" + _TEXT + r")</folder>" + _SPACE + r")?"
    + r"(?:<filename>(" + _TEXT + r")</filename>" + _SPACE + r")?"
    + r"(?:<path>(" + _TEXT + r")</path>" + _SPACE + r")?"
    + r"(?:<source>(" + _TEXT + r")(?:<database>(" + _TEXT + r")</database>" + _SPACE + r")?</source>" + _SPACE
    + r")?"
    + r"<size>" + _SPACE + r"<width>" + _INTEGER + r"</width>" + _SPACE + r"<height>" + _INTEGER + r"</height>"
    + _SPACE + r"<depth>" + _INTEGER + r"</depth>" + _SPACE + r"</size>" + _SPACE
    + r"(?:<segmented>" + _INTEGER + r"</segmented>" + _SPACE + r")?"
    + r"((?:" + _OBJECT.replace(r"\4", "\\" + str(_GROUPS_BEFORE_OBJECTS + 4)) + r")*)"
    + r"</annotation>" + _SPACE
)


def _optional_whole(text: Optional[str]) -> Optional[int]:
    return None if text is None else int(text)


def _parse_canonical(data: bytes, path: Path) -> Optional[VocAnnotation]:
    """The annotation of a file in the real files' exact layout, or None for anything else (see above)."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    match = _CANONICAL_FILE.fullmatch(text)
    if match is None:
        return None
    (_, _, _, verified, folder, filename, image_path, source, database, width, height, depth, segmented,
     objects_text, *_) = match.groups()
    objects = [
        VocObject(name.strip(), float(xmin), float(ymin), float(xmax), float(ymax), bool(difficult and int(difficult)),
                  bool(truncated and int(truncated)), pose.strip() or "Unspecified")
        for name, pose, truncated, _, difficult, xmin, ymin, xmax, ymax
        in _CANONICAL_OBJECT.findall(objects_text)
    ] if objects_text else []
    return VocAnnotation(
        path, _optional_whole(width), _optional_whole(height), _optional_whole(depth), objects, verified,
        (folder or "").strip(), (filename or "").strip(), (image_path or "").strip(), (source or "").strip(),
        None if database is None else database.strip(),
        int(segmented) if segmented else 0,
    )


def parse_voc_bytes(data: bytes, path: Union[str, Path] = "<memory>") -> VocAnnotation:
    """Parse VOC XML held in memory; ``path`` is used for the result and messages.

    :raises DataError: naming ``path``, for unsafe, malformed or incomplete XML.
    """
    if len(data) > MAX_FILE_BYTES:
        raise DataError(path, f"is {len(data)} bytes; a VOC annotation is well under {MAX_FILE_BYTES}")
    path = path if isinstance(path, Path) else Path(path)
    annotation = _parse_canonical(data, path)
    if annotation is not None:
        return annotation
    _refuse_entities(data, path)
    try:
        root = etree.fromstring(data, _safe_parser())
    except etree.XMLSyntaxError as error:
        raise DataError(path, f"is not well-formed XML ({error})") from None
    if root is None:
        raise DataError(path, "is empty")
    _refuse_unresolved_entities(root, path)
    if _local_name(root) != "annotation":
        raise DataError(path, f"has root <{root.tag}>, expected <annotation> (PASCAL VOC)")
    children, object_elements = _root_children(root)
    objects = [_parse_object(element, index, path) for index, element in enumerate(object_elements)]
    size = _first_children(children.get("size"))
    source = children.get("source")
    database = _first_children(source).get("database")
    return VocAnnotation(
        path,
        _optional_int(size.get("width"), "<width>", path),
        _optional_int(size.get("height"), "<height>", path),
        _optional_int(size.get("depth"), "<depth>", path),
        objects,
        root.get("verified"),
        _text(children.get("folder")),
        _text(children.get("filename")),
        _text(children.get("path")),
        _text(source),
        _text(database) if database is not None else None,
        _optional_int(children.get("segmented"), "<segmented>", path) or 0,
    )


#: Bytes asked for after the first read, until the end of the file (or the cap) is reached.
_READ_CHUNK = 65536
#: Read-only, and binary on Windows (where os.open would otherwise translate line ends).
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)


def _read_capped(path: Path) -> bytes:
    """The file's bytes, never more than :data:`MAX_FILE_BYTES` + 1 of them, whatever its size claims.

    The first read asks for the size ``fstat`` gives plus one byte; reads go
    on until the end of the file, so a file that grows after ``fstat`` (or a
    FIFO, or a ``/proc`` file claiming size 0) is still read to its end or to
    the cap. A regular file's read returns fewer bytes than asked only at its
    end, so the usual file costs one read. Asking for the size rather than the
    cap matters: a 1 MB read buffer per 540-byte file costs more than parsing it.
    """
    try:
        descriptor = os.open(path, _READ_FLAGS)
    except OSError as error:
        raise DataError(path, f"cannot be read ({error.strerror or error})") from error
    try:
        status = os.fstat(descriptor)
        size = status.st_size
        if size > MAX_FILE_BYTES:
            raise DataError(path, f"is {size} bytes; a VOC annotation is well under {MAX_FILE_BYTES}")
        regular = stat.S_ISREG(status.st_mode)
        chunks: List[bytes] = []
        total, wanted = 0, size + 1
        while total <= MAX_FILE_BYTES:
            asked = min(wanted, MAX_FILE_BYTES + 1 - total)
            chunk = os.read(descriptor, asked)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if regular and len(chunk) < asked:
                break  # a short read of a regular file is its end
            wanted = _READ_CHUNK
    except OSError as error:
        raise DataError(path, f"cannot be read ({error.strerror or error})") from error
    finally:
        os.close(descriptor)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_voc(path: Union[str, Path]) -> VocAnnotation:
    """Read one VOC XML file.

    :raises DataError: naming the file, if it cannot be read, is too large,
        declares entities or an external DTD, is not well-formed, is not a
        VOC ``<annotation>``, or has a box coordinate that is not a number.
    """
    path = path if isinstance(path, Path) else Path(path)
    return parse_voc_bytes(_read_capped(path), path)


# ---------------------------------------------------------------------- many files, in parallel
#: Files per task sent to a worker process: large enough that a task costs far more than its
#: round trip (pickling a list of paths and of plain tuples), small enough to keep workers balanced.
CHUNK_FILES = 256

_Fields = Tuple[Any, ...]


def _fields_of(annotation: VocAnnotation) -> _Fields:
    """The annotation as plain tuples: pickled several times faster than the dataclasses."""
    objects = tuple((o.name, o.xmin, o.ymin, o.xmax, o.ymax, o.difficult, o.truncated, o.pose)
                    for o in annotation.objects)
    return (annotation.width, annotation.height, annotation.depth, objects, annotation.verified, annotation.folder,
            annotation.filename, annotation.image_path, annotation.source, annotation.database, annotation.segmented)


def _annotation_of(path: Path, fields: _Fields) -> VocAnnotation:
    width, height, depth, objects, verified, folder, filename, image_path, source, database, segmented = fields
    return VocAnnotation(path, width, height, depth, [VocObject(*values) for values in objects], verified, folder,
                         filename, image_path, source, database, segmented)


def _parse_chunk(paths: Sequence[str]) -> List[Tuple[bool, Any]]:
    """Worker side: (True, fields) or (False, problem) per path, in order."""
    results: List[Tuple[bool, Any]] = []
    for path in paths:
        try:
            results.append((True, _fields_of(parse_voc(path))))
        except DataError as error:
            results.append((False, error.problem))
    return results


def parse_voc_files(paths: Sequence[Union[str, Path]], workers: int = 1, chunk_files: int = CHUNK_FILES
                    ) -> List[Union[VocAnnotation, DataError]]:
    """Parse many VOC files with every check of :func:`parse_voc`, in ``workers`` processes when above 1.

    Each file is judged alone: one that cannot be read gives its
    :class:`~.errors.DataError` in its place, the others are still read.
    Paths go to the processes in chunks of ``chunk_files`` and results come
    back as plain tuples; the processes are spawned (safe in a multi-threaded
    host such as Slicer) and import only this module.

    :returns: an annotation or the error naming the file, in the order of ``paths``.
    """
    paths = [path if isinstance(path, Path) else Path(path) for path in paths]
    if workers <= 1 or len(paths) <= chunk_files:
        return [_parse_or_error(path) for path in paths]
    from concurrent.futures import ProcessPoolExecutor

    from ..processes import spawn_context

    chunks = [[str(path) for path in paths[start : start + chunk_files]]
              for start in range(0, len(paths), chunk_files)]
    results: List[Union[VocAnnotation, DataError]] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn_context()) as pool:
        for chunk, outcomes in zip(chunks, pool.map(_parse_chunk, chunks)):
            for path, (ok, value) in zip(chunk, outcomes):
                results.append(_annotation_of(Path(path), value) if ok else DataError(path, value))
    return results


def _parse_or_error(path: Path) -> Union[VocAnnotation, DataError]:
    try:
        return parse_voc(path)
    except DataError as error:
        return error


# ---------------------------------------------------------------------- writing
def _escape(text: str, entities: Optional[Dict[str, str]] = None) -> str:
    """``xml.sax.saxutils.escape``, imported when text is written.

    Importing it pulls in ``urllib.request`` and ``http.client`` (half a
    second); every process that only reads VOC files would pay for it.
    """
    from xml.sax.saxutils import escape as sax_escape

    return sax_escape(text, entities or {})


def _format_number(value: float) -> str:
    """Integers as integers (the real files' style); other values exactly (``repr``)."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return repr(value)


def _format_object(voc_object: VocObject) -> List[str]:
    return [
        "  <object>",
        f"    <name>{_escape(voc_object.name)}</name>",
        f"    <pose>{_escape(voc_object.pose)}</pose>",
        f"    <truncated>{int(voc_object.truncated)}</truncated>",
        f"    <Difficult>{int(voc_object.difficult)}</Difficult>",
        "    <bndbox>",
        f"      <xmin>{_format_number(voc_object.xmin)}</xmin>",
        f"      <ymin>{_format_number(voc_object.ymin)}</ymin>",
        f"      <xmax>{_format_number(voc_object.xmax)}</xmax>",
        f"      <ymax>{_format_number(voc_object.ymax)}</ymax>",
        "    </bndbox>",
        "  </object>",
    ]


def format_voc(annotation: VocAnnotation) -> str:
    """The annotation as text in the real files' style.

    No XML declaration, 2-space indent, ``verified`` attribute on the root,
    the "Unknow" placeholders, mixed-content ``<source>``, ``<Difficult>``
    and no newline after the closing tag: parsing a real file and formatting
    it again gives back the same bytes.
    """
    verified = "" if annotation.verified is None else f' verified="{_escape(annotation.verified, {chr(34): "&quot;"})}"'
    database = "" if annotation.database is None else f"<database>{_escape(annotation.database)}</database>"

    def size_line(tag: str, value: Optional[int]) -> str:
        return f"    <{tag}>{'' if value is None else int(value)}</{tag}>"

    lines = [
        f"<annotation{verified}>",
        f"  <folder>{_escape(annotation.folder)}</folder>",
        f"  <filename>{_escape(annotation.filename)}</filename>",
        f"  <path>{_escape(annotation.image_path)}</path>",
        f"  <source>{_escape(annotation.source)}{database}",
        "  </source>",
        "  <size>",
        size_line("width", annotation.width),
        size_line("height", annotation.height),
        size_line("depth", annotation.depth),
        "  </size>",
        f"  <segmented>{int(annotation.segmented)}</segmented>",
    ]
    for voc_object in annotation.objects:
        lines.extend(_format_object(voc_object))
    lines.append("</annotation>")
    return "\n".join(lines)


def safe_output_path(folder: Union[str, Path], file_name: str) -> Path:
    """``folder / file_name``, refusing names that would leave ``folder``.

    :raises DataError: if ``file_name`` holds a path separator, is ``.``/``..``,
        is absolute, does not end in ``.xml``, or resolves outside ``folder``
        (e.g. through a symbolic link).
    """
    folder = Path(folder)
    name = str(file_name)
    problems = (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or os.path.isabs(name)
        or (os.altsep is not None and os.altsep in name)
    )
    if problems:
        raise DataError(folder, f"refusing to write {name!r}: a file name must not leave the output folder")
    if not name.lower().endswith(".xml"):
        raise DataError(folder, f"refusing to write {name!r}: VOC annotation names end in .xml")
    target = folder / name
    if target.resolve().parent != folder.resolve():
        raise DataError(folder, f"refusing to write {name!r}: it resolves outside the output folder")
    return target


def write_voc(folder: Union[str, Path], file_name: str, annotation: VocAnnotation) -> Path:
    """Write ``annotation`` as ``folder/file_name`` in the real files' style.

    The folder is created if needed. Lung-PET-CT-Dx names the file
    ``<SOPInstanceUID>.xml`` inside ``Annotation/<A0001>/``.

    :raises DataError: if the name would escape ``folder`` (see :func:`safe_output_path`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = safe_output_path(folder, file_name)
    # Atomic: a kill during a re-save leaves the previous correction, never half of the new one.
    return write_bytes_atomically(target, format_voc(annotation).encode("utf-8"))


def annotation_for_objects(objects: Sequence[VocObject], width: Optional[int], height: Optional[int],
                           depth: Optional[int] = 1, path: Optional[Path] = None) -> VocAnnotation:
    """A new annotation in the collection's style (placeholders, ``verified="no"``)."""
    return VocAnnotation(path=path, width=width, height=height, depth=depth, objects=list(objects))


def iter_xml_files(folder: Union[str, Path]) -> Iterable[Path]:
    """The ``*.xml`` files directly in ``folder`` (any case of the suffix), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    # scandir's entries know their type without a stat per file; normcase orders names as Path does.
    with os.scandir(folder) as entries:
        names = [entry.name for entry in entries
                 if entry.name[-4:].lower() == ".xml" and len(entry.name) > 4 and entry.is_file()]
    names.sort(key=os.path.normcase)
    return [folder / name for name in names]


__all__ += ["annotation_for_objects", "iter_xml_files"]
