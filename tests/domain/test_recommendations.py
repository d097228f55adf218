"""Right-sizing recommendations from the learned baseline (issue 4 item 6)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from dorgu.domain.kube import Deployment
from dorgu.domain.recommendations import recommend
from dorgu.domain.types import Recommendation, ResourceBaseline

TYPES = {"resource", "scaling", "security", "cost", "performance"}
PRIORITIES = {"high", "medium", "low"}


def deployment(*resources: dict[str, Any] | None) -> Deployment:
    containers = []
    for index, res in enumerate(resources):
        c: dict[str, Any] = {"name": f"c{index}", "image": "registry.example.com/app:1"}
        if res is not None:
            c["resources"] = res
        containers.append(c)
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "default", "labels": {"app.kubernetes.io/name": "app"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {"metadata": {"labels": {"app": "app"}}, "spec": {"containers": containers}},
        },
    }
    return msgspec.convert(doc, Deployment)


def baseline(**figures: str) -> ResourceBaseline:
    return msgspec.convert(figures, ResourceBaseline)


def run(base: ResourceBaseline | None, *resources: dict[str, Any] | None) -> list[Recommendation]:
    result = recommend(baseline=base, deployment=deployment(*resources))
    for rec in result:
        assert rec.type in TYPES
        assert rec.priority in PRIORITIES
    return result


# --------------------------------------------------------------------------- RS-1: request above 2x peak


def test_cpu_request_above_twice_the_peak() -> None:
    result = run(baseline(avgCPU="120m", peakCPU="250m"), {"requests": {"cpu": "1"}})
    assert result == [
        Recommendation(
            type="cost",
            priority="low",
            message="CPU request per pod (1) is more than twice the peak use (250m)",
            action="Lower the CPU request per pod to about 313m",  # 1.25 x 250m, rounded up
        )
    ]


def test_memory_request_above_twice_the_peak() -> None:
    result = run(baseline(avgMemory="1.2Gi", peakMemory="1.5Gi"), {"requests": {"memory": "4Gi"}})
    assert result == [
        Recommendation(
            type="cost",
            priority="low",
            message="Memory request per pod (4Gi) is more than twice the peak use (1.5Gi)",
            action="Lower the memory request per pod to about 1920Mi",
        )
    ]


@pytest.mark.parametrize("request_cpu", ["500m", "0.5", "400m"])
def test_request_at_most_twice_the_peak_is_silent(request_cpu: str) -> None:
    assert run(baseline(peakCPU="250m"), {"requests": {"cpu": request_cpu}}) == []


def test_zero_peak_recommends_nothing() -> None:
    assert run(baseline(avgCPU="0m", peakCPU="0m"), {"requests": {"cpu": "1"}}) == []


# --------------------------------------------------------------------------- RS-2: average above the request


def test_average_above_the_request() -> None:
    result = run(baseline(avgCPU="300m", peakCPU="400m"), {"requests": {"cpu": "250m"}})
    assert result == [
        Recommendation(
            type="resource",
            priority="medium",
            message="Average CPU use per pod (300m) is above the CPU request (250m)",
            action="Raise the CPU request per pod to at least 375m",
        )
    ]


def test_average_equal_to_the_request_is_silent() -> None:
    assert run(baseline(avgMemory="256Mi", peakMemory="300Mi"), {"requests": {"memory": "256Mi"}}) == []


# --------------------------------------------------------------------------- RS-3: peak above 90 % of limit


def test_memory_peak_near_the_limit() -> None:
    result = run(
        baseline(avgMemory="700Mi", peakMemory="950Mi"),
        {"requests": {"memory": "768Mi"}, "limits": {"memory": "1Gi"}},
    )
    assert result == [
        Recommendation(
            type="resource",
            priority="high",
            message="Peak memory use per pod (950Mi) is above 90% of the memory limit (1Gi)",
            action="Raise the memory limit per pod to at least 1425Mi",
        )
    ]


def test_cpu_peak_near_the_limit() -> None:
    result = run(baseline(avgCPU="500m", peakCPU="1900m"), {"requests": {"cpu": "1"}, "limits": {"cpu": "2"}})
    assert result == [
        Recommendation(
            type="performance",
            priority="medium",
            message="Peak CPU use per pod (1900m) is above 90% of the CPU limit (2)",
            action="Raise the CPU limit per pod to at least 2850m",
        )
    ]


def test_peak_at_exactly_90_percent_is_silent() -> None:
    assert (
        run(baseline(peakMemory="900Mi"), {"requests": {"memory": "600Mi"}, "limits": {"memory": "1000Mi"}})
        == []
    )
    assert run(baseline(peakCPU="900m"), {"requests": {"cpu": "500m"}, "limits": {"cpu": "1"}}) == []


# --------------------------------------------------------------------------- pods with several containers


def test_pod_totals_over_containers() -> None:
    # requests: 600m + 600m = 1200m > 2 x 500m peak; limits: 500m + 500m = 1, and 500m <= 90 % of it
    result = run(
        baseline(peakCPU="500m"),
        {"requests": {"cpu": "600m"}, "limits": {"cpu": "500m"}},
        {"requests": {"cpu": "600m"}, "limits": {"cpu": "500m"}},
    )
    assert [r.message for r in result] == [
        "CPU request per pod (1200m) is more than twice the peak use (500m)"
    ]


def test_a_container_without_a_limit_leaves_the_pod_unbounded() -> None:
    resources = (
        {"limits": {"memory": "256Mi"}, "requests": {"memory": "256Mi"}},
        {"requests": {"memory": "64Mi"}},
    )
    assert run(baseline(peakMemory="300Mi"), *resources) == []
    bounded = ({"limits": {"memory": "256Mi"}}, {"limits": {"memory": "64Mi"}})
    assert [r.message for r in run(baseline(peakMemory="300Mi"), *bounded)] == [
        "Peak memory use per pod (300Mi) is above 90% of the memory limit (320Mi)"
    ]


def test_no_requests_recommends_no_request_change() -> None:
    assert run(baseline(avgCPU="900m", peakCPU="1"), None, {"limits": {}}) == []


# --------------------------------------------------------------------------- inputs and order


def test_no_baseline() -> None:
    assert run(None, {"requests": {"cpu": "8"}}) == []
    assert run(baseline(), {"requests": {"cpu": "8"}}) == []


def test_unusable_figures_are_ignored() -> None:
    assert run(baseline(avgCPU="NaNm", peakCPU="NaNm"), {"requests": {"cpu": "8"}}) == []
    assert run(baseline(peakCPU="-5m"), {"requests": {"cpu": "8"}}) == []


def test_order_cpu_then_memory() -> None:
    result = run(
        baseline(avgCPU="300m", peakCPU="950m", avgMemory="100Mi", peakMemory="120Mi"),
        {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
    )
    assert [(r.type, r.priority) for r in result] == [
        ("resource", "medium"),  # RS-2 CPU: average 300m above the 250m request
        ("performance", "medium"),  # RS-3 CPU: 950m above 90 % of 1
        ("cost", "low"),  # RS-1 memory: 1Gi above 2 x 120Mi
    ]
    assert result[2].action == "Lower the memory request per pod to about 150Mi"


def test_targets_print_canonically() -> None:
    # 1.25 x 800m = 1 core exactly: canonical "1"; 1.25 x 819.2Mi = 1Gi.
    assert run(baseline(peakCPU="800m"), {"requests": {"cpu": "2"}})[0].action == (
        "Lower the CPU request per pod to about 1"
    )
    assert run(baseline(peakMemory="819.2Mi"), {"requests": {"memory": "4Gi"}})[0].action == (
        "Lower the memory request per pod to about 1Gi"
    )


def test_following_a_recommendation_settles() -> None:
    base = baseline(avgCPU="200m", peakCPU="250m", avgMemory="500Mi", peakMemory="950Mi")
    first = run(base, {"requests": {"cpu": "2", "memory": "768Mi"}, "limits": {"cpu": "4", "memory": "1Gi"}})
    assert [r.action for r in first] == [
        "Lower the CPU request per pod to about 313m",
        "Raise the memory limit per pod to at least 1425Mi",
    ]
    fixed = {"requests": {"cpu": "313m", "memory": "768Mi"}, "limits": {"cpu": "4", "memory": "1425Mi"}}
    assert run(base, fixed) == []
