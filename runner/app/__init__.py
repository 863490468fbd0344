"""The application: the one place that wires real pieces; run, status, bench and the display."""
