#!/usr/bin/env python3
"""Write the README screenshots from real public data, with the same preview code as the CLI and the report.

Sources (see ``../shared/external_testdata/SOURCES.txt``):

* ``sarcoma_ct.png``, ``sarcoma_mr_t1.png``: mirp's copy of TCIA Soft-tissue-Sarcoma STS_002, CT and T1 with
  the GTV contours of their real RTSTRUCTs, loaded by the Soft-tissue-Sarcoma collection;
* ``sarcoma_pet_ct.png``: the same patient's real PET fused over its CT, PET in SUVbw from its headers;
* ``dcmqi_seg.png``: dcmqi's real liver SEG on its three-slice CT, read by the project's SEG reader;
* ``crlm.png``: the real CRLM-CT-1004 CT (mirp's copy) with a DICOM SEG this script writes with
  highdicom from HU thresholds (body, bone) -- the collection's expert SEG is not public in our data;
* ``lung_boxes.png``: the real Lung-PET-CT-Dx VOC boxes of ``shared/samples`` on a series built from their
  real DICOM facts (UIDs, positions, orientation, spacing; pixels generated), loaded by the collection.

Usage: ``python scripts/make_screenshots.py [--external DIR] [--samples DIR] [--out DIR] [--only NAME...]``
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "SarcomaLungLiverBrowser"))
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
import pydicom  # noqa: E402

from SarcomaLungLiverBrowserLib.browser import CollectionBrowser  # noqa: E402
from SarcomaLungLiverBrowserLib.case_data import LoadedCase  # noqa: E402
from SarcomaLungLiverBrowserLib.formats.dicom_seg import decode_seg  # noqa: E402
from SarcomaLungLiverBrowserLib.formats.dicom_series import read_series, scan_folder  # noqa: E402
from SarcomaLungLiverBrowserLib.formats.suv import suv_bw_scale  # noqa: E402
from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder, SegmentSpec, WindowPreset  # noqa: E402
from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer  # noqa: E402
from SarcomaLungLiverBrowserLib.scene.preview import write_case_preview  # noqa: E402

MIRP = Path("oncoray__mirp") / "test" / "data"
DCMQI = Path("QIICR__dcmqi") / "data" / "segmentations"
CT_WINDOWS = [WindowPreset("Abdomen", 400, 40)]
PANEL = 340
#: Colours for SEG segments that recommend none (told apart from each other and from grey CT).
FALLBACK_COLORS = [(0.3, 0.75, 0.95), (0.95, 0.45, 0.2), (0.6, 0.9, 0.3), (0.9, 0.3, 0.8)]


class _Case:
    """The few case facts a preview needs, for scenes built here rather than by a collection."""

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id


def _volume_node(loaded: LoadedCase, modality: str) -> Any:
    for node in loaded.volumes:
        if (node.GetAttribute("SarcomaLungLiverBrowser.modality") or "") == modality:
            return node
    raise LookupError(f"{loaded.case.case_id} has no {modality} volume")


def _first_header(folder: Path) -> pydicom.Dataset:
    return pydicom.dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)


def sarcoma(external: Path, samples: Path, out: Path) -> List[Path]:
    """Sarcoma STS_002: CT with its GTVs, T1 with its GTVs, PET (SUVbw) over CT."""
    root = external / MIRP / "sts_images"
    written = []
    with HeadlessSlicer() as environment:
        browser = CollectionBrowser(environment.scene)
        browser.open(root)
        loaded = browser.load_case("STS_002")
        ct, mr, pet = (_volume_node(loaded, m) for m in ("CT", "MR", "PT"))
        for node, name in ((ct, "sarcoma_ct.png"), (mr, "sarcoma_mr_t1.png")):
            loaded.metrics["background_volume_id"] = node.GetID()
            loaded.metrics.pop("foreground_volume_id", None)
            written.append(write_case_preview(environment.scene, loaded, out / name, panel_size=PANEL,
                                              max_findings=2))
        scale = suv_bw_scale(_first_header(root / "STS_002" / "PET" / "dicom" / "image"))
        loaded.metrics.update(background_volume_id=ct.GetID(), foreground_volume_id=pet.GetID(),
                              foreground_opacity=0.5)
        written.append(write_case_preview(environment.scene, loaded, out / "sarcoma_pet_ct.png", panel_size=PANEL,
                                          max_findings=1, pet_scales={pet.GetID(): scale}))
    return written


def _scene_case(builder: SceneBuilder, case_id: str, ct_folder: Path, seg_path: Path, name: str) -> LoadedCase:
    """A CT and a SEG decoded by the project's reader, put in the scene."""
    volume = read_series(scan_folder(ct_folder).instances)
    decoded = decode_seg(seg_path, volume, case_id)
    node = builder.add_volume(f"{case_id} CT", volume.voxels, volume.ijk_to_ras, CT_WINDOWS,
                              attributes={"modality": "CT"})
    specs = [SegmentSpec(segment.label or f"Segment {segment.number}",
                         segment.color or FALLBACK_COLORS[index % len(FALLBACK_COLORS)], segment.mask)
             for index, segment in enumerate(s for s in decoded.segments if not s.is_empty)]
    segmentation = builder.add_segmentation(name, node, specs)
    return LoadedCase(case=_Case(case_id), volumes=[node], segmentations=[segmentation])


def dcmqi_seg(external: Path, samples: Path, out: Path) -> List[Path]:
    """dcmqi's real liver SEG on its CT."""
    with HeadlessSlicer() as environment:
        loaded = _scene_case(SceneBuilder(environment.scene), "dcmqi ct-3slice", external / DCMQI / "ct-3slice",
                             external / DCMQI / "liver.dcm", "dcmqi liver SEG")
        return [write_case_preview(environment.scene, loaded, out / "dcmqi_seg.png", panel_size=PANEL)]


def _threshold_seg(ct_folder: Path, seg_path: Path) -> Path:
    """A DICOM SEG (highdicom) of the real CT: body (HU > -300) and bone (HU >= 300) by threshold."""
    import highdicom as hd
    from highdicom.sr.coding import CodedConcept
    from pydicom.sr.codedict import codes

    datasets = sorted((pydicom.dcmread(p) for p in ct_folder.glob("*.dcm")),
                      key=lambda d: float(d.ImagePositionPatient[2]))
    from scipy import ndimage

    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in datasets])
    # The body is the largest connected region above -300 HU (the couch and the air are not).
    regions, count = ndimage.label(hu > -300)
    sizes = ndimage.sum_labels(np.ones_like(regions), regions, index=np.arange(1, count + 1))
    body = ndimage.binary_fill_holes(regions == 1 + int(np.argmax(sizes)))
    bone = (hu >= 300) & body
    tissue = CodedConcept("85756007", "SCT", "Tissue")
    descriptions = [
        hd.seg.SegmentDescription(1, "Body (HU > -300)", tissue, CodedConcept("38266002", "SCT", "Entire body"),
                                  hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                                  hd.AlgorithmIdentificationSequence("HU threshold", codes.DCM.Segmentation, "1")),
        hd.seg.SegmentDescription(2, "Bone (HU >= 300)", tissue, CodedConcept("272673000", "SCT", "Bone"),
                                  hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                                  hd.AlgorithmIdentificationSequence("HU threshold", codes.DCM.Segmentation, "1")),
    ]
    labels = np.stack([body, bone], axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(datasets, labels, hd.seg.SegmentationTypeValues.BINARY, descriptions,
                              hd.UID(), 1, hd.UID(), 1, "SarcomaLungLiverBrowser", "make_screenshots", "1",
                              "0", series_description="HU threshold body and bone")
    seg.save_as(seg_path)
    return seg_path


def crlm(external: Path, samples: Path, out: Path) -> List[Path]:
    """The real CRLM-CT-1004 CT with a SEG written here from HU thresholds."""
    ct_folder = external / MIRP / "ct_images_seg" / "CRLM-CT-1004" / "image"
    with tempfile.TemporaryDirectory() as scratch, HeadlessSlicer() as environment:
        seg_path = _threshold_seg(ct_folder, Path(scratch) / "threshold_seg.dcm")
        loaded = _scene_case(SceneBuilder(environment.scene), "CRLM-CT-1004", ct_folder, seg_path,
                             "HU threshold SEG")
        return [write_case_preview(environment.scene, loaded, out / "crlm.png", panel_size=PANEL,
                                   title="CRLM-CT-1004 — real CT, SEG from HU thresholds (body, bone)")]


def lung(external: Path, samples: Path, out: Path) -> List[Path]:
    """The real VOC boxes of Lung_Dx-A0002 on a series built from their DICOM facts."""
    from SarcomaLungLiverBrowserLib.samples.lung_pet_ct_dx import generate_real_geometry_case

    with tempfile.TemporaryDirectory() as scratch, HeadlessSlicer() as environment:
        root = generate_real_geometry_case(Path(scratch), samples / "lung_pet_ct_dx_voc")
        browser = CollectionBrowser(environment.scene)
        browser.open(root)
        loaded = browser.load_case("Lung_Dx-A0002")
        return [write_case_preview(environment.scene, loaded, out / "lung_boxes.png", panel_size=PANEL,
                                   title="Lung_Dx-A0002 — real VOC boxes on a series with their real DICOM "
                                         "geometry (pixels generated)")]


SCREENSHOTS: Dict[str, Callable[[Path, Path, Path], List[Path]]] = {
    "sarcoma": sarcoma, "dcmqi": dcmqi_seg, "crlm": crlm, "lung": lung,
}


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--external", type=Path, default=REPOSITORY.parent / "shared" / "external_testdata")
    parser.add_argument("--samples", type=Path, default=REPOSITORY.parent / "shared" / "samples")
    parser.add_argument("--out", type=Path, default=REPOSITORY / "Resources" / "Screenshots")
    parser.add_argument("--only", nargs="*", choices=sorted(SCREENSHOTS), default=sorted(SCREENSHOTS))
    arguments = parser.parse_args(argv)
    for folder in (arguments.external, arguments.samples):
        if not folder.is_dir():
            parser.error(f"{folder} does not exist (the real public data; see Testing/README.md)")
    for name in arguments.only:
        for path in SCREENSHOTS[name](arguments.external, arguments.samples, arguments.out):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
