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
from typing import Any, Callable, Dict, List, Sequence, Tuple

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


def test_a_patient_folder_chosen_directly_gives_that_patients_row(shared_data: Path, tmp_path: Path) -> None:
    data_set = _real_sts(shared_data)
    root = lay_out(data_set.instances, tmp_path / "nbia", "nbia", data_set.folder_name)
    every = case_rows(registry.open_collection(root).discover_cases())
    patients = sorted((root / "manifest-1600000000000" / data_set.folder_name).iterdir())
    assert [p.name for p in patients] == ["STS_001", "STS_002", "STS_003"]
    for patient, row in zip(patients, every):
        collection = registry.open_collection(patient)
        assert isinstance(collection, SoftTissueSarcomaCollection)
        assert case_rows(collection.discover_cases()) == [row]


def test_ct_and_seg_named_by_no_collection_load_as_ct_with_seg(shared_data: Path, tmp_path: Path) -> None:
    """No PatientID names a collection: the SEGs on their CTs decide (both real patients, in one folder)."""
    data_set = _real_segs(shared_data)
    root = lay_out(data_set.instances, tmp_path / "flat", "flat", data_set.folder_name)
    collection = registry.open_collection(root)
    assert isinstance(collection, CrlmCollection)
    cases = {case.case_id: case for case in collection.discover_cases()}
    assert sorted(cases) == ["77654033", "99000"]
    assert cases["77654033"].summary["SEG"] == 3 and cases["99000"].summary["SEG"] == 2
    assert all(case.summary["layout"] == "shared" for case in cases.values())


def test_a_folder_of_no_collection_says_what_its_headers_hold(shared_data: Path, tmp_path: Path) -> None:
    ct_only = [instance for instance in _real_segs(shared_data).instances if instance.modality == "CT"]
    root = lay_out(ct_only, tmp_path / "scans", "series_uid", "scans")
    (root / "readme.txt").write_text("two CTs")
    dicom_inventory.forget_inventories()
    with pytest.raises(NotACollectionError) as raised:
        registry.open_collection(root)
    message = str(raised.value)
    assert "found 7 DICOM file(s) of 2 patient(s) (IDs: 77654033, 99000; modalities: CT)" in message
    assert "none matching CRLM-CT-nnnn or Lung_Dx-Xnnnn or ISPY1_nnnn or STS_nnn" in message
    assert "no DICOM SEG or RTSTRUCT" in message
    assert "readme.txt" in message and str(root) in message


def test_detection_and_discovery_read_the_headers_once(generated: Dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Three collections detect by headers and one discovers: one header scan (the tree is unchanged)."""
    data_set = DataSet("lung", [p for p in _dicom_files(generated["lung"]) if "Annotation" not in p.parts],
                       LungPetCtDxCollection, "Lung-PET-CT-Dx", [])
    root = lay_out(data_set.instances, tmp_path / "flat", "flat", "x")
    dicom_inventory.forget_inventories()
    scans: List[Path] = []
    real_scan = dicom_inventory.scan_folder
    monkeypatch.setattr(dicom_inventory, "scan_folder", lambda folder, *a, **k: scans.append(folder) or
                        real_scan(folder, *a, **k))
    collection = registry.open_collection(root)  # CRLM, then Lung detect from the headers
    assert isinstance(collection, LungPetCtDxCollection)
    assert [case.case_id for case in collection.discover_cases()] == ["Lung_Dx-A0001", "Lung_Dx-B0002",
                                                                      "Lung_Dx-G0003"]
    assert scans == [root]
    (root / next(root.iterdir()).name).unlink()  # a file removed: the headers are read again
    collection.discover_cases()
    assert scans == [root, root]


def test_index_counts_series_on_disk_and_names_what_metadata_lists_but_is_missing(
        generated: Dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "lung"
    shutil.copytree(generated["lung"], root)
    before = {case.case_id: case for case in LungPetCtDxCollection(root).discover_cases()}
    patient = root / lung_sample.MANIFEST / "Lung-PET-CT-Dx" / "Lung_Dx-A0001"
    series_folder = sorted(folder for folder in patient.glob("*/*") if folder.is_dir())[0]
    removed = Instance(next(series_folder.glob("*.dcm")))
    removed_sops = {pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID
                    for p in series_folder.glob("*.dcm")}
    shutil.rmtree(series_folder)
    annotated = root / "Annotation" / "A0001"
    orphans = sorted(p.name for p in annotated.glob("*.xml") if p.stem in removed_sops)
    assert orphans, "the removed series carried boxes"
    dicom_inventory.forget_inventories()
    case = {case.case_id: case for case in LungPetCtDxCollection(root).discover_cases()}["Lung_Dx-A0001"]
    assert case.summary["series"] == before["Lung_Dx-A0001"].summary["series"] - 1  # from disk, not metadata.csv
    assert case.summary["missing series"] == 1
    missing = [problem for problem in case.problems if "not on disk (not downloaded?)" in problem]
    assert len(missing) == 1 and removed.series_uid in missing[0] and "metadata.csv" in missing[0]
    # The VOC files of the missing series: one summary with their count, not one message per file.
    assert case.summary["xml_without_image"] == len(orphans)
    assert len(case.unmatched_xml) == 1
    assert f"{len(orphans)} VOC file(s) name images of Lung_Dx-A0001 that are not on disk" in case.unmatched_xml[0]


def test_real_voc_files_of_a_patient_without_images_are_listed(generated: Dict[str, Path], shared_samples: Path,
                                                               tmp_path: Path) -> None:
    root = tmp_path / "lung"
    shutil.copytree(generated["lung"], root)
    shutil.copytree(shared_samples / "lung_pet_ct_dx_voc" / "A0002", root / "Annotation" / "A0002",
                    ignore=shutil.ignore_patterns("*.txt"))
    cases = {case.case_id: case for case in LungPetCtDxCollection(root).discover_cases()}
    orphan = cases["Lung_Dx-A0002"]
    assert orphan.summary["series"] == 0 and orphan.summary["xml_files"] == 10 and not orphan.image_folders
    assert orphan.problems == [f"{root / 'Annotation' / 'A0002'}: 10 VOC file(s) of Lung_Dx-A0002, but no DICOM "
                               f"image of Lung_Dx-A0002 is below {root}; its boxes cannot be placed"]


def test_collection_walks_survive_link_loops_and_special_files(generated: Dict[str, Path], tmp_path: Path) -> None:
    """Symbolic-link loops and FIFOs where files or folders are expected are skipped, not followed or read."""
    expected = {}
    for key, collection_class in (("crlm", CrlmCollection), ("sts", SoftTissueSarcomaCollection),
                                  ("lung", LungPetCtDxCollection)):
        root = tmp_path / key
        shutil.copytree(generated[key], root, symlinks=True)
        dicom_inventory.forget_inventories()
        expected[key] = case_rows(collection_class(root).discover_cases())
        (root / "loop.dcm").symlink_to(root / "loop.dcm")
        (root / "around").symlink_to(root, target_is_directory=True)
        os.mkfifo(root / "metadata.csv")
        os.mkfifo(root / "INFOclinical_STS_pipe.xlsx")
        annotation = root / "Annotation" / "A0001"
        if annotation.is_dir():
            os.mkfifo(annotation / "1.2.3.xml")
            (annotation / "self").symlink_to(annotation / "self")
        dicom_inventory.forget_inventories()
        assert type(registry.open_collection(root)) is collection_class
        assert case_rows(collection_class(root).discover_cases()) == expected[key]


# ---------------------------------------------------------------------------------------------- ISPY1 in DICOM
# The ISPY1 DICOM sample (GE phases in one series, Siemens one series per phase, SEGs on maps and DCE series)
# and the real-file ISPY1 cases of test_ispy1_dicom.py: mirp's real TCIA MR series with a SEG generated on it,
# and dcmqi's real SEG on its real CT. The real files' PatientIDs are relabelled as ISPY1 patients (ISPY1_9001,
# ISPY1_9002; pixels and geometry untouched), since in a flat or series-UID layout only the headers can say
# which patient a file belongs to.
from SarcomaLungLiverBrowserLib.collections.ispy1_dicom import Ispy1DicomCollection  # noqa: E402
from SarcomaLungLiverBrowserLib.samples import ispy1_dicom as ispy1_sample  # noqa: E402

ISPY1_REAL_MR = MIRP / "sts_images" / "STS_001" / "MR_T1" / "dicom" / "image"
ISPY1_REAL_SEG = DCMQI / "24x38x3"


def _relabelled(files: Sequence[Path], target: Path, patient_id: str) -> List[Path]:
    """Copies of ``files`` in ``target`` whose PatientID is ``patient_id`` (nothing else changed)."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for index, path in enumerate(files):
        dataset = pydicom.dcmread(str(path))
        dataset.PatientID = patient_id
        copy = target / f"{index:04d}_{path.stem}.dcm"
        dataset.save_as(str(copy))
        written.append(copy)
    return written


def _real_ispy1(data: Path, folder: Path) -> DataSet:
    """Real MR (59 slices) with a SEG drawn on it as ISPY1_9001; dcmqi's real SEG on its CT as ISPY1_9002."""
    import numpy as np

    from test_ispy1_dicom import _write_seg_on

    mr = _relabelled(sorted((data / ISPY1_REAL_MR).glob("*.dcm")), folder / "mr", "ISPY1_9001")
    assert len(mr) == 59
    ordered = sorted(mr, key=lambda p: float(pydicom.dcmread(str(p), stop_before_pixels=True).ImagePositionPatient[2]))
    reference = np.stack([pydicom.dcmread(str(p)).pixel_array for p in ordered])
    mask = np.zeros(reference.shape, bool)
    window = (slice(20, 30), slice(60, 90), slice(70, 100))
    mask[window] = reference[window] > np.median(reference[window])
    seg = _write_seg_on(ordered, mask, folder / "mr_seg" / "seg.dcm", "PE Segmentation thresh=70")
    ct = _relabelled(sorted((data / ISPY1_REAL_SEG / "image").glob("*.dcm")), folder / "ct", "ISPY1_9002")
    ct_seg = _relabelled([data / ISPY1_REAL_SEG / "seg" / "label.seg"], folder / "ct_seg", "ISPY1_9002")
    return DataSet("real_ispy1", [*mr, seg, *ct, *ct_seg], Ispy1DicomCollection, "ISPY1",
                   ["ISPY1_9001", "ISPY1_9002"])


@pytest.fixture(scope="module")
def ispy1_sets(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, DataSet]:
    generated_root = ispy1_sample.generate(tmp_path_factory.mktemp("ispy1_generated"))
    return {"generated_ispy1": DataSet("generated_ispy1", _dicom_files(generated_root), Ispy1DicomCollection,
                                       "ISPY1", ["ISPY1_1002", "ISPY1_1005"]),
            "real_ispy1": _real_ispy1(shared_data, tmp_path_factory.mktemp("ispy1_real"))}


def ispy1_case_data(collection: Any, case_id: str, root: Path) -> Dict[str, Any]:
    """What a case reads into, without the scene: volumes (name, shape, matrix, voxels' digest), segmentations
    (name, the volume they lie on, each segment's name, place, size and mask digest) and findings."""
    import hashlib

    import numpy as np

    data = collection.read_case(collection.find_case(case_id))
    data.findings.extend(collection.check_case(data))
    text_root = str(root)
    digest = lambda array: hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()  # noqa: E731
    described = {
        "volumes": [[volume.name, list(volume.voxels.shape), np.round(volume.ijk_to_ras, 6).tolist(),
                     digest(volume.voxels)] for volume in data.volumes],
        "segmentations": [[segmentation.name, data.volume(segmentation.reference).name,
                           [[segment.name, [int(v) for v in segment.offset], int(np.count_nonzero(segment.mask)),
                             digest(np.asarray(segment.mask, dtype=bool))] for segment in segmentation.segments]]
                          for segmentation in data.segmentations],
        "findings": [[f.severity, f.check, f.message.replace(text_root, "<root>"),
                      str(f.path or "").replace(text_root, "<root>"), f.node_name or "", f.segment_id or ""]
                     for f in data.findings],
    }
    return layout_free(described, root)


_ISPY1_REFERENCE: Dict[str, Tuple[List[Any], Dict[str, Any], Dict[str, Any]]] = {}


def _ispy1_reference(data_set: DataSet, tmp_path_factory: pytest.TempPathFactory
                     ) -> Tuple[List[Any], Dict[str, Any], Dict[str, Any]]:
    """Case rows, described scenes and CaseData of the NBIA layout (once per data set)."""
    if data_set.name not in _ISPY1_REFERENCE:
        collection, root = _open(data_set, tmp_path_factory.mktemp(f"{data_set.name}_nbia"), "nbia")
        rows = case_rows(collection.discover_cases())
        scenes = {case_id: load_described(collection, case_id, root) for case_id in data_set.load}
        datas = {case_id: ispy1_case_data(collection, case_id, root) for case_id in data_set.load}
        _ISPY1_REFERENCE[data_set.name] = (rows, scenes, datas)
    return _ISPY1_REFERENCE[data_set.name]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("which", ["generated_ispy1", "real_ispy1"])
def test_ispy1_dicom_gives_the_same_cases_case_data_and_scenes_in_every_layout(
        ispy1_sets: Dict[str, DataSet], which: str, layout: str, tmp_path: Path,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """IDC's flat download, series-UID folders, idc-index, arbitrary names...: the NBIA layout's cases."""
    data_set = ispy1_sets[which]
    rows, scenes, datas = _ispy1_reference(data_set, tmp_path_factory)
    assert [row[1] for row in rows] == data_set.load, f"{data_set.name}: the NBIA layout's cases"
    assert all(datas[case_id]["volumes"] and datas[case_id]["segmentations"] for case_id in data_set.load)
    collection, root = _open(data_set, tmp_path / layout, layout)
    assert case_rows(collection.discover_cases()) == rows
    for case_id in data_set.load:
        assert ispy1_case_data(collection, case_id, root) == datas[case_id], f"{case_id} in the {layout} layout"
        assert load_described(collection, case_id, root) == scenes[case_id], f"{case_id} in the {layout} layout"


def test_ispy1_dicom_patients_mixed_in_one_folder_are_two_cases(ispy1_sets: Dict[str, DataSet],
                                                               tmp_path: Path) -> None:
    data_set = ispy1_sets["generated_ispy1"]
    collection, root = _open(data_set, tmp_path / "flat", "flat")
    cases = {case.case_id: case for case in collection.discover_cases()}
    assert sorted(cases) == ["ISPY1_1002", "ISPY1_1005"]
    for case_id, case in cases.items():
        assert case.patient_folders == [root] and case.summary["layout"] == "shared"
        own = {i.series_uid for i in data_set.instances if i.patient_id == case_id}
        assert {series.series_instance_uid for series in case.images} | {
            seg.series_instance_uid for seg in case.segs} == own
    assert cases["ISPY1_1002"].summary["SEG"] == 3 and cases["ISPY1_1005"].summary["SEG"] == 4


@pytest.mark.parametrize("spelling", ["ispy1_1002", "ISPY1-1002"])
def test_ispy1_dicom_patient_id_spelled_differently_in_one_series_is_one_case_with_a_warning(
        ispy1_sets: Dict[str, DataSet], spelling: str, tmp_path: Path,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """One series (the PE1 map, a PE SEG lies on it) spells the PatientID otherwise: one case, the same data."""
    data_set = ispy1_sets["generated_ispy1"]
    _, _, datas = _ispy1_reference(data_set, tmp_path_factory)
    pe1 = [i for i in data_set.instances if i.patient_id == "ISPY1_1002" and i.description == "Dynamic-3dfgre-PE1"]
    assert len(pe1) == 20
    copies = _relabelled([instance.path for instance in pe1], tmp_path / "relabelled", spelling)
    relabelled = {instance.path: Instance(copy) for instance, copy in zip(pe1, copies)}
    for instance in pe1:
        relabelled[instance.path].name = instance.name  # the file keeps its name (its SOPInstanceUID)
    spelled = DataSet(f"{data_set.name}_spelled", [], data_set.collection, data_set.folder_name, data_set.load)
    spelled.instances = [relabelled.get(instance.path, instance) for instance in data_set.instances]
    data_set = spelled
    collection, root = _open(data_set, tmp_path / "flat", "flat")
    assert [case.case_id for case in collection.discover_cases()] == ["ISPY1_1002", "ISPY1_1005"]
    described = ispy1_case_data(collection, "ISPY1_1002", root)
    warnings = [f for f in described["findings"] if f[1] == "ispy1_dicom.patient_id_spelling"]
    assert len(warnings) == 1 and warnings[0][0] == "warning"
    assert f"20 file(s) give PatientID {spelling!r}, spelled differently from 'ISPY1_1002'" in warnings[0][2]
    assert any(f"<file {instance.name}>" in warnings[0][2] or instance.name in warnings[0][2] for instance in pe1)
    reference = datas["ISPY1_1002"]
    assert described["volumes"] == reference["volumes"] and described["segmentations"] == reference["segmentations"]
    new = [f for f in described["findings"] if f not in reference["findings"]]
    # The PE SEG on that map (PatientID ISPY1_1002) is also told apart from the map by its identity check.
    assert all(f[0] == "warning" and f[1] in ("ispy1_dicom.patient_id_spelling", "identity.patient_id")
               for f in new), new
    assert [f for f in reference["findings"] if f not in described["findings"]] == []


def test_ispy1_dicom_another_patients_seg_in_a_flat_folder_is_found_and_refused_by_name(
        ispy1_sets: Dict[str, DataSet], tmp_path: Path) -> None:
    """A SEG relabelled to a patient of no collection, drawn on ISPY1_1002's images, in IDC's flat download:
    no folder says whose it is, so it belongs to the case whose series it references and is refused there."""
    data_set = ispy1_sets["generated_ispy1"]
    tissue = next(i for i in data_set.instances if i.patient_id == "ISPY1_1002"
                  and i.description == "Breast-Tissue-Segmentation")
    (copy,) = _relabelled([tissue.path], tmp_path / "relabelled", "STS_031")
    foreign = Instance(copy)
    foreign.name = tissue.name
    relabelled = DataSet(f"{data_set.name}_foreign_seg", [], data_set.collection, data_set.folder_name, [])
    relabelled.instances = [foreign if instance is tissue else instance for instance in data_set.instances]
    collection, root = _open(relabelled, tmp_path / "flat", "flat")
    cases = {case.case_id: case for case in collection.discover_cases()}
    assert sorted(cases) == ["ISPY1_1002", "ISPY1_1005"]
    assert (root / tissue.name) in [seg.path for seg in cases["ISPY1_1002"].segs]
    data = collection.read_case(cases["ISPY1_1002"])
    assert "ISPY1_1002 1984-11-02 Breast Tissue Segmentation" not in [s.name for s in data.segmentations]
    refused = [f for f in data.findings if f.check == "identity.patient_id"]
    assert len(refused) == 1 and refused[0].severity == "error" and "STS_031" in refused[0].message
    assert tissue.name in refused[0].message and "refused" in refused[0].message


def test_ispy1_dicom_detection_discovery_and_reading_walk_the_headers_once(
        ispy1_sets: Dict[str, DataSet], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat ISPY1 download: every collection's detection, the discovery and reading a case take one inventory
    scan of the tree (the case is read from the headers discovery found, not by scanning its folders again)."""
    root = lay_out(ispy1_sets["generated_ispy1"].instances, tmp_path / "flat", "flat", "x")
    dicom_inventory.forget_inventories()
    scans: List[Path] = []
    real_scan = dicom_inventory.scan_folder
    monkeypatch.setattr(dicom_inventory, "scan_folder", lambda folder, *a, **k: scans.append(folder) or
                        real_scan(folder, *a, **k))
    collection = registry.open_collection(root)  # CRLM and Lung-PET-CT-Dx look at the headers first
    assert isinstance(collection, Ispy1DicomCollection)
    cases = collection.discover_cases()
    assert [case.case_id for case in cases] == ["ISPY1_1002", "ISPY1_1005"]
    data = collection.read_case(cases[0])
    assert data.volumes and data.segmentations
    assert scans == [root]
