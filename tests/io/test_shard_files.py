"""A sharded job's files: listing the main and shard outputs, their merged index and export."""

from __future__ import annotations

import io
from pathlib import Path

import orjson

from runner.config import load_config
from runner.core.items import InvalidLine
from runner.core.keys import key_hash
from runner.core.records import invalid_input_record
from runner.core.resume import FAILED, INVALID, OK
from runner.core.shard import Shard
from runner.io.export import export_records
from runner.io.job_files import job_output_files, load_job_index
from tests.support.configs import write_config


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))


def _ok(url: str, content: str = "c") -> dict:
    return {"url": url, "status": "ok", "content": content}


def _retryable(url: str) -> dict:
    return {
        "url": url,
        "status": "error",
        "error": {"code": "http_500", "message": "x", "retryable": True},
    }


def test_the_job_lists_its_main_and_shard_files_and_merges_their_indexes(tmp_path: Path) -> None:
    """The main output, shard files of any N, not locks or other jobs; the index is the merge."""
    cfg = load_config(write_config(tmp_path))
    job = cfg.jobs[0]
    out = tmp_path / "out"
    _write(out / "t.jsonl", [_retryable("u1")])
    _write(out / "t.shard-1-of-8.jsonl", [_ok("u1")])
    _write(out / "t.shard-0-of-2.jsonl", [_ok("u2")])
    (out / "t.shard-0-of-2.jsonl.lock").write_text("1\n")
    _write(out / "other.shard-0-of-2.jsonl", [_ok("u3")])
    files = job_output_files(job)
    assert [(f.path.name, f.shard) for f in files] == [
        ("t.jsonl", None),
        ("t.shard-0-of-2.jsonl", Shard(0, 2)),
        ("t.shard-1-of-8.jsonl", Shard(1, 8)),
    ]
    index = load_job_index(job)
    assert index.ok == {key_hash("u1"), key_hash("u2")} and not index.retryable


def test_export_merges_files_one_record_per_key_the_finished_one(tmp_path: Path) -> None:
    """Across files each key appears once: an ok record beats a later file's retryable error;
    within a file the latest record wins; ``--all-records`` concatenates."""
    a, b = tmp_path / "t.jsonl", tmp_path / "t.shard-0-of-2.jsonl"
    _write(a, [_ok("u1", "first"), _ok("u2", "old"), _ok("u2", "new")])
    _write(b, [_retryable("u1"), _ok("u3"), _retryable("u4")])
    sink = io.BytesIO()
    assert export_records([a, b, tmp_path / "missing.jsonl"], sink) == 4
    got = {r["url"]: r for r in map(orjson.loads, sink.getvalue().splitlines())}
    assert got["u1"]["content"] == "first" and got["u2"]["content"] == "new"
    assert got["u4"]["status"] == "error" and set(got) == {"u1", "u2", "u3", "u4"}
    everything = io.BytesIO()
    assert export_records([a, b], everything, latest_only=False) == 6


def _invalid(url: str) -> dict:
    return invalid_input_record(InvalidLine(url, 1, "bad line"))


def test_an_invalid_line_ranks_between_a_permanent_and_a_retryable_error(tmp_path: Path) -> None:
    """Across files, as resume merges them, export keeps ok over a permanent error over an
    invalid line over a retryable error, whichever file is listed later."""
    cfg = load_config(write_config(tmp_path))
    out = tmp_path / "out"
    a, b = out / "t.jsonl", out / "t.shard-0-of-2.jsonl"
    final = {"url": "u2", "status": "error", "error": {"code": "1301", "retryable": False}}
    _write(a, [_invalid("u1"), final, _invalid("u3")])
    _write(b, [_ok("u1"), _invalid("u2"), _retryable("u3")])
    sink = io.BytesIO()
    assert export_records([a, b], sink) == 3
    got = {r["url"]: r for r in map(orjson.loads, sink.getvalue().splitlines())}
    assert got["u1"]["status"] == "ok"
    assert [got[u]["error"]["code"] for u in ("u2", "u3")] == ["1301", "invalid_input"]
    index = load_job_index(cfg.jobs[0])
    states = [index.state(key_hash(u)) for u in ("u1", "u2", "u3")]
    assert states == [OK, FAILED, INVALID]
