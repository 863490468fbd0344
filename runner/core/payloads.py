"""Pure: request bodies and batch lines, built once per job and rendered per item.

The constant parts of the body (model, prompt, params) are serialised once when the job
starts; per item only the URL and the request_id are encoded and spliced in. The result is
byte-for-byte what ``orjson.dumps`` of the full dict gives, at a fraction of the cost.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from runner.config.schema import JobConfig
from runner.core.items import Item
from runner.core.records import Record
from runner.core.structured import StructuredOutput
from runner.core.templates import fill_turns, has_fields, media_parts, substitute


def build_chat_body(
    model: str, prompt: str, params: dict[str, Any], url: str, request_id: str | None
) -> dict[str, Any]:
    """The body as a dict (the reference the template is tested against)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": prompt},
                ],
            }
        ],
    }
    body.update(params)
    if request_id is not None:
        body["request_id"] = request_id
    return body


class ChatBodyTemplate:
    """``render(url, request_id)`` -> JSON bytes of the chat body for one image URL."""

    __slots__ = ("_head", "_tail", "_tail_rid")

    def __init__(self, model: str, prompt: str, params: dict[str, Any]):
        marker = "\x00URL\x00"
        full = orjson.dumps(build_chat_body(model, prompt, params, marker, None))
        head, tail = full.split(orjson.dumps(marker), 1)
        self._head = head
        self._tail = tail  # ends with "}"
        self._tail_rid = tail[:-1] + b',"request_id":'

    @classmethod
    def for_job(cls, job: JobConfig) -> ChatBodyTemplate:
        return cls(job.model, job.prompt, job.params)

    @property
    def head(self) -> bytes:
        """The body's bytes before the URL's JSON string."""
        return self._head

    @property
    def tail(self) -> bytes:
        """The body's bytes after the URL's JSON string (no request_id)."""
        return self._tail

    def render(self, url: str, request_id: str | None = None) -> bytes:
        if request_id is None:
            return self._head + orjson.dumps(url) + self._tail
        return self._head + orjson.dumps(url) + self._tail_rid + orjson.dumps(request_id) + b"}"


class BodyBuilder:
    """The one seam engines use: ``render(item, request_id)`` -> request body bytes.

    Plain URL items take the template fast path (one splice). Richer items — several images,
    video, a per-item prompt or params, ``{field}`` templates, system / turns, batch-style
    messages, local files as base64 — are built as a dict and serialised (the slow path).
    ``finish_record(record, item)`` adds what the job asks of each record (meta, parsed JSON);
    engines call it on every record they write for an item.
    """

    __slots__ = ("_fast", "_read", "_structured", "_templated", "_turns", "job", "template")

    def __init__(self, job: JobConfig, read_media: ReadMedia | None = None):
        """``read_media`` reads ``file://`` refs (``runner.io.media.read_media``); the job's own
        turns are read with it once, here. Items' files are read by the caller and passed to
        ``render`` (the realtime engine reads them off the event loop), else with it."""
        self.job = job
        self._read = read_media
        self.template = ChatBodyTemplate.for_job(job)
        self._templated = (
            has_fields(job.prompt)
            or (job.system is not None and has_fields(job.system))
            or any(
                isinstance(t["content"], str)
                and has_fields(t["content"])
                or isinstance(t["content"], list)
                and any(p.get("type") == "text" and has_fields(p["text"]) for p in t["content"])
                for t in job.messages
            )
        )
        self._fast = job.system is None and not job.messages and not self._templated
        self._turns = encode_media(job.messages, self._media(message_refs(job.messages)))
        self._structured = StructuredOutput.for_job(job)

    @property
    def parses_output(self) -> bool:
        """The job parses or checks answers (``output.parse``, a schema): every ok record
        goes through ``finish_record``, none may be written as the answer's bytes alone."""
        return self._structured is not None

    def item_refs(self, item: Item) -> list[str]:
        """The local files the item's body needs (read them, then pass them to ``render``)."""
        if item.messages is not None:
            refs = message_refs(item.messages) + (item.images or [])[:1]
        elif item.video is not None:
            refs = [item.video]
        else:
            refs = item.images if item.images is not None else [item.url]
        return local_refs(refs)

    def _media(self, refs: list[str]) -> Media:
        wanted = local_refs(refs)
        if not wanted:
            return {}
        if self._read is None:
            raise MediaUnavailable(f"{wanted[0]}: no reader for local files was given")
        return self._read(wanted)

    def plain_template(self) -> ChatBodyTemplate | None:
        """The template ``render`` splices a plain URL item into (no images, video, messages,
        prompt or params of its own, not a local file), or None when this job has no fast path."""
        return self.template if self._fast else None

    def render(
        self, item: Item, request_id: str | None = None, media: Media | None = None
    ) -> bytes:
        if (
            self._fast
            and item.images is None
            and item.video is None
            and item.messages is None
            and item.prompt is None
            and item.params is None
            and not item.url.startswith("file://")
        ):
            return self.template.render(item.url, request_id)
        return orjson.dumps(self.build(item, request_id, media))

    def build(
        self, item: Item, request_id: str | None = None, media: Media | None = None
    ) -> dict[str, Any]:
        """The body as a dict (slow path; also the reference for tests)."""
        job = self.job
        if media is None:
            media = self._media(self.item_refs(item))
        if item.messages is not None:
            messages = encode_media(item.messages, media)
            if item.images and not any(True for _ in media_parts(messages)):
                _prepend_image(messages, item.images[0], media)
        else:
            messages = self._messages(item, media)
        body: dict[str, Any] = {"model": job.model, "messages": messages}
        body.update(job.params)
        if item.params:
            body.update(item.params)
        if request_id is not None:
            body["request_id"] = request_id
        return body

    def _messages(self, item: Item, media: Media) -> list[dict[str, Any]]:
        job = self.job
        fields = (
            item_fields(item) if self._templated or (item.prompt and "{" in item.prompt) else {}
        )
        messages: list[dict[str, Any]] = []
        if job.system is not None:
            messages.append({"role": "system", "content": substitute(job.system, fields)})
        if self._turns:
            messages.extend(fill_turns(self._turns, fields) if self._templated else self._turns)
        content: list[dict[str, Any]] = []
        if item.video is not None:
            content.append(
                {"type": "video_url", "video_url": {"url": media_url(item.video, media)}}
            )
        else:
            for ref in item.images if item.images is not None else [item.url]:
                content.append({"type": "image_url", "image_url": {"url": media_url(ref, media)}})
        prompt = item.prompt if item.prompt is not None else job.prompt
        if prompt:
            content.append({"type": "text", "text": substitute(prompt, fields)})
        messages.append({"role": "user", "content": content})
        return messages

    def finish_record(self, record: Record, item: Item | None = None) -> Record:
        """Per-job additions to a record: the item's meta, parsed structured output.

        The batch path collects answers long after the items were read; it may pass
        ``item=None`` (no meta) and still gets ``output.parse`` / schema applied.
        """
        if item is not None and item.meta is not None:
            record["meta"] = item.meta
        if self._structured is not None and record.get("status") == "ok":
            self._structured.apply(record)
        return record


def item_fields(item: Item) -> dict[str, Any]:
    """What ``{name}`` may refer to: url, key, id, line_no, prompt, meta keys, CSV columns."""
    fields: dict[str, Any] = {
        "url": item.url,
        "key": item.key,
        "id": item.id or item.key,
        "line_no": item.line_no,
    }
    if item.prompt is not None:
        fields["prompt"] = item.prompt
    if item.meta:
        for k, v in item.meta.items():
            fields[k] = v
            fields[f"meta.{k}"] = v
    if item.fields:
        fields.update(item.fields)
    return fields


class MediaUnavailable(Exception):
    """A local file checked at plan time cannot be read as checked when its request is built."""


Media = Mapping[str, str]  # file:// ref -> raw base64 of the file (read by runner.io.media)
ReadMedia = Callable[[Iterable[str]], dict[str, str]]


def local_refs(refs: Iterable[str]) -> list[str]:
    """The ``file://`` refs among ``refs`` (what must be read before a body is built)."""
    return [ref for ref in refs if isinstance(ref, str) and ref.startswith("file://")]


def media_url(ref: str, media: Media) -> str:
    """file:///abs -> raw base64 of the file (read beforehand); data: URL -> raw base64."""
    if ref.startswith("file://"):
        try:
            return media[ref]
        except KeyError:
            raise MediaUnavailable(
                f"{ref}: the local file was not read before the request"
            ) from None
    if ref.startswith("data:") and "base64," in ref[:100]:
        return ref.split("base64,", 1)[1]
    return ref


def message_refs(messages: list[dict[str, Any]]) -> list[str]:
    """Every media URL in ``messages`` (image_url and video_url parts)."""
    return [inner["url"] for _, inner in media_parts(messages) if isinstance(inner.get("url"), str)]


def encode_media(messages: list[dict[str, Any]], media: Media) -> list[dict[str, Any]]:
    """A copy of ``messages`` with local media as base64 (raw, as the SDKs send it)."""
    out: list[dict[str, Any]] = orjson.loads(orjson.dumps(messages))
    for _, inner in media_parts(out):
        if isinstance(inner.get("url"), str):
            inner["url"] = media_url(inner["url"], media)
    return out


def _prepend_image(messages: list[dict[str, Any]], ref: str, media: Media) -> None:
    """Batch-style line whose messages carry no image: put ``image`` into the last user turn."""
    part = {"type": "image_url", "image_url": {"url": media_url(ref, media)}}
    for msg in reversed(messages):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, str):
                msg["content"] = [part, {"type": "text", "text": content}]
            elif isinstance(content, list):
                content.insert(0, part)
            return


def batch_line(custom_id: str, body: bytes, endpoint: str = "/v4/chat/completions") -> bytes:
    """One line of a batch input file, with the pre-rendered body spliced in."""
    return (
        b'{"custom_id":'
        + orjson.dumps(custom_id)
        + b',"method":"POST","url":'
        + orjson.dumps(endpoint)
        + b',"body":'
        + body
        + b"}\n"
    )


def new_run_id() -> str:
    """A short random tag per process, so request_ids never repeat across runs (code 1231)."""
    return os.urandom(3).hex()


def request_id(key_hash: int, run_id: str, attempt: int) -> str:
    """Derived from the item key and the attempt number; fresh for every attempt."""
    return f"glmrun-{key_hash:016x}-{run_id}-a{attempt}"
