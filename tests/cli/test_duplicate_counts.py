"""A finished URL counts once: listed twice in the input, or with two records in the output,
reruns, ``--dry-run`` and ``status`` count it as one done key (the extra line a duplicate)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from runner.cli.main import main
from tests.support.configs import ENV, make_urls, output_of, write_config

URLS = make_urls(4)


def invoke(*args: str) -> Result:
    return CliRunner(env=ENV).invoke(main, list(args), catch_exceptions=False)


def test_a_finished_url_listed_twice_counts_once_on_every_rerun(tmp_path: Path) -> None:
    """Two URLs listed twice and one record written twice: the first run, two reruns (the
    second from the noted prefix), --dry-run and status all count 4 done, 2 duplicates."""
    cfg = write_config(tmp_path, [*URLS, URLS[0], URLS[2]])
    first = invoke(str(cfg))
    assert first.exit_code == 0 and "ok 4, errors 0, 2 duplicate lines — 4/4 done" in first.stdout
    out = output_of(tmp_path)
    with open(out, "ab") as handle:  # a second record of a finished URL (another tool, a copy)
        handle.write(out.read_bytes().splitlines(keepends=True)[1])
    for _ in range(2):
        again = invoke(str(cfg))
        assert again.exit_code == 0 and again.stdout.startswith("t: nothing to do — 4 done\n")
    dry = invoke(str(cfg), "--dry-run").stdout
    assert "0 pending, 4 done (0 as errors), 0 invalid, 2 duplicate lines" in dry
    job = json.loads(invoke("status", str(cfg), "--json").stdout.splitlines()[0])
    assert (job["ok"], job["errors"], job["pending"], job["duplicates"]) == (4, 0, 0, 2)
    with open(tmp_path / "urls.txt", "a") as handle:  # the list grows: read from the note
        handle.write(f"{make_urls(1, start=9)[0]}\n")
    grown = invoke(str(cfg)).stdout
    assert "ok 1, errors 0, skipped 4 done before, 2 duplicate lines — 5/5 done" in grown


def test_dry_run_lists_an_invalid_line_once_and_counts_the_ones_it_does_not_show(
    tmp_path: Path,
) -> None:
    """Eight invalid URLs, the first listed twice: --dry-run shows five of them, each once,
    and says how many more a run would record, not a bare '...'."""
    bad = [f"ftp://e.example/{i}.jpg" for i in range(8)]
    cfg = write_config(tmp_path, [bad[0], *bad, URLS[0]])
    dry = invoke(str(cfg), "--dry-run").stdout.splitlines()
    assert dry[0].startswith("t: 1 pending, 0 done (0 as errors), 8 invalid, 1 duplicate line")
    shown = [line for line in dry if line.startswith("  invalid line")]
    numbers = [int(line.split(":")[0].split()[-1]) for line in shown]
    assert numbers == [1, 3, 4, 5, 6]  # line 2 repeats line 1
    assert "  … 3 more (glmrun status --errors lists them once a run records them)" in dry
