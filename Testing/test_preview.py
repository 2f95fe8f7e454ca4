"""Case previews checked from the image itself: colours in the views, the legend, labels that never collide."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pytest
from PIL import Image

from SarcomaLungLiverBrowserLib.browser import CollectionBrowser
from SarcomaLungLiverBrowserLib.scene.builder import SegmentSpec, WindowPreset
from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer
from SarcomaLungLiverBrowserLib.scene.preview import render_case_preview, shown_segmentations
from SarcomaLungLiverBrowserLib.scene.preview_layout import (Box, LabelLayout, LayoutError, boxes_overlap,
                                                             orientation_letter)
from SarcomaLungLiverBrowserLib.case_data import LoadedCase

SAMPLE_FOLDERS = ("Lung-PET-CT-Dx", "hermessi", "Colorectal-Liver-Metastases", "ISPY1-Tumor-SEG-Radiomics",
                  "soft_tissue_sarcoma")


def color_pixels(pixels: np.ndarray, color, tolerance: int = 40) -> np.ndarray:
    return np.all(np.abs(pixels.astype(int) - np.array(color, dtype=int)) <= tolerance, axis=-1)


def nearest_color_pixels(pixels: np.ndarray, color, palette, tolerance: int = 70) -> np.ndarray:
    """Pixels within ``tolerance`` of ``color`` and nearer to it than to any other annotation colour.

    Another segmentation's light fill may lie over an outline and shift its colour a little;
    the outline must still be recognisably its own colour, not a neighbour's.
    """
    values = pixels.astype(int)[..., None, :]
    others = np.array([c for c in palette if tuple(c) != tuple(color)] or [(-999, -999, -999)], dtype=int)
    own = np.abs(values[..., 0, :] - np.array(color, dtype=int)).max(axis=-1)
    nearest_other = np.abs(values - others[None, None]).max(axis=-1).min(axis=-1)
    return (own <= tolerance) & (own < nearest_other)


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    return image[box.top:box.bottom, box.left:box.right]


@pytest.fixture(scope="module")
def sample_previews(sample_collections: Path) -> Dict[str, dict]:
    """The first case of each sample collection, loaded and previewed once (with its segment names)."""
    previews = {}
    for folder in SAMPLE_FOLDERS:
        with HeadlessSlicer() as environment:
            browser = CollectionBrowser(environment.scene)
            browser.open(sample_collections / folder)
            loaded = browser.load_case(browser.cases()[0].case_id)
            segment_names = set()
            for node in shown_segmentations(loaded):
                segmentation = node.GetSegmentation()
                for index in range(segmentation.GetNumberOfSegments()):
                    segment_names.add(segmentation.GetNthSegment(index).GetName())
            before = _display_state(loaded)
            preview = render_case_preview(environment.scene, loaded, panel_size=256)
            previews[folder] = {"preview": preview, "segments": segment_names, "rois": len(loaded.rois),
                                "display_before": before, "display_after": _display_state(loaded)}
    return previews


def _display_state(loaded):
    state = []
    for node in loaded.segmentations:
        display = node.GetDisplayNode()
        state.append((display.GetVisibility(), display.GetOpacity2DFill(), display.GetOpacity2DOutline(),
                      display.GetVisibility3D()))
    for node in loaded.volumes:
        display = node.GetDisplayNode()
        state.append((display.GetWindow(), display.GetLevel(), display.GetColorNodeID(), display.GetApplyThreshold()))
    for node in loaded.rois:
        display = node.GetDisplayNode()
        state.append((display.GetPropertiesLabelVisibility(), display.GetFillOpacity()))
    return state


@pytest.mark.parametrize("folder", SAMPLE_FOLDERS)
def test_every_finding_shows_in_each_of_its_views(sample_previews, folder):
    preview = sample_previews[folder]["preview"]
    views = {panel.view for panel in preview.panels}
    thin = any("view only" in note for note in preview.notes)
    assert ("3D" in views) != thin, "a 3D view for every volume, except one a few slices thick"
    for annotation in preview.shown:
        panels = [p for p in preview.panels if p.annotation == annotation.name and p.view != "3D"]
        assert {p.view for p in panels} == views - {"3D"}, f"{annotation.name} lacks a view"
        for panel in panels:
            # The view is centred on the finding: its colour must be drawn around the centre.
            half = int(annotation.extent_mm / panel.mm_per_pixel / 2) + 6
            cx, cy = (panel.box.left + panel.box.right) // 2, (panel.box.top + panel.box.bottom) // 2
            around = Box(max(panel.box.left, cx - half), max(panel.box.top, cy - half),
                         min(panel.box.right, cx + half), min(panel.box.bottom, cy + half))
            found = nearest_color_pixels(crop(preview.image, around), annotation.color,
                                         [a.color for a in preview.annotations]).sum()
            assert found >= 10, f"{folder}: {annotation.name} {annotation.color} not drawn in the {panel.view} view"


@pytest.mark.parametrize("folder", SAMPLE_FOLDERS)
def test_legend_lists_every_segment_with_its_colour(sample_previews, folder):
    entry = sample_previews[folder]
    preview = entry["preview"]
    names = {legend.name for legend in preview.legend}
    assert entry["segments"] <= names, f"legend misses {entry['segments'] - names}"
    if entry["segments"] or entry["rois"]:
        assert preview.legend, "a case with annotations needs a legend"
    for legend in preview.legend:
        swatch = crop(preview.image, Box(legend.swatch.left + 2, legend.swatch.top + 2,
                                         legend.swatch.right - 2, legend.swatch.bottom - 2))
        assert color_pixels(swatch, legend.color, tolerance=1).all(), f"swatch of {legend.name} has another colour"
        text = crop(preview.image, legend.text)
        assert (text.max(axis=-1) > 150).sum() > 5, f"legend text of {legend.name} is not drawn"


@pytest.mark.parametrize("folder", SAMPLE_FOLDERS)
def test_labels_never_overlap_or_leave_the_image(sample_previews, folder):
    preview = sample_previews[folder]["preview"]
    height, width = preview.image.shape[:2]
    image_box = Box(0, 0, width, height)
    assert preview.labels
    assert boxes_overlap(preview.labels) == []
    for label in preview.labels:
        assert image_box.contains(label.box), f"{label.kind} {label.text!r} leaves the image"
    letters = [label for label in preview.labels if label.kind == "orientation"]
    assert len(letters) == 4 * len(preview.panels)
    scale_bars = [label for label in preview.labels if label.kind == "scale bar"]
    slice_views = [panel for panel in preview.panels if panel.view != "3D"]
    assert slice_views and len(scale_bars) == len(slice_views), "every slice view has a scale bar"
    assert all(label.text.endswith("mm") or label.text.endswith("cm") for label in scale_bars), scale_bars
    for label in letters:
        assert color_pixels(crop(preview.image, label.box), (255, 230, 120), tolerance=30).sum() > 3, \
            f"orientation letter {label.text} is not drawn in its box"


@pytest.mark.parametrize("folder", SAMPLE_FOLDERS)
def test_preview_leaves_display_settings_as_they_were(sample_previews, folder):
    entry = sample_previews[folder]
    assert entry["display_before"] == entry["display_after"]


def test_window_and_pet_units_are_stated(sample_previews):
    crlm = sample_previews["Colorectal-Liver-Metastases"]["preview"]
    assert "W/L 400/40" in crlm.window_text
    lung = sample_previews["Lung-PET-CT-Dx"]["preview"]
    assert lung.pet_text.startswith("PET ")
    assert any("not in SUV" in note or "SUVbw" in lung.pet_text for note in lung.notes + [lung.pet_text])
    assert any(label.kind == "colour bar" for label in lung.labels)
    # An MR has no fixed window: the percentile window is used and named.
    ispy1 = sample_previews["ISPY1-Tumor-SEG-Radiomics"]["preview"]
    assert "(from the 1–99.5th percentiles)" in ispy1.window_text, ispy1.window_text


def test_orientation_letters_follow_the_slice_axes():
    assert orientation_letter([-1.0, 0.0, 0.0]) == "L"  # axial, screen right (radiological convention)
    assert orientation_letter([0.0, -1.0, 0.0]) == "P"  # sagittal, screen right
    assert orientation_letter([0.0, 0.2, 0.98]) == "S"
    assert orientation_letter([0.9, 0.1, 0.0]) == "R"


def test_layout_shrinks_shortens_or_refuses_but_never_overlaps():
    layout = LabelLayout(Image.new("RGB", (120, 60)))
    region = Box(0, 0, 120, 60)
    first = layout.place("A rather long label that cannot fit", [(0, 0, "tl")], region, "a")
    assert first.text.endswith("…") and region.contains(first.box)
    second = layout.place("Second", [(0, 0, "tl"), (0, 30, "tl")], region, "b")
    assert not second.box.intersects(first.box)
    with pytest.raises(LayoutError):
        layout.place("X", [(0, 0, "tl")], Box(0, 0, 20, 10), "c")
    assert boxes_overlap(layout.labels) == []


def test_preview_of_a_built_scene_shows_segment_and_roi(builder, tmp_path):
    shape = (40, 100, 100)
    k, j, i = np.indices(shape)
    voxels = np.where(((i - 50) ** 2 / 45 ** 2 + (j - 50) ** 2 / 35 ** 2) < 1, 40, -1000).astype(np.int16)
    matrix = np.diag([-1.0, -1.0, 3.0, 1.0])
    matrix[:3, 3] = [50, 50, 0]
    volume = builder.add_volume("CT", voxels, matrix, [WindowPreset("Abdomen", 400, 40)])
    tumor = (i - 60) ** 2 + (j - 55) ** 2 + ((k - 20) * 3) ** 2 < 8 ** 2
    segmentation = builder.add_segmentation("Seg", volume, [SegmentSpec("Tumor", (0.1, 0.9, 0.1), tumor)])
    roi = builder.add_roi("Box", [-20.0, -5.0, 60.0], [20.0, 20.0, 9.0], color=(1.0, 1.0, 0.0))
    loaded = LoadedCase(case=type("Case", (), {"case_id": "T1"})(), volumes=[volume],
                        segmentations=[segmentation], rois=[roi])
    preview = render_case_preview(builder.scene, loaded, panel_size=200)
    assert [a.name for a in preview.shown] == ["Box", "Tumor"]
    assert {e.name for e in preview.legend} == {"Box", "Tumor"}
    three_d = next(p for p in preview.panels if p.view == "3D")
    assert color_pixels(crop(preview.image, three_d.box), (0, 0, 0), tolerance=0).sum() == 0
    assert (crop(preview.image, three_d.box).max(axis=-1) > 100).sum() > 200, "3D view shows the surfaces"
    assert not segmentation.GetSegmentation().ContainsRepresentation("Closed surface"), "surface kept after preview"


def test_report_shows_the_montage_with_its_caption_click_to_enlarge(builder, tmp_path):
    from SarcomaLungLiverBrowserLib.review.report import write_html_report
    from SarcomaLungLiverBrowserLib.scene.preview import write_case_preview
    from SarcomaLungLiverBrowserLib.scene.preview_layout import read_montage

    shape = (30, 80, 80)
    k, j, i = np.indices(shape)
    volume = builder.add_volume("CT", np.where((i - 40) ** 2 + (j - 40) ** 2 < 30 ** 2, 40, -1000).astype(np.int16),
                                np.diag([-1.0, -1.0, 2.0, 1.0]), [WindowPreset("Abdomen", 400, 40)])
    tumor = (i - 45) ** 2 + (j - 40) ** 2 + ((k - 15) * 2) ** 2 < 8 ** 2
    segmentation = builder.add_segmentation("Seg", volume, [SegmentSpec("Tumor", (0.1, 0.9, 0.1), tumor)])
    case = type("Case", (), {"case_id": "CASE-1", "collection": "test", "diagnosis": ""})()
    loaded = LoadedCase(case=case, volumes=[volume], segmentations=[segmentation])
    png = write_case_preview(builder.scene, loaded, tmp_path / "CASE-1.png", panel_size=200)
    montage = read_montage(png)
    assert montage.title.startswith("CASE-1") and "W/L 400/40" in montage.description
    assert montage.width > 3 * 200
    html_path = write_html_report(tmp_path / "report.html", "Report", [case], snapshots={"CASE-1": png})
    text = Path(html_path).read_text(encoding="utf-8")
    assert montage.data_uri in text, "the montage is embedded whole (one self-contained file)"
    assert "<figcaption>" in text and "W/L 400/40" in text
    assert "classList.toggle('zoomed')" in text and "img.zoomed" in text
    (tmp_path / "not.png").write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not.png is not a PNG"):
        read_montage(tmp_path / "not.png")


def test_a_dejavu_font_is_installed_with_the_project():
    from SarcomaLungLiverBrowserLib.scene.preview_layout import find_font_path

    # matplotlib (requirements-lock.txt) ships DejaVu Sans; Debian's fonts-dejavu-core is the other source.
    assert find_font_path(), "no DejaVu Sans: install the locked requirements or fonts-dejavu-core"


def test_real_sarcoma_pet_is_fused_in_suvbw(external_data):
    root = external_data / "oncoray__mirp" / "test" / "data" / "sts_images"
    with HeadlessSlicer() as environment:
        browser = CollectionBrowser(environment.scene)
        browser.open(root)
        loaded = browser.load_case("STS_002")
        by_modality = {node.GetAttribute("SarcomaLungLiverBrowser.modality"): node for node in loaded.volumes}
        pet = by_modality["PT"]
        assert pet.GetAttribute("SarcomaLungLiverBrowser.pet.is_suv") == "1"  # Units GML in the real header
        loaded.metrics.update(background_volume_id=by_modality["CT"].GetID(), foreground_volume_id=pet.GetID())
        shown = []  # (window, lower threshold, threshold applied) as the PET display changes while rendering
        display = pet.GetDisplayNode()
        observer = display.AddObserver("ModifiedEvent", lambda node, event: shown.append(
            (node.GetWindow(), node.GetLowerThreshold(), node.GetApplyThreshold())))
        preview = render_case_preview(environment.scene, loaded, panel_size=192, max_findings=1)
        display.RemoveObserver(observer)
    # Rendered 0–8 g/ml and transparent below 1.5 g/ml: in stored values, window 8/f and threshold 1.5/f.
    fused = [(window, lower) for window, lower, applied in shown if applied]
    assert fused and any(lower * 8.0 / window == pytest.approx(1.5, rel=1e-6) for window, lower in fused), shown
    assert preview.pet_text.startswith("PET SUVbw (g/ml) 0–8")
    assert not any("not in SUV" in note for note in preview.notes)
    bar = next(label for label in preview.labels if label.kind == "colour bar")
    strip = crop(preview.image, bar.box)
    assert strip[:, 0].max() < 40 and strip[:, -1].min() > 200, "the PET colour bar runs from dark to bright"
    assert [a.name for a in preview.shown] == ["GTV_Mass"]
