"""The batch engine: one job's chunks built, submitted, tracked and collected.

``job`` runs a job's batch path, ``driver`` steps chunks through their states (the states and
``next_state`` are pure, in ``runner.core.batch_states``), ``lookup`` finds remote objects whose
answer was lost, ``collect`` turns result files into records, ``steps`` holds collect,
on_failure and chunk building for the driver. Its pieces (``BatchDeps``: client, writer, the
realtime fallback for ``batch.on_failure: realtime``) come from ``runner.app.wiring``. The state
file is ``runner.io.batch_state``.
"""

from runner.engine.batch.collect import CollectResult, collect_lines
from runner.engine.batch.job import run_batch_job

__all__ = ["CollectResult", "collect_lines", "run_batch_job"]
