"""The batches API (create, retrieve, list, cancel): each batch's lifecycle as a function of
the clock, and its output and error files, written once it reaches finalizing.

A batch snapshots its lifecycle knobs (durations, final status, per-line outcomes) when it
is created, so changing settings later does not rewrite a running batch. Lists are newest
first; `after` is the id of the last item of the previous page, as in the OpenAI-style API.
With `state_dir` each batch is saved on every change, so it survives a restart.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from runner.simulator.completions import build_completion, extract
from runner.simulator.files import FileStore
from runner.simulator.replies import ApiError, json_response, page
from runner.simulator.settings import ERRORS
from runner.simulator.state import SimState, atomic_write

_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_TIMESTAMPS = (
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
)
# A batch's status, its progress in [0, 1] and the start offset of each phase it has reached.
Status = tuple[str, float, dict[str, float]]


class BatchesApi:
    """Handlers for /batches plus the stored batches; input and results live in `files`."""

    def __init__(self, state: SimState, files: FileStore) -> None:
        self.state = state
        self.files = files
        self.batches: dict[str, dict[str, Any]] = {}
        self.folder = state.state_dir / "batches" if state.state_dir is not None else None

    # -- handlers --------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            if not isinstance(body, dict):
                raise ApiError(400, "1214", "Request body is not a JSON object")
            batch = self._new_batch(body)
        except orjson.JSONDecodeError:
            raise ApiError(400, "1214", "Request body is not JSON") from None
        self.state.stats.batches_created += 1
        self.state.stats.batch_custom_ids.update(line[0] for line in batch["lines"])
        return json_response(self._view(batch))

    async def get_batch(self, request: web.Request) -> web.Response:
        return json_response(self._view(self._get(request.match_info["batch_id"])))

    async def cancel(self, request: web.Request) -> web.Response:
        """Cancelling lasts batch_finalizing_s, then the first partial fraction has results."""
        batch = self._get(request.match_info["batch_id"])
        status, _, _ = self._refresh(batch)
        if status in ("validating", "in_progress"):
            batch["cancel_t"] = self.state.clock()
            self._save(batch)
            self.state.stats.batches_cancelled += 1
        return json_response(self._view(batch))

    async def list_batches(self, request: web.Request) -> web.Response:
        """Newest first; `after` is the last id of the previous page."""
        items = sorted(self.batches.values(), key=lambda b: int(b["id"][6:]), reverse=True)
        found, has_more = page(items, request.query)
        data = [self._view(b) for b in found]
        return json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": has_more,
            }
        )

    # -- the stored batch ------------------------------------------------------------

    def _get(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise ApiError(404, "1214", f"batch {batch_id} not found")
        return batch

    def _new_batch(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create the stored batch record, fixing every line's fate now (seeded, reproducible)."""
        endpoint = body.get("endpoint")
        if endpoint not in ("/v4/chat/completions", "/v1/chat/completions"):
            raise ApiError(400, "1214", f"endpoint: unsupported value {endpoint!r}")
        input_id = body.get("input_file_id")
        if not isinstance(input_id, str) or input_id not in self.files.meta:
            raise ApiError(404, "1214", f"input_file_id {input_id!r} not found")
        s = self.state.settings
        lines: list[list[Any]] = []
        model = None
        for raw in self.files.contents[input_id].splitlines():
            if not raw.strip():
                continue
            line = orjson.loads(raw)
            line_body = line.get("body") or {}
            model = model or line_body.get("model")
            urls, text_len = extract(line_body)
            fate = s.batch_line_faults.get(urls[0] if urls else "")
            if fate is None:
                fate = "ok"
                if (
                    s.batch_line_failure_rate
                    and self.state.rng.random() < s.batch_line_failure_rate
                ):
                    fate = "500"
            rid = line_body.get("request_id")
            lines.append([line["custom_id"], fate, urls, text_len, rid])
        now_wall = int(time.time())
        last_num = max((int(b[6:]) for b in self.batches), default=0)
        batch_id = f"batch_{max(time.time_ns(), last_num + 1)}"
        metadata = body.get("metadata")
        batch: dict[str, Any] = {
            "id": batch_id,
            "endpoint": endpoint,
            "input_file_id": input_id,
            "completion_window": body.get("completion_window"),
            "metadata": metadata if isinstance(metadata, dict) else None,
            "auto_delete_input_file": body.get("auto_delete_input_file", True) is not False,
            "created_at": now_wall,
            "t0": self.state.clock(),
            "durations": [s.batch_validating_s, s.batch_in_progress_s, s.batch_finalizing_s],
            "final_status": s.batch_final_status,
            "partial_fraction": s.batch_partial_fraction,
            "model": model,
            "lines": lines,
            "cancel_t": None,
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "materialized": False,
            "input_deleted": False,
        }
        self.batches[batch_id] = batch
        self._save(batch)
        return batch

    def _save(self, batch: Mapping[str, Any]) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.folder / f"{batch['id']}.json", orjson.dumps(batch))

    def load(self) -> None:
        """Pick up the batches a previous process left in state_dir."""
        if self.folder is None:
            return
        for batch_path in sorted(self.folder.glob("*.json")):
            batch = orjson.loads(batch_path.read_bytes())
            self.batches[batch["id"]] = batch

    # -- lifecycle -------------------------------------------------------------------

    @staticmethod
    def _status(batch: Mapping[str, Any], now: float) -> Status:
        """Lifecycle status at clock time `now`."""
        v, p, f = batch["durations"]
        elapsed = now - batch["t0"]
        final = batch["final_status"]
        cancel_t = batch["cancel_t"]
        if cancel_t is not None:
            at = {"cancelling": cancel_t - batch["t0"]}
            if elapsed >= at["cancelling"] + f:
                at["cancelled"] = at["cancelling"] + f
                return "cancelled", 1.0, at
            return "cancelling", 1.0, at
        if elapsed < v:
            return "validating", 0.0, {}
        if final == "failed":
            return "failed", 0.0, {"failed": v}
        at = {"in_progress": v}
        if elapsed < v + p:
            return "in_progress", (elapsed - v) / p if p > 0 else 1.0, at
        at["finalizing"] = v + p
        if elapsed < v + p + f:
            return "finalizing", 1.0, at
        at[final] = v + p + f
        return final, 1.0, at

    def _refresh(self, batch: dict[str, Any]) -> Status:
        """Compute the status and, the first time it allows, write the result files."""
        status, progress, at = self._status(batch, self.state.clock())
        changed = False
        if not batch["materialized"] and status in ("finalizing", *_TERMINAL):
            self._materialize(batch, status)
            changed = True
        if status in _TERMINAL and batch["auto_delete_input_file"] and not batch["input_deleted"]:
            self.files.remove(batch["input_file_id"])
            batch["input_deleted"] = True
            changed = True
        if changed:
            self._save(batch)
        return status, progress, at

    @staticmethod
    def _processed(batch: Mapping[str, Any]) -> list[list[Any]]:
        """Lines that got a result: all, or the first fraction for expired/cancelled."""
        lines: list[list[Any]] = batch["lines"]
        if batch["cancel_t"] is not None or batch["final_status"] in ("expired", "cancelled"):
            return lines[: int(len(lines) * batch["partial_fraction"])]
        return lines

    # -- results ---------------------------------------------------------------------

    def _materialize(self, batch: dict[str, Any], status: str) -> None:
        batch["materialized"] = True
        if status == "failed":
            batch["errors"] = {
                "object": "list",
                "data": [
                    {
                        "code": "1210",
                        "line": 1,
                        "param": None,
                        "message": "Batch input file failed validation (simulated)",
                    }
                ],
            }
            return
        out: list[bytes] = []
        err: list[bytes] = []
        for cid, fate, urls, text_len, rid in self._processed(batch):
            if fate in ("ok", "duplicate"):
                self.state.stats.batch_paid[urls[0] if urls else cid] += 1
                body = {"model": batch["model"], "request_id": rid}
                line = {
                    "response": {
                        "status_code": 200,
                        "body": build_completion(self.state, body, urls, text_len),
                    },
                    "custom_id": cid,
                    "id": batch["id"],
                }
                out.append(orjson.dumps(line))
                if fate == "duplicate":
                    line["response"]["body"] = build_completion(self.state, body, urls, text_len)
                    out.append(orjson.dumps(line))
            elif fate in ERRORS:
                err.append(orjson.dumps(self._error_line(batch["id"], cid, fate)))
        self.state.rng.shuffle(out)
        batch["output_file_id"] = self._result_file(batch["id"], "output", out)
        batch["error_file_id"] = self._result_file(batch["id"], "error", err)

    def _result_file(self, batch_id: str, kind: str, lines: list[bytes]) -> str | None:
        """Store result lines as `<batch>_<kind>.jsonl`; no lines, no file."""
        if not lines:
            return None
        meta = self.files.add(b"\n".join(lines) + b"\n", f"{batch_id}_{kind}.jsonl", "batch")
        return str(meta["id"])

    def _error_line(self, batch_id: str, custom_id: str, fate: str) -> dict[str, Any]:
        status, code, message = ERRORS[fate]
        if self.state.settings.error_envelope == "openai":
            return {
                "custom_id": custom_id,
                "id": batch_id,
                "error": {"code": code, "message": message},
                "response": None,
            }
        return {
            "response": {
                "status_code": status,
                "body": {"error": {"code": code, "message": message}},
            },
            "custom_id": custom_id,
            "id": batch_id,
        }

    # -- the public object -------------------------------------------------------------

    def _counts(self, batch: Mapping[str, Any], status: str, progress: float) -> dict[str, int]:
        lines = batch["lines"]
        if status in ("validating", "failed"):
            return {"total": len(lines), "completed": 0, "failed": 0}
        processed = self._processed(batch)
        ok = sum(1 for line in processed if line[1] in ("ok", "duplicate"))
        bad = sum(1 for line in processed if line[1] in ERRORS)
        return {
            "total": len(lines),
            "completed": math.floor(ok * progress),
            "failed": math.floor(bad * progress),
        }

    def _view(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The public batch object (glm-api.md §5.3) at the current clock time."""
        status, progress, at = self._refresh(batch)
        created = batch["created_at"]
        view: dict[str, Any] = {
            "id": batch["id"],
            "object": "batch",
            "endpoint": batch["endpoint"],
            "input_file_id": batch["input_file_id"],
            "completion_window": batch["completion_window"],
            "status": status,
            "output_file_id": batch["output_file_id"],
            "error_file_id": batch["error_file_id"],
            "created_at": created,
            "expires_at": created + 86400,
        }
        for name in _TIMESTAMPS:
            offset = at.get(name)
            view[f"{name}_at"] = None if offset is None else created + round(offset)
        counts = self._counts(batch, status, progress)
        if self.state.settings.request_counts_shape == "flat":
            view.update(counts)
        else:
            view["request_counts"] = counts
        view["errors"] = batch["errors"]
        view["metadata"] = batch["metadata"]
        return view
