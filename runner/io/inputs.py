"""Stream items from an input file, never the whole file in memory.

Formats (``input_format``, else by extension): text (one URL or local path per line), JSONL
(``{url, prompt, id, images, video, params, meta}`` per line, or the batch-style
``{messages, image}``), CSV (a named URL column; every column is a template field).

Undecodable bytes, NUL bytes, a BOM, CRLF line ends, non-http schemes and absurdly long lines
never stop the reader: each bad line becomes an ``InvalidLine`` that the engine records as an
``invalid_input`` error, and the run goes on.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from runner.core.items import InvalidLine, Item
from runner.core.resume import DONE_AGAIN  # the pre-filter's code 5
from runner.core.resume import INVALID as RECORDED_INVALID  # the pre-filter's code 4
from runner.core.urls import url_problem
from runner.errors import ConfigError
from runner.io.input_files import UTF16_BOMS, csv_lines, near_file, not_utf8

_KEY_CHARS = 2_000
_STRIP = b" \t\r\n\x0b\x0c"


def detect_format(path: Path, input_format: str = "auto") -> str:
    if input_format != "auto":
        return input_format
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "text"


# The resume pre-filter: one code per line of a batch (0 keep, 1 done ok, 2 done as an error,
# 3 another shard's: skipped but not done, so it ends a finished prefix like 0, 4 recorded as
# invalid_input: parsed again, see _recheck_invalid, 5 a line whose key an earlier line had,
# skipped and counted as a duplicate).
SkipLine = Callable[[list[bytes]], list[int]]
_BATCH_BYTES = 256 << 10


class PrefixHash(Protocol):
    def hashed(self) -> tuple[int, Any] | None: ...


@dataclass
class TextPrefix:
    """How far a text input is made of lines that need nothing: blank, comments and lines the
    pre-filter skipped as done (``done``, of them ``failed``; ``duplicates``: those whose key
    an earlier line had). Reading starts at ``offset``
    (just after a newline) as line ``line_no + 1``; the prefix grows until the first line
    that is read as an item."""

    offset: int = 0
    line_no: int = 0
    done: int = 0
    failed: int = 0
    duplicates: int = 0
    growing: bool = True
    # a finished key of the prefix is listed again after it (``runner.core.resume.DoneOnce``):
    # a plan reading from here would count it as done twice, so the prefix is not noted
    straddled: bool = False
    # runner.io.plancache's check of the noted part: the note it writes next extends that
    # hash by the bytes after it (and is not written if the check fails)
    check: PrefixHash | None = field(default=None, repr=False, compare=False)


def read_items(
    path: Path,
    input_format: str = "auto",
    csv_url_column: str = "url",
    skip: SkipLine | None = None,
    prefix: TextPrefix | None = None,
    *,
    csv_id_column: str | None = None,
) -> Iterator[Item | InvalidLine]:
    """Yield an Item or an InvalidLine per item of ``path`` in the given (or detected) format.

    ``skip`` (text inputs only) sees each stripped line first; a line it accepts is not parsed
    at all (the resume pre-filter: a finished URL costs one hash instead of an Item).
    ``prefix`` (text inputs only) says where to start and is updated as the reader goes.
    """
    fmt = detect_format(path, input_format)
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt == "csv":
        return _read_csv(path, csv_url_column, csv_id_column)
    return _read_text(path, skip, prefix)


def _open(path: Path) -> Any:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        hint = near_file(path) or " (a job's input is relative to the config file's folder)"
        raise ConfigError(f"{path}: input file not found{hint}") from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path}: the input is a folder; name a file (URLs one per line, .jsonl or .csv)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read input: {exc.strerror}") from None
    start = handle.peek(2)[:2]
    if start in UTF16_BOMS:  # every line would be an invalid_input record
        handle.close()
        raise ConfigError(f"{path}: {not_utf8(start)}")
    return handle


def check_input(
    path: Path,
    job: str | None = None,
    input_format: str = "auto",
    csv_url_column: str | None = None,
    csv_id_column: str | None = None,
) -> None:
    """Raise the reader's ``ConfigError`` now if ``path`` cannot be opened (or, given
    ``csv_url_column``, is a CSV without that column, or without ``csv_id_column``); with
    ``job``, the message starts with the job's name (a config of several jobs: which one to
    fix)."""
    try:
        _open(path).close()
        if csv_url_column is not None and detect_format(path, input_format) == "csv":
            with contextlib.closing(_read_csv(path, csv_url_column, csv_id_column)) as rows:
                next(rows, None)
    except ConfigError as exc:
        if job is None:
            raise
        raise ConfigError(f"job {job}: {exc}") from None


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, stripped bytes) of every line that is not blank or a # comment; BOM dropped."""
    handle = _open(path)
    try:
        for line_no, raw in enumerate(handle, start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            line = raw.strip(_STRIP)
            if line and not line.startswith(b"#"):
                yield line_no, line
    finally:
        handle.close()


def _read_text(
    path: Path, skip: SkipLine | None = None, prefix: TextPrefix | None = None
) -> Iterator[Item | InvalidLine]:
    prefix = prefix if prefix is not None else TextPrefix()
    handle = _open(path)
    try:
        if prefix.offset:
            handle.seek(prefix.offset)
        line_no = prefix.line_no  # of the line before the batch
        while raws := handle.readlines(_BATCH_BYTES):  # split in C, about 6,000 URLs
            lines = [raw.strip(_STRIP) for raw in raws]
            if line_no == 0 and raws[0].startswith(b"\xef\xbb\xbf"):
                lines[0] = raws[0][3:].strip(_STRIP)
            yield from _text_batch(line_no, lines, raws, skip, prefix, handle.tell())
            line_no += len(raws)
    finally:
        handle.close()


def _text_batch(
    before: int,
    lines: list[bytes],
    raws: list[bytes],
    skip: SkipLine | None,
    prefix: TextPrefix,
    end: int,
) -> Iterator[Item | InvalidLine]:
    """Items of a batch of lines (stripped, raw; the first is line ``before + 1``) that ends
    at byte ``end``; blank and # lines dropped."""
    where: Sequence[int]
    if b"" not in lines and b"\n#" not in b"\n".join(lines) and lines[0][:1] != b"#":
        where, wanted = range(len(lines)), lines  # no blank line, no comment
    else:
        where = [i for i, line in enumerate(lines) if line and line[0] != 35]  # 35: "#"
        wanted = [lines[i] for i in where]
    codes = skip(wanted) if skip is not None and wanted else None
    again: dict[int, Item | InvalidLine] = {}
    if codes is not None and RECORDED_INVALID in codes:
        again = _recheck_invalid(codes, where, lines, before)
    if prefix.growing:
        if codes is not None and 0 not in codes and 3 not in codes and raws[-1].endswith(b"\n"):
            prefix.offset = end  # the whole batch is finished or blank
            prefix.line_no = before + len(raws)
            repeats = codes.count(DONE_AGAIN)
            prefix.failed += codes.count(2)
            prefix.done += len(codes) - repeats
            prefix.duplicates += repeats
        else:
            _grow(prefix, before, lines, raws, codes)
    if again:  # in line order: each line parsed again, then the others to do
        for j, code in enumerate(codes or ()):
            if j in again:
                yield again[j]
            elif not code:
                yield parse_line(lines[where[j]], before + where[j] + 1)
        return
    if codes is None:
        todo: Iterable[int] = where
    elif 0 not in codes:
        todo = ()
    else:
        todo = [where[j] for j, code in enumerate(codes) if not code]
    for i in todo:
        yield parse_line(lines[i], before + i + 1)


def _recheck_invalid(
    codes: list[int], where: Sequence[int], lines: list[bytes], before: int
) -> dict[int, Item | InvalidLine]:
    """Parse again each line recorded as invalid_input (``codes[j] == RECORDED_INVALID``) and
    return them by position. One whose text alone makes it invalid (not a URL, ftp:, ...) stays
    so under any config: it becomes 2, done with an error, so a finished prefix grows over it
    and the next run need not read it. One that parses as an item (an http URL made invalid by
    an earlier config or format, a local file refused at plan time) becomes 0: the plan checks
    it as a new line (sent if valid now) and the prefix ends there."""
    again: dict[int, Item | InvalidLine] = {}
    for j, code in enumerate(codes):
        if code == RECORDED_INVALID:
            item = parse_line(lines[where[j]], before + where[j] + 1)
            again[j] = item
            codes[j] = 2 if isinstance(item, InvalidLine) else 0
    return again


def _grow(
    prefix: TextPrefix,
    before: int,
    lines: list[bytes],
    raws: list[bytes],
    codes: list[int] | None,
) -> None:
    j = 0
    for i, raw in enumerate(raws):
        line = lines[i]
        code = -1  # blank or comment
        if line and not line.startswith(b"#"):
            code = codes[j] if codes is not None else 0
            j += 1
        if code in (0, 3) or not raw.endswith(b"\n"):
            prefix.growing = False
            # maybe a prefix key listed again
            if codes is not None and DONE_AGAIN in codes[max(j - 1, 0) :]:
                prefix.straddled = True
            return
        prefix.offset += len(raw)
        prefix.line_no = before + i + 1
        if code == DONE_AGAIN:
            prefix.duplicates += 1
        elif code > 0:
            prefix.done += 1
            prefix.failed += code == 2


def parse_line(line: bytes, line_no: int) -> Item | InvalidLine:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return InvalidLine(
            _key(line.decode("utf-8", "replace")), line_no, "line is not valid UTF-8"
        )
    reason = url_problem(text)
    if reason:
        if is_local_ref(text):
            return Item(text, text, line_no)  # checked against local_files at plan time
        return InvalidLine(_key(text), line_no, reason)
    return Item(text, text, line_no)


def is_local_ref(text: str) -> bool:
    """file:// URLs and plain paths that start with /, ./ or ../ (a bare name stays 'not a URL')."""
    if "\x00" in text or len(text) > 4096:
        return False
    return text.startswith(("file://", "/", "./", "../"))


def media_key(media: list[str]) -> str:
    """The first URL, plus a stable hash of the others when there are several."""
    if len(media) == 1:
        return media[0]
    rest = hashlib.sha256("\n".join(media[1:]).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{media[0]} +{len(media) - 1}:{rest}"


def _read_jsonl(path: Path) -> Iterator[Item | InvalidLine]:
    for line_no, line in _lines(path):
        yield parse_json_line(line, line_no)


def parse_json_line(line: bytes, line_no: int) -> Item | InvalidLine:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return InvalidLine(_key(line.decode("utf-8", "replace")), line_no, f"not valid JSON: {exc}")
    if not isinstance(obj, dict):
        return InvalidLine(_key(line.decode("utf-8", "replace")), line_no, "expected a JSON object")
    try:
        return item_from_obj(obj, line_no)
    except ValueError as exc:
        raw_id = obj.get("id")
        key = (
            str(raw_id)
            if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool)
            else _key(line.decode("utf-8", "replace"))
        )
        return InvalidLine(key, line_no, str(exc))


_JSONL_KEYS = {
    "url",
    "prompt",
    "id",
    "images",
    "video",
    "params",
    "meta",
    "messages",
    "image",
    "custom_id",
}


def item_from_obj(obj: dict[str, Any], line_no: int) -> Item:
    """One JSONL object -> Item; a ValueError names what is wrong with it."""
    unknown = set(obj) - _JSONL_KEYS
    if unknown:
        names = sorted(unknown)
        close = difflib.get_close_matches(names[0], sorted(_JSONL_KEYS), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if len(names) == 1 and close else ""
        raise ValueError(
            f"unknown field(s) {', '.join(names)}{hint}; expected {', '.join(sorted(_JSONL_KEYS))}"
        )
    raw_id = obj.get("id", obj.get("custom_id"))
    if raw_id is not None and (
        isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id) == ""
    ):
        raise ValueError(f"id: expected a non-empty string or integer, found {raw_id!r}")
    item_id = None if raw_id is None else str(raw_id)
    prompt = _opt_str(obj, "prompt")
    params = obj.get("params")
    if params is not None and not isinstance(params, dict):
        raise ValueError("params: expected an object")
    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError("meta: expected an object")
    if "messages" in obj:
        return _batch_style(obj, item_id, line_no, params, meta)
    if "image" in obj:
        raise ValueError("image: only with messages (batch-style lines); use url or images")
    media: list[str] = []
    url = _opt_str(obj, "url")
    if url is not None:
        media.append(url)
    images = obj.get("images")
    if images is not None:
        if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
            raise ValueError("images: expected a list of URLs or paths")
        media.extend(images)
    video = _opt_str(obj, "video")
    if video is not None and media:
        raise ValueError("images and video cannot be mixed in one request")
    if not media and video is None:
        raise ValueError("no url, images, video or messages")
    for ref in [*media, *([video] if video is not None else [])]:
        _no_spaced_url(ref)
    key = item_id if item_id is not None else (video if video is not None else media_key(media))
    return Item(
        key,
        video if video is not None else media[0],
        line_no,
        prompt=prompt,
        images=media or None,
        video=video,
        params=params,
        meta=meta,
        id=item_id,
    )


def _no_spaced_url(ref: str) -> None:
    """An http(s) URL with spaces around it reads as a local path (JSONL takes relative paths)
    and was refused as one ('does not accept base64 image data', 'not found'): say what it is."""
    bare = ref.strip()
    if bare != ref and bare[:8].lower().startswith(("http://", "https://")):
        raise ValueError(f"{ref!r}: a URL with spaces around it; remove them")


def _batch_style(
    obj: dict[str, Any], item_id: str | None, line_no: int, params: Any, meta: Any
) -> Item:
    messages = obj["messages"]
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) for m in messages)
    ):
        raise ValueError("messages: expected a non-empty list of {role, content}")
    if not any(m.get("role") == "user" for m in messages):
        raise ValueError("messages: needs at least one user message")
    image = _opt_str(obj, "image")
    if item_id is not None:
        key = item_id
    elif image is not None:
        key = image
    else:
        key = (
            "messages:"
            + hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]
        )
    return Item(
        key,
        image or "",
        line_no,
        images=[image] if image is not None else None,
        params=params,
        meta=meta,
        messages=messages,
        id=item_id,
    )


def _opt_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name}: expected a non-empty string, found {value!r}")
    return value


def _read_csv(
    path: Path, url_column: str, id_column: str | None = None
) -> Generator[Item | InvalidLine, None, None]:
    """Rows as Items keyed by their URL, or with ``id_column`` by that column's value (as a
    JSONL ``id``: two rows of one image are two items, and each record carries its key)."""
    import csv  # CSV inputs only

    handle = _open(path)
    try:
        text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="replace", newline="")
        lines, delimiter = csv_lines(text)  # the header line tells the delimiter (, ; or tab)
        reader = csv.DictReader(lines, delimiter=delimiter)
        header = reader.fieldnames or []
        if url_column not in header:
            first = next(reader, None) or {}  # the column whose first value is a URL, if one
            urls = [k for k, v in first.items() if isinstance(v, str) and url_problem(v) is None]
            fix = "set csv_url_column"
            if len(urls) == 1:
                fix += f": {urls[0]} (its first row holds a URL)"
            raise ConfigError(
                f"{path}: no column {url_column!r} in the CSV header "
                f"({', '.join(header) or 'empty'}); {fix}"
            )
        if id_column is not None and id_column not in header:
            raise ConfigError(
                f"{path}: no column {id_column!r} in the CSV header "
                f"({', '.join(header) or 'empty'}); set csv_id_column to the column that tells "
                "the rows apart, or leave it out to key each row by its URL"
            )
        for row in reader:
            line_no = reader.line_num
            value = (row.get(url_column) or "").strip()
            if not value:  # a row with other cells but no URL is said, not dropped unseen
                cells = [v for v in row.values() if isinstance(v, str)]
                if any(c.strip() for c in cells):
                    why = f"no URL in column {url_column!r}"
                    yield InvalidLine(_key(",".join(cells)), line_no, why)
                continue
            fields = {k: v for k, v in row.items() if isinstance(k, str)}
            parsed = parse_line(value.encode("utf-8"), line_no)
            if id_column is not None:
                row_id = (row.get(id_column) or "").strip()
                if not row_id:
                    why = f"no id in column {id_column!r}"
                    yield InvalidLine(_key(",".join(v or "" for v in row.values())), line_no, why)
                    continue
                if isinstance(parsed, InvalidLine):
                    parsed = InvalidLine(row_id, line_no, parsed.reason)
                else:
                    parsed.key = parsed.id = row_id
            if isinstance(parsed, Item):
                parsed.fields = fields
            yield parsed
    finally:
        handle.close()


def _key(text: str) -> str:
    """Invalid lines are keyed by their (shortened) text, so the next run skips them too."""
    return text if len(text) <= _KEY_CHARS else text[:_KEY_CHARS] + "…"
