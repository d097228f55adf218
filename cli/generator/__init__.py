"""Turn an analysis into files (paths relative to the output directory).

A single workload (an app without a compose file, a one-service compose file, ``--service NAME``) keeps the
original layout (``--output``, default ``./k8s``; ``../`` paths are siblings of the output directory)::

    deployment.yaml, service.yaml*, ingress.yaml*, pvc-<volume>.yaml*, hpa.yaml*, argocd/application.yaml,
    <repo root>/.github/workflows/deploy.yaml, ../PERSONA.md, persona.yaml
                                        (* when the app has ports / an Ingress / named volumes / autoscaling)

A project of several workloads gets one directory per workload, one Argo CD Application for the whole
output directory (``directory.recurse``), one workflow building every service built from source, and one
PERSONA.md with a section per workload::

    <workload>/{deployment|statefulset}.yaml, service.yaml, ingress.yaml, pvc-<volume>.yaml, hpa.yaml,
    persona.yaml (Deployments only: the ApplicationPersona controller watches Deployments)

The workflow goes to the git repository root's ``.github/`` when the output directory is inside that
repository (GitHub runs no other), else beside the output directory (``ctx.workflow_path``); no workflow
when nothing is built from source. Every file starts with a checksum header (:mod:`cli.generator.stamp`),
so that a later run can tell dorgu's untouched files from edited ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import msgspec

from cli.generator import docs, manifests
from cli.generator.context import GenContext, hpa_api_version
from cli.generator.persona import build_persona, persona_yaml
from cli.generator.stamp import stamp
from cli.generator.yamlio import dump

__all__ = [
    "GenContext",
    "GeneratedFile",
    "build_persona",
    "generate_files",
    "generate_project_files",
    "hpa_api_version",
    "persona_yaml",
]


@dataclass(frozen=True)
class GeneratedFile:
    path: str
    content: str


def _workload(
    ctx: GenContext, prefix: str, *, skip_persona: bool
) -> tuple[list[GeneratedFile], list[GeneratedFile]]:
    """(the workload's manifests, its persona) with paths under ``prefix``."""
    w = ctx.workload
    kind = w.kind if w is not None else "Deployment"
    files = [GeneratedFile(f"{prefix}{kind.lower()}.yaml", dump(manifests.deployment(ctx), sort_keys=True))]
    if ctx.analysis.ports:
        files.append(GeneratedFile(f"{prefix}service.yaml", dump(manifests.service(ctx), sort_keys=True)))
        if ctx.ingress_enabled():
            files.append(GeneratedFile(f"{prefix}ingress.yaml", dump(manifests.ingress(ctx), sort_keys=True)))
    for claim in manifests.claims(ctx):
        name = claim["metadata"]["name"].removeprefix(f"{ctx.name}-")
        files.append(GeneratedFile(f"{prefix}pvc-{name}.yaml", dump(claim, sort_keys=True)))
    if w is None or not w.fixed_replicas:
        files.append(GeneratedFile(f"{prefix}hpa.yaml", dump(manifests.hpa(ctx), sort_keys=True)))
    persona = []
    if not skip_persona and kind == "Deployment":
        persona.append(GeneratedFile(f"{prefix}persona.yaml", persona_yaml(build_persona(ctx))))
    return files, persona


def generate_files(
    ctx: GenContext, *, skip_argocd: bool = False, skip_ci: bool = False, skip_persona: bool = False
) -> list[GeneratedFile]:
    """The single-workload layout."""
    files, persona = _workload(ctx, "", skip_persona=skip_persona)
    if not skip_argocd:
        files.append(
            GeneratedFile("argocd/application.yaml", dump(manifests.argocd_application(ctx), sort_keys=True))
        )
    if not skip_ci and (ctx.workload is None or ctx.workload.built):
        files.append(GeneratedFile(ctx.workflow_path, docs.workflow([ctx])))
    if not skip_persona:
        files.append(GeneratedFile("../PERSONA.md", docs.persona_md(ctx)))
        files += persona
    return [GeneratedFile(f.path, stamp(f.path, f.content)) for f in files]


def generate_project_files(
    ctxs: list[GenContext],
    *,
    project: str,
    skip_argocd: bool = False,
    skip_ci: bool = False,
    skip_persona: bool = False,
) -> list[GeneratedFile]:
    """The multi-workload layout (see the module docstring); ``ctxs`` in the project's order."""
    files: list[GeneratedFile] = []
    for ctx in ctxs:
        mine, persona = _workload(ctx, f"{ctx.name}/", skip_persona=skip_persona)
        files += mine + persona
    top = dataclasses.replace(
        ctxs[0], analysis=msgspec.structs.replace(ctxs[0].analysis, name=project), workload=None
    )
    if not skip_argocd:
        files.append(
            GeneratedFile("argocd/application.yaml", dump(manifests.argocd_application(top), sort_keys=True))
        )
    built = [c for c in ctxs if c.workload is not None and c.workload.built]
    if not skip_ci and built:
        files.append(GeneratedFile(top.workflow_path, docs.workflow(built)))
    if not skip_persona:
        files.append(GeneratedFile("../PERSONA.md", docs.project_md(project, ctxs)))
    return [GeneratedFile(f.path, stamp(f.path, f.content)) for f in files]
