"""Usage:
  dorgu generate [PATH] [options]

Analyze the application in PATH (default: the current directory) and write Kubernetes manifests, an Argo CD
Application, a GitHub Actions workflow, PERSONA.md and persona.yaml. With no LLM provider the output is
deterministic: the same input always gives byte-identical files.

Files (relative to --output; `../` ones are siblings of it):
  deployment.yaml, service.yaml, ingress.yaml, hpa.yaml, argocd/application.yaml,
  ../.github/workflows/deploy.yaml, ../PERSONA.md, persona.yaml
The workflow goes to the git repository root's .github/workflows/ when --output is inside the repository
(Argo CD and CI paths are then relative to that root).

A compose project becomes one workload per service, each in its own directory (<service>/deployment.yaml
or statefulset.yaml, service.yaml, pvc-*.yaml, hpa.yaml, persona.yaml): services built from source from
their own Dockerfile stage and code, image-only ones (databases, proxies) from their image with the compose
ports, environment, volumes and healthcheck. One Argo CD Application and one workflow cover them all.

Options:
  -o DIR --output=DIR    Output directory, relative to the current directory [default: ./k8s].
  -n NAME --name=NAME    Application name (default: app.name in .dorgu.yaml, else the directory name).
  --service=NAME         Only this compose service (the single-app layout, named after the service).
  --namespace=NS         Target namespace (default: global defaults.namespace, else "default").
  --dry-run              Print the validation report, then the files, on stdout instead of writing them.
  --force                Overwrite files edited since dorgu generated them (default: keep them).
  --skip-argocd          No argocd/application.yaml.
  --skip-ci              No GitHub Actions workflow.
  --skip-persona         No PERSONA.md and no persona.yaml.
  --skip-validation      Skip the post-generation checks.
  --llm-provider=P       LLM provider (openai, anthropic, gemini, ollama): proposes the description, type,
                         ports, probes, resources and scaling (each checked) and writes PERSONA.md; off by
                         default (also: llm.provider in the workspace or global config).
  --kube-version=V       Target Kubernetes version (e.g. 1.20) for API versions such as the HPA's; default:
                         the cluster's (discovery through the kubeconfig), else the newest.
  --kubeconfig=FILE      Kubeconfig for discovery (default: $KUBECONFIG, ~/.kube/config).
  --context=CTX          Kubeconfig context.
  --config=FILE          Workspace config file (default: .dorgu.yaml in the current directory).
  --no-color             No colours (also: NO_COLOR).
  -h --help              Show this help.

Probes come only from routes the app's framework serves with GET (their mount prefixes applied), else a
Dockerfile/compose HEALTHCHECK, else .dorgu.yaml's health section; the output says where each came from
(file:line), and says so when there is none (then no HTTP probe is written).

Every file starts with a checksum header. A rerun overwrites only files that are still as dorgu wrote them;
an edited file (or one dorgu did not write) is kept unless --force. The summary lists the files created,
updated, unchanged and kept. The files are written all-or-nothing: a failure leaves nothing behind.
Names and namespaces must be DNS labels (RFC 1123).

Exit codes: 0 success (also when validation found issues), 1 failure, 2 usage or input error.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from docopt import docopt

from cli import kube
from cli.analyzer.probes import probe_report
from cli.generator import generate_files, generate_project_files, hpa_api_version
from cli.generator.validate import report, validate
from cli.output import Output
from cli.pipeline import llm_persona, manifests_path_for, prepare
from cli.spinner import Spinner
from cli.writer import plan, write


def run(argv: list[str]) -> int:
    args = docopt(__doc__ or "", argv=argv)
    dry = args["--dry-run"]
    out = Output(no_color=args["--no-color"])  # the report goes to stdout, before the files (as in Go)
    output = Path(args["--output"])
    spinner = Spinner("Analyzing application...")
    try:
        prep = prepare(args, out, spinner=spinner, manifests_path=manifests_path_for(output), output=output)
        spinner.update("Generating manifests...")
        hpa_version = prep.ctx.hpa_api_version
        if args["--kube-version"]:
            hpa_version = hpa_api_version(args["--kube-version"])
        elif kube.kubeconfig_available(args["--kubeconfig"]):
            hpa_version = (
                kube.discover_hpa_version(kubeconfig=args["--kubeconfig"], context=args["--context"])
                or hpa_version
            )
        for c in prep.ctxs:
            c.hpa_api_version = hpa_version
        if not args["--skip-persona"]:
            llm_persona(prep)
        skips = {
            "skip_argocd": args["--skip-argocd"],
            "skip_ci": args["--skip-ci"],
            "skip_persona": args["--skip-persona"],
        }
        if prep.project.multi:
            files = generate_project_files(prep.ctxs, project=prep.project.name, **skips)
        else:
            files = generate_files(prep.ctx, **skips)
    finally:
        spinner.stop()
    out.print()
    project = prep.project
    if project.multi:
        out.info(f"{project.compose_path}: {len(project.workloads)} workloads")
        for w in project.workloads:
            source = f"image {w.image}" if w.image else f"built from {w.build_context}"
            ports = ", ".join(f"{p.port}/{p.protocol}" for p in w.analysis.ports) or "no ports"
            out.print(f"  {w.name}: {w.kind}, {source}, {ports}")
    for note in project.notes:
        out.info(note)
    for w in project.workloads:
        for warning in w.security.warnings:
            out.warning(warning)
        for note in w.notes:
            out.info(f"{w.service or w.name}: {note}")
    for c in prep.ctxs:
        w = c.workload
        if w is not None and w.image:  # an image-only service: its compose healthcheck or nothing
            hc = c.analysis.health_check
            probe = (
                f"GET {hc.path} (port {hc.port}) from {hc.origin}"
                if hc is not None and hc.path
                else f"exec {' '.join(w.exec_probe)} from the compose healthcheck"
                if w.exec_probe
                else "none (the compose service has no healthcheck)"
            )
            out.print(f"  {c.name}: Probes: {probe}")
            continue
        prefix = f"{c.name}: " if project.multi else ""
        for line in probe_report(c.analysis):
            if not prefix:
                out.print(line)
            elif line != "Probes:":
                out.print(f"  {prefix}{line.strip()}")
    if args["--skip-validation"]:
        out.print()
    else:
        issues = list(dict.fromkeys(i for c in prep.ctxs for i in validate(c)))
        out.print()
        if any(i.severity == "error" for i in issues):
            out.warning("Validation found issues")
        else:
            out.success("Validation passed")
        for line in report(issues):
            out.print(line)
        out.print()
    if dry:
        for f in files:
            sys.stdout.write(f"--- {f.path} ---\n{f.content}\n\n")
        return 0
    planned = plan([(output / f.path, f.content) for f in files], force=args["--force"])
    write(planned)
    out.success("Generated manifests successfully!")
    for action, title in _SUMMARY:
        group = [p for p in planned if p.action == action]
        if group:
            out.print()
            out.print(title)
            for p in group:
                out.print(f"  {os.path.normpath(p.target)}")
    if any(p.action == "kept" for p in planned):
        out.print()
        out.warning("Some files were kept as they are; rerun with --force to overwrite them")
    return 0


_SUMMARY = (
    ("created", "Files created:"),
    ("updated", "Files updated:"),
    ("unchanged", "Files unchanged:"),
    ("kept", "Files kept (edited since dorgu generated them, or not written by dorgu):"),
)
