"""The metrics the kit added, in-process: webhook verdicts by mode and outcome (from real reviews), the
certificates' expiry and renewal times, WebSocket clients and subscriptions, personas by phase. Each test
reads the values through prometheus_client's registry, as ``/metrics`` shows them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec
from prometheus_client import REGISTRY

from certs.rotation import RotationPolicy, issue
from controllers.metrics import PersonaCounter
from dorgu.domain import protocol as p
from dorgu.domain.types import ApplicationPersona
from tests.webhook.kit import PERSONA_SPEC, deployment
from webhook.admission import Mode, Reviewer
from webhook.metrics import count_verdict, observe_certificates
from webhook.ws.hub import Connection, Filter, HubSettings, Subscription, Topic


def value(name: str, **labels: str) -> float:
    got = REGISTRY.get_sample_value(name, labels)
    assert got is not None, f"no sample {name}{labels}"
    return got


def _persona(name: str = "shop", phase: str | None = None, passed: bool | None = None) -> ApplicationPersona:
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
    if passed is not None:
        status["validation"] = {"passed": passed}
    return msgspec.convert(
        {
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"name": "shop", "type": "api", **PERSONA_SPEC},
            **({"status": status} if status else {}),
        },
        ApplicationPersona,
    )


def _review(obj: Any, namespace: str = "ns") -> bytes:
    req = {
        "uid": "u-1", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "namespace": namespace, "operation": "CREATE", "object": obj,
    }  # fmt: skip
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}
    ).encode()


VERDICTS = "dorgu_webhook_verdicts_total"


def test_verdicts_are_counted_by_the_mode_that_decided_and_their_outcome() -> None:
    modes = {"adv": Mode.ADVISORY, "enf": Mode.ENFORCING}
    persona = _persona()
    reviewer = Reviewer(
        mode=Mode.ADVISORY,
        personas=lambda ns, app: [persona] if app == "shop" else [],
        namespace_mode=lambda ns: modes.get(ns),
    )
    bad = deployment("bad", replicas=1, cpu="1", escalation=True)
    good = deployment("good")
    cases = [
        (_review(bad, "adv"), "advisory", "warned"),
        (_review(bad, "enf"), "enforcing", "denied"),
        (_review(good, "enf"), "enforcing", "allowed"),
        (_review(deployment("other", app="other"), "enf"), "none", "allowed"),  # no persona: none checked
        (b"{not json", "none", "invalid"),
    ]
    for body, mode, outcome in cases:
        before = value(VERDICTS, mode=mode, outcome=outcome)
        reply = reviewer.review(body)
        count_verdict(reply)
        assert value(VERDICTS, mode=mode, outcome=outcome) == before + 1, (mode, outcome, reply.message)
    # Every mode × outcome exists from the start (a rate over them needs no first review).
    assert value(VERDICTS, mode="advisory", outcome="error") >= 0


def test_certificate_expiry_and_renewal_times_are_the_served_certificates() -> None:
    policy = RotationPolicy(
        serving_validity=dt.timedelta(hours=3), ca_validity=dt.timedelta(days=2), backdate=dt.timedelta(0)
    )
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    material = issue(policy, dns_names=["svc"], ip_addresses=[], now=now)
    observe_certificates(material, policy)
    serving_end = (now + dt.timedelta(hours=3)).timestamp()
    assert value("dorgu_webhook_certificate_expiry_timestamp_seconds", certificate="serving") == serving_end
    assert (
        value("dorgu_webhook_certificate_renewal_timestamp_seconds", certificate="serving")
        == (now + dt.timedelta(hours=2)).timestamp()
    )  # 2/3 of the lifetime
    assert (
        value("dorgu_webhook_certificate_expiry_timestamp_seconds", certificate="ca")
        == (now + dt.timedelta(days=2)).timestamp()
    )


def _topic(name: str) -> Topic:
    return Topic(
        name, settings=HubSettings(), server_id="s", snapshot_source=lambda f: [], current_rv=lambda: "1"
    )


async def _send(frame: bytes) -> None:
    return None


def test_websocket_clients_and_subscriptions_follow_connections() -> None:
    topic = _topic("personas-metrics-test")
    subs = "dorgu_websocket_subscriptions"
    assert value(subs, topic=topic.name) == 0  # the series exists before the first subscription
    clients = value("dorgu_websocket_clients")
    a = Connection(codec=p.Codec(msgpack=False), send=_send, settings=HubSettings())
    b = Connection(codec=p.Codec(msgpack=False), send=_send, settings=HubSettings())
    assert value("dorgu_websocket_clients") == clients + 2
    sa, sb = Subscription(a, topic, Filter()), Subscription(b, topic, Filter(namespace="ns"))
    for conn, sub in ((a, sa), (b, sb)):
        conn.subs[topic.name] = sub
        topic.subscribe(sub, resume_rv=None, server_id=None)
    topic.subscribe(sa, resume_rv=None, server_id=None)  # the same subscription again counts once
    assert value(subs, topic=topic.name) == 2
    topic.unsubscribe(sb)
    topic.unsubscribe(sb)  # twice: still one fewer
    del b.subs[topic.name]
    assert value(subs, topic=topic.name) == 1
    a.close()
    a.close()
    b.close()
    assert value(subs, topic=topic.name) == 0
    assert value("dorgu_websocket_clients") == clients


def test_personas_by_phase_follow_the_cache() -> None:
    counter = PersonaCounter()
    h = counter.handlers()
    assert h.on_add and h.on_update and h.on_delete

    def phases() -> dict[str, float]:
        return {ph: value("dorgu_applicationpersonas", phase=ph) for ph in counter.counts}

    failed = "dorgu_applicationpersonas_validation_failed"
    assert set(phases().values()) == {0}
    new = _persona("a")
    h.on_add(new)
    h.on_add(_persona("b", phase="Active", passed=True))
    h.on_add(_persona("b", phase="Active", passed=True))  # a relist's add of a known key replaces
    assert phases() == {"Pending": 0, "Active": 1, "Degraded": 0, "Failed": 0, "Unset": 1}
    degraded = _persona("a", phase="Degraded", passed=False)
    h.on_update(new, degraded)
    assert phases()["Unset"] == 0 and phases()["Degraded"] == 1
    assert value(failed) == 1
    h.on_delete(degraded)
    assert phases() == {"Pending": 0, "Active": 1, "Degraded": 0, "Failed": 0, "Unset": 0}
    assert value(failed) == 0
