"""What libyaml's error in a hand-written config usually means, as a hint after its message:
a value that needs quotes, a tab, a quote or bracket left open, a key one space off."""

from __future__ import annotations

import re
from typing import Any


def yaml_hint(problem: str, context: str | None, text: str, mark: Any) -> str:
    """What usually causes libyaml's ``problem`` in a hand-written config, as a hint."""
    char = ""
    if mark is not None:
        lines = text.splitlines()
        if mark.line < len(lines) and mark.column < len(lines[mark.line]):
            char = lines[mark.line][mark.column]
    if problem.startswith("mapping values are not allowed"):
        return _misaligned_key(text, mark, deeper=True) or (
            " (a value containing ': ' needs quotes: prompt: \"Describe: the image\")"
        )
    if problem.startswith("found character that cannot start any token"):
        if char == "\t":
            return " (a tab: YAML indents with spaces)"
        if char and char in "@`%":
            return f" (a value starting with {char} needs quotes)"
    if problem == "did not find expected key" and context == "while parsing a block mapping":
        return " (check this line's indentation against the lines above, and that quotes close)"
    if problem == "did not find expected '-' indicator":
        return _misaligned_key(text, mark, deeper=False) or (
            " (check the indentation: a list's items each start with '- ' in one column)"
        )
    if context == "while scanning a quoted scalar":
        return " (a quote that is never closed)"
    if context in ("while parsing a flow mapping", "while parsing a flow sequence"):
        return " (a { } or [ ] that is not closed, or a value in it that needs quotes)"
    return ""


def _misaligned_key(text: str, mark: Any, deeper: bool) -> str:
    """The hint for a ``key:`` line at the error indented deeper (or, ``deeper=False``, less)
    than the line above it: libyaml reads it as the rest of that line's value (or as a list
    item without its ``- ``), and blames a colon or a missing ``-``, not the indentation."""
    if mark is None or mark.line == 0:
        return ""
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    key = _KEY_LINE.match(line)
    above = [s for s in lines[: mark.line] if s.strip() and not s.lstrip().startswith("#")]
    if not key or not above or mark.column != (key.end("key") if deeper else key.end("indent")):
        return ""
    before = len(above[-1]) - len(above[-1].lstrip(" "))
    if (len(key.group("indent")) > before) != deeper or len(key.group("indent")) == before:
        return ""
    where = "more" if deeper else "less"
    return f" (this line is indented {where} than the keys above it: align {key['key']} with them)"


_KEY_LINE = re.compile(r"(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*):(\s|$)")
