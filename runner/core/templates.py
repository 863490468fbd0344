"""Pure: prompt templates — a system message, fixed conversation turns, ``{field}`` substitution.

A job may give ``system:`` (where the model accepts one) and ``messages:``, a list of turns
(``{role, content}``; content a string or a list of text / image_url / video_url parts) that
go before the item's own user message. Text is filled from the item's fields with
``{name}``: url, key, id, line_no, prompt, every key of ``meta`` and every CSV column.
Only ``{identifier}`` patterns whose name is a field are replaced; other braces (JSON in a
prompt, ``{"a": 1}``) are left alone, so prompts never need escaping.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from runner.core.models import caps_for

ROLES = ("system", "user", "assistant")
MEDIA_TYPES = ("image_url", "video_url")
_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")


class TemplateError(ValueError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def has_fields(text: str) -> bool:
    return _FIELD.search(text) is not None


# what every item of a plain-text input (one URL per line) has: nothing else can be filled in
TEXT_INPUT_FIELDS = ("url", "key", "id", "line_no")


def template_texts(
    prompt: str, system: str | None, turns: list[dict[str, Any]]
) -> Iterator[tuple[str, str]]:
    """(key path, text) of every text a job fills from its items' fields."""
    yield "prompt", prompt
    if system:
        yield "system", system
    for i, turn in enumerate(turns):
        content = turn.get("content")
        if isinstance(content, str):
            yield f"messages[{i}].content", content
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield f"messages[{i}].content[{j}].text", part["text"]


def field_names(text: str) -> list[str]:
    """The ``{name}`` patterns of ``text``, in order."""
    return _FIELD.findall(text)


def substitute(text: str, fields: Mapping[str, Any]) -> str:
    """Replace ``{name}`` where ``name`` is a field; leave every other brace as it is."""
    if "{" not in text:
        return text

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in fields:
            value = fields[name]
            return value if isinstance(value, str) else str(value)
        return m.group(0)

    return _FIELD.sub(repl, text)


def check_turns(model: str, system: str | None, turns: list[dict[str, Any]]) -> None:
    """Config-time shape check of ``system`` and ``messages`` (raises TemplateError)."""
    caps = caps_for(model)
    if system is not None and not caps.system_message:
        raise TemplateError(
            "system", f"{model} takes no system message; put the instruction in the prompt"
        )
    for i, turn in enumerate(turns):
        where = f"messages[{i}]"
        if (
            not isinstance(turn, dict)
            or set(turn) - {"role", "content"}
            or "role" not in turn
            or "content" not in turn
        ):
            raise TemplateError(where, "expected a mapping with role and content")
        role = turn["role"]
        if role not in ROLES:
            raise TemplateError(
                f"{where}.role", f"expected one of {', '.join(ROLES)}, found {role!r}"
            )
        if role == "system" and not caps.system_message:
            raise TemplateError(f"{where}.role", f"{model} takes no system message")
        content = turn["content"]
        if isinstance(content, str):
            continue
        if not isinstance(content, list) or not content:
            raise TemplateError(f"{where}.content", "expected a string or a list of parts")
        for j, part in enumerate(content):
            check_part(part, f"{where}.content[{j}]")


def check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict):
        raise TemplateError(where, "expected a mapping like {type: text, text: ...}")
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise TemplateError(where, "a text part needs text: a string")
        return
    if kind in MEDIA_TYPES:
        inner = part.get(kind)
        if not isinstance(inner, dict) or not isinstance(inner.get("url"), str):
            raise TemplateError(where, f"a {kind} part needs {kind}: {{url: ...}}")
        return
    raise TemplateError(where, f"expected type text, image_url or video_url, found {kind!r}")


def media_parts(messages: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(type, inner dict) for every image_url / video_url part of ``messages``."""
    for msg in messages:
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if isinstance(part, dict):
                kind = part.get("type")
                if kind in MEDIA_TYPES and isinstance(part.get(kind), dict):
                    yield kind, part[kind]


def fill_turns(turns: list[dict[str, Any]], fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Copies of ``turns`` with ``{field}`` filled in text (media parts are kept as they are)."""
    out = []
    for turn in turns:
        content = turn["content"]
        if isinstance(content, str):
            out.append({"role": turn["role"], "content": substitute(content, fields)})
            continue
        parts = []
        for part in content:
            if part.get("type") == "text":
                parts.append({"type": "text", "text": substitute(part["text"], fields)})
            else:
                parts.append(part)
        out.append({"role": turn["role"], "content": parts})
    return out
