"""The collector pause around bulk steps and the program's start-up: always ended, never
started behind a caller's back."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest

from runner.bulk import START_UP_THRESHOLD, pause_gc_for_start_up, paused_gc, start_up_over


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


START_UP_PROBE = """
import gc, json, sys
sys.argv = [{argv0!r}, "--version"]
before = gc.get_threshold()
import runner.cli
during = gc.get_threshold()
import runner.app.loop
frozen_before = gc.get_freeze_count()

async def main():
    return gc.get_threshold(), gc.get_freeze_count()

after, frozen = runner.app.loop.run(main())
print(json.dumps([before, during, after, frozen_before, frozen]))
"""


@pytest.mark.parametrize("argv0", ["/usr/local/bin/glmrun", "/srv/some-other-tool"])
def test_the_program_starts_with_few_collector_passes_and_its_loop_runs_with_the_usual_pace(
    argv0: str,
) -> None:
    """The glmrun program raises the gen-0 threshold while it imports; the event loop starts
    with the usual threshold and what start-up made frozen. Anything else importing runner.cli
    (a test, a program embedding glmrun) keeps its collector as it was."""
    out = subprocess.run(
        [sys.executable, "-c", START_UP_PROBE.format(argv0=argv0)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    before, during, after, frozen_before, frozen = json.loads(out.stdout)
    assert after == before  # the loop runs at the usual pace either way
    if argv0.endswith("glmrun"):
        assert during == [START_UP_THRESHOLD, *before[1:]]
        assert frozen_before == 0 < frozen  # start-up's objects leave the generations
    else:
        assert during == before
        assert frozen == 0


def test_start_up_over_is_once_and_only_after_a_pause() -> None:
    usual = gc.get_threshold()
    try:
        start_up_over()  # no pause: nothing to restore, nothing frozen
        assert gc.get_threshold() == usual and gc.get_freeze_count() == 0
        pause_gc_for_start_up()
        pause_gc_for_start_up()  # twice: the usual threshold is still the one restored
        assert gc.get_threshold() == (START_UP_THRESHOLD, *usual[1:])
        start_up_over()
        assert gc.get_threshold() == usual
    finally:
        gc.unfreeze()
        gc.set_threshold(*usual)
