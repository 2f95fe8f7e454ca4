"""Target 5: memory of a loaded Lung-PET-CT-Dx case (CT + PET + ROIs) in the scene, at most 1.3x the voxel bytes.

The case is written in the NBIA layout with ``metadata.csv`` and its
``Annotation/<A0001>`` tree: a 512x512 CT of 150 slices (int16 after rescale)
and a 200x200 PET of 150 slices whose per-slice RescaleSlope is fractional, as
PET's is (float32 after rescale), with about 40 boxes on both. It is loaded
through the collection loader (``open_collection`` -> ``discover_cases`` ->
``load_case``) into a ``HeadlessSlicer`` scene, in a fresh interpreter.

Measured: peak resident memory during ``load_case`` above the resident memory
just before it (the kernel's peak counter is reset first, through
``/proc/self/clear_refs``), and resident memory kept once loaded, both against
the voxel bytes of the volumes in the scene.

    python benchmarks/bench_lung_memory.py [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import process_memory_mb  # noqa: E402

TARGET = 1.3
PATIENT = "Lung_Dx-A0001"


def _reset_peak() -> None:
    """Make VmHWM start again from VmRSS (Linux >= 4.0), so earlier peaks do not hide the load's."""
    with open("/proc/self/clear_refs", "w") as stream:
        stream.write("5")


# ---------------------------------------------------------------------- the case
def make_case(root: Path, ct_slices: int = 150, pet_slices: int = 150) -> int:
    """Write the case; returns the number of boxes written."""
    import numpy as np

    from SarcomaLungLiverBrowserLib.samples.dicom_writer import (
        SeriesSpec,
        facts_of,
        nbia_series_folder,
        uid_from_seed,
        write_nbia_metadata_csv,
        write_series,
    )
    from SarcomaLungLiverBrowserLib.formats.voc_xml import VocAnnotation, VocObject, format_voc

    rng = np.random.default_rng(5)
    manifest = root / "manifest-1608669183333"
    collection = manifest / "Lung-PET-CT-Dx"
    study, frame = uid_from_seed("bench", "study"), uid_from_seed("bench", "frame")
    series = {
        # key: (modality, number, size, pixel spacing, slice spacing, slices, top-left x/y, z of slice 0)
        "ct": ("CT", 2, 512, 0.841796875, 2.0, ct_slices, (-215.5, -215.5), -300.0),
        "pet": ("PT", 4, 200, 4.07, 2.0, pet_slices, (-407.0, -407.0), -299.0),
    }
    metadata = []
    boxes = 0
    for key, (modality, number, size, spacing, step, slices, top_left, z0) in series.items():
        order = list(range(slices - 1, -1, -1))  # files numbered from the top, as NBIA series are
        if modality == "CT":
            stored = rng.integers(0, 2500, (slices, size, size), dtype=np.uint16)
            per_instance: Dict[int, Dict[str, object]] = {}
        else:
            stored = rng.integers(0, 30000, (slices, size, size), dtype=np.uint16)
            per_instance = {index: {"RescaleSlope": f"{0.5 + 0.01 * index:.6f}"} for index in range(slices)}
        spec = SeriesSpec(
            patient_id=PATIENT, study_instance_uid=study, series_instance_uid=uid_from_seed("bench", key),
            frame_of_reference_uid=frame, modality=modality, series_number=number,
            series_description="5mm" if modality == "CT" else "PET WB", stored_values=stored,
            positions=[(top_left[0], top_left[1], z0 + step * k) for k in order],
            pixel_spacing=(spacing, spacing), slice_thickness=step,
            rescale_intercept=-1024.0 if modality == "CT" else 0.0, study_date="20070404",
            study_description="Chest", window=(350.0, 40.0) if modality == "CT" else None,
            per_instance_extra=per_instance,
        )
        folder = nbia_series_folder(collection, spec)
        written = write_series(spec, folder, "nbia")
        metadata.append((folder, facts_of(written)))
        # One lesion of 20 slices per series: a box per slice, 40 boxes in all.
        annotation = root / "Annotation" / "A0001"
        annotation.mkdir(parents=True, exist_ok=True)
        first = slices // 2 - 10
        for k in range(first, first + 20):
            half = 20 if modality == "CT" else 6
            centre = size // 2
            voc = VocAnnotation(None, 512, 512, 1, [VocObject("A", centre - half, centre - half, centre + half,
                                                              centre + half)])
            sop = written.sop_instance_uids[order.index(k)]
            (annotation / f"{sop}.xml").write_bytes(format_voc(voc).encode("ascii"))
            boxes += 1
    write_nbia_metadata_csv(manifest, "Lung-PET-CT-Dx", "https://doi.org/10.7937/TCIA.2020.NNC20461", metadata)
    return boxes


# ---------------------------------------------------------------------- the measurement
def measure(root: str) -> None:
    import numpy as np
    import slicer.util

    from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer
    from SarcomaLungLiverBrowserLib.registry import open_collection
    from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder

    with HeadlessSlicer() as headless:
        builder = SceneBuilder(headless.scene)
        collection = open_collection(Path(root))
        case = collection.find_case(PATIENT)
        _reset_peak()
        baseline = process_memory_mb("VmRSS")
        start = time.perf_counter()
        loaded = collection.load_case(case, builder)
        seconds = time.perf_counter() - start
        peak = process_memory_mb("VmHWM")
        kept = process_memory_mb("VmRSS")
        voxel_mb = sum(slicer.util.arrayFromVolume(node).nbytes for node in loaded.volumes) / 2 ** 20
        shapes = [list(np.shape(slicer.util.arrayFromVolume(node))) for node in loaded.volumes]
        dtypes = [str(slicer.util.arrayFromVolume(node).dtype) for node in loaded.volumes]
        rois = len(loaded.rois)
        del loaded
    print(json.dumps({"seconds": seconds, "peak_above_baseline_mb": peak - baseline, "kept_mb": kept - baseline,
                      "voxel_mb": voxel_mb, "shapes": shapes, "dtypes": dtypes, "rois": rois}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--measure", nargs=1, metavar="ROOT", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        measure(*arguments.measure)
        return 0
    from _common import median, run_isolated

    with tempfile.TemporaryDirectory(prefix="sllb-bench-lungmem-") as root:
        boxes = make_case(Path(root) / "Lung-PET-CT-Dx")
        results: List[Dict[str, float]] = [run_isolated(Path(__file__), "--measure", str(Path(root) / "Lung-PET-CT-Dx"))
                                           for _ in range(arguments.runs)]
    first = results[0]
    peak = median([r["peak_above_baseline_mb"] for r in results])
    kept = median([r["kept_mb"] for r in results])
    voxel_mb = first["voxel_mb"]
    volumes = ", ".join(f"{'x'.join(str(n) for n in shape[::-1])} {dtype}"
                        for shape, dtype in zip(first["shapes"], first["dtypes"]))
    print(f"case: {volumes}; {boxes} boxes -> {first['rois']} ROI nodes; {voxel_mb:.1f} MB of voxels; "
          f"median of {arguments.runs} runs; load {median([r['seconds'] for r in results]):.2f} s")
    print(f"resident memory kept after loading: {kept:.1f} MB = {kept / voxel_mb:.2f}x voxel bytes")
    print(f"peak memory during load_case above baseline: {peak:.1f} MB")
    print(f"peak / voxel bytes: {peak / voxel_mb:.2f} (target <= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
