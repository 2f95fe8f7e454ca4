"""The same DICOM files in every download layout give the same cases and the same scenes.

Cases are found by their headers (PatientID, study, series, modality, SOP
class), never by folder names. Each data set here -- real public files from
``../shared/external_testdata`` (mirp's Soft-tissue-Sarcoma and CRLM-CT-1004,
dcmqi's and highdicom's SEGs on their CTs) and the generated sample
collections -- is laid out as NBIA, idc-index, IDC's flat download,
series-UID folders, arbitrary folder names, one folder per patient with its
CT and SEG/RTSTRUCT side by side, and a collection inside a download folder.
The collection is detected from the files (``registry.open_collection``), and
the case tables (without the layout column and the location) and the
described scenes of loaded cases must equal those of the NBIA layout.

Files keep one name in every layout (their SOPInstanceUID, as IDC's flat
downloads need unique names), so messages that name files compare equal;
folder paths in messages and attributes are compared as ``<folder>``.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

import pydicom
import pytest

from conftest import require_shared_data
from scene_snapshot import describe_load, normalised
from SarcomaLungLiverBrowserLib import registry
from SarcomaLungLiverBrowserLib.collections.crlm import CrlmCollection
from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import LungPetCtDxCollection
from SarcomaLungLiverBrowserLib.collections.soft_tissue_sarcoma import SoftTissueSarcomaCollection
from SarcomaLungLiverBrowserLib.errors import NotACollectionError
from SarcomaLungLiverBrowserLib.formats import dicom_inventory
from SarcomaLungLiverBrowserLib.samples import crlm as crlm_sample
from SarcomaLungLiverBrowserLib.samples import lung_pet_ct_dx as lung_sample
from SarcomaLungLiverBrowserLib.samples import soft_tissue_sarcoma as sts_sample
from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

MIRP = Path("oncoray__mirp") / "test" / "data"
DCMQI = Path("QIICR__dcmqi") / "data" / "segmentations"
HIGHDICOM = Path("ImagingDataCommons__highdicom") / "data" / "test_files"
CT2 = Path("pypi__pydicom-3.0.2") / "pydicom" / "data" / "test_files" / "dicomdirtests" / "77654033" / "CT2"

LAYOUTS = ("idc", "flat", "series_uid", "arbitrary_names", "patient_folders_with_annotations", "inside_download")


# ---------------------------------------------------------------------------------------------- the files
class Instance:
    """A DICOM file and the header facts a layout is built from (read with pydicom, not the code under test)."""

    def __init__(self, path: Path) -> None:
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
        self.path = path
        self.patient_id = str(dataset.PatientID)
        self.study_uid = str(dataset.StudyInstanceUID)
        self.series_uid = str(dataset.SeriesInstanceUID)
        self.modality = str(dataset.Modality)
        self.series_number = str(dataset.get("SeriesNumber", "") or "0")
        self.description = re.sub(r"[^A-Za-z0-9]+", "-", str(dataset.get("SeriesDescription", "")))[:40] or "NA"
        self.name = f"{dataset.SOPInstanceUID}.dcm"


def _place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # the same bytes without copying them
    except OSError:
        shutil.copy2(source, target)


def _indexes(values: Sequence[str]) -> Dict[str, int]:
    return {value: index for index, value in enumerate(sorted(set(values)))}


def lay_out(instances: Sequence[Instance], root: Path, layout: str, collection_folder: str) -> Path:
    """Hard-link ``instances`` below ``root`` in ``layout``; returns the folder the user would choose."""
    patients = _indexes([i.patient_id for i in instances])
    studies = _indexes([i.study_uid for i in instances])
    for instance in instances:
        if layout == "nbia":
            folder = (root / "manifest-1600000000000" / collection_folder / instance.patient_id
                      / f"01-01-2000-NA-study-{studies[instance.study_uid]:05d}"
                      / f"{instance.series_number}.000000-{instance.description}-{instance.series_uid[-5:]}")
        elif layout in ("idc", "inside_download"):
            base = root / "Downloads" / "2024-05-idc" if layout == "inside_download" else root
            folder = (base / collection_folder.lower().replace("-", "_") / instance.patient_id / instance.study_uid
                      / f"{instance.modality}_{instance.series_uid}")
        elif layout == "flat":
            folder = root
        elif layout == "series_uid":
            folder = root / instance.series_uid
        elif layout == "arbitrary_names":
            folder = (root / "from_the_scanner" / f"subject_{patients[instance.patient_id]}"
                      / f"visit_{studies[instance.study_uid]}" / f"scan_{instance.series_uid[-6:]}")
        elif layout == "patient_folders_with_annotations":
            folder = root / f"person_{patients[instance.patient_id]}"  # CT, PET, MR, SEG, RTSTRUCT together
        else:
            raise ValueError(layout)
        _place(instance.path, folder / instance.name)
    if layout == "inside_download":
        (root / "Downloads" / "notes.txt").write_text("not DICOM")
        (root / "Downloads" / "other_project").mkdir()
    return root


# ---------------------------------------------------------------------------------------------- data sets
class DataSet:
    """Files to lay out, extra files for the collection root, the collection expected and the cases to load."""

    def __init__(self, name: str, files: List[Path], collection: type, folder_name: str, load: Sequence[str],
                 extras: Callable[[Path], None] = lambda root: None, clinical: bool = False) -> None:
        self.name = name
        self.instances = [Instance(path) for path in sorted(files)]
        self.collection = collection
        self.folder_name = folder_name
        self.load = list(load)
        self.extras = extras
        self.clinical = clinical


def _dicom_files(folder: Path) -> List[Path]:
    return sorted(path for path in folder.rglob("*.dcm") if "_ground_truth" not in path.parts)


def _real_sts(data: Path) -> DataSet:
    files = sorted(data.glob(str(MIRP / "sts_images" / "STS_00*" / "*" / "dicom" / "*" / "*.dcm")))
    return DataSet("real_sts", files, SoftTissueSarcomaCollection, "Soft-tissue-Sarcoma", ["STS_002"])


def _real_crlm(data: Path) -> DataSet:
    files = sorted((data / MIRP / "ct_images_seg" / "CRLM-CT-1004" / "image").glob("*.dcm"))
    return DataSet("real_crlm", files, CrlmCollection, "Colorectal-Liver-Metastases", ["CRLM-CT-1004"])


def _real_segs(data: Path) -> DataSet:
    """dcmqi's 3-slice CT with its liver and overlap SEGs; pydicom's CT2 with highdicom's SEGs on it."""
    files = [*sorted((data / DCMQI / "ct-3slice").glob("*.dcm")), data / DCMQI / "liver.dcm",
             data / DCMQI / "partial_overlaps.dcm", *sorted(path for path in (data / CT2).iterdir() if path.is_file()),
             *(data / HIGHDICOM / f"seg_image_ct_{kind}.dcm" for kind in ("binary", "binary_overlap",
                                                                           "binary_fractional"))]
    return DataSet("real_segs", files, CrlmCollection, "segmentations", ["77654033", "99000"])


# ---------------------------------------------------------------------------------------------- comparing
def case_rows(cases: Sequence[Any]) -> List[Tuple[str, str, str, Dict[str, Any]]]:
    """The case table without what legitimately differs by layout (the layout column and the folder)."""
    return [(case.collection, case.case_id, case.diagnosis,
             {key: str(value) for key, value in case.summary.items() if key != "layout"}) for case in cases]


def layout_free(description: Dict[str, Any], root: Path) -> Dict[str, Any]:
    """``description`` with every path below ``root`` written as ``<file NAME>`` or ``<folder>``."""
    pattern = re.compile(r"<root>(/[^\s'\",;:()\[\]]*)?")

    def path_free(match: "re.Match[str]") -> str:
        relative = (match.group(1) or "").strip("/")
        target = root / relative
        return f"<file {target.name}>" if relative and target.is_file() else "<folder>"

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(path_free, value)
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        return value

    described = walk(normalised(description))
    described["findings"] = sorted(described["findings"])
    return described


def load_described(collection: Any, case_id: str, root: Path) -> Dict[str, Any]:
    """The described scene of one case loaded alone into a fresh scene."""
    import slicer

    scene = slicer.vtkMRMLScene()
    builder = SceneBuilder(scene)
    try:
        loaded = collection.load_case(collection.find_case(case_id), builder)
        return layout_free(describe_load(scene, loaded, root), root)
    finally:
        scene.Clear(1)


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def shared_data() -> Path:
    from conftest import external_data_root

    root = external_data_root()
    if not root.is_dir():
        require_shared_data(f"real test files from other repositories not found at {root} (see Testing/README.md)")
    return root


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    base = tmp_path_factory.mktemp("generated")
    return {"crlm": crlm_sample.generate(base / "crlm"), "sts": sts_sample.generate(base / "sts"),
            "lung": lung_sample.generate(base / "lung")}


def _copy_files(matching: str) -> Callable[[Path, Path], None]:
    def copy(source_root: Path, root: Path) -> None:
        for path in sorted(source_root.rglob(matching)):
            if "_ground_truth" not in path.parts:
                shutil.copy2(path, root / path.name)
    return copy


def _generated_sets(generated: Dict[str, Path], shared_samples: Path) -> Dict[str, DataSet]:
    def lung_extras(root: Path) -> None:
        shutil.copytree(generated["lung"] / "Annotation", root / "Annotation")
        # Real VOC files of a patient whose images are not here: listed as a case that says so.
        shutil.copytree(shared_samples / "lung_pet_ct_dx_voc" / "A0002", root / "Annotation" / "A0002",
                        ignore=shutil.ignore_patterns("*.txt"))

    crlm_clinical = _copy_files("Colorectal-Liver-Metastases-Clinical-data*")
    sts_clinical = _copy_files("INFOclinical_STS*")
    return {
        "generated_crlm": DataSet("generated_crlm", _dicom_files(generated["crlm"]), CrlmCollection,
                                  "Colorectal-Liver-Metastases", ["CRLM-CT-1003"],
                                  lambda root: crlm_clinical(generated["crlm"], root), clinical=True),
        "generated_sts": DataSet("generated_sts", _dicom_files(generated["sts"]), SoftTissueSarcomaCollection,
                                 "Soft-tissue-Sarcoma", ["STS_001"],
                                 lambda root: sts_clinical(generated["sts"], root), clinical=True),
        "generated_lung": DataSet("generated_lung",
                                  [p for p in _dicom_files(generated["lung"]) if "Annotation" not in p.parts],
                                  LungPetCtDxCollection, "Lung-PET-CT-Dx", ["Lung_Dx-B0002"], lung_extras),
    }


_REFERENCE: Dict[str, Tuple[List[Any], Dict[str, Dict[str, Any]]]] = {}


def _open(data_set: DataSet, root: Path, layout: str) -> Tuple[Any, Path]:
    folder = lay_out(data_set.instances, root, layout, data_set.folder_name)
    data_set.extras(folder)
    dicom_inventory.forget_inventories()
    collection = registry.open_collection(folder)
    assert type(collection) is data_set.collection, f"{data_set.name} in the {layout} layout detected as " \
                                                    f"{type(collection).__name__}"
    return collection, folder


def _reference(data_set: DataSet, tmp_path_factory: pytest.TempPathFactory
               ) -> Tuple[List[Any], Dict[str, Dict[str, Any]]]:
    """Case rows and described scenes of the NBIA layout (computed once per data set)."""
    if data_set.name not in _REFERENCE:
        collection, root = _open(data_set, tmp_path_factory.mktemp(f"{data_set.name}_nbia"), "nbia")
        cases = collection.discover_cases()
        scenes = {case_id: load_described(collection, case_id, root) for case_id in data_set.load}
        _REFERENCE[data_set.name] = (case_rows(cases), scenes)
    return _REFERENCE[data_set.name]


def _check_layout(data_set: DataSet, layout: str, tmp_path: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> None:
    rows, scenes = _reference(data_set, tmp_path_factory)
    assert rows, f"{data_set.name}: no case found in the NBIA layout"
    collection, root = _open(data_set, tmp_path / layout, layout)
    assert case_rows(collection.discover_cases()) == rows
    for case_id in data_set.load:
        assert load_described(collection, case_id, root) == scenes[case_id], f"{case_id} in the {layout} layout"


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("which", ["real_sts", "real_crlm", "real_segs"])
def test_real_files_give_the_same_cases_and_scenes_in_every_layout(
        shared_data: Path, which: str, layout: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    data_set = {"real_sts": _real_sts, "real_crlm": _real_crlm, "real_segs": _real_segs}[which](shared_data)
    assert data_set.instances, f"no files for {which} in {shared_data}"
    _check_layout(data_set, layout, tmp_path, tmp_path_factory)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("which", ["generated_crlm", "generated_sts", "generated_lung"])
def test_generated_collections_give_the_same_cases_and_scenes_in_every_layout(
        generated: Dict[str, Path], shared_samples: Path, which: str, layout: str, tmp_path: Path,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    _check_layout(_generated_sets(generated, shared_samples)[which], layout, tmp_path, tmp_path_factory)
