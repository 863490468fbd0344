"""The simulator's knobs and counters: `SimSettings` (with the fault names it accepts and the
coercion of YAML/JSON values onto it) and `SimStats`, what a test reads back.

A knob that is misspelled or of the wrong type fails when the simulator starts (or when
`/_sim/settings` is posted), never silently mid-run: a fault that is quietly ignored makes a
test lie.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# url_faults: per URL, a list of faults its next requests get, in order. Errors ("500", "429",
# "1301", ...) answer with the GLM error body; "502"/"503"/"504" with a proxy's HTML page;
# "429noretry" is a 429 without Retry-After; "error200" a 200 whose body is an error object
# (code 1234); "trickle" a valid answer sent slowly (trickle_s); "drop" closes the socket;
# "hang" never answers (until hang_s); "badjson" / "nochoices" are broken 200 bodies.
URL_FAULTS = frozenset(
    {
        "500",
        "429",
        "1301",
        "1113",
        "1261",
        "1210",
        "401",
        "drop",
        "hang",
        "badjson",
        "nochoices",
        "sensitive",
        "network_error",
        "length",
        "502",
        "503",
        "504",
        "429noretry",
        "error200",
        "trickle",
    }
)
BATCH_LINE_FAULTS = frozenset({"500", "1301", "missing", "duplicate"})
BATCH_FINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})

# (HTTP status, business code, message) for scripted error answers.
ERRORS: dict[str, tuple[int, str, str]] = {
    "500": (500, "500", "Internal error (simulated)"),
    "429": (429, "1302", "High concurrency usage of this API, please reduce concurrency"),
    "1301": (400, "1301", "System detected potentially unsafe or sensitive content"),
    "1113": (429, "1113", "Your account is in arrears, please recharge"),
    "1261": (400, "1261", "Prompt exceeds max length"),
    "1210": (400, "1210", "Invalid API parameters, please check the documentation"),
    "401": (401, "1000", "Authentication failed"),
}
# Gateway errors come from a proxy in front of the API: an HTML page, no GLM error body.
GATEWAY = {
    "502": "Bad Gateway",
    "503": "Service Temporarily Unavailable",
    "504": "Gateway Time-out",
}
ANSWER_FIELDS = frozenset({"content", "reasoning_content", "finish_reason", "content_filter"})


@dataclass
class SimSettings:
    """Mutable knobs; every default is fast and fault-free."""

    latency_mean_s: float = 0.01
    latency_spread_s: float = 0.0
    max_in_flight: int | None = None
    limit_schedule: list[tuple[float, int | None]] = field(default_factory=list)
    error_500_rate: float = 0.0
    error_429_rate: float = 0.0
    retry_after_s: float | None = None
    drop_rate: float = 0.0
    hang_rate: float = 0.0
    hang_s: float = 3600.0
    trickle_s: float = 1.0  # url_faults "trickle": a whole answer sent in 16 pieces over this long
    bad_json_rate: float = 0.0
    no_choices_rate: float = 0.0
    seed: int = 0
    url_faults: dict[str, list[str]] = field(default_factory=dict)
    require_key: str | None = None
    completion_tokens: int = 20
    batch_validating_s: float = 0.05
    batch_in_progress_s: float = 0.1
    batch_finalizing_s: float = 0.05
    batch_final_status: str = "completed"
    batch_partial_fraction: float = 0.5
    batch_line_failure_rate: float = 0.0
    batch_line_faults: dict[str, str] = field(default_factory=dict)
    request_counts_shape: str = "nested"
    error_envelope: str = "zhipu"
    # url -> fields of the answer for that first URL: content (str or list of parts),
    # reasoning_content, finish_reason, content_filter (glm-api.md §2.2 shapes)
    url_answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # signed-token auth (glm-api.md §1): the "<id>.<secret>" key whose JWTs are accepted
    require_jwt: str | None = None
    expire_tokens: int = 0  # the next N JWT-authenticated requests answer 1003 (token expired)
    keep_bodies: bool = False  # keep every chat body (and its Authorization header) in stats.bodies
    # files/batches calls answered with an error or with their answer lost (simulator/faults.py)
    control_faults: list[dict[str, Any]] = field(default_factory=list)

    def validate(self) -> None:
        """Reject typos in fault names up front: a silently ignored fault makes a test lie."""
        for url, faults in self.url_faults.items():
            for fault in faults:
                if fault not in URL_FAULTS:
                    raise ValueError(f"url_faults[{url!r}]: unknown fault {fault!r}")
        for url, fault in self.batch_line_faults.items():
            if fault not in BATCH_LINE_FAULTS:
                raise ValueError(f"batch_line_faults[{url!r}]: unknown fault {fault!r}")
        if self.batch_final_status not in BATCH_FINAL_STATUSES:
            raise ValueError(f"batch_final_status: unknown status {self.batch_final_status!r}")
        if self.request_counts_shape not in ("nested", "flat"):
            raise ValueError(
                f"request_counts_shape: expected nested|flat, found {self.request_counts_shape!r}"
            )
        for url, answer in self.url_answers.items():
            unknown = set(answer) - ANSWER_FIELDS
            if unknown:
                raise ValueError(f"url_answers[{url!r}]: unknown field(s) {sorted(unknown)}")
        from runner.simulator.faults import ControlFault

        for rule in self.control_faults:
            ControlFault.parse(rule)
        if self.error_envelope not in ("zhipu", "openai"):
            raise ValueError(
                f"error_envelope: expected zhipu|openai, found {self.error_envelope!r}"
            )


_SETTING_TYPES = {f.name: str(f.type) for f in dataclasses.fields(SimSettings)}
_SCALARS: dict[str, Callable[[Any], Any]] = {"float": float, "int": int, "str": str}
# what the knobs that are no scalar take, for the message when a value has another shape
_SHAPES = {
    "limit_schedule": "a list of [seconds, limit] pairs",
    "url_faults": "a mapping of URL to a list of faults",
    "batch_line_faults": "a mapping of URL to a fault",
    "url_answers": "a mapping of URL to an answer's fields",
    "control_faults": "a list of mappings",
}


def _coerce(key: str, value: Any) -> Any:
    """Convert a YAML/JSON value to the field's type, so a bad knob fails at start, not mid-run."""
    kind = _SETTING_TYPES[key]
    if kind.endswith(" | None"):
        if value is None:
            return None
        kind = kind.removesuffix(" | None")
    if kind in _SCALARS:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"{key}: expected {kind}, found {value!r}")
        return _SCALARS[kind](value)
    if key == "limit_schedule":
        return [(float(t), None if n is None else int(n)) for t, n in value]
    entry = {"url_faults": list, "batch_line_faults": str, "url_answers": dict}.get(key)
    if entry is not None and (
        not isinstance(value, dict) or not all(isinstance(v, entry) for v in value.values())
    ):
        raise TypeError(f"{key}: expected {_SHAPES[key]}, found {value!r}")
    if key == "url_faults":
        return {str(u): [str(f) for f in fs] for u, fs in value.items()}
    if key == "batch_line_faults":
        return {str(u): str(f) for u, f in value.items()}
    if key == "control_faults":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise TypeError(f"{key}: expected a list of mappings, found {value!r}")
        return [dict(r) for r in value]
    return value


def merge_settings(settings: SimSettings, d: Mapping[str, Any]) -> None:
    """Apply a JSON-ish mapping onto settings in place; unknown keys are errors."""
    for key in d:
        if key not in _SETTING_TYPES:
            close = difflib.get_close_matches(str(key), list(_SETTING_TYPES), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"{key}: unknown simulator setting{hint}")
    converted = {}
    for key, value in d.items():
        try:
            converted[key] = _coerce(key, value)
        except (TypeError, ValueError, AttributeError) as exc:
            kind = _SETTING_TYPES[key].removesuffix(" | None")
            scalar = {"float": "a number", "int": "an integer", "str": "a string"}.get(kind)
            expected = scalar or _SHAPES.get(key)
            if expected is None:
                raise ValueError(f"{key}: cannot use {value!r} ({exc})") from None
            raise ValueError(f"{key}: expected {expected}, found {value!r}") from None
    for key, value in converted.items():
        setattr(settings, key, value)
    settings.validate()


def settings_from_dict(d: Mapping[str, Any]) -> SimSettings:
    """Build settings from config/JSON; an unknown key raises ValueError naming it."""
    settings = SimSettings()
    merge_settings(settings, d)
    return settings


@dataclass
class SimStats:
    """Counters a test or benchmark reads back to check what the client really sent.

    `requests` counts API requests only; the `/_sim/*` control endpoints are not traffic.
    `chat_ok` counts full answers (finish_reason "stop"), not scripted 200 faults.
    """

    requests: int = 0
    chat_requests: int = 0
    chat_ok: int = 0
    per_url: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight_seen: int = 0
    throttled: int = 0
    files_uploaded: int = 0
    files_deleted: int = 0
    batches_created: int = 0
    batches_cancelled: int = 0
    batch_lines_received: int = 0
    expired_tokens: int = 0  # 1003 answers given to JWT auth
    bodies: list[dict[str, Any]] = field(default_factory=list)  # chat bodies, with keep_bodies
    # the control plane (simulator/faults.py): calls per kind, faults answered, answers dropped
    calls: Counter[str] = field(default_factory=Counter)
    call_times: list[tuple[str, float]] = field(default_factory=list)  # (kind, sim clock)
    faults_injected: int = 0
    answers_lost: int = 0
    # money: custom_id -> batches created with it; URL -> batch lines that produced an answer
    batch_custom_ids: Counter[str] = field(default_factory=Counter)
    batch_paid: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        """JSON-able copy (counters as plain dicts)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name, value in out.items():
            if isinstance(value, Counter):
                out[name] = dict(value)
        return out
