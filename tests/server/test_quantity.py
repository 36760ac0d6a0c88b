"""Kubernetes quantities: what parses to what, what is refused and why, and properties."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devspace_server.quantity import (
    BINARY,
    DECIMAL,
    InvalidQuantity,
    format_bytes,
    format_cpu,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", "0"),
        ("1", "1"),
        ("500m", "0.5"),
        ("1.5", "1.5"),
        ("+2", "2"),
        (".5", "0.5"),
        ("5.", "5"),
        ("100n", "0.0000001"),
        ("3u", "0.000003"),
        ("2k", "2000"),
        ("1M", "1000000"),
        ("1G", "1000000000"),
        ("1Ki", "1024"),
        ("512Mi", str(512 * 2**20)),
        ("1.5Gi", str(3 * 2**29)),
        ("2Ti", str(2 * 2**40)),
        ("1Ei", str(2**60)),
        ("1E", "1000000000000000000"),
        ("1e3", "1000"),
        ("1E3", "1000"),
        ("25e-3", "0.025"),
        ("1.5e+2", "150"),
    ],
)
def test_quantities_parse_as_kubernetes_reads_them(text: str, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is empty"),
        ("-1", "is negative"),
        ("-500m", "is negative"),
        ("1e309", "exponent beyond"),
        ("1e19", "exponent beyond"),
        ("10Qi", "unknown unit 'Qi'"),
        ("1KB", "unknown unit 'KB'"),
        ("1e", "unknown unit 'e'"),
        ("abc", "is not a quantity"),
        ("1 Gi", "is not a quantity"),
        (" 1", "is not a quantity"),
        ("NaN", "is not a quantity"),
        ("Infinity", "is not a quantity"),
        ("1_000", "is not a quantity"),
        ("0x10", "is not a quantity"),
        ("1.2.3", "is not a quantity"),
        ("٣", "is not a quantity"),
        ("9Ei", "too large"),
        ("10E", "too large"),
        ("0.1n", "finer than a nano-unit"),
        ("1e-10", "finer than a nano-unit"),
        ("1" * 65, "longer than 64"),
    ],
)
def test_nonsense_is_refused_with_a_reason(text: str, says: str) -> None:
    with pytest.raises(InvalidQuantity, match=says.replace("(", r"\(")):
        parse_quantity(text)


def test_a_non_string_is_refused() -> None:
    with pytest.raises(InvalidQuantity, match="as a string"):
        parse_quantity(5)  # type: ignore[arg-type]


SUFFIXES = st.sampled_from([*BINARY, *DECIMAL])


@given(st.integers(min_value=0, max_value=10**6), SUFFIXES)
def test_whole_numbers_scale_exactly_by_their_suffix(number: int, suffix: str) -> None:
    scale = BINARY[suffix] if suffix in BINARY else Decimal(10) ** DECIMAL[suffix]
    if number * scale > 2**63 - 1:
        with pytest.raises(InvalidQuantity, match="too large"):
            parse_quantity(f"{number}{suffix}")
    else:
        assert parse_quantity(f"{number}{suffix}") == number * scale


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=-9, max_value=9))
def test_exponent_form_equals_the_scaled_number(number: int, power: int) -> None:
    assert parse_quantity(f"{number}e{power}") == Decimal(number).scaleb(power)


@given(st.text(max_size=20))
def test_any_text_parses_or_is_refused_with_invalid_quantity(text: str) -> None:
    outcome: Decimal | str
    try:
        outcome = parse_quantity(text)
    except InvalidQuantity as error:
        outcome = str(error)
    if isinstance(outcome, str):
        assert outcome  # a reason, never an empty message
    else:
        assert Decimal(0) <= outcome <= Decimal(2**63 - 1)


@given(st.integers(min_value=0, max_value=2**40))
def test_formatting_round_trips(millicores: int) -> None:
    cores = Decimal(millicores) / 1000
    assert parse_quantity(format_cpu(cores)) == cores
    assert parse_quantity(format_bytes(Decimal(millicores))) == millicores


def test_formats_read_like_kubernetes() -> None:
    assert format_cpu(Decimal("0.51")) == "510m"
    assert format_cpu(Decimal(2)) == "2"
    assert format_bytes(Decimal(3 * 2**30)) == "3Gi"
    assert format_bytes(Decimal(1000)) == "1000"
