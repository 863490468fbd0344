"""The application: the one place that wires real pieces; run, status, bench on top of it."""
