"""``glmrun batches list|cancel|show``: look at and cancel the batches glmrun tracks.

No logic of its own beyond printing: state comes from ``batch.load_state``, transitions from
``batch.next_state``, the API from ``GlmClient``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import orjson

from runner.errors import ApiFailure, GlmrunError


def _config(path: str, *, key_needed: bool = True) -> Any:
    from runner.cli.main import load, load_without_key

    return load(path) if key_needed else load_without_key(path)


def _run(make: Any) -> Any:
    from runner.cli.main import run_async

    return run_async(make)


async def _with_client(config: Any, fn: Any) -> Any:
    """Call ``fn(client)`` against the config's API (the embedded simulator keeps its state
    in the same folder as ``glmrun run`` uses, so it shows the same batches)."""
    from runner.app.wiring import connect

    async with connect(config) as client:
        return await fn(client)


def _api_error(what: str, failure: ApiFailure) -> GlmrunError:
    from runner.core.retry import Verdict, classify
    from runner.errors import ApiStopped

    decision = classify(failure)
    if decision.verdict is Verdict.STOP and failure.status != 404:
        return ApiStopped(f"{what}: {failure.message}", code=decision.code, status=failure.status)
    return GlmrunError(f"{what}: {failure.message}")


@click.group("batches")
def batches() -> None:
    """The Batch API side of glmrun: tracked batches, cancel, details."""


@batches.command("list")
@click.argument("config_path", metavar="[CONFIG]", default="config.yaml", required=False)
@click.option("--job", "job_name", metavar="NAME", help="Only this job's batches.")
@click.option(
    "--remote", is_flag=True, help="List the account's batches from the API instead (paged)."
)
@click.option(
    "--after",
    metavar="ID",
    help="--remote: start after this batch id (the last id of the previous page).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 100),
    default=20,
    show_default=True,
    help="--remote: page size.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per line instead of a table."
)
def list_cmd(
    config_path: str,
    job_name: str | None,
    remote: bool,
    after: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Show the tracked batches of CONFIG's jobs (default ./config.yaml) with status and counts."""
    from runner.core.batch_states import describe
    from runner.io.batch_state import load_state, state_path

    config = _config(config_path, key_needed=remote)
    if remote:

        async def fetch(client: Any) -> Any:
            try:
                return await client.list_batches(after=after, limit=limit)
            except ApiFailure as failure:
                raise _api_error("cannot list batches", failure) from None

        page = _run(lambda: _with_client(config, fetch))
        rows = [_remote_row(b) for b in page.get("data") or []]
        _print_rows(
            rows, ["id", "status", "completed", "failed", "total", "created", "job"], as_json
        )
        if page.get("has_more") and rows:
            click.echo(
                f"more: glmrun batches list {config_path} --remote --after {rows[-1]['id']}",
                err=as_json,
            )
        return
    rows = []
    try:
        jobs = config.select(job_name)
    except GlmrunError as exc:
        from runner.cli.main import fail

        fail(exc)
    for job in jobs:
        state = load_state(state_path(job))
        if state is None:
            continue
        for chunk in state.chunks:
            rows.append({"job": job.name, **describe(chunk)})
    if not rows and not as_json:
        click.echo("no tracked batches")
        return
    _print_rows(
        rows,
        ["job", "chunk", "lines", "state", "status", "batch_id", "completed", "failed", "total"],
        as_json,
    )


def _remote_row(b: dict[str, Any]) -> dict[str, Any]:
    rc = b.get("request_counts")
    src = rc if isinstance(rc, dict) else b
    metadata = b.get("metadata")
    meta = metadata if isinstance(metadata, dict) else {}
    created = b.get("created_at")
    return {
        "id": b.get("id"),
        "status": b.get("status"),
        "completed": src.get("completed"),
        "failed": src.get("failed"),
        "total": src.get("total"),
        "created": time.strftime("%Y-%m-%d %H:%M", time.gmtime(created))
        if isinstance(created, int)
        else None,
        "job": meta.get("glmrun_job"),
    }


def _print_rows(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    if as_json:
        for row in rows:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        return
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


@batches.command("cancel")
@click.argument("config_path", metavar="CONFIG")
@click.option(
    "--job", "job_name", metavar="NAME", help="Only this job (default: every job of CONFIG)."
)
def cancel_cmd(config_path: str, job_name: str | None) -> None:
    """Cancel the in-flight batches of CONFIG's jobs and record it in their state.

    Results of lines that already ran are collected by the next run; lines that never ran stay
    pending and are sent again by a later run. Exits 75 if a run of the job holds its lock.
    """
    from runner.core.batch_states import CancelAsked, Running, next_state
    from runner.io.batch_state import load_state, save_state, state_path
    from runner.io.store import RunLock

    config = _config(config_path)

    async def cancel_all(client: Any) -> list[str]:
        lines = []
        for job in config.select(job_name):
            path = state_path(job)
            state = load_state(path)
            if state is None:
                lines.append(f"{job.name}: no tracked batches")
                continue
            lock = RunLock(job.output_path)
            lock.acquire()
            try:
                remote = local = 0
                failed: list[str] = []
                for i, chunk in enumerate(state.chunks):
                    new = next_state(chunk, CancelAsked(), time.monotonic())
                    if new == chunk:
                        continue
                    if isinstance(chunk, Running):
                        try:
                            await client.cancel_batch(chunk.batch_id)
                        except ApiFailure as failure:
                            failed.append(f"{chunk.batch_id} ({failure.message[:120]})")
                            continue
                        remote += 1
                    else:
                        local += 1
                    state.chunks[i] = new
                state.cancelled = True
                save_state(path, state)
            finally:
                lock.release()
            lines.append(
                f"{job.name}: cancel requested for {remote} running batch(es); {local} chunk(s) not submitted dropped"
            )
            if failed:
                raise GlmrunError(f"{job.name}: could not cancel {', '.join(failed)}")
        return lines

    for line in _run(lambda: _with_client(config, cancel_all)):
        click.echo(line)


@batches.command("show")
@click.argument("batch_id", metavar="ID")
@click.option(
    "-c",
    "--config",
    "config_path",
    default="config.yaml",
    show_default=True,
    metavar="CONFIG",
    help="Config naming the API (and the jobs whose state may track ID).",
)
def show_cmd(batch_id: str, config_path: str) -> None:
    """Print one batch as the API returns it, and which job and chunk track it."""
    from runner.core.batch_states import describe
    from runner.io.batch_state import load_state, state_path

    config = _config(config_path)

    async def fetch(client: Any) -> Any:
        try:
            return await client.get_batch(batch_id)
        except ApiFailure as failure:
            raise _api_error(f"batch {batch_id}", failure) from None

    obj = _run(lambda: _with_client(config, fetch))
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())
    for job in config.jobs:
        state = load_state(state_path(job))
        for chunk in state.chunks if state else []:
            d = describe(chunk)
            if d["batch_id"] == batch_id:
                click.echo(
                    f"tracked by job {job.name}, chunk {d['chunk']} ({d['lines']} lines), local state {d['state']}"
                )


def register(main: click.Group) -> None:
    main.add_command(batches)
