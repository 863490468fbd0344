"""glmrun export: latest record per key, CSV and JSONL, columns, streamed from a snapshot of the
file."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from runner.io.export import export_records, latest_lines
from tests.support.configs import write_surface_config

RECORDS = [
    {
        "url": "https://e.org/a.jpg",
        "status": "error",
        "error": {"code": "http_500", "message": "x", "retryable": True},
        "via": "realtime",
    },
    {
        "url": "https://e.org/b.jpg",
        "status": "ok",
        "content": "b, with a comma\nand a newline",
        "usage": {"prompt_tokens": 10, "completion_tokens": 2},
    },
    {
        "url": "https://e.org/a.jpg",
        "status": "ok",
        "content": "a",
        "usage": {"prompt_tokens": 11, "completion_tokens": 3},
    },
    {
        "url": "https://e.org/c.jpg",
        "key": "item-c",
        "status": "ok",
        "content": "c",
        "meta": {"shop": "s1"},
        "parsed": {"n": 1},
    },
]


def write_output(path: Path, torn: bool = True) -> None:
    data = b"".join(orjson.dumps(r) + b"\n" for r in RECORDS) + b"not json\n"
    path.write_bytes(data + (b'{"url": "https://e.org/torn' if torn else b""))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "runner", "export", *args],
        capture_output=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )


def test_latest_only_keeps_the_last_line_per_key_in_file_order(tmp_path: Path) -> None:
    """The superseded error for a.jpg is dropped; corrupt and torn lines are skipped; lines are
    copied as written."""
    src = tmp_path / "out.jsonl"
    write_output(src)
    buf = io.BytesIO()
    n = export_records(src, buf, fmt="jsonl")
    lines = buf.getvalue().splitlines()
    assert n == 3 and [orjson.loads(x)["content"] for x in lines] == [
        RECORDS[1]["content"],
        "a",
        "c",
    ]
    assert lines[0] == orjson.dumps(RECORDS[1])


def test_all_records_keeps_every_record_line(tmp_path: Path) -> None:
    """--all-records writes every record line (not the corrupt or torn ones)."""
    src = tmp_path / "out.jsonl"
    write_output(src)
    buf = io.BytesIO()
    assert export_records(src, buf, fmt="jsonl", latest_only=False) == 4


def test_csv_with_default_and_dotted_columns(tmp_path: Path) -> None:
    """CSV quotes commas and newlines; dotted columns reach into usage, meta and parsed; key falls
    back to url."""
    src = tmp_path / "out.jsonl"
    write_output(src)
    buf = io.BytesIO()
    export_records(
        src,
        buf,
        fmt="csv",
        columns=["key", "status", "content", "usage.prompt_tokens", "meta.shop", "parsed"],
    )
    rows = list(csv.reader(io.StringIO(buf.getvalue().decode())))
    assert rows[0] == ["key", "status", "content", "usage.prompt_tokens", "meta.shop", "parsed"]
    assert rows[1] == ["https://e.org/b.jpg", "ok", "b, with a comma\nand a newline", "10", "", ""]
    assert rows[3] == ["item-c", "ok", "c", "", "s1", '{"n":1}']


def test_jsonl_with_columns_projects_fields(tmp_path: Path) -> None:
    """JSONL with --columns writes objects with just those fields."""
    src = tmp_path / "out.jsonl"
    write_output(src)
    buf = io.BytesIO()
    export_records(src, buf, fmt="jsonl", columns=["key", "error.code"], latest_only=False)
    assert orjson.loads(buf.getvalue().splitlines()[0]) == {
        "key": "https://e.org/a.jpg",
        "error.code": "http_500",
    }


def test_lines_appended_after_the_snapshot_are_ignored(tmp_path: Path) -> None:
    """Both passes read only the bytes present at the start, so a concurrent appender cannot confuse
    them."""
    src = tmp_path / "out.jsonl"
    write_output(src, torn=False)
    size = src.stat().st_size
    with src.open("ab") as f:
        f.write(orjson.dumps({"url": "https://e.org/z.jpg", "status": "ok"}) + b"\n")
    assert len(latest_lines(src, size)) == 5  # 4 records + the corrupt line, not the appended one


def test_cli_export_to_file_and_stdout(tmp_path: Path) -> None:
    """glmrun export CONFIG --format csv -o FILE writes atomically; without -o it writes to
    stdout."""
    cfg = write_surface_config(tmp_path)
    write_output(tmp_path / "out.jsonl")
    done = cli(str(cfg), "--format", "csv", "--latest-only", "-o", "x.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = list(
        csv.DictReader(io.StringIO((tmp_path / "x.csv").read_text(encoding="utf-8"), newline=""))
    )
    assert [r["key"] for r in rows] == ["https://e.org/b.jpg", "https://e.org/a.jpg", "item-c"]
    assert rows[1]["usage.completion_tokens"] == "3"
    done = cli(str(cfg), "--columns", "key,status", cwd=tmp_path)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 3


def test_cli_export_says_the_format_when_the_file_name_says_another(tmp_path: Path) -> None:
    """``-o results.csv`` without ``--format csv`` writes JSONL (the default): the line that
    confirms the export says so, instead of leaving a JSONL file named .csv unremarked."""
    cfg = write_surface_config(tmp_path)
    write_output(tmp_path / "out.jsonl")
    done = cli(str(cfg), "-o", "results.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode() == (
        "t: 3 records -> results.csv (as JSONL, the default format: --format csv writes CSV)\n"
    )
    assert (tmp_path / "results.csv").read_text().startswith("{")
    done = cli(str(cfg), "--format", "csv", "-o", "results.csv", cwd=tmp_path)
    assert done.stderr.decode() == "t: 3 records -> results.csv\n"


@pytest.mark.parametrize(
    ("args", "words"),
    [(["--job", "nope"], "no job named"), ([], "no output file yet")],
    ids=["unknown-job", "no-output"],
)
def test_cli_export_errors_exit_2(tmp_path: Path, args: list[str], words: str) -> None:
    """An unknown job or a missing output file is one line on stderr and exit 2."""
    cfg = write_surface_config(tmp_path)
    done = cli(str(cfg), *args, cwd=tmp_path)
    assert done.returncode == 2 and words in done.stderr.decode()
