"""The recipes in config/deploy/: manifests parse, name only flags glmrun has, and the shell
recipes (xargs, Slurm array) actually run a sharded job to completion."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from runner.cli.main import main
from runner.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "config" / "deploy"
BIN = Path(sys.executable).parent


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        # a container's command + args: one shell line when joined
        if all(isinstance(v, str) for v in node):
            yield " ".join(node)
        for value in node:
            yield from _strings(value)


def _invocations(text: str) -> Iterator[list[str]]:
    """Each ``glmrun SUBCOMMAND ...`` in the code (not the comments) of a text, as words up to
    a shell separator."""
    for line in text.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in re.finditer(r"(?<![\w/.-])glmrun (\w[\w-]*)([^;|&\n]*)", line):
            words = shlex.split(match.group(2).replace("{}", "0"), posix=True)
            yield [match.group(1), *words]


def _all_invocations() -> list[tuple[str, list[str]]]:
    found = []
    for path in sorted(DEPLOY.iterdir()):
        text = path.read_text()
        if path.suffix == ".yaml":
            for doc in yaml.safe_load_all(text):
                for s in _strings(doc):
                    found += [(path.name, inv) for inv in _invocations(s)]
        else:
            found += [(path.name, inv) for inv in _invocations(text)]
    return found


def _failure_actions(job: dict[str, Any]) -> dict[str, str]:
    """What an Indexed Job's podFailurePolicy does, per exit code and pod condition."""
    actions = {}
    for rule in job["podFailurePolicy"]["rules"]:
        for code in rule.get("onExitCodes", {}).get("values", []):
            actions[f"exit {code}"] = rule["action"]
        for condition in rule.get("onPodConditions", []):
            actions[condition["type"]] = rule["action"]
    return actions


def test_every_manifest_parses_and_the_config_loads() -> None:
    """The YAML files parse; the Kubernetes ones are batch/v1 Job / CronJob with an indexed
    job, volumes and a failure policy (2 and 3 fail the index; 75 and a disruption such as a
    node drain are retried without counting); glmrun.yaml is a valid glmrun config."""
    kinds = {}
    for path in DEPLOY.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "kind" in doc:
                assert doc["apiVersion"] == "batch/v1"
                kinds[path.name] = doc["kind"]
                job = doc["spec"] if doc["kind"] == "Job" else doc["spec"]["jobTemplate"]["spec"]
                assert job["completionMode"] == "Indexed"
                pod = job["template"]["spec"]
                assert pod["securityContext"]["runAsNonRoot"] is True
                mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
                assert {"/config", "/data/input", "/data/out"} <= mounts
                assert _failure_actions(job) == {
                    "exit 2": "FailIndex",
                    "exit 3": "FailIndex",
                    "exit 75": "Ignore",
                    "DisruptionTarget": "Ignore",  # a drained node's SIGTERM (143) is no try
                }
    assert kinds == {"k8s-indexed-job.yaml": "Job", "k8s-cronjob.yaml": "CronJob"}
    config = load_config(DEPLOY / "glmrun.yaml", environ={"ZHIPUAI_API_KEY": "x"})
    assert str(config.jobs[0].main_output_path).startswith("/data/out/")
    docker = (DEPLOY / "Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)", docker, re.M)
    assert user and user[-1] not in ("root", "0")
    assert '\nENTRYPOINT ["glmrun"]' in docker


def test_the_recipes_name_only_commands_and_flags_that_exist() -> None:
    """Every ``glmrun ...`` in config/deploy uses a real command and real options of it."""
    found = _all_invocations()
    assert {name for name, _ in found} >= {
        "k8s-indexed-job.yaml",
        "k8s-cronjob.yaml",
        "slurm-array.sh",
        "xargs.sh",
    }
    for name, (command, *words) in found:
        found_cmd = main.get_command(click.Context(main), command)  # commands load lazily
        assert found_cmd is not None, (name, command)
        cmd: click.Command = found_cmd
        opts = {o for p in cmd.params for o in [*p.opts, *p.secondary_opts]} | {"--help"}
        for word in words:
            if word.startswith("-"):
                assert word.split("=", 1)[0] in opts, (name, command, word)
    shards = [w for _, (c, *ws) in found if c == "run" for w in ws if "/" in w and "$" in w]
    assert shards, "no recipe passes --shard I/N"


def _sharded_config(tmp_path: Path, n_urls: int) -> tuple[Path, list[str]]:
    urls = [f"https://img.example.com/deploy/{i}.jpg" for i in range(n_urls)]
    (tmp_path / "urls.txt").write_text("".join(u + "\n" for u in urls))
    config = tmp_path / "glmrun.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "api": {"base_url": "simulator"},
                "simulator": {"latency_mean_s": 0.001},
                "jobs": [
                    {
                        "name": "describe",
                        "input": "urls.txt",
                        "output": "out/describe.jsonl",
                        "model": "glm-4v-flash",
                        "prompt": "describe",
                    }
                ],
            }
        )
    )
    return config, urls


def _export_urls(config: Path) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "runner", "export", str(config)],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    return [json.loads(line)["url"] for line in out.splitlines()]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


@pytest.mark.skipif(not (BIN / "glmrun").exists(), reason="glmrun is not installed in this env")
def test_the_xargs_and_slurm_recipes_run_a_sharded_job(tmp_path: Path) -> None:
    """xargs.sh with 3 processes writes 3 shard files; the Slurm script for 2 shards, run after
    more URLs are appended as task 1 of the array and as task 0 resubmitted alone (``sbatch
    --array=0``: Slurm says the array has 1 task), sends the rest into the 2 shard files, never
    as the whole job (``--shard 0/1``); export has every URL once."""
    config, urls = _sharded_config(tmp_path, 60)
    done = subprocess.run(
        ["sh", str(DEPLOY / "xargs.sh"), str(config), "3"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("describe.shard-*.jsonl")) == [
        f"describe.shard-{i}-of-3.jsonl" for i in range(3)
    ]
    assert sorted(_export_urls(config)) == sorted(urls)
    more = [f"https://img.example.com/deploy/more-{i}.jpg" for i in range(20)]
    with open(tmp_path / "urls.txt", "a") as f:
        f.write("".join(u + "\n" for u in more))
    for task, count in (("1", "2"), ("0", "1")):
        slurm = subprocess.run(
            ["bash", str(DEPLOY / "slurm-array.sh"), str(config), "2"],
            env=_env(SLURM_ARRAY_TASK_ID=task, SLURM_ARRAY_TASK_COUNT=count),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert slurm.returncode == 0, slurm.stderr
    written = [
        json.loads(line)["url"]
        for i in range(2)
        for line in (out / f"describe.shard-{i}-of-2.jsonl").read_bytes().splitlines()
    ]
    assert sorted(written) == sorted(more)  # only the appended URLs were sent
    assert not (out / "describe.jsonl").exists()  # task 0 did not run as the whole job
    assert sorted(_export_urls(config)) == sorted(urls + more)
