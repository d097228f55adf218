"""Kubernetes quantities: apimachinery's parsing, comparison and canonical form; the baseline formatters."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dorgu.domain.quantity import (
    Format,
    Quantity,
    QuantityError,
    canonical,
    compare_quantities,
    format_memory,
    format_millicores,
    parse_quantity,
    sum_quantities,
)

# --------------------------------------------------------------------------- apimachinery's Quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2000m", "2"),
        ("1500m", "1500m"),
        ("0.5", "500m"),
        ("1000", "1k"),
        ("1024Mi", "1Gi"),
        ("1.5Gi", "1536Mi"),
        ("512Mi", "512Mi"),
        ("1e3", "1e3"),
        ("100M", "100M"),
    ],
)
def test_appendix_c_canonical_table(text: str, expected: str) -> None:
    assert canonical(text) == expected
    assert str(parse_quantity(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # decimal SI: exponent lowered to a multiple of 3, trailing zeros moved into the suffix
        ("0", "0"),
        ("-0", "0"),
        ("0Ki", "0"),
        ("0e3", "0"),
        ("1", "1"),
        ("10", "10"),
        ("1100", "1100"),
        ("100000", "100k"),
        ("1.5k", "1500"),
        ("2.5M", "2500k"),
        ("1E", "1E"),
        ("1000E", "1000E"),  # beyond E the largest suffix is kept (Go would print a bare "1")
        ("250m", "250m"),
        ("0.25", "250m"),
        ("1.", "1"),
        (".5", "500m"),
        ("+1", "1"),
        ("01", "1"),
        ("-1500m", "-1500m"),
        ("12u", "12u"),
        ("1n", "1n"),
        # rounded up (away from zero) to a whole nano-unit
        ("0.1m", "100u"),
        ("0.5n", "1n"),
        ("-0.5n", "-1n"),
        ("1.0000000001", "1000000001n"),
        # binary SI
        ("1Ki", "1Ki"),
        ("1.5Ki", "1536"),  # no binary suffix divides it: bare
        ("0.5Ki", "512"),  # below 1024: decimal SI
        ("0.001Ki", "1024m"),  # not whole: decimal SI
        ("1.1Ki", "1126400m"),
        ("0.0001Ki", "102400u"),  # below 1: parsed as decimal SI
        ("2048Ki", "2Mi"),
        ("1536Mi", "1536Mi"),
        ("-1.5Gi", "-1536Mi"),
        ("1Ei", "1Ei"),
        ("8Ei", "9223372036854775807"),  # binary SI is capped at 2^63-1
        # decimal exponent (the format survives; exponents are multiples of 3)
        ("1E3", "1e3"),
        ("1e+3", "1e3"),
        ("1e-3", "1e-3"),
        ("1.5e3", "1500"),
        ("10e3", "10e3"),
        ("1e0", "1"),
        ("5e-10", "1e-9"),
        ("1e2000000000", "100e1999999998"),  # huge exponents stay symbolic
        # ints are read as their decimal digits
        (2, "2"),
        (1000, "1k"),
        (-3, "-3"),
    ],
)
def test_canonical_forms(text: str | int, expected: str) -> None:
    assert canonical(text) == expected


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("500m", Format.DECIMAL_SI),
        ("2", Format.DECIMAL_SI),
        ("1Gi", Format.BINARY_SI),
        ("0.0001Ki", Format.DECIMAL_SI),
        ("1e3", Format.DECIMAL_EXPONENT),
        (7, Format.DECIMAL_SI),
    ],
)
def test_format_is_remembered(text: str | int, fmt: Format) -> None:
    assert parse_quantity(text).format is fmt


# --------------------------------------------------------------------------- comparison


def test_appendix_c_comparisons() -> None:
    assert parse_quantity("1Gi") > parse_quantity("1000Mi")
    assert parse_quantity("1Gi").value == 1073741824
    assert parse_quantity("1G") < parse_quantity("1Gi")
    assert parse_quantity("1G").value == 10**9
    assert parse_quantity("2") == parse_quantity("2000m")
    assert hash(parse_quantity("2")) == hash(parse_quantity("2000m"))
    assert parse_quantity(2) == parse_quantity("2")


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1Gi", "1000Mi", 1),
        ("1G", "1Gi", -1),
        ("2", "2000m", 0),
        ("10", "9", 1),  # numeric, not string, comparison
        ("500m", "0.5", 0),
        ("1k", "1e3", 0),
        ("1Ki", "1k", 1),
        ("-1", "0", -1),
        ("1e2000000000", "1E", 1),
        ("0.5n", "1n", 0),  # after rounding up
    ],
)
def test_compare_quantities(a: str, b: str, expected: int) -> None:
    assert compare_quantities(a, b) == expected
    assert compare_quantities(b, a) == -expected


def test_quantity_is_not_equal_to_other_types() -> None:
    assert parse_quantity("1") != 1
    assert parse_quantity("1") != "1"
    with pytest.raises(TypeError):
        _ = parse_quantity("1") < 2  # type: ignore[operator]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lots", '"lots" is not a Kubernetes quantity: it must be a number with an optional suffix, '
         "such as 500m, 2, 1Gi or 1e3"),
        ("", '"" is not a Kubernetes quantity: it is empty'),
        ("1K", '"1K" is not a Kubernetes quantity: unknown suffix "K" '
         "(use n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3)"),
        ("1e99999999999",
         '"1e99999999999" is not a Kubernetes quantity: the exponent 99999999999 is out of range'),
    ],
)  # fmt: skip
def test_bad_input_messages(text: str, message: str) -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert str(info.value) == message
    assert info.value.text == text
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "text",
    ["lots", "", " 1", "1 ", "1Ki ", "1\n", "Ki", "e3", ".", "+", "-", "1e", "5i", "1ki", "1mi", "1KiB",
     "1.5.5", "1,000", "0x10", "1e1.5", "1e3Ki", "NaN", "Infinity", "1_000", "١"],
)  # fmt: skip
def test_rejects(text: str) -> None:
    with pytest.raises(QuantityError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


@pytest.mark.parametrize("value", [True, False, 1.5, None, Decimal("1"), b"1"])
def test_rejects_other_types(value: object) -> None:
    with pytest.raises(QuantityError, match="expected a string or an integer"):
        parse_quantity(value)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties

_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1)}
_DECIMAL |= {s: Fraction(10 ** (3 * (i + 1))) for i, s in enumerate("kMGTPE")}
_BINARY = {s: Fraction(2 ** (10 * (i + 1))) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))}
_MAX = 2**63 - 1

suffixes = st.one_of(
    st.sampled_from(sorted(_DECIMAL)),
    st.sampled_from(sorted(_BINARY)),
    st.builds(lambda e, sign, n: f"{e}{sign}{n}", st.sampled_from("eE"), st.sampled_from(["", "+", "-"]),
              st.integers(0, 40)),
)  # fmt: skip
numbers = st.one_of(
    st.from_regex(r"[0-9]{1,12}", fullmatch=True),
    st.from_regex(r"[0-9]{1,8}\.[0-9]{0,12}", fullmatch=True),
    st.from_regex(r"\.[0-9]{1,12}", fullmatch=True),
)
quantities = st.builds(lambda sign, number, suffix: f"{sign}{number}{suffix}",
                       st.sampled_from(["", "+", "-"]), numbers, suffixes)  # fmt: skip


def oracle(text: str) -> Fraction:
    """The value apimachinery assigns, computed independently with Fractions."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    split = next((i for i, ch in enumerate(body) if ch not in "0123456789."), len(body))
    number, suffix = body[:split], body[split:]
    value = Fraction(number) if number not in ("", ".") else Fraction(0)
    binary = suffix in _BINARY
    if suffix in _DECIMAL:
        value *= _DECIMAL[suffix]
    elif binary:
        value *= _BINARY[suffix]
    else:
        value *= Fraction(10) ** int(suffix[1:])
    nanos = math.ceil(value * 10**9)  # round up (the magnitude, so away from zero)
    value = Fraction(nanos, 10**9)
    if binary:
        value = min(value, Fraction(_MAX))
    return sign * value


@given(quantities)
@example("1.5Gi")
@example("0.0001Ki")
@example("-0.5n")
def test_parse_is_exact(text: str) -> None:
    assert Fraction(parse_quantity(text).value) == oracle(text)


@given(quantities)
@example("1.1Ki")
@example("8Ei")
@example("1000E")
def test_canonical_round_trip(text: str) -> None:
    quantity = parse_quantity(text)
    printed = quantity.canonical()
    again = parse_quantity(printed)
    assert again == quantity  # canonical(parse(x)) parses back to an equal value
    assert again.canonical() == printed  # and the canonical form is a fixed point
    assert not printed.startswith("+")
    if printed != "0":
        assert not printed.lstrip("-").startswith("0")  # no leading zeros


@given(quantities, quantities)
def test_comparison_matches_the_values(a: str, b: str) -> None:
    qa, qb = parse_quantity(a), parse_quantity(b)
    va, vb = oracle(a), oracle(b)
    assert (qa < qb) == (va < vb)
    assert (qa == qb) == (va == vb)
    assert compare_quantities(a, b) == (va > vb) - (va < vb)


@given(st.integers(-(10**30), 10**30))
def test_ints_read_as_decimal_digits(value: int) -> None:
    assert parse_quantity(value) == parse_quantity(str(value))
    assert parse_quantity(value).value == value


# --------------------------------------------------------------------------- sums and construction


def test_sum_takes_the_format_of_the_first_non_zero_addend() -> None:
    parts = [parse_quantity("0"), parse_quantity("512Mi"), parse_quantity("1G")]
    total = sum_quantities(parts)
    assert total.value == 512 * 2**20 + 10**9
    assert total.format is Format.BINARY_SI
    assert sum_quantities([]).canonical() == "0"
    assert sum_quantities([parse_quantity("500m"), parse_quantity("1500m")]).canonical() == "2"


def test_from_value() -> None:
    assert Quantity.from_value(Decimal("0.25")).canonical() == "250m"
    assert Quantity.from_value(1536 * 2**20, Format.BINARY_SI).canonical() == "1536Mi"
    assert Quantity.from_value(Decimal("1e-12")).canonical() == "1n"
    with pytest.raises(ValueError, match="finite"):
        Quantity.from_value(Decimal("NaN"))
    with pytest.raises(TypeError):
        Quantity.from_value(1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- baseline formatters


@pytest.mark.parametrize(
    ("millicores", "expected"),
    [
        (250.0, "250m"),
        (249.6, "250m"),
        (0.0, "0m"),
        (0.4, "0m"),
        (-0.3, "0m"),
        (0.5, "0m"),  # round half to even
        (1.5, "2m"),
        (2.5, "2m"),
        (1234.5, "1234m"),
    ],
)
def test_format_millicores(millicores: float, expected: str) -> None:
    assert format_millicores(millicores) == expected


@pytest.mark.parametrize(
    ("num_bytes", "expected"),
    [
        (128 * 2**20, "128Mi"),
        (0, "0Mi"),
        (1.5 * 2**30, "1.5Gi"),
        (2 * 2**30, "2.0Gi"),
        (2**30, "1.0Gi"),
        (2**30 - 1, "1024Mi"),  # still below 1 GiB, so MiB
        (1.25 * 2**30, "1.2Gi"),  # round half to even on the exact binary value
        (1.35 * 2**30, "1.4Gi"),
        (0.5 * 2**20, "0Mi"),
        (1.5 * 2**20, "2Mi"),
        (256 * 2**20 + 1, "256Mi"),
    ],
)
def test_format_memory(num_bytes: float, expected: str) -> None:
    assert format_memory(num_bytes) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_formatters_reject_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        format_millicores(bad)
    with pytest.raises(ValueError, match="finite"):
        format_memory(bad)


def test_formatted_figures_are_quantities() -> None:
    assert parse_quantity(format_millicores(480.2)) == parse_quantity("480m")
    assert parse_quantity(format_memory(1.2 * 2**30)).value == Decimal("1288490188.8")
    assert parse_quantity(format_memory(1.5 * 2**30)) == parse_quantity("1536Mi")
