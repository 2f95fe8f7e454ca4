"""Progress reporting through a callback that the caller (e.g. the widget) owns.

A callback takes a message and a fraction in [0, 1] and may return ``True`` to
ask for cancellation, as Slicer's ``DICOMUtils.loadSeriesByUID`` does.
"""
from __future__ import annotations

from typing import Callable, Optional

from .errors import LoadCancelled

__all__ = ["ProgressCallback", "report", "sub_progress"]

ProgressCallback = Callable[[str, float], Optional[bool]]


def report(callback: Optional[ProgressCallback], message: str, fraction: float) -> None:
    """Send progress to ``callback``; raise :class:`LoadCancelled` if it asks to stop."""
    if callback is None:
        return
    if callback(message, max(0.0, min(1.0, float(fraction)))):
        raise LoadCancelled(message)


def sub_progress(callback: Optional[ProgressCallback], start: float, end: float) -> Optional[ProgressCallback]:
    """A callback mapping [0, 1] of a sub-task onto [start, end] of ``callback``."""
    if callback is None:
        return None

    def scaled(message: str, fraction: float) -> Optional[bool]:
        return callback(message, start + (end - start) * max(0.0, min(1.0, fraction)))

    return scaled
