"""Token usage per route and cost estimates from the config's price table.

Spent money is summed over every record line that carries ``usage`` (a key retried three
times was billed three times). The dry-run estimate of pending work uses the average usage
of up to ``SAMPLE`` ok records of the job so far, or, when there are none, a per-image
guess (``cost.prompt_tokens_per_image`` per image plus the prompt text, and
``cost.completion_tokens`` per answer). Batch cost is realtime cost times the model's
``batch_discount``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from runner.config.schema import CostConfig, JobConfig, PriceConfig
from runner.core.items import Item
from runner.core.records import Record
from runner.core.templates import media_parts

SAMPLE = 10_000


@dataclass
class Tokens:
    prompt: int = 0
    completion: int = 0
    records: int = 0  # records that carried usage

    def add(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self.prompt += _int(usage.get("prompt_tokens"))
            self.completion += _int(usage.get("completion_tokens"))
            self.records += 1


@dataclass
class UsageTotals:
    by_route: dict[str, Tokens] = field(default_factory=dict)

    def route(self, name: str) -> Tokens:
        tokens = self.by_route.get(name)
        if tokens is None:
            tokens = self.by_route[name] = Tokens()
        return tokens


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _records_with_usage(lines: Iterable[bytes], marker: bytes) -> Iterator[Record]:
    """Records on ``lines`` that carry a ``usage`` object; a line without ``marker`` is
    skipped unparsed (most lines of a big output, cheaply)."""
    for line in lines:
        if marker not in line:
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("usage"), dict):
            yield rec


def usage_from_lines(lines: Iterable[bytes]) -> UsageTotals:
    """Sum usage per route (the record's ``via``) over record lines."""
    totals = UsageTotals()
    for rec in _records_with_usage(lines, b'"usage"'):
        totals.route(str(rec.get("via") or "realtime")).add(rec["usage"])
    return totals


def cost_of(tokens_in: float, tokens_out: float, price: PriceConfig, route: str) -> float:
    cost = tokens_in / 1000 * price.input_per_1k + tokens_out / 1000 * price.output_per_1k
    return cost * price.batch_discount if route == "batch" else cost


def format_usage(usage: dict[str, tuple[int, int]], job: JobConfig, cost: CostConfig) -> str:
    """``realtime 1,000 in / 20 out (0.0100 CNY), batch ...``; cost only when the model has a
    price."""
    price = cost.price(job.model)
    parts = usage_parts(usage, price, cost.currency)
    line = ", ".join(parts) if parts else "none"
    if price is not None and len(parts) > 1:
        total = sum(cost_of(p, c, price, route) for route, (p, c) in usage.items())
        line += f"; total {_money(total, cost.currency)}"
    return line


def usage_parts(usage: Mapping[str, Sequence[int]], price: Any, currency: str) -> list[str]:
    """``realtime 1,000 in / 20 out (0.0100 CNY)`` per route, in ``usage``'s order; the cost
    only with a ``price``."""
    parts = []
    for route, (p, c) in usage.items():
        text = f"{route} {p:,} in / {c:,} out"
        if price is not None:
            text += f" ({_money(cost_of(p, c, price, route), currency)})"
        parts.append(text)
    return parts


# Decimals shown per currency: fixed, so amounts line up and compare; small runs on cheap
# models cost fractions of a fen or cent, hence 4 (yen and won have no minor unit in use).
DECIMALS = {"JPY": 0, "KRW": 0}
DEFAULT_DECIMALS = 4


def format_money(amount: float, currency: str) -> str:
    """``1,234.5678 CNY``: thousands separators, a fixed number of decimals per currency."""
    decimals = DECIMALS.get(currency.upper(), DEFAULT_DECIMALS)
    return f"{amount:,.{decimals}f} {currency}"


_money = format_money


@dataclass(frozen=True)
class Estimate:
    pending: int
    prompt_tokens: float  # per item
    completion_tokens: float
    basis: str  # where the averages come from
    realtime: float | None  # money; None without a price
    batch: float | None


def average_usage(lines: Iterable[bytes], sample: int = SAMPLE) -> tuple[float, float, int] | None:
    """(avg prompt, avg completion, n) over the first ``sample`` ok records with usage."""
    n = p = c = 0
    for rec in _records_with_usage(lines, b'"ok"'):
        if rec.get("status") != "ok":
            continue
        n += 1
        p += _int(rec["usage"].get("prompt_tokens"))
        c += _int(rec["usage"].get("completion_tokens"))
        if n >= sample:
            break
    return (p / n, c / n, n) if n else None


def images_per_item(items: Iterable[Any], sample: int = SAMPLE) -> float:
    """Average media count of the first ``sample`` items (1 for a plain URL line)."""
    n = total = 0
    for item in items:
        if not isinstance(item, Item):
            continue
        n += 1
        total += len(item.images) if item.images else 1
        if n >= sample:
            break
    return total / n if n else 1.0


def estimate(
    job: JobConfig,
    pending: int,
    cost: CostConfig,
    items: Iterable[Any] | None = None,
    records: Iterable[bytes] = (),
) -> Estimate:
    """``records`` (the output's lines) give the averages so far; ``items`` (the job's input)
    refine the no-records guess with the real images per item."""
    avg = average_usage(records)
    if avg is not None:
        p, c, n = avg
        basis = f"average of {n:,} records so far"
    else:
        per_item = images_per_item(items) if items is not None else 1.0
        images = per_item + sum(1 for kind, _ in media_parts(job.messages) if kind == "image_url")
        text = (
            len(job.prompt)
            + len(job.system or "")
            + sum(len(t["content"]) if isinstance(t["content"], str) else 0 for t in job.messages)
        )
        p = images * cost.prompt_tokens_per_image + text / 2
        c = float(
            min(cost.completion_tokens, job.params.get("max_tokens") or cost.completion_tokens)
        )
        basis = (
            f"no records yet: {images:.2g} image{'' if images == 1 else 's'} x "
            f"{cost.prompt_tokens_per_image:,} tokens "
            "per item, "
            f"{int(c)} tokens per answer"
        )
    price = cost.price(job.model)
    rt = bt = None
    if price is not None:
        rt = cost_of(pending * p, pending * c, price, "realtime")
        bt = cost_of(pending * p, pending * c, price, "batch")
    return Estimate(pending, p, c, basis, rt, bt)


def format_estimate(job: JobConfig, est: Estimate, cost: CostConfig) -> str:
    tokens_in, tokens_out = est.pending * est.prompt_tokens, est.pending * est.completion_tokens
    tokens = f"~{tokens_in:,.0f} in / {tokens_out:,.0f} out tokens"
    name = job.name if job.shard is None else f"{job.name} shard {job.shard}"
    head = f"{name}: estimate for {est.pending:,} pending: {tokens} ({est.basis})"
    if est.realtime is None or est.batch is None:
        return f"{head}; no price for {job.model} in cost.prices"
    realtime, batch = _money(est.realtime, cost.currency), _money(est.batch, cost.currency)
    return f"{head}; realtime {realtime} vs batch {batch}"


def in_batches_text(est: Estimate, cost: CostConfig) -> str:
    """Money in flight, for ``status`` and ``--dry-run``: ``10,000 lines in batches not yet
    collected, ~20.6400 CNY at the batch price (estimate: average of 10,000 records so far)``.
    Those lines are billed whatever a run does next; the cost lines counted only what was
    collected, so a job with 100,000 lines in batches read 0.0000 CNY."""
    text = f"{est.pending:,} lines in batches not yet collected"
    if est.batch is not None:
        money = _money(est.batch, cost.currency)
        return f"{text}, ~{money} at the batch price (estimate: {est.basis})"
    tokens = est.pending * (est.prompt_tokens + est.completion_tokens)
    return f"{text}, ~{tokens:,.0f} tokens (estimate: {est.basis})"
