"""The reactor: one per thread, attached to the running asyncio loop.

Requests are staged in a flat array and handed to the backend once per loop turn; the backend's
eventfd, registered with the loop, wakes us when completions arrive. Every in-flight request
holds a pin on its buffer (a cffi buffer export), so memory the kernel may still write into is
never freed or reused before its completion, whatever happens to the task that awaited it.
"""
from __future__ import annotations

import asyncio
import atexit
import collections
import functools
import math
import logging
import threading
import weakref
from array import array
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from .backends import open_backend
from .backends.base import OP_READ, OP_READV, OP_WRITE, OP_WRITEV, REC_WORDS
from iosched import READ as SCHED_READ, WRITE as SCHED_WRITE

from . import poller
from .buffers import BufferPool
from .disk_queues import DiskQueues
from .io_class import IoClass, _current as _current_io_class
from .errors import kernel_error
from .options import ReactorOptions

log = logging.getLogger("ioengine.reactor")
assert (OP_READ, OP_WRITE) == (SCHED_READ, SCHED_WRITE)  # submit_rw indexes class counters by op
T = TypeVar("T")

_local = threading.local()
_all_reactors: weakref.WeakSet[Reactor] = weakref.WeakSet()


# An in-flight request is a tuple (hot path: cheaper than an object):
#   (future, pin, operation name, owner, pos, length, on_done, grant)
# ``owner`` is the File the request belongs to (or a path for metadata ops): error messages
# name its path, and File.close() waits until no request of its own is left in flight.
# ``pin`` keeps the buffer (and its export) alive until the kernel's completion; ``on_done``
# (or None) is called with (request, result) at that completion, even if the awaiter is gone.
# ``grant`` is the iosched DirectGrant it was dispatched under (its completion is booked
# there), or None.
_FUT, _PIN, _OP, _PATH, _POS, _LEN, _ON_DONE, _GRANT = range(8)


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


class Reactor:
    """Owns a backend (ring), the in-flight table and the per-reactor DMA buffer pool."""

    def __init__(self, options: ReactorOptions | None = None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.options = options or ReactorOptions()
        self.loop = loop or asyncio.get_running_loop()
        self.backend = open_backend(self.options)
        log.info("ioengine: reactor using %s", self.backend.describe())
        self.buffers = BufferPool(self.options.buffer_pool_depth, self.options.buffer_pool_max_size)
        self.closed = False
        self._recs = array("Q")
        self._inflight: dict[int, tuple] = {}
        self._backlog: collections.deque[tuple[int, ...]] = collections.deque()
        self._next_ud = 1
        self._capacity = self.backend.capacity
        self._outstanding = 0  # staged + in the kernel (bounded by capacity)
        self._in_kernel = 0
        self._flush_words = self.options.submit_batch * REC_WORDS
        self._alone_bytes = self.options.submit_alone_bytes
        # The C Future constructor bound to our loop: skips loop.create_future's Python frame.
        self._create_future = functools.partial(asyncio.Future, loop=self.loop)
        self._flush_scheduled = False
        #: Completions collected by an inline submit, delivered by the next _flush (a loop callback).
        self._deferred: list[tuple[list[int], list[int]]] = []
        self._idle_waiters: list[asyncio.Future] = []
        self._owner_waiters: list[asyncio.Future] = []
        self._blocking_owners: dict[object, int] = {}  # owner -> its thread-pool calls still running
        self._executor: ThreadPoolExecutor | None = None
        self._ring = getattr(self.backend, "ring", None) if self.backend.kernel_fs_ops else None
        #: The disk scheduler: one iosched queue per device.
        self.disks = DiskQueues(self.options, self.loop.time())
        self._sched: dict[int, tuple] = {}  # ud of a dispatched unit -> (queue, dispatch, request ud)
        self._grant: Any = None  # the open iosched.DirectGrant (committed once per loop turn)
        self._reaped_grants: list[Any] = []  # grants with completions not yet booked
        self._sched_waiting = 0  # units waiting in the disk queues
        self._busy_queues: dict[Any, None] = {}  # queues with units waiting (ordered set)
        self._timer: asyncio.TimerHandle | None = None
        self.loop.add_reader(self.backend.eventfd, self._on_wakeup)
        self._unpoll = poller.install(self.loop, self.options.idle_poll_time_us, lambda: self._in_kernel > 0,
                                      self._poll_completions)
        _all_reactors.add(self)

    # -- submission ------------------------------------------------------------------------

    def submit(self, op: int, fd: int, addr: int, length: int, pos: int, pin: Any, opname: str,
               path: str | None, flags: int = 0,
               on_done: Callable[[tuple, int], None] | None = None, nbytes: int | None = None,
               queue: Any = None, states: dict | None = None, io_class: IoClass | None = None,
               align: int = 4096) -> asyncio.Future:
        """Queue one read/write/fsync record; the future resolves to the result (bytes or 0).

        ``nbytes`` is the byte count error messages quote when ``length`` is not one (an iovec
        count for readv/writev, -1 for fsync). With ``queue`` (the file's disk queue and its
        class ``states``), the request goes through the disk scheduler in ``io_class`` (None:
        the one chosen by ``with io_class:``, else the default).
        """
        if self.closed:
            raise RuntimeError("the reactor is closed")
        check_record(opname, fd, addr, length, pos, flags)
        fut = self._create_future()
        ud = self._next_ud
        self._next_ud = ud + 1
        req = (fut, pin, opname, path, pos, length if nbytes is None else nbytes, on_done, None)
        rec = (op | (fd << 8) | (flags << 40), addr, length, pos, ud)
        if queue is not None:
            cls = io_class if io_class is not None else _current_io_class.get()
            st = states.get(cls)
            if st is None:
                st = self.disks.class_state(self, queue, cls)
            direction = SCHED_READ if op == OP_READ or op == OP_READV else SCHED_WRITE
            n = length if nbytes is None else nbytes
            if (queue._throttling or self._sched_waiting or self._outstanding >= self._capacity
                    or st._bw is not None or st._iops is not None):
                self._queue_request(queue, st, direction, n, rec, op == OP_READV or op == OP_WRITEV, align)
                self._inflight[ud] = req  # only once queued: a refused request leaves no trace
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    self.loop.call_soon(self._flush)
                return fut
            # An unthrottled disk with room in the ring: straight to the kernel, counted.
            st.ops[direction] += 1
            st.bytes[direction] += n
        self._inflight[ud] = req
        if self._outstanding < self._capacity:
            self._outstanding += 1
            self._recs.extend(rec)
            if (len(self._recs) >= self._flush_words or length >= self._alone_bytes
                    or nbytes is not None and nbytes >= self._alone_bytes):
                self._submit_now(inline=True)
        else:
            self._backlog.append(rec)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        return fut

    def submit_rw(self, op: int, fd: int, addr: int, length: int, pos: int, pin: Any, opname: str, owner: Any,
                  on_done: Callable[[tuple, int], None] | None, queue: Any, states: dict | None,
                  io_class: IoClass | None, align: int) -> asyncio.Future:
        """submit() for one plain read or write (OP_READ / OP_WRITE), all positional.

        The per-I/O path of dma_read/dma_write: when nothing waits in the disk queue and the
        ring has room, a request of a class without limits goes straight to the kernel,
        under a direct grant of the disk's queue when it throttles (iosched.DirectGrant:
        the tokens and fairness are booked in one go per loop turn); anything else is
        queued, or goes through submit().
        """
        grant = st = None
        c = 0.0
        if queue is not None:
            st = states.get(io_class if io_class is not None else _current_io_class.get())
            if st is None or self.closed:
                return self.submit(op, fd, addr, length, pos, pin, opname, owner, 0, on_done, None, queue, states,
                                   io_class, align)
            if (self._sched_waiting or self._outstanding >= self._capacity
                    or st._bw is not None or st._iops is not None):
                return self._queue_rw(op, fd, addr, length, pos, pin, opname, owner, on_done, queue, st, align)
            if queue._throttling:
                grant = self._grant
                if grant is None or grant.io_class is not st:
                    grant = self._open_grant(queue, st)
                    if grant is None:
                        return self._queue_rw(op, fd, addr, length, pos, pin, opname, owner, on_done, queue, st, align)
                # DirectGrant.take, inlined (the per-request path)
                if length == grant.last_length and op == grant.last_direction:
                    c = grant.last_cost
                else:
                    c = grant.cost_of(op, length)
                if c > grant.budget:
                    return self._queue_rw(op, fd, addr, length, pos, pin, opname, owner, on_done, queue, st, align)
        elif self._outstanding >= self._capacity or self.closed:
            return self.submit(op, fd, addr, length, pos, pin, opname, owner, 0, on_done)
        ud = self._next_ud
        recs = self._recs
        staged = len(recs)
        try:
            recs.extend((op | (fd << 8), addr, length, pos, ud))
        except BaseException:
            # All or nothing: a number that does not fit leaves no word behind, nothing booked.
            del recs[staged:]
            try:
                check_record(opname, fd, addr, length, pos)
            except (TypeError, ValueError) as clear:
                raise clear from None  # says which number, and what was expected
            raise
        self._next_ud = ud + 1
        if grant is not None:
            grant.budget -= c
            grant.n += 1
        if st is not None:
            st.ops[op] += 1  # OP_READ/OP_WRITE are iosched's READ/WRITE (0/1)
            st.bytes[op] += length
        fut = self._create_future()
        self._inflight[ud] = (fut, pin, opname, owner, pos, length, on_done, grant)
        self._outstanding += 1
        if len(recs) >= self._flush_words or length >= self._alone_bytes:
            self._submit_now(inline=True)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        return fut

    def _queue_rw(self, op: int, fd: int, addr: int, length: int, pos: int, pin: Any, opname: str, owner: Any,
                  on_done: Callable[[tuple, int], None] | None, queue: Any, st: Any, align: int) -> asyncio.Future:
        """submit_rw() through the disk queue (submit()'s scheduled branch)."""
        check_record(opname, fd, addr, length, pos)  # the record is staged later, at dispatch
        fut = self._create_future()
        ud = self._next_ud
        self._next_ud = ud + 1
        req = queue.queue(st, op, length, (op | (fd << 8), addr, length, pos, ud), self.loop.time(), align)
        self._sched_waiting += len(req.parts) if req.parts else 1
        self._busy_queues[queue] = None
        self._inflight[ud] = (fut, pin, opname, owner, pos, length, on_done, None)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        return fut

    def _open_grant(self, queue: Any, st: Any) -> Any:
        """Commit the open grant (if any) and ask ``queue`` for one for class ``st``."""
        if self._grant is not None:
            self._commit_grant()
        self._grant = queue.open_grant(st, self.loop.time())
        return self._grant

    def _commit_grant(self) -> None:
        """Book the open grant's dispatches in its queue: before anything else asks the queue."""
        g = self._grant
        if g is not None:
            self._grant = None
            g.queue.commit_grant(g)

    def _settle_grants(self) -> None:
        """Bring the disk queues' books up to date: commit the open grant, book the completions
        of grants' requests reaped since the last call."""
        self._commit_grant()
        if self._reaped_grants:
            now = self.loop.time()
            reaped, self._reaped_grants = self._reaped_grants, []
            for g in reaped:
                g.queue.complete_grant(g, g.reaped, now)
                g.reaped = 0

    def _queue_request(self, queue: Any, st: Any, direction: int, n: int, rec: tuple, vectored: bool,
                       align: int) -> None:
        limit = queue.max_request_length[direction]
        if vectored and n > limit:
            # An iovec request cannot be cut into parts here: cost it as one unit.
            n = int(limit)
        req = queue.queue(st, direction, n, rec, self.loop.time(), align)
        self._sched_waiting += len(req.parts) if req.parts else 1
        self._busy_queues[queue] = None

    def _dispatch_queues(self) -> None:
        """Move what the disk queues allow (tokens, fairness, ring room) into the staged batch."""
        now = self.loop.time()
        recs = self._recs
        sched = self._sched
        for q in list(self._busy_queues):
            room = self._capacity - self._outstanding
            if room <= 0:
                break
            batch = q.dispatch(now, room)
            for d in batch:
                rec = d.payload
                if d.request is d:
                    sched[rec[4]] = (q, d, rec[4])
                    recs.extend(rec)
                else:  # a part of a split request: its own record and completion
                    off = d.offset
                    pud = self._next_ud
                    self._next_ud = pud + 1
                    sched[pud] = (q, d, rec[4])
                    recs.extend((rec[0], rec[1] + off, d.length, rec[3] + off, pud))
            self._outstanding += len(batch)
            self._sched_waiting -= len(batch)
            t = q.next_dispatch_time(now)
            if t is None:
                del self._busy_queues[q]
            elif now < t < math.inf and (self._timer is None or t < self._timer.when()):
                # Tokens hold it back: come back when they will allow the next request.
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = self.loop.call_at(t, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def submit_prepped(self, prep: Callable[..., int], args: tuple, pin: Any, opname: str,
                       path: str | None, on_done: Callable[[tuple, int], None] | None = None) -> asyncio.Future:
        """An io_uring metadata op (openat, statx, …): prepare its SQE now, submit this turn."""
        if self.closed:
            raise RuntimeError("the reactor is closed")
        fut = self.loop.create_future()
        ud = self._next_ud
        self._next_ud = ud + 1
        ret = prep(self._ring, *args, ud)
        if ret < 0:
            raise kernel_error(-ret, opname, path)
        self._inflight[ud] = (fut, pin, opname, path, 0, -1, on_done, None)
        self._in_kernel += 1
        self._outstanding += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
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

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.closed:
            return
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            for uds, results in deferred:
                self._complete(uds, results)
        self._submit_now()

    def _submit_now(self, inline: bool = False) -> None:
        """Hand the staged records to the kernel, collecting what has completed meanwhile.

        ``inline``: called from submit() in a task's own call: completions collected then are
        kept for the loop's flush (already scheduled) instead of resolving futures under the
        caller. Otherwise a stream that finds its next I/O already done would never suspend,
        and could hold the loop for as long as the disk keeps up (measured: ~50 ms).
        """
        if self._sched_waiting:
            self._settle_grants()
            self._dispatch_queues()
        recs = self._recs
        staged = len(recs) // REC_WORDS
        try:
            accepted, uds, results = self.backend.flush(recs)
        except OSError as e:
            # The batch could not be handed over at all: fail it rather than lose it.
            self._fail_staged(e.errno or 5)
            return
        if accepted:
            del recs[: accepted * REC_WORDS]
            self._in_kernel += accepted
        if uds:
            if inline:
                self._deferred.append((uds, results))
            else:
                self._complete(uds, results)
        if accepted < staged and not uds and not self._flush_scheduled:
            # The kernel is full: try again next turn (completions will make room).
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        if not inline and (self._grant is not None or self._reaped_grants):
            # The grants' books, once per loop turn, after the kernel has the batch: off the
            # path from a completion to the next submission.
            self._settle_grants()

    def _each_queue_of(self, io_class: IoClass, fn: Callable[[Any], None]) -> None:
        self._settle_grants()  # a class change must see the queue's books up to date
        self.disks.each_queue_of(io_class, fn)

    def _on_wakeup(self) -> None:
        uds, results = self.backend.reap()
        if uds:
            self._complete(uds, results)

    def _poll_completions(self) -> bool:
        if self.closed:
            return False
        uds, results = self.backend.poll()
        if uds:
            self._complete(uds, results)
            return True
        return False

    def _complete(self, uds: list[int], results: list[int]) -> None:
        inflight = self._inflight
        n = len(uds)
        self._in_kernel -= n
        self._outstanding -= n
        sched = self._sched
        now = self.loop.time() if sched else 0.0
        for ud, res in zip(uds, results):
            if sched:
                s = sched.pop(ud, None)
                if s is not None:
                    done = s[0].complete(s[1], res, now)
                    if done is None:
                        continue  # more parts of this request are still in the disk
                    res = done.result
                    ud = s[2]
            req = inflight.pop(ud)
            g = req[7]
            if g is not None:  # booked by the flush this schedules, once per grant
                if not g.reaped:
                    self._reaped_grants.append(g)
                g.reaped += 1
            if req[6] is not None:
                req[6](req, res)
            fut = req[0]
            if fut.done():  # the awaiting task was cancelled; the buffer pin goes only now
                continue
            if res >= 0:
                fut.set_result(res)
            else:
                fut.set_exception(request_error(req, -res))
        if self._backlog:
            self._admit_backlog()
        if not self._flush_scheduled:
            # Queued after the wake-ups just scheduled: the tasks resume, stage their next I/O,
            # and this flush submits it in the same loop turn.
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        if self._owner_waiters:
            for w in self._owner_waiters:
                if not w.done():
                    w.set_result(None)
            self._owner_waiters.clear()
        if not inflight and self._idle_waiters:
            for w in self._idle_waiters:
                if not w.done():
                    w.set_result(None)
            self._idle_waiters.clear()

    def _admit_backlog(self) -> None:
        backlog = self._backlog
        while self._outstanding < self._capacity and backlog:
            self._recs.extend(backlog.popleft())
            self._outstanding += 1

    def _fail_staged(self, err: int) -> None:
        recs = self._recs
        uds = [recs[i + 4] for i in range(0, len(recs), REC_WORDS)]
        del recs[:]
        self._in_kernel += len(uds)
        self._complete(uds, [-err] * len(uds))

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def inflight(self) -> int:
        """Requests issued and not yet completed (including those whose awaiter was cancelled)."""
        return len(self._inflight)

    async def drain(self) -> None:
        """Wait until every in-flight request has completed."""
        if self._inflight:
            w = self.loop.create_future()
            self._idle_waiters.append(w)
            await w

    async def drain_owner(self, owner: object) -> None:
        """Wait until no request owned by ``owner`` is in flight (cancelled awaiters included)."""
        while owner in self._blocking_owners or any(req[_PATH] is owner for req in self._inflight.values()):
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
        if self._timer is not None:
            self._timer.cancel()
        if self._unpoll is not None:
            self._unpoll()
        try:
            if not self.loop.is_closed():
                self.loop.remove_reader(self.backend.eventfd)
        except Exception:  # the loop may be half torn down at interpreter exit
            pass
        if self._inflight:
            # Abandoned with I/O in flight (the loop went away): block until the kernel is done
            # with every buffer before the ring and the pins go (completions already collected
            # but not yet delivered will not come again).
            self.backend.wait_all(self._in_kernel - sum(len(uds) for uds, _ in self._deferred))
            self._deferred.clear()
            self._inflight.clear()
        self.backend.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self.buffers.clear()
        if getattr(_local, "reactor", None) is self:
            _local.reactor = None

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
    return r


def run(main: Any, **options: Any) -> Any:
    """Run a coroutine on a fresh asyncio loop with a reactor built from ``options``.

    A convenience: any running asyncio loop gets a reactor on first use without it.
    """
    opts = ReactorOptions.from_kwargs(**options)

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
