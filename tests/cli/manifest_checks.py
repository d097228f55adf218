"""Independent checks of what `dorgu generate` writes: the objects must work together on a cluster.

Each check returns a list of problems (empty: passed), so a test can print all of them at once. The
checks read the objects as the API server answered a dry-run create (defaults applied, e.g. a Service
port's ``targetPort``), except :func:`namespace_problems`, which reads the files as written.

What "work together" means here:

* a Deployment's selector selects its own pod template;
* a Service selects the pods of a Deployment (or StatefulSet) of its namespace, and each ``targetPort``
  (number or name) is a ``containerPort`` of a container of such a workload, with the same protocol;
* a StatefulSet's ``serviceName`` is a generated Service of its namespace;
* an Ingress backend names a Service of its namespace and one of that Service's ports;
* an HPA scales a Deployment of its namespace, every container of which requests the resources the HPA
  measures utilization of (utilization is usage divided by the request), within the persona's bounds;
* a persona finds its Deployment the way the ApplicationPersona controller does
  (:func:`dorgu.domain.rules.matching_deployments` over the Deployments of the persona's namespace), and its
  health port and networking ports are container ports of that Deployment;
* the persona rules (:func:`dorgu.domain.rules.evaluate`, which the controller — through
  :func:`dorgu.domain.health.assess` — and the admission webhook both call) find nothing in the Deployment,
  and the phase the controller writes for the persona once the Deployment rolled out is ``Active``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import yaml

from dorgu.domain.health import PHASE_ACTIVE, assess
from dorgu.domain.kube import Deployment, DeploymentCondition, DeploymentStatus
from dorgu.domain.rules import evaluate, matching_deployments
from dorgu.domain.types import ApplicationPersona
from dorgu.envtest import HarnessClient

JSON = dict[str, Any]
_T = TypeVar("_T")

ARGO_KIND = ("argoproj.io/v1alpha1", "Application")


def load_manifests(files: Mapping[str, bytes], directory: str = "k8s") -> list[JSON]:
    """The Kubernetes objects among generated files (``<directory>/**/*.yaml``), in order of path."""
    objs: list[JSON] = []
    for rel in sorted(files):
        if rel.startswith(f"{directory}/") and rel.endswith((".yaml", ".yml")):
            objs.extend(o for o in yaml.safe_load_all(files[rel]) if o)
    return objs


def _kind(obj: JSON) -> tuple[str, str]:
    return obj.get("apiVersion", ""), obj.get("kind", "")


def _ns(obj: JSON) -> str:
    return obj.get("metadata", {}).get("namespace") or ""


def _name(obj: JSON) -> str:
    return obj.get("metadata", {}).get("name") or ""


def _ref(obj: JSON) -> str:
    return f"{obj.get('kind')} {_ns(obj)}/{_name(obj)}"


# --------------------------------------------------------------------------- namespaces (as written)


def namespace_problems(objs: Sequence[JSON], namespace: str) -> list[str]:
    """Every object but the Argo CD Application lives in ``namespace`` (what `generate --namespace` was
    given); the Application deploys into that namespace."""
    problems = []
    for obj in objs:
        if _kind(obj) == ARGO_KIND:
            dest = obj.get("spec", {}).get("destination", {}).get("namespace")
            if dest != namespace:
                problems.append(f"{_ref(obj)}: destination.namespace {dest!r}, expected {namespace!r}")
        elif _ns(obj) != namespace:
            problems.append(f"{_ref(obj)}: namespace {_ns(obj)!r}, expected {namespace!r}")
    return problems


# --------------------------------------------------------------------------- server-side dry-run


def dry_run(kube: HarnessClient, objs: Sequence[JSON], namespaces: Mapping[str, str]) -> list[JSON]:
    """POST each object with ``dryRun=All`` (nothing is stored) and return the server's answers.

    ``namespaces`` maps a namespace of the files to an existing one on the test plane; the objects are
    moved together, so relations between namespaces are kept. A rejected object raises ``ApiError``.
    """
    answers = []
    for obj in objs:
        body = copy.deepcopy(obj)
        meta = body.setdefault("metadata", {})
        if meta.get("namespace") in namespaces:
            meta["namespace"] = namespaces[meta["namespace"]]
        answers.append(
            kube.post(
                kube.path_of(body, with_name=False),
                body,
                params={"dryRun": "All", "fieldManager": "dorgu-test"},
            )
        )
    return answers


# --------------------------------------------------------------------------- coherence


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A ``metav1.LabelSelector`` against labels; an empty or missing selector selects nothing here
    (a generated workload must say what it selects)."""
    if not selector:
        return False
    match_labels: Mapping[str, str] = selector.get("matchLabels") or {}
    exprs: list[JSON] = selector.get("matchExpressions") or []
    if not match_labels and not exprs:
        return False
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for e in exprs:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op, False)
        if not ok:
            return False
    return True


def _template_labels(deployment: JSON) -> dict[str, str]:
    return deployment.get("spec", {}).get("template", {}).get("metadata", {}).get("labels") or {}


def _containers(deployment: JSON) -> list[JSON]:
    return deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []


def _container_ports(deployment: JSON) -> list[JSON]:
    return [p for c in _containers(deployment) for p in c.get("ports") or []]


def _decode(obj: JSON, type_: type[_T]) -> _T:
    """Decode an object from its JSON, as the operator's informers and the webhook do."""
    return msgspec.json.decode(msgspec.json.encode(obj), type=type_)


def _of_kind(objs: Iterable[JSON], kind: str) -> list[JSON]:
    return [o for o in objs if o.get("kind") == kind]


def coherence_problems(objs: Sequence[JSON]) -> list[str]:
    """The relations between the objects (see the module docstring); one line per broken relation."""
    problems: list[str] = []
    deployments = _of_kind(objs, "Deployment")
    workloads = deployments + _of_kind(objs, "StatefulSet")
    services = _of_kind(objs, "Service")

    for d in workloads:
        if not selector_matches(d["spec"].get("selector"), _template_labels(d)):
            problems.append(f"{_ref(d)}: spec.selector does not select its own pod template labels")
    for st in _of_kind(objs, "StatefulSet"):
        if not any(_ns(s) == _ns(st) and _name(s) == st["spec"].get("serviceName") for s in services):
            problems.append(
                f"{_ref(st)}: serviceName {st['spec'].get('serviceName')!r} is no generated Service"
            )

    for s in services:
        selector: Mapping[str, str] = s["spec"].get("selector") or {}
        selected = [
            d
            for d in workloads
            if _ns(d) == _ns(s)
            and selector
            and all(_template_labels(d).get(k) == v for k, v in selector.items())
        ]
        if not selected:
            problems.append(f"{_ref(s)}: selector {dict(selector)} selects no Deployment's pods")
            continue
        ports = [p for d in selected for p in _container_ports(d)]
        for sp in s["spec"].get("ports") or []:
            target = sp.get("targetPort", sp.get("port"))
            protocol = sp.get("protocol", "TCP")
            key = "name" if isinstance(target, str) else "containerPort"
            if not any(p.get(key) == target and p.get("protocol", "TCP") == protocol for p in ports):
                problems.append(
                    f"{_ref(s)}: port {sp.get('name') or sp.get('port')} targetPort {target!r}/{protocol} "
                    f"is not a containerPort of {[_name(d) for d in selected]}"
                )

    for ing in _of_kind(objs, "Ingress"):
        spec = ing.get("spec", {})
        backends = [spec["defaultBackend"]] if spec.get("defaultBackend") else []
        for rule in spec.get("rules") or []:
            backends += [p["backend"] for p in (rule.get("http") or {}).get("paths") or []]
        for b in backends:
            svc_ref = b.get("service")
            if svc_ref is None:
                problems.append(f"{_ref(ing)}: backend {b} is not a Service")
                continue
            svc = next((s for s in services if _ns(s) == _ns(ing) and _name(s) == svc_ref["name"]), None)
            if svc is None:
                problems.append(f"{_ref(ing)}: backend Service {svc_ref['name']!r} is not generated")
                continue
            port = svc_ref.get("port") or {}
            svc_ports = svc["spec"].get("ports") or []
            if "number" in port:
                ok = any(p.get("port") == port["number"] for p in svc_ports)
            else:
                ok = any(p.get("name") == port.get("name") for p in svc_ports)
            if not ok:
                problems.append(f"{_ref(ing)}: backend port {port} is not a port of {_ref(svc)}")

    for hpa in _of_kind(objs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"].get("scaleTargetRef") or {}
        target = next(
            (
                d
                for d in deployments
                if _ns(d) == _ns(hpa) and _name(d) == ref.get("name") and ref.get("kind") == "Deployment"
            ),
            None,
        )
        if target is None or ref.get("apiVersion") != "apps/v1":
            problems.append(f"{_ref(hpa)}: scaleTargetRef {ref} names no generated apps/v1 Deployment")
            continue
        for m in hpa["spec"].get("metrics") or []:
            res = m.get("resource") or {}
            if m.get("type") != "Resource" or res.get("target", {}).get("type") != "Utilization":
                continue
            for c in _containers(target):
                if res["name"] not in (c.get("resources") or {}).get("requests", {}):
                    problems.append(
                        f"{_ref(hpa)}: {res['name']} utilization needs a {res['name']} request on "
                        f"container {c['name']!r} of {_ref(target)}"
                    )

    problems += _persona_problems(objs, deployments)
    return problems


def _persona_problems(objs: Sequence[JSON], deployments: list[JSON]) -> list[str]:
    problems: list[str] = []
    typed = [_decode(d, Deployment) for d in deployments]
    for raw in _of_kind(objs, "ApplicationPersona"):
        persona = _decode(raw, ApplicationPersona)
        spec = persona.spec
        # The controller's relation: Deployments of the persona's namespace, matched on spec.name.
        same_ns = [d for d in typed if d.metadata.namespace == persona.metadata.namespace]
        mine = {d.metadata.name for d in matching_deployments(spec.name, same_ns)}
        if not mine:
            problems.append(
                f"{_ref(raw)}: no Deployment of its namespace is labelled app.kubernetes.io/name={spec.name} "
                "(or app=…): the controller would leave it Pending"
            )
            continue
        matched = [d for d in deployments if _ns(d) == _ns(raw) and _name(d) in mine]
        port_numbers = {p.get("containerPort") for d in matched for p in _container_ports(d)}
        if spec.health and spec.health.port is not None and spec.health.port not in port_numbers:
            problems.append(f"{_ref(raw)}: health.port {spec.health.port} is not a containerPort")
        for p in (spec.networking.ports if spec.networking else None) or []:
            if p.port not in port_numbers:
                problems.append(f"{_ref(raw)}: networking port {p.port} is not a containerPort")
        scaling = spec.scaling
        for hpa in _of_kind(objs, "HorizontalPodAutoscaler"):
            ref = hpa["spec"].get("scaleTargetRef") or {}
            if _ns(hpa) != _ns(raw) or ref.get("name") not in mine or scaling is None:
                continue
            bounds = (hpa["spec"].get("minReplicas"), hpa["spec"].get("maxReplicas"))
            if bounds != (scaling.min_replicas, scaling.max_replicas):
                problems.append(
                    f"{_ref(hpa)}: replicas {bounds[0]}..{bounds[1]}, persona says "
                    f"{scaling.min_replicas}..{scaling.max_replicas}"
                )
    return problems


# --------------------------------------------------------------------------- persona rules


def rolled_out(d: Deployment) -> Deployment:
    """``d`` with the status of a finished rollout (every replica ready, ``Available``).

    A stated status, not an observed one: the test plane runs no kubelet, so no Deployment ever becomes
    available on it. It makes the health part of the phase ``Healthy``, leaving the phase to the rules.
    """
    n = 1 if d.spec.replicas is None else d.spec.replicas
    status = DeploymentStatus(
        replicas=n,
        updated_replicas=n,
        ready_replicas=n,
        available_replicas=n,
        conditions=[
            DeploymentCondition(type="Available", status="True"),
            DeploymentCondition(type="Progressing", status="True"),
        ],
    )
    return msgspec.structs.replace(d, status=status)


def rule_problems(objs: Sequence[JSON]) -> list[str]:
    """The persona rules on each generated persona and its generated Deployment(s).

    Pass means: the phase the controller writes once the Deployment rolled out is ``Active`` (no
    ``error`` issue, so ``Validated`` is ``True``), and — stricter — the rules find nothing at all, not
    even a warning or info: the Deployment and its persona come from one analysis, so any finding means
    the two disagree (e.g. a container limit above the persona's, a probe path the persona does not name).
    """
    problems: list[str] = []
    deployments = [_decode(d, Deployment) for d in _of_kind(objs, "Deployment")]
    for raw in _of_kind(objs, "ApplicationPersona"):
        persona = _decode(raw, ApplicationPersona)
        same_ns = [d for d in deployments if d.metadata.namespace == persona.metadata.namespace]
        matched = [rolled_out(d) for d in matching_deployments(persona.spec.name, same_ns)]
        if not matched:
            problems.append(f"{_ref(raw)}: no matching Deployment to validate")
            continue
        a = assess(persona.spec, matched, now=datetime(2026, 1, 1, tzinfo=UTC))
        if a.phase != PHASE_ACTIVE:
            problems.append(f"{_ref(raw)}: phase would be {a.phase}, not {PHASE_ACTIVE}")
        for f in evaluate(persona.spec, matched):
            problems.append(
                f"{_ref(raw)}: {f.rule} {f.severity} on {f.deployment}: {f.issue.message} ({f.issue.field})"
            )
    return problems
