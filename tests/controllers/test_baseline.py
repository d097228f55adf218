"""Prometheus baselines (issue 4 item 5) against a real Prometheus holding 3 h of synthetic cAdvisor series.

Tolerance: the raw figures (cores, bytes) Prometheus computes equal the ones computed here in Python from the
same samples to a relative 1e-9 (measured: ~1e-16, float summation order only); the formatted strings are then
identical. Formatting itself rounds: CPU to whole millicores (±0.5m), memory to whole MiB (±0.5 MiB) below
1 GiB and to 0.1 GiB (±0.05 GiB) above.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from controllers.baseline import (
    BaselineLearner,
    BaselineSettings,
    BaselineUnavailable,
    BaselineValues,
    build_queries,
    next_baseline,
    pod_regex,
    promql_string,
    re2_escape,
)
from dorgu.domain.types import ResourceBaseline
from dorgu.runtime.clock import FakeClock
from tests.controllers.prometheus_kit import (
    CPU,
    PrometheusServer,
    Series,
    Usage,
    cadvisor_pod,
    free_port,
    running_prometheus,
)

MINUTES = 181  # 3 h of 1-minute samples, the last one at END
END = (int(datetime.now(UTC).timestamp()) // 60 - 2) * 60
START = END - (MINUTES - 1) * 60
NS = "shop"
ODD_NS = 'o"dd\\ns'  # a quote and a backslash
WEB = ("web-5d9c7b8f6-abcde", "web-5d9c7b8f6-fghij")
ADMIN = ("web-admin-6c8d9-klmno",)
MiB = 1024**2
GiB = 1024**3


def _usage(
    rng: random.Random, cpu: float, mem: float, *, spikes: dict[int, tuple[float, float]] | None = None
):
    cpus = [
        max(0.0, cpu * (1 + 0.3 * math.sin(i / 7.3)) + rng.uniform(-0.1, 0.1) * cpu) for i in range(MINUTES)
    ]
    mems = [
        float(round(mem * (1 + 0.2 * math.cos(i / 11.1)) + rng.uniform(-0.05, 0.05) * mem))
        for i in range(MINUTES)
    ]
    for i, (c, m) in (spikes or {}).items():
        cpus[i], mems[i] = c, m
    return Usage(cpu=cpus, memory=mems, cpu_start=rng.uniform(500, 5000))


def _synthetic() -> list[Series]:
    rng = random.Random(4242)
    sandbox = lambda: _usage(rng, 0.002, 0.8 * MiB)  # noqa: E731
    overhead = lambda: _usage(rng, 0.05, 40 * MiB)  # noqa: E731
    old_spike = {
        90: (6.0, 2.5 * GiB)
    }  # 90 min before END: outside the 1 h window, larger than anything inside
    pods = [
        cadvisor_pod(
            NS,
            WEB[0],
            {
                "app": _usage(rng, 0.2, 150 * MiB, spikes={**old_spike, 150: (0.9, 400 * MiB)}),
                "sidecar": _usage(rng, 0.03, 20 * MiB),
            },
            start=START,
            sandbox=sandbox(),
            cgroup_overhead=overhead(),
        ),
        cadvisor_pod(
            NS,
            WEB[1],
            {"app": _usage(rng, 0.25, 180 * MiB, spikes=old_spike)},
            start=START,
            sandbox=sandbox(),
            cgroup_overhead=overhead(),
        ),
        # the similarly-named other app: ten times bigger, so mixing it in could not go unnoticed
        cadvisor_pod(
            NS,
            ADMIN[0],
            {"app": _usage(rng, 2.0, 1.5 * GiB)},
            start=START,
            sandbox=sandbox(),
            cgroup_overhead=overhead(),
        ),
        # the same pod name in another namespace
        cadvisor_pod("staging", "web-5d9c7b8f6-qrstu", {"app": _usage(rng, 3.0, 3 * GiB)}, start=START),
        # escaping: a namespace with a quote and a backslash, a Deployment named "a.b" and a decoy "aXb"
        cadvisor_pod(ODD_NS, "a.b-5d9c7b8f6-abcde", {"app": _usage(rng, 0.1, 64 * MiB)}, start=START),
        cadvisor_pod(ODD_NS, "aXb-5d9c7b8f6-abcde", {"app": _usage(rng, 1.0, 512 * MiB)}, start=START),
    ]
    return [s for p in pods for s in p.series]


SERIES = _synthetic()


@dataclass(frozen=True)
class Expected:
    avg_cpu: float
    peak_cpu: float
    avg_memory: float
    peak_memory: float

    def values(self) -> BaselineValues:
        return BaselineValues(
            avg_cpu=self.avg_cpu,
            peak_cpu=self.peak_cpu,
            avg_memory=self.avg_memory,
            peak_memory=self.peak_memory,
        )


def expected(
    namespace: str, pods: Sequence[str], *, at: int = END, exclude: tuple[str, ...] = ("POD", "")
) -> Expected:
    """The oracle, from the written samples: for each 1-minute step in [at-1h, at] (Prometheus 2.x ranges are
    closed), each pod's sum over its containers of rate[5m] = (v(t) - v(t-5m)) / 300 — samples sit exactly on
    the range boundaries, so Prometheus extrapolates nothing — or of its working set; then the mean/max over
    pods; then the mean/max over the steps."""
    values: dict[tuple[str, str, str], dict[int, float]] = {}
    for s in SERIES:
        if (
            s.labels["namespace"] == namespace
            and s.labels["pod"] in pods
            and s.labels["container"] not in exclude
        ):
            values[(s.name, s.labels["pod"], s.labels["container"])] = dict(s.points)
    steps = range(at - 3600, at + 1, 60)
    cpu_avg, cpu_max, mem_avg, mem_max = [], [], [], []
    for t in steps:
        per_pod_cpu: dict[str, float] = {}
        per_pod_mem: dict[str, float] = {}
        for (name, pod, _), pts in values.items():
            if name == CPU:
                per_pod_cpu[pod] = per_pod_cpu.get(pod, 0.0) + (pts[t] - pts[t - 300]) / 300
            else:
                per_pod_mem[pod] = per_pod_mem.get(pod, 0.0) + pts[t]
        cpu_avg.append(sum(per_pod_cpu.values()) / len(per_pod_cpu))
        cpu_max.append(max(per_pod_cpu.values()))
        mem_avg.append(sum(per_pod_mem.values()) / len(per_pod_mem))
        mem_max.append(max(per_pod_mem.values()))
    return Expected(
        avg_cpu=sum(cpu_avg) / len(cpu_avg),
        peak_cpu=max(cpu_max),
        avg_memory=sum(mem_avg) / len(mem_avg),
        peak_memory=max(mem_max),
    )


def _clock(at: int = END) -> FakeClock:
    return FakeClock(start=datetime.fromtimestamp(at, UTC))


def _learner(url: str | None, clock: FakeClock | None = None, **kw) -> BaselineLearner:
    return BaselineLearner(BaselineSettings(url=url, **kw), clock=clock or _clock())


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with running_prometheus(SERIES, tmp_path_factory.mktemp("prometheus")) as server:
        yield server


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _assert_close(got: BaselineValues, want: Expected, tol: float = 1e-9) -> float:
    worst = 0.0
    for f in ("avg_cpu", "peak_cpu", "avg_memory", "peak_memory"):
        g, w = getattr(got, f), getattr(want, f)
        assert g is not None, f
        worst = max(worst, _rel(g, w))
        assert _rel(g, w) <= tol, f"{f}: Prometheus {g!r} vs Python {w!r}"
    return worst


# --- against the real Prometheus ---------------------------------------------------------------------------


def test_learned_figures_equal_the_synthetic_data(prometheus: PrometheusServer) -> None:
    learner = _learner(prometheus.url)
    personas = {"shop/web": ["web"], "shop/web-admin": ["web-admin"]}
    raw = asyncio.run(learner.learn_values(NS, personas))
    web, admin = raw["shop/web"], raw["shop/web-admin"]
    assert isinstance(web, BaselineValues) and isinstance(admin, BaselineValues)
    want_web, want_admin = expected(NS, WEB), expected(NS, ADMIN)
    worst = max(_assert_close(web, want_web), _assert_close(admin, want_admin))
    print(f"\nlargest relative difference Prometheus vs Python: {worst:.3g}")

    # formatted: the same strings as the oracle's figures, as format_millicores/format_memory print them
    formatted = asyncio.run(learner.learn(NS, personas, force=True))
    assert formatted["shop/web"] == want_web.values().to_resource_baseline()
    assert formatted["shop/web-admin"] == want_admin.values().to_resource_baseline()
    b = formatted["shop/web"]
    assert isinstance(b, ResourceBaseline)
    assert re.fullmatch(r"\d+m", b.avg_cpu or "") and re.fullmatch(r"\d+m", b.peak_cpu or "")
    assert re.fullmatch(r"\d+Mi", b.avg_memory or "") and re.fullmatch(r"\d+Mi", b.peak_memory or "")
    a = formatted["shop/web-admin"]
    assert isinstance(a, ResourceBaseline) and re.fullmatch(r"\d\.\dGi", a.avg_memory or "")


def test_other_app_namespace_and_sandbox_series_are_not_mixed_in(prometheus: PrometheusServer) -> None:
    learner = _learner(prometheus.url)
    alone = asyncio.run(learner.learn_values(NS, {"web": ["web"]}))["web"]
    assert isinstance(alone, BaselineValues)
    _assert_close(alone, expected(NS, WEB))
    # what the figures would be with the wrong pods or containers — each far off the learned ones
    wrongs = {
        "web-admin mixed in": expected(NS, WEB + ADMIN),
        "POD and empty-container series included": expected(NS, WEB, exclude=()),
        "POD series included": expected(NS, WEB, exclude=("",)),
    }
    for what, wrong in wrongs.items():
        assert _rel(alone.avg_cpu or 0, wrong.avg_cpu) > 0.005, what
        assert _rel(alone.avg_memory or 0, wrong.avg_memory) > 0.003, what
    # the spike 90 min ago (6 cores, 2.5 GiB) is outside the window
    assert (alone.peak_cpu or 0) < 2.0 and (alone.peak_memory or 0) < GiB


def test_split_queries_give_the_same_figures(prometheus: PrometheusServer) -> None:
    personas = {"a": ["web"], "b": ["web-admin"], "c": ["web"], "d": ["web", "web-admin"]}
    together = asyncio.run(_learner(prometheus.url).learn(NS, personas))
    one_by_one = asyncio.run(_learner(prometheus.url, max_groups_per_query=1).learn(NS, personas))
    assert together == one_by_one
    assert together["a"] == together["c"] == expected(NS, WEB).values().to_resource_baseline()
    assert together["d"] == expected(NS, WEB + ADMIN).values().to_resource_baseline()  # both Deployments


def test_escaped_namespace_and_metacharacters_in_names(prometheus: PrometheusServer) -> None:
    learner = _learner(prometheus.url)
    got = asyncio.run(learner.learn_values(ODD_NS, {"p": ["a.b"]}))["p"]
    assert isinstance(got, BaselineValues)
    _assert_close(got, expected(ODD_NS, ("a.b-5d9c7b8f6-abcde",)))  # the decoy aXb-… is not matched


def test_no_series_is_no_data_not_zeros(prometheus: PrometheusServer) -> None:
    learner = _learner(prometheus.url)
    got = asyncio.run(learner.learn(NS, {"api": ["api"], "none": [], "web": ["web"]}))
    assert got["api"] is None and got["none"] is None
    assert isinstance(got["web"], ResourceBaseline)
    # a day after the data ends there is nothing in the window
    later = _learner(prometheus.url, _clock(END + 86400))
    assert asyncio.run(later.learn(NS, {"web": ["web"]})) == {"web": None}
    assert next_baseline(ResourceBaseline(avg_cpu="5m"), None) == ResourceBaseline(avg_cpu="5m")


def test_refresh_only_when_due(prometheus: PrometheusServer) -> None:
    clock = _clock()
    learner = _learner(prometheus.url, clock, refresh_interval_s=600)
    assert learner.due("web")
    first = asyncio.run(learner.learn(NS, {"web": ["web"]}))
    assert isinstance(first["web"], ResourceBaseline)
    assert not learner.due("web")
    asyncio.run(clock.advance(100))
    assert asyncio.run(learner.learn(NS, {"web": ["web"], "admin": ["web-admin"]})).keys() == {"admin"}
    asyncio.run(clock.advance(499))
    assert not learner.due("web")
    asyncio.run(clock.advance(1))
    assert learner.due("web") and not learner.due("admin")
    assert asyncio.run(learner.learn(NS, {"web": ["web"]})).keys() == {"web"}
    assert asyncio.run(learner.learn(NS, {"web": ["web"]}, force=True)).keys() == {"web"}
    learner.forget("web")
    assert learner.due("web")


def test_prometheus_down_keeps_the_previous_baseline(prometheus: PrometheusServer) -> None:
    clock = _clock()
    learner = _learner(prometheus.url, clock, timeout_s=3, retry_interval_s=60)
    stored = next_baseline(None, asyncio.run(learner.learn(NS, {"web": ["web"]}))["web"])
    assert isinstance(stored, ResourceBaseline) and stored.avg_cpu
    prometheus.stop()
    try:
        asyncio.run(clock.advance(600))
        outcome = asyncio.run(learner.learn(NS, {"web": ["web"]}))["web"]
        assert isinstance(outcome, BaselineUnavailable)
        assert f"Prometheus at {prometheus.url} is unreachable" in outcome.reason
        assert "Connection refused" in outcome.reason
        assert next_baseline(stored, outcome) is stored
        # retried after retry_interval_s, not after the full refresh interval
        asyncio.run(clock.advance(59))
        assert not learner.due("web")
        asyncio.run(clock.advance(1))
        assert learner.due("web")
    finally:
        prometheus.start()
    assert isinstance(asyncio.run(learner.learn(NS, {"web": ["web"]}))["web"], ResourceBaseline)
    assert asyncio.run(_learner(prometheus.url).learn(NS, {"web": ["web"]}))["web"] == stored  # same window


def test_closed_port_http_error_and_timeout_are_unavailable(prometheus: PrometheusServer) -> None:
    closed = asyncio.run(_learner(f"http://127.0.0.1:{free_port()}").learn(NS, {"web": ["web"]}))["web"]
    assert isinstance(closed, BaselineUnavailable) and "Connection refused" in closed.reason

    wrong_path = asyncio.run(_learner(prometheus.url + "/nope").learn(NS, {"web": ["web"]}))["web"]
    assert isinstance(wrong_path, BaselineUnavailable) and "HTTP 404" in wrong_path.reason, wrong_path

    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        hung = asyncio.run(_learner(url, timeout_s=0.5).learn(NS, {"web": ["web"]}))["web"]
    assert isinstance(hung, BaselineUnavailable)
    assert hung.reason == f"Prometheus at {url} did not answer within 0.5 s"


# --- no Prometheus configured ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [None, ""])
def test_no_url_means_off_silently(url: str | None, caplog: pytest.LogCaptureFixture) -> None:
    learner = _learner(url)
    assert not learner.enabled and not learner.due("web")
    assert asyncio.run(learner.learn(NS, {"web": ["web"]})) == {}
    assert asyncio.run(learner.learn(NS, {"web": ["web"]}, force=True)) == {}
    assert not caplog.records


# --- escaping and patterns (no Prometheus) -----------------------------------------------------------------


def test_re2_escape_and_promql_string() -> None:
    assert re2_escape("a.b+c*d?(e)[f]{g}^h$i|j\\k-l") == r"a\.b\+c\*d\?\(e\)\[f\]\{g\}\^h\$i\|j\\k-l"
    assert promql_string('o"dd\\ns') == '"o\\"dd\\\\ns"'
    assert promql_string("a\nb\x01") == '"a\\nb\\x01"'


def _instant(prometheus: PrometheusServer, query: str, at: int = END) -> list[dict[str, Any]]:
    """Prometheus's answer to an instant ``query`` at ``at`` (its own HTTP API, not the learner's client)."""
    url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": query, "time": str(at)})
    with urllib.request.urlopen(url, timeout=30) as r:
        body = json.load(r)
    assert body["status"] == "success" and body["data"]["resultType"] == "vector", body
    return list(body["data"]["result"])


# hostile strings: quotes, backslashes, control characters, RE2 metacharacters, non-ASCII
LITERALS = ['o"dd\\ns', "a\nb\x01", "t\tr\r\x7f", "a.b+c*d?(e)[f]{g}^h$i|j\\k-l", "ünï ✓"]


def _with_label(name: str, value: str) -> str:
    """A one-series vector carrying label ``name`` = ``value`` (``$`` doubled: the replacement expands it)."""
    return f'label_replace(vector(1), "{name}", {promql_string(value.replace("$", "$$"))}, "", "")'


@pytest.mark.parametrize("text", LITERALS)
def test_prometheus_reads_promql_string_back_as_the_text(prometheus: PrometheusServer, text: str) -> None:
    (series,) = _instant(prometheus, _with_label("x", text))
    assert series["metric"]["x"] == text


# each decoy matches the text taken as a pattern unescaped (".", "+" and "\\n" are RE2 syntax; "|" alternates)
@pytest.mark.parametrize(
    ("text", "decoys"),
    [
        ("a.b", ["aXb"]),
        ("a+", ["aa", "a"]),
        ("a.b+c*d?(e)[f]{g}^h$i|j\\k-l", ["j\\k-l", "a.b+c*d?(e)[f]{g}^h$i"]),
        ('o"dd\\ns', ['o"dd\ns']),
    ],
)
def test_re2_escape_matches_exactly_the_text_in_prometheus(
    prometheus: PrometheusServer, text: str, decoys: list[str]
) -> None:
    pattern = promql_string(re2_escape(text))
    for value, want in [(text, True)] + [(d, False) for d in decoys]:
        (series,) = _instant(
            prometheus, f'label_replace({_with_label("s", value)}, "m", "yes", "s", {pattern})'
        )
        assert (series["metric"].get("m") == "yes") is want, (value, want)


@pytest.mark.parametrize(
    ("namespace", "groups", "pods"),
    [
        (NS, [("web",)], [WEB]),
        (NS, [("web",), ("web-admin",)], [WEB, ADMIN]),
        (NS, [("web", "web-admin")], [WEB + ADMIN]),
        (ODD_NS, [("a.b",)], [("a.b-5d9c7b8f6-abcde",)]),  # the decoy aXb-… is not matched
    ],
)
def test_the_queries_asked_of_prometheus_give_each_groups_figures(
    prometheus: PrometheusServer,
    namespace: str,
    groups: list[tuple[str, ...]],
    pods: list[tuple[str, ...]],
) -> None:
    """Each of the four queries, evaluated by Prometheus itself, answers one series per group, labelled
    ``dorgu_group="g<i>"``, whose value is the oracle's figure for that group's pods."""
    queries = build_queries(namespace, groups, BaselineSettings(url=prometheus.url))
    assert set(queries) == {"avg_cpu", "peak_cpu", "avg_memory", "peak_memory"}
    want = {f"g{i}": expected(namespace, p) for i, p in enumerate(pods)}
    for field, query in queries.items():
        got = {s["metric"]["dorgu_group"]: float(s["value"][1]) for s in _instant(prometheus, query)}
        assert set(got) == set(want), (field, got)
        for group, oracle in want.items():
            w = getattr(oracle, field)
            assert _rel(got[group], w) <= 1e-9, f"{field} {group}: Prometheus {got[group]!r} vs Python {w!r}"


def _matches(deployment: str, pod: str) -> bool:
    return re.fullmatch(pod_regex(deployment), pod) is not None  # RE2 and Python agree on these patterns


def _k8s_pod_name(deployment: str, pod_hash: str, suffix: str) -> str:
    """How Kubernetes names a Deployment's pod: ``(<deploy>-<hash>-)[:58] + 5 random characters``."""
    return (f"{deployment}-{pod_hash}-")[:58] + suffix


def test_pod_pattern_is_the_deployment_shape_not_a_prefix() -> None:
    assert _matches("web", "web-5d9c7b8f6-abcde")
    assert _matches("web", "web-7-abcde") and _matches("web", "web-5d9c7b8f64-abcde")
    assert not _matches("web", "web-admin-6c8d9-klmno")
    assert not _matches("web", "web-5d9c7b8f6-abcdef") and not _matches("web", "web-5d9c7b8f6")
    assert not _matches("web", "webx-5d9c7b8f6-abcde")
    assert _matches("web-admin", "web-admin-6c8d9-klmno")
    assert _matches("a.b", "a.b-5d9c7b8f6-abcde") and not _matches("a.b", "aXb-5d9c7b8f6-abcde")
    assert not _matches("a+", "aa-5d9c7b8f6-abcde") and _matches("a+", "a+-5d9c7b8f6-abcde")


@pytest.mark.parametrize("length", [40, 46, 47, 50, 55, 56, 57, 58, 63])
def test_pod_pattern_matches_truncated_names_of_long_deployments(length: int) -> None:
    name = ("d" * (length - 1)) + "x"
    for pod_hash in ("7", "5d9c7b8f6", "5d9c7b8f64"):
        assert _matches(name, _k8s_pod_name(name, pod_hash, "abcde")), (length, pod_hash)
    if length <= 46:  # longer names are cut so far that a longer look-alike name can collide (documented)
        assert not _matches(name, _k8s_pod_name(name + "-other", "5d9c7b8f6", "abcde"))


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="window"):
        BaselineSettings(url="http://x", window="1 hour")
    with pytest.raises(ValueError, match="rate_window"):
        BaselineSettings(url="http://x", rate_window="5m])")


def test_overlapping_groups_get_separate_queries() -> None:
    from controllers.baseline import _batches

    groups = [("a",), ("a", "b"), ("c",), ("d",)]
    assert _batches(groups, 25) == [[("a",), ("c",), ("d",)], [("a", "b")]]
    assert _batches(groups, 2) == [[("a",), ("c",)], [("a", "b"), ("d",)]]


def test_next_baseline_fills_missing_fields_from_the_previous() -> None:
    prev = ResourceBaseline(avg_cpu="1m", peak_cpu="2m", avg_memory="3Mi", peak_memory="4Mi")
    new = ResourceBaseline(avg_cpu="10m", peak_cpu="20m")
    assert next_baseline(prev, new) == ResourceBaseline(
        avg_cpu="10m", peak_cpu="20m", avg_memory="3Mi", peak_memory="4Mi"
    )
    assert next_baseline(prev, BaselineUnavailable("down")) is prev
    assert next_baseline(None, new) is new


def test_formatting_per_spec() -> None:
    b = BaselineValues(avg_cpu=0.25, peak_cpu=0.0004, avg_memory=128 * MiB, peak_memory=1.5 * GiB)
    assert b.to_resource_baseline() == ResourceBaseline(
        avg_cpu="250m", peak_cpu="0m", avg_memory="128Mi", peak_memory="1.5Gi"
    )
    assert BaselineValues(avg_memory=2 * GiB).to_resource_baseline().avg_memory == "2.0Gi"
    assert BaselineValues(avg_memory=GiB - 1).to_resource_baseline().avg_memory == "1024Mi"
