"""linux-aio's C side (native/ioengine_native.c) on real reads: ie_aio_wait returns every
completion asked for, however many (it read at most 128 and dropped the rest of the request:
a caller waiting for 300 got 128), and the iocbs come from the context's own pool, reused."""
from __future__ import annotations

import os

from ioengine._native import ffi, lib

N = 300  # more than one io_getevents batch (128) and than one iocb slab (64)


def _records(fd: int, bufs: list, first_ud: int) -> object:
    recs = ffi.new("uint64_t[]", len(bufs) * lib.IE_REC_WORDS)
    for i, b in enumerate(bufs):
        w = i * lib.IE_REC_WORDS
        recs[w] = lib.IE_OP_READ | fd << 8
        recs[w + 1] = int(ffi.cast("uintptr_t", b))
        recs[w + 2] = 512
        recs[w + 3] = i * 512
        recs[w + 4] = first_ud + i
    return recs


def test_aio_wait_returns_every_completion_asked_for(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 2 * N)
    out = ffi.new("struct ie_aio **")
    assert lib.ie_aio_create(1024, -1, out) == 0
    ctx = out[0]
    fd = os.open(path, os.O_RDONLY)
    try:
        ud = ffi.new("uint64_t[]", N)
        res = ffi.new("int32_t[]", N)
        for round_ in range(3):  # the iocbs of a round are those of the last one, reused
            bufs = [ffi.new("char[]", 512) for _ in range(N)]
            recs = _records(fd, bufs, round_ * N)
            assert lib.ie_aio_submit_batch(ctx, recs, N) == N
            got = lib.ie_aio_wait(ctx, N, ud, res, N)
            assert got == N
            assert sorted(ud[i] for i in range(N)) == list(range(round_ * N, (round_ + 1) * N))
            assert all(res[i] == 512 for i in range(N))
            assert all(ffi.buffer(b)[:2] == bytes((0, 1)) for b in bufs)
            assert lib.ie_aio_reap(ctx, ud, res, N) == 0  # nothing left behind
    finally:
        os.close(fd)
        lib.ie_aio_destroy(ctx)
