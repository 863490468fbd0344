"""``glmrun simulate``: serve the embedded GLM API simulator standalone.

``runner.simulator`` is imported when the command runs: it pulls in aiohttp's web server,
which no other command needs at start-up.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from runner.bulk import start_up_over
from runner.errors import EXIT_CONFIG


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    metavar="ADDRESS",
    show_default=True,
    help="Address to listen on (keep it on loopback).",
)
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Port (0 picks a free one).",
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
    metavar="DIR",
    help="Keep files and batches here across restarts.",
)
def simulate(host: str, port: int, knobs: tuple[str, ...], state_dir: str | None) -> None:
    """Serve the embedded GLM API simulator on its own. For any client, benchmarks and
    demos."""
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
        click.echo(f"glmrun: --set {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    start_up_over()  # a server runs for hours: the collector's usual pace (runner.bulk)
    try:
        serve(host, port, settings, Path(state_dir) if state_dir else None)
    except OSError as exc:  # the address is taken or not ours: a usage error, no traceback
        if exc.errno and exc.errno > 0:
            reason = os.strerror(exc.errno).lower()
        else:  # a host name that resolves to nothing: the resolver's words, not "unknown -2"
            reason = (exc.strerror or str(exc)).lower()
        hint = " (another simulator there? --port 0 picks a free one)"
        click.echo(
            f"glmrun: simulator: cannot listen on {host}:{port}: {reason}"
            + (hint if exc.errno == errno.EADDRINUSE else ""),
            err=True,
        )
        sys.exit(EXIT_CONFIG)
