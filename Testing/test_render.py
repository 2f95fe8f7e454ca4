"""Offscreen snapshot: the slice image with segment and ROI overlays, through EGL."""
from __future__ import annotations

import numpy as np
import vtk
from vtk.util import numpy_support

from SarcomaLungLiverBrowserLib.scene.render import render_slice_png
from SarcomaLungLiverBrowserLib.scene.builder import SegmentSpec, WindowPreset


def read_png(path):
    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    width, height, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return pixels.reshape(height, width, -1)


def test_snapshot_shows_volume_segment_and_roi(builder, tmp_path):
    shape = (20, 100, 100)
    k, j, i = np.indices(shape)
    body = ((i - 50) ** 2 / 45 ** 2 + (j - 50) ** 2 / 35 ** 2) < 1
    voxels = np.where(body, 40, -1000).astype(np.int16)
    matrix = np.diag([-1.0, -1.0, 3.0, 1.0])
    matrix[:3, 3] = [50, 50, 0]
    volume = builder.add_volume("CT", voxels, matrix, [WindowPreset("Abdomen", 400, 40)])
    liver = ((i - 35) ** 2 + (j - 45) ** 2 < 15 ** 2) & (k > 3) & (k < 16)
    builder.add_segmentation("Seg", volume, [SegmentSpec("Liver", (0.0, 0.0, 1.0), liver)])
    builder.add_roi("Box", [-20.0, -5.0, 30.0], [20.0, 20.0, 9.0], color=(1.0, 1.0, 0.0))
    path = render_slice_png(builder.scene, tmp_path / "snap.png", volume, center_ras=[0, 0, 30], size=(256, 256))
    pixels = read_png(path)
    assert pixels.shape[:2] == (256, 256)
    grey = (np.abs(pixels[..., 0].astype(int) - 127) <= 2) & (pixels[..., 0] == pixels[..., 1]) & (pixels[..., 1] == pixels[..., 2])
    assert grey.sum() > 5000, "the CT body (level 40 in a 400/40 window) should show as mid-grey"
    blueish = (pixels[..., 2].astype(int) - pixels[..., 0] > 40)
    assert blueish.sum() > 200, "the liver segment overlay should tint pixels blue"
    yellow = (pixels[..., 0] > 200) & (pixels[..., 1] > 200) & (pixels[..., 2] < 80)
    assert yellow.sum() > 50, "the ROI outline should be drawn in yellow"
