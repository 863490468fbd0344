"""The tokens-per-minute budget: charge an estimate at start, correct it from usage."""

from __future__ import annotations

import pytest

from runner.engine.throttle import TokenBudget, total_tokens


def test_estimate_fits_at_once_when_the_bucket_is_full() -> None:
    """A fresh budget holds one second of tokens and lets the first request start at once."""
    budget = TokenBudget(60_000, initial_estimate=500, now=0.0)  # 1000 tokens/s
    assert budget.wait_s(0.0) == 0.0
    budget.charge(0.0)
    assert budget.level == pytest.approx(500)


def test_wait_is_the_refill_time_of_the_missing_tokens() -> None:
    """When the estimate does not fit, the wait is what is missing divided by the rate."""
    budget = TokenBudget(60_000, initial_estimate=800, now=0.0)
    budget.charge(0.0)  # 200 left
    assert budget.wait_s(0.0) == pytest.approx(0.6)
    assert budget.wait_s(0.6) == pytest.approx(0.0)


def test_settle_corrects_the_charge_to_real_usage_and_learns_the_estimate() -> None:
    """An answer that used more than charged puts the bucket into debt; the estimate moves."""
    budget = TokenBudget(60_000, initial_estimate=500, now=0.0)
    charged = budget.charge(0.0)
    budget.settle(charged, 1500)
    assert budget.level == pytest.approx(1000 - 1500)
    assert budget.estimate == pytest.approx(1500)  # first sample replaces the guess
    assert budget.wait_s(0.0) == pytest.approx(
        1.5
    )  # debt of 500 plus a full bucket (the cap) for the next


def test_failed_attempt_is_refunded() -> None:
    """An attempt without usage (429, timeout) gives its charge back."""
    budget = TokenBudget(60_000, initial_estimate=400, now=0.0)
    charged = budget.charge(0.0)
    budget.settle(charged, None)
    assert budget.level == pytest.approx(1000)
    assert budget.estimate == 400


def test_total_tokens_reads_usage_shapes() -> None:
    """total_tokens is used when present, else prompt + completion; anything else is unknown."""
    assert total_tokens({"total_tokens": 7}) == 7
    assert total_tokens({"prompt_tokens": 5, "completion_tokens": 2}) == 7
    assert total_tokens(None) is None
    assert total_tokens({}) is None


async def test_throttle_waits_for_the_token_budget_on_the_injected_clock() -> None:
    """With limits.tpm the gate sleeps (on the clock) until the estimate fits, then charges it."""
    from runner.clock import FakeClock
    from runner.engine.throttle import Throttle

    clock = FakeClock(start=0.0)
    throttle = Throttle(8, tpm=60_000, monotonic=clock.monotonic, sleep=clock.sleep)
    assert throttle.tokens is not None
    throttle.tokens.estimate = 400.0
    charges = [await throttle.charge_tokens() for _ in range(3)]  # 1000 in the bucket: 2 fit
    assert charges == [400.0, 400.0, 400.0]
    assert clock.sleeps == [pytest.approx(0.2)]  # 200 left, 400 needed at 1000/s
    throttle.settle_tokens(charges[0], {"total_tokens": 1000})
    assert throttle.tokens.level == pytest.approx(
        0 + 400 - 1000
    )  # empty, then 600 more than charged


async def test_without_tpm_charging_is_free() -> None:
    """No limits.tpm: nothing is charged and nothing waits."""
    from runner.engine.throttle import Throttle

    throttle = Throttle(8)
    assert throttle.tokens is None
    assert await throttle.charge_tokens() == 0.0
    throttle.settle_tokens(0.0, {"total_tokens": 5})
