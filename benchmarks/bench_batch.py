"""Batch path throughput: building batch files and collecting batch output, in lines per second.

    # 200,000 lines, 3 runs: best and median shown, the best held to the target (exit 1 on a miss)
    python benchmarks/bench_batch.py
    # 2,000 lines, for CI: checks it runs, not the figures
    python benchmarks/bench_batch.py --smoke
    python benchmarks/bench_batch.py --json out.json

Figures:
- build: (key hash, Item) pairs already in memory -> chunk files + sidecars on disk
  (``runner.io.batch_files.build_chunks``, what ``run_batch_job`` does with the pending stream).
- build incl. input: the same, starting from the input file (read_items + iter_pending).
- collect: one downloaded output file (simulator-shaped lines, shuffled) -> records appended
  through a ResultWriter, sidecar read included (``runner.engine.batch.collect_lines``).
- collect, 1 in 100 truncated: the same with every hundredth answer cut short by max_tokens
  (``finish_reason: length``, a line for the full parser), so no block is answers only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

# This checkout's runner, not whichever one is installed (as ``python -m runner`` from the
# checkout does for the other benchmarks): comparing two checkouts must compare their code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.config import JobConfig
from runner.core.items import Item
from runner.core.keys import key_hash
from runner.core.payloads import BodyBuilder
from runner.core.plan import iter_pending
from runner.core.resume import ResumeIndex
from runner.core.stats import JobStats
from runner.engine.batch import CollectResult, collect_lines
from runner.io.batch_files import ChunkWriter, Sidecar, build_chunks, read_sidecar, sidecar_item
from runner.io.inputs import read_items
from runner.io.media import read_media
from runner.io.store import ResultWriter
from runner.simulator import expected_content

BUILD_TARGET = 300_000.0  # issue 12: batch build stays >= 300,000 lines/s
COLLECT_TARGET = 200_000.0  # issue 12: batch collect >= 200,000 lines/s


def make_job(tmp: Path) -> JobConfig:
    return JobConfig(
        name="bench",
        input=str(tmp / "urls.txt"),
        output=str(tmp / "out" / "r.jsonl"),
        model="glm-4v-plus-0111",
        prompt="请描述这张图片中的主要内容和场景",
        params={"temperature": 0.5, "max_tokens": 1024},
    )


def _chunk_writer(job: JobConfig, work: Path) -> ChunkWriter:
    """The batch path's writer with the API's limits (50,000 lines, under 100 MB a file)."""
    return ChunkWriter(
        work,
        BodyBuilder(job, read_media),
        endpoint="/v4/chat/completions",
        max_lines=50_000,
        max_bytes=99 * 1024 * 1024,
    )


def bench_build(job: JobConfig, n: int, work: Path) -> tuple[float, list]:
    urls = [
        f"https://images.example.com/photos/2024/{i:08d}/large.jpg?sig={i * 7919:x}"
        for i in range(n)
    ]
    items = [(key_hash(u), Item(u, u, i + 1)) for i, u in enumerate(urls)]
    t0 = time.perf_counter()
    chunks = list(
        build_chunks(
            items,
            _chunk_writer(job, work),
        )
    )
    elapsed = time.perf_counter() - t0
    assert sum(c.lines for c in chunks) == n
    return n / elapsed, chunks


def bench_build_from_input(job: JobConfig, n: int, work: Path) -> float:
    path = Path(job.input)
    path.write_text(
        "".join(
            f"https://images.example.com/photos/2024/{i:08d}/large.jpg?sig={i * 7919:x}\n"
            for i in range(n)
        )
    )
    t0 = time.perf_counter()
    pending = (
        (h, it) for h, it in iter_pending(read_items(path), ResumeIndex()) if isinstance(it, Item)
    )
    chunks = list(
        build_chunks(
            pending,
            _chunk_writer(job, work),
        )
    )
    elapsed = time.perf_counter() - t0
    assert sum(c.lines for c in chunks) == n
    return n / elapsed


def output_file(ids: Sidecar, batch_id: str, truncated_every: int = 0) -> bytes:
    """A result file shaped like the simulator's (and the docs' example), in shuffled order;
    with ``truncated_every``, every n-th answer has ``finish_reason: length``."""
    lines = []
    for i, (cid, rest) in enumerate(ids.rests().items()):
        url = sidecar_item(rest).url
        body = {
            "id": str(8_700_000_000_000_000_000 + i),
            "request_id": cid,
            "created": 1_731_001_234,
            "model": "glm-4v-plus-0111",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length"
                    if truncated_every and i % truncated_every == 0
                    else "stop",
                    "message": {"role": "assistant", "content": expected_content(url)},
                }
            ],
            "usage": {"prompt_tokens": 1040, "completion_tokens": 20, "total_tokens": 1060},
        }
        lines.append(
            orjson.dumps(
                {"response": {"status_code": 200, "body": body}, "custom_id": cid, "id": batch_id}
            )
        )
    random.Random(1).shuffle(lines)
    return b"\n".join(lines) + b"\n"


def bench_collect(job: JobConfig, chunks: list, work: Path, truncated_every: int = 0) -> float:
    files = [
        (work / c.ids, output_file(read_sidecar(work / c.ids), f"batch_{c.index}", truncated_every))
        for c in chunks
    ]
    job.output_path.unlink(missing_ok=True)
    n = sum(c.lines for c in chunks)
    stats = JobStats("bench")
    writer = ResultWriter(job.output_path)
    builder = BodyBuilder(job, read_media)
    t0 = time.perf_counter()
    for (ids_path, data), c in zip(files, chunks, strict=True):
        ids = read_sidecar(ids_path)
        result = CollectResult()
        collect_lines(data, ids, writer, stats, f"batch_{c.index}", result, None, builder)
        assert result.ok == c.lines
    writer.close()
    elapsed = time.perf_counter() - t0
    assert stats.ok == n
    written = job.output_path.read_bytes().splitlines()  # nothing lost, nothing twice
    assert len(written) == n == len({orjson.loads(line)["url"] for line in written})
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; targets are not enforced")
    parser.add_argument(
        "--lines", type=int, default=None, help="lines per figure (default 200000, smoke 2000)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per figure; the best is reported (default 3)"
    )
    parser.add_argument(
        "--json", dest="json_path", metavar="PATH", help="also write the figures as JSON here"
    )
    args = parser.parse_args()
    n = args.lines or (2_000 if args.smoke else 200_000)
    repeat = 1 if args.smoke else args.repeat
    builds, inputs, collects, mixed = [], [], [], []
    for r in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            job = make_job(tmp)
            rate, chunks = bench_build(job, n, tmp / f"work{r}")
            builds.append(rate)
            inputs.append(bench_build_from_input(job, n, tmp / f"input{r}"))
            collects.append(bench_collect(job, chunks, tmp / f"work{r}"))
            mixed.append(bench_collect(job, chunks, tmp / f"work{r}", truncated_every=100))
    build, build_input, collect = max(builds), max(inputs), max(collects)
    rows = [
        ("build batch files (lines/s)", build, BUILD_TARGET),
        ("collect output (lines/s)", collect, COLLECT_TARGET),
        ("build incl. reading input (lines/s)", build_input, None),
        ("collect, 1 in 100 truncated (lines/s)", max(mixed), None),
    ]
    medians = [statistics.median(runs) for runs in (builds, collects, inputs, mixed)]
    print(
        f"bench_batch: {n} lines, best of {repeat}, python {sys.version.split()[0]}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    print(f"{'figure':40} {'best':>12} {'median':>12} {'target':>10} {'ratio':>7}")
    missed = False
    for (name, value, target), median in zip(rows, medians, strict=True):
        ratio = value / target if target else None
        if target and value < target:
            missed = True
        shown_target = f"{target:10,.0f}" if target else f"{'-':>10}"
        shown_ratio = f"{ratio:7.2f}" if ratio else f"{'-':>7}"
        print(f"{name:40} {value:12,.0f} {median:12,.0f} {shown_target} {shown_ratio}")
    if args.json_path:
        Path(args.json_path).write_text(
            json.dumps(
                {
                    "lines": n,
                    "smoke": args.smoke,
                    "repeat": repeat,
                    "all_runs": {
                        "build": builds,
                        "build_input": inputs,
                        "collect": collects,
                        "collect_truncated": mixed,
                    },
                    "figures": [
                        {
                            "figure": name,
                            "value": round(v, 1),
                            "median": round(m, 1),
                            "target": t,
                            "ratio": round(v / t, 3) if t else None,
                        }
                        for (name, v, t), m in zip(rows, medians, strict=True)
                    ],
                },
                indent=2,
            )
        )
    if missed and not args.smoke:
        print("bench_batch: a target was missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
