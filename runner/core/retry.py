"""Pure decisions about failures: ``classify`` and ``backoff_s``. No I/O, no clock.

``classify`` looks at (HTTP status, GLM business code) first, then the status alone, then
message keywords (proxies drop or move the code). Every branch maps to a record code, so an
error record always says why.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from runner.errors import ApiFailure, ApiStopped


class Verdict(enum.Enum):
    RETRY = "retry"  # transient: back off and send again
    THROTTLE = "throttle"  # the server says slow down: back off, and the adaptive limit shrinks
    RECORD = "record"  # permanent for this item: write an error record, never resend
    STOP = "stop"  # the account or model is refused: stop the whole run (exit 3)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after one failed attempt: the verdict, the code its record carries, and why."""

    verdict: Verdict
    code: str  # what the error record's error.code says
    reason: str

    @property
    def retryable(self) -> bool:
        return self.verdict in (Verdict.RETRY, Verdict.THROTTLE)


def stopped(failure: ApiFailure, decision: Decision) -> ApiStopped:
    """The error that ends a run the API refused (a ``STOP`` decision), in its one wording."""
    return ApiStopped(
        f"the API refused the run (code {decision.code}: {decision.reason}); {failure.message}",
        code=decision.code,
        status=failure.status,
    )


THROTTLE_CODES = {"1302", "1303", "1305", "1312"}
RETRY_CODES = {"500", "1100", "1200", "1230", "1231", "1234"}
RECORD_CODES = {"1210", "1213", "1214", "1261", "1300", "1301"}
STOP_CODES = (
    {str(c) for c in range(1000, 1006)}
    | {str(c) for c in range(1110, 1122)}  # account: inactive, missing, locked, arrears (1113), ...
    | {"1211", "1212", "1215", "1220", "1221", "1222", "1304"}
    | ({str(c) for c in range(1308, 1322)} - THROTTLE_CODES)  # 1312 (model overloaded) backs off
)

_STOP_REASONS = {
    "1113": "the account is in arrears (no balance); top it up",
    "1000": "authentication failed; check the API key",
    "1001": "no Authorization header was accepted; check the API key",
    "1002": "the API key or token is invalid",
    "1003": "the token has expired",
    "1004": "token verification failed",
    "1211": "the model does not exist (check the model name)",
    "1212": "the model does not support this call",
    "1220": "the account has no permission for this API",
    "1304": "the daily call quota for this API is used up",
}
_ARREARS_WORDS = ("欠费", "arrears", "余额不足", "insufficient balance", "balance")
_THROTTLE_WORDS = (
    "concurrency",
    "并发",
    "访问量过大",
    "rate limit",
    "too many requests",
    "频率",
    "overloaded",
    "过载",
)

_KIND_CODES = {
    "timeout": "timeout",
    "connection": "connection_error",
    "bad_json": "bad_response",
    "no_choices": "no_choices",
    "finish_network_error": "network_error",
}


def classify(failure: ApiFailure) -> Decision:
    code = failure.code
    status = failure.status
    message = failure.message or ""
    if failure.kind == "finish_sensitive":
        return Decision(Verdict.RECORD, "sensitive", "the answer was blocked by the safety review")
    if failure.kind in _KIND_CODES:
        return Decision(Verdict.RETRY, _KIND_CODES[failure.kind], failure.kind)
    if code and code.isdigit():
        if code in THROTTLE_CODES:
            return Decision(Verdict.THROTTLE, code, "rate or concurrency limit")
        if code in RETRY_CODES:
            return Decision(Verdict.RETRY, code, "transient server error")
        if code in RECORD_CODES:
            return Decision(Verdict.RECORD, code, "the API refused this item")
        if code in STOP_CODES:
            return Decision(
                Verdict.STOP, code, _STOP_REASONS.get(code, "the API refused the account or model")
            )
    return _classify_status(status, message)


def _classify_status(status: int | None, message: str) -> Decision:
    lower = message.lower()
    if status is None:
        return Decision(Verdict.RETRY, "connection_error", "no HTTP answer")
    if status == 429:
        if any(word in lower for word in _ARREARS_WORDS):
            return Decision(Verdict.STOP, "1113", _STOP_REASONS["1113"])
        return Decision(Verdict.THROTTLE, "http_429", "rate or concurrency limit")
    if status in (401, 403, 434):
        return Decision(Verdict.STOP, f"http_{status}", "the API refused the key or account")
    if status == 404:
        return Decision(Verdict.STOP, "http_404", "the endpoint was not found; check api.base_url")
    if status >= 500 or status in (408, 409):
        if any(word in lower for word in _THROTTLE_WORDS):
            return Decision(Verdict.THROTTLE, f"http_{status}", "overloaded")
        return Decision(Verdict.RETRY, f"http_{status}", "server error")
    if any(word in lower for word in _ARREARS_WORDS):
        return Decision(Verdict.STOP, "1113", _STOP_REASONS["1113"])
    if any(word in lower for word in _THROTTLE_WORDS):
        return Decision(Verdict.THROTTLE, f"http_{status}", "rate or concurrency limit")
    if 400 <= status < 500:
        return Decision(Verdict.RECORD, f"http_{status}", "the API refused this item")
    return Decision(Verdict.RETRY, f"http_{status}", "unexpected status")


def backoff_s(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    rng: random.Random,
    retry_after_s: float | None = None,
    throttled: bool = False,
) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**(attempt-1))); Retry-After overrides it.

    ``attempt`` is the attempt that just failed (1 for the first try). Throttled answers
    wait at least ``base_s / 2`` so a burst of 429s cannot turn into an immediate re-burst.
    """
    if retry_after_s is not None and retry_after_s >= 0:
        return min(retry_after_s, cap_s)
    ceiling = min(cap_s, base_s * 2.0 ** min(max(0, attempt - 1), 64))  # 2**1024 would overflow
    delay = rng.uniform(0, ceiling)
    if throttled:
        delay = max(delay, min(ceiling, base_s / 2))
    return delay


NOT_ANSWERS = frozenset({"network_error", "sensitive"})  # finish_reasons that carry no answer


def finish_failure(finish_reason: object) -> ApiFailure | None:
    """A 200 answer whose ``finish_reason`` says it is not an answer (glm-api.md §2.2):
    ``network_error`` (retry) or ``sensitive`` (blocked by the safety review). The one mapping
    for realtime answers and batch result lines alike."""
    if finish_reason == "network_error":
        return ApiFailure(200, None, "finish_reason network_error", kind="finish_network_error")
    if finish_reason == "sensitive":
        return ApiFailure(
            200,
            None,
            "finish_reason sensitive: output blocked by the safety review",
            kind="finish_sensitive",
        )
    return None
