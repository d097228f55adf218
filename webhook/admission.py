"""The admission review: an AdmissionReview body in, an HTTP status and an AdmissionReview body out.

Pure and synchronous (no I/O; the personas and namespace modes come from lookups over informer caches),
so the same function is served over HTTPS, fuzzed and benchmarked. It checks a Deployment with the
**shared persona rules** (:mod:`dorgu.domain.rules`) — every one of them, not a reduced webhook set — so
the webhook and the controller agree on every Deployment.

Rules this module keeps:

* **Bad input is the client's fault, never a crash:** a body that is not JSON, is not an AdmissionReview,
  has no ``request.uid``, has an unknown operation, or carries an object that is not an apps Deployment is
  answered with HTTP 400 and an AdmissionReview whose ``response.status`` (code 400, no reason) says what
  is wrong. An unexpected exception (a bug) is HTTP 500, so the API server applies the configured
  ``failurePolicy`` (``Ignore`` in advisory, ``Fail`` in enforcing mode) — never a denial that looks
  deliberate (``allowed: false`` with code 500).
* **DELETE and CONNECT are allowed** (``no opinion on delete/connect``) without looking at the object.
* **kube-system is never checked** (1.20 has no ``kubernetes.io/metadata.name`` label to exclude it in the
  configuration's namespaceSelector).
* **Outside the operator's namespaces nothing is checked**: with ``--namespaces`` (``scope``), a
  Deployment of another namespace is allowed (``namespace is outside the operator's --namespaces; not
  checked``) even when that namespace opted in — its personas are not cached, so nothing could match.
* **Warnings:** every ``error`` and ``warning`` issue of every matching persona, in the rules' order, as
  the rule's ``message`` prefixed ``[<deployment>/<container>]`` when a container is concerned; ``info``
  issues are not warnings.
* **Enforcing mode denies** when a matching persona reports an ``error``: ``Deployment violates
  ApplicationPersona '<metadata.name>': <its error warnings joined with "; ">`` (code 403, reason
  ``Forbidden``), with the warnings attached. Several personas with the same ``spec.name`` in a namespace
  are all checked (in order of name), as the controller checks a Deployment against each; the first one
  with errors names the denial.
* The Deployment's persona is found as the controller finds it
  (:func:`dorgu.domain.rules.deployment_app_name`: label ``app.kubernetes.io/name``, falling back to ``app``).
* **A persona that exists but cannot be decoded never turns into "no persona".** The persona cache skips an
  object that does not decode into :class:`~dorgu.domain.types.ApplicationPersona` (a value the CRD's
  schema accepts but the type does not, a newer CRD version); the informer still knows it
  (:attr:`dorgu.runtime.informer.Informer.undecodable`), and so does the review (:data:`UndecodableLookup`).
  Such a persona matches the Deployments of its ``spec.name`` — of every Deployment in its namespace when
  even ``spec.name`` cannot be read. It cannot be checked, so **enforcing mode denies** (code 403, reason
  ``Forbidden``): ``Deployment cannot be checked against ApplicationPersona '<metadata.name>', which cannot
  be decoded: <the decoder's message>`` — unless a decodable persona of the same app denies with its own
  errors, which name what to fix in the Deployment; **advisory mode allows**, with the warning
  ``ApplicationPersona '<metadata.name>' cannot be decoded, so it was not checked: <the decoder's
  message>`` ahead of the other personas' warnings (enforcing attaches it too).
* **A persona not in the cache is no persona**, in both modes: the review answers from caches, with no API
  call, so it cannot tell "no persona" from "not delivered yet". Readiness waits for the initial sync, so
  what remains is the watch's delay for a persona created or changed after it (an old spec is applied
  meanwhile, as for any update); create the persona before its Deployments. The controller validates every
  Deployment again and reports in the persona's status.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from dorgu.domain.kube import Deployment
from dorgu.domain.rules import SEVERITY_ERROR, SEVERITY_WARNING, deployment_app_name, evaluate
from dorgu.domain.types import ApplicationPersona
from dorgu.runtime.meta import ItemDecodeError

__all__ = [
    "ADMISSION_API_VERSIONS",
    "Mode",
    "ModeLookup",
    "PersonaLookup",
    "Reply",
    "Reviewer",
    "UndecodableLookup",
    "UndecodablePersona",
    "parse_mode",
    "undecodable_lookup",
]

log = logging.getLogger("dorgu.webhook")

ADMISSION_API_VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
"""AdmissionReview versions answered (the configuration asks for v1; the answer echoes the request's)."""
KUBE_SYSTEM = "kube-system"

MSG_NO_OPINION = "no opinion on delete/connect"
MSG_KUBE_SYSTEM = "kube-system is never checked"
MSG_OUT_OF_SCOPE = "namespace is outside the operator's --namespaces; not checked"
MSG_NO_APP = "no app.kubernetes.io/name (or app) label; skipping persona validation"
MSG_NO_PERSONA = "no matching ApplicationPersona found"
MSG_PASSED = "all persona checks passed"
MSG_ADVISORY = "advisory mode"
MSG_PASSED_WITH_WARNINGS = "passed with warnings"


class Mode(enum.StrEnum):
    """What the webhook does with a Deployment that violates its persona."""

    ADVISORY = "advisory"
    """Allow, with the issues as warnings."""
    ENFORCING = "enforcing"
    """Deny when there is an error issue."""


def parse_mode(value: str, *, what: str = "--webhook-mode") -> Mode:
    """``advisory`` or ``enforcing`` (any case, surrounding blanks ignored); anything else is an error, never
    a silent advisory."""
    try:
        return Mode(value.strip().lower())
    except ValueError:
        raise ValueError(f"{what} must be advisory or enforcing, not {value!r}") from None


PersonaLookup = Callable[[str, str], list[ApplicationPersona]]
"""``(namespace, app name) -> personas`` with that ``spec.name`` in that namespace, in order of name."""
ModeLookup = Callable[[str], Mode | None]
"""``namespace -> mode`` set by the namespace's label, or ``None`` for the default mode."""


@dataclass(frozen=True, slots=True)
class UndecodablePersona:
    """An ApplicationPersona the server holds that the cache could not decode."""

    name: str
    """Its ``metadata.name``."""
    reason: str
    """Why it does not decode (the decoder's message, naming the field)."""


UndecodableLookup = Callable[[str, str], list[UndecodablePersona]]
"""``(namespace, app name) -> personas`` in that namespace that exist but cannot be decoded and may be that
app's (see :func:`undecodable_lookup`), in order of name."""


class _SpecName(msgspec.Struct):
    name: Any = None


class _PersonaName(msgspec.Struct):
    spec: _SpecName | None = None


_persona_name_decoder = msgspec.json.Decoder(_PersonaName)


def _spec_name(raw: bytes) -> str | None:
    """``spec.name`` of a persona that does not decode as a whole, or ``None`` when unreadable."""
    try:
        spec = _persona_name_decoder.decode(raw).spec
    except msgspec.DecodeError:
        return None
    return spec.name if spec is not None and isinstance(spec.name, str) else None


def undecodable_lookup(failures: Callable[[], Iterable[ItemDecodeError]]) -> UndecodableLookup:
    """An :data:`UndecodableLookup` over ``failures()`` — the persona informer's undecodable objects. A
    failure is an app's persona when its ``spec.name`` is the app, or when ``spec.name`` cannot be read (it
    could be anyone's, so it counts for every app in its namespace)."""

    def lookup(namespace: str, app: str) -> list[UndecodablePersona]:
        found = [
            UndecodablePersona(name=f.name or f"#{f.index}", reason=f.message)
            for f in failures()
            if f.namespace == namespace and (_spec_name(f.raw) or app) == app
        ]
        return sorted(found, key=lambda p: p.name)

    return lookup


def _no_undecodable(namespace: str, app: str) -> list[UndecodablePersona]:
    return []


# --------------------------------------------------------------------------- wire types


class _GroupVersionKind(msgspec.Struct, omit_defaults=True):
    group: str = ""
    version: str = ""
    kind: str = ""


class _Request(msgspec.Struct, rename="camel", omit_defaults=True):
    uid: str | None = None
    kind: _GroupVersionKind | None = None
    name: str | None = None
    namespace: str | None = None
    operation: str | None = None
    object: msgspec.Raw = msgspec.Raw()


class _ReviewIn(msgspec.Struct, rename="camel", omit_defaults=True):
    api_version: str | None = None
    kind: str | None = None
    request: _Request | None = None


class _DeploymentObject(Deployment, kw_only=True, frozen=True):
    """The Deployment partial plus its type fields, to reject an object of another kind."""

    api_version: str | None = None
    kind: str | None = None


class _Status(msgspec.Struct, omit_defaults=True):
    code: int
    reason: str | None = None
    message: str | None = None


class _Response(msgspec.Struct, omit_defaults=True):
    uid: str
    allowed: bool
    status: _Status
    warnings: list[str] | None = None


class _ReviewOut(msgspec.Struct, rename="camel", omit_defaults=False):
    api_version: str
    kind: str
    response: _Response


_review_decoder = msgspec.json.Decoder(_ReviewIn)
_deployment_decoder = msgspec.json.Decoder(_DeploymentObject)
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer: the HTTP status and the JSON body, plus what was decided (for tests and metrics)."""

    status: int
    """HTTP status: 200, 400 (bad input) or 500 (a bug)."""
    body: bytes
    """The AdmissionReview (JSON)."""
    allowed: bool
    """``response.allowed``."""
    message: str
    """``response.status.message``."""
    warnings: tuple[str, ...] = ()
    """``response.warnings``."""
    mode: str | None = None
    """The mode that decided (``advisory``/``enforcing``); ``None`` when no persona was checked."""


class _BadRequest(Exception):
    """Input the webhook cannot answer; the message says what is wrong."""


class Reviewer:
    """Answers AdmissionReviews for apps/v1 Deployments from the given lookups (``undecodable``: the
    personas that exist but cannot be decoded; without it, none are known)."""

    def __init__(
        self,
        *,
        mode: Mode,
        personas: PersonaLookup,
        namespace_mode: ModeLookup,
        undecodable: UndecodableLookup = _no_undecodable,
        scope: frozenset[str] | None = None,
    ) -> None:
        """``scope``: the namespaces checked (None: every opted-in one)."""
        self.mode = mode
        self.personas = personas
        self.namespace_mode = namespace_mode
        self.undecodable = undecodable
        self.scope = scope

    def review(self, body: bytes) -> Reply:
        """Never raises: bad input is a 400, an unexpected exception a 500 (logged)."""
        api_version, uid = ADMISSION_API_VERSIONS[0], ""
        try:
            review = self._decode(body)
            api_version = review.api_version or api_version
            assert review.request is not None and review.request.uid  # checked by _decode
            uid = review.request.uid
            return self._review(api_version, uid, review.request)
        except _BadRequest as e:
            return _reply(api_version, uid, status=400, allowed=False, code=400, message=str(e))
        except Exception as e:  # a bug: let the API server apply the failurePolicy
            log.exception("webhook: review failed")
            message = f"internal error: {type(e).__name__}"
            return _reply(api_version, uid, status=500, allowed=False, code=500, message=message)

    # -- decoding -------------------------------------------------------------------------------------------

    @staticmethod
    def _decode(body: bytes) -> _ReviewIn:
        try:
            review = _review_decoder.decode(body)
        except msgspec.ValidationError as e:
            raise _BadRequest(f"request body is not an AdmissionReview: {e}") from None
        except msgspec.DecodeError as e:
            raise _BadRequest(f"request body is not JSON: {e}") from None
        if review.kind != "AdmissionReview":
            raise _BadRequest(f"request body is not an AdmissionReview (kind {review.kind!r})")
        if review.api_version not in ADMISSION_API_VERSIONS:
            raise _BadRequest(
                f"unsupported AdmissionReview apiVersion {review.api_version!r}; "
                f"expected one of {', '.join(ADMISSION_API_VERSIONS)}"
            )
        if review.request is None:
            raise _BadRequest("AdmissionReview has no request")
        if not review.request.uid:
            raise _BadRequest("AdmissionReview request has no uid")
        return review

    @staticmethod
    def _deployment(request: _Request) -> Deployment:
        gvk = request.kind
        if gvk is not None and (gvk.group, gvk.kind) != ("apps", "Deployment"):
            raise _BadRequest(f"request.kind is {gvk.group or 'core'}/{gvk.kind}, not apps/Deployment")
        raw = bytes(request.object)
        if not raw or raw == b"null":
            raise _BadRequest(f"request.object is missing for a {request.operation} request")
        try:
            obj = _deployment_decoder.decode(raw)
        except msgspec.DecodeError as e:  # ValidationError included
            raise _BadRequest(f"request.object is not a Deployment: {e}") from None
        if obj.kind not in (None, "Deployment") or obj.api_version not in (None, "apps/v1"):
            raise _BadRequest(f"request.object is a {obj.api_version}/{obj.kind}, not an apps/v1 Deployment")
        return obj

    # -- the decision ---------------------------------------------------------------------------------------

    def _review(self, api_version: str, uid: str, request: _Request) -> Reply:
        operation = request.operation or ""
        if operation in ("DELETE", "CONNECT"):
            return _allow(api_version, uid, MSG_NO_OPINION)
        if operation not in ("CREATE", "UPDATE"):
            raise _BadRequest(f"unknown operation {operation!r}; expected CREATE, UPDATE, DELETE or CONNECT")
        deployment = self._deployment(request)
        meta = deployment.metadata
        namespace = request.namespace or meta.namespace or ""
        if namespace == KUBE_SYSTEM:
            return _allow(api_version, uid, MSG_KUBE_SYSTEM)
        if self.scope is not None and namespace not in self.scope:
            return _allow(api_version, uid, MSG_OUT_OF_SCOPE)
        app = deployment_app_name(deployment)
        if app is None:
            return _allow(api_version, uid, MSG_NO_APP)
        personas = self.personas(namespace, app)
        broken = self.undecodable(namespace, app)
        if not personas and not broken:
            return _allow(api_version, uid, MSG_NO_PERSONA)
        if not meta.name:  # generateName on CREATE: name the Deployment as the request does
            name = request.name or meta.generate_name or ""
            deployment = msgspec.structs.replace(
                deployment, metadata=msgspec.structs.replace(meta, name=name)
            )
        name = deployment.metadata.name or ""

        # A persona that cannot be decoded cannot be checked: a warning first, and enforcing denies.
        warnings = [
            f"ApplicationPersona '{b.name}' cannot be decoded, so it was not checked: {b.reason}"
            for b in broken
        ]
        denial: str | None = None
        for persona in personas:
            errors: list[str] = []
            for finding in evaluate(persona.spec, [deployment]):
                severity = finding.severity
                if severity != SEVERITY_ERROR and severity != SEVERITY_WARNING:
                    continue  # info issues are not warnings
                text = finding.issue.message
                if finding.container is not None:
                    text = f"[{name}/{finding.container}] {text}"
                warnings.append(text)
                if severity == SEVERITY_ERROR:
                    errors.append(text)
            if errors and denial is None:
                denial = (
                    f"Deployment violates ApplicationPersona '{persona.metadata.name}': {'; '.join(errors)}"
                )

        if denial is None and broken:
            first = broken[0]
            denial = (
                f"Deployment cannot be checked against ApplicationPersona '{first.name}', which cannot be "
                f"decoded: {first.reason}"
            )

        mode = self.namespace_mode(namespace) or self.mode
        if mode is Mode.ENFORCING:
            if denial is not None:
                return _reply(
                    api_version, uid, status=200, allowed=False, code=403, reason="Forbidden",
                    message=denial, warnings=warnings, mode=mode,
                )  # fmt: skip
            message = MSG_PASSED_WITH_WARNINGS if warnings else MSG_PASSED
            return _allow(api_version, uid, message, warnings, mode=mode)
        return _allow(api_version, uid, MSG_ADVISORY if warnings else MSG_PASSED, warnings, mode=mode)


def _allow(
    api_version: str, uid: str, message: str, warnings: list[str] | None = None, *, mode: Mode | None = None
) -> Reply:
    return _reply(
        api_version, uid, status=200, allowed=True, code=200, message=message, warnings=warnings, mode=mode
    )


def _reply(
    api_version: str,
    uid: str,
    *,
    status: int,
    allowed: bool,
    code: int,
    message: str,
    reason: str | None = None,
    warnings: list[str] | None = None,
    mode: Mode | None = None,
) -> Reply:
    response = _Response(
        uid=uid, allowed=allowed, status=_Status(code=code, reason=reason, message=message),
        warnings=warnings or None,
    )  # fmt: skip
    body = _encoder.encode(_ReviewOut(api_version=api_version, kind="AdmissionReview", response=response))
    return Reply(
        status=status, body=body, allowed=allowed, message=message, warnings=tuple(warnings or ()),
        mode=mode.value if mode is not None else None,
    )  # fmt: skip
