"""Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`), parsed the way the API server does.

`parse_quantity` turns the text into an exact `Decimal` or raises `InvalidQuantity` with a
sentence saying what is wrong. It accepts what Kubernetes accepts (decimal SI and binary
suffixes, exponents), but refuses what a person never means in a quota or a resource
request: negative numbers, values beyond what Kubernetes stores in 64 bits, and precision
finer than a nano-unit (which Kubernetes would silently round).
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, localcontext

MAX_LENGTH = 64
MAX_EXPONENT = 18
# Kubernetes keeps a quantity's value in an int64 when it can; beyond that it is a mistake.
LARGEST = Decimal(2**63 - 1)
SMALLEST_STEP = Decimal("1e-9")

BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
EXAMPLES = "for example 500m, 2, 1.5, 512Mi, 10Gi or 1e3"

_SHAPE = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<exp>[eE][+-]?[0-9]+)|(?P<suffix>[a-zA-Z]*))"
)
# Enough digits that no quantity within bounds is ever rounded while parsing.
_EXACT = Context(prec=80)


class InvalidQuantity(ValueError):
    """A text that is not a usable quantity; `str()` says why and what is accepted."""


def parse_quantity(text: str) -> Decimal:
    """The value of the Kubernetes quantity `text`, in base units (cores, bytes, pods).

    Raises `InvalidQuantity` for anything empty, malformed, negative, out of bounds or with
    an unknown suffix, with a message naming the problem.
    """
    if not isinstance(text, str):
        raise InvalidQuantity(f"must be a quantity as a string, {EXAMPLES}")
    if not text:
        raise InvalidQuantity(f"is empty: give a quantity, {EXAMPLES}")
    if len(text) > MAX_LENGTH:
        raise InvalidQuantity(f"is longer than {MAX_LENGTH} characters: not a quantity")
    match = _SHAPE.fullmatch(text)
    if match is None:
        raise InvalidQuantity(f"{text!r} is not a quantity: use a number and a unit, {EXAMPLES}")
    if match["sign"] == "-":
        raise InvalidQuantity(f"{text!r} is negative: give zero or more")
    with localcontext(_EXACT):
        value = _scaled(text, Decimal(match["number"]), match["exp"], match["suffix"])
        if value > LARGEST:
            raise InvalidQuantity(f"{text!r} is too large: at most {LARGEST} base units")
        if value % SMALLEST_STEP != 0:
            raise InvalidQuantity(f"{text!r} is finer than a nano-unit (1n): round it")
        return value


def _scaled(text: str, number: Decimal, exponent: str | None, suffix: str | None) -> Decimal:
    if exponent is not None:
        power = int(exponent[1:])
        if abs(power) > MAX_EXPONENT:
            raise InvalidQuantity(
                f"{text!r} has an exponent beyond ±{MAX_EXPONENT}: not a sensible quantity"
            )
        return number.scaleb(power)
    suffix = suffix or ""
    if suffix in BINARY:
        return number * BINARY[suffix]
    if suffix in DECIMAL:
        return number.scaleb(DECIMAL[suffix])
    known = ", ".join([*BINARY, *(s for s in DECIMAL if s)])
    raise InvalidQuantity(f"{text!r} has an unknown unit {suffix!r}: use one of {known}")


def is_quantity(text: str) -> str:
    """`text` itself if it is a valid quantity (a pydantic validator); else `InvalidQuantity`."""
    parse_quantity(text)
    return text


def format_cpu(value: Decimal) -> str:
    """`value` cores as Kubernetes would write them: whole cores, else millicores."""
    if value == value.to_integral_value():
        return str(int(value))
    return f"{(value * 1000).normalize():f}m"


def format_bytes(value: Decimal) -> str:
    """`value` bytes with the largest binary suffix that divides it exactly."""
    whole = int(value)
    if whole != value:
        return f"{value.normalize():f}"
    for suffix, size in reversed(BINARY.items()):
        if whole and whole % size == 0:
            return f"{whole // size}{suffix}"
    return str(whole)
