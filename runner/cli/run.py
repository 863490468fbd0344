"""``glmrun run CONFIG``: run the jobs of a config, resuming where the last run stopped.

``runner.app.orchestrate`` is imported when the command runs: it pulls in aiohttp, which
``glmrun --help`` and the commands that send nothing do not need.
"""

from __future__ import annotations

import sys

import click

from runner.cli.common import (
    count_option,
    job_option,
    load,
    load_without_key,
    run_async,
    setup,
    verbosity_options,
)
from runner.core.shard import Shard, parse_shard


def _shard(ctx: click.Context, param: click.Parameter, value: str | None) -> Shard | None:
    """``I/N``: a malformed value or an index out of range is a usage error (exit 2)."""
    if value is None:
        return None
    try:
        return parse_shard(value)  # 0/1 -> None: the whole job
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.command()
@click.argument("config_path", metavar="CONFIG")
@job_option("Run only this job.")
@count_option("--limit", "Send at most N new URLs per job.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Show the plan (pending / done / invalid, route) and a cost estimate; send nothing "
    "(no API key needed).",
)
@click.option(
    "--no-wait", is_flag=True, help="Batch jobs: submit and exit 75; the next run collects."
)
@click.option(
    "--wait-lock",
    is_flag=True,
    help="Wait for another run of the same output to finish instead of exiting 75.",
)
@click.option(
    "--shard",
    metavar="I/N",
    callback=_shard,
    envvar="GLMRUN_SHARD",
    show_envvar=True,
    help="Run shard I of N (0 <= I < N): only the items whose key hash mod N is I, "
    "written beside the output to a file of its own, with its own lock "
    "(OUTPUT.shard-I-of-N.jsonl); 0/1 is the whole job.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 while any permanent error record exists, not only new ones.",
)
@verbosity_options
def run(
    config_path: str,
    job_name: str | None,
    limit: int | None,
    dry_run: bool,
    no_wait: bool,
    wait_lock: bool,
    shard: Shard | None,
    strict: bool,
    quiet: bool,
    verbose: bool,
    log_format: str,
) -> None:
    """Run the jobs of CONFIG (resumes where the last run stopped)."""
    from runner.app.orchestrate import RunOptions
    from runner.app.orchestrate import run as run_app

    setup(quiet, verbose, log_format)
    # --dry-run sends nothing, so it needs no key
    config = (load_without_key(config_path) if dry_run else load(config_path)).sharded(shard)
    options = RunOptions(
        job=job_name,
        limit=limit,
        dry_run=dry_run,
        no_wait=no_wait,
        wait_lock=wait_lock,
        strict=strict,
        quiet=quiet,
        display="quiet" if quiet else ("json" if log_format == "json" else None),
    )
    result = run_async(lambda: run_app(config, options))
    sys.exit(result.exit_code)
