"""The files of one job: its main output and every shard output that exists, and their index.

A job may have been run whole, as 8 shards, then as 4 (``run --shard I/N``): its records are
in ``out/describe.jsonl`` and any ``out/describe.shard-I-of-N.jsonl``. Planning, ``status``,
``export`` and ``--dry-run`` read all of them through ``job_output_files``, so re-sharding never
sends a finished item again. The job's resume index is the merge of the per-file indexes
(``load_resume_index`` per file), so a faster per-file index composes with it unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from runner.config.schema import JobConfig
from runner.core.resume import ResumeIndex
from runner.core.shard import Shard, shard_of_name, shard_work_name
from runner.errors import ConfigError, OutputError
from runner.io.jsonl import iter_lines
from runner.io.keyindex import INDEX_SUFFIX, orphaned
from runner.io.store import load_resume_index


@dataclass(frozen=True)
class OutputFile:
    """One file of a job's records: its main output, or one shard's."""

    path: Path
    shard: Shard | None  # None: the job's main output


def job_output_files(job: JobConfig) -> list[OutputFile]:
    """The main output (listed even when missing) then each shard output found beside it,
    ordered by N then I; locks, temp files and other jobs' outputs are not matched."""
    main = job.main_output_path
    shards: list[tuple[int, int, Path]] = []
    try:
        names = os.listdir(main.parent)
    except FileNotFoundError:
        names = []
    except OSError as exc:
        raise OutputError(f"{main.parent}: cannot list the output folder: {exc.strerror}") from None
    for name in names:
        shard = shard_of_name(main.name, name)
        if shard is not None:
            shards.append((shard.count, shard.index, main.parent / name))
    shards.sort()
    return [OutputFile(main, None)] + [OutputFile(p, Shard(i, n)) for n, i, p in shards]


def start_over_refusal(job: JobConfig) -> str | None:
    """Why a run of ``job`` is refused (``keyindex.orphaned``): one of its output files, the
    main one or a shard's, is gone or empty while the resume index beside it lists what was
    recorded in it; or None."""
    main = job.main_output_path
    try:
        names = [n.removesuffix(INDEX_SUFFIX) for n in os.listdir(main.parent)]
    except OSError:
        return None  # no folder yet: nothing was recorded
    ours = [n for n in names if n == main.name or shard_of_name(main.name, n) is not None]
    why = next(filter(None, (orphaned(main.parent / n) for n in sorted(set(ours)))), None)
    if why is None or job.mode == "realtime":
        return why
    # a batch job's batches the account still holds can be fetched again
    return why + (
        " (a batch job's lines in batches the account still holds are then collected again, "
        "free: only the rest is sent again)"
    )


def refuse_to_start_over(job: JobConfig) -> None:
    """Raise ``start_over_refusal`` as a ConfigError (exit 2, nothing sent), if there is one."""
    refusal = start_over_refusal(job)
    if refusal is not None:
        raise ConfigError(refusal)


def job_output_paths(job: JobConfig) -> list[Path]:
    """The paths of ``job_output_files`` that exist."""
    return [f.path for f in job_output_files(job) if f.path.exists()]


def load_job_index(job: JobConfig, *, save: bool = False) -> ResumeIndex:
    """The job's resume index: every output file's index (its own persistent one, see
    ``load_resume_index``), merged (``ResumeIndex.merge``); this process's own file's index
    as it is when it is the only one.
    With ``save`` (the caller holds the lock of ``job.output_path``) only that file's
    persistent index may be written: another file's belongs to the run holding its lock."""
    paths = job_output_paths(job)
    indexes = [load_resume_index(p, save=save and p == job.output_path) for p in paths]
    if paths == [job.output_path]:  # the plan note (runner.io.plancache) may trust its offsets
        return indexes[0]
    index = ResumeIndex()
    for one in indexes:
        index.merge(one)
    return index


def iter_job_lines(job: JobConfig) -> Iterator[bytes]:
    """Every line of every output file of the job (for token averages and usage totals)."""
    for path in job_output_paths(job):
        yield from iter_lines(path)


def job_work_dirs(job: JobConfig) -> list[tuple[Shard | None, Path]]:
    """The batch work folders of the job and of its shards that exist (or the job's own)."""
    root = job.main_output_path.parent / ".glmrun"
    found: list[tuple[Shard | None, Path]] = [(None, root / shard_work_name(job.name, None))]
    for f in job_output_files(job):
        if f.shard is not None:
            d = root / shard_work_name(job.name, f.shard)
            if d.exists():
                found.append((f.shard, d))
    return found


def job_parts(job: JobConfig) -> list[JobConfig]:
    """The job as each of its batch work folders knows it: the whole job, then each shard that
    has a work folder (its state file, lock and output follow from ``JobConfig.shard``)."""
    return [dataclasses.replace(job, shard=shard) for shard, _ in job_work_dirs(job)]
