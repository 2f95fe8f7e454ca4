"""Names from the data are sanitised once, where they enter the scene or become file names.

NUL and control characters, overlong names and colliding segment IDs must
neither hang a scene call, stop a load nor fail a save with "File name too long".
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from SarcomaLungLiverBrowserLib.case_data import SegmentSpec
from SarcomaLungLiverBrowserLib.formats.atomic import write_text_atomically
from SarcomaLungLiverBrowserLib.formats.output_paths import (
    MAX_COMPONENT_BYTES, bounded_file_name, safe_output_path, sanitise_file_name)
from SarcomaLungLiverBrowserLib.scene.builder import (
    MAX_NODE_NAME_LENGTH, sanitise_node_name, sanitise_segment_id)

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, expected", [
    ("CT\x00 series A", "CT series A"),
    ("T1\tpost\r\ncontrast", "T1 post contrast"),
    ("\x00\x01\x1f", "unnamed"),
    ("PET\x85AC", "PET AC"),
    ("Liver", "Liver"),
])
def test_node_names_lose_control_characters(text: str, expected: str) -> None:
    assert sanitise_node_name(text) == expected


def test_node_names_and_segment_ids_are_bounded() -> None:
    long = "x" * 1000
    assert len(sanitise_node_name(long)) == MAX_NODE_NAME_LENGTH and sanitise_node_name(long).endswith("\u2026")
    assert len(sanitise_segment_id(long)) == MAX_NODE_NAME_LENGTH
    assert sanitise_segment_id("GTV\x00Mass") == "GTV_Mass"


def test_nul_in_two_series_descriptions_with_a_common_prefix_does_not_hang_the_scene() -> None:
    """``GenerateUniqueName`` loops forever on such names; run in a child with a deadline."""
    code = """
import numpy as np
from SarcomaLungLiverBrowserLib.scene.headless import HeadlessSlicer
from SarcomaLungLiverBrowserLib.scene.builder import SceneBuilder
environment = HeadlessSlicer(install_globals=False)
builder = SceneBuilder(environment.scene)
names = []
for description in ["CT\\x00 arterial", "CT\\x00 venous", "CT\\x00 arterial"]:
    node = builder.add_volume(description, np.zeros((2, 3, 4), dtype=np.int16), np.eye(4))
    names.append(node.GetName())
print(repr(names))
"""
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY / "SarcomaLungLiverBrowser"))
    completed = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    names = eval(completed.stdout.strip().splitlines()[-1])  # a list of str printed by repr
    assert names[0] == "CT arterial" and names[1] == "CT venous"
    assert len(set(names)) == 3 and all("\x00" not in name for name in names)


def test_colliding_segment_ids_all_load_under_unique_ids(builder) -> None:  # type: ignore[no-untyped-def]
    """RTSTRUCT ROIs ``GTV`` and ``GTV_Mass`` both normalised to ``GTV`` must both load."""
    volume = builder.add_volume("CT", np.zeros((4, 5, 6), dtype=np.int16), np.eye(4))
    masks = [np.zeros((4, 5, 6), dtype=bool) for _ in range(4)]
    for index, mask in enumerate(masks):
        mask[index, 1:3, 1:3] = True
    specs = [SegmentSpec(name="GTV", color=(1, 0, 0), mask=masks[0], segment_id="GTV"),
             SegmentSpec(name="GTV_Mass", color=(0, 1, 0), mask=masks[1], segment_id="GTV"),
             SegmentSpec(name="GTV\x00left", color=(0, 0, 1), mask=masks[2], segment_id="GTV\x00left"),
             SegmentSpec(name="GTV\x00right", color=(1, 1, 0), mask=masks[3], segment_id="GTV\x00right")]
    node = builder.add_segmentation("RTSTRUCT", volume, specs)
    segmentation = node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
    assert ids == ["GTV", "GTV_2", "GTV_left", "GTV_right"]
    names = [segmentation.GetSegment(identifier).GetName() for identifier in ids]
    assert names == ["GTV", "GTV_Mass", "GTV left", "GTV right"]


def test_a_300_character_patient_id_gives_a_bounded_writable_name(tmp_path: Path) -> None:
    patient_a = "P" * 299 + "A"
    patient_b = "P" * 299 + "B"
    folder_a, folder_b = safe_output_path(tmp_path, patient_a), safe_output_path(tmp_path, patient_b)
    assert folder_a != folder_b and folder_a == safe_output_path(tmp_path, patient_a)  # unique, repeatable
    folder_a.mkdir()
    target = safe_output_path(folder_a, patient_a + ".nii.gz", ".nii.gz")
    assert target.name.endswith(".nii.gz") and len(target.name.encode()) <= MAX_COMPONENT_BYTES
    write_text_atomically(target, "written")
    assert target.read_text() == "written"
    assert len(sanitise_file_name("Ü" * 300).encode()) <= 120
    assert sanitise_file_name("Ü" * 300) != sanitise_file_name("Ü" * 299 + "u")
    assert bounded_file_name("short.dcm", ".dcm") == "short.dcm"
