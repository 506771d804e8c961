"""File: O_DIRECT DMA reads and writes on the reactor, with Seastar's names."""
from __future__ import annotations

import asyncio
import enum
import errno
import fcntl
import os
import stat
import threading
from array import array
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, overload

from . import _ops
from ._dmabuf import DmaBuffer as _RawBuffer
from ._iopath import IoFuture, IoFutureIter, WriteBooks, file_methods
from ._native import ffi
from .backends.base import OP_READ, OP_READV, OP_WRITE, OP_WRITEV
from .buffers import DEFAULT_ALIGNMENT, DmaBuffer
from .errors import ClosedFileError, ShortReadError
from .io_class import IoClass
from .ioprio import check_ioprio
from .reactor import LEN_LIMIT, POS_LIMIT, Reactor, get_reactor

# What awaits a request's future is what dma_read/dma_write return when the request went at
# once: asyncio.create_task() takes only coroutines, and it is one (native/iofuture.c: send,
# throw, close). The future itself is not (asyncio.wait, which refuses coroutines, takes it).
Coroutine.register(IoFutureIter)

#: A request's completion callback: (the reactor's request tuple, result or -errno).
Completion = Callable[[tuple[Any, ...], int], None]

TMPFS_MAGIC = 0x01021994
#: Most buffers in one dma_readv/dma_writev (the kernel's UIO_MAXIOV).
IOV_MAX = 1024


class OpenFlags(enum.IntFlag):
    """Seastar's open_flags: combine with ``|`` (``OpenFlags.RW | OpenFlags.CREATE``)."""

    RO = os.O_RDONLY
    WO = os.O_WRONLY
    RW = os.O_RDWR
    CREATE = os.O_CREAT
    TRUNCATE = os.O_TRUNC
    EXCLUSIVE = os.O_EXCL
    DSYNC = os.O_DSYNC


_ACCMODE = os.O_RDONLY | os.O_WRONLY | os.O_RDWR
_KNOWN_FLAGS = 0
for _f in OpenFlags:
    _KNOWN_FLAGS |= _f.value


@dataclass(frozen=True, slots=True)
class FileOpenOptions:
    """Seastar's file_open_options."""

    #: Extent size hint for filesystems that take one (XFS); also the step by which a
    #: sloppy-size file grows. 0 = filesystem default (1 MiB growth step).
    extent_allocation_size_hint: int = 1 << 20
    #: Grow the file ahead of appending writes (so they do not each extend it, which serialises
    #: them in the filesystem) and cut it back to the written size on close().
    sloppy_size: bool = False
    #: Mode for a file created by OpenFlags.CREATE; the process umask applies.
    create_permissions: int = 0o666
    #: The caller promises not to write past the end: skip the append bookkeeping.
    append_is_unlikely: bool = False
    #: Open without O_DIRECT: I/O goes through the page cache (``File.direct`` is False) and any
    #: memory address, position and length is accepted (alignments 1). Not Seastar's (it is
    #: O_DIRECT only): for workloads that mean the page cache, e.g. fio's ``direct=0``. Reads and
    #: writes still go through the reactor's backend; io_uring and the thread pool do them
    #: asynchronously, linux-aio performs buffered I/O synchronously inside io_submit.
    buffered: bool = False
    #: With buffered I/O on a filesystem that cannot take a buffered write without blocking (ext4
    #: refuses RWF_NOWAIT for it, and io_uring hands each such write to a kernel worker thread):
    #: make the write at the call, as a synchronous write is (fio's psync, or its libaio with
    #: ``direct=0``). Usually a copy into the page cache; but the reactor waits while the kernel
    #: throttles dirty pages. Off: such writes go through the ring. (ioengine.pagecache)
    blocking_buffered_writes: bool = False
    #: Let writes be aligned to the logical block (what O_DIRECT accepts, as reads) instead of the
    #: physical one: ``disk_write_dma_alignment`` becomes ``disk_read_dma_alignment``. Smaller
    #: writes then make the device read-modify-write its physical block: for workloads that ask
    #: for them (fio's ``bs=512`` on a 512e disk), not for speed.
    align_writes_to_logical_block: bool = False


def _sysfs_block_sizes(major: int, minor: int) -> tuple[int, int] | None:
    """(logical, physical) block size of the device major:minor, from sysfs; partitions use their disk's."""
    base = os.path.realpath(f"/sys/dev/block/{major}:{minor}")
    for d in (base, os.path.dirname(base)):
        try:
            with open(os.path.join(d, "queue/logical_block_size")) as f:
                logical = int(f.read())
            with open(os.path.join(d, "queue/physical_block_size")) as f:
                physical = int(f.read())
            return logical, physical
        except (OSError, ValueError):
            continue
    return None


def _pin_buffer(buf: Any, writable: bool) -> tuple[Any, int, int]:
    """(pin, address, length) for a buffer the kernel will use; the pin keeps it alive and unfreed."""
    if isinstance(buf, _RawBuffer):
        return memoryview(buf), buf.address, len(buf)
    try:
        mv = memoryview(buf)
    except TypeError:
        raise TypeError(f"expected a bytes-like buffer (DmaBuffer, memoryview, …), got {type(buf).__name__}") from None
    if not mv.c_contiguous:
        raise ValueError("the buffer must be C-contiguous")
    if writable and mv.readonly:
        raise TypeError("dma_read needs a writable buffer, got a read-only one")
    c = ffi.from_buffer(mv, require_writable=writable)
    return c, int(ffi.cast("uintptr_t", c)), mv.nbytes


async def _gather_reads(futs: list[IoFuture[int]]) -> list[int]:
    """dma_read_many's general path: every read's result, once all completed; the first
    failure's exception then (the others' are retrieved, so none is reported unretrieved)."""
    done = await asyncio.gather(*futs, return_exceptions=True)
    for r in done:
        if isinstance(r, BaseException):
            raise r
    return done  # type: ignore[return-value]


class File:
    """An open file for direct (O_DIRECT) I/O. Create with ``await open_file_dma(...)``."""

    __slots__ = ("_fd", "_path", "_reactor", "_closed", "_options", "memory_dma_alignment",
                 "disk_read_dma_alignment", "disk_write_dma_alignment", "direct", "_size",
                 "_read_mask", "_write_mask", "_mem_mask", "_queue", "_qstates",
                 "_busy", "_busy_idle", "_close_task", "_bounce", "_page_cache", "_submit_request", "__weakref__")

    def __init__(self, fd: int, path: str, reactor: Reactor, options: FileOpenOptions, direct: bool,
                 mem_align: int, read_align: int, write_align: int, size: int = 0, queue: Any = None) -> None:
        self._fd = fd
        self._path = path
        self._reactor = reactor
        self._closed = False
        self._options = options
        #: Alignment the buffer address must have.
        self.memory_dma_alignment = mem_align
        #: Alignment read positions and lengths must have.
        self.disk_read_dma_alignment = read_align
        #: Alignment write positions and lengths must have.
        self.disk_write_dma_alignment = write_align
        self._read_mask = read_align - 1
        self._write_mask = write_align - 1
        self._mem_mask = mem_align - 1
        #: False when opened buffered: FileOpenOptions.buffered, or a filesystem that refused O_DIRECT (tmpfs).
        self.direct = direct
        #: Writes in flight, the logical size, the size barrier: see SizeTracker.
        # It is also the writes' on_done: the reactor's C path counts a write's completion in it
        # directly (a WriteBooks), with no Python call.
        self._size = SizeTracker(size, options, reactor.loop)
        # Operations admitted before close() began and still in the File's own wait paths
        # (size barrier, sloppy growth, metadata calls): close() waits for them before the fd goes.
        self._busy = 0
        self._busy_idle: asyncio.Future[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        #: Idle bounce buffers of dma_read_bulk(into=...): one per concurrent unaligned read.
        self._bounce: list[DmaBuffer] = []
        #: The disk scheduler queue of the file's device, and its io class states.
        self._queue = queue
        self._qstates = reactor.disks.states_of(queue) if queue is not None else None
        #: The reactor's per-request call (read at each request by dma_read/dma_write in C); a
        #: buffered file's tries the page cache first (ioengine.pagecache).
        self._page_cache = None if direct else reactor.page_cache.submitter(
            reactor.submit_request, self._size, options.blocking_buffered_writes,
            bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DSYNC) if fd >= 0 else False)
        self._submit_request = reactor.submit_request if self._page_cache is None else self._page_cache

    # -- identity --------------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    def fileno(self) -> int:
        self._check_open()
        return self._fd

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        return f"<ioengine.File {self._path!r} {state}>"

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedFileError(f"I/O operation on closed file {self._path!r}")

    def _check(self, op: str, pos: int, length: int, addr: int, align: int) -> None:
        if self._closed:
            raise ClosedFileError(f"{op} on closed file {self._path!r}")
        check_position(op, pos)
        if pos % align:
            raise ValueError(f"{op}: position {pos} is not a multiple of {align}, the disk alignment of {self._path!r}")
        if length >= LEN_LIMIT:
            raise ValueError(f"{op}: {length} bytes is more than one request can carry (at most {LEN_LIMIT - 1})")
        if length % align:
            raise ValueError(f"{op}: length {length} is not a multiple of {align}, "
                             f"the disk alignment of {self._path!r}")
        if addr % self.memory_dma_alignment:
            raise ValueError(f"{op}: buffer address {addr:#x} is not a multiple of {self.memory_dma_alignment}, "
                             f"the memory alignment of {self._path!r} (allocate it with File.allocate_buffer)")

    # -- buffers ---------------------------------------------------------------------------

    def allocate_buffer(self, size: int) -> DmaBuffer:
        """A buffer from the reactor's pool, aligned for this file."""
        return self._reactor.buffers.get(size, max(self.memory_dma_alignment, DEFAULT_ALIGNMENT))

    # -- reads -----------------------------------------------------------------------------

    def dma_read(self, pos: int, buf: Any, io_class: IoClass | None = None, *,
                 ioprio: int = 0) -> Coroutine[Any, Any, int]:
        """Read into ``buf`` at ``pos``; await it for the bytes read (short at end of file).

        As Seastar's, the read is issued at the call when it can go at once (the common case):
        what comes back is then what awaits the request's future, a coroutine written in C
        (``await``, ``asyncio.create_task``, ``gather`` and ``wait_for`` take it, as they take
        any coroutine); otherwise (a queue to wait in, a bad argument, a closed file, a call on
        another thread than the reactor's) a plain coroutine that does the rest, and raises,
        when awaited. ``read_future`` gives the future itself.

        ``ioprio``: the kernel's priority of this request (``ioengine.ioprio_value``; 0 none)."""
        if not self._closed and not ioprio:  # one C call stages it: no coroutine frame per read
            req = self._submit_request(OP_READ, self._fd, buf, pos, self._read_mask, self._mem_mask,
                                       "dma_read", self, None, self._queue, self._qstates, io_class)
            if req is not None:
                return req
        return self._dma_read(pos, buf, io_class, ioprio)

    async def _dma_read(self, pos: int, buf: Any, io_class: IoClass | None, ioprio: int) -> int:
        return await self.read_future(pos, buf, io_class, ioprio=ioprio)

    def read_future(self, pos: int, buf: Any, io_class: IoClass | None = None, *,
                    ioprio: int = 0) -> IoFuture[int]:
        """dma_read without the coroutine: checks now, returns the reactor's future (for streams)."""
        if not self._closed and not ioprio:  # the per-I/O path: one C call stages it, or says it is not plain
            cache = self._page_cache
            if cache is not None and threading.get_ident() == self._reactor.thread_id:
                got = cache.try_read(self._fd, buf, pos)  # the page cache first (ioengine.pagecache)
                if got is not None:
                    done: IoFuture[int] = IoFuture(loop=self._reactor.loop)
                    done.set_result(got)
                    return done
            fut = self._reactor.submit_buffer(OP_READ, self._fd, buf, pos, self._read_mask, self._mem_mask, "dma_read",
                                              self, None, self._queue, self._qstates, io_class)
            if fut is not None:
                return fut
        if threading.get_ident() != self._reactor.thread_id:
            raise RuntimeError("read_future: called on another thread than its reactor's; await dma_read "
                               "through asyncio.run_coroutine_threadsafe instead")
        pin, addr, n = self._pin_read(pos, buf)
        if ioprio:
            check_ioprio("dma_read", ioprio)
        return self._reactor.submit_rw(OP_READ, self._fd, addr, n, pos, pin, "dma_read", self, None, self._queue,
                                       self._qstates, io_class, self.disk_read_dma_alignment, ioprio)

    async def dma_read_many(self, requests: Iterable[tuple[int, Any]], io_class: IoClass | None = None) -> list[int]:
        """Read each ``(pos, buf)`` of ``requests``, all at once; returns the bytes read by each,
        in order (short at end of file, as dma_read).

        Every request is checked as dma_read checks it before any is issued: a bad one raises
        and issues nothing. When requests fail in the kernel, the OSError (as dma_read's) of the
        first of them in the batch's order is raised once every request of the batch has
        completed, whatever order they completed in. One C call stages the batch and
        one future awaits it (read_many_future)."""
        return await self.read_many_future(requests, io_class)

    def read_many_future(self, requests: Iterable[tuple[int, Any]],
                         io_class: IoClass | None = None) -> Awaitable[list[int]]:
        """dma_read_many without the coroutine: checks now, returns the batch's awaitable.

        The plain case (the reactor's per-request path, see Reactor.submit_buffer, with room in
        the ring for the whole batch) is one IoFuture for the batch, made by C
        (IoPath.read_many). Otherwise -- a throttling disk queue, a class with limits, requests
        queued in the disk scheduler, a batch larger than the ring's free room -- each request
        takes dma_read's general path and a task gathers them. Cancelling the awaitable does
        not cancel the reads: each buffer stays pinned until its own completion."""
        if threading.get_ident() != self._reactor.thread_id:
            raise RuntimeError("read_many_future: called on another thread than its reactor's; await "
                               "dma_read_many through asyncio.run_coroutine_threadsafe instead")
        reqs = requests if type(requests) is tuple else tuple(requests)
        if not self._closed:
            fut = self._reactor.read_many(self._fd, reqs, self._read_mask, self._mem_mask, "dma_read", self,
                                          self._queue, self._qstates, io_class)
            if fut is not None:
                return fut
        # the general path: every request checked before any is issued
        checked = [self._pin_read(pos, buf) for pos, buf in reqs]
        futs = [self._reactor.submit_rw(OP_READ, self._fd, addr, n, pos, pin, "dma_read", self, None, self._queue,
                                        self._qstates, io_class, self.disk_read_dma_alignment)
                for (pos, _), (pin, addr, n) in zip(reqs, checked)]
        return self._reactor.loop.create_task(_gather_reads(futs))

    def _pin_read(self, pos: int, buf: Any) -> tuple[Any, int, int]:
        """(pin, address, length) of a read's buffer, every check of dma_read's made."""
        if isinstance(buf, _RawBuffer):  # the common case, kept lean
            pin, addr, n = memoryview(buf), buf.address, len(buf)
        else:
            pin, addr, n = _pin_buffer(buf, True)
        try:
            # pos >> 63 is non-zero for a negative position and one the kernel cannot take.
            bad = (pos | n) & self._read_mask or addr & self._mem_mask or pos >> 63 or n >> 32 or self._closed
        except TypeError:
            bad = True  # not an int: _check says what was expected
        if bad:
            self._check("dma_read", pos, n, addr, self.disk_read_dma_alignment)
        return pin, addr, n

    @overload
    async def dma_read_bulk(self, pos: int, length: int, io_class: IoClass | None = None, *,
                            into: None = None) -> DmaBuffer: ...

    @overload
    async def dma_read_bulk(self, pos: int, length: int, io_class: IoClass | None = None, *,
                            into: Any) -> int: ...

    async def dma_read_bulk(self, pos: int, length: int, io_class: IoClass | None = None, *,
                            into: Any = None) -> DmaBuffer | int:
        """Read ``length`` bytes from any ``pos``: one aligned read, trimmed; shorter at end of file.

        Without ``into``: returns a new DmaBuffer holding the bytes (release() it when done).
        With ``into`` (a writable buffer of at least ``length`` bytes, e.g. a DmaBuffer reused
        from call to call): the bytes land at its start and the byte count is returned; nothing
        is allocated per call. When ``pos``, ``length`` and a DmaBuffer's address are aligned,
        the disk reads straight into it; otherwise the aligned span goes through a bounce buffer
        the file keeps for the next call (one per concurrent read) and the bytes are copied.
        """
        self._check_open()
        check_position("dma_read_bulk", pos)
        check_length("dma_read_bulk", length)
        if pos + length > POS_LIMIT:
            raise ValueError(f"dma_read_bulk: position {pos} + length {length} is past the largest file offset")
        if into is not None:
            return await self._read_bulk_into(pos, length, io_class, into)
        align = self.disk_read_dma_alignment
        start = pos - pos % align
        end = -(-(pos + length) // align) * align
        buf = self.allocate_buffer(end - start)
        if end == start:
            return buf.trim(0, 0)
        try:
            got = await self.dma_read(start, buf, io_class)
        except BaseException:
            buf.release()
            raise
        front = pos - start
        view = buf.trim(front, max(0, min(length, got - front)))
        return view

    async def _read_bulk_into(self, pos: int, length: int, io_class: IoClass | None, into: Any) -> int:
        if isinstance(into, _RawBuffer):
            size = len(into)
            direct = not ((pos | length) & self._read_mask or into.address & self._mem_mask)
        else:
            try:
                mv = memoryview(into)
            except TypeError:
                raise TypeError(f"dma_read_bulk: into must be a writable bytes-like buffer, "
                                f"got {type(into).__name__}") from None
            if mv.readonly:
                raise TypeError("dma_read_bulk: into must be writable, got a read-only buffer")
            if not mv.c_contiguous:
                raise ValueError("dma_read_bulk: into must be C-contiguous")
            size = mv.nbytes
            direct = False
        if size < length:
            raise ValueError(f"dma_read_bulk: into holds {size} bytes, fewer than the {length} asked")
        if length == 0:
            return 0
        if direct:  # aligned all round: the disk writes into the caller's buffer
            if size == length:
                return min(await self.dma_read(pos, into, io_class), length)
            view = into.trim(0, length)
            try:
                return min(await self.dma_read(pos, view, io_class), length)
            finally:
                view.release()
        align = self.disk_read_dma_alignment
        start = pos - pos % align
        span = -(-(pos + length) // align) * align - start
        bounce = self._take_bounce(span)
        view = bounce.trim(0, span) if len(bounce) != span else bounce
        try:
            got = await self.dma_read(start, view, io_class)
        except BaseException:
            # The kernel may still be writing into it (a cancelled read): not reused.
            if view is not bounce:
                view.release()
            raise
        front = pos - start
        n = max(0, min(length, got - front))
        if n:
            if isinstance(into, _RawBuffer):
                into.copy_in(0, view, front, n)
            else:
                memoryview(into).cast("B")[:n] = memoryview(view)[front:front + n]
        if view is not bounce:
            view.release()
        if len(self._bounce) < _BOUNCE_KEEP and len(bounce) <= _BOUNCE_MAX:
            self._bounce.append(bounce)
        return n

    def _take_bounce(self, span: int) -> DmaBuffer:
        idle = self._bounce
        for i in range(len(idle) - 1, -1, -1):
            if len(idle[i]) >= span:
                return idle.pop(i)
        if idle:
            idle.pop()  # too small: replaced by the larger one, so the count follows concurrency only
        return _new_bounce(max(DEFAULT_ALIGNMENT, 1 << (span - 1).bit_length()),
                           max(self.memory_dma_alignment, DEFAULT_ALIGNMENT))

    async def dma_read_exactly(self, pos: int, length: int, io_class: IoClass | None = None) -> DmaBuffer:
        """Like dma_read_bulk, but raises ShortReadError if the file ends before ``pos + length``."""
        buf = await self.dma_read_bulk(pos, length, io_class)
        if len(buf) < length:
            got = len(buf)
            partial = bytes(buf)
            buf.release()
            raise ShortReadError(f"dma_read_exactly: {self._path!r} has only {got} of the {length} bytes "
                                 f"asked at position {pos}", partial, length)
        return buf

    async def dma_readv(self, pos: int, bufs: Iterable[Any], io_class: IoClass | None = None, *,
                        ioprio: int = 0) -> int:
        """Scatter-read into several buffers from ``pos``; returns the total bytes read (at most
        the first IOV_MAX (1024) buffers are filled per call, as the kernel takes, like Seastar)."""
        check_ioprio("dma_readv", ioprio)
        pins, iov, total = self._iovec("dma_readv", pos, bufs, True, self.disk_read_dma_alignment)
        got: int = await self._reactor.submit(OP_READV, self._fd, _iov_addr(iov), len(pins), pos, (pins, iov),
                                              "dma_readv", self, ioprio, nbytes=total, queue=self._queue,
                                              states=self._qstates, io_class=io_class)
        return got

    # -- writes ----------------------------------------------------------------------------

    def dma_write(self, pos: int, buf: Any, io_class: IoClass | None = None, *,
                  ioprio: int = 0) -> Coroutine[Any, Any, int]:
        """Write ``buf`` at ``pos``; await it for the bytes written.

        Issued at the call when it can go at once, as dma_read (whose notes hold here too).

        ``ioprio``: the kernel's priority of this request (``ioengine.ioprio_value``; 0 none)."""
        if not self._closed and not ioprio:
            # the common case: one C call stages it and counts it in the size's books (when they
            # say no barrier or growth is to be waited for), or says it is not plain
            req = self._submit_request(OP_WRITE, self._fd, buf, pos, self._write_mask, self._mem_mask,
                                       "dma_write", self, self._size, self._queue, self._qstates, io_class)
            if req is not None:
                return req
        return self._dma_write(pos, buf, io_class, ioprio)

    async def _dma_write(self, pos: int, buf: Any, io_class: IoClass | None, ioprio: int) -> int:
        size = self._size
        pin, addr, n = self._pin_write(pos, buf)
        if ioprio:
            check_ioprio("dma_write", ioprio)
        if size.barrier is None and not size.sloppy:  # the common case: no waiting first
            return await self._submit_write(OP_WRITE, addr, n, pos, pin, "dma_write", -1, io_class, ioprio=ioprio)
        return await self._write(OP_WRITE, addr, n, pos, pin, "dma_write", io_class=io_class, ioprio=ioprio)

    def _pin_write(self, pos: int, buf: Any) -> tuple[Any, int, int]:
        """(pin, address, length) of a write's buffer, every alignment checked."""
        if isinstance(buf, _RawBuffer):
            pin, addr, n = memoryview(buf), buf.address, len(buf)
        else:
            pin, addr, n = _pin_buffer(buf, False)
        try:
            bad = (pos | n) & self._write_mask or addr & self._mem_mask or pos >> 63 or n >> 32 or self._closed
        except TypeError:
            bad = True
        if bad:
            self._check("dma_write", pos, n, addr, self.disk_write_dma_alignment)
        return pin, addr, n

    async def dma_writev(self, pos: int, bufs: Iterable[Any], io_class: IoClass | None = None, *,
                         ioprio: int = 0) -> int:
        """Gather-write several buffers at ``pos``; returns the total bytes written (at most the
        first IOV_MAX (1024) buffers per call, a short count beyond, like Seastar)."""
        check_ioprio("dma_writev", ioprio)
        pins, iov, total = self._iovec("dma_writev", pos, bufs, False, self.disk_write_dma_alignment)
        return await self._write(OP_WRITEV, _iov_addr(iov), len(pins), pos, (pins, iov), "dma_writev", total,
                                 io_class, ioprio)

    async def _write(self, op: int, addr: int, n: int, pos: int, pin: Any, opname: str, total: int = -1,
                     io_class: IoClass | None = None, ioprio: int = 0) -> int:
        size = n if total < 0 else total
        if self._size.must_wait(pos, size):
            # Admitted now: a close() that begins while we wait lets this write land first,
            # in this file, and only then closes the descriptor.
            self._admit(opname)
            try:
                await self._wait_writable(pos, size)
                fut = self._submit_write(op, addr, n, pos, pin, opname, total, io_class, ioprio=ioprio)
            finally:
                self._release()
            return await fut
        return await self._submit_write(op, addr, n, pos, pin, opname, total, io_class, ioprio=ioprio)

    def _admit(self, op: str) -> None:
        """Count an operation that will wait in the File before it reaches the kernel."""
        if self._closed:
            raise ClosedFileError(f"{op} on closed file {self._path!r}")
        self._busy += 1

    def _release(self) -> None:
        self._busy -= 1
        if not self._busy and self._busy_idle is not None and not self._busy_idle.done():
            self._busy_idle.set_result(None)

    async def _wait_writable(self, pos: int, n: int) -> None:
        await self._size.wait_writable(pos, n, self._ftruncate)

    async def _ftruncate(self, length: int) -> None:
        await _ops.ftruncate(self._reactor, self._fd, length, self._path, self)

    def _submit_write(self, op: int, addr: int, n: int, pos: int, pin: Any, opname: str, total: int,
                      io_class: IoClass | None,
                      on_done: Completion | None = None, ioprio: int = 0) -> IoFuture[int]:
        self._size.write_issued(pos + (n if total < 0 else total))
        done = self._size if on_done is None else self._write_done_then(on_done)
        try:
            if op == OP_WRITE:
                return self._reactor.submit_rw(op, self._fd, addr, n, pos, pin, opname, self, done,
                                               self._queue, self._qstates, io_class, self.disk_write_dma_alignment,
                                               ioprio)
            return self._reactor.submit(op, self._fd, addr, n, pos, pin, opname, self, ioprio,
                                        on_done=done, nbytes=None if total < 0 else total,
                                        queue=self._queue, states=self._qstates, io_class=io_class,
                                        align=self.disk_write_dma_alignment)
        except BaseException:
            self._size.write_done((None, None, None, None, pos, n, None), -1)  # never issued: undo the count
            raise

    def _write_done_then(self, on_done: Completion) -> Completion:
        write_done = self._write_done  # looked up now: a subclass's hook (see _write_done)

        def done(req: tuple[Any, ...], res: int) -> None:
            write_done(req, res)
            on_done(req, res)

        return done

    def write_future(self, pos: int, buf: Any,
                     io_class: IoClass | None = None) -> IoFuture[int] | asyncio.Future[int]:
        """dma_write without the coroutine when nothing must be awaited first (for streams):
        checks now and returns the reactor's future; otherwise a task running dma_write."""
        if self._size.must_wait(pos, len(buf)):
            return asyncio.ensure_future(self.dma_write(pos, buf, io_class))
        return self._issue_write(pos, buf, io_class)

    def sink(self) -> FileSink:
        """The write side an output stream drives (Seastar's data_sink): writes issued at once
        with a completion hook, and whether the file lets them go yet. See FileSink."""
        return FileSink(self)

    def _issue_write(self, pos: int, buf: Any, io_class: IoClass | None = None,
                     on_done: Completion | None = None) -> IoFuture[int]:
        """Issue a write now; the caller has made sure _size.must_wait() is False. ``on_done(req,
        result)`` runs at the kernel's completion, even if the returned future was cancelled."""
        pin, addr, n = self._pin_write(pos, buf)
        return self._submit_write(OP_WRITE, addr, n, pos, pin, "dma_write", -1, io_class, on_done)

    def _write_done(self, req: tuple[Any, ...], res: int) -> None:
        """The completion of a write issued with an ``on_done`` (_issue_write: the output stream's
        buffers), before ``on_done``. Other writes pass the tracker itself as on_done: C counts
        them without a call."""
        self._size.write_done(req, res)

    def _iovec(self, op: str, pos: int, bufs: Iterable[Any], writable: bool,
               align: int) -> tuple[list[Any], array[int], int]:
        pins: list[Any] = []
        iov = array("Q")
        total = 0
        for b in bufs:
            pin, addr, n = _pin_buffer(b, writable)
            self._check(op, pos, n, addr, align)
            pins.append(pin)
            iov.extend((addr, n))
            total += n
        if not pins:
            raise ValueError(f"{op}: no buffers given")
        if len(pins) > IOV_MAX:
            # As Seastar: the part the kernel takes in one call (its UIO_MAXIOV), and a short
            # count, so the caller's loop carries on from there.
            del pins[IOV_MAX:]
            del iov[2 * IOV_MAX:]
            total = sum(iov[1::2])
        self._check(op, pos, total, 0, align)
        return pins, iov, total

    # -- size-changing and metadata ops ----------------------------------------------------

    async def flush(self) -> None:
        """Make written data durable (fdatasync)."""
        self._admit("flush")
        try:
            await _ops.fsync(self._reactor, self._fd, self, datasync=True)
        finally:
            self._release()

    async def truncate(self, length: int) -> None:
        """Set the file size; ordered after writes already issued."""
        check_length("truncate", length)
        if length >= POS_LIMIT:
            raise ValueError(f"truncate: length {length} is past the largest file size ({POS_LIMIT - 1})")
        self._admit("truncate")
        try:
            self._check_open()
            barrier = await self._size.exclusive()
            try:
                await self._ftruncate(length)
                self._size.truncated(length)
            finally:
                self._size.end_exclusive(barrier)
        finally:
            self._release()

    async def allocate(self, pos: int, length: int) -> None:
        """Reserve disk space for [pos, pos+length) without changing the size (fallocate KEEP_SIZE)."""
        await self._fallocate("allocate", _ops.FALLOC_FL_KEEP_SIZE, pos, length)

    async def discard(self, pos: int, length: int) -> None:
        """Punch a hole over [pos, pos+length): the range reads as zeros and frees its blocks."""
        await self._fallocate("discard", _ops.FALLOC_FL_PUNCH_HOLE | _ops.FALLOC_FL_KEEP_SIZE, pos, length)

    async def _fallocate(self, op: str, mode: int, pos: int, length: int) -> None:
        self._check_open()
        check_position(op, pos)
        check_length(op, length)
        if length == 0 or pos + length > POS_LIMIT:
            raise ValueError(f"{op}: need length > 0 and pos + length <= {POS_LIMIT}, got {pos}, {length}")
        self._admit(op)
        try:
            await _ops.fallocate(self._reactor, self._fd, mode, pos, length, op, self)
        finally:
            self._release()

    async def _stat_now(self) -> _ops.StatData:
        self._admit("stat")
        try:
            return await _ops.statx_fd(self._reactor, self._fd, self._path, owner=self)
        finally:
            self._release()

    async def stat(self) -> _ops.StatData:
        """statx of the open file; ``size`` is the logical size, counting writes still in flight."""
        self._check_open()
        pending = self._size.pending_end  # writes issued before this call, even if they land meanwhile
        st = await self._stat_now()
        logical = self._size.logical_view(st.size, pending)
        if logical != st.size:
            from dataclasses import replace

            st = replace(st, size=logical)
        return st

    @property
    def logical_size(self) -> int:
        """The size as this File knows it, without a system call: the size at open, grown by its
        own writes (those in flight included), set by its truncate(). Changes made through other
        descriptors or processes are not seen: ``await size()`` asks the kernel."""
        return self._size.logical_size

    async def size(self) -> int:
        """The logical size: what the file will hold once writes in flight land.

        A coroutine (as Seastar's ``file::size()``): ``n = await f.size()``. It asks the kernel
        (statx; for a block device, whose statx size is 0, the BLKGETSIZE64 ioctl, as Seastar
        does); ``logical_size`` is the synchronous view of what this File has done."""
        self._check_open()
        pending = self._size.pending_end  # writes issued before this call, even if they land meanwhile
        st = await self._stat_now()
        if stat.S_ISBLK(st.mode):
            return _ops.block_device_size(self._fd, self._path)
        return self._size.logical_view(st.size, pending)

    async def close(self) -> None:
        """Refuse new I/O at once, let what was admitted before finish (writes waiting for the
        file to grow, truncate, flush, …), wait for this file's requests in flight (reads
        included, even those whose awaiting task was cancelled), cut a sloppy-size file back,
        then close the fd. No request is ever issued on a closed descriptor (whose number the
        next open may reuse).

        The sequence runs to its end even if the caller is cancelled; every close() call
        waits for that one sequence.
        """
        if self._close_task is None:
            self._closed = True
            task = self._reactor.loop.create_task(self._close_now())
            task.add_done_callback(_retrieve)  # the awaiter may be gone: no "never retrieved"
            self._close_task = task
        await asyncio.shield(self._close_task)

    async def _close_now(self) -> None:
        try:
            while self._busy:
                self._busy_idle = self._reactor.loop.create_future()
                await self._busy_idle
            await self._reactor.drain_owner(self)
            cut = self._size.cut_at_close()
            if cut is not None:
                await self._ftruncate(cut)
                await self._reactor.drain_owner(self)
        finally:
            self._bounce.clear()
            await _ops.close(self._reactor, self._fd, self._path)

    async def __aenter__(self) -> File:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _bind_request_methods() -> None:
    """File.dma_read and dma_write in C (native/filemethods.c): the plain case without a Python
    frame of its own (`scripts/icount.sh` counts it); with keywords or a closed file they call the
    Python methods above, kept as File._py_dma_read / _py_dma_write, which stay the reference, and
    a request that cannot go at once gets those methods' coroutine for it (_dma_read, _dma_write)."""
    read, write = File.__dict__["dma_read"], File.__dict__["dma_write"]
    c_read, c_write = file_methods(File, read, write, File._dma_read, File._dma_write, OP_READ, OP_WRITE)
    for name, method in (("_py_dma_read", read), ("_py_dma_write", write), ("dma_read", c_read),
                         ("dma_write", c_write)):
        setattr(File, name, method)


_bind_request_methods()


class SizeTracker(WriteBooks):
    """A File's size bookkeeping, as Seastar's append-challenged file keeps it: the writes in
    flight and the furthest end among them, the logical size (what the file holds once they
    land), the size barrier that orders a size-changing operation (truncate) after the writes
    issued before it and before those issued after it, and a sloppy-size file's growth ahead of
    its writes. The File issues the system calls; this decides when, and keeps the books.

    The per-write counters (``writes``, ``pending_end``, ``known``, ``logical``, ``idle``) and
    ``write_done`` are the C base's (ioengine._iopath.WriteBooks): passed itself as a write's
    ``on_done``, the tracker is counted at the completion by C, without a Python call.
    """

    __slots__ = ("sloppy", "sloppy_end", "barrier", "_grow_lock", "_step", "_append_unlikely", "_loop")

    def __init__(self, size: int, options: FileOpenOptions, loop: asyncio.AbstractEventLoop) -> None:
        #: dma_write/dma_writev in flight, and the furthest end among them (0 when none).
        self.writes = 0
        self.pending_end = 0
        #: The size at open, grown by completed writes, set by truncate.
        self.known = size
        #: sloppy_size: how far the file has been grown ahead, and the furthest byte written
        #: (both -1 without sloppy_size).
        self.sloppy = options.sloppy_size
        #: No barrier and no sloppy growth: writes go at once, counted in by IoPath (C).
        self.straight = not self.sloppy
        self.sloppy_end = size if self.sloppy else -1
        self.logical = size if self.sloppy else -1
        #: Set while a size-changing operation runs: writes wait for it (see exclusive()).
        self.barrier: asyncio.Future[None] | None = None
        self.idle = None  # a future resolved when the last write in flight lands (see exclusive())
        self._grow_lock = asyncio.Lock()
        self._step = options.extent_allocation_size_hint or (1 << 20)
        self._append_unlikely = options.append_is_unlikely
        self._loop = loop

    @property
    def logical_size(self) -> int:
        """The size counting writes in flight (File.logical_size)."""
        size = self.logical if self.logical >= 0 else self.known
        return max(size, self.pending_end)

    def logical_view(self, disk_size: int, pending: int) -> int:
        """The logical size from the kernel's ``disk_size`` and the end of the writes that were in
        flight when it was asked (``pending``)."""
        if self.logical >= 0:  # sloppy: the disk size runs ahead on purpose
            disk_size = self.logical
        if self._append_unlikely:
            return disk_size
        return max(disk_size, pending)

    # -- writes ----------------------------------------------------------------------------

    def must_wait(self, pos: int, n: int) -> bool:
        """True when a write of ``n`` bytes at ``pos`` must first await wait_writable()."""
        return self.barrier is not None or (self.sloppy and pos + n > self.sloppy_end)

    async def wait_writable(self, pos: int, n: int, ftruncate: Callable[[int], Awaitable[None]]) -> None:
        """Wait out a size barrier; grow a sloppy-size file past ``pos + n`` (by ``ftruncate``)."""
        if self.barrier is not None:
            await self.wait_barrier()
        if self.sloppy and pos + n > self.sloppy_end:
            await self._grow(pos + n, ftruncate)

    def write_issued(self, end: int) -> None:
        self.writes += 1
        if end > self.pending_end:
            self.pending_end = end

    # write_done(req, res), the completion of a write (``req[4]`` its position) even if the
    # writer was cancelled, so the logical size and the barrier's wait follow what the disk
    # actually has in flight (``res`` < 0: failed, or never issued), is WriteBooks'.

    async def _grow(self, end: int, ftruncate: Callable[[int], Awaitable[None]]) -> None:
        # Growth is serialised and only ever grows: two ftruncates finishing out of order must
        # never shrink the file under a write that already landed.
        async with self._grow_lock:
            if end <= self.sloppy_end:
                return
            target = -(-end // self._step) * self._step
            await ftruncate(target)
            self.sloppy_end = target

    # -- size-changing operations ----------------------------------------------------------

    async def wait_barrier(self) -> None:
        while self.barrier is not None:
            await asyncio.shield(self.barrier)

    async def exclusive(self) -> asyncio.Future[None]:
        """Order a size-changing op after the writes already issued and before later ones: returns
        the barrier to pass to end_exclusive() once the op is done."""
        await self.wait_barrier()
        barrier: asyncio.Future[None] = self._loop.create_future()
        self.barrier = barrier
        self.straight = False
        try:
            while self.writes:
                idle: asyncio.Future[None] = self._loop.create_future()
                self.idle = idle
                await idle
        except BaseException:  # cancelled while waiting: later ops must not wait on us forever
            self.end_exclusive(barrier)
            raise
        return barrier

    def end_exclusive(self, barrier: asyncio.Future[None]) -> None:
        self.barrier = None
        self.straight = not self.sloppy
        if not barrier.done():
            barrier.set_result(None)

    def truncated(self, length: int) -> None:
        """The file was cut or extended to ``length``."""
        self.known = length
        if self.sloppy_end >= 0:
            self.sloppy_end = length
            self.logical = length

    def cut_at_close(self) -> int | None:
        """The length a sloppy-size file is cut back to at close (None: nothing to cut)."""
        if self.logical >= 0 and self.sloppy_end > self.logical:
            return self.logical
        return None


class FileSink:
    """Seastar's data_sink over a File: what a write-behind stream needs beyond File's public
    calls (dma_write, flush, truncate, close). Made by ``File.sink()``.

    A stream issues its full buffers from completion callbacks, where it cannot await; so a
    write is issued in two steps: ``must_wait(pos, n)`` says whether the file lets it go now
    (no size-changing operation in progress, a sloppy-size file already grown that far), and
    ``put`` issues it (if not, the stream's task awaits ``wait_writable`` first).
    """

    __slots__ = ("_file",)

    def __init__(self, file: File) -> None:
        self._file = file

    @property
    def file(self) -> File:
        return self._file

    def must_wait(self, pos: int, n: int) -> bool:
        """True when a write of ``n`` bytes at ``pos`` must await ``wait_writable`` before ``put``."""
        return self._file._size.must_wait(pos, n)

    async def wait_writable(self, pos: int, n: int) -> None:
        """Wait until a write of ``n`` bytes at ``pos`` may be put: after a size barrier
        (truncate, …) in progress, and the growth of a sloppy-size file past ``pos + n``."""
        await self._file._wait_writable(pos, n)

    def put(self, pos: int, buf: Any, io_class: IoClass | None = None,
            on_done: Completion | None = None) -> IoFuture[int]:
        """Issue a write of ``buf`` at ``pos`` now (``must_wait`` must be False); the reactor's
        future is returned. ``on_done(request, result)`` runs at the kernel's completion, even if
        the future was cancelled (a stream learns the outcome there, without awaiting)."""
        return self._file._issue_write(pos, buf, io_class, on_done)

    async def reserve(self, pos: int, length: int, keep_size: bool) -> None:
        """Reserve disk space for [pos, pos+length) (fallocate), growing the file over it unless
        ``keep_size``. Advisory for a stream: an OSError means the filesystem will not; the
        caller decides whether to go on without."""
        f = self._file
        mode = _ops.FALLOC_FL_KEEP_SIZE if keep_size else 0
        await _ops.fallocate(f._reactor, f.fileno(), mode, pos, length, "preallocate", f.path)


#: Idle bounce buffers a File keeps for dma_read_bulk(into=...), and the largest one kept.
_BOUNCE_KEEP = 64
_BOUNCE_MAX = 4 << 20


def _new_bounce(size: int, alignment: int) -> DmaBuffer:
    """A bounce buffer for dma_read_bulk(into=...), owned by its File (not the reactor's pool)."""
    return DmaBuffer(size, alignment)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def check_position(op: str, pos: object) -> None:
    """A file position the kernel can take: an int in [0, 2**63)."""
    if isinstance(pos, bool) or not isinstance(pos, int):
        raise TypeError(f"{op}: position must be an int, got {type(pos).__name__} {pos!r}")
    if not 0 <= pos < POS_LIMIT:
        raise ValueError(f"{op}: position {pos} is outside [0, 2**63), the file offsets the kernel takes")


def check_length(op: str, length: object) -> None:
    """A byte count: an int >= 0."""
    if isinstance(length, bool) or not isinstance(length, int):
        raise TypeError(f"{op}: length must be an int, got {type(length).__name__} {length!r}")
    if length < 0:
        raise ValueError(f"{op}: length must be >= 0, got {length}")


def _iov_addr(iov: array[int]) -> int:
    return iov.buffer_info()[0]


async def open_file_dma(path: str | bytes | os.PathLike[str] | os.PathLike[bytes], flags: int = OpenFlags.RO,
                        options: FileOpenOptions | None = None) -> File:
    """Open ``path`` for direct I/O on this thread's reactor.

    On a filesystem that refuses O_DIRECT, tmpfs is opened buffered (``file.direct`` is False,
    the alignments stay those of direct I/O); any other such filesystem is an error.
    ``FileOpenOptions(buffered=True)`` opens without O_DIRECT on any filesystem (alignments 1).
    """
    options = options or FileOpenOptions()
    if not isinstance(options, FileOpenOptions):
        raise TypeError(f"options must be a FileOpenOptions, got {type(options).__name__}")
    # a truthy string would silently change them
    for name in ("buffered", "align_writes_to_logical_block", "blocking_buffered_writes"):
        value = getattr(options, name)
        if not isinstance(value, bool):
            raise TypeError(f"FileOpenOptions.{name} must be a bool, got {type(value).__name__} {value!r}")
    flags = int(flags)
    if flags & ~_KNOWN_FLAGS:
        raise ValueError(f"open_file_dma: unknown flag bits {flags & ~_KNOWN_FLAGS:#o}; use OpenFlags")
    if (flags & _ACCMODE) == _ACCMODE:
        raise ValueError("open_file_dma: flags may hold only one of OpenFlags.RO, WO, RW")
    path = _ops.check_path(path, "open_file_dma")
    r = get_reactor()
    spath = os.fsdecode(path)
    direct = not options.buffered
    try:
        fd = await _ops.openat(r, path, flags | (os.O_DIRECT if direct else 0), options.create_permissions,
                               "open_file_dma")
    except OSError as e:
        if e.errno != errno.EINVAL or not direct:
            raise
        # EINVAL with O_DIRECT: the filesystem does not do direct I/O. tmpfs is fine buffered
        # (it is memory anyway); anything else would silently lose the point of DMA.
        fd = await _ops.openat(r, path, flags, options.create_permissions, "open_file_dma")
        fstype = (await r.run_blocking(_ops.fstatfs_blocking, fd))[0]
        if (await _ops.statx_fd(r, fd, spath)).is_directory:
            await _ops.close(r, fd, spath)
            raise IsADirectoryError(errno.EISDIR, "open_file_dma failed: it is a directory, not a file",
                                    spath) from None
        if fstype != TMPFS_MAGIC:
            await _ops.close(r, fd, spath)
            raise OSError(errno.EINVAL, f"open_file_dma failed: the filesystem of {spath!r} "
                          f"(type {fstype:#x}) does not support O_DIRECT", spath) from None
        direct = False
    try:
        st = await _ops.statx_fd(r, fd, spath)
        if options.buffered and st.is_directory:  # O_DIRECT refuses a directory; a plain open does not
            raise IsADirectoryError(errno.EISDIR, "open_file_dma failed: it is a directory, not a file", spath)
        # The page cache takes any address, offset and length.
        mem, read, write = (1, 1, 1) if options.buffered else _alignments(st, direct)
        if options.align_writes_to_logical_block:
            write = read
        queue = r.disks.for_device(st.device_id, r.loop.time())
        return File(fd, spath, r, options, direct, mem, read, write, st.size, queue)
    except BaseException:
        await _ops.close(r, fd, spath)
        raise


def _alignments(st: _ops.StatData, direct: bool) -> tuple[int, int, int]:
    """(memory, disk read, disk write) alignment: statx DIOALIGN, else the device's block sizes, else 4096."""
    sizes = _sysfs_block_sizes(st.device_major, st.device_minor)
    physical = sizes[1] if sizes else 0
    if direct and st.dio_offset_align:
        mem = st.dio_mem_align or st.dio_offset_align
        read = st.dio_offset_align
    elif sizes:
        mem, read = sizes[0], sizes[0]
    else:
        mem = read = DEFAULT_ALIGNMENT
    # Writes smaller than the physical block make the device read-modify-write: align them to it.
    write = max(read, physical)
    return mem, read, write
