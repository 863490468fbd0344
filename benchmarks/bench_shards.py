"""N glmrun shards with ``concurrency: auto`` sharing one account (one simulator, hidden cap).

Each shard is its own process (``glmrun run --shard I/N``) with its own adaptive controller;
they do not talk to each other, only to the simulator, which answers 429 above its hidden
``max_in_flight``. Every shard's output is polled while they run; the figures are taken over
the window in which all N are sending (from ``warmup_s`` after the last one wrote its first
record until the first one finishes), so the start-up and the tail of a lone shard do not count:

- combined: results/s of all shards together, as a fraction of capacity (cap / latency);
- share: each shard's results/s relative to the mean of the shards (1.0 = a fair share);
- throttled: 429 answers / requests over the whole run (from the simulator), and within the
  window alone (the steady state, without the four slow starts).

    python benchmarks/bench_shards.py [--n 2400] [--shards 4]     # alone, prints JSON
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PY, REPO, SimProcess, count_output, write_config, write_urls


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def measure(
    tmp: Path,
    *,
    n: int,
    shards: int = 4,
    cap: int = 16,
    latency_s: float = 0.2,
    warmup_s: float = 3.0,
    poll_s: float = 0.25,
) -> dict[str, Any]:
    capacity = cap / latency_s
    with SimProcess(latency_mean_s=latency_s, max_in_flight=cap) as sim:
        urls = write_urls(tmp / "urls.txt", n)
        out = tmp / "out" / "shared.jsonl"
        cfg = write_config(
            tmp / "c.yaml",
            sim.base_url,
            input=str(urls),
            output=str(out),
            limits={"concurrency": "auto", "max_concurrency": 256},
        )
        files = [out.with_name(f"shared.shard-{i}-of-{shards}.jsonl") for i in range(shards)]
        sim.reset()
        env = {**os.environ, "ZHIPUAI_API_KEY": "bench"}
        procs = [
            subprocess.Popen(
                [PY, "-m", "runner", "run", str(cfg), "-q", "--shard", f"{i}/{shards}"],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(shards)
        ]
        samples: list[tuple[float, list[int], list[bool]]] = []
        throttles: list[tuple[int, int]] = []  # (throttled, requests) at each sample
        t0 = time.monotonic()
        while True:
            running = [p.poll() is None for p in procs]
            samples.append((time.monotonic() - t0, [_lines(f) for f in files], running))
            st = sim.stats()
            throttles.append((st["throttled"], st["chat_requests"]))
            if not any(running):
                break
            if time.monotonic() - t0 > 600:
                for p in procs:
                    p.kill()
                raise RuntimeError("shards did not finish in 600 s")
            time.sleep(poll_s)
        errors = [p.stderr.read() if p.stderr else "" for p in procs]
        codes = [p.wait() for p in procs]
        stats = sim.stats()
    if any(codes):
        raise RuntimeError(f"a shard failed: {codes} {errors}")
    all_started = next((t for t, counts, _ in samples if all(counts)), None)
    first_done = next(t for t, _, running in samples if not all(running))
    start = (all_started or 0.0) + warmup_s
    window = [i for i, s in enumerate(samples) if start <= s[0] <= first_done]
    overlap = len(window) >= 2
    if not overlap:
        # On a loaded machine a short run's shards may never all be sending at once (one
        # finishes before the last one starts). Say so and measure the whole run instead of
        # failing: the shares then include start-up skew, so they are not the fairness figure.
        window = [0, len(samples) - 1]
    (t_a, c_a, _), (t_b, c_b, _) = samples[window[0]], samples[window[-1]]
    (th_a, rq_a), (th_b, rq_b) = throttles[window[0]], throttles[window[-1]]
    rates = [(b - a) / (t_b - t_a) for a, b in zip(c_a, c_b, strict=True)]
    mean = sum(rates) / len(rates)
    outputs = [count_output(f) for f in files]
    return {
        "shards": shards,
        "n": n,
        "capacity_per_s": capacity,
        "window_s": round(t_b - t_a, 2),
        "overlap": overlap,  # False: no window with every shard sending; whole-run figures
        "combined_per_s": sum(rates),
        "combined_fraction": sum(rates) / capacity,
        "rates_per_s": rates,
        "shares": [r / mean for r in rates] if mean else [0.0] * len(rates),
        "throttled_share": stats["throttled"] / max(1, stats["chat_requests"]),
        "throttled_share_in_window": (th_b - th_a) / max(1, rq_b - rq_a),
        "requests": stats["chat_requests"],
        "ok": sum(o["ok"] for o in outputs),
        "wall_s": samples[-1][0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2400)
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glmrun-shards-") as tmp:
        print(json.dumps(measure(Path(tmp), n=args.n, shards=args.shards), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
