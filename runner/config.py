"""YAML config -> frozen dataclasses, validated at load.

Every mistake is a ``ConfigError`` whose message names the file, the key path, what was
expected and what was found (``config.yaml: limits.concurency: unknown key (did you mean
concurrency?)``). The loader is generic over the dataclasses below: a field added here is
parsed, type-checked and documented by its default with no further code.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

import yaml

from .errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

SIMULATOR = "simulator"
DEFAULT_BASE_URL = "https://open.bigmodel.cn/api/paas/v4"

Mode = Literal["realtime", "batch", "auto"]
OnFailure = Literal["realtime", "rebatch", "record"]


class Invalid(ValueError):
    """Raised by a dataclass's ``__post_init__``: ``key`` is relative to that section."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class Secret:
    """Holds the API key; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = "ZHIPUAI_API_KEY"
    timeout_s: float = 60.0
    connect_timeout_s: float = 10.0
    auth: Literal["bearer", "jwt"] = "bearer"
    jwt_ttl_s: float = 210.0

    def __post_init__(self) -> None:
        if self.jwt_ttl_s < 60:
            raise Invalid("jwt_ttl_s", f"expected at least 60 seconds (tokens are refreshed 30 s before expiry), found {self.jwt_ttl_s}")
        if self.base_url != SIMULATOR and not re.match(r"^https?://[^/\s]+", self.base_url):
            raise Invalid("base_url", f"expected 'simulator' or an http(s) URL, found {self.base_url!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise Invalid("api_key_env", f"expected an environment variable name, found {self.api_key_env!r}")
        _positive(self, "timeout_s", "connect_timeout_s")

    @property
    def is_simulator(self) -> bool:
        return self.base_url == SIMULATOR


@dataclass(frozen=True)
class LimitsConfig:
    concurrency: int | Literal["auto"] = 16
    max_concurrency: int = 256
    rpm: int | None = None
    tpm: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency != "auto" and self.concurrency < 1:
            raise Invalid("concurrency", f"expected an integer >= 1 or 'auto', found {self.concurrency}")
        _positive(self, "max_concurrency", "rpm", "tpm")


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0

    def __post_init__(self) -> None:
        _positive(self, "max_attempts", "base_delay_s", "max_delay_s")


@dataclass(frozen=True)
class BatchConfig:
    threshold: int = 1000
    max_requests_per_file: int = 50_000
    max_bytes_per_file: int = 100 * 1024 * 1024 - 1024 * 1024
    max_queued: int = 10_000
    poll_interval_s: float = 30.0
    max_wait_s: float | None = None
    on_failure: OnFailure = "realtime"
    delete_remote_files: bool = False
    endpoint: str = "/v4/chat/completions"
    completion_window: str = "24h"

    def __post_init__(self) -> None:
        _positive(self, "threshold", "max_requests_per_file", "max_bytes_per_file", "max_queued")
        if self.max_requests_per_file > 50_000:
            raise Invalid("max_requests_per_file", f"the API allows at most 50000, found {self.max_requests_per_file}")
        if self.poll_interval_s < 0:
            raise Invalid("poll_interval_s", f"expected a number >= 0, found {self.poll_interval_s}")


@dataclass(frozen=True)
class RunConfig:
    grace_s: float = 10.0
    flush_interval_s: float = 0.5
    progress_interval_s: float = 10.0

    def __post_init__(self) -> None:
        _positive(self, "grace_s", "flush_interval_s", "progress_interval_s")
        if self.grace_s > 10:
            raise Invalid("grace_s", f"expected at most 10 seconds, found {self.grace_s}")


@dataclass(frozen=True)
class OutputSpec:
    """``output:`` as a mapping: the path plus optional structured-output parsing."""

    path: str
    parse: Literal["none", "json"] = "none"
    schema: dict[str, Any] | None = None
    schema_file: str | None = None

    def __post_init__(self) -> None:
        if self.schema is not None and self.schema_file is not None:
            raise Invalid("schema", "give schema or schema_file, not both")
        if (self.schema is not None or self.schema_file is not None) and self.parse != "json":
            raise Invalid("parse", "a schema needs parse: json")


@dataclass(frozen=True)
class JobConfig:
    name: str
    input: str
    output: str | OutputSpec
    model: str
    prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    mode: Mode = "realtime"
    input_format: Literal["auto", "text", "jsonl", "csv"] = "auto"
    csv_url_column: str = "url"
    system: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    # set from ``output`` when it is a mapping (OutputSpec); never read from YAML directly
    parse: str = field(default="none", metadata={"internal": True})
    schema: dict[str, Any] | None = field(default=None, metadata={"internal": True})
    schema_file: str | None = field(default=None, metadata={"internal": True})

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", self.name):
            raise Invalid("name", f"expected letters, digits, '_', '-' or '.' (at most 64), found {self.name!r}")
        if not self.model.strip():
            raise Invalid("model", "must not be empty")
        if isinstance(self.output, OutputSpec):
            spec = self.output
            object.__setattr__(self, "output", spec.path)
            object.__setattr__(self, "parse", spec.parse)
            object.__setattr__(self, "schema", spec.schema)
            object.__setattr__(self, "schema_file", spec.schema_file)
        from .params import ParamError, validate_params
        from .templates import TemplateError, check_turns

        try:
            params, _ = validate_params(self.model, self.params)
        except ParamError as exc:
            raise Invalid(f"params.{exc.key}", str(exc)) from None
        object.__setattr__(self, "params", params)
        try:
            check_turns(self.model, self.system, self.messages)
        except TemplateError as exc:
            raise Invalid(exc.key, str(exc)) from None

    @property
    def input_path(self) -> Path:
        return Path(self.input)

    @property
    def output_file(self) -> str:
        """``output`` as a path string (``__post_init__`` has already unpacked an OutputSpec)."""
        return self.output.path if isinstance(self.output, OutputSpec) else self.output

    @property
    def output_path(self) -> Path:
        return Path(self.output_file)

    @property
    def work_dir(self) -> Path:
        """Where batch files and state for this job live: beside the output."""
        return self.output_path.parent / ".glmrun" / self.name


@dataclass(frozen=True)
class LocalFilesConfig:
    """Folders local images may be read from (file:// or plain paths); empty = none."""

    allowed_dirs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PriceConfig:
    """Price per 1000 tokens; ``batch_discount`` multiplies both for the batch route."""

    input_per_1k: float
    output_per_1k: float
    batch_discount: float = 0.5

    def __post_init__(self) -> None:
        for name in ("input_per_1k", "output_per_1k"):
            if getattr(self, name) < 0:
                raise Invalid(name, f"expected a number >= 0, found {getattr(self, name)}")
        if not 0 < self.batch_discount <= 1:
            raise Invalid("batch_discount", f"expected a factor in (0, 1], found {self.batch_discount}")


@dataclass(frozen=True)
class CostConfig:
    currency: str = "CNY"
    prices: dict[str, PriceConfig] = field(default_factory=dict)
    prompt_tokens_per_image: int = 1100  # dry-run estimate when no records exist yet
    completion_tokens: int = 300  # likewise, per answer

    def __post_init__(self) -> None:
        _positive(self, "prompt_tokens_per_image", "completion_tokens")

    def price(self, model: str) -> PriceConfig | None:
        """The model's row; names match case-insensitively (proxies spell them their own way)."""
        found = self.prices.get(model)
        if found is None:
            lower = model.lower()
            found = next((p for name, p in self.prices.items() if name.lower() == lower), None)
        return found


@dataclass(frozen=True)
class Config:
    jobs: list[JobConfig]
    api: ApiConfig = field(default_factory=ApiConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    run: RunConfig = field(default_factory=RunConfig)
    simulator: dict[str, Any] = field(default_factory=dict)
    local_files: LocalFilesConfig = field(default_factory=LocalFilesConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    path: Path = field(default=Path("config.yaml"), metadata={"internal": True})
    api_key: Secret = field(default_factory=lambda: Secret(""), metadata={"internal": True}, repr=False)

    def __post_init__(self) -> None:
        if not self.jobs:
            raise Invalid("jobs", "expected at least one job")
        seen: set[str] = set()
        outputs: set[str] = set()
        for i, job in enumerate(self.jobs):
            if job.name in seen:
                raise Invalid(f"jobs[{i}].name", f"duplicate job name {job.name!r}")
            if job.output_file in outputs:
                raise Invalid(f"jobs[{i}].output", f"two jobs write to {job.output_file}; give each its own output")
            seen.add(job.name)
            outputs.add(job.output_file)

    def job(self, name: str) -> JobConfig:
        for job in self.jobs:
            if job.name == name:
                return job
        names = ", ".join(j.name for j in self.jobs)
        raise ConfigError(f"{self.path}: no job named {name!r} (jobs: {names})")


def _positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and value <= 0:
            raise Invalid(name, f"expected a number > 0, found {value}")


# --- loading -------------------------------------------------------------------------------

_T = TypeVar("_T", bound="DataclassInstance")


def load_config(path: str | os.PathLike[str], environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read, validate and resolve a config file; every problem is one ConfigError line."""
    path = Path(path)
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the config is empty; it needs at least a 'jobs' list")
    config = build(Config, data, str(path))
    base = path.resolve().parent
    jobs = [
        dataclasses.replace(job, input=str(base / job.input), output=str(base / job.output_file))
        for job in config.jobs
    ]
    outputs: dict[Path, str] = {}
    for i, job in enumerate(jobs):  # the same file spelled two ways (./x, a/../x, a link)
        real = job.output_path.resolve()
        if real in outputs:
            raise ConfigError(f"{path}: jobs[{i}].output: two jobs write to {real} ({outputs[real]} and {job.name}); give each its own output")
        outputs[real] = job.name
    jobs = [_load_schema(job, base, str(path), i) for i, job in enumerate(jobs)]
    _warn_params(jobs, str(path))
    local = dataclasses.replace(
        config.local_files,
        allowed_dirs=[str((base / os.path.expanduser(d)).resolve()) for d in config.local_files.allowed_dirs],
    )
    from .prepare import resolve_turn_media

    jobs = [resolve_turn_media(job, local.allowed_dirs, base, str(path), i) for i, job in enumerate(jobs)]
    config = dataclasses.replace(config, local_files=local)
    key = Secret(environ.get(config.api.api_key_env, ""))
    if not key and not config.api.is_simulator:
        raise ConfigError(
            f"{path}: api.api_key_env: environment variable {config.api.api_key_env} is not set "
            "(export it, or use base_url: simulator to try glmrun without a key)"
        )
    return dataclasses.replace(config, jobs=jobs, path=path, api_key=key)


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
            raise ConfigError(f"{file}: {where}: cannot read {schema_path}: {exc.strerror}") from None
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
    import logging

    from .params import validate_params

    for job in jobs:
        for warning in validate_params(job.model, job.params)[1]:
            logging.getLogger(__name__).warning(f"{file}: jobs.{job.name}.{warning}")


def orjson_loads(raw: bytes) -> Any:
    import orjson

    return orjson.loads(raw)


def build(cls: type[_T], data: Any, file: str, keypath: str = "") -> _T:
    """Build dataclass ``cls`` from parsed YAML, with errors naming ``file`` and ``keypath``."""
    where = keypath or "top level"
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: {where}: expected a mapping, found {_describe(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(f"{file}: {_join(keypath, str(key))}: unknown key{_did_you_mean(str(key), fields)}")
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
        raise ConfigError(f"{file}: {keypath}: expected {_expected(tp)}, found {_describe(value)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{file}: {keypath}: expected one of {', '.join(map(str, allowed))}, found {_describe(value)}{hint}")
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
    raise ConfigError(f"{file}: {keypath}: expected {_expected(tp)}, found {_describe(value)}")


def _expected(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_expected(t) for t in typing.get_args(tp))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
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


def _did_you_mean(key: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(sorted(options))})"


def _join(prefix: str, key: str) -> str:
    if not prefix:
        return key
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"
