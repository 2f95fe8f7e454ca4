"""Every registered collection keeps the collection contract (``collections/base.py``).

For each collection: its sample collection is generated in its real layout,
detected, discovered into typed records, every case read into plain data
without touching the scene, checked, put into the scene by the one shared
``put_case`` and unloaded again, leaving the scene as it was. Importing the
collection module and detecting must stay light (a fresh interpreter shows
which modules it loaded). Then a seventh collection, defined in this file, is
registered in one line and goes through index, load, QA and report.
"""
from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type

import numpy as np
import pytest

from SarcomaLungLiverBrowserLib import case_data, cli, registry
from SarcomaLungLiverBrowserLib.browser import CollectionBrowser, cases_table
from SarcomaLungLiverBrowserLib.case_data import CaseData, Placement, RoiData, TableData, VolumeData
from SarcomaLungLiverBrowserLib.collections.base import LIGHT_IMPORT_FORBIDDEN, CaseRecord, Collection
from SarcomaLungLiverBrowserLib.errors import NotACollectionError
from SarcomaLungLiverBrowserLib.findings import WARNING, Finding
from SarcomaLungLiverBrowserLib.progress import ProgressCallback
from SarcomaLungLiverBrowserLib.review.qa import run_collection_qa
from SarcomaLungLiverBrowserLib.review.report import export_review
from SarcomaLungLiverBrowserLib.scene import builder as scene_builder

LIBRARY = Path(__file__).resolve().parents[1] / "SarcomaLungLiverBrowser"

COLLECTION_CLASSES = registry.collection_classes()


def _id(collection_class: type) -> str:
    return collection_class.key


def _module_name(collection_class: type) -> str:
    """``crlm`` for ``...collections.crlm`` (and for a package ``...collections.crlm.reading``)."""
    parts = collection_class.__module__.split(".")
    return parts[parts.index("collections") + 1]


def _require_contract(collection_class: type) -> None:
    """Every registered collection reads into plain data and leaves node building to ``put_case``."""
    assert issubclass(collection_class, Collection), f"{collection_class.__name__} is not on the collection contract"
    assert collection_class.read_case is not Collection.read_case, f"{collection_class.__name__} has no read_case"
    assert collection_class.load_case is Collection.load_case, \
        f"{collection_class.__name__} builds its own nodes in load_case instead of read -> check -> put_case"


@pytest.fixture(scope="module")
def sample_roots(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """Collection key -> root of its generated sample, written once per module on first use."""
    return {}


def _sample_root(collection_class: type, sample_roots: Dict[str, Path],
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    if collection_class.key not in sample_roots:
        module = importlib.import_module(f"SarcomaLungLiverBrowserLib.samples.{_module_name(collection_class)}")
        sample_roots[collection_class.key] = module.generate(tmp_path_factory.mktemp(collection_class.key))
    return sample_roots[collection_class.key]


def _scene_state(scene: Any) -> Tuple[List[str], int]:
    """Node IDs and the number of subject-hierarchy items: what must come back after an unload."""
    ids = [scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())]
    hierarchy = scene.GetSubjectHierarchyNode()
    import vtk

    children = vtk.vtkIdList()
    hierarchy.GetItemChildren(hierarchy.GetSceneItemID(), children, True)
    items = [children.GetId(index) for index in range(children.GetNumberOfIds())]
    return ids, len(items)


# ---------------------------------------------------------------------------------------------- the contract
def test_every_collection_module_is_registered() -> None:
    keys = [collection_class.key for collection_class in COLLECTION_CLASSES]
    assert keys == ["crlm", "lung_pet_ct_dx", "ispy1", "ispy1_dicom", "soft_tissue_sarcoma", "hermessi"]
    assert len(set(keys)) == len(keys)
    assert case_data.ATTRIBUTE_PREFIX == scene_builder.ATTRIBUTE_PREFIX
    assert case_data.SUBJECT_HIERARCHY_UID_NAME == scene_builder.SUBJECT_HIERARCHY_UID_NAME


@pytest.mark.parametrize("collection_class", COLLECTION_CLASSES, ids=_id)
def test_discover_read_check_put_unload(collection_class: Type[Collection], headless: Any,
                                       sample_roots: Dict[str, Path],
                                       tmp_path_factory: pytest.TempPathFactory) -> None:
    _require_contract(collection_class)
    root = _sample_root(collection_class, sample_roots, tmp_path_factory)
    assert collection_class.looks_for, "the 'holds no collection' message needs what detection looks for"
    browser = CollectionBrowser(headless.scene)
    collection = browser.open(root)
    assert type(collection) is collection_class, "detection picks the collection its sample was written for"

    cases = browser.cases()
    assert cases and [case.case_id for case in cases] == sorted(case.case_id for case in cases)
    record_type = collection_class.record_type
    assert record_type is not CaseRecord and issubclass(record_type, CaseRecord)
    for case in cases:
        assert type(case) is record_type
        assert not isinstance(getattr(case, "files", None), dict), "typed fields, not a dict of files"
        assert case.collection == collection_class.key and case.root == root
        assert case.source_paths(), f"{case.case_id}: the record names the files it was found in"

    scene = headless.scene
    for case in cases:
        before = _scene_state(scene)
        data = collection.read_case(case)
        findings = collection.check_case(data)
        assert _scene_state(scene) == before, f"{case.case_id}: reading or checking touched the scene"
        assert isinstance(data, CaseData) and data.case is case
        assert data.volumes, f"{case.case_id}: no volume read"
        assert all(isinstance(finding, Finding) for finding in [*data.findings, *findings])
        assert len({volume.key for volume in data.volumes}) == len(data.volumes), "volume keys are unique"
        for segmentation in data.segmentations:
            reference = data.volume(segmentation.reference)
            for spec in segmentation.segments:
                if spec.offset is None and spec.ijk_to_ras is None:
                    assert spec.mask.shape == reference.voxels.shape, (case.case_id, spec.name)

        data.findings.extend(findings)
        loaded = browser.put_case(data)
        assert [node.GetName() for node in loaded.volumes] == [volume.name for volume in data.volumes]
        assert [node.GetName() for node in loaded.segmentations] == [seg.name for seg in data.segmentations]
        for node, segmentation in zip(loaded.segmentations, data.segmentations):
            assert node.GetSegmentation().GetNumberOfSegments() == len(segmentation.segments)
        assert len(loaded.rois) == len(data.rois)
        hierarchy = scene.GetSubjectHierarchyNode()
        for node, volume in zip(loaded.volumes, data.volumes):
            if volume.placement.patient_id:
                item = hierarchy.GetItemByDataNode(node)
                patient = hierarchy.GetItemByUID(volume.placement.uid_name, volume.placement.patient_id)
                assert patient and hierarchy.GetItemAncestorAtLevel(item, "Patient") == patient, node.GetName()
        assert loaded.findings == data.findings

        browser.unload_case(case.case_id)
        assert _scene_state(scene) == before, f"{case.case_id}: unloading left nodes or hierarchy items behind"

    assert all(isinstance(finding, Finding) for finding in collection.check_collection(cases, []))

    # Read -> check -> put is also what loading does.
    loaded = browser.load_case(cases[0].case_id)
    assert loaded.data is not None and loaded.data.case is cases[0]
    browser.unload_case(cases[0].case_id)


@pytest.mark.parametrize("collection_class", COLLECTION_CLASSES, ids=_id)
def test_import_and_detect_are_light(collection_class: Type[Collection], sample_roots: Dict[str, Path],
                                    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    _require_contract(collection_class)
    root = _sample_root(collection_class, sample_roots, tmp_path_factory)
    (tmp_path / "unrelated").mkdir()
    script = textwrap.dedent(f"""
        import importlib, json, sys
        from pathlib import Path
        module = importlib.import_module({collection_class.__module__!r})
        collection_class = next(c for c in module.COLLECTIONS if c.key == {collection_class.key!r})
        detected = [collection_class.detect(Path({str(root)!r})), collection_class.detect(Path({str(tmp_path)!r}))]
        forbidden = {list(LIGHT_IMPORT_FORBIDDEN)!r}
        heavy = sorted({{name.split(".")[0] for name in sys.modules}} & set(forbidden))
        print(json.dumps({{"detected": detected, "heavy": heavy}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={"PYTHONPATH": str(LIBRARY), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["detected"] == [True, False]
    assert outcome["heavy"] == [], f"importing {collection_class.__module__} and detecting loaded {outcome['heavy']}"


# ---------------------------------------------------------------------------------------------- the registry
def test_a_folder_with_no_collection_is_named_with_what_each_collection_looks_for(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing to see")
    (tmp_path / "scans").mkdir()
    with pytest.raises(NotACollectionError) as raised:
        registry.open_collection(tmp_path)
    message = str(raised.value)
    assert str(tmp_path) in message
    for collection_class in COLLECTION_CLASSES:
        assert collection_class.title in message
        if collection_class.looks_for:
            assert collection_class.looks_for in message
    assert "found there: 2 entries: notes.txt, scans/" in message
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "scans").rmdir()
    with pytest.raises(NotACollectionError, match="found there: nothing"):
        registry.open_collection(tmp_path)


def test_a_module_named_by_its_dotted_path_is_registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "lab_collections"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "marker_only.py").write_text(textwrap.dedent("""
        from pathlib import Path
        from SarcomaLungLiverBrowserLib.collections.base import Collection

        class MarkerOnly(Collection):
            key = "marker_only"
            title = "Marker-only test collection"
            looks_for = "a file named MARKER"

            @classmethod
            def detect(cls, root):
                return (Path(root) / "MARKER").is_file()

            def discover_cases(self, progress=None):
                return []

            def read_case(self, case, progress=None):
                raise NotImplementedError

        COLLECTIONS = [MarkerOnly]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "COLLECTION_MODULES", [*registry.COLLECTION_MODULES, "lab_collections.marker_only"])
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "MARKER").write_text("")
    assert registry.open_collection(folder).key == "marker_only"
    assert registry.get_collection_class("marker_only").title == "Marker-only test collection"


def test_registering_refuses_what_is_not_a_collection_or_a_taken_key() -> None:
    with pytest.raises(TypeError, match="not a subclass"):
        registry.register_collection(dict)  # type: ignore[arg-type]
    taken = type("AnotherCrlm", (NpyBoxCollection,), {"key": "crlm"})
    with pytest.raises(ValueError, match="'crlm'.*already used"):
        registry.register_collection(taken)
    assert taken not in registry.collection_classes()


# ---------------------------------------------------------------------------------------------- a seventh collection
@dataclasses.dataclass
class NpyBoxCase(CaseRecord):
    """A case of the throw-away collection: one volume and its box list."""

    volume_file: Optional[Path] = None
    boxes_file: Optional[Path] = None

    def location(self) -> Optional[Path]:
        return self.volume_file.parent if self.volume_file else None


class NpyBoxCollection(Collection):
    """Throw-away collection: ``<root>/npy_boxes.json`` marks it; ``<case>/volume.npy`` + ``<case>/boxes.json``.

    ``boxes.json`` holds ``{"spacing": [sx, sy, sz], "boxes": [{"label", "center_ijk", "size_ijk"}]}``.
    """

    key = "npy_boxes"
    title = "NPY volumes with JSON boxes (test)"
    looks_for = "a file npy_boxes.json and case folders with volume.npy and boxes.json"
    record_type = NpyBoxCase

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (Path(root) / "npy_boxes.json").is_file()

    def discover_cases(self, progress: Optional[ProgressCallback] = None) -> List[NpyBoxCase]:
        return [NpyBoxCase(self.key, folder.name, self.root, diagnosis="test", summary={"files": 2},
                           volume_file=folder / "volume.npy", boxes_file=folder / "boxes.json")
                for folder in sorted(self.root.iterdir()) if (folder / "volume.npy").is_file()]

    def read_case(self, case: NpyBoxCase, progress: Optional[ProgressCallback] = None) -> CaseData:
        voxels = np.load(case.volume_file)
        description = json.loads(case.boxes_file.read_text())
        ijk_to_ras = np.diag([*description["spacing"], 1.0])
        placement = Placement(case.case_id, case.case_id, uid_name=case_data.SUBJECT_HIERARCHY_UID_NAME)
        data = CaseData(case=case, metrics={"boxes": len(description["boxes"])})
        data.volumes.append(VolumeData("volume", f"{case.case_id} volume", voxels, ijk_to_ras, placement))
        for index, box in enumerate(description["boxes"]):
            center = ijk_to_ras[:3, :3] @ np.asarray(box["center_ijk"], float)
            size = np.abs(ijk_to_ras[:3, :3] @ np.asarray(box["size_ijk"], float))
            data.rois.append(RoiData(f"box{index}", f"{case.case_id} {box['label']}", center, size,
                                     placement=placement, attributes={"label": box["label"]}))
        import pandas as pd

        data.tables.append(TableData("boxes", f"{case.case_id} boxes", pd.DataFrame(description["boxes"]),
                                     placement))
        data.provenance["shape"] = voxels.shape
        return data

    def check_case(self, data: CaseData) -> List[Finding]:
        shape_kji = data.provenance["shape"]
        findings = []
        for roi in data.rois:
            ijk = roi.center / np.diag(data.volumes[0].ijk_to_ras)[:3]
            if np.any(ijk < 0) or np.any(ijk >= np.asarray(shape_kji[::-1])):
                findings.append(Finding(WARNING, "npy_boxes.box_outside_volume", f"{roi.name} lies outside the volume",
                                        case_id=data.case.case_id, node_name=roi.name, path=str(data.case.boxes_file)))
        return findings


def _write_npy_box_collection(root: Path) -> Path:
    root.mkdir()
    (root / "npy_boxes.json").write_text("{}")
    for case_id, centre in (("case_a", [4, 4, 2]), ("case_b", [40, 4, 2])):
        folder = root / case_id
        folder.mkdir()
        np.save(folder / "volume.npy", np.arange(8 * 8 * 4, dtype=np.int16).reshape(4, 8, 8))
        (folder / "boxes.json").write_text(json.dumps({"spacing": [0.5, 0.5, 2.0], "boxes": [
            {"label": "lesion", "center_ijk": centre, "size_ijk": [2, 2, 1]},
            {"label": "node", "center_ijk": [2, 2, 1], "size_ijk": [1, 1, 1]}]}))
    return root


@pytest.fixture
def npy_box_collection() -> Any:
    registry.register_collection(NpyBoxCollection)  # the one line a new collection needs
    try:
        yield NpyBoxCollection
    finally:
        registry.unregister_collection(NpyBoxCollection)
    assert NpyBoxCollection not in registry.collection_classes()


def test_a_seventh_collection_is_one_class_and_one_line(npy_box_collection: Any, headless: Any, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    root = _write_npy_box_collection(tmp_path / "boxes")

    # Index, through the command line and the browser.
    assert cli.main(["--no-cache", "index", str(root), "--csv", str(tmp_path / "cases.csv")]) == 0
    with open(tmp_path / "cases.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["collection"], row["case_id"], row["summary"]) for row in rows] == [
        ("npy_boxes", "case_a", "files: 2"), ("npy_boxes", "case_b", "files: 2")]

    # Load into the scene and unload again.
    browser = CollectionBrowser(headless.scene)
    assert type(browser.open(root)) is NpyBoxCollection
    assert list(cases_table(browser.cases())["case_id"]) == ["case_a", "case_b"]
    before = _scene_state(headless.scene)
    loaded = browser.load_case("case_a")
    assert [node.GetName() for node in loaded.volumes] == ["case_a volume"]
    assert [node.GetName() for node in loaded.rois] == ["case_a lesion", "case_a node"]
    assert loaded.rois[0].GetSize() == pytest.approx((1.0, 1.0, 2.0))
    assert [node.GetName() for node in loaded.tables] == ["case_a boxes"]
    assert loaded.tables[0].GetTable().GetNumberOfRows() == 2
    hierarchy = headless.scene.GetSubjectHierarchyNode()
    assert hierarchy.GetItemName(hierarchy.GetItemParent(hierarchy.GetItemByDataNode(loaded.volumes[0]))) == "case_a"
    assert loaded.findings == [] and loaded.metrics["boxes"] == 2
    browser.unload_case("case_a")
    assert _scene_state(headless.scene) == before

    # QA over the whole collection, then the report.
    collection = registry.open_collection(root)
    result = run_collection_qa(collection)
    assert {case.case_id: case.status for case in result.cases} == {"case_a": "ok", "case_b": "warnings"}
    outside = result.case("case_b").findings
    assert [(f.check, f.node_name) for f in outside] == [("npy_boxes.box_outside_volume", "case_b lesion")]
    written = export_review(tmp_path / "report", collection, qa_result=result)
    assert sorted(path.name for path in written) == ["findings.csv", "report.html", "review.csv"]
    with open(tmp_path / "report" / "review.csv", newline="") as stream:
        review = {row["case_id"]: row for row in csv.DictReader(stream)}
    assert review["case_a"]["collection"] == "npy_boxes" and review["case_b"]["qa_status"] == "warnings"
    findings_csv = (tmp_path / "report" / "findings.csv").read_text()
    assert "npy_boxes.box_outside_volume" in findings_csv and "case_b lesion lies outside the volume" in findings_csv
    html = (tmp_path / "report" / "report.html").read_text()
    assert "NPY volumes with JSON boxes (test)" in html and "case_b" in html


def test_a_broken_case_of_the_seventh_collection_is_a_finding_not_a_crash(npy_box_collection: Any,
                                                                       tmp_path: Path) -> None:
    root = _write_npy_box_collection(tmp_path / "boxes")
    (root / "case_b" / "volume.npy").write_bytes(b"not numpy")
    result = run_collection_qa(registry.open_collection(root))
    assert result.case("case_a").status == "ok"
    broken = result.case("case_b")
    assert broken.status == "errors" and not broken.loaded
    assert f"from {root / 'case_b'}" in broken.findings[0].message  # the case's folder, from its record
