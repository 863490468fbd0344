"""``glmrun bench CONFIG``: measure throughput, latency and 429s at several concurrency levels.

``runner.app.bench`` is imported when the command runs: it pulls in aiohttp, which
``glmrun --help`` and the other commands do not need.
"""

from __future__ import annotations

from pathlib import Path

import click

from runner.cli.common import (
    count_option,
    fail,
    job_option,
    load,
    run_async,
    setup,
    verbosity_options,
)
from runner.errors import GlmrunError


@click.command()
@click.argument("config_path", metavar="CONFIG")
@job_option("The job whose pending URLs to use (needed when there are several).")
@count_option(
    "--sample",
    "URLs per concurrency level (default: 4 round trips' worth, 4 x the level, at least 50).",
)
@click.option(
    "--refine/--no-refine",
    default=True,
    show_default=True,
    help="Try levels between the best one and the throttled one above it.",
)
@click.option(
    "--concurrency",
    "levels",
    default="4,8,16,32,64",
    show_default=True,
    metavar="LIST",
    help="Concurrency levels to try, in order.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    metavar="FILE.png",
    help="Draw throughput and latency against concurrency (needs matplotlib).",
)
@verbosity_options
def bench(
    config_path: str,
    job_name: str | None,
    sample: int | None,
    refine: bool,
    levels: str,
    plot_path: str | None,
    quiet: bool,
    verbose: bool,
    log_format: str,
) -> None:
    """Find the concurrency that gets the most from your account. Measures requests/s,
    latency and 429s at several concurrency levels; the results go to the job's output."""
    from runner.app.bench import bench as run_bench
    from runner.app.bench import parse_levels

    setup(quiet, verbose, log_format)
    config = load(config_path)
    try:
        parsed = parse_levels(levels)
    except GlmrunError as exc:
        fail(exc)
    run_async(
        lambda: run_bench(
            config,
            job_name=job_name,
            sample=sample,
            levels=parsed,
            plot_path=Path(plot_path) if plot_path else None,
            quiet=quiet,
            refine=refine,
        )
    )
