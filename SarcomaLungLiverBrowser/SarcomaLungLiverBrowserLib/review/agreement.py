"""Agreement between readers: percent agreement, Cohen's kappa (two readers), Fleiss' kappa (more);
and, for the report, the collection's expert vs AI segmentation agreement (measured per case by the
collections, see ``formats.seg_agreement``) gathered into rows and a per-structure summary.

The statistics are computed here in a few lines of plain Python rather than
with statsmodels or scikit-learn: those would add SciPy (and more) to every
Slicer that installs the extension, for two formulas. The test suite checks
every value against statsmodels (``statsmodels.stats.inter_rater``) and
against hand-computed fixtures.

An *item* is one case (whole-case verdicts) or one annotation of a case. For a
group of items (the whole collection, or one item type such as ``"Tumor"``)
the readers are everyone who gave a verdict in the group, and the statistics
use the items that every one of them rated, so that each item has the same
number of ratings (which Fleiss' kappa requires); the item count says how many
that was.
"""
from __future__ import annotations

import collections
import math
import statistics
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from .store import VERDICTS, ReviewRecord, default_item_type

__all__ = ["Agreement", "AGREEMENT_COLUMNS", "cohen_kappa", "fleiss_kappa", "percent_agreement",
           "reader_agreement", "agreement_rows"]

#: Columns of the agreement table (report, table node, ``sllb review --agreement``).
AGREEMENT_COLUMNS = ["group", "item_type", "readers", "items", "percent_agreement", "kappa", "statistic", "note"]

COHEN, FLEISS = "Cohen's kappa", "Fleiss' kappa"


@dataclass(frozen=True)
class Agreement:
    """Agreement of the readers of one group of items.

    :param group: ``"collection"`` for every item, else ``"item type"``.
    :param item_type: the item type (``""`` for the whole collection).
    :param items: how many items every reader rated (the statistics' sample).
    :param percent_agreement: the share of those items on which every reader
        gave the same verdict, in percent; None without items.
    :param kappa: Cohen's (two readers) or Fleiss' (more) kappa; None when it
        is undefined (fewer than two readers, no items, or every verdict the
        same category, where chance agreement is already 1).
    :param note: why a statistic is missing, if it is.
    """

    group: str
    item_type: str
    readers: Tuple[str, ...]
    items: int
    percent_agreement: Optional[float]
    kappa: Optional[float]
    statistic: str
    note: str = ""

    def row(self) -> List[object]:
        """The values in the order of :data:`AGREEMENT_COLUMNS`."""
        return [self.group, self.item_type, ", ".join(self.readers), self.items,
                "" if self.percent_agreement is None else round(self.percent_agreement, 2),
                "" if self.kappa is None else round(self.kappa, 4), self.statistic, self.note]


def percent_agreement(ratings: Sequence[Sequence[str]]) -> Optional[float]:
    """Percent of items (one sequence of the readers' verdicts each) on which all readers agree."""
    if not ratings:
        return None
    return 100.0 * sum(1 for item in ratings if len(set(item)) == 1) / len(ratings)


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> Optional[float]:
    """Cohen's kappa of two readers' verdicts on the same items (in the same order).

    ``(p_o - p_e) / (1 - p_e)``: observed agreement against the agreement
    expected by chance from each reader's own verdict frequencies. None when
    undefined (no items, or ``p_e == 1``).
    """
    if len(first) != len(second):
        raise ValueError(f"both readers must rate the same items ({len(first)} != {len(second)})")
    count = len(first)
    if count == 0:
        return None
    observed = sum(1 for a, b in zip(first, second) if a == b) / count
    first_counts, second_counts = collections.Counter(first), collections.Counter(second)
    expected = sum(first_counts[category] * second_counts[category] for category in first_counts) / count ** 2
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> Optional[float]:
    """Fleiss' kappa from a table of counts: one row per item, one column per category,
    each row summing to the same number of ratings (at least two).

    None when undefined (no items, or every rating in one category).
    """
    if not counts:
        return None
    raters = sum(counts[0])
    if raters < 2 or any(sum(row) != raters for row in counts):
        raise ValueError("every item needs the same number (at least two) of ratings")
    items = len(counts)
    categories = len(counts[0])
    shares = [sum(row[column] for row in counts) / (items * raters) for column in range(categories)]
    per_item = [(sum(value * value for value in row) - raters) / (raters * (raters - 1)) for row in counts]
    observed = sum(per_item) / items
    expected = sum(share * share for share in shares)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def _group_agreement(group: str, item_type: str, records: Sequence[ReviewRecord]) -> Agreement:
    readers = tuple(sorted({record.reviewer for record in records}))
    by_item: Dict[Tuple[str, str], Dict[str, str]] = collections.defaultdict(dict)
    for record in records:
        by_item[(record.case_id, record.annotation)][record.reviewer] = record.verdict
    complete = [by_item[item] for item in sorted(by_item) if len(by_item[item]) == len(readers)]
    ratings = [[verdicts[reader] for reader in readers] for verdicts in complete]
    if len(readers) < 2:
        return Agreement(group, item_type, readers, len(ratings), None, None, "",
                         "fewer than two readers")
    statistic = COHEN if len(readers) == 2 else FLEISS
    if not ratings:
        return Agreement(group, item_type, readers, 0, None, None, statistic, "no item was rated by every reader")
    if len(readers) == 2:
        kappa = cohen_kappa([item[0] for item in ratings], [item[1] for item in ratings])
    else:
        categories = sorted({verdict for item in ratings for verdict in item} | set(VERDICTS))
        kappa = fleiss_kappa([[item.count(category) for category in categories] for item in ratings])
    note = "" if kappa is not None else "kappa undefined: every verdict is in one category"
    return Agreement(group, item_type, readers, len(ratings), percent_agreement(ratings), kappa, statistic, note)


def reader_agreement(records: Iterable[ReviewRecord]) -> List[Agreement]:
    """Agreement over the whole collection, then per item type (whole cases first, then alphabetical).

    :param records: every reader's current verdict (``ReviewStore.verdicts()``).
    """
    records = list(records)
    by_type: Dict[str, List[ReviewRecord]] = collections.defaultdict(list)
    for record in records:
        by_type[record.item_type or default_item_type(record.annotation)].append(record)
    result = [_group_agreement("collection", "", records)]
    result.extend(_group_agreement("item type", item_type, by_type[item_type]) 
                  for item_type in sorted(by_type, key=lambda name: (name != "case", name.lower())))
    return result


def agreement_rows(agreements: Sequence[Agreement]) -> List[List[object]]:
    """The agreements as rows of :data:`AGREEMENT_COLUMNS`."""
    return [agreement.row() for agreement in agreements]


# ---------------------------------------------------------------------- expert vs AI segmentations
#: Columns of ``segmentation_agreement.csv``: the case, then its rows (see ``formats.seg_agreement``).
SEGMENTATION_AGREEMENT_CSV_COLUMNS = ["case_id", "reference", "test", "test_description", "kind", "structure",
                                      "reference_labels", "test_labels", "dice", "hd95_mm", "reference_ml",
                                      "test_ml", "volume_difference_ml", "volume_difference_percent"]

#: Columns of ``segmentation_agreement_summary.csv``: one row per test series description, kind and structure.
SEGMENTATION_SUMMARY_COLUMNS = ["test_description", "kind", "structure", "cases", "dice_mean", "dice_median",
                                "hd95_mean_mm", "hd95_median_mm", "volume_difference_mean_ml"]


def segmentation_agreement_rows(cases: Iterable[Any]) -> List[Dict[str, Any]]:
    """Every case's expert vs AI rows (its ``metrics["seg_agreement"]``), each with its case ID, in case order.

    :param cases: per-case QA results (anything with ``case_id`` and ``metrics``).
    """
    rows: List[Dict[str, Any]] = []
    for case in cases:
        for row in case.metrics.get("seg_agreement", []) or []:
            rows.append({"case_id": case.case_id, **{column: row.get(column)
                                                      for column in SEGMENTATION_AGREEMENT_CSV_COLUMNS[1:]}})
    return rows


def _finite(values: Iterable[Any]) -> List[float]:
    finite = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            finite.append(number)
    return finite


def segmentation_agreement_summary(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The collection's expert vs AI agreement: per AI series description (an AI result and its
    radiologist-corrected form are different readers), kind of row and structure, the number of cases and
    the mean and median Dice and HD95 over the rows where they are defined, and the mean volume difference.

    Means and medians of an empty set are None (shown empty), never 0.
    """
    groups: Dict[Tuple[str, str, str], List[Dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row.get("test_description") or ""), str(row["kind"]), str(row["structure"])),
                          []).append(row)
    summary = []
    for (description, kind, structure), members in groups.items():
        dice_values = _finite(row["dice"] for row in members)
        hd95_values = _finite(row["hd95_mm"] for row in members)
        differences = _finite(row["volume_difference_ml"] for row in members)
        summary.append({
            "test_description": description, "kind": kind, "structure": structure,
            "cases": len({row["case_id"] for row in members}),
            "dice_mean": statistics.fmean(dice_values) if dice_values else None,
            "dice_median": statistics.median(dice_values) if dice_values else None,
            "hd95_mean_mm": statistics.fmean(hd95_values) if hd95_values else None,
            "hd95_median_mm": statistics.median(hd95_values) if hd95_values else None,
            "volume_difference_mean_ml": statistics.fmean(differences) if differences else None,
        })
    return summary


__all__ += ["SEGMENTATION_AGREEMENT_CSV_COLUMNS", "SEGMENTATION_SUMMARY_COLUMNS", "segmentation_agreement_rows",
            "segmentation_agreement_summary"]
