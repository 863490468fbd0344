"""Pure: what each GLM vision model accepts, in one table (glm-api.md §2.1, §3).

Looked up by the lower-cased name, but the name itself is never rewritten: proxies spell
models their own way (``GLM-4V-Plus``), so an unknown name gets permissive defaults instead
of an error and the API has the last word.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Thinking = Literal["no", "switchable", "always"]


@dataclass(frozen=True, slots=True)
class ModelCaps:
    """What one GLM vision model accepts: images per request, base64 data, video and its limits,
    thinking, and the largest ``max_tokens``."""

    name: str
    max_images: int  # image_url parts per request
    base64: bool  # accepts base64 image data (local files)
    video: bool
    video_max_mb: int | None  # per video
    video_max_s: int | None  # per video, where documented
    thinking: Thinking
    max_output: int | None  # max_tokens upper bound; None = not documented (context - input)
    system_message: bool
    known: bool = True

    @property
    def thinking_param(self) -> bool:
        """Whether ``thinking: {type: ...}`` may be sent."""
        return self.thinking != "no"


MODELS: dict[str, ModelCaps] = {
    caps.name: caps
    for caps in (
        ModelCaps("glm-4.5v", 50, True, True, 200, None, "switchable", 16384, True),
        ModelCaps("glm-4.1v-thinking-flash", 50, True, True, 200, None, "always", 16384, True),
        ModelCaps("glm-4.1v-thinking-flashx", 50, True, True, 200, None, "always", 16384, True),
        ModelCaps("glm-4v-plus-0111", 5, True, True, 200, None, "no", None, True),
        # older page (D-4V-old): roles user/assistant only, video <= 20 MB and <= 30 s
        ModelCaps("glm-4v-plus", 5, True, True, 20, 30, "no", None, False),
        ModelCaps("glm-4v", 5, True, False, None, None, "no", None, False),
        ModelCaps("glm-4v-flash", 1, False, False, None, None, "no", 1024, True),
    )
}

# Unknown names: the most permissive row, so nothing is refused that the API might accept.
PERMISSIVE = ModelCaps(
    "(unknown)", 50, True, True, 200, None, "switchable", None, True, known=False
)


def caps_for(model: str) -> ModelCaps:
    return MODELS.get(model.strip().lower(), PERMISSIVE)


def base64_alternative(model: str) -> str:
    """Models that take base64, named in the plan-time error for glm-4v-flash."""
    return ", ".join(name for name, caps in MODELS.items() if caps.base64 and name != model)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice (case-insensitive), or ''."""
    names = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(word.lower(), list(names), n=1, cutoff=0.6)
    return f" (did you mean {names[close[0]]!r}?)" if close else ""


def unknown_model(model: str) -> str | None:
    """Why ``model`` is not a known GLM vision model (with a did-you-mean), or None.
    Case-insensitive: ``GLM-4V-Plus`` as proxy docs write it is ``glm-4v-plus``."""
    if model.strip().lower() in MODELS:
        return None
    hint = did_you_mean(model.strip(), MODELS) or f" (known: {', '.join(MODELS)})"
    return f"unknown model {model!r}{hint}"
