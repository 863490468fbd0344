"""In-process fake of the Zhipu GLM v4 API (chat completions, files, batches).

It backs `base_url: simulator`, the engine tests and the benchmarks, so it must be both
honest (shapes from glm-api.md §2, §4, §5, §6) and cheap: benchmarks push thousands of
requests per second through it, hence no per-request logging, orjson everywhere and a
random draw only when a fault rate is non-zero.

Decisions worth knowing:
- The concurrency limit is global, not per model.
- Batch lists (`GET /batches`, `GET /files`) are newest first; `after` is the id of the last
  item of the previous page, as in the OpenAI-style API.
- A batch snapshots its lifecycle knobs (durations, final status, per-line outcomes) when
  it is created, so changing settings later does not rewrite a running batch.
- With `state_dir` the lifecycle clock defaults to wall time so batches survive restarts;
  an explicitly passed clock still wins (tests use a fake one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

API_PREFIX = "/api/paas/v4"

_JSON = "application/json"
_DESCRIPTIONS = (
    "a cat sitting on a sofa",
    "a red bicycle leaning on a wall",
    "a mountain lake at sunrise",
    "a bowl of ramen on a wooden table",
    "a city street at night",
    "two dogs playing in the snow",
    "a lighthouse on a rocky coast",
    "a bookshelf full of old books",
)
# url_faults: per URL, a list of faults its next requests get, in order. Errors ("500", "429",
# "1301", ...) answer with the GLM error body; "502"/"503"/"504" with a proxy's HTML page;
# "429noretry" is a 429 without Retry-After; "error200" a 200 whose body is an error object
# (code 1234); "trickle" a valid answer sent slowly (trickle_s); "drop" closes the socket;
# "hang" never answers (until hang_s); "badjson" / "nochoices" are broken 200 bodies.
URL_FAULTS = frozenset(
    {
        "500",
        "429",
        "1301",
        "1113",
        "1261",
        "1210",
        "401",
        "drop",
        "hang",
        "badjson",
        "nochoices",
        "sensitive",
        "network_error",
        "length",
        "502",
        "503",
        "504",
        "429noretry",
        "error200",
        "trickle",
    }
)
BATCH_LINE_FAULTS = frozenset({"500", "1301", "missing", "duplicate"})
BATCH_FINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})

# (HTTP status, business code, message) for scripted error answers.
_ERRORS: dict[str, tuple[int, str, str]] = {
    "500": (500, "500", "Internal error (simulated)"),
    "429": (429, "1302", "High concurrency usage of this API, please reduce concurrency"),
    "1301": (400, "1301", "System detected potentially unsafe or sensitive content"),
    "1113": (429, "1113", "Your account is in arrears, please recharge"),
    "1261": (400, "1261", "Prompt exceeds max length"),
    "1210": (400, "1210", "Invalid API parameters, please check the documentation"),
    "401": (401, "1000", "Authentication failed"),
}
# Gateway errors come from a proxy in front of the API: an HTML page, no GLM error body.
_GATEWAY = {
    "502": "Bad Gateway",
    "503": "Service Temporarily Unavailable",
    "504": "Gateway Time-out",
}


def expected_content(urls: str | Sequence[str]) -> str:
    """Deterministic assistant text for an image URL (or several).

    The hash makes the answer unique per URL list, so a test can check that every result
    landed on the item it belongs to, not just that some answer arrived.
    """
    joined = urls if isinstance(urls, str) else "\n".join(urls)
    digest = hashlib.sha256(joined.encode()).hexdigest()
    return f"sim:{digest[:16]} | {_DESCRIPTIONS[int(digest[16], 16) % len(_DESCRIPTIONS)]}"


@dataclass
class SimSettings:
    """Mutable knobs; every default is fast and fault-free."""

    latency_mean_s: float = 0.01
    latency_spread_s: float = 0.0
    max_in_flight: int | None = None
    limit_schedule: list[tuple[float, int | None]] = field(default_factory=list)
    error_500_rate: float = 0.0
    error_429_rate: float = 0.0
    retry_after_s: float | None = None
    drop_rate: float = 0.0
    hang_rate: float = 0.0
    hang_s: float = 3600.0
    trickle_s: float = 1.0  # url_faults "trickle": a whole answer sent in 16 pieces over this long
    bad_json_rate: float = 0.0
    no_choices_rate: float = 0.0
    seed: int = 0
    url_faults: dict[str, list[str]] = field(default_factory=dict)
    require_key: str | None = None
    completion_tokens: int = 20
    batch_validating_s: float = 0.05
    batch_in_progress_s: float = 0.1
    batch_finalizing_s: float = 0.05
    batch_final_status: str = "completed"
    batch_partial_fraction: float = 0.5
    batch_line_failure_rate: float = 0.0
    batch_line_faults: dict[str, str] = field(default_factory=dict)
    request_counts_shape: str = "nested"
    error_envelope: str = "zhipu"
    # url -> fields of the answer for that first URL: content (str or list of parts),
    # reasoning_content, finish_reason, content_filter (glm-api.md §2.2 shapes)
    url_answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # signed-token auth (glm-api.md §1): the "<id>.<secret>" key whose JWTs are accepted
    require_jwt: str | None = None
    expire_tokens: int = 0  # the next N JWT-authenticated requests answer 1003 (token expired)
    keep_bodies: bool = False  # keep every chat body (and its Authorization header) in stats.bodies

    def validate(self) -> None:
        """Reject typos in fault names up front: a silently ignored fault makes a test lie."""
        for url, faults in self.url_faults.items():
            for fault in faults:
                if fault not in URL_FAULTS:
                    raise ValueError(f"url_faults[{url!r}]: unknown fault {fault!r}")
        for url, fault in self.batch_line_faults.items():
            if fault not in BATCH_LINE_FAULTS:
                raise ValueError(f"batch_line_faults[{url!r}]: unknown fault {fault!r}")
        if self.batch_final_status not in BATCH_FINAL_STATUSES:
            raise ValueError(f"batch_final_status: unknown status {self.batch_final_status!r}")
        if self.request_counts_shape not in ("nested", "flat"):
            raise ValueError(
                f"request_counts_shape: expected nested|flat, found {self.request_counts_shape!r}"
            )
        for url, answer in self.url_answers.items():
            unknown = set(answer) - _ANSWER_FIELDS
            if unknown:
                raise ValueError(f"url_answers[{url!r}]: unknown field(s) {sorted(unknown)}")
        if self.error_envelope not in ("zhipu", "openai"):
            raise ValueError(
                f"error_envelope: expected zhipu|openai, found {self.error_envelope!r}"
            )


_ANSWER_FIELDS = frozenset({"content", "reasoning_content", "finish_reason", "content_filter"})
_SETTING_NAMES = frozenset(f.name for f in dataclasses.fields(SimSettings))


_SCALARS: dict[str, Callable[[Any], Any]] = {"float": float, "int": int, "str": str}


def _coerce(key: str, value: Any) -> Any:
    """Convert a YAML/JSON value to the field's type, so a bad knob fails at start, not mid-run."""
    kind = _SETTING_TYPES[key]
    if kind.endswith(" | None"):
        if value is None:
            return None
        kind = kind.removesuffix(" | None")
    if kind in _SCALARS:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"{key}: expected {kind}, found {value!r}")
        return _SCALARS[kind](value)
    if key == "limit_schedule":
        return [(float(t), None if n is None else int(n)) for t, n in value]
    if key == "url_faults":
        return {str(u): [str(f) for f in fs] for u, fs in value.items()}
    if key == "batch_line_faults":
        return {str(u): str(f) for u, f in value.items()}
    return value


_SETTING_TYPES = {f.name: str(f.type) for f in dataclasses.fields(SimSettings)}


def _merge_settings(settings: SimSettings, d: Mapping[str, Any]) -> None:
    """Apply a JSON-ish mapping onto settings in place; unknown keys are errors."""
    for key in d:
        if key not in _SETTING_NAMES:
            raise ValueError(f"unknown simulator setting {key!r}")
    converted = {}
    for key, value in d.items():
        try:
            converted[key] = _coerce(key, value)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"{key}: cannot use {value!r} ({exc})") from None
    for key, value in converted.items():
        setattr(settings, key, value)
    settings.validate()


def settings_from_dict(d: Mapping[str, Any]) -> SimSettings:
    """Build settings from config/JSON; an unknown key raises ValueError naming it."""
    settings = SimSettings()
    _merge_settings(settings, d)
    return settings


@dataclass
class SimStats:
    """Counters a test or benchmark reads back to check what the client really sent.

    `requests` counts API requests only; the `/_sim/*` control endpoints are not traffic.
    `chat_ok` counts full answers (finish_reason "stop"), not scripted 200 faults.
    """

    requests: int = 0
    chat_requests: int = 0
    chat_ok: int = 0
    per_url: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight_seen: int = 0
    throttled: int = 0
    files_uploaded: int = 0
    files_deleted: int = 0
    batches_created: int = 0
    batches_cancelled: int = 0
    batch_lines_received: int = 0
    expired_tokens: int = 0  # 1003 answers given to JWT auth
    bodies: list[dict[str, Any]] = field(default_factory=list)  # chat bodies, with keep_bodies

    def snapshot(self) -> dict[str, Any]:
        """JSON-able copy (per_url as a plain dict)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["per_url"] = dict(self.per_url)
        return out


class _ApiError(Exception):
    """Raised inside handlers; turned into the GLM error body by `_error_response`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type=_JSON)


def _error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def _extract(body: Mapping[str, Any]) -> tuple[list[str], int]:
    """Image/video URLs of the user messages and the total prompt text length."""
    urls: list[str] = []
    text_len = 0
    for msg in body.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            text_len += len(content)
            continue
        if msg.get("role") != "user" or not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text":
                text_len += len(part.get("text") or "")
            elif kind in ("image_url", "video_url", "file_url"):
                inner = part.get(kind)
                if isinstance(inner, dict) and isinstance(inner.get("url"), str):
                    urls.append(inner["url"])
    return urls, text_len


def _apply_answer(answer: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """Scripted answer fields (url_answers) onto a completion."""
    choice = answer["choices"][0]
    for name in ("content", "reasoning_content"):
        if name in fields:
            choice["message"][name] = fields[name]
    if "finish_reason" in fields:
        choice["finish_reason"] = fields["finish_reason"]
    if "content_filter" in fields:
        answer["content_filter"] = fields["content_filter"]


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Simulator:
    """The fake server. Construct, `await start()`, use `base_url`, `await close()`."""

    def __init__(
        self,
        settings: SimSettings | None = None,
        *,
        clock: Callable[[], float] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.settings = settings if settings is not None else SimSettings()
        self.settings.validate()
        self.stats = SimStats()
        self.state_dir = Path(state_dir) if state_dir is not None else None
        if clock is None:
            clock = time.time if self.state_dir is not None else time.monotonic
        self._clock = clock
        self._rng = random.Random(self.settings.seed)
        self._started_at = clock()
        self._files: dict[str, dict[str, Any]] = {}
        self._contents: dict[str, bytes] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._seq = 0
        self._id_base = 8_700_000_000_000_000_000 + random.Random().randrange(10**14) * 1000
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.app = self._make_app()

    def __repr__(self) -> str:
        return (
            f"<Simulator {self.base_url or 'not started'} in_flight={self.stats.in_flight}"
            f" requests={self.stats.requests} batches={len(self._batches)}>"
        )

    # -- lifecycle -------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        p = API_PREFIX
        app.router.add_post(f"{p}/chat/completions", self._chat)
        app.router.add_post(f"{p}/files", self._upload_file)
        app.router.add_get(f"{p}/files", self._list_files)
        app.router.add_get(f"{p}/files/{{file_id}}/content", self._file_content)
        app.router.add_delete(f"{p}/files/{{file_id}}", self._delete_file)
        app.router.add_get(f"{p}/files/{{file_id}}", self._get_file)
        app.router.add_post(f"{p}/batches", self._create_batch)
        app.router.add_get(f"{p}/batches", self._list_batches)
        app.router.add_get(f"{p}/batches/{{batch_id}}", self._get_batch)
        app.router.add_post(f"{p}/batches/{{batch_id}}/cancel", self._cancel_batch)
        app.router.add_get("/_sim/stats", self._sim_stats)
        app.router.add_post("/_sim/settings", self._sim_settings)
        app.router.add_post("/_sim/reset", self._sim_reset)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = OS-chosen) and return the API base URL."""
        self._load_state()
        self._started_at = self._clock()
        # A short shutdown timeout: hanging handlers are woken by `_closing` anyway.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}{API_PREFIX}"
        return self.base_url

    async def close(self) -> None:
        """Stop listening; hanging requests are released so shutdown is quick and clean."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reset_stats(self) -> None:
        self.stats = SimStats()

    def current_limit(self) -> int | None:
        """The hidden concurrency limit now: the latest limit_schedule step, else max_in_flight."""
        limit = self.settings.max_in_flight
        schedule = self.settings.limit_schedule
        if schedule:
            elapsed = self._clock() - self._started_at
            for at_s, step_limit in schedule:
                if at_s <= elapsed:
                    limit = step_limit
                else:
                    break
        return limit

    # -- helpers ---------------------------------------------------------------------

    def _error(self, status: int, code: str, message: str) -> web.Response:
        headers = None
        if status == 429:
            self.stats.throttled += 1
            if self.settings.retry_after_s is not None:
                headers = {"Retry-After": f"{self.settings.retry_after_s:g}"}
        return web.Response(
            body=_error_body(code, message), status=status, content_type=_JSON, headers=headers
        )

    def _auth_failed(self, request: web.Request) -> web.Response | None:
        if self.settings.require_jwt is not None:
            return self._jwt_failed(request.headers.get("Authorization", ""))
        key = self.settings.require_key
        if key is None or request.headers.get("Authorization") == f"Bearer {key}":
            return None
        return self._error(401, "1000", "Authentication failed (simulated)")

    def _jwt_failed(self, header: str) -> web.Response | None:
        """Verify an HS256 token per glm-api.md §1 (ms times, sign_type SIGN); 1003 when expired."""
        import jwt

        from runner.api.auth import quiet_jwt

        key = self.settings.require_jwt or ""
        key_id, _, secret = key.partition(".")
        token = header.removeprefix("Bearer ")
        try:
            head = jwt.get_unverified_header(token)
            with quiet_jwt():
                claims = jwt.decode(
                    token, secret, algorithms=["HS256"], options={"verify_exp": False}
                )
        except jwt.PyJWTError:
            return self._error(401, "1002", "Invalid token (simulated)")
        if head.get("sign_type") != "SIGN" or claims.get("api_key") != key_id:
            return self._error(401, "1004", "Token verification failed (simulated)")
        expired = not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time() * 1000
        if self.settings.expire_tokens > 0:
            self.settings.expire_tokens -= 1
            expired = True
        if expired:
            self.stats.expired_tokens += 1
            return self._error(401, "1003", "Token expired (simulated)")
        return None

    def _next_id(self) -> str:
        self._seq += 1
        return str(self._id_base + self._seq)

    def _completion(
        self,
        body: Mapping[str, Any],
        urls: list[str],
        text_len: int,
        finish_reason: str = "stop",
        content: str | None = None,
    ) -> dict[str, Any]:
        cid = self._next_id()
        prompt_tokens = 1000 * len(urls) + text_len // 2
        completion_tokens = self.settings.completion_tokens
        request_id = body.get("request_id")
        answer = {
            "id": cid,
            "request_id": request_id if isinstance(request_id, str) else cid,
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish_reason,
                    "message": {
                        "role": "assistant",
                        "content": expected_content(urls) if content is None else content,
                    },
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if (
            self.settings.url_answers
            and urls
            and urls[0] in self.settings.url_answers
            and content is None
        ):
            _apply_answer(answer, self.settings.url_answers[urls[0]])
        return answer

    async def _drop(self, request: web.Request) -> web.Response:
        """Close the socket without answering; the client sees a disconnect."""
        if request.transport is not None:
            request.transport.close()
        await asyncio.sleep(0)
        return web.Response(status=204)

    async def _hang(self, request: web.Request) -> web.Response:
        """Never answer (until hang_s or simulator close), so the client's timeout fires."""
        try:
            await asyncio.wait_for(self._closing.wait(), self.settings.hang_s)
        except TimeoutError:
            pass
        return await self._drop(request)

    async def _trickle(self, request: web.Request, payload: bytes) -> web.StreamResponse:
        """Send a whole, valid answer slowly: 16 pieces spread over trickle_s."""
        resp = web.StreamResponse(headers={"Content-Type": _JSON})
        resp.content_length = len(payload)
        await resp.prepare(request)
        pieces = 16
        step = max(1, math.ceil(len(payload) / pieces))
        pause = self.settings.trickle_s / pieces
        for start in range(0, len(payload), step):
            await resp.write(payload[start : start + step])
            if self._closing.is_set():
                break
            await asyncio.sleep(pause)
        await resp.write_eof()
        return resp

    # -- chat ------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        stats = self.stats
        stats.requests += 1
        stats.chat_requests += 1
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return self._error(400, "1214", "Request body is not a JSON object")
        if self.settings.keep_bodies:
            stats.bodies.append(
                {"body": body, "authorization": request.headers.get("Authorization", "")}
            )
        urls, text_len = _extract(body)
        first_url = urls[0] if urls else ""
        stats.per_url[first_url] += 1
        denied = self._auth_failed(request)
        if denied is not None:
            return denied
        if not body.get("model") or not isinstance(body.get("model"), str):
            return self._error(400, "1214", "model: Input cannot be empty")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self._error(400, "1214", "messages: Input cannot be empty")
        scripted = self.settings.url_faults.get(first_url)
        if scripted:
            return await self._scripted(request, scripted.pop(0), body, urls, text_len)
        limit = self.current_limit()
        if limit is not None and stats.in_flight >= limit:
            return self._error(429, "1302", _ERRORS["429"][2])
        stats.in_flight += 1
        stats.max_in_flight_seen = max(stats.max_in_flight_seen, stats.in_flight)
        try:
            return await self._admitted(request, body, urls, text_len)
        finally:
            self.stats.in_flight -= 1

    async def _admitted(
        self, request: web.Request, body: dict[str, Any], urls: list[str], text_len: int
    ) -> web.StreamResponse:
        s = self.settings
        rng = self._rng
        fault = None
        if (
            s.error_500_rate
            or s.error_429_rate
            or s.drop_rate
            or s.hang_rate
            or s.bad_json_rate
            or s.no_choices_rate
        ):
            r = rng.random()
            for name, rate in (
                ("500", s.error_500_rate),
                ("429", s.error_429_rate),
                ("drop", s.drop_rate),
                ("hang", s.hang_rate),
                ("badjson", s.bad_json_rate),
                ("nochoices", s.no_choices_rate),
            ):
                if r < rate:
                    fault = name
                    break
                r -= rate
        if fault in ("drop", "hang"):
            return await self._scripted(request, fault, body, urls, text_len)
        delay = s.latency_mean_s
        if s.latency_spread_s:
            delay += rng.uniform(-s.latency_spread_s, s.latency_spread_s)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None:
            return await self._scripted(request, fault, body, urls, text_len)
        if body.get("stream") is True:
            resp = await self._stream(request, self._completion(body, urls, text_len))
        else:
            resp = _json(self._completion(body, urls, text_len))
        self.stats.chat_ok += 1
        return resp

    async def _scripted(
        self, request: web.Request, fault: str, body: dict[str, Any], urls: list[str], text_len: int
    ) -> web.StreamResponse:
        """Answer with one named fault (shared by url_faults and the random faults)."""
        if fault in _ERRORS:
            status, code, message = _ERRORS[fault]
            return self._error(status, code, message)
        if fault in _GATEWAY:
            html = f"<html><head><title>{fault} {_GATEWAY[fault]}</title></head><body>nginx</body></html>"
            return web.Response(text=html, status=int(fault), content_type="text/html")
        if fault == "429noretry":
            # A 429 without Retry-After even when retry_after_s is set.
            return web.Response(
                body=_error_body("1302", _ERRORS["429"][2]), status=429, content_type=_JSON
            )
        if fault == "error200":
            # HTTP 200 whose body is an error object (proxies and some gateways do this).
            return _json(
                {"error": {"code": "1234", "message": "Network error (simulated), try again later"}}
            )
        if fault == "trickle":
            return await self._trickle(
                request, orjson.dumps(self._completion(body, urls, text_len))
            )
        if fault == "drop":
            return await self._drop(request)
        if fault == "hang":
            return await self._hang(request)
        if fault == "badjson":
            full = orjson.dumps(self._completion(body, urls, text_len))
            return web.Response(body=full[: len(full) // 2], content_type=_JSON)
        if fault == "nochoices":
            answer = self._completion(body, urls, text_len)
            del answer["choices"]
            return _json(answer)
        if fault == "sensitive":
            return _json(self._completion(body, urls, text_len, "sensitive", ""))
        if fault == "network_error":
            return _json(self._completion(body, urls, text_len, "network_error", ""))
        if fault == "length":
            return _json(self._completion(body, urls, text_len, "length"))
        raise AssertionError(f"unhandled fault {fault!r}")

    async def _stream(self, request: web.Request, answer: dict[str, Any]) -> web.StreamResponse:
        """SSE per glm-api.md §2.3: content in a few deltas, the last with finish_reason+usage."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        choice = answer["choices"][0]
        content: str = choice["message"]["content"]
        cut = max(1, len(content) // 3)
        pieces = [content[:cut], content[cut : 2 * cut], content[2 * cut :]]
        head = {"id": answer["id"], "created": answer["created"], "model": answer["model"]}
        for piece in pieces:
            chunk = {
                **head,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}}],
            }
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        last = {
            **head,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": choice["finish_reason"],
                    "delta": {"role": "assistant", "content": ""},
                }
            ],
            "usage": answer["usage"],
        }
        await resp.write(b"data: " + orjson.dumps(last) + b"\n\ndata: [DONE]\n\n")
        await resp.write_eof()
        return resp

    # -- files -----------------------------------------------------------------------

    def _new_file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        now = time.time()
        file_id = f"{int(now)}_{random.Random().getrandbits(128):032x}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(now),
            "filename": filename,
            "purpose": purpose,
            "_seq": time.time_ns(),
        }
        self._files[file_id] = meta
        self._contents[file_id] = content
        if self.state_dir is not None:
            folder = self.state_dir / "files"
            folder.mkdir(parents=True, exist_ok=True)
            _atomic_write(folder / f"{file_id}.bin", content)
            _atomic_write(folder / f"{file_id}.json", orjson.dumps(meta))
        return meta

    def _remove_file(self, file_id: str) -> None:
        self._files.pop(file_id, None)
        self._contents.pop(file_id, None)
        if self.state_dir is not None:
            for suffix in (".json", ".bin"):
                (self.state_dir / "files" / f"{file_id}{suffix}").unlink(missing_ok=True)

    @staticmethod
    def _public(meta: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in meta.items() if not k.startswith("_")}

    def _file_or_404(self, file_id: str) -> dict[str, Any]:
        meta = self._files.get(file_id)
        if meta is None:
            raise _ApiError(404, "1214", f"file {file_id} not found")
        return meta

    async def _upload_file(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        denied = self._auth_failed(request)
        if denied is not None:
            return denied
        content, filename, purpose = b"", "", ""
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                filename = part.filename or "upload"
                content = await part.read()
            elif part.name == "purpose":
                purpose = (await part.text()).strip()
        if not purpose:
            return self._error(400, "1214", "purpose: Input cannot be empty")
        if purpose == "batch":
            try:
                lines = _check_batch_file(filename, content)
            except _ApiError as exc:
                return self._error(exc.status, exc.code, exc.message)
            self.stats.batch_lines_received += lines
        meta = self._new_file(bytes(content), filename, purpose)
        self.stats.files_uploaded += 1
        return _json(self._public(meta))

    async def _list_files(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        denied = self._auth_failed(request)
        if denied is not None:
            return denied
        purpose = request.query.get("purpose")
        items = [m for m in self._files.values() if purpose is None or m["purpose"] == purpose]
        items.sort(key=lambda m: m["_seq"], reverse=request.query.get("order") != "asc")
        try:
            page, has_more = _page(items, request.query)
        except _ApiError as exc:
            return self._error(exc.status, exc.code, exc.message)
        return _json(
            {"object": "list", "data": [self._public(m) for m in page], "has_more": has_more}
        )

    async def _get_file(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        denied = self._auth_failed(request)
        if denied is not None:
            return denied
        try:
            meta = self._file_or_404(request.match_info["file_id"])
        except _ApiError as exc:
            return self._error(exc.status, exc.code, exc.message)
        return _json(self._public(meta))

    async def _file_content(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        denied = self._auth_failed(request)
        if denied is not None:
            return denied
        file_id = request.match_info["file_id"]
        try:
            self._file_or_404(file_id)
        except _ApiError as exc:
            return self._error(exc.status, exc.code, exc.message)
        return web.Response(body=self._contents[file_id], content_type="application/octet-stream")

    async def _delete_file(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        denied = self._auth_failed(request)
        if denied is not None:
            return denied
        file_id = request.match_info["file_id"]
        try:
            self._file_or_404(file_id)
        except _ApiError as exc:
            return self._error(exc.status, exc.code, exc.message)
        self._remove_file(file_id)
        self.stats.files_deleted += 1
        return _json({"id": file_id, "object": "file", "deleted": True})

    # -- batches ---------------------------------------------------------------------

    async def _create_batch(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        denied = self._auth_failed(request)
        if denied is not None:
            return denied
        try:
            body = orjson.loads(await request.read())
            if not isinstance(body, dict):
                raise _ApiError(400, "1214", "Request body is not a JSON object")
            batch = self._new_batch(body)
        except orjson.JSONDecodeError:
            return self._error(400, "1214", "Request body is not JSON")
        except _ApiError as exc:
            return self._error(exc.status, exc.code, exc.message)
        self.stats.batches_created += 1
        return _json(self._batch_view(batch))

    def _new_batch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create the stored batch record, fixing every line's fate now (seeded, reproducible)."""
        endpoint = body.get("endpoint")
        if endpoint not in ("/v4/chat/completions", "/v1/chat/completions"):
            raise _ApiError(400, "1214", f"endpoint: unsupported value {endpoint!r}")
        input_id = body.get("input_file_id")
        if not isinstance(input_id, str) or input_id not in self._files:
            raise _ApiError(404, "1214", f"input_file_id {input_id!r} not found")
        s = self.settings
        lines: list[list[Any]] = []
        model = None
        for raw in self._contents[input_id].splitlines():
            if not raw.strip():
                continue
            line = orjson.loads(raw)
            line_body = line.get("body") or {}
            model = model or line_body.get("model")
            urls, text_len = _extract(line_body)
            fate = s.batch_line_faults.get(urls[0] if urls else "")
            if fate is None:
                fate = "ok"
                if s.batch_line_failure_rate and self._rng.random() < s.batch_line_failure_rate:
                    fate = "500"
            rid = line_body.get("request_id")
            lines.append([line["custom_id"], fate, urls, text_len, rid])
        now_wall = int(time.time())
        batch_id = f"batch_{max(time.time_ns(), self._last_batch_num() + 1)}"
        metadata = body.get("metadata")
        batch: dict[str, Any] = {
            "id": batch_id,
            "endpoint": endpoint,
            "input_file_id": input_id,
            "completion_window": body.get("completion_window"),
            "metadata": metadata if isinstance(metadata, dict) else None,
            "auto_delete_input_file": body.get("auto_delete_input_file", True) is not False,
            "created_at": now_wall,
            "t0": self._clock(),
            "durations": [s.batch_validating_s, s.batch_in_progress_s, s.batch_finalizing_s],
            "final_status": s.batch_final_status,
            "partial_fraction": s.batch_partial_fraction,
            "model": model,
            "lines": lines,
            "cancel_t": None,
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "materialized": False,
            "input_deleted": False,
        }
        self._batches[batch_id] = batch
        self._save_batch(batch)
        return batch

    def _last_batch_num(self) -> int:
        return max((int(b[6:]) for b in self._batches), default=0)

    def _status(self, batch: Mapping[str, Any], now: float) -> tuple[str, float, dict[str, float]]:
        """Lifecycle status at clock time `now`, progress in [0, 1] and phase start offsets."""
        v, p, f = batch["durations"]
        elapsed = now - batch["t0"]
        final = batch["final_status"]
        cancel_t = batch["cancel_t"]
        if cancel_t is not None:
            at = {"cancelling": cancel_t - batch["t0"]}
            if elapsed >= at["cancelling"] + f:
                at["cancelled"] = at["cancelling"] + f
                return "cancelled", 1.0, at
            return "cancelling", 1.0, at
        if elapsed < v:
            return "validating", 0.0, {}
        if final == "failed":
            return "failed", 0.0, {"failed": v}
        at = {"in_progress": v}
        if elapsed < v + p:
            return "in_progress", (elapsed - v) / p if p > 0 else 1.0, at
        at["finalizing"] = v + p
        if elapsed < v + p + f:
            return "finalizing", 1.0, at
        at[final] = v + p + f
        return final, 1.0, at

    def _refresh(self, batch: dict[str, Any]) -> tuple[str, float, dict[str, float]]:
        """Compute the status and, the first time it allows, write the result files."""
        status, progress, at = self._status(batch, self._clock())
        changed = False
        if not batch["materialized"] and status in ("finalizing", *_TERMINAL):
            self._materialize(batch, status)
            changed = True
        if status in _TERMINAL and batch["auto_delete_input_file"] and not batch["input_deleted"]:
            self._remove_file(batch["input_file_id"])
            batch["input_deleted"] = True
            changed = True
        if changed:
            self._save_batch(batch)
        return status, progress, at

    def _processed(self, batch: Mapping[str, Any]) -> list[list[Any]]:
        """Lines that got a result: all, or the first fraction for expired/cancelled."""
        lines: list[list[Any]] = batch["lines"]
        if batch["cancel_t"] is not None or batch["final_status"] in ("expired", "cancelled"):
            return lines[: int(len(lines) * batch["partial_fraction"])]
        return lines

    def _materialize(self, batch: dict[str, Any], status: str) -> None:
        batch["materialized"] = True
        if status == "failed":
            batch["errors"] = {
                "object": "list",
                "data": [
                    {
                        "code": "1210",
                        "line": 1,
                        "param": None,
                        "message": "Batch input file failed validation (simulated)",
                    }
                ],
            }
            return
        out: list[bytes] = []
        err: list[bytes] = []
        for cid, fate, urls, text_len, rid in self._processed(batch):
            if fate in ("ok", "duplicate"):
                body = {"model": batch["model"], "request_id": rid}
                line = {
                    "response": {
                        "status_code": 200,
                        "body": self._completion(body, urls, text_len),
                    },
                    "custom_id": cid,
                    "id": batch["id"],
                }
                out.append(orjson.dumps(line))
                if fate == "duplicate":
                    line["response"]["body"] = self._completion(body, urls, text_len)
                    out.append(orjson.dumps(line))
            elif fate in _ERRORS:
                err.append(orjson.dumps(self._error_line(batch["id"], cid, fate)))
        self._rng.shuffle(out)
        if out:
            batch["output_file_id"] = self._new_file(
                b"\n".join(out) + b"\n", f"{batch['id']}_output.jsonl", "batch"
            )["id"]
        if err:
            batch["error_file_id"] = self._new_file(
                b"\n".join(err) + b"\n", f"{batch['id']}_error.jsonl", "batch"
            )["id"]

    def _error_line(self, batch_id: str, custom_id: str, fate: str) -> dict[str, Any]:
        status, code, message = _ERRORS[fate]
        if self.settings.error_envelope == "openai":
            return {
                "custom_id": custom_id,
                "id": batch_id,
                "error": {"code": code, "message": message},
                "response": None,
            }
        return {
            "response": {
                "status_code": status,
                "body": {"error": {"code": code, "message": message}},
            },
            "custom_id": custom_id,
            "id": batch_id,
        }

    def _counts(self, batch: Mapping[str, Any], status: str, progress: float) -> dict[str, int]:
        lines = batch["lines"]
        if status in ("validating", "failed"):
            return {"total": len(lines), "completed": 0, "failed": 0}
        processed = self._processed(batch)
        ok = sum(1 for line in processed if line[1] in ("ok", "duplicate"))
        bad = sum(1 for line in processed if line[1] in _ERRORS)
        return {
            "total": len(lines),
            "completed": math.floor(ok * progress),
            "failed": math.floor(bad * progress),
        }

    def _batch_view(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The public batch object (glm-api.md §5.3) at the current clock time."""
        status, progress, at = self._refresh(batch)
        created = batch["created_at"]
        view: dict[str, Any] = {
            "id": batch["id"],
            "object": "batch",
            "endpoint": batch["endpoint"],
            "input_file_id": batch["input_file_id"],
            "completion_window": batch["completion_window"],
            "status": status,
            "output_file_id": batch["output_file_id"],
            "error_file_id": batch["error_file_id"],
            "created_at": created,
            "expires_at": created + 86400,
        }
        for name in (
            "in_progress",
            "finalizing",
            "completed",
            "failed",
            "expired",
            "cancelling",
            "cancelled",
        ):
            offset = at.get(name)
            view[f"{name}_at"] = None if offset is None else created + round(offset)
        counts = self._counts(batch, status, progress)
        if self.settings.request_counts_shape == "flat":
            view.update(counts)
        else:
            view["request_counts"] = counts
        view["errors"] = batch["errors"]
        view["metadata"] = batch["metadata"]
        return view

    def _batch_or_404(self, batch_id: str) -> dict[str, Any]:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise _ApiError(404, "1214", f"batch {batch_id} not found")
        return batch

    async def _get_batch(self, request: web.Request) -> web.Response:
        self.stats.requests += 1
        denied = self._auth_failed(request)
        if denied is not None:
            return denied
        try:
            batch = self._batch_or_404(request.match_info["batch_id"])
        except _ApiError as exc:
            return self._error(exc.status, exc.code, exc.message)
        return _json(self._batch_view(batch))

    async def _cancel_batch(self, request: web.Request) -> web.Response:
        """Cancelling lasts batch_finalizing_s, then the first partial fraction has results."""
        self.stats.requests += 1
        denied = self._auth_failed(request)
        if denied is not None:
            return denied
        try:
            batch = self._batch_or_404(request.match_info["batch_id"])
        except _ApiError as exc:
            return self._error(exc.status, exc.code, exc.message)
        status, _, _ = self._refresh(batch)
        if status in ("validating", "in_progress"):
            batch["cancel_t"] = self._clock()
            self._save_batch(batch)
            self.stats.batches_cancelled += 1
        return _json(self._batch_view(batch))

    async def _list_batches(self, request: web.Request) -> web.Response:
        """Newest first; `after` is the last id of the previous page."""
        self.stats.requests += 1
        denied = self._auth_failed(request)
        if denied is not None:
            return denied
        items = sorted(self._batches.values(), key=lambda b: int(b["id"][6:]), reverse=True)
        try:
            page, has_more = _page(items, request.query)
        except _ApiError as exc:
            return self._error(exc.status, exc.code, exc.message)
        data = [self._batch_view(b) for b in page]
        return _json(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": has_more,
            }
        )

    # -- persistence -----------------------------------------------------------------

    def _save_batch(self, batch: Mapping[str, Any]) -> None:
        if self.state_dir is None:
            return
        folder = self.state_dir / "batches"
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / f"{batch['id']}.json", orjson.dumps(batch))

    def _load_state(self) -> None:
        """Pick up files and batches a previous process left in state_dir."""
        if self.state_dir is None:
            return
        for meta_path in sorted((self.state_dir / "files").glob("*.json")):
            meta = orjson.loads(meta_path.read_bytes())
            content_path = meta_path.with_suffix(".bin")
            if content_path.exists():
                self._files[meta["id"]] = meta
                self._contents[meta["id"]] = content_path.read_bytes()
        for batch_path in sorted((self.state_dir / "batches").glob("*.json")):
            batch = orjson.loads(batch_path.read_bytes())
            self._batches[batch["id"]] = batch

    # -- control ---------------------------------------------------------------------

    async def _sim_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats.snapshot())

    async def _sim_settings(self, request: web.Request) -> web.Response:
        """Merge a JSON object into the live settings, so another process can turn knobs."""
        try:
            update = orjson.loads(await request.read())
            if not isinstance(update, dict):
                raise TypeError("settings update must be a JSON object")
            _merge_settings(self.settings, update)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            return self._error(400, "1214", str(exc))
        if "seed" in update:
            self._rng.seed(self.settings.seed)
        return _json(dataclasses.asdict(self.settings))

    async def _sim_reset(self, request: web.Request) -> web.Response:
        """Zero the counters and restart the limit_schedule clock (a benchmark's t=0)."""
        self.reset_stats()
        self._started_at = self._clock()
        return _json({"ok": True})


def _check_batch_file(filename: str, content: bytes) -> int:
    """Validate a purpose=batch upload like the real API (code 1210) and count its lines."""
    if not filename.endswith(".jsonl"):
        raise _ApiError(400, "1210", f"file {filename!r}: only .jsonl files are accepted")
    seen: set[str] = set()
    count = 0
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _ApiError(400, "1210", f"line {number}: not valid JSON") from None
        if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
            raise _ApiError(400, "1210", f"line {number}: expected an object with a body")
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise _ApiError(400, "1210", f"line {number}: custom_id missing")
        if custom_id in seen:
            raise _ApiError(400, "1210", f"line {number}: duplicate custom_id {custom_id!r}")
        seen.add(custom_id)
        count += 1
    if count == 0:
        raise _ApiError(400, "1210", "file contains no requests")
    return count


def _page(
    items: list[dict[str, Any]], query: Mapping[str, str]
) -> tuple[list[dict[str, Any]], bool]:
    """Cursor paging shared by files and batches: items after the `after` id, up to limit."""
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise _ApiError(400, "1214", "limit: expected an integer") from None
    if not 1 <= limit <= 100:
        raise _ApiError(400, "1214", f"limit: expected 1..100, found {limit}")
    after = query.get("after")
    if after:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
        items = items[start:]
    return items[:limit], len(items) > limit


def serve(host: str, port: int, settings: SimSettings, state_dir: Path | None = None) -> None:
    """Run the simulator standalone until SIGINT/SIGTERM (`glmrun simulate --port P`)."""

    async def main() -> None:
        sim = Simulator(settings, state_dir=state_dir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        base_url = await sim.start(host, port)
        print(f"simulator listening on {base_url}", flush=True, file=sys.stdout)
        try:
            await stop.wait()
        finally:
            await sim.close()

    asyncio.run(main())
