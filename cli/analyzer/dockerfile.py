"""Dockerfile analysis on ``dockerfile-parse`` (line continuations, comments, the escape directive,
``ARG``/``ENV`` substitution per stage). ``FROM --platform=… image AS name`` is understood.

Rules:

* The **built stage** describes the running container: compose's ``build.target`` when given, else the
  last stage. Its ``EXPOSE``, ``ENV``, ``USER``, ``WORKDIR``, ``CMD``/``ENTRYPOINT``, ``VOLUME`` and
  ``HEALTHCHECK`` count.
* **Stage inheritance**: a stage ``FROM <earlier stage>`` starts with everything that stage had (its ports,
  env, user, workdir, command, volumes, healthcheck, labels), as Docker builds it; a stage from an image
  starts empty (what the base image itself sets is not known here, except through
  :mod:`cli.analyzer.security`'s table of well-known images). ``base_image`` is the external image the
  built stage descends from; ``base_chain`` the stages in between.
* **Ports** keep their protocol (``9090/udp`` is UDP); a range ``7000-7002`` is expanded when it has at
  most :data:`MAX_RANGE` ports, else refused with a note (a warning for the user).
"""

from __future__ import annotations

import copy
import io
import json
import re
from typing import Any

from dockerfile_parse import DockerfileParser
from dockerfile_parse.util import WordSplitter, extract_key_values

from cli.analyzer.model import DockerfileInfo, EnvVar, HealthCheck, Port
from cli.errors import InputError

DOCKERFILE_NAMES = ("Dockerfile", "dockerfile", "Dockerfile.prod", "Dockerfile.production")
_PORT_RE = re.compile(r"^(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?$", re.I)
MAX_RANGE = 16
"""A port range with more ports than this is refused (one containerPort each would flood the Service)."""
_URL_PATH_RE = re.compile(r"(?:localhost|127\.0\.0\.1|0\.0\.0\.0)(?::(\d+))?(/[^\s'\"|;&)]*)")


def _words(value: str, args: dict[str, str], envs: dict[str, str]) -> list[str]:
    return list(WordSplitter(value, args=args, envs=envs).split(dequote=True))


def _exec_form(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
            if isinstance(parsed, list):
                return [str(x) for x in parsed]
        except json.JSONDecodeError:
            pass
    return ["/bin/sh", "-c", value] if value else []


def healthcheck_from_command(cmd: str) -> HealthCheck | None:
    """``curl -f http://localhost:8000/healthz`` → path ``/healthz``, port 8000."""
    if not any(tool in cmd for tool in ("curl", "wget", "http")):
        return None
    m = _URL_PATH_RE.search(cmd)
    if not m:
        return None
    return HealthCheck(path=m.group(2) or "/", port=int(m.group(1) or 0))


def port_range(first: int, last: int, protocol: str, *, where: str, notes: list[str]) -> list[Port]:
    """The ports ``first``..``last`` (one when ``last`` is 0), or none with a note when the range is too
    large or out of bounds."""
    last = last or first
    if not (0 < first <= last < 65536):
        notes.append(f"{where}: port {first}-{last} is not a valid port or range; ignored")
        return []
    if last - first + 1 > MAX_RANGE:
        notes.append(
            f"{where}: port range {first}-{last}/{protocol.lower()} has {last - first + 1} ports (more than "
            f"{MAX_RANGE}); not exposed — list the ports the app really listens on"
        )
        return []
    return [Port(port=p, protocol=protocol.upper()) for p in range(first, last + 1)]


def _add_ports(into: list[Port], ports: list[Port]) -> None:
    for p in ports:
        if not any(q.port == p.port and q.protocol == p.protocol for q in into):
            into.append(p)


def _fresh(base: str) -> dict[str, Any]:
    return {
        "base": base, "chain": [], "exposed": [], "envs": {}, "user": "", "workdir": "", "cmd": [],
        "entrypoint": [], "healthcheck": None, "volumes": [], "labels": {}, "args": {},
    }  # fmt: skip


def parse_dockerfile(
    text: str, *, path: str = "Dockerfile", shown: str = "", target: str = ""
) -> DockerfileInfo:
    """``path``: as recorded in the analysis (relative to the app); ``shown``: as error messages name the
    file (default ``path``); ``target``: the stage to read (compose ``build.target``; default the last)."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=True)
    structure = parser.structure
    contexts = parser.context_structure
    info = DockerfileInfo(path=path)
    global_args: dict[str, str] = {}
    stages: dict[str, dict[str, Any]] = {}  # by lower-case name and by index ("0", "1", …)
    names: list[str] = []
    cur: dict[str, Any] | None = None
    for ins, ctx in zip(structure, contexts, strict=True):
        kind, value = ins["instruction"], ins["value"]
        args, envs = dict(ctx.args), dict(ctx.envs)
        if kind == "ARG" and cur is None:
            global_args.update(ctx.line_args)
            continue
        if kind == "FROM":
            words = _words(value, global_args, {})
            words = [w for w in words if not w.startswith("--")]
            image = words[0] if words else ""
            parent = stages.get(image.lower())
            if parent is not None:  # FROM <earlier stage>: inherit everything it had
                cur = copy.deepcopy(parent)
                cur["chain"] = [*parent["chain"], image]
                cur["args"] = {}
            else:
                cur = _fresh(image)
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else ""
            if name:
                info.build_stages.append(name)
            names.append(name)
            stages[str(len(names) - 1)] = cur
            if name:
                stages[name.lower()] = cur
            continue
        if cur is None:  # comments and parser directives before the first FROM
            continue
        where = f"{shown or path}:{ins['startline'] + 1}"
        if kind == "ARG":
            cur["args"].update({k: v for k, v in extract_key_values(True, args, envs, value)})
        elif kind == "EXPOSE":
            for word in _words(value, args, envs):
                m = _PORT_RE.match(word)
                if not m:
                    info.notes.append(f"{where}: EXPOSE {word!r} is not a port; ignored")
                    continue
                _add_ports(
                    cur["exposed"],
                    port_range(
                        int(m.group(1)),
                        int(m.group(2) or 0),
                        m.group(3) or "tcp",
                        where=where,
                        notes=info.notes,
                    ),
                )
        elif kind == "ENV":
            cur["envs"].update(ctx.line_envs)
        elif kind == "USER":
            words = _words(value, args, envs)
            cur["user"] = words[0] if words else ""
        elif kind == "WORKDIR":
            cur["workdir"] = value.strip()
        elif kind == "CMD":
            cur["cmd"] = _exec_form(value)
        elif kind == "ENTRYPOINT":
            cur["entrypoint"] = _exec_form(value)
        elif kind == "VOLUME":
            vols = _exec_form(value) if value.strip().startswith("[") else _words(value, args, envs)
            cur["volumes"] += [v for v in vols if v.startswith("/") and v not in cur["volumes"]]
        elif kind == "LABEL":
            cur["labels"].update(ctx.line_labels)
        elif kind == "HEALTHCHECK":
            body = re.sub(r"^(--\S+\s+)*", "", value.strip())
            if body.upper().startswith("NONE"):
                cur["healthcheck"] = None
            else:
                body = re.sub(r"^CMD\s+", "", body, flags=re.I)
                hc = healthcheck_from_command(" ".join(_exec_form(body)) if body.startswith("[") else body)
                if hc is not None:
                    hc.source = "dockerfile"
                    hc.origin = f"{path}:{ins['startline'] + 1}"
                cur["healthcheck"] = hc
    if cur is None:
        raise InputError(
            f"{shown or path}: no FROM instruction — a Dockerfile names its base image with FROM <image> "
            "before any "
            "other instruction (is this file a Dockerfile?)"
        )
    if target:
        chosen = stages.get(target.lower())
        if chosen is None or target.isdigit():
            known = ", ".join(n for n in names if n) or "none named"
            raise InputError(
                f"{shown or path}: build target {target!r} is not a stage of this Dockerfile "
                f"(stages: {known})"
            )
        cur = chosen
        info.target = target
    else:
        info.target = names[-1]
    info.base_image = cur["base"]
    info.base_chain = cur["chain"]
    info.exposed = list(cur["exposed"])
    info.ports = list(dict.fromkeys(p.port for p in info.exposed))
    info.env_vars = [EnvVar(name=k, value=v, source="dockerfile") for k, v in sorted(cur["envs"].items())]
    info.user, info.workdir = cur["user"], cur["workdir"]
    info.cmd, info.entrypoint, info.healthcheck = cur["cmd"], cur["entrypoint"], cur["healthcheck"]
    info.volumes = list(cur["volumes"])
    info.labels = dict(sorted(cur["labels"].items()))
    info.args = dict(sorted(cur["args"].items()))
    return info
