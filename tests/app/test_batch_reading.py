"""What a person reads about a batch job: its summary's money, its batches' lines, its waits."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.support.configs import make_urls, write_batch_config, write_surface_config
from tests.support.runs import run_config
from tests.support.sim import INSTANT_BATCHES

PRICES = {
    "currency": "CNY",
    "prices": {
        "glm-4v-plus-0111": {"input_per_1k": 0.004, "output_per_1k": 0.01, "batch_discount": 0.5}
    },
}
URLS = [f"https://e.org/{i}.jpg" for i in range(10)]


def batch_config(tmp_path: Path, urls: list[str] = URLS, **simulator: object) -> Path:
    return write_surface_config(
        tmp_path,
        urls,
        job={"prompt": "ab", "mode": "batch"},
        cost=PRICES,
        batch={"poll_interval_s": 0},
        simulator={**INSTANT_BATCHES, **simulator},
    )


async def test_summary_prices_lines_sent_realtime_apart_from_the_batch(tmp_path: Path) -> None:
    """A batch line that failed and went realtime (on_failure) was paid at full price: the
    summary's token line gives each route with its cost, as glmrun status does."""
    cfg = batch_config(tmp_path, batch_line_faults={URLS[0]: "500"})
    _, out = await run_config(cfg)
    # simulator: 1000 prompt tokens per image + len(text)//2; 20 completion tokens
    batch = 9 * (1001 / 1000 * 0.004 + 20 / 1000 * 0.01) / 2
    rt = 1001 / 1000 * 0.004 + 20 / 1000 * 0.01
    assert (
        f"  tokens batch 9,009 in / 180 out ({batch:.4f} CNY) · realtime 1,001 in / 20 out"
        f" ({rt:.4f} CNY) · total {batch + rt:.4f} CNY"
    ) in out.splitlines(), out


async def test_summary_of_a_batch_job_all_sent_realtime_names_the_route(tmp_path: Path) -> None:
    """A failed batch whose lines all went realtime: the tokens are named realtime, so the
    total is not read as the half price the batch was for."""
    _, out = await run_config(batch_config(tmp_path, batch_final_status="failed"))
    rt = 10 * (1001 / 1000 * 0.004 + 20 / 1000 * 0.01)
    assert f"  tokens realtime 10,010 in / 200 out · {rt:.4f} CNY" in out.splitlines(), out


async def test_lines_sent_again_are_told_apart_by_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Of a completed batch's lines sent again, those the API answered with a 500 and the one
    it returned nothing for are counted apart (all were 'no result in the completed batch')."""
    faults = {URLS[0]: "500", URLS[1]: "500", URLS[2]: "missing"}
    with caplog.at_level("WARNING", logger="runner"):
        await run_config(batch_config(tmp_path, batch_line_faults=faults))
    (warned,) = [r for r in caplog.records if r.getMessage() == "batch lines did not run"]
    assert warned.reason == "2 answered 500, 1 has no result in the completed batch"


def test_a_rerun_says_it_found_the_earlier_runs_batches(tmp_path: Path) -> None:
    """The run after --no-wait (or Ctrl-C) says at once what it found tracked and that those
    lines are not sent again; it said nothing of them until one was collected, hours later."""
    from tests.cli.test_cli import invoke

    cfg = write_batch_config(
        tmp_path,
        make_urls(25),
        simulator={"batch_in_progress_s": 600},
        batch={"max_requests_per_file": 10, "max_queued": 10},
    )
    first = invoke(str(cfg), "--no-wait")
    assert first.exit_code == 75 and "found" not in first.output, first.output
    again = invoke(str(cfg), "--no-wait")
    assert again.exit_code == 75
    assert (
        "j: found 1 batch (10 lines) and 2 chunks not yet submitted (15 lines) from an earlier "
        "run; collecting and submitting them, not sending their lines again"
    ) in again.output.splitlines(), again.output


def test_chunks_dropped_by_cancel_are_no_batches_found_or_collected(tmp_path: Path) -> None:
    """After batches cancel, status and the next run count the one batch, not the chunks the
    cancel dropped ('1 chunk not submitted', 'found 2 batches'), and say of each dropped chunk
    that no batch was created (it printed 'collected None (cancelled)')."""
    from tests.cli.test_cli import invoke

    cfg = write_batch_config(
        tmp_path,
        make_urls(25),
        simulator={"batch_in_progress_s": 600},
        batch={"max_requests_per_file": 10, "max_queued": 10},
    )
    assert invoke(str(cfg), "--no-wait").exit_code == 75
    assert invoke("batches", "cancel", str(cfg)).exit_code == 0
    status = invoke("status", str(cfg)).output.splitlines()
    assert "; batches 1 open, 2 chunks ended with no batch / 3 tracked -> pending" in status[0]
    assert "  chunk 1 (10 requests), no batch: cancelled before it was submitted" in status
    dry = invoke(str(cfg), "--dry-run").output.splitlines()
    assert dry[1] == (
        "  tracked: 1 batch still running; 10 lines already in batches; 15 in chunks batches "
        "cancel dropped (the next run notes them, a later one sends them)"
    ), dry
    assert dry[2].startswith("  10 lines in batches not yet collected, ")
    again = invoke(str(cfg), "--no-wait")
    lines = again.output.splitlines()
    assert (
        "j: found 1 batch (10 lines) from an earlier run; collecting it, not sending its "
        "lines again"
    ) in lines, again.output
    assert "j: chunk 1 (cancelled, no batch was created): 10 left for a later run" in lines
    assert "j: chunk 2 (cancelled, no batch was created): 5 left for a later run" in lines
    assert not [line for line in lines if "None" in line]


async def test_dry_run_says_how_many_batch_files_and_how_many_run_at_once(tmp_path: Path) -> None:
    """A batch job's dry run says how its lines are cut into files and that the queue limit
    runs them one after another (it said nothing: 100,000 URLs under the 10,000 limit wait ten
    batches' time)."""
    cfg = write_batch_config(
        tmp_path, make_urls(25), batch={"max_requests_per_file": 10, "max_queued": 10}
    )
    _, out = await run_config(cfg, dry_run=True)
    assert (
        "  batch: 3 files of up to 10 requests, 1 queued at a time (batch.max_queued: 10 "
        "requests); the next is submitted as one finishes"
    ) in out.splitlines(), out
    cfg = write_batch_config(tmp_path, make_urls(25))
    _, out = await run_config(cfg, dry_run=True)
    assert "  batch: 1 file of 25 requests, one batch" in out.splitlines(), out


def test_status_and_dry_run_price_the_lines_in_batches(tmp_path: Path) -> None:
    """Lines in batches not yet collected are billed whatever happens next: status (and its
    JSON) and --dry-run give an estimate of them at the batch price; the cost lines count only
    what was collected, so a job with every line in batches read 0 CNY."""
    from tests.cli.test_cli import invoke

    cfg = write_batch_config(
        tmp_path,
        make_urls(25),
        cost={**PRICES, "prompt_tokens_per_image": 1000, "completion_tokens": 100},
        simulator={"batch_in_progress_s": 600},
        batch={"max_requests_per_file": 10, "max_queued": 10},
    )
    assert invoke(str(cfg), "--no-wait").exit_code == 75
    money = 10 * (1004.5 / 1000 * 0.004 + 100 / 1000 * 0.01) / 2  # "Describe.": 4.5 tokens
    expected = (
        f"  10 lines in batches not yet collected, ~{money:.4f} CNY at the batch price "
        "(estimate: no records yet: 1 image x 1,000 tokens per item, 100 tokens per answer)"
    )
    status = invoke("status", str(cfg))
    assert expected in status.output.splitlines(), status.output
    row = orjson.loads(invoke("status", str(cfg), "--json").output.splitlines()[0])
    assert row["in_batches"] == {"lines": 10, "estimate": pytest.approx(money)}
    dry = invoke(str(cfg), "--dry-run")
    assert expected in dry.output.splitlines(), dry.output


@pytest.mark.parametrize(
    ("threshold", "via"),
    [
        (1000, "via realtime (mode: auto, 10 pending <= batch.threshold 1,000)"),
        (5, "via batch (mode: auto, 10 pending > batch.threshold 5)"),
    ],
    ids=["realtime-streamed", "batch-counted"],
)
async def test_an_auto_run_says_why_it_took_its_route(
    tmp_path: Path, threshold: int, via: str
) -> None:
    """mode auto: the summary says why beside the route, as --dry-run does; a person who
    expected the batch price read only 'via realtime'."""
    cfg = write_surface_config(
        tmp_path,
        URLS,
        job={"mode": "auto"},
        batch={"poll_interval_s": 0, "threshold": threshold},
        simulator=INSTANT_BATCHES,
    )
    _, out = await run_config(cfg)
    assert f" · {via} · " in out, out


def test_on_failure_record_says_what_it_recorded_and_why(tmp_path: Path) -> None:
    """on_failure: record: the collected line says the next run retries the errors it wrote
    (it said 'without a result' of lines the API had answered with a 500), and the summary
    says what batch_missing means."""
    from tests.cli.test_cli import invoke

    cfg = write_batch_config(
        tmp_path,
        make_urls(5),
        batch={"on_failure": "record"},
        simulator={"batch_line_faults": {make_urls(5)[0]: "500", make_urls(5)[1]: "missing"}},
    )
    ran = invoke(str(cfg))
    assert ran.exit_code == 1
    lines = ran.output.splitlines()
    assert any(
        line.endswith("(completed): 3 ok, 2 recorded as errors the next run retries")
        for line in lines
    ), ran.output
    assert "  batch_missing (no result in the batch) ×1: " + make_urls(5)[1] in lines, ran.output


def test_batches_adopted_after_the_work_folder_went_are_told_once(tmp_path: Path) -> None:
    """A rerun that finds its batches on the account (the work folder was deleted) says so in
    its warning; the 'found … from an earlier run' line is not printed beside it."""
    import shutil

    from tests.cli.test_cli import invoke

    cfg = write_batch_config(tmp_path, make_urls(5), simulator={"batch_in_progress_s": 600})
    assert invoke(str(cfg), "--no-wait").exit_code == 75
    shutil.rmtree(tmp_path / "out" / ".glmrun" / "j")  # the simulator's own folder stays
    again = invoke(str(cfg), "--no-wait")
    assert "found 1 batch of job j still on the account" in again.output, again.output
    assert "j: found 1 batch" not in again.output


def test_batches_show_writes_the_lines_as_every_other_count(tmp_path: Path) -> None:
    """The line under the batch says '(1,000 lines)', with the separator every other count
    has (it said '(1000 lines)')."""
    from tests.cli.test_cli import invoke

    cfg = write_batch_config(tmp_path, make_urls(1000), simulator={"batch_in_progress_s": 600})
    assert invoke(str(cfg), "--no-wait").exit_code == 75
    row = orjson.loads(invoke("batches", "list", str(cfg), "--json").output.splitlines()[0])
    shown = invoke("batches", "show", row["batch_id"], "-c", str(cfg)).output.splitlines()
    assert shown[-1] == "tracked by job j, chunk 0 (1,000 lines), local state Running", shown
