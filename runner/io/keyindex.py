"""The persistent resume index beside one output file: ``<output>.resume-index``.

One index per output file (a job that reads several outputs keeps one per file). Layout: a
4 KiB header, then the sorted unique uint64 key hashes, then one state byte per hash
(``runner.core.resume``: OK, FAILED, RETRYABLE, INVALID), then every 512th hash (the fence). The
header says which prefix of the output the table covers: its byte offset (always just after
a newline), line and record counts, the output's inode and mtime when written, and a
fingerprint of that prefix. It is written to a
temporary file and renamed (atomic). A run keeps only the fence in memory (160 KB for ten
million keys) and reads the 4 KiB block a look-up needs with ``pread``: memory-mapping the
table would map most of it after a few hundred look-ups (the kernel maps neighbouring pages
on each fault), and the mapped pages count as the run's memory.

An index is used only when the output still starts with the prefix it covers:
- same inode (a file replaced by rename is a different file);
- size >= the covered offset (shorter: truncated);
- size == covered requires the same mtime (rewritten in place without growing);
- the fingerprint matches: BLAKE2b of the whole prefix up to 32 MiB, beyond that of its first
  and last 64 KiB and 256 blocks of 4 KiB spread evenly. Any edit that changes a length before
  the covered offset shifts the last 64 KiB and is caught; an in-place edit of the same length
  in a large output, that misses every sampled block and is followed by an append, is the one
  change this cannot see.
Anything else means a full scan of the output (and a new index). Bytes after the covered
offset (records appended since, by glmrun or another tool) are scanned on every load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import weakref
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.core.resume import BLOCK, KeyTable, numpy
from runner.errors import OutputError

log = logging.getLogger(__name__)

MAGIC = b"GLMRIX03"  # 03: invalid_input records have their own state (was FAILED)
HEADER = 4096
_FIELDS = struct.Struct("<8sQQQQQqQ32sI")  # magic covered lines records n ino mtime stable fp len
FULL_HASH_BYTES = 32 << 20
_SAMPLES = 256
_EDGE = 64 << 10
_BLOCK = 4096
_CHUNK = 1 << 20  # keys per step when merging (8 MB)


INDEX_SUFFIX = ".resume-index"


def index_path(output: Path) -> Path:
    return output.with_name(output.name + INDEX_SUFFIX)


@dataclass
class IndexHeader:
    """The index's 4 KiB header: which prefix of the output the table covers, and how to tell that
    the prefix is unchanged."""

    covered: int  # bytes of the output the table covers (just after a newline)
    lines: int  # lines in that prefix (for line numbers of the tail)
    records: int
    n: int
    ino: int
    mtime_ns: int
    stable_from: int  # no record in [stable_from, covered) changed the state of a done key
    fingerprint: bytes
    corrupt_lines: list[int]


def fingerprint(path: Path, size: int) -> bytes:
    """BLAKE2b of the first ``size`` bytes (whole up to 32 MiB, sampled beyond)."""
    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=32)
    with open(path, "rb") as handle:
        if size <= FULL_HASH_BYTES:
            remaining = size
            while remaining > 0:
                chunk = handle.read(min(remaining, 8 << 20))
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
            return digest.digest()
        spans = [(0, _EDGE), (size - _EDGE, _EDGE)]
        step = (size - 2 * _EDGE) // _SAMPLES
        spans += [(_EDGE + i * step, _BLOCK) for i in range(_SAMPLES)]
        fd = handle.fileno()
        for offset, length in spans:
            digest.update(os.pread(fd, length, offset))
    return digest.digest()


def orphaned(output: Path) -> str | None:
    """Why a run must not start ``output`` over, or None: the output is gone or empty while its
    resume index lists keys recorded in it. A full scan would find nothing done, and every one
    of those URLs would be sent, and paid for, again: an output moved away (rotated, archived)
    or deleted by mistake cost a whole history. Starting over on purpose takes deleting the
    index too."""
    path = index_path(output)
    header = read_header(path)
    if header is None or header.n == 0:
        return None
    try:
        if os.stat(output).st_size > 0:
            return None
        what = "is empty"
    except FileNotFoundError:
        what = "is gone"
    except OSError:
        return None
    return (
        f"{output} {what}, but {path.name} beside it lists {header.n:,} URLs recorded in it: a "
        "run now would send, and pay for, every one of them again. Put the output back; or, to "
        f"start over on purpose, delete {path}"
    )


def read_header(path: Path) -> IndexHeader | None:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(HEADER)
    except OSError:
        return None
    if len(raw) < HEADER or not raw.startswith(MAGIC):
        return None
    magic, covered, lines, records, n, ino, mtime_ns, stable, fp, jlen = _FIELDS.unpack_from(raw)
    try:
        corrupt = json.loads(raw[_FIELDS.size : _FIELDS.size + jlen])
    except ValueError:
        return None
    return IndexHeader(covered, lines, records, n, ino, mtime_ns, stable, fp, corrupt)


def _older_format(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(MAGIC))
    except OSError:
        return False
    return magic.startswith(MAGIC[:6]) and magic != MAGIC


def valid_header(output: Path, header: IndexHeader) -> str | None:
    """Why the index does not describe ``output`` any more, or None when it does."""
    try:
        st = os.stat(output)
    except OSError:
        return "the output is gone"
    if st.st_ino != header.ino:
        return "the output was replaced"
    if st.st_size < header.covered:
        return "the output was truncated"
    if st.st_size == header.covered and st.st_mtime_ns != header.mtime_ns:
        return "the output was rewritten"
    if fingerprint(output, header.covered) != header.fingerprint:
        return "the output was edited"
    return None


def open_index(output: Path) -> tuple[IndexHeader, KeyTable] | None:
    """The valid index of ``output`` (its fence in memory, blocks read on demand), or None
    (the log says why)."""
    path = index_path(output)
    header = read_header(path)
    if header is None:
        if _older_format(path):  # an upgrade: one full scan writes the new format
            log.info("resume index of an older glmrun; full scan", extra={"file": str(path)})
        elif path.exists():
            log.warning("resume index unreadable; full scan", extra={"file": str(path)})
        return None
    why = valid_header(output, header)
    if why is None:
        try:
            n = header.n
            with open(path, "rb") as handle:
                fence_n = -(-n // BLOCK)
                if os.fstat(handle.fileno()).st_size < HEADER + 9 * n + 8 * fence_n:
                    why = "the index file is short"
                elif n == 0:
                    return header, KeyTable.empty()
                else:
                    fence = array("Q")
                    fence.frombytes(os.pread(handle.fileno(), 8 * fence_n, HEADER + 9 * n))
                    if len(fence) != fence_n:
                        raise ValueError("the fence is short")
                    return header, KeyTable(n=n, fence=fence, read=_reader(path, n))
        except (OSError, ValueError) as exc:
            why = f"cannot read the index: {exc}"
    # INFO, not a warning: the index is a cache that heals itself, and the usual reason is that
    # the person replaced or edited the output on purpose (an output gone or emptied while its
    # index lists keys never gets here: ``orphaned`` refuses the run first)
    log.info("resume index not used; full scan", extra={"file": str(output), "why": why})
    return None


def _reader(path: Path, n: int) -> Callable[[int, int], tuple[bytes, bytes]]:
    """``read(start, stop)``: the raw keys and states of that range, read from the index file
    (it is replaced by rename, never rewritten, so an open handle keeps reading the same
    table)."""
    fd = os.open(path, os.O_RDONLY)

    def read(start: int, stop: int) -> tuple[bytes, bytes]:
        count = stop - start
        keys = os.pread(fd, 8 * count, HEADER + 8 * start)
        states = os.pread(fd, count, HEADER + 8 * n + start)
        if len(keys) != 8 * count or len(states) != count:
            raise OutputError(f"{path}: the resume index is short")
        return keys, states

    weakref.finalize(read, os.close, fd)  # closed with the table that holds it
    return read


def _header_bytes(output: Path, covered: int, n: int, meta: dict[str, Any]) -> bytes:
    st = os.stat(output)
    shown = list(meta["corrupt_lines"][:400])
    corrupt = json.dumps(shown).encode()
    while len(corrupt) > HEADER - _FIELDS.size:  # the first ones that fit in the header
        shown = shown[: len(shown) // 2]
        corrupt = json.dumps(shown).encode()
    fp = fingerprint(output, covered)
    fields = _FIELDS.pack(
        MAGIC,
        covered,
        meta["lines"],
        meta["records"],
        n,
        st.st_ino,
        st.st_mtime_ns,
        meta["stable_from"],
        fp,
        len(corrupt),
    )
    return (fields + corrupt).ljust(HEADER, b"\0")


def write_index(
    output: Path,
    covered: int,
    table: KeyTable,
    meta: dict[str, Any],
    overlay: list[tuple[int, int]] | None = None,
    base_file: Path | None = None,
) -> None:
    """Write (atomically) the index of ``output``'s first ``covered`` bytes: ``table`` with
    ``overlay`` (hash, state) pairs merged in. With ``base_file`` (the index ``table`` was
    opened from), the table is read from it in 8 MB steps, so the merge never holds it whole."""
    np = numpy()
    if overlay:
        pairs = sorted(overlay)
        ov_h = np.fromiter((h for h, _ in pairs), dtype=np.uint64, count=len(pairs))
        ov_s = np.fromiter((s for _, s in pairs), dtype=np.uint8, count=len(pairs))
    else:
        ov_h, ov_s = np.empty(0, np.uint64), np.empty(0, np.uint8)
    base_n = len(table)
    pos, hit, _ = table.locate(ov_h)
    n = base_n + int(np.count_nonzero(~hit))
    fences: list[Any] = []
    path = index_path(output)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(_header_bytes(output, covered, n, meta))
            states_at = HEADER + 8 * n
            written = 0
            for start in range(0, max(base_n, 1), _CHUNK):
                stop = min(base_n, start + _CHUNK)
                last = stop >= base_n
                sel = (pos >= start) & ((pos < stop) | last)
                if base_file is not None and stop > start:
                    k = np.fromfile(base_file, np.uint64, stop - start, offset=HEADER + 8 * start)
                    at = HEADER + 8 * base_n + start
                    s = np.fromfile(base_file, np.uint8, stop - start, offset=at)
                else:
                    k = np.array(table.keys[start:stop])
                    s = np.array(table.states[start:stop])
                h_hit = sel & hit
                s[pos[h_hit] - start] = ov_s[h_hit]
                h_new = sel & ~hit
                k = np.insert(k, pos[h_new] - start, ov_h[h_new])
                s = np.insert(s, pos[h_new] - start, ov_s[h_new])
                handle.seek(HEADER + 8 * written)
                handle.write(k.tobytes())
                handle.seek(states_at + written)
                handle.write(s.tobytes())
                fences.append(k[(-written) % BLOCK :: BLOCK].copy())  # not a view: k is freed
                written += len(k)
            handle.seek(states_at + n)
            handle.write(np.concatenate(fences).tobytes() if fences else b"")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write the resume index", extra={"file": str(path), "why": str(exc)})
        with_suppressed_unlink(tmp)


def with_suppressed_unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
