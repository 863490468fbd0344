"""The driver's result steps: download a finished batch's files into records, apply
``batch.on_failure`` to lines that did not run, build chunk files, delete remote files.

``ResultSteps`` is the part of ``BatchDriver`` that works on results; ``BatchDeps`` (what the
driver is given) lives here too so both modules share it without an import cycle.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runner.api.protocol import BatchClient
from runner.clock import Clock, SystemClock
from runner.config.schema import BatchConfig, Config, JobConfig
from runner.core.batch_states import (
    Built,
    Chunk,
    ChunkState,
    CollectDone,
    Collected,
    Collecting,
    Ended,
    Observation,
    chunk_of,
)
from runner.core.items import Item
from runner.core.keys import key_hash
from runner.core.payloads import BodyBuilder, MediaUnavailable
from runner.core.records import LOCAL_FILE, error_record
from runner.core.stats import JobStats
from runner.engine.batch.collect import CollectResult, collect_lines
from runner.errors import ApiFailure
from runner.io.batch_files import ChunkFile, ChunkWriter, Sidecar, build_chunks, read_sidecar
from runner.io.batch_state import JobState
from runner.io.media import read_media
from runner.io.store import ResultWriter, load_resume_index

log = logging.getLogger(__name__)

Fallback = Callable[[list[tuple[int, Item]]], Awaitable[int]]
"""Sends (key hash, item) pairs another way and returns how many it finished (a record
written); ``batch.on_failure: realtime`` uses one."""


@dataclass
class BatchDeps:
    client: BatchClient
    writer: ResultWriter
    stats: JobStats
    stop: asyncio.Event
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)
    no_wait: bool = False
    fallback: Fallback | None = None  # the realtime path for on_failure
    adopted_now: bool = False  # this run adopted the tracked batches (and said so already)


def why_again(again: list[tuple[str, Item, str, str]], status: str) -> str:
    """Why a batch's lines are sent again, by kind: ``16 answered 500, 1 has no result in the
    completed batch``. "No result in the completed batch" for all of them sent a person
    looking for lines the API had dropped, when it had answered most of them with a 500."""
    kinds: dict[str, int] = {}
    for _, _, code, _ in again:
        kinds[code] = kinds.get(code, 0) + 1
    missing = kinds.pop("batch_missing", 0)
    parts = [f"{n:,} answered {code}" for code, n in sorted(kinds.items(), key=lambda kv: -kv[1])]
    if missing:
        has = "has" if missing == 1 else "have"
        parts.append(f"{missing:,} {has} no result in the {status} batch")
    return ", ".join(parts)


class ResultSteps:
    """Collect, on_failure, chunk building and cleanup for ``BatchDriver``."""

    job: JobConfig
    config: Config
    batch: BatchConfig
    state: JobState
    deps: BatchDeps
    work_dir: Path
    builder: BodyBuilder
    _fallback_lock: asyncio.Lock

    async def _call(self, aw: Awaitable[Observation], st: ChunkState | None = None) -> Observation:
        raise NotImplementedError  # BatchDriver._call

    async def _collect(self, i: int, st: Collecting) -> Observation:
        e = st.ended
        deps = self.deps
        ids_path = self.work_dir / e.chunk.ids
        ids = read_sidecar(ids_path) if ids_path.exists() else Sidecar(b"")
        done = None if st.fresh else load_resume_index(self.job.output_path)
        result = CollectResult()
        for fid in (e.output_file_id, e.error_file_id):
            if fid is None:
                continue
            try:
                data = await deps.client.file_content(fid)
            except ApiFailure as failure:
                if failure.status == 404 and st.errors > 0:
                    # asked again after a failure and still 404: the file is gone (its lines
                    # follow on_failure); a first 404 is retried like any failed call
                    log.warning("result file is gone", extra={"job": self.job.name, "file_id": fid})
                    continue
                return await self._call(_raise(failure), st)
            collect_lines(
                data,
                ids,
                deps.writer,
                deps.stats,
                e.batch_id,
                result,
                done,
                self.builder,
                attempts=1 if e.chunk.rebatch_of is None else 2,
                latency_ms=self._latency_ms(e),
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
        for cid, item in ids.unclaimed():
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
                "chunk": e.chunk.index,
                "status": e.status,
                "ok": result.ok,
                "failed": result.failed,
                "resent": resent,
                "on_failure": self.batch.on_failure,
                "left": left,
                "recorded": len(again) - resent - left,  # error records, retryable: true
            },
        )
        return CollectDone(result.ok, result.failed, resent, left)

    def _latency_ms(self, e: Ended) -> int:
        """From the batch's submission to its collection (0 when the state predates it)."""
        if not e.submitted_at:
            return 0
        return max(0, round((self.deps.clock.time() - e.submitted_at) * 1000))

    async def _on_failure(
        self, e: Ended, again: list[tuple[str, Item, str, str]], result: CollectResult
    ) -> tuple[int, int]:
        """Apply batch.on_failure to lines that may be resent; returns (resent, left pending)."""
        if not again:
            return 0, 0
        if e.cancel_requested:
            self.deps.stats.left_pending += len(again)
            return 0, len(again)  # the user cancelled: a later run sends them again
        mode = self.batch.on_failure
        log.warning(
            "batch lines did not run",
            extra={
                "job": self.job.name,
                "batch_id": e.batch_id,
                "status": e.status,
                "lines": len(again),
                "on_failure": mode,
                "reason": e.reason or why_again(again, e.status),
            },
        )
        if mode == "rebatch" and e.chunk.rebatch_of is None:
            self.add_chunks(
                ((key_hash(item.key), item) for _, item, _, _ in again), rebatch_of=e.chunk.index
            )
            return len(again), 0
        if mode == "realtime" and self.deps.fallback is not None:
            async with self._fallback_lock:
                sent = await self.deps.fallback(
                    [(key_hash(item.key), item) for _, item, _, _ in again]
                )
            left = len(again) - sent  # a stop cut it short: no record, the next run sends them
            self.deps.stats.left_pending += left
            return sent, left
        extra = {"batch_id": e.batch_id}
        for _, item, code, message in again:
            record = error_record(
                item.url,
                code,
                message,
                retryable=True,
                via="batch",
                attempts=1 if e.chunk.rebatch_of is None else 2,
                key=item.key,
                extra=extra,
            )
            self.deps.writer.append(self.builder.finish_record(record, item))
            self.deps.stats.errors += 1
        return 0, 0

    def add_chunks(
        self, items: Iterable[tuple[int, Item]], rebatch_of: int | None = None
    ) -> list[Chunk]:
        first = 1 + max((chunk_of(c).index for c in self.state.chunks), default=-1)
        built = build_chunk_files(items, self.job, self.batch, first, rebatch_of, self._unavailable)
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


async def _raise(failure: ApiFailure) -> Observation:
    raise failure


def build_chunk_files(
    items: Iterable[tuple[int, Item]],
    job: JobConfig,
    batch: BatchConfig,
    first: int,
    rebatch_of: int | None = None,
    on_unavailable: Callable[[Item, MediaUnavailable], None] | None = None,
) -> list[Chunk]:
    files: list[ChunkFile] = list(
        build_chunks(
            items,
            ChunkWriter(
                job.work_dir,
                BodyBuilder(job, read_media),
                endpoint=batch.endpoint,
                max_lines=min(batch.max_requests_per_file, batch.max_queued),
                max_bytes=batch.max_bytes_per_file,
                first_index=first,
            ),
            on_unavailable=on_unavailable,
        )
    )
    return [Chunk(f.index, f.file, f.ids, f.lines, f.bytes, rebatch_of) for f in files]
