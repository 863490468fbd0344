"""Collecting a batch result file: every kind of line gives exactly the record (or count) it
gave before the collector's fast path existed, and nothing is lost or written twice.

The expected records are literal: the fast path must reproduce them byte for byte, and every
line it does not recognise must reach the full parser unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.config import JobConfig, OutputSpec
from runner.core.batch_results import ANSWER_LINES, answer_columns
from runner.core.items import Item
from runner.core.keys import key_hash
from runner.core.payloads import BodyBuilder
from runner.core.resume import ResumeIndex
from runner.core.stats import JobStats
from runner.engine.batch import CollectResult, collect_lines
from runner.engine.batch import collect as collect_module
from runner.io import batch_files
from runner.io.batch_files import ChunkWriter, Sidecar, build_chunks, custom_id, read_sidecar
from runner.io.store import ResultWriter

NOW = "2026-01-02T03:04:05Z"
BATCH = "batch_42"
URL = "https://img.example.com/a.jpg"
USAGE = {"prompt_tokens": 1040, "completion_tokens": 8, "total_tokens": 1048}


def cid_of(key: str) -> str:
    return custom_id(key_hash(key))


def answer(
    key: str = URL,
    content: Any = "A cat on a sofa.",
    *,
    finish: str = "stop",
    status: int = 200,
    message: dict[str, Any] | None = None,
    usage: Any = USAGE,
    body_extra: dict[str, Any] | None = None,
    top_extra: dict[str, Any] | None = None,
) -> bytes:
    """A result line in the documented shape (glm-api.md §5.5), compact, in the docs' key order."""
    body = {
        "id": "8668357533850320547",
        "request_id": cid_of(key),
        "created": 1731001234,
        "model": "glm-4v-plus-0111",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish,
                "message": message or {"role": "assistant", "content": content},
            }
        ],
        "usage": usage,
        **(body_extra or {}),
    }
    line = {"response": {"status_code": status, "body": body}, "custom_id": cid_of(key)}
    line["id"] = BATCH
    line.update(top_extra or {})
    return orjson.dumps(line)


def sidecar_bytes(ids: dict[str, str]) -> bytes:
    """The sidecar file of these custom_id -> ``line_no TAB url [TAB json]`` lines."""
    return "".join(f"{cid}\t{rest}\n" for cid, rest in ids.items()).encode()


def sidecar(ids: dict[str, str]) -> Sidecar:
    return Sidecar(sidecar_bytes(ids))


def ok(url: str = URL, content: str = "A cat on a sofa.", **more: Any) -> dict[str, Any]:
    """The ok record a plain answer line becomes (``more`` inserted before ``finish_reason``
    when it is reasoning, after ``id`` otherwise, as ``ok_record`` orders them)."""
    record: dict[str, Any] = {"url": url, "status": "ok", "content": content}
    if "reasoning_content" in more:
        record["reasoning_content"] = more.pop("reasoning_content")
    record["finish_reason"] = more.pop("finish_reason", "stop")
    if "truncated" in more:
        record["truncated"] = more.pop("truncated")
    record["usage"] = more.pop("usage", USAGE)
    record["model"] = "glm-4v-plus-0111"
    record["via"] = "batch"
    record["attempts"] = 1
    record["latency_ms"] = 0
    record["id"] = "8668357533850320547"
    record.update(more)
    record["batch_id"] = BATCH
    record["finished_at"] = NOW
    return record


def failed(code: str, message: str, url: str = URL) -> dict[str, Any]:
    return {
        "url": url,
        "status": "error",
        "error": {"code": code, "message": message, "retryable": False},
        "via": "batch",
        "attempts": 1,
        "latency_ms": 0,
        "batch_id": BATCH,
        "finished_at": NOW,
    }


ERROR_BODY = orjson.dumps(
    {
        "response": {
            "status_code": 400,
            "body": {"error": {"code": "1301", "message": "unsafe content"}},
        },
        "custom_id": cid_of(URL),
        "id": BATCH,
    }
)
SERVER_ERROR = orjson.dumps(
    {
        "response": {"status_code": 500, "body": {"error": {"code": "500", "message": "boom"}}},
        "custom_id": cid_of(URL),
    }
)
TOP_ERROR = orjson.dumps(
    {"custom_id": cid_of(URL), "error": {"code": "1214", "message": "bad messages"}}
)
THINK = "<think>cats sit</think><|begin_of_box|>A cat.<|end_of_box|>"

# (line bytes, the records it must give, {counter: value} beyond the defaults)
CASES: dict[str, tuple[bytes, list[dict[str, Any]], dict[str, Any]]] = {
    "success": (answer(), [ok()], {"ok": 1}),
    "success-unicode-escapes": (
        answer(content='一只猫 "quoted" \\ back\nline \u2028 end / \x7f é'),
        [ok(content='一只猫 "quoted" \\ back\nline \u2028 end / \x7f é')],
        {"ok": 1},
    ),
    "success-escaped-ascii": (
        answer().replace(b"A cat on a sofa.", b"A \\u0063at \\/ sofa."),
        [ok(content="A cat / sofa.")],
        {"ok": 1},
    ),
    "success-empty-content": (answer(content=""), [ok(content="")], {"ok": 1}),
    "success-null-content": (answer(content=None), [ok(content="")], {"ok": 1}),
    "success-content-parts": (
        answer(content=[{"type": "text", "text": "A "}, {"type": "text", "text": "cat"}]),
        [ok(content="A cat")],
        {"ok": 1},
    ),
    "success-markers": (
        answer(content=THINK),
        [ok(content="A cat.", reasoning_content="cats sit")],
        {"ok": 1},
    ),
    "success-reasoning-field": (
        answer(message={"role": "assistant", "content": "A cat.", "reasoning_content": "hm"}),
        [ok(content="A cat.", reasoning_content="hm")],
        {"ok": 1},
    ),
    "success-usage-details": (
        answer(usage={**USAGE, "prompt_tokens_details": {"cached_tokens": 3}}),
        [ok(usage={**USAGE, "prompt_tokens_details": {"cached_tokens": 3}})],
        {"ok": 1},
    ),
    "success-usage-missing": (answer(usage=None), [ok(usage=None)], {"ok": 1, "tokens": (0, 0)}),
    "success-spaced-json": (
        orjson.dumps(orjson.loads(answer()), option=orjson.OPT_INDENT_2).replace(b"\n", b" "),
        [ok()],
        {"ok": 1},
    ),
    "success-keys-reordered": (
        orjson.dumps(orjson.loads(answer()), option=orjson.OPT_SORT_KEYS),
        [ok(usage=dict(sorted(USAGE.items())))],
        {"ok": 1},
    ),
    "success-extra-fields": (
        answer(body_extra={"system_fingerprint": "x"}, top_extra={"error": None, "z": [1]}),
        [ok()],
        {"ok": 1},
    ),
    "success-content-filter": (
        answer(body_extra={"content_filter": [{"role": "assistant", "level": 3}]}),
        [ok(content_filter=[{"role": "assistant", "level": 3}])],
        {"ok": 1},
    ),
    "finish-length": (
        answer(finish="length", content="A cat on"),
        [ok(content="A cat on", finish_reason="length", truncated=True)],
        {"ok": 1},
    ),
    "finish-sensitive": (
        answer(finish="sensitive", content=""),
        [failed("sensitive", "finish_reason sensitive: output blocked by the safety review")],
        {"failed": 1},
    ),
    "finish-network-error": (
        answer(finish="network_error", content=""),
        [],
        {"again": [("network_error", "finish_reason network_error")]},
    ),
    "error-body-1301": (ERROR_BODY, [failed("1301", "unsafe content")], {"failed": 1}),
    "error-body-500": (SERVER_ERROR, [], {"again": [("500", "boom")]}),
    "error-top-level": (TOP_ERROR, [failed("1214", "bad messages")], {"failed": 1}),
    "no-choices": (
        answer().replace(b'"choices":[{', b'"choices":[],"x":[{'),
        [],
        {"again": [("no_choices", "batch result has no choices")]},
    ),
    "status-not-200": (
        answer(status=503),
        [],
        {"again": [("http_503", "HTTP 503 in batch result")]},
    ),
    "missing-custom-id": (answer().replace(b'"custom_id"', b'"customid"'), [], {"unknown": 1}),
    "unknown-custom-id": (answer(key="https://elsewhere/x.jpg"), [], {"unknown": 1}),
    "custom-id-not-string": (
        answer().replace(b'"custom_id":"' + cid_of(URL).encode() + b'"', b'"custom_id":7'),
        [],
        {"unknown": 1},
    ),
    "non-json": (b"this is not json", [], {"unknown": 1}),
    "json-array": (b"[1,2,3]", [], {"unknown": 1}),
    "invalid-utf8": (answer().replace(b"sofa", b"sof\xff"), [], {"unknown": 1}),
    "bad-number": (answer().replace(b"1731001234", b"01731001234"), [], {"unknown": 1}),
    "torn-last-line": (answer()[:-40], [], {"unknown": 1}),
}


def run_collect(
    tmp_path: Path,
    data: bytes,
    items: list[Item],
    monkeypatch: pytest.MonkeyPatch,
    *,
    done: ResumeIndex | None = None,
    parse: str = "none",
) -> tuple[list[bytes], CollectResult, JobStats]:
    """Build the chunk for ``items`` (so the sidecar is the real one), collect ``data`` into a
    fresh output and return its lines, the result and the stats."""
    monkeypatch.setattr(collect_module, "now_iso", lambda: NOW)
    monkeypatch.setattr("runner.core.records.now_iso", lambda: NOW)
    job = JobConfig(
        name="t",
        input=str(tmp_path / "in.txt"),
        output=OutputSpec(str(tmp_path / "out.jsonl"), parse=parse),  # type: ignore[arg-type]
        model="glm-4v-plus-0111",
        prompt="describe",
    )
    builder = BodyBuilder(job)
    chunks = list(
        build_chunks(
            ((key_hash(it.key), it) for it in items),
            ChunkWriter(
                tmp_path / "work",
                builder,
                endpoint="/v4/chat/completions",
                max_lines=100,
                max_bytes=1 << 20,
            ),
        )
    )
    ids = read_sidecar(tmp_path / "work" / chunks[0].ids)
    writer = ResultWriter(job.output_path)
    stats = JobStats("t")
    result = CollectResult()
    collect_lines(data, ids, writer, stats, BATCH, result, done, builder)
    writer.close()
    return job.output_path.read_bytes().splitlines(), result, stats


PLAIN = [
    Item(URL, URL, 1),
    Item("https://img.example.com/b.jpg", "https://img.example.com/b.jpg", 2),
]


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_each_kind_of_line_gives_its_exact_record(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each kind of result line gives exactly its record (or count), as a whole line."""
    line, want, counts = CASES[name]
    data = line if name == "torn-last-line" else line + b"\n"
    lines, result, stats = run_collect(tmp_path, data, PLAIN, monkeypatch)
    assert lines == [orjson.dumps(r) for r in want]
    assert result.ok == counts.get("ok", 0) == stats.ok
    assert result.failed == counts.get("failed", 0) == stats.errors
    assert result.unknown == counts.get("unknown", 0)
    assert result.duplicates == 0 and result.skipped == 0
    assert [(code, msg) for _, _, code, msg in result.again] == counts.get("again", [])
    tokens = counts.get("tokens", (1040, 8) if result.ok else (0, 0))
    assert (stats.prompt_tokens, stats.completion_tokens) == tokens


@pytest.mark.parametrize("bad_utf8", [False, True], ids=["utf8", "one-line-not-utf8"])
def test_a_file_of_every_kind_keeps_order_and_counts(
    bad_utf8: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All kinds in one file (CRLF, blank lines, duplicates): records in line order, each once
    (a line that is not UTF-8 sends its whole block to the full parser: same records)."""
    urls = [f"https://img.example.com/{i}.jpg" for i in range(len(CASES))]
    items = [Item(u, u, i + 1) for i, u in enumerate(urls)]
    lines: list[bytes] = []
    want: list[bytes] = []
    for (name, (line, records, _)), url in zip(CASES.items(), urls, strict=True):
        if name == "invalid-utf8" and not bad_utf8:
            continue
        if name == "unknown-custom-id":
            lines.append(line)
            continue
        lines.append(line.replace(cid_of(URL).encode(), cid_of(url).encode()))
        want += [orjson.dumps({**r, "url": url}) for r in records]
    # second answers for custom_ids already seen (fast-shaped and not): counted, not written
    again = [lines[0], lines[0], lines[6]]
    data = b"\n\n".join(lines[:5]) + b"\r\n" + b"\n".join([*lines[5:], *again, b""])
    got, result, stats = run_collect(tmp_path, data, items, monkeypatch)
    assert got == want
    assert result.duplicates == 3
    assert result.ok + result.failed == len(want) == stats.ok + stats.errors


def test_items_with_meta_and_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An item with its own key and meta keeps both in its record, wherever its line is."""
    item = Item("photo-1", URL, 1, meta={"shop": "a"})
    b_url = "https://img.example.com/b.jpg"
    plain = answer().replace(cid_of(URL).encode(), cid_of(b_url).encode())
    line = answer().replace(cid_of(URL).encode(), cid_of("photo-1").encode())
    data = b"\n".join([b"junk", plain, line, b""])
    got, result, _ = run_collect(tmp_path, data, [item, Item(b_url, b_url, 2)], monkeypatch)
    want = {"url": URL, "key": "photo-1", **{k: v for k, v in ok().items() if k != "url"}}
    assert got == [orjson.dumps(ok(url=b_url)), orjson.dumps({**want, "meta": {"shop": "a"}})]
    assert result.ok == 2 and result.unknown == 1


def test_parse_json_applies_to_batch_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """output.parse: json parses the content of every ok record, fast-shaped lines included."""
    line = answer(content='{"a": 1}')
    got, result, _ = run_collect(tmp_path, line + b"\n", PLAIN, monkeypatch, parse="json")
    assert got == [orjson.dumps({**ok(content='{"a": 1}'), "parsed": {"a": 1}})]
    assert result.ok == 1


def test_done_keys_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key the output already holds as done is counted as skipped, not written again."""
    done = ResumeIndex()
    done.add(URL, "ok", True)
    got, result, stats = run_collect(tmp_path, answer() + b"\n", PLAIN, monkeypatch, done=done)
    assert got == [] and result.skipped == 1 and result.ok == 0 == stats.ok


FAST_CONTENTS = {
    "ascii": "A cat on a sofa.",
    "chinese": "一只猫坐在沙发上。",
    "slash-del-2028": "a/b \x7f \u2028 \u2029 \u0085 é",
    "empty": "",
    "max-ints": "x",
    "short-escapes": 'say "hi"\n\ta\\b\r\x08\x0c',
}
SLOW_CONTENTS = {
    "control": "bell\x07",
    "escape-then-lt": "a\n<b>",
    "marker": "<think>x</think>y",
    "lt": "1 < 2",
}


@pytest.mark.parametrize(
    "content",
    [*FAST_CONTENTS.values(), *SLOW_CONTENTS.values()],
    ids=[*FAST_CONTENTS, *SLOW_CONTENTS],
)
def test_fast_path_writes_what_the_full_parser_writes(
    content: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer line gives the same bytes with and without the fast path, and the fast path
    takes exactly the lines whose bytes it can splice."""
    usage = {"prompt_tokens": 10**15 - 1, "completion_tokens": 0, "total_tokens": 7}
    line = answer(content=content, usage=usage if content == "x" else USAGE) + b"\n"
    slow_calls: list[bytes] = []
    full_parser = collect_module._Collector.line

    def counted(self: Any, raw: bytes) -> None:
        slow_calls.append(raw)
        full_parser(self, raw)

    monkeypatch.setattr(collect_module._Collector, "line", counted)
    outputs = []
    for fast in (True, False):
        (tmp_path / "out.jsonl").unlink(missing_ok=True)
        slow_calls.clear()
        monkeypatch.setattr(collect_module, "now_iso", lambda: NOW)
        writer = ResultWriter(tmp_path / "out.jsonl")
        stats = JobStats("t")
        result = CollectResult()
        ids = sidecar({cid_of(URL): f"1\t{URL}"})
        collect_lines(line, ids, writer, stats, BATCH, result, fast=fast)
        writer.close()
        outputs.append((tmp_path / "out.jsonl").read_bytes())
        assert result.ok == 1 == stats.ok
        if fast:
            assert len(slow_calls) == (0 if content in FAST_CONTENTS.values() else 1)
    assert outputs[0] == outputs[1]
    record = orjson.loads(outputs[0])
    assert record["usage"] == (usage if content == "x" else USAGE)


@pytest.mark.parametrize("meta", [True, False], ids=["some-meta", "all-plain"])
@pytest.mark.parametrize("block", [700, 1 << 20], ids=["small-blocks", "one-block"])
def test_many_blocks_fast_equals_full_parser(
    block: int, meta: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of mixed lines cut into many blocks (lines of every kind at block edges, items
    with meta, duplicates across blocks, a line that is not UTF-8): the same bytes and counts
    with and without the fast path, and every known line accounted for exactly once (with
    items with meta the sidecar's fast map is read line by line, without them in one split)."""
    monkeypatch.setattr("runner.core.batch_results._BLOCK", block)
    monkeypatch.setattr(collect_module, "now_iso", lambda: NOW)
    monkeypatch.setattr("runner.core.records.now_iso", lambda: NOW)
    kinds = list(CASES.values())
    items: list[Item] = []
    lines: list[bytes] = []
    for i in range(300):
        url = f"https://img.example.com/{i}.jpg"
        key = f"k{i}" if meta and i % 11 == 0 else url
        items.append(Item(key, url, i + 1, meta={"i": i} if meta and i % 11 == 0 else None))
        line = kinds[i % len(kinds)][0] if i % 3 == 0 else answer(content=f"answer {i}\n")
        lines.append(line.replace(cid_of(URL).encode(), cid_of(key).encode()))
        if i % 13 == 0:
            lines.append(lines[i // 2])  # a duplicate of an earlier line
        if i % 17 == 0:
            lines.append(b"")
    data = b"\n".join(lines)  # no newline at the end: the last line may be torn
    ids = {cid_of(it.key): f"{it.line_no}\t{it.url}" for it in items}
    for it in items:
        if it.meta is not None:
            ids[cid_of(it.key)] += "\t" + orjson.dumps({"key": it.key, "meta": it.meta}).decode()
    assert (batch_files._fast_grid(sidecar_bytes(ids)) is None) == meta
    outputs = []
    for fast in (True, False):
        (tmp_path / "out.jsonl").unlink(missing_ok=True)
        writer = ResultWriter(tmp_path / "out.jsonl")
        stats, result, sidecar_ = JobStats("t"), CollectResult(), sidecar(ids)
        collect_lines(data, sidecar_, writer, stats, BATCH, result, fast=fast)
        claimed = sorted(ids.keys() - {cid for cid, _ in sidecar_.unclaimed()})
        writer.close()
        out = (tmp_path / "out.jsonl").read_bytes()
        counts = (result.ok, result.failed, result.duplicates, result.unknown, len(result.again))
        outputs.append((out, counts, stats.ok, stats.prompt_tokens, claimed))
        records = [orjson.loads(line) for line in out.splitlines()]
        assert len(records) == result.ok + result.failed
        assert len({r.get("key", r["url"]) for r in records}) == len(records)  # none twice
        assert result.ok + result.failed + len(result.again) == len(claimed)
    assert outputs[0] == outputs[1]
    assert outputs[0][1][0] > 150  # most lines are answers


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "full-parser"])
def test_output_and_error_files_share_one_ledger(
    fast: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's two files are collected against one sidecar: a result for an id already taken
    from the other file is a duplicate, never a second record, and an id in neither file is
    left for on_failure."""
    monkeypatch.setattr(collect_module, "now_iso", lambda: NOW)
    monkeypatch.setattr("runner.core.records.now_iso", lambda: NOW)
    urls = [f"https://img.example.com/{i}.jpg" for i in range(4)]
    ids = sidecar({cid_of(u): f"{i + 1}\t{u}" for i, u in enumerate(urls)})

    def line(url: str, base: bytes = answer()) -> bytes:
        return base.replace(cid_of(URL).encode(), cid_of(url).encode())

    output = b"\n".join([line(urls[0]), line(urls[1]), line(urls[2], ERROR_BODY)]) + b"\n"
    errors = b"\n".join([line(urls[1], ERROR_BODY), line(urls[2]), line(urls[0])]) + b"\n"
    writer = ResultWriter(tmp_path / "out.jsonl")
    stats, result = JobStats("t"), CollectResult()
    for data in (output, errors):
        collect_lines(data, ids, writer, stats, BATCH, result, fast=fast)
    writer.close()
    got = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert got == [
        orjson.dumps(ok(url=urls[0])),
        orjson.dumps(ok(url=urls[1])),
        orjson.dumps(failed("1301", "unsafe content", url=urls[2])),
    ]
    assert (result.ok, result.failed, result.duplicates) == (2, 1, 3)
    assert [(cid, item.url) for cid, item in ids.unclaimed()] == [(cid_of(urls[3]), urls[3])]


TRICKY = {
    "escaped-backslash-at-end": answer(content="ends with \\"),
    "escaped-quotes": answer(content='say "hi" \\"there\\"'),
    "slash-escape": answer().replace(b"A cat on a sofa.", b"A cat \\/ sofa."),
    "unicode-escape": answer().replace(b"A cat on a sofa.", b"A \\u0063at"),
    "raw-control-in-content": answer().replace(b"A cat", b"A\x01cat"),
    "raw-tab-in-body-id": answer().replace(b"8668357533850320547", b"86683\t57533850320547"),
    "backslash-in-model": answer().replace(b"glm-4v-plus-0111", b"glm-4v\\\\plus"),
    "escape-in-custom-id": answer().replace(cid_of(URL).encode(), b"g\\u0031"),
    "lt-in-content": answer(content="1 < 2"),
    # the constants the cheaper scan skips over, changed without changing their length
    "status-201": answer(status=201),
    "finish-same-length": answer().replace(b'"finish_reason":"stop"', b'"finish_reason":"stap"'),
    # invalid JSON ("x\\" ends the string) that a scan taking \\" for an escaped quote misreads
    "quote-misread": answer().replace(b"A cat on a sofa.", b'x\\\\"\\"}'),
}


def assert_rows_agree(block: bytes, got: list[tuple[bytes, ...]]) -> None:
    """Each row of the cheaper scan is the row ``ANSWER_LINES`` gives, or a line it leaves to the
    full parser whole (a row of ``ANSWER_LINES`` may be left so, never the other way)."""
    strict = list(zip(*ANSWER_LINES.findall(block), strict=True))
    assert len(got) == len(strict) == 8 and len(got[0]) == len(strict[0])
    lines = block.split(b"\n")[1:]
    for i, line in enumerate(lines):
        row, reference = tuple(c[i] for c in got), tuple(c[i] for c in strict)
        if row[6]:
            assert row == reference
        else:
            assert row == (b"",) * 7 + (line,)


@given(
    st.lists(
        st.one_of(
            st.sampled_from([*TRICKY.values(), *(c[0] for c in CASES.values())]),
            st.text(alphabet=st.sampled_from('ab"\\/<\x01\n\té\u2028'), max_size=8).map(
                lambda text: answer(content=text)
            ),
            st.binary(max_size=6).map(lambda raw: answer().replace(b"on a", raw)),
            st.just(answer().replace(b'"index":0', b'"index":1')),
        ),
        min_size=1,
        max_size=6,
    )
)
@settings(max_examples=400, deadline=None)
def test_cheaper_scan_agrees_with_answer_lines(lines: list[bytes]) -> None:
    """Over blocks of any lines (escapes, quotes, control and raw bytes in every string), the
    cheaper scan gives the rows ``ANSWER_LINES`` gives (or leaves lines whole), or steps aside."""
    block = b"\n" + b"\n".join(lines)
    try:
        block.decode()
    except UnicodeDecodeError:
        return  # the collector sends such a block to the full parser before any scan
    got = answer_columns(block)
    if got is not None:
        assert_rows_agree(block, got)


@pytest.mark.parametrize("content", list(FAST_CONTENTS.values()), ids=list(FAST_CONTENTS))
def test_cheaper_scan_takes_the_common_answers(content: str) -> None:
    """A block of answers whose records can be spliced is taken whole by the cheaper scan, and
    an error line among them does not stop it."""
    block = b"\n" + b"\n".join([answer(content=content), ERROR_BODY, answer(content="a\nb")])
    assert answer_columns(block) == list(zip(*ANSWER_LINES.findall(block), strict=True))


@pytest.mark.parametrize("name", list(TRICKY), ids=list(TRICKY))
def test_cheaper_scan_on_tricky_lines(name: str) -> None:
    """Lines the cheaper scan might misread give what ``ANSWER_LINES`` gives, or no columns."""
    block = b"\n" + answer() + b"\n" + TRICKY[name]
    got = answer_columns(block)
    if got is not None:
        assert_rows_agree(block, got)
