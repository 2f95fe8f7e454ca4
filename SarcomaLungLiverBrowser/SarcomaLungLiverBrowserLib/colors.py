"""Distinct segment colours, chosen far apart in a perceptual colour space (CIELAB).

A fixed list of 8 colours repeats from the 9th segment on (Tumor_9 looked like
Tumor_1). :func:`distinct_colors` instead picks colours one by one, each the
sRGB colour farthest (CIE76 ΔE, Euclidean distance in CIELAB) from every colour
already chosen and from the colours to avoid (e.g. the liver and vessel
colours of the same segmentation). The sequence is deterministic and each
call's result is a prefix of a longer call's, so segment n keeps its colour
when more segments are added.

Candidates are restricted to colours that stay visible over a grey CT: not
too dark, not too pale, not grey (lightness and chroma bounds below).
Plain numpy, no library state: usable by readers, collections and tests.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable, List, Sequence, Tuple

import numpy as np

__all__ = ["RGB", "srgb_to_lab", "delta_e", "distinct_colors", "MAX_DISTINCT_COLORS"]

#: A colour as (red, green, blue), each 0..1 (Slicer's segment colour convention).
RGB = Tuple[float, float, float]

#: Distinct colours guaranteed far apart (tested); more are still unique, only closer.
MAX_DISTINCT_COLORS = 40

#: Lightness and chroma bounds of candidate colours (CIELAB units).
_MIN_LIGHTNESS, _MAX_LIGHTNESS = 35.0, 92.0
_MIN_CHROMA = 30.0

#: Candidate sRGB levels per channel (17 gives steps of 1/16: 4,913 candidates).
_LEVELS = 17

#: D65 reference white (CIE 1931 2°), as used by sRGB.
_WHITE = np.array([0.95047, 1.0, 1.08883])
_SRGB_TO_XYZ = np.array([
    [0.4124564, 0.3575761, 0.1804375],
    [0.2126729, 0.7151522, 0.0721750],
    [0.0193339, 0.1191920, 0.9503041],
])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours given as (..., 3) values in 0..1."""
    rgb = np.clip(np.asarray(rgb, dtype=float), 0.0, 1.0)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _WHITE
    epsilon, kappa = 216.0 / 24389.0, 24389.0 / 27.0
    f = np.where(xyz > epsilon, np.cbrt(xyz), (kappa * xyz + 16.0) / 116.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])],
                    axis=-1)


def delta_e(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """CIE76 colour difference (Euclidean distance in CIELAB) of sRGB colours (..., 3)."""
    return np.linalg.norm(srgb_to_lab(first) - srgb_to_lab(second), axis=-1)


@lru_cache(maxsize=1)
def _candidates() -> Tuple[np.ndarray, np.ndarray]:
    """(sRGB, CIELAB) of the candidate colours, visible over grey CT."""
    levels = np.linspace(0.0, 1.0, _LEVELS)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = srgb_to_lab(rgb)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    keep = (lab[:, 0] >= _MIN_LIGHTNESS) & (lab[:, 0] <= _MAX_LIGHTNESS) & (chroma >= _MIN_CHROMA)
    return rgb[keep], lab[keep]


def distinct_colors(count: int, avoid: Iterable[Sequence[float]] = ()) -> List[RGB]:
    """``count`` colours, each as far as possible (CIELAB) from the others and from ``avoid``.

    :param count: how many colours; never repeats up to the number of candidates.
    :param avoid: colours already in use (0..1 RGB) that the new ones keep away from.
    :raises ValueError: for a negative count or more colours than candidates.
    """
    rgb, lab = _candidates()
    if count < 0 or count > len(rgb):
        raise ValueError(f"can give 0 to {len(rgb)} distinct colours, not {count}")
    avoided = [tuple(float(c) for c in color) for color in avoid]
    nearest = np.full(len(rgb), np.inf)
    if avoided:
        distances = np.linalg.norm(lab[:, None, :] - srgb_to_lab(np.array(avoided))[None, :, :], axis=2)
        nearest = distances.min(axis=1)
    chosen: List[RGB] = []
    for _ in range(count):
        # Without anything to avoid, start from the most saturated candidate (a stable, vivid first colour).
        index = int(np.argmax(nearest)) if np.isfinite(nearest).any() else \
            int(np.argmax(np.hypot(lab[:, 1], lab[:, 2])))
        chosen.append((float(rgb[index, 0]), float(rgb[index, 1]), float(rgb[index, 2])))
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[index], axis=1))
    return chosen
