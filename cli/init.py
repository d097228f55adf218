"""Usage:
  dorgu init [PATH] [--minimal | --full] [--force] [options]
  dorgu init --global [--force] [options]

Create the app's .dorgu.yaml in PATH (default: the current directory): interactive by default (one answer
per line on stdin; empty means the default), --minimal (no questions) or --full (a complete example).
With --global, create the global config (~/.config/dorgu/config.yaml) instead.

Options:
  --minimal       Write a minimal file without asking.
  --full          Write a complete example.
  --force         Overwrite an existing file.
  --global        Set up the global config.
  --config=FILE   Ignored (accepted by every command).
  --no-color      No colours (also: NO_COLOR).
  -h --help       Show this help.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from docopt import docopt

from cli.analyzer import dns_name
from cli.analyzer.git import git_remote
from cli.errors import InputError
from cli.generator.yamlio import dump
from cli.output import Output
from cli.settings import (
    LLM_PROVIDERS,
    GlobalConfig,
    GlobalDefaults,
    GlobalLLM,
    dump_global,
    global_config_path,
)
from cli.writer import write_all

_HEADER = "# dorgu application configuration — see `dorgu init --full` for every setting.\n"


def _ask(label: str, default: str = "") -> str:
    prompt = f"{label} [{default}]: " if default else f"{label}: "
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = sys.stdin.readline()
    return line.strip() or default


def _guess_type(app: Path) -> str:
    if any((app / p).exists() for p in ("index.html", "public/index.html", "static/index.html")):
        return "web"
    if any((app / p).exists() for p in ("worker.py", "worker.go", "worker.js", "consumer.py", "consumer.go")):
        return "worker"
    return "api"


def _full(name: str, repo: str) -> dict[str, Any]:
    return {
        "version": "1",
        "app": {
            "name": name,
            "description": "",
            "team": "",
            "owner": "",
            "repository": repo,
            "type": "api",
            "tier": "standard",
        },
        "environment": "production",
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1000m", "memory": "1Gi"},
        },
        "scaling": {
            "min_replicas": 2,
            "max_replicas": 10,
            "target_cpu": 70,
            "target_memory": 80,
            "behavior": "balanced",
        },
        "labels": {"app.kubernetes.io/component": "backend"},
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "8080",
            "prometheus.io/path": "/metrics",
        },
        "ingress": {
            "enabled": True,
            "host": "api.company.com",
            "paths": [{"path": "/api/v1", "path_type": "Prefix"}],
            "tls": {"enabled": True, "secret_name": "api-tls-secret"},
        },
        "health": {
            "liveness": {"path": "/health", "port": 8080, "initial_delay": 15, "period": 10},
            "readiness": {"path": "/ready", "port": 8080, "initial_delay": 5, "period": 5},
            "startup_grace_period": "60s",
        },
        "dependencies": [
            {"name": "postgresql", "type": "database", "required": True},
            {"name": "redis", "type": "cache", "required": True},
        ],
        "operations": {
            "runbook": "",
            "alerts": [],
            "maintenance_window": "",
            "on_call": "",
            "auto_restart": False,
        },
        "deployment_policy": {"strategy": "RollingUpdate", "max_surge": "25%", "max_unavailable": "25%"},
    }


def _global(args: dict[str, Any], out: Output) -> int:
    path = global_config_path()
    if path.exists() and not args["--force"]:
        out.warning(f"Global config already exists at {path}")
        out.info("Use --force to overwrite, or 'dorgu config set <key> <value>' to update")
        return 0
    out.print("Dorgu Global Configuration Setup")
    provider = _ask(f"LLM provider ({', '.join(LLM_PROVIDERS)}, or empty for none)").lower()
    if provider not in ("", *LLM_PROVIDERS):
        raise InputError(f"invalid LLM provider: {provider} (valid: {', '.join(LLM_PROVIDERS)})")
    cfg = GlobalConfig(
        llm=GlobalLLM(
            provider=provider,
            # Ollama takes no key (its endpoint: OLLAMA_HOST)
            api_key=_ask("API key (empty: use the provider's environment variable)")
            if provider not in ("", "ollama")
            else "",
        ),
        defaults=GlobalDefaults(
            namespace=_ask("Default namespace", "default"),
            registry=_ask("Default registry"),
            org_name=_ask("Organization name"),
        ),
    )
    dump_global(cfg, path)
    out.success(f"Global config saved to {path}")
    return 0


def run(argv: list[str]) -> int:
    args = docopt(__doc__ or "", argv=argv)
    out = Output(no_color=args["--no-color"])
    if args["--global"]:
        return _global(args, out)
    raw = args["PATH"] or "."
    app = Path(raw).absolute()
    if not app.is_dir():
        raise InputError(f"path does not exist: {app}")
    target = app / ".dorgu.yaml"
    if target.exists() and not args["--force"]:
        raise InputError(f".dorgu.yaml already exists at {target}. Use --force to overwrite")
    name, repo, kind = dns_name(app.name), git_remote(app), _guess_type(app)
    if args["--full"]:
        data = _full(name, repo or "https://github.com/company/my-service")
    elif args["--minimal"]:
        data = {"version": "1", "app": {"name": name, "description": "", "team": "", "type": kind,
                                        "repository": repo}}  # fmt: skip
    else:
        out.print("Dorgu Application Configuration")
        out.print("=" * 31)
        if repo:
            out.info(f"Detected git remote: {repo}")
        data = {
            "version": "1",
            "app": {
                "name": _ask("Application name", name),
                "description": _ask("Description"),
                "team": _ask("Team name"),
                "owner": _ask("Owner email"),
                "type": _ask("Application type (api/web/worker/cron)", kind),
                "repository": _ask("Repository URL", repo),
            },
            "environment": _ask("Environment (production/staging/development)", "production"),
        }
    write_all([(target, _HEADER + dump(data, sort_keys=False))])
    out.print()
    out.success(f"Created {target}")
    out.print(f"Next: dorgu generate {raw}")
    return 0
