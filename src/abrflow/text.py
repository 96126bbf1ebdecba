"""Numbers as text for people: the one formatter for unknown, NaN and infinite values.

Reports, tables printed by the CLI and report.txt all write a number through :func:`number`, each
with the words its reader expects ("unknown", "no response", "n/a"), never Python's ``nan``/``inf``.
"""

from __future__ import annotations

import math
import numbers


def number(value, fmt: str = ".3f", *, none: str = "n/a", nan: str | None = None, inf: str = "inf",
           neg_inf: str | None = None, unit: str = "") -> str:
    """``value`` formatted with ``fmt`` (and ``unit``) when finite; else a word.

    None → ``none``; NaN → ``nan`` (default: the word for None, "not known"); +inf → ``inf``;
    −inf → ``neg_inf`` (default: ``"-" + inf``).
    """
    if value is None:
        return none
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):  # float, NumPy floats
        if math.isnan(value):
            return none if nan is None else nan
        if math.isinf(value):
            return inf if value > 0 else (f"-{inf}" if neg_inf is None else neg_inf)
    return f"{value:{fmt}}{unit}"
