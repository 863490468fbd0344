"""Bugs found by the adversarial review, each pinned by a test that failed before its fix."""

from __future__ import annotations

import random

from runner.core.retry import backoff_s


def test_backoff_after_a_thousand_attempts_is_capped_not_an_overflow() -> None:
    """A retry count past 1024 (a big max_attempts, or batch call errors piling up across runs)
    waits at most max_delay_s instead of crashing."""
    delay = backoff_s(5000, base_s=1.0, cap_s=60.0, rng=random.Random(1))
    assert 0.0 <= delay <= 60.0
    assert backoff_s(5000, base_s=1.0, cap_s=60.0, rng=random.Random(1), throttled=True) >= 0.5


def test_export_while_a_new_run_repairs_the_torn_tail_and_appends(tmp_path, monkeypatch) -> None:
    """A run that cuts the torn last line and appends short records between export's two passes does
    not crash the export."""
    import io

    import orjson

    from runner.io import export
    from runner.io.store import repair_torn_tail

    out = tmp_path / "out.jsonl"
    whole = b"".join(
        orjson.dumps({"url": f"https://x/{i}", "status": "ok"}) + b"\n" for i in range(3)
    )
    out.write_bytes(whole + b'{"url":"https://x/torn","status":"ok","content":"' + b"z" * 200)
    first_pass = export.latest_lines

    def then_a_run_starts(path, size):
        winners = first_pass(path, size)
        repair_torn_tail(path)
        with open(path, "ab") as handle:
            handle.write(orjson.dumps({"url": "https://x/new", "status": "ok"}) + b"\n")
        return winners

    monkeypatch.setattr(export, "latest_lines", then_a_run_starts)
    sink = io.BytesIO()
    assert export.export_records(out, sink) == 3
    assert [orjson.loads(line)["url"] for line in sink.getvalue().splitlines()] == [
        f"https://x/{i}" for i in range(3)
    ]


def test_two_jobs_whose_outputs_are_the_same_file_spelled_differently_are_refused(tmp_path) -> None:
    """`out.jsonl` and `./sub/../out.jsonl` are one file: the second job would skip everything the
    first wrote, so the config is refused."""
    import pytest

    from runner.config import load_config
    from runner.errors import ConfigError

    (tmp_path / "urls.txt").write_text("https://x/1.jpg\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "api: {base_url: simulator}\njobs:\n"
        "  - {name: a, input: urls.txt, output: out.jsonl, model: glm-4v-flash, prompt: one}\n"
        "  - {name: b, input: urls.txt, output: ./sub/../out.jsonl,"
        " model: glm-4v-flash, prompt: two}\n"
    )
    with pytest.raises(ConfigError, match=r"jobs\[1\]\.output.*two jobs write to"):
        load_config(cfg, environ={})


def test_a_jsonl_local_path_with_a_nul_byte_is_an_invalid_line_not_a_crash(tmp_path) -> None:
    """`{"url": "./imgs/a\\u0000.png"}` with local files allowed becomes an invalid line instead of
    a ValueError traceback."""
    from runner.config import load_config
    from runner.core.items import InvalidLine
    from runner.io.prepare import read_job_items

    (tmp_path / "imgs").mkdir()
    (tmp_path / "in.jsonl").write_text(
        '{"url":"./imgs/a\\u0000.png"}\n{"images":["./imgs/b\\u0000.png"]}\n{"url":"https://x/ok.jpg"}\n'
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "api: {base_url: simulator}\nlocal_files: {allowed_dirs: [imgs]}\njobs:\n"
        "  - {name: j, input: in.jsonl, output: out.jsonl, model: glm-4v-plus-0111, prompt: hi}\n"
    )
    config = load_config(cfg, environ={})
    items = list(read_job_items(config.jobs[0], config))
    assert [type(i).__name__ for i in items] == ["InvalidLine", "InvalidLine", "Item"]
    assert all("NUL" in i.reason for i in items if isinstance(i, InvalidLine))


def test_a_png_cut_inside_its_header_is_sent_unchecked_not_a_crash(tmp_path) -> None:
    """A local .png cut off after its IHDR tag (fewer than 24 bytes) leaves its size unchecked
    instead of raising struct.error."""
    from runner.io.prepare import image_size

    png = tmp_path / "cut.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00")
    assert image_size(png) is None


def test_export_to_a_file_in_a_missing_folder_is_a_clear_error(tmp_path) -> None:
    """`glmrun export -o nodir/x.csv` ends with a one-line OutputError naming the path, not a
    FileNotFoundError traceback."""
    import io

    import pytest

    from runner.errors import OutputError
    from runner.io.export import export_to

    source = tmp_path / "out.jsonl"
    source.write_bytes(b'{"url":"https://x/1","status":"ok"}\n')
    with pytest.raises(OutputError, match="nodir"):
        export_to(source, tmp_path / "nodir" / "x.csv", io.BytesIO(), fmt="csv")
    assert not (tmp_path / "nodir").exists()


def test_an_output_that_is_a_folder_is_a_clear_error_for_run_and_status(tmp_path) -> None:
    """`output: results` naming an existing folder gives a one-line OutputError, not an
    IsADirectoryError traceback."""
    import pytest

    from runner.errors import OutputError
    from runner.io.store import load_resume_index

    (tmp_path / "results").mkdir()
    with pytest.raises(OutputError, match="results"):
        load_resume_index(tmp_path / "results")


def test_a_batch_state_path_blocked_by_a_file_is_a_clear_error_for_status(tmp_path) -> None:
    """A file where the job's batch work folder should be gives `glmrun status` a one-line
    OutputError, not a traceback."""
    import pytest

    from runner.errors import OutputError
    from runner.io.batch_state import load_state

    (tmp_path / "j").write_text("in the way")
    with pytest.raises(OutputError, match="state"):
        load_state(tmp_path / "j" / "state.json")


def test_a_whole_last_record_without_its_newline_is_kept_not_cut(tmp_path) -> None:
    """A last line that is a complete record missing only its newline (an editor, a kill between
    record and newline) counts as done and survives the next append."""
    from runner.core.keys import key_hash
    from runner.io.store import ResultWriter, load_resume_index
    from tests.support.records import read_records

    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"url":"https://x/1","status":"ok"}\n{"url":"https://x/2","status":"ok"}')
    assert load_resume_index(out).is_done(key_hash("https://x/2"))
    writer = ResultWriter(out)
    writer.append({"url": "https://x/3", "status": "ok"})
    writer.close()
    assert [r["url"] for r in read_records(out)] == [f"https://x/{i}" for i in (1, 2, 3)]
