"""A Slicer scene without the Slicer application, on PyPI's ``slicer-core``.

Inside Slicer the application owns the scene, the module logics and the
subject hierarchy plugins. ``slicer-core`` ships only the Qt-free C++ core, so
the command line and the tests build those pieces here (see
``shared/notes/slicer_core_probe.md`` for the pitfalls this avoids):

* every module logic gets ``SetMRMLScene`` so that its node classes and the
  segmentation converter rules are registered (probe P2, P4);
* new data nodes get a subject hierarchy item, as the application's plugin
  logic would give them (probe P3);
* reading an ``.mrb`` needs the remote-IO and data-IO logics (probe P4);
* scene observers are module-level functions that only use ``caller``,
  because bound methods crashed the interpreter at teardown (probe P5a).

Nothing here is used when the module runs inside Slicer.
"""
from __future__ import annotations

import os
import tempfile
import types
from typing import Any, List, Optional

# EGL renders without an X server; an empty value would segfault (probe P5c).
if not os.environ.get("VTK_DEFAULT_OPENGL_WINDOW") and not os.environ.get("DISPLAY"):
    os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = "vtkEGLRenderWindow"

import slicer  # noqa: E402
import vtk  # noqa: E402

__all__ = ["HeadlessSlicer", "is_slicer_application"]


def is_slicer_application() -> bool:
    """True when running inside the Slicer application (not bare slicer-core)."""
    return hasattr(slicer, "app") and not isinstance(getattr(slicer, "app", None), _ApplicationStub)


def _on_node_added(caller: Any, event: str, node: Any = None) -> None:
    if caller is None or node is None:
        return
    _ensure_subject_hierarchy_item(caller, node)


_on_node_added.CallDataType = vtk.VTK_OBJECT  # type: ignore[attr-defined]


def _on_node_about_to_be_removed(caller: Any, event: str, node: Any = None) -> None:
    if caller is None or node is None or not node.IsA("vtkMRMLNode"):
        return
    if node.IsA("vtkMRMLSubjectHierarchyNode"):
        return
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(caller)
    if hierarchy is None:
        return
    item = hierarchy.GetItemByDataNode(node)
    if item:
        # Remove only the item: the scene is already removing the node.
        hierarchy.RemoveItem(item, False, False)


_on_node_about_to_be_removed.CallDataType = vtk.VTK_OBJECT  # type: ignore[attr-defined]


def _on_import_ended(caller: Any, event: str) -> None:
    if caller is None:
        return
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(caller)
    if hierarchy is None:
        return
    for index in range(caller.GetNumberOfNodes()):
        _ensure_subject_hierarchy_item(caller, caller.GetNthNode(index))


def _ensure_subject_hierarchy_item(scene: Any, node: Any) -> None:
    if node.GetHideFromEditors() or not node.IsA("vtkMRMLDisplayableNode") and not node.IsA("vtkMRMLTableNode"):
        return
    if node.IsA("vtkMRMLDisplayNode") or node.IsA("vtkMRMLStorageNode"):
        return
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if hierarchy is None or hierarchy.GetItemByDataNode(node):
        return
    hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)


class _LogicHolder:
    """What ``slicer.modules.<name>`` offers that slicer.util needs: ``logic()``."""

    def __init__(self, logic: Any) -> None:
        self._logic = logic

    def logic(self) -> Any:
        return self._logic


class _ApplicationStub:
    """The few ``slicer.app`` calls that ``slicer.util`` makes on data paths."""

    def __init__(self, application_logic: Any, temporary_directory: str) -> None:
        self._application_logic = application_logic
        self.temporaryPath = temporary_directory

    def applicationLogic(self) -> Any:
        return self._application_logic

    def pauseRender(self) -> None:
        pass

    def resumeRender(self) -> None:
        pass

    def processEvents(self) -> None:
        pass

    def testingEnabled(self) -> bool:
        return True

    def commandOptions(self) -> Any:
        return types.SimpleNamespace(noMainWindow=True)


class HeadlessSlicer:
    """A fresh MRML scene with the module logics that a loaded case needs.

    Use as a context manager, or call :meth:`close` when done; the scene and
    every logic are released explicitly because garbage-collection order at
    interpreter exit is what crashed earlier harnesses.

    :param install_globals: also set ``slicer.mrmlScene``, ``slicer.app`` and
        ``slicer.modules`` so that ``slicer.util`` helpers work.
    """

    #: (attribute in ``slicer.modules``, Slicer module name, logic class).
    LOGIC_CLASSES = (
        ("volumes", "Volumes", "vtkSlicerVolumesLogic"),
        ("segmentations", "Segmentations", "vtkSlicerSegmentationsModuleLogic"),
        ("markups", "Markups", "vtkSlicerMarkupsLogic"),
        ("subjecthierarchy", "SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
        ("tables", "Tables", "vtkSlicerTablesLogic"),
        ("data", "Data", "vtkSlicerDataModuleLogic"),
        ("sequences", "Sequences", "vtkSlicerSequencesLogic"),
        ("transforms", "Transforms", "vtkSlicerTransformLogic"),
        ("models", "Models", "vtkSlicerModelsLogic"),
    )

    def __init__(self, install_globals: bool = True) -> None:
        self._temporary = tempfile.TemporaryDirectory(prefix="sllb-scene-")
        self.scene = slicer.vtkMRMLScene()
        crosshair = slicer.vtkMRMLCrosshairNode()
        crosshair.SetSingletonTag("default")
        self.scene.AddNode(crosshair)

        self.application_logic = slicer.vtkSlicerApplicationLogic()
        self.application_logic.SetMRMLScene(self.scene)
        color_logic = self.application_logic.GetColorLogic()
        color_logic.SetMRMLScene(self.scene)
        color_logic.AddDefaultColorNodes()
        self.application_logic.SetSliceLogics(vtk.vtkCollection())
        self.application_logic.SetViewLogics(vtk.vtkCollection())
        slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance().SetMRMLApplicationLogic(self.application_logic)
        slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance().SetMRMLApplicationLogic(self.application_logic)

        self.logics = {}
        for attribute_name, module_name, class_name in self.LOGIC_CLASSES:
            logic_class = getattr(slicer, class_name, None)
            if logic_class is None:
                continue
            logic = logic_class()
            logic.SetMRMLApplicationLogic(self.application_logic)
            logic.SetMRMLScene(self.scene)
            # Displayable managers look logics up by Slicer module name (e.g. "Markups").
            self.application_logic.SetModuleLogic(module_name, logic)
            self.logics[attribute_name] = logic
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene, True)

        self.remote_io = slicer.vtkMRMLRemoteIOLogic()
        self.remote_io.SetMRMLScene(self.scene)
        self.remote_io.GetCacheManager().SetRemoteCacheDirectory(self._temporary.name)
        self.data_io = slicer.vtkDataIOManagerLogic()
        self.data_io.SetMRMLScene(self.scene)
        self.data_io.SetAndObserveDataIOManager(self.remote_io.GetDataIOManager())
        self.remote_io.AddDataIOToScene()

        self._observers: List[int] = [
            self.scene.AddObserver(slicer.vtkMRMLScene.NodeAddedEvent, _on_node_added),
            self.scene.AddObserver(slicer.vtkMRMLScene.NodeAboutToBeRemovedEvent, _on_node_about_to_be_removed),
            self.scene.AddObserver(slicer.vtkMRMLScene.EndImportEvent, _on_import_ended),
        ]
        slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        self._globals_installed = False
        if install_globals:
            self.install_globals()

    def install_globals(self) -> None:
        """Make ``slicer.util`` helpers that use the application globals work."""
        slicer.mrmlScene = self.scene
        slicer.app = _ApplicationStub(self.application_logic, self._temporary.name)
        slicer.modules = types.SimpleNamespace(
            **{name: _LogicHolder(logic) for name, logic in self.logics.items()}
        )
        self._globals_installed = True

    def logic(self, module_name: str) -> Any:
        """The module logic registered under ``module_name`` (e.g. ``"segmentations"``)."""
        return self.logics[module_name]

    def read_bundle(self, mrb_path: str) -> bool:
        """Load a Slicer scene bundle (``.mrb``) into this scene, replacing it."""
        return bool(self.scene.ReadFromMRB(str(mrb_path), True))

    def close(self) -> None:
        """Release the scene and logics in a safe order."""
        if self.scene is None:
            return
        for tag in self._observers:
            self.scene.RemoveObserver(tag)
        self._observers = []
        self.scene.Clear(True)
        # Detaching the segmentations logic warns "Invalid scene given"; that is expected here.
        warnings_shown = vtk.vtkObject.GetGlobalWarningDisplay()
        vtk.vtkObject.GlobalWarningDisplayOff()
        try:
            for attribute_name, module_name, _ in self.LOGIC_CLASSES:
                if attribute_name in self.logics:
                    self.logics[attribute_name].SetMRMLScene(None)
                    self.application_logic.SetModuleLogic(module_name, None)
        finally:
            vtk.vtkObject.SetGlobalWarningDisplay(warnings_shown)
        self.logics = {}
        self.data_io.SetMRMLScene(None)
        self.remote_io.SetMRMLScene(None)
        self.application_logic.GetColorLogic().SetMRMLScene(None)
        self.application_logic.SetMRMLScene(None)
        slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance().SetMRMLApplicationLogic(None)
        slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance().SetMRMLApplicationLogic(None)
        if self._globals_installed:
            for name in ("mrmlScene", "app", "modules"):
                if hasattr(slicer, name):
                    delattr(slicer, name)
        self.scene = None
        self._temporary.cleanup()

    def __enter__(self) -> "HeadlessSlicer":
        return self

    def __exit__(self, *exc_info: Optional[Any]) -> None:
        self.close()
