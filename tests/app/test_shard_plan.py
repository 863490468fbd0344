"""Planning a sharded job with the persistent resume index and the input-prefix note: a shard
run reads its whole input and notes nothing; a job with shard files merges their indexes and
drops the main output's note, so no line counts as done that no file finished."""

from __future__ import annotations

from pathlib import Path

from runner.app.planning import plan_job
from runner.config import load_config
from runner.core.keys import key_hash
from runner.core.shard import Shard
from runner.io.plancache import cache_path
from tests.support.configs import make_urls, output_of, write_config
from tests.support.records import write_jsonl

URLS = make_urls(40)


def _ok(url: str) -> dict[str, str]:
    return {"url": url, "status": "ok", "content": "c"}


def test_shard_runs_read_the_whole_input_and_note_no_prefix(tmp_path: Path) -> None:
    """A shard run skips the other shards' lines and plans from line 1 without a note; the
    whole job with a shard file merges the indexes and drops the main output's note."""
    config = load_config(write_config(tmp_path, URLS))
    out = output_of(tmp_path)
    out.parent.mkdir()
    write_jsonl(out, [_ok(u) for u in URLS[:20]])
    plan, _ = plan_job(config.jobs[0], config, save=True)  # unsharded: notes the prefix
    assert (plan.counts.done, plan.pending) == (20, 20) and cache_path(out).exists()
    assert plan_job(config.jobs[0], config, save=True)[0].counts.start[0] > 0

    shard = Shard(1, 2)
    job = config.sharded(shard).jobs[0]
    plan, _ = plan_job(job, config, save=True)
    mine = [u for u in URLS if shard.owns(key_hash(u))]
    assert plan.counts.start == (0, 0) and not cache_path(job.output_path).exists()
    assert plan.counts.other_shards == len(URLS) - len(mine)
    assert plan.counts.done == len([u for u in mine if u in URLS[:20]])
    assert plan.pending == len([u for u in mine if u not in URLS[:20]])

    # the shard finishes one of its URLs past the noted prefix and one inside it is retried
    # in the main file: the whole job merges both files, reads its input from the start
    late = next(u for u in mine if u not in URLS[:20])
    write_jsonl(job.output_path, [_ok(late)])
    with open(out, "ab") as handle:
        handle.write(
            b'{"url": "%s", "status": "error", "error": {"retryable": true}}\n' % URLS[3].encode()
        )
    plan, index = plan_job(config.jobs[0], config, save=True)
    assert plan.counts.start == (0, 0) and not cache_path(out).exists()
    assert index.base is None and index.is_done(key_hash(late))
    assert (plan.counts.done, plan.pending) == (20, 20)
