"""A URL list cannot make glmrun upload a file outside local_files.allowed_dirs."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.app.orchestrate import RunOptions
from runner.app.orchestrate import run as run_app
from runner.config import load_config
from tests.support.configs import write_minimal_config
from tests.support.records import latest, read_records
from tests.support.sim import MakeSim

SECRET = b"\x89PNG TOP-SECRET-canary-bytes"
ALLOWED = b"\x89PNG allowed image bytes"
# Job l on glm-4v-plus (it takes base64) reads urls.txt into out.jsonl; no folder is allowed.
write_config = write_minimal_config.derive(job={"name": "l", "model": "glm-4v-plus", "prompt": "p"})


async def test_only_files_under_allowed_dirs_are_read_and_sent(
    tmp_path: Path, start_sim: MakeSim
) -> None:
    """/etc/passwd, traversal, symlinks out of the folder, file:// tricks and a bare path
    are refused with invalid_input records; only the allowed image reaches the API."""
    allowed = tmp_path / "images"
    allowed.mkdir()
    (allowed / "ok.png").write_bytes(ALLOWED)
    secret_dir = tmp_path / "private"
    secret_dir.mkdir()
    (secret_dir / "secret.png").write_bytes(SECRET)
    (allowed / "link.png").symlink_to(secret_dir / "secret.png")
    (allowed / "dirlink").symlink_to(secret_dir)
    lines = {
        "allowed": str(allowed / "ok.png"),
        "etc-passwd": "/etc/passwd",
        "file-etc-passwd": "file:///etc/passwd",
        "file-localhost": "file://localhost/etc/passwd",
        "traversal": str(allowed) + "/../private/secret.png",
        "relative-traversal": "../private/secret.png",
        "encoded-traversal": "file://" + str(allowed) + "/..%2fprivate%2fsecret.png",
        "symlink-file": str(allowed / "link.png"),
        "symlink-dir": str(allowed / "dirlink" / "secret.png"),
        "outside-direct": str(secret_dir / "secret.png"),
        "proc-self": "/proc/self/environ",
        "missing-outside": "/nonexistent/x.png",
    }
    (tmp_path / "in").mkdir()
    sim = await start_sim(latency_mean_s=0.0)
    config_path = write_config(
        tmp_path,
        lines.values(),
        input_name="in/urls.txt",
        api={"base_url": sim.base_url},
        local_files={"allowed_dirs": ["images"]},
    )
    config = load_config(config_path, environ={"ZHIPUAI_API_KEY": "k"})
    await run_app(config, RunOptions(tty=False), out=io.StringIO())
    sent = set(sim.stats.per_url)
    records = latest(read_records(tmp_path / "out.jsonl"))
    assert records[lines["allowed"]]["status"] == "ok"
    for name, line in lines.items():
        if name == "allowed":
            continue
        record = records[line]
        assert record["status"] == "error", name
        assert record["error"]["code"] == "invalid_input", name
        assert "not under local_files.allowed_dirs" in record["error"]["message"], (name, record)
    secret_b64 = base64.b64encode(SECRET).decode()
    assert not any(secret_b64 in u or "passwd" in u for u in sent)
    assert any(base64.b64encode(ALLOWED).decode() in u for u in sent)
    assert b"TOP-SECRET" not in (tmp_path / "out.jsonl").read_bytes()


async def test_without_allowed_dirs_no_local_file_is_read(tmp_path: Path) -> None:
    """With no local_files.allowed_dirs (the default), every local reference is refused."""
    (tmp_path / "ok.png").write_bytes(ALLOWED)
    urls = [str(tmp_path / "ok.png"), f"file://{tmp_path / 'ok.png'}", "./ok.png"]
    config = load_config(write_config(tmp_path, urls), environ={})
    await run_app(config, RunOptions(tty=False), out=io.StringIO())
    records = read_records(tmp_path / "out.jsonl")
    assert len(records) == 3
    assert all(
        r["error"]["code"] == "invalid_input"
        and "local files are not allowed" in r["error"]["message"]
        for r in records
    )


def _vanish_after_plan(monkeypatch, victim: Path, *, swap_to: Path | None = None) -> None:  # type: ignore[no-untyped-def]
    """Between the plan's check and the send, delete ``victim`` (or replace it by a link to
    ``swap_to``): after a counted plan's pass, or after a realtime run's reader (which checks
    items as it reads: runner.app.stream) has read every item."""
    from runner.app import orchestrate as app
    from runner.app.stream import Stream

    def vanish(items: list) -> Iterator:  # type: ignore[type-arg]
        victim.unlink()
        if swap_to is not None:
            victim.symlink_to(swap_to)
        return iter(items)

    original, read = app.pending_items, Stream.pairs
    monkeypatch.setattr(app, "pending_items", lambda *a, **k: vanish(list(original(*a, **k))))
    monkeypatch.setattr(Stream, "pairs", lambda self, stats: vanish(list(read(self, stats))))


def _local_job(tmp_path: Path, mode: str) -> tuple[Path, Path]:
    allowed = tmp_path / "images"
    allowed.mkdir()
    (allowed / "a.png").write_bytes(ALLOWED)
    (allowed / "b.png").write_bytes(ALLOWED + b"b")
    config_path = write_config(
        tmp_path,
        [str(allowed / "a.png"), str(allowed / "b.png"), "https://e.org/c.jpg"],
        simulator={"latency_mean_s": 0.0},
        batch={"poll_interval_s": 0},
        local_files={"allowed_dirs": ["images"]},
        job={"name": "v", "mode": mode},
    )
    return config_path, allowed


async def _run_and_read(config_path: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    config = load_config(config_path, environ={})
    result = await run_app(config, RunOptions(tty=False), out=io.StringIO())
    assert result.exit_code == 1
    return latest(read_records(config_path.parent / "out.jsonl"))


@pytest.mark.parametrize("mode", ["realtime", "batch"])
async def test_a_local_file_deleted_after_the_plan_is_an_error_record_not_a_crash(
    tmp_path: Path, monkeypatch, mode: str
) -> None:  # type: ignore[no-untyped-def]
    """A file that vanishes between plan and send gets a retryable local_file record; the rest still
    run."""
    config_path, allowed = _local_job(tmp_path, mode)
    _vanish_after_plan(monkeypatch, allowed / "a.png")
    records = await _run_and_read(config_path)
    bad = records[str(allowed / "a.png")]
    assert (
        bad["status"] == "error"
        and bad["error"]["code"] == "local_file"
        and bad["error"]["retryable"] is True
    )
    assert records[str(allowed / "b.png")]["status"] == "ok"
    assert records["https://e.org/c.jpg"]["status"] == "ok"


async def test_a_file_swapped_for_a_link_after_the_plan_is_refused(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A checked file replaced by a symlink to a secret before the send is refused, never
    uploaded."""
    config_path, allowed = _local_job(tmp_path, "realtime")
    secret = tmp_path / "secret.png"
    secret.write_bytes(SECRET)
    _vanish_after_plan(monkeypatch, allowed / "a.png", swap_to=secret)
    records = await _run_and_read(config_path)
    bad = records[str(allowed / "a.png")]
    assert bad["error"]["code"] == "local_file" and "link" in bad["error"]["message"]
    assert base64.b64encode(SECRET).decode() not in (tmp_path / "out.jsonl").read_text()
