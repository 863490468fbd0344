"""``glmrun status CONFIG``: per job, what is done, failed and pending; reads, never sends."""

from __future__ import annotations

import sys

import click
import orjson

from runner.app.status import collect, exit_code, format_status
from runner.cli.common import fail, job_option, load_without_key, setup
from runner.errors import GlmrunError


@click.command()
@click.argument("config_path", metavar="CONFIG")
@job_option("Only this job.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job on stdout.")
def status(config_path: str, job_name: str | None, as_json: bool) -> None:
    """Per job: ok / errors / pending and tracked batches; no network. Exit 0 when all done, 75
    when work is pending."""
    setup(False, False, "text")
    config = load_without_key(config_path)
    try:
        statuses = collect(config, job_name)
    except GlmrunError as exc:
        fail(exc)
    for s in statuses:
        click.echo(orjson.dumps(s.as_dict()).decode() if as_json else format_status(s))
    sys.exit(exit_code(statuses))
