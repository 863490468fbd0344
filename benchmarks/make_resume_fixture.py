"""Write the resume-at-scale fixture fast: N finished ok records + an input of the same URLs
plus ``new`` unseen ones (records shaped like glmrun's own ok records)."""

from __future__ import annotations

import argparse
from pathlib import Path


def url(i: int) -> str:
    return f"https://img.example.com/r/{i:08d}.jpg"


def make(directory: Path, n: int, new: int) -> tuple[Path, Path]:
    out = directory / "out.jsonl"
    inp = directory / "urls.txt"
    tail = (
        ',"status":"ok","content":"A photo of a cat sitting on a red sofa next to a window.",'
        '"finish_reason":"stop","usage":{"prompt_tokens":1010,"completion_tokens":20,"total_tokens":1030},'
        '"model":"glm-4v-flash","via":"realtime","attempts":1,"latency_ms":212,"id":"8700000000000000001",'
        '"finished_at":"2026-11-22T03:00:00Z"}\n'
    )
    chunk = 100_000
    with open(out, "w") as f:
        f.writelines(
            "".join('{"url":"' + url(i) + '"' + tail for i in range(start, min(n, start + chunk)))
            for start in range(0, n, chunk)
        )
    with open(inp, "w") as f:
        f.writelines(
            "".join(url(i) + "\n" for i in range(start, min(n + new, start + chunk)))
            for start in range(0, n + new, chunk)
        )
    return inp, out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=200)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    make(args.directory, args.n, args.new)
