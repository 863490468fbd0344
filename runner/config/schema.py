"""The config's shape: frozen dataclasses with the documented defaults, checked as they are built.

A field added here is parsed, type-checked and documented by its default with no further
code: ``runner.config.load`` is generic over these classes; one declared with ``positive(default)``
must be > 0 when set. A ``__post_init__`` raises ``Invalid(key, message)``; the loader turns it
into one ``ConfigError`` line naming the key path.
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from runner.core.params import ParamError, validate_params
from runner.core.retry import backoff_s
from runner.core.shard import Shard, shard_max_queued, shard_output_name, shard_work_name
from runner.core.templates import TemplateError, check_turns
from runner.errors import ConfigError

SIMULATOR = "simulator"
DEFAULT_BASE_URL = "https://open.bigmodel.cn/api/paas/v4"
API_MAX_FILE_BYTES = 100 * 1024 * 1024  # the Batch API refuses larger files (HTTP 435)

_T = TypeVar("_T")

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


def show(value: object) -> str:
    """A number as the user likely wrote it: ``0``, not the ``0.0`` a float field made of it."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def positive(default: _T) -> _T:
    """A field whose value, when set, must be > 0 (checked by ``Section.__post_init__``)."""
    value: _T = field(default=default, metadata={"positive": True})
    return value


class Section:
    """A config section: its ``positive`` fields are checked as it is built. A section with
    checks of its own calls ``super().__post_init__()`` before or after them."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]  # subclasses are dataclasses
            value = getattr(self, f.name)
            if f.metadata.get("positive") and value is not None and value <= 0:
                raise Invalid(f.name, f"expected a number > 0, found {show(value)}")


@dataclass(frozen=True)
class ApiConfig(Section):
    """``api:``: where the API is and how glmrun signs in and waits for it."""

    base_url: str = DEFAULT_BASE_URL
    api_key_env: str = "ZHIPUAI_API_KEY"
    timeout_s: float = positive(60.0)
    connect_timeout_s: float = positive(10.0)
    auth: Literal["bearer", "jwt"] = "bearer"
    jwt_ttl_s: float = 210.0

    def __post_init__(self) -> None:
        if self.jwt_ttl_s < 60:
            raise Invalid(
                "jwt_ttl_s",
                "expected at least 60 seconds (tokens are refreshed 30 s before expiry), "
                f"found {show(self.jwt_ttl_s)}",
            )
        if self.base_url != SIMULATOR:
            _check_base_url(self.base_url)
        _check_key_env(self.api_key_env)
        super().__post_init__()

    @property
    def is_simulator(self) -> bool:
        return self.base_url == SIMULATOR


def _check_base_url(url: str) -> None:
    if not re.match(r"^https?://[^/\s]+", url):
        raise Invalid("base_url", f"expected 'simulator' or an http(s) URL, found {url!r}")
    if re.search(r"\s", url):
        raise Invalid("base_url", f"the URL contains whitespace: {url!r}")
    if url.rstrip("/").endswith("/chat/completions"):
        root = url.rstrip("/").removesuffix("/chat/completions")
        raise Invalid(
            "base_url",
            f"expected the API root, found the chat endpoint {url!r}; write {root!r} "
            "(glmrun adds /chat/completions, /files and /batches itself)",
        )


def _check_key_env(name: str) -> None:
    """The *name* of the variable holding the key. A value that is not a name is never shown:
    it is often the key itself, pasted into the config."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return
    if name.startswith("$") and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name[1:]):
        raise Invalid("api_key_env", f"write the variable's name without the $: {name[1:]}")
    raise Invalid(
        "api_key_env",
        "expected the name of the environment variable that holds the key (such as "
        "ZHIPUAI_API_KEY), not the key itself (not shown here); remove it from the config and "
        "export ZHIPUAI_API_KEY=... instead",
    )


@dataclass(frozen=True)
class LimitsConfig(Section):
    """``limits:``: requests in flight (a number or ``auto``), per minute, tokens per minute."""

    concurrency: int | Literal["auto"] = 16
    max_concurrency: int = positive(256)
    rpm: int | None = positive(None)
    tpm: int | None = positive(None)

    def __post_init__(self) -> None:
        if self.concurrency != "auto" and self.concurrency < 1:
            raise Invalid(
                "concurrency", f"expected an integer >= 1 or 'auto', found {self.concurrency}"
            )
        super().__post_init__()


@dataclass(frozen=True)
class RetryConfig(Section):
    """``retry:``: attempts per request and the backoff between them."""

    max_attempts: int = positive(5)
    base_delay_s: float = positive(1.0)
    max_delay_s: float = positive(60.0)

    def delay_s(
        self,
        attempt: int,
        rng: random.Random,
        *,
        retry_after_s: float | None = None,
        throttled: bool = False,
    ) -> float:
        """The wait after failed ``attempt`` under these settings (``core.retry.backoff_s``:
        full jitter, Retry-After first)."""
        return backoff_s(
            attempt,
            base_s=self.base_delay_s,
            cap_s=self.max_delay_s,
            rng=rng,
            retry_after_s=retry_after_s,
            throttled=throttled,
        )


@dataclass(frozen=True)
class BatchConfig(Section):
    """``batch:``: when a job goes to the Batch API, how its files are cut, queued, polled and
    collected, and what happens to lines a batch failed."""

    threshold: int = positive(1000)
    max_requests_per_file: int = positive(50_000)
    max_bytes_per_file: int = positive(100 * 1024 * 1024 - 1024 * 1024)
    max_queued: int = positive(10_000)
    shard_max_queued: int | None = positive(None)  # with --shard I/N; absent: max_queued // N
    poll_interval_s: float = 30.0
    max_wait_s: float | None = None
    on_failure: OnFailure = "realtime"
    delete_remote_files: bool = False
    endpoint: str = "/v4/chat/completions"
    completion_window: str = "24h"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_requests_per_file > 50_000:
            raise Invalid(
                "max_requests_per_file",
                f"the API allows at most 50000, found {self.max_requests_per_file}",
            )
        if self.max_bytes_per_file > API_MAX_FILE_BYTES:
            raise Invalid(
                "max_bytes_per_file",
                f"the API allows at most {API_MAX_FILE_BYTES} (100 MB), "
                f"found {self.max_bytes_per_file}",
            )
        if self.poll_interval_s < 0:
            raise Invalid(
                "poll_interval_s", f"expected a number >= 0, found {show(self.poll_interval_s)}"
            )
        if self.max_wait_s is not None and self.max_wait_s < 0:
            raise Invalid("max_wait_s", f"expected a number >= 0, found {show(self.max_wait_s)}")


@dataclass(frozen=True)
class RunConfig(Section):
    """``run:``: the grace period after a signal, and how often records are flushed and progress
    is shown."""

    grace_s: float = positive(10.0)
    flush_interval_s: float = positive(0.5)
    progress_interval_s: float = positive(10.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grace_s > 10:
            raise Invalid("grace_s", f"expected at most 10 seconds, found {show(self.grace_s)}")


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
    """One entry of ``jobs:``: its input, output, model, prompt and parameters, and its route."""

    name: str
    input: str
    output: str | OutputSpec
    model: str
    prompt: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    mode: Mode = "realtime"
    input_format: Literal["auto", "text", "jsonl", "csv"] = "auto"
    csv_url_column: str = "url"
    csv_id_column: str | None = None
    system: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    # set from ``output`` when it is a mapping (OutputSpec); never read from YAML directly
    parse: str = field(default="none", metadata={"internal": True})
    schema: dict[str, Any] | None = field(default=None, metadata={"internal": True})
    schema_file: str | None = field(default=None, metadata={"internal": True})
    # set by ``Config.sharded`` (``run --shard I/N``): this process's part of the job
    shard: Shard | None = field(default=None, metadata={"internal": True})

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", self.name):
            raise Invalid(
                "name",
                f"expected letters, digits, '_', '-' or '.' (at most 64), found {self.name!r}",
            )
        if not self.model.strip():
            raise Invalid("model", "must not be empty")
        if isinstance(self.output, OutputSpec):
            spec = self.output
            object.__setattr__(self, "output", spec.path)
            object.__setattr__(self, "parse", spec.parse)
            object.__setattr__(self, "schema", spec.schema)
            object.__setattr__(self, "schema_file", spec.schema_file)
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
    def main_output_path(self) -> Path:
        """The output the config names (an unsharded run appends here)."""
        return Path(self.output_file)

    @property
    def output_path(self) -> Path:
        """The file this process appends to and locks: the main output, or its shard's file."""
        main = self.main_output_path
        return (
            main if self.shard is None else main.with_name(shard_output_name(main.name, self.shard))
        )

    @property
    def work_dir(self) -> Path:
        """Where batch files and state for this job (or shard) live: beside the output."""
        return self.main_output_path.parent / ".glmrun" / shard_work_name(self.name, self.shard)


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
            raise Invalid(
                "batch_discount", f"expected a factor in (0, 1], found {show(self.batch_discount)}"
            )


@dataclass(frozen=True)
class CostConfig(Section):
    """``cost:``: prices per model for the summary and ``--dry-run``, and the token guesses an
    estimate uses before any record exists."""

    currency: str = "CNY"
    prices: dict[str, PriceConfig] = field(default_factory=dict)
    prompt_tokens_per_image: int = positive(1100)  # dry-run estimate when no records exist yet
    completion_tokens: int = positive(300)  # likewise, per answer

    def price(self, model: str) -> PriceConfig | None:
        """The model's row; names match case-insensitively (proxies spell them their own way)."""
        found = self.prices.get(model)
        if found is None:
            lower = model.lower()
            found = next((p for name, p in self.prices.items() if name.lower() == lower), None)
        return found


@dataclass(frozen=True)
class Config:
    """A whole config file: its jobs and the sections they share."""

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
    api_key: Secret = field(
        default_factory=lambda: Secret(""), metadata={"internal": True}, repr=False
    )

    def __post_init__(self) -> None:
        if not self.jobs:
            raise Invalid("jobs", "expected at least one job")
        seen: set[str] = set()
        outputs: set[str] = set()
        for i, job in enumerate(self.jobs):
            if job.name in seen:
                raise Invalid(f"jobs[{i}].name", f"duplicate job name {job.name!r}")
            if job.output_file in outputs:
                raise Invalid(
                    f"jobs[{i}].output",
                    f"two jobs write to {job.output_file}; give each its own output",
                )
            seen.add(job.name)
            outputs.add(job.output_file)

    def sharded(self, shard: Shard | None) -> Config:
        """This config as shard ``shard`` runs it: each job writes its shard's file and work
        folder, and the batch queue limit (per account and model) is split across the shards."""
        if shard is None:
            return self
        queued = self.batch.shard_max_queued or shard_max_queued(self.batch.max_queued, shard)
        return dataclasses.replace(
            self,
            jobs=[dataclasses.replace(job, shard=shard) for job in self.jobs],
            batch=dataclasses.replace(self.batch, max_queued=queued),
        )

    def select(self, name: str | None) -> list[JobConfig]:
        """The jobs a command works on: the one named (``--job``), else all of them."""
        return [self.job(name)] if name else list(self.jobs)

    def one_job(self, name: str | None) -> JobConfig:
        """The one job a single-job command (``bench``) works on: named, or the only one."""
        if name or len(self.jobs) == 1:
            return self.job(name) if name else self.jobs[0]
        names = ", ".join(j.name for j in self.jobs)
        raise ConfigError(f"{self.path}: several jobs ({names}); choose one with --job")

    def job(self, name: str) -> JobConfig:
        for job in self.jobs:
            if job.name == name:
                return job
        names = [j.name for j in self.jobs]
        from difflib import get_close_matches  # only for this error

        close = get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"{self.path}: no job named {name!r} ({hint}jobs: {', '.join(names)})")
