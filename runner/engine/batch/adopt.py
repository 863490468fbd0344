"""Batches of a job still on the account after its work folder (``.glmrun/<job>/``) is gone.

The state file is the only local record of the job's batches: without it a run would build
and submit their lines again, and the account would bill them twice. So a run that finds no
state file asks the account first (``find_lost_batches``): one bounded listing of the batches
(``LIST_PAGES`` pages of 100, newest first) for those whose metadata names this job and this
output (a batch made before glmrun noted the output in its metadata: this job's name is
enough). Each found is adopted as a chunk of the new state, so its lines are not built again
and its results are collected into the output:

* a batch still running (validating, in progress, finalizing, cancelling): its lines are those
  of its remote input file (each custom_id is a key hash); the chunk is ``Running`` and the
  driver polls and collects it. Its input file gone, glmrun cannot tell which lines it holds:
  the run is refused (``LostBatchUnknown``, exit 2), never sent again silently;
* a finished batch (completed, expired, cancelled) built from this config: the lines are those
  with a result in its output or error file that have no record in the output yet; the chunk
  is ``Ended`` and is collected. Lines it holds no result for never ran (not billed): they are
  sent as any pending line. A failed batch ran nothing and is passed over.

The job's batches sharded the other way (the whole job's, found by a ``--shard`` run, or a
shard's, found by the whole job's run) hold lines this run would send: while one runs, or
holds results not in the output, the run is refused (exit 2), as
``batch_state.refuse_if_tracked_elsewhere`` refuses over their work folders.

A key in two batches (a rebatched line) belongs to the newest. Collecting needs each line's
item (URL, line number, key, meta): the chunk's sidecar is rebuilt from the job's input, in one
pass over the lines this run would send; a line no longer in the input is not in it (its result
is not written). Sidecars are written before the state that names them, so a crash in between
leaves no state, and the next run adopts the batches again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from runner.api.protocol import BatchClient
from runner.clock import Clock, SystemClock
from runner.config.schema import Config, JobConfig
from runner.core.batch_names import JOB_KEY, OUTPUT_KEY, REBATCH_KEY, config_hash, output_tag
from runner.core.batch_states import (
    TERMINAL_STATUSES,
    BatchView,
    Chunk,
    ChunkState,
    Ended,
    Running,
    chunk_of,
    describe,
)
from runner.core.items import Item
from runner.core.plan import PendingCounts, done_line_filter, iter_pending
from runner.core.resume import NONE, ResumeIndex
from runner.core.retry import Verdict, classify, stopped
from runner.core.shard import shard_of_name
from runner.errors import ApiFailure, ComeBackLater, ConfigError
from runner.io.batch_files import (
    chunk_names,
    custom_id,
    fsync_replace,
    hash_of_custom_id,
    sidecar_line,
)
from runner.io.batch_state import LOST_BATCHES_LISTED, claim_state, refuse_if_tracked_elsewhere
from runner.io.job_files import load_job_index
from runner.io.prepare import read_job_items

log = logging.getLogger(__name__)

LIST_PAGES = LOST_BATCHES_LISTED // 100
"""Pages of 100 batches listed, newest first: a batch still running is at most 7 days old
(the API cancels it then), and the account keeps at most 1,000 batch files."""

_T = TypeVar("_T")


class LostBatchUnknown(ConfigError):
    """A batch of the job still runs on the account, but which lines it holds cannot be told."""


@dataclass
class _Found:
    """One batch of the job on the account and the key hashes it is adopted for."""

    view: BatchView
    created_at: float
    keys: list[int] = field(default_factory=list)
    # the batch of this job sharded otherwise (the whole job's, or a shard's, when this run
    # is the other): how to run to collect it; this run must not send its lines
    otherwise: str = ""

    @property
    def rebatch_of(self) -> int | None:
        value = (self.view.metadata or {}).get(REBATCH_KEY)
        return int(value) if isinstance(value, str) and value.isdigit() else None

    @property
    def running(self) -> bool:
        return self.view.status not in TERMINAL_STATUSES


async def find_lost_batches(
    job: JobConfig,
    config: Config,
    client: BatchClient,
    chash: str,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> list[ChunkState]:
    """The chunk states of the job's batches on the account whose lines this run would
    otherwise send again (their sidecars written in the work folder); [] when there are none.
    The caller found no state file and holds the output's lock."""
    calls = _Calls(job.name, config, clock or SystemClock(), rng or random.Random())
    found = [f for f in await _list_job_batches(job, client, chash, calls) if f is not None]
    if not found:
        return []
    for f in found:
        await _read_keys(job, client, f, calls)
    chunks = await asyncio.to_thread(_adopt, job, config, found)
    if chunks:
        _log_found(job, chash, found, chunks)
    return chunks


async def adopt_lost_batches(job: JobConfig, config: Config, client: BatchClient) -> bool:
    """A run of a job with no state file, before its route is known: the batches found start
    its state, so a realtime route leaves their lines to them (and collects them after, as a
    batch run does) and a batch route tracks them. The state is made even when none are
    found: it says the account was looked at, so the next run does not list it again (a
    work folder deleted later is looked for again). A run of another output whose jobs share
    the name may have made the folder's state meanwhile (both first runs at once): with
    nothing found, this run needs no state, and a batch route meets that refusal itself."""
    refuse_if_tracked_elsewhere(job)
    chash = config_hash(job, config.batch)
    adopted = await find_lost_batches(job, config, client, chash)
    if adopted:
        claim_state(job, chash, adopted)
        return True  # the warning said so: the batch path does not say it again
    try:
        claim_state(job, chash)
    except ConfigError:
        log.info("the work folder's state is another output's", extra={"job": job.name})
    return False


def _log_found(job: JobConfig, chash: str, found: list[_Found], chunks: list[ChunkState]) -> None:
    n, lines = len(chunks), sum(chunk_of(c).lines for c in chunks)
    batches = "1 batch" if n == 1 else f"{n} batches"
    log.warning(
        f"found {batches} of job {job.name} still on the account from a run whose "
        f"{job.work_dir}/ is gone: collecting {'it' if n == 1 else 'them'}, not sending "
        f"{'its' if n == 1 else 'their'} {lines:,} line{'' if lines == 1 else 's'} again",
        extra={"job": job.name},
    )
    log.info(
        "lost batches adopted",
        extra={
            "job": job.name,
            "batch_ids": [describe(c)["batch_id"] for c in chunks],
            "lines": lines,
        },
    )
    other = [
        f.view.id
        for f in found
        if f.keys and (f.view.metadata or {}).get("config_hash") not in (None, chash)
    ]
    if other:
        log.warning(
            "the job's prompt, system, messages, model or params changed since its running "
            "batches were built; they finish as built",
            extra={"job": job.name, "batches": other},
        )


async def _list_job_batches(
    job: JobConfig, client: BatchClient, chash: str, calls: _Calls
) -> list[_Found | None]:
    """The job's batches worth adopting, newest first (bounded: ``LIST_PAGES`` pages)."""
    out: list[_Found | None] = []
    after: str | None = None
    tag = output_tag(job)
    for page_no in range(LIST_PAGES):
        page = await calls.run(
            "list batches",
            functools.partial(client.list_batches, after=after, limit=100),
            gone_ok=False,  # a 404 here says nothing about the job's batches
        )
        assert page is not None
        data = page.get("data") or []
        out.extend(_candidate(job, chash, tag, b) for b in data if isinstance(b, dict))
        if not data or not page.get("has_more"):
            return out
        after = page.get("last_id") or data[-1].get("id")
        if page_no == LIST_PAGES - 1:
            log.warning(
                "stopped listing the account's batches after %d pages; older batches of the "
                "job, if any, were not looked for",
                LIST_PAGES,
                extra={"job": job.name},
            )
    return out


def _candidate(job: JobConfig, chash: str, tag: str, obj: dict[str, Any]) -> _Found | None:
    view = BatchView.parse(obj)
    meta = view.metadata or {}
    if meta.get(JOB_KEY) != job.name[:64] or view.status == "failed":
        return None
    otherwise = ""
    if meta.get(OUTPUT_KEY, tag) != tag:
        otherwise = _sharded_otherwise(job, str(meta.get(OUTPUT_KEY)))
        if not otherwise:
            return None  # another config's job of this name, or a shard of the same sharding
    if view.status in TERMINAL_STATUSES and meta.get("config_hash") != chash:
        return None  # finished under another request (config_hash): this run sends its own
    created = obj.get("created_at")
    at = float(created) if isinstance(created, (int, float)) else 0.0
    return _Found(view, at, otherwise=otherwise)


def _sharded_otherwise(job: JobConfig, found: str) -> str:
    """For a batch whose output tag is ``found``: how to run to collect it when it is the whole
    job's and this run a shard's, or a shard's and this run the whole job's (as
    ``batch_state.refuse_if_tracked_elsewhere`` says it); "" otherwise."""
    whole = dataclasses.replace(job, shard=None)
    if job.shard is not None:
        return "run without --shard" if found == output_tag(whole) else ""
    shard = shard_of_name(job.main_output_path.name, found.rpartition("@")[0])
    if shard is not None and found == output_tag(dataclasses.replace(job, shard=shard)):
        return f"run with --shard {shard}"
    return ""


async def _read_keys(job: JobConfig, client: BatchClient, f: _Found, calls: _Calls) -> None:
    """``f.keys``: a running batch's lines (its input file), a finished one's results."""
    view = f.view
    if f.otherwise and f.running:
        raise _refusal(job, f, "is still " + view.status)
    if f.running:
        data = await _content(client, view.input_file_id, calls)
        if data is None:
            raise LostBatchUnknown(
                f"batch {view.id} of job {job.name} is still {view.status} on the account, "
                f"from a run whose {job.work_dir}/ is gone, and its input file is gone too, so "
                "glmrun cannot tell which lines it holds and would send them again: let it "
                "finish (a run then collects what it returns) or cancel it in your account, "
                "then run again"
            )
        f.keys = _keys_of(data)
        return
    for fid in (view.output_file_id, view.error_file_id):
        data = await _content(client, fid, calls)
        if data is not None:
            f.keys.extend(_keys_of(data))


async def _content(client: BatchClient, file_id: str | None, calls: _Calls) -> bytes | None:
    """A remote file's bytes; None when it has no id or is gone (404)."""
    if not file_id:
        return None
    return await calls.run(f"download file {file_id}", lambda: client.file_content(file_id))


def _keys_of(data: bytes) -> list[int]:
    """The key hashes of the custom_ids glmrun made in a batch input or result file."""
    keys = []
    for raw in data.splitlines():
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        cid = obj.get("custom_id") if isinstance(obj, dict) else None
        h = hash_of_custom_id(cid) if isinstance(cid, str) else None
        if h is not None:
            keys.append(h)
    return keys


def _refusal(job: JobConfig, f: _Found, what: str) -> ConfigError:
    whole = "a shard's" if job.shard is None else "the whole job's"
    return ConfigError(
        f"batch {f.view.id} ({whole}) of job {job.name} {what} on the account, from a run "
        f"whose work folder is gone: this run would send its lines again; {f.otherwise} "
        "until it is collected"
    )


def _adopt(job: JobConfig, config: Config, found: list[_Found]) -> list[ChunkState]:
    """Assign each key to one batch, rebuild the sidecars from the input, make the states."""
    index = load_job_index(job)
    owner: dict[int, int] = {}
    for i, f in enumerate(found):  # newest first: a key belongs to the newest batch holding it
        keys = f.keys if f.running else [h for h in f.keys if index.state(h) == NONE]
        if f.otherwise:  # finished, sharded otherwise: refused if it holds results for this run
            if any(job.shard is None or job.shard.owns(h) for h in keys):
                raise _refusal(job, f, "has results not collected yet")
            continue
        for h in keys:
            owner.setdefault(h, i)
    lines = _write_sidecars(job, config, index, owner, len(found))
    chunks: list[ChunkState] = []
    for i, f in enumerate(found):
        ids = chunk_names(len(chunks))[1]
        if not lines[i]:
            (job.work_dir / chunk_names(i)[1]).unlink(missing_ok=True)
            continue
        if i != len(chunks):
            os.replace(job.work_dir / chunk_names(i)[1], job.work_dir / ids)
        chunk = Chunk(len(chunks), chunk_names(len(chunks))[0], ids, lines[i], 0, f.rebatch_of)
        chunks.append(_state(chunk, f))
    return chunks


def _state(chunk: Chunk, f: _Found) -> ChunkState:
    v = f.view
    if f.running:
        return Running(
            chunk,
            v.input_file_id or "",
            v.id,
            v.status,
            v.counts,
            cancel_requested=v.status == "cancelling",
            submitted_at=f.created_at,
        )
    return Ended(
        chunk,
        v.input_file_id,
        v.id,
        v.status,
        v.counts,
        v.output_file_id,
        v.error_file_id,
        submitted_at=f.created_at,
    )


def _write_sidecars(
    job: JobConfig, config: Config, index: ResumeIndex, owner: dict[int, int], n: int
) -> list[int]:
    """One pass over the lines this run would send: each owned one goes to its batch's
    sidecar (``chunk-0000i.ids``, i the batch's place in ``found``); lines per sidecar."""
    job.work_dir.mkdir(parents=True, exist_ok=True)
    parts = [job.work_dir / (chunk_names(i)[1] + ".part") for i in range(n)]
    handles = [open(p, "wb") for p in parts]  # noqa: SIM115  # closed below
    counts = [0] * n
    try:
        skip = done_line_filter(index, PendingCounts(), job.shard)
        for h, item in iter_pending(read_job_items(job, config, skip), index, shard=job.shard):
            i = owner.get(h)
            if i is None or not isinstance(item, Item):
                continue
            handles[i].write(sidecar_line(custom_id(h).encode(), item))
            counts[i] += 1
        for handle in handles:
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        for handle in handles:
            handle.close()
    for i, p in enumerate(parts):
        fsync_replace(p, job.work_dir / chunk_names(i)[1])
    return counts


class _Calls:
    """The adoption's API calls, retried with backoff (``retry.max_attempts``) like the
    driver's control-plane calls; a refused account ends the run; with ``gone_ok`` a 404 (a
    file that is gone) answers None."""

    def __init__(self, job: str, config: Config, clock: Clock, rng: random.Random) -> None:
        self.job = job
        self.retry = config.retry
        self.clock = clock
        self.rng = rng

    async def run(
        self, what: str, call: Callable[[], Awaitable[_T]], *, gone_ok: bool = True
    ) -> _T | None:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except ApiFailure as failure:
                if failure.status == 404 and gone_ok:
                    return None
                decision = classify(failure)
                if decision.verdict is Verdict.STOP:
                    raise stopped(failure, decision) from failure
                if attempt >= self.retry.max_attempts:
                    raise ComeBackLater(
                        f"{self.job}: cannot {what} to look for batches an earlier run left on "
                        f"the account ({failure.message[:120]}); nothing was sent: run the same "
                        "command again later"
                    ) from failure
                delay = self.retry.delay_s(attempt, self.rng, retry_after_s=failure.retry_after_s)
                await self.clock.sleep(delay)
