"""Where the last plan found a text input's lines all done: ``<output>.resume-plan``.

A cron job's list grows at the end; its first millions of lines were finished long ago.
After planning, the run notes how far the input consisted only of finished (or blank) lines
(``TextPrefix``: byte offset, line number, done and failed counts), with a SHA-256 of that
whole part of the input and a fingerprint of the output as it was then. The next plan starts
reading at that offset instead of hashing every old line again, when all of this holds:
- the input still starts with the same bytes: every byte of the prefix is hashed (never
  sampled, so an edit anywhere in it, even one that keeps the length and the mtime, is
  seen and the whole input read again). The hash taken on loading is carried in the
  ``TextPrefix`` and extended by the bytes read after it, so a run reads the prefix once
  (about 1 s per GB here; SHA-256 rather than BLAKE2b: twice as fast on CPUs with SHA
  instructions);
- the output still starts with the same bytes it had at that plan (fingerprint again), the
  resume index came from the persistent index (not a full scan of unknown history), and no
  record since then changed the state of a key that was done (``stable_from``,
  ``changed_done``): finished keys only stay finished, so those lines are still done.
Otherwise the whole input is read, as without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

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
        if fingerprint(output, output_at).hex() != note["output_fp"]:
            return TextPrefix()
        digest = _input_hash(input_path, offset)
        if digest is None or digest.hexdigest() != note["input_sha256"]:
            return TextPrefix()
        prefix = TextPrefix(offset, int(note["line_no"]), int(note["done"]), int(note["failed"]))
        prefix.hashed = (offset, digest)
        return prefix
    except (OSError, ValueError, KeyError, TypeError):
        return TextPrefix()


def save_prefix(output: Path, input_path: Path, prefix: TextPrefix, index: ResumeIndex) -> None:
    """Note ``prefix`` (the caller holds the run lock); never fails a run."""
    path = cache_path(output)
    try:
        digest = None
        if prefix.offset > 0 and index.scanned > 0:
            digest = _input_hash(input_path, prefix.offset, prefix.hashed)
        if digest is None:
            path.unlink(missing_ok=True)
            return
        note = {
            "input": str(input_path.resolve()),
            "offset": prefix.offset,
            "line_no": prefix.line_no,
            "done": prefix.done,
            "failed": prefix.failed,
            "input_sha256": digest.hexdigest(),
            "output_at": index.scanned,
            "output_fp": fingerprint(output, index.scanned).hex(),
        }
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(note) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot note the input prefix", extra={"file": str(path), "why": str(exc)})


def _input_hash(path: Path, size: int, start: tuple[int, Any] | None = None) -> Any:
    """SHA-256 of the first ``size`` bytes of ``path``, every one of them, continuing ``start``
    (offset, hash of the bytes before it) when it is not past ``size``; None when the file is
    shorter."""
    done, digest = 0, hashlib.sha256()
    if start is not None and start[0] <= size:
        done, digest = start[0], start[1].copy()
    with open(path, "rb") as handle:
        handle.seek(done)
        buf = bytearray(8 << 20)
        view = memoryview(buf)
        while done < size:
            n = handle.readinto(view[: min(len(buf), size - done)])
            if not n:
                return None
            digest.update(view[:n])
            done += n
    return digest
