"""Target 3: every VOC XML box of a Lung-PET-CT-Dx-sized tree parsed and mapped, under 10 s on 2 cores.

The tree is generated in the real layout and byte format: 31,444 files in 356
patient folders ``Annotation/<A0001>/<SOPInstanceUID>.xml`` (the collection's
counts, ``shared/notes/lung_voc.md`` §3), written by ``voc_xml.format_voc``
(no declaration, ``verified="no"``, "Unknow" placeholders, ``<Difficult>``,
512/512/1 in ``<size>``); about 3 annotated series per patient (two CT
reconstructions and a PET), a few files with two objects, boxes chained over
neighbouring slices as lesions.

Each patient's series are given as synthetic headers (``headers/<A0001>.json``:
SOPInstanceUIDs, ImagePositionPatient, ImageOrientationPatient, PixelSpacing,
size), so no DICOM is read and no scene is built. The measured work, per
patient folder, is what the collection loader does between reading headers and
creating ROI nodes: stack each series' geometry (``geometry.sort_slices`` and
``ijk_to_ras_from_slices``), list and parse every XML with ``voc_xml.parse_voc``
(all its safety checks), find the slice of its SOPInstanceUID, clamp the box,
chain boxes into lesions (``group_lesions``) and compute every per-slice and
lesion ROI (``box_roi_geometry``). Patient folders are spread over worker
processes; the ROI geometry comes back to the parent as arrays.

    python benchmarks/bench_lung_xml.py [--workers 2] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

FILES = 31444
PATIENT_FOLDERS = 356
LETTERS = "AABBEGGA"  # roughly the collection's class mix (A most common)
TARGET_SECONDS = 10.0


# ---------------------------------------------------------------------- the tree
def _uid(rng, prefix: str = "1.3.6.1.4.1.14519.5.2.1.6655.2359.") -> str:
    """A TCIA-like UID (same root and length as the real file names)."""
    return prefix + "".join(str(d) for d in rng.integers(0, 10, 30))


def _series_plan(rng, modality: str, number: int, min_slices: int) -> Dict[str, object]:
    if modality == "CT":
        rows = columns = 512
        spacing = float(rng.choice([0.6465, 0.703125, 0.841796875, 0.9765625]))
        slices, thickness = int(rng.integers(60, 140)), float(rng.choice([2.0, 5.0, 8.0]))
    else:
        rows = columns = int(rng.choice([128, 200]))
        spacing, slices, thickness = 4.07, int(rng.integers(150, 260)), 3.27
    slices = max(slices, min_slices)
    z_first = float(rng.uniform(-400.0, -100.0))
    top_left = [-spacing * columns / 2.0, -spacing * rows / 2.0 + 30.0]
    # Files of real series are numbered from the top; store them in that order.
    positions = [[top_left[0], top_left[1], z_first + thickness * k] for k in range(slices)][::-1]
    return {
        "series_instance_uid": _uid(rng), "modality": modality, "series_number": number,
        "rows": rows, "columns": columns, "pixel_spacing": [spacing, spacing],
        "orientation": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0], "positions": positions,
        "sop_instance_uids": [_uid(rng) for _ in range(slices)],
    }


def _boxes_for(rng, series: Dict[str, object], count: int) -> List[Tuple[int, List[Tuple[int, int, int, int]]]]:
    """``count`` annotated slices (stored order index, boxes): lesions over runs of neighbouring slices."""
    slices = len(series["positions"])  # type: ignore[arg-type]
    size = int(series["columns"])  # type: ignore[arg-type]
    result: List[Tuple[int, List[Tuple[int, int, int, int]]]] = []
    k = int(rng.integers(0, max(1, slices // 4)))
    while len(result) < count:
        if k >= slices:
            raise RuntimeError(f"{count} annotated slices do not fit a series of {slices}")
        length = int(rng.integers(4, 25))
        column, row = rng.uniform(0.25, 0.75, 2) * size
        radius = rng.uniform(0.02, 0.08) * size
        for step in range(min(length, slices - k, count - len(result))):
            half = radius * (1.0 - abs(step / length - 0.5))
            box = (int(column - half), int(row - half), int(column + half + 1), int(row + half + 1))
            boxes = [box]
            if rng.random() < 0.04 and box[2] + 48 < size and box[3] + 36 < size:  # two objects in one file
                boxes.append((box[0] + 40, box[1] + 30, box[2] + 48, box[3] + 36))
            result.append((k + step, boxes))
        k += length + int(rng.integers(1, 10))
    return result


def make_tree(root: Path, files: int = FILES, patients: int = PATIENT_FOLDERS, seed: int = 31444) -> int:
    """Write the annotation tree and the headers; returns the number of ``<object>`` elements."""
    import numpy as np

    from SarcomaLungLiverBrowserLib.formats.voc_xml import VocAnnotation, VocObject, format_voc

    rng = np.random.default_rng(seed)
    shares = rng.gamma(4.0, 1.0, patients)
    counts = np.floor(shares / shares.sum() * files).astype(int)
    counts[: files - counts.sum()] += 1
    objects = 0
    for index, count in enumerate(counts):
        letter = LETTERS[index % len(LETTERS)]
        folder_name = f"{letter}{index + 1:04d}"
        split = [count // 3 + (1 if n < count % 3 else 0) for n in range(3)]
        series = [_series_plan(rng, modality, number, 2 * share + 20)
                  for modality, number, share in zip(("CT", "CT", "PT"), (2, 3, 4), split)]
        folder = root / "Annotation" / folder_name
        folder.mkdir(parents=True)
        for plan, share in zip(series, split):
            for k, boxes in _boxes_for(rng, plan, share):
                voc = VocAnnotation(None, 512, 512, 1, [VocObject(letter, *box) for box in boxes])
                sop = plan["sop_instance_uids"][k]  # type: ignore[index]
                (folder / f"{sop}.xml").write_bytes(format_voc(voc).encode("ascii"))
                objects += len(boxes)
        (root / "headers").mkdir(exist_ok=True)
        (root / "headers" / f"{folder_name}.json").write_text(json.dumps(series))
    written = sum(1 for _ in (root / "Annotation").rglob("*.xml"))
    if written != files:
        raise RuntimeError(f"wrote {written} XML files, meant {files}")
    return objects


# ---------------------------------------------------------------------- the measured work
def map_patient(job: Tuple[str, str]) -> Tuple[int, int, int, "object", "object"]:
    """Parse and map one patient folder: (files, objects, errors, slice ROIs n x 6, lesion ROIs m x 6)."""
    import numpy as np

    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx.boxes import (
        SliceBox,
        _clamp,
        box_roi_geometry,
        group_lesions,
    )
    from SarcomaLungLiverBrowserLib.errors import DataError
    from SarcomaLungLiverBrowserLib.geometry import SlicePlane, ijk_to_ras_from_slices, sort_slices
    from SarcomaLungLiverBrowserLib.formats.voc_xml import iter_xml_files, parse_voc

    folder, headers_path = job
    with open(headers_path) as stream:
        headers = json.load(stream)
    lookup: Dict[str, Tuple[int, int]] = {}
    grids = []
    for number, series in enumerate(headers):
        spacing, orientation = tuple(series["pixel_spacing"]), tuple(series["orientation"])
        planes = [SlicePlane(tuple(p), orientation, spacing) for p in series["positions"]]
        order = sort_slices(planes)
        ijk_to_ras, _ = ijk_to_ras_from_slices([planes[i] for i in order])
        grids.append((series, ijk_to_ras))
        uids = series["sop_instance_uids"]
        for k, index in enumerate(order):
            lookup[uids[index]] = (number, k)
    boxes: Dict[int, List[SliceBox]] = {}
    files = objects = errors = 0
    for path in iter_xml_files(folder):
        files += 1
        try:
            annotation = parse_voc(path)
        except DataError:
            errors += 1
            continue
        located = lookup.get(annotation.stem)
        if located is None:
            errors += 1
            continue
        number, k = located
        series = grids[number][0]
        for index, voc_object in enumerate(annotation.objects):
            objects += 1
            clamped, changed = _clamp(voc_object.box, series["rows"], series["columns"])
            if clamped is None:
                continue
            boxes.setdefault(number, []).append(SliceBox(
                path, index, voc_object, annotation.stem, series["series_instance_uid"], k, voc_object.box, clamped,
                clamped=changed))
    slice_rois, lesion_rois = [], []
    for number, series_boxes in boxes.items():
        ijk_to_ras = grids[number][1]
        for lesion in group_lesions(series_boxes):
            slices = lesion.slices
            center, size, _ = box_roi_geometry(ijk_to_ras, lesion.union_box, slices[0], slices[-1])
            lesion_rois.append(np.concatenate([center, size]))
        for box in series_boxes:
            center, size, _ = box_roi_geometry(ijk_to_ras, box.box, box.slice_index, box.slice_index)
            slice_rois.append(np.concatenate([center, size]))
    return files, objects, errors, np.array(slice_rois), np.array(lesion_rois)


def measure(root: str, workers: str) -> None:
    start = time.perf_counter()
    annotation = Path(root) / "Annotation"
    jobs = [(str(folder), str(Path(root) / "headers" / f"{folder.name}.json"))
            for folder in sorted(annotation.iterdir()) if folder.is_dir()]
    if int(workers) > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(int(workers)) as pool:
            results = list(pool.imap_unordered(map_patient, jobs, chunksize=4))
    else:
        results = [map_patient(job) for job in jobs]
    seconds = time.perf_counter() - start
    print(json.dumps({
        "seconds": seconds, "folders": len(jobs), "files": sum(r[0] for r in results),
        "objects": sum(r[1] for r in results), "errors": sum(r[2] for r in results),
        "slice_rois": sum(len(r[3]) for r in results), "lesion_rois": sum(len(r[4]) for r in results),
    }))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--measure", nargs=2, metavar=("ROOT", "WORKERS"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        measure(*arguments.measure)
        return 0
    from _common import median, run_isolated

    with tempfile.TemporaryDirectory(prefix="sllb-bench-voc-") as root:
        objects = make_tree(Path(root))
        run_isolated(Path(__file__), "--measure", root, "1")  # warm the page cache
        single, parallel = [], []
        for _ in range(arguments.runs):
            single.append(run_isolated(Path(__file__), "--measure", root, "1"))
            parallel.append(run_isolated(Path(__file__), "--measure", root, str(arguments.workers)))
    for result in single + parallel:
        if result["files"] != FILES or result["objects"] != objects or result["errors"] or \
                result["slice_rois"] != objects:
            print(f"WRONG RESULT: {result} (expected {FILES} files, {objects} objects, no errors)")
            return 1
    one, many = median([r["seconds"] for r in single]), median([r["seconds"] for r in parallel])
    last = parallel[-1]
    print(f"{last['files']} XML files in {last['folders']} patient folders, {last['objects']} boxes -> "
          f"{last['slice_rois']} per-slice ROIs + {last['lesion_rois']} lesion ROIs; median of {arguments.runs} runs, "
          f"warm page cache")
    print(f"1 process:   {one:.2f} s ({last['files'] / one:.0f} files/s)")
    print(f"{arguments.workers} processes: {many:.2f} s ({last['files'] / many:.0f} files/s)")
    print(f"time / {TARGET_SECONDS:g} s target: {many / TARGET_SECONDS:.3f} (target <= 1.0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
