"""Stream items from an input file: one URL per line, never the whole file in memory.

Undecodable bytes, NUL bytes, a BOM, CRLF line ends, non-http schemes and absurdly long lines
never stop the reader: each bad line becomes an ``InvalidLine`` that the engine records as an
``invalid_input`` error, and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

MAX_URL_CHARS = 16_384
_KEY_CHARS = 2_000
_STRIP = b" \t\r\n\x0b\x0c"


@dataclass(slots=True)
class Item:
    """One unit of work; ``key`` is what the output is keyed by (the URL for plain lists)."""

    key: str
    url: str
    line_no: int


@dataclass(slots=True)
class InvalidLine:
    key: str
    line_no: int
    reason: str


def read_items(path: Path) -> Iterator[Item | InvalidLine]:
    """Yield an Item or an InvalidLine for every non-blank, non-comment line of ``path``."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in finally; a generator owns it
    except FileNotFoundError:
        raise ConfigError(f"{path}: input file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read input: {exc.strerror}") from None
    try:
        for line_no, raw in enumerate(handle, start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            line = raw.strip(_STRIP)
            if not line or line.startswith(b"#"):
                continue
            yield parse_line(line, line_no)
    finally:
        handle.close()


def parse_line(line: bytes, line_no: int) -> Item | InvalidLine:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidLine(_key(line.decode("utf-8", "replace")), line_no, "line is not valid UTF-8")
    reason = url_problem(text)
    if reason:
        return InvalidLine(_key(text), line_no, reason)
    return Item(text, text, line_no)


def url_problem(text: str) -> str | None:
    """Why ``text`` is not an http(s) URL we can send, or None when it is."""
    if len(text) > MAX_URL_CHARS:
        return f"line is {len(text)} characters long; a URL may have at most {MAX_URL_CHARS}"
    if "\x00" in text:
        return "line contains a NUL byte"
    lower = text[:8].lower()
    if lower.startswith("http://"):
        rest = text[7:]
    elif lower.startswith("https://"):
        rest = text[8:]
    else:
        scheme = text.split(":", 1)[0] if ":" in text else ""
        if scheme and scheme.isascii() and scheme.replace("+", "").replace("-", "").isalnum() and len(scheme) < 16:
            return f"scheme {scheme}: is not allowed; expected an http:// or https:// URL"
        return "not a URL; expected an http:// or https:// URL"
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if not host or host.startswith(":") or host.startswith("@"):
        return "URL has no host"
    if any(ch.isspace() for ch in text):
        return "URL contains whitespace; percent-encode it (%20)"
    return None


def _key(text: str) -> str:
    """Invalid lines are keyed by their (shortened) text, so the next run skips them too."""
    return text if len(text) <= _KEY_CHARS else text[:_KEY_CHARS] + "…"
