"""The pure core: decisions and shapes with no I/O (no files, sockets, clocks or aiohttp)."""
