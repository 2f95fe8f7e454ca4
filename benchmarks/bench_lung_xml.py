"""Target 3: every VOC XML box of a Lung-PET-CT-Dx-sized tree parsed and mapped, against bare lxml parsing.

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
lesion ROI of a series at once (``box_roi_geometries``, as the loader does).

Peer: bare lxml, ``etree.parse(path)`` of the same files with lxml's default
parser and nothing else (no checks, no mapping).

Every side imports its modules before its clock starts (a loader in Slicer has them loaded). The series
geometry is timed apart (CPU time inside each process): the loader gets it from reading the DICOM series, not
from the boxes, so the target ratio is parse + map without it; the ratio with it is printed too.

Both sides run with 1 and with N processes the same way: patient folders in
chunks to a spawned process pool (``ProcessPoolExecutor``), results back as
small arrays; every run in a fresh interpreter, interleaved. Printed: wall
time, and CPU time of the run and its processes (user + system). On a machine
shared with other sessions, Linux's autogroup scheduling gives a session a
fixed share of the CPUs whatever its process count, so a second process can
only show in wall time when the machine has idle cores; the CPU-time ratio
(1 process / N processes) shows what parallelism costs independently of load.

    python benchmarks/bench_lung_xml.py [--workers 2] [--runs 3] [--files 31444]

A third side, "checked", runs our ``parse_voc`` alone (no mapping) so the ratio splits into parse and mapping.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

FILES = 31444
PATIENT_FOLDERS = 356
LETTERS = "AABBEGGA"  # roughly the collection's class mix (A most common)
#: Patient folders per task sent to a worker process.
CHUNK_FOLDERS = 8


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
def series_geometry(headers_path: str) -> Tuple[Dict[str, Tuple[int, int]], List[Tuple[dict, "object"]]]:
    """What reading a patient's series gives the box loader: SOPInstanceUID -> (series, slice), and per series its
    header and IJK-to-RAS matrix (stacked from the synthetic headers as the DICOM series reader stacks them)."""
    from SarcomaLungLiverBrowserLib.geometry import SlicePlane, ijk_to_ras_from_slices, sort_slices

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
    return lookup, grids


def map_patient(job: Tuple[str, str]) -> Tuple[int, int, int, "object", "object", float]:
    """Parse and map one patient folder: (files, objects, errors, slice ROIs n x 6, lesion ROIs m x 6, CPU seconds
    spent on the series geometry, which the loader has from reading the series)."""
    import numpy as np

    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx.boxes import (
        SliceBox,
        _clamp,
        box_roi_geometries,
        group_lesions,
    )
    from SarcomaLungLiverBrowserLib.errors import DataError
    from SarcomaLungLiverBrowserLib.formats.voc_xml import iter_xml_files, parse_voc

    folder, headers_path = job
    geometry_start = time.process_time()
    lookup, grids = series_geometry(headers_path)
    geometry_seconds = time.process_time() - geometry_start
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
    slice_rois, lesion_rois = [np.empty((0, 6))], [np.empty((0, 6))]
    for number, series_boxes in boxes.items():
        ijk_to_ras = grids[number][1]
        lesions = group_lesions(series_boxes)
        extents = [lesion.slices for lesion in lesions]
        center, size, _ = box_roi_geometries(ijk_to_ras, [lesion.union_box for lesion in lesions],
                                             [found[0] for found in extents], [found[-1] for found in extents])
        lesion_rois.append(np.hstack([center, size]))
        indices = [box.slice_index for box in series_boxes]
        center, size, _ = box_roi_geometries(ijk_to_ras, [box.box for box in series_boxes], indices, indices)
        slice_rois.append(np.hstack([center, size]))
    return files, objects, errors, np.vstack(slice_rois), np.vstack(lesion_rois), geometry_seconds


def parse_bare(job: Tuple[str, str]) -> Tuple[int, int, int, "object", "object"]:
    """The peer: every XML of one patient folder parsed by lxml with its default parser; (files, elements, 0, -, -)."""
    from lxml import etree

    folder, _ = job
    files = elements = 0
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.lower().endswith(".xml"):
            files += 1
            elements += sum(1 for _ in etree.parse(entry.path).getroot().iter("object"))
    return files, elements, 0, (), (), 0.0


def parse_checked(job: Tuple[str, str]) -> Tuple[int, int, int, "object", "object"]:
    """Our parse alone, to split the ratio: every XML of one folder through ``parse_voc`` (all checks), no mapping."""
    from SarcomaLungLiverBrowserLib.errors import DataError
    from SarcomaLungLiverBrowserLib.formats.voc_xml import iter_xml_files, parse_voc

    folder, _ = job
    files = objects = errors = 0
    for path in iter_xml_files(folder):
        files += 1
        try:
            objects += len(parse_voc(path).objects)
        except DataError:
            errors += 1
    return files, objects, errors, (), (), 0.0


_WORK = {"bare": parse_bare, "checked": parse_checked, "ours": map_patient}


def _run_chunk(kind: str, jobs: List[Tuple[str, str]]) -> List[Tuple[float, ...]]:
    """(files, objects, errors, slice ROIs, lesion ROIs, geometry CPU seconds) per job."""
    work = _WORK[kind]
    rows = []
    for job in jobs:
        files, objects, errors, slice_rois, lesion_rois, geometry_seconds = work(job)
        rows.append((files, objects, errors, len(slice_rois), len(lesion_rois), geometry_seconds))
    return rows


def _import_everything() -> None:
    """Imports every side needs, before the clock starts (a loader in Slicer has them loaded already)."""
    import numpy  # noqa: F401
    from lxml import etree  # noqa: F401

    from SarcomaLungLiverBrowserLib.collections.lung_pet_ct_dx import boxes  # noqa: F401
    from SarcomaLungLiverBrowserLib.formats import voc_xml  # noqa: F401
    from SarcomaLungLiverBrowserLib import geometry  # noqa: F401


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(kind: str, root: str, workers: str) -> None:
    _import_everything()
    cpu_start, start = _cpu_seconds(), time.perf_counter()
    annotation = Path(root) / "Annotation"
    jobs = [(str(folder), str(Path(root) / "headers" / f"{folder.name}.json"))
            for folder in sorted(annotation.iterdir()) if folder.is_dir()]
    chunks = [jobs[i : i + CHUNK_FOLDERS] for i in range(0, len(jobs), CHUNK_FOLDERS)]
    if int(workers) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(int(workers), mp_context=multiprocessing.get_context("spawn")) as pool:
            results = [row for rows in pool.map(_run_chunk, [kind] * len(chunks), chunks) for row in rows]
    else:
        results = [row for chunk in chunks for row in _run_chunk(kind, chunk)]
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    print(json.dumps({
        "seconds": seconds, "cpu_seconds": cpu, "folders": len(jobs), "files": sum(r[0] for r in results),
        "objects": sum(r[1] for r in results), "errors": sum(r[2] for r in results),
        "slice_rois": sum(r[3] for r in results), "lesion_rois": sum(r[4] for r in results),
        "geometry_cpu_seconds": sum(r[5] for r in results),
    }))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=FILES, help="XML files (the collection's count by default)")
    parser.add_argument("--measure", nargs=3, metavar=("KIND", "ROOT", "WORKERS"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        measure(*arguments.measure)
        return 0
    from _common import machine_and_versions, median, run_isolated

    settings = [("bare", 1), ("checked", 1), ("ours", 1), ("bare", arguments.workers), ("ours", arguments.workers)]
    files = arguments.files
    with tempfile.TemporaryDirectory(prefix="sllb-bench-voc-") as root:
        objects = make_tree(Path(root), files, max(1, round(PATIENT_FOLDERS * files / FILES)))
        run_isolated(Path(__file__), "--measure", "bare", root, "1")  # warm the page cache
        results: Dict[Tuple[str, int], List[Dict[str, float]]] = {setting: [] for setting in settings}
        for _ in range(arguments.runs):
            for kind, workers in settings:
                results[(kind, workers)].append(run_isolated(Path(__file__), "--measure", kind, root, str(workers)))
    for (kind, _), runs in results.items():
        for result in runs:
            wrong = result["files"] != files or result["objects"] != objects or result["errors"] or \
                (kind == "ours" and result["slice_rois"] != objects)
            if wrong:
                print(f"WRONG RESULT ({kind}): {result} (expected {files} files, {objects} objects, no errors)")
                return 1

    def med(kind: str, workers: int, key: str = "seconds") -> float:
        return median([r[key] for r in results[(kind, workers)]])

    last = results[("ours", 1)][-1]
    n = arguments.workers
    print(machine_and_versions(["lxml", "numpy"]))
    print(f"{last['files']} XML files in {last['folders']} patient folders, {last['objects']} boxes -> "
          f"{last['slice_rois']} per-slice ROIs + {last['lesion_rois']} lesion ROIs; median of {arguments.runs} "
          "interleaved runs, each in a fresh interpreter, warm page cache")
    for workers in (1, n):
        print(f"{workers} process(es): bare lxml {med('bare', workers):.2f} s (CPU {med('bare', workers, 'cpu_seconds'):.2f} s); "
              f"ours parse + map {med('ours', workers):.2f} s (CPU {med('ours', workers, 'cpu_seconds'):.2f} s)")
    print(f"checked parse alone (parse_voc, no mapping), 1 process: {med('checked', 1):.2f} s "
          f"(CPU {med('checked', 1, 'cpu_seconds'):.2f} s)")
    mapped_cpu = median([r["cpu_seconds"] - r["geometry_cpu_seconds"] for r in results[("ours", 1)]])
    bare_cpu = med("bare", 1, "cpu_seconds")
    print(f"of which the series geometry (SOPInstanceUID -> slice and IJK-to-RAS stacked from the headers, which "
          f"the loader has from reading the series): CPU {med('ours', 1, 'geometry_cpu_seconds'):.2f} s")
    print(f"ours/bare lxml, 1 process, CPU time: parse + map {mapped_cpu / bare_cpu:.2f} (target <= 2), of which "
          f"the checked parse {med('checked', 1, 'cpu_seconds') / bare_cpu:.2f}; with the series geometry "
          f"{med('ours', 1, 'cpu_seconds') / bare_cpu:.2f}; wall time with it {med('ours', 1) / med('bare', 1):.2f}")
    mapped_cpu_n = median([r["cpu_seconds"] - r["geometry_cpu_seconds"] for r in results[("ours", n)]])
    print(f"ours/bare lxml, {n} processes: CPU time parse + map {mapped_cpu_n / med('bare', n, 'cpu_seconds'):.2f} "
          f"(target <= 2); wall time with the series geometry {med('ours', n) / med('bare', n):.2f}")
    print(f"speed-up 1 -> {n} processes, wall: ours {med('ours', 1) / med('ours', n):.2f}x, "
          f"bare lxml {med('bare', 1) / med('bare', n):.2f}x (target: near {n}x on an idle machine)")
    print(f"CPU time 1 process / {n} processes (1.0 = parallelism costs nothing): ours "
          f"{med('ours', 1, 'cpu_seconds') / med('ours', n, 'cpu_seconds'):.2f}, bare lxml "
          f"{med('bare', 1, 'cpu_seconds') / med('bare', n, 'cpu_seconds'):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
