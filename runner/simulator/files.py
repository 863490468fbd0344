"""The files API (upload, list, get, content, delete) and the file store behind it, which
batches also use for their input and result files; with `state_dir` every file is also on
disk, so a restarted simulator still has it."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from aiohttp import BodyPartReader, web

from runner.simulator.replies import ApiError, json_response, page
from runner.simulator.state import SimState, atomic_write


def public(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record without its private (`_`-prefixed) fields."""
    return {k: v for k, v in meta.items() if not k.startswith("_")}


class FileStore:
    """File metadata and contents by id; `_seq` in the metadata orders the list."""

    def __init__(self, state_dir: Path | None) -> None:
        self.folder = state_dir / "files" if state_dir is not None else None
        self.meta: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}

    def add(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        now = time.time()
        file_id = f"{int(now)}_{random.Random().getrandbits(128):032x}"
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(now),
            "filename": filename,
            "purpose": purpose,
            "_seq": time.time_ns(),
        }
        self.meta[file_id] = meta
        self.contents[file_id] = content
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(self.folder / f"{file_id}.bin", content)
            atomic_write(self.folder / f"{file_id}.json", orjson.dumps(meta))
        return meta

    def remove(self, file_id: str) -> None:
        self.meta.pop(file_id, None)
        self.contents.pop(file_id, None)
        if self.folder is not None:
            for suffix in (".json", ".bin"):
                (self.folder / f"{file_id}{suffix}").unlink(missing_ok=True)

    def get(self, file_id: str) -> dict[str, Any]:
        """The metadata of a file, or a 404 ApiError."""
        meta = self.meta.get(file_id)
        if meta is None:
            raise ApiError(404, "1214", f"file {file_id} not found")
        return meta

    def load(self) -> None:
        """Pick up the files a previous process left in state_dir (a file needs both parts)."""
        if self.folder is None:
            return
        for meta_path in sorted(self.folder.glob("*.json")):
            meta = orjson.loads(meta_path.read_bytes())
            content_path = meta_path.with_suffix(".bin")
            if content_path.exists():
                self.meta[meta["id"]] = meta
                self.contents[meta["id"]] = content_path.read_bytes()


class FilesApi:
    """Handlers for /files; the middleware has already counted and authenticated."""

    def __init__(self, state: SimState, store: FileStore) -> None:
        self.state = state
        self.store = store

    async def upload(self, request: web.Request) -> web.Response:
        content, filename, purpose = b"", "", ""
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "file":
                filename = part.filename or "upload"
                content = await part.read()
            elif part.name == "purpose":
                purpose = (await part.text()).strip()
        if not purpose:
            raise ApiError(400, "1214", "purpose: Input cannot be empty")
        if purpose == "batch":
            self.state.stats.batch_lines_received += check_batch_file(filename, content)
        meta = self.store.add(bytes(content), filename, purpose)
        self.state.stats.files_uploaded += 1
        return json_response(public(meta))

    async def list_files(self, request: web.Request) -> web.Response:
        purpose = request.query.get("purpose")
        items = [m for m in self.store.meta.values() if purpose is None or m["purpose"] == purpose]
        items.sort(key=lambda m: m["_seq"], reverse=request.query.get("order") != "asc")
        found, has_more = page(items, request.query)
        return json_response(
            {"object": "list", "data": [public(m) for m in found], "has_more": has_more}
        )

    async def get_file(self, request: web.Request) -> web.Response:
        return json_response(public(self.store.get(request.match_info["file_id"])))

    async def get_content(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        self.store.get(file_id)
        return web.Response(
            body=self.store.contents[file_id], content_type="application/octet-stream"
        )

    async def delete_file(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        self.store.get(file_id)
        self.store.remove(file_id)
        self.state.stats.files_deleted += 1
        return json_response({"id": file_id, "object": "file", "deleted": True})


def check_batch_file(filename: str, content: bytes) -> int:
    """Validate a purpose=batch upload like the real API (code 1210) and count its lines."""
    if not filename.endswith(".jsonl"):
        raise ApiError(400, "1210", f"file {filename!r}: only .jsonl files are accepted")
    seen: set[str] = set()
    count = 0
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(400, "1210", f"line {number}: not valid JSON") from None
        if not isinstance(line, dict) or not isinstance(line.get("body"), dict):
            raise ApiError(400, "1210", f"line {number}: expected an object with a body")
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise ApiError(400, "1210", f"line {number}: custom_id missing")
        if custom_id in seen:
            raise ApiError(400, "1210", f"line {number}: duplicate custom_id {custom_id!r}")
        seen.add(custom_id)
        count += 1
    if count == 0:
        raise ApiError(400, "1210", "file contains no requests")
    return count
