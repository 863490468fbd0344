"""Sharding without processes: I/N parsing, file names, the split, merged indexes and exports."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from runner.cli.main import main
from runner.config import load_config
from runner.core.items import Item
from runner.core.keys import key_hash
from runner.core.plan import PendingCounts, done_line_filter, iter_pending
from runner.core.resume import ResumeIndex
from runner.core.shard import Shard, parse_shard, shard_of_name, shard_output_name
from runner.io.export import export_records
from runner.io.job_files import job_output_files, load_job_index
from tests.surface_helpers import write_config


@pytest.mark.parametrize(
    ("text", "shard"),
    [("2/8", Shard(2, 8)), (" 0 / 2 ", Shard(0, 2)), ("0/1", None), ("7/8", Shard(7, 8))],
    ids=["plain", "spaces", "whole-job", "last"],
)
def test_parse_shard_accepts_i_of_n(text: str, shard: Shard | None) -> None:
    """``I/N`` with 0 <= I < N parses; 0/1 is the whole job (no shard file)."""
    assert parse_shard(text) == shard


@pytest.mark.parametrize(
    "text",
    ["8/8", "3/0", "-1/4", "2", "a/b", "1/2/3", ""],
    ids=["n-of-n", "zero-n", "negative", "no-n", "letters", "three", "empty"],
)
def test_parse_shard_refuses_anything_else(text: str) -> None:
    """An index out of range or a malformed value is refused with a message."""
    with pytest.raises(ValueError, match="I/N|N must|between"):
        parse_shard(text)


@pytest.mark.parametrize(
    ("output", "name"),
    [
        ("describe.jsonl", "describe.shard-2-of-8.jsonl"),
        ("results", "results.shard-2-of-8"),
        ("a.b.jsonl", "a.b.shard-2-of-8.jsonl"),
    ],
    ids=["jsonl", "no-suffix", "dotted"],
)
def test_shard_file_names_round_trip(output: str, name: str) -> None:
    """The documented name, and the reader recognises exactly that name."""
    assert shard_output_name(output, Shard(2, 8)) == name
    assert shard_of_name(output, name) == Shard(2, 8)


@pytest.mark.parametrize(
    "candidate",
    [
        "describe.shard-2-of-8.jsonl.lock",
        "other.shard-2-of-8.jsonl",
        "describe.shard-02-of-8.jsonl",
        "describe.shard-8-of-8.jsonl",
        "describe.shard-0-of-1.jsonl",
        "describe.jsonl",
    ],
    ids=["lock", "other-job", "leading-zero", "out-of-range", "n-1", "main"],
)
def test_files_that_are_not_shard_outputs_are_not_read_as_such(candidate: str) -> None:
    """Locks, other jobs' files and names glmrun never writes are not merged into the job."""
    assert shard_of_name("describe.jsonl", candidate) is None


def test_every_key_belongs_to_exactly_one_shard_for_any_n() -> None:
    """The split is a partition for every N, so no URL is sent twice or never."""
    keys = [f"https://e.org/{i}.jpg" for i in range(2000)]
    for n in (2, 3, 4, 8):
        owners = [[s for s in range(n) if Shard(s, n).owns(key_hash(k))] for k in keys]
        assert all(len(o) == 1 for o in owners)
        sizes = [sum(o == [s] for o in owners) for s in range(n)]
        assert min(sizes) > 0.7 * len(keys) / n  # and roughly even


def test_plan_skips_other_shards_before_anything_else() -> None:
    """iter_pending and the text pre-filter keep only the shard's items and count the rest."""
    urls = [f"https://e.org/{i}.jpg" for i in range(200)]
    items = [Item(key=u, url=u, line_no=n) for n, u in enumerate(urls, 1)]
    index = ResumeIndex()
    index.add(items[0].key, "ok", True)
    shard = Shard(1, 4)
    counts = PendingCounts()
    mine = [h for h, _ in iter_pending(items, index, counts, shard)]
    expected = {key_hash(i.key) for i in items if key_hash(i.key) % 4 == 1} - index.ok
    assert set(mine) == expected
    assert counts.other_shards == sum(key_hash(i.key) % 4 != 1 for i in items)
    pre = PendingCounts()
    skip = done_line_filter(ResumeIndex(), pre, shard)
    assert skip is not None
    assert sum(skip(i.key.encode()) for i in items) == counts.other_shards == pre.other_shards


def test_merged_index_prefers_a_finished_record_in_any_file() -> None:
    """ok in one file beats an error in another; a permanent error beats a retryable one."""
    a, b = ResumeIndex(), ResumeIndex()
    a.add("x", "error", False)
    b.add("x", "ok", True)
    a.add("y", "error", True)
    b.add("y", "error", False)
    b.add("z", "error", False)
    merged = ResumeIndex()
    merged.merge(a)
    merged.merge(b)
    assert merged.ok == {key_hash("x")}
    assert merged.failed == {key_hash("y")}
    assert merged.retryable == {key_hash("z")}
    assert merged.is_done(key_hash("x")) and not merged.is_done(key_hash("z"))


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
    cfg = load_config(write_config(tmp_path, {"output": "out/t.jsonl"}))
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


def test_sharded_config_names_files_and_splits_the_queue(tmp_path: Path) -> None:
    """A shard writes its own file, lock and work folder; max_queued is split unless
    batch.shard_max_queued says otherwise."""
    cfg = load_config(write_config(tmp_path, {"output": "out/t.jsonl"}, batch={"max_queued": 10}))
    part = cfg.sharded(Shard(2, 4))
    job = part.jobs[0]
    assert job.output_path == tmp_path / "out" / "t.shard-2-of-4.jsonl"
    assert job.main_output_path == tmp_path / "out" / "t.jsonl"
    assert job.work_dir == tmp_path / "out" / ".glmrun" / "t.shard-2-of-4"
    assert part.batch.max_queued == 2 and cfg.batch.max_queued == 10
    assert cfg.sharded(None) is cfg
    fixed = load_config(
        write_config(tmp_path, batch={"max_queued": 10, "shard_max_queued": 7})
    ).sharded(Shard(0, 4))
    assert fixed.batch.max_queued == 7


@pytest.mark.parametrize(
    ("args", "environ"),
    [(["--shard", "4/4"], {}), ([], {"GLMRUN_SHARD": "x/4"}), (["--shard", "1"], {})],
    ids=["out-of-range", "env-malformed", "no-n"],
)
def test_a_bad_shard_is_a_usage_error(tmp_path: Path, args: list[str], environ: dict) -> None:
    """--shard / GLMRUN_SHARD out of range or malformed: exit 2 before anything runs."""
    config = write_config(tmp_path)
    result = CliRunner().invoke(main, ["run", str(config), *args], env=environ)
    assert result.exit_code == 2, result.output
    assert "--shard" in result.output and not (tmp_path / "out.jsonl").exists()
