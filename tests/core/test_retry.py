"""classify(): every status and code glm-api.md §6 knows -> a verdict and a record code; backoff."""

from __future__ import annotations

import random

import pytest

from runner.core.retry import (
    RECORD_CODES,
    RETRY_CODES,
    STOP_CODES,
    THROTTLE_CODES,
    Verdict,
    backoff_s,
    classify,
)
from runner.errors import ApiFailure

T, R, REC, S = Verdict.THROTTLE, Verdict.RETRY, Verdict.RECORD, Verdict.STOP


def f(
    status: int | None, code: str | None = None, message: str = "x", kind: str | None = None
) -> ApiFailure:
    return ApiFailure(status, code, message, kind=kind)


# (id, failure, verdict, record code)
TABLE: list[tuple[str, ApiFailure, Verdict, str]] = [
    # back off and retry
    ("1302-concurrency", f(429, "1302"), T, "1302"),
    ("1303-frequency", f(429, "1303"), T, "1303"),
    ("1305-overloaded", f(429, "1305"), T, "1305"),
    ("1305-as-503", f(503, "1305"), T, "1305"),
    ("1312-model-overloaded", f(None, "1312"), T, "1312"),
    # retry
    ("500-code", f(500, "500"), R, "500"),
    ("500-no-code", f(500), R, "http_500"),
    ("502", f(502), R, "http_502"),
    ("503", f(503), R, "http_503"),
    ("504", f(504), R, "http_504"),
    ("1100-account-rw", f(500, "1100"), R, "1100"),
    ("1200", f(500, "1200"), R, "1200"),
    ("1230", f(500, "1230"), R, "1230"),
    ("1234", f(500, "1234"), R, "1234"),
    ("1231-duplicate-request-id", f(400, "1231"), R, "1231"),
    ("timeout", f(None, kind="timeout"), R, "timeout"),
    ("connection", f(None, kind="connection"), R, "connection_error"),
    ("no-http-answer", f(None), R, "connection_error"),
    ("200-no-choices", f(200, kind="no_choices"), R, "no_choices"),
    ("200-non-json", f(200, kind="bad_json"), R, "bad_response"),
    ("finish-network-error", f(200, kind="finish_network_error"), R, "network_error"),
    ("408", f(408), R, "http_408"),
    # permanent: an error record, never resent
    ("1301-unsafe", f(400, "1301"), REC, "1301"),
    ("1301-in-200", f(200, "1301"), REC, "1301"),
    ("1300-policy", f(400, "1300"), REC, "1300"),
    ("1261-prompt-too-long", f(400, "1261"), REC, "1261"),
    ("1210-invalid", f(400, "1210"), REC, "1210"),
    ("1213-missing-field", f(400, "1213"), REC, "1213"),
    ("1214-bad-field", f(400, "1214"), REC, "1214"),
    ("finish-sensitive", f(200, kind="finish_sensitive"), REC, "sensitive"),
    ("400-no-code", f(400), REC, "http_400"),
    ("413-no-code", f(413), REC, "http_413"),
    # stop the run
    ("401-no-code", f(401), S, "http_401"),
    ("403-no-code", f(403), S, "http_403"),
    ("404-no-code", f(404), S, "http_404"),
    ("434-no-permission", f(434), S, "http_434"),
    *[(f"{c}-auth", f(401, str(c)), S, str(c)) for c in range(1000, 1006)],
    *[(f"{c}-account", f(None, str(c)), S, str(c)) for c in range(1110, 1122)],
    ("1113-as-http-429", f(429, "1113", "Your account is in arrears"), S, "1113"),
    ("1211-no-model", f(400, "1211"), S, "1211"),
    ("1212-unsupported", f(400, "1212"), S, "1212"),
    ("1215-conflicting-fields", f(400, "1215"), S, "1215"),
    ("1220-no-permission", f(403, "1220"), S, "1220"),
    ("1221-offline", f(400, "1221"), S, "1221"),
    ("1222-no-api", f(400, "1222"), S, "1222"),
    ("1304-daily-quota", f(429, "1304"), S, "1304"),
    *[(f"{c}-quota", f(429, str(c)), S, str(c)) for c in range(1308, 1322) if c != 1312],
    # a proxy dropped or renamed the code: the status, then message keywords
    ("proxy-429-arrears-en", f(429, None, "account in arrears"), S, "1113"),
    ("proxy-429-arrears-zh", f(429, None, "您的账户已欠费"), S, "1113"),
    ("proxy-429-balance", f(429, None, "Insufficient balance"), S, "1113"),
    ("proxy-429-plain", f(429, None, "Too Many Requests"), T, "http_429"),
    ("proxy-429-string-code", f(429, "rate_limit_exceeded", "slow down"), T, "http_429"),
    ("proxy-503-overloaded", f(503, None, "model overloaded"), T, "http_503"),
    ("proxy-500-concurrency-zh", f(500, None, "并发数过高"), T, "http_500"),
    ("proxy-400-concurrency", f(400, None, "High concurrency usage of this API"), T, "http_400"),
    ("proxy-400-arrears", f(400, None, "arrears"), S, "1113"),
    ("proxy-unknown-code-500", f(500, "9999"), R, "http_500"),
    ("proxy-unknown-code-400", f(400, "9999"), REC, "http_400"),
    ("odd-3xx", f(302), R, "http_302"),
]


@pytest.mark.parametrize(
    ("failure", "verdict", "code"), [c[1:] for c in TABLE], ids=[c[0] for c in TABLE]
)
def test_classify_table(failure: ApiFailure, verdict: Verdict, code: str) -> None:
    """Each known failure maps to its verdict and a non-empty record code."""
    decision = classify(failure)
    assert (decision.verdict, decision.code) == (verdict, code)
    assert decision.code and decision.reason
    assert decision.retryable is (verdict in (R, T))


def test_every_known_code_is_classified_as_itself() -> None:
    """Every business code in the retry tables yields its own record code, so none falls through."""
    groups = {T: THROTTLE_CODES, R: RETRY_CODES, REC: RECORD_CODES, S: STOP_CODES}
    for verdict, codes in groups.items():
        for code in codes:
            decision = classify(f(400, code))
            assert (decision.verdict, decision.code) == (verdict, code), code
    all_codes = [c for codes in groups.values() for c in codes]
    assert len(all_codes) == len(set(all_codes)), "a code is in two tables"


def test_1113_is_never_retried_whatever_the_status() -> None:
    """Arrears stop the run whether the code comes with 429, 200, 400 or no status."""
    for status in (429, 200, 400, None):
        assert classify(f(status, "1113")).verdict is S


def test_issue_lists_are_covered() -> None:
    """The code lists in issue 2 map to the verdicts it asks for."""
    expected = {
        T: ["1302", "1303", "1305", "1312"],
        R: ["1200", "1230", "1234", "1231"],
        REC: ["1301", "1261", "1210", "1213", "1214"],
        S: [
            *map(str, range(1000, 1006)),
            *map(str, range(1110, 1122)),
            "1211",
            "1212",
            "1220",
            "1221",
            "1222",
            "1304",
            *(str(c) for c in range(1308, 1322) if c != 1312),
        ],  # 1312 is listed as back-off
    }
    for verdict, codes in expected.items():
        for code in codes:
            assert classify(f(400, code)).verdict is verdict, code


@pytest.mark.parametrize("attempt", range(1, 10), ids=lambda a: f"attempt{a}")
def test_backoff_full_jitter_bounds(attempt: int) -> None:
    """Delays lie in [0, min(cap, base * 2**(attempt-1))] and a seeded RNG repeats them."""
    ceiling = min(10.0, 0.5 * 2 ** (attempt - 1))
    first = [backoff_s(attempt, base_s=0.5, cap_s=10.0, rng=random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng = random.Random(attempt)
    delays = [backoff_s(attempt, base_s=0.5, cap_s=10.0, rng=rng) for _ in range(500)]
    assert all(0.0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # jitter spans the range


def test_backoff_throttled_has_a_floor() -> None:
    """A throttled retry waits at least base/2 so a burst of 429s does not re-burst at once."""
    rng = random.Random(0)
    delays = [backoff_s(3, base_s=1.0, cap_s=60.0, rng=rng, throttled=True) for _ in range(300)]
    assert all(0.5 <= d <= 4.0 for d in delays)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(2.5, 2.5), (0.0, 0.0), (120.0, 60.0)],
    ids=["honoured", "zero", "capped-at-max-delay"],
)
def test_retry_after_overrides_backoff(retry_after: float, expected: float) -> None:
    """Retry-After replaces the jittered delay (bounded by retry.max_delay_s)."""
    rng = random.Random(0)
    assert backoff_s(1, base_s=1.0, cap_s=60.0, rng=rng, retry_after_s=retry_after) == expected
    assert (
        backoff_s(5, base_s=1.0, cap_s=60.0, rng=rng, retry_after_s=retry_after, throttled=True)
        == expected
    )
