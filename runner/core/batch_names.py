"""Names glmrun gives its remote batch objects, so a lost answer can be found again.

``upload_name`` and ``batch_metadata`` are unique per job run (its ``tag``) and chunk: after a
crash between sending an upload or create and saving its answer, the driver lists files or
batches and recognises its own by these. ``config_hash`` fingerprints what the lines were
built from, so a rerun can warn that the prompt, model or params changed.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import orjson

from runner.core.batch_states import Chunk

if TYPE_CHECKING:  # annotations only: importing runner.config runs its loader's imports (io)
    from runner.config.schema import BatchConfig, JobConfig


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
