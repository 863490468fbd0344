"""Helpers the test suites import: configs on disk, output records, simulators and runs."""
