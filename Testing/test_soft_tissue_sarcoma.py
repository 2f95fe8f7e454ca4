"""TCIA Soft-tissue-Sarcoma: generated NBIA + IDC sample with MIM-style RTSTRUCTs, and mirp's real subset."""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared_data
from scene_snapshot import describe_load, golden, normalised
import slicer.util
import vtk

import SarcomaLungLiverBrowserLib
from SarcomaLungLiverBrowserLib.collections.base import LIGHT_IMPORT_FORBIDDEN

from SarcomaLungLiverBrowserLib.collections.hermessi import HermessiSarcomaMriCollection
from SarcomaLungLiverBrowserLib.collections.soft_tissue_sarcoma import (
    SarcomaCase, SoftTissueSarcomaCollection, normalise_roi_name,
)
from SarcomaLungLiverBrowserLib.scene.put_case import put_case
from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder, segment_mask
from SarcomaLungLiverBrowserLib.samples import soft_tissue_sarcoma as sample

MIRP_STS = Path("oncoray__mirp") / "test" / "data" / "sts_images"

#: RTSTRUCT SeriesDescription -> the image it was drawn on (as the generator wrote them).
EXPECTED_REFERENCES = {
    "STS_001": {"RTstruct_CT": "CT CT IMAGES - RESEARCH", "RTstruct_PET": "PT PET AC",
                "RTstruct_T1": "MR AXIAL SE T1 - RESEARCH", "RTstruct_T2FS": "MR AXIAL SE T2 FAT SAT - RESEARCH",
                "RTstruct_AlignedT!toPET": "MR Aligned_T1toPET_BOX",
                "RTstruct_AlignedT2FStoPET": "MR Aligned_T2FStoPET_BOX"},
    "STS_002": {"RTstruct_CT": "CT CT IMAGES - RESEARCH", "RTStruct_PET": "PT PET AC",
                "RTstruct_T1": "MR AXIAL SE T1 - RESEARCH", "RTstruct_STIR": "MR AXIAL STIR - RESEARCH",
                "RTstruct_AlignedT1toPET_BOX": "MR Aligned_T1toPET_BOX",
                "RTstruct_Aligned_STIRtoPET": "MR Aligned_STIRtoPET_BOX"},
}


@pytest.fixture(scope="module")
def sts_root(tmp_path_factory) -> Path:
    return sample.generate(tmp_path_factory.mktemp("sts"))


def copy_of(root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy" / root.name
    shutil.copytree(root, target)
    return target


def band(mask: np.ndarray) -> int:
    padded = np.pad(mask, ((0, 0), (1, 1), (1, 1)))
    neighbours = [padded[:, 2:, 1:-1], padded[:, :-2, 1:-1], padded[:, 1:-1, 2:], padded[:, 1:-1, :-2]]
    return int(((mask & ~np.logical_and.reduce(neighbours)) | (~mask & np.logical_or.reduce(neighbours))).sum())


@pytest.mark.parametrize("name, expected", [
    ("GTV_Mass", "GTV_Mass"), ("GTV_Edema", "GTV_Edema"), ("GTV_Research", "GTV_Mass"),
    ("GTV_Res+edema", "GTV_Edema"), ("GTV_Mass_MR_T1", "GTV_Mass"), ("GTV_Mass_CT", "GTV_Mass"),
    ("gtv_mass_pet", "GTV_Mass"), ("BODY", "BODY"),
])
def test_roi_names_are_normalised(name, expected):
    assert normalise_roi_name(name) == expected


def test_detect_and_discover(sts_root):
    assert SoftTissueSarcomaCollection.detect(sts_root)
    assert not HermessiSarcomaMriCollection.detect(sts_root)
    cases = SoftTissueSarcomaCollection(sts_root).discover_cases()
    assert [c.case_id for c in cases] == ["STS_001", "STS_002"]
    assert [c.diagnosis for c in cases] == ["Liposarcoma", "Leiomyosarcoma"]
    assert cases[0].summary["Site of primary STS"] == "Thigh"
    # STS_001 is in the NBIA tree, STS_002 in the IDC tree.
    assert "manifest-" in str(cases[0].folders[0]) and "idc" in cases[1].folders[0].parts


def test_detection_imports_nothing_heavy(sts_root):
    """Importing the module and detecting a folder loads none of VTK, slicer, highdicom, pandas, lxml..."""
    code = ("import sys\n"
            "from pathlib import Path\n"
            "from SarcomaLungLiverBrowserLib.collections.soft_tissue_sarcoma import SoftTissueSarcomaCollection\n"
            f"assert SoftTissueSarcomaCollection.detect(Path({str(sts_root)!r}))\n"
            f"print(sorted(m for m in {LIGHT_IMPORT_FORBIDDEN!r} if m in sys.modules))\n")
    library = str(Path(SarcomaLungLiverBrowserLib.__file__).parents[1])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": library}, check=True)
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.parametrize("case_id", ["STS_001", "STS_002"])
def test_read_case_is_plain_data_and_put_case_gives_the_nodes_of_before(sts_root, builder, case_id):
    """read_case touches no scene; put_case of its data creates what the loader created before the contract.

    The golden files were written by the loader as it was before the conversion
    (node names, hierarchy, windows, colours, attributes, segments and their
    voxel counts, findings).
    """
    collection = SoftTissueSarcomaCollection(sts_root)
    case = collection.find_case(case_id)
    assert isinstance(case, SarcomaCase) and case.folders and case.clinical_table is not None
    nodes_before = builder.scene.GetNumberOfNodes()
    data = collection.read_case(case)
    assert builder.scene.GetNumberOfNodes() == nodes_before
    assert len(pickle.loads(pickle.dumps(data)).segmentations) == len(data.segmentations) == 6
    assert set(data.provenance["reference_volumes"]) == {volume.key for volume in data.volumes}
    for segmentation in data.segmentations:  # masks are kept as their boxes, not as copies of the image grid
        grid = data.volume(segmentation.reference).voxels.shape
        assert all(spec.offset is not None and spec.mask.size < np.prod(grid) for spec in segmentation.segments)
    data.findings.extend(collection.check_case(data))
    loaded = put_case(data, builder)
    assert normalised(describe_load(builder.scene, loaded, sts_root.parent)) == golden(f"soft_tissue_sarcoma_{case_id}")
    # The volumes hold the voxels read, not a copy (the case data stays with the loaded case).
    assert np.shares_memory(slicer.util.arrayFromVolume(loaded.volumes[0]), data.volumes[0].voxels)


def test_each_rtstruct_lands_on_its_image(sts_root, builder):
    collection = SoftTissueSarcomaCollection(sts_root)
    for case in collection.discover_cases():
        loaded = collection.load_case(case, builder)
        assert len(loaded.volumes) == 6 and len(loaded.segmentations) == 6
        expected = {f"{case.case_id} {rt}": f"{case.case_id} {image}"
                    for rt, image in EXPECTED_REFERENCES[case.case_id].items()}
        assert loaded.metrics["reference_image"] == expected
        volumes = {node.GetName(): node for node in loaded.volumes}
        for node in loaded.segmentations:
            reference = node.GetNodeReference("referenceImageGeometryRef")
            assert reference is not None and reference.GetName() == expected[node.GetName()]
            assert volumes[expected[node.GetName()]] is reference
        methods = loaded.metrics["reference_method"]
        if case.case_id == "STS_002":
            assert methods.pop("STS_002 RTStruct_PET") == "frame_of_reference"
            assert any(f.check == "sts.reference_by_frame_of_reference" and "RTStruct_PET" in f.message
                       for f in loaded.findings)
        assert set(methods.values()) == {"sop"}


def test_gtv_volumes_agree_with_the_drawn_polygons(sts_root, builder):
    """Ground truth: the generator's regular 24-gons, area × slice spacing per slice.

    Bound: ½ voxel per voxel in the in-plane boundary band (centre rule; see test_rtstruct).
    """
    collection = SoftTissueSarcomaCollection(sts_root)
    case = collection.find_case("STS_001")
    loaded = collection.load_case(case, builder)
    for node in loaded.segmentations:
        reference = node.GetNodeReference("referenceImageGeometryRef")
        shape, ijk_to_ras = SceneBuilder.volume_geometry(reference)
        voxel = SceneBuilder.voxel_volume_mm3(ijk_to_ras)
        spacing_k = float(np.linalg.norm(ijk_to_ras[:3, 2]))
        z_values = ijk_to_ras[2, 3] + spacing_k * np.arange(shape[0])
        masks = {}
        for segment_id, radius in (("GTV_Mass", sample.MASS_RADIUS_MM), ("GTV_Edema", sample.EDEMA_RADIUS_MM)):
            mask = segment_mask(node, segment_id, shape, ijk_to_ras)
            masks[segment_id] = mask
            sections = [np.sqrt(max(radius ** 2 - z ** 2, 0.0)) for z in z_values]
            expected = sum(sample.circle_polygon_area(r) for r in sections if r > 0.5) * spacing_k
            measured = loaded.metrics["gtv_volume_cm3"][node.GetName()][segment_id] * 1000.0
            assert measured == pytest.approx(mask.sum() * voxel)
            assert abs(measured - expected) <= 0.5 * band(mask) * voxel, (node.GetName(), segment_id)
        # GTV_Edema includes the mass.
        assert not (masks["GTV_Mass"] & ~masks["GTV_Edema"]).any()


def test_qa_findings(sts_root, builder):
    collection = SoftTissueSarcomaCollection(sts_root)
    loaded = collection.load_case(collection.find_case("STS_001"), builder)
    too_few = [f for f in loaded.findings if f.check == "sts.rtstruct.too_few_points"]
    assert len(too_few) == 1 and "RTstruct_CT" in too_few[0].message and too_few[0].node_name == "STS_001 RTstruct_CT"
    gtv = [f for f in loaded.findings if f.check == "sts.gtv_volume"]
    assert len(gtv) == 12 and all(f.value and f.value > 5.0 for f in gtv)
    assert not [f for f in loaded.findings if f.severity == "error"]


def test_variant_names_become_gtv_mass_and_edema(sts_root, builder):
    collection = SoftTissueSarcomaCollection(sts_root)
    loaded = collection.load_case(collection.find_case("STS_002"), builder)
    node = next(n for n in loaded.segmentations if n.GetName() == "STS_002 RTstruct_T1")
    segmentation = node.GetSegmentation()
    originals = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        value = vtk.reference("")
        assert segment.GetTag("SarcomaLungLiverBrowser.OriginalName", value)
        originals[segment.GetName()] = str(value)
    assert originals == {"GTV_Mass": "GTV_Research", "GTV_Edema": "GTV_Res+edema"}


def test_missing_mr_study_gives_rois_without_image(sts_root, tmp_path, builder):
    root = copy_of(sts_root, tmp_path)
    patient = next(root.rglob("STS_001"))
    for study in patient.iterdir():
        if "MRI" in study.name:
            shutil.rmtree(study)
            # Put the MR RTSTRUCTs back without their images.
    source = next(sts_root.rglob("STS_001"))
    for rt in source.rglob("*RTstruct_T*"):
        if "MRI" in rt.parent.name:
            shutil.copytree(rt, patient / rt.parent.name / rt.name)
    collection = SoftTissueSarcomaCollection(root)
    loaded = collection.load_case(collection.find_case("STS_001"), builder)
    without = [f for f in loaded.findings if f.check == "sts.roi_without_image"]
    assert len(without) == 4  # GTV_Mass and GTV_Edema of RTstruct_T1 and RTstruct_T2FS
    assert {("RTstruct_T1" in f.message, "RTstruct_T2FS" in f.message) for f in without} == {(True, False),
                                                                                              (False, True)}
    assert len(loaded.segmentations) == 4


def test_broken_rtstruct_does_not_lose_the_case(sts_root, tmp_path, builder):
    root = copy_of(sts_root, tmp_path)
    broken = next(p for p in root.rglob("1-1.dcm") if "RTstruct_PET" in p.parent.name)
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x08\x00garbage")
    collection = SoftTissueSarcomaCollection(root)
    loaded = collection.load_case(collection.find_case("STS_001"), builder)
    assert len(loaded.volumes) == 6 and len(loaded.segmentations) == 5
    assert any(f.check in ("sts.unreadable_file", "sts.rtstruct_unreadable") and "1-1.dcm" in f.message
               for f in loaded.findings)


def test_clinical_csv_in_cp1252(sts_root, tmp_path):
    root = copy_of(sts_root, tmp_path)
    (root / "INFOclinical_STS.xlsx").unlink()
    table = pd.DataFrame({"Patient ID": ["STS_001", "STS_002"],
                          "Histological type": ["Liposarcoma myxoïde", "Leiomyosarcoma"]})
    table.to_csv(root / "INFOclinical_STS.csv", index=False, encoding="cp1252")
    cases = SoftTissueSarcomaCollection(root).discover_cases()
    assert [c.diagnosis for c in cases] == ["Liposarcoma myxoïde", "Leiomyosarcoma"]


def test_mirp_layout_loads_ct_t1_pet_with_their_rtstructs(external_data, builder):
    root = external_data / MIRP_STS
    if not root.is_dir():
        require_shared_data(f"{root} not present")
    assert SoftTissueSarcomaCollection.detect(root)
    collection = SoftTissueSarcomaCollection(root)
    cases = collection.discover_cases()
    assert [c.case_id for c in cases] == ["STS_001", "STS_002", "STS_003"]
    loaded = collection.load_case(cases[1], builder)
    modalities = sorted(node.GetAttribute("SarcomaLungLiverBrowser.modality") for node in loaded.volumes)
    assert modalities == ["CT", "MR", "PT"]
    references = loaded.metrics["reference_image"]
    assert references == {
        "STS_002 IBSI_1_STS_002_CT_mask": "STS_002 CT IBSI_1_STS_002_CT_image",
        "STS_002 IBSI_1_STS_002_MR_T1_mask": "STS_002 MR IBSI_1_STS_002_MR_T1_image",
        "STS_002 IBSI_1_STS_002_PET_mask": "STS_002 PT IBSI_1_STS_002_PET_image",
    }
    assert set(loaded.metrics["reference_method"].values()) == {"frame_of_reference"}
    volumes = loaded.metrics["gtv_volume_cm3"]
    # The same tumour on CT and T1 (same grid spacing) agrees closely; PET's 5.5 mm pixels less so.
    ct = volumes["STS_002 IBSI_1_STS_002_CT_mask"]["GTV_Mass"]
    t1 = volumes["STS_002 IBSI_1_STS_002_MR_T1_mask"]["GTV_Mass"]
    pet = volumes["STS_002 IBSI_1_STS_002_PET_mask"]["GTV_Mass"]
    assert abs(ct - t1) < 0.01 * ct and abs(pet - ct) < 0.05 * ct


def test_saving_corrections_does_not_scan_the_source_folders(sts_root, tmp_path, builder, monkeypatch):
    """Each SEG is written on the image series recorded when the case was read."""
    from SarcomaLungLiverBrowserLib.formats import dicom_series

    collection = SoftTissueSarcomaCollection(sts_root)
    loaded = collection.load_case(collection.find_case("STS_002"), builder)

    def refuse(*args, **kwargs):
        raise AssertionError(f"source folder scanned again: {args}")

    monkeypatch.setattr(dicom_series, "scan_folder", refuse)
    written = collection.save_corrections(loaded, builder.scene, tmp_path / "out")
    assert len(written) == len(loaded.segmentations) == 6
    assert all(path.is_file() and path.suffix == ".dcm" for path in written)
