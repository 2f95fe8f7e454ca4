"""A case read from disk as plain data: what a collection hands to the scene.

A collection's ``read_case`` returns a :class:`CaseData` (numpy arrays with
their IJK-to-RAS matrices, segment masks, boxes, tables, findings and the
provenance needed to write corrections later). Nothing here touches the
scene; :func:`~.scene.put_case.put_case` is the one path that turns a
:class:`CaseData` into MRML nodes, and :class:`LoadedCase` is what it returns.

Every type here is a dataclass of numpy arrays, strings and numbers, so it
pickles (parallel QA) and can be checked without VTK or slicer-core.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .findings import Finding

__all__ = [
    "ATTRIBUTE_PREFIX",
    "SUBJECT_HIERARCHY_UID_NAME",
    "WindowPreset",
    "SegmentSpec",
    "Placement",
    "VolumeData",
    "SegmentationData",
    "RoiData",
    "TableData",
    "DisplayHints",
    "CaseData",
    "LoadedCase",
]

Color = Tuple[float, float, float]

#: Prefix the scene builder puts before every node attribute key (``attributes`` below are given without it);
#: segment tags in :attr:`SegmentSpec.tags` are set as given, so collections add it themselves. Same value as
#: ``scene.builder.ATTRIBUTE_PREFIX``, here so readers can name it without importing the scene.
ATTRIBUTE_PREFIX = "SarcomaLungLiverBrowser."

#: The subject-hierarchy UID namespace for IDs that are not DICOM UIDs (see :attr:`Placement.uid_name`);
#: same value as ``scene.builder.SUBJECT_HIERARCHY_UID_NAME``.
SUBJECT_HIERARCHY_UID_NAME = "SarcomaLungLiverBrowser"


@dataclass(frozen=True)
class WindowPreset:
    """A named window/level setting, e.g. the mediastinum window 350/40."""

    name: str
    window: float
    level: float


@dataclass
class SegmentSpec:
    """One segment to create: a name, a colour and a mask on a voxel grid.

    :param name: shown in Slicer; never left to Slicer's generated names.
    :param color: RGB in [0, 1].
    :param mask: boolean array indexed [k, j, i] on ``ijk_to_ras``'s grid.
    :param ijk_to_ras: the mask's grid; the reference volume's grid if None.
    :param segment_id: stable ID inside the segmentation (defaults to the name).
    :param terminology: Slicer terminology entry string, if known.
    :param tags: extra segment tags, e.g. the DICOM codes the segment came with.
    :param offset: if given, ``mask`` is only a box of the grid whose first
        voxel is (k, j, i) = ``offset`` (saves memory for many small segments).
    """

    name: str
    color: Color
    mask: np.ndarray
    ijk_to_ras: Optional[np.ndarray] = None
    segment_id: Optional[str] = None
    terminology: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)
    offset: Optional[Tuple[int, int, int]] = None


@dataclass(frozen=True)
class Placement:
    """Where a node goes in the subject hierarchy: patient / study / folders.

    Items are found again by UID, so two nodes of one study share one study
    item. ``uid_name`` is the UID namespace (``"DICOM"`` for DICOM UIDs; this
    extension's own name for IDs that are not DICOM UIDs). A placement with no
    patient puts the node at scene level, under ``folders`` if any (used for
    collection-wide tables).
    """

    patient_id: str = ""
    patient_name: str = ""
    study_uid: str = ""
    study_name: str = ""
    folders: Tuple[str, ...] = ()
    uid_name: str = "DICOM"

    def in_folder(self, *names: str) -> "Placement":
        """The same placement, one or more folders deeper."""
        return Placement(self.patient_id, self.patient_name, self.study_uid, self.study_name,
                         (*self.folders, *names), self.uid_name)


@dataclass
class VolumeData:
    """A scalar volume: voxels [k, j, i] and the matrix that places them.

    :param key: the volume's name inside the case, used by segmentations and
        display hints to refer to it (e.g. the SeriesInstanceUID).
    :param share_memory: the node may use ``voxels``' memory instead of a copy
        (the array must not be changed afterwards).
    :param color_table: a colour node ID, e.g. ``"vtkMRMLColorTableNodeInferno"``;
        grey when None.
    :param fallback_color_table: used instead of ``color_table`` when the scene
        has no node of that ID (e.g. a procedural map missing from a scene).
    :param slicer_attributes: node attributes set under their own names, not
        under this extension's prefix (e.g. ``DICOM.instanceUIDs``, which
        Slicer's DICOM plugin sets and other tools read).
    """

    key: str
    name: str
    voxels: np.ndarray
    ijk_to_ras: np.ndarray
    placement: Placement = Placement()
    windows: Sequence[WindowPreset] = ()
    attributes: Dict[str, str] = field(default_factory=dict)
    color_table: Optional[str] = None
    share_memory: bool = False
    fallback_color_table: Optional[str] = None
    slicer_attributes: Dict[str, str] = field(default_factory=dict)


@dataclass
class SegmentationData:
    """A segmentation of segments on the grid of a volume of the same case.

    :param reference: the :attr:`VolumeData.key` of its reference volume.
    """

    key: str
    name: str
    reference: str
    segments: List[SegmentSpec]
    placement: Placement = Placement()
    attributes: Dict[str, str] = field(default_factory=dict)


@dataclass
class RoiData:
    """A box ROI in RAS: centre, size along its axes, and the axes as columns.

    :param visible: shown in the views when put into the scene.
    :param reference: the :attr:`VolumeData.key` of the volume the box was
        drawn on, if any; the node then records that volume node's ID in its
        ``volume_node_id`` attribute.
    """

    key: str
    name: str
    center: np.ndarray
    size: np.ndarray
    axes: Optional[np.ndarray] = None
    color: Color = (1.0, 1.0, 0.0)
    locked: bool = True
    placement: Placement = Placement()
    attributes: Dict[str, str] = field(default_factory=dict)
    visible: bool = True
    reference: Optional[str] = None


@dataclass
class TableData:
    """A table node from a pandas DataFrame.

    :param shared_key: set for a collection-wide table (e.g. the whole clinical
        spreadsheet): the scene keeps one node per ``shared_key``, reused by
        every case that asks for it rather than added again.
    """

    key: str
    name: str
    dataframe: Any
    placement: Placement = Placement()
    attributes: Dict[str, str] = field(default_factory=dict)
    shared_key: Optional[str] = None


@dataclass
class DisplayHints:
    """How to show the case first: which volume below, which blended above."""

    background: Optional[str] = None
    foreground: Optional[str] = None
    foreground_opacity: float = 0.5


@dataclass
class CaseData:
    """Everything a collection read for one case, before any node exists.

    :param case: the case record the data was read for.
    :param provenance: what a correction writer needs later without scanning
        the sources again (reference series headers, source files, codes).
    """

    case: Any
    volumes: List[VolumeData] = field(default_factory=list)
    segmentations: List[SegmentationData] = field(default_factory=list)
    rois: List[RoiData] = field(default_factory=list)
    tables: List[TableData] = field(default_factory=list)
    findings: List[Finding] = field(default_factory=list)
    metrics: Dict[str, Any] = field(default_factory=dict)
    provenance: Dict[str, Any] = field(default_factory=dict)
    display: DisplayHints = field(default_factory=DisplayHints)

    def volume(self, key: str) -> VolumeData:
        """The volume with this key.

        :raises KeyError: naming the keys there are.
        """
        for volume in self.volumes:
            if volume.key == key:
                return volume
        raise KeyError(f"no volume {key!r} in case data (volumes: {[v.key for v in self.volumes]})")

    @property
    def voxel_bytes(self) -> int:
        """Bytes held by volume voxels and segment masks (what putting the case will need at least)."""
        total = sum(int(volume.voxels.nbytes) for volume in self.volumes)
        total += sum(int(spec.mask.nbytes) for seg in self.segmentations for spec in seg.segments)
        return total


@dataclass
class LoadedCase:
    """What putting a case into the scene created, and what was found on the way."""

    case: Any
    volumes: List[Any] = field(default_factory=list)
    segmentations: List[Any] = field(default_factory=list)
    rois: List[Any] = field(default_factory=list)
    tables: List[Any] = field(default_factory=list)
    findings: List[Finding] = field(default_factory=list)
    metrics: Dict[str, Any] = field(default_factory=dict)
    data: Optional[CaseData] = None

    @property
    def nodes(self) -> List[Any]:
        """Every node the load created, volumes first."""
        return [*self.volumes, *self.segmentations, *self.rois, *self.tables]

    def _volume_by_metric(self, key: str) -> Optional[Any]:
        wanted = self.metrics.get(key)
        return next((volume for volume in self.volumes if wanted and volume.GetID() == wanted), None)

    @property
    def background_volume(self) -> Optional[Any]:
        """The volume to show first: the one the collection names, else the first loaded."""
        return self._volume_by_metric("background_volume_id") or (self.volumes[0] if self.volumes else None)

    @property
    def foreground_volume(self) -> Optional[Any]:
        """A volume to blend over the background (e.g. PET over CT), if the collection names one."""
        return self._volume_by_metric("foreground_volume_id")

    @property
    def foreground_opacity(self) -> float:
        return float(self.metrics.get("foreground_opacity", 0.5))


def source_paths(value: Any) -> List[Path]:
    """Every absolute path held anywhere in ``value`` (dicts, lists, dataclass fields), existing or not."""
    found: List[Path] = []

    def visit(item: Any) -> None:
        if isinstance(item, dict):
            for inner in item.values():
                visit(inner)
        elif isinstance(item, (list, tuple, set, frozenset)):
            for inner in item:
                visit(inner)
        elif isinstance(item, Path):
            if item.is_absolute():
                found.append(item)
        elif isinstance(item, str):
            if item and Path(item).is_absolute():
                found.append(Path(item))
        elif hasattr(item, "__dataclass_fields__"):
            for name in item.__dataclass_fields__:
                visit(getattr(item, name))

    visit(value)
    return found
