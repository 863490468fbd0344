"""The output JSONL: loading the resume index, the single appender, and the run lock.

The file is append-only and the latest record for a key wins. At start it becomes a ``ResumeIndex``
of 8-byte key hashes: the persistent index beside it (``runner.io.keyindex``, read a block at a
time) plus a scan of what was appended after it, or a full scan (about 20 bytes per key at peak
while the table is sorted, plus a few 8 MB blocks; never the records themselves). ``ResultWriter``
owns the only write handle: one ``write()`` per record, or per block of ok records the batch
collector encoded (``append_ok_lines``), into a buffered file. Inside an event loop the buffer goes
to the OS at the end of the loop turn that appended (one syscall for every record of that turn), so
a kill -9 loses only records appended in the very turn it strikes (never more than the requests
then in flight); outside a loop the caller flushes (``flush``, ``close``). A kill tears at most the
last line, which the next writer cuts off before appending.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

from runner.core.keys import key_digests, key_hash
from runner.core.records import Record, dumps, is_final, is_invalid_input, record_key
from runner.core.resume import OK, KeyTable, ResumeIndex, record_state
from runner.errors import ConfigError, OutputError, RunLocked
from runner.io import keyindex
from runner.io.jsonl import BLOCK, iter_spans, parse_record, skipped_line
from runner.io.keyindex import open_index

log = logging.getLogger(__name__)


def load_resume_index(path: Path, *, save: bool = False) -> ResumeIndex:
    """The ResumeIndex of the output: its persistent index (``runner.io.keyindex``) when it
    still describes the output, plus a scan of the bytes appended since; otherwise a full
    scan. With ``save`` (the caller holds the run lock) a full scan writes a new index.

    The scan's fast path: glmrun's own ok records start ``{"url":"...",["key":"...",]
    "status":"ok"``, so one regex over 8 MB blocks finds the key bytes of most lines without
    parsing the JSON, and the hash is taken of those bytes (a string without escapes is its
    own UTF-8). Every other line (errors, escaped keys, foreign records, garbage) takes the
    full ``orjson`` path, with the same semantics as ``runner.io.jsonl.iter_records``.
    """
    opened = open_index(path)
    if opened is None:
        index = _full_scan(path)
        if save and index.base is not None:
            _save(path, index, index.base or KeyTable.empty(), [])
        return index
    return _with_tail(path, *opened)


def _with_tail(path: Path, header: keyindex.IndexHeader, table: KeyTable) -> ResumeIndex:
    """The index as the persistent one says, plus the records appended after it."""
    index = ResumeIndex(
        base=table,
        records=header.records,
        corrupt_lines=list(header.corrupt_lines),
        persisted=header.covered,
        stable_from=header.stable_from,
        lines=header.lines,
        scanned=header.covered,
    )
    _scan_tail(path, index, header.covered)
    return index


def save_resume_index(path: Path) -> None:
    """Bring the persistent index up to the whole output (the caller holds the run lock) at
    the end of a run, when that is worth it: rewriting it costs its whole size (90 MB at ten
    million keys), while leaving it costs the next run a scan of the tail after it. So it is
    rewritten once the tail is as large as the index or ``TAIL_BUDGET`` bytes, or when the
    tail holds what the index should settle (a finished key made unfinished, a corrupt line).
    A cron job adding 200 records to ten million then rewrites it every few hundred runs, not
    every run. Without a valid index it does nothing (the next run's full scan writes one);
    it never fails a run."""
    try:
        opened = open_index(path)
        if opened is not None:
            header, table = opened
            index = _with_tail(path, header, table)
            tail = index.scanned - header.covered
            settle = index.changed_done or len(index.corrupt_lines) > len(header.corrupt_lines)
            size = keyindex.index_path(path).stat().st_size
            if tail > 0 and (settle or tail >= min(size, TAIL_BUDGET)):
                overlay = list(index.overlay())
                _save(path, index, table, overlay, keyindex.index_path(path))
    except (OSError, OutputError) as exc:
        log.warning("resume index not updated", extra={"file": str(path), "why": str(exc)})


TAIL_BUDGET = 16 << 20  # output bytes a run may leave to the next one's scan (~45k records)


def _save(
    path: Path, index: ResumeIndex, table: KeyTable, overlay: list[tuple[int, int]], *more: Path
) -> None:
    stable = index.scanned if index.changed_done or index.persisted < 0 else index.stable_from
    meta = {
        "lines": index.lines,
        "records": index.records,
        "stable_from": stable,
        "corrupt_lines": index.corrupt_lines,
    }
    keyindex.write_index(path, index.scanned, table, meta, overlay, *more)


def _full_scan(path: Path) -> ResumeIndex:
    """Every record of the output into a ``KeyTable`` (sorted once, the later record wins)."""
    index = ResumeIndex()
    keys = _read_keys(path, 0, 0, index.corrupt_lines)
    index.records = keys.records
    index.lines = keys.lines
    index.scanned = keys.end
    index.base = KeyTable.from_digests(keys.digests, keys.odd) if keys.records else None
    return index


def _scan_tail(path: Path, index: ResumeIndex, start: int) -> None:
    """Read the records after byte ``start`` into the index's sets (the later record wins)."""
    keys = _read_keys(path, start, index.lines, index.corrupt_lines)
    odd = dict(keys.odd)
    for position, (h,) in enumerate(struct.iter_unpack("<Q", keys.digests)):
        index.add_hash(h, odd.get(position, OK))
    index.records += keys.records
    index.lines = keys.lines
    index.scanned = keys.end


@dataclass
class _Keys:
    """The key hashes of the records read, in file order, as little-endian 8-byte digests in
    one buffer; every record is ok but those in ``odd`` (position, state). ``lines`` counts
    the lines (those before the start included); ``end`` is the offset after the last newline."""

    digests: bytearray
    odd: list[tuple[int, int]]
    records: int
    lines: int
    end: int


def _read_keys(path: Path, start: int, lines: int, corrupt: list[int]) -> _Keys:
    """The records of the output from byte ``start`` (a line start with ``lines`` lines before
    it). A block whose lines are all glmrun's own ok records (nearly every block) is hashed in
    one comprehension into digests joined into the buffer: no int or array append per record,
    and only the other lines' states are kept. The one scan of both the full read and the tail."""
    digests = bytearray()
    odd: list[tuple[int, int]] = []
    records = 0
    line_no = lines
    ends: list[int] = []
    for data, end in iter_spans(path, start=start, ends=ends):
        found = _FAST_LINE.findall(data, 0, end)  # a tuple per line
        keys = [key or url for url, key, _ in found]
        if b"" not in keys:  # all glmrun ok records with plain keys
            digests += key_digests(keys)
            records += len(keys)
            line_no += len(keys)
            continue
        for url, key, other in found:
            line_no += 1
            if url:
                digests += key_digests((key or url,))
                records += 1
            elif other.strip():
                record = _slow_record(other, line_no, path, corrupt)
                if record is not None:
                    key_text = record_key(record)
                    if key_text is not None:
                        state = record_state(
                            record.get("status"), is_final(record), is_invalid_input(record)
                        )
                        if state != OK:
                            odd.append((records, state))
                        digests += key_hash(key_text).to_bytes(8, "little")
                        records += 1
    return _Keys(digests, odd, records, line_no, ends[-1] if ends else start)


# Per line (each preceded by a newline, which the regex engine finds faster than ``^``): either
# glmrun's ok-record prefix with an escape-free url (and key), or the whole line.
_FAST_LINE = re.compile(
    rb'\n(?:\{"url":"([^"\\\n]*)"(?:,"key":"([^"\\\n]*)")?,"status":"ok"|([^\n]*))'
)


def _slow_record(line: bytes, line_no: int, path: Path, corrupt: list[int]) -> Record | None:
    record = parse_record(line)
    if record is None:
        skipped_line(path, line_no, corrupt)
    return record


def repair_torn_tail(path: Path) -> int:
    """Cut a torn last line (left by a kill) so the next record starts on its own line."""
    try:
        with open(path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return 0
            pos = size
            chunk = 65536
            while pos > 0:
                start = max(0, pos - chunk)
                handle.seek(start)
                data = handle.read(pos - start)
                nl = data.rfind(b"\n")
                if nl >= 0:
                    cut = start + nl + 1
                    break
                pos = start
            else:
                cut = 0
            handle.seek(cut)
            if size - cut < BLOCK and parse_record(handle.read(size - cut)) is not None:
                handle.seek(size)
                handle.write(b"\n")  # a whole record that only lacks its newline: keep it
                return 0
            handle.truncate(cut)
            log.warning(
                "repaired a torn last line", extra={"file": str(path), "bytes_removed": size - cut}
            )
            return size - cut
    except FileNotFoundError:
        return 0


class ResultWriter:
    """The single appender of one output file.

    ``append`` is synchronous: in one event loop nobody can interleave with a ``write()``, so
    there is no queue or writer task on the hot path. A buffered file absorbs the writes; in
    an event loop they reach the OS at the end of the loop turn that made them, and ``close``
    fsyncs. (No clock: when to flush is decided by the loop, not by time.)
    """

    def __init__(self, path: Path, *, on_record: Callable[[Record], None] | None = None):
        self.path = path
        self.on_record = on_record  # told of each record written (the run's error tally)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            repair_torn_tail(path)
            self._file: IO[bytes] = open(path, "ab", buffering=1 << 16)  # noqa: SIM115
        except OSError as exc:
            raise OutputError(
                f"{path}: cannot open the output for appending: {exc.strerror}"
            ) from None
        self._flush_scheduled = False
        self._error: OSError | None = None
        self.written = 0

    def append(self, record: Record) -> None:
        if self._error is not None:  # a failed flush: stop the run before paying for more
            raise self._failed(self._error)
        try:
            self._file.write(dumps(record))
        except OSError as exc:
            raise self._failed(exc) from exc
        self.written += 1
        if self.on_record is not None:
            self.on_record(record)
        self._schedule_flush()

    def append_ok_lines(self, data: bytes, count: int) -> None:
        """``count`` ok records already encoded as whole lines (what ``records.dumps`` gives), in
        one ``write()``: a kill tears at most the last of them. ``on_record`` is not told of
        them: ok records carry nothing it tallies (errors)."""
        if self._error is not None:
            raise self._failed(self._error)
        try:
            self._file.write(data)
        except OSError as exc:
            raise self._failed(exc) from exc
        self.written += count
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop: the caller's flush() or close() does it
            self._flush_scheduled = True
            loop.call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        """End of the loop turn that appended: hand every record of that turn to the OS."""
        self._flush_scheduled = False
        with contextlib.suppress(OutputError):
            self.flush()  # a failure is kept in self._error: the next append raises it

    def _failed(self, exc: OSError) -> OutputError:
        self._error = exc
        return OutputError(
            f"{self.path}: cannot write the output: {exc.strerror}; what was written before "
            "is kept, the rest is sent again by the next run"
        )

    def flush(self) -> None:
        if not self._file.closed:
            try:
                self._file.flush()
            except OSError as exc:
                raise self._failed(exc) from exc

    def fsync(self) -> None:
        if not self._file.closed:
            self.flush()
            try:
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise self._failed(exc) from exc

    def close(self) -> None:
        if not self._file.closed:
            try:
                self.fsync()
            finally:
                with contextlib.suppress(OSError):
                    self._file.close()

    def __repr__(self) -> str:
        return f"<ResultWriter {self.path.name} written={self.written}>"


AFTER_IT = "try again once it has finished"  # what a command without --wait-lock can do


def _age(seconds: int) -> str:
    """``42s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


class RunLock:
    """An exclusive flock on ``<output>.lock``; the OS drops it when the process dies, so a
    lock left by a killed run never blocks the next one."""

    def __init__(self, output: Path):
        self.path = output.with_name(output.name + ".lock")
        self._fd: int | None = None

    def acquire(
        self, *, wait: bool = False, advice: str = "try again once it has finished"
    ) -> None:
        """Take the lock (``wait``: block for it). Held: ``RunLocked`` names the output, the
        holder's pid and since when (the holder wrote its pid on taking it), so a person can
        tell a busy run from one hung for days, then ``advice`` (what this command can do)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError as exc:  # before anything is sent: the setup to fix, like a config
            raise ConfigError(
                f"{self.path.parent}: cannot write in the output's folder ({exc.strerror}); "
                "make it writable or choose another output"
            ) from None
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create the lock file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunLocked(f"{self.describe_holder()}; {advice}") from None
            raise ConfigError(f"{self.path}: cannot lock: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def describe_holder(self, now: float | None = None) -> str:
        """``/srv/out/describe.jsonl is in use by another glmrun run (pid 812, since 19:04:01,
        3m12s ago)``."""
        output = self.path.with_name(self.path.name.removesuffix(".lock"))
        return f"{output} is in use by another glmrun run ({self.held_by(now)})"

    def held_by(self, now: float | None = None) -> str:
        """``pid 812, since 19:04:01, 3m12s ago``: the pid the holder wrote, and the lock
        file's mtime (a run held for more than a day shows its date)."""
        try:
            since = self.path.stat().st_mtime
        except OSError:
            since = None
        held = f"pid {self.holder() or 'unknown'}"
        if since is not None:
            age = max(0, int((time.time() if now is None else now) - since))
            when = time.strftime(
                "%H:%M:%S" if age < 86400 else "%Y-%m-%d %H:%M", time.localtime(since)
            )
            held += f", since {when}, {_age(age)} ago"
        return held

    def held_now(self, locks: Path = Path("/proc/locks")) -> bool | None:
        """Whether a process holds this lock now, read from the kernel's list of locks (Linux)
        without taking it: a probe with flock could make a run starting that instant exit 75.
        None where that list cannot be read."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False
        except OSError:
            return None
        try:
            text = locks.read_text()
        except OSError:
            return None
        inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        for line in text.splitlines():
            words = line.split()
            if "FLOCK" in words and "->" not in words and inode in words:  # "->": a waiter
                return True
        return False

    def holder(self) -> int | None:
        try:
            text = self.path.read_text().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
