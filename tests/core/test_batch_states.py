"""Pure batch decisions: next_state transitions, recovery marks, state file round trip, parsing."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from runner.config import JobConfig
from runner.core.batch_results import fast_ok_record, line_failure
from runner.core.batch_states import (
    BatchSeen,
    BatchView,
    Begin,
    Built,
    CallFailed,
    CancelAsked,
    CancelChecked,
    Chunk,
    Cleaned,
    CollectDone,
    Collected,
    Collecting,
    Counts,
    Creating,
    Ended,
    FileSeen,
    NotFound,
    Running,
    Uploaded,
    Uploading,
    is_done,
    next_state,
    recovered,
)
from runner.core.items import Item
from runner.core.keys import key_hash
from runner.core.payloads import BodyBuilder, batch_line
from runner.core.records import ok_record
from runner.core.retry import Decision, Verdict, classify
from runner.io.batch_files import (
    ChunkWriter,
    build_chunks,
    custom_id,
    hash_of_custom_id,
    read_sidecar,
    sidecar_item,
)
from runner.io.batch_state import JobState, load_state, save_state
from runner.io.media import read_media

C = Chunk(0, "chunk-00000.jsonl", "chunk-00000.ids", 10, 1000)
RETRY = CallFailed(Decision(Verdict.RETRY, "http_500", "server error"), "HTTP 500", 2.0)
REFUSED = CallFailed(Decision(Verdict.RECORD, "1210", "refused"), "HTTP 400: bad file", 0.0)
GONE = CallFailed(Decision(Verdict.RECORD, "http_404", "not found"), "HTTP 404", 0.0, gone=True)
# a 500 that carries a 12xx business code: classify() looks at the code first (not retryable)
CODED_500 = CallFailed(Decision(Verdict.RECORD, "1214", "bad params"), "HTTP 500 (1214)", 1.0)


def view(status: str, **over: object) -> BatchView:
    fields = {
        "id": "batch_1",
        "status": status,
        "counts": Counts(10, 4, 1),
        "output_file_id": None,
        "error_file_id": None,
    }
    fields.update(over)
    return BatchView(**fields)  # type: ignore[arg-type]


RUNNING = Running(C, "f1", "batch_1", "validating")
# a chunk cancelled before its file was uploaded: nothing was sent, nothing is paid
CANCELLED_BEFORE_UPLOAD = Ended(
    C, None, None, "cancelled", Counts(10), cancel_requested=True, reason="cancelled before upload"
)
ENDED = Ended(C, "f1", "batch_1", "completed", Counts(10, 10, 0), "out1", None)

CASES = [
    (Built(C), Begin(), Uploading(C)),
    (Uploading(C), FileSeen("f1"), Uploaded(C, "f1")),
    (Uploading(C), RETRY, Uploading(C, checked=False, errors=1, not_before=102.0)),
    (Uploading(C, checked=False), NotFound(), Uploading(C, checked=True)),
    (
        Uploading(C),
        REFUSED,
        Ended(C, None, None, "rejected", Counts(10), reason="HTTP 400: bad file"),
    ),
    (Uploaded(C, "f1"), Begin(), Creating(C, "f1")),
    (
        Creating(C, "f1"),
        BatchSeen(view("validating")),
        Running(C, "f1", "batch_1", "validating", Counts(10, 4, 1), not_before=105.0),
    ),
    (Creating(C, "f1"), RETRY, Creating(C, "f1", checked=False, errors=1, not_before=102.0)),
    (Creating(C, "f1", checked=False), NotFound(), Creating(C, "f1")),
    (
        Creating(C, "f1", checked=False),
        BatchSeen(view("completed", output_file_id="o")),
        Ended(C, "f1", "batch_1", "completed", Counts(10, 4, 1), "o", None),
    ),
    (
        RUNNING,
        BatchSeen(view("in_progress")),
        Running(C, "f1", "batch_1", "in_progress", Counts(10, 4, 1), not_before=105.0),
    ),
    (
        RUNNING,
        BatchSeen(view("expired", error_file_id="e")),
        Ended(C, "f1", "batch_1", "expired", Counts(10, 4, 1), None, "e"),
    ),
    (RUNNING, RETRY, Running(C, "f1", "batch_1", "validating", errors=1, not_before=102.0)),
    # issue 11, path 1: a failed poll never ends a running batch; a 404 is confirmed by listing
    (
        RUNNING,
        GONE,
        Running(C, "f1", "batch_1", "validating", errors=1, not_before=100.0, checked=False),
    ),
    (RUNNING, REFUSED, Running(C, "f1", "batch_1", "validating", errors=1, not_before=100.0)),
    (RUNNING, CODED_500, Running(C, "f1", "batch_1", "validating", errors=1, not_before=101.0)),
    (
        Running(C, "f1", "batch_1", "validating", errors=1, checked=False),
        RETRY,
        Running(C, "f1", "batch_1", "validating", errors=2, not_before=102.0, checked=False),
    ),
    (
        Running(C, "f1", "batch_1", "validating", errors=1, checked=False),
        BatchSeen(view("in_progress")),
        Running(C, "f1", "batch_1", "in_progress", Counts(10, 4, 1), not_before=105.0),
    ),
    (
        Running(C, "f1", "batch_1", "validating", checked=False),
        NotFound(),
        Ended(
            C,
            "f1",
            "batch_1",
            "lost",
            Counts(),
            reason="batch batch_1 answered 404 and is not in the account's batch list",
        ),
    ),
    (RUNNING, NotFound(), RUNNING),  # only a 404 followed by a listing ends a batch
    # issue 11, path 2: a refused create is confirmed by a listing; a failed listing is retried
    (
        Creating(C, "f1"),
        REFUSED,
        Creating(C, "f1", checked=False, errors=1, not_before=100.0, refused="HTTP 400: bad file"),
    ),
    (
        Creating(C, "f1", checked=False),
        REFUSED,
        Creating(C, "f1", checked=False, errors=1, not_before=100.0),
    ),
    (
        Creating(C, "f1", checked=False, refused="HTTP 400: bad file"),
        NotFound(),
        Ended(
            C,
            "f1",
            None,
            "rejected",
            Counts(10),
            reason="HTTP 400: bad file (confirmed: no batch carries this chunk)",
        ),
    ),
    (
        Creating(C, "f1", checked=False, refused="HTTP 400: bad file"),
        BatchSeen(view("validating")),
        Running(C, "f1", "batch_1", "validating", Counts(10, 4, 1), not_before=105.0),
    ),
    (Uploading(C, checked=False), REFUSED, Uploading(C, checked=False, errors=1, not_before=100.0)),
    (RUNNING, CancelAsked(), Running(C, "f1", "batch_1", "validating", cancel_requested=True)),
    (
        Built(C),
        CancelAsked(),
        CANCELLED_BEFORE_UPLOAD,
    ),
    # issue 11, path 3: a chunk that may have a batch waits for a listing before it is dropped
    (Uploaded(C, "f1"), CancelAsked(), Uploaded(C, "f1")),
    (Creating(C, "f1"), CancelAsked(), Creating(C, "f1")),
    (
        Creating(C, "f1", checked=False),
        CancelChecked(view("in_progress")),
        Running(C, "f1", "batch_1", "in_progress", Counts(10, 4, 1), True, not_before=105.0),
    ),
    (
        Creating(C, "f1"),
        CancelChecked(view("cancelled", output_file_id="o")),
        Ended(C, "f1", "batch_1", "cancelled", Counts(10, 4, 1), "o", None, True),
    ),
    (
        Uploading(C, checked=False),
        CancelChecked(None),
        CANCELLED_BEFORE_UPLOAD,
    ),
    (
        Creating(C, "f1"),
        CancelChecked(None),
        Ended(
            C,
            "f1",
            None,
            "cancelled",
            Counts(10),
            cancel_requested=True,
            reason="cancelled before create",
        ),
    ),
    (ENDED, Begin(), Collecting(ENDED)),
    (Collecting(ENDED), CollectDone(9, 1, 0, 0), Collected(ENDED, 9, 1, 0, 0)),
    (Collecting(ENDED), RETRY, Collecting(ENDED, fresh=False, errors=1, not_before=102.0)),
    (Collected(ENDED), Cleaned(), Collected(ENDED, cleaned=True)),
    (ENDED, CancelAsked(), ENDED),
    (Built(C), FileSeen("x"), Built(C)),
]


@pytest.mark.parametrize(
    ("state", "obs", "expected"),
    CASES,
    ids=[f"{type(s).__name__}-{type(o).__name__}-{i}" for i, (s, o, _) in enumerate(CASES)],
)
def test_next_state(state: object, obs: object, expected: object) -> None:
    """Each (state, observation) pair leads to the documented next state."""
    assert next_state(state, obs, 100.0, poll_interval_s=5.0) == expected  # type: ignore[arg-type]


def test_recovered_marks_lost_answers() -> None:
    """States read back after a crash look up lost answers and forget old deadlines."""
    assert recovered(Uploading(C, not_before=50.0)) == Uploading(C, checked=False)
    assert recovered(Creating(C, "f1")) == Creating(C, "f1", checked=False)
    assert recovered(Collecting(ENDED)) == Collecting(ENDED, fresh=False)
    assert recovered(Running(C, "f", "b", "in_progress", not_before=9.0)).not_before == 0.0  # type: ignore[union-attr]
    assert recovered(Built(C)) == Built(C)
    # a run that gave up after an outage (exit 75): the next run starts counting again
    assert recovered(Running(C, "f", "b", "in_progress", errors=20)).errors == 0  # type: ignore[union-attr]
    assert recovered(Creating(C, "f1", errors=20, refused="x")) == Creating(
        C, "f1", checked=False, refused="x"
    )


def test_is_done_waits_for_cleanup_when_asked() -> None:
    """A collected chunk is done, unless remote files are still to be deleted."""
    assert is_done(Collected(ENDED), False)
    assert not is_done(Collected(ENDED), True)
    assert is_done(Collected(ENDED, cleaned=True), True)
    assert not is_done(RUNNING, False)


def test_state_file_round_trip(tmp_path: Path) -> None:
    """Every state class survives save_state / load_state unchanged."""
    states = [s for s, _, _ in CASES] + [Collected(ENDED, 1, 2, 3, 4, True)]
    path = tmp_path / "state.json"
    save_state(path, JobState("j", "abcd", "hash", list(states)))
    back = load_state(path)
    assert back is not None and back.chunks == states and back.tag == "abcd"
    assert not (tmp_path / "state.json.tmp").exists()


@pytest.mark.parametrize(
    "obj",
    [
        {
            "id": "b",
            "status": "in_progress",
            "request_counts": {"total": 10, "completed": 4, "failed": 1},
        },
        {
            "id": "b",
            "status": "in_progress",
            "request_counts": 10,
            "total": 10,
            "completed": 4,
            "failed": 1,
        },
    ],
    ids=["nested", "flat"],
)
def test_request_counts_both_shapes(obj: dict) -> None:
    """request_counts parses nested and flat."""
    assert BatchView.parse(obj).counts == Counts(10, 4, 1)


@pytest.mark.parametrize(
    ("line", "code", "kind"),
    [
        (
            {
                "response": {
                    "status_code": 400,
                    "body": {"error": {"code": "1301", "message": "unsafe"}},
                }
            },
            "1301",
            None,
        ),
        ({"error": {"code": "1301", "message": "unsafe"}, "response": None}, "1301", None),
        ({"response": {"status_code": 500, "body": {}}}, None, None),
        ({"response": {"status_code": 200, "body": {"id": "x"}}}, None, "no_choices"),
        (
            {
                "response": {
                    "status_code": 200,
                    "body": {"choices": [{"finish_reason": "sensitive", "message": {}}]},
                }
            },
            None,
            "finish_sensitive",
        ),
    ],
    ids=["zhipu", "openai", "bare-500", "no-choices", "sensitive"],
)
def test_line_failure_envelopes(line: dict, code: str | None, kind: str | None) -> None:
    """Error lines in either envelope become an ApiFailure that classify understands."""
    failure = line_failure(line)
    assert failure is not None and failure.code == code and failure.kind == kind
    assert classify(failure).code


def test_line_failure_ok() -> None:
    """A 200 line with choices is a usable answer."""
    ok = {
        "response": {
            "status_code": 200,
            "body": {"choices": [{"finish_reason": "stop", "message": {"content": "x"}}]},
        }
    }
    assert line_failure(ok) is None


# --- batch files -------------------------------------------------------------------------------


def job() -> JobConfig:
    return JobConfig(
        name="j",
        input="in.txt",
        output="out.jsonl",
        model="glm-4v-plus-0111",
        prompt="Describe.",
        params={"temperature": 0.2},
    )


def items(n: int) -> list[tuple[int, Item]]:
    out = []
    for i in range(n):
        url = f"https://img.example/{i}.jpg"
        out.append((key_hash(url), Item(url, url, i + 1)))
    return out


def test_custom_id_stable_and_valid() -> None:
    """custom_id is a pure function of the key hash, 6-64 chars of [A-Za-z0-9_-], and reversible."""
    for h in (0, 1, 2**64 - 1, key_hash("https://a/b.jpg")):
        cid = custom_id(h)
        assert cid == custom_id(h) and re.fullmatch(r"[A-Za-z0-9_-]{6,64}", cid)
        assert hash_of_custom_id(cid) == h
    assert hash_of_custom_id("nope") is None


def test_split_by_count(tmp_path: Path) -> None:
    """Chunks close at max_lines; every line is the realtime body wrapped by payloads.batch_line."""
    builder = BodyBuilder(job(), read_media)
    chunks = list(
        build_chunks(
            items(25),
            ChunkWriter(
                tmp_path, builder, endpoint="/v4/chat/completions", max_lines=10, max_bytes=10**9
            ),
        )
    )
    assert [c.lines for c in chunks] == [10, 10, 5] and [c.index for c in chunks] == [0, 1, 2]
    lines = (tmp_path / chunks[0].file).read_bytes().splitlines(keepends=True)
    h, item = items(1)[0]
    assert lines[0] == batch_line(custom_id(h), builder.render(item, None), "/v4/chat/completions")
    assert orjson.loads(lines[0])["body"]["temperature"] == 0.2
    ids = read_sidecar(tmp_path / chunks[0].ids)
    assert sidecar_item(ids.rests()[custom_id(h)]) == item
    assert sum(c.bytes for c in chunks) == sum((tmp_path / c.file).stat().st_size for c in chunks)
    assert not list(tmp_path.glob("*.part"))


def test_split_by_bytes(tmp_path: Path) -> None:
    """Chunks close before max_bytes would be exceeded."""
    builder = BodyBuilder(job(), read_media)
    one = len(batch_line(custom_id(0), builder.render(items(1)[0][1], None)))
    chunks = list(
        build_chunks(
            items(10),
            ChunkWriter(
                tmp_path,
                builder,
                endpoint="/v4/chat/completions",
                max_lines=1000,
                max_bytes=3 * one + 5,
            ),
        )
    )
    assert [c.lines for c in chunks] == [3, 3, 3, 1]
    assert all(c.bytes <= 3 * one + 5 for c in chunks)


def test_sidecar_keeps_the_whole_item(tmp_path: Path) -> None:
    """An item with its own key, prompt, images and meta maps back to an equal Item."""
    item = Item(
        "id\t7",
        "https://img.example/7.jpg",
        3,
        prompt="Count {meta.n}",
        images=["https://img.example/7.jpg", "https://img.example/8.jpg"],
        meta={"n": 2},
    )
    plain = Item("https://img.example/9.jpg", "https://img.example/9.jpg", 4)
    pairs = [(key_hash(item.key), item), (key_hash(plain.key), plain)]
    (chunk,) = build_chunks(
        pairs,
        ChunkWriter(
            tmp_path,
            BodyBuilder(job(), read_media),
            endpoint="/v4/chat/completions",
            max_lines=5,
            max_bytes=10**6,
        ),
    )
    ids = read_sidecar(tmp_path / chunk.ids)
    assert {cid: sidecar_item(rest) for cid, rest in ids.rests().items()} == {
        custom_id(key_hash(item.key)): item,
        custom_id(key_hash(plain.key)): plain,
    }


@pytest.mark.parametrize(
    ("message", "extra", "fast"),
    [
        ({"role": "assistant", "content": "a cat"}, {}, True),
        ({"role": "assistant", "content": "<think>hm</think>a cat"}, {}, False),
        ({"role": "assistant", "content": [{"type": "text", "text": "a cat"}]}, {}, False),
        ({"role": "assistant", "content": "a cat", "reasoning_content": "why"}, {}, False),
        (
            {"role": "assistant", "content": "a cat"},
            {"content_filter": [{"role": "assistant", "level": 3}]},
            False,
        ),
    ],
    ids=["plain", "markers", "parts", "reasoning", "filter"],
)
def test_fast_ok_record_equals_ok_record(message: dict, extra: dict, fast: bool) -> None:
    """The collector's fast path builds exactly what records.ok_record builds, or steps aside."""
    body = {
        "id": "87",
        "model": "glm-4v-plus-0111",
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        **extra,
    }
    got = fast_ok_record("https://a/b.jpg", body, "batch_1", "https://a/b.jpg")
    want = ok_record(
        "https://a/b.jpg",
        body,
        via="batch",
        attempts=1,
        latency_ms=0,
        key="https://a/b.jpg",
        extra={"batch_id": "batch_1"},
    )
    if not fast:
        assert got is None
        return
    assert got is not None and list(got.items()) == list(want.items())
    assert fast_ok_record("https://a/b.jpg", body, "batch_1", "other-key") is None
