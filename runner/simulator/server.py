"""The simulator as a server: builds the aiohttp app and its routes, starts and stops it, and
runs the one middleware every API request passes through (count it, check its credentials,
apply the `control_faults` of a files/batches call (simulator/faults.py), turn a raised
`ApiError` into the GLM error answer). Also the `/_sim/*` control endpoints and
`serve()` for `glmrun simulate`.

It backs `base_url: simulator`, the engine tests and the benchmarks, so it must be both
honest (shapes from glm-api.md §2, §4, §5, §6) and cheap: benchmarks push thousands of
requests per second through it, hence no per-request logging and orjson everywhere.
With `state_dir` the lifecycle clock defaults to wall time so batches survive restarts; an
explicitly passed clock still wins (tests use a fake one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import AbstractResource, AbstractRoute

from runner.simulator.batches import BatchesApi
from runner.simulator.chat import ChatApi
from runner.simulator.faults import pick_fault
from runner.simulator.files import FilesApi, FileStore
from runner.simulator.replies import JSON, ApiError, error_body, json_response
from runner.simulator.settings import SimSettings, SimStats, merge_settings
from runner.simulator.state import SimState

API_PREFIX = "/api/paas/v4"


class Simulator(SimState):
    """The fake server. Construct, `await start()`, use `base_url`, `await close()`.

    It is the state its handlers share (settings, stats, clock...), so `sim.settings` and
    `sim.stats` are the live objects every handler reads.
    """

    def __init__(
        self,
        settings: SimSettings | None = None,
        *,
        clock: Callable[[], float] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        settings = settings if settings is not None else SimSettings()
        settings.validate()
        state_dir = Path(state_dir) if state_dir is not None else None
        if clock is None:
            clock = time.time if state_dir is not None else time.monotonic
        super().__init__(settings, clock, state_dir)
        self._files = FileStore(state_dir)
        self._chat = ChatApi(self)
        self._files_api = FilesApi(self, self._files)
        self._batches = BatchesApi(self, self._files)
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        # Filled by _make_app: which resources are API traffic, and chat's count-before-auth.
        self._api_resources: set[AbstractResource] = set()
        self._count_first: dict[AbstractRoute, Callable[[web.Request], Awaitable[None]]] = {}
        self._kinds: dict[AbstractRoute, str] = {}  # control-plane call kind per route
        self.app = self._make_app()

    def __repr__(self) -> str:
        return (
            f"<Simulator {self.base_url or 'not started'} in_flight={self.stats.in_flight}"
            f" requests={self.stats.requests} batches={len(self._batches.batches)}>"
        )

    # -- lifecycle -------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._middleware])
        p = API_PREFIX
        chat, files, batches = self._chat, self._files_api, self._batches
        chat_route = app.router.add_post(f"{p}/chat/completions", chat.answer)
        self._count_first[chat_route] = chat.count
        control = {
            "upload": web.post(f"{p}/files", files.upload),
            "list_files": web.get(f"{p}/files", files.list_files),
            "file_content": web.get(f"{p}/files/{{file_id}}/content", files.get_content),
            "delete_file": web.delete(f"{p}/files/{{file_id}}", files.delete_file),
            "get_file": web.get(f"{p}/files/{{file_id}}", files.get_file),
            "create": web.post(f"{p}/batches", batches.create),
            "list": web.get(f"{p}/batches", batches.list_batches),
            "retrieve": web.get(f"{p}/batches/{{batch_id}}", batches.get_batch),
            "cancel": web.post(f"{p}/batches/{{batch_id}}/cancel", batches.cancel),
        }
        api_routes = app.add_routes(list(control.values()))
        self._kinds = dict(zip(api_routes, control, strict=True))
        for route in (chat_route, *api_routes):
            if route.resource is not None:
                self._api_resources.add(route.resource)
        app.router.add_get("/_sim/stats", self._sim_stats)
        app.router.add_post("/_sim/settings", self._sim_settings)
        app.router.add_post("/_sim/reset", self._sim_reset)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = OS-chosen) and return the API base URL."""
        self._files.load()  # what a previous process left in state_dir
        self._batches.load()
        self.started_at = self.clock()
        # A short shutdown timeout: hanging handlers are woken by `closing` anyway.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound_port}{API_PREFIX}"
        return self.base_url

    async def close(self) -> None:
        """Stop listening; hanging requests are released so shutdown is quick and clean."""
        self.closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reset_stats(self) -> None:
        self.stats = SimStats()

    def current_limit(self) -> int | None:
        """The hidden concurrency limit now: the latest limit_schedule step, else max_in_flight."""
        return self._chat.current_limit()

    # -- the middleware: count, auth, error answers ----------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count and authenticate every API request, then run its handler; an ApiError raised
        on the way becomes the GLM error answer. `/_sim/*` and unknown paths are not traffic."""
        try:
            route = request.match_info.route
            if route.resource in self._api_resources:
                self.stats.requests += 1
                count_first = self._count_first.get(route)
                if count_first is not None:
                    await count_first(request)
                self._authenticate(request)
            kind = self._kinds.get(route)
            if kind is not None:
                return await self._control_call(request, handler, kind)
            return await handler(request)
        except ApiError as exc:
            return self._error_response(exc)

    async def _control_call(
        self, request: web.Request, handler: Handler, kind: str
    ) -> web.StreamResponse:
        """A files/batches call: count it, then apply the first `control_faults` rule it hits."""
        stats = self.stats
        stats.calls[kind] += 1
        stats.call_times.append((kind, self.clock()))
        fault = None
        if self.settings.control_faults:
            fault = pick_fault(self.settings.control_faults, kind, stats.calls[kind], self.rng)
        if fault is None:
            return await handler(request)
        if not fault.lose:
            stats.faults_injected += 1
            raise ApiError(fault.status, fault.code, fault.message)
        await handler(request)  # performed; the answer never reaches the client
        stats.answers_lost += 1
        if request.transport is not None:
            request.transport.close()
        await asyncio.sleep(0)
        return web.Response(status=204)

    def _error_response(self, exc: ApiError) -> web.Response:
        """`{"error": {"code", "message"}}`; a 429 counts as throttled and gets Retry-After."""
        headers = None
        if exc.status == 429:
            self.stats.throttled += 1
            if self.settings.retry_after_s is not None:
                headers = {"Retry-After": f"{self.settings.retry_after_s:g}"}
        return web.Response(
            body=error_body(exc.code, exc.message),
            status=exc.status,
            content_type=JSON,
            headers=headers,
        )

    def _authenticate(self, request: web.Request) -> None:
        """Raise the 401 for a wrong key: `require_jwt` wants a JWT, else `require_key` a key."""
        if self.settings.require_jwt is not None:
            self._check_jwt(request.headers.get("Authorization", ""))
            return
        key = self.settings.require_key
        if key is not None and request.headers.get("Authorization") != f"Bearer {key}":
            raise ApiError(401, "1000", "Authentication failed (simulated)")

    def _check_jwt(self, header: str) -> None:
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
            raise ApiError(401, "1002", "Invalid token (simulated)") from None
        if head.get("sign_type") != "SIGN" or claims.get("api_key") != key_id:
            raise ApiError(401, "1004", "Token verification failed (simulated)")
        expired = not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time() * 1000
        if self.settings.expire_tokens > 0:
            self.settings.expire_tokens -= 1
            expired = True
        if expired:
            self.stats.expired_tokens += 1
            raise ApiError(401, "1003", "Token expired (simulated)")

    # -- control ---------------------------------------------------------------------

    async def _sim_stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats.snapshot())

    async def _sim_settings(self, request: web.Request) -> web.Response:
        """Merge a JSON object into the live settings, so another process can turn knobs."""
        try:
            update = orjson.loads(await request.read())
            if not isinstance(update, dict):
                raise TypeError("settings update must be a JSON object")
            merge_settings(self.settings, update)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            raise ApiError(400, "1214", str(exc)) from None
        if "seed" in update:
            self.rng.seed(self.settings.seed)
        return json_response(dataclasses.asdict(self.settings))

    async def _sim_reset(self, request: web.Request) -> web.Response:
        """Zero the counters and restart the limit_schedule clock (a benchmark's t=0)."""
        self.reset_stats()
        self.started_at = self.clock()
        return json_response({"ok": True})


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
