"""The browsing workflow shared by the Slicer module's logic and the command line.

Open a collection folder, list its cases, load one case into a scene (whole
or not at all), save the scene as a Slicer bundle and take a snapshot.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pandas as pd

from .case_data import CaseData
from .errors import DataError
from .formats.atomic import begin_output_set, complete_output_set, corrections_output_set
from .progress import ProgressCallback, report
from .registry import CaseInfo, Collection, LoadedCase, open_collection
from .collections.base import case_location
from .scene.builder import SceneBuilder
from .text import spell_out_undecodable

__all__ = ["CollectionBrowser", "cases_table", "save_scene_bundle", "finding_location", "finding_place"]

#: Columns of the case table shown in the module and written by ``sllb index``.
CASE_TABLE_COLUMNS = ["collection", "case_id", "diagnosis", "summary", "location"]


def cases_table(cases: List[CaseInfo]) -> pd.DataFrame:
    """One row per case: collection, case ID, diagnosis, a short summary, folder."""
    rows = []
    for case in cases:
        summary = "; ".join(f"{key}: {value}" for key, value in case.summary.items())
        location = case_location(case)
        rows.append({
            "collection": case.collection,
            "case_id": case.case_id,
            "diagnosis": case.diagnosis,
            "summary": summary,
            "location": spell_out_undecodable(location),  # a table column must be UTF-8 text (see text.py)
        })
    return pd.DataFrame(rows, columns=CASE_TABLE_COLUMNS)


def _node_center(node: Any) -> Optional[Tuple[float, float, float]]:
    bounds = [0.0] * 6
    node.GetRASBounds(bounds)
    if bounds[0] <= bounds[1]:
        return ((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2)
    return None


def _nodes_from_file(path: str, loaded: LoadedCase) -> List[Any]:
    """Loaded nodes made from the file ``path`` names (their attributes record the source file's name or path)."""
    from .scene.builder import ATTRIBUTE_PREFIX

    wanted = {str(path), Path(path).name}
    found = []
    for node in loaded.nodes:
        names = node.GetAttributeNames() or ()
        if any(name.startswith(ATTRIBUTE_PREFIX) and node.GetAttribute(name) in wanted for name in names):
            found.append(node)
    return found


def finding_place(finding: Any, loaded: LoadedCase) -> Tuple[Optional[Tuple[float, float, float]], str]:
    """Where the slice views should jump to show a finding (RAS), or None and why there is no such place.

    In order: the finding's own point; the centre of the segment it names;
    the centre of the node it names; the centre of an annotation made from the
    file it names (e.g. the box of a VOC XML file whose size or label is off).
    """
    if finding.ras is not None:
        return tuple(float(value) for value in finding.ras), ""  # type: ignore[return-value]
    nodes = [node for node in loaded.nodes if finding.node_name and node.GetName() == finding.node_name]
    if finding.segment_id:
        for segmentation in nodes or loaded.segmentations:
            if segmentation.GetSegmentation().GetSegment(finding.segment_id) is None:
                continue
            center = segmentation.GetSegmentCenterRAS(finding.segment_id)
            if center is not None:
                return tuple(float(value) for value in center), ""  # type: ignore[return-value]
    for node in nodes + (_nodes_from_file(finding.path, loaded) if finding.path else []):
        center = _node_center(node)
        if center is not None:
            return center, ""
    if finding.segment_id:
        return None, f"segment {finding.segment_id} is empty or not in the scene"
    if finding.node_name:
        return None, f"{finding.node_name} is not in the scene (or is empty)"
    if finding.path:
        return None, f"{Path(finding.path).name} has no annotation in the scene (it was left out; see the message)"
    return None, "the finding concerns the case or collection as a whole, not one place in the images"


def finding_location(finding: Any, loaded: LoadedCase) -> Optional[Tuple[float, float, float]]:
    """Where the slice views should jump to show a finding (RAS), or None (see :func:`finding_place` for why)."""
    return finding_place(finding, loaded)[0]


def save_scene_bundle(scene: Any, mrb_path: Path) -> Path:
    """Write the scene as a Slicer scene bundle (``.mrb``) that opens in Slicer.

    :raises DataError: naming the path, if the bundle could not be written.
    """
    mrb_path = Path(mrb_path)
    if mrb_path.suffix.lower() != ".mrb":
        raise DataError(mrb_path, "a Slicer scene bundle must end in .mrb")
    mrb_path.parent.mkdir(parents=True, exist_ok=True)
    if not scene.WriteToMRB(str(mrb_path)):
        raise DataError(mrb_path, "Slicer could not write the scene bundle (see the log for the node that failed)")
    return mrb_path


class CollectionBrowser:
    """A collection folder opened for browsing, loading into one scene.

    :param scene: the MRML scene cases are loaded into.
    """

    def __init__(self, scene: Any) -> None:
        self.scene = scene
        self.builder = SceneBuilder(scene)
        self.collection: Optional[Collection] = None
        self._cases: Optional[List[CaseInfo]] = None
        self.loaded: Dict[str, LoadedCase] = {}

    def open(self, folder: Path, collection_key: Optional[str] = None, annotations: Sequence[Path] = ()) -> Collection:
        """Detect (or take) the collection in ``folder``; forgets the previous one.

        :param annotations: annotation folders outside ``folder`` to read too (Lung-PET-CT-Dx).
        :raises NotACollectionError: if the folder holds no known collection.
        """
        self.collection = open_collection(Path(folder), collection_key, annotations)
        self._cases = None
        return self.collection

    def _require_collection(self) -> Collection:
        if self.collection is None:
            raise RuntimeError("open a collection folder first")
        return self.collection

    def cases(self, progress: Optional[ProgressCallback] = None, refresh: bool = False) -> List[CaseInfo]:
        """The collection's cases (discovered once, then cached)."""
        collection = self._require_collection()
        if self._cases is None or refresh:
            self._cases = collection.discover_cases(progress)
        return self._cases

    def case(self, case_id: str, progress: Optional[ProgressCallback] = None) -> CaseInfo:
        """The case with this ID (case-insensitive).

        :raises DataError: if the collection has no such case.
        """
        for case in self.cases(progress):
            if case.case_id.lower() == case_id.lower():
                return case
        known = ", ".join(case.case_id for case in self.cases()[:5])
        raise DataError(self._require_collection().root, f"has no case {case_id!r} (cases found: {known or 'none'})")

    def load_case(self, case_id: str, progress: Optional[ProgressCallback] = None) -> LoadedCase:
        """Load a case into the scene: all of it, or nothing if anything fails."""
        collection = self._require_collection()
        case = self.case(case_id)
        report(progress, f"Loading {case.case_id}", 0.0)
        with self.builder.transaction():
            loaded = collection.load_case(case, self.builder, progress)
        self.loaded[case.case_id] = loaded
        report(progress, f"Loaded {case.case_id}", 1.0)
        return loaded

    def put_case(self, data: CaseData, progress: Optional[ProgressCallback] = None) -> LoadedCase:
        """Put a case already read into plain data (``collection.read_case``) into the scene, all or nothing.

        For callers that read (and checked) a case without a scene first; the
        case is then loaded as if by :meth:`load_case` and unloads the same way.
        """
        from .scene.put_case import put_case

        with self.builder.transaction():
            loaded = put_case(data, self.builder, progress)
        self.loaded[data.case.case_id] = loaded
        return loaded

    def unload_case(self, case_id: str) -> None:
        """Remove the nodes a loaded case created (and hierarchy items left empty).

        Reviewers go through hundreds of cases; closing the previous one keeps
        the scene (and memory) to one case at a time.
        """
        loaded = self.loaded.pop(case_id, None)
        if loaded is None:
            return
        hierarchy = self.builder.hierarchy
        parents = set()
        for node in loaded.nodes:
            if self.scene.GetNodeByID(node.GetID()) is None:
                continue  # the user already deleted it
            item = hierarchy.GetItemByDataNode(node)
            if item:
                parents.add(hierarchy.GetItemParent(item))
            self.scene.RemoveNode(node)
        # Remove study and patient items that the case leaves empty, innermost first.
        scene_item = hierarchy.GetSceneItemID()
        while parents:
            item = parents.pop()
            if not item or item == scene_item or hierarchy.GetItemDataNode(item) is not None:
                continue
            if hierarchy.GetNumberOfItemChildren(item) == 0:
                parents.add(hierarchy.GetItemParent(item))
                hierarchy.RemoveItem(item, False, False)

    def unload_all(self) -> None:
        """Remove every loaded case from the scene."""
        for case_id in list(self.loaded):
            self.unload_case(case_id)

    def save_corrections(self, case_id: str, output_folder: Path,
                         progress: Optional[ProgressCallback] = None) -> List[Path]:
        """Write a loaded case's (edited) annotations in the collection's own format below ``output_folder``.

        Never over the source files: the collection refuses output folders
        inside the collection and targets that are source files.

        :returns: the files written.
        :raises DataError: if the case is not loaded, the folder is refused, or
            the collection has no annotations to correct.
        """
        collection = self._require_collection()
        loaded = next((value for key, value in self.loaded.items() if key.lower() == case_id.lower()), None)
        if loaded is None:
            raise DataError(collection.root, f"case {case_id!r} is not loaded; load it before saving corrections")
        report(progress, f"Saving corrections of {loaded.case.case_id}", 0.0)
        output_set = corrections_output_set(Path(output_folder), loaded.case.case_id)
        begin_output_set(*output_set)  # an interrupted re-save must not look complete (formats/atomic.py)
        written = collection.save_corrections(loaded, self.scene, Path(output_folder), progress)
        complete_output_set(*output_set, written)
        report(progress, f"Saved {len(written)} file(s) for {loaded.case.case_id}", 1.0)
        return written
