"""``glmrun batches list|cancel|show``: look at and cancel the batches glmrun tracks.

Parsing and printing only; the work is in ``runner.app.batches``, imported when a subcommand
runs because it pulls in aiohttp (``glmrun --help`` stays quick).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click
import orjson

from runner.cli.common import (
    OneLineErrors,
    fail,
    job_option,
    load,
    load_without_key,
    run_async,
)
from runner.errors import ConfigError, GlmrunError

DEFAULT_CONFIG = "config.yaml"  # what list and show read when no config is given


@click.group("batches", cls=OneLineErrors)
def batches() -> None:
    """The Batch API side of glmrun: tracked batches, cancel, details."""


@batches.command(
    "list", short_help="Tracked batches of CONFIG's jobs, or the account's (--remote)."
)
@click.argument("config_path", metavar="[CONFIG]", default=DEFAULT_CONFIG, required=False)
@job_option("Only this job's batches.")
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
    metavar="N",
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
    from runner.app.batches import list_remote, tracked_rows

    _check_default(config_path)
    config = load(config_path) if remote else load_without_key(config_path)
    if remote:
        page = run_async(lambda: list_remote(config, after=after, limit=limit))
        rows = [_remote_row(b) for b in page.get("data") or []]
        if as_json:
            _print_rows(rows, [], as_json)
        else:
            shown = [{**row, "done": _done(row)} for row in rows]
            _print_rows(shown, ["id", "status", "done", "created", "job"], False)
        if page.get("has_more") and rows:
            click.echo(
                f"more: glmrun batches list {config_path} --remote --after {rows[-1]['id']}",
                err=as_json,
            )
        return
    try:
        jobs = config.select(job_name)
    except GlmrunError as exc:
        fail(exc)
    rows = tracked_rows(jobs)
    if as_json:
        _print_rows(rows, [], as_json)
    elif not rows:
        click.echo("no tracked batches")
    else:  # lines, completed, failed and total in one column; the local state in the status
        shown = [{**row, "status": _status(row), "done": _done(row)} for row in rows]
        _print_rows(shown, ["job", "chunk", "status", "batch_id", "done"], False)
        # one time per state file (it is saved after every poll), not a column of copies
        for job, polled in dict.fromkeys((r["job"], r["polled"]) for r in rows if r["polled"]):
            click.echo(f"{job}: running batches last polled {polled}")


def _status(row: dict[str, Any]) -> str:
    """The batch's remote status; before there is one, the chunk's local state (``built``);
    ``collected`` once a completed batch's results are in the output. A column for each and
    one for the time polled (as the table had) made a row of a 10,000-line batch 91 columns
    wide: every row wrapped at 80 (``--json`` still has ``state`` and ``polled``)."""
    status, state = row.get("status"), str(row.get("state") or "")
    if state == "Collected" and status == "completed":
        return "collected"
    return str(status or state.lower())


def _done(row: dict[str, Any]) -> str:
    """``1,200/5,000``, ``4,990/5,000, 10 failed``: completed of the batch's total (of the
    chunk's lines before the batch reports one)."""
    total = row.get("total") or row.get("lines") or 0
    done = f"{row.get('completed') or 0:,}/{total:,}"
    return done + (f", {row['failed']:,} failed" if row.get("failed") else "")


def _check_default(config_path: str, way: str = "pass the config's path") -> None:
    """No CONFIG given and no ./config.yaml: say that the default was tried, and the way on."""
    if config_path == DEFAULT_CONFIG and not os.path.exists(config_path):
        fail(
            ConfigError(
                f"{DEFAULT_CONFIG}: no config file in this folder (the default when no config is "
                f"given): {way}"
            )
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
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@batches.command("cancel", short_help="Cancel the running batches of CONFIG's jobs.")
@click.argument("config_path", metavar="CONFIG")
@job_option("Only this job (default: every job of CONFIG).")
def cancel_cmd(config_path: str, job_name: str | None) -> None:
    """Cancel the in-flight batches of CONFIG's jobs and record it in their state.

    Results of lines that already ran are collected by the next run; lines that never ran stay
    pending and are sent again by a later run. Exits 75 if a run of the job holds its lock.
    """
    from runner.app.batches import cancel

    config = load(config_path)
    for line in run_async(lambda: cancel(config, job_name)):
        click.echo(line)


@batches.command("show", short_help="One batch as the API returns it, and the job that tracks it.")
@click.argument("batch_id", metavar="ID")
@click.option(
    "-c",
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    metavar="CONFIG",
    help="Config naming the API (and the jobs whose state may track ID).",
)
def show_cmd(batch_id: str, config_path: str) -> None:
    """Print one batch as the API returns it, and which job and chunk track it."""
    from runner.app.batches import chunks_tracking, get_batch

    _check_default(config_path, "pass -c CONFIG")
    config = load(config_path)
    obj = run_async(lambda: get_batch(config, batch_id))
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())
    for job_name, d in chunks_tracking(config, batch_id):
        click.echo(
            f"tracked by job {job_name}, chunk {d['chunk']} ({d['lines']:,} lines), "
            f"local state {d['state']}"
        )
