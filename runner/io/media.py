"""Local media files (``file://`` images and videos), read safely and off the event loop.

The plan checked each path with every symlink resolved and against ``local_files.allowed_dirs``;
between that check and the read a component could be swapped for a link. ``O_NOFOLLOW``
refuses a link as the last component, and the opened descriptor's real path must still be the
checked one, so a swap anywhere is refused (``MediaUnavailable``: an error record, not a crash).

The realtime engine reads through ``load_media`` (aiofiles: the open and the read run in the
loop's thread pool), so one slow disk read never stalls the requests in flight. Building batch
files is synchronous work in its own right and uses ``read_local_media``.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterable

from runner.core.payloads import MediaUnavailable

FILE_SCHEME = "file://"


def _checked_opener(path: str, flags: int) -> int:
    """``open()``'s opener: no link as the last component, and the real path unchanged."""
    fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))
    try:
        proc = f"/proc/self/fd/{fd}"
        real = os.readlink(proc) if os.path.exists(proc) else os.path.realpath(path)
    except OSError:
        os.close(fd)
        raise
    if real != path:
        os.close(fd)
        raise MediaUnavailable(
            f"{path}: the file changed into a link after it was checked; refused"
        )
    return fd


def read_local_media(path: str) -> bytes:
    """The bytes of a file the plan resolved and allowed (blocking; for sync callers)."""
    try:
        with open(path, "rb", opener=_checked_opener) as handle:
            return handle.read()
    except OSError as exc:
        raise MediaUnavailable(f"{path}: cannot read the local file: {exc.strerror}") from None


async def read_local_media_async(path: str) -> bytes:
    """``read_local_media`` with the open and the read in the thread pool (aiofiles, imported
    by the first local file: a run of URLs only never loads it)."""
    import aiofiles

    try:
        async with aiofiles.open(path, "rb", opener=_checked_opener) as handle:
            return await handle.read()
    except OSError as exc:
        raise MediaUnavailable(f"{path}: cannot read the local file: {exc.strerror}") from None


def _encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def read_media(refs: Iterable[str]) -> dict[str, str]:
    """``file://`` ref -> raw base64 of the file, for every local ref given (blocking)."""
    return {ref: _encode(read_local_media(ref[len(FILE_SCHEME) :])) for ref in set(refs)}


async def load_media(refs: Iterable[str]) -> dict[str, str]:
    """``read_media`` off the event loop; the files of one item are read concurrently."""
    unique = sorted(set(refs))
    datas = await asyncio.gather(*(read_local_media_async(r[len(FILE_SCHEME) :]) for r in unique))
    return {ref: _encode(data) for ref, data in zip(unique, datas, strict=True)}
