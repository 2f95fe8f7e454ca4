"""Target 2: a CRLM-like case (CT + DICOM SEG with many overlapping segments) to per-segment arrays on the CT grid.

Peers, each in its own fresh interpreter, interleaved run by run:

* **highdicom** (the library's own decoder): ``hd.seg.segread`` and, segment
  by segment, ``Segmentation.get_pixels_by_source_instance`` over the CT's
  SOPInstanceUIDs (``assert_missing_frames_are_empty`` as dcmqi omits empty
  frames, ``dtype=bool``), each cropped to its bounding box: the same output
  as ours (per-segment bool boxes with their offsets on the CT grid). All
  segments at once would be a 300 x 512 x 512 x 39 array (3 GB), so one
  segment at a time is highdicom's memory-conscious use.
* **dcmqi** ``segimage2itkimage`` (PyPI ``dcmqi``, the binary Slicer 5.12's
  DICOMSegmentationPlugin runs, with the same ``--mergeSegments`` flag), plus
  reading its NRRD outputs with SimpleITK and placing each one on the CT grid
  (skipped when dcmqi is not installed).

Ours: ``decode_seg`` (every segment as a bounding box placed on the CT grid;
overlaps kept). The CT is read first on every side (``scan_folder`` +
``read_series`` for ours and highdicom, SimpleITK for dcmqi) and is not part
of the SEG figures. Memory: after the CT is read and the libraries imported,
the process's peak RSS (VmHWM) is reset; "SEG peak" is VmHWM minus the RSS
at that moment, measured identically for ours and highdicom.

Ours and highdicom must give the same boxes voxel for voxel (a digest of
every segment's offset, shape and bytes), and dcmqi the same voxel count per
segment, else the run fails.

The case: 512x512 CT with realistic headers, a BINARY SEG written by
highdicom and given dcmqi's quirks (frames grouped by segment, empty frames
omitted, per-segment running DimensionIndexValues, no SegmentsOverlap): Liver
(containing the tumours), Liver Remnant, Hepatic and Portal vessels (leaving
the liver) and Tumor_1..n, some tumours overlapping each other.

    python benchmarks/bench_crlm_seg.py [--slices 300] [--segments 39] [--runs 3] [--no-dcmqi]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))


# ---------------------------------------------------------------------- the case
def _ball(mask, centre: Sequence[float], radii: Sequence[float]) -> None:
    """Set the voxels of an ellipsoid (centre and radii in k, j, i voxels), touching only its box."""
    import numpy as np

    low = [max(0, int(np.floor(c - r))) for c, r in zip(centre, radii)]
    high = [min(n, int(np.ceil(c + r)) + 1) for c, r, n in zip(centre, radii, mask.shape)]
    if any(h <= lo for lo, h in zip(low, high)):
        return
    k, j, i = np.ogrid[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
    inside = ((k - centre[0]) / radii[0]) ** 2 + ((j - centre[1]) / radii[1]) ** 2 + ((i - centre[2]) / radii[2]) ** 2
    mask[low[0]:high[0], low[1]:high[1], low[2]:high[2]] |= inside <= 1.0


def _vessel(mask, points: Sequence[Sequence[float]], radius_mm: float, spacing: Sequence[float]) -> None:
    """A tube along a polyline (k, j, i), drawn as overlapping balls."""
    import numpy as np

    radii = [radius_mm / s for s in spacing]
    for start, end in zip(points[:-1], points[1:]):
        steps = int(np.ceil(np.linalg.norm(np.subtract(end, start)))) + 1
        for t in np.linspace(0.0, 1.0, steps):
            _ball(mask, np.add(start, t * np.subtract(end, start)), radii)


def make_masks(shape: Tuple[int, int, int], segments: int, spacing: Sequence[float], seed: int = 0
               ) -> Tuple[List[str], List["object"]]:
    """CRLM-like masks [k, j, i]: Liver, Liver Remnant, Hepatic, Portal, Tumor_1..n."""
    import numpy as np

    rng = np.random.default_rng(seed)
    slices, rows, columns = shape
    centre = (slices * 0.5, rows * 0.45, columns * 0.38)
    radii = (slices * 0.32, rows * 0.22, columns * 0.24)
    liver = np.zeros(shape, dtype=bool)
    _ball(liver, centre, radii)
    remnant = liver.copy()
    remnant[:, :, : int(centre[2])] = False
    hepatic = np.zeros(shape, dtype=bool)
    _vessel(hepatic, [(centre[0] - radii[0] * 0.6, centre[1], centre[2] - 60), (centre[0] + radii[0] * 0.7, centre[1] - 40,
                      centre[2] + 40), (slices - 2, centre[1] - 50, centre[2] + 60)], 4.0, spacing)
    portal = np.zeros(shape, dtype=bool)
    _vessel(portal, [(2, centre[1] + 80, centre[2] + 120), (centre[0], centre[1] + 10, centre[2] + 10),
                     (centre[0] + 10, centre[1] - 20, centre[2] - 70)], 3.5, spacing)
    tumours = []
    for number in range(max(0, segments - 4)):
        tumour = np.zeros(shape, dtype=bool)
        radius_mm = float(rng.uniform(4.0, 18.0))
        if number % 5 == 4 and tumours:  # every fifth tumour overlaps the previous one
            where = np.add(last, rng.uniform(-0.5, 0.5, 3) * np.divide(radius_mm, spacing))
        else:
            where = np.add(centre, rng.uniform(-0.6, 0.6, 3) * radii)
        _ball(tumour, where, [radius_mm / s for s in spacing])
        last = where
        tumours.append(tumour)
        liver |= tumour  # the liver contour contains its tumours
    labels = ["Liver", "Liver_Remnant", "Hepatic", "Portal"] + [f"Tumor_{n + 1}" for n in range(len(tumours))]
    return labels[:segments], ([liver, remnant, hepatic, portal] + tumours)[:segments]


def make_case(root: Path, slices: int, segments: int) -> Tuple[Path, Path]:
    """Write the CT series and its dcmqi-style SEG; returns (CT folder, SEG path)."""
    import pydicom

    from _common import write_ct_series
    from SarcomaLungLiverBrowserLib.formats.dicom_seg import ExportSegment, SegCode, write_seg
    from SarcomaLungLiverBrowserLib.formats.dicom_series import read_series, scan_folder
    from SarcomaLungLiverBrowserLib.geometry import spacing_from_matrix
    from SarcomaLungLiverBrowserLib.samples.crlm import _dcmqi_quirks

    ct_folder = root / "ct"
    write_ct_series(ct_folder, slices)
    volume = read_series(scan_folder(ct_folder, cache=None).instances)
    spacing = spacing_from_matrix(volume.ijk_to_ras)[::-1]  # (k, j, i)
    labels, masks = make_masks(volume.voxels.shape, segments, spacing)
    liver = SegCode("10200004", "SCT", "Liver")
    tumour = SegCode("108369006", "SCT", "Neoplasm")
    vessel = SegCode("59820001", "SCT", "Blood vessel")
    tissue = SegCode("85756007", "SCT", "Tissue")
    export = [ExportSegment(label, mask, category=tissue,
                            type=tumour if label.startswith("Tumor") else vessel if label in ("Hepatic", "Portal")
                            else liver)
              for label, mask in zip(labels, masks)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom: "BENCH-1" as a one-component person name
        seg_path = write_seg(root / "seg" / "1-1.dcm", export, volume, manufacturer="QIICR",
                             manufacturer_model_name="git://github.com/QIICR/dcmqi.git")
    dataset = pydicom.dcmread(str(seg_path))
    _dcmqi_quirks(dataset, None)
    dataset.save_as(str(seg_path))
    return ct_folder, seg_path


def ct_grid(ct_folder: Path) -> Dict[str, List[float]]:
    """The CT grid in ITK terms (LPS origin, spacing, direction, size), given to the peer."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(ct_folder)))
    image = reader.Execute()
    return {"origin": list(image.GetOrigin()), "spacing": list(image.GetSpacing()),
            "direction": list(image.GetDirection()), "size": list(image.GetSize())}


# ---------------------------------------------------------------------- the measurements
def _place(image, grid: Dict[str, List[float]]) -> Tuple[Tuple[int, int, int], "object"]:
    """Where a dcmqi output volume (a slab of the CT grid) sits on the CT grid: ((k, j, i) offset, values [k, j, i]).

    The slab is kept as is with its offset, like our per-segment boxes, rather
    than copied into a CT-sized array (Slicer's segmentation keeps the
    labelmap's own extent too).
    """
    import numpy as np
    import SimpleITK as sitk

    direction = np.array(grid["direction"]).reshape(3, 3)
    if not np.allclose(np.array(image.GetDirection()).reshape(3, 3), direction, atol=1e-4) or \
            not np.allclose(image.GetSpacing(), grid["spacing"], rtol=1e-4):
        raise RuntimeError("dcmqi output is not on the CT's axes and spacing; resampling is not implemented")
    continuous = np.linalg.solve(direction * np.array(grid["spacing"])[None, :],
                                 np.array(image.GetOrigin()) - np.array(grid["origin"]))  # i, j, k
    offset = np.rint(continuous)
    if np.any(np.abs(continuous - offset) > 0.01):
        raise RuntimeError(f"dcmqi output origin lies between CT voxels ({continuous})")
    values = sitk.GetArrayFromImage(image)  # [k, j, i]
    i0, j0, k0 = (int(v) for v in offset)
    if min(i0, j0, k0) < 0 or any(o + n > s for o, n, s in zip((k0, j0, i0), values.shape, grid["size"][::-1])):
        raise RuntimeError("dcmqi output reaches outside the CT grid")
    return (k0, j0, i0), values


def _dcmqi_executable() -> str:
    """``segimage2itkimage`` of the installed dcmqi package (as Slicer's ``_dcmqi_binary`` finds it)."""
    from importlib.metadata import distribution

    for entry in distribution("dcmqi").files or []:
        if str(entry).replace("\\", "/").endswith("dcmqi/bin/segimage2itkimage"):
            return str(entry.locate())
    raise RuntimeError("dcmqi's segimage2itkimage is not installed (pip install -r benchmarks/requirements.txt)")


def _box_digest(offset: Sequence[int], box) -> str:
    """Offset, shape and voxels of one segment's box, as one comparable string."""
    import numpy as np

    box = np.ascontiguousarray(box, dtype=bool)
    return f"{tuple(int(v) for v in offset)}{box.shape}" + hashlib.sha1(box.tobytes()).hexdigest()[:16]


def _highdicom_boxes(seg_path: str, volume) -> Dict[str, Tuple[int, str]]:
    """highdicom's decoding of every segment onto the CT grid, cropped to its box: label -> (voxels, digest)."""
    import highdicom as hd
    import numpy as np

    uids = [instance.sop_instance_uid for instance in volume.instances]
    if len(volume.present_instances) != len(uids):
        raise RuntimeError("the benchmark CT must have no missing slices")
    segmentation = hd.seg.segread(seg_path)
    result = {}
    for number in segmentation.segment_numbers:
        label = segmentation.get_segment_description(number).segment_label
        pixels = segmentation.get_pixels_by_source_instance(
            uids, segment_numbers=[number], assert_missing_frames_are_empty=True, ignore_spatial_locations=True,
            dtype=bool)[..., 0]
        extents = [np.flatnonzero(pixels.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1))]
        if any(extent.size == 0 for extent in extents):
            result[label] = (0, _box_digest((0, 0, 0), np.zeros((0, 0, 0), dtype=bool)))
            continue
        low = [int(extent[0]) for extent in extents]
        high = [int(extent[-1]) + 1 for extent in extents]
        box = np.ascontiguousarray(pixels[low[0]:high[0], low[1]:high[1], low[2]:high[2]])
        del pixels
        result[label] = (int(np.count_nonzero(box)), _box_digest(low, box))
    return result


def measure(kind: str, ct_folder: str, seg_path: str, grid_json: str) -> None:
    import numpy as np

    if kind == "dcmqi":
        import SimpleITK as sitk

        executable = _dcmqi_executable()
        grid = json.loads(grid_json)
        start = time.perf_counter()
        reader = sitk.ImageSeriesReader()  # the CT, as Slicer's scalar volume loading reads it
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(ct_folder))
        ct = sitk.GetArrayViewFromImage(reader.Execute())
        ct_seconds = time.perf_counter() - start
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="sllb-dcmqi-") as output:
            subprocess.run([executable, "--inputDICOM", seg_path, "--outputDirectory", output, "--mergeSegments"],
                           check=True, capture_output=True)
            convert_seconds = time.perf_counter() - start
            with open(Path(output) / "meta.json") as stream:
                meta = json.load(stream)
            layers = []
            for number in range(1, len(meta["segmentAttributes"]) + 1):
                layers.append(_place(sitk.ReadImage(str(Path(output) / f"{number}.nrrd")), grid))
        seg_seconds = time.perf_counter() - start
        counts = {}
        for (_, layer), attributes in zip(layers, meta["segmentAttributes"]):
            histogram = np.bincount(layer.ravel().astype(np.int64))
            for segment in attributes:
                label = int(segment["labelID"])
                counts[segment["SegmentLabel"]] = int(histogram[label]) if label < len(histogram) else 0
        print(json.dumps({"ct_seconds": ct_seconds, "seg_seconds": seg_seconds, "convert_seconds": convert_seconds,
                          "layers": len(layers), "counts": counts, "ct_shape": list(ct.shape)}))
        return
    import highdicom  # noqa: F401 - imported before the memory baseline on both sides (ours uses it for colours)
    import highdicom.color  # noqa: F401
    from _common import process_memory_mb, reset_peak_memory
    from SarcomaLungLiverBrowserLib.formats.dicom_seg import decode_seg
    from SarcomaLungLiverBrowserLib.formats.dicom_series import read_series, scan_folder

    start = time.perf_counter()
    volume = read_series(scan_folder(Path(ct_folder), cache=None).instances)
    ct_seconds = time.perf_counter() - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # highdicom: "BENCH-1" as a one-component person name
        baseline_mb = reset_peak_memory()
        start = time.perf_counter()
        if kind == "highdicom":
            boxes = _highdicom_boxes(seg_path, volume)
        else:
            decoded = decode_seg(Path(seg_path), volume)
            boxes = {segment.label: (segment.voxel_count, _box_digest(segment.offset, segment.box))
                     for segment in decoded.segments}
        seg_seconds = time.perf_counter() - start
        peak_mb = process_memory_mb("VmHWM")
    print(json.dumps({"ct_seconds": ct_seconds, "seg_seconds": seg_seconds, "seg_peak_mb": peak_mb - baseline_mb,
                      "process_peak_mb": peak_mb, "counts": {label: value[0] for label, value in boxes.items()},
                      "digests": {label: value[1] for label, value in boxes.items()},
                      "ct_shape": list(volume.voxels.shape)}))


def _dcmqi_available() -> bool:
    try:
        _dcmqi_executable()
    except Exception:  # not installed, or an install without the binary
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--segments", type=int, default=39)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-dcmqi", action="store_true", help="compare with highdicom only")
    parser.add_argument("--measure", nargs=4, metavar=("KIND", "CT", "SEG", "GRID"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        measure(*arguments.measure)
        return 0
    from _common import machine_and_versions, median, run_isolated

    kinds = ["ours", "highdicom"] + ([] if arguments.no_dcmqi or not _dcmqi_available() else ["dcmqi"])
    with tempfile.TemporaryDirectory(prefix="sllb-bench-crlm-") as folder:
        ct_folder, seg_path = make_case(Path(folder), arguments.slices, arguments.segments)
        grid = json.dumps(ct_grid(ct_folder)) if "dcmqi" in kinds else "{}"
        for path in [*ct_folder.iterdir(), seg_path]:  # warm the page cache for every side
            path.read_bytes()
        results: Dict[str, List[Dict]] = {kind: [] for kind in kinds}
        for _ in range(arguments.runs):
            for kind in kinds:
                results[kind].append(run_isolated(Path(__file__), "--measure", kind, str(ct_folder), str(seg_path), grid))
        seg_mb = seg_path.stat().st_size / 2 ** 20
    ours, highdicom = results["ours"][0], results["highdicom"][0]
    if ours["digests"] != highdicom["digests"]:
        differing = sorted(k for k in set(ours["digests"]) | set(highdicom["digests"])
                           if ours["digests"].get(k) != highdicom["digests"].get(k))
        print(f"MISMATCH between highdicom and ours in segments {differing}")
        return 1
    if "dcmqi" in results and ours["counts"] != results["dcmqi"][0]["counts"]:
        peer = results["dcmqi"][0]
        differing = sorted(k for k in set(ours["counts"]) | set(peer["counts"])
                           if ours["counts"].get(k) != peer["counts"].get(k))
        print(f"MISMATCH between dcmqi and ours in segments {differing}: "
              f"{[(k, ours['counts'].get(k), peer['counts'].get(k)) for k in differing]}")
        return 1

    def med(kind: str, key: str) -> float:
        return median([r[key] for r in results[kind]])

    shape = ours["ct_shape"]
    print(machine_and_versions(["numpy", "pydicom", "highdicom", "SimpleITK", "dcmqi"]))
    print(f"case: CT {shape[0]} slices of {shape[1]}x{shape[2]}; SEG BINARY, {len(ours['counts'])} segments, "
          f"{seg_mb:.1f} MB; median of {arguments.runs} interleaved runs, each in a fresh interpreter; "
          "boxes identical to highdicom's voxel for voxel"
          + ("; per-segment voxel counts identical to dcmqi's" if "dcmqi" in results else ""))
    ours_seg, peer_seg = med("ours", "seg_seconds"), med("highdicom", "seg_seconds")
    ours_peak, peer_peak = med("ours", "seg_peak_mb"), med("highdicom", "seg_peak_mb")
    print(f"highdicom segread + get_pixels_by_source_instance per segment: {peer_seg:.3f} s, SEG peak "
          f"{peer_peak:.0f} MB (process peak {med('highdicom', 'process_peak_mb'):.0f} MB)")
    print(f"ours decode_seg:                                               {ours_seg:.3f} s, SEG peak "
          f"{ours_peak:.0f} MB (process peak {med('ours', 'process_peak_mb'):.0f} MB)")
    print(f"SEG time, ours/highdicom: {ours_seg / peer_seg:.3f} (target <= 0.5)")
    print(f"SEG peak memory, ours/highdicom: {ours_peak / peer_peak:.3f} (target <= 1.0)")
    if "dcmqi" in results:
        dcmqi_seg, dcmqi_convert = med("dcmqi", "seg_seconds"), med("dcmqi", "convert_seconds")
        ours_ct = med("ours", "ct_seconds")
        print(f"dcmqi segimage2itkimage --mergeSegments: {dcmqi_convert:.3f} s; + reading NRRDs (SimpleITK) and "
              f"placing them on the CT grid: {dcmqi_seg:.3f} s")
        print(f"SEG only, ours/dcmqi: {ours_seg / dcmqi_seg:.3f}")
        print(f"ours (CT {ours_ct:.3f} s + SEG) / dcmqi (SEG + outputs): {(ours_ct + ours_seg) / dcmqi_seg:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
