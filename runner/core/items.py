"""Pure: the unit of work an input line becomes, or the reason it could not become one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Item:
    """One unit of work; ``key`` is what the output is keyed by (the URL for plain lists).

    The optional fields stay None for a plain URL line, which is what keeps the render fast
    path (``BodyBuilder``) to one template splice.
    """

    key: str
    url: str
    line_no: int
    prompt: str | None = None
    images: list[str] | None = None  # every image of the item (url first, when given)
    video: str | None = None
    params: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None  # batch-style: the conversation as given
    fields: dict[str, Any] | None = None  # extra {field} values (CSV columns)
    id: str | None = None

    @property
    def plain(self) -> bool:
        return (
            self.prompt is None
            and self.images is None
            and self.video is None
            and self.params is None
            and self.messages is None
            and self.fields is None
            and self.id is None
        )


@dataclass(slots=True)
class InvalidLine:
    """An input line that cannot become a request (an ``invalid_input`` record): its key, line
    number and why."""

    key: str
    line_no: int
    reason: str
