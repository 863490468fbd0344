"""The one key hash: 8 bytes of BLAKE2b over a record's key (its ``key``, else its URL).

Resume, plan, status, export and the batch files all identify an item by this hash, so it
is computed here and only here. ``key_hash_bytes`` takes the key already UTF-8 encoded (the
resume scan hashes bytes sliced from the file without decoding them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

_blake2b = hashlib.blake2b
_from_bytes = int.from_bytes


def key_hash_bytes(key: bytes) -> int:
    """64-bit digest of an encoded key; collisions are ~1e-8 likely even at a million keys."""
    return _from_bytes(_blake2b(key, digest_size=8).digest(), "little")


def key_hash(key: str) -> int:
    """64-bit digest of a key (lone surrogates from odd inputs are hashed, not refused)."""
    return key_hash_bytes(key.encode("utf-8", "surrogatepass"))


def key_digests(keys: Iterable[bytes]) -> bytes:
    """The hashes of encoded keys as little-endian 8-byte digests joined in one buffer
    (``key_hash_bytes`` of each, as bytes): one call for a block of keys, and no Python int
    per key, for the scans that hash millions of them."""
    return b"".join([_blake2b(key, digest_size=8).digest() for key in keys])
