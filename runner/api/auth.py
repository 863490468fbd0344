"""The Authorization header: the API key as is (bearer), or a signed JWT (glm-api.md §1).

JWT: HS256 over ``{api_key: <id>, exp, timestamp}`` (milliseconds) with the header
``sign_type: SIGN``, signed with the key's ``<secret>`` part. A token lives ``ttl_s`` and is
replaced ``REFRESH_MARGIN_S`` before it lapses, so in-flight requests never carry a stale one;
the client also mints a new one and retries once when the API answers 1003 (expired).
The key stays inside its ``Secret``; neither the key nor a token reaches a message.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator

from runner.config.schema import Secret

REFRESH_MARGIN_S = 30.0
SIMULATOR_KEY = "simulator.simulator"


@contextlib.contextmanager
def quiet_jwt() -> Iterator[None]:
    """Zhipu secrets are shorter than the 32 bytes PyJWT >= 2.10 warns about; the format is theirs.

    (zhipuai pins PyJWT < 2.9, which has no such warning, so the class is looked up by name.)
    """
    import jwt

    category = getattr(jwt.warnings, "InsecureKeyLengthWarning", None)
    with warnings.catch_warnings():
        if category is not None:
            warnings.simplefilter("ignore", category)
        yield


def split_key(key: str) -> tuple[str, str] | None:
    """(<id>, <secret>) for a key of that form, else None."""
    key_id, dot, secret = key.partition(".")
    if not dot or not key_id or not secret or "." in secret:
        return None
    return key_id, secret


class JwtAuth:
    """Mints and caches the signed token; ``header()`` is cheap while the token is fresh."""

    __slots__ = ("_clock", "_expires_at", "_header", "_key", "minted", "ttl_s")

    def __init__(
        self, key: Secret, *, ttl_s: float = 210.0, clock: Callable[[], float] = time.time
    ):
        if split_key(key.reveal()) is None:
            raise ValueError("api.auth: jwt needs an API key of the form <id>.<secret>")
        self._key = key
        self.ttl_s = ttl_s
        self._clock = clock
        self._expires_at = 0.0
        self._header = ""
        self.minted = 0

    def header(self) -> str:
        """``Bearer <jwt>``; a new token is minted when the cached one is near its expiry."""
        now = self._clock()
        if now >= self._expires_at - REFRESH_MARGIN_S:
            self._mint(now)
        return self._header

    def invalidate(self) -> None:
        """Forget the cached token (the API said 1003); the next header() mints a new one."""
        self._expires_at = 0.0

    def _mint(self, now: float) -> None:
        import jwt

        parts = split_key(self._key.reveal())
        if parts is None:  # __init__ refused such a key
            raise ValueError("api.auth: jwt needs an API key of the form <id>.<secret>")
        key_id, secret = parts
        now_ms = int(now * 1000)
        payload = {"api_key": key_id, "exp": now_ms + int(self.ttl_s * 1000), "timestamp": now_ms}
        with quiet_jwt():
            token = jwt.encode(
                payload, secret, algorithm="HS256", headers={"alg": "HS256", "sign_type": "SIGN"}
            )
        self._header = f"Bearer {token}"
        self._expires_at = now + self.ttl_s
        self.minted += 1

    def __repr__(self) -> str:
        return f"<JwtAuth minted={self.minted} ttl_s={self.ttl_s}>"
