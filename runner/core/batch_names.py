"""Names glmrun gives its remote batch objects, so a lost answer can be found again.

``upload_name`` and ``batch_metadata`` are unique per job run (its ``tag``) and chunk: after a
crash between sending an upload or create and saving its answer, the driver lists files or
batches and recognises its own by these. ``config_hash`` fingerprints what the lines were
built from (model, prompt, system, messages, params, endpoint), so a rerun can warn that they
changed, build the chunks it has not submitted again, and not adopt batches built otherwise.
``glmrun_output`` (``output_tag``) names the output file the batch is collected into (a
shard's own file for a ``--shard`` run) and its folder: a run whose work folder is gone finds
its job's batches by job name and output (``runner.engine.batch.adopt``), not those of another
config's job of the same name. Batches made before it was added carry no ``glmrun_output``.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

import orjson

from runner.core.batch_states import Chunk

if TYPE_CHECKING:  # annotations only: importing runner.config runs its loader's imports (io)
    from runner.config.schema import BatchConfig, JobConfig


JOB_KEY = "glmrun_job"
OUTPUT_KEY = "glmrun_output"
REBATCH_KEY = "rebatch_of"


def config_hash(job: JobConfig, batch: BatchConfig) -> str:
    """What every request line of the job is built from. ``system`` and ``messages`` came in
    later: they are hashed only when set, so a job without them keeps the hash its tracked
    batches were built with (a new hash would rebuild its chunks and refuse to adopt its
    finished batches, which would then be sent and paid for again)."""
    parts: list[object] = [job.model, job.prompt, job.params, batch.endpoint]
    if job.system is not None or job.messages:
        parts += [job.system, job.messages]
    text = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(text).hexdigest()[:12]


def upload_name(job: JobConfig, tag: str, chunk: Chunk) -> str:
    """Unique per job run and chunk, so a lost upload answer can be found by name."""
    return f"glmrun-{job.name}-{tag}-{chunk.index:05d}.jsonl"


def batch_metadata(job: JobConfig, tag: str, chash: str, chunk: Chunk) -> dict[str, str]:
    return {
        JOB_KEY: job.name[:64],
        "glmrun_tag": tag,
        "chunk": str(chunk.index),
        "config_hash": chash,
        OUTPUT_KEY: output_tag(job),
        # a rebatched chunk's lines failed in a batch before: a run that adopts it records
        # them when they fail again rather than sending them a third time
        **({REBATCH_KEY: str(chunk.rebatch_of)} if chunk.rebatch_of is not None else {}),
    }


def output_tag(job: JobConfig) -> str:
    """``describe.jsonl@3f2a9c01b7e4``: the output's file name and a hash of its full path
    (the API keeps metadata values up to 512 characters; the path may be longer)."""
    path = os.path.normpath(str(job.output_path))
    digest = hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{job.output_path.name[:400]}@{digest}"
