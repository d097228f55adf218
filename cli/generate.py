"""Usage:
  dorgu generate [PATH] [options]

Analyze the application in PATH (default: the current directory) and write Kubernetes manifests, an Argo CD
Application, a GitHub Actions workflow, PERSONA.md and persona.yaml. With no LLM provider the output is
deterministic: the same input always gives byte-identical files.

Files (relative to --output; `../` ones are siblings of it):
  deployment.yaml, service.yaml, ingress.yaml, hpa.yaml, argocd/application.yaml,
  ../.github/workflows/deploy.yaml, ../PERSONA.md, persona.yaml

Options:
  -o DIR --output=DIR    Output directory, relative to the current directory [default: ./k8s].
  -n NAME --name=NAME    Application name (default: app.name in .dorgu.yaml, else the directory name).
  --namespace=NS         Target namespace (default: global defaults.namespace, else "default").
  --dry-run              Print the validation report, then the files, on stdout instead of writing them.
  --force                Overwrite files edited since dorgu generated them (default: keep them).
  --skip-argocd          No argocd/application.yaml.
  --skip-ci              No GitHub Actions workflow.
  --skip-persona         No PERSONA.md and no persona.yaml.
  --skip-validation      Skip the post-generation checks.
  --llm-provider=P       An OpenAI-compatible LLM provider (openai, ollama) to write the description; off by
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
from cli.generator import generate_files, hpa_api_version
from cli.generator.validate import report, validate
from cli.output import Output
from cli.pipeline import manifests_path_for, prepare
from cli.spinner import Spinner
from cli.writer import plan, write


def run(argv: list[str]) -> int:
    args = docopt(__doc__ or "", argv=argv)
    dry = args["--dry-run"]
    out = Output(no_color=args["--no-color"])  # the report goes to stdout, before the files (as in Go)
    output = Path(args["--output"])
    spinner = Spinner("Analyzing application...")
    try:
        prep = prepare(args, out, spinner=spinner, manifests_path=manifests_path_for(output))
        spinner.update("Generating manifests...")
        ctx = prep.ctx
        if args["--kube-version"]:
            ctx.hpa_api_version = hpa_api_version(args["--kube-version"])
        elif kube.kubeconfig_available(args["--kubeconfig"]):
            ctx.hpa_api_version = (
                kube.discover_hpa_version(kubeconfig=args["--kubeconfig"], context=args["--context"])
                or ctx.hpa_api_version
            )
        files = generate_files(
            ctx,
            skip_argocd=args["--skip-argocd"],
            skip_ci=args["--skip-ci"],
            skip_persona=args["--skip-persona"],
        )
    finally:
        spinner.stop()
    out.print()
    for line in probe_report(prep.analysis):
        out.print(line)
    if args["--skip-validation"]:
        out.print()
    else:
        issues = validate(ctx)
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
