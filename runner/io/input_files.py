"""What is wrong with an input or config file as a whole, said so a person can fix it: a name
close to the missing one, a file saved as UTF-16 (one invalid line per URL otherwise); a CSV
input's column names, for the config's check of its ``{field}``s."""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterator
from pathlib import Path

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def not_utf8(start: bytes, exc: UnicodeDecodeError | None = None) -> str:
    """Why a file is not read as UTF-8: a UTF-16 one (Windows PowerShell's ``>`` and Notepad's
    "Unicode" write it) is named as such, with the fix."""
    if start[:2] in UTF16_BOMS:
        return (
            "the file is UTF-16 (it starts with a UTF-16 byte order mark, as Windows "
            "PowerShell's > and Notepad's 'Unicode' write it); save it as UTF-8"
        )
    where = f" (byte {exc.start})" if exc is not None else ""
    return f"the file is not UTF-8{where}; save it as UTF-8"


def near_file(path: Path) -> str:
    """`` (did you mean urls.txt?)``: a file beside the missing one with a close name."""
    try:  # the first 10,000 names: an input may sit beside a folder's worth of images
        names = [p.name for p in itertools.islice(path.parent.iterdir(), 10_000)]
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def csv_delimiter(header_line: str) -> str:
    """The delimiter of a CSV file by its header line: ``,`` unless the line has none and has
    ``;`` (what Excel and LibreOffice write where the decimal mark is a comma) or a tab."""
    if "," not in header_line:
        for delimiter in (";", "\t"):
            if delimiter in header_line:
                return delimiter
    return ","


def csv_lines(text: Iterator[str]) -> tuple[Iterator[str], str]:
    """The lines of a CSV text, its header line put back, and the delimiter that line tells."""
    header_line = next(text, "")
    return itertools.chain([header_line], text), csv_delimiter(header_line)


def csv_header(path: Path) -> list[str] | None:
    """The column names of CSV input ``path``, or None when it cannot be read (the run's own
    check of the input says why)."""
    import csv  # CSV inputs only

    try:
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as text:
            lines, delimiter = csv_lines(text)
            return next(csv.reader(lines, delimiter=delimiter), [])
    except (OSError, csv.Error):
        return None
