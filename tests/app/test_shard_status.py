"""``glmrun status`` of a sharded job: a row per shard file, shards with no file yet, a total."""

from __future__ import annotations

from pathlib import Path

import orjson

from runner.app.status import collect, format_status
from runner.config import load_config
from runner.core.keys import key_hash
from tests.support.configs import make_urls, write_config


def test_status_rows_per_shard_and_a_total(tmp_path: Path) -> None:
    """Shard 0/2 finished its items, 1/2 never ran: its row says so with what it still owns,
    and the total counts every file of the job."""
    urls = make_urls(40)
    cfg = load_config(write_config(tmp_path, urls))
    mine = [u for u in urls if key_hash(u) % 2 == 0]
    out = tmp_path / "out" / "t.shard-0-of-2.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(orjson.dumps({"url": u, "status": "ok"}) + b"\n" for u in mine))
    (status,) = collect(cfg)
    assert (status.ok, status.pending) == (len(mine), len(urls) - len(mine))
    rows = {f.shard: f for f in status.files}
    assert set(rows) == {"0/2", "1/2"}
    assert (rows["0/2"].ok, rows["0/2"].pending, rows["0/2"].exists) == (len(mine), 0, True)
    assert (rows["1/2"].ok, rows["1/2"].pending, rows["1/2"].exists) == (0, 40 - len(mine), False)
    text = format_status(status)
    assert "shard 1/2    no output yet" in text
    assert f"total        ok {len(mine)}, errors 0, pending {40 - len(mine)}" in text
