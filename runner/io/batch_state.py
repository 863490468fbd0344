"""A batch job's state file: the chunk states on disk, written atomically, read back.

``save_state`` writes a temp file, fsyncs it and renames it over ``state.json`` in the job's
work folder, so a crash leaves the old file or the new one, never half of each. The driver saves
before and after every call that costs money. ``tracked_batches`` and ``tracked_hashes`` answer,
from the saved state, what ``glmrun status`` shows and which keys a rerun must not build again.
"""

from __future__ import annotations

import dataclasses
import os
import typing
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
from runner.errors import GlmrunError, OutputError
from runner.io.batch_files import fsync_replace, iter_sidecar_hashes

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_D = TypeVar("_D", bound="DataclassInstance")

STATE_FILE = "state.json"
STATE_VERSION = 1


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
            f"{path}: batch state file is not valid JSON ({exc}); moving it away starts the "
            "job's batches over: first let the batches `glmrun batches list --remote` shows "
            "for this job finish (or cancel them in your account), or a new run pays for "
            "their lines again"
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
    state = load_state(path)
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
