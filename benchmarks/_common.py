"""Shared helpers for the benchmarks: realistic synthetic series, isolated timed runs."""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pydicom

from SarcomaLungLiverBrowserLib.samples.dicom_writer import SeriesSpec, write_series


def realistic_extra_header(seed: int = 0) -> Dict[str, object]:
    """Attributes a scanner writes that the loaders do not need but must parse past.

    Real CT headers carry 150-250 elements, private groups and sequences; a
    benchmark on a 45-element header would flatter any header parser.
    """
    rng = np.random.default_rng(seed)
    extra: Dict[str, object] = {
        "InstitutionName": "Memorial Hospital",
        "StationName": "CT01",
        "ProtocolName": "ABD_PEL_WITH",
        "ContrastBolusAgent": "OMNIPAQUE 350",
        "ConvolutionKernel": "STANDARD",
        "ReconstructionDiameter": "380",
        "DistanceSourceToDetector": "949.075012",
        "DistanceSourceToPatient": "541",
        "GantryDetectorTilt": "0",
        "TableHeight": "162.5",
        "RotationDirection": "CW",
        "ExposureTime": "600",
        "XRayTubeCurrent": "350",
        "Exposure": "10",
        "FilterType": "BODY FILTER",
        "GeneratorPower": "42000",
        "FocalSpots": "0.7",
        "PatientWeight": "71.2",
        "ImageComments": "synthetic benchmark slice " + "x" * 200,
    }
    return extra


def add_private_and_sequences(path: Path) -> None:
    """Give a written file a private block and a referenced-image sequence, as scanners do."""
    dataset = pydicom.dcmread(str(path))
    block = dataset.private_block(0x0009, "GEMS_IDEN_01", create=True)
    for offset in range(0x01, 0x30):
        block.add_new(offset, "LO", f"private value {offset:02x}")
    item = pydicom.Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = dataset.SOPInstanceUID
    dataset.ReferencedImageSequence = [item, item]
    dataset.save_as(str(path), enforce_file_format=True)


def write_ct_series(folder: Path, slices: int, size: int = 512, seed: int = 0) -> List[Path]:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2500, (slices, size, size), dtype=np.int16)
    spec = SeriesSpec(
        patient_id="BENCH-1", study_instance_uid="1.2.826.0.1.3680043.8.498.1",
        series_instance_uid="1.2.826.0.1.3680043.8.498.1.1", frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1.9",
        modality="CT", series_number=2, series_description="benchmark", stored_values=values,
        positions=[[-190.0, -190.0, -400.0 + 1.25 * k] for k in range(slices)], pixel_spacing=(0.742, 0.742),
        slice_thickness=1.25, rescale_intercept=-1024.0, extra=realistic_extra_header(seed),
    )
    written = write_series(spec, folder, file_names="idc")
    for path in written.paths:
        add_private_and_sequences(path)
    return written.paths


def process_memory_mb(field: str) -> float:
    """A memory figure of this process from /proc: VmRSS (now) or VmHWM (peak since exec or the last reset).

    Unlike ``ru_maxrss``, VmHWM is not inherited across exec, so a parent's
    peak (e.g. while generating data) does not leak into a measurement.
    """
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_isolated(script: Path, *arguments: str) -> Dict[str, float]:
    """Run one measurement in a fresh interpreter; it prints one JSON line."""
    output = subprocess.run([sys.executable, str(script), *arguments], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def median(values: List[float]) -> float:
    return float(statistics.median(values))


def machine_and_versions(packages: List[str]) -> str:
    """One line naming the machine, its load and the versions measured, printed with every result."""
    import os
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = []
    for name in packages:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} CPUs, "
            f"load {load:.1f}; Python {platform.python_version()}; " + ", ".join(versions))


def reset_peak_memory() -> float:
    """Reset this process's VmHWM to its current RSS (Linux clear_refs) and return that RSS in MB.

    A measurement's peak is then VmHWM minus this baseline: what the measured
    work added on top of what was loaded before it, measured the same way for
    every side.
    """
    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as stream:
        stream.write("5")
    return process_memory_mb("VmRSS")
