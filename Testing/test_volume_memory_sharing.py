"""SceneBuilder.add_volume(share_memory=True): the node uses the array's memory, values unchanged."""
from __future__ import annotations

import gc

import numpy as np
import slicer.util

from SarcomaLungLiverBrowserLib.scene.builder import image_sharing_memory


def _voxels(dtype: type) -> np.ndarray:
    voxels = np.empty((7, 11, 13), dtype=dtype)
    voxels[:] = (np.arange(voxels.size) % 251).reshape(voxels.shape)
    return voxels


def test_shared_volume_holds_the_arrays_memory_and_values(builder) -> None:
    for dtype in (np.int16, np.float32, np.uint8):
        voxels = _voxels(dtype)
        expected = voxels.copy()
        node = builder.add_volume(f"shared {np.dtype(dtype).name}", voxels, np.diag([0.5, 0.7, 2.0, 1.0]),
                                  share_memory=True)
        in_scene = slicer.util.arrayFromVolume(node)
        assert np.shares_memory(in_scene, voxels)
        del voxels, in_scene
        gc.collect()  # the VTK array keeps the numpy memory alive on its own
        assert np.array_equal(slicer.util.arrayFromVolume(node), expected)
        assert slicer.util.arrayFromVolume(node).dtype == expected.dtype
        assert node.GetImageData().GetDimensions() == (13, 11, 7)


def test_arrays_that_cannot_be_shared_are_copied(builder) -> None:
    base = _voxels(np.int16)
    strided = base[:, :, ::2]  # not contiguous
    read_only = _voxels(np.int16)
    read_only.flags.writeable = False
    swapped = _voxels(np.int16).astype(">i2")  # not native byte order
    for voxels in (strided, read_only, swapped):
        assert image_sharing_memory(voxels) is None
        node = builder.add_volume("copied", voxels, np.eye(4), share_memory=True)
        in_scene = slicer.util.arrayFromVolume(node)
        assert not np.shares_memory(in_scene, voxels)
        assert np.array_equal(in_scene, voxels)


def test_default_still_copies(builder) -> None:
    voxels = _voxels(np.int16)
    node = builder.add_volume("copy", voxels, np.eye(4))
    assert not np.shares_memory(slicer.util.arrayFromVolume(node), voxels)
