"""Text from file names that are not UTF-8, written where only UTF-8 text can go.

On POSIX a file name is bytes. Python decodes the bytes that are not UTF-8
(a folder unpacked from an archive made with a Latin-1 or Shift-JIS system)
to lone surrogates (``os.fsdecode``: byte 0xE9 becomes U+DCE9), so such a
path round-trips to the file system. Nothing that takes UTF-8 -- VTK
strings in the scene, a CSV or HTML report, a Parquet column, an SQLite
text value -- accepts a lone surrogate: each refuses the whole string. Our
outputs spell such a byte out as ``\\xe9`` (as Python prints bytes), so the
name still shows where the file is instead of stopping the load or report.
"""
from __future__ import annotations

import codecs
import re
from typing import Any, Tuple

__all__ = ["SPELL_OUT_UNDECODABLE", "spell_out_undecodable"]

#: The name of the codec error handler that spells out undecodable bytes: ``open(..., errors=SPELL_OUT_UNDECODABLE)``.
SPELL_OUT_UNDECODABLE = "sllb-spell-out-undecodable"

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _spelled(character: str) -> str:
    code = ord(character)
    # U+DC80..U+DCFF stand for the bytes 0x80..0xFF of a file name (PEP 383); any other lone surrogate is spelled
    # as its code point.
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def spell_out_undecodable(value: Any) -> str:
    """``str(value)`` with each lone surrogate written out (``caf\\udce9`` -> ``caf\\xe9``); other text unchanged."""
    text = str(value)
    if text.isascii():
        return text
    return _LONE_SURROGATE.sub(lambda match: _spelled(match.group()), text)


def _spell_out_error(error: UnicodeError) -> Tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    spelled = "".join(_spelled(character) if _LONE_SURROGATE.match(character) else character
                      for character in error.object[error.start:error.end])
    if spelled == error.object[error.start:error.end]:
        raise error  # a character the codec cannot write that is not a surrogate (e.g. in an ASCII file)
    return spelled, error.end


codecs.register_error(SPELL_OUT_UNDECODABLE, _spell_out_error)
