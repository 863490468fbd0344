"""The ``glmrun`` click group: registers one command per module and is the console-script entry.

``glmrun CONFIG`` is ``glmrun run CONFIG``. Each command lives in its own module
(``runner.cli.run``, ``status``, ``export``, ``bench``, ``simulate``, ``batches``); what they
share (config loading, errors -> exit codes) is in ``runner.cli.common``.
"""

from __future__ import annotations

import difflib
import os

import click

from runner import __version__
from runner.cli.batches import batches
from runner.cli.bench import bench
from runner.cli.common import fail
from runner.cli.export import export
from runner.cli.run import run
from runner.cli.simulate import simulate
from runner.cli.status import status
from runner.errors import ConfigError, Interrupted


class DefaultGroup(click.Group):
    """A group where an unknown first argument means ``run <that argument>``."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            self.check_typo(args[0])
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        """Ctrl-C before a command installs its own handler (while it imports aiohttp or
        loads a big config) is an interrupted run like any other: one line, exit 130, not
        click's ``Aborted!`` with exit 1, which cron would read as error records written."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            fail(Interrupted("SIGINT"))

    def check_typo(self, word: str) -> None:
        """``glmrun stauts cfg.yaml``: a first argument that is no file but close to a command
        name is a typo, not a config path (exit 2)."""
        if word.startswith("-") or os.path.exists(word):
            return
        close = difflib.get_close_matches(word, list(self.commands), n=1, cutoff=0.6)
        if close:
            fail(ConfigError(f"No such command {word!r}. Did you mean {close[0]!r}?"))


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="glmrun")
def main() -> None:
    """Send large lists of image URLs to GLM-4V vision models; one resumable result per URL.

    glmrun CONFIG is short for glmrun run CONFIG.
    """


for _command in (run, status, bench, simulate, export, batches):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
