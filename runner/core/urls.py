"""Pure: is a piece of text an http(s) URL glmrun can send, and if not, what to tell the person.

``url_problem`` is the one check, used by every input reader (``runner.io.inputs``) and so by
planning; its messages name the likely fix (a missing scheme, quotes around it, a relative
path written without ``./``, a comment after it).
"""

from __future__ import annotations

import re

MAX_URL_CHARS = 16_384


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
        if _DRIVE.match(text):  # ``C:\pics\a.jpg``: read below as a scheme "C:"
            return (
                "a Windows path; expected an http:// or https:// URL, or a local file's path on "
                "this machine (/…, ./…)"
            )
        scheme = text.split(":", 1)[0] if ":" in text else ""
        if (
            scheme
            and scheme.isascii()
            and scheme.replace("+", "").replace("-", "").isalnum()
            and len(scheme) < 16
        ):
            return f"scheme {scheme}: is not allowed; expected an http:// or https:// URL"
        if _HOST_PATH.match(text):
            return f"no scheme; expected an http:// or https:// URL such as https://{text}"
        wrapped = _WRAPPERS.get(text[:1])
        if wrapped and text.endswith(wrapped[0]) and url_problem(text[1:-1]) is None:
            return f"URL in {wrapped[1]}; write it without them"
        hint = f" (a local file's path starts with /, ./ or ../: ./{text})"  # ``pics/c.jpg``
        hint = hint if _BARE_PATH.match(text) else ""
        return f"not a URL; expected an http:// or https:// URL{hint}"
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if not host or host.startswith((":", "@")):
        return "URL has no host"
    if _SPACE.search(text):  # same set as str.isspace, without a Python loop per character
        if _COMMENT.search(text):
            return "URL followed by a comment; a # comment must be on a line of its own"
        return "URL contains whitespace; percent-encode it (%20)"
    return None


_SPACE = re.compile(r"\s")
_DRIVE = re.compile(r"[A-Za-z]:[\\/]")  # a Windows drive letter: C:\ or C:/
# a URL pasted with the quotes or brackets around it (a CSV cell, a JSON list, a mail): the
# closing character and what to call them
_WRAPPERS = {'"': ('"', "quotes"), "'": ("'", "quotes"), "<": (">", "angle brackets")}
_COMMENT = re.compile(r"\s#")
# ``img.example.com/a.jpg``, ``www.x.org:8080/p``: a host with a dot, then a path; no spaces
_HOST_PATH = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:\d+)?/\S*\Z")
# ``pics/c.jpg``, ``c.jpg``: a relative path (as ``find pics`` writes them), not a URL
_BARE_PATH = re.compile(r"[\w-][\w.-]*(/[\w.-]+)+\Z|[\w-][\w.-]*\.(jpe?g|png|mp4)\Z", re.IGNORECASE)
