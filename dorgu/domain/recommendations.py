"""Right-sizing recommendations from the learned baseline (``status.recommendations``; issue 4 item 6).

Entries are derived from ``status.learned.resourceBaseline`` (``avgCPU``/``peakCPU`` like ``250m``,
``avgMemory``/``peakMemory`` like ``128Mi`` or ``1.5Gi``; figures **per pod**, i.e. summed over
the pod's app containers) and the Deployment's pod template.

The pod's request for a resource is the sum of its containers' requests (containers without one
add nothing); its limit is the sum of its containers' limits, and only exists when *every*
container sets a non-zero limit (otherwise the pod is not bounded and no limit rule applies). A
sum is printed in canonical form, in the format of its first non-zero addend (apimachinery's
``Quantity.Add``).

Rules, checked for CPU and then for memory, in this order. ``<R>`` is ``CPU`` or ``memory``
(``<Rc>`` the same, capitalised: ``CPU``, ``Memory``); ``<request>`` and ``<limit>`` are canonical
quantities and ``<avg>``/``<peak>`` the baseline's strings as stored:

* **RS-1** request above 2 × peak (only when peak > 0): type ``cost``, priority ``low``;
  message ``<Rc> request per pod (<request>) is more than twice the peak use (<peak>)``;
  action ``Lower the <R> request per pod to about <target>``, target = 1.25 × peak.
* **RS-2** average above the request (only when request > 0): type ``resource``, priority
  ``medium``; message ``Average <R> use per pod (<avg>) is above the <R> request (<request>)``;
  action ``Raise the <R> request per pod to at least <target>``, target = 1.25 × avg.
* **RS-3** peak above 90 % of the limit: type ``performance`` and priority ``medium`` for CPU,
  type ``resource`` and priority ``high`` for memory; message
  ``Peak <R> use per pod (<peak>) is above 90% of the <R> limit (<limit>)``;
  action ``Raise the <R> limit per pod to at least <target>``, target = 1.5 × peak.

(Memory pressure is ``high`` because exceeding the limit gets the container OOM-killed; CPU is only
throttled.) Targets are rounded up to a whole millicore (CPU) or a whole MiB (memory) and printed
canonically (``313m``, ``2``, ``1536Mi``, ``1Gi``). The headrooms are chosen so that following one
recommendation never triggers another: 1.25 × peak < 2 × peak (RS-1), 1.25 × avg ≤ 1.25 × peak
(RS-1), and peak / (1.5 × peak) ≈ 67 % < 90 % (RS-3).

Comparisons and targets are exact (``Fraction`` arithmetic on the quantities' values). A baseline
figure that is missing, negative or not a quantity disables the rules that need it. Pure function:
no I/O.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

from dorgu.domain.kube import Container, Deployment
from dorgu.domain.quantity import MIB, Format, Quantity, QuantityError, parse_quantity, sum_quantities
from dorgu.domain.types import Recommendation, ResourceBaseline

__all__ = [
    "LIMIT_PRESSURE",
    "LIMIT_TARGET_HEADROOM",
    "REQUEST_OVER_PEAK_FACTOR",
    "REQUEST_TARGET_HEADROOM",
    "recommend",
]

REQUEST_OVER_PEAK_FACTOR = Fraction(2)  # RS-1: request above 2x the peak
LIMIT_PRESSURE = Fraction(9, 10)  # RS-3: peak above 90 % of the limit
REQUEST_TARGET_HEADROOM = Fraction(5, 4)  # RS-1/RS-2 targets: 1.25x
LIMIT_TARGET_HEADROOM = Fraction(3, 2)  # RS-3 target: 1.5x


@dataclasses.dataclass(frozen=True, slots=True)
class _Resource:
    key: str  # the container resources key
    noun: str  # as written in messages
    capitalised: str  # at the start of a message
    limit_type: str  # RS-3's type
    limit_priority: str  # RS-3's priority
    unit: Decimal  # targets are rounded up to a whole unit (1m, 1Mi)
    unit_format: Format


_CPU = _Resource("cpu", "CPU", "CPU", "performance", "medium", Decimal("0.001"), Format.DECIMAL_SI)
_MEMORY = _Resource("memory", "memory", "Memory", "resource", "high", Decimal(MIB), Format.BINARY_SI)


def recommend(*, baseline: ResourceBaseline | None, deployment: Deployment) -> list[Recommendation]:
    """Right-sizing recommendations for one Deployment's pods (see the module docstring)."""
    if baseline is None:
        return []
    containers = deployment.spec.template.spec.containers
    out: list[Recommendation] = []
    for resource, avg_text, peak_text in (
        (_CPU, baseline.avg_cpu, baseline.peak_cpu),
        (_MEMORY, baseline.avg_memory, baseline.peak_memory),
    ):
        out.extend(_recommend_resource(resource, containers, avg_text, peak_text))
    return out


def _recommend_resource(
    resource: _Resource, containers: Sequence[Container], avg_text: str | None, peak_text: str | None
) -> list[Recommendation]:
    avg = _figure(avg_text)
    peak = _figure(peak_text)
    request = _pod_total(containers, resource.key, limits=False)
    limit = _pod_total(containers, resource.key, limits=True)
    avg_v, peak_v = _exact(avg), _exact(peak)
    request_v, limit_v = _exact(request), _exact(limit)
    noun = resource.noun
    out: list[Recommendation] = []

    # RS-1: request above 2x the peak -> lower it.
    if (
        peak_v is not None
        and peak_v > 0
        and request_v is not None
        and request_v > REQUEST_OVER_PEAK_FACTOR * peak_v
    ):
        out.append(
            Recommendation(
                type="cost",
                priority="low",
                message=f"{resource.capitalised} request per pod ({request}) "
                f"is more than twice the peak use ({peak_text})",
                action=f"Lower the {noun} request per pod to about "
                f"{_target(resource, peak_v * REQUEST_TARGET_HEADROOM)}",
            )
        )

    # RS-2: average use above the request -> raise it.
    if avg_v is not None and request_v is not None and request_v > 0 and avg_v > request_v:
        out.append(
            Recommendation(
                type="resource",
                priority="medium",
                message=f"Average {noun} use per pod ({avg_text}) is above the {noun} request ({request})",
                action=f"Raise the {noun} request per pod to at least "
                f"{_target(resource, avg_v * REQUEST_TARGET_HEADROOM)}",
            )
        )

    # RS-3: peak above 90 % of the limit -> raise the limit.
    if peak_v is not None and limit_v is not None and peak_v > LIMIT_PRESSURE * limit_v:
        out.append(
            Recommendation(
                type=resource.limit_type,
                priority=resource.limit_priority,
                message=f"Peak {noun} use per pod ({peak_text}) is above 90% of the {noun} limit ({limit})",
                action=f"Raise the {noun} limit per pod to at least "
                f"{_target(resource, peak_v * LIMIT_TARGET_HEADROOM)}",
            )
        )
    return out


def _figure(text: str | None) -> Quantity | None:
    """A baseline figure, or None when it is missing or not a quantity (e.g. ``NaNm``)."""
    if not text:
        return None
    try:
        quantity = parse_quantity(text)
    except QuantityError:
        return None
    return quantity if quantity.value >= 0 else None


def _pod_total(containers: Sequence[Container], key: str, *, limits: bool) -> Quantity | None:
    """Sum of the containers' requests (any set) or limits (all must be set and non-zero)."""
    addends: list[Quantity] = []
    for container in containers:
        resources = container.resources
        values = (resources.limits if limits else resources.requests) if resources is not None else None
        quantity = _quantity_or_none((values or {}).get(key))
        if quantity is None or quantity.is_zero():
            if limits:
                return None  # one unbounded container leaves the pod unbounded
            continue
        addends.append(quantity)
    return sum_quantities(addends) if addends else None


def _quantity_or_none(raw: int | str | None) -> Quantity | None:
    if raw is None:
        return None
    try:
        return parse_quantity(raw)
    except QuantityError:
        return None


def _exact(quantity: Quantity | None) -> Fraction | None:
    return None if quantity is None else Fraction(quantity.value)


def _target(resource: _Resource, value: Fraction) -> str:
    """``value`` rounded up to a whole millicore / MiB, printed canonically."""
    units = math.ceil(value / Fraction(resource.unit))
    return Quantity.from_value(units * resource.unit, resource.unit_format).canonical()
