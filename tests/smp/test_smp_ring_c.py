"""MessageDispatch.push and .pop: the cross-shard rings written and read from C (the transport's
flush and poll). On a ring in this process's memory, with the ring code the shards use
(native/smp_ring.c): whole outboxes in, the same bytes out, a full ring refused without losing
anything, a sleeping consumer woken, bad arguments refused before any memory is touched."""
from __future__ import annotations

import asyncio
import os
import pickle

import pytest

from ioengine._iopath import MessageDispatch, Wakeups
from ioengine._native import ffi, lib

CAP = 256  # a power of two, as the transport's rings


def _nothing(*args):
    raise AssertionError(f"not expected here: {args!r}")


@pytest.fixture
def disp():
    loop = asyncio.new_event_loop()
    try:
        yield MessageDispatch(loop=loop, wakeups=Wakeups(), plain=set(), loads=pickle.loads, dumps=pickle.dumps,
                              proto=pickle.HIGHEST_PROTOCOL, slow=_nothing, result=_nothing, fail=_nothing,
                              flush=_nothing, max_payload=CAP - 16, batch_bytes=CAP // 2)
    finally:
        loop.close()


def _addr(cdata) -> int:
    return int(ffi.cast("uintptr_t", cdata))


def _ring():
    mem = ffi.new("char[]", lib.IE_SPSC_HEADER + CAP)  # zeroed: head = tail = 0
    return mem, _addr(mem)


def test_outboxes_go_whole_into_their_rings_and_come_out_the_same(disp):
    keep0, r0 = _ring()
    keep1, r1 = _ring()
    flags = ffi.new("uint32_t[]", 2)  # both consumers awake: no eventfd written
    boxes = [bytearray(b"first shard's bytes"), bytearray(b"x" * 100)]
    left = disp.push([0, 1, 0], boxes, [r0, r1], [_addr(flags), _addr(flags + 1)], [-1, -1], CAP)
    assert left == []
    assert boxes == [bytearray(), bytearray()]  # emptied; the one listed twice is skipped
    buf = ffi.new("char[]", CAP)
    assert disp.pop(r0, CAP, _addr(buf)) == 19
    assert ffi.buffer(buf, 19)[:] == b"first shard's bytes"
    assert disp.pop(r0, CAP, _addr(buf)) == 0  # empty now
    assert disp.pop(r1, CAP, _addr(buf)) == 100
    assert ffi.buffer(buf, 100)[:] == b"x" * 100


def test_a_ring_too_full_gives_its_destination_back_and_keeps_the_outbox(disp):
    keep, r = _ring()
    flag = ffi.new("uint32_t *")
    first = bytearray(b"a" * 200)
    assert disp.push([0], [first], [r], [_addr(flag)], [-1], CAP) == []
    second = bytearray(b"b" * 100)  # 200 + 100 > CAP
    assert disp.push([0], [second], [r], [_addr(flag)], [-1], CAP) == [0]
    assert second == bytearray(b"b" * 100)  # nothing lost: the transport writes what fits later
    buf = ffi.new("char[]", CAP)
    assert disp.pop(r, CAP, _addr(buf)) == 200
    assert disp.push([0], [second], [r], [_addr(flag)], [-1], CAP) == []
    assert disp.pop(r, CAP, _addr(buf)) == 100


def test_a_sleeping_consumer_is_woken_once(disp):
    keep, r = _ring()
    flag = ffi.new("uint32_t *", 1)  # the consumer declared it sleeps
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    try:
        assert disp.push([0], [bytearray(b"wake")], [r], [_addr(flag)], [efd], CAP) == []
        assert flag[0] == 0  # taken by the producer that wrote the eventfd
        assert os.eventfd_read(efd) == 1
        assert disp.push([0], [bytearray(b"more")], [r], [_addr(flag)], [efd], CAP) == []
        with pytest.raises(BlockingIOError):  # awake now: no second write
            os.eventfd_read(efd)
    finally:
        os.close(efd)


def test_bad_arguments_are_refused_before_any_memory_is_touched(disp):
    keep, r = _ring()
    flag = ffi.new("uint32_t *")
    box = bytearray(b"data")
    with pytest.raises(TypeError, match="push"):
        disp.push((0,), [box], [r], [_addr(flag)], [-1], CAP)
    with pytest.raises(IndexError, match="no ring to shard 3"):
        disp.push([3], [box], [r], [_addr(flag)], [-1], CAP)
    with pytest.raises(ValueError, match="no ring to shard 0"):  # a closed transport's address
        disp.push([0], [box], [0], [_addr(flag)], [-1], CAP)
    with pytest.raises(TypeError, match="bytearray"):
        disp.push([0], [b"data"], [r], [_addr(flag)], [-1], CAP)
    assert box == bytearray(b"data")
    with pytest.raises(ValueError, match="no ring or no buffer"):
        disp.pop(0, CAP, 0)
    with pytest.raises(TypeError, match="pop"):
        disp.pop(r, CAP)
