"""An in-process fake of the Zhipu GLM v4 API: backs ``base_url: simulator``, the tests and the benchmarks."""

from runner.simulator.server import (
    API_PREFIX,
    SimSettings,
    Simulator,
    expected_content,
    serve,
    settings_from_dict,
)

__all__ = [
    "API_PREFIX",
    "SimSettings",
    "Simulator",
    "expected_content",
    "serve",
    "settings_from_dict",
]
