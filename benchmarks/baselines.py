"""The two reference loops glmrun is compared against, each run as its own process.

- ``bare``: aiohttp + a semaphore, one task per URL, no retries, no output file. The ceiling
  of this machine and this server: what any runner could at most deliver.
- ``gather``: the way people write it by hand: ``asyncio.gather`` over chunks of
  ``concurrency`` URLs, each with retries and backoff, results appended after every chunk.
  A slow request holds up its whole chunk.

Prints one JSON object: done, ok, requests, wall_s (from the first request to the last answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time

import aiohttp


def body(url: str) -> bytes:
    return json.dumps(
        {
            "model": "glm-4v-flash",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": "Describe this image."},
                    ],
                }
            ],
            "max_tokens": 256,
        }
    ).encode()


HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer simulator"}


async def bare(base_url: str, urls: list[str], concurrency: int) -> dict[str, float]:
    sem = asyncio.Semaphore(concurrency)
    ok = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        endpoint = base_url + "/chat/completions"

        async def one(url: str) -> None:
            nonlocal ok
            async with sem, session.post(endpoint, data=body(url), headers=HEADERS) as resp:
                await resp.read()
                ok += resp.status == 200

        t0 = time.perf_counter()
        await asyncio.gather(*(one(u) for u in urls))
        wall = time.perf_counter() - t0
    return {"done": len(urls), "ok": ok, "requests": len(urls), "wall_s": wall}


async def gather_chunks(
    base_url: str, urls: list[str], concurrency: int, output: str
) -> dict[str, float]:
    requests = 0
    ok = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        endpoint = base_url + "/chat/completions"

        async def one(url: str) -> dict[str, object]:
            nonlocal requests
            for attempt in range(5):
                requests += 1
                try:
                    async with session.post(endpoint, data=body(url), headers=HEADERS) as resp:
                        data = await resp.json(content_type=None)
                        if resp.status == 200:
                            return {
                                "url": url,
                                "status": "ok",
                                "content": data["choices"][0]["message"]["content"],
                            }
                        if resp.status not in (429, 500, 502, 503):
                            return {"url": url, "status": "error", "code": resp.status}
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt) * random.random())
            return {"url": url, "status": "error", "code": "retries"}

        t0 = time.perf_counter()
        with open(output, "a") as out:
            for i in range(0, len(urls), concurrency):
                results = await asyncio.gather(*(one(u) for u in urls[i : i + concurrency]))
                out.write("".join(json.dumps(r) + "\n" for r in results))
                ok += sum(r["status"] == "ok" for r in results)
        wall = time.perf_counter() - t0
    return {"done": len(urls), "ok": ok, "requests": requests, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["bare", "gather"])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--output", default="/dev/null")
    args = parser.parse_args()
    with open(args.input) as f:
        urls = [line.strip() for line in f if line.strip()]
    if args.mode == "bare":
        result = asyncio.run(bare(args.base_url, urls, args.concurrency))
    else:
        result = asyncio.run(gather_chunks(args.base_url, urls, args.concurrency, args.output))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
