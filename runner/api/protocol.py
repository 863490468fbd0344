"""The calls an engine makes on the API client, as Protocols: engines are typed against these,
not against the aiohttp client.

``GlmClient`` (runner/api/glm.py) satisfies them; its methods raise ``ApiFailure`` for a
non-2xx answer or a transport error. So far the batch driver uses one (``BatchClient``); the
realtime engine still takes ``GlmClient`` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol


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


if TYPE_CHECKING:
    from runner.api.glm import GlmClient

    def _glm_is_a_batch_client(client: GlmClient) -> BatchClient:
        return client  # mypy --strict (tests/test_typing.py) fails here if the two drift apart
