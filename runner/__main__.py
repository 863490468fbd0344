"""``python -m runner`` is the ``glmrun`` command (tests use it with sys.executable)."""

from .cli import main

main()
