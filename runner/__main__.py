"""``python -m runner`` is the ``glmrun`` command (tests use it with sys.executable)."""

from runner.cli.main import entry

entry()
