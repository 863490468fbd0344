"""``config_hash``: what a job's request lines are built from, so that a rerun notices a change
(rebuilds its unsubmitted chunks, does not adopt batches built otherwise)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runner.config.schema import BatchConfig, JobConfig
from runner.core.batch_names import config_hash
from tests.core.test_batch_states import job as batch_job


def job(**over: object) -> JobConfig:
    return replace(batch_job(), **over)


def test_a_job_without_system_or_messages_keeps_the_hash_its_batches_were_built_with() -> None:
    # the value glmrun has always given this job: tracked batches of older runs still match it
    assert config_hash(job(), BatchConfig()) == "2fc44d5fe010"


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "Describe briefly."},
        {"model": "glm-4v-flash"},
        {"params": {"temperature": 0.3}},
        {"system": "You are a careful annotator."},
        {"messages": [{"role": "user", "content": "Earlier turn."}]},
    ],
    ids=["prompt", "model", "params", "system", "messages"],
)
def test_whatever_shapes_the_request_lines_changes_the_hash(change: dict[str, object]) -> None:
    assert config_hash(job(**change), BatchConfig()) != config_hash(job(), BatchConfig())


def test_two_system_prompts_hash_apart() -> None:
    first = config_hash(job(system="Answer in English."), BatchConfig())
    assert first != config_hash(job(system="Answer in Chinese."), BatchConfig())
    assert first == config_hash(job(system="Answer in English."), BatchConfig())
