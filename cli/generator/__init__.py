"""Turn an :class:`~cli.analyzer.model.AppAnalysis` into files (paths relative to the output directory).

Order and layout (``--output``, default ``./k8s``; ``../`` paths are siblings of the output directory)::

    deployment.yaml, service.yaml*, ingress.yaml*, hpa.yaml, argocd/application.yaml,
    ../.github/workflows/deploy.yaml, ../PERSONA.md, persona.yaml        (* only when the app has ports)

Every file starts with a checksum header (:mod:`cli.generator.stamp`), so that a later run can tell dorgu's
untouched files from edited ones.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "hpa_api_version",
    "persona_yaml",
]


@dataclass(frozen=True)
class GeneratedFile:
    path: str
    content: str


def generate_files(
    ctx: GenContext, *, skip_argocd: bool = False, skip_ci: bool = False, skip_persona: bool = False
) -> list[GeneratedFile]:
    files = [GeneratedFile("deployment.yaml", dump(manifests.deployment(ctx), sort_keys=True))]
    if ctx.analysis.ports:
        files.append(GeneratedFile("service.yaml", dump(manifests.service(ctx), sort_keys=True)))
        if ctx.ingress_enabled():
            files.append(GeneratedFile("ingress.yaml", dump(manifests.ingress(ctx), sort_keys=True)))
    files.append(GeneratedFile("hpa.yaml", dump(manifests.hpa(ctx), sort_keys=True)))
    if not skip_argocd:
        files.append(
            GeneratedFile("argocd/application.yaml", dump(manifests.argocd_application(ctx), sort_keys=True))
        )
    if not skip_ci:
        files.append(GeneratedFile("../.github/workflows/deploy.yaml", docs.workflow(ctx)))
    if not skip_persona:
        files.append(GeneratedFile("../PERSONA.md", docs.persona_md(ctx)))
        files.append(GeneratedFile("persona.yaml", persona_yaml(build_persona(ctx))))
    return [GeneratedFile(f.path, stamp(f.path, f.content)) for f in files]
