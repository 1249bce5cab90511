"""The number-series text format, the one home of its rules: values joined by a separator
(Gruver et al. 2023, as the paper's section 4.3 serializes them), and which tokens spell each
value. The serializer (:mod:`tlscopes.analysis.timeseries`) writes it; the explorer's series
view (:mod:`tlscopes.views.explorer_data`) reads it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SEPARATOR = ","
# A comma-separated series of integers (optionally signed or decimal), a trailing comma allowed.
SERIES_PATTERN = re.compile(r"^\s*-?\d+(\.\d+)?(\s*,\s*-?\d+(\.\d+)?)+\s*,?\s*$")


def is_number_series(text: str) -> bool:
    """True for text such as "29,30,45," (numbers joined by commas)."""
    return bool(SERIES_PATTERN.match(text))


def series_groups(tokens: Sequence[str]) -> list[list[int]]:
    """The token positions that spell each number of a comma-separated series.

    Digit, sign and decimal-point characters belong to the current number; a separator ends it;
    anything else (BOS, spaces) belongs to none. A token that holds digits and a separator
    (a tokenizer that merges "5,") counts for the number its digits belong to.
    """
    groups: list[list[int]] = [[]]
    for position, token in enumerate(tokens):
        text = token.strip()
        body = text.rstrip(SEPARATOR)
        if body and all(c.isdigit() or c in "-." for c in body) and any(c.isdigit() for c in body):
            groups[-1].append(position)
        if text.endswith(SEPARATOR) and groups[-1]:
            groups.append([])
    return [group for group in groups if group]


__all__ = ["SEPARATOR", "SERIES_PATTERN", "is_number_series", "series_groups"]
