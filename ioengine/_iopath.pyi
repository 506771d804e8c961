"""Types of ioengine._iopath (native/iopath.c): the reactor's per-request path in C.

The objects it carries for Python (pins, owners, callbacks, grants, queues) are opaque to C; they
are typed loosely here and precisely where Python makes them (reactor.py, iosched).
"""
import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, Literal, TypeVar, final, overload

from typing_extensions import Buffer

_T = TypeVar("_T")

@final
class IoFuture(Generic[_T]):
    """The future of a reactor request (C): asyncio's future protocol, so tasks, gather, wait_for,
    wait, shield and ensure_future take it, on asyncio's loops and uvloop. Not an asyncio.Future
    (isinstance says so); asyncio.isfuture() is true. A completion batch resumes its awaiting
    task from the reactor's flush, without call_soon; cancel() and set_result()/set_exception()
    from Python schedule the callbacks with call_soon, as asyncio does. Cancelling it does not
    cancel the I/O: the request keeps its buffer pinned until the kernel's completion."""

    _asyncio_future_blocking: bool
    _log_traceback: bool
    _cancel_message: Any
    def __init__(self, *, loop: asyncio.AbstractEventLoop | None = None) -> None: ...
    def __await__(self) -> Generator[Any, None, _T]: ...
    def __iter__(self) -> Generator[Any, None, _T]: ...
    def done(self) -> bool: ...
    def cancelled(self) -> bool: ...
    def result(self) -> _T: ...
    def exception(self) -> BaseException | None: ...
    def cancel(self, msg: Any | None = None) -> bool: ...
    def add_done_callback(self, fn: Callable[[IoFuture[_T]], object], /, *,
                          context: contextvars.Context | None = None) -> None: ...
    def remove_done_callback(self, fn: Callable[[IoFuture[_T]], object], /) -> int: ...
    def get_loop(self) -> asyncio.AbstractEventLoop: ...
    def set_result(self, result: _T, /) -> None: ...
    def set_exception(self, exception: type[BaseException] | BaseException, /) -> None: ...
    def _make_cancelled_error(self) -> asyncio.CancelledError: ...

@final
class IoFutureIter(Coroutine[Any, None, _T]):
    """What awaits an IoFuture (its __await__), and what File.dma_read / dma_write return when the
    request went at once: a coroutine (registered as one by ioengine.file), so tasks run it.
    send() yields the future once while it is pending, then returns its result; throw() and
    close() cancel the future if still pending (the I/O goes on, its buffer pinned)."""

    def send(self, value: None, /) -> Any: ...
    def throw(self, typ: Any, val: Any = ..., tb: Any = ..., /) -> Any: ...
    def close(self) -> None: ...
    def __await__(self) -> Generator[Any, None, _T]: ...

@final
class Wakeups:
    """Resolve IoFutures with their callbacks held, then run them all at once (``deliver``: now,
    each in its context, or with call_soon while a task is running): many answers resume their
    tasks from one loop callback instead of one Handle each."""

    held: int
    def set_result(self, future: IoFuture[Any], value: Any, /) -> None: ...
    def set_exception(self, future: IoFuture[Any], exception: BaseException, /) -> None: ...
    def deliver(self) -> None: ...

@final
class MessageDispatch:
    """A cross-shard ring's answers and plain calls handled in C (ioengine.smp): an answer
    resolves its caller's IoFuture (wake-up held in ``wakeups``), a call of a function already
    sent runs and a result of a ``plain`` type is pickled into the outbox; every other message,
    result or error goes to the Python callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wakeups: Wakeups, plain: set[type], loads: Callable[[Any], Any],
                 dumps: Callable[[Any, int], bytes], proto: int,
                 slow: Callable[[int, int, int, memoryview], None],
                 result: Callable[[int, int, Any], None],
                 fail: Callable[[int, int, Any, BaseException], None],
                 flush: Callable[[int, bytearray], None], max_payload: int, batch_bytes: int) -> None: ...
    def call(self, kind: int, rid: int, args: tuple[Any, ...], pending: dict[int, IoFuture[Any]],
             outbox: bytearray, dest: int, /) -> IoFuture[Any] | None: ...
    def run(self, buffer: Any, n: int, src: int, pending: dict[int, IoFuture[Any]], fns: dict[int, Any],
            outbox: bytearray, /) -> None: ...
    def pop(self, ring: int, cap: int, buffer: int, /) -> int: ...
    def push(self, dirty: list[int], outboxes: list[bytearray], rings: list[int], flags: list[int], efds: list[int],
             cap: int, /) -> list[int]: ...

class WriteBooks:
    """A File's per-write books (C): the writes in flight, the furthest end among them, the known
    and logical sizes, and the future resolved when the last write in flight lands. Passed as a
    request's ``on_done``, it is counted at the completion by C, without a Python call (the
    request tuple is not made). ioengine.file.SizeTracker subclasses it."""

    #: Writes in flight.
    writes: int
    #: The furthest end among the writes in flight (0 when none).
    pending_end: int
    #: The size at open, grown by completed writes, set by truncate.
    known: int
    #: sloppy_size: the furthest byte written (-1 without sloppy_size).
    logical: int
    #: Resolved (unless already done) when ``writes`` drops to 0.
    idle: asyncio.Future[None] | None
    #: Writes may go to the kernel at once (no size barrier, no sloppy growth): a write staged
    #: by ``IoPath.submit``/``io`` with these books as ``on_done`` is counted in there; False:
    #: those return None for it.
    straight: bool
    def __init__(self, known: int = 0, logical: int = -1) -> None: ...
    def write_done(self, req: tuple[Any, ...], res: int, /) -> None:
        """The completion of a write (``req[4]`` its position), even if its writer was cancelled;
        ``res`` < 0: failed, or never issued."""
    def __call__(self, req: tuple[Any, ...], res: int, /) -> None:
        """write_done(req, res)."""

#: Set in the user data of records that are the disk scheduler's dispatched units.
UNIT_FLAG: int

#: (future, pin, operation name, owner, pos, length, on_done, grant): an in-flight request as Python sees it.
_Request = tuple[IoFuture[int], object, str, object, int, int, Callable[..., object] | None, Any]

def grant_take(grant: Any, direction: int, length: int, /) -> bool:
    """DirectGrant.take, done by C."""

@final
class IoPath(Buffer):
    """The per-request path of one reactor: staging records and the in-flight table."""

    def __init__(
        self,
        future_factory: Callable[[], IoFuture[int]],
        error_factory: Callable[[_Request, int], BaseException],
        grant_reaped: Callable[[Any, int], object],
        capacity: int = 256,
        flush_at: int = 8,
        alone_bytes: int = 65536,
        call_soon: Callable[..., object] | None = None,
        flush: Callable[[], object] | None = None,
        submit_inline: Callable[..., object] | None = None,
        io_class_var: contextvars.ContextVar[Any] | None = None,
    ) -> None: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    def rw(self, op: int, fd: int, addr: int, length: int, pos: int, pin: object, opname: str, owner: object,
           on_done: Callable[..., object] | None, grant: Any, /) -> IoFuture[int] | None: ...
    def submit(self, op: int, fd: int, buf: Buffer, pos: int, disk_mask: int, mem_mask: int, opname: str,
               owner: object, on_done: Callable[..., object] | None, queue: Any, states: Any, io_class: Any,
               /) -> IoFuture[int] | None: ...
    def submit_awaitable(self, op: int, fd: int, buf: Buffer, pos: int, disk_mask: int, mem_mask: int,
                         opname: str, owner: object, on_done: Callable[..., object] | None, queue: Any, states: Any,
                         io_class: Any, /) -> IoFutureIter[int] | None: ...
    def io(self, op: int, fd: int, buf: Buffer, pos: int, disk_mask: int, mem_mask: int, opname: str, owner: object,
           on_done: Callable[..., object] | None, cls: Any, grant: Any, /) -> IoFuture[int] | None | bool: ...
    def read_many(self, fd: int, requests: tuple[tuple[int, Buffer], ...], disk_mask: int, mem_mask: int,
                  opname: str, owner: object, queue: Any, states: Any, io_class: Any,
                  /) -> IoFuture[list[int]] | None:
        """File.dma_read_many's path: every (pos, buf) checked and exported, then all staged with
        one future for the batch (its list of results, or its first request's error once all
        completed); None when any of it is not plain (nothing staged then)."""
    def register(self, pos: int, nbytes: int, pin: object, opname: str, owner: object,
                 on_done: Callable[..., object] | None, grant: Any, /) -> tuple[IoFuture[int], int]: ...
    def stage(self, word0: int, addr: int, length: int, pos: int, user_data: int, /) -> bool: ...
    def complete(self, uds: list[int], results: list[int], /) -> list[tuple[int, int]] | None: ...
    def finish(self, ud: int, result: int, /) -> None: ...
    def deliver(self) -> None:
        """Run the held callbacks of the IoFutures complete() and finish() resolved."""
    def sync_counters(self) -> None:
        """Add the requests counted in C to their io class's ``ops``/``bytes`` lists now (done
        at every submission and completion batch)."""
    def discard(self, ud: int, /) -> None: ...
    def batch(self, n: int, /) -> memoryview: ...
    def consume(self, n: int, /) -> None: ...
    def take_staged(self) -> list[int]: ...
    def add_in_kernel(self, n: int, /) -> None: ...
    def owns(self, owner: object, /) -> bool: ...
    def request(self, ud: int, /) -> _Request: ...
    def classes(self, uds: list[int], /) -> Any: ...
    def drop_all(self) -> None: ...
    @overload
    def set_ring(self, ring: Literal[0], /) -> None: ...
    @overload
    def set_ring(self, ring: int, submit: int, efd: int, max: int, deferred: list[tuple[list[int], list[int]]],
                 fail_staged: Callable[[int], None], kick: Callable[[], None] | None, /) -> None: ...
    def set_reap(self, poll: int, reap_woken: int, /) -> None: ...
    def poll_ring(self) -> tuple[list[int], list[int]]: ...
    def reap_woken_ring(self) -> tuple[list[int], list[int]]: ...
    def flush_ring(self) -> tuple[list[int], list[int]] | None: ...
    def complete_plain(self, uds: list[int], results: list[int], wakeups: Any, /) -> bool:
        """The completions the reactor's own submission found, completed here when the batch is
        plain (as the turn's); False, with nothing done, when the general path must take it."""
    def turn(self, reap: int, wakeups: Any, /) -> int | tuple[list[int], list[int]]:
        """The plain loop turn in one call: reap (1: what the ring has now; 2: after the
        eventfd woke the loop; 0: nothing, the turn's flush), complete (with what the mid-turn
        submissions collected, and what the turn's own submission finds), deliver, submit; the
        count reaped. When the turn is not plain, only the reap is done and its completions are
        returned for the reactor's general path."""
    def set_turn(self, complete: Callable[[list[int], list[int]], None] | None,
                 submit_now: Callable[[], None] | None, waiters: tuple[list[Any], ...],
                 settle: Callable[[], None] | None, reaped: list[Any] | None, /) -> None:
        """Where turn() hands what it does not do itself, the lists it must find empty to
        complete a batch itself, and the grants' settle after a submission, which it calls
        while a grant is open or ``reaped`` holds grants with unbooked completions: when no
        request is left in the kernel, or settle_ns after settled_ns."""
    #: expected time between completions, ns (an EWMA over ~1 ms windows)
    gap_ns: float
    #: loop turns' flushes so far
    flushes: int
    #: when the reactor last settled its grants' books (time.monotonic_ns())
    settled_ns: int
    #: how long the turn lets the grants' books go unsettled while I/O flows (ns)
    settle_ns: int
    @property
    def inflight(self) -> int: ...
    @property
    def staged(self) -> int: ...
    @property
    def in_kernel(self) -> int: ...
    @property
    def outstanding(self) -> int: ...
    @property
    def submit_now(self) -> bool: ...
    closed: bool
    flush_scheduled: bool
    #: deliver() is running the woken tasks: a request issued now follows a completion
    #: (counted in its io class's ``fed``)
    @property
    def delivering(self) -> bool: ...
    sched_waiting: int
    #: while units wait, a class with its grant open and nothing queued still goes straight
    #: (IoQueueConfig.share_in_disk)
    share_direct: bool
    grant: Any

def page_cache_requests(cached_submit: type, page_cache: type, dma_buffer: type, pos_max: int, /) -> None:
    """dma_read and dma_write on a buffered File whose submit_request is a CachedSubmit try the page
    cache in C (once per process; native/filemethods.c)."""
    ...


def file_methods(cls: type, read: Callable[..., Any], write: Callable[..., Any], read_slow: Callable[..., Any],
                 write_slow: Callable[..., Any], op_read: int, op_write: int, /) -> tuple[Any, Any]:
    """File's dma_read / dma_write in C (once per process): method descriptors of ``cls`` that read
    its slots and call its ``_submit_request``; keywords or a closed file call ``read`` / ``write``
    (the Python methods), a request that cannot go at once ``read_slow`` / ``write_slow``."""
