"""Finding a file or batch whose creating call's answer was lost (a crash, a timeout).

The state file says ``Uploading``/``Creating`` with ``checked=False``: the call may have reached
the API. Before sending it again the driver lists files (by the upload's unique name) or batches
(by id, input file id or glmrun's metadata); ``NotFound`` means it is safe to send. The same
listing confirms a poll's 404 (``Running(checked=False)``) and tells ``glmrun batches cancel``
whether a chunk caught mid-create has a batch. A failed list call raises ``ApiFailure``: the
caller retries it like any control-plane call, it never counts as "not found".
"""

from __future__ import annotations

import logging

from runner.api.protocol import BatchClient
from runner.core.batch_names import OUTPUT_KEY
from runner.core.batch_states import BatchSeen, BatchView, FileSeen, NotFound, Observation

log = logging.getLogger(__name__)

LOOKUP_PAGES = 10  # list pages (of 100) scanned to find a batch whose create answer was lost


async def find_upload(client: BatchClient, name: str, job_name: str) -> Observation:
    after = None
    for _ in range(LOOKUP_PAGES):
        params = {"purpose": "batch", "limit": 100, **({"after": after} if after else {})}
        page = await client.request_json("GET", "/files", params=params)
        data = page.get("data") or []
        for f in data:
            if f.get("filename") == name:
                log.info(
                    "found an upload whose answer was lost",
                    extra={"job": job_name, "file_id": f.get("id")},
                )
                return FileSeen(str(f["id"]))
        if not data or not page.get("has_more"):
            break
        after = data[-1].get("id")
    return NotFound()


async def find_batch(
    client: BatchClient,
    file_id: str | None,
    meta: dict[str, str],
    job_name: str,
    batch_id: str | None = None,
) -> Observation:
    """``BatchSeen`` for the batch with this id, input file or metadata, else ``NotFound``."""
    after = None
    for _ in range(LOOKUP_PAGES):
        page = await client.list_batches(after=after, limit=100)
        data = page.get("data") or []
        for b in data:
            view = BatchView.parse(b)
            if (
                (batch_id is not None and view.id == batch_id)
                or (file_id is not None and view.input_file_id == file_id)
                or (view.metadata and _meta_matches(view.metadata, meta))
            ):
                log.info(
                    "found the batch in the account's list",
                    extra={"job": job_name, "batch_id": view.id},
                )
                return BatchSeen(view)
        if not data or not page.get("has_more"):
            break
        after = page.get("last_id") or data[-1].get("id")
    return NotFound()


def _meta_matches(found: dict[str, object], meta: dict[str, str]) -> bool:
    """Every key of ``meta`` has its value in ``found``; a batch made before glmrun noted the
    output in its metadata matches without it."""
    return all(found.get(k) == v for k, v in meta.items() if k != OUTPUT_KEY or k in found)
