"""Usage:
  dorgu persona generate [PATH] [options]

Analyze the application in PATH (default: the current directory) and write its ApplicationPersona.

Options:
  -n NS --namespace=NS   Namespace of the persona (default: global defaults.namespace, else "default").
  -o DIR --output=DIR    Directory of persona.yaml [default: .].
  --name=NAME            Application name (default: app.name in .dorgu.yaml, else the directory name).
  --dry-run              Print the YAML instead of writing it.
  --force                Overwrite persona.yaml even when it was edited since dorgu generated it.
  --llm-provider=P       LLM provider (openai, anthropic, gemini, ollama); off by default.
  --config=FILE          Workspace config file (default: .dorgu.yaml in the current directory).
  --no-color             No colours (also: NO_COLOR).
  -h --help              Show this help.

Exit codes: 0 success, 1 failure, 2 usage or input error.
"""

from __future__ import annotations

import sys
from pathlib import Path

from docopt import docopt

from cli.generator import build_persona, persona_yaml
from cli.generator.stamp import stamp
from cli.output import Output
from cli.pipeline import prepare
from cli.spinner import Spinner
from cli.writer import write_all


def run(argv: list[str]) -> int:
    args = docopt(__doc__ or "", argv=argv)
    out = Output(no_color=args["--no-color"], out=sys.stderr if args["--dry-run"] else None)
    with Spinner("Analyzing application...") as spinner:
        prep = prepare(args, out, spinner=spinner)
        text = stamp("persona.yaml", persona_yaml(build_persona(prep.ctx)))
    if args["--dry-run"]:
        sys.stdout.write(text)
        return 0
    target = Path(args["--output"]) / "persona.yaml"
    [planned] = write_all([(target, text)], force=args["--force"])
    if planned.action == "kept":
        out.warning(f"Kept {target}: edited since dorgu generated it (--force overwrites it)")
    else:
        out.success(f"Generated persona: {target}")
    return 0
