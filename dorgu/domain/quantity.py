"""Kubernetes quantities: exact parsing, comparison and canonical printing; baseline figures.

This is a port of the *semantics* of apimachinery's ``resource.Quantity`` (``ParseQuantity`` and
``CanonicalizeBytes``), which the persona rules (R-1/R-2, :mod:`dorgu.domain.rules`) use — in the controller
and in the webhook — to compare container limits with persona limits and to print them.

Parsing (:func:`parse_quantity`)
--------------------------------
Grammar, as documented on ``resource.Quantity``::

    <quantity> ::= <sign>? <number> <suffix>?
    <number>   ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
    <suffix>   ::= n | u | m | "" | k | M | G | T | P | E      (decimal SI, 10^-9 .. 10^18)
                 | Ki | Mi | Gi | Ti | Pi | Ei                 (binary SI, 2^10 .. 2^60)
                 | (e|E) <sign>? <digits>                      (decimal exponent, e.g. 1e3, 5E-3)

The suffix family is remembered as the quantity's :class:`Format` and decides how it is printed.
An ``int`` is read as its decimal string (the CRD declares persona quantities int-or-string).

Values are exact (:class:`decimal.Decimal`, never ``float``) and are then treated as apimachinery
does: a non-zero value is **rounded up (away from zero) to a whole nano-unit** (10^-9), so
``0.5n`` is ``1n``; a binary-SI value is capped at 2^63-1 in magnitude; and a binary-SI value
strictly between 0 and 1 in magnitude becomes decimal SI (``0.0001Ki`` prints ``102400u``).
(The ``Quantity`` doc comment still speaks of "3 decimal places"; the code rounds to nano, and we
follow the code: ``0.1m`` prints ``100u``.)

Deliberate differences from ``ParseQuantity``, all on inputs no sane manifest contains:

* ``ParseQuantity`` reads a lone sign, a lone ``.`` or a bare suffix (``"+"``, ``"."``, ``"Ki"``,
  ``"e3"``) as zero. We follow the documented grammar and reject them: a persona limit of
  ``"Ki"`` is a typo that should be reported, not a limit of 0.
* An exponent outside the int32 range is rejected (Go silently wraps it to int32).
* Decimal values are not capped (neither does current apimachinery; older releases did).

Why not ``kubernetes.utils.parse_quantity``: it accepts floats and whatever ``Decimal()`` accepts
(``"NaN"``, ``"Infinity"``, ``"1_000"``, surrounding blanks), accepts ``K`` as a suffix, does not
round to nano-units, and forgets the format, so nothing can be printed canonically from it.

Printing (:meth:`Quantity.canonical`, ``str()``)
------------------------------------------------
Canonical form as ``CanonicalizeBytes``: zero is ``0``; otherwise the format family is kept and the
largest suffix giving an integer mantissa is used, with decimal exponents a multiple of 3
(``2000m``→``2``, ``1500m``→``1500m``, ``0.5``→``500m``, ``1000``→``1k``, ``1024Mi``→``1Gi``,
``1.5Gi``→``1536Mi``, ``1e3``→``1e3``). A binary-SI value below 1024 in magnitude, or one that is
not a whole number, is printed as decimal SI (``0.5Ki``→``512``, ``1.1Ki``→``1126400m``); a
binary-SI value that no binary suffix divides is printed bare (``1.5Ki``→``1536``).

Two differences from Go's ``String()``, which returns the *input text* when it judges it already
canonical: we always print the canonical form, so ``"+1"`` and ``"01"`` print ``1`` (Go echoes
them); and a decimal-SI value beyond ``E`` keeps the ``E`` suffix (``1000E``), where Go's suffix
lookup fails and it prints the bare mantissa (``1``), i.e. a different number.

Prometheus figures
------------------
:func:`format_millicores` (``250m``) and :func:`format_memory` (``128Mi``, ``1.5Gi``) print a learned
baseline in the format a persona's baseline fields hold: CPU rounded as Go's ``%.0f`` plus ``m``; memory in
``Gi`` with one decimal from 1 GiB up, else in ``Mi`` with none.
"""

from __future__ import annotations

import decimal
import enum
import functools
import json
import math
import re
from collections.abc import Iterable
from decimal import Decimal

__all__ = [
    "Format",
    "Quantity",
    "QuantityError",
    "canonical",
    "compare_quantities",
    "format_memory",
    "format_millicores",
    "parse_quantity",
    "sum_quantities",
]

GIB = 1 << 30
MIB = 1 << 20

# Exact arithmetic: the largest precision and exponent range libmpdec offers, so that multiplying
# by 2^k never rounds (Inexact would raise); _ROUND_UP is the same without that trap, for the one
# deliberate rounding (to 10^-9, away from zero).
_EXACT = decimal.Context(
    prec=decimal.MAX_PREC,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    rounding=decimal.ROUND_UP,
    traps=[decimal.InvalidOperation, decimal.Inexact, decimal.Overflow],
)
_ROUND_UP = decimal.Context(
    prec=decimal.MAX_PREC,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    rounding=decimal.ROUND_UP,
    traps=[decimal.InvalidOperation, decimal.Overflow],
)
_NANO = Decimal("1e-9")
_MAX_BINARY = Decimal((1 << 63) - 1)  # apimachinery's maxAllowed, applied to binary SI only
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1

# sign, then <digits>[.<digits>] or .<digits>, then everything else as the suffix.
_NUMBER = re.compile(r"([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(.*)", re.ASCII | re.DOTALL)
_EXPONENT = re.compile(r"[eE]([+-]?[0-9]+)", re.ASCII)

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX_OF = {exponent: suffix for suffix, exponent in _DECIMAL_SUFFIXES.items()}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BINARY_SUFFIX_OF = {0: "", 1: "Ki", 2: "Mi", 3: "Gi", 4: "Ti", 5: "Pi", 6: "Ei"}  # by power of 1024

_SUFFIX_HELP = "n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or an exponent such as e3"


class QuantityError(ValueError):
    """A value that is not a Kubernetes quantity.

    ``str()`` is ``"<text>" is not a Kubernetes quantity: <reason>``; ``text`` and ``reason`` are
    also available separately (``text`` is the input as written, ``reason`` says what is wrong).
    """

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"{json.dumps(text, ensure_ascii=False)} is not a Kubernetes quantity: {reason}")


class Format(enum.StrEnum):
    """The suffix family a quantity was written in; it decides how it is printed."""

    DECIMAL_SI = "DecimalSI"  # 500m, 2, 1k, 100M
    BINARY_SI = "BinarySI"  # 512Mi, 1Gi
    DECIMAL_EXPONENT = "DecimalExponent"  # 1e3, 5e-3


@functools.total_ordering
class Quantity:
    """An exact Kubernetes quantity: a value (``Decimal``, a whole number of nano-units) and a format.

    Equality, ordering and hashing use the value only (``2 == 2000m``, ``1Gi > 1000Mi``,
    ``1G < 1Gi``); the format only affects :meth:`canonical`. Build one with
    :func:`parse_quantity` or :meth:`from_value`.
    """

    __slots__ = ("_format", "_value")

    def __init__(self, value: Decimal, fmt: Format) -> None:
        # Keep the invariants parse_quantity establishes: exact, rounded up to 10^-9, no -0.
        value = _round_up_to_nano(value)
        if fmt is Format.BINARY_SI:
            value = _cap_binary(value)
            if 0 < abs(value) < 1:
                fmt = Format.DECIMAL_SI
        self._value = value if value else Decimal(0)
        self._format = fmt

    @classmethod
    def from_value(cls, value: Decimal | int, fmt: Format = Format.DECIMAL_SI) -> Quantity:
        """A quantity of ``value`` units, printed in ``fmt`` (rounded up to a nano-unit)."""
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise TypeError(f"a quantity value must be a Decimal or an int, not {type(value).__name__}")
        value = Decimal(value)
        if not value.is_finite():
            raise ValueError(f"a quantity value must be finite, not {value}")
        return cls(value, fmt)

    @property
    def value(self) -> Decimal:
        """The exact value, in base units (cores, bytes)."""
        return self._value

    @property
    def format(self) -> Format:
        return self._format

    def is_zero(self) -> bool:
        return not self._value

    def canonical(self) -> str:
        """The canonical text, as apimachinery's ``CanonicalizeBytes`` (see the module docstring)."""
        value = self._value
        if not value:
            return "0"
        fmt = self._format
        if fmt is Format.BINARY_SI:
            # Below 1024 in magnitude, or not a whole number: print as decimal SI (no rounding).
            if abs(value) < 1024 or value != value.to_integral_value():
                fmt = Format.DECIMAL_SI
            else:
                return _binary_text(int(value))
        return _decimal_text(value, fmt)

    def __str__(self) -> str:
        return self.canonical()

    def __repr__(self) -> str:
        return f"Quantity({self.canonical()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self._value == other._value

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self._value < other._value

    def __hash__(self) -> int:
        return hash(self._value)


def parse_quantity(text: str | int) -> Quantity:
    """Parse a Kubernetes quantity (``"500m"``, ``"1.5Gi"``, ``"1e3"``, ``2``); see the module docstring.

    Raises :class:`QuantityError` (a ``ValueError``) for anything else, including ``bool``/``float``.
    """
    # Strings are parsed once: a Quantity is immutable, and a cluster's quantities are a few hundred
    # distinct strings repeated on every container and persona — the exact Decimal arithmetic was 8 % of
    # a reconcile. Errors are not cached (lru_cache stores results only); other types are never cached
    # (True == 1 and unhashable values must get their own answers).
    if type(text) is str:
        return _parse_text(text)
    return _parse(text)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> Quantity:
    return _parse(text)


def _parse(text: str | int) -> Quantity:
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise QuantityError(repr(text), f"expected a string or an integer, not {type(text).__name__}")
    if isinstance(text, int):
        text = str(text)
    if not text:
        raise QuantityError(text, "it is empty")
    match = _NUMBER.fullmatch(text)
    if match is None:
        raise QuantityError(text, "it must be a number with an optional suffix, such as 500m, 2, 1Gi or 1e3")
    sign, number, suffix = match.groups()
    whole, _, fraction = number.partition(".")
    digits = (whole + fraction) or "0"

    binary_power = 0
    if suffix in _DECIMAL_SUFFIXES:
        fmt, exponent = Format.DECIMAL_SI, _DECIMAL_SUFFIXES[suffix]
    elif suffix in _BINARY_SUFFIXES:
        fmt, exponent, binary_power = Format.BINARY_SI, 0, _BINARY_SUFFIXES[suffix]
    elif (exp_match := _EXPONENT.fullmatch(suffix)) is not None:
        fmt, exponent = Format.DECIMAL_EXPONENT, int(exp_match.group(1))
        if not _INT32_MIN <= exponent <= _INT32_MAX:
            raise QuantityError(text, f"the exponent {exponent} is out of range")
    else:
        raise QuantityError(
            text, f"unknown suffix {json.dumps(suffix, ensure_ascii=False)} (use {_SUFFIX_HELP})"
        )

    # Exact: <sign><digits>E<exponent - number of fraction digits>, then times 2^k for binary SI.
    value = Decimal(f"{sign}{digits}E{exponent - len(fraction)}")
    if binary_power:
        value = _EXACT.multiply(value, Decimal(1 << binary_power))
    return Quantity(value, fmt)


def canonical(text: str | int) -> str:
    """The canonical form of a quantity given as text (``"1024Mi"`` → ``"1Gi"``)."""
    return parse_quantity(text).canonical()


def compare_quantities(a: str | int | Quantity, b: str | int | Quantity) -> int:
    """-1, 0 or 1 as ``a`` is less than, equal to or greater than ``b`` (exact, numeric)."""
    qa = a if isinstance(a, Quantity) else parse_quantity(a)
    qb = b if isinstance(b, Quantity) else parse_quantity(b)
    return (qa > qb) - (qa < qb)


def sum_quantities(quantities: Iterable[Quantity]) -> Quantity:
    """The exact sum, in the format of the first non-zero addend (``0`` when there is none).

    This is apimachinery's ``Quantity.Add`` rule; a sum over no nodes (the ClusterPersona's resource
    summary of an empty cluster) is ``"0"``.
    """
    total = Decimal(0)
    fmt: Format | None = None
    for quantity in quantities:
        if quantity.is_zero():
            continue
        total = _EXACT.add(total, quantity.value)
        fmt = fmt or quantity.format
    return Quantity(total, fmt or Format.DECIMAL_SI)


# --------------------------------------------------------------------------- internals


def _round_up_to_nano(value: Decimal) -> Decimal:
    """Round a non-zero value away from zero to a whole multiple of 10^-9 (apimachinery's rule)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int), "quantities are finite"
    if exponent >= -9:
        return value  # already a whole number of nano-units; never pad (the exponent may be huge)
    return value.quantize(_NANO, context=_ROUND_UP) if value else value


def _cap_binary(value: Decimal) -> Decimal:
    """Binary-SI magnitudes are capped at 2^63-1, as ParseQuantity does."""
    if abs(value) > _MAX_BINARY:
        return _MAX_BINARY.copy_sign(value)
    return value


def _decimal_text(value: Decimal, fmt: Format) -> str:
    """Mantissa and a base-10 exponent that is a multiple of 3 (apimachinery ``AsCanonicalBytes``)."""
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int), "quantities are finite"
    mantissa = "".join(map(str, digit_tuple))
    # Move all factors of 10 into the exponent (string operations: the exponent may be huge).
    stripped = mantissa.rstrip("0")
    exponent += len(mantissa) - len(stripped)
    # Lower the exponent to a multiple of 3 (Python's % is the floor modulo this needs).
    shift = exponent % 3
    mantissa = stripped + "0" * shift
    exponent -= shift
    if fmt is Format.DECIMAL_EXPONENT:
        suffix = f"e{exponent}" if exponent else ""
    elif exponent > 18:
        # Beyond E: keep the largest suffix (Go's lookup fails here and prints the bare mantissa).
        mantissa, suffix = mantissa + "0" * (exponent - 18), "E"
    else:
        suffix = _DECIMAL_SUFFIX_OF[exponent]  # exponent >= -9: values are whole nano-units
    return ("-" if sign else "") + mantissa + suffix


def _binary_text(value: int) -> str:
    """An integer printed with the largest power-of-1024 suffix that divides it (``1536Mi``)."""
    magnitude, power = abs(value), 0
    while magnitude % 1024 == 0 and power < 6:
        magnitude //= 1024
        power += 1
    return ("-" if value < 0 else "") + str(magnitude) + _BINARY_SUFFIX_OF[power]


# --------------------------------------------------------------------------- Prometheus figures


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, not {value!r}")
    return value


def _no_negative_zero(text: str) -> str:
    # "%.0f" of -0.3 is "-0"; a usage figure of minus zero is just zero.
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text


def format_millicores(millicores: float) -> str:
    """CPU in millicores as the baseline stores it: zero decimals and ``m`` (``249.6`` → ``"250m"``).

    Rounding is Python's ``format(x, ".0f")``: round-half-even on the exact binary value, as Go's
    ``%.0f``. NaN and infinities raise ``ValueError`` (a baseline never reads ``NaNm``).
    """
    return _no_negative_zero(format(_finite(millicores, "millicores"), ".0f")) + "m"


def format_memory(num_bytes: float) -> str:
    """Memory as the baseline stores it.

    From 1 GiB (1073741824 bytes) up: GiB with one decimal and ``Gi`` (``"2.0Gi"``, ``"1.5Gi"``);
    below: MiB with zero decimals and ``Mi`` (``"128Mi"``, ``"0Mi"``). Rounding as
    :func:`format_millicores`; NaN and infinities raise ``ValueError``.
    """
    num_bytes = _finite(num_bytes, "bytes")
    if num_bytes >= GIB:
        return _no_negative_zero(format(num_bytes / GIB, ".1f")) + "Gi"
    return _no_negative_zero(format(num_bytes / MIB, ".0f")) + "Mi"
