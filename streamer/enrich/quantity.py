"""Kubernetes resource quantities ("128Mi", "1.5Gi", "129e6", "100m") as whole bytes, exactly.

The grammar is the API's (k8s.io/apimachinery resource.Quantity): ``[+-]<digits>[.<digits>]<suffix>``
with a binary-SI suffix (Ki Mi Gi Ti Pi Ei), a decimal-SI suffix (n u m "" k M G T P E) or a decimal
exponent (``e<n>`` / ``E<n>``). Arithmetic is done with :class:`decimal.Decimal` so "1.5Gi" is exactly
1610612736, and fractions of a byte round *up* as the API does ("100m" = 0.1 byte -> 1).

Negative values, values beyond int64 and anything that does not parse give None: a memory quantity in a
pod spec is never negative, and the caller counts the failure instead of guessing.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Context, Decimal, InvalidOperation
from functools import lru_cache
from typing import Final

__all__ = ["parse_quantity"]

_BINARY: Final = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL: Final = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_RE: Final = re.compile(
    r"\+?((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"  # number
    r"(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?"  # suffix: binary SI, decimal SI, exponent
)
_MAX_LEN: Final = 64  # longer strings are not quantities anyone writes; also bounds the arithmetic
_INT64_MAX: Final = Decimal(2**63 - 1)
_CTX: Final = Context(prec=200)  # exact for every string _RE accepts within _MAX_LEN


def parse_quantity(value: object) -> int | None:
    """Bytes (rounded up to a whole byte) of a memory quantity, or None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= 2**63 - 1 else None
    if isinstance(value, float):
        if value != value or value < 0 or value > 2**63 - 1:  # NaN, negative, too large
            return None
        value = repr(value)
    if not isinstance(value, str) or len(value) > _MAX_LEN:
        return None
    return _parse(value)


@lru_cache(maxsize=1024)  # pod specs repeat a handful of values ("128Mi", "1Gi") endlessly
def _parse(value: str) -> int | None:
    m = _RE.fullmatch(value.strip())
    if m is None:
        return None
    number, suffix = m[1], m[2] or ""
    try:
        amount = Decimal(number)
        if suffix in _BINARY:
            amount = _CTX.multiply(amount, Decimal(_BINARY[suffix]))
        elif suffix in _DECIMAL:
            amount = _CTX.scaleb(amount, _DECIMAL[suffix])
        else:  # e<n> / E<n>
            exponent = int(suffix[1:])
            if exponent > 30:  # anything above 9.2e18 overflows int64 anyway; avoid huge integers
                return None if amount != 0 else 0
            if exponent < -60:
                return 0 if amount == 0 else 1
            amount = _CTX.scaleb(amount, exponent)
    except (InvalidOperation, ValueError):
        return None
    if amount > _INT64_MAX:
        return None
    return int(amount.to_integral_value(rounding=ROUND_CEILING))
