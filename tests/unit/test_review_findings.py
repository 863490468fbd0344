"""Bugs found by the adversarial review, each pinned by a test that failed before its fix."""

from __future__ import annotations

import random

from runner.retry import backoff_s


def test_backoff_after_a_thousand_attempts_is_capped_not_an_overflow() -> None:
    """A retry count past 1024 (a big max_attempts, or batch call errors piling up across runs) waits at most max_delay_s instead of crashing."""
    delay = backoff_s(5000, base_s=1.0, cap_s=60.0, rng=random.Random(1))
    assert 0.0 <= delay <= 60.0
    assert backoff_s(5000, base_s=1.0, cap_s=60.0, rng=random.Random(1), throttled=True) >= 0.5
