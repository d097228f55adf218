"""What a command's docopt usage accepts, read with docopt's own parser: plain usage errors, completions.

docopt reports a bad command line as ``Warning: found unmatched (duplicate?) arguments [Option(None,
'--dryrun', 0, True)]``: a repr of its parser, not a message. ``check`` runs the same steps docopt runs (its
option table, its argv tokenizer, its pattern match) before the command does, and says what is wrong the way
kubectl (Cobra) does: ``unknown flag: --dryrun``. When ``check`` passes, docopt's own parse passes (same
functions, same input). ``options`` lists the flags one command's usage lines accept, for the completions.

These are docopt-ng's module-level functions (``parse_docstring_sections``, ``parse_options``,
``parse_pattern``, ``parse_argv``); pyproject.toml keeps docopt-ng within the minor version they were read
against.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import docopt as d


class UsageError(Exception):
    """The command line does not fit the command's usage; ``str(e)`` is the message (no parser repr)."""


@dataclass(frozen=True, kw_only=True)
class Flag:
    """One option a command accepts."""

    long: str | None
    """``--output``, or None for a short-only option."""
    short: str | None
    """``-o``, or None."""
    takes_value: bool
    """Whether the option takes an argument (``--output=DIR``)."""
    description: str
    """The first line of its description in the usage's Options section."""


@dataclass(frozen=True)
class _Parsed:
    usage_body: str
    options: list[d.Option]
    descriptions: dict[str, str]


def _parse(doc: str) -> _Parsed:
    sections = d.parse_docstring_sections(doc)
    options = [*d.parse_options(sections.before_usage), *d.parse_options(sections.after_usage)]
    descriptions: dict[str, str] = {}
    for line in (sections.before_usage + sections.after_usage).splitlines():
        m = re.match(r"\s*(-\S.*?)(?:\s{2,}(\S.*))?$", line)
        if not m:
            continue
        names = re.findall(r"--?[A-Za-z0-9][\w-]*", m.group(1).split("  ")[0])
        for n in names:
            descriptions.setdefault(n, (m.group(2) or "").strip())
    return _Parsed(sections.usage_body, options, descriptions)


def usage_lines(doc: str, words: tuple[str, ...]) -> list[str]:
    """The usage lines of ``doc`` for the command ``words``."""
    body = d.parse_docstring_sections(doc).usage_body
    lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
    # The longest prefix of the words that some lines start with: `watch personas` is the line
    # `dorgu watch (personas|cluster|events)`.
    for n in range(len(words), 0, -1):
        prefix = "dorgu " + " ".join(words[:n])
        mine = [ln for ln in lines if ln == prefix or ln.startswith(prefix + " ")]
        if mine:
            return mine
    return lines


def _pattern(doc: str, words: tuple[str, ...]) -> tuple[d.Required, list[d.Option]]:
    """The docopt pattern of the usage lines for ``words``, its ``[options]`` filled as docopt fills it (the
    options named in none of the file's usage lines)."""
    p = _parse(doc)
    everywhere = set(d.parse_pattern(d.formal_usage(p.usage_body), list(p.options)).flat(d.Option))
    pattern = d.parse_pattern(d.formal_usage("\n".join(usage_lines(doc, words))), list(p.options))
    for shortcut in pattern.flat(d.OptionsShortcut):
        shortcut.children = [o for o in p.options if o not in everywhere]
    return pattern, p.options


def options(doc: str, words: tuple[str, ...]) -> list[Flag]:
    """The options ``dorgu <words>`` accepts according to its usage lines, in the Options section's order."""
    pattern, opts = _pattern(doc, words)
    accepted = {o.name for o in pattern.flat(d.Option)}
    descriptions = _parse(doc).descriptions
    return [
        Flag(
            long=o.longer,
            short=o.short,
            takes_value=o.argcount > 0,
            description=descriptions.get(o.longer or o.short or "", ""),
        )
        for o in opts
        if o.name in accepted
    ]


def _exclusive_groups(pattern: d.Pattern) -> list[list[str]]:
    """Option groups of the form ``(-a | -b)``: at most one of them may be given."""
    groups: list[list[str]] = []
    stack: list[d.Pattern] = [pattern]
    while stack:
        node = stack.pop()
        kids = getattr(node, "children", None)
        if kids is None:
            continue
        if isinstance(node, d.Either) and len(kids) > 1 and all(isinstance(c, d.Option) for c in kids):
            groups.append([c.name for c in kids])
        stack.extend(kids)
    return groups


def check(doc: str, argv: list[str], words: tuple[str, ...]) -> None:
    """Raise ``UsageError`` with a plain message when docopt would reject ``argv`` for ``dorgu <words>``.

    ``-h``/``--help`` anywhere passes (docopt prints the help)."""
    p = _parse(doc)
    try:
        parsed = d.parse_argv(d.Tokens(list(argv)), list(p.options))
    except d.DocoptExit as e:
        raise UsageError(_token_message(str(e).split("\n", 1)[0])) from None
    given = [o for o in parsed if isinstance(o, d.Option)]
    if any(o.name in ("-h", "--help") and o.value for o in given):
        return
    declared = {o.name for o in p.options}
    for o in given:
        if o.name not in declared:
            if o.name.startswith("--"):
                raise UsageError(f"unknown flag: {o.name}")
            raise UsageError(f"unknown shorthand flag: {o.name[1:]!r} in {o.name}")
    pattern, _ = _pattern(doc, words)
    allowed = {o.name for o in pattern.flat(d.Option)}
    for o in given:
        if o.name not in allowed:
            raise UsageError(f"flag {o.name} is not accepted by 'dorgu {' '.join(words)}'")
    names = [o.name for o in given]
    for group in _exclusive_groups(pattern):
        both = [n for n in group if n in names]
        if len(both) > 1:
            raise UsageError(f"flags {' and '.join(both)} cannot be used together")
    if _fits(pattern, parsed):
        return
    for n in dict.fromkeys(names):
        if names.count(n) > 1:
            raise UsageError(f"flag {n} given more than once")
    # What one change would make the command line fit: fewer positional arguments, one more, a flag more.
    positional = [i for i, a in enumerate(parsed) if type(a) is d.Argument]
    for k in range(1, len(positional) + 1):
        if _fits(pattern, [a for i, a in enumerate(parsed) if i not in positional[-k:]]):
            raise UsageError(f'unexpected argument "{parsed[positional[-k]].value}"')
    for extra in range(1, 4):
        trial = [*parsed, *(d.Argument(None, _SENTINEL) for _ in range(extra))]
        matched, left, collected = pattern.fix().match(trial)
        if matched and not left:
            missing = [c.name for c in collected if c.value == _SENTINEL or c.value == [_SENTINEL]]
            raise UsageError(f"missing argument {missing[0]}" if missing else "missing argument")
    for o in pattern.flat(d.Option):
        if o.name in names:
            continue
        if _fits(
            pattern, [*parsed, d.Option(o.short, o.longer, o.argcount, _SENTINEL if o.argcount else True)]
        ):
            raise UsageError(f'required flag(s) "{o.name.lstrip("-")}" not set')
    raise UsageError("the arguments do not fit the command's usage")


_SENTINEL = "\0missing"
"""A value no command line holds: stands for an argument the user left out."""


def _fits(pattern: d.Required, parsed: list[d.Pattern]) -> bool:
    matched, left, _ = pattern.fix().match(list(parsed))
    return bool(matched and not left)


def _token_message(message: str) -> str:
    """docopt's tokenizer messages, in Cobra's words."""
    m = re.match(r"(\S+) requires argument", message)
    if m:
        return f"flag needs an argument: {m.group(1)}"
    m = re.match(r"(\S+) must not have an argument", message)
    if m:
        return f"flag {m.group(1)} does not take a value"
    return message
