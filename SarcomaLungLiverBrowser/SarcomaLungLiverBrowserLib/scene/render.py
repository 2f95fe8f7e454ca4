"""Offscreen PNG snapshots of a slice view with its overlays, without the Slicer application.

Inside Slicer the layout's slice widgets draw the views. Here the same MRML
displayable managers (segmentation outlines and fills, ROI markups) are
attached to an offscreen VTK render window, and the slice logic's blended
background/foreground image is drawn underneath, as ``qMRMLSliceWidget``
does (``shared/notes/slicer_core_probe.md`` §3.2).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

__all__ = ["SliceImage", "render_slice_image", "render_3d_image", "render_slice_png", "write_png", "render_case_snapshot",
           "SLICE_DISPLAYABLE_MANAGERS"]

#: Displayable managers a slice view needs for volumes, segments and markups.
SLICE_DISPLAYABLE_MANAGERS = (
    "vtkMRMLVolumeGlyphSliceDisplayableManager",
    "vtkMRMLModelSliceDisplayableManager",
    "vtkMRMLCrosshairDisplayableManager",
    "vtkMRMLSegmentationsDisplayableManager2D",
    "vtkMRMLMarkupsDisplayableManager",
    "vtkMRMLOrientationMarkerDisplayableManager",
    "vtkMRMLRulerDisplayableManager",
)

_ORIENTATION_VIEW = {"Axial": ("Red", "Axial"), "Sagittal": ("Yellow", "Sagittal"), "Coronal": ("Green", "Coronal")}


def _application_logic(scene: Any) -> Any:
    """The application logic the scene was set up with (Slicer's or the headless one)."""
    application = getattr(slicer, "app", None)
    if application is not None and hasattr(application, "applicationLogic"):
        return application.applicationLogic()
    raise RuntimeError("no application logic: create the scene with HeadlessSlicer or run inside Slicer")


@dataclass
class SliceImage:
    """One rendered slice view: its pixels and where they are in the patient.

    :param pixels: RGB, uint8, shape (height, width, 3), row 0 at the top.
    :param xy_to_ras: 4x4 matrix from view pixel (x right, y up from the
        bottom row) to RAS, as the slice node defines it.
    :param mm_per_pixel: in-plane size of one pixel.
    """

    pixels: np.ndarray
    xy_to_ras: np.ndarray
    mm_per_pixel: float
    orientation: str

    def screen_direction_ras(self, axis: int) -> np.ndarray:
        """Unit RAS direction of the screen's +x (``axis`` 0, rightwards) or +y (``axis`` 1, upwards)."""
        direction = self.xy_to_ras[:3, axis]
        return direction / np.linalg.norm(direction)


def _capture(render_window: Any) -> np.ndarray:
    """The window's RGB pixels, row 0 at the top."""
    capture = vtk.vtkWindowToImageFilter()
    capture.SetInput(render_window)
    capture.SetInputBufferTypeToRGB()
    capture.ReadFrontBufferOff()
    capture.Update()
    image = capture.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)
    return np.ascontiguousarray(pixels[::-1, :, :3])


def render_slice_image(
    scene: Any,
    background_volume: Any,
    foreground_volume: Optional[Any] = None,
    foreground_opacity: float = 0.5,
    orientation: str = "Axial",
    center_ras: Optional[Sequence[float]] = None,
    size: Tuple[int, int] = (512, 512),
    field_of_view_mm: Optional[float] = None,
    application_logic: Optional[Any] = None,
) -> SliceImage:
    """Render one slice view (volume, overlays, ROIs) into memory.

    :param orientation: ``"Axial"``, ``"Sagittal"`` or ``"Coronal"``.
    :param center_ras: a point the slice passes through; the volume centre if None.
    :param field_of_view_mm: width of the view in mm, centred on ``center_ras``;
        None fits the whole background volume and only moves the slice plane.
    """
    if orientation not in _ORIENTATION_VIEW:
        raise ValueError(f"orientation must be one of {sorted(_ORIENTATION_VIEW)}, got {orientation!r}")
    application_logic = application_logic or _application_logic(scene)
    width, height = size
    view_name, preset = _ORIENTATION_VIEW[orientation]

    render_window = vtk.vtkRenderWindow()
    render_window.SetOffScreenRendering(1)
    render_window.SetSize(width, height)
    # The slice image goes in a background layer; the displayable managers'
    # overlays (segments, ROIs) are drawn over it in the layer above.
    render_window.SetNumberOfLayers(2)
    background_renderer = vtk.vtkRenderer()
    background_renderer.SetLayer(0)
    renderer = vtk.vtkRenderer()
    renderer.SetLayer(1)
    renderer.GetActiveCamera().ParallelProjectionOn()
    render_window.AddRenderer(background_renderer)
    render_window.AddRenderer(renderer)
    interactor = vtk.vtkRenderWindowInteractor()
    interactor.SetRenderWindow(render_window)

    group = _displayable_managers(slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance(),
                                  SLICE_DISPLAYABLE_MANAGERS, renderer)

    slice_logic = slicer.vtkMRMLSliceLogic()
    slice_logic.SetMRMLApplicationLogic(application_logic)
    application_logic.GetSliceLogics().AddItem(slice_logic)
    slice_logic.SetMRMLScene(scene)
    slice_node = slice_logic.AddSliceNode(view_name)
    slice_node.SetOrientation(preset)
    group.SetMRMLDisplayableNode(slice_node)

    image_mapper = vtk.vtkImageMapper()
    image_mapper.SetColorWindow(255)
    image_mapper.SetColorLevel(127.5)
    image_actor = vtk.vtkActor2D()
    image_actor.SetMapper(image_mapper)
    background_renderer.AddViewProp(image_actor)
    try:
        composite = slice_logic.GetSliceCompositeNode()
        composite.SetBackgroundVolumeID(background_volume.GetID())
        composite.SetForegroundVolumeID(foreground_volume.GetID() if foreground_volume is not None else None)
        composite.SetForegroundOpacity(foreground_opacity)
        slice_logic.ResizeSliceNode(width, height)
        slice_logic.FitSliceToBackground(width, height)
        if center_ras is None:
            bounds = [0.0] * 6
            background_volume.GetRASBounds(bounds)
            center_ras = [(bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2]
        if field_of_view_mm:
            thickness = slice_node.GetFieldOfView()[2]
            slice_node.SetFieldOfView(field_of_view_mm, field_of_view_mm * height / width, thickness)
            slice_node.JumpSliceByCentering(*[float(c) for c in center_ras])
        else:
            # Move the slice plane through the point but keep the whole volume in view.
            slice_node.JumpSliceByOffsetting(*[float(c) for c in center_ras])
        slice_logic.SnapSliceOffsetToIJK()
        # The logic rebuilds its blend pipeline when layers change: connect only now.
        image_mapper.SetInputConnection(slice_logic.GetImageDataConnection())
        render_window.Render()
        group.RequestRender()
        render_window.Render()
        pixels = _capture(render_window)
        xy_to_ras = np.array([[slice_node.GetXYToRAS().GetElement(r, c) for c in range(4)] for r in range(4)])
        mm_per_pixel = float(slice_node.GetFieldOfView()[0]) / width
    finally:
        # Release in this order: the displayable managers must not outlive their group (probe P5b).
        background_renderer.RemoveViewProp(image_actor)
        group.SetMRMLDisplayableNode(None)
        application_logic.GetSliceLogics().RemoveItem(slice_logic)
        slice_logic.SetMRMLScene(None)
        scene.RemoveNode(slice_node)
        del group
        render_window.Finalize()
    return SliceImage(pixels, xy_to_ras, mm_per_pixel, orientation)


def write_png(pixels: np.ndarray, png_path: Path, text: Optional[Dict[str, str]] = None) -> Path:
    """Write RGB pixels (row 0 at the top) to a PNG file, creating its folder.

    :param text: PNG text chunks (e.g. ``Title``, ``Description``) that travel with the image.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(png_path, pnginfo=info, optimize=True)
    return png_path


def render_slice_png(
    scene: Any,
    png_path: Path,
    background_volume: Any,
    foreground_volume: Optional[Any] = None,
    foreground_opacity: float = 0.5,
    orientation: str = "Axial",
    center_ras: Optional[Sequence[float]] = None,
    size: Tuple[int, int] = (512, 512),
    application_logic: Optional[Any] = None,
) -> Path:
    """Render one slice view (volume, overlays, ROIs) to a PNG file (see :func:`render_slice_image`).

    :returns: the written path.
    """
    image = render_slice_image(scene, background_volume, foreground_volume, foreground_opacity, orientation,
                               center_ras, size, application_logic=application_logic)
    return write_png(image.pixels, png_path)


def render_case_snapshot(scene: Any, loaded_case: Any, png_path: Path, orientation: str = "Axial",
                         size: Tuple[int, int] = (512, 512), application_logic: Optional[Any] = None) -> Path:
    """The case's preview montage (see :mod:`.preview`) as a PNG: what the CLI and the QA report show.

    ``orientation`` and ``size`` are kept for callers of the former one-slice
    snapshot; the montage has every view, and ``size`` sets its panel size.
    """
    from .preview import write_case_preview  # the preview builds on this module

    del orientation  # every view is in the montage
    panel = max(192, min(int(min(size)), 512) * 5 // 8)
    return write_case_preview(scene, loaded_case, Path(png_path), panel_size=panel,
                              application_logic=application_logic)


#: Displayable managers a 3D view needs for segment surfaces and ROI boxes.
THREE_D_DISPLAYABLE_MANAGERS = (
    "vtkMRMLModelDisplayableManager",
    "vtkMRMLSegmentationsDisplayableManager3D",
    "vtkMRMLMarkupsDisplayableManager",
)


def _displayable_managers(factory: Any, class_names: Sequence[str], renderer: Any) -> Any:
    """A displayable-manager group on ``renderer`` with ``class_names`` registered in ``factory`` (once per process)."""
    for class_name in class_names:
        if not factory.IsDisplayableManagerRegistered(class_name):
            factory.RegisterDisplayableManager(class_name)
    group = slicer.vtkMRMLDisplayableManagerGroup()
    group.Initialize(factory, renderer)
    return group


def render_3d_image(
    scene: Any,
    bounds_ras: Sequence[float],
    size: Tuple[int, int] = (512, 512),
    background: Tuple[float, float, float] = (0.12, 0.12, 0.14),
) -> np.ndarray:
    """Render the scene's 3D content (segment surfaces, ROI boxes) seen from the patient's front.

    The camera looks from anterior with superior up, as Slicer's "A" view
    button does, so the patient's right is on the image's left.

    :param bounds_ras: (xmin, xmax, ymin, ymax, zmin, zmax) to frame.
    :returns: RGB pixels, row 0 at the top.
    """
    width, height = size
    render_window = vtk.vtkRenderWindow()
    render_window.SetOffScreenRendering(1)
    render_window.SetSize(width, height)
    renderer = vtk.vtkRenderer()
    renderer.SetBackground(*background)
    render_window.AddRenderer(renderer)
    interactor = vtk.vtkRenderWindowInteractor()
    interactor.SetRenderWindow(render_window)

    group = _displayable_managers(slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance(),
                                  THREE_D_DISPLAYABLE_MANAGERS, renderer)
    view_node = slicer.vtkMRMLViewNode()
    view_node.SetLayoutName("SLLBPreview3D")
    view_node.SetBoxVisible(False)
    view_node.SetAxisLabelsVisible(False)
    scene.AddNode(view_node)
    try:
        group.SetMRMLDisplayableNode(view_node)
        render_window.Render()
        group.RequestRender()
        camera = renderer.GetActiveCamera()
        center = [(bounds_ras[0] + bounds_ras[1]) / 2, (bounds_ras[2] + bounds_ras[3]) / 2,
                  (bounds_ras[4] + bounds_ras[5]) / 2]
        camera.SetFocalPoint(*center)
        camera.SetPosition(center[0], center[1] + 1000.0, center[2])
        camera.SetViewUp(0.0, 0.0, 1.0)
        renderer.ResetCamera(*[float(b) for b in bounds_ras])
        renderer.ResetCameraClippingRange()
        render_window.Render()
        pixels = _capture(render_window)
    finally:
        group.SetMRMLDisplayableNode(None)
        scene.RemoveNode(view_node)
        del group
        render_window.Finalize()
    return pixels
