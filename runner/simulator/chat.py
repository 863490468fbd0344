"""POST /chat/completions: the hidden concurrency cap, latency, random and scripted faults,
and the answer itself (JSON or SSE stream).

Benchmarks push thousands of requests per second through this path, so it logs nothing and
draws a random number only when a fault rate is non-zero. The concurrency limit is global,
not per model.
"""

from __future__ import annotations

import asyncio
import math
from contextvars import ContextVar
from typing import Any

import orjson
from aiohttp import web

from runner.simulator.completions import build_completion, extract
from runner.simulator.replies import JSON, ApiError, error_body, json_response
from runner.simulator.settings import ERRORS, GATEWAY
from runner.simulator.state import SimState

# The body as `count` read it, for `answer`: the middleware awaits both in the request's own
# task, so a contextvar holds it per request. Not `request["..."]`: aiohttp 3.14 warns on string
# keys, and its typed web.RequestKey does not exist in the aiohttp>=3.9 we support.
_Parsed = tuple[dict[str, Any], list[str], int]
_parsed: ContextVar[_Parsed] = ContextVar("sim_chat_request")

_RANDOM_FAULTS = ("500", "429", "drop", "hang", "badjson", "nochoices")


class ChatApi:
    """Chat completions over the shared state; `count` runs before auth, `answer` after."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def current_limit(self) -> int | None:
        """The hidden concurrency limit now: the latest limit_schedule step, else max_in_flight."""
        limit = self.state.settings.max_in_flight
        schedule = self.state.settings.limit_schedule
        if schedule:
            elapsed = self.state.clock() - self.state.started_at
            for at_s, step_limit in schedule:
                if at_s <= elapsed:
                    limit = step_limit
                else:
                    break
        return limit

    async def count(self, request: web.Request) -> None:
        """Count the request per first URL (and keep its body) before auth, so a test sees
        what a rejected client sent too; a body that is not a JSON object is a 400 first."""
        stats = self.state.stats
        stats.chat_requests += 1
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "1214", "Request body is not a JSON object")
        if self.state.settings.keep_bodies:
            stats.bodies.append(
                {"body": body, "authorization": request.headers.get("Authorization", "")}
            )
        urls, text_len = extract(body)
        stats.per_url[urls[0] if urls else ""] += 1
        _parsed.set((body, urls, text_len))

    async def answer(self, request: web.Request) -> web.StreamResponse:
        body, urls, text_len = _parsed.get()
        if not body.get("model") or not isinstance(body.get("model"), str):
            raise ApiError(400, "1214", "model: Input cannot be empty")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            raise ApiError(400, "1214", "messages: Input cannot be empty")
        scripted = self.state.settings.url_faults.get(urls[0] if urls else "")
        if scripted:
            return await self._scripted(request, scripted.pop(0), body, urls, text_len)
        stats = self.state.stats
        limit = self.current_limit()
        if limit is not None and stats.in_flight >= limit:
            raise ApiError(429, "1302", ERRORS["429"][2])
        stats.in_flight += 1
        stats.max_in_flight_seen = max(stats.max_in_flight_seen, stats.in_flight)
        try:
            return await self._admitted(request, body, urls, text_len)
        finally:
            self.state.stats.in_flight -= 1

    def _random_fault(self) -> str | None:
        """One draw over the fault rates (none at all when every rate is zero)."""
        s = self.state.settings
        rates = (
            s.error_500_rate,
            s.error_429_rate,
            s.drop_rate,
            s.hang_rate,
            s.bad_json_rate,
            s.no_choices_rate,
        )
        if not any(rates):
            return None
        r = self.state.rng.random()
        for name, rate in zip(_RANDOM_FAULTS, rates, strict=True):
            if r < rate:
                return name
            r -= rate
        return None

    async def _admitted(
        self, request: web.Request, body: dict[str, Any], urls: list[str], text_len: int
    ) -> web.StreamResponse:
        s = self.state.settings
        fault = self._random_fault()
        if fault in ("drop", "hang"):
            return await self._scripted(request, fault, body, urls, text_len)
        delay = s.latency_mean_s
        if s.latency_spread_s:
            delay += self.state.rng.uniform(-s.latency_spread_s, s.latency_spread_s)
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None:
            return await self._scripted(request, fault, body, urls, text_len)
        if body.get("stream") is True:
            resp = await self._stream(request, build_completion(self.state, body, urls, text_len))
        else:
            resp = json_response(build_completion(self.state, body, urls, text_len))
        self.state.stats.chat_ok += 1
        return resp

    async def _scripted(
        self, request: web.Request, fault: str, body: dict[str, Any], urls: list[str], text_len: int
    ) -> web.StreamResponse:
        """Answer with one named fault (shared by url_faults and the random faults)."""
        if fault in ERRORS:
            raise ApiError(*ERRORS[fault])
        if fault in GATEWAY:
            title = f"{fault} {GATEWAY[fault]}"
            html = f"<html><head><title>{title}</title></head><body>nginx</body></html>"
            return web.Response(text=html, status=int(fault), content_type="text/html")
        if fault == "429noretry":
            # A 429 without Retry-After even when retry_after_s is set.
            return web.Response(
                body=error_body("1302", ERRORS["429"][2]), status=429, content_type=JSON
            )
        if fault == "error200":
            # HTTP 200 whose body is an error object (proxies and some gateways do this).
            return json_response(
                {"error": {"code": "1234", "message": "Network error (simulated), try again later"}}
            )
        if fault == "trickle":
            return await self._trickle(
                request, orjson.dumps(build_completion(self.state, body, urls, text_len))
            )
        if fault == "drop":
            return await self._drop(request)
        if fault == "hang":
            return await self._hang(request)
        if fault == "badjson":
            full = orjson.dumps(build_completion(self.state, body, urls, text_len))
            return web.Response(body=full[: len(full) // 2], content_type=JSON)
        if fault == "nochoices":
            answer = build_completion(self.state, body, urls, text_len)
            del answer["choices"]
            return json_response(answer)
        if fault == "sensitive":
            return json_response(
                build_completion(self.state, body, urls, text_len, "sensitive", "")
            )
        if fault == "network_error":
            return json_response(
                build_completion(self.state, body, urls, text_len, "network_error", "")
            )
        if fault == "length":
            return json_response(build_completion(self.state, body, urls, text_len, "length"))
        raise AssertionError(f"unhandled fault {fault!r}")

    async def _drop(self, request: web.Request) -> web.Response:
        """Close the socket without answering; the client sees a disconnect."""
        if request.transport is not None:
            request.transport.close()
        await asyncio.sleep(0)
        return web.Response(status=204)

    async def _hang(self, request: web.Request) -> web.Response:
        """Never answer (until hang_s or simulator close), so the client's timeout fires."""
        try:
            await asyncio.wait_for(self.state.closing.wait(), self.state.settings.hang_s)
        except TimeoutError:
            pass
        return await self._drop(request)

    async def _trickle(self, request: web.Request, payload: bytes) -> web.StreamResponse:
        """Send a whole, valid answer slowly: 16 pieces spread over trickle_s."""
        resp = web.StreamResponse(headers={"Content-Type": JSON})
        resp.content_length = len(payload)
        await resp.prepare(request)
        pieces = 16
        step = max(1, math.ceil(len(payload) / pieces))
        pause = self.state.settings.trickle_s / pieces
        for start in range(0, len(payload), step):
            await resp.write(payload[start : start + step])
            if self.state.closing.is_set():
                break
            await asyncio.sleep(pause)
        await resp.write_eof()
        return resp

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
