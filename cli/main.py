"""dorgu — keep applications true to their personas.

Usage:
  dorgu <command> [<args>...]
  dorgu (-h | --help)

Commands:
  generate [PATH]            Analyze an app; write manifests, Argo CD app, CI, PERSONA.md, persona.yaml.
  persona generate [PATH]    Write the app's ApplicationPersona (persona.yaml).
  persona apply [PATH]       Server-side apply the app's ApplicationPersona to a cluster.
  init [PATH]                Create the app's .dorgu.yaml (interactive, --minimal or --full), or --global.
  config list|get|set|path|reset
                             Show or change the global config (~/.config/dorgu/config.yaml).
  cluster init               Create the cluster's ClusterPersona.
  version                    Print the version.
  dev cluster up|down|env    A local control plane for development (see `dorgu dev --help`).
  operator                   Run the dorgu operator (one process per component, see `dorgu operator --help`).
  dev demo                   A local control plane with dorgu's CRDs and samples.
  bench                      Measure the operator's throughput and latency against the API server's ceiling.

Global options (accepted by every command):
  --config FILE     Workspace config file (default: .dorgu.yaml in the current directory).
  --no-color        No colours (also: the NO_COLOR environment variable).
  -h --help         Show help (`dorgu <command> --help` for a command's).

Configuration precedence: flags > app .dorgu.yaml > workspace .dorgu.yaml > global config > defaults.

Exit codes: 0 success, 1 failure (cluster, API server, filesystem), 2 usage or input error (bad flags, missing
path, no Dockerfile/compose, unreadable file, malformed config). Errors print `Error: <message>` on stderr.
"""

from __future__ import annotations

import importlib
import sys

from docopt import DocoptExit

from cli.errors import USAGE, CliError

# Command words → the module that implements them (a module docstring is its docopt usage; it has
# `run(argv) -> int`, argv being the full argument list including the command words). To add a command,
# add a module and one line here.
COMMANDS: dict[tuple[str, ...], str] = {
    ("version",): "cli.version",
    ("generate",): "cli.generate",
    ("persona", "generate"): "cli.persona_generate",
    ("persona", "apply"): "cli.persona_apply",
    ("persona", "status"): "cli.live",
    ("persona", "watch"): "cli.live",
    ("persona", "list"): "cli.live",
    ("init",): "cli.init",
    ("config",): "cli.config",
    ("cluster", "init"): "cli.clusterinit",
    ("cluster", "status"): "cli.live",
    ("watch",): "cli.live",
    ("sync",): "cli.live",
    ("operator",): "cli.operator",
    ("dev",): "cli.dev",
    ("bench",): "cli.bench",
}

_GLOBAL_WITH_VALUE = ("--config",)
_GLOBAL_FLAGS = ("--no-color",)


def _split_globals(argv: list[str]) -> list[str]:
    """Move global options given before the command words to after them (`dorgu --no-color generate`)."""
    leading: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _GLOBAL_FLAGS or any(a.startswith(o + "=") for o in _GLOBAL_WITH_VALUE):
            leading.append(a)
            i += 1
        elif a in _GLOBAL_WITH_VALUE and i + 1 < len(argv):
            leading += [a, argv[i + 1]]
            i += 2
        else:
            break
    rest = argv[i:]
    words = 0
    while words < len(rest) and not rest[words].startswith("-"):
        words += 1
    return rest[:words] + leading + rest[words:]


def _group_help(group: tuple[str, ...]) -> str:
    subs = sorted(" ".join(k) for k in COMMANDS if k[: len(group)] == group and len(k) > len(group))
    lines = [f"Usage: dorgu {' '.join(group)} <command> [<args>...]", "", "Commands:"]
    lines += [f"  dorgu {s}" for s in subs]
    lines += ["", f"Run 'dorgu {' '.join(group)} <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = _split_globals(list(sys.argv[1:] if argv is None else argv))
    if not argv or argv[0] in ("-h", "--help"):
        print((__doc__ or "").strip())
        return 0
    words = [a for a in argv if not a.startswith("-")]
    module = None
    for n in range(min(len(words), 3), 0, -1):
        key = tuple(argv[:n])
        if key in COMMANDS:
            module = COMMANDS[key]
            break
    if module is None:
        group = tuple(argv[:1])
        if any(k[:1] == group and len(k) > 1 for k in COMMANDS):
            if len(argv) == 1 or argv[1] in ("-h", "--help"):
                print(_group_help(group))
                return 0
            print(f'Error: unknown command "{argv[1]}" for "dorgu {argv[0]}"', file=sys.stderr)
        else:
            print(f'Error: unknown command "{argv[0]}" for "dorgu"', file=sys.stderr)
        print("Run 'dorgu --help' for usage.", file=sys.stderr)
        return USAGE
    try:
        return int(importlib.import_module(module).run(argv) or 0)
    except DocoptExit as e:
        print(f"Error: {str(e).strip()}", file=sys.stderr)
        return USAGE
    except CliError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # docopt's --help
        return e.code if isinstance(e.code, int) else 0


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
