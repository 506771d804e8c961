"""Cross-shard messages: one single-producer/single-consumer ring per ordered pair of shards.

The rings live in one shared memory block (a memfd mapped by every shard). A shard appends
outgoing messages to a per-destination outbox and writes each outbox into its ring once per
loop turn (one C call per destination, however many messages); it reads its incoming rings on
every loop turn and while the loop would otherwise sleep (ioengine.poller), and before it really
sleeps it raises a flag in shared memory so that the next producer writes its eventfd (C does
the atomics: native/smp_ring.c).

A message is a 16-byte header (payload length, kind, request id) and a pickle: the header
stays readable when the pickle does not unpickle on this side, so the caller still gets an
answer naming what went wrong.
"""
from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import mmap
import os
import pickle
import resource
import struct
import time
import traceback
import types
from typing import Any

from .. import poller
from .._iopath import IoFuture, MessageDispatch, Wakeups
from .._native import ffi, lib

#: Message kinds (the low byte of the header's second word; the rest is a function id).
#: CALL: args pickled, the function by id. CALL_KW: (args, kwargs). CALL_FN: (fn, args, kwargs),
#: for callables that are not cached by id. DEF: the pickle of function id's function, sent to a
#: shard once, before the first CALL of it there (a function pickles and unpickles by module and
#: name, ~1.5 us each way, more than a small call's whole payload).
CALL, OK, ERR, DEF, CALL_KW, CALL_FN = 0, 1, 2, 3, 4, 5
_HDR = struct.Struct("<IIQ")  # payload bytes, kind | function id << 8, request id
_CACHED_TYPES = (types.FunctionType, types.BuiltinFunctionType, type)
_pack = _HDR.pack
_dumps = pickle.dumps
_PROTO = pickle.HIGHEST_PROTOCOL
#: Result types seen not to be awaitable (their answer is sent at once).
_PLAIN_TYPES: set[type] = {int, float, str, bytes, bool, type(None), tuple, list, dict}
HDR_BYTES = _HDR.size
#: Bytes of shared memory per shard for its flags (one cache line each).
_CTL_STRIDE = 64
_PAGE = 4096


class ShardError(RuntimeError):
    """A shard failed as a whole (its process died, or its start-up or stop failed)."""

    def __init__(self, shard: int, message: str, remote_traceback: str | None = None) -> None:
        text = f"shard {shard}: {message}"
        if remote_traceback:
            text += f"\n\nshard {shard:d}'s traceback:\n{remote_traceback.rstrip()}"
        super().__init__(text)
        self.shard = shard
        self.remote_traceback = remote_traceback


class RemoteError(Exception):
    """An exception raised on another shard whose type could not be rebuilt here."""

    def __init__(self, type_name: str, message: str, remote_traceback: str, shard: int) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.remote_traceback = remote_traceback
        self.shard = shard


class RemoteTraceback(Exception):
    """Set as ``__cause__`` of an exception that came from another shard: its traceback there."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\n" + self.text.rstrip()


class UnpicklableArgumentError(TypeError):
    """An argument of a cross-shard call cannot be pickled; raised before anything is sent."""


def layout(count: int, ring_bytes: int) -> tuple[int, int, int]:
    """(offset of the first ring, stride between rings, total bytes) of the shared block."""
    ctl = -(-count * _CTL_STRIDE // _PAGE) * _PAGE
    stride = ring_bytes + _PAGE  # the ring's two header cache lines sit in the page before its data
    return ctl, stride, ctl + count * count * stride


def create_shared(count: int, ring_bytes: int, extra: int = 0) -> int:
    """A memfd sized for ``count`` shards' rings and ``extra`` bytes after them (zero-filled:
    every ring empty, every flag down)."""
    size = layout(count, ring_bytes)[2] + extra
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size > limit:
        # A memfd's size counts against the file size limit: growing it past the limit would
        # fail with EFBIG, and kill the process with SIGXFSZ unless that signal is ignored.
        raise OSError(errno.EFBIG, f"ioengine.smp: the shards' shared memory ({size} bytes: {count} x {count} "
                                   f"message rings of smp_ring_bytes={ring_bytes}, and the io group) is more "
                                   f"than the file size limit ({limit} bytes, `ulimit -f`); raise the limit, "
                                   f"lower smp_ring_bytes, or run fewer shards")
    fd = os.memfd_create("ioengine-smp", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


def describe_unpicklable(what: str, shard: int, fn: Any, args: tuple, kw: dict | None,
                         error: BaseException) -> UnpicklableArgumentError:
    """The error for a call that does not pickle: which part (function, position, keyword) fails."""
    name = getattr(fn, "__qualname__", None) or repr(fn)
    try:
        pickle.dumps(fn, pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        return UnpicklableArgumentError(
            f"{what} to shard {shard}: the function {name!r} cannot be pickled ({e}); functions and classes "
            f"cross shards by reference, so they must be defined at module level in an importable module "
            f"(not lambdas, nested functions or bound methods of unpicklable objects)")
    for i, a in enumerate(args):
        try:
            pickle.dumps(a, pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            return UnpicklableArgumentError(
                f"{what} {name} on shard {shard}: argument {i} (positional, counting from 0), "
                f"a {type(a).__name__}, cannot be pickled: {e}. Values cross shards by pickle")
    for k, v in (kw or {}).items():
        try:
            pickle.dumps(v, pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            return UnpicklableArgumentError(
                f"{what} {name} on shard {shard}: keyword argument {k!r}, a {type(v).__name__}, "
                f"cannot be pickled: {e}. Values cross shards by pickle")
    return UnpicklableArgumentError(f"{what} {name} on shard {shard}: the call cannot be pickled: {error}")


def error_payload(shard: int, exc: BaseException) -> bytes:
    """An exception as sent back: its pickle (if it pickles), type name, message, traceback text."""
    frames = exc.__traceback__
    while frames is not None and frames.tb_frame.f_code in _OWN_CODE:
        frames = frames.tb_next  # the transport's own frames say nothing about the error
    tb = "".join(traceback.format_exception(type(exc), exc, frames))
    try:
        eb: bytes | None = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
    except Exception:
        eb = None
    t = type(exc)
    return pickle.dumps((eb, f"{t.__module__}.{t.__qualname__}", str(exc), tb, shard), pickle.HIGHEST_PROTOCOL)


def rebuild_error(payload: Any) -> BaseException:
    """The exception for an ERR payload: the same type when it unpickles, else a RemoteError;
    the remote traceback text as ``remote_traceback`` and as ``__cause__``."""
    eb, type_name, message, tb, shard = pickle.loads(payload)
    exc: BaseException | None = None
    if eb is not None:
        try:
            exc = pickle.loads(eb)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(type_name, message, tb, shard)
    try:
        exc.remote_traceback = tb  # type: ignore[attr-defined]
        exc.shard = shard  # type: ignore[attr-defined]
    except AttributeError:  # a type with __slots__: the cause still carries the text
        pass
    exc.__cause__ = RemoteTraceback(f"on shard {shard}:\n{tb}")
    return exc


class Transport:
    """This shard's end of the rings: sends calls and answers, receives and runs them."""

    __slots__ = ("shard", "count", "loop", "_mm", "_base", "_cap", "_max_payload", "_out", "_in", "_in_arr",
                 "_n_in", "_flags", "_my_flag", "_efds", "_out_addr", "_flag_addr", "_in_addr", "_buf_addr", "_pop",
                 "_outbox", "_dirty", "_flush_scheduled", "_retry",
                 "_pending", "_next_id", "_buf", "_view", "_tasks", "_unpoll", "_create_future", "closed",
                 "_wakeups", "_disp", "_ready", "_poll_ns", "_spinning", "_spin_deadline",
                 "_active_until",
                 "_dead", "_batch_bytes", "_fids", "_fn_pickles", "_defined", "_fns", "__weakref__")

    def __init__(self, shard: int, count: int, memfd: int, efds: list[int], ring_bytes: int,
                 loop: asyncio.AbstractEventLoop, poll_us: int, batch_bytes: int = 4096) -> None:
        self.shard = shard
        self.count = count
        self.loop = loop
        first, stride, size = layout(count, ring_bytes)
        self._mm = mmap.mmap(memfd, size)  # MAP_SHARED
        base = ffi.from_buffer(self._mm)
        self._base = base
        self._cap = ring_bytes
        self._batch_bytes = min(batch_bytes, ring_bytes // 2)
        self._max_payload = ring_bytes - HDR_BYTES
        ring = lambda src, dst: base + first + (src * count + dst) * stride + _PAGE - lib.IE_SPSC_HEADER  # noqa: E731
        self._out = [ring(shard, d) if d != shard else ffi.NULL for d in range(count)]
        self._in = [(s, ring(s, shard)) for s in range(count) if s != shard]
        self._in_arr = ffi.new("void *[]", [r for _, r in self._in])
        self._n_in = len(self._in)
        self._flags = [ffi.cast("uint32_t *", base + d * _CTL_STRIDE) for d in range(count)]
        self._my_flag = self._flags[shard]
        self._efds = efds
        # the same, as addresses: the flush writes the outboxes from C (MessageDispatch.push)
        self._out_addr = [int(ffi.cast("uintptr_t", r)) for r in self._out]
        self._flag_addr = [int(ffi.cast("uintptr_t", f)) for f in self._flags]
        self._outbox = [bytearray() for _ in range(count)]
        self._dirty: list[int] = []
        self._flush_scheduled = False
        self._retry: asyncio.TimerHandle | None = None
        #: Calls awaiting an answer, by the shard they went to (their answers come back on its ring).
        self._pending: list[dict[int, IoFuture[Any]]] = [{} for _ in range(count)]
        self._next_id = 1
        self._buf = ffi.new("char[]", ring_bytes)
        self._view = memoryview(ffi.buffer(self._buf))
        self._tasks: set[asyncio.Task] = set()
        # The answers' futures are resolved with their callbacks held, and the tasks they wake
        # resume where the answers were read, before the loop turn goes on (see _dispatch):
        # `ioengine-bench smp` measures it.
        self._create_future = functools.partial(IoFuture, loop=loop)
        self._wakeups = Wakeups()
        self._disp = MessageDispatch(loop=loop, wakeups=self._wakeups, plain=_PLAIN_TYPES, loads=pickle.loads,
                                     dumps=_dumps, proto=_PROTO, slow=self._message, result=self._handle_result,
                                     fail=self._call_failed, flush=self._flush_early,
                                     max_payload=self._max_payload, batch_bytes=self._batch_bytes)
        # the rings and the buffer as addresses, for the C pop (MessageDispatch.pop) of poll()
        self._in_addr = [(src, int(ffi.cast("uintptr_t", r))) for src, r in self._in]
        self._buf_addr = int(ffi.cast("uintptr_t", self._buf))
        self._pop = self._disp.pop
        self.closed = False
        self._dead: set[int] = set()
        self._fids: dict[Any, int] = {}  # functions sent from here, by id
        self._fn_pickles: list[bytes] = []
        self._defined: list[set[int]] = [set() for _ in range(count)]  # ids each shard has been sent
        self._ready: list[dict[Any, int]] = [{} for _ in range(count)]  # functions sent to each: id << 8
        self._fns: list[dict[int, Any]] = [{} for _ in range(count)]  # functions received, by sender and id
        self._poll_ns = max(0, poll_us) * 1000
        self._spinning = False
        self._spin_deadline = 0
        self._active_until = 0
        loop.add_reader(efds[shard], self._on_eventfd)
        # Polled (the loop spins before it sleeps) for poll_us after a message was sent or read:
        # a shard that exchanges none leaves the loop to its other sources (its disk's polling).
        self._unpoll = poller.install(loop, poll_us, self._active, self.poll, each_turn=self._turn,
                                      sleep=self._sleep, awake=self._awake)
        # With the selector hook, outboxes are written when the loop turn's callbacks have all run
        # (the start of its select): the batch is a whole turn's, and it leaves in the turn the
        # calls were made. Without it (a loop with no selector to wrap), a callback does it.
        # "Scheduled" stays True then: nothing else needs to schedule it.
        self._flush_scheduled = self._unpoll is not None
        if self._unpoll is None:
            # No hook to say when we sleep: the rings are read from the eventfd's callback, and
            # polled from a self-requeuing callback for poll_us after each batch sent or received
            # (_spin); the flag stays up ("asleep": producers write our eventfd) between spins.
            self._on_eventfd()

    # -- sending ---------------------------------------------------------------------------

    def call(self, shard: int, fn: Any, args: tuple, kw: dict | None, what: str = "submit_to") -> IoFuture[Any]:
        """Send ``fn(*args, **kw)`` to ``shard``; the future resolves to its result."""
        if not self.closed and not self._dead:
            # The common call: a function already sent there (C pickles the arguments into the
            # outbox and makes the future).
            try:
                fid8 = self._ready[shard].get(fn)
            except TypeError:  # an unhashable callable
                fid8 = None
            if fid8 is not None:
                ob = self._outbox[shard]
                if not ob:
                    self._dirty.append(shard)
                    if not self._flush_scheduled:
                        self._flush_scheduled = True
                        self.loop.call_soon(self._flush)
                rid = self._next_id
                self._next_id = rid + 1
                try:
                    sent = self._disp.call(fid8 | CALL_KW if kw else fid8, rid, (args, kw) if kw else args,
                                           self._pending[shard], ob, shard)
                except Exception as e:
                    raise describe_unpicklable(what, shard, fn, args, kw, e) from e
                if sent is not None:
                    return sent
                # larger than a message: the general path below says so
        if self.closed or self._dead and shard in self._dead:
            raise ShardError(shard, "is stopped or gone; no more calls can be sent to it")
        try:
            fid = self._fids.get(fn)  # only functions and classes are ever put there
        except TypeError:  # an unhashable callable: it goes with each call
            fid = None
        try:
            if fid is None and type(fn) in _CACHED_TYPES:
                fid = self._define(fn)
            if fid is None:
                kind = CALL_FN
                data = _dumps((fn, args, kw), _PROTO)
            elif kw:
                kind = CALL_KW | fid << 8
                data = _dumps((args, kw), _PROTO)
            else:
                kind = CALL | fid << 8
                data = _dumps(args, _PROTO)
        except Exception as e:
            raise describe_unpicklable(what, shard, fn, args, kw, e) from e
        n = len(data)
        if n > self._max_payload:
            raise ValueError(f"{what} to shard {shard}: the call pickles to {n} bytes, more than a "
                             f"cross-shard message may hold ({self._max_payload} bytes: smp_ring_bytes "
                             f"{self._cap} less a {HDR_BYTES}-byte header); send a file or a path instead, "
                             f"or raise smp_ring_bytes")
        if fid is not None and fid not in self._defined[shard]:
            self._defined[shard].add(fid)
            self._send(shard, DEF | fid << 8, 0, self._fn_pickles[fid])
            self._ready[shard][fn] = fid << 8
        rid = self._next_id
        self._next_id = rid + 1
        fut: IoFuture[Any] = self._create_future()
        self._pending[shard][rid] = fut
        # _send, inlined (the per-call path)
        ob = self._outbox[shard]
        if not ob:
            self._dirty.append(shard)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self._flush)
        ob += _pack(n, kind, rid)
        ob += data
        if len(ob) >= self._batch_bytes:
            self._flush_early(shard, ob)
        return fut

    def _define(self, fn: Any) -> int:
        """A function's id (its pickle kept, to be sent to each shard once); raises if it does not pickle."""
        data = pickle.dumps(fn, pickle.HIGHEST_PROTOCOL)
        fid = len(self._fn_pickles)
        if fid >= 1 << 24:
            raise RuntimeError("too many distinct functions sent across shards (16M)")
        self._fn_pickles.append(data)
        self._fids[fn] = fid
        return fid

    def _send(self, dest: int, kind: int, rid: int, data: bytes) -> None:
        ob = self._outbox[dest]
        if not ob:
            self._dirty.append(dest)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.loop.call_soon(self._flush)
        ob += _HDR.pack(len(data), kind, rid)
        ob += data
        if len(ob) >= self._batch_bytes:
            self._flush_early(dest, ob)

    def _flush_early(self, d: int, ob: bytearray) -> None:
        """Write a full outbox now, mid-turn: the receiver starts on it while this shard goes on
        producing the rest of the turn (else the two shards take turns, each idle while the other
        works). A full ring leaves it to the turn's flush."""
        if lib.ie_spsc_push(self._out[d], self._cap, ffi.from_buffer(ob), len(ob), self._flags[d], self._efds[d]) >= 0:
            del ob[:]

    def _flush(self) -> None:
        """Write every outbox into its ring: one push per destination (waking it if it sleeps)."""
        if self._unpoll is None:
            self._flush_scheduled = False
            if self._dirty:
                self._start_spin()  # the answers will come back soon
        dirty = self._dirty
        if not dirty:
            return
        self._dirty = []
        self._active_until = time.monotonic_ns() + self._poll_ns
        # each outbox whole into its ring, in C; the ones whose ring is too full come back
        for d in self._disp.push(dirty, self._outbox, self._out_addr, self._flag_addr, self._efds, self._cap):
            self._push_part(d, self._outbox[d])
        if self._dirty and self._retry is None and not self.closed:
            # A ring is full: its consumer is behind. Try again shortly (it frees room as it reads).
            self._retry = self.loop.call_later(0.0002, self._retry_flush)

    def _push_part(self, d: int, ob: bytearray) -> None:
        """The ring to ``d`` has not room for the whole outbox: push the whole messages that fit."""
        room = self._cap - lib.ie_spsc_queued(self._out[d])
        end = 0
        while end < len(ob):
            n = HDR_BYTES + _HDR.unpack_from(ob, end)[0]
            if end + n > room:
                break
            end += n
        if end:
            rc = lib.ie_spsc_push(self._out[d], self._cap, ffi.from_buffer(ob), end, self._flags[d], self._efds[d])
            if rc < 0:
                raise OSError(-rc, f"cross-shard ring to shard {d}: push of {end} bytes failed")
            del ob[:end]
        if ob:
            self._dirty.append(d)

    def _retry_flush(self) -> None:
        self._retry = None
        self._flush()

    # -- receiving -------------------------------------------------------------------------

    def _turn(self) -> bool:
        """Once per loop turn (the selector hook): send what the turn produced, read what came."""
        if self._dirty:
            self._flush()
        return self.poll()

    def poll(self) -> bool:
        """Read every incoming ring and handle what came; True if anything did."""
        got = False
        buf = self._buf_addr
        cap = self._cap
        pop = self._pop
        for src, ring in self._in_addr:
            n = pop(ring, cap, buf)
            if n:
                if not got:
                    got = True
                    self._active_until = time.monotonic_ns() + self._poll_ns
                self._dispatch(src, n)
                if self.closed:  # a caller resumed by it closed the transport
                    return True
        if got and self._dirty and not self.closed:
            self._flush()  # answers go out now, not a loop turn later
        return got

    def _active(self) -> bool:
        """A message went or came within the last poll_us: more are likely (the poller spins)."""
        return time.monotonic_ns() < self._active_until

    def _dispatch(self, src: int, n: int) -> None:
        """The ``n`` bytes of messages read from ``src``'s ring: answers and plain calls in C
        (MessageDispatch), the rest through _message, in order."""
        ob = self._outbox[src]
        empty = not ob
        self._disp.run(self._view, n, src, self._pending[src], self._fns[src], ob)
        if empty and ob:
            self._dirty.append(src)
        held = self._wakeups
        if held.held:
            # Resume the callers now: the rings are read from the selector's hook (once per
            # select, so a task resumes at most once a loop turn, as from the ready queue) or
            # from the eventfd's callback, never inside a task (Wakeups.deliver would then leave
            # them to call_soon). Their next calls leave with this poll's flush, not a turn later.
            held.deliver()
        if self._dirty and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _message(self, src: int, kind: int, rid: int, payload: Any) -> None:
        """One message MessageDispatch leaves to Python: a function's definition, a call of a
        function sent with it (or of an id never defined here), an error answer, an answer that
        does not unpickle."""
        k = kind & 0xFF
        if k == DEF:
            self._fns[src][kind >> 8] = _load_function(payload)
        elif k in (CALL, CALL_KW) and kind >> 8 not in self._fns[src]:
            # a function id never defined here: the sender's books are wrong
            err = RuntimeError(f"shard {self.shard} got a call of function id {kind >> 8} it was never sent")
            self._send(src, ERR, rid, error_payload(self.shard, err))
        elif k == CALL_FN:
            self._run_call(src, rid, payload)
        elif k in (OK, ERR):
            fut = self._pending[src].pop(rid, None)
            if fut is None or fut.done():  # the caller was cancelled
                return
            held = self._wakeups
            try:
                if k == OK:
                    held.set_result(fut, pickle.loads(payload))
                else:
                    held.set_exception(fut, rebuild_error(payload))
            except Exception as e:  # the answer does not unpickle here
                held.set_exception(fut, TypeError(f"the answer from shard {src} cannot be unpickled on shard "
                                                  f"{self.shard}: {type(e).__name__}: {e}"))
        else:
            raise RuntimeError(f"cross-shard ring from shard {src}: unknown message kind {k}")

    def _call_failed(self, src: int, rid: int, fn: Any, exc: BaseException) -> None:
        """A call (or the unpickling of its arguments) raised: the caller gets it."""
        e = fn.error if type(fn) is _Unloadable else exc
        self._send(src, ERR, rid, error_payload(self.shard, e))

    def _run_call(self, src: int, rid: int, payload: Any) -> None:
        """A call of a function sent with it (not cached by id: a partial, a bound method, ...)."""
        try:
            fn, args, kw = pickle.loads(payload)
            res = fn(*args, **kw) if kw else fn(*args)
        except Exception as e:
            self._send(src, ERR, rid, error_payload(self.shard, e))
            return
        self._handle_result(src, rid, res)

    def _handle_result(self, src: int, rid: int, res: Any) -> None:
        if inspect.isawaitable(res):
            task = self.loop.create_task(self._finish(src, rid, res))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            if len(_PLAIN_TYPES) < 256:
                _PLAIN_TYPES.add(type(res))  # not awaitable: the next one takes the short path
            self.answer(src, rid, res)

    async def _finish(self, src: int, rid: int, aw: Any) -> None:
        try:
            res = await aw
        except asyncio.CancelledError as e:
            if not self.closed:
                self._send(src, ERR, rid, error_payload(self.shard, e))
            raise
        except Exception as e:
            self._send(src, ERR, rid, error_payload(self.shard, e))
            return
        self.answer(src, rid, res)

    def answer(self, dest: int, rid: int, value: Any) -> None:
        try:
            data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            err: Exception = TypeError(f"the result on shard {self.shard}, a {type(value).__name__}, cannot be pickled "
                            f"to go back to shard {dest}: {e}")
            self._send(dest, ERR, rid, error_payload(self.shard, err))
            return
        if len(data) > self._max_payload:
            err = ValueError(f"the result on shard {self.shard} pickles to {len(data)} bytes, more than a "
                             f"cross-shard message may hold ({self._max_payload} bytes; raise smp_ring_bytes)")
            self._send(dest, ERR, rid, error_payload(self.shard, err))
            return
        self._send(dest, OK, rid, data)

    # -- sleeping --------------------------------------------------------------------------

    def _sleep(self) -> bool:
        if self._dirty:
            self._flush()
        return lib.ie_shard_sleep(self._my_flag, self._in_arr, self._n_in) != 0

    def _awake(self) -> None:
        lib.ie_shard_awake(self._my_flag)

    def _start_spin(self) -> None:
        """Loops without a selector hook (uvloop): poll the rings from a callback for poll_ns,
        the flag down meanwhile (producers need not write our eventfd)."""
        if self._poll_ns and not self._spinning and not self.closed:
            self._spinning = True
            lib.ie_shard_awake(self._my_flag)
            self._spin_deadline = time.monotonic_ns() + self._poll_ns
            self.loop.call_soon(self._spin)

    def _spin(self) -> None:
        if self.closed:
            self._spinning = False
            return
        if self.poll():
            self._spin_deadline = time.monotonic_ns() + self._poll_ns
        elif time.monotonic_ns() >= self._spin_deadline:
            # Going to sleep: raise the flag, then look once more (a push that saw it down wrote
            # nothing); something there keeps us polling.
            if not lib.ie_shard_sleep(self._my_flag, self._in_arr, self._n_in):
                self._spinning = False
                return
            self._spin_deadline = time.monotonic_ns() + self._poll_ns
        self.loop.call_soon(self._spin)

    def _on_eventfd(self) -> None:
        try:
            os.read(self._efds[self.shard], 8)
        except BlockingIOError:
            pass
        self.poll()
        if self._unpoll is None and not self.closed and self._poll_ns:
            self._start_spin()
        elif self._unpoll is None and not self.closed:
            # Re-arm: raise the flag, then look once more (a push that saw it down wrote nothing).
            while lib.ie_shard_sleep(self._my_flag, self._in_arr, self._n_in):
                if self.poll() and self.closed:
                    break

    # -- failure and close -----------------------------------------------------------------

    def shard_lost(self, shard: int, error: BaseException) -> None:
        """``shard`` is gone: its callers get ``error``, and nothing more is sent to it."""
        self._dead.add(shard)
        lost, self._pending[shard] = self._pending[shard], {}
        for fut in lost.values():
            if not fut.done():
                fut.set_exception(error)

    async def close(self) -> None:
        """Cancel the calls running here and wait for them; stop reading and writing the rings."""
        if self.closed:
            return
        self._flush()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.closed = True
        if self._retry is not None:
            self._retry.cancel()
        if self._unpoll is not None:
            self._unpoll()
        try:
            self.loop.remove_reader(self._efds[self.shard])
        except Exception:
            pass
        err = ShardError(self.shard, "is stopping")
        for pending in self._pending:
            for fut in pending.values():
                if not fut.done():
                    fut.set_exception(err)
            pending.clear()
        del self._view
        self._base = None
        self._in_arr = None
        self._out = []
        self._out_addr = []  # (a flush now raises IndexError, as with _out, instead of writing unmapped memory)
        self._in = []
        self._in_addr = []
        try:
            self._mm.close()
        except BufferError:  # a cdata still exports it: the mapping goes with the process
            pass


#: Code objects of the transport's frames that call the user's function (left out of tracebacks).
_OWN_CODE = frozenset({Transport._run_call.__code__, Transport._finish.__code__})


class _Unloadable:
    """Stands for a function that did not unpickle on this shard: calling it raises why."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _load_function(payload: Any) -> Any:
    try:
        return pickle.loads(payload)
    except Exception as e:
        return _Unloadable(TypeError(f"the function sent cannot be unpickled on this shard: {type(e).__name__}: {e} "
                                     f"(functions cross shards by module and name: define it at module level "
                                     f"of a module every shard can import)"))


__all__ = ["CALL", "ERR", "OK", "RemoteError", "RemoteTraceback", "ShardError", "Transport",
           "UnpicklableArgumentError", "create_shared", "layout"]
