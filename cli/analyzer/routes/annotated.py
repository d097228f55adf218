"""Controllers declared with annotations/decorators (Spring ``@RequestMapping`` + ``@GetMapping``, NestJS
``@Controller`` + ``@Get``): the annotations of a source file in order, each with its argument text and
whether it sits on a class (it precedes the ``class`` keyword) or on a member."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from cli.analyzer.routes.sources import STRING, line_of, unquote


@dataclass(frozen=True)
class Annotation:
    """One ``@Name(args)``."""

    name: str
    """The annotation's simple name (``GetMapping``)."""
    args: str
    """The text between its parentheses (``""`` when it has none)."""
    line: int
    """1-based line."""
    on_class: bool
    """It annotates a class (else a method or field)."""
    class_index: int
    """Which class of the file it belongs to (0-based, in file order): a class's own annotations and the
    members that follow it share the index."""


def _balanced(text: str, start: int) -> tuple[str, int]:
    """The text inside the parentheses opening at ``start`` (``text[start] == "("``) and the index after."""
    depth, i, quote = 0, start, ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    return text[start + 1 :], len(text)


_ANNOTATION = re.compile(r"@\s*(\w+(?:\.\w+)*)")
_CLASS_AFTER = re.compile(
    r"\s*(?:(?:public|private|protected|internal|open|abstract|final|static|export|default|data|sealed)\s+)*"
    r"class\s"
)


def annotations(text: str) -> Iterator[Annotation]:
    """The annotations of ``text`` (comments already blanked), in order. A run of annotations belongs to a
    class when the ``class`` keyword (after modifiers) follows it, else to a member."""
    run: list[tuple[str, str, int]] = []
    class_starts = [c.start() for c in re.finditer(r"\bclass\s+\w+", text)]
    pos = 0
    while (m := _ANNOTATION.search(text, pos)) is not None:
        rest = m.end()
        while rest < len(text) and text[rest] in " \t":
            rest += 1
        args, pos = _balanced(text, rest) if rest < len(text) and text[rest] == "(" else ("", m.end())
        run.append((m.group(1).rsplit(".", 1)[-1], args, line_of(text, m.start())))
        if re.match(r"\s*@", text[pos:]):
            continue  # the run goes on
        on_class = bool(_CLASS_AFTER.match(text, pos))
        # the class a member belongs to is the last one declared before it; a class's own is the next one
        index = sum(1 for c in class_starts if c < pos) - (0 if on_class else 1)
        for name, a, line in run:
            yield Annotation(name=name, args=a, line=line, on_class=on_class, class_index=index)
        run = []


def paths(args: str, *keys: str) -> list[str] | None:
    """The path strings of an annotation: the first positional argument or one of ``keys`` (``value``,
    ``path``), a single string or an array (``{"/a", "/b"}``, ``["/a"]``); ``[""]`` when there is none;
    ``None`` when it is not a literal."""
    args = args.strip()
    if not args:
        return [""]
    for k in keys:
        km = re.search(rf"\b{k}\s*[=:]\s*", args)
        if km:
            args = args[km.end() :]
            break
    else:
        if re.match(r"\w+\s*[=:]", args):  # only other named arguments (e.g. method=…)
            return [""]
    arr = re.match(r"\s*(?:\{|\[|arrayOf\()(.*?)(?:\}|\]|\))", args, re.S)
    body = arr.group(1) if arr else args
    found = [unquote(m, 1) for m in re.finditer(STRING, body)]
    if not found:
        return None
    return found if arr else found[:1]
