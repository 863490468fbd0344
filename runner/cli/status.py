"""``glmrun status CONFIG``: per job, what is done, failed and pending; reads, never sends."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import IO

import click
import orjson

from runner.app.status import collect, error_groups, exit_code, format_errors, format_status
from runner.app.summary import for_terminal
from runner.cli.common import count_option, fail, job_option, load_without_key, setup
from runner.errors import GlmrunError


@click.command()
@click.argument("config_path", metavar="CONFIG")
@job_option("Only this job.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job on stdout.")
@click.option(
    "--errors",
    "show_errors",
    is_flag=True,
    help="List error records grouped by code, with examples.",
)
@count_option("--limit", "--errors: examples per code.", default=5)
def status(
    config_path: str, job_name: str | None, as_json: bool, show_errors: bool, limit: int
) -> None:
    """Per job: ok / errors / pending and tracked batches; no network. Exit 0 when all done, 75
    when work is pending."""
    setup(False, False, "text")
    config = load_without_key(config_path)
    try:
        statuses = collect(config, job_name)
    except GlmrunError as exc:
        fail(exc)
    for s in statuses:
        text = format_status(s, errors_hint=not show_errors)
        click.echo(orjson.dumps(s.as_dict()).decode() if as_json else _wrapped(text))
    if show_errors:
        try:
            for job in config.select(job_name):
                groups = error_groups(job, config, limit)
                if as_json:
                    data = {"job": job.name, "errors": [asdict(g) for g in groups]}
                    click.echo(orjson.dumps(data).decode())
                else:
                    click.echo(_wrapped("\n".join(format_errors(job.name, groups))))
        except GlmrunError as exc:
            fail(exc)
    sys.exit(exit_code(statuses))


def _wrapped(text: str) -> str:
    """Lines broken between words on a narrow terminal (as the run's summary is)."""
    return "\n".join(for_terminal(text.splitlines(), _stdout()))


def _stdout() -> IO[str]:
    return sys.stdout
