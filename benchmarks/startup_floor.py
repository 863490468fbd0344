"""The start-up floor: the least any aiohttp-based runner of a YAML config pays before its first
request. Python starts, imports asyncio, aiohttp and yaml, and sends one chat request.

    python benchmarks/startup_floor.py BASE_URL

``run_all.py --only startup`` times this exactly as it times ``glmrun run`` (launch until the
simulator counts the request), interleaved with glmrun's launches, so the difference between
the two is glmrun's own start-up and the rest belongs to Python and the libraries.
"""

import asyncio
import sys

import aiohttp
import yaml  # noqa: F401 - imported, as a runner of a YAML config must

BODY = {
    "model": "glm-4v-flash",
    "messages": [{"role": "user", "content": "Describe this image."}],
}


async def main(base_url: str) -> None:
    async with (
        aiohttp.ClientSession(headers={"Authorization": "Bearer floor"}) as session,
        session.post(f"{base_url}/chat/completions", json=BODY) as resp,
    ):
        await resp.read()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
