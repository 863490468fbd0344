"""A line recorded as ``invalid_input`` was never sent: once the config makes it valid, a rerun
sends it; while it stays invalid, reruns add no second record. status and export agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from runner.cli.main import main
from runner.io.keyindex import index_path
from tests.support.configs import ENV, make_urls, output_of, write_batch_config, write_config
from tests.support.records import latest, read_records

URLS = make_urls(3)
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c49444154789c63f8cfc0000003010100c9fe92ef0000000049454e44ae426082"
)


def invoke(*args: str) -> Result:
    return CliRunner(env=ENV).invoke(main, list(args), catch_exceptions=False)


def status_json(cfg: Path) -> dict[str, int]:
    job: dict[str, int] = json.loads(invoke("status", str(cfg), "--json").stdout.splitlines()[0])
    return job


def test_lines_invalid_by_config_are_sent_once_the_config_is_fixed(tmp_path: Path) -> None:
    """``input_format: jsonl`` on a plain URL list records 3 invalid lines; the same config run
    again adds nothing; fixed (text), status counts them pending, the run sends them, export
    and status show the ok records."""
    cfg = write_config(tmp_path, URLS, job={"input_format": "jsonl"})
    out = output_of(tmp_path)
    first = invoke(str(cfg))
    assert first.exit_code == 1
    assert "  requests 0 · via realtime · 0." in first.stdout  # no items/s: nothing was sent
    assert "items/s" not in first.stdout
    assert [r["error"]["code"] for r in read_records(out)] == ["invalid_input"] * 3
    for _ in range(2):  # unchanged config: still invalid, nothing new written
        again = invoke(str(cfg))
        assert again.exit_code == 0 and "3 done (3 with permanent errors" in again.stdout
        assert len(read_records(out)) == 3
    assert index_path(out).exists()  # the reruns read the persistent index
    job = status_json(cfg)
    assert (job["errors"], job["pending"], job["finished"]) == (3, 0, True)

    fixed = write_config(tmp_path, URLS, job={"input_format": "text"})
    job = status_json(fixed)
    assert (job["ok"], job["errors"], job["pending"]) == (0, 0, 3)
    assert "t: no error records" in invoke("status", str(fixed), "--errors").stdout
    assert "3 pending, 0 done" in invoke(str(fixed), "--dry-run").stdout
    result = invoke(str(fixed))
    assert result.exit_code == 0, result.stdout
    assert "ok 3, errors 0" in result.stdout
    assert {u: r["status"] for u, r in latest(read_records(out)).items()} == dict.fromkeys(
        URLS, "ok"
    )
    assert len(read_records(out)) == 6
    job = status_json(fixed)
    assert (job["ok"], job["errors"], job["pending"]) == (3, 0, 0)
    exported = invoke("export", str(fixed), "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["status"] for line in exported] == ["ok"] * 3
    assert invoke(str(fixed)).stdout.startswith("t: nothing to do")


def test_a_local_file_refused_then_allowed_is_sent(tmp_path: Path) -> None:
    """A local image outside allowed_dirs is recorded once; its folder allowed but the file
    missing, status --errors gives today's reason and nothing is written; once the file is
    there, the run sends it."""
    lines = [*URLS, "./imgs/a.png"]
    cfg = write_config(tmp_path, lines, job={"model": "glm-4v-plus"})
    out = output_of(tmp_path)
    assert invoke(str(cfg), "-q").exit_code == 1
    (refused,) = [r for r in read_records(out) if r["status"] == "error"]
    assert "local files are not allowed" in refused["error"]["message"]
    (tmp_path / "imgs").mkdir()
    allowed = {"local_files": {"allowed_dirs": ["imgs"]}, "job": {"model": "glm-4v-plus"}}
    write_config(tmp_path, lines, **allowed)
    assert invoke(str(cfg), "-q").exit_code == 0
    assert len(read_records(out)) == 4
    errors = invoke("status", str(cfg), "--errors").stdout
    assert "line 4: ./imgs/a.png — ./imgs/a.png: no such file" in errors
    assert "(never sent; a run sends the line once it is valid)" in errors
    (tmp_path / "imgs" / "a.png").write_bytes(PNG)
    assert invoke(str(cfg), "-q").exit_code == 0
    final = latest(read_records(out))
    assert final["./imgs/a.png"]["status"] == "ok" and len(read_records(out)) == 5


@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_a_line_still_invalid_is_recorded_once(tmp_path: Path, mode: str) -> None:
    """On either path, a bad line (a mailto: in a URL list) gets one record over three runs,
    and a URL added meanwhile is still sent."""
    factory = write_config if mode == "realtime" else write_batch_config
    lines = [*URLS, "mailto:someone@example.com"]
    cfg = factory(tmp_path, lines, job={"mode": mode})
    out = tmp_path / ("out/t.jsonl" if mode == "realtime" else "out/results.jsonl")
    assert invoke(str(cfg), "-q").exit_code == 1
    factory(tmp_path, [*lines, "https://img.example.test/new.jpg"], job={"mode": mode})
    assert invoke(str(cfg), "-q").exit_code == 0
    assert invoke(str(cfg), "-q").exit_code == 0
    records = read_records(out)
    invalid = [r for r in records if r["status"] == "error"]
    assert [r["error"]["code"] for r in invalid] == ["invalid_input"]
    assert sorted(r["url"] for r in records if r["status"] == "ok") == sorted(
        [*URLS, "https://img.example.test/new.jpg"]
    )


def test_a_line_fixed_by_hand_leaves_no_error_in_status(tmp_path: Path) -> None:
    """A JSONL line with an unknown field is recorded invalid under its text; fixed by hand
    it is another key, sent by the next run, and status --errors no longer lists the old one
    (status counts the input's lines: 2 ok, no errors)."""
    bad = '{"url": "https://img.example.test/a.jpg", "name": "x"}\n'
    good = '{"url": "https://img.example.test/b.jpg"}\n'
    cfg = write_config(tmp_path, input_name="items.jsonl", input_bytes=(bad + good).encode())
    assert invoke(str(cfg), "-q").exit_code == 1
    assert "invalid_input ×1" in invoke("status", str(cfg), "--errors").stdout
    fixed = '{"url": "https://img.example.test/a.jpg", "meta": {"name": "x"}}\n'
    write_config(tmp_path, input_name="items.jsonl", input_bytes=(fixed + good).encode())
    assert invoke(str(cfg), "-q").exit_code == 0
    job = status_json(cfg)
    assert (job["ok"], job["errors"], job["pending"]) == (2, 0, 0)
    assert "t: no error records" in invoke("status", str(cfg), "--errors").stdout
