"""Read clinical and feature spreadsheets (xlsx, csv) into pandas, with clear errors.

Collections code their missing values differently (CRLM uses 999 / -999);
callers name their sentinels and get NaN in their place.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError
from .limits import check_spreadsheet_archive

__all__ = ["read_table", "require_columns", "replace_sentinels"]


def read_table(path: Path, sheet: Optional[str] = None, fallback_to_first_sheet: bool = False) -> pd.DataFrame:
    """Read a ``.xlsx``/``.xls``/``.csv``/``.tsv`` file.

    :param sheet: the worksheet to read from a workbook.
    :param fallback_to_first_sheet: read the first sheet when ``sheet`` is absent
        (for files whose sheet was renamed); otherwise that is an error.
    :raises DataError: naming the file, if it cannot be read or the sheet is missing.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".xlsx", ".xlsm", ".xls"):
            # Declared member sizes bound what openpyxl can unpack: refuse a zip bomb before it starts.
            check_spreadsheet_archive(path)
            workbook = pd.ExcelFile(path)
            names = workbook.sheet_names
            if sheet is not None and sheet not in names:
                if not fallback_to_first_sheet:
                    raise DataError(path, f"has no sheet {sheet!r} (sheets: {', '.join(names)})")
                sheet = names[0]
            return pd.read_excel(workbook, sheet_name=sheet if sheet is not None else names[0])
        if suffix in (".csv", ".tsv", ".txt"):
            separator = "\t" if suffix == ".tsv" else ","
            try:
                return pd.read_csv(path, sep=separator)
            except UnicodeDecodeError:
                # Spreadsheets exported on Windows (e.g. INFOclinical_STS) are cp1252.
                return pd.read_csv(path, sep=separator, encoding="cp1252")
    except DataError:
        raise
    except FileNotFoundError as error:
        raise DataError(path, "does not exist") from error
    except Exception as error:  # openpyxl/pandas raise many types for damaged files
        raise DataError(path, f"cannot be read as a table ({type(error).__name__}: {error})") from error
    raise DataError(path, f"is not a spreadsheet this extension reads (.xlsx, .csv, .tsv), got {suffix or 'no suffix'}")


def require_columns(table: pd.DataFrame, columns: Iterable[str], path: Path) -> None:
    """Raise :class:`DataError` naming the file and the columns it lacks."""
    missing: List[str] = [column for column in columns if column not in table.columns]
    if missing:
        raise DataError(path, f"lacks column(s) {', '.join(map(repr, missing))} "
                              f"(has {', '.join(map(str, list(table.columns)[:8]))}...)")


def replace_sentinels(table: pd.DataFrame, sentinels: Sequence[float]) -> pd.DataFrame:
    """A copy with numeric sentinel values (e.g. 999, -999) replaced by NaN."""
    result = table.copy()
    for column in result.columns:
        if result[column].dtype.kind in "iuf":
            values = result[column].astype(float)
            result[column] = values.where(~values.isin(list(sentinels)), np.nan)
        elif result[column].dtype == object:
            result[column] = result[column].map(
                lambda value: np.nan if _is_sentinel(value, sentinels) else value
            )
    return result


def _is_sentinel(value: object, sentinels: Sequence[float]) -> bool:
    try:
        return float(value) in sentinels  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
