"""``stable_key`` for numba code: BLAKE2b with an 8-byte digest (RFC 7693) over a slice of a byte buffer.

``stable_key`` (features._schema) hashes an identifier's UTF-8 bytes with ``hashlib.blake2b(digest_size=8)``;
``stable_key_bytes`` computes the same key inside compiled code, so native decoders can key identifiers without
building Python strings. Tests hold the two equal on every length up to several blocks.

Numba keys a caller's cached machine code on the caller's own source file only, so a module whose kernels call
this one records its digest in ``COMPILED_IN`` (server/_wire.py); tests/test_compiled_in.py fails when the
digest is stale, and updating it changes the caller's file, which invalidates its cache.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["stable_key_bytes"]

_IV = np.array(
    [
        0x6A09E667F3BCC908,
        0xBB67AE8584CAA73B,
        0x3C6EF372FE94F82B,
        0xA54FF53A5F1D36F1,
        0x510E527FADE682D1,
        0x9B05688C2B3E6C1F,
        0x1F83D9ABFB41BD6B,
        0x5BE0CD19137E2179,
    ],
    dtype=np.uint64,
)
# Message word schedule of the 12 rounds (rounds 10 and 11 repeat 0 and 1).
_SIGMA = np.array(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    ],
    dtype=np.int64,
)
# Parameter block of an unkeyed 8-byte digest: fanout 1, depth 1, key length 0, digest length 8.
_PARAM = np.uint64(0x01010008)
_BLOCK = 128


@numba.njit(cache=True, nogil=True, inline="always")
def _rotr(x: np.uint64, n: np.uint64) -> np.uint64:
    return (x >> n) | (x << (np.uint64(64) - n))


@numba.njit(cache=True, nogil=True, inline="always")
def _g(v: np.ndarray, a: int, b: int, c: int, d: int, x: np.uint64, y: np.uint64) -> None:
    v[a] = v[a] + v[b] + x
    v[d] = _rotr(v[d] ^ v[a], np.uint64(32))
    v[c] = v[c] + v[d]
    v[b] = _rotr(v[b] ^ v[c], np.uint64(24))
    v[a] = v[a] + v[b] + y
    v[d] = _rotr(v[d] ^ v[a], np.uint64(16))
    v[c] = v[c] + v[d]
    v[b] = _rotr(v[b] ^ v[c], np.uint64(63))


@numba.njit(cache=True, nogil=True)
def _compress(h: np.ndarray, m: np.ndarray, v: np.ndarray, counter: int, last: bool) -> None:
    for i in range(8):
        v[i] = h[i]
        v[i + 8] = _IV[i]
    v[12] ^= np.uint64(counter)  # messages here are far below 2**64 bytes: the counter's high word stays 0
    if last:
        v[14] = ~v[14]
    for r in range(12):
        s = _SIGMA[r]
        _g(v, 0, 4, 8, 12, m[s[0]], m[s[1]])
        _g(v, 1, 5, 9, 13, m[s[2]], m[s[3]])
        _g(v, 2, 6, 10, 14, m[s[4]], m[s[5]])
        _g(v, 3, 7, 11, 15, m[s[6]], m[s[7]])
        _g(v, 0, 5, 10, 15, m[s[8]], m[s[9]])
        _g(v, 1, 6, 11, 12, m[s[10]], m[s[11]])
        _g(v, 2, 7, 8, 13, m[s[12]], m[s[13]])
        _g(v, 3, 4, 9, 14, m[s[14]], m[s[15]])
    for i in range(8):
        h[i] ^= v[i] ^ v[i + 8]


@numba.njit(cache=True, nogil=True)
def stable_key_bytes(buf: np.ndarray, start: int, end: int) -> np.uint64:
    """``stable_key`` of the UTF-8 bytes ``buf[start:end]`` (uint8): 0 when empty, never 0 otherwise."""
    n = end - start
    if n <= 0:
        return np.uint64(0)
    h = _IV.copy()
    h[0] ^= _PARAM
    m = np.zeros(16, dtype=np.uint64)
    v = np.empty(16, dtype=np.uint64)
    done = 0
    while True:
        take = min(n - done, _BLOCK)
        m[:] = 0
        for j in range(take):
            m[j >> 3] |= np.uint64(buf[start + done + j]) << np.uint64((j & 7) * 8)
        done += take
        last = done == n
        _compress(h, m, v, done, last)
        if last:
            break
    key = h[0]  # the first 8 bytes of the digest, little-endian, as stable_key reads them
    return key if key != 0 else np.uint64(1)
