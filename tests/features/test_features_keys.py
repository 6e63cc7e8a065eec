"""stable_key_bytes (compiled BLAKE2b-64) gives stable_key's key for the same UTF-8 bytes, at every length."""

from __future__ import annotations

import hashlib
import random

import numpy as np

from features import stable_key, stable_key_bytes


def test_equals_hashlib_blake2b_across_block_boundaries() -> None:
    """Random bytes of every length from 1 to 300 and a few longer, read from inside a larger buffer."""
    rng = random.Random(3)
    for size in [*range(1, 301), 383, 384, 385, 1000]:
        data = rng.randbytes(size)
        want = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") or 1
        buf = np.frombuffer(b"ab" + data + b"cd", dtype=np.uint8)
        assert int(stable_key_bytes(buf, 2, 2 + size)) == want, size


def test_equals_stable_key_on_identifiers() -> None:
    """ASCII and Chinese identifiers key alike through either function; the empty slice keys to 0."""
    for text in ["6222000000000024", "MER045110047", "账户-深圳-001", "x" * 128]:
        buf = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        assert int(stable_key_bytes(buf, 0, len(buf))) == stable_key(text)
    assert int(stable_key_bytes(np.zeros(4, dtype=np.uint8), 2, 2)) == stable_key("") == 0
