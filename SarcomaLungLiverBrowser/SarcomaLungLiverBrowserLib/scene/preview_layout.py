"""Text on preview images: fonts, label boxes that never overlap or leave the image, legends, colour bars.

Scene-free (Pillow and numpy only): :mod:`.preview` renders the views with
slice-core and hands the pixels here. Every label is placed through a
:class:`LabelLayout`, which keeps the box of each label drawn so far, tries
the candidate positions a caller offers in order, and shrinks or shortens the
text rather than let it overlap another label or run off its region. The boxes
are returned with the image so tests (and anyone) can check them.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "Box",
    "PlacedLabel",
    "LabelLayout",
    "LayoutError",
    "find_font_path",
    "load_font",
    "orientation_letter",
    "nice_scale_length_mm",
    "Montage",
    "read_montage",
]

RGB = Tuple[int, int, int]

#: Places a DejaVu Sans may be found: matplotlib's copy (in the lock file), then Debian's fonts-dejavu-core.
_FONT_CANDIDATES = (
    ("matplotlib", "mpl-data/fonts/ttf/DejaVuSans.ttf"),
    (None, "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    (None, "/usr/share/fonts/dejavu/DejaVuSans.ttf"),
)


class LayoutError(ValueError):
    """A label cannot be placed in its region even at the smallest font size."""


@dataclass(frozen=True)
class Box:
    """A pixel rectangle: left/top inclusive, right/bottom exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def intersects(self, other: "Box") -> bool:
        return self.left < other.right and other.left < self.right and self.top < other.bottom \
            and other.top < self.bottom

    def contains(self, other: "Box") -> bool:
        return self.left <= other.left and self.top <= other.top and other.right <= self.right \
            and other.bottom <= self.bottom

    def moved(self, dx: int, dy: int) -> "Box":
        return Box(self.left + dx, self.top + dy, self.right + dx, self.bottom + dy)


@dataclass(frozen=True)
class PlacedLabel:
    """A label as drawn: its text (possibly shortened), its box, and what it labels."""

    text: str
    box: Box
    kind: str


def find_font_path() -> Optional[str]:
    """A DejaVu Sans TrueType file, or None when neither matplotlib nor fonts-dejavu-core provides one."""
    for package, relative in _FONT_CANDIDATES:
        if package is None:
            if Path(relative).is_file():
                return relative
            continue
        try:
            module = __import__(package)
        except ImportError:
            continue
        path = Path(module.__file__).parent / relative
        if path.is_file():
            return str(path)
    return None


_FONT_CACHE: Dict[int, ImageFont.ImageFont] = {}


def load_font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans at ``size`` pixels; Pillow's own scalable font when DejaVu is not installed."""
    if size not in _FONT_CACHE:
        path = find_font_path()
        # Pillow >= 10.1 ships a scalable default font: text stays legible without DejaVu.
        _FONT_CACHE[size] = ImageFont.truetype(path, size) if path else ImageFont.load_default(size)
    return _FONT_CACHE[size]


def orientation_letter(direction_ras: Sequence[float]) -> str:
    """The patient direction a RAS vector points to most: R, L, A, P, S or I."""
    axis = int(np.argmax(np.abs(direction_ras)))
    positive = direction_ras[axis] > 0
    return ("R", "A", "S")[axis] if positive else ("L", "P", "I")[axis]


def nice_scale_length_mm(mm_per_pixel: float, max_pixels: int) -> float:
    """The longest 1/2/5 x 10^n mm length that fits in ``max_pixels``."""
    best = 1.0
    for exponent in range(-1, 4):
        for mantissa in (1, 2, 5):
            length = mantissa * 10.0 ** exponent
            if length / mm_per_pixel <= max_pixels:
                best = length
    return best


def _format_length(mm: float) -> str:
    return f"{mm / 10:g} cm" if mm >= 10 else f"{mm:g} mm"


class LabelLayout:
    """Draws labels on an image so that no two labels' boxes intersect and none leaves its region."""

    def __init__(self, image: Image.Image, base_font_size: int = 14, min_font_size: int = 9) -> None:
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.base_font_size = base_font_size
        self.min_font_size = min_font_size
        self.labels: List[PlacedLabel] = []
        self.bounds = Box(0, 0, image.width, image.height)

    # ------------------------------------------------------------ measuring
    def text_box(self, text: str, size: int, padding: int = 2) -> Tuple[int, int]:
        """Width and height of ``text`` with its backing padding."""
        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=load_font(size))
        return right - min(0, left) + 2 * padding, bottom - min(0, top) + 2 * padding

    def free(self, box: Box, region: Optional[Box] = None) -> bool:
        """True if ``box`` lies in the region and touches no label already placed."""
        return (region or self.bounds).contains(box) and self.bounds.contains(box) \
            and not any(box.intersects(label.box) for label in self.labels)

    def reserve(self, box: Box, kind: str, text: str = "") -> PlacedLabel:
        """Claim ``box`` for a non-text mark (legend swatch, scale bar, colour bar).

        :raises LayoutError: if the box is taken or out of the image.
        """
        if not self.free(box):
            raise LayoutError(f"{kind} box {box} overlaps another label or leaves the image")
        label = PlacedLabel(text, box, kind)
        self.labels.append(label)
        return label

    # ------------------------------------------------------------ drawing
    def place(self, text: str, anchors: Iterable[Tuple[int, int, str]], region: Box, kind: str,
              color: RGB = (255, 255, 255), backing: Optional[Tuple[int, int, int, int]] = (0, 0, 0, 170),
              size: Optional[int] = None, padding: int = 2) -> PlacedLabel:
        """Draw ``text`` at the first anchor where it fits; smaller, then shortened, if none does.

        :param anchors: (x, y, where) points; ``where`` says which part of the
            label's box sits on the point: two letters, vertical (t/m/b) then
            horizontal (l/c/r), e.g. ``"tl"`` or ``"mr"``.
        :param region: the label must lie inside this box (e.g. its panel).
        :raises LayoutError: if no anchor takes even a one-character label.
        """
        anchors = list(anchors)
        sizes = range(size or self.base_font_size, self.min_font_size - 1, -1)
        for attempt in _shortenings(text):
            for font_size in sizes:
                width, height = self.text_box(attempt, font_size, padding)
                for x, y, where in anchors:
                    box = _anchored_box(x, y, width, height, where)
                    if self.free(box, region):
                        self._draw_text(attempt, box, font_size, color, backing, padding)
                        label = PlacedLabel(attempt, box, kind)
                        self.labels.append(label)
                        return label
        raise LayoutError(f"no room for the {kind} label {text!r} in {region}")

    def _draw_text(self, text: str, box: Box, size: int, color: RGB,
                   backing: Optional[Tuple[int, int, int, int]], padding: int) -> None:
        font = load_font(size)
        if backing is not None:
            overlay = Image.new("RGBA", (box.width, box.height), backing)
            self.image.paste(overlay, (box.left, box.top), overlay)
        left, top, _, _ = self.draw.textbbox((0, 0), text, font=font)
        self.draw.text((box.left + padding - min(0, left), box.top + padding - min(0, top)), text,
                       fill=color, font=font)

    def scale_bar(self, panel: Box, mm_per_pixel: float, margin: int = 8) -> None:
        """A scale bar with its length in the bottom-left corner of an image panel."""
        length_mm = nice_scale_length_mm(mm_per_pixel, panel.width // 4)
        pixels = max(1, int(round(length_mm / mm_per_pixel)))
        bar = Box(panel.left + margin, panel.bottom - margin - 6, panel.left + margin + pixels, panel.bottom - margin)
        backing = Box(bar.left - 3, bar.top - 3, bar.right + 3, bar.bottom + 3)
        self.reserve(backing, "scale bar", _format_length(length_mm))
        self.draw.rectangle([backing.left, backing.top, backing.right - 1, backing.bottom - 1], fill=(0, 0, 0))
        self.draw.rectangle([bar.left, bar.top + 2, bar.right - 1, bar.bottom - 3], fill=(255, 255, 255))
        self.draw.rectangle([bar.left, bar.top, bar.left + 1, bar.bottom - 1], fill=(255, 255, 255))
        self.draw.rectangle([bar.right - 2, bar.top, bar.right - 1, bar.bottom - 1], fill=(255, 255, 255))
        self.place(_format_length(length_mm), [(backing.left, backing.top - 1, "bl"),
                                              (backing.right + 2, backing.bottom, "bl")],
                   panel, "scale bar text", size=12)

    def orientation_labels(self, panel: Box, right: str, left: str, up: str, down: str, margin: int = 3) -> None:
        """Patient-direction letters at the middle of each edge of an image panel."""
        mid_x, mid_y = (panel.left + panel.right) // 2, (panel.top + panel.bottom) // 2
        for letter, anchor in ((up, (mid_x, panel.top + margin, "tc")), (down, (mid_x, panel.bottom - margin, "bc")),
                               (left, (panel.left + margin, mid_y, "ml")),
                               (right, (panel.right - margin, mid_y, "mr"))):
            self.place(letter, [anchor], panel, "orientation", color=(255, 230, 120), size=15)

    def legend(self, entries: Sequence[Tuple[str, RGB]], region: Box, title: str = "Legend",
               swatch: int = 14, gap: int = 4) -> List[Tuple[str, RGB, Box, Box]]:
        """Colour swatches with names, one per line, top-down in ``region``.

        :returns: (name, colour, swatch box, text box) per entry.
        :raises LayoutError: if the entries do not fit the region (callers size it with :meth:`legend_height`).
        """
        placed: List[Tuple[str, RGB, Box, Box]] = []
        y = region.top
        header = self.place(title, [(region.left, y, "tl")], region, "legend title", size=14, backing=None)
        y = header.box.bottom + gap
        for name, color in entries:
            swatch_box = Box(region.left + 2, y + 1, region.left + 2 + swatch, y + 1 + swatch)
            self.reserve(swatch_box, "legend swatch", name)
            self.draw.rectangle([swatch_box.left, swatch_box.top, swatch_box.right - 1, swatch_box.bottom - 1],
                                fill=tuple(color), outline=(255, 255, 255))
            text = self.place(name, [(swatch_box.right + 6, y, "tl")], region, "legend", size=13, backing=None)
            placed.append((name, tuple(color), swatch_box, text.box))
            y = max(text.box.bottom, swatch_box.bottom) + gap
        return placed

    def legend_height(self, count: int, swatch: int = 14, gap: int = 4) -> int:
        """Pixels :meth:`legend` needs for ``count`` entries."""
        line = max(swatch + 1, self.text_box("Ag", 13)[1]) + gap
        return self.text_box("Legend", 14)[1] + gap + count * line + 4

    def color_bar(self, region: Box, colors: np.ndarray, low: float, high: float, title: str) -> Box:
        """A horizontal colour bar with its end values and title.

        :param colors: (n, 3) uint8 colours from ``low`` to ``high``.
        :returns: the box of the bar itself.
        """
        title_label = self.place(title, [(region.left, region.top, "tl")], region, "colour bar title", size=13,
                                 backing=None)
        bar = Box(region.left + 2, title_label.box.bottom + 3, region.right - 2, title_label.box.bottom + 17)
        self.reserve(bar, "colour bar", title)
        ramp = np.asarray(colors, dtype=np.uint8)
        index = np.linspace(0, len(ramp) - 1, bar.width).round().astype(int)
        strip = np.repeat(ramp[index][None, :, :], bar.height, axis=0)
        self.image.paste(Image.fromarray(strip, "RGB"), (bar.left, bar.top))
        self.place(f"{low:g}", [(bar.left, bar.bottom + 2, "tl")], region, "colour bar value", size=12, backing=None)
        self.place(f"{high:g}", [(bar.right, bar.bottom + 2, "tr")], region, "colour bar value", size=12,
                   backing=None)
        return bar


def _anchored_box(x: int, y: int, width: int, height: int, where: str) -> Box:
    vertical, horizontal = where[0], where[1]
    left = x if horizontal == "l" else x - width if horizontal == "r" else x - width // 2
    top = y if vertical == "t" else y - height if vertical == "b" else y - height // 2
    return Box(int(left), int(top), int(left + width), int(top + height))


def _shortenings(text: str) -> Iterable[str]:
    """The text, then ever shorter versions ending in an ellipsis."""
    yield text
    for length in range(len(text) - 1, 0, -1):
        yield text[:length].rstrip() + "…"


def boxes_overlap(labels: Sequence[PlacedLabel]) -> List[Tuple[PlacedLabel, PlacedLabel]]:
    """Every pair of labels whose boxes intersect (empty for a correct layout)."""
    return [(a, b) for index, a in enumerate(labels) for b in labels[index + 1:] if a.box.intersects(b.box)]


@dataclass(frozen=True)
class Montage:
    """A case preview ready for a report: the PNG as a data URI, its caption and its size in pixels."""

    data_uri: str
    title: str
    description: str
    width: int
    height: int

    @property
    def caption(self) -> str:
        return " — ".join(part for part in (self.title, self.description) if part)


def read_montage(png: Union[Path, str, bytes]) -> Montage:
    """A preview PNG (a file or its bytes) as a :class:`Montage`, caption from its PNG text chunks.

    :raises ValueError: naming the file, if it is not a PNG image.
    :raises OSError: if the file cannot be read.
    """
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    name = "the image" if isinstance(png, bytes) else str(png)
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{name} is not a PNG image")
    with Image.open(BytesIO(data)) as image:
        text = dict(getattr(image, "text", {}) or {})
        width, height = image.size
    encoded = base64.b64encode(data).decode("ascii")
    return Montage(f"data:image/png;base64,{encoded}", text.get("Title", ""), text.get("Description", ""),
                   width, height)
