"""How a loaded case is first shown in Slicer: view layout, layers per view, slices through the first finding.

Logic-level code (MRML nodes only, no widgets), so it runs the same in the
Slicer application and on slicer-core:

* CT or MR with segments or ROIs: the four-up layout, the segments as closed
  surfaces in the 3D view, the views centred on the first finding;
* PET/CT: three over three, the upper row the PET fused over the CT (PET in a
  heat colour map above a threshold so the CT is not darkened), the lower row
  the PET alone, every view linked;
* ISPY1's DCE-MRI phases: three over three, the pre-contrast phase above and
  the first post-contrast phase below, slices linked, so enhancement is
  compared at the same place;
* segment names and the PET scale through Slicer's colour legends, as the
  Colors module shows them.

:func:`plan_views` decides (and changes nothing); :func:`apply_view_plan`
sets the nodes; :func:`show_case` does both and is what the module's Logic
calls after a load.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import slicer

from .preview import (PET_COLOR_NODE_IDS, annotations_of_interest, is_pet_volume, node_attribute, pet_display_range,
                      pet_scale_of, shown_segmentations)

__all__ = ["ViewSetting", "ViewPlan", "plan_views", "apply_view_plan", "show_case", "layout_node_of"]

FOUR_UP = slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView
THREE_OVER_THREE = slicer.vtkMRMLLayoutNode.SlicerLayoutThreeOverThreeView
#: Slice views of the layouts used here and the plane each shows.
UPPER_ROW = (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal"))
LOWER_ROW = (("Red+", "Axial"), ("Yellow+", "Sagittal"), ("Green+", "Coronal"))


@dataclass
class ViewSetting:
    """What one slice view shows."""

    view_name: str
    orientation: str
    background_id: Optional[str]
    foreground_id: Optional[str] = None
    foreground_opacity: float = 0.0


@dataclass
class ViewPlan:
    """Everything :func:`apply_view_plan` will set, decided from the loaded case alone."""

    layout_id: int
    reason: str
    views: List[ViewSetting]
    focus_ras: Optional[Tuple[float, float, float]] = None
    focus_name: str = ""
    surface_segmentation_ids: List[str] = field(default_factory=list)
    legend_node_ids: List[str] = field(default_factory=list)
    linked: bool = True
    pet_volume_id: Optional[str] = None


def _phase_volumes(loaded_case: Any) -> List[Any]:
    """ISPY1 DCE phases of the background's image family (``ispy1.phase`` attributes such as ``DCE_0000``), in order."""
    background = loaded_case.background_volume
    family = node_attribute(background, "ispy1.family") if background is not None else None
    phased = [(node_attribute(node, "ispy1.phase"), node) for node in loaded_case.volumes
              if node_attribute(node, "ispy1.phase") and node_attribute(node, "ispy1.family") == family]
    return [node for _, node in sorted(phased, key=lambda pair: pair[0])]


def plan_views(loaded_case: Any) -> ViewPlan:
    """Decide the layout and what each view shows for ``loaded_case`` (nothing in the scene changes).

    :raises ValueError: if the case has no volume.
    """
    background = loaded_case.background_volume
    if background is None:
        raise ValueError(f"case {loaded_case.case.case_id} has no volume to show")
    foreground = loaded_case.foreground_volume
    _, interesting = annotations_of_interest(loaded_case)
    focus = interesting[0] if interesting else None
    surfaces = [node.GetID() for node in shown_segmentations(loaded_case)]
    legends = list(surfaces)
    phases = _phase_volumes(loaded_case)
    if foreground is not None and is_pet_volume(foreground):
        views = [ViewSetting(name, orientation, background.GetID(), foreground.GetID(),
                             loaded_case.foreground_opacity) for name, orientation in UPPER_ROW]
        views += [ViewSetting(name, orientation, foreground.GetID()) for name, orientation in LOWER_ROW]
        plan = ViewPlan(THREE_OVER_THREE, "PET/CT: fusion above, PET alone below", views,
                        pet_volume_id=foreground.GetID())
        legends.append(foreground.GetID())
    elif len(phases) >= 2:
        before, after = phases[0], phases[1]
        views = [ViewSetting(name, orientation, before.GetID()) for name, orientation in UPPER_ROW]
        views += [ViewSetting(name, orientation, after.GetID()) for name, orientation in LOWER_ROW]
        plan = ViewPlan(THREE_OVER_THREE, f"DCE phases side by side: {before.GetName()} above, "
                        f"{after.GetName()} below, slices linked", views)
    else:
        views = [ViewSetting(name, orientation, background.GetID(),
                             foreground.GetID() if foreground is not None else None,
                             loaded_case.foreground_opacity if foreground is not None else 0.0)
                 for name, orientation in UPPER_ROW]
        plan = ViewPlan(FOUR_UP, "four-up: three planes and 3D surfaces", views)
    plan.surface_segmentation_ids = surfaces
    plan.legend_node_ids = legends
    if focus is not None:
        plan.focus_ras, plan.focus_name = focus.center_ras, focus.name
    return plan


def layout_node_of(scene: Any) -> Optional[Any]:
    """The scene's layout node (the application's), or None in a scene without one."""
    return scene.GetFirstNodeByClass("vtkMRMLLayoutNode")


def _set_layout(scene: Any, layout_id: int) -> None:
    """Switch the layout; in a scene without the application, create the layout's view nodes too.

    Inside Slicer the application's layout logic observes the layout node and
    adds missing view nodes. Without it (slicer-core), a layout logic is
    attached just for this change and detached again: one left attached to a
    scene that is later closed crashes the interpreter.
    """
    node = layout_node_of(scene)
    if node is not None and all(_slice_node(scene, name) is not None
                                for name, _ in (UPPER_ROW + LOWER_ROW if layout_id == THREE_OVER_THREE
                                                else UPPER_ROW)):
        node.SetViewArrangement(layout_id)
        return
    logic = slicer.vtkMRMLLayoutLogic()
    try:
        logic.SetMRMLScene(scene)
        node = logic.GetLayoutNode()
        node.SetViewArrangement(layout_id)
    finally:
        logic.SetMRMLScene(None)


def _slice_node(scene: Any, view_name: str) -> Optional[Any]:
    nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.GetLayoutName() == view_name:
            return node
    return None


def _composite_node(scene: Any, view_name: str) -> Any:
    """The view's slice composite node; created as the slice logic would when the view has none yet."""
    nodes = scene.GetNodesByClass("vtkMRMLSliceCompositeNode")
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        if node.GetLayoutName() == view_name:
            return node
    node = slicer.vtkMRMLSliceCompositeNode()
    node.SetLayoutName(view_name)
    node.SetSingletonTag(view_name)
    return scene.AddNode(node)


def _show_pet(scene: Any, plan: ViewPlan) -> None:
    """PET in a heat map from SUVbw 0-8 (or its stored range), transparent below the threshold."""
    pet = scene.GetNodeByID(plan.pet_volume_id)
    display = pet.GetDisplayNode() if pet is not None else None
    if display is None:
        return
    scale = pet_scale_of(pet, None)
    factor = scale.factor if scale is not None and scale.factor > 0 else 1.0
    low, high, visible_from = pet_display_range(pet, scale)
    color = next((node_id for node_id in PET_COLOR_NODE_IDS if scene.GetNodeByID(node_id)), None)
    if color:
        display.SetAndObserveColorNodeID(color)
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(low / factor, high / factor)
    display.SetAutoThreshold(False)
    display.SetApplyThreshold(True)
    display.SetLowerThreshold(visible_from / factor)
    display.SetUpperThreshold(1e30)


def _add_color_legend(scene: Any, node: Any) -> None:
    """Slicer's colour legend for a segmentation (segment names) or a volume (its colour bar)."""
    if not scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"):
        # The application's Colors module registers it; a bare slicer-core scene has not.
        scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())
    legend = slicer.vtkSlicerColorLogic.GetColorLegendDisplayNode(node)
    if legend is None:
        legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(node)
    if legend is not None:
        legend.SetVisibility(True)


def apply_view_plan(scene: Any, plan: ViewPlan) -> None:
    """Set the layout, each view's layers and plane, the slices through the focus, surfaces and legends."""
    _set_layout(scene, plan.layout_id)
    for setting in plan.views:
        slice_node = _slice_node(scene, setting.view_name)
        if slice_node is None:
            raise RuntimeError(f"the layout has no slice view {setting.view_name!r}")
        slice_node.SetOrientation(setting.orientation)
        composite = _composite_node(scene, setting.view_name)
        composite.SetBackgroundVolumeID(setting.background_id)
        composite.SetForegroundVolumeID(setting.foreground_id)
        composite.SetForegroundOpacity(setting.foreground_opacity)
        composite.SetLinkedControl(plan.linked)
        if plan.focus_ras is not None:
            slice_node.JumpSliceByCentering(*plan.focus_ras)
    if plan.pet_volume_id:
        _show_pet(scene, plan)
    for node_id in plan.surface_segmentation_ids:
        segmentation = scene.GetNodeByID(node_id)
        if segmentation is None:
            continue
        segmentation.CreateClosedSurfaceRepresentation()
        display = segmentation.GetDisplayNode()
        if display is not None:
            display.SetVisibility3D(True)
            display.SetPreferredDisplayRepresentationName3D("Closed surface")
    for node_id in plan.legend_node_ids:
        node = scene.GetNodeByID(node_id)
        if node is not None:
            _add_color_legend(scene, node)


def show_case(scene: Any, loaded_case: Any) -> Optional[ViewPlan]:
    """Lay out the views for a freshly loaded case (what the module's Logic calls after a load).

    :returns: the plan applied; None for a case that loaded no volume (the views are left as they were).
    """
    if loaded_case.background_volume is None:
        return None
    plan = plan_views(loaded_case)
    apply_view_plan(scene, plan)
    return plan
