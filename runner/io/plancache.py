"""Where the last plan found a text input's lines all done: ``<output>.resume-plan``.

A cron job's list grows at the end; its first millions of lines were finished long ago.
After planning, the run notes how far the input consisted only of finished (or blank) lines
(``TextPrefix``: byte offset, line number, done and failed counts), with a fingerprint of
that part of the input and of the output as it was then. The next plan starts reading at
that offset instead of hashing every old line again, when all of this holds:
- the input still starts with the same bytes (``keyindex.fingerprint`` of the prefix);
- the output still starts with the same bytes it had at that plan (fingerprint again), the
  resume index came from the persistent index (not a full scan of unknown history), and no
  record since then changed the state of a key that was done (``stable_from``,
  ``changed_done``): finished keys only stay finished, so those lines are still done.
Otherwise the whole input is read, as without it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from runner.core.resume import ResumeIndex
from runner.io.inputs import TextPrefix
from runner.io.keyindex import fingerprint

log = logging.getLogger(__name__)


def cache_path(output: Path) -> Path:
    return output.with_name(output.name + ".resume-plan")


def load_prefix(output: Path, input_path: Path, index: ResumeIndex) -> TextPrefix:
    """Where to start reading ``input_path`` (offset 0 when the note cannot be trusted)."""
    try:
        note = json.loads(cache_path(output).read_text())
        offset, output_at = int(note["offset"]), int(note["output_at"])
        if note["input"] != str(input_path.resolve()) or offset <= 0:
            return TextPrefix()
        if index.persisted < 0 or index.changed_done or index.stable_from > output_at:
            return TextPrefix()
        if index.scanned < output_at or os.path.getsize(input_path) < offset:
            return TextPrefix()
        if fingerprint(input_path, offset).hex() != note["input_fp"]:
            return TextPrefix()
        if fingerprint(output, output_at).hex() != note["output_fp"]:
            return TextPrefix()
        return TextPrefix(offset, int(note["line_no"]), int(note["done"]), int(note["failed"]))
    except (OSError, ValueError, KeyError, TypeError):
        return TextPrefix()


def save_prefix(output: Path, input_path: Path, prefix: TextPrefix, index: ResumeIndex) -> None:
    """Note ``prefix`` (the caller holds the run lock); never fails a run."""
    path = cache_path(output)
    try:
        if prefix.offset <= 0 or index.scanned <= 0:
            path.unlink(missing_ok=True)
            return
        note = {
            "input": str(input_path.resolve()),
            "offset": prefix.offset,
            "line_no": prefix.line_no,
            "done": prefix.done,
            "failed": prefix.failed,
            "input_fp": fingerprint(input_path, prefix.offset).hex(),
            "output_at": index.scanned,
            "output_fp": fingerprint(output, index.scanned).hex(),
        }
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(note) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot note the input prefix", extra={"file": str(path), "why": str(exc)})
