"""``glmrun export CONFIG``: write one job's results as CSV or JSONL; reads files, sends nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from runner.cli.common import fail, job_option, load_without_key, setup
from runner.errors import GlmrunError
from runner.io.export import export_to
from runner.io.job_files import job_output_files


@click.command()
@click.argument("config_path", metavar="CONFIG")
@job_option("The job to export (needed when CONFIG has several).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl"]),
    default="jsonl",
    show_default=True,
    help="JSONL: the records as written; CSV: one row per record, --columns or the defaults.",
)
@click.option(
    "--latest-only/--all-records",
    default=True,
    show_default=True,
    help="One record per key (the latest), or every line as written.",
)
@click.option(
    "--columns",
    metavar="A,B,...",
    help="Fields to write; dotted paths reach inside (usage.prompt_tokens, meta.x, parsed.y).",
)
@click.option(
    "--status",
    "status",
    type=click.Choice(["ok", "error"]),
    help="Only keys whose latest record has this status (with --all-records: the records "
    "that have it).",
)
@click.option(
    "-o",
    "--output",
    "target",
    type=click.Path(dir_okay=False),
    help="Write here (atomically) instead of stdout.",
)
def export(
    config_path: str,
    job_name: str | None,
    fmt: str,
    latest_only: bool,
    columns: str | None,
    status: str | None,
    target: str | None,
) -> None:
    """Write a job's results as CSV or JSONL; no network. Streamed, the latest record per
    key; a sharded job's files (OUTPUT.shard-I-of-N.jsonl) are merged: each key once."""
    setup(False, False, "text")
    config = load_without_key(config_path)
    try:
        job = config.one_job(job_name)
        cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        n = export_to(
            [f.path for f in job_output_files(job)],  # the main output and every shard's
            Path(target) if target else None,
            sys.stdout.buffer,
            fmt=fmt,
            latest_only=latest_only,
            columns=cols,
            status=status,
        )
    except GlmrunError as exc:
        fail(exc)
    if target:
        click.echo(f"{job.name}: {n:,} records -> {target}{_format_note(target, fmt)}", err=True)


def _format_note(target: str, fmt: str) -> str:
    """`` (as JSONL: ...)`` when ``-o``'s name says another format than the one written (the
    format follows ``--format`` only, so ``-o results.csv`` alone is JSONL)."""
    suffix = Path(target).suffix.lower()
    if fmt == "jsonl" and suffix in (".csv", ".tsv"):
        return " (as JSONL, the default format: --format csv writes CSV)"
    if fmt == "csv" and suffix in (".jsonl", ".json", ".ndjson"):
        return " (as CSV, as --format csv asks, though the name says JSON)"
    return ""
