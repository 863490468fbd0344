"""The API client: a small typed protocol the engines use, and its aiohttp implementation."""
