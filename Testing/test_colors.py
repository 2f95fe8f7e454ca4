"""Distinct segment colours: far apart in CIELAB, no repeats, stable as the count grows."""
from __future__ import annotations

import numpy as np
import pytest

from SarcomaLungLiverBrowserLib.colors import MAX_DISTINCT_COLORS, delta_e, distinct_colors, srgb_to_lab

#: CRLM's liver, remnant and vessel colours (Slicer's generic anatomy colours), which tumours must avoid.
CRLM_STRUCTURES = [(221 / 255, 130 / 255, 101 / 255), (241 / 255, 214 / 255, 145 / 255),
                   (0 / 255, 151 / 255, 206 / 255), (216 / 255, 101 / 255, 79 / 255)]

#: "Clearly different colours" in CIE76 units (a just-noticeable difference is about 2.3).
MINIMUM_DELTA_E = 20.0


def test_lab_conversion_matches_published_values() -> None:
    """sRGB primaries and white in CIELAB (D65), as tabulated by Bruce Lindbloom's calculator."""
    expected = {
        (1.0, 0.0, 0.0): (53.2408, 80.0925, 67.2032),
        (0.0, 1.0, 0.0): (87.7347, -86.1827, 83.1793),
        (0.0, 0.0, 1.0): (32.2970, 79.1875, -107.8602),
        (1.0, 1.0, 1.0): (100.0, 0.0, 0.0),
        (128 / 255, 128 / 255, 128 / 255): (53.5850, 0.0, 0.0),
    }
    for rgb, lab in expected.items():
        assert np.allclose(srgb_to_lab(np.array(rgb)), lab, atol=2e-3), rgb


def _pairwise(colors: np.ndarray) -> np.ndarray:
    distances = delta_e(colors[:, None, :], colors[None, :, :])
    np.fill_diagonal(distances, np.inf)
    return distances


@pytest.mark.parametrize("avoid", [[], CRLM_STRUCTURES])
def test_forty_colours_are_far_apart_and_never_repeat(avoid) -> None:
    colors = np.array(distinct_colors(MAX_DISTINCT_COLORS, avoid))
    assert colors.shape == (MAX_DISTINCT_COLORS, 3)
    assert len({tuple(color) for color in colors}) == MAX_DISTINCT_COLORS
    assert _pairwise(colors).min() >= MINIMUM_DELTA_E
    if avoid:
        assert delta_e(colors[:, None, :], np.array(avoid)[None, :, :]).min() >= MINIMUM_DELTA_E
    assert np.all((colors >= 0.0) & (colors <= 1.0))


def test_colours_are_visible_over_grey_ct_and_stable_as_the_count_grows() -> None:
    colors = distinct_colors(MAX_DISTINCT_COLORS)
    lab = srgb_to_lab(np.array(colors))
    assert np.all(lab[:, 0] >= 35.0) and np.all(np.hypot(lab[:, 1], lab[:, 2]) >= 30.0)
    assert distinct_colors(9) == colors[:9]  # Tumor_9 keeps its colour when Tumor_10 appears
    assert distinct_colors(9)[8] != distinct_colors(9)[0]  # and is not Tumor_1's (the old palette repeated after 8)
    assert distinct_colors(0) == []
    with pytest.raises(ValueError):
        distinct_colors(-1)
