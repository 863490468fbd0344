"""The only module that knows aiohttp: chat completions, files and batches over HTTP.

Every failure leaves as an ``ApiFailure`` (status, GLM business code, message, Retry-After),
chained to its cause, so the engines deal only in data and ``retry.classify``.
The API key is read from the ``Secret`` once, into the Authorization header, and is never
part of a message.
"""

from __future__ import annotations

import base64
import email.utils
import ipaddress
import time
import urllib.parse
import urllib.request
from typing import Any, Self

from runner.api.tls import wait_for_ca  # isort: skip - first: it imports aiohttp
import aiohttp
import orjson

from runner.api.auth import SIMULATOR_KEY, JwtAuth
from runner.clock import SYSTEM_CLOCK, Clock
from runner.config.schema import Secret
from runner.core.retry import finish_failure
from runner.errors import ApiFailure

JSON_HEADERS = {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}


def env_proxy(base_url: str) -> tuple[str | None, dict[str, str] | None]:
    """The proxy the environment names for ``base_url``: ``HTTPS_PROXY`` or ``HTTP_PROXY`` by
    its scheme (either case), and the ``Proxy-Authorization`` header its URL's credentials
    make (the proxy's URL is returned without them, for messages), unless
    ``NO_PROXY`` names the host. Looked up once for the run (aiohttp's ``trust_env`` looks at
    every request, on a thread); none for a loopback host, so the simulator and a local
    gateway are reached directly whatever the proxy variables say."""
    parts = urllib.parse.urlsplit(base_url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    if loopback or not proxy or urllib.request.proxy_bypass(host):
        return None, None
    where = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
    headers = None
    if where.username is not None:
        pair = (
            f"{urllib.parse.unquote(where.username)}:{urllib.parse.unquote(where.password or '')}"
        )
        headers = {"Proxy-Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
    bare = where._replace(netloc=where.netloc.rpartition("@")[2])
    return urllib.parse.urlunsplit(bare), headers


class GlmClient:
    """One aiohttp session and connection pool for the whole run."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret,
        *,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        max_connections: int = 256,
        auth: str = "bearer",
        jwt_ttl_s: float = 210.0,
        clock: Clock = SYSTEM_CLOCK,
    ):
        self.base_url = base_url.rstrip("/")
        self._jwt: JwtAuth | None = None
        if auth == "jwt":
            self._jwt = JwtAuth(
                api_key if api_key else Secret(SIMULATOR_KEY), ttl_s=jwt_ttl_s, clock=clock.time
            )
        self._auth = {"Authorization": f"Bearer {api_key.reveal() or 'simulator'}"}
        self._chat_headers = {**JSON_HEADERS, **self._auth}
        if self._jwt is not None:
            self._fresh_token()
        self._chat_url = self.base_url + "/chat/completions"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s)
        self._via = env_proxy(self.base_url)  # every request: (proxy, proxy_headers)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def proxy(self) -> str | None:
        """The proxy every request goes through (``env_proxy``), without its credentials."""
        return self._via[0]

    async def __aenter__(self) -> Self:
        self.session  # noqa: B018 - create it inside the running loop
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            wait_for_ca()  # aiohttp's TLS contexts are complete (runner.api.tls)
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def probe(self) -> None:
        """One GET of base_url without the key: any HTTP answer (even 404) means reachable.

        Raises ApiFailure(kind="connection") when the host does not resolve, refuses, or
        does not accept a connection within the connect timeout."""
        connect_s = self._timeout.connect or 10.0
        timeout = aiohttp.ClientTimeout(total=None, connect=connect_s, sock_read=connect_s)
        try:
            async with self.session.get(
                self.base_url + "/", timeout=timeout, proxy=self._via[0], proxy_headers=self._via[1]
            ) as resp:
                await resp.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # aiohttp's text says what happened ("Cannot connect to host x:443 [Name or service
            # not known]"); its class name is for a traceback, not for a person
            why = str(exc) or type(exc).__name__
            raise ApiFailure(None, None, why, kind="connection") from exc
        except (TimeoutError, aiohttp.ClientError):
            return  # something answered; per-request retries handle the rest

    # --- chat ----------------------------------------------------------------------------

    def _fresh_token(self) -> None:
        """JWT auth: swap in a new token when the cached one is close to expiry."""
        assert self._jwt is not None  # only called with JWT auth
        header = self._jwt.header()
        if header != self._auth["Authorization"]:
            self._auth = {"Authorization": header}
            self._chat_headers = {**JSON_HEADERS, **self._auth}

    def _token_expired(self, failure: ApiFailure) -> bool:
        """JWT auth and the API said 1003: mint a new token; the caller retries once."""
        if self._jwt is None or failure.code != "1003":
            return False
        self._jwt.invalidate()
        self._fresh_token()
        return True

    async def chat(self, body: bytes) -> dict[str, Any]:
        """POST one chat completion; return the parsed answer or raise ApiFailure."""
        if self._jwt is None:
            return await self._chat(body)
        self._fresh_token()
        try:
            return await self._chat(body)
        except ApiFailure as failure:
            if not self._token_expired(failure):
                raise
        return await self._chat(body)

    async def _chat(self, body: bytes) -> dict[str, Any]:
        try:
            async with self.session.post(
                self._chat_url,
                data=body,
                headers=self._chat_headers,
                proxy=self._via[0],
                proxy_headers=self._via[1],
            ) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError as exc:
            raise ApiFailure(None, None, "request timed out", kind="timeout") from exc
        except aiohttp.ClientError as exc:
            raise ApiFailure(
                None, None, f"connection error: {type(exc).__name__}", kind="connection"
            ) from exc
        if status != 200:
            raise failure_from_response(status, raw, retry_after)
        return parse_chat_response(raw)

    # --- files and batches -----------------------------------------------------------------

    async def request_json(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        """Any JSON endpoint under base_url; non-2xx answers raise ApiFailure."""
        raw = await self.request_bytes(
            method, path, headers={"Accept": "application/json", **(headers or {})}, **kwargs
        )
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiFailure(200, None, "answer is not JSON", kind="bad_json") from exc

    async def _request_object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """``request_json`` for the endpoints whose answer is a JSON object (not checked here)."""
        answer: dict[str, Any] = await self.request_json(method, path, **kwargs)
        return answer

    async def request_bytes(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> bytes:
        if self._jwt is None:
            return await self._request_bytes(method, path, headers=headers, **kwargs)
        self._fresh_token()
        try:
            return await self._request_bytes(method, path, headers=headers, **kwargs)
        except ApiFailure as failure:
            if isinstance(kwargs.get("data"), aiohttp.FormData) or not self._token_expired(failure):
                raise  # a multipart form cannot be sent twice; upload_file retries with a new one
        return await self._request_bytes(method, path, headers=headers, **kwargs)

    async def _request_bytes(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> bytes:
        url = self.base_url + path
        try:
            async with self.session.request(
                method,
                url,
                headers={**self._auth, **(headers or {})},
                proxy=self._via[0],
                proxy_headers=self._via[1],
                **kwargs,
            ) as resp:
                raw = await resp.read()
                if not 200 <= resp.status < 300:
                    raise failure_from_response(resp.status, raw, resp.headers.get("Retry-After"))
                return raw
        except TimeoutError as exc:
            raise ApiFailure(None, None, f"{method} {path} timed out", kind="timeout") from exc
        except aiohttp.ClientError as exc:
            raise ApiFailure(
                None,
                None,
                f"{method} {path}: connection error: {type(exc).__name__}",
                kind="connection",
            ) from exc

    async def upload_file(
        self, filename: str, content: bytes, purpose: str = "batch"
    ) -> dict[str, Any]:
        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("purpose", purpose)
            data.add_field("file", content, filename=filename, content_type="application/jsonl")
            return data

        try:
            return await self._request_object("POST", "/files", data=form())
        except ApiFailure as failure:
            if not self._token_expired(failure):
                raise
        return await self._request_object("POST", "/files", data=form())

    async def file_content(self, file_id: str) -> bytes:
        return await self.request_bytes(
            "GET", f"/files/{file_id}/content", headers={"Accept": "application/binary"}
        )

    async def delete_file(self, file_id: str) -> dict[str, Any]:
        return await self._request_object("DELETE", f"/files/{file_id}")

    async def create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request_object(
            "POST", "/batches", data=orjson.dumps(body), headers=JSON_HEADERS
        )

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._request_object("GET", f"/batches/{batch_id}")

    async def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        return await self._request_object("POST", f"/batches/{batch_id}/cancel")

    async def list_batches(self, *, after: str | None = None, limit: int = 20) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        return await self._request_object("GET", "/batches", params=params)

    def __repr__(self) -> str:
        return f"<GlmClient {self.base_url}>"


def parse_chat_response(raw: bytes) -> dict[str, Any]:
    """A 200 answer: JSON with choices, else a retryable ApiFailure; finish_reason checked."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiFailure(200, None, "answer is not JSON", kind="bad_json") from exc
    if not isinstance(data, dict):
        raise ApiFailure(200, None, "answer is not a JSON object", kind="bad_json")
    choices = data.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        error = data.get("error")
        if isinstance(error, dict):
            raise ApiFailure(200, _code(error), str(error.get("message") or "error"))
        raise ApiFailure(200, None, "answer has no choices", kind="no_choices")
    if not isinstance(choices[0].get("message", {}), dict):
        raise ApiFailure(200, None, "answer's choices[0].message is not an object", kind="bad_json")
    failure = finish_failure(choices[0].get("finish_reason"))
    if failure is not None:
        raise failure
    return data


def failure_from_response(status: int, raw: bytes, retry_after: str | None) -> ApiFailure:
    """Map a non-2xx answer to ApiFailure, reading {"error": {"code", "message"}} when present."""
    code: str | None = None
    message = raw[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            code = _code(error)
            if error.get("message"):
                message = str(error["message"])
    return ApiFailure(
        status, code, f"HTTP {status}: {message}", retry_after_s=parse_retry_after(retry_after)
    )


def _code(error: dict[str, Any]) -> str | None:
    code = error.get("code")
    if code is None:
        return None
    return str(code)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
