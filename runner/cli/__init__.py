"""The ``glmrun`` command line: one module per command and a shared helpers module."""
