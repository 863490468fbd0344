"""Chunk files: the fast join for plain URL items writes exactly the bytes of the general path
(``payloads.batch_line`` of ``BodyBuilder.render``, and the sidecar line with the item's extras)."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from runner.config import JobConfig
from runner.core.items import Item
from runner.core.keys import key_hash
from runner.core.payloads import BodyBuilder, batch_line
from runner.io.batch_files import ChunkWriter, build_chunks, custom_id, item_extras
from runner.io.media import read_media

ITEMS = [
    Item("https://a.example/1.jpg", "https://a.example/1.jpg", 1),
    Item('https://a.example/q"uote\\.jpg', 'https://a.example/q"uote\\.jpg', 2),
    Item("https://a.example/图片.jpg?x=1&y=\u2028", "https://a.example/图片.jpg?x=1&y=\u2028", 3),
    Item("key-4", "https://a.example/4.jpg", 4),
    Item("https://a.example/5.jpg", "https://a.example/5.jpg", 5, meta={"m": 1}),
    Item("https://a.example/6.jpg", "https://a.example/6.jpg", 6, prompt="other"),
    Item("https://a.example/7.jpg", "https://a.example/7.jpg", 7, params={"temperature": 0.1}),
    Item(
        "https://a.example/8.jpg", "https://a.example/8.jpg", 8, images=["https://a.example/8.jpg"]
    ),
    Item("https://a.example/9.jpg", "https://a.example/9.jpg", 9, id="nine"),
    Item("data:image/png;base64,AAAA", "data:image/png;base64,AAAA", 10),
    Item("https://a.example/11.jpg", "https://a.example/11.jpg", 2**40),
]


def reference(builder: BodyBuilder, items: list[Item]) -> tuple[bytes, bytes]:
    """The chunk and sidecar bytes the general path gives, line by line."""
    lines, ids = [], []
    for item in items:
        cid = custom_id(key_hash(item.key))
        lines.append(batch_line(cid, builder.render(item, None), "/v4/chat/completions"))
        head = f"{cid}\t{item.line_no}\t{item.url}".encode()
        plain = item.key == item.url and item.meta is None and item.plain
        ids.append(head + (b"" if plain else b"\t" + orjson.dumps(item_extras(item))) + b"\n")
    return b"".join(lines), b"".join(ids)


@pytest.mark.parametrize(
    "shape",
    ["plain", "system", "templated"],
    ids=["plain-job", "system-job", "templated-job"],
)
def test_chunk_bytes_equal_the_general_path(shape: str, tmp_path: Path) -> None:
    """Every kind of item, in jobs with and without the fast path, gives the reference bytes."""
    job = JobConfig(
        name="t",
        input=str(tmp_path / "in.txt"),
        output=str(tmp_path / "out.jsonl"),
        model="glm-4v-plus-0111",
        prompt="describe {url}" if shape == "templated" else "describe",
        system="be brief" if shape == "system" else None,
        params={"temperature": 0.5},
    )
    builder = BodyBuilder(job, read_media)
    image = tmp_path / "local.png"
    image.write_bytes(b"\x89PNG local")
    local = f"file://{image}"
    items = [*ITEMS, Item(local, local, 12)]
    (chunk,) = build_chunks(
        ((key_hash(it.key), it) for it in items),
        ChunkWriter(
            tmp_path, builder, endpoint="/v4/chat/completions", max_lines=100, max_bytes=1 << 20
        ),
    )
    want_lines, want_ids = reference(builder, items)
    assert (tmp_path / chunk.file).read_bytes() == want_lines
    assert (tmp_path / chunk.ids).read_bytes() == want_ids
    assert base64.b64encode(b"\x89PNG local") in want_lines  # the local file went as base64
    assert chunk.lines == len(items) and chunk.bytes == len(want_lines)
