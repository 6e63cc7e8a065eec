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
# Parameter block of an unkeyed 8-byte digest: fanout 1, depth 1, key length 0, digest length 8.
_PARAM = np.uint64(0x01010008)
_BLOCK = 128
_IV0, _IV1, _IV2, _IV3, _IV4, _IV5, _IV6, _IV7 = (np.uint64(x) for x in _IV.tolist())
_Words = tuple[np.uint64, ...]  # a chain value (8 words) or a working state (16 words)

# The state is 16 scalars and the message 16 scalars, never arrays: LLVM keeps them in registers, and no array is
# allocated per key. 435 -> 152 ns per key of 15 bytes (one block), compiled, back to back.


@numba.njit(cache=True, nogil=True)
def _rotr(x: np.uint64, n: np.uint64) -> np.uint64:
    return (x >> n) | (x << (np.uint64(64) - n))


@numba.njit(cache=True, nogil=True)
def _g(a: np.uint64, b: np.uint64, c: np.uint64, d: np.uint64, x: np.uint64, y: np.uint64) -> tuple[
        np.uint64, np.uint64, np.uint64, np.uint64]:
    a = a + b + x
    d = _rotr(d ^ a, np.uint64(32))
    c = c + d
    b = _rotr(b ^ c, np.uint64(24))
    a = a + b + y
    d = _rotr(d ^ a, np.uint64(16))
    c = c + d
    b = _rotr(b ^ c, np.uint64(63))
    return a, b, c, d


@numba.njit(cache=True, nogil=True)
def _round(v: _Words, s0: np.uint64, s1: np.uint64, s2: np.uint64, s3: np.uint64, s4: np.uint64,
           s5: np.uint64, s6: np.uint64, s7: np.uint64, s8: np.uint64, s9: np.uint64, s10: np.uint64,
           s11: np.uint64, s12: np.uint64, s13: np.uint64, s14: np.uint64, s15: np.uint64) -> _Words:
    """One round on the state tuple ``v``, with the message words already in the round's schedule order."""
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 = v
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, s0, s1)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, s2, s3)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, s4, s5)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, s6, s7)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, s8, s9)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, s10, s11)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, s12, s13)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, s14, s15)
    return v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15


@numba.njit(cache=True, nogil=True)
def _word(buf: np.ndarray, start: int, end: int) -> np.uint64:
    """The little-endian word of ``buf[start:start + 8]``, zero past ``end``."""
    w = np.uint64(0)
    for j in range(min(end - start, 8)):
        w |= np.uint64(buf[start + j]) << np.uint64(j * 8)
    return w


@numba.njit(cache=True, nogil=True)
def _compress(h: _Words, buf: np.ndarray, at: int, end: int, counter: int, last: bool) -> _Words:
    """BLAKE2b's compression of the block ``buf[at:at + 128]`` (zero past ``end``) into the chain value ``h``."""
    m0, m1, m2, m3 = _word(buf, at, end), _word(buf, at + 8, end), _word(buf, at + 16, end), _word(buf, at + 24, end)
    m4, m5, m6, m7 = _word(buf, at + 32, end), _word(buf, at + 40, end), _word(buf, at + 48, end), _word(
        buf, at + 56, end)
    m8, m9, m10, m11 = _word(buf, at + 64, end), _word(buf, at + 72, end), _word(buf, at + 80, end), _word(
        buf, at + 88, end)
    m12, m13, m14, m15 = _word(buf, at + 96, end), _word(buf, at + 104, end), _word(buf, at + 112, end), _word(
        buf, at + 120, end)
    h0, h1, h2, h3, h4, h5, h6, h7 = h
    # Messages here are far below 2**64 bytes: the counter's high word stays 0.
    v: _Words = (h0, h1, h2, h3, h4, h5, h6, h7, _IV0, _IV1, _IV2, _IV3, _IV4 ^ np.uint64(counter), _IV5,
         ~_IV6 if last else _IV6, _IV7)
    # The twelve rounds, each with the message words in its schedule (RFC 7693, SIGMA; rounds 10 and 11 repeat 0
    # and 1).
    v = _round(v, m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15)
    v = _round(v, m14, m10, m4, m8, m9, m15, m13, m6, m1, m12, m0, m2, m11, m7, m5, m3)
    v = _round(v, m11, m8, m12, m0, m5, m2, m15, m13, m10, m14, m3, m6, m7, m1, m9, m4)
    v = _round(v, m7, m9, m3, m1, m13, m12, m11, m14, m2, m6, m5, m10, m4, m0, m15, m8)
    v = _round(v, m9, m0, m5, m7, m2, m4, m10, m15, m14, m1, m11, m12, m6, m8, m3, m13)
    v = _round(v, m2, m12, m6, m10, m0, m11, m8, m3, m4, m13, m7, m5, m15, m14, m1, m9)
    v = _round(v, m12, m5, m1, m15, m14, m13, m4, m10, m0, m7, m6, m3, m9, m2, m8, m11)
    v = _round(v, m13, m11, m7, m14, m12, m1, m3, m9, m5, m0, m15, m4, m8, m6, m2, m10)
    v = _round(v, m6, m15, m14, m9, m11, m3, m0, m8, m12, m2, m13, m7, m1, m4, m10, m5)
    v = _round(v, m10, m2, m8, m4, m7, m6, m1, m5, m15, m11, m9, m14, m3, m12, m13, m0)
    v = _round(v, m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15)
    v = _round(v, m14, m10, m4, m8, m9, m15, m13, m6, m1, m12, m0, m2, m11, m7, m5, m3)
    return (h0 ^ v[0] ^ v[8], h1 ^ v[1] ^ v[9], h2 ^ v[2] ^ v[10], h3 ^ v[3] ^ v[11], h4 ^ v[4] ^ v[12],
            h5 ^ v[5] ^ v[13], h6 ^ v[6] ^ v[14], h7 ^ v[7] ^ v[15])


@numba.njit(cache=True, nogil=True)
def stable_key_bytes(buf: np.ndarray, start: int, end: int) -> np.uint64:
    """``stable_key`` of the UTF-8 bytes ``buf[start:end]`` (uint8): 0 when empty, never 0 otherwise."""
    n = end - start
    if n <= 0:
        return np.uint64(0)
    h: _Words = (_IV0 ^ _PARAM, _IV1, _IV2, _IV3, _IV4, _IV5, _IV6, _IV7)
    done = 0
    while True:
        take = min(n - done, _BLOCK)
        done += take
        last = done == n
        h = _compress(h, buf, start + done - take, start + done, done, last)
        if last:
            break
    key = h[0]  # the first 8 bytes of the digest, little-endian, as stable_key reads them
    return key if key != 0 else np.uint64(1)
