"""Batch input files: the pending stream cut into JSONL chunk files, each with a small sidecar.

A chunk ``chunk-00007.jsonl`` holds one request per line (``payloads.batch_line`` with the
body the realtime path sends); ``chunk-00007.ids`` maps each custom_id back to its item,
one line per request: ``custom_id TAB line_no TAB url`` for a plain URL line, plus
``TAB {json}`` with the key and the item's other fields (prompt, images, meta, ...) when it
has any. Collecting a chunk reads only its own sidecar, so matching results never needs the
whole job in memory.

custom_id is ``g`` + the 16 hex digits of the item's 64-bit key hash: stable across runs,
17 characters of ``[0-9a-g]`` (inside the safe 6-64 chars of ``[A-Za-z0-9_-]``), and it maps
back to the key hash without a lookup.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from runner.bulk import paused_gc
from runner.core.items import Item
from runner.core.payloads import BodyBuilder, MediaUnavailable
from runner.core.resume import numpy

CUSTOM_ID_PREFIX = "g"
_WRITE_EVERY = 2048  # lines buffered before one write()


_EXTRA_FIELDS = tuple(
    f.name for f in dataclasses.fields(Item) if f.name not in ("key", "url", "line_no")
)


def custom_id(h: int) -> str:
    """The custom_id of the item whose key hashes to ``h``."""
    return f"g{h:016x}"


def hash_of_custom_id(cid: str) -> int | None:
    """The key hash a custom_id was made from, or None for an id glmrun did not make."""
    if len(cid) != 17 or not cid.startswith(CUSTOM_ID_PREFIX):
        return None
    try:
        return int(cid[1:], 16)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ChunkFile:
    """One built chunk: its files (names inside the work folder) and size."""

    index: int
    file: str
    ids: str
    lines: int
    bytes: int


def chunk_names(index: int) -> tuple[str, str]:
    return f"chunk-{index:05d}.jsonl", f"chunk-{index:05d}.ids"


def fsync_replace(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` over ``final`` and fsync the folder, so the new name survives a power cut."""
    os.replace(tmp, final)
    fsync_dir(final.parent)


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (a new or renamed file) survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ChunkWriter:
    """Streams items into chunk files, closing a chunk at ``max_lines`` or ``max_bytes``.

    Files are written under a ``.part`` name, fsynced and renamed when the chunk closes, so a
    chunk file that exists is complete.
    """

    def __init__(
        self,
        work_dir: Path,
        builder: BodyBuilder,
        *,
        endpoint: str,
        max_lines: int,
        max_bytes: int,
        first_index: int = 0,
    ):
        self.work_dir = work_dir
        self.builder = builder
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.next_index = first_index
        self._mid = b'","method":"POST","url":' + orjson.dumps(endpoint) + b',"body":'
        template = builder.plain_template()
        self._plain = (
            None
            if template is None
            else (self._mid + template.head, template.tail + b"}\n")  # around the URL's JSON
        )
        self._open = False
        self._lines: list[bytes] = []
        self._ids: list[bytes] = []
        self._count = 0
        self._bytes = 0
        self._handle: BinaryIO | None = None
        self._ids_handle: BinaryIO | None = None
        work_dir.mkdir(parents=True, exist_ok=True)

    def _start(self) -> None:
        jsonl, ids = chunk_names(self.next_index)
        self._handle = open(self.work_dir / (jsonl + ".part"), "wb")  # noqa: SIM115
        self._ids_handle = open(self.work_dir / (ids + ".part"), "wb")  # noqa: SIM115
        self._open = True
        self._count = 0
        self._bytes = 0

    def add(self, h: int, item: Item) -> ChunkFile | None:
        """Add one item; returns the chunk it closed, if adding it had to close one.

        A plain URL item (the common case) is written in one join of pre-rendered pieces:
        the same bytes as ``payloads.batch_line`` of ``builder.render`` (a test keeps them so).
        """
        cid = b"g%016x" % h  # custom_id(h), as bytes
        url = item.url
        if self._plain is not None and _is_plain(item) and not url.startswith("file://"):
            head, tail = self._plain
            line = b"".join((b'{"custom_id":"', cid, head, orjson.dumps(url), tail))
            ids = b"%b\t%d\t%b\n" % (cid, item.line_no, url.encode())
        else:
            line = b'{"custom_id":"' + cid + self._mid + self.builder.render(item, None) + b"}\n"
            ids = sidecar_line(cid, item)
        closed = None
        size = len(line)
        if self._open and (self._count >= self.max_lines or self._bytes + size > self.max_bytes):
            closed = self._close()
        if not self._open:
            self._start()
        self._lines.append(line)
        self._ids.append(ids)
        self._count += 1
        self._bytes += size
        if len(self._lines) >= _WRITE_EVERY:
            self._write()
        return closed

    def _write(self) -> None:
        assert self._handle is not None and self._ids_handle is not None
        self._handle.write(b"".join(self._lines))
        self._ids_handle.write(b"".join(self._ids))
        self._lines.clear()
        self._ids.clear()

    def _close(self) -> ChunkFile:
        self._write()
        assert self._handle is not None and self._ids_handle is not None
        for handle in (self._handle, self._ids_handle):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        jsonl, ids = chunk_names(self.next_index)
        os.replace(self.work_dir / (ids + ".part"), self.work_dir / ids)
        fsync_replace(self.work_dir / (jsonl + ".part"), self.work_dir / jsonl)
        chunk = ChunkFile(self.next_index, jsonl, ids, self._count, self._bytes)
        self.next_index += 1
        self._open = False
        self._handle = self._ids_handle = None
        return chunk

    def finish(self) -> ChunkFile | None:
        """Close the last chunk (None when nothing was added since the last close)."""
        return self._close() if self._open else None

    def abort(self) -> None:
        for handle in (self._handle, self._ids_handle):
            if handle is not None:
                handle.close()
        self._open = False


def build_chunks(
    items: Iterable[tuple[int, Item]],
    writer: ChunkWriter,
    *,
    on_unavailable: Callable[[Item, MediaUnavailable], None] | None = None,
) -> Iterator[ChunkFile]:
    """Stream ``items`` through ``writer`` into chunk files; yields each chunk as it is closed.

    An item whose local file cannot be read any more goes to ``on_unavailable`` (an error
    record) instead of ending the build.
    """
    try:
        for h, item in items:
            try:
                closed = writer.add(h, item)
            except MediaUnavailable as exc:
                if on_unavailable is None:
                    raise
                on_unavailable(item, exc)
                continue
            if closed is not None:
                yield closed
        last = writer.finish()
        if last is not None:
            yield last
    finally:
        writer.abort()


def sidecar_line(cid: bytes, item: Item) -> bytes:
    """One sidecar line: ``custom_id TAB line_no TAB url``, plus ``TAB {json}`` of the item's
    extras when it is not a plain URL item."""
    head = cid + b"\t" + str(item.line_no).encode() + b"\t" + item.url.encode()
    if _is_plain(item):
        return head + b"\n"
    return head + b"\t" + orjson.dumps(item_extras(item)) + b"\n"


def _is_plain(item: Item) -> bool:
    """A plain URL item: its sidecar line is ``custom_id TAB line_no TAB url``, no extras."""
    return item.key == item.url and item.meta is None and item.plain


def item_extras(item: Item) -> dict[str, Any]:
    """The fields of a non-plain item beyond url and line_no (None fields left out)."""
    out: dict[str, Any] = {"key": item.key}
    for name in _EXTRA_FIELDS:
        value = getattr(item, name)
        if value is not None:
            out[name] = value
    return out


# A sidecar line the collector's fast path can take: three fields (a plain URL item: no JSON
# of extras), a URL that is its own JSON string body (no quote, backslash or control byte:
# orjson writes exactly these bytes for it, the file being UTF-8) and a custom_id as clean.
_FAST_LINE = re.compile(rb'^([^"\\\x00-\x1f]*+)\t[^\t\n]*+\t([^"\\\x00-\x1f]*+)$', re.MULTILINE)


class Sidecar:
    """One chunk's sidecar as collecting reads it: the item each custom_id stands for, and which
    ids have had their result (the first result for an id claims it; another is a duplicate).

    ``pending`` maps the id of each fast-path item (``_FAST_LINE``: a plain URL that is its own
    JSON string body, the common line) to its URL's bytes until its result is claimed: the
    collector pops ids in bulk (``map(pending.pop, ids)``), never decoding an id or a URL. The
    full parser asks ``rest`` and ``claim`` instead, from a text map built on first use, so a
    result file whose lines all take the fast path never builds it.
    """

    def __init__(self, data: bytes) -> None:
        if not data.isascii():
            data.decode()  # not UTF-8: UnicodeDecodeError, as when the whole file was decoded
        self._data = data
        with paused_gc():
            grid = _fast_grid(data)
            pending = dict(_FAST_LINE.findall(data)) if grid is None else grid
        self.pending: dict[bytes, bytes] = pending
        # the fast ids (all known ids when every line is one), so claim() knows that an id no
        # longer pending was claimed: never a second record for it, by either path
        self._fast: frozenset[bytes] | None = None if grid is not None else frozenset(self.pending)
        self._claimed: set[bytes] = set()  # other ids, claimed by the full parser
        self._rests: dict[str, str] | None = None

    def rests(self) -> dict[str, str]:
        """custom_id -> the rest of its line (``line_no TAB url [TAB json]``), every id."""
        if self._rests is None:
            text = self._data.decode()
            # split("\n"), not splitlines(): a prompt or meta may hold U+2028 or U+0085, which
            # orjson writes unescaped and splitlines() would treat as line ends
            self._rests = dict(line.split("\t", 1) for line in text.split("\n") if line)
        return self._rests

    def rest(self, cid: str) -> str | None:
        return self.rests().get(cid)

    def claim(self, cid: str) -> bool:
        """True the first time a result for ``cid`` (a known id) is taken, False after."""
        key = cid.encode()
        if self.pending.pop(key, None) is not None:
            return True
        if self._fast is None or key in self._fast or key in self._claimed:
            return False  # a fast id no longer pending, or one this method claimed before
        self._claimed.add(key)
        return True

    def unclaimed(self) -> Iterator[tuple[str, Item]]:
        """The ids (and items) no result has claimed, in sidecar order."""
        if not self.pending and self._fast is None:
            return  # every id is a fast one and none is pending
        pending, fast, claimed = self.pending, self._fast, self._claimed
        for cid, rest in self.rests().items():
            key = cid.encode()
            if fast is None or key in fast:
                if key in pending:
                    yield cid, sidecar_item(rest)
            elif key not in claimed:
                yield cid, sidecar_item(rest)


def _fast_grid(data: bytes) -> dict[bytes, bytes] | None:
    """``pending`` when every line is a fast line (a job of plain URLs), from one split of the
    file rather than a match per line; None otherwise (``_FAST_LINE`` finds them one by one).

    With no quote or backslash anywhere, and the file's control bytes (picked out by numpy) a
    tab, a tab and a newline over and over, every line has exactly three fields, so the split
    at tabs and newlines puts them in a grid of three columns."""
    if not data.endswith(b"\n") or b'"' in data or b"\\" in data:
        return None
    np = numpy()
    octets = np.frombuffer(data, np.uint8)
    controls = octets[octets < 32]
    if controls.size % 3 or not (controls.reshape(-1, 3) == _GRID_ROW).all():
        return None
    fields = data.replace(b"\t", b"\n").split(b"\n")
    return dict(zip(fields[0:-1:3], fields[2::3], strict=True))


_GRID_ROW = (9, 9, 10)  # the control bytes of a fast line: the two tabs and its newline


def read_sidecar(path: Path) -> Sidecar:
    return Sidecar(path.read_bytes())


def sidecar_item(rest: str) -> Item:
    """The Item a sidecar line (as kept by ``read_sidecar``) stands for."""
    parts = rest.split("\t", 2)
    if len(parts) == 3:
        fields = orjson.loads(parts[2])
        return Item(url=parts[1], line_no=int(parts[0]), **fields)
    return Item(parts[1], parts[1], int(parts[0]))


def iter_sidecar_hashes(path: Path) -> Iterator[int]:
    """The key hashes of one chunk, read from its sidecar without decoding URLs."""
    with open(path, "rb") as handle:
        for raw in handle:
            yield int(raw[1:17], 16)
