"""Pure: validate and normalise chat parameters against the API's ranges and the model table.

Used at config load (``params`` of a job) and at plan time (``params`` of a JSONL item), so a
wrong value is one clear message before anything is sent. The SDK's client-side rewrites
(glm-api.md §2.1) are applied here, so glmrun sends what the SDK would: temperature 0 ->
``do_sample: false`` with temperature 0.01; temperature 1 -> 0.99; top_p 1 -> 0.99.

Unknown parameters pass through (the API and proxies grow fields faster than this table)
but are reported as warnings; documented SDK extras (seed, sensitive_word_check, ...) pass
silently.
"""

from __future__ import annotations

import math
from typing import Any

from runner.core.models import ModelCaps, caps_for, did_you_mean

# Set by glmrun itself, per job or per attempt.
RESERVED = {
    "model": "is the job's model key",
    "messages": "is built by glmrun (use prompt / system / messages in the job)",
    "stream": "glmrun reads whole answers; streaming is not supported",
    "request_id": "is set by glmrun, fresh for every attempt (item key + attempt number)",
}
KNOWN = {"temperature", "top_p", "max_tokens", "do_sample", "stop", "user_id", "thinking"}
# Forwarded by the official SDKs; harmless to pass through without a warning.
EXTRAS = {
    "seed",
    "sensitive_word_check",
    "meta",
    "extra",
    "watermark_enabled",
    "reasoning_effort",
    "response_format",
    "tool_stream",
    "tools",
    "tool_choice",
}


class ParamError(ValueError):
    """``key`` is the parameter name; the message says expected and found."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def validate_params(model: str, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Return (normalised params, warnings) or raise ParamError for the first bad value."""
    caps = caps_for(model)
    out: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in params.items():
        if key in RESERVED:
            raise ParamError(key, f"{RESERVED[key]}; remove it from params")
        if key not in KNOWN:
            if key not in EXTRAS:
                hint = did_you_mean(key, KNOWN | EXTRAS)
                warnings.append(
                    f"params.{key}: not a known GLM vision parameter{hint}; passed through as given"
                )
            out[key] = value
            continue
        out[key] = value
    if "temperature" in out:
        _temperature(out)
    if "top_p" in out:
        out["top_p"] = _unit_interval("top_p", out["top_p"], low=0.01)
    if "do_sample" in out and not isinstance(out["do_sample"], bool):
        raise ParamError("do_sample", f"expected true/false, found {out['do_sample']!r}")
    if "max_tokens" in out:
        _max_tokens(out["max_tokens"], caps, model)
    if "stop" in out:
        out["stop"] = _stop(out["stop"])
    if "user_id" in out:
        _user_id(out["user_id"])
    if "thinking" in out:
        _thinking(out["thinking"], caps, model)
    return out, warnings


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError(key, f"expected a number, found {value!r}{_unquote(value)}")
    return float(value)


def _unquote(value: Any, *, integer: bool = False) -> str:
    """`` (text, not a number: write 0.5 without quotes)`` for a number written in quotes."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value.strip())
    except ValueError:
        return ""
    if not math.isfinite(number) or integer and not number.is_integer():
        return ""
    plain = str(int(number)) if number.is_integer() and abs(number) < 1e15 else value.strip()
    return f" (text, not a number: write {plain} without quotes)"


def _two_decimals(key: str, value: float) -> None:
    if abs(round(value, 2) - value) > 1e-9:
        raise ParamError(key, f"the API takes at most two decimals, found {value!r}")


def _temperature(out: dict[str, Any]) -> None:
    value = _number("temperature", out["temperature"])
    if not 0.0 <= value <= 1.0:
        raise ParamError("temperature", f"expected a number in [0, 1], found {value!r}")
    _two_decimals("temperature", value)
    if value <= 0.0:
        # as the SDK does: greedy decoding, and a temperature the API's open interval accepts
        out["do_sample"] = False
        out["temperature"] = 0.01
    elif value >= 1.0:
        out["temperature"] = 0.99
    else:
        out["temperature"] = value


def _unit_interval(key: str, raw: Any, *, low: float) -> float:
    value = _number(key, raw)
    if not 0.0 <= value <= 1.0:
        raise ParamError(key, f"expected a number in [{low}, 1], found {value!r}")
    _two_decimals(key, value)
    return min(max(value, low), 0.99)


def _max_tokens(value: Any, caps: ModelCaps, model: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamError(
            "max_tokens", f"expected an integer, found {value!r}{_unquote(value, integer=True)}"
        )
    if value < 1:
        raise ParamError("max_tokens", f"expected an integer >= 1, found {value}")
    if caps.max_output is not None and value > caps.max_output:
        raise ParamError(
            "max_tokens", f"{model} answers with at most {caps.max_output} tokens, found {value}"
        )


def _stop(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ParamError("stop", f"expected a string or a list of one string, found {value!r}")
    if len(value) > 1:
        raise ParamError("stop", f"the API takes at most one stop word, found {len(value)}")
    return value


def _user_id(value: Any) -> None:
    if not isinstance(value, str) or not 6 <= len(value) <= 128:
        raise ParamError("user_id", f"expected a string of 6 to 128 characters, found {value!r}")


def _thinking(value: Any, caps: ModelCaps, model: str) -> None:
    if (
        not isinstance(value, dict)
        or set(value) != {"type"}
        or value["type"] not in ("enabled", "disabled")
    ):
        raise ParamError(
            "thinking", f"expected {{type: enabled}} or {{type: disabled}}, found {value!r}"
        )
    if not caps.thinking_param:
        raise ParamError("thinking", f"{model} has no thinking mode; remove params.thinking")
    if caps.thinking == "always" and value["type"] == "disabled":
        raise ParamError("thinking", f"{model} always thinks; thinking cannot be disabled")
