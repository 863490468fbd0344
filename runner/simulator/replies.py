"""How handlers answer: JSON responses, the GLM error body, the `ApiError` a handler raises
(the server's middleware turns it into the error answer) and cursor paging for list calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

JSON = "application/json"


class ApiError(Exception):
    """Raised inside handlers; the middleware answers `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=JSON)


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def page(
    items: list[dict[str, Any]], query: Mapping[str, str]
) -> tuple[list[dict[str, Any]], bool]:
    """Cursor paging shared by files and batches: items after the `after` id, up to limit."""
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise ApiError(400, "1214", "limit: expected an integer") from None
    if not 1 <= limit <= 100:
        raise ApiError(400, "1214", f"limit: expected 1..100, found {limit}")
    after = query.get("after")
    if after:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
        items = items[start:]
    return items[:limit], len(items) > limit
