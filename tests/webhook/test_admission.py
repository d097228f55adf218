"""The review core without a cluster: modes, messages, bad input, and fuzzing (never a 5xx, never a crash)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dorgu.domain.kube import Deployment
from dorgu.domain.rules import evaluate
from dorgu.domain.types import ApplicationPersona
from dorgu.runtime.meta import decode_list_page
from tests.webhook.kit import PERSONA_SPEC, deployment
from webhook.admission import Mode, Reviewer, parse_mode, undecodable_lookup

PERSONA = msgspec.convert(
    {
        "metadata": {"name": "shop", "namespace": "ns"},
        "spec": {"name": "shop", "type": "api", **PERSONA_SPEC},
    },
    ApplicationPersona,
)


def reviewer(mode: Mode = Mode.ADVISORY, ns_mode: Mode | None = None) -> Reviewer:
    return Reviewer(
        mode=mode,
        personas=lambda ns, app: [PERSONA] if (ns, app) == ("ns", "shop") else [],
        namespace_mode=lambda ns: ns_mode,
    )


def review(obj: Any = None, *, operation: str = "CREATE", namespace: str = "ns", **request: Any) -> bytes:
    req: dict[str, Any] = {
        "uid": "u-1",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "namespace": namespace,
        "operation": operation,
        **request,
    }
    if obj is not None:
        req["object"] = obj
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}
    ).encode()


def answer(body: bytes, r: Reviewer | None = None) -> tuple[int, dict[str, Any]]:
    reply = (r or reviewer()).review(body)
    return reply.status, json.loads(reply.body)


def bad() -> dict[str, Any]:
    return deployment("bad", replicas=1, cpu="1", escalation=True)


def test_advisory_warns_in_rule_order_and_info_is_not_a_warning() -> None:
    obj = bad()
    obj["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] = (
        "/other"  # H-2: info
    )
    status, out = answer(review(obj))
    assert status == 200
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    r = out["response"]
    assert r["uid"] == "u-1" and r["allowed"] is True
    assert r["status"] == {"code": 200, "message": "advisory mode"}
    assert r["warnings"] == [
        "[bad/c0] Container CPU limit (1) exceeds persona limit (500m)",
        "Deployment replicas (1) below persona minimum (2)",
        "[bad/c0] Persona forbids privilege escalation but container allows it",
    ]
    # The same as the shared rules say (error + warning issues, in order).
    findings = evaluate(PERSONA.spec, [msgspec.convert(obj, Deployment)])
    assert len(r["warnings"]) == len([f for f in findings if f.severity != "info"]) == len(findings) - 1


def test_enforcing_denies_with_the_persona_and_errors() -> None:
    status, out = answer(review(bad()), reviewer(Mode.ENFORCING))
    r = out["response"]
    assert status == 200 and r["allowed"] is False
    assert r["status"] == {
        "code": 403,
        "reason": "Forbidden",
        "message": "Deployment violates ApplicationPersona 'shop': Deployment replicas (1) below persona "
        "minimum (2); [bad/c0] Persona forbids privilege escalation but container allows it",
    }
    assert len(r["warnings"]) == 3
    # Warnings only: allowed, "passed with warnings"; compliant: "all persona checks passed", no warnings.
    _, warn = answer(review(deployment("w", cpu="1")), reviewer(Mode.ENFORCING))
    assert warn["response"]["allowed"] and warn["response"]["status"]["message"] == "passed with warnings"
    _, ok = answer(review(deployment("ok")), reviewer(Mode.ENFORCING))
    assert ok["response"] == {
        "uid": "u-1",
        "allowed": True,
        "status": {"code": 200, "message": "all persona checks passed"},
    }


# A persona the API server accepted (year 0 passes the CRD's date-time format) that does not decode.
BROKEN_STATUS = {"lastUpdated": "0000-01-01T00:00:00Z"}
BROKEN_REASON = "Invalid RFC3339 encoded datetime - at `$.status.lastUpdated`"


def broken_reviewer(mode: Mode, *items: dict[str, Any]) -> Reviewer:
    """A reviewer whose persona cache holds the ``items`` that decode and knows those that do not."""
    page = decode_list_page(json.dumps({"items": list(items)}).encode(), ApplicationPersona)
    return Reviewer(
        mode=mode,
        personas=lambda ns, app: [p for p in page.items if (p.metadata.namespace, p.spec.name) == (ns, app)],
        namespace_mode=lambda ns: None,
        undecodable=undecodable_lookup(lambda: page.errors),
    )


def persona_obj(name: str, *, app: str = "shop", ns: str = "ns", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"name": app, "type": "api", **PERSONA_SPEC},
        **extra,
    }


def test_a_persona_that_cannot_be_decoded_denies_in_enforcing_and_warns_in_advisory() -> None:
    broken = persona_obj("shop", status=BROKEN_STATUS)
    warning = f"ApplicationPersona 'shop' cannot be decoded, so it was not checked: {BROKEN_REASON}"
    denial = "Deployment cannot be checked against ApplicationPersona 'shop', which cannot be decoded: "
    denial += BROKEN_REASON
    # Enforcing: even a compliant Deployment is denied, naming the persona and why.
    _, out = answer(review(deployment("ok")), broken_reviewer(Mode.ENFORCING, broken))
    r = out["response"]
    assert r["allowed"] is False
    assert r["status"] == {"code": 403, "reason": "Forbidden", "message": denial}
    assert r["warnings"] == [warning]
    # Advisory: allowed, with the warning.
    _, out = answer(review(deployment("ok")), broken_reviewer(Mode.ADVISORY, broken))
    r = out["response"]
    assert r["allowed"] is True and r["status"]["message"] == "advisory mode" and r["warnings"] == [warning]
    # Another app's broken persona, or one in another namespace, is not this app's.
    for other in (
        persona_obj("other", app="other", status=BROKEN_STATUS),
        {**broken, "metadata": {"name": "shop", "namespace": "elsewhere"}},
    ):
        _, out = answer(review(deployment("ok")), broken_reviewer(Mode.ENFORCING, other))
        assert out["response"]["status"]["message"] == "no matching ApplicationPersona found"
    # A spec.name that cannot be read either: it could be any app's, so it counts for every app here.
    nameless = persona_obj("nameless", status=BROKEN_STATUS)
    nameless["spec"]["name"] = 7
    _, out = answer(review(deployment("x", app="anything")), broken_reviewer(Mode.ENFORCING, nameless))
    assert out["response"]["allowed"] is False and "'nameless'" in out["response"]["status"]["message"]


def test_a_decodable_persona_still_checks_next_to_a_broken_one() -> None:
    """Two personas of one app, one broken: the other's errors deny (they say what to fix), the broken one's
    warning comes first."""
    personas = (persona_obj("a-broken", status=BROKEN_STATUS), persona_obj("b-fine"))
    _, out = answer(review(bad()), broken_reviewer(Mode.ENFORCING, *personas))
    r = out["response"]
    assert r["allowed"] is False and r["status"]["message"].startswith(
        "Deployment violates ApplicationPersona 'b-fine'"
    )
    assert (
        r["warnings"][0].startswith("ApplicationPersona 'a-broken' cannot be decoded")
        and len(r["warnings"]) == 4
    )
    _, out = answer(review(deployment("ok")), broken_reviewer(Mode.ENFORCING, *personas))
    assert out["response"]["status"]["message"].startswith(
        "Deployment cannot be checked against ApplicationPersona 'a-broken'"
    )


def test_namespace_label_overrides_the_flag() -> None:
    _, out = answer(review(bad()), reviewer(Mode.ADVISORY, ns_mode=Mode.ENFORCING))
    assert out["response"]["allowed"] is False
    _, out = answer(review(bad()), reviewer(Mode.ENFORCING, ns_mode=Mode.ADVISORY))
    assert out["response"]["allowed"] is True


def test_outside_the_operators_namespaces_nothing_is_checked() -> None:
    """``--namespaces``: a Deployment of another namespace is admitted unchecked, even in enforcing mode with
    a matching persona; inside the scope the same Deployment is denied."""
    scoped = Reviewer(
        mode=Mode.ENFORCING, personas=lambda ns, app: [PERSONA] if app == "shop" else [],
        namespace_mode=lambda ns: None, scope=frozenset({"ns"}),
    )  # fmt: skip
    _, out = answer(review(bad(), namespace="other"), scoped)
    assert out["response"]["allowed"] is True and not out["response"].get("warnings")
    assert (
        out["response"]["status"]["message"]
        == "namespace is outside the operator's --namespaces; not checked"
    )
    _, out = answer(review(bad(), namespace="ns"), scoped)
    assert out["response"]["allowed"] is False


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (review(bad(), namespace="kube-system"), "kube-system is never checked"),
        (review(deployment("x", app="other")), "no matching ApplicationPersona found"),
        (
            review({"metadata": {"name": "x"}}),
            "no app.kubernetes.io/name (or app) label; skipping persona validation",
        ),
        (review(None, operation="DELETE"), "no opinion on delete/connect"),
        (review(None, operation="CONNECT"), "no opinion on delete/connect"),
    ],
)
def test_allowed_without_checks(body: bytes, message: str) -> None:
    status, out = answer(body, reviewer(Mode.ENFORCING))
    assert status == 200 and out["response"]["allowed"] is True
    assert out["response"]["status"]["message"] == message


def test_generate_name_names_the_deployment() -> None:
    obj = bad()
    del obj["metadata"]["name"]
    obj["metadata"]["generateName"] = "bad-"
    _, out = answer(review(obj))
    assert out["response"]["warnings"][0].startswith("[bad-/c0] ")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "not JSON"),
        (b"{nope", "not JSON"),
        (b"[]", "not an AdmissionReview"),
        (b'{"kind": "Pod", "apiVersion": "v1"}', "not an AdmissionReview"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v2"}',
            "unsupported AdmissionReview apiVersion",
        ),
        (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}', "has no request"),
        (b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {}}', "has no uid"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": 7}}',
            "not an AdmissionReview",
        ),
        (review(None), "request.object is missing"),
        (review(bad(), operation="PATCH"), "unknown operation"),
        (review({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}), "not an apps/v1 Deployment"),
        (review(bad(), kind={"group": "", "version": "v1", "kind": "Pod"}), "not apps/Deployment"),
        (review({"spec": {"replicas": "three"}}), "request.object is not a Deployment"),
        (review([1, 2]), "request.object is not a Deployment"),
    ],
)
def test_bad_input_is_a_400_saying_what_is_wrong(body: bytes, fragment: str) -> None:
    status, out = answer(body)
    assert status == 400
    r = out["response"]
    assert r["allowed"] is False and r["status"]["code"] == 400 and "reason" not in r["status"]
    assert fragment in r["status"]["message"]


def test_parse_mode() -> None:
    assert parse_mode("enforcing") is Mode.ENFORCING and parse_mode(" Advisory ") is Mode.ADVISORY
    with pytest.raises(ValueError, match="--webhook-mode must be advisory or enforcing, not 'enforce'"):
        parse_mode("enforce")


# --------------------------------------------------------------------------- fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
quantities = st.one_of(
    st.integers(-5, 10**12), st.sampled_from(["500m", "1", "2Gi", "", "lots", "1e3", "-1", "0.5"])
)
containers = st.fixed_dictionaries(
    {"name": st.text(max_size=6)},
    optional={
        "resources": st.fixed_dictionaries(
            {},
            optional={
                "limits": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantities),
                "requests": st.dictionaries(st.sampled_from(["cpu", "memory"]), quantities),
            },
        ),
        "securityContext": st.dictionaries(
            st.sampled_from(["readOnlyRootFilesystem", "allowPrivilegeEscalation", "runAsNonRoot"]),
            st.booleans() | st.none() | json_values,
        ),
        "livenessProbe": st.none() | json_values | st.just({"httpGet": {"path": "/healthz", "port": 1}}),
        "readinessProbe": st.none() | json_values,
    },
)
deployments = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.sampled_from(["apps/v1", "v1"]) | json_values,
        "kind": st.sampled_from(["Deployment", "Pod"]) | json_values,
        "metadata": st.fixed_dictionaries(
            {},
            optional={
                "name": st.text(max_size=6) | json_values,
                "labels": st.dictionaries(
                    st.sampled_from(["app", "app.kubernetes.io/name", "x"]), st.sampled_from(["shop", ""])
                )
                | json_values,
            },
        )
        | json_values,
        "spec": st.fixed_dictionaries(
            {},
            optional={
                "replicas": st.integers(-3, 20) | json_values,
                "template": st.fixed_dictionaries(
                    {},
                    optional={
                        "spec": st.fixed_dictionaries(
                            {},
                            optional={
                                "containers": st.lists(containers, max_size=3) | json_values,
                                "securityContext": st.dictionaries(
                                    st.just("runAsNonRoot"), st.booleans() | json_values
                                ),
                            },
                        )
                    },
                ),
            },
        )
        | json_values,
    },
)
requests = st.fixed_dictionaries(
    {},
    optional={
        "uid": st.text(max_size=6) | json_values,
        "kind": st.just({"group": "apps", "version": "v1", "kind": "Deployment"}) | json_values,
        "namespace": st.sampled_from(["ns", "kube-system", ""]) | json_values,
        "name": st.text(max_size=6) | json_values,
        "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "PATCH"]) | json_values,
        "object": deployments | json_values,
        "oldObject": deployments | json_values,
    },
)
reviews = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]) | json_values,
        "kind": st.just("AdmissionReview") | json_values,
        "request": requests | json_values,
    },
)


def _check(body: bytes) -> None:
    for r in (reviewer(Mode.ADVISORY), reviewer(Mode.ENFORCING)):
        reply = r.review(body)
        assert reply.status in (200, 400), (reply.status, reply.body)
        out = json.loads(reply.body)
        assert out["kind"] == "AdmissionReview"
        assert isinstance(out["response"]["allowed"], bool)
        if reply.status == 400:
            assert out["response"]["status"]["message"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reviews)
def test_fuzz_structured_reviews(review: dict[str, Any]) -> None:
    _check(json.dumps(review).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzz_arbitrary_bodies(body: bytes) -> None:
    _check(body)
