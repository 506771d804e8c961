"""The reactor: one per thread, attached to the running asyncio loop.

Requests are staged as records in C (ioengine._iopath) and handed to the backend once per loop
turn; the backend's eventfd, registered with the loop, wakes us when completions arrive, and C
resolves their futures in a batch. Every in-flight request holds a pin on its buffer (a buffer
export), so memory the kernel may still write into is never freed or reused before its
completion, whatever happens to the task that awaited it.
"""
from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from iosched import READ as SCHED_READ
from iosched import WRITE as SCHED_WRITE
from iosched import DirectGrant, IoClassState, IoQueue, WakeupQueue

from . import poller
from ._iopath import UNIT_FLAG, IoFuture, IoPath
from .backends import open_backend
from .backends.base import OP_READ, OP_READV, OP_WRITE, OP_WRITEV, REAP_BATCH, Backend
from .buffers import BufferPool
from .disk_queues import DiskQueues
from .errors import kernel_error
from .io_class import IoClass
from .io_class import _current as _current_io_class
from .options import ReactorOptions
from .pagecache import PageCache
from .spinner import Spinner

log = logging.getLogger(__name__)
assert (OP_READ, OP_WRITE) == (SCHED_READ, SCHED_WRITE)  # submit_rw indexes class counters by op
T = TypeVar("T")

_local = threading.local()
_all_reactors: weakref.WeakSet[Reactor] = weakref.WeakSet()


# An in-flight request is a struct in C (native/iopath.c, ie_request). Python sees it as a
# tuple only where it must: ``on_done(request, result)`` callbacks and error messages get
#   (future, pin, operation name, owner, pos, length, on_done, grant)
# ``owner`` is the File the request belongs to (or a path for metadata ops): error messages
# name its path, and File.close() waits until no request of its own is left in flight.
# ``pin`` keeps the buffer (and its export) alive until the kernel's completion; ``on_done``
# (or None) is called at that completion, even if the awaiter is gone. ``grant`` is the
# iosched DirectGrant it was dispatched under (its completion is booked there), or None.
_OP, _PATH, _POS, _LEN = 2, 3, 4, 5


#: Positions the kernel takes (loff_t is signed) and the largest count one record carries.
POS_LIMIT = 1 << 63
LEN_LIMIT = 1 << 32
_U64 = 1 << 64


def check_record(opname: str, fd: int, addr: int, length: int, pos: int, flags: int = 0) -> None:
    """Refuse numbers that cannot cross into C as one record, before anything is staged.

    array('Q').extend stops at the first bad word and keeps the ones before it: a record
    refused half-way would shift every later one (request ids read as addresses).
    """
    for name, v, limit in (("position", pos, POS_LIMIT), ("length", length, LEN_LIMIT), ("address", addr, _U64),
                           ("file descriptor", fd, 1 << 32), ("flags", flags, 1 << 24)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{opname}: {name} must be an int, got {type(v).__name__} {v!r}")
        if not 0 <= v < limit:
            raise ValueError(f"{opname}: {name} {v} is outside [0, {limit:#x})")


def request_error(req: tuple, err: int) -> OSError:
    detail = f"pos {req[_POS]}, {req[_LEN]} bytes" if req[_LEN] >= 0 else ""
    return kernel_error(err, req[_OP], req[_PATH], detail)


#: How long a lone class's direct grant may stay open while I/O keeps flowing, before its books
#: are settled (tokens, fairness, in-disk cost). Anything that asks the queue settles first (a
#: new grant, another class, queued requests, metrics, class changes), so this only bounds how
#: stale the books get in between; settled every loop turn instead, the grant's Python costs
#: a lone class a few % of its IOPS where the engine is CPU-bound (`ioengine-bench sched`, (c)).
SETTLE_NS = 250_000


class Reactor:
    """Owns a backend (ring), the in-flight table and the per-reactor DMA buffer pool."""

    def __init__(self, options: ReactorOptions | None = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.options = options or ReactorOptions()
        self.loop = loop or asyncio.get_running_loop()
        self._backend = open_backend(self.options)
        log.info("ioengine: reactor using %s", self._backend.describe())
        self.buffers = BufferPool(self.options.buffer_pool_depth, self.options.buffer_pool_max_size)
        self.closed = False
        self._capacity = self.backend.capacity
        self._flush_at = self.options.submit_batch
        self._alone_bytes = self.options.submit_alone_bytes
        # The requests' futures: IoFutures (C) of our loop, made by IoPath without a call. A
        # completion batch resumes their tasks directly (IoPath.deliver), not via call_soon.
        self._create_future = functools.partial(IoFuture, loop=self.loop)
        #: The thread the reactor and its loop run on: requests are staged there only.
        self.thread_id = threading.get_ident()
        #: The per-request path (C): staged records and the in-flight requests, whose futures
        #: it resolves from a batch of completions.
        self._path = IoPath(self._create_future, request_error, self._grant_reaped, self._capacity,
                            self._flush_at, self._alone_bytes, self.loop.call_soon, self._flush, self._submit_inline,
                            _current_io_class)
        self._rw = self._path.rw
        # io_share_in_disk: a class within its part of the disk keeps the C path while others wait
        self._path.share_direct = bool(self.options.io_share_in_disk)
        #: The per-I/O path of dma_read/dma_write, in C (see submit_buffer below for what it decides).
        self.submit_buffer = self._path.submit
        #: The same, returning what awaits the future (a coroutine: File.dma_read / dma_write).
        self.submit_request = self._path.submit_awaitable
        #: File.dma_read_many's path, in C: a batch of reads with one future (IoPath.read_many).
        self.read_many = self._path.read_many
        #: Buffered files' requests served by the page cache at the call (ioengine.pagecache).
        self.page_cache = PageCache(self.loop)
        self._next_unit = UNIT_FLAG | 1  # user data of the disk queues' dispatched units
        #: Completions collected by an inline submit, delivered by the next _flush (a loop callback).
        self._deferred: list[tuple[list[int], list[int]]] = []
        #: Completions waiting for their wake-up while io classes compete for the loop
        #: (ReactorOptions.io_wakeup_budget), and whether a loop turn will wake more.
        budget = self.options.io_wakeup_budget
        self._wakeups: WakeupQueue | None = WakeupQueue(budget) if budget else None
        self._wake_scheduled = False
        #: Completions that waited a loop turn for their wake-up (summed over turns).
        self.held_wakeups = 0
        self._idle_waiters: list[asyncio.Future] = []
        self._owner_waiters: list[asyncio.Future] = []
        self._blocking_owners: dict[object, int] = {}  # owner -> its thread-pool calls still running
        self._executor: ThreadPoolExecutor | None = None
        self._ring = getattr(self.backend, "ring", None) if self.backend.kernel_fs_ops else None
        #: The disk scheduler: one iosched queue per device.
        self.disks = DiskQueues(self.options, self.loop.time())
        self._sched: dict[int, tuple] = {}  # unit user data -> (queue, dispatch, request user data)
        # The open iosched.DirectGrant (committed when settled: see SETTLE_NS) is self._path.grant.
        self._reaped_grants: list[DirectGrant] = []  # grants with completions not yet booked
        self._refill_open = False  # the open grant has a refill (IoQueue.refill_grant)
        self._path.settle_ns = SETTLE_NS  # the grants' books (settled_ns: when settle_grants last ran)
        # Something the disk queues' dispatch must see since it last ran: a request queued, a
        # queued one completed, the token timer (see _submit_now)
        self._dispatch_due = True
        self._dispatched_ns = 0  # when it last ran
        self._grant_flush = -1  # the flush (IoPath.flushes) the open grant was opened in
        # The units waiting in the disk queues are counted in self._path.sched_waiting.
        self._busy_queues: dict[IoQueue, None] = {}  # queues with units waiting (ordered set)
        self._timer: asyncio.Handle | None = None
        # When the timer fires: uvloop's call_at returns a plain Handle (no when()) for a time
        # its own clock has already passed, so the deadline is kept here.
        self._timer_at = math.inf
        self._loop_guard: Any = None
        self.loop.add_reader(self.backend.eventfd, self._on_wakeup)
        # Idle polling: the selector wrapper on asyncio's loops, a self-requeuing callback on
        # loops without a selector to wrap (uvloop); either polls only while it pays.
        self._poll_wake_ns = self.options.idle_poll_wake_us * 1000
        self._poll_depth = self.options.idle_poll_depth
        self._spinner: Spinner | None = None
        #: Completions found by idle polling (rather than by a wake-up from the eventfd).
        self.polled = 0
        #: Completions reaped by the loop's selector itself when the eventfd ended its sleep
        #: (rather than by the eventfd's callback, a loop turn later).
        self.woken = 0
        self._unpoll = poller.install(self.loop, self.options.idle_poll_time_us, self._worth_polling,
                                      self._poll_completions, precise=self.options.precise_timers,
                                      hybrid=self._bursts, hybrid_fraction=self.options.idle_poll_hybrid,
                                      fd=self.backend.eventfd, on_fd=self._reap_woken)
        if self._unpoll is None and self.options.idle_poll_time_us > 0:
            self._spinner = Spinner(self.loop, self.options.idle_poll_time_us, self._worth_polling,
                                    self._poll_completions)
        self._use_native_submit()
        _all_reactors.add(self)

    @property
    def backend(self) -> Backend:
        """The backend requests go through (a test may wrap it: ioengine.testing.inject_faults)."""
        return self._backend

    @backend.setter
    def backend(self, backend: Backend) -> None:
        self._backend = backend
        # requests served at the call would pass a fault injector by
        self.page_cache.enabled = isinstance(backend, Backend)
        self._use_native_submit()

    def _use_native_submit(self) -> None:
        """Let IoPath submit through the ring in C (mid-turn submissions without Python) when
        the backend offers it (io_uring); others (linux-aio, threads, a fault injector) get
        _submit_inline and the backend's flush()."""
        b = self._backend
        native = None if self.closed else b.native_submit()
        reap = None if native is None else b.native_reap()
        if native is None:
            self._path.set_ring(0)
        else:
            self._path.set_ring(native[0], native[1], b.eventfd, REAP_BATCH, self._deferred, self._fail_staged,
                                self._spinner.kick if self._spinner is not None else None)
        # The reaps: one C call each when the ring offers it (no cffi call, no unpacking in
        # Python; `OPTS=idle_poll_time_us=0 QD=1 scripts/icount.sh` counts a turn), else the backend's.
        if reap is None:
            self._poll_backend, self._reap_backend = b.poll, b.reap
            self._turn = None
        else:
            self._path.set_reap(*reap)
            self._poll_backend, self._reap_backend = self._path.poll_ring, self._path.reap_woken_ring
            # The plain loop turn in one C call (reap, complete, deliver, submit: IoPath.turn),
            # handing back to _complete/_submit_now what it does not do itself;
            # `OPTS=idle_poll_time_us=0 QD=1 LOOP=uvloop scripts/icount.sh` counts a turn.
            # (the lists it must find empty: waiters a completion wakes; with a grant open or
            # grants' completions unbooked it settles them as _submit_now does)
            self._path.set_turn(self._complete, self._submit_now, (self._owner_waiters, self._idle_waiters),
                                self._settle_after_submit, self._reaped_grants)
            self._turn = self._path.turn

    # -- submission ------------------------------------------------------------------------
    #
    # Every request is registered in the C in-flight table (which owns its future, its buffer
    # pin and its completion callback) and staged as one record, or several units through a
    # disk queue; _schedule_flush() makes sure one loop callback hands the batch over.

    def _schedule_flush(self) -> None:
        if not self._path.flush_scheduled:
            self._path.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _register(self, pos: int, nbytes: int, pin: Any, opname: str, owner: Any,
                  on_done: Callable[[tuple, int], None] | None) -> tuple[IoFuture[int], int]:
        if self.closed:
            raise RuntimeError("the reactor is closed")
        return self._path.register(pos, nbytes, pin, opname, owner, on_done, None)

    def _staged_enough(self, length: int) -> None:
        """Submit at once, mid-turn, when the batch is full or the request is large."""
        if length >= self._alone_bytes or self._path.submit_now:
            self._submit_now(inline=True)

    def submit(self, op: int, fd: int, addr: int, length: int, pos: int, pin: Any, opname: str,
               path: Any, flags: int = 0,
               on_done: Callable[[tuple, int], None] | None = None, nbytes: int | None = None,
               queue: IoQueue | None = None, states: dict[IoClass | None, IoClassState] | None = None,
               io_class: IoClass | None = None,
               align: int = 4096) -> IoFuture[int]:
        """Queue one read/write/fsync record; the future resolves to the result (bytes or 0).

        ``nbytes`` is the byte count error messages quote when ``length`` is not one (an iovec
        count for readv/writev, -1 for fsync). With ``queue`` (the file's disk queue and its
        class ``states``), the request goes through the disk scheduler in ``io_class`` (None:
        the one chosen by ``with io_class:``, else the default).
        """
        if self.closed:
            raise RuntimeError("the reactor is closed")
        check_record(opname, fd, addr, length, pos, flags)
        n = length if nbytes is None else nbytes
        word0 = op | (fd << 8) | (flags << 40)
        if queue is not None:
            cls = io_class if io_class is not None else _current_io_class.get()
            st = states.get(cls) if states is not None else None
            if st is None:
                assert cls is not None  # the default class (None) always has its state
                st = self.disks.class_state(self, queue, cls)
            direction = SCHED_READ if op == OP_READ or op == OP_READV else SCHED_WRITE
            if (queue.throttling or self._path.sched_waiting or self._path.outstanding >= self._capacity
                    or st.limited):
                fut, ud = self._path.register(pos, n, pin, opname, path, on_done, None)
                try:
                    self._queue_request(queue, st, direction, n, (word0, addr, length, pos, ud),
                                        op == OP_READV or op == OP_WRITEV, align)
                except BaseException:
                    self._path.discard(ud)  # a refused request leaves no trace
                    raise
                self._schedule_flush()
                return fut
            # An unthrottled disk with room in the ring: straight to the kernel, counted.
            st.ops[direction] += 1
            st.bytes[direction] += n
            if self._path.delivering:
                st.fed[0] += 1
        fut, ud = self._path.register(pos, n, pin, opname, path, on_done, None)
        self._path.stage(word0, addr, length, pos, ud)
        self._staged_enough(n)
        self._schedule_flush()
        return fut

    # submit_buffer(op, fd, buf, pos, disk_mask, mem_mask, opname, owner, on_done, queue, states,
    # io_class) -> future or None, set in __init__, is C (IoPath.submit): the per-I/O path of
    # dma_read/dma_write (OP_READ / OP_WRITE). When the reactor is open, nothing waits in the
    # disk queues, the ring has room and the class (``io_class``, else ``with io_class:``'s)
    # has a state in ``states`` and no limits, C pins ``buf`` (a buffer export, held until
    # the completion), checks ``pos``, the length and the address against the masks, takes
    # the cost from the disk's open direct grant when it throttles, counts the request in its
    # class and stages it, submitting mid-turn and scheduling the flush like submit_rw. It
    # returns None when the request is not that plain: nothing has happened then, and the
    # caller takes the general path (submit_rw), which opens a grant, queues, or says what is
    # wrong.

    def _submit_inline(self) -> None:
        self._submit_now(inline=True)

    def submit_rw(self, op: int, fd: int, addr: int, length: int, pos: int, pin: Any, opname: str, owner: Any,
                  on_done: Callable[[tuple, int], None] | None, queue: IoQueue | None,
                  states: dict[IoClass | None, IoClassState] | None,
                  io_class: IoClass | None, align: int, ioprio: int = 0) -> IoFuture[int]:
        """submit() for one plain read or write (OP_READ / OP_WRITE), all positional; ``ioprio``
        the kernel's priority of the request (0: none; the record's flags).

        The per-I/O path of dma_read/dma_write: when nothing waits in the disk queue and the
        ring has room, a request of a class without limits goes straight to the kernel,
        under a direct grant of the disk's queue when it throttles (iosched.DirectGrant:
        the tokens and fairness are booked in one go per loop turn); anything else is
        queued, or goes through submit().
        """
        grant = st = None
        c = 0.0
        if queue is not None:
            st = states.get(io_class if io_class is not None else _current_io_class.get()) if states else None
            if st is None or self.closed:
                return self.submit(op, fd, addr, length, pos, pin, opname, owner, ioprio, on_done, None, queue,
                                   states, io_class, align)
            if self._path.outstanding >= self._capacity or st.limited or st.nr_queued or (
                    self._path.sched_waiting and not (queue.throttling and queue.config.share_in_disk)):
                # (with share_in_disk, what waits may be only classes over their part of the
                # disk: open_grant says whether this one may still go directly)
                return self._queue_rw(op, fd, addr, length, pos, pin, opname, owner, on_done, queue, st, align, ioprio)
            if queue.throttling:
                grant = self._path.grant
                if grant is None or grant.io_class is not st:
                    grant = self._open_grant(queue, st)
                    if grant is None:
                        return self._queue_rw(op, fd, addr, length, pos, pin, opname, owner, on_done, queue, st, align,
                                              ioprio)
                # DirectGrant.take, inlined (the per-request path)
                if length == grant.last_length and op == grant.last_direction:
                    c = grant.last_cost
                else:
                    c = grant.cost_of(op, length)
                if c > grant.budget and self._grant_flush != self._path.flushes:
                    # Spent, and opened in an earlier turn: the bucket has refilled since (a grant
                    # spans turns while it lasts; see SETTLE_NS), so settle and take a fresh one.
                    grant = self._open_grant(queue, st)
                    if grant is None:
                        return self._queue_rw(op, fd, addr, length, pos, pin, opname, owner, on_done, queue, st, align,
                                              ioprio)
                if c > grant.budget:
                    return self._queue_rw(op, fd, addr, length, pos, pin, opname, owner, on_done, queue, st, align,
                                          ioprio)
        elif self.closed:
            raise RuntimeError("the reactor is closed")
        # the priority rides in word 0's flags (bit 40 on), which C keeps from ``op``
        fut = self._rw(op | (ioprio << 40) if ioprio else op, fd, addr, length, pos, pin, opname, owner, on_done,
                       grant)
        if fut is None:  # a number does not fit its word: nothing was staged; say which
            check_record(opname, fd, addr, length, pos)
            raise ValueError(f"{opname}: op {op} is not a request the kernel takes")
        if grant is not None:
            grant.budget -= c
            grant.n += 1
        if st is not None:
            st.ops[op] += 1  # OP_READ/OP_WRITE are iosched's READ/WRITE (0/1)
            st.bytes[op] += length
            if self._path.delivering:
                st.fed[0] += 1
        if self._path.submit_now:
            self._submit_now(inline=True)
        if not self._path.flush_scheduled:
            self._path.flush_scheduled = True
            self.loop.call_soon(self._flush)
        return fut

    def _queue_rw(self, op: int, fd: int, addr: int, length: int, pos: int, pin: Any, opname: str, owner: Any,
                  on_done: Callable[[tuple, int], None] | None, queue: IoQueue, st: IoClassState,
                  align: int, ioprio: int = 0) -> IoFuture[int]:
        """submit_rw() through the disk queue (submit()'s scheduled branch)."""
        check_record(opname, fd, addr, length, pos)  # the record is staged later, at dispatch
        fut, ud = self._register(pos, length, pin, opname, owner, on_done)
        try:
            req = queue.queue(st, op, length, (op | (fd << 8) | (ioprio << 40), addr, length, pos, ud),
                              self.loop.time(), align)
        except BaseException:
            self._path.discard(ud)
            raise
        units = len(req.parts) if req.parts else 1
        self._path.sched_waiting += units
        if self._path.delivering:  # issued by a task a completion woke (IoClassState.fed)
            st.fed[0] += units
        self._busy_queues[queue] = None
        self._dispatch_due = True
        self._schedule_flush()
        return fut

    def _grant_reaped(self, grant: DirectGrant, n: int) -> None:
        """C's completion path: ``n`` requests dispatched under ``grant`` completed (booked at
        the next flush, once per grant)."""
        if not grant.reaped:
            self._reaped_grants.append(grant)
        grant.reaped += n
        if self._refill_open:
            # the open grant may take its class's completed requests' room again at once
            # (IoQueue.refill_grant), rather than its next request reopening it through Python
            g = self._path.grant
            if g is not None:
                g.queue.refill_grant(g, grant, n)

    def _open_grant(self, queue: IoQueue, st: IoClassState) -> DirectGrant | None:
        """Settle the books (commit the open grant, book the completions reaped) and ask
        ``queue`` for a grant for class ``st``: it must see the room completions made."""
        self.settle_grants()
        g = self._path.grant = queue.open_grant(st, self.loop.time())
        self._refill_open = g is not None and g.refill > 0.0
        self._grant_flush = self._path.flushes
        return g

    def _commit_grant(self) -> None:
        """Book the open grant's dispatches in its queue: before anything else asks the queue."""
        g = self._path.grant
        if g is not None:
            self._path.grant = None
            g.queue.commit_grant(g)

    def settle_grants(self) -> None:
        """Bring the disk queues' books up to date: commit the open grant, book the completions
        of grants' requests reaped since the last call, count the staged requests in their
        classes (IoPath counts them in C and adds them at each submission)."""
        self._path.settled_ns = time.monotonic_ns()
        self._path.sync_counters()
        self._commit_grant()
        if self._reaped_grants:
            now = self.loop.time()
            reaped = self._reaped_grants[:]  # the list stays the one IoPath.set_turn was given
            self._reaped_grants.clear()
            for g in reaped:
                g.queue.complete_grant(g, g.reaped, now)
                g.reaped = 0
            path = self._path
            if self.options.io_anticipate and path.sched_waiting and not path.flush_scheduled:
                # Those completions may end an anticipation hold (IoQueueConfig.anticipate) that
                # the last dispatch obeyed; nothing else would dispatch again when nothing of the
                # waiting class is in flight: the next loop turn does.
                path.flush_scheduled = True
                self.loop.call_soon(self._flush)

    def _queue_request(self, queue: IoQueue, st: IoClassState, direction: int, n: int, rec: tuple, vectored: bool,
                       align: int) -> None:
        limit = queue.max_request_length[direction]
        if vectored and n > limit:
            # An iovec request cannot be cut into parts here: cost it as one unit.
            n = int(limit)
        req = queue.queue(st, direction, n, rec, self.loop.time(), align)
        units = len(req.parts) if req.parts else 1
        self._path.sched_waiting += units
        if self._path.delivering:  # issued by a task a completion woke (IoClassState.fed)
            st.fed[0] += units
        self._busy_queues[queue] = None
        self._dispatch_due = True

    def _dispatch_queues(self) -> None:
        """Move what the disk queues allow (tokens, fairness, ring room) into the staged batch."""
        now = self.loop.time()
        path = self._path
        sched = self._sched
        for q in list(self._busy_queues):
            room = self._capacity - path.outstanding
            if room <= 0:
                self._dispatch_due = True  # the ring is full: again once completions make room
                break
            batch = q.dispatch(now, room)
            for d in batch:
                rec = d.payload
                unit = self._next_unit
                self._next_unit = unit + 1
                sched[unit] = (q, d, rec[4])
                if d.request is d:
                    path.stage(rec[0], rec[1], rec[2], rec[3], unit)
                else:  # a part of a split request: its own record and completion
                    off = d.offset
                    path.stage(rec[0], rec[1] + off, d.length, rec[3] + off, unit)
            self._path.sched_waiting -= len(batch)
            t = q.next_dispatch_time(now)
            if t is None:
                del self._busy_queues[q]
                continue
            if t <= now:
                self._dispatch_due = True  # more may go now (slices, or the ring's room)
            if t <= now and batch and self._capacity > path.outstanding and not path.flush_scheduled:
                # more may go at once (the queue hands out slices: ReactorOptions.io_dispatch_slice):
                # on the next loop turn, after the tasks this turn woke have queued theirs
                path.flush_scheduled = True
                self.loop.call_soon(self._flush)
            elif now < t < math.inf and (self._timer is None or t < self._timer_at):
                # Tokens hold it back: come back when they will allow the next request.
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self.loop.call_at(t, self._on_timer)
                self._timer_at = t

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._dispatch_due = True
        if not self._path.flush_scheduled:
            self._path.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def submit_prepped(self, prep: Callable[..., int], args: tuple, pin: Any, opname: str,
                       path: Any, on_done: Callable[[tuple, int], None] | None = None) -> IoFuture[int]:
        """An io_uring metadata op (openat, statx, …): prepare its SQE now, submit this turn."""
        fut, ud = self._register(0, -1, pin, opname, path, on_done)
        try:
            ret = prep(self._ring, *args, ud)
        except BaseException:
            self._path.discard(ud)
            raise
        if ret < 0:
            self._path.discard(ud)
            raise kernel_error(-ret, opname, getattr(path, "path", path))
        self._path.add_in_kernel(1)
        self._schedule_flush()
        return fut

    def run_blocking(self, fn: Callable[..., T], *args: Any, owner: object = None) -> asyncio.Future[T]:
        """Run a blocking call the kernel cannot do asynchronously on the reactor's thread pool.

        With ``owner`` (a File), the call counts as that owner's until the thread is done with
        it, even if the awaiting task was cancelled: drain_owner() waits for it too, so a file
        descriptor is never closed (and its number reused) under a call still using it.
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.options.threads, thread_name_prefix="ioengine-sys")
        if owner is None:
            return self.loop.run_in_executor(self._executor, fn, *args)
        cf = self._executor.submit(fn, *args)
        counts = self._blocking_owners
        counts[owner] = counts.get(owner, 0) + 1
        loop = self.loop

        def finished(_: Any) -> None:  # runs on the worker thread
            try:
                loop.call_soon_threadsafe(self._blocking_done, owner)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        cf.add_done_callback(finished)
        return asyncio.wrap_future(cf, loop=loop)

    def _blocking_done(self, owner: object) -> None:
        counts = self._blocking_owners
        left = counts[owner] - 1
        if left:
            counts[owner] = left
        else:
            del counts[owner]
        if self._owner_waiters:
            for w in self._owner_waiters:
                if not w.done():
                    w.set_result(None)
            self._owner_waiters.clear()

    @property
    def kernel_fs_ops(self) -> bool:
        """True when metadata ops (openat, statx, …) go through the ring."""
        return self._ring is not None

    @property
    def ring(self) -> Any:
        return self._ring

    # -- the loop turn ---------------------------------------------------------------------

    # Completions resolve the requests' IoFutures with their callbacks (the awaiting tasks'
    # wake-ups) held in IoPath, and make sure this flush is scheduled; the flush runs them
    # (IoPath.deliver: no call_soon, no Handle each) where asyncio would have: one loop turn
    # later, at the flush's place in the ready queue, so a task resumes at most once a turn and
    # the others get theirs as before. What the woken tasks stage goes to the kernel right
    # after, in the same turn.

    def _flush(self) -> None:
        path = self._path
        turn = self._turn
        if turn is not None and isinstance(turn(0, self._wakeups), int):
            return  # the plain flush, in C (IoPath.turn: the same steps as below)
        path.flushes += 1
        # Held True while the woken tasks run: what they stage goes out below, in this call, so
        # their submissions must not queue another flush (a loop turn spent for nothing).
        path.flush_scheduled = True
        try:
            if self._deferred and not self.closed:
                deferred = self._deferred[:]  # the list stays the one IoPath appends to
                self._deferred.clear()
                plain = self._turn is not None
                for uds, results in deferred:
                    # (a pair with no unit of the disk queues in it: completed in C)
                    if not plain or not path.complete_plain(uds, results, self._wakeups):
                        self._complete(uds, results)
        finally:
            path.deliver()
            path.flush_scheduled = False
        if self.closed:
            return
        self._submit_now()
        if self._deferred and not path.flush_scheduled:
            # completions a woken task's inline submission collected: the next turn delivers them
            path.flush_scheduled = True
            self.loop.call_soon(self._flush)
        wq = self._wakeups
        if wq is not None and wq.pending and not self._wake_scheduled:
            # Scheduled from a callback, it runs on the next loop turn: after this turn's
            # woken tasks, and after the completions reaped meanwhile joined the competition.
            self._wake_scheduled = True
            self.loop.call_soon(self._wake_more)

    def _wake_more(self) -> None:
        self._wake_scheduled = False
        if not self.closed:
            self._complete([], [])
            self._flush()  # resume them in this turn (IoPath.deliver) and submit what they stage

    def _share_wakeups(self, wq: WakeupQueue, uds: list[int], results: list[int]) -> tuple[list[int], list[int]]:
        """The completions to deliver this turn: those of requests without an io class (and the
        disk queues' units: the fair queue already ordered them) at once; the others through
        ``wq``, which holds back a class that had more than its shares while others wait."""
        classes = self._path.classes(uds)  # the batch's one class (or None), else a list
        if type(classes) is not list:
            if classes is None:
                if not wq.pending:
                    return uds, results
                classes = [None] * len(uds)
            elif not wq.pending:  # one class and nothing waits: all go
                wq.charge(classes, classes.shares, len(uds))
                return uds, results
            else:
                classes = [classes] * len(uds)
        now_u: list[int] = []
        now_r: list[int] = []
        if uds:
            push = wq.push
            for ud, res, st in zip(uds, results, classes):
                if st is None:
                    now_u.append(ud)
                    now_r.append(res)
                else:
                    push(st, st.shares, (ud, res))
        if wq.pending:
            woken: list[tuple[int, int]] = []
            wq.take(woken)
            for ud, res in woken:
                now_u.append(ud)
                now_r.append(res)
            self.held_wakeups += wq.pending
        return now_u, now_r

    def _submit_now(self, inline: bool = False) -> None:
        """Hand the staged records to the kernel, collecting what has completed meanwhile.

        ``inline``: called from submit() in a task's own call: completions collected then are
        kept for the loop's flush (already scheduled) instead of resolving futures under the
        caller. Otherwise a stream that finds its next I/O already done would never suspend,
        and could hold the loop for as long as the disk keeps up (measured: ~50 ms).
        """
        path = self._path
        if path.sched_waiting and (self._dispatch_due or path.grant is None
                                   or time.monotonic_ns() - self._dispatched_ns >= SETTLE_NS):
            # Only when it may move something: while a class goes on under its grant and the
            # others wait over their parts, nothing else frees their room but their own
            # completions (and what the grant's class lends, seen at least every SETTLE_NS);
            # dispatching every loop turn cost the leading class a loop turn's Python each
            # time (`scripts/compaction.py`).
            self._dispatch_due = False
            self._dispatched_ns = time.monotonic_ns()
            grant = path.grant
            self.settle_grants()
            self._dispatch_queues()
            if grant is not None and path.grant is None and grant.queue.config.share_in_disk:
                # Others wait over their parts of the disk: the class that had the grant may
                # still be within its own. Open its next one now, so that its requests stay on
                # the C path rather than the first of them opening it through submit_rw.
                g = path.grant = grant.queue.open_grant(grant.io_class, self.loop.time(), True)
                self._refill_open = g is not None and g.refill > 0.0
                self._grant_flush = self._path.flushes
        elif path.sched_waiting and self._timer is None:
            # skipped: come back within SETTLE_NS even if nothing else wakes the loop (the
            # grant's class may lend what it no longer uses, or have finished)
            at = self.loop.time() + SETTLE_NS / 1e9
            self._timer = self.loop.call_at(at, self._on_timer)
            self._timer_at = at
        staged = path.staged
        try:
            got = path.flush_ring()  # io_uring: the submission in C (IoPath.set_ring)
        except OSError as e:
            self._fail_staged(e.errno or 5)  # handed over not at all: fail it rather than lose it
            return
        if got is not None:
            uds, results = got
            accepted = staged - path.staged
        else:
            n = min(staged, self._capacity - path.in_kernel)  # the rest waits for completions
            batch = path.batch(n)
            try:
                accepted, uds, results = self.backend.flush(batch)
            except OSError as e:
                batch.release()
                self._fail_staged(e.errno or 5)
                return
            batch.release()
            if accepted:
                path.consume(accepted)
        if uds:
            if inline:
                self._deferred.append((uds, results))
            elif self._turn is None or not path.complete_plain(uds, results, self._wakeups):
                self._complete(uds, results)  # (plain: completed in C, as the turn's own)
        if accepted < staged and not uds and not self._path.flush_scheduled:
            # The kernel is full: try again next turn (completions will make room).
            self._path.flush_scheduled = True
            self.loop.call_soon(self._flush)
        if self._spinner is not None and path.in_kernel:
            self._spinner.kick()
        if not inline:
            self._settle_after_submit()

    def _settle_after_submit(self) -> None:
        """The grants' books after a submission (the loop turn's, in Python or C)."""
        path = self._path
        grant = path.grant
        if (grant is not None or self._reaped_grants) and (
                not path.in_kernel or time.monotonic_ns() - path.settled_ns >= SETTLE_NS
                or grant is not None and grant.queue.shared):
            # The grants' books, after the kernel has the batch: off the path from a completion
            # to the next submission, and at most every SETTLE_NS while I/O keeps flowing (a
            # lone class's grant then spans loop turns) or as soon as the reactor goes quiet.
            # A disk shared with other shards is settled every turn: its grant holds tokens the
            # other shards cannot see taken until it is committed.
            self.settle_grants()
            if (grant is not None and path.grant is None and path.in_kernel and not path.sched_waiting
                    and not grant.queue.shared):
                # The class goes on (requests of its are in the kernel): open its next grant now,
                # so that its next request stays on the C path rather than opening it through
                # submit_rw (test_a_lone_class_keeps_the_c_path_across_settles).
                g = path.grant = grant.queue.open_grant(grant.io_class, self.loop.time())
                self._refill_open = g is not None and g.refill > 0.0
                self._grant_flush = self._path.flushes

    def each_queue_of(self, io_class: IoClass, fn: Callable[[IoQueue], None]) -> None:
        """Call ``fn`` on every disk queue ``io_class`` has a state in (its shares, limits or
        name change), with the queues' books brought up to date first."""
        self.settle_grants()  # a class change must see the queue's books up to date
        self.disks.each_queue_of(io_class, fn)

    def _on_wakeup(self) -> None:
        """The eventfd's callback (on asyncio's loops only for a wake-up the selector's own reap
        found nothing for, see _reap_woken; on uvloop for every one): what it reaps is
        delivered in this callback, as the selector's reap is in its loop turn, not a turn later."""
        self._reap_here(2)

    def _reap_here(self, reap: int) -> int:
        """Reap (``reap`` as IoPath.turn's: 1 what the ring has now, 2 after the eventfd woke
        the loop), complete and deliver in this call: the plain turn in C, else the general
        path (_complete_here); how many completed."""
        turn = self._turn
        if turn is not None:
            got = turn(reap, self._wakeups)
            if isinstance(got, int):
                return got
            uds, results = got
        else:
            uds, results = self._reap_backend() if reap == 2 else self._poll_backend()
        if uds:
            self._complete_here(uds, results)
        return len(uds)

    def _complete_here(self, uds: list[int], results: list[int]) -> None:
        """Complete, and deliver in this callback (a loop callback that runs at most once a
        turn: the eventfd's, uvloop's spinner) unless a flush is queued already."""
        path = self._path
        if path.flush_scheduled:  # the queued flush delivers these too
            self._complete(uds, results)
            return
        path.flush_scheduled = True  # _complete must not queue one: it runs here
        try:
            self._complete(uds, results)
        finally:
            self._flush()

    def _worth_polling(self) -> bool:
        """Poll (rather than sleep on the eventfd) while I/O is in flight and polling pays: with
        one request in the kernel the disk idles until we resubmit, so every microsecond of
        wake-up is lost throughput, and with two (idle_poll_depth) it runs at half its depth
        meanwhile; with more, spinning is worth it only while completions come faster than a
        wake-up costs (idle_poll_wake_us), else the CPU spent spinning buys nothing the queued
        requests do not already give. `ioengine-bench compare` shows CPU per I/O and throughput
        with it (and with --idle-poll-time-us 0)."""
        n = self._path.in_kernel
        return n > 0 and (n <= self._poll_depth or self._path.gap_ns <= self._poll_wake_ns)

    def _reap_woken(self) -> bool:
        """The eventfd ended the loop's sleep: reap here, in the selector, as a spin does, so the
        woken tasks resume in this loop turn rather than after the eventfd's callback in the
        next (one turn less per wake-up: a system call and the loop's own Python)."""
        n = 0 if self.closed or not self._path.in_kernel else self._reap_here(1)
        self.woken += n
        return n > 0

    def _bursts(self) -> bool:
        """Several requests in the kernel: their completions come in bursts (the poller may sleep
        part of the wait before spinning; with one, the disk idles until we resubmit: spin)."""
        return self._path.in_kernel > 1

    def _poll_completions(self) -> bool:
        """The spin's reap (asyncio's selector; uvloop's spinner): what it reaps is completed,
        delivered and the woken tasks' requests submitted in this call (_reap_here(1)). On
        asyncio's loops that is inside the selector's select, where the loop waits with nothing
        ready: the woken tasks run once in this turn, as from the flush, without the flush's
        callback and its turn (`QD=1 scripts/icount.sh` counts the difference). With nothing of
        ours in the kernel (another poll source keeps the loop spinning) no system call: what
        the ring holds besides (an op counted elsewhere) comes by the eventfd."""
        if self.closed or not self._path.in_kernel:
            return False
        n = self._reap_here(1)
        self.polled += n
        return n > 0

    @property
    def polling(self) -> str | None:
        """How idle polling runs on this loop: "selector" (asyncio's loops: the selector is
        wrapped), "callback" (loops without one, e.g. uvloop), or None (idle_poll_time_us=0)."""
        if self._unpoll is not None and self.options.idle_poll_time_us > 0:
            return "selector"
        return "callback" if self._spinner is not None else None

    @property
    def precise_timers(self) -> bool:
        """Whether this loop's timers fire to the microsecond (ReactorOptions.precise_timers, on
        a loop whose selector is epoll), not at the next whole millisecond."""
        return self._unpoll is not None and poller.waits_precisely(self.loop)

    def _complete(self, uds: list[int], results: list[int]) -> None:
        wq = self._wakeups
        if wq is not None:
            uds, results = self._share_wakeups(wq, uds, results)
            if not uds:
                if wq.pending and not self._path.flush_scheduled:
                    self._path.flush_scheduled = True  # its end schedules the next wake-ups
                    self.loop.call_soon(self._flush)
                return
        try:
            # resolves the futures, runs on_done callbacks, books the completion rate (gap_ns)
            units = self._path.complete(uds, results)
            if units:
                self._complete_units(units)
        finally:
            if not self._path.flush_scheduled:
                # It resumes the tasks just resolved (IoPath.deliver) and submits what they stage.
                self._path.flush_scheduled = True
                self.loop.call_soon(self._flush)
            if self._owner_waiters:
                for w in self._owner_waiters:
                    if not w.done():
                        w.set_result(None)
                self._owner_waiters.clear()
            if self._idle_waiters and not self._path.inflight:
                for w in self._idle_waiters:
                    if not w.done():
                        w.set_result(None)
                self._idle_waiters.clear()

    def _complete_units(self, units: list[tuple[int, int]]) -> None:
        """Completions of the disk queues' units: book them; a request whose last part is done
        is resolved (its result is the queue's sum of the parts)."""
        now = self.loop.time()
        sched = self._sched
        finish = self._path.finish
        self._dispatch_due = True  # room in their classes' parts
        for unit, res in units:
            q, d, ud = sched.pop(unit)
            done = q.complete(d, res, now)
            if done is not None:
                finish(ud, done.result)

    def _fail_staged(self, err: int) -> None:
        uds = self._path.take_staged()
        self._complete(uds, [-err] * len(uds))

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        """Requests issued and not yet completed (including those whose awaiter was cancelled)."""
        return self._path.inflight

    @property
    def staged(self) -> int:
        """Records staged for the next submission (not yet handed to the kernel)."""
        return self._path.staged

    async def drain(self) -> None:
        """Wait until every in-flight request has completed."""
        if self._path.inflight:
            w = self.loop.create_future()
            self._idle_waiters.append(w)
            await w

    async def drain_owner(self, owner: object) -> None:
        """Wait until no request owned by ``owner`` is in flight (cancelled awaiters included)."""
        while owner in self._blocking_owners or self._path.owns(owner):
            w = self.loop.create_future()
            self._owner_waiters.append(w)
            await w

    async def close(self) -> None:
        """Wait for in-flight I/O, then release the ring and threads."""
        if self.closed:
            return
        await self.drain()
        self._shutdown()

    def _shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._path.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._unpoll is not None:
            self._unpoll()
        if self._spinner is not None:
            self._spinner.close()
        self._path.set_ring(0)  # the ring goes below
        self._turn = None
        try:
            if not self.loop.is_closed():
                self.loop.remove_reader(self.backend.eventfd)
        except Exception:  # the loop may be half torn down at interpreter exit
            pass
        if self._path.inflight:
            # Abandoned with I/O in flight (the loop went away): block until the kernel is done
            # with every buffer before the ring and the pins go (completions already collected
            # but not yet delivered will not come again).
            held = sum(len(uds) for uds, _ in self._deferred)
            if self._wakeups is not None:
                held += self._wakeups.pending
            self.backend.wait_all(self._path.in_kernel - held)
            self._deferred.clear()
            self._path.drop_all()
        self.backend.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self.buffers.clear()
        if getattr(_local, "reactor", None) is self:
            _local.reactor = None

    def close_with_loop(self) -> None:
        """Shut this reactor down (ring, eventfd, threads) when its loop shuts down.

        asyncio.run() and asyncio.Runner finalise the loop's async generators before closing
        it (loop.shutdown_asyncgens, on every loop that follows asyncio's protocol, uvloop
        included): a started generator held here runs its ``finally`` then. A thread that
        calls asyncio.run() and uses ioengine so leaves no ring or descriptor behind.
        """
        if self._loop_guard is not None:
            return
        ref = weakref.ref(self)

        async def guard() -> Any:
            try:
                yield
            finally:
                r = ref()
                if r is not None:
                    r._shutdown()

        g = guard()
        step = g.asend(None)  # registers it with the running loop (its first-iteration hook)
        try:
            step.send(None)  # runs it to its yield
        except StopIteration:
            pass
        self._loop_guard = g

    def __repr__(self) -> str:
        return f"<Reactor {self.backend.describe()} inflight={self.inflight}>"


def configure(**options: Any) -> None:
    """Set the options of reactors this thread creates from now on (see ReactorOptions)."""
    _local.options = ReactorOptions.from_kwargs(**options)


def get_reactor() -> Reactor:
    """This thread's reactor, created on first use and attached to the running loop."""
    loop = asyncio.get_running_loop()
    r: Reactor | None = getattr(_local, "reactor", None)
    if r is not None and r.loop is loop and not r.closed:
        return r
    if r is not None:
        r._shutdown()  # its loop is gone
    r = Reactor(getattr(_local, "options", None), loop)
    _local.reactor = r
    r.close_with_loop()
    return r


def run(main: Any, **options: Any) -> Any:
    """Run a coroutine on a fresh asyncio loop with a reactor built from ``options``.

    A convenience: any running asyncio loop gets a reactor on first use without it.
    """
    try:
        opts = ReactorOptions.from_kwargs(**options)
    except BaseException:
        if asyncio.iscoroutine(main):
            main.close()  # never started: no "was never awaited" warning on top of the error
        raise

    async def runner() -> Any:
        try:
            reactor = Reactor(opts)
        except BaseException:
            if asyncio.iscoroutine(main):
                main.close()  # never started: no "was never awaited" warning on top of the error
            raise
        _local.reactor = reactor
        try:
            return await main
        finally:
            await reactor.close()

    return asyncio.run(runner())


@atexit.register
def _close_all() -> None:
    for r in list(_all_reactors):
        r._shutdown()
