"""What every ``glmrun`` command shares: loading the config, running a coroutine, the ``--job``,
count and logging options, and turning a ``GlmrunError`` into ``glmrun: <message>`` on stderr
and its exit code.

A ``GlmrunError`` ends the command as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

import click

from runner.app.loop import run
from runner.config.load import load_config
from runner.config.schema import Config
from runner.errors import EXIT_TEMPFAIL, ComeBackLater, GlmrunError, Interrupted
from runner.logs import direct_line, for_stderr, setup_logging


def fail(exc: GlmrunError) -> NoReturn:
    message = " ".join(str(exc).splitlines())  # one line, even when an API message had several
    event, level = last_event(exc)
    line = direct_line(message, event=event, level=level, message=message, exit_code=exc.exit_code)
    click.echo(for_stderr(line), err=True)
    sys.exit(exc.exit_code)


def last_event(exc: GlmrunError) -> tuple[str, str]:
    """The event and level of the last line in a JSON log. Exit 75 is no failure but "come back
    later": a warning (a held lock, the API unreachable, a batch whose state cannot be
    established), or info where it was asked for (``--no-wait``, ``batch.max_wait_s``). A cron
    run every ten minutes while batches run for hours must not log an error each time: an
    alert on ``level: error`` would fire all day. A run stopped by a signal (``systemctl stop``,
    a deploy, ``timeout``) did what it was told: ``interrupted``, a warning."""
    if isinstance(exc, Interrupted):
        return "interrupted", "warning"
    if exc.exit_code != EXIT_TEMPFAIL:
        return "error", "error"
    asked = isinstance(exc, ComeBackLater) and exc.asked
    return "come back later", "info" if asked else "warning"


class OneLineErrors(click.Group):
    """A group whose commands end with their ``GlmrunError`` as one line and its exit code,
    also when they raise it outside ``run_async`` (``batches list`` reading a state file that
    cannot be read), never with a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GlmrunError as exc:
            fail(exc)


def run_async(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine, turning a GlmrunError (alone or in an ExceptionGroup) into its exit code."""
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


def load(config_path: str) -> Config:
    try:
        return load_config(config_path)
    except GlmrunError as exc:
        fail(exc)


class _NoKeyNeeded(dict[str, str]):
    """An environment in which every variable is set, so an unset key variable is no error."""

    def get(self, key: str, default: Any = None) -> Any:
        return os.environ.get(key) or "unused"


def load_without_key(config_path: str) -> Config:
    """Load a config for commands that send nothing: an unset key variable is no error."""
    try:
        return load_config(config_path, environ=_NoKeyNeeded())
    except GlmrunError as exc:
        fail(exc)


def job_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--job NAME`` (passed as ``job_name``); each command says what choosing a job means.
    Given twice it is refused: click would keep the last one silently, and ``--job a --job b``
    would run (or show, or export) only ``b``."""
    return click.option(
        "--job", "job_name", metavar="NAME", help=help, multiple=True, callback=_one_job
    )


def _one_job(ctx: click.Context, param: click.Parameter, names: tuple[str, ...]) -> str | None:
    if len(names) > 1:
        raise click.BadParameter(
            f"given {len(names)} times ({', '.join(names)}); it takes one job name "
            "(leave --job out for every job)"
        )
    return names[0] if names else None


class _Count(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A whole number >= 1, said so when it is not (click's IntRange says "'abc' is not a
    valid integer range" and "0 is not in the range x>=1")."""

    name = "count"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        try:
            number = int(str(value).strip().replace("_", ""))
        except ValueError:
            number = 0
        if number < 1:
            self.fail(f"expected a whole number of 1 or more, found {value!r}", param, ctx)
        return number


COUNT = _Count()


def count_option(
    flag: str, help: str, *, default: int | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An option taking a whole number ``N`` >= 1; a default, when there is one, shows in
    --help."""
    return click.option(
        flag,
        type=COUNT,
        default=default,
        show_default=default is not None,
        metavar="N",
        help=help,
    )


def verbosity_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "-q",
        "--quiet",
        is_flag=True,
        help="Nothing on success; warnings, errors, failed summaries.",
    )(f)
    f = click.option(
        "-v", "--verbose", is_flag=True, help="Log every event (INFO), and one line per retry."
    )(f)
    f = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="stderr log lines as text, or one JSON object per event (INFO included).",
    )(f)
    return f


def setup(quiet: bool, verbose: bool, log_format: str) -> None:
    setup_logging(verbosity=-1 if quiet else (1 if verbose else 0), fmt=log_format)
