"""The batch path end to end on the simulator: build, submit, poll, collect."""

from __future__ import annotations

from pathlib import Path

import orjson

from runner.simulator import expected_content
from tests.support.configs import write_batch_config
from tests.support.records import latest, read_records

from .batch_support import StartBatchSim, output_path, run_batch, urls


async def test_done_when_2500_urls_three_files(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """2,500 URLs at 1,000 per file: 3 uploads, 3 batches, 2,500 ok batch records with the right
    content."""
    items = urls(2500)
    cfg = write_batch_config(tmp_path, items, batch={"max_requests_per_file": 1000})
    box = await start_batch_sim()
    stats = await run_batch(cfg, box)
    s = box.sim.stats
    assert (s.files_uploaded, s.batches_created, s.batch_lines_received) == (3, 3, 2500)
    recs = latest(read_records(output_path(cfg)))
    assert len(recs) == 2500 and stats.ok == 2500
    for url in items:
        r = recs[url]
        assert r["status"] == "ok" and r["via"] == "batch" and r["batch_id"].startswith("batch_")
        assert r["content"] == expected_content(url)


async def test_error_file_lines_go_to_realtime_fallback(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """A 500 line and a missing line are resent in realtime; a 1301 line is recorded, not resent."""
    items = urls(20)
    faults = {items[1]: "500", items[2]: "missing", items[3]: "1301", items[4]: "duplicate"}
    cfg = write_batch_config(tmp_path, items)
    box = await start_batch_sim(batch_line_faults=faults)
    stats = await run_batch(cfg, box)
    per_url = dict(box.sim.stats.per_url)
    records = read_records(output_path(cfg))
    recs = latest(records)
    assert len(records) == 20 and stats.ok == 19 and stats.errors == 1
    assert recs[items[1]]["via"] == "realtime" and recs[items[1]]["content"] == expected_content(
        items[1]
    )
    assert recs[items[2]]["via"] == "realtime" and recs[items[2]]["status"] == "ok"
    assert recs[items[3]]["status"] == "error" and recs[items[3]]["error"]["code"] == "1301"
    assert recs[items[3]]["error"]["retryable"] is False and items[3] not in per_url
    assert recs[items[4]]["via"] == "batch"
    assert set(per_url) == {items[1], items[2]}


async def test_openai_envelope_and_flat_counts(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """Error lines in the OpenAI envelope and flat request_counts are understood."""
    items = urls(10)
    cfg = write_batch_config(tmp_path, items, batch={"on_failure": "record"})
    box = await start_batch_sim(
        batch_line_faults={items[0]: "1301", items[1]: "500"},
        error_envelope="openai",
        request_counts_shape="flat",
    )
    await run_batch(cfg, box)
    recs = latest(read_records(output_path(cfg)))
    assert recs[items[0]]["error"] == {
        "code": "1301",
        "message": recs[items[0]]["error"]["message"],
        "retryable": False,
    }
    assert recs[items[1]]["error"]["code"] == "500" and recs[items[1]]["error"]["retryable"] is True
    assert sum(r["status"] == "ok" for r in recs.values()) == 8


async def test_rebatch_once_then_record(tmp_path: Path, start_batch_sim: StartBatchSim) -> None:
    """on_failure: rebatch puts failed lines in a new batch once; failing again they are
    recorded."""
    items = urls(10)
    cfg = write_batch_config(tmp_path, items, batch={"on_failure": "rebatch"})
    box = await start_batch_sim(batch_line_faults={items[0]: "500"})
    await run_batch(cfg, box)
    created = box.sim.stats.batches_created
    recs = latest(read_records(output_path(cfg)))
    assert created == 2
    assert recs[items[0]]["status"] == "error" and recs[items[0]]["error"]["retryable"] is True
    assert sum(r["status"] == "ok" for r in recs.values()) == 9


async def test_expired_batch_partial_results_then_fallback(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """An expired batch's finished lines are collected via batch; the rest go realtime."""
    items = urls(40)
    cfg = write_batch_config(tmp_path, items)
    box = await start_batch_sim(batch_final_status="expired", batch_partial_fraction=0.5)
    await run_batch(cfg, box)
    recs = latest(read_records(output_path(cfg)))
    vias = [r["via"] for r in recs.values()]
    assert len(recs) == 40 and all(r["status"] == "ok" for r in recs.values())
    assert vias.count("batch") == 20 and vias.count("realtime") == 20
    assert all(r["content"] == expected_content(u) for u, r in recs.items())


async def test_failed_batch_lines_follow_on_failure(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """A batch that failed validation has no result files: every line is resent in realtime."""
    items = urls(5)
    cfg = write_batch_config(tmp_path, items)
    box = await start_batch_sim(batch_final_status="failed")
    await run_batch(cfg, box)
    recs = latest(read_records(output_path(cfg)))
    assert {r["via"] for r in recs.values()} == {"realtime"} and len(recs) == 5


async def test_max_queued_pipelines_chunks(tmp_path: Path, start_batch_sim: StartBatchSim) -> None:
    """With max_queued equal to one chunk, chunks run one at a time and all are collected."""
    items = urls(50)
    cfg = write_batch_config(
        tmp_path, items, batch={"max_requests_per_file": 20, "max_queued": 20, "poll_interval_s": 1}
    )
    box = await start_batch_sim(
        batch_validating_s=1.0, batch_in_progress_s=2.0, batch_finalizing_s=1.0
    )
    seen_in_flight: list[int] = []

    class Spy:
        def __init__(self, client: object) -> None:
            self._client = client

        def __getattr__(self, name: str) -> object:
            attr = getattr(self._client, name)
            if name != "create_batch":
                return attr

            async def create(body: dict) -> dict:
                running = [
                    b
                    for b in (await self._client.list_batches(limit=100))["data"]
                    if b["status"] not in ("completed", "failed", "expired", "cancelled")
                ]
                seen_in_flight.append(len(running))
                return await attr(body)

            return create

    await run_batch(cfg, box, wrap=Spy)
    assert box.sim.stats.batches_created == 3
    assert seen_in_flight == [0, 0, 0]
    assert len(latest(read_records(output_path(cfg)))) == 50


async def test_jsonl_items_keep_meta_prompt_and_images_through_batch_and_fallback(
    tmp_path: Path,
    start_batch_sim: StartBatchSim,
) -> None:
    """JSONL items (id, meta, several images) come back with their key and meta, via batch or
    fallback."""
    lines = [
        {
            "id": "a",
            "url": "https://img.example/a.jpg",
            "meta": {"shelf": 3},
            "prompt": "Count the books.",
        },
        {
            "id": "b",
            "images": ["https://img.example/b1.jpg", "https://img.example/b2.jpg"],
            "meta": {"pair": True},
        },
        {"url": "https://img.example/c.jpg"},
    ]
    cfg = write_batch_config(
        tmp_path, [orjson.dumps(x).decode() for x in lines], input_name="items.jsonl"
    )
    box = await start_batch_sim(batch_line_faults={"https://img.example/a.jpg": "500"})
    await run_batch(cfg, box)
    recs = latest(read_records(output_path(cfg)))
    assert set(recs) == {"a", "b", "https://img.example/c.jpg"}
    assert (
        recs["a"]["via"] == "realtime"
        and recs["a"]["meta"] == {"shelf": 3}
        and recs["a"]["key"] == "a"
    )
    assert recs["a"]["content"] == expected_content("https://img.example/a.jpg")
    assert recs["b"]["via"] == "batch" and recs["b"]["meta"] == {"pair": True}
    assert recs["b"]["content"] == expected_content(
        ["https://img.example/b1.jpg", "https://img.example/b2.jpg"]
    )
    assert (
        recs["https://img.example/c.jpg"]["via"] == "batch"
        and "meta" not in recs["https://img.example/c.jpg"]
    )


async def test_delete_remote_files_cleans_up(
    tmp_path: Path, start_batch_sim: StartBatchSim
) -> None:
    """batch.delete_remote_files deletes the input, output and error files once collected."""
    items = urls(6)
    cfg = write_batch_config(
        tmp_path, items, batch={"delete_remote_files": True, "on_failure": "record"}
    )
    box = await start_batch_sim(batch_line_faults={items[0]: "1301"})
    await run_batch(cfg, box)
    assert box.sim.stats.files_deleted == 3
    assert len(latest(read_records(output_path(cfg)))) == 6
