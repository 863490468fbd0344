"""``glmrun simulate``: serve the embedded GLM API simulator standalone.

``runner.simulator`` is imported when the command runs: it pulls in aiohttp's web server,
which no other command needs at start-up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml

from runner.errors import EXIT_CONFIG


@click.command()
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
    serve(host, port, settings, Path(state_dir) if state_dir else None)
