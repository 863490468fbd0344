"""An in-process fake of the Zhipu GLM v4 API: backs ``base_url: simulator``, the tests and
the benchmarks.

Modules: ``settings`` (knobs, fault names, counters) · ``state`` (what handlers share) ·
``replies`` (JSON and error answers, ApiError, paging) · ``completions`` (what an answer says)
· ``chat`` · ``files`` · ``batches`` (the API handlers) · ``server`` (app, routes, the one
middleware for counting, auth and error answers, control endpoints, ``serve``).
"""

from runner.simulator.completions import expected_content
from runner.simulator.server import API_PREFIX, Simulator, serve
from runner.simulator.settings import SimSettings, settings_from_dict

__all__ = [
    "API_PREFIX",
    "SimSettings",
    "Simulator",
    "expected_content",
    "serve",
    "settings_from_dict",
]
