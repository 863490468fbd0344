"""The ``glmrun`` command: click commands that parse, call ``app``, and map errors to exit codes.

``glmrun CONFIG`` is ``glmrun run CONFIG``. A ``GlmrunError`` becomes one line on stderr and its
exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

import click

from runner import __version__
from runner.errors import EXIT_CONFIG, GlmrunError, Interrupted
from runner.logs import setup_logging


class DefaultGroup(click.Group):
    """A group where an unknown first argument means ``run <that argument>``."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


_JSON_ERRORS = False  # --log-format json: the final error line is a JSON event too


def fail(exc: GlmrunError) -> NoReturn:
    message = " ".join(str(exc).splitlines())  # one line, even when an API message had several
    if _JSON_ERRORS:
        import orjson

        line = orjson.dumps(
            {"level": "error", "event": "error", "message": message, "exit_code": exc.exit_code}
        ).decode()
        click.echo(line, err=True)
    else:
        click.echo(f"glmrun: {message}", err=True)
    sys.exit(exc.exit_code)


def run_async(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine, turning a GlmrunError (alone or in an ExceptionGroup) into its exit code."""
    from runner.app.loop import run

    try:
        return run(make())
    except KeyboardInterrupt:  # SIGINT before the run installed its handler (or after it)
        fail(Interrupted("SIGINT"))
    except GlmrunError as exc:
        fail(exc)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        errors = [e for e in leaves if isinstance(e, GlmrunError)]
        if leaves and len(errors) == len(leaves):
            fail(errors[0])
        raise


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def load(config_path: str) -> Any:
    from runner.config.load import load_config

    try:
        return load_config(config_path)
    except GlmrunError as exc:
        fail(exc)


def load_without_key(config_path: str) -> Any:
    """Load a config for commands that send nothing: an unset key variable is no error."""
    import os

    from runner.config.load import load_config

    class NoKeyNeeded(dict[str, str]):
        def get(self, key: str, default: Any = None) -> Any:
            return os.environ.get(key) or "unused"

    try:
        return load_config(config_path, environ=NoKeyNeeded())
    except GlmrunError as exc:
        fail(exc)


def verbosity_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")(f)
    f = click.option("-v", "--verbose", is_flag=True, help="Debug logging (one line per retry).")(f)
    f = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="stderr log lines as text or as one JSON object per event.",
    )(f)
    return f


def setup(quiet: bool, verbose: bool, log_format: str) -> None:
    global _JSON_ERRORS
    _JSON_ERRORS = log_format == "json"
    setup_logging(verbosity=-1 if quiet else (1 if verbose else 0), fmt=log_format)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="glmrun")
def main() -> None:
    """Send large lists of image URLs to GLM-4V vision models; one resumable result per URL.

    glmrun CONFIG is short for glmrun run CONFIG.
    """


@main.command()
@click.argument("config_path", metavar="CONFIG")
@click.option("--job", "job_name", metavar="NAME", help="Run only this job.")
@click.option(
    "--limit", type=click.IntRange(min=1), metavar="N", help="Send at most N new URLs per job."
)
@click.option(
    "--dry-run", is_flag=True, help="Show the plan (pending / done / invalid, route); send nothing."
)
@click.option(
    "--no-wait", is_flag=True, help="Batch jobs: submit and exit 75; the next run collects."
)
@click.option(
    "--wait-lock",
    is_flag=True,
    help="Wait for another run of the same output to finish instead of exiting 75.",
)
@verbosity_options
def run(
    config_path: str,
    job_name: str | None,
    limit: int | None,
    dry_run: bool,
    no_wait: bool,
    wait_lock: bool,
    quiet: bool,
    verbose: bool,
    log_format: str,
) -> None:
    """Run the jobs of CONFIG (resumes where the last run stopped)."""
    from runner.app.orchestrate import RunOptions
    from runner.app.orchestrate import run as run_app

    setup(quiet, verbose, log_format)
    config = load(config_path)
    options = RunOptions(
        job=job_name, limit=limit, dry_run=dry_run, no_wait=no_wait, wait_lock=wait_lock
    )
    result = run_async(lambda: run_app(config, options))
    sys.exit(result.exit_code)


@main.command()
@click.argument("config_path", metavar="CONFIG")
@click.option("--job", "job_name", metavar="NAME", help="Only this job.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job on stdout.")
def status(config_path: str, job_name: str | None, as_json: bool) -> None:
    """Per job: ok / errors / pending and tracked batches; no network. Exit 0 when all done, 75 when work is pending."""
    import orjson

    from runner.app.status import collect, exit_code, format_status

    setup(False, False, "text")
    config = load_without_key(config_path)
    try:
        statuses = collect(config, job_name)
    except GlmrunError as exc:
        fail(exc)
    for s in statuses:
        click.echo(orjson.dumps(s.as_dict()).decode() if as_json else format_status(s))
    sys.exit(exit_code(statuses))


@main.command()
@click.argument("config_path", metavar="CONFIG")
@click.option(
    "--job",
    "job_name",
    metavar="NAME",
    help="The job whose pending URLs to use (needed when there are several).",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    metavar="N",
    help="URLs per concurrency level.",
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
    help="Draw throughput and latency against concurrency (needs glmrun[plot]).",
)
@verbosity_options
def bench(
    config_path: str,
    job_name: str | None,
    sample: int,
    levels: str,
    plot_path: str | None,
    quiet: bool,
    verbose: bool,
    log_format: str,
) -> None:
    """Measure requests/s, latency and 429s at several concurrency levels; results go to the job's output."""
    from pathlib import Path

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
        )
    )


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (keep it on loopback).",
)
@click.option(
    "--port", default=8765, show_default=True, type=int, help="Port (0 picks a free one)."
)
@click.option(
    "--set",
    "knobs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A simulator setting, e.g. --set max_in_flight=16 (repeatable; values are YAML).",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="Keep files and batches here across restarts.",
)
def simulate(host: str, port: int, knobs: tuple[str, ...], state_dir: str | None) -> None:
    """Serve the embedded GLM API simulator standalone (for any client, benchmarks, demos)."""
    from pathlib import Path

    import yaml

    from runner.simulator import serve, settings_from_dict

    values: dict[str, Any] = {}
    for knob in knobs:
        key, sep, raw = knob.partition("=")
        if not sep:
            click.echo(f"glmrun: --set {knob}: expected KEY=VALUE", err=True)
            sys.exit(EXIT_CONFIG)
        values[key.strip()] = yaml.safe_load(raw)
    try:
        settings = settings_from_dict(values)
    except (ValueError, TypeError) as exc:
        click.echo(f"glmrun: simulator: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    serve(host, port, settings, Path(state_dir) if state_dir else None)


@main.command()
@click.argument("config_path", metavar="CONFIG")
@click.option(
    "--job", "job_name", metavar="NAME", help="The job to export (needed when CONFIG has several)."
)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="jsonl", show_default=True
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
    target: str | None,
) -> None:
    """Write a job's results as CSV or JSONL, streamed, the latest record per key; no network."""
    from pathlib import Path

    from runner.errors import ConfigError
    from runner.io.export import export_to

    setup(False, False, "text")
    config = load_without_key(config_path)
    try:
        if job_name is None and len(config.jobs) > 1:
            names = ", ".join(j.name for j in config.jobs)
            raise ConfigError(f"{config.path}: several jobs ({names}); choose one with --job")
        job = config.job(job_name) if job_name else config.jobs[0]
        cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        n = export_to(
            job.output_path,
            Path(target) if target else None,
            sys.stdout.buffer,
            fmt=fmt,
            latest_only=latest_only,
            columns=cols,
        )
    except GlmrunError as exc:
        fail(exc)
    if target:
        click.echo(f"{job.name}: {n} records -> {target}", err=True)


from runner.cli.batches import batches as _batches  # registered once main exists

main.add_command(_batches)


if __name__ == "__main__":  # pragma: no cover
    main()
