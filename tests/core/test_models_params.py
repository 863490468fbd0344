"""Model capability table and chat-parameter validation (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from runner.core.models import MODELS, PERMISSIVE, caps_for
from runner.core.params import ParamError, validate_params


def test_every_documented_model_has_a_row() -> None:
    """The current and the older vision models are all in the one table."""
    for name in (
        "glm-4.5v",
        "glm-4.1v-thinking-flash",
        "glm-4.1v-thinking-flashx",
        "glm-4v-plus-0111",
        "glm-4v-plus",
        "glm-4v",
        "glm-4v-flash",
    ):
        assert name in MODELS


@pytest.mark.parametrize(
    ("model", "images", "base64", "video"),
    [
        ("glm-4.5v", 50, True, True),
        ("glm-4v-plus-0111", 5, True, True),
        ("glm-4v-plus", 5, True, True),
        ("glm-4v-flash", 1, False, False),
    ],
    ids=["4.5v", "plus-0111", "plus", "flash"],
)
def test_caps_match_glm_api_doc(model: str, images: int, base64: bool, video: bool) -> None:
    """Images per request, base64 and video support follow glm-api.md §3."""
    caps = caps_for(model)
    assert (caps.max_images, caps.base64, caps.video) == (images, base64, video)


def test_unknown_and_proxy_spelled_models_get_permissive_defaults() -> None:
    """A proxy's own spelling is looked up case-insensitively; an unknown name is not an error."""
    assert caps_for("GLM-4V-Flash").max_images == 1
    assert caps_for("my-gateway-vision") is PERMISSIVE
    params, warnings = validate_params(
        "my-gateway-vision", {"max_tokens": 60000, "thinking": {"type": "enabled"}}
    )
    assert params["max_tokens"] == 60000 and not warnings


GOOD: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("glm-4v-plus-0111", {"temperature": 0}, {"temperature": 0.01, "do_sample": False}),
    ("glm-4v-plus-0111", {"temperature": 1}, {"temperature": 0.99}),
    ("glm-4v-plus-0111", {"temperature": 0.25}, {"temperature": 0.25}),
    ("glm-4v-plus-0111", {"top_p": 1.0}, {"top_p": 0.99}),
    ("glm-4v-plus-0111", {"top_p": 0}, {"top_p": 0.01}),
    ("glm-4.5v", {"max_tokens": 16384}, {"max_tokens": 16384}),
    ("glm-4v-flash", {"max_tokens": 1024}, {"max_tokens": 1024}),
    ("glm-4v", {"do_sample": False}, {"do_sample": False}),
    ("glm-4v", {"stop": "END"}, {"stop": ["END"]}),
    ("glm-4v", {"stop": ["END"]}, {"stop": ["END"]}),
    ("glm-4v", {"user_id": "abcdef"}, {"user_id": "abcdef"}),
    ("glm-4.5v", {"thinking": {"type": "disabled"}}, {"thinking": {"type": "disabled"}}),
    (
        "glm-4.1v-thinking-flash",
        {"thinking": {"type": "enabled"}},
        {"thinking": {"type": "enabled"}},
    ),
]


@pytest.mark.parametrize(
    ("model", "given", "sent"),
    GOOD,
    ids=[f"{m}-{next(iter(g))}-{i}" for i, (m, g, _) in enumerate(GOOD)],
)
def test_valid_params_are_normalised_as_the_sdk_does(
    model: str, given: dict[str, Any], sent: dict[str, Any]
) -> None:
    """Valid values pass; temperature 0 becomes do_sample false, 1 becomes 0.99, stop a list."""
    params, warnings = validate_params(model, given)
    assert params == sent and warnings == []


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("glm-4v", {"temperature": 1.5}, "temperature", "[0, 1]"),
    ("glm-4v", {"temperature": 0.123}, "temperature", "two decimals"),
    ("glm-4v", {"temperature": "hot"}, "temperature", "a number"),
    ("glm-4v", {"top_p": -0.1}, "top_p", "[0.01, 1]"),
    ("glm-4v", {"top_p": 0.555}, "top_p", "two decimals"),
    ("glm-4v-flash", {"max_tokens": 2048}, "max_tokens", "at most 1024"),
    ("glm-4.5v", {"max_tokens": 16385}, "max_tokens", "at most 16384"),
    ("glm-4v", {"max_tokens": 0}, "max_tokens", ">= 1"),
    ("glm-4v", {"max_tokens": 1.5}, "max_tokens", "an integer"),
    ("glm-4v", {"max_tokens": "100"}, "max_tokens", "found '100' (text, not a number: write 100 "),
    ("glm-4v", {"max_tokens": "1.5"}, "max_tokens", "an integer, found '1.5'"),
    ("glm-4v", {"temperature": "0.5"}, "temperature", "write 0.5 without quotes"),
    ("glm-4v", {"do_sample": "no"}, "do_sample", "true/false"),
    ("glm-4v", {"stop": ["a", "b"]}, "stop", "at most one"),
    ("glm-4v", {"user_id": "abc"}, "user_id", "6 to 128"),
    ("glm-4v", {"user_id": "x" * 129}, "user_id", "6 to 128"),
    ("glm-4v-plus-0111", {"thinking": {"type": "enabled"}}, "thinking", "no thinking mode"),
    ("glm-4.5v", {"thinking": {"type": "auto"}}, "thinking", "enabled"),
    ("glm-4.1v-thinking-flashx", {"thinking": {"type": "disabled"}}, "thinking", "always thinks"),
    ("glm-4v", {"request_id": "x"}, "request_id", "fresh for every attempt"),
    ("glm-4v", {"stream": True}, "stream", "streaming"),
    ("glm-4v", {"messages": []}, "messages", "built by glmrun"),
]


@pytest.mark.parametrize(
    ("model", "given", "key", "words"), BAD, ids=[f"{k}-{i}" for i, (_, _, k, _) in enumerate(BAD)]
)
def test_out_of_range_params_are_refused_with_the_key(
    model: str, given: dict[str, Any], key: str, words: str
) -> None:
    """Each out-of-range value raises a ParamError naming the parameter and what was expected."""
    with pytest.raises(ParamError) as info:
        validate_params(model, given)
    assert info.value.key == key and words in str(info.value)


def test_unknown_params_pass_through_with_a_warning_and_sdk_extras_silently() -> None:
    """A parameter glmrun does not know is sent as given and warned about; SDK extras are not."""
    params, warnings = validate_params("glm-4v", {"frequency_penalty": 0.5, "seed": 7})
    assert params == {"frequency_penalty": 0.5, "seed": 7}
    assert len(warnings) == 1 and "frequency_penalty" in warnings[0]


def test_price_lookup_ignores_case() -> None:
    """cost.prices rows match the job's model name case-insensitively."""
    from runner.config import CostConfig, PriceConfig

    cost = CostConfig(prices={"GLM-4V-Plus": PriceConfig(0.01, 0.01)})
    assert cost.price("glm-4v-plus") is not None and cost.price("glm-4v") is None


def test_a_quoted_fraction_for_max_tokens_gets_no_unquote_hint() -> None:
    """'1.5' without its quotes would still be wrong for max_tokens, and 'nan' is no number
    either way: no hint that says otherwise."""
    with pytest.raises(ParamError) as info:
        validate_params("glm-4v", {"max_tokens": "1.5"})
    assert str(info.value) == "expected an integer, found '1.5'"
    with pytest.raises(ParamError) as info:
        validate_params("glm-4v", {"temperature": "nan"})
    assert str(info.value) == "expected a number, found 'nan'"
