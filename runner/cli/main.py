"""The ``glmrun`` click group: one command per module, imported when it is called; the
console-script entry (``entry``: the group, then an exit without the interpreter's teardown).

``glmrun CONFIG`` is ``glmrun run CONFIG``. Each command lives in its own module
(``runner.cli.run``, ``status``, ``export``, ``bench``, ``simulate``, ``batches``); what they
share (config loading, errors -> exit codes) is in ``runner.cli.common``. ``glmrun --help``
lists the commands from ``SUMMARIES`` without importing any of them (a test keeps the
summaries equal to the commands' own), so it loads click and nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import signal
import sys
import threading
from typing import Any, NoReturn

import click

from runner import __version__

# name -> the one-line help the command's docstring starts with (tests/cli/test_cli_layout.py)
SUMMARIES = {
    "batches": "The Batch API side of glmrun: tracked batches, cancel, details.",
    "bench": "Find the concurrency that gets the most from your account.",
    "export": "Write a job's results as CSV or JSONL; no network.",
    "run": "Run the jobs of CONFIG (resumes where the last run stopped).",
    "simulate": "Serve the embedded GLM API simulator on its own.",
    "status": "Per job: ok / errors / pending and tracked batches; no network.",
}


def load_command(name: str) -> click.Command | None:
    """The command ``name``, its module imported now."""
    if name == "run":
        from runner.cli.run import run

        return run
    if name == "status":
        from runner.cli.status import status

        return status
    if name == "export":
        from runner.cli.export import export

        return export
    if name == "bench":
        from runner.cli.bench import bench

        return bench
    if name == "simulate":
        from runner.cli.simulate import simulate

        return simulate
    if name == "batches":
        from runner.cli.batches import batches

        return batches
    return None


def summary_of(name: str, limit: int) -> str:
    """The command's short help as click would cut it, without importing the command."""
    return click.Command(name, help=SUMMARIES[name]).get_short_help_str(limit)


# what Ctrl-C leaves of a command that sends nothing (the others: "results so far are saved")
STOPPED = {
    "status": "status only reads: nothing was changed",
    "export": "the export is incomplete; a file given with -o was not written",
}


class DefaultGroup(click.Group):
    """A group of lazily imported commands where an unknown first argument means
    ``run <that argument>``."""

    default_command = "run"

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUMMARIES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in SUMMARIES else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(map(len, SUMMARIES))
        rows = [(name, summary_of(name, limit)) for name in sorted(SUMMARIES)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        """``--help`` and ``--version`` print here, before ``invoke``: a closed pipe as there."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:
            closed_pipe()

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[JSON_LOG] = wants_json_log(args)
        if args and args[0] not in SUMMARIES and args[0] not in ("--help", "-h", "--version"):
            self.check_typo(args[0])
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        """Ctrl-C before a command installs its own handler (while it imports aiohttp or
        loads a big config) is an interrupted run like any other: one line, exit 130, not
        click's ``Aborted!`` with exit 1, which cron would read as error records written.
        A reader that closed our output early (``glmrun export ... | head``) ends the command
        as it ends ``cat``: see ``closed_pipe``."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            from runner.cli.common import fail
            from runner.errors import Interrupted

            fail(Interrupted("SIGINT", what=STOPPED.get(ctx.invoked_subcommand or "", "")))
        except BrokenPipeError:
            closed_pipe()
        except click.UsageError as exc:
            if not ctx.meta.get(JSON_LOG):
                raise  # click's usage, the hint and the error, exit 2
            usage_error_as_json(exc)

    def check_typo(self, word: str) -> None:
        """``glmrun stauts cfg.yaml``: a first argument that is no file but close to a command
        name is a typo, not a config path (exit 2)."""
        if word.startswith("-") or os.path.exists(word):
            return
        import difflib  # a typo only: a run's start-up does without it

        close = difflib.get_close_matches(word, sorted(SUMMARIES), n=1, cutoff=0.6)
        if close:
            from runner.cli.common import fail
            from runner.errors import ConfigError

            fail(ConfigError(f"No such command {word!r}. Did you mean {close[0]!r}?"))


JSON_LOG = "glmrun.json_log"  # ctx.meta: the command line asked for --log-format json


def wants_json_log(args: list[str]) -> bool:
    """``--log-format json`` (or ``=json``) among the words of the command line."""
    return any(
        word == "--log-format=json" or (word == "--log-format" and following == "json")
        for word, following in itertools.pairwise([*args, ""])
    )


def usage_error_as_json(exc: click.UsageError) -> NoReturn:
    """A usage error (``--shard 9/4``, or a bad ``GLMRUN_SHARD`` set by a scheduler) when the
    command line asked for JSON logs: one error event like the run's own last line, not click's
    three lines of usage text in a log whose every line is meant to be JSON."""
    from runner.cli.common import fail
    from runner.errors import ConfigError  # exit 2, as click's usage errors
    from runner.logs import set_json_lines

    command = exc.ctx.command_path if exc.ctx is not None else "glmrun"
    set_json_lines(True)
    fail(ConfigError(f"{command}: {exc.format_message()}"))


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="glmrun")
def main() -> None:
    """Send large lists of image URLs to GLM-4V vision models; one resumable result per URL.

    glmrun CONFIG is short for glmrun run CONFIG. glmrun CONFIG --dry-run shows what a run
    would send and cost, and sends nothing. A command's options: glmrun COMMAND --help.
    """


def closed_pipe() -> NoReturn:
    """The reader of glmrun's output went away (``| head``, ``| grep -m1``): stop quietly the way
    cat, grep and sort do, killed by SIGPIPE (a shell shows 141). Not click's silent exit 1,
    which reads as glmrun's "error records written", and not 0, which would say all the
    output was written when a reader that died early (a full disk under ``| gzip > f``) cut it
    short. Whatever the command was doing has unwound by now (files closed, locks released);
    nothing more is written to the closed pipe."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    logging.shutdown()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(128 + signal.SIGPIPE)  # not reached: the signal ends the process


def entry() -> NoReturn:
    """The ``glmrun`` process (console script, ``python -m runner``): ``main``, then exit at
    once. By then every file glmrun wrote is closed (the writer, the index, state files, the
    lock) and only daemon threads may be left, so the interpreter's teardown (freeing every
    module: 0.06-0.12 s, a tenth of a short run's overhead) does nothing anyone needs: the
    logs and the standard streams are flushed and the process ends with the same exit code.
    An uncaught exception (a bug) still prints its traceback and exits the usual way."""
    code: str | int | None = 0
    _reopen_closed_streams()
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        code = cannot_write(exc)
    if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)  # a thread the usual exit would wait for: let it
    status = 0 if code is None else code if isinstance(code, int) else 1
    if isinstance(code, str):
        print(code, file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the last of the output found the reader gone
            closed_pipe()
        except OSError as exc:
            status = status or (cannot_write(exc) if exc.errno in DISK_FULL else 120)
        except ValueError:  # nothing more can be said
            status = status or 120
    os._exit(status)


def _reopen_closed_streams() -> None:
    """A standard stream the caller closed (``>&-``, ``2>&-``, a daemon that closes them) is
    opened on /dev/null, as a service manager would leave it. Python starts with such a stream
    as None: a run that had done its work then ended in a traceback (stdout) or exited 1
    having written nothing at all (stderr), and the first file glmrun opened took the free
    number, so anything written to fd 1 or 2 would have gone into it."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if getattr(sys, name) is None:
                setattr(sys, name, open(fd, mode, encoding="utf-8", closefd=False))  # noqa: SIM115


DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def cannot_write(exc: OSError) -> int:
    """stdout (``> log`` on a full disk) or a file that is not glmrun's output could not be
    written: one line and exit 1, like the output itself on a full disk, not a traceback
    followed by Python's silent 120. What stdout still buffers goes nowhere."""
    from runner.logs import direct_line  # a JSON event with --log-format json

    message = f"cannot write: {exc.strerror} (the standard output, or a file)"
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    with contextlib.suppress(OSError, ValueError):
        line = direct_line(message, event="error", level="error", message=message, exit_code=1)
        print(line, file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":  # pragma: no cover
    entry()
