"""YAML config -> frozen dataclasses, validated at load.

Every mistake is a ``ConfigError`` whose message names the file, the key path, what was
expected and what was found (``config.yaml: limits.concurency: unknown key (did you mean
concurrency?)``), and how to fix it where that is known (a YAML syntax error's usual cause, a
number in quotes, a key written twice). ``build`` is generic over the dataclasses of
``runner.config.schema``. What is probably a mistake but may be meant (an unknown parameter or
proxy model, an allowed folder that does not exist yet, a price row no job uses, a ``{field}``
a plain URL list cannot fill) is a warning naming the key, and the run goes on.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union
from urllib.parse import urlparse

import orjson
import yaml

from runner.config.schema import Config, Invalid, JobConfig, Secret, show
from runner.config.yaml_hints import yaml_hint
from runner.core.models import unknown_model
from runner.core.params import validate_params
from runner.core.templates import TEXT_INPUT_FIELDS, field_names, template_texts
from runner.errors import ConfigError
from runner.io.input_files import csv_header, not_utf8
from runner.io.inputs import detect_format
from runner.io.jsonl import foreign_first_line
from runner.io.prepare import resolve_turn_media

# libyaml's parser when PyYAML has it: the same safe types, about 20x faster than the pure-Python
# one (8 ms of start-up for a 30-line config on a 2-core machine)
_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE = "tag:yaml.org,2002:merge"


class StrictLoader(_BASE_LOADER):  # type: ignore[misc,valid-type]  # a class chosen at import
    """The safe loader, refusing a key written twice in one mapping: plain YAML keeps the last
    silently, so a second ``limits:`` block would quietly undo the first."""


def _construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> Any:
    first: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:  # ``<<: *anchor`` merges; keys written after it override
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            seen = first.setdefault(key, key_node)
        except TypeError:  # an unhashable key: the base constructor says so
            continue
        if seen is not key_node:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the key {key!r} appears twice in one mapping (first on line "
                f"{seen.start_mark.line + 1}); keep one",
                key_node.start_mark,
            )
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
SAFE_LOADER = StrictLoader

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)


_T = TypeVar("_T", bound="DataclassInstance")


def load_config(
    path: str | os.PathLike[str], environ: typing.Mapping[str, str] | None = None
) -> Config:
    """Read, validate and resolve a config file; every problem is one ConfigError line."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found{_near_file(path)}") from None
    except IsADirectoryError:
        inside = sorted(p for p in path.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
        hint = f" (did you mean {inside[0]}?)" if len(inside) == 1 else ""
        if 1 < len(inside) <= 5:
            hint = f" (its YAML files: {', '.join(p.name for p in inside)})"
        raise ConfigError(f"{path}: a folder, not a config file{hint}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: {not_utf8(path.read_bytes()[:4], exc)}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        hint = yaml_hint(problem, getattr(exc, "context", None), text, mark)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}{hint}") from None
    if data is None:
        raise ConfigError(f"{path}: the config is empty; it needs at least a 'jobs' list")
    _check_job_items(data, str(path))
    config = build(Config, data, str(path))
    base = path.resolve().parent
    jobs = [
        dataclasses.replace(
            job,
            input=str(base / os.path.expanduser(job.input)),
            output=str(base / os.path.expanduser(job.output_file)),
        )
        for job in config.jobs
    ]
    outputs: dict[Path, str] = {}
    for i, job in enumerate(jobs):  # the same file spelled two ways (./x, a/../x, a link)
        if job.output_path.is_dir() or config.jobs[i].output_file.endswith(("/", os.sep)):
            raise ConfigError(
                f"{path}: jobs[{i}].output: {job.output_path} is a folder; name a file in it, "
                f"such as {job.output_path / job.name}.jsonl"
            )
        blocker = next((p for p in job.output_path.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():  # every run would fail to create it
            raise ConfigError(
                f"{path}: jobs[{i}].output: {blocker} is a file, so the output's folder "
                f"{job.output_path.parent} cannot be made; name an output in a folder"
            )
        real = job.output_path.resolve()
        _check_not_read(real, i, jobs, path)
        foreign = foreign_first_line(real)
        if foreign is not None:
            raise ConfigError(
                f"{path}: jobs[{i}].output: {real} is not a glmrun output (its first line, "
                f"{foreign!r}, is not a JSON record) and records would be appended to it; "
                "name a new file"
            )
        if real in outputs:
            raise ConfigError(
                f"{path}: jobs[{i}].output: two jobs write to {real} "
                f"({outputs[real]} and {job.name}); give each its own output"
            )
        outputs[real] = job.name
    jobs = [_load_schema(job, base, str(path), i) for i, job in enumerate(jobs)]
    _warn_params(jobs, str(path))
    _check_models(config, jobs, str(path))
    _warn_prices(config, jobs, str(path))
    _warn_text_fields(jobs, str(path))
    local = dataclasses.replace(
        config.local_files,
        allowed_dirs=[
            str((base / os.path.expanduser(d)).resolve()) for d in config.local_files.allowed_dirs
        ],
    )
    jobs = [
        resolve_turn_media(job, local.allowed_dirs, base, str(path), i)
        for i, job in enumerate(jobs)
    ]
    _check_allowed_dirs(local.allowed_dirs, str(path))
    config = dataclasses.replace(config, local_files=local)
    name = config.api.api_key_env
    # spaces or a CR around the key (an env file saved with Windows line ends) are dropped: an
    # HTTP header cannot carry a CR, and the API would refuse the spaces
    value = environ.get(name, "").strip()
    if not config.api.is_simulator and any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(
            f"{path}: api.api_key_env: the value of {name} has a space or control character "
            "inside; an API key has none (check how it was pasted or exported)"
        )
    key = Secret(value)
    if not key and not config.api.is_simulator:
        state = "is not set" if name not in environ else "is empty"
        raise ConfigError(
            f"{path}: api.api_key_env: environment variable {name} {state} "
            "(export it, or use base_url: simulator to try glmrun without a key)"
        )
    return dataclasses.replace(config, jobs=jobs, path=path, api_key=key)


def _check_not_read(output: Path, i: int, jobs: list[JobConfig], config: Path) -> None:
    """An output that is a file glmrun reads (a job's input, the config itself) would get
    records appended to it: the URL list, or the config, silently corrupted."""
    reads = [(f"jobs[{n}].input", Path(job.input).resolve()) for n, job in enumerate(jobs)]
    for what, file in [*reads, ("the config file", config.resolve())]:
        if output == file:
            raise ConfigError(
                f"{config}: jobs[{i}].output: {output} is also {what}, and records are "
                f"appended to the output; give it a file of its own, such as "
                f"{output.parent / 'out' / jobs[i].name}.jsonl"
            )


def _check_job_items(data: Any, file: str) -> None:
    """``jobs:`` written with a ``- `` before every key makes each key a job of its own; the
    first then misses its other keys, which a plain 'missing required key' does not explain."""
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, list) or len(jobs) < 2:
        return
    if all(isinstance(j, dict) and len(j) == 1 for j in jobs):
        keys = [next(iter(j)) for j in jobs]
        if len(set(keys)) == len(keys) and {"input", "output"} & set(keys):
            raise ConfigError(
                f"{file}: jobs: each '- ' starts a new job, and here every key has its own "
                f"({', '.join(keys)}); write the '- ' once per job, its keys indented under it"
            )


def _near_file(path: Path) -> str:
    """`` (did you mean c.yaml?)`` for a config named with a typo or the other extension."""
    try:
        found = {p.stem: p for p in path.parent.iterdir() if p.suffix in (".yaml", ".yml")}
    except OSError:
        return ""
    close = difflib.get_close_matches(path.stem, list(found), n=1, cutoff=0.75)
    return f" (did you mean {found[close[0]]}?)" if close else ""


def _warn(text: str) -> None:
    """A config warning: one line for people; in JSON logs the event ``config warning`` with
    the text as its ``message``, so an alert matches one event name, not each text."""
    log.warning(text, extra={"_event": "config warning"})


def _check_allowed_dirs(dirs: list[str], file: str) -> None:
    """A folder in ``local_files.allowed_dirs`` that does not exist is most likely a typo:
    every local file would be refused. A warning, since it may be created before items need it."""
    for i, folder in enumerate(dirs):
        if not os.path.isdir(folder):
            what = "is not a folder" if os.path.exists(folder) else "does not exist"
            _warn(
                f"{file}: local_files.allowed_dirs[{i}]: {folder} {what}; "
                "local files from it will be refused"
            )


def _load_schema(job: JobConfig, base: Path, file: str, i: int) -> JobConfig:
    """Read ``output.schema_file`` (relative to the config folder) and check the schema itself."""
    schema = job.schema
    where = f"jobs[{i}].output.schema"
    if job.schema_file is not None:
        where = f"jobs[{i}].output.schema_file"
        schema_path = base / job.schema_file
        try:
            schema = orjson_loads(schema_path.read_bytes())
        except OSError as exc:
            raise ConfigError(
                f"{file}: {where}: cannot read {schema_path}: {exc.strerror}"
            ) from None
        except ValueError as exc:
            raise ConfigError(f"{file}: {where}: {schema_path} is not JSON: {exc}") from None
    if schema is None:
        return job
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"{file}: {where}: not a valid JSON Schema: {exc.message}") from None
    return dataclasses.replace(job, schema=schema, schema_file=None)


def _warn_params(jobs: list[JobConfig], file: str) -> None:
    for i, job in enumerate(jobs):
        for warning in validate_params(job.model, job.params)[1]:
            _warn(f"{file}: jobs[{i}].{warning}")


ZHIPU_HOSTS = {"open.bigmodel.cn"}


def _check_models(config: Config, jobs: list[JobConfig], file: str) -> None:
    """An unknown model with Zhipu's own base_url is an error (each request would fail); with
    any other base_url (a proxy may have its own names) it is a warning. The simulator takes
    any name."""
    if config.api.is_simulator:
        return
    zhipu = urlparse(config.api.base_url).hostname in ZHIPU_HOSTS
    for i, job in enumerate(jobs):
        problem = unknown_model(job.model)
        if problem is None:
            continue
        if zhipu:
            raise ConfigError(f"{file}: jobs[{i}].model: {problem}")
        _warn(f"{file}: jobs[{i}].model: {problem}; sent as given to the proxy")


def _warn_prices(config: Config, jobs: list[JobConfig], file: str) -> None:
    """A price row that no job uses, spelled close to the model of a job that has no price: a
    typo, which would leave that job's summary and estimates without a cost."""
    unpriced = {job.model.lower() for job in jobs if config.cost.price(job.model) is None}
    used = {job.model.lower() for job in jobs}
    for name in config.cost.prices:
        if name.lower() in used:
            continue
        close = difflib.get_close_matches(name.lower(), sorted(unpriced), n=1, cutoff=0.8)
        if close:
            _warn(
                f"{file}: cost.prices.{name}: no job uses this model (did you mean {close[0]}?); "
                f"{close[0]} has no price, so its cost is not shown"
            )


def _warn_text_fields(jobs: list[JobConfig], file: str) -> None:
    """``{title}`` in the prompt of a job reading plain URLs, or ``{titel}`` where the CSV has
    a ``title`` column: no item has that field, so every request would carry the braces as
    written (a template copied from another job, or a column name mistyped)."""
    for i, job in enumerate(jobs):
        fmt = detect_format(Path(job.input), job.input_format)
        header = csv_header(job.input_path) if fmt == "csv" else None
        if fmt != "text" and not header:
            continue
        known = [*TEXT_INPUT_FIELDS, *(header or [])]
        for key, text in template_texts(job.prompt, job.system, job.messages):
            unknown = [n for n in field_names(text) if n not in known]
            if not unknown:
                continue
            if header is None:
                what = f"field of a plain-text input (it has {', '.join(TEXT_INPUT_FIELDS)})"
            else:
                close = difflib.get_close_matches(unknown[0], header, n=1, cutoff=0.75)
                mean = f"; did you mean {{{close[0]}}}?" if close else ""
                what = f"column of {job.input_path.name} (its columns: {', '.join(header)}{mean})"
            _warn(
                f"{file}: jobs[{i}].{key}: {{{unknown[0]}}} is no {what}, so it is sent as written"
            )


def orjson_loads(raw: bytes) -> Any:
    return orjson.loads(raw)


def build(cls: type[_T], data: Any, file: str, keypath: str = "") -> _T:
    """Build dataclass ``cls`` from parsed YAML, with errors naming ``file`` and ``keypath``."""
    where = keypath or "top level"
    if not isinstance(data, dict):
        hint = f" (write api: {{base_url: {data}}})" if keypath == "api" and data else ""
        raise ConfigError(f"{file}: {where}: expected a mapping, found {_describe(data)}{hint}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{file}: {_join(keypath, str(key))}: unknown key"
                f"{_home_of(str(key), keypath) or _did_you_mean(str(key), fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        sub = _join(keypath, name)
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], file, sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{file}: {sub}: missing required key")
    try:
        return cls(**kwargs)
    except Invalid as exc:
        raise ConfigError(f"{file}: {_join(keypath, exc.key)}: {exc}") from None


def _convert(tp: Any, value: Any, file: str, keypath: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, file, keypath)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        if isinstance(value, dict):
            classes = [o for o in options if isinstance(o, type) and dataclasses.is_dataclass(o)]
            if len(classes) == 1:
                return build(classes[0], value, file, keypath)
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, file, keypath)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(
            f"{file}: {keypath}: expected {_expected(tp)}, found {_describe(value)}"
            f"{_unquote_hint(value, tp)}"
        )
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(
            f"{file}: {keypath}: expected one of {', '.join(map(str, allowed))}, "
            f"found {_describe(value)}{hint}"
        )
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{file}: {keypath}: expected a list, found {_describe(value)}")
        return [_convert(inner, v, file, f"{keypath}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: {keypath}: expected a mapping, found {_describe(value)}")
        args = typing.get_args(tp)
        if len(args) == 2 and isinstance(args[1], type) and dataclasses.is_dataclass(args[1]):
            return {k: build(args[1], v, file, f"{keypath}.{k}") for k, v in value.items()}
        return dict(value)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(
        f"{file}: {keypath}: expected {_expected(tp)}, found {_describe(value)}"
        f"{_unquote_hint(value, tp)}"
    )


def _unquote_hint(value: Any, tp: Any) -> str:
    """A number in quotes (``"8"``) or in a form YAML reads as text (``1e3``): say how to
    write it so YAML reads a number."""
    wants = {tp, *typing.get_args(tp)}
    if not isinstance(value, str) or not wants & {int, float}:
        return ""
    try:
        number = float(value.strip().replace("_", ""))
    except ValueError:
        return ""
    if not math.isfinite(number) or int in wants and float not in wants and not number.is_integer():
        return ""
    plain = show(number) if abs(number) < 1e15 else value
    return f" (text, not a number: write {plain} without quotes)"


def _expected(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):  # ``null`` is left out: one leaves the key out
        options = [t for t in typing.get_args(tp) if t is not type(None)] or [type(None)]
        return " or ".join(_expected(t) for t in options)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    names = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "null",
    }
    if tp in names:
        return names[tp]
    if origin is list:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _home_of(key: str, keypath: str) -> str:
    """`` (concurrency belongs under limits:)`` for a key written in the wrong section: a
    section's key at the top or in another section, a job's key outside ``jobs``."""

    def keys(cls: Any) -> set[str]:
        return {g.name for g in dataclasses.fields(cls) if not g.metadata.get("internal")}

    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        if dataclasses.is_dataclass(hints[f.name]) and key in keys(hints[f.name]):
            return f" ({key} belongs under {f.name}:)"
    if key in keys(JobConfig) and not keypath.startswith("jobs"):
        return f" ({key} is a key of each job, under jobs:)"
    return ""


def _did_you_mean(key: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    return (
        f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(sorted(options))})"
    )


def _join(prefix: str, key: str) -> str:
    if not prefix:
        return key
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"
