"""Where the last plan found a text input's lines all done: ``<output>.resume-plan``.

A cron job's list grows at the end; its first millions of lines were finished long ago.
After planning, the run notes how far the input consisted only of finished (or blank) lines
(``TextPrefix``: byte offset, line number, done and failed counts), with a SHA-256 of that
whole part of the input, the input's stat when no write could have been in flight, and a
fingerprint of the output as it was then. The next plan starts reading at that offset instead
of hashing every old line again, when all of this holds:
- the input still starts with the same bytes. Either its (device, inode, size, mtime, ctime)
  are those noted (the note keeps them only when both times were over two seconds old, so a
  write in the same clock tick as the note cannot hide; an append or an edit always moves
  ctime, which no tool can set back), or every byte of the prefix hashes as noted (never
  sampled, so an edit anywhere in it, even one that keeps the length and the mtime, is seen).
  The hash is ``PrefixCheck``: a thread, since hashlib releases the GIL on large buffers, so
  a run can plan and send the new lines on one core while the other reads the prefix (about
  0.3 s of CPU for 390 MB); whatever was planned from the offset is a guess until
  ``PrefixCheck.wait()`` says it holds (``runner.app.planning`` then reads the whole input,
  skipping what the run already sent). The digest is carried on and extended by the bytes
  after it, so a run reads the prefix once (SHA-256 rather than BLAKE2b: three times as fast
  with SHA instructions);
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
import threading
import time
from pathlib import Path
from typing import Any

from runner.core.resume import ResumeIndex
from runner.io.inputs import TextPrefix
from runner.io.keyindex import fingerprint

log = logging.getLogger(__name__)


def cache_path(output: Path) -> Path:
    return output.with_name(output.name + ".resume-plan")


class PrefixCheck:
    """Whether the input still starts with the noted prefix: the SHA-256 of its first
    ``offset`` bytes, read in a thread and compared with the note (``wait``). With ``proven``
    (the input's stat is the one noted) the answer is yes without reading; the hash is then
    read only if a longer prefix is to be noted (``start``), to extend it."""

    def __init__(self, path: Path, offset: int, expected: str, *, proven: bool = False):
        self.path, self.offset, self.proven = path, offset, proven
        self._expected = expected
        self.digest: Any = None  # the hash of the prefix once read (None: the file is shorter)
        self._thread: threading.Thread | None = None
        if not proven:
            self.start()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="glmrun-prefix", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            self.digest = _input_hash(self.path, self.offset)
        except OSError:
            self.digest = None

    def done(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def wait(self) -> bool:
        """True when the prefix is as noted (blocks until it is read, unless proven)."""
        if self._thread is None:
            return self.proven
        self._thread.join()
        return self.digest is not None and self.digest.hexdigest() == self._expected

    def hashed(self) -> tuple[int, Any] | None:
        """(offset, hash of the prefix) to extend, reading it if needed; None if it changed."""
        self.start()
        return (self.offset, self.digest) if self.wait() else None

    def __repr__(self) -> str:
        state = "proven" if self.proven else "reading" if not self.done() else "read"
        return f"<PrefixCheck {self.path.name} offset={self.offset} {state}>"


def load_prefix(output: Path, input_path: Path, index: ResumeIndex) -> TextPrefix:
    """Where to start reading ``input_path`` (offset 0 when the note cannot be trusted); the
    input prefix is checked before it returns."""
    prefix, check = start_prefix(output, input_path, index)
    if check is None:
        return prefix
    if not check.wait():
        return TextPrefix()
    prefix.check = check
    return prefix


def start_prefix(
    output: Path, input_path: Path, index: ResumeIndex
) -> tuple[TextPrefix, PrefixCheck | None]:
    """Where to start reading ``input_path`` if the note holds, and the check of its input
    prefix (None: start at 0). Until ``check.wait()`` returns True the offset is a guess."""
    try:
        note = json.loads(cache_path(output).read_text())
        offset, output_at = int(note["offset"]), int(note["output_at"])
        if note["input"] != str(input_path.resolve()) or offset <= 0:
            return TextPrefix(), None
        if index.persisted < 0 or index.changed_done or index.stable_from > output_at:
            return TextPrefix(), None
        st = os.stat(input_path)
        if index.scanned < output_at or st.st_size < offset:
            return TextPrefix(), None
        if fingerprint(output, output_at).hex() != note["output_fp"]:
            return TextPrefix(), None
        # a note without "duplicates" (older glmrun counted a finished key listed twice as
        # done twice) is not trusted: the input is read once and the note written again
        prefix = TextPrefix(offset, int(note["line_no"]), int(note["done"]), int(note["failed"]))
        prefix.duplicates = int(note["duplicates"])
        expected = str(note["input_sha256"])
        proven = note.get("input_stat") == _stat_list(st)
        return prefix, PrefixCheck(input_path, offset, expected, proven=proven)
    except (OSError, ValueError, KeyError, TypeError):
        return TextPrefix(), None


def save_prefix(output: Path, input_path: Path, prefix: TextPrefix, index: ResumeIndex) -> None:
    """Note ``prefix`` (the caller holds the run lock); never fails a run."""
    path = cache_path(output)
    if prefix.straddled:  # a plan from it would count a finished URL listed again twice
        forget_prefix(output)
        return
    try:
        check = prefix.check
        if isinstance(check, PrefixCheck) and check.proven and prefix.offset == check.offset:
            return  # the note still says this (the output only grew since)
        start = check.hashed() if check is not None else None
        digest = None
        if prefix.offset > 0 and index.scanned > 0 and (check is None or start is not None):
            before = os.stat(input_path)
            digest = _input_hash(input_path, prefix.offset, start)
            after = os.stat(input_path)
        if digest is None:
            path.unlink(missing_ok=True)
            return
        note = {
            "input": str(input_path.resolve()),
            "offset": prefix.offset,
            "line_no": prefix.line_no,
            "done": prefix.done,
            "failed": prefix.failed,
            "duplicates": prefix.duplicates,
            "input_sha256": digest.hexdigest(),
            "input_stat": _quiet_stat(before, after),
            "output_at": index.scanned,
            "output_fp": fingerprint(output, index.scanned).hex(),
        }
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(note) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot note the input prefix", extra={"file": str(path), "why": str(exc)})


def forget_prefix(output: Path) -> None:
    """Drop the note (it described an input that has changed since)."""
    try:
        cache_path(output).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove the input note", extra={"file": str(output), "why": str(exc)})


QUIET_NS = 2_000_000_000  # a stat this much older than the note is safe from same-tick writes


def _stat_list(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _quiet_stat(before: os.stat_result, after: os.stat_result) -> list[int] | None:
    """The input's stat to note, or None when it may not prove anything next time: it
    changed while the prefix was read, or a write may share its clock tick (the kernel's
    file times are coarse, so a same-size edit right after this stat could keep them)."""
    if _stat_list(before) != _stat_list(after):
        return None
    newest = max(after.st_mtime_ns, after.st_ctime_ns)
    if time.time_ns() - newest < QUIET_NS:
        return None
    return _stat_list(after)


def _input_hash(path: Path, size: int, start: tuple[int, Any] | None = None) -> Any:
    """SHA-256 of the first ``size`` bytes of ``path``, every one of them, continuing ``start``
    (offset, hash of the bytes before it) when it is not past ``size``; None when the file is
    shorter."""
    done, digest = 0, hashlib.sha256()
    if start is not None and start[0] <= size:
        done, digest = start[0], start[1].copy()
    with open(path, "rb") as handle:
        handle.seek(done)
        buf = bytearray(1 << 20)  # as fast as larger reads here, and 8 MB less at peak
        view = memoryview(buf)
        while done < size:
            n = handle.readinto(view[: min(len(buf), size - done)])
            if not n:
                return None
            digest.update(view[:n])
            done += n
    return digest
