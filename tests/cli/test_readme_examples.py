"""The README's YAML examples, as a newcomer copies them: each parses (no key written twice),
names only keys glmrun has, and each one with jobs loads as a config without a warning; the
multi-image excerpt is what config/multi-image.yaml says."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.config import Config, load_config
from runner.config.load import SAFE_LOADER

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
SECTIONS = {f.name for f in dataclasses.fields(Config) if not f.metadata.get("internal")}


def _first_line(block: str) -> str:
    return block.strip().splitlines()[0][:40]


def test_the_readme_has_its_yaml_examples() -> None:
    """A change to the fences would otherwise make every test below pass on nothing."""
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=_first_line)
def test_every_yaml_example_parses_with_known_sections(block: str) -> None:
    """Strict YAML (a key twice is an error) whose top-level keys are config sections."""
    data = yaml.load(block, Loader=SAFE_LOADER)
    assert isinstance(data, dict) and set(data) <= SECTIONS, data


def _inputs_for(job: dict[str, Any], folder: Path) -> None:
    """The job's input, as the text around the example describes it."""
    path = folder / job["input"]
    if path.suffix == ".csv":
        column = job.get("csv_url_column", "url")
        path.write_text(f"title,{column}\nshoe,https://e.org/s.jpg\n")
    elif path.suffix == ".jsonl":
        path.write_text('{"id": "p1", "url": "https://e.org/a.jpg", "meta": {"kind": "shoe"}}\n')
    else:
        path.write_text("https://e.org/a.jpg\n")


RUNNABLE = [b for b in BLOCKS if "jobs" in yaml.safe_load(b) and "messages:" not in b]


@pytest.mark.parametrize("block", RUNNABLE, ids=_first_line)
def test_every_yaml_example_with_jobs_loads_without_a_warning(
    tmp_path: Path, block: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Copied verbatim, with its input beside it and the key exported, the config loads."""
    path = tmp_path / "c.yaml"
    path.write_text(block, encoding="utf-8")
    for job in yaml.safe_load(block)["jobs"]:
        _inputs_for(job, tmp_path)
    for folder in yaml.safe_load(block).get("local_files", {}).get("allowed_dirs", []):
        (tmp_path / folder).mkdir()
    with caplog.at_level("WARNING", logger="runner"):
        config = load_config(path, environ={"ZHIPUAI_API_KEY": "k"})
    assert config.jobs and not caplog.records, [r.getMessage() for r in caplog.records]


def test_the_multi_image_excerpt_is_the_example_file() -> None:
    """The README shows part of config/multi-image.yaml's job: every key it shows is the file's."""
    (excerpt,) = [yaml.safe_load(b)["jobs"][0] for b in BLOCKS if "messages:" in b]
    shipped = yaml.safe_load((ROOT / "config" / "multi-image.yaml").read_text())["jobs"][0]
    assert excerpt == {key: shipped[key] for key in excerpt}
