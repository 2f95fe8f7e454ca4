"""Case previews a reader can judge: three slices through each finding, a 3D view, legend and scale.

One montage per loaded case, drawn offscreen on slicer-core (the same code
serves the command line's snapshot, the QA report and the README screenshots):

* for each annotation of interest (ROIs, then segments named like lesions, else
  every segment; at most ``max_findings``) a row of axial, coronal and
  sagittal slices through its centre, zoomed to show it with its surroundings;
* a 3D view from the front of every segment as a closed surface and every ROI
  as a box;
* segment outlines with a light fill (the segments' own display nodes are set
  so only while drawing, then restored);
* a legend of segment and ROI names with their colours; patient-direction
  letters on every view; a scale bar; the window/level of the background;
* PET over CT as a fusion: PET in colour above a threshold (so the CT is not
  darkened where uptake is low), with a colour bar in SUVbw when the volume
  carries a scale from :mod:`..formats.suv`, else in its stored units, said so.

Text is drawn with Pillow (:mod:`.preview_layout`), which returns every
label's box so tests can check that none overlap or leave the image.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..formats.suv import PetScale, scale_from_attributes
from .builder import ATTRIBUTE_PREFIX
from .preview_layout import Box, LabelLayout, Montage, PlacedLabel, orientation_letter, read_montage
from .render import SliceImage, render_3d_image, render_slice_image, write_png

__all__ = ["Annotation", "LegendEntry", "Panel", "CasePreview", "annotations_of_interest", "render_case_preview",
           "write_case_preview", "preview_montage"]

RGB = Tuple[int, int, int]

#: Names that mark a segment as a finding rather than an organ or vessel.
LESION_NAME = re.compile(r"tumou?r|gtv|lesion|metasta|nodule|mass|ftv|stv|cancer|neoplasm", re.IGNORECASE)
#: Fusion display of PET over CT (SUVbw): the range coloured and the value below which PET is transparent.
SUV_WINDOW = (0.0, 8.0)
SUV_VISIBLE_FROM = 1.5
#: Percentiles of the grey values spanned by the window of an image without a window preset (MR).
PERCENTILE_WINDOW = (1.0, 99.5)
#: PET colour maps in order of preference (the first present in the scene is used).
PET_COLOR_NODE_IDS = ("vtkMRMLPETProceduralColorNodePET-Heat", "vtkMRMLColorTableNodeInferno")

VIEWS = ("Axial", "Coronal", "Sagittal")
#: A volume this few slices thick is shown in its own plane only (reformats of 1-4 slices mislead).
THIN_VOLUME_SLICES = 4
CAPTION_HEIGHT = 24
GAP = 6
HEADER_HEIGHT = 46
SEGMENT_FILL_OPACITY = 0.2
#: Opacity of the other ROIs in the row of one ROI.
OTHER_ROI_OPACITY = 0.3
#: 3D opacity of a segment that holds another one (a liver around its tumours), so the inner one shows.
ENCLOSING_OPACITY_3D = 0.3
OUTLINE_THICKNESS = 2


@dataclass
class Annotation:
    """A segment or ROI of the case: what it is called, its colour, where it is and how big."""

    name: str
    color: RGB
    center_ras: Tuple[float, float, float]
    extent_mm: float
    kind: str  # "segment" or "roi"
    node_id: str
    segment_id: str = ""


@dataclass
class LegendEntry:
    """One line of the legend as drawn."""

    name: str
    color: RGB
    swatch: Box
    text: Box


@dataclass
class Panel:
    """One view of the montage: which view, through which annotation, where on the image."""

    view: str  # "Axial", "Coronal", "Sagittal" or "3D"
    annotation: Optional[str]
    box: Box
    mm_per_pixel: float = 0.0


@dataclass
class CasePreview:
    """The montage of a case and what is on it (for tests, captions and the report)."""

    image: np.ndarray
    panels: List[Panel]
    legend: List[LegendEntry]
    labels: List[PlacedLabel]
    annotations: List[Annotation]
    shown: List[Annotation]
    caption: str
    window_text: str
    pet_text: str = ""
    notes: List[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        """What is shown and how: window/level, PET units, notes."""
        return " · ".join(part for part in [self.window_text, self.pet_text, *self.notes] if part)

    def text_chunks(self) -> Dict[str, str]:
        return {"Title": self.caption, "Description": self.description}

    def png_bytes(self) -> bytes:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in self.text_chunks().items():
            info.add_itxt(key, value)
        buffer = BytesIO()
        Image.fromarray(self.image).save(buffer, format="PNG", optimize=True, pnginfo=info)
        return buffer.getvalue()


# ------------------------------------------------------------------ annotations
def _rgb(color: Sequence[float]) -> RGB:
    return tuple(int(round(max(0.0, min(1.0, float(c))) * 255)) for c in color[:3])  # type: ignore[return-value]


def _segment_annotations(segmentation_node: Any) -> List[Annotation]:
    found: List[Annotation] = []
    segmentation = segmentation_node.GetSegmentation()
    display = segmentation_node.GetDisplayNode()
    if display is None or not display.GetVisibility():
        return found
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        if not display.GetSegmentVisibility(segment_id):
            continue
        center = segmentation_node.GetSegmentCenterRAS(segment_id)
        if center is None:
            continue  # an empty segment has no place to show
        bounds = [0.0] * 6
        segment.GetBounds(bounds)
        extent = max(bounds[1] - bounds[0], bounds[3] - bounds[2], bounds[5] - bounds[4], 1.0)
        found.append(Annotation(segment.GetName(), _rgb(segment.GetColor()), tuple(float(c) for c in center),
                                float(extent), "segment", segmentation_node.GetID(), segment_id))
    return found


def _roi_annotation(roi_node: Any) -> Annotation:
    center = [0.0, 0.0, 0.0]
    roi_node.GetCenterWorld(center)
    size = roi_node.GetSize()
    display = roi_node.GetDisplayNode()
    color = display.GetSelectedColor() if display is not None else (1.0, 1.0, 0.0)
    return Annotation(roi_node.GetName(), _rgb(color), tuple(float(c) for c in center),
                      float(max(max(size), 1.0)), "roi", roi_node.GetID())


def shown_segmentations(loaded_case: Any) -> List[Any]:
    """The case's segmentations drawn on its background (or foreground) volume.

    A segmentation made on another series (sarcoma RTSTRUCTs on CT, PET and MR
    of one patient) is in another frame of reference or on another grid: drawn
    over this volume it would mislead. When none refers to the shown volumes
    (older scenes without the reference), all are shown.
    """
    segmentations = list(getattr(loaded_case, "segmentations", []))
    shown_ids = {node.GetID() for node in (loaded_case.background_volume, loaded_case.foreground_volume)
                 if node is not None}
    matching = [node for node in segmentations
                if node.GetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole()) in shown_ids]
    return matching or segmentations


def _shown_rois(loaded_case: Any) -> List[Any]:
    """ROIs the collection left visible (Lung-PET-CT-Dx hides its per-slice boxes on purpose)."""
    return [roi for roi in getattr(loaded_case, "rois", [])
            if roi.GetDisplayNode() is not None and roi.GetDisplayNode().GetVisibility()]


def annotations_of_interest(loaded_case: Any) -> Tuple[List[Annotation], List[Annotation]]:
    """(every annotation shown, those worth a row of slices: ROIs and lesions first, one per name and colour).

    Organs and vessels (CRLM's liver, portal vein...) get a row only when the
    case has no ROI and no segment named like a lesion.
    """
    everything: List[Annotation] = [_roi_annotation(roi) for roi in _shown_rois(loaded_case)]
    segments = [a for node in shown_segmentations(loaded_case) for a in _segment_annotations(node)]
    everything.extend(segments)
    lesions = [a for a in segments if LESION_NAME.search(a.name)]
    rois = [a for a in everything if a.kind == "roi"]
    candidates = rois + lesions if rois or lesions else segments
    interesting: List[Annotation] = []
    for annotation in candidates:
        if not any(a.name == annotation.name and a.color == annotation.color for a in interesting):
            interesting.append(annotation)
    return everything, interesting


def _legend_entries(annotations: Sequence[Annotation]) -> List[Tuple[str, RGB]]:
    """One entry per distinct (name, colour): many per-slice boxes of one tumour make one line."""
    entries: List[Tuple[str, RGB]] = []
    for annotation in annotations:
        entry = (annotation.name, annotation.color)
        if entry not in entries:
            entries.append(entry)
    return entries


# ------------------------------------------------------------------ display
@contextmanager
def _temporary_display(loaded_case: Any, pet_node: Optional[Any], pet_scale: Optional[PetScale]) -> Iterator[str]:
    """Outlines with light fill, closed surfaces in 3D, ROIs without handles or names, PET fused; then restore.

    Yields the colour node ID used for PET ("" without PET) and whether the background's automatic
    window was replaced by a percentile window.
    """
    undo: List[Tuple[Any, str, Tuple[Any, ...]]] = []

    def set_(obj: Any, name: str, *value: Any, setter: str = "") -> None:
        previous = getattr(obj, "Get" + name)()
        setter = setter or "Set" + name
        undo.append((obj, setter, previous if isinstance(previous, tuple) else (previous,)))
        getattr(obj, setter)(*value)

    created_surfaces: List[Any] = []
    automatic_window: List[bool] = []
    pet_color = ""
    try:
        shown = shown_segmentations(loaded_case)
        for node in getattr(loaded_case, "segmentations", []):
            display = node.GetDisplayNode()
            if display is None:
                continue
            if node not in shown:
                set_(display, "Visibility", False)
                continue
            set_(display, "Opacity", 1.0)  # multiplies the 2D and 3D opacities below
            set_(display, "Opacity2DFill", SEGMENT_FILL_OPACITY)
            set_(display, "Opacity2DOutline", 1.0)
            set_(display, "SliceIntersectionThickness", OUTLINE_THICKNESS)
            set_(display, "Visibility3D", True)
            set_(display, "Opacity3D", 1.0)
            set_(display, "PreferredDisplayRepresentationName3D", "Closed surface")
            if not node.GetSegmentation().ContainsRepresentation("Closed surface"):
                node.CreateClosedSurfaceRepresentation()
                created_surfaces.append(node)
        for node, segment_id in _enclosing_segments(shown):
            display = node.GetDisplayNode()
            previous = display.GetSegmentOpacity3D(segment_id)
            display.SetSegmentOpacity3D(segment_id, ENCLOSING_OPACITY_3D)
            undo.append((display, "SetSegmentOpacity3D", (segment_id, previous)))
        for node in getattr(loaded_case, "rois", []):
            display = node.GetDisplayNode()
            if display is None:
                continue
            set_(display, "PropertiesLabelVisibility", False)
            set_(display, "PointLabelsVisibility", False)
            set_(display, "HandlesInteractive", False)
            set_(display, "GlyphScale", 0.0)
            set_(display, "UseGlyphScale", True)
            set_(display, "FillOpacity", 0.0)
            set_(display, "OutlineOpacity", 1.0)
            set_(display, "LineThickness", 0.3)
        background_display = loaded_case.background_volume.GetDisplayNode()
        if background_display is not None and background_display.GetAutoWindowLevel():
            low, high = _percentile_window(loaded_case.background_volume)
            set_(background_display, "AutoWindowLevel", False)
            set_(background_display, "Window", high - low)
            set_(background_display, "Level", (high + low) / 2)
            automatic_window.append(True)
        if pet_node is not None and pet_node.GetDisplayNode() is not None:
            display = pet_node.GetDisplayNode()
            scene = pet_node.GetScene()
            pet_color = next((i for i in PET_COLOR_NODE_IDS if scene.GetNodeByID(i)), display.GetColorNodeID())
            factor = pet_scale.factor if pet_scale is not None and pet_scale.factor > 0 else 1.0
            low, high, visible_from = pet_display_range(pet_node, pet_scale)
            set_(display, "AutoWindowLevel", False)
            set_(display, "Window", (high - low) / factor)
            set_(display, "Level", (high + low) / 2 / factor)
            set_(display, "ColorNodeID", pet_color, setter="SetAndObserveColorNodeID")
            set_(display, "AutoThreshold", False)
            set_(display, "ApplyThreshold", True)
            set_(display, "LowerThreshold", visible_from / factor)
            set_(display, "UpperThreshold", 1e30)
        yield pet_color, bool(automatic_window)
    finally:
        for obj, setter, previous in reversed(undo):
            getattr(obj, setter)(*previous)
        for node in created_surfaces:
            node.RemoveClosedSurfaceRepresentation()


def _percentile_window(volume_node: Any) -> Tuple[float, float]:
    """(low, high) grey values between which most of the volume lies (MR has no fixed window like CT's)."""
    voxels = _voxels(volume_node)
    sample = voxels[:: max(1, voxels.size // 2_000_000)]
    low, high = (float(v) for v in np.percentile(sample, PERCENTILE_WINDOW))
    return (low, high) if high > low else (low, low + 1.0)


def _enclosing_segments(segmentations: Sequence[Any]) -> List[Tuple[Any, str]]:
    """(node, segment ID) of each segment whose bounding box holds another segment's centre."""
    segments = []
    for node in segmentations:
        segmentation = node.GetSegmentation()
        for index in range(segmentation.GetNumberOfSegments()):
            segment_id = segmentation.GetNthSegmentID(index)
            bounds = [0.0] * 6
            segmentation.GetSegment(segment_id).GetBounds(bounds)
            center = node.GetSegmentCenterRAS(segment_id)
            if center is not None:
                segments.append((node, segment_id, bounds, center))
    enclosing = []
    for node, segment_id, bounds, _ in segments:
        for other_node, other_id, _, center in segments:
            if (other_node, other_id) == (node, segment_id):
                continue
            if all(bounds[2 * a] <= center[a] <= bounds[2 * a + 1] for a in range(3)):
                enclosing.append((node, segment_id))
                break
    return enclosing


def pet_display_range(pet_node: Any, scale: Optional[PetScale]) -> Tuple[float, float, float]:
    """(low, high, visible-from) in shown units: fixed SUVbw values, else from the stored values' spread."""
    if scale is not None and scale.is_suv:
        return SUV_WINDOW[0], SUV_WINDOW[1], SUV_VISIBLE_FROM
    voxels = _voxels(pet_node)
    positive = voxels[voxels > 0]
    high = float(np.percentile(positive, 99.5)) if positive.size else 1.0
    high = float(f"{high:.2g}") or 1.0
    return 0.0, high, round(high * SUV_VISIBLE_FROM / SUV_WINDOW[1], 3)


def _voxels(volume_node: Any) -> np.ndarray:
    from vtk.util import numpy_support

    scalars = volume_node.GetImageData().GetPointData().GetScalars()
    return numpy_support.vtk_to_numpy(scalars)


# ------------------------------------------------------------------ text
def _window_text(volume_node: Any) -> str:
    """How the background is shown, e.g. ``CT W/L 400/40 (Abdomen)``."""
    display = volume_node.GetDisplayNode()
    modality = _modality(volume_node)
    if display is None:
        return f"{modality} window not set".strip()
    window, level = display.GetWindow(), display.GetLevel()
    preset = ""
    for index in range(display.GetNumberOfWindowLevelPresets()):
        if abs(display.GetWindowPreset(index) - window) < 1e-3 and abs(display.GetLevelPreset(index) - level) < 1e-3:
            preset = display.GetWindowLevelPresetName(index) if hasattr(display, "GetWindowLevelPresetName") else ""
            break
    text = f"{modality + ' ' if modality else ''}W/L {window:.4g}/{level:.4g}"
    if preset:
        text += f" ({preset})"
    return text


def pet_scale_of(pet_node: Any, pet_scales: Optional[Dict[str, PetScale]]) -> Optional[PetScale]:
    if pet_scales and pet_node.GetID() in pet_scales:
        return pet_scales[pet_node.GetID()]
    keys = ("pet.scale_factor", "pet.units", "pet.is_suv", "pet.scale_explanation")
    return scale_from_attributes({key: node_attribute(pet_node, key) for key in keys})


def _color_ramp(scene: Any, color_node_id: str, count: int = 256) -> np.ndarray:
    """(count, 3) uint8 colours of a colour node from its first to its last value."""
    color_node = scene.GetNodeByID(color_node_id)
    lookup = color_node.GetScalarsToColors() if color_node is not None else None
    if lookup is None:
        return np.repeat(np.linspace(0, 255, count).astype(np.uint8)[:, None], 3, axis=1)
    low, high = lookup.GetRange()
    ramp = np.zeros((count, 3))
    for index, value in enumerate(np.linspace(low, high, count)):
        color = [0.0, 0.0, 0.0]
        lookup.GetColor(float(value), color)
        ramp[index] = color
    return (ramp * 255).round().astype(np.uint8)


# ------------------------------------------------------------------ geometry
def _single_slice_view(volume_node: Any) -> Optional[str]:
    """For a volume only one voxel thick, the one view that shows it; None for a real 3D volume."""
    dimensions = volume_node.GetImageData().GetDimensions()
    thin = [axis for axis in range(3) if dimensions[axis] <= THIN_VOLUME_SLICES]
    if not thin:
        return None
    matrix = _ijk_to_ras_matrix(volume_node)
    normal = matrix[:3, thin[0]]
    axis = int(np.argmax(np.abs(normal)))
    return ("Sagittal", "Coronal", "Axial")[axis]


def _slice_count(volume_node: Any) -> int:
    return int(min(volume_node.GetImageData().GetDimensions()))


def _ijk_to_ras_matrix(volume_node: Any) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _volume_extent_mm(volume_node: Any) -> float:
    bounds = [0.0] * 6
    volume_node.GetRASBounds(bounds)
    return float(max(bounds[1] - bounds[0], bounds[3] - bounds[2], bounds[5] - bounds[4], 1.0))


def _field_of_view(annotation: Annotation, volume_extent: float) -> float:
    """Wide enough for the finding and its neighbourhood, never wider than the volume."""
    return float(min(volume_extent, max(annotation.extent_mm * 3.0, 120.0)))


def _bounds_3d(annotations: Sequence[Annotation], volume_node: Any) -> List[float]:
    if not annotations:
        bounds = [0.0] * 6
        volume_node.GetRASBounds(bounds)
        return bounds
    centers = np.array([a.center_ras for a in annotations])
    half = np.array([a.extent_mm / 2 for a in annotations])[:, None]
    low, high = (centers - half).min(axis=0), (centers + half).max(axis=0)
    return [float(low[0]), float(high[0]), float(low[1]), float(high[1]), float(low[2]), float(high[2])]


# ------------------------------------------------------------------ montage
def render_case_preview(scene: Any, loaded_case: Any, panel_size: int = 320, max_findings: int = 3,
                        pet_scales: Optional[Dict[str, PetScale]] = None,
                        application_logic: Optional[Any] = None, title: Optional[str] = None) -> CasePreview:
    """The montage of a loaded case (see the module docstring).

    :param panel_size: pixels per side of each view.
    :param max_findings: rows of slices at most; the caption says how many were left out.
    :param pet_scales: SUV scale per PET volume node ID, overriding the scale
        the node carries in its attributes.
    :raises ValueError: if the case has no volume to show.
    """
    background = loaded_case.background_volume
    if background is None:
        raise ValueError(f"case {loaded_case.case.case_id} has no volume to show")
    foreground = loaded_case.foreground_volume
    pet_node = foreground if foreground is not None and is_pet_volume(foreground) else None
    pet_scale = pet_scale_of(pet_node, pet_scales) if pet_node is not None else None
    everything, interesting = annotations_of_interest(loaded_case)
    shown = interesting[:max_findings]
    single_view = _single_slice_view(background)
    views = (single_view,) if single_view else VIEWS
    rows: List[Optional[Annotation]] = list(shown) or [None]
    entries = _legend_entries(everything)

    column = panel_size + GAP
    row_height = CAPTION_HEIGHT + panel_size + GAP
    side_width = panel_size
    width = GAP + len(views) * column + side_width + GAP
    measure = LabelLayout(Image.new("RGB", (10, 10)))
    side_needed = CAPTION_HEIGHT + panel_size + GAP + measure.legend_height(len(entries)) + (70 if pet_node else 0)
    height = HEADER_HEIGHT + max(len(rows) * row_height, side_needed) + GAP
    canvas = Image.new("RGB", (width, height), (24, 24, 28))
    layout = LabelLayout(canvas)
    panels: List[Panel] = []
    notes: List[str] = []
    volume_extent = _volume_extent_mm(background)
    case_id = str(getattr(loaded_case.case, "case_id", "case"))
    opacity = loaded_case.foreground_opacity

    with _temporary_display(loaded_case, pet_node, pet_scale) as (pet_color, percentile_window):
        window_text = _window_text(background)
        if percentile_window:
            window_text += f" (from the {PERCENTILE_WINDOW[0]:g}–{PERCENTILE_WINDOW[1]:g}th percentiles)"
        pet_text = ""
        if pet_node is not None:
            low, high, visible_from = pet_display_range(pet_node, pet_scale)
            units = pet_scale.units if pet_scale is not None else "stored units"
            pet_text = f"PET {units} {low:g}–{high:g}, shown from {visible_from:g}, {int(opacity * 100)}% over CT"
            if pet_scale is None or not pet_scale.is_suv:
                reason = pet_scale.explanation if pet_scale is not None else "no SUV information with this volume"
                notes.append(f"PET not in SUV: {reason}")
        elif foreground is not None:
            notes.append(f"{foreground.GetName()} blended at {int(opacity * 100)}%")
        for row_index, annotation in enumerate(rows):
            top = HEADER_HEIGHT + row_index * row_height
            with _focused_outline(loaded_case, annotation):
                _render_row(scene, canvas, layout, panels, background, foreground, opacity, views, annotation, top,
                            panel_size, column, volume_extent, case_id, application_logic)
        side_left = GAP + len(views) * column
        three_d_box = Box(side_left, HEADER_HEIGHT + CAPTION_HEIGHT, side_left + panel_size,
                          HEADER_HEIGHT + CAPTION_HEIGHT + panel_size)
        if single_view:
            # Surfaces of a slab a few voxels thick show nothing a reader can use.
            layout.place(f"No 3D view: the volume is {_slice_count(background)} slice(s) thick",
                         [(side_left + 2, three_d_box.top + 4, "tl")], three_d_box, "caption", backing=None,
                         size=13, color=(200, 200, 200))
        else:
            pixels = render_3d_image(scene, _bounds_3d(everything, background), (panel_size, panel_size))
            canvas.paste(Image.fromarray(pixels), (three_d_box.left, three_d_box.top))
            layout.place("3D · seen from the front", [(side_left + 2, HEADER_HEIGHT + CAPTION_HEIGHT - 3, "bl")],
                         Box(side_left, HEADER_HEIGHT, side_left + panel_size, HEADER_HEIGHT + CAPTION_HEIGHT),
                         "caption", backing=None, size=14)
            layout.orientation_labels(three_d_box, right="L", left="R", up="S", down="I")
            panels.append(Panel("3D", None, three_d_box))
        legend_region = Box(side_left, three_d_box.bottom + GAP, side_left + panel_size,
                            height - GAP - (70 if pet_node else 0))
        short = [(_without_case_id(name, case_id), color) for name, color in entries]
        drawn = layout.legend(short, legend_region, "Segments and ROIs" if entries else "No segments or ROIs")
        legend = [LegendEntry(name, color, swatch, text)
                  for (name, color), (_, _, swatch, text) in zip(entries, drawn)]
        if pet_node is not None:
            low, high, _ = pet_display_range(pet_node, pet_scale)
            units = pet_scale.units if pet_scale is not None else "stored units"
            layout.color_bar(Box(side_left, height - GAP - 64, side_left + panel_size, height - GAP),
                             _color_ramp(scene, pet_color), low, high, f"PET, {units}")

    caption = title or f"{case_id} — {_without_case_id(background.GetName(), case_id)}"
    left_out = len(interesting) - len(shown)
    if left_out > 0:
        notes.append(f"{left_out} more finding(s) not shown")
    if single_view:
        notes.append(f"{_slice_count(background)}-slice volume: {single_view.lower()} view only")
    header = Box(0, 0, width, HEADER_HEIGHT)
    layout.place(caption, [(GAP, 4, "tl")], header, "title", size=16, backing=None)
    detail = " · ".join(part for part in [window_text, pet_text, *notes] if part)  # = CasePreview.description
    layout.place(detail, [(GAP, HEADER_HEIGHT - 3, "bl")], header, "window", size=13, backing=None,
                 color=(210, 210, 210))
    return CasePreview(np.asarray(canvas), panels, legend, layout.labels, everything, shown, caption, window_text,
                       pet_text, notes)


def node_attribute(node: Any, key: str) -> Optional[str]:
    """A node attribute as this extension's builder stores it (prefixed) or as set directly."""
    return node.GetAttribute(ATTRIBUTE_PREFIX + key) or node.GetAttribute(key)


def _modality(volume_node: Any) -> str:
    return (node_attribute(volume_node, "modality") or volume_node.GetAttribute("DICOM.Modality") or "").upper()


def is_pet_volume(volume_node: Any) -> bool:
    return _modality(volume_node) in ("PT", "PET") or node_attribute(volume_node, "pet.scale_factor") is not None


def _render_row(scene: Any, canvas: Image.Image, layout: LabelLayout, panels: List[Panel], background: Any,
                foreground: Optional[Any], opacity: float, views: Sequence[str], annotation: Optional[Annotation],
                top: int, panel_size: int, column: int, volume_extent: float, case_id: str,
                application_logic: Optional[Any]) -> None:
    """One row of the montage: each view through ``annotation`` (the volume centre if None), with its labels."""
    for view_index, view in enumerate(views):
        left = GAP + view_index * column
        image_box = Box(left, top + CAPTION_HEIGHT, left + panel_size, top + CAPTION_HEIGHT + panel_size)
        center = annotation.center_ras if annotation is not None else None
        fov = _field_of_view(annotation, volume_extent) if annotation is not None else None
        slice_image = render_slice_image(scene, background, foreground, opacity, view, center,
                                         (panel_size, panel_size), fov, application_logic)
        canvas.paste(Image.fromarray(slice_image.pixels), (image_box.left, image_box.top))
        _annotate_slice(layout, slice_image, image_box, view, annotation,
                        Box(left, top, left + panel_size, top + CAPTION_HEIGHT), case_id)
        panels.append(Panel(view, annotation.name if annotation else None, image_box, slice_image.mm_per_pixel))


@contextmanager
def _focused_outline(loaded_case: Any, annotation: Optional[Annotation]) -> Iterator[None]:
    """While drawing a finding's row, only its outline is drawn; other segments keep their light fill, other ROIs dim.

    Outlines of overlapping segments (ISPY1's FTV and STV masks) coincide and
    hide one another; the row of a finding must show that finding's outline.
    """
    changed: List[Tuple[Any, str, float]] = []
    dimmed: List[Tuple[Any, float]] = []
    try:
        if annotation is not None and annotation.kind == "roi":
            # Boxes of one colour (a tumour boxed on two reconstructions) are told apart by dimming the others.
            for roi in _shown_rois(loaded_case):
                if roi.GetID() != annotation.node_id:
                    dimmed.append((roi.GetDisplayNode(), roi.GetDisplayNode().GetOpacity()))
                    roi.GetDisplayNode().SetOpacity(OTHER_ROI_OPACITY)
        if annotation is not None and annotation.kind == "segment":
            for node in shown_segmentations(loaded_case):
                display = node.GetDisplayNode()
                segmentation = node.GetSegmentation()
                for index in range(segmentation.GetNumberOfSegments()):
                    segment_id = segmentation.GetNthSegmentID(index)
                    if (node.GetID(), segment_id) == (annotation.node_id, annotation.segment_id):
                        continue
                    changed.append((display, segment_id, display.GetSegmentOpacity2DOutline(segment_id)))
                    display.SetSegmentOpacity2DOutline(segment_id, 0.0)
        yield
    finally:
        for display, segment_id, previous in reversed(changed):
            display.SetSegmentOpacity2DOutline(segment_id, previous)
        for display, opacity in reversed(dimmed):
            display.SetOpacity(opacity)


def _without_case_id(name: str, case_id: str) -> str:
    """A node name without the case ID it starts with (the title already says it)."""
    stripped = name[len(case_id):].lstrip(" _-:") if case_id and name.startswith(case_id) else name
    return stripped or name


def _annotate_slice(layout: LabelLayout, image: SliceImage, image_box: Box, view: str,
                    annotation: Optional[Annotation], caption_box: Box, case_id: str) -> None:
    """Caption above the view; direction letters and scale bar on it."""
    right = orientation_letter(image.screen_direction_ras(0))
    up = orientation_letter(image.screen_direction_ras(1))
    left = orientation_letter(-image.screen_direction_ras(0))
    down = orientation_letter(-image.screen_direction_ras(1))
    where = ""
    if annotation is not None:
        axis = {"Axial": 2, "Coronal": 1, "Sagittal": 0}[view]
        value = annotation.center_ras[axis]
        letter = ("RL", "AP", "SI")[axis][0 if value >= 0 else 1]
        where = f" · {_without_case_id(annotation.name, case_id)} · {letter} {abs(value):.1f} mm"
    layout.place(f"{view}{where}", [(caption_box.left + 2, caption_box.bottom - 3, "bl")], caption_box, "caption",
                 backing=None, size=14)
    layout.orientation_labels(image_box, right=right, left=left, up=up, down=down)
    layout.scale_bar(image_box, image.mm_per_pixel)


def write_case_preview(scene: Any, loaded_case: Any, png_path: Path, **options: Any) -> Path:
    """Render :func:`render_case_preview` to a PNG file that carries its caption (PNG text ``Title``/``Description``).

    :func:`.preview_layout.read_montage` reads the image and caption back (the report does).
    """
    preview = render_case_preview(scene, loaded_case, **options)
    return write_png(preview.image, png_path, preview.text_chunks())


def preview_montage(scene: Any, loaded_case: Any, **options: Any) -> Montage:
    """The case's montage as a data URI with its caption and size, for reports."""
    return read_montage(render_case_preview(scene, loaded_case, **options).png_bytes())
