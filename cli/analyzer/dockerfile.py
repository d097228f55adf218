"""Dockerfile analysis on ``dockerfile-parse`` (line continuations, comments, the escape directive,
``ARG``/``ENV`` substitution per stage). Only the **final stage** describes the running container: its
``EXPOSE``, ``ENV``, ``USER``, ``WORKDIR``, ``CMD``/``ENTRYPOINT`` and ``HEALTHCHECK`` count; earlier stages
are recorded by name only. ``FROM --platform=… image AS name`` is understood.
"""

from __future__ import annotations

import io
import json
import re

from dockerfile_parse import DockerfileParser
from dockerfile_parse.util import WordSplitter, extract_key_values

from cli.analyzer.model import DockerfileInfo, EnvVar, HealthCheck
from cli.errors import InputError

DOCKERFILE_NAMES = ("Dockerfile", "dockerfile", "Dockerfile.prod", "Dockerfile.production")
_PORT_RE = re.compile(r"^(\d+)(?:-\d+)?(?:/(tcp|udp|sctp))?$", re.I)
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


def parse_dockerfile(text: str, *, path: str = "Dockerfile", shown: str = "") -> DockerfileInfo:
    """``path``: as recorded in the analysis (relative to the app); ``shown``: as error messages name the
    file (default ``path``)."""
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()), env_replace=True)
    structure = parser.structure
    contexts = parser.context_structure
    info = DockerfileInfo(path=path)
    global_args: dict[str, str] = {}
    in_stage = False
    stage_envs: list[EnvVar] = []
    for ins, ctx in zip(structure, contexts, strict=True):
        kind, value = ins["instruction"], ins["value"]
        args, envs = dict(ctx.args), dict(ctx.envs)
        if kind == "ARG" and not in_stage:
            global_args.update(ctx.line_args)
            continue
        if kind == "FROM":
            in_stage = True
            words = _words(value, global_args, {})
            words = [w for w in words if not w.startswith("--")]
            info.base_image = words[0] if words else ""
            if len(words) >= 3 and words[1].lower() == "as":
                info.build_stages.append(words[2])
            # a new stage starts from scratch
            info.ports, stage_envs, info.user, info.workdir = [], [], "", ""
            info.cmd, info.entrypoint, info.healthcheck, info.args = [], [], None, {}
            continue
        if kind == "ARG":
            info.args.update({k: v for k, v in extract_key_values(True, args, envs, value)})
        elif kind == "EXPOSE":
            for word in _words(value, args, envs):
                m = _PORT_RE.match(word)
                if m and int(m.group(1)) not in info.ports and 0 < int(m.group(1)) < 65536:
                    info.ports.append(int(m.group(1)))
        elif kind == "ENV":
            for k, v in ctx.line_envs.items():
                stage_envs = [e for e in stage_envs if e.name != k]
                stage_envs.append(EnvVar(name=k, value=v, source="dockerfile"))
        elif kind == "USER":
            words = _words(value, args, envs)
            info.user = words[0] if words else ""
        elif kind == "WORKDIR":
            info.workdir = value.strip()
        elif kind == "CMD":
            info.cmd = _exec_form(value)
        elif kind == "ENTRYPOINT":
            info.entrypoint = _exec_form(value)
        elif kind == "LABEL":
            info.labels.update(ctx.line_labels)
        elif kind == "HEALTHCHECK":
            body = re.sub(r"^(--\S+\s+)*", "", value.strip())
            if body.upper().startswith("NONE"):
                info.healthcheck = None
            else:
                body = re.sub(r"^CMD\s+", "", body, flags=re.I)
                hc = healthcheck_from_command(" ".join(_exec_form(body)) if body.startswith("[") else body)
                if hc is not None:
                    hc.source = "dockerfile"
                    hc.origin = f"{path}:{ins['startline'] + 1}"
                info.healthcheck = hc
    if not in_stage:
        raise InputError(
            f"{shown or path}: no FROM instruction — a Dockerfile names its base image with FROM <image> "
            "before any "
            "other instruction (is this file a Dockerfile?)"
        )
    info.env_vars = sorted(stage_envs, key=lambda e: e.name)
    info.labels = dict(sorted(info.labels.items()))
    info.args = dict(sorted(info.args.items()))
    return info
