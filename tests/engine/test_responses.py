"""Answers as the API gives them: content shapes, think/box markers, finish_reason, content_filter,
JSON output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.config import load_config
from runner.core.records import ok_record, strip_markers
from runner.core.structured import parse_json_answer
from runner.errors import ConfigError
from runner.simulator import expected_content
from tests.support.configs import write_surface_config
from tests.support.records import latest, read_records
from tests.support.runs import run_config

U = [f"https://e.org/{i}.jpg" for i in range(8)]


async def _run(
    tmp_path: Path, sim: dict[str, Any], job: dict[str, Any] | None = None, urls: list[str] = U
) -> dict[str, dict[str, Any]]:
    cfg = write_surface_config(tmp_path, urls, job=job, simulator=sim)
    await run_config(cfg)
    return latest(read_records(tmp_path / "out.jsonl"))


async def test_finish_reasons_end_as_the_issue_says(tmp_path: Path) -> None:
    """stop ok; length ok+truncated; sensitive an unretried 'sensitive' error; network_error
    retried; content_filter kept."""
    answers = {U[4]: {"finish_reason": "stop", "content_filter": [{"role": "user", "level": 3}]}}
    faults = {U[1]: ["length"], U[2]: ["sensitive"], U[3]: ["network_error"]}
    recs = await _run(tmp_path, {"url_faults": faults, "url_answers": answers})
    assert (
        recs[U[0]]["status"] == "ok"
        and recs[U[0]]["finish_reason"] == "stop"
        and "truncated" not in recs[U[0]]
    )
    assert recs[U[1]]["status"] == "ok" and recs[U[1]]["truncated"] is True
    assert recs[U[2]]["error"] == {
        "code": "sensitive",
        "message": recs[U[2]]["error"]["message"],
        "retryable": False,
    }
    assert recs[U[2]]["attempts"] == 1
    assert recs[U[3]]["status"] == "ok" and recs[U[3]]["attempts"] == 2
    assert recs[U[4]]["content_filter"] == [{"role": "user", "level": 3}]


async def test_content_as_list_of_text_parts_is_joined(tmp_path: Path) -> None:
    """A content list of {type: text} parts becomes one string."""
    answers = {
        U[0]: {
            "content": [{"type": "text", "text": "a cat"}, {"type": "text", "text": " on a mat"}]
        }
    }
    recs = await _run(tmp_path, {"url_answers": answers}, urls=U[:1])
    assert recs[U[0]]["content"] == "a cat on a mat"


async def test_glm_45v_think_and_box_markers_are_stripped(tmp_path: Path) -> None:
    """<think> goes to reasoning_content, box markers are removed; an API reasoning_content wins."""
    answers = {
        U[0]: {"content": "<think>It is round.</think><|begin_of_box|>a ball<|end_of_box|>"},
        U[1]: {
            "content": "<|begin_of_box|>a box<|end_of_box|>",
            "reasoning_content": "from the API",
        },
    }
    recs = await _run(tmp_path, {"url_answers": answers}, {"model": "glm-4.5v"}, urls=U[:2])
    assert (recs[U[0]]["content"], recs[U[0]]["reasoning_content"]) == ("a ball", "It is round.")
    assert (recs[U[1]]["content"], recs[U[1]]["reasoning_content"]) == ("a box", "from the API")


@pytest.mark.parametrize(
    ("raw", "content", "reasoning"),
    [
        ("plain", "plain", None),
        ("<think>r</think>\nanswer", "answer", "r"),
        ("r only</think>answer", "answer", "r only"),
        ("<think>cut off by length", "", "cut off by length"),
        ("<|begin_of_box|>x<|end_of_box|>", "x", None),
    ],
    ids=["plain", "think", "no-open-tag", "unclosed", "box"],
)
def test_strip_markers(raw: str, content: str, reasoning: str | None) -> None:
    """Marker stripping handles closed, unopened and unclosed think blocks."""
    assert strip_markers(raw) == (content, reasoning)


def test_ok_record_keeps_reasoning_content_from_the_api() -> None:
    """reasoning_content in the message is copied to the record."""
    answer = {
        "choices": [
            {"finish_reason": "stop", "message": {"content": "x", "reasoning_content": "why"}}
        ]
    }
    rec = ok_record("u", answer, via="realtime", attempts=1, latency_ms=1)
    assert rec["reasoning_content"] == "why"


SCHEMA = {
    "type": "object",
    "properties": {"objects": {"type": "array", "items": {"type": "string"}}},
    "required": ["objects"],
}


async def test_output_parse_json_with_schema(tmp_path: Path) -> None:
    """parse: json fills parsed (fenced blocks stripped); parse errors and schema errors are
    recorded, not lost."""
    answers = {
        U[0]: {"content": '```json\n{"objects": ["cat", "sofa"]}\n```'},
        U[1]: {"content": 'Sure! {"objects": ["dog"]} Hope that helps.'},
        U[2]: {"content": "no JSON here"},
        U[3]: {"content": '{"objects": [1]}'},
    }
    job = {"output": {"path": "out.jsonl", "parse": "json", "schema": SCHEMA}}
    recs = await _run(tmp_path, {"url_answers": answers}, job, urls=U[:4])
    assert (
        recs[U[0]]["parsed"] == {"objects": ["cat", "sofa"]} and "schema_errors" not in recs[U[0]]
    )
    assert recs[U[1]]["parsed"] == {"objects": ["dog"]}
    assert (
        recs[U[2]]["status"] == "ok"
        and recs[U[2]]["content"] == "no JSON here"
        and "not JSON" in recs[U[2]]["parse_error"]
    )
    assert recs[U[3]]["schema_errors"] == ["objects/0: 1 is not of type 'string'"]


async def test_schema_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    """output.schema_file is loaded at config time; a broken schema is a ConfigError."""
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    cfg = write_surface_config(
        tmp_path, job={"output": {"path": "out.jsonl", "parse": "json", "schema_file": "s.json"}}
    )
    job = load_config(cfg, environ={}).jobs[0]
    assert job.schema == SCHEMA and job.output.endswith("out.jsonl")
    (tmp_path / "s.json").write_text(json.dumps({"type": "nonsense"}))
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        load_config(cfg, environ={})


def test_schema_without_parse_json_is_refused(tmp_path: Path) -> None:
    """A schema needs parse: json."""
    cfg = write_surface_config(tmp_path, job={"output": {"path": "out.jsonl", "schema": SCHEMA}})
    with pytest.raises(ConfigError, match="needs parse: json"):
        load_config(cfg, environ={})


def test_parse_json_answer_variants() -> None:
    """Fenced, bare and prose-wrapped JSON parse; empty is an error."""
    assert parse_json_answer("```\n[1, 2]\n```") == ([1, 2], None)
    assert parse_json_answer('{"a": 1}')[0] == {"a": 1}
    assert parse_json_answer("")[1] == "empty answer"


async def test_plain_answers_unchanged_without_parse(tmp_path: Path) -> None:
    """Without output.parse no parsed field is added."""
    recs = await _run(tmp_path, {}, urls=U[:1])
    assert recs[U[0]]["content"] == expected_content(U[0]) and "parsed" not in recs[U[0]]
