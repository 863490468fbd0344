"""Batch chunk states and the pure ``next_state``: where a chunk goes after each observation.

Each chunk of a job walks::

    Built -> Uploading -> Uploaded -> Creating -> Running -> Ended -> Collecting -> Collected

States and observations are frozen dataclasses; ``next_state(state, observation, now)`` takes
the time as an argument and does no I/O, so every crash-between-steps case is a plain function
test. ``Uploading`` and ``Creating`` carry ``checked=False`` after a lost answer (look the file
or batch up before sending again); ``Collecting`` carries ``fresh=False`` after a crash (skip
keys the output already has). The driver that acts on them is ``runner.engine.batch.driver``.

The rule every transition keeps: **lines are sent again only when the API has confirmed that
they will not run**. A batch ends ``lost`` only after a poll answered 404 *and* a listing of the
account's batches did not show it (``Running(checked=False)`` + ``NotFound``); a chunk ends
``rejected`` only after the create was refused *and* the listing shows no batch with its
metadata (``Creating(refused=...)`` + ``NotFound``). Every other failed call, whatever its status
or code, is retried with backoff (``not_before``); ``errors`` counts the failures in a row, and
the driver gives up the *run* (exit 75, the chunk still tracked), never the chunk.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar, assert_never

from runner.core.retry import Decision

_R = TypeVar("_R", bound="Retrying")

TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Retrying:
    """What a state whose call is retried with backoff carries: ``errors``, the failures in a
    row, and ``not_before``, when to call again. Keyword-only, so each state's own fields keep
    their positions (and its ``match`` patterns)."""

    errors: int = 0
    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class Uploading(Retrying):
    """The upload may have been sent; ``checked=False`` means look for it before sending again."""

    chunk: Chunk
    checked: bool = True


@dataclass(frozen=True, slots=True)
class Uploaded:
    chunk: Chunk
    file_id: str


@dataclass(frozen=True, slots=True)
class Creating(Retrying):
    """The create may have been sent; ``checked=False`` means list batches before creating.

    ``refused`` is the message of a create the API refused: the chunk ends ``rejected`` only
    once a listing confirms that no batch carries its metadata."""

    chunk: Chunk
    file_id: str
    checked: bool = True
    refused: str = ""


@dataclass(frozen=True, slots=True)
class Running(Retrying):
    """A created batch. ``checked=False``: a poll answered 404, list batches to confirm it.

    ``submitted_at`` is the wall time the batch was first seen (records' ``latency_ms``)."""

    chunk: Chunk
    file_id: str
    batch_id: str
    status: str
    counts: Counts = Counts()
    cancel_requested: bool = False
    checked: bool = True
    submitted_at: float = 0.0


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
    submitted_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Collecting(Retrying):
    """Results are being appended; ``fresh=False`` (after a crash) skips keys already written."""

    ended: Ended
    fresh: bool = True


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


def tracked_lines(states: list[ChunkState]) -> tuple[int, int]:
    """(paid, queued): lines of chunks not yet collected whose batch exists or may (its create
    was sent: the API runs and bills them whatever happens next), and lines of chunks built
    but not yet submitted (the next run submits them before any new item)."""
    paid = queued = 0
    for c in states:
        if no_batch(c):
            continue  # dropped by batches cancel (or rejected): not billed, not queued
        if isinstance(c, (Creating, Running, Ended, Collecting)):
            paid += chunk_of(c).lines
        elif isinstance(c, (Built, Uploading, Uploaded)):
            queued += chunk_of(c).lines
    return paid, queued


def no_batch(c: ChunkState) -> bool:
    """A chunk that ended with no batch (dropped by ``batches cancel``, rejected): its lines
    were never billed; the run that collects it leaves them for a later run."""
    ended = c.ended if isinstance(c, Collecting) else c
    return isinstance(ended, Ended) and ended.batch_id is None


def left_behind(states: list[ChunkState]) -> str:
    """What a run that stops waiting leaves for the next one, for people: ``1 batch still
    running, 2 chunks (2,000 lines) not submitted yet`` ('' when nothing). A chunk waiting for
    queue room is no batch yet: counting it as one would say more is running (and paid for)
    than is."""
    # an uploaded file is no batch (a Ctrl-C in the upload said "1 batch … billed"); a sent
    # create may have made one
    running = sum(1 for c in states if isinstance(c, (Creating, Running)))
    queued = [c.chunk.lines for c in states if isinstance(c, (Built, Uploading, Uploaded))]
    parts = []
    if running:
        parts.append(f"{running:,} batch{'' if running == 1 else 'es'} still running")
    if queued:
        n = len(queued)
        parts.append(
            f"{n:,} chunk{'' if n == 1 else 's'} ({sum(queued):,} lines) not submitted yet"
        )
    return ", ".join(parts)


# --- observations -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Begin:
    """The driver is about to act on the chunk (recorded before a call that costs money)."""


@dataclass(frozen=True, slots=True)
class FileSeen:
    file_id: str


@dataclass(frozen=True, slots=True)
class NotFound:
    """A listing (after a lost answer, a refused create or a 404) did not show the object:
    the API has confirmed that it does not exist."""


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
    gone: bool = False  # 404: the object may be gone (confirmed only by a listing)


@dataclass(frozen=True, slots=True)
class CancelAsked:
    """Cancel asked. A chunk that may already have a batch (Uploading, Uploaded, Creating)
    does not move on this alone: it needs ``CancelChecked`` with what a listing found."""


@dataclass(frozen=True, slots=True)
class CancelChecked:
    """Cancel asked, and a listing of the account's batches by this chunk's metadata found
    ``view`` (the batch exists: cancel it and collect it) or nothing (drop the chunk)."""

    view: BatchView | None


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
    Begin
    | FileSeen
    | NotFound
    | BatchSeen
    | CallFailed
    | CancelAsked
    | CancelChecked
    | CollectDone
    | Cleaned
)
MAY_HAVE_BATCH = (Uploading, Uploaded, Creating)
"""States whose batch may exist without glmrun knowing its id (a lost or unsent create)."""


# --- the pure transition function -------------------------------------------------------------


def next_state(
    state: ChunkState, obs: Observation, now: float, *, poll_interval_s: float = 30.0
) -> ChunkState:
    """Where a chunk goes after ``obs``; unknown pairs leave it unchanged."""
    replace = dataclasses.replace
    if isinstance(obs, CancelAsked):
        return state if isinstance(state, MAY_HAVE_BATCH) else _cancelled(state)
    if isinstance(obs, CancelChecked):
        return _cancel_checked(state, obs.view, now, poll_interval_s)
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
                # a failed lookup (checked=False) is retried whatever it says; a refused upload
                # creates nothing that runs, so its lines may go another way
                if obs.decision.retryable or not state.checked:
                    return _again(state, obs, now, checked=False)
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
                if state.refused:
                    return Ended(
                        c,
                        f,
                        None,
                        "rejected",
                        Counts(c.lines),
                        reason=f"{state.refused} (confirmed: no batch carries this chunk)",
                    )
                return replace(state, checked=True)
            if isinstance(obs, CallFailed):
                # a refused create (checked=True, not retryable) is confirmed by a listing; a
                # failed listing (checked=False) is retried whatever it says: never "rejected"
                refused = state.refused
                if state.checked and not obs.decision.retryable:
                    refused = obs.message or obs.decision.reason
                return _again(state, obs, now, checked=False, refused=refused)
        case Running():
            if isinstance(obs, BatchSeen):
                return _from_view(state, obs.view, now, poll_interval_s)
            if isinstance(obs, NotFound) and not state.checked:
                return Ended(
                    state.chunk,
                    state.file_id,
                    state.batch_id,
                    "lost",
                    state.counts,
                    cancel_requested=state.cancel_requested,
                    reason=f"batch {state.batch_id} answered 404 and is not in the account's "
                    "batch list",
                    submitted_at=state.submitted_at,
                )
            if isinstance(obs, CallFailed):
                # a failed poll is a failed poll: back off and ask again, whatever the status
                # or code; a 404 is believed only once a listing confirms it (checked=False)
                return _again(state, obs, now, checked=state.checked and not obs.gone)
        case Ended():
            if isinstance(obs, Begin):
                return Collecting(state)
        case Collecting():
            if isinstance(obs, CollectDone):
                return Collected(state.ended, obs.ok, obs.failed, obs.resent, obs.left)
            if isinstance(obs, CallFailed):  # the output may be written already: skip it next time
                return _again(state, obs, now, fresh=False)
        case Collected():
            if isinstance(obs, Cleaned):
                return replace(state, cleaned=True)
        case _:
            assert_never(state)
    return state


def _again(state: _R, failed: CallFailed, now: float, **changes: Any) -> _R:
    """The state after a failed call: one more error in a row, the next call after backoff."""
    return dataclasses.replace(
        state, errors=state.errors + 1, not_before=now + failed.backoff_s, **changes
    )


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
            submitted_at=state.submitted_at,
        )
    return dataclasses.replace(
        state,
        batch_id=view.id,
        status=view.status,
        counts=view.counts,
        errors=0,
        checked=True,
        not_before=now + poll_interval_s,
    )


def _cancel_checked(
    state: ChunkState, view: BatchView | None, now: float, poll_interval_s: float
) -> ChunkState:
    """Cancel once a listing answered: a found batch is tracked as a cancelled Running one
    (collected like any cancelled batch, partial results kept); none found drops the chunk."""
    if not isinstance(state, MAY_HAVE_BATCH):
        return _cancelled(state)
    if view is None:
        return _cancelled(state)
    file_id = getattr(state, "file_id", None) or view.input_file_id or ""
    running = Running(state.chunk, file_id, view.id, view.status, cancel_requested=True)
    return _from_view(running, view, now, poll_interval_s)


def _cancelled(state: ChunkState) -> ChunkState:
    """Cancel: a chunk confirmed to have no batch ends at once; a running batch is flagged
    (the caller asked the API to cancel it)."""
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
    """A state read back from disk: answers may have been lost, and old deadlines and error
    counts (a run that gave up after an outage) mean nothing to this run."""
    match state:
        case Uploading() | Creating():
            return dataclasses.replace(state, checked=False, errors=0, not_before=0.0)
        case Running():
            return dataclasses.replace(state, errors=0, not_before=0.0)
        case Collecting():
            return dataclasses.replace(state, fresh=False, errors=0, not_before=0.0)
        case Built() | Uploaded() | Ended() | Collected():
            return state
        case _:
            assert_never(state)


def is_done(state: ChunkState, delete_remote_files: bool) -> bool:
    return isinstance(state, Collected) and (state.cleaned or not delete_remote_files)


def ready_at(state: ChunkState) -> float:
    return state.not_before if isinstance(state, Retrying) else 0.0


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


def chunk_of(state: ChunkState) -> Chunk:
    """The chunk a state is about (Collecting and Collected hold it inside ``ended``)."""
    if isinstance(state, (Collecting, Collected)):
        return state.ended.chunk
    return state.chunk
