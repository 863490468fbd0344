"""A batch job's state file: the chunk states on disk, written atomically, read back.

``save_state`` writes a temp file, fsyncs it and renames it over ``state.json`` in the job's
work folder, so a crash leaves the old file or the new one, never half of each. The driver saves
before and after every call that costs money. ``tracked_batches`` and ``tracked_hashes`` answer,
from the saved state, what ``glmrun status`` shows and which keys a rerun must not build again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from runner.config.schema import JobConfig
from runner.core.batch_states import (
    STATE_TYPES,
    ChunkState,
    Collected,
    Collecting,
    Ended,
    chunk_of,
    describe,
)
from runner.core.shard import shard_of_name
from runner.errors import ConfigError, GlmrunError, OutputError, RunLocked
from runner.io.batch_files import fsync_dir, fsync_replace, iter_sidecar_hashes
from runner.io.store import RunLock

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_D = TypeVar("_D", bound="DataclassInstance")

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
# batches a run without a state file lists to find the job's (runner.engine.batch.adopt)
LOST_BATCHES_LISTED = 1000
STATE_VERSION = 1


@dataclass
class JobState:
    job: str
    tag: str
    config_hash: str
    chunks: list[ChunkState] = field(default_factory=list)
    cancelled: bool = False
    # the name of the output file the chunks are collected into (in the work folder's parent
    # folder); "" in a state written before it was noted: taken to be the reader's own
    output: str = ""

    def belongs_to(self, job: JobConfig) -> bool:
        """The chunks are collected into the output this run of ``job`` appends to."""
        return self.output in ("", job.output_path.name)


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
            f"{path}: batch state file is not valid JSON ({exc}); move it away and run "
            f"again: a run without it looks for this job's batches among the account's latest "
            f"{LOST_BATCHES_LISTED:,} (`glmrun batches list --remote`) and collects them "
            "instead of sending their lines again"
        ) from None
    return JobState(
        job=data["job"],
        tag=data["tag"],
        config_hash=data.get("config_hash", ""),
        chunks=[state_from_json(c) for c in data.get("chunks", [])],
        cancelled=bool(data.get("cancelled", False)),
        output=str(data.get("output", "")),
    )


def claim_state(job: JobConfig, config_hash: str, adopted: Sequence[ChunkState] = ()) -> JobState:
    """The job's state, for the output file this run appends to (and holds the lock of); a new
    one starts with the ``adopted`` chunks (batches found on the account, whose work folder
    was gone: ``runner.engine.batch.adopt``), created with them in one atomic write.

    The work folder is named after the job, so two configs whose jobs share a name and an
    output folder share it: a run of one would collect the other's batches into its own
    output, and the other would then send those lines again. So a state notes its output. A
    run of another output is refused while that output's chunks are not all collected or a
    run of it holds its lock; once they are collected, the folder is taken over. The other
    way round, a job renamed while its batches run would find no state under its new name and
    send their lines again: a run is refused while another work folder beside its own has
    open chunks of the same output, or of the same job sharded otherwise."""
    path = state_path(job)
    own = job.output_path.name
    refuse_if_tracked_elsewhere(job)
    while True:
        state = load_state(path)
        if state is None:
            state = JobState(job.name, os.urandom(4).hex(), config_hash, list(adopted), output=own)
            if create_state(path, state):
                return state
            continue  # another run made one first: whose is it?
        if state.belongs_to(job):
            state.output = own  # noted from the next save on
            return state
        _refuse_if_open(job, state)
        lock = RunLock(job.output_path.with_name(state.output))
        try:
            lock.acquire()
        except RunLocked:
            raise ConfigError(_shared(job, state, "a run of it holds its lock now")) from None
        try:
            again = load_state(path)
            if again is None or again.output != state.output:
                continue  # it changed meanwhile: look again
            _refuse_if_open(job, again)
            state = JobState(job.name, os.urandom(4).hex(), config_hash, output=own)
            save_state(path, state)
            return state
        finally:
            lock.release()


def owned_state(job: JobConfig) -> JobState | None:
    """The job's saved state, or None when there is none or it belongs to another output."""
    state = load_state(state_path(job))
    if state is None or not state.belongs_to(job):
        return None
    return state


def retire_if_output_gone(job: JobConfig) -> bool:
    """A state whose chunks were all collected into an output that is gone now (deleted,
    moved away, emptied) is moved aside (``state.json.output-gone``) and True returned. Kept,
    it told the next run that nothing was in batches, so every line was built and paid for
    again, while a run with no state looks on the account first and collects those batches'
    results again (``runner.engine.batch.adopt``): deleting the output alone now costs what
    deleting it with its work folder did, nothing. A state with a chunk still open stays (its
    batches are collected into the new output)."""
    path, output = state_path(job), job.output_path
    state = load_state(path)
    if state is None or not state.chunks or not state.belongs_to(job) or _open_chunks(state):
        return False
    if output.exists() and output.stat().st_size > 0:
        return False
    n, lines = len(state.chunks), sum(chunk_of(c).lines for c in state.chunks)
    os.replace(path, path.with_name(STATE_FILE + ".output-gone"))
    log.warning(
        f"{output} is gone, but {'1 batch chunk' if n == 1 else f'{n:,} batch chunks'} "
        f"({lines:,} lines) {'was' if n == 1 else 'were'} collected into it: its state is moved "
        f"aside ({path}.output-gone) and the account is looked at, so this run collects their "
        "results again instead of paying for those lines twice",
        extra={"job": job.name},
    )
    return True


def run_refusal(job: JobConfig, *, other_sharding: bool = True) -> str | None:
    """Why a run of ``job`` would be refused over batches it must not collect or resend (for
    ``--dry-run`` and ``glmrun status``), or None. ``other_sharding=False`` leaves out the
    batches of the job run sharded otherwise: ``status`` speaks of no one layout, and a
    sharded job's open shard batches are its normal state, not a blocked job."""
    try:
        refuse_if_tracked_elsewhere(job, other_sharding=other_sharding)
        state = load_state(state_path(job))
        if state is not None and not state.belongs_to(job):
            _refuse_if_open(job, state)
    except ConfigError as exc:
        return str(exc)
    return None


def refuse_if_tracked_elsewhere(job: JobConfig, *, other_sharding: bool = True) -> None:
    """Refuse a run whose lines may be in open batches of another work folder beside its own:
    the job's, under its name before (the same output), or the job's with another sharding
    (the whole job's batches hold lines of every shard, a shard's hold some of the whole job's).
    Neither run could collect them, and either would send those lines again."""
    own, main = job.output_path.name, job.main_output_path.name
    for folder in sorted(job.work_dir.parent.glob("*/")):
        if folder.name == job.work_dir.name:
            continue
        try:
            other = load_state(folder / STATE_FILE)
        except GlmrunError:
            continue  # not a state glmrun can read: none of this job's
        if other is None or not other.output or not _open_chunks(other):
            continue
        if other.output == own:
            how = f"under the job name {other.job!r}; name the job {other.job!r}"
        elif not other_sharding:
            continue
        elif job.shard is not None and other.output == main:
            how = "of the whole job (lines of every shard); run without --shard"
        elif job.shard is None and (shard := shard_of_name(main, other.output)) is not None:
            how = f"of shard {shard}; run with --shard {shard}"
        else:
            continue
        raise ConfigError(
            f"{folder} tracks open batches {how} until they are collected: this run would "
            "send their lines again"
        )


def _open_chunks(state: JobState) -> int:
    return sum(1 for c in state.chunks if not isinstance(c, Collected))


def _refuse_if_open(job: JobConfig, state: JobState) -> None:
    n = _open_chunks(state)
    if n:
        chunks = "1 chunk is" if n == 1 else f"{n} chunks are"
        raise ConfigError(_shared(job, state, f"{chunks} not collected yet"))


def _shared(job: JobConfig, state: JobState, why: str) -> str:
    return (
        f"{job.work_dir} tracks the batches of {state.output} (this job's output before, or "
        f"another config's job also named {job.name!r}), and {why}; this run writes "
        f"{job.output_path.name} and must not collect them: write to {state.output} until "
        "they are collected, or give this job another name or output folder"
    )


def save_state(path: Path, state: JobState) -> None:
    """Atomic: temp file, fsync, rename, fsync the folder; a crash leaves the old or the new."""
    tmp = _write_temp(path, state, ".tmp")
    fsync_replace(tmp, path)


def create_state(path: Path, state: JobState) -> bool:
    """``save_state`` where no state file exists yet, atomically: False (nothing written) when
    another run created one first. On a filesystem without hard links, a plain save."""
    tmp = _write_temp(path, state, f".{os.getpid()}.new")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError:  # no hard links here (some network and FAT filesystems)
        if path.exists():
            return False
        fsync_replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def _write_temp(path: Path, state: JobState, suffix: str) -> Path:
    data = orjson.dumps(
        {
            "version": STATE_VERSION,
            "job": state.job,
            "tag": state.tag,
            "config_hash": state.config_hash,
            "output": state.output,
            "cancelled": state.cancelled,
            "chunks": [state_to_json(c) for c in state.chunks],
        },
        option=orjson.OPT_INDENT_2,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + suffix)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return tmp


def chunk_view(chunk: ChunkState, saved_at: float | None) -> dict[str, Any]:
    """describe() plus what a person needs: ``status`` shows ``cancelling`` as soon as a
    cancel was asked (the remote status says so only at the next poll), and ``polled_at`` is
    when the state was last saved (the driver saves after every poll of a running batch)."""
    d = describe(chunk)
    final = isinstance(chunk, (Ended, Collecting, Collected))
    if getattr(chunk, "cancel_requested", False) and not final:
        d["status"] = "cancelling"
    d["polled_at"] = saved_at if d.get("batch_id") and not final else None
    return d


def saved_at(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def tracked_batches(job: JobConfig) -> list[dict[str, Any]]:
    """The job's chunks for ``glmrun status``: chunk_view() plus ``state`` as the remote status
    (the local state, lower-cased, before there is one) and ``finished`` once collected."""
    path = state_path(job)
    state = owned_state(job)
    at = saved_at(path)
    out = []
    for chunk in state.chunks if state else []:
        d = chunk_view(chunk, at)
        out.append(
            {
                **d,
                "local_state": d["state"],
                "state": d["status"] or d["state"].lower(),
                "finished": isinstance(chunk, Collected),
            }
        )
    return out


def open_batch_keys(job: JobConfig) -> set[int]:
    """Key hashes in the job's batches not yet collected (its own output's): a run that sends
    realtime (mode realtime, or auto below the threshold) leaves them to their batches."""
    refuse_if_tracked_elsewhere(job)
    state = owned_state(job) if job.work_dir.is_dir() else None
    return tracked_hashes(job, state) if state is not None else set()


def tracked_hashes(job: JobConfig, state: JobState) -> set[int]:
    """Key hashes of chunks not yet collected: a rerun must not put them in a new chunk."""
    out: set[int] = set()
    for c in state.chunks:
        if isinstance(c, Collected):
            continue
        path = job.work_dir / chunk_of(c).ids
        if path.exists():
            out.update(iter_sidecar_hashes(path))
    return out
