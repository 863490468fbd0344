"""The collector pause around bulk steps: always ended, never started behind a caller's back."""

from __future__ import annotations

import gc

import pytest

from runner.bulk import paused_gc


def test_the_collector_is_paused_inside_and_runs_again_after_even_on_an_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        assert not gc.isenabled()
        raise RuntimeError("a bulk step failed")
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off() -> None:
    gc.disable()
    try:
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
