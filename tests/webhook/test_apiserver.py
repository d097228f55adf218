"""The webhook through a real kube-apiserver 1.20: verdicts, Warning headers, agreement with the controller,
a persona the cache cannot decode, certificate rotation under a stream of writes, three replicas starting
at once, and the configuration's repair trusting only the CAs the operator issued.

These tests change cluster-wide admission configuration, so they run on a control plane of their own.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certs.pki import make_ca
from controllers.applicationpersona import ApplicationPersonaReconciler, PersonaSettings
from dorgu.envtest import ControlPlane, ControlPlaneSettings, HarnessClient
from dorgu.runtime.client import ApiClient
from dorgu.runtime.manager import Manager
from tests.conftest import CRDS
from tests.runtime.kit import LoopThread
from tests.webhook import kit
from tests.webhook.kit import OPT_IN, Api, deployment, persona, poll
from webhook.configuration import ConfigurationKeeper, ConfigurationSettings

ENFORCING = {**OPT_IN, "dorgu.io/webhook-mode": "enforcing"}
ADVISORY = {**OPT_IN, "dorgu.io/webhook-mode": "advisory"}
VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"

BAD_WARNINGS = [
    "[bad/c0] Container CPU limit (1) exceeds persona limit (500m)",
    "Deployment replicas (1) below persona minimum (2)",
    "[bad/c0] Persona forbids privilege escalation but container allows it",
]
BAD_DENIAL = (
    "Deployment violates ApplicationPersona 'shop': Deployment replicas (1) below persona minimum (2); "
    "[bad/c0] Persona forbids privilege escalation but container allows it"
)


def bad(name: str = "bad", **kw: Any) -> dict[str, Any]:
    return deployment(name, replicas=1, cpu="1", escalation=True, **kw)


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    settings = ControlPlaneSettings(crds=CRDS, controllers=(), wait_for_default_service_account=False)
    with ControlPlane(settings) as plane:
        yield plane


@pytest.fixture(scope="module")
def kube(cp: ControlPlane) -> HarnessClient:
    return cp.client()


@pytest.fixture(scope="module")
def api(cp: ControlPlane) -> Api:
    return Api(cp)


@pytest.fixture
def replicas(cp: ControlPlane, kube: HarnessClient) -> Iterator[kit.Replicas]:
    with kit.replicas(cp) as r:
        yield r
    # The next test's replicas write their own configuration; a stale one must not point at a dead port.
    with contextlib.suppress(Exception):
        kube.delete(f"{VWC}/dorgu-deployment-validation")


def test_modes_opt_in_and_no_persona(kube: HarnessClient, api: Api, replicas: kit.Replicas) -> None:
    adv, enf = kit.namespace(kube, labels=OPT_IN), kit.namespace(kube, labels=ENFORCING)
    plain, nop = kit.namespace(kube), kit.namespace(kube, labels=OPT_IN)
    for ns in (adv, enf, plain):
        persona(kube, ns)
    kube.patch("/api/v1/namespaces/kube-system", {"metadata": {"labels": OPT_IN}})
    persona(kube, "kube-system")
    port = kit.free_port()
    (rep,) = replicas.start(kit.options(port, webhook_secret_name="modes"))
    assert rep.server is not None and rep.server.port == port

    # Advisory (the default): created, one warning per error/warning issue, in the rules' order.
    a = api.create(adv, bad())
    assert a.status == 201, a.body
    assert a.warnings == BAD_WARNINGS
    # An UPDATE is checked too (here: compliant → no warnings; then non-compliant again).
    assert api.replace(adv, deployment("bad")).warnings == []
    assert api.replace(adv, bad()).warnings == BAD_WARNINGS
    # The `app` label is the fallback, as the controller matches.
    assert api.create(adv, bad("bad2", label="app")).warnings == [
        w.replace("bad/", "bad2/") for w in BAD_WARNINGS
    ]

    # Enforcing (namespace label): denied naming the persona and the error issues; compliant passes.
    d = api.create(enf, bad())
    assert d.status == 403, d.body
    assert d.message == f'admission webhook "enforcing.deployments.dorgu.io" denied the request: {BAD_DENIAL}'
    assert d.warnings == BAD_WARNINGS
    ok = api.create(enf, deployment("good"))
    assert (ok.status, ok.warnings) == (201, [])

    # Not opted in, no persona, kube-system: not checked.
    for ns in (plain, nop, "kube-system"):
        r = api.create(ns, bad())
        assert (r.status, r.warnings) == (201, []), (ns, r.body)

    # The configuration the replica wrote.
    vwc = kube.get(f"{VWC}/dorgu-deployment-validation")
    entries = {w["name"]: w for w in vwc["webhooks"]}
    assert entries["advisory.deployments.dorgu.io"]["failurePolicy"] == "Ignore"
    assert entries["enforcing.deployments.dorgu.io"]["failurePolicy"] == "Fail"
    for w in entries.values():
        assert (
            w["timeoutSeconds"] == 5 and w["sideEffects"] == "None" and w["admissionReviewVersions"] == ["v1"]
        )
        assert w["rules"][0]["operations"] == ["CREATE", "UPDATE"]
        assert w["clientConfig"]["url"] == f"https://127.0.0.1:{port}/validate-deployment"
    # Idempotent: a second ensure writes nothing.
    assert rep.server is not None
    writes = rep.server.configuration.writes
    replicas.lt.run(rep.server.configuration.ensure(rep.server.material.ca_bundle_pem))  # type: ignore[union-attr]
    assert rep.server.configuration.writes == writes
    kube.patch("/api/v1/namespaces/kube-system", {"metadata": {"labels": {"dorgu.io/validate": None}}})


def test_a_persona_the_cache_cannot_decode_is_not_no_persona(
    kube: HarnessClient, api: Api, replicas: kit.Replicas
) -> None:
    """A persona whose status the API server accepted but the typed cache cannot decode (year 0 passes the
    CRD's date-time format, Python has no year 0): enforcing denies naming it and why, advisory admits with
    the warning; fixed, it checks again."""
    enf, adv = kit.namespace(kube, labels=ENFORCING), kit.namespace(kube, labels=ADVISORY)
    for ns in (enf, adv):
        persona(kube, ns)
    (rep,) = replicas.start(kit.options(kit.free_port(), webhook_secret_name="undecodable"))
    assert rep.server is not None
    dry_run = f"/apis/apps/v1/namespaces/{enf}/deployments?dryRun=All"
    assert api.request("POST", dry_run, deployment("good")).status == 201

    def set_last_updated(value: str) -> None:
        for ns in (enf, adv):
            path = f"/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas/shop"
            obj = kube.get(path)
            obj["status"] = {"lastUpdated": value}
            kube.put(f"{path}/status", obj)

    set_last_updated("0000-01-01T00:00:00Z")
    keys = {f"{enf}/shop", f"{adv}/shop"}
    poll(lambda: set(rep.server.personas.undecodable), lambda k: k >= keys, what="the informer to know them")
    assert not any(rep.server.personas.store.get(k) for k in keys)
    reason = "Invalid RFC3339 encoded datetime - at `$.status.lastUpdated`"
    warning = f"ApplicationPersona 'shop' cannot be decoded, so it was not checked: {reason}"
    denial = (
        f"Deployment cannot be checked against ApplicationPersona 'shop', which cannot be decoded: {reason}"
    )
    d = api.request("POST", dry_run, deployment("good"))
    assert d.status == 403, d.body
    assert d.message == f'admission webhook "enforcing.deployments.dorgu.io" denied the request: {denial}'
    assert d.warnings == [warning]
    a = api.create(adv, deployment("good"))
    assert (a.status, a.warnings) == (201, [warning]), a.body

    set_last_updated("2026-01-01T00:00:00Z")
    poll(lambda: set(rep.server.personas.undecodable), lambda k: not k & keys, what="the personas to decode")
    ok = api.request("POST", dry_run, deployment("good"))
    assert (ok.status, ok.warnings) == (201, []), ok.body


VARIANTS: dict[str, dict[str, Any]] = {
    "ok": {},
    "few": {"replicas": 1},
    "many": {"replicas": 9},
    "fat": {"cpu": "2", "memory": "2Gi", "containers": 2},
    "root": {"non_root": False},
    "writable": {"read_only": False, "containers": 3},
    "escalates": {"escalation": True},
    "unprobed": {"probes": False, "containers": 2},
    "everything": {
        "replicas": 1,
        "cpu": "3",
        "non_root": False,
        "read_only": False,
        "escalation": True,
        "probes": False,
    },
}


def test_verdicts_equal_controller(
    cp: ControlPlane, kube: HarnessClient, api: Api, replicas: kit.Replicas
) -> None:
    adv, enf = kit.namespace(kube, labels=OPT_IN), kit.namespace(kube, labels=ENFORCING)
    persona(kube, adv)
    persona(kube, enf)
    replicas.start(kit.options(kit.free_port(), webhook_secret_name="verdicts"))

    warnings: dict[str, list[str]] = {}
    denied: dict[str, bool] = {}
    for name, kw in VARIANTS.items():
        a = api.create(adv, deployment(name, **kw))
        assert a.status == 201, a.body
        warnings[name] = a.warnings
        e = api.request(
            "POST", f"/apis/apps/v1/namespaces/{enf}/deployments?dryRun=All", deployment(name, **kw)
        )
        assert e.status in (201, 403), e.body
        denied[name] = e.status == 403

    # The controller validates the same Deployments (stored in `adv`) against the same persona.
    lt = LoopThread()
    holder: dict[str, Any] = {}

    async def start() -> None:
        m = Manager(connection=cp.connection(user_agent="controller"))
        ApplicationPersonaReconciler(manager=m, settings=PersonaSettings())
        holder["stop"] = asyncio.Event()
        holder["task"] = asyncio.create_task(m.run(holder["stop"]))

    lt.run(start())
    try:

        def issues() -> list[dict[str, Any]]:
            status = (
                kube.get(f"/apis/dorgu.io/v1/namespaces/{adv}/applicationpersonas/shop").get("status") or {}
            )
            return list((status.get("validation") or {}).get("issues") or [])

        def covers(found: list[dict[str, Any]]) -> bool:
            return {i.get("deployment") for i in found} >= {n for n, w in warnings.items() if w}

        found = poll(issues, covers, timeout=30, what="the controller's validation of every Deployment")
    finally:

        async def stop() -> None:
            holder["stop"].set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(holder["task"], 20)

        lt.run(stop())
        lt.close()

    for name in VARIANTS:
        mine = [i for i in found if i.get("deployment") == name and i["severity"] in ("error", "warning")]
        expected = [i["message"] for i in mine]
        got = [w.split("] ", 1)[1] if w.startswith(f"[{name}/") else w for w in warnings[name]]
        assert got == expected, name
        assert denied[name] == any(i["severity"] == "error" for i in mine), name
    assert not denied["ok"] and denied["everything"]


def _check_stream(
    api: Api, enf: str, adv: str, done: Callable[[int], bool], *, what: str, timeout: float = 120.0
) -> int:
    """Writes until ``done(writes so far)``; every one must get its verdict and its warnings. Returns how
    many. ``timeout`` is a hang guard: the test fails if ``what`` has not happened by then."""
    n = 0
    give_up = time.monotonic() + timeout
    while not done(n):
        assert time.monotonic() < give_up, f"after {n} writes in {timeout:.0f} s: {what} did not happen"
        n += 1
        d = api.request("POST", f"/apis/apps/v1/namespaces/{enf}/deployments?dryRun=All", bad())
        assert (d.status, d.warnings) == (403, BAD_WARNINGS), (n, d.status, d.body)
        g = api.request("POST", f"/apis/apps/v1/namespaces/{enf}/deployments?dryRun=All", deployment("good"))
        assert (g.status, g.warnings) == (201, []), (n, g.body)
        a = api.create(adv, bad(f"bad-{n}"))
        assert (a.status, a.warnings) == (201, [w.replace("bad/", f"bad-{n}/") for w in BAD_WARNINGS]), (
            n,
            a.body,
        )
    return n


def test_rotation_under_writes(kube: HarnessClient, api: Api, replicas: kit.Replicas) -> None:
    enf, adv = kit.namespace(kube, labels=ENFORCING), kit.namespace(kube, labels=ADVISORY)
    persona(kube, enf)
    persona(kube, adv)
    # CA 12 s and serving 6 s, renewed at half their lifetime: a serving renewal at ~3 s, a new CA staged at
    # ~6 s and served from ~7 s (the old serving certificate is valid until 9 s), another serving renewal at
    # ~10 s, the old CA expires at 12 s. (Enforcing uses failurePolicy Fail, advisory Ignore.)
    short = {
        "webhook_secret_name": "rotating",
        "webhook_ca_validity_s": 12,
        "webhook_serving_validity_s": 6,
        "webhook_renew_fraction": 0.5,
        "webhook_ca_propagation_s": 1,
        "webhook_backdate_s": 0,
        "webhook_check_interval_s": 0.5,
    }
    (rep,) = replicas.start(kit.options(kit.free_port(), **short))
    server = rep.server
    assert server is not None and server.material is not None
    first_ca = server.material.cas[0]
    writes_when_expired: list[int] = []  # how many writes had been made when the old CA was seen expired

    # Writes go on through every step of the schedule, whenever the server's timers get to them: at least
    # 5 writes, 4 rotations, 3 loads of the TLS pair, a new signing CA, and writes after the old CA expired.
    def through_the_schedule(n: int) -> bool:
        if not writes_when_expired and dt.datetime.now(dt.UTC) > first_ca.not_valid_after_utc:
            writes_when_expired.append(n)
        return (
            n >= 5
            and server.certs.rotations >= 4
            and server.tls.loads >= 3
            and server.material is not None
            and server.material.cas[0] != first_ca
            and bool(writes_when_expired)
            and n > writes_when_expired[0]
        )

    writes = _check_stream(
        api, enf, adv, through_the_schedule, what="the rotations and the old CA's expiry under writes"
    )
    print(f"\n{writes} writes through the rotations ({writes_when_expired[0]} before the old CA expired)")
    # The configuration trusts the new CA.
    vwc = kube.get(f"{VWC}/dorgu-deployment-validation")
    bundle = x509.load_pem_x509_certificates(base64.b64decode(vwc["webhooks"][0]["clientConfig"]["caBundle"]))
    assert server.material.cas[0] in bundle


def test_three_replicas_start_at_once(
    cp: ControlPlane, kube: HarnessClient, api: Api, replicas: kit.Replicas
) -> None:
    certs_ns = kit.namespace(kube)
    enf, adv = kit.namespace(kube, labels=OPT_IN), kit.namespace(kube, labels=ADVISORY)
    persona(kube, enf)
    persona(kube, adv)
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    port = kit.free_port(hosts[0])
    balancer = kit.Balancer([(h, port) for h in hosts]).start()
    try:
        url = f"https://127.0.0.1:{balancer.port}/validate-deployment"
        common = {
            "webhook_mode": "enforcing",  # the flag: opted-in namespaces without a mode label are enforced
            "webhook_namespace": certs_ns,
            "webhook_url": url,
            "webhook_ip_addresses": ["127.0.0.1", *hosts],
        }
        reps = replicas.start(*[kit.options(port, webhook_host=h, **common) for h in hosts])

        secrets = kube.get(f"/api/v1/namespaces/{certs_ns}/secrets")["items"]
        assert [s["metadata"]["name"] for s in secrets] == ["dorgu-webhook-certs"]
        assert sum(r.server.certs.creates for r in reps if r.server) == 1
        served = {kit.peer_cert(h, port) for h in hosts}
        assert len(served) == 1
        stored = x509.load_pem_x509_certificate(base64.b64decode(secrets[0]["data"]["tls.crt"]))
        assert served == {stored.public_bytes(serialization.Encoding.DER)}

        # The API server's calls reach all three (it opens several connections under concurrent writes).
        def burst() -> list[int]:
            with concurrent.futures.ThreadPoolExecutor(12) as pool:
                futures = [
                    pool.submit(
                        Api(cp).request,
                        "POST",
                        f"/apis/apps/v1/namespaces/{enf}/deployments?dryRun=All",
                        bad(),
                    )
                    for _ in range(24)
                ]
                for f in futures:
                    r = f.result()
                    assert (r.status, r.warnings) == (403, BAD_WARNINGS), r.body
            return [r.server.reviews if r.server else 0 for r in reps]

        poll(burst, lambda counts: all(c > 0 for c in counts), timeout=30, what="reviews on every replica")
        assert all(c > 0 for c in balancer.connections)
        denied = api.create(enf, bad())
        assert denied.message.startswith(
            'admission webhook "enforcing.deployments.dorgu.io" denied the request'
        )
        # The namespace label overrides the flag: advisory here.
        a = api.create(adv, bad())
        assert (a.status, a.warnings) == (201, BAD_WARNINGS)
    finally:
        balancer.stop()


def _der(pem: bytes) -> list[str]:
    """The certificates of a PEM bundle, in order, as short SHA-256 fingerprints (readable in a failure)."""
    return [c.fingerprint(hashes.SHA256()).hex()[:16] for c in x509.load_pem_x509_certificates(pem)]


def _bundle(vwc: dict[str, Any]) -> list[list[str]]:
    """Per entry, the certificates of its caBundle (see :func:`_der`)."""
    return [_der(base64.b64decode(w["clientConfig"]["caBundle"])) for w in vwc["webhooks"]]


def _with_ca(vwc: dict[str, Any], pem: bytes) -> dict[str, Any]:
    """``vwc`` with ``pem`` appended to every entry's caBundle."""
    for w in vwc["webhooks"]:
        bundle = base64.b64decode(w["clientConfig"]["caBundle"]) + pem
        w["clientConfig"]["caBundle"] = base64.b64encode(bundle).decode()
    return vwc


def test_repair_drops_a_ca_the_operator_did_not_issue(kube: HarnessClient, replicas: kit.Replicas) -> None:
    """A CA injected into the configuration's caBundle (named like ours, valid for years) is gone after the
    replica's next repair, while every CA of the operator's Secret stays."""
    (rep,) = replicas.start(kit.options(kit.free_port(), webhook_secret_name="foreign"))
    assert rep.server is not None and rep.server.material is not None
    ours = _der(rep.server.material.ca_bundle_pem)
    secret = kube.get("/api/v1/namespaces/default/secrets/foreign")
    assert _der(base64.b64decode(secret["data"]["ca.crt"])) == ours
    path = f"{VWC}/dorgu-deployment-validation"
    assert _bundle(kube.get(path)) == [ours, ours]

    foreign = make_ca(common_name="dorgu-webhook-ca", validity=dt.timedelta(days=3650))
    kube.put(path, _with_ca(kube.get(path), foreign.cert_pem))
    assert _bundle(kube.get(path)) == [ours + _der(foreign.cert_pem)] * 2
    # The replica re-checks every 2 s (and on every change of its Secret).
    poll(lambda: _bundle(kube.get(path)), lambda b: b == [ours, ours], timeout=30, what="the repair")


def test_keeper_keeps_a_ca_only_while_the_secret_holds_it(cp: ControlPlane, kube: HarnessClient) -> None:
    """A replica whose Secret cache lags behind a CA renewal keeps the new CA another replica injected (the
    Secret, read afresh, holds it), and still drops a CA the Secret never held."""
    old, new = (make_ca(common_name="dorgu-webhook-ca", validity=dt.timedelta(days=1)) for _ in range(2))
    foreign = make_ca(common_name="dorgu-webhook-ca", validity=dt.timedelta(days=1))
    secret_bundle = new.cert_pem + old.cert_pem  # after a renewal: the new signing CA first, then the old
    settings = ConfigurationSettings(name="keeper-test", url="https://127.0.0.1:9/validate-deployment")
    path = f"{VWC}/keeper-test"

    async def issued() -> bytes | None:
        return secret_bundle

    async def go() -> None:
        async with ApiClient(cp.connection(user_agent="keeper")) as client:
            up_to_date = ConfigurationKeeper(client, settings, issued=issued)
            lagging = ConfigurationKeeper(client, settings, issued=issued)
            await up_to_date.ensure(secret_bundle)
            assert _bundle(kube.get(path)) == [_der(secret_bundle)] * 2
            # The lagging replica's cache still has the old bundle: it keeps the new CA, writing nothing.
            await lagging.ensure(old.cert_pem)
            assert (lagging.writes, lagging.fresh_reads) == (0, 1)
            assert _bundle(kube.get(path)) == [_der(secret_bundle)] * 2
            # An injected CA goes, whichever replica repairs; the Secret's CAs stay, in the Secret's order.
            for keeper, bundle in ((lagging, old.cert_pem), (up_to_date, secret_bundle)):
                kube.put(path, _with_ca(kube.get(path), foreign.cert_pem))
                await keeper.ensure(bundle)
                assert _bundle(kube.get(path)) == [_der(secret_bundle)] * 2
            # Nothing beyond its own bundle: no fresh read.
            reads = up_to_date.fresh_reads
            await up_to_date.ensure(secret_bundle)
            assert up_to_date.fresh_reads == reads

    try:
        asyncio.run(go())
    finally:
        with contextlib.suppress(Exception):
            kube.delete(path)
