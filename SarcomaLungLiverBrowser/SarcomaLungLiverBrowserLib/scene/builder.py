"""Build MRML nodes from arrays, boxes and tables, with rollback on failure.

Every loader puts its results into the scene through :class:`SceneBuilder`,
so that names, colours, display settings and the subject hierarchy follow
one set of rules, and so that a failed load leaves the scene as it was
(:meth:`SceneBuilder.transaction`). It uses only the MRML API, which is the
same in the Slicer application and in PyPI's ``slicer-core``.
"""
from __future__ import annotations

import contextlib
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from ..case_data import SegmentSpec, WindowPreset
from ..geometry import spacing_from_matrix
from ..text import spell_out_undecodable

__all__ = [
    "SegmentSpec",
    "SceneBuilder",
    "vtk_matrix_from_array",
    "array_from_vtk_matrix",
    "segment_mask",
    "segment_tag",
    "WindowPreset",
    "SUBJECT_HIERARCHY_UID_NAME",
    "image_sharing_memory",
    "sanitise_node_name",
    "sanitise_segment_id",
    "unique_segment_id",
]

#: UID name under which non-DICOM cases register patients and studies in the
#: subject hierarchy (DICOM data uses Slicer's own "DICOM").
SUBJECT_HIERARCHY_UID_NAME = "SarcomaLungLiverBrowser"

#: Node attribute keys the builder sets (so other code finds them again).
ATTRIBUTE_PREFIX = "SarcomaLungLiverBrowser."


def vtk_matrix_from_array(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    """A ``vtkMatrix4x4`` holding a 4x4 numpy matrix (slicer.util's own conversion)."""
    return slicer.util.vtkMatrixFromArray(np.asarray(matrix, dtype=float))


def array_from_vtk_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """A 4x4 numpy matrix from a ``vtkMatrix4x4`` (slicer.util's own conversion)."""
    return slicer.util.arrayFromVTKMatrix(matrix)


def _oriented_image_from_mask(mask: np.ndarray, ijk_to_ras: np.ndarray,
                              offset: Sequence[int] = (0, 0, 0)) -> Any:
    """A labelmap image (value 1 inside) cropped to the mask's bounding box.

    Cropping keeps a 40-segment CRLM case in memory as a few megabytes rather
    than 40 copies of the CT grid; the extent keeps each voxel in place.
    """
    image = slicer.vtkOrientedImageData()
    image.SetImageToWorldMatrix(vtk_matrix_from_array(ijk_to_ras))
    nonzero = np.nonzero(mask)
    if nonzero[0].size == 0:
        image.SetExtent(0, -1, 0, -1, 0, -1)
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        return image
    k0, k1 = int(nonzero[0].min()), int(nonzero[0].max())
    j0, j1 = int(nonzero[1].min()), int(nonzero[1].max())
    i0, i1 = int(nonzero[2].min()), int(nonzero[2].max())
    cropped = np.ascontiguousarray(mask[k0 : k1 + 1, j0 : j1 + 1, i0 : i1 + 1], dtype=np.uint8)
    dk, dj, di = (int(v) for v in offset)
    image.SetExtent(i0 + di, i1 + di, j0 + dj, j1 + dj, k0 + dk, k1 + dk)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = cropped.ravel()
    return image


#: Voxel types a vtkImageData can use in place (numpy_to_vtk copies any other).
_SHAREABLE_DTYPES = tuple(np.dtype(t) for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
                                                np.float32, np.float64))


def image_sharing_memory(voxels: np.ndarray) -> Optional[Any]:
    """A ``vtkImageData`` whose scalars are ``voxels``' own memory, or None if it cannot be shared.

    ``slicer.util.updateVolumeFromArray`` copies, so a freshly read volume is
    briefly held twice. Sharing needs a C-contiguous, writeable array of a
    type VTK stores natively; ``numpy_to_vtk`` keeps a reference to the array
    on the VTK array, so the memory lives as long as the image does.
    """
    if voxels.ndim != 3 or not voxels.flags.c_contiguous or not voxels.flags.writeable \
            or voxels.dtype not in _SHAREABLE_DTYPES or not voxels.dtype.isnative:
        return None
    image = vtk.vtkImageData()
    image.SetDimensions(int(voxels.shape[2]), int(voxels.shape[1]), int(voxels.shape[0]))
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(voxels.reshape(-1), deep=False))
    return image


def segment_tag(segment: Any, name: str) -> Optional[str]:
    """The value of a segment tag, or None when the segment has no such tag."""
    value = vtk.reference("")
    if not segment.GetTag(name, value):
        return None
    return str(value)


def segment_mask(segmentation_node: Any, segment_id: str, reference_shape: Sequence[int],
                 reference_ijk_to_ras: np.ndarray) -> np.ndarray:
    """A segment's voxels as a boolean [k, j, i] array on a reference grid.

    The segment's labelmap must share the reference grid's geometry (as every
    segment made by :class:`SceneBuilder` does); a mismatch raises ValueError
    rather than returning voxels in the wrong place.
    """
    segmentation = segmentation_node.GetSegmentation()
    segment = segmentation.GetSegment(segment_id)
    if segment is None:
        raise KeyError(f"no segment {segment_id!r} in {segmentation_node.GetName()!r}")
    representation = segment.GetRepresentation(
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    )
    result = np.zeros(tuple(reference_shape), dtype=bool)
    if representation is None:
        return result
    image_to_world = vtk.vtkMatrix4x4()
    representation.GetImageToWorldMatrix(image_to_world)
    if not np.allclose(array_from_vtk_matrix(image_to_world), reference_ijk_to_ras, atol=1e-4):
        raise ValueError(f"segment {segment_id!r} is not on the reference grid")
    extent = representation.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return result
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    labels = numpy_support.vtk_to_numpy(representation.GetPointData().GetScalars()).reshape(shape)
    inside = labels == segment.GetLabelValue()
    k, j, i = extent[4], extent[2], extent[0]
    # Clip to the reference grid: a labelmap may extend beyond it after editing.
    k_from, j_from, i_from = max(k, 0), max(j, 0), max(i, 0)
    k_to = min(k + shape[0], reference_shape[0])
    j_to = min(j + shape[1], reference_shape[1])
    i_to = min(i + shape[2], reference_shape[2])
    if k_to > k_from and j_to > j_from and i_to > i_from:
        result[k_from:k_to, j_from:j_to, i_from:i_to] = inside[
            k_from - k : k_to - k, j_from - j : j_to - j, i_from - i : i_to - i
        ]
    return result


# ---------------------------------------------------------------------------------------------- names
#: Longest node, hierarchy item or segment name (DICOM text runs to 1024 characters; views show far less).
MAX_NODE_NAME_LENGTH = 200
#: NUL and the other control characters: MRML stores names as C strings, so a NUL cuts a name short
#: (and ``GenerateUniqueName`` then never finds the name it is looking for: it loops forever).
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: A run of control characters with the white space around it: one space in a node name.
_CONTROL_RUN = re.compile(r"\s*[\x00-\x1f\x7f-\x9f]+\s*")


def scene_text(value: Any) -> str:
    """``str(value)`` as the scene can hold it (VTK takes UTF-8): a byte of a file name that is not UTF-8 is
    written out as ``\\xe9`` (see :mod:`..text`), so a path from such a folder names its file instead of
    stopping the load."""
    return spell_out_undecodable(value)


def sanitise_node_name(text: Any, fallback: str = "unnamed") -> str:
    """A name from the data as the scene can hold it: a run of control characters (NUL included) becomes one
    space, and names longer than :data:`MAX_NODE_NAME_LENGTH` end in "…".

    Other white space is kept as the data spells it (``"ThoraxRoutine  8.0.0  B70f"``), as Slicer's own
    DICOM loading shows it.
    """
    name = _CONTROL_RUN.sub(" ", scene_text(text)).strip()
    if len(name) > MAX_NODE_NAME_LENGTH:
        name = name[:MAX_NODE_NAME_LENGTH - 1].rstrip() + "\u2026"
    return name or fallback


def sanitise_segment_id(text: Any, fallback: str = "Segment") -> str:
    """A segment ID from the data: control characters become ``_``, the length is bounded."""
    identifier = _CONTROL_CHARACTERS.sub("_", scene_text(text)).strip()
    return identifier[:MAX_NODE_NAME_LENGTH] or fallback


def unique_segment_id(segmentation: Any, wanted: str) -> str:
    """``wanted`` (sanitised), or ``wanted_2``, ``wanted_3``... if the segmentation already has that ID.

    Two ROIs whose IDs coincide after normalisation (``GTV`` and ``GTV_Mass``
    both becoming ``GTV``, or two names differing only after a NUL) must both load.
    """
    base = sanitise_segment_id(wanted)
    candidate, number = base, 2
    while segmentation.GetSegment(candidate) is not None:
        candidate = f"{base}_{number}"
        number += 1
    return candidate


class SceneBuilder:
    """Creates nodes in one MRML scene and can undo everything it created.

    :param scene: the ``vtkMRMLScene`` (``slicer.mrmlScene`` inside Slicer).
    """

    def __init__(self, scene: Any) -> None:
        self.scene = scene

    @property
    def hierarchy(self) -> Any:
        """The scene's subject-hierarchy node, looked up on every use.

        File > Close Scene removes the hierarchy node and Slicer creates a new
        one; a node kept from before would take the next case's items into a
        node that is no longer in the scene.
        """
        return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)

    # ------------------------------------------------------------------ transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator["SceneBuilder"]:
        """Remove every node and hierarchy item added inside the block if it raises.

        A case then either loads whole or leaves the scene exactly as it was.
        """
        nodes_before = self._node_ids()
        items_before = self._item_ids()
        try:
            yield self
        except BaseException:
            self._remove_added(nodes_before, items_before)
            raise

    def _node_ids(self) -> Set[str]:
        return {self.scene.GetNthNode(index).GetID() for index in range(self.scene.GetNumberOfNodes())}

    def _item_ids(self) -> Set[int]:
        children = vtk.vtkIdList()
        self.hierarchy.GetItemChildren(self.hierarchy.GetSceneItemID(), children, True)
        return {children.GetId(index) for index in range(children.GetNumberOfIds())}

    def _remove_added(self, nodes_before: Set[str], items_before: Set[int]) -> None:
        for item in sorted(self._item_ids() - items_before, reverse=True):
            if self.hierarchy.GetItemDataNode(item) is None and item in self._item_ids():
                self.hierarchy.RemoveItem(item, False, False)
        added = [node_id for node_id in self._node_ids() - nodes_before]
        # Data nodes first, so that their display and storage nodes are free to go.
        added.sort(key=lambda node_id: 0 if self.scene.GetNodeByID(node_id).IsA("vtkMRMLDisplayableNode") else 1)
        for node_id in added:
            node = self.scene.GetNodeByID(node_id)
            if node is not None:
                self.scene.RemoveNode(node)

    # ------------------------------------------------------------------ subject hierarchy
    def patient_item(self, patient_id: str, name: Optional[str] = None, uid_name: str = "DICOM") -> int:
        """The hierarchy item of a patient, created once per patient ID."""
        item = self.hierarchy.GetItemByUID(uid_name, patient_id)
        if item:
            return item
        item = self.hierarchy.CreateSubjectItem(self.hierarchy.GetSceneItemID(),
                                                sanitise_node_name(name or patient_id))
        self.hierarchy.SetItemUID(item, uid_name, patient_id)
        return item

    def study_item(self, patient_item: int, study_uid: str, name: str, uid_name: str = "DICOM") -> int:
        """The hierarchy item of a study under a patient, created once per study UID."""
        item = self.hierarchy.GetItemByUID(uid_name, study_uid)
        if item:
            return item
        item = self.hierarchy.CreateStudyItem(patient_item, sanitise_node_name(name))
        self.hierarchy.SetItemUID(item, uid_name, study_uid)
        return item

    def folder_item(self, parent_item: int, name: str) -> int:
        """A folder under ``parent_item``, reused if one of that name exists."""
        name = sanitise_node_name(name)
        existing = self.hierarchy.GetItemChildWithName(parent_item, name)
        if existing:
            return existing
        return self.hierarchy.CreateFolderItem(parent_item, name)

    def place(self, node: Any, parent_item: Optional[int]) -> int:
        """Put ``node`` under ``parent_item`` in the subject hierarchy."""
        item = self.hierarchy.GetItemByDataNode(node)
        if not item:
            item = self.hierarchy.CreateItem(parent_item or self.hierarchy.GetSceneItemID(), node)
        elif parent_item:
            self.hierarchy.SetItemParent(item, parent_item)
        return item

    # ------------------------------------------------------------------ nodes
    def _new_node(self, class_name: str, name: str, attributes: Optional[Dict[str, str]]) -> Any:
        node = self.scene.AddNewNodeByClass(class_name, self.scene.GenerateUniqueName(sanitise_node_name(name)))
        for key, value in (attributes or {}).items():
            node.SetAttribute(ATTRIBUTE_PREFIX + key, scene_text(value))
        return node

    def add_volume(
        self,
        name: str,
        voxels: np.ndarray,
        ijk_to_ras: np.ndarray,
        window_presets: Sequence[WindowPreset] = (),
        color_node_id: Optional[str] = None,
        parent_item: Optional[int] = None,
        attributes: Optional[Dict[str, str]] = None,
        share_memory: bool = False,
    ) -> Any:
        """A scalar volume from a [k, j, i] array and its IJK-to-RAS matrix.

        The first window preset is applied; all are offered as presets. With
        no preset Slicer's automatic window/level is used.

        :param share_memory: let the node's image use ``voxels``' memory
            instead of a copy (see :func:`image_sharing_memory`), so loading
            does not hold the volume twice; the caller must not change
            ``voxels`` afterwards.
        """
        if voxels.ndim != 3:
            raise ValueError(f"volume {name!r} must be 3-D, got shape {voxels.shape}")
        node = self._new_node("vtkMRMLScalarVolumeNode", name, attributes)
        node.SetIJKToRASMatrix(vtk_matrix_from_array(ijk_to_ras))
        image = image_sharing_memory(voxels) if share_memory else None
        if image is not None:
            node.SetAndObserveImageData(image)
            node.StorableModified()
        else:
            slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(voxels))
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        display.SetAndObserveColorNodeID(color_node_id or "vtkMRMLColorTableNodeGrey")
        if window_presets:
            for preset in window_presets:
                display.AddWindowLevelPreset(preset.window, preset.level)
            display.SetAutoWindowLevel(False)
            display.SetWindowLevel(window_presets[0].window, window_presets[0].level)
        else:
            display.SetAutoWindowLevel(True)
        self.place(node, parent_item)
        return node

    def add_segmentation(
        self,
        name: str,
        reference_volume: Any,
        segments: Sequence[SegmentSpec],
        parent_item: Optional[int] = None,
        attributes: Optional[Dict[str, str]] = None,
    ) -> Any:
        """A segmentation node holding ``segments`` in the given order.

        Each segment keeps its own voxels even where segments overlap (liver and
        tumour); segments that do not overlap share labelmap layers afterwards,
        as Slicer would arrange them.
        """
        node = self._new_node("vtkMRMLSegmentationNode", name, attributes)
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        reference_matrix = vtk.vtkMatrix4x4()
        reference_volume.GetIJKToRASMatrix(reference_matrix)
        reference_ijk_to_ras = array_from_vtk_matrix(reference_matrix)
        reference_shape = tuple(reversed(reference_volume.GetImageData().GetDimensions()))
        segmentation = node.GetSegmentation()
        binary_labelmap = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
        segmentation.SetSourceRepresentationName(binary_labelmap)
        for spec in segments:
            ijk_to_ras = reference_ijk_to_ras if spec.ijk_to_ras is None else spec.ijk_to_ras
            if spec.offset is not None:
                end = np.asarray(spec.offset) + np.asarray(spec.mask.shape)
                if spec.ijk_to_ras is None and (np.any(np.asarray(spec.offset) < 0)
                                                or np.any(end > np.asarray(reference_shape))):
                    raise ValueError(f"segment {spec.name!r}: mask box at {spec.offset} of shape "
                                     f"{spec.mask.shape} exceeds the reference shape {reference_shape}")
            elif spec.ijk_to_ras is None and tuple(spec.mask.shape) != reference_shape:
                raise ValueError(
                    f"segment {spec.name!r}: mask shape {spec.mask.shape} does not match the "
                    f"reference volume {reference_volume.GetName()!r} shape {reference_shape}"
                )
            segment = slicer.vtkSegment()
            segment.SetName(sanitise_node_name(spec.name, "Segment"))
            segment.SetColor(*[float(c) for c in spec.color])
            segment.SetNameAutoGenerated(False)
            segment.SetColorAutoGenerated(False)
            segment.SetLabelValue(1)
            image = _oriented_image_from_mask(spec.mask != 0, ijk_to_ras, spec.offset or (0, 0, 0))
            segment.AddRepresentation(binary_labelmap, image)
            if spec.terminology:
                segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), spec.terminology)
            for key, value in spec.tags.items():
                segment.SetTag(key, str(value))
            # IDs from the data may collide or hold NUL; each segment still loads, under a unique ID.
            segmentation.AddSegment(segment, unique_segment_id(segmentation, spec.segment_id or spec.name))
        # Merge non-overlapping segments into shared layers (never forces overlap away).
        segmentation.CollapseBinaryLabelmaps(False)
        self.place(node, parent_item)
        return node

    def add_roi(
        self,
        name: str,
        center_ras: Sequence[float],
        size_mm: Sequence[float],
        axes_ras: Optional[np.ndarray] = None,
        color: Tuple[float, float, float] = (1.0, 1.0, 0.0),
        locked: bool = True,
        parent_item: Optional[int] = None,
        attributes: Optional[Dict[str, str]] = None,
    ) -> Any:
        """A box ROI markup; ``axes_ras`` columns give its (possibly oblique) axes."""
        node = self._new_node("vtkMRMLMarkupsROINode", name, attributes)
        object_to_node = np.eye(4)
        if axes_ras is not None:
            object_to_node[:3, :3] = np.asarray(axes_ras, dtype=float)
        object_to_node[:3, 3] = np.asarray(center_ras, dtype=float)
        node.SetAndObserveObjectToNodeMatrix(vtk_matrix_from_array(object_to_node))
        node.SetSize(*[float(s) for s in size_mm])
        node.CreateDefaultDisplayNodes()
        display = node.GetDisplayNode()
        display.SetSelectedColor(*color)
        display.SetColor(*color)
        display.SetFillOpacity(0.0)
        display.SetHandlesInteractive(False)
        node.SetLocked(locked)
        self.place(node, parent_item)
        return node

    def add_table(
        self,
        name: str,
        dataframe: Any,
        parent_item: Optional[int] = None,
        attributes: Optional[Dict[str, str]] = None,
    ) -> Any:
        """A table node from a pandas DataFrame.

        Numbers become double columns (NaN where missing); everything else a
        string column. Booleans are stored as integers, because Slicer's TSV
        writer loses 8-bit columns (probe P8).
        """
        node = self._new_node("vtkMRMLTableNode", name, attributes)
        table = node.GetTable()
        for column_name in dataframe.columns:
            series = dataframe[column_name]
            kind = series.dtype.kind
            if kind in "b":
                column = numpy_support.numpy_to_vtk(series.to_numpy(dtype=np.int32), deep=True)
            elif kind in "iuf":
                column = numpy_support.numpy_to_vtk(series.to_numpy(dtype=np.float64), deep=True)
            else:
                column = vtk.vtkStringArray()
                for value in series.tolist():
                    column.InsertNextValue("" if _is_missing(value) else scene_text(value))
            column.SetName(scene_text(column_name))
            table.AddColumn(column)
        table.Modified()
        self.place(node, parent_item)
        return node

    @staticmethod
    def volume_geometry(volume_node: Any) -> Tuple[Tuple[int, int, int], np.ndarray]:
        """(shape as [k, j, i], IJK-to-RAS matrix) of a volume node."""
        matrix = vtk.vtkMatrix4x4()
        volume_node.GetIJKToRASMatrix(matrix)
        shape = tuple(reversed(volume_node.GetImageData().GetDimensions()))
        return shape, array_from_vtk_matrix(matrix)

    @staticmethod
    def voxel_volume_mm3(ijk_to_ras: np.ndarray) -> float:
        """Volume of one voxel in mm³."""
        return float(np.prod(spacing_from_matrix(ijk_to_ras)))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(np.isnan(value))
    except (TypeError, ValueError):
        return False
