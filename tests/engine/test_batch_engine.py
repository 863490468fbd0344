"""The batch path end to end on the simulator: build, submit, poll, collect."""

from __future__ import annotations

from pathlib import Path

from runner.simulator import expected_content

from .batch_support import latest, load, read_records, run_batch, start_sim, urls, write_config


async def test_done_when_2500_urls_three_files(tmp_path: Path) -> None:
    """2,500 URLs at 1,000 per file: 3 uploads, 3 batches, 2,500 ok batch records with the right content."""
    items = urls(2500)
    cfg = write_config(tmp_path, items, max_requests_per_file=1000)
    box = await start_sim()
    try:
        stats = await run_batch(cfg, box)
        s = box.sim.stats
        assert (s.files_uploaded, s.batches_created, s.batch_lines_received) == (3, 3, 2500)
    finally:
        await box.sim.close()
    recs = latest(read_records(load(cfg)))
    assert len(recs) == 2500 and stats.ok == 2500
    for url in items:
        r = recs[url]
        assert r["status"] == "ok" and r["via"] == "batch" and r["batch_id"].startswith("batch_")
        assert r["content"] == expected_content(url)
