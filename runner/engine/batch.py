"""The batch engine: chunk states, a pure ``next_state``, and a thin driver.

Each chunk of a job walks::

    Built -> Uploading -> Uploaded -> Creating -> Running -> Ended -> Collecting -> Collected

The driver matches on a chunk's state, makes one API call (or one local step), feeds the
answer to ``next_state`` and writes the job's state file atomically (temp, fsync, rename).
``Uploading`` and ``Creating`` are written *before* the call that creates remote state, so a
crash right after it is recovered by looking the file or batch up (``checked=False``) instead
of uploading or creating a second time. ``Collecting`` is written before results are
appended; a crash in the middle re-collects and skips keys the output already has.

Per-line failures are data: permanent ones (``retry.classify`` says RECORD) become error
records; the rest, and custom_ids in neither result file, follow ``batch.on_failure``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import random
import time
import typing
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, assert_never

import orjson

from runner.clock import Clock, SystemClock
from runner.config.schema import BatchConfig, Config, JobConfig
from runner.core.items import InvalidLine, Item
from runner.core.keys import key_hash
from runner.core.payloads import BodyBuilder, MediaUnavailable
from runner.core.records import INVALID_INPUT, LOCAL_FILE, Record, error_record, now_iso, ok_record
from runner.core.retry import Decision, Verdict, backoff_s, classify
from runner.core.stats import JobStats
from runner.errors import ApiFailure, ApiStopped, ComeBackLater, GlmrunError, OutputError
from runner.io.batch_files import (
    ChunkFile,
    build_chunks,
    fsync_replace,
    iter_sidecar_hashes,
    read_sidecar,
    sidecar_item,
)
from runner.io.media import read_media
from runner.io.store import ResultWriter, load_resume_index

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_D = TypeVar("_D", bound="DataclassInstance")

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
STATE_VERSION = 1
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
LOOKUP_PAGES = 10  # list pages (of 100) scanned to find a batch whose create answer was lost


# --- states ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chunk:
    """A built chunk file (names inside the job's work folder)."""

    index: int
    file: str
    ids: str
    lines: int
    bytes: int
    rebatch_of: int | None = None


@dataclass(frozen=True, slots=True)
class Counts:
    total: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Built:
    chunk: Chunk


@dataclass(frozen=True, slots=True)
class Uploading:
    """The upload may have been sent; ``checked=False`` means look for it before sending again."""

    chunk: Chunk
    checked: bool = True
    errors: int = 0
    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class Uploaded:
    chunk: Chunk
    file_id: str


@dataclass(frozen=True, slots=True)
class Creating:
    """The create may have been sent; ``checked=False`` means list batches before creating."""

    chunk: Chunk
    file_id: str
    checked: bool = True
    errors: int = 0
    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class Running:
    chunk: Chunk
    file_id: str
    batch_id: str
    status: str
    counts: Counts = Counts()
    cancel_requested: bool = False
    errors: int = 0
    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class Ended:
    """The batch reached a final status (or never ran: ``rejected``, ``lost``, ``cancelled``)."""

    chunk: Chunk
    file_id: str | None
    batch_id: str | None
    status: str
    counts: Counts = Counts()
    output_file_id: str | None = None
    error_file_id: str | None = None
    cancel_requested: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Collecting:
    """Results are being appended; ``fresh=False`` (after a crash) skips keys already written."""

    ended: Ended
    fresh: bool = True
    errors: int = 0
    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class Collected:
    ended: Ended
    ok: int = 0
    failed: int = 0
    resent: int = 0
    left: int = 0
    cleaned: bool = False


ChunkState = Built | Uploading | Uploaded | Creating | Running | Ended | Collecting | Collected
STATE_TYPES: dict[str, type[ChunkState]] = {
    cls.__name__: cls
    for cls in (Built, Uploading, Uploaded, Creating, Running, Ended, Collecting, Collected)
}
IN_FLIGHT = (Uploading, Uploaded, Creating, Running)


# --- observations -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Begin:
    """The driver is about to act on the chunk (recorded before a call that costs money)."""


@dataclass(frozen=True, slots=True)
class FileSeen:
    file_id: str


@dataclass(frozen=True, slots=True)
class NotFound:
    """A lookup after a lost answer found nothing: it is safe to send."""


@dataclass(frozen=True, slots=True)
class BatchView:
    """What glmrun needs from a batch object (either request_counts shape)."""

    id: str
    status: str
    counts: Counts
    output_file_id: str | None
    error_file_id: str | None
    input_file_id: str | None = None
    metadata: dict[str, Any] | None = None

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> BatchView:
        rc = obj.get("request_counts")
        src = rc if isinstance(rc, dict) else obj
        counts = Counts(*(int(src.get(k) or 0) for k in ("total", "completed", "failed")))
        meta = obj.get("metadata")
        return cls(
            id=str(obj.get("id")),
            status=str(obj.get("status")),
            counts=counts,
            output_file_id=obj.get("output_file_id") or None,
            error_file_id=obj.get("error_file_id") or None,
            input_file_id=obj.get("input_file_id") or None,
            metadata=meta if isinstance(meta, dict) else None,
        )


@dataclass(frozen=True, slots=True)
class BatchSeen:
    view: BatchView


@dataclass(frozen=True, slots=True)
class CallFailed:
    decision: Decision
    message: str
    backoff_s: float
    gone: bool = False  # 404: the remote object no longer exists


@dataclass(frozen=True, slots=True)
class CancelAsked:
    pass


@dataclass(frozen=True, slots=True)
class CollectDone:
    ok: int
    failed: int
    resent: int
    left: int


@dataclass(frozen=True, slots=True)
class Cleaned:
    pass


Observation = (
    Begin | FileSeen | NotFound | BatchSeen | CallFailed | CancelAsked | CollectDone | Cleaned
)


# --- the pure transition function -------------------------------------------------------------


def next_state(
    state: ChunkState, obs: Observation, now: float, *, poll_interval_s: float = 30.0
) -> ChunkState:
    """Where a chunk goes after ``obs``; unknown pairs leave it unchanged."""
    replace = dataclasses.replace
    if isinstance(obs, CancelAsked):
        return _cancelled(state)
    match state:
        case Built(chunk=c):
            if isinstance(obs, Begin):
                return Uploading(c)
        case Uploading(chunk=c):
            if isinstance(obs, FileSeen):
                return Uploaded(c, obs.file_id)
            if isinstance(obs, NotFound):
                return replace(state, checked=True)
            if isinstance(obs, CallFailed):
                if obs.decision.retryable:
                    return replace(
                        state,
                        checked=False,
                        errors=state.errors + 1,
                        not_before=now + obs.backoff_s,
                    )
                return Ended(c, None, None, "rejected", Counts(c.lines), reason=obs.message)
        case Uploaded(chunk=c, file_id=f):
            if isinstance(obs, Begin):
                return Creating(c, f)
        case Creating(chunk=c, file_id=f):
            if isinstance(obs, BatchSeen):
                return _from_view(
                    Running(c, f, obs.view.id, "validating"), obs.view, now, poll_interval_s
                )
            if isinstance(obs, NotFound):
                return replace(state, checked=True)
            if isinstance(obs, CallFailed):
                if obs.decision.retryable:
                    return replace(
                        state,
                        checked=False,
                        errors=state.errors + 1,
                        not_before=now + obs.backoff_s,
                    )
                return Ended(c, f, None, "rejected", Counts(c.lines), reason=obs.message)
        case Running():
            if isinstance(obs, BatchSeen):
                return _from_view(state, obs.view, now, poll_interval_s)
            if isinstance(obs, CallFailed):
                if obs.gone or not obs.decision.retryable:
                    return Ended(
                        state.chunk,
                        state.file_id,
                        state.batch_id,
                        "lost",
                        state.counts,
                        cancel_requested=state.cancel_requested,
                        reason=obs.message,
                    )
                return replace(state, errors=state.errors + 1, not_before=now + obs.backoff_s)
        case Ended():
            if isinstance(obs, Begin):
                return Collecting(state)
        case Collecting():
            if isinstance(obs, CollectDone):
                return Collected(state.ended, obs.ok, obs.failed, obs.resent, obs.left)
            if isinstance(
                obs, CallFailed
            ):  # the output file may be written already: skip it next time
                return replace(
                    state, fresh=False, errors=state.errors + 1, not_before=now + obs.backoff_s
                )
        case Collected():
            if isinstance(obs, Cleaned):
                return replace(state, cleaned=True)
        case _:
            assert_never(state)
    return state


def _from_view(state: Running, view: BatchView, now: float, poll_interval_s: float) -> ChunkState:
    if view.status in TERMINAL_STATUSES:
        return Ended(
            state.chunk,
            state.file_id,
            view.id,
            view.status,
            view.counts,
            view.output_file_id,
            view.error_file_id,
            state.cancel_requested,
        )
    return dataclasses.replace(
        state,
        batch_id=view.id,
        status=view.status,
        counts=view.counts,
        errors=0,
        not_before=now + poll_interval_s,
    )


def _cancelled(state: ChunkState) -> ChunkState:
    """Cancel: nothing submitted ends at once; a running batch is flagged (the driver asked)."""
    match state:
        case Built(chunk=c) | Uploading(chunk=c):
            return Ended(
                c,
                None,
                None,
                "cancelled",
                Counts(c.lines),
                cancel_requested=True,
                reason="cancelled before upload",
            )
        case Uploaded(chunk=c, file_id=f) | Creating(chunk=c, file_id=f):
            return Ended(
                c,
                f,
                None,
                "cancelled",
                Counts(c.lines),
                cancel_requested=True,
                reason="cancelled before create",
            )
        case Running():
            return dataclasses.replace(state, cancel_requested=True)
        case Ended() | Collecting() | Collected():
            return state
        case _:
            assert_never(state)


def recovered(state: ChunkState) -> ChunkState:
    """A state read back from disk: answers may have been lost and old deadlines mean nothing."""
    match state:
        case Uploading() | Creating():
            return dataclasses.replace(state, checked=False, not_before=0.0)
        case Running():
            return dataclasses.replace(state, not_before=0.0)
        case Collecting():
            return dataclasses.replace(state, fresh=False, not_before=0.0)
        case Built() | Uploaded() | Ended() | Collected():
            return state
        case _:
            assert_never(state)


def is_done(state: ChunkState, delete_remote_files: bool) -> bool:
    return isinstance(state, Collected) and (state.cleaned or not delete_remote_files)


def ready_at(state: ChunkState) -> float:
    return getattr(state, "not_before", 0.0)


def describe(state: ChunkState) -> dict[str, Any]:
    """Flat fields for listings and logs."""
    if isinstance(state, (Collecting, Collected)):
        ended: Ended | None = state.ended
        chunk = state.ended.chunk
    else:
        ended = None
        chunk = state.chunk
    src: Any = ended or state
    counts = getattr(src, "counts", None)
    return {
        "chunk": chunk.index,
        "state": type(state).__name__,
        "lines": chunk.lines,
        "file_id": getattr(src, "file_id", None),
        "batch_id": getattr(src, "batch_id", None),
        "status": getattr(src, "status", None),
        "completed": counts.completed if counts else None,
        "failed": counts.failed if counts else None,
        "total": counts.total if counts else None,
    }


def tracked_batches(job: JobConfig) -> list[dict[str, Any]]:
    """The job's chunks for ``glmrun status``: describe() plus ``state`` as the remote status
    (the local state, lower-cased, before there is one) and ``finished`` once collected."""
    state = load_state(state_path(job))
    out = []
    for chunk in state.chunks if state else []:
        d = describe(chunk)
        out.append(
            {
                **d,
                "local_state": d["state"],
                "state": d["status"] or d["state"].lower(),
                "finished": isinstance(chunk, Collected),
            }
        )
    return out


# --- the state file ---------------------------------------------------------------------------


@dataclass
class JobState:
    job: str
    tag: str
    config_hash: str
    chunks: list[ChunkState] = field(default_factory=list)
    cancelled: bool = False


def _to_json(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return obj


def _from_json(cls: type[_D], data: dict[str, Any]) -> _D:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = _from_json(tp, value)
        kwargs[f.name] = value
    return cls(**kwargs)


def state_to_json(state: ChunkState) -> dict[str, Any]:
    return {"type": type(state).__name__, **_to_json(state)}


def state_from_json(data: dict[str, Any]) -> ChunkState:
    cls = STATE_TYPES[data["type"]]
    return _from_json(cls, {k: v for k, v in data.items() if k != "type"})


def state_path(job: JobConfig) -> Path:
    return job.work_dir / STATE_FILE


def load_state(path: Path) -> JobState | None:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:  # a file where the work folder should be, no permission
        raise OutputError(f"{path}: cannot read the batch state: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise GlmrunError(
            f"{path}: batch state file is not valid JSON ({exc}); move it away to start over"
        ) from None
    return JobState(
        job=data["job"],
        tag=data["tag"],
        config_hash=data.get("config_hash", ""),
        chunks=[state_from_json(c) for c in data.get("chunks", [])],
        cancelled=bool(data.get("cancelled", False)),
    )


def save_state(path: Path, state: JobState) -> None:
    """Atomic: temp file, fsync, rename, fsync the folder; a crash leaves the old or the new."""
    data = orjson.dumps(
        {
            "version": STATE_VERSION,
            "job": state.job,
            "tag": state.tag,
            "config_hash": state.config_hash,
            "cancelled": state.cancelled,
            "chunks": [state_to_json(c) for c in state.chunks],
        },
        option=orjson.OPT_INDENT_2,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    fsync_replace(tmp, path)


def config_hash(job: JobConfig, batch: BatchConfig) -> str:
    text = orjson.dumps(
        [job.model, job.prompt, job.params, batch.endpoint], option=orjson.OPT_SORT_KEYS
    )
    return hashlib.sha256(text).hexdigest()[:12]


def upload_name(job: JobConfig, tag: str, chunk: Chunk) -> str:
    """Unique per job run and chunk, so a lost upload answer can be found by name."""
    return f"glmrun-{job.name}-{tag}-{chunk.index:05d}.jsonl"


def batch_metadata(job: JobConfig, tag: str, chash: str, chunk: Chunk) -> dict[str, str]:
    return {
        "glmrun_job": job.name[:64],
        "glmrun_tag": tag,
        "chunk": str(chunk.index),
        "config_hash": chash,
    }


# --- collecting -------------------------------------------------------------------------------


def line_failure(obj: dict[str, Any]) -> ApiFailure | None:
    """None when the line is a usable answer, else the failure it carries (either envelope)."""
    response = obj.get("response")
    body = response.get("body") if isinstance(response, dict) else None
    status = response.get("status_code") if isinstance(response, dict) else None
    if status == 200 and isinstance(body, dict):
        choices = body.get("choices")
        if choices and isinstance(choices, list) and isinstance(choices[0], dict):
            finish = choices[0].get("finish_reason")
            if finish == "network_error":
                return ApiFailure(
                    200, None, "finish_reason network_error", kind="finish_network_error"
                )
            if finish == "sensitive":
                return ApiFailure(
                    200,
                    None,
                    "finish_reason sensitive: output blocked by the safety review",
                    kind="finish_sensitive",
                )
            return None
    error = obj.get("error")
    if not isinstance(error, dict) and isinstance(body, dict):
        error = body.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message") or "batch line failed")
        return ApiFailure(
            status if isinstance(status, int) else None,
            None if code is None else str(code),
            message,
        )
    if isinstance(status, int) and status != 200:
        return ApiFailure(status, None, f"HTTP {status} in batch result")
    return ApiFailure(200, None, "batch result has no choices", kind="no_choices")


def fast_ok_record(
    url: str, body: dict[str, Any], batch_id: str | None, key: str, now: str | None = None
) -> Record | None:
    """``ok_record(..., via="batch", attempts=1, latency_ms=0, extra={"batch_id"})`` built as one
    dict display for the common answer (plain string content, no markers, reasoning, filter or
    truncation); None otherwise, and the caller uses ok_record. A unit test keeps the two equal.
    """
    choice = body["choices"][0]
    message = choice.get("message")
    if message.__class__ is not dict or key != url:
        return None
    content = message.get("content")
    finish = choice.get("finish_reason")
    if (
        content.__class__ is not str
        or "<" in content
        or message.get("reasoning_content")
        or finish == "length"
        or body.get("content_filter")
    ):
        return None
    return {
        "url": url,
        "status": "ok",
        "content": content,
        "finish_reason": finish,
        "usage": body.get("usage"),
        "model": body.get("model"),
        "via": "batch",
        "attempts": 1,
        "latency_ms": 0,
        "id": body.get("id"),
        "batch_id": batch_id,
        "finished_at": now or now_iso(),
    }


@dataclass
class CollectResult:
    ok: int = 0
    failed: int = 0
    duplicates: int = 0
    unknown: int = 0
    skipped: int = 0
    again: list[tuple[str, Item, str, str]] = field(
        default_factory=list
    )  # cid, item, code, message


def collect_lines(
    data: bytes,
    ids: dict[str, str],
    seen: set[str],
    writer: ResultWriter,
    stats: JobStats,
    batch_id: str | None,
    result: CollectResult,
    done: Any = None,
    builder: BodyBuilder | None = None,
) -> None:
    """Turn one downloaded result file into records; failures that may be resent go to ``again``.

    Records go through ``builder.finish_record`` (meta, structured output) like the realtime
    path's, skipped only when it would add nothing (no structured output, no meta).
    """
    extra = {"batch_id": batch_id}
    finish = builder.finish_record if builder is not None else None
    always = finish is not None and getattr(builder, "_structured", None) is not None
    loads = orjson.loads
    append = writer.append
    now = now_iso()  # one timestamp per downloaded file: it is written within a second or so
    ok = prompt_tokens = completion_tokens = 0
    try:
        for raw in data.splitlines():
            if not raw:
                continue
            try:
                obj = loads(raw)
            except orjson.JSONDecodeError:
                result.unknown += 1
                continue
            if obj.__class__ is not dict:
                result.unknown += 1
                continue
            cid: Any = obj.get("custom_id")  # JSON: checked with __class__ below
            rest = ids.get(cid) if cid.__class__ is str else None
            if rest is None:
                result.unknown += 1
                continue
            if cid in seen:
                result.duplicates += 1
                continue
            seen.add(cid)
            parts = rest.split("\t", 2)
            url = parts[1]
            item: Item | None
            if len(parts) == 3:
                item = sidecar_item(rest)
                key = item.key
            else:
                item = None
                key = url
            if done is not None and done.is_done(key_hash(key)):
                result.skipped += 1
                continue
            response: Any = obj.get("response")
            body: Any = response.get("body") if response.__class__ is dict else None
            choices = (
                body.get("choices")
                if body.__class__ is dict and response.get("status_code") == 200
                else None
            )
            if (
                choices
                and choices.__class__ is list
                and choices[0].__class__ is dict
                and choices[0].get("finish_reason") not in ("network_error", "sensitive")
            ):
                record = fast_ok_record(url, body, batch_id, key, now) or ok_record(
                    url, body, via="batch", attempts=1, latency_ms=0, key=key, extra=extra
                )
                if finish is not None and (always or (item is not None and item.meta is not None)):
                    record = finish(record, item or sidecar_item(rest))
                append(record)
                ok += 1
                usage = body.get("usage")
                if usage.__class__ is dict:
                    prompt_tokens += usage.get("prompt_tokens") or 0
                    completion_tokens += usage.get("completion_tokens") or 0
                continue
            failure = line_failure(obj) or ApiFailure(
                200, None, "batch result has no choices", kind="no_choices"
            )
            item = item or sidecar_item(rest)
            decision = classify(failure)
            if decision.verdict is Verdict.RECORD:
                record = error_record(
                    url,
                    decision.code,
                    failure.message,
                    retryable=False,
                    via="batch",
                    attempts=1,
                    key=key,
                    extra=extra,
                )
                append(finish(record, item) if finish is not None else record)
                result.failed += 1
                stats.errors += 1
            else:
                result.again.append((cid, item, decision.code, failure.message))
    finally:
        result.ok += ok
        stats.ok += ok
        stats.add_usage(
            {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}, "batch"
        )


# --- the driver -------------------------------------------------------------------------------


@dataclass
class BatchDeps:
    client: Any  # GlmClient (files and batches methods)
    writer: ResultWriter
    stats: JobStats
    stop: asyncio.Event
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)
    no_wait: bool = False
    fallback: Any = None  # async (list[(h, Item)]) -> None: the realtime path for on_failure


class BatchDriver:
    """Drives every chunk of one job to Collected, one API call per step."""

    def __init__(self, job: JobConfig, config: Config, state: JobState, deps: BatchDeps):
        self.job = job
        self.config = config
        self.batch = config.batch
        self.state = state
        self.deps = deps
        self.path = state_path(job)
        self.work_dir = job.work_dir
        self.chash = state.config_hash
        self.builder = BodyBuilder(job, read_media)
        self.started = deps.clock.monotonic()
        self._last_progress = self.started

    def __repr__(self) -> str:
        kinds: dict[str, int] = {}
        for c in self.state.chunks:
            kinds[type(c).__name__] = kinds.get(type(c).__name__, 0) + 1
        return f"<BatchDriver {self.job.name} {kinds}>"

    def save(self) -> None:
        save_state(self.path, self.state)

    def advance(self, i: int, obs: Observation) -> ChunkState:
        old = self.state.chunks[i]
        new = next_state(
            old, obs, self.deps.clock.monotonic(), poll_interval_s=self.batch.poll_interval_s
        )
        if new != old:
            self.state.chunks[i] = new
            self.save()
            if type(new) is not type(old) or getattr(new, "status", None) != getattr(
                old, "status", None
            ):
                log.info(
                    "batch chunk",
                    extra={"job": self.job.name, **describe(new), "was": type(old).__name__},
                )
            if isinstance(new, Running) and not isinstance(old, Running):
                log.info(
                    "batch submitted",
                    extra={
                        "job": self.job.name,
                        "batch_id": new.batch_id,
                        "lines": new.chunk.lines,
                    },
                )
            elif isinstance(new, Ended) and not isinstance(old, Ended):
                log.info(
                    "batch completed",
                    extra={
                        "job": self.job.name,
                        "batch_id": new.batch_id,
                        "status": new.status,
                        "completed": new.counts.completed,
                        "failed": new.counts.failed,
                        "total": new.counts.total,
                    },
                )
        return new

    def in_flight_lines(self) -> int:
        return sum(_chunk(c).lines for c in self.state.chunks if isinstance(c, IN_FLIGHT))

    def has_room(self, chunk: Chunk) -> bool:
        used = self.in_flight_lines()
        return used == 0 or used + chunk.lines <= self.batch.max_queued

    async def run(self) -> None:
        """Step every ready chunk until all are collected; ComeBackLater when waiting is not allowed."""
        clock = self.deps.clock
        stop = self.deps.stop
        delete = self.batch.delete_remote_files
        while not stop.is_set():
            moved = False
            for i in range(len(self.state.chunks)):
                st = self.state.chunks[i]
                if is_done(st, delete) or ready_at(st) > clock.monotonic():
                    continue
                if isinstance(st, Built) and not self.has_room(st.chunk):
                    continue
                new = await self.step(i)
                if type(new) is not type(st) or (
                    new != st
                    and not isinstance(new, Running)
                    and ready_at(new) <= clock.monotonic()
                ):
                    moved = True
                if stop.is_set():
                    return
            self._progress()
            if all(is_done(c, delete) for c in self.state.chunks):
                return
            if moved:
                continue
            await self._wait()

    async def _wait(self) -> None:
        clock = self.deps.clock
        now = clock.monotonic()
        waiting = self.waiting()
        if self.deps.no_wait:
            raise ComeBackLater(
                f"{self.job.name}: {waiting} batch(es) still running; run the same command again to collect"
            )
        max_wait = self.batch.max_wait_s
        if max_wait is not None and now - self.started >= max_wait:
            raise ComeBackLater(
                f"{self.job.name}: batch.max_wait_s ({max_wait:g}s) reached with {waiting} batch(es) still "
                "running; run the same command again to collect"
            )
        pending = [
            ready_at(c)
            for c in self.state.chunks
            if not is_done(c, self.batch.delete_remote_files)
            and not isinstance(c, Built)  # Built waits for room
        ]
        delay = max(0.0, min(pending, default=now + self.batch.poll_interval_s) - now)
        if max_wait is not None:
            delay = min(delay, max(0.0, self.started + max_wait - now))
        await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        if not isinstance(self.deps.clock, SystemClock):
            await self.deps.clock.sleep(delay)
            return
        try:
            await asyncio.wait_for(self.deps.stop.wait(), timeout=delay)
        except TimeoutError:
            pass

    def waiting(self) -> int:
        return sum(1 for c in self.state.chunks if isinstance(c, IN_FLIGHT + (Built,)))

    def _progress(self) -> None:
        now = self.deps.clock.monotonic()
        if now - self._last_progress < self.config.run.progress_interval_s:
            return
        self._last_progress = now
        running = [c for c in self.state.chunks if isinstance(c, Running)]
        log.info(
            "batch progress",
            extra={
                "job": self.job.name,
                "running": len(running),
                "completed": sum(c.counts.completed for c in running),
                "failed": sum(c.counts.failed for c in running),
                "total": sum(c.counts.total for c in running),
                "queued_chunks": sum(1 for c in self.state.chunks if isinstance(c, Built)),
                "collected_chunks": sum(1 for c in self.state.chunks if isinstance(c, Collected)),
            },
        )

    async def step(self, i: int) -> ChunkState:
        st = self.state.chunks[i]
        client = self.deps.client
        match st:
            case Built():
                return self.advance(i, Begin())
            case Uploading(checked=False):
                return self.advance(i, await self._call(self._find_upload(st), st))
            case Uploading():
                content = (self.work_dir / st.chunk.file).read_bytes()
                name = upload_name(self.job, self.state.tag, st.chunk)
                obs = await self._call(_seen_file(client.upload_file(name, content, "batch")), st)
                return self.advance(i, obs)
            case Uploaded():
                return self.advance(i, Begin())
            case Creating(checked=False):
                return self.advance(i, await self._call(self._find_batch(st), st))
            case Creating():
                body = {
                    "input_file_id": st.file_id,
                    "endpoint": self.batch.endpoint,
                    "completion_window": self.batch.completion_window,
                    "auto_delete_input_file": False,
                    "metadata": batch_metadata(self.job, self.state.tag, self.chash, st.chunk),
                }
                new = self.advance(i, await self._call(_seen_batch(client.create_batch(body)), st))
                if isinstance(new, Running):
                    self.deps.stats.batches_submitted += 1
                return new
            case Running():
                return self.advance(
                    i, await self._call(_seen_batch(client.get_batch(st.batch_id)), st)
                )
            case Ended():
                return self.advance(i, Begin())
            case Collecting():
                return self.advance(i, await self._collect(i, st))
            case Collected():
                await self._cleanup(st)
                return self.advance(i, Cleaned())
            case _:
                assert_never(st)

    async def _call(self, aw: Awaitable[Observation], st: Any = None) -> Observation:
        """Await one API call; failures become CallFailed (with backoff), STOP ends the run."""
        try:
            return await aw
        except ApiFailure as failure:
            decision = classify(failure)
            if decision.verdict is Verdict.STOP and failure.status != 404:
                raise ApiStopped(
                    f"the API refused the run (code {decision.code}: {decision.reason}); {failure.message}",
                    code=decision.code,
                    status=failure.status,
                ) from failure
            errors = getattr(st, "errors", 0) + 1
            delay = backoff_s(
                errors,
                base_s=self.config.retry.base_delay_s,
                cap_s=self.config.retry.max_delay_s,
                rng=self.deps.rng,
                retry_after_s=failure.retry_after_s,
            )
            gone = failure.status == 404
            if gone:
                decision = Decision(Verdict.RECORD, "http_404", "not found")
            log.warning(
                "batch call failed",
                extra={
                    "job": self.job.name,
                    "code": decision.code,
                    "error": failure.message[:200],
                    "retry_in_s": round(delay, 2),
                },
            )
            return CallFailed(decision, failure.message, delay, gone)

    async def _find_upload(self, st: Uploading) -> Observation:
        name = upload_name(self.job, self.state.tag, st.chunk)
        after = None
        for _ in range(LOOKUP_PAGES):
            params = {"purpose": "batch", "limit": 100, **({"after": after} if after else {})}
            page = await self.deps.client.request_json("GET", "/files", params=params)
            data = page.get("data") or []
            for f in data:
                if f.get("filename") == name:
                    log.info(
                        "found an upload whose answer was lost",
                        extra={"job": self.job.name, "file_id": f.get("id")},
                    )
                    return FileSeen(str(f["id"]))
            if not data or not page.get("has_more"):
                break
            after = data[-1].get("id")
        return NotFound()

    async def _find_batch(self, st: Creating) -> Observation:
        meta = batch_metadata(self.job, self.state.tag, self.chash, st.chunk)
        after = None
        for _ in range(LOOKUP_PAGES):
            page = await self.deps.client.list_batches(after=after, limit=100)
            data = page.get("data") or []
            for b in data:
                view = BatchView.parse(b)
                if view.input_file_id == st.file_id or (
                    view.metadata and all(view.metadata.get(k) == v for k, v in meta.items())
                ):
                    log.info(
                        "found a batch whose create answer was lost",
                        extra={"job": self.job.name, "batch_id": view.id},
                    )
                    return BatchSeen(view)
            if not data or not page.get("has_more"):
                break
            after = page.get("last_id") or data[-1].get("id")
        return NotFound()

    async def _collect(self, i: int, st: Collecting) -> Observation:
        e = st.ended
        deps = self.deps
        ids_path = self.work_dir / e.chunk.ids
        ids = read_sidecar(ids_path) if ids_path.exists() else {}
        done = None if st.fresh else load_resume_index(self.job.output_path)
        result = CollectResult()
        seen: set[str] = set()
        for fid in (e.output_file_id, e.error_file_id):
            if fid is None:
                continue
            try:
                data = await deps.client.file_content(fid)
            except ApiFailure as failure:
                if failure.status == 404:
                    log.warning("result file is gone", extra={"job": self.job.name, "file_id": fid})
                    continue
                return await self._call(_raise(failure), st)
            collect_lines(
                data, ids, seen, deps.writer, deps.stats, e.batch_id, result, done, self.builder
            )
        if result.duplicates or result.unknown:
            log.info(
                "batch result oddities",
                extra={
                    "job": self.job.name,
                    "batch_id": e.batch_id,
                    "duplicates": result.duplicates,
                    "unknown": result.unknown,
                },
            )
        again = result.again
        for cid, rest in ids.items():
            if cid not in seen:
                item = sidecar_item(rest)
                if done is not None and done.is_done(key_hash(item.key)):
                    continue
                again.append(
                    (
                        cid,
                        item,
                        "batch_missing",
                        f"no result in batch {e.batch_id} (status {e.status}) {e.reason}".strip(),
                    )
                )
        resent, left = await self._on_failure(e, again, result)
        deps.writer.fsync()
        for name in (e.chunk.file, e.chunk.ids):
            (self.work_dir / name).unlink(missing_ok=True)
        log.info(
            "batch collected",
            extra={
                "job": self.job.name,
                "batch_id": e.batch_id,
                "status": e.status,
                "ok": result.ok,
                "failed": result.failed,
                "resent": resent,
                "left": left,
            },
        )
        return CollectDone(result.ok, result.failed, resent, left)

    async def _on_failure(
        self, e: Ended, again: list[tuple[str, Item, str, str]], result: CollectResult
    ) -> tuple[int, int]:
        """Apply batch.on_failure to lines that may be sent again; returns (resent, left pending)."""
        if not again:
            return 0, 0
        if e.cancel_requested:
            self.deps.stats.left_pending += len(again)
            return 0, len(again)  # the user cancelled: a later run sends them again
        mode = self.batch.on_failure
        if mode == "rebatch" and e.chunk.rebatch_of is None:
            self.add_chunks(
                ((key_hash(item.key), item) for _, item, _, _ in again), rebatch_of=e.chunk.index
            )
            return len(again), 0
        if mode == "realtime" and self.deps.fallback is not None:
            await self.deps.fallback([(key_hash(item.key), item) for _, item, _, _ in again])
            return len(again), 0
        extra = {"batch_id": e.batch_id}
        for _, item, code, message in again:
            record = error_record(
                item.url,
                code,
                message,
                retryable=True,
                via="batch",
                attempts=1,
                key=item.key,
                extra=extra,
            )
            self.deps.writer.append(self.builder.finish_record(record, item))
            self.deps.stats.errors += 1
        return 0, 0

    def add_chunks(self, items: Any, rebatch_of: int | None = None) -> list[Chunk]:
        first = 1 + max((_chunk(c).index for c in self.state.chunks), default=-1)
        built = _build(items, self.job, self.batch, first, rebatch_of, self._unavailable)
        self.state.chunks.extend(Built(c) for c in built)
        return built

    def _unavailable(self, item: Item, exc: MediaUnavailable) -> None:
        """A local file vanished or changed since the plan: an error record, retried next run."""
        self.deps.writer.append(
            error_record(item.url, LOCAL_FILE, str(exc), retryable=True, via="batch", key=item.key)
        )
        self.deps.stats.errors += 1

    async def _cleanup(self, st: Collected) -> None:
        e = st.ended
        for fid in (e.file_id, e.output_file_id, e.error_file_id):
            if fid is None:
                continue
            try:
                await self.deps.client.delete_file(fid)
            except ApiFailure as failure:
                log.warning(
                    "could not delete a remote file",
                    extra={"job": self.job.name, "file_id": fid, "error": failure.message[:200]},
                )


def _chunk(state: ChunkState) -> Chunk:
    if isinstance(state, (Collecting, Collected)):
        return state.ended.chunk
    return state.chunk


async def _raise(failure: ApiFailure) -> Any:
    raise failure


async def _seen_file(aw: Any) -> Observation:
    answer = await aw
    return FileSeen(str(answer["id"]))


async def _seen_batch(aw: Any) -> Observation:
    return BatchSeen(BatchView.parse(await aw))


def _build(
    items: Any,
    job: JobConfig,
    batch: BatchConfig,
    first: int,
    rebatch_of: int | None = None,
    on_unavailable: Callable[[Item, MediaUnavailable], None] | None = None,
) -> list[Chunk]:
    files: list[ChunkFile] = list(
        build_chunks(
            items,
            job.work_dir,
            BodyBuilder(job, read_media),
            endpoint=batch.endpoint,
            max_lines=min(batch.max_requests_per_file, batch.max_queued),
            max_bytes=batch.max_bytes_per_file,
            first_index=first,
            on_unavailable=on_unavailable,
        )
    )
    return [Chunk(f.index, f.file, f.ids, f.lines, f.bytes, rebatch_of) for f in files]


# --- the job ----------------------------------------------------------------------------------


def tracked_hashes(job: JobConfig, state: JobState) -> set[int]:
    """Key hashes of chunks not yet collected: a rerun must not put them in a new chunk."""
    out: set[int] = set()
    for c in state.chunks:
        if isinstance(c, Collected):
            continue
        path = job.work_dir / _chunk(c).ids
        if path.exists():
            out.update(iter_sidecar_hashes(path))
    return out


def _new_items(
    pending: Iterator[tuple[int, Item | InvalidLine]],
    tracked: set[int],
    writer: ResultWriter,
    stats: JobStats,
) -> Iterator[tuple[int, Item]]:
    for h, item in pending:
        if isinstance(item, InvalidLine):
            writer.append(
                error_record(
                    item.key,
                    INVALID_INPUT,
                    f"line {item.line_no}: {item.reason}",
                    retryable=False,
                    via="input",
                )
            )
            stats.errors += 1
            stats.invalid += 1
            continue
        if h in tracked:
            continue
        yield h, item


def realtime_fallback(
    job: JobConfig,
    config: Config,
    client: Any,
    writer: ResultWriter,
    stats: JobStats,
    stop: asyncio.Event,
) -> Any:
    """on_failure: realtime -> send the items through the realtime engine with the same client."""
    from runner.engine.realtime import RealtimeDeps, RealtimeEngine
    from runner.engine.throttle import Throttle

    async def send(items: list[tuple[int, Item]]) -> None:
        concurrency = config.limits.concurrency
        limit = 4 if concurrency == "auto" else concurrency
        deps = RealtimeDeps(
            client=client,
            writer=writer,
            throttle=Throttle(limit, rpm=config.limits.rpm, tpm=config.limits.tpm),
            retry=config.retry,
            stats=stats,
            stop=stop,
            flush_interval_s=config.run.flush_interval_s,
        )
        log.info("batch fallback to realtime", extra={"job": job.name, "items": len(items)})
        await RealtimeEngine(job, deps).run(items)

    return send


async def run_batch_job(
    plan: Any,
    pending: Iterator[tuple[int, Item | InvalidLine]],
    config: Config,
    client: Any,
    stats: JobStats,
    stop_event: asyncio.Event,
    options: Any,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> JobStats:
    """Build, submit, track, collect: the whole batch path of one job (the caller holds its lock)."""
    job: JobConfig = plan.job
    stats.route = "batch"
    try:
        return await _run_batch_job(
            job, pending, config, client, stats, stop_event, options, clock, rng
        )
    except OSError as exc:
        if isinstance(exc, (TimeoutError, ConnectionError)):
            raise
        where = exc.filename or job.work_dir
        raise OutputError(
            f"{where}: cannot read or write the batch files or state: {exc.strerror or exc}; "
            "what was collected is kept, the next run goes on from the saved state"
        ) from None


async def _run_batch_job(
    job: JobConfig,
    pending: Iterator[tuple[int, Item | InvalidLine]],
    config: Config,
    client: Any,
    stats: JobStats,
    stop_event: asyncio.Event,
    options: Any,
    clock: Clock | None,
    rng: random.Random | None,
) -> JobStats:
    path = state_path(job)
    chash = config_hash(job, config.batch)
    state = load_state(path)
    if state is None:
        state = JobState(job.name, os.urandom(4).hex(), chash)
    else:
        state.chunks = [recovered(c) for c in state.chunks]
        if state.config_hash != chash:
            log.warning(
                "the job's prompt, model or params changed since its batches were built; tracked ones finish as built",
                extra={"job": job.name},
            )
    writer = ResultWriter(job.output_path, flush_interval_s=config.run.flush_interval_s)
    deps = BatchDeps(
        client=client,
        writer=writer,
        stats=stats,
        stop=stop_event,
        clock=clock or SystemClock(),
        rng=rng or random.Random(),
        no_wait=bool(getattr(options, "no_wait", False)),
        fallback=realtime_fallback(job, config, client, writer, stats, stop_event),
    )
    driver = BatchDriver(job, config, state, deps)
    try:
        tracked = tracked_hashes(job, state)
        before = len(state.chunks)
        built = driver.add_chunks(_new_items(pending, tracked, writer, stats))
        writer.flush()
        if built or before == 0:
            driver.save()
        if built:
            log.info(
                "batch files built",
                extra={"job": job.name, "chunks": len(built), "lines": sum(c.lines for c in built)},
            )
        try:
            await driver.run()
        except ComeBackLater as exc:
            exc.stats = stats
            raise
    finally:
        writer.close()
        stats.finished = time.monotonic()
    return stats
