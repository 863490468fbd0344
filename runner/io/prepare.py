"""Plan-time checks of rich items against the model table and the local-file allow list.

An item the API would refuse (too many images, video for a model without video, base64 for
glm-4v-flash, a local file outside ``local_files.allowed_dirs`` or over 5 MB, bad params)
becomes an ``InvalidLine`` here, i.e. an ``invalid_input`` error record, not a wasted
request. Local files are only stat()ed here; ``payloads`` reads them when rendering.
Plain http(s) URL lines pass through with one check, so the hot path stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson

from runner.config.schema import Config, JobConfig
from runner.core.items import InvalidLine, Item
from runner.core.models import ModelCaps, base64_alternative, caps_for
from runner.core.params import ParamError, validate_params
from runner.core.templates import media_parts
from runner.errors import ConfigError
from runner.io.inputs import SkipLine, TextPrefix, read_items

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_SIDE = 6000  # px per side (glm-api.md §3)
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
VIDEO_EXTS = (".mp4",)


class Refused(ValueError):
    """Why one item cannot be sent; becomes the invalid_input record's message."""


def read_job_items(
    job: JobConfig,
    config: Config,
    skip: SkipLine | None = None,
    prefix: TextPrefix | None = None,
) -> Iterator[Item | InvalidLine]:
    """The job's items in its input format, each checked (see ItemChecker); ``skip`` and
    ``prefix`` as in read_items."""
    items = read_items(
        job.input_path,
        job.input_format,
        job.csv_url_column,
        skip,
        prefix,
        csv_id_column=job.csv_id_column,
    )
    checker = ItemChecker(job, config.local_files.allowed_dirs)
    return checker.check_all(items)


def is_http(url: str) -> bool:
    """An http(s) URL, the scheme in any case (``HTTPS://`` is one, as the input reader says)."""
    return url.startswith(("https://", "http://")) or url[:8].lower().startswith(
        ("https://", "http://")
    )


class ItemChecker:
    def __init__(self, job: JobConfig, allowed_dirs: list[str], base_dir: Path | None = None):
        self.job = job
        self.model = job.model
        self.caps: ModelCaps = caps_for(job.model)
        self.allowed = [Path(d) for d in allowed_dirs]
        self.base_dir = base_dir if base_dir is not None else job.input_path.parent
        kinds = [kind for kind, _ in media_parts(job.messages)]
        self.turn_images = kinds.count("image_url")
        self.turn_videos = kinds.count("video_url")

    def check_all(self, items: Iterable[Item | InvalidLine]) -> Iterator[Item | InvalidLine]:
        check = self.check
        for item in items:
            if isinstance(item, InvalidLine) or (
                item.plain and is_http(item.url) and not self.turn_videos
            ):
                yield item
            else:
                yield check(item)

    def check(self, item: Item) -> Item | InvalidLine:
        try:
            self._check(item)
        except Refused as exc:
            return InvalidLine(item.key, item.line_no, str(exc))
        return item

    # --- the checks ------------------------------------------------------------------------

    def _check(self, item: Item) -> None:
        if item.params is not None:
            merged = {**self.job.params, **item.params}
            try:
                item.params, _ = validate_params(self.model, merged)
            except ParamError as exc:
                raise Refused(f"params.{exc.key}: {exc}") from None
        if item.messages is not None:
            self._check_messages(item)
            return
        if item.video is not None:
            self._check_video_model()
            if self.turn_images:
                raise Refused(
                    "images and video cannot be mixed in one request "
                    "(the job's messages carry images)"
                )
            item.video = self._media_ref(item.video, "video")
            return
        media = item.images if item.images is not None else [item.url]
        n = len(media) + self.turn_images
        if self.turn_videos:
            raise Refused(
                "images and video cannot be mixed in one request (the job's messages carry a video)"
            )
        if n > self.caps.max_images:
            raise Refused(self._too_many(n))
        item.images = [self._media_ref(ref, "image") for ref in media]

    def _too_many(self, n: int) -> str:
        extra = f" ({self.turn_images} of them in the job's messages)" if self.turn_images else ""
        return f"{n} images{extra}; {self.model} takes at most {self.caps.max_images} per request"

    def _check_video_model(self) -> None:
        if not self.caps.video:
            takers = "glm-4v-plus, glm-4v-plus-0111, glm-4.5v, glm-4.1v-thinking-flash"
            raise Refused(f"{self.model} does not take video; use a video model ({takers})")

    def _check_messages(self, item: Item) -> None:
        """Batch-style lines: check every media part; local ones become file:// refs."""
        messages: list[dict[str, Any]] = orjson.loads(orjson.dumps(item.messages))
        parts = list(media_parts(messages))
        kinds = [kind for kind, _ in parts]
        if not parts and item.images:
            kinds = ["image_url"]
        if "image_url" in kinds and "video_url" in kinds:
            raise Refused("images and video cannot be mixed in one request")
        if "video_url" in kinds:
            self._check_video_model()
        if kinds.count("image_url") > self.caps.max_images:
            raise Refused(self._too_many(kinds.count("image_url")))
        for kind, inner in parts:
            inner["url"] = self._media_ref(
                inner["url"], "video" if kind == "video_url" else "image"
            )
        if not parts and item.images:
            item.images = [self._media_ref(item.images[0], "image")]
        item.messages = messages

    def _media_ref(self, ref: str, kind: str) -> str:
        """An http(s) URL as is; base64 / local files checked; local paths -> file:///abs."""
        if is_http(ref):
            return ref
        if ref.startswith("data:"):
            self._need_base64(kind)
            return ref
        self._need_base64(kind)  # before touching the file system at all
        if "\x00" in ref:
            raise Refused(f"{ref!r}: a local path cannot contain a NUL byte")
        if ref.startswith("file://"):
            raw = unquote(ref[len("file://") :])
            if raw.startswith("localhost/"):
                raw = raw[len("localhost") :]
            if not raw.startswith("/"):
                raise Refused(f"{ref}: a file:// URL needs an absolute path (file:///...)")
            path = Path(raw)
        elif "://" in ref.split("/", 1)[0] + "/" or ":" in ref.split("/", 1)[0]:
            raise Refused(f"{ref}: expected an http(s) URL or a local file")
        else:
            path = Path(os.path.expanduser(ref))
            if not path.is_absolute():
                path = self.base_dir / path
        return "file://" + str(self._local_file(path, ref, kind))

    def _need_base64(self, kind: str) -> None:
        if not self.caps.base64:
            raise Refused(
                f"{self.model} does not accept base64 {kind} data, so local files cannot be "
                f"sent to it; use https URLs with {self.model}, or a model that takes base64 "
                f"({base64_alternative(self.model)})"
            )

    def _local_file(self, path: Path, ref: str, kind: str) -> Path:
        if not self.allowed:
            raise Refused(
                f"{ref}: local files are not allowed (add its folder to local_files.allowed_dirs)"
            )
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            # say "no such file" only inside the allowed folders: outside, existence is no
            # one's business
            if any(Path(os.path.abspath(path)).is_relative_to(d) for d in self.allowed):
                raise Refused(f"{ref}: no such file") from None
            raise Refused(f"{ref}: not under local_files.allowed_dirs; refused") from None
        if not any(resolved.is_relative_to(d) for d in self.allowed):
            raise Refused(f"{ref}: not under local_files.allowed_dirs; refused")
        if not resolved.is_file():
            raise Refused(f"{ref}: not a regular file")
        size = resolved.stat().st_size
        if kind == "image":
            if resolved.suffix.lower() not in IMAGE_EXTS:
                raise Refused(f"{ref}: images must be jpg, jpeg or png")
            if size > MAX_IMAGE_BYTES:
                raise Refused(f"{ref}: {size / 1e6:.1f} MB; images must be at most 5 MB")
            dims = image_size(resolved)
            if dims is not None and max(dims) > MAX_IMAGE_SIDE:
                raise Refused(
                    f"{ref}: {dims[0]}x{dims[1]} px; images must be at most "
                    f"{MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}"
                )
        else:
            if resolved.suffix.lower() not in VIDEO_EXTS:
                raise Refused(f"{ref}: videos must be mp4")
            limit = self.caps.video_max_mb
            if limit is not None and size > limit * 1024 * 1024:
                raise Refused(
                    f"{ref}: {size / 1e6:.1f} MB; {self.model} takes videos of at most {limit} MB"
                )
            max_s = self.caps.video_max_s
            if max_s is not None:
                seconds = mp4_duration_s(resolved)
                if seconds is not None and seconds > max_s:
                    raise Refused(
                        f"{ref}: {seconds:.1f} s long; "
                        f"{self.model} takes videos of at most {max_s} s"
                    )
        return resolved


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG IHDR or a JPEG SOF marker; None when not found (then
    unchecked)."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return w, h
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 < len(head):
        if head[pos] != 0xFF:
            pos += 1
            continue
        marker = head[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            pos += 1 if marker == 0xFF else 2
            continue
        length = struct.unpack(">H", head[pos + 2 : pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return w, h
        pos += 2 + length
    return None


def mp4_duration_s(path: Path) -> float | None:
    """Duration from the mp4 ``moov/mvhd`` box, or None when it cannot be found (then unchecked)."""
    import struct

    try:
        with open(path, "rb") as f:
            end = path.stat().st_size
            pos = 0
            while pos + 8 <= end:  # top-level boxes: find moov
                f.seek(pos)
                size, kind = struct.unpack(">I4s", f.read(8))
                header = 8
                if size == 1:
                    size = struct.unpack(">Q", f.read(8))[0]
                    header = 16
                elif size == 0:
                    size = end - pos
                if size < header:
                    return None
                if kind == b"moov":
                    inner = f.read(min(size - header, 1 << 20))
                    at = inner.find(b"mvhd")
                    if at < 4:
                        return None
                    box = inner[at + 4 :]
                    if box[0] == 1:  # version 1: 64-bit times
                        timescale, duration = struct.unpack(">IQ", box[20:32])
                    else:
                        timescale, duration = struct.unpack(">II", box[12:20])
                    return duration / timescale if timescale else None
                pos += size
    except (OSError, struct.error, IndexError):
        return None
    return None


def resolve_turn_media(
    job: JobConfig, allowed_dirs: list[str], base_dir: Path, file: str, index: int
) -> JobConfig:
    """Config load: local images in ``messages`` turns -> checked file:///abs refs."""
    if not job.messages:
        return job
    import dataclasses

    checker = ItemChecker(job, allowed_dirs, base_dir)
    turns: list[dict[str, Any]] = orjson.loads(orjson.dumps(job.messages))
    if checker.turn_images and checker.turn_images + 1 > checker.caps.max_images:
        raise ConfigError(
            f"{file}: jobs[{index}].messages: {checker.turn_images} images leave no room for "
            f"the item's own image; {job.model} takes at most {checker.caps.max_images} "
            "per request"
        )
    for kind, inner in media_parts(turns):
        try:
            inner["url"] = checker._media_ref(
                inner["url"], "video" if kind == "video_url" else "image"
            )
        except Refused as exc:
            raise ConfigError(f"{file}: jobs[{index}].messages: {exc}") from None
    return dataclasses.replace(job, messages=turns)
