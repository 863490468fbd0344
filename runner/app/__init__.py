"""The application: the one place that wires real pieces, and run, status, bench and progress on top of it."""
