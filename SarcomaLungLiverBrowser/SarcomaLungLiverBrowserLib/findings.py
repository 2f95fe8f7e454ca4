"""QA findings: what a check found, how serious it is, and where to look."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

__all__ = ["Finding", "ERROR", "WARNING", "INFO"]

ERROR = "error"
WARNING = "warning"
INFO = "info"


@dataclass(frozen=True)
class Finding:
    """One result of a QA check on a case.

    :param severity: ``"error"`` (data unusable or wrong), ``"warning"``
        (needs a reviewer's look) or ``"info"`` (a measurement).
    :param check: stable machine name of the check, e.g. ``"seg.empty_segment"``.
    :param message: the finding in words, naming the file or object.
    :param case_id: the case it belongs to.
    :param path: the file it concerns, if any.
    :param node_name: the MRML node it concerns, if any.
    :param segment_id: the segment it concerns, if any.
    :param ras: a point to jump the slice views to, if any.
    :param value: a measured value, if the check measures one.
    """

    severity: str
    check: str
    message: str
    case_id: str = ""
    path: str = ""
    node_name: str = ""
    segment_id: str = ""
    ras: Optional[Tuple[float, float, float]] = None
    value: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)
