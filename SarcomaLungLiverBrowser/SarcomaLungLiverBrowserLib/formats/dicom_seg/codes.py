"""Coded concepts of DICOM SEG segments and Slicer's ``TerminologyEntry`` text form.

Plain data and string handling only: nothing here needs highdicom, so indexing
and segment tags stay light.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:  # pragma: no cover - typing only; highdicom is imported where it is used
    import highdicom as hd

__all__ = ["SegCode", "TISSUE", "TERMINOLOGY_CONTEXT", "ANATOMIC_CONTEXT", "TAG_PREFIX",
           "terminology_entry", "parse_terminology_entry"]

#: Slicer's terminology context names, as written into ``TerminologyEntry`` tags.
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

#: Segment tag names (Slicer's DICOM SEG plugin uses the same "DICOM." prefix).
TAG_PREFIX = "DICOM."


@dataclass(frozen=True)
class SegCode:
    """A coded concept (value, coding scheme, meaning), as DICOM SEG stores them."""

    value: str
    scheme: str
    meaning: str

    @classmethod
    def from_item(cls, item: Any) -> Optional["SegCode"]:
        """The code of a code sequence item (pydicom Dataset or highdicom CodedConcept)."""
        if item is None:
            return None
        value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue")
        if value is None:
            return None
        return cls(str(value), str(item.get("CodingSchemeDesignator", "")), str(item.get("CodeMeaning", "")))

    @classmethod
    def parse(cls, text: str) -> Optional["SegCode"]:
        """A code from Slicer's ``scheme^value^meaning`` form, None when blank."""
        parts = (text or "").split("^")
        if len(parts) < 3 or not parts[1]:
            return None
        return cls(value=parts[1], scheme=parts[0], meaning="^".join(parts[2:]))

    def to_concept(self) -> hd.sr.CodedConcept:
        """The code as highdicom's CodedConcept (for writing)."""
        import highdicom as hd

        return hd.sr.CodedConcept(self.value, self.scheme, self.meaning)

    def __str__(self) -> str:
        """Slicer's ``scheme^value^meaning`` form."""
        return f"{self.scheme}^{self.value}^{self.meaning.replace('~', '-').replace('^', ' ')}"


def _first_code(dataset: Any, keyword: str) -> Optional[SegCode]:
    sequence = dataset.get(keyword)
    if not sequence:
        return None
    return SegCode.from_item(sequence[0])


#: Codes used when a segment comes without any (e.g. drawn freshly in Slicer).
TISSUE = SegCode("85756007", "SCT", "Tissue")

def terminology_entry(category: Optional[SegCode], type_: Optional[SegCode],
                      type_modifier: Optional[SegCode] = None, anatomic_region: Optional[SegCode] = None) -> str:
    """Slicer's ``TerminologyEntry`` tag text for these codes ('' without a type)."""
    if type_ is None:
        return ""
    blank = "^^"
    return "~".join([
        TERMINOLOGY_CONTEXT,
        str(category or TISSUE),
        str(type_),
        str(type_modifier) if type_modifier else blank,
        ANATOMIC_CONTEXT,
        str(anatomic_region) if anatomic_region else blank,
        blank,
    ])


def parse_terminology_entry(text: str) -> Dict[str, Optional[SegCode]]:
    """Codes from a ``TerminologyEntry`` tag (missing parts are None)."""
    parts = (text or "").split("~")
    parts += [""] * (7 - len(parts))
    return {
        "category": SegCode.parse(parts[1]),
        "type": SegCode.parse(parts[2]),
        "type_modifier": SegCode.parse(parts[3]),
        "anatomic_region": SegCode.parse(parts[5]),
    }
