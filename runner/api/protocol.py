"""The calls the engines make on the API client, as Protocols: engines are typed against
these, not against the aiohttp client, so a test (or another OpenAI-compatible provider) can
hand them anything that answers the same calls.

``GlmClient`` (runner/api/glm.py) satisfies them; its methods raise ``ApiFailure`` for a
non-2xx answer or a transport error. The realtime engine needs ``ChatClient``, the batch
driver ``BatchClient``, and a batch job with a realtime fallback both (``ApiClient``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol


class ChatClient(Protocol):
    """The one call the realtime engine makes: a chat completion from a rendered body."""

    async def chat(self, body: bytes) -> dict[str, Any]: ...


class BatchClient(Protocol):
    """The files and batches calls the batch driver makes."""

    async def request_json(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> Any: ...

    async def upload_file(
        self, filename: str, content: bytes, purpose: str = "batch"
    ) -> dict[str, Any]: ...

    async def file_content(self, file_id: str) -> bytes: ...

    async def delete_file(self, file_id: str) -> dict[str, Any]: ...

    async def create_batch(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def get_batch(self, batch_id: str) -> dict[str, Any]: ...

    async def list_batches(
        self, *, after: str | None = None, limit: int = 20
    ) -> dict[str, Any]: ...


class ApiClient(ChatClient, BatchClient, Protocol):
    """Both: what a batch job with ``on_failure: realtime`` is given."""


if TYPE_CHECKING:
    from runner.api.glm import GlmClient

    def _glm_is_an_api_client(client: GlmClient) -> ApiClient:
        return client  # mypy --strict (tests/test_typing.py) fails here if the two drift apart
