"""``glmrun status`` reads a job as a run's plan does (the pre-filter of finished lines, batch
look-ups) and sums tokens by regex: it must agree with a slow reference (every input line
checked and looked up alone, every line with usage parsed) on every kind of line, with and
without the persistent index."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from runner.app.status import JobStatus, _count_per_file, collect, format_status
from runner.config import load_config
from runner.config.schema import Config, JobConfig
from runner.core.cost import format_usage, usage_from_lines
from runner.core.items import InvalidLine
from runner.core.records import error_record, invalid_input_record
from runner.io import jsonl
from runner.io.jsonl import iter_lines
from runner.io.store import load_resume_index
from tests.support.configs import write_surface_config

PRICES = {
    "currency": "CNY",
    "prices": {
        "glm-4v-plus-0111": {"input_per_1k": 0.004, "output_per_1k": 0.01, "batch_discount": 0.5}
    },
}


def url(i: int) -> str:
    return f"https://e.org/{i}.jpg"


def ok_line(key: str, prompt: int, via: str = "realtime", content: str = "A cat.") -> bytes:
    """An ok record as glmrun writes it (``records.ok_record``'s field order)."""
    record = {"url": key, "status": "ok", "content": content, "finish_reason": "stop"}
    record["usage"] = {"prompt_tokens": prompt, "completion_tokens": 7, "total_tokens": prompt + 7}
    record |= {"model": "glm-4v-plus-0111", "via": via, "attempts": 1, "latency_ms": 5}
    record["id"] = "r1"
    if via == "batch":
        record["batch_id"] = "batch_1"
    record["finished_at"] = "2026-12-01T00:00:00Z"
    return orjson.dumps(record) + b"\n"


def err_line(key: str, retryable: bool) -> bytes:
    code = "timeout" if retryable else "1301"
    return orjson.dumps(error_record(key, code, "no", retryable=retryable, via="realtime")) + b"\n"


HEAD = [  # what a persistent index covers (the test writes one after them)
    *(ok_line(url(i), 100 + i) for i in range(40)),
    ok_line(url(40), 50, via="batch"),
    err_line(url(41), retryable=False),
    err_line(url(42), retryable=True),
    err_line(url(43), retryable=True),
    ok_line(url(43), 9),  # the later record wins: done
    ok_line(url(44), 3),
    err_line(url(44), retryable=True),  # ... and here: retryable again
    orjson.dumps(invalid_input_record(InvalidLine("not a url", 3, "not a URL"))) + b"\n",
    orjson.dumps(invalid_input_record(InvalidLine(url(45), 4, "was refused"))) + b"\n",
]
ODD = [  # another tool's records, corrupt lines, and glmrun-looking lines that are not records
    b'{"usage": {"completion_tokens": 5, "prompt_tokens": 11}, "url": "https:\\/\\/e.org\\/46.jpg",'
    b' "status": "ok"}\n',  # key order, spaces, escaped slashes: parsed
    ok_line(url(47), 13, content='Line one\nline "two" \u00e9 \u732b \U0001f431 \\ end'),
    ok_line(url(48), 17, via="batch").replace(
        b'"total_tokens":24}', b'"total_tokens":24,"prompt_tokens_details":{"cached_tokens":2}}'
    ),
    ok_line(url(49), 10**19),  # too large for the fast path: orjson's float, counted as 0
    ok_line(url(50), 19)[:-30] + b"\n",  # torn after via: orjson refuses it, no tokens
    ok_line(url(51), 23)[:60] + b"\n",  # torn in the content
    ok_line(url(52), 29).replace(b"A cat.", b"A \\ud800 cat."),  # a lone surrogate: refused
    ok_line(url(53), 31).replace(b"A cat.", b"A \xff cat."),  # not UTF-8: refused
    b"not json at all\n",
    b'{"url":"' + url(54).encode() + b'","status":"ok","usage":{"prompt_tokens":37}}\n',
    ok_line(url(55), 41)[:-2] + b',"usage":{"prompt_tokens":1,"completion_tokens":1}}\n',
    ok_line(url(56), 43).replace(b'"via":"realtime"', b'"via":"realtime","via":"batch"'),
    b"\n",
    ok_line(url(57), 47, via="batch"),
    err_line(url(58), retryable=True),
    err_line(url(59), retryable=False),
]
INPUT = [  # every recorded key, new ones, invalid lines, duplicates, comments and blanks
    *(url(i) for i in range(60)),
    "not a url",
    "ftp://e.org/x.jpg",
    *(url(i) for i in range(60, 70)),
    url(3),
    url(41),
    url(42),
    url(44),
    url(60),
    "not a url",
    "ftp://e.org/x.jpg",
    url(45),
    "# a comment",
    "",
    "https://e.org/" + "x" * 2100 + ".jpg",
]


def reference(job: JobConfig, config: Config, status: JobStatus) -> JobStatus:
    """The counts as status read them before (``_count_per_file``: every input line parsed and
    checked, each key's state looked up alone) and the tokens the slow way (every line with
    usage parsed)."""
    counted = JobStatus(status.job, status.output)
    index = load_resume_index(job.output_path)
    rows = [dataclasses.replace(f, ok=0, errors=0) for f in status.files]
    _count_per_file(job, config, index, [(row, None, index) for row in rows], counted)
    totals = usage_from_lines(iter_lines(job.output_path))
    usage = {
        r: {"prompt": t.prompt, "completion": t.completion} for r, t in totals.by_route.items()
    }
    pairs = {r: (t.prompt, t.completion) for r, t in totals.by_route.items()}
    names = ("ok", "errors", "pending", "retryable_errors", "invalid_unrecorded", "duplicates")
    return dataclasses.replace(
        status,
        **{name: getattr(counted, name) for name in names},
        usage=usage,
        usage_line=format_usage(pairs, job, config.cost),
        files=rows,
    )


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def jsonl_input(lines: list[str]) -> bytes:
    """The same items as a JSONL input (no pre-filter: every line parsed), one not JSON."""
    return b"".join(orjson.dumps({"url": u}) + b"\n" if u[:1] != "#" else b"{\n" for u in lines)


@pytest.mark.parametrize("persisted", [False, True], ids=["full-scan", "index-and-tail"])
@pytest.mark.parametrize("block", [1 << 20, 97], ids=["one-block", "small-blocks"])
@pytest.mark.parametrize("form", ["text", "jsonl"])
def test_status_agrees_with_a_slow_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, persisted: bool, block: int, form: str
) -> None:
    monkeypatch.setattr(jsonl, "BLOCK", block)  # lines split across the regex's blocks
    if form == "text":
        cfg = write_surface_config(tmp_path, INPUT, cost=PRICES)
    else:
        data = jsonl_input(INPUT)
        cfg = write_surface_config(
            tmp_path,
            job={"input": "in.jsonl"},
            input_name="in.jsonl",
            input_bytes=data,
            cost=PRICES,
        )
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"".join(HEAD))
    if persisted:  # the base table read a block at a time, the rest from the tail
        load_resume_index(out, save=True)
        assert out.with_name("out.jsonl.resume-index").exists()
    with out.open("ab") as handle:
        handle.write(b"".join(ODD))
    config = load_config(cfg, environ={})
    before = snapshot(tmp_path)
    (status,) = collect(config)
    assert snapshot(tmp_path) == before  # read-only: no index, lock or note written
    expected = reference(config.jobs[0], config, status)
    assert status.as_dict() == expected.as_dict()
    assert format_status(status) == format_status(expected)
    # the mix is what it says: every kind of count and both routes are there
    assert min(status.ok, status.errors, status.pending, status.retryable_errors) > 0
    assert min(status.invalid_unrecorded, status.duplicates) > 0
    assert list(status.usage) == ["realtime", "batch"]
