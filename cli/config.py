"""Usage:
  dorgu config list [options]
  dorgu config get KEY [options]
  dorgu config set KEY VALUE [options]
  dorgu config path [options]
  dorgu config reset [options]

The global config ($XDG_CONFIG_HOME/dorgu/config.yaml, default ~/.config/dorgu/config.yaml).
Keys: llm.provider, llm.api_key, llm.model, llm.base_url, defaults.namespace, defaults.registry,
defaults.org_name, operator.url, operator.token. llm.api_key and operator.token are shown masked;
the provider's variable (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY or GOOGLE_API_KEY) wins
over llm.api_key; llm.provider is one of openai, anthropic, gemini, ollama. `set` changes one key and keeps
every other key in the file, including keys this version does not know (comments are not kept).

Options:
  --config=FILE   Ignored (accepted by every command).
  --no-color      No colours (also: NO_COLOR).
  -h --help       Show this help.
"""

from __future__ import annotations

import os

from docopt import docopt

from cli.analyzer.llm.providers import PROVIDERS, env_key
from cli.errors import InputError
from cli.output import Output
from cli.settings import (
    GLOBAL_KEYS,
    LLM_PROVIDERS,
    SECRET_GLOBAL_KEYS,
    GlobalConfig,
    dump_global,
    global_config_path,
    load_global,
    set_global,
)


def mask(value: str) -> str:
    if not value:
        return "(not set)"
    if len(value) <= 8:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def _get(cfg: GlobalConfig, key: str) -> str:
    section, field = key.split(".", 1)
    return str(getattr(getattr(cfg, section), field))


def _shown(key: str, value: str) -> str:
    return mask(value) if key in SECRET_GLOBAL_KEYS else value or "(not set)"


def _check_key(key: str) -> None:
    if key not in GLOBAL_KEYS:
        raise InputError(
            f"unknown config key: {key}\n\nValid keys:\n" + "\n".join(f"  {k}" for k in GLOBAL_KEYS)
        )


def _check_value(key: str, value: str) -> None:
    if key == "llm.provider" and value not in ("", *LLM_PROVIDERS):
        raise InputError(f"invalid LLM provider: {value} (valid: {', '.join(LLM_PROVIDERS)})")
    if key == "operator.url" and value and not value.startswith(("ws://", "wss://")):
        raise InputError(f"operator.url must be a ws:// or wss:// URL, not {value!r}")


def run(argv: list[str]) -> int:
    args = docopt(__doc__ or "", argv=argv)
    out = Output(no_color=args["--no-color"])
    path = global_config_path()
    if args["path"]:
        out.print(str(path))
        return 0
    if args["reset"]:
        dump_global(GlobalConfig(), path)
        out.success("Configuration reset to defaults")
        out.print(f"Config file: {path}")
        return 0
    cfg = load_global(path)
    if args["list"]:
        out.print("Dorgu Configuration")
        out.print("=" * 19)
        out.print(f"Config file: {path}")
        out.print()
        width = max(len(k) for k in GLOBAL_KEYS)
        for key in GLOBAL_KEYS:
            value = _get(cfg, key)
            if key == "llm.api_key":
                info = PROVIDERS.get(cfg.llm.provider or "openai")
                var, env = env_key(info, os.environ) if info else ("", "")
                shown = f"{mask(env)} (from env:{var})" if env else mask(value)
            else:
                shown = _shown(key, value)
            out.print(f"  {key:<{width}} = {shown}")
        return 0
    key = args["KEY"]
    _check_key(key)
    if args["get"]:
        out.print(_shown(key, _get(cfg, key)))
        return 0
    value = args["VALUE"]
    _check_value(key, value)
    set_global(key, value, path=path)
    out.success(f"Set {key} = {mask(value) if key in SECRET_GLOBAL_KEYS else value}")
    return 0
