"""Per-core shards (Seastar's smp): one process per core, each with its own loop and reactor.

    import ioengine
    from ioengine import smp

    async def where(x):                       # module level: it crosses shards by reference
        return smp.this_shard_id(), x * 2

    async def main():
        print(await smp.submit_to(1, where, 21))          # (1, 42), computed on shard 1
        print(await smp.invoke_on_all(where, 1))          # [(0, 2), (1, 2)]

    if __name__ == "__main__":                # shards re-import the main module: guard it
        ioengine.run(main, smp=2)

``run(main, smp=N, cpuset=None, **reactor_options)`` starts shards 1..N-1 as processes ("spawn":
a fresh interpreter, never a fork of a live loop and ring), pins every shard (this process is
shard 0) to its CPU, gives each its own asyncio loop and reactor built from the same options,
runs ``main`` on shard 0 and stops the other shards when it returns. smp=1 is plain
``ioengine.run``: no other process, nothing added.

What crosses shards: calls and results travel by pickle. A function or class crosses by
reference (its module and name), so it must be defined at module level of a module the shards
can import (the main script counts, under its ``if __name__ == "__main__":`` guard); arguments,
results and exceptions cross by value. Anything that does not pickle is refused at the call,
before anything is sent, by a TypeError naming the argument. A call to one's own shard runs
here without pickling. One message (a call or a result) must fit in a ring (SmpOptions).

Failure and shutdown: SIGINT or SIGTERM to shard 0 cancels ``main``, stops every shard (their
running calls cancelled, so ``async with`` blocks close their files; their reactors drained and
closed) and ``run`` raises KeyboardInterrupt (SIGINT) or SystemExit(143) (SIGTERM). Shards
1..N-1 ignore SIGINT and SIGTERM (a terminal's Ctrl-C, or a SIGTERM to the process group, reaches
every process; shard 0 decides).
A shard that dies, or fails to start, ends the run: ``main`` is cancelled, the other shards
stopped, and ``run`` raises ShardError naming the shard, how it ended and its traceback. A shard
cannot outlive shard 0: it is killed (PR_SET_PDEATHSIG) if shard 0's process dies.
"""
from __future__ import annotations

import asyncio
import ctypes
import functools
import inspect
import itertools
import multiprocessing
import os
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing import reduction
from typing import Any, Generic, TypeVar

from ..options import ReactorOptions, SmpOptions
from ..reactor import get_reactor
from ..reactor import run as _run_one
from ._transport import (
    RemoteError,
    RemoteTraceback,
    ShardError,
    Transport,
    UnpicklableArgumentError,
    create_shared,
    describe_unpicklable,
    layout,
)
from .files import FileHandle, file_handle
from .io_group import ShmIoGroup, group_bytes

T = TypeVar("T")

#: This process's end of the message rings (None: a single shard, or outside a run).
_here: Transport | None = None


def shared_memory_bytes(n: int, ring_bytes: int | None = None) -> int:
    """Bytes of shared memory ``run`` maps for ``n`` shards (their message rings of
    ``ring_bytes``, default SmpOptions' smp_ring_bytes, and the io group): a memfd, so it counts
    against the file size limit (``ulimit -f``)."""
    return layout(n, SmpOptions().smp_ring_bytes if ring_bytes is None else ring_bytes)[2] + group_bytes()


def this_shard_id() -> int:
    """The shard this code runs on (0 outside an smp run)."""
    t = _here
    return 0 if t is None else t.shard


def smp_count() -> int:
    """How many shards the run has (1 outside an smp run)."""
    t = _here
    return 1 if t is None else t.count


def _check_shard(shard: int) -> None:
    n = smp_count()
    if not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < n:
        raise ValueError(f"no shard {shard!r}: this run has shards 0..{n - 1} (smp={n})")


async def _run_here(fn: Callable[..., Any], args: tuple, kw: dict) -> Any:
    res = fn(*args, **kw)
    if inspect.isawaitable(res):
        res = await res
    return res


def submit_to(shard: int, fn: Callable[..., Any], /, *args: Any, **kw: Any) -> Awaitable[Any]:
    """Run ``fn(*args, **kw)`` (plain or async) on ``shard``; await the result.

    An exception raised there is raised here with its type (or as a RemoteError when the type
    does not unpickle here), its message, and the remote traceback as ``remote_traceback`` and
    as ``__cause__``. An argument that does not pickle raises UnpicklableArgumentError (a
    TypeError) now, naming it. On this shard itself, ``fn`` runs here, nothing pickled.
    """
    t = _here
    if t is not None and shard != t.shard and type(shard) is int and 0 <= shard < t.count:
        return t.call(shard, fn, args, kw or None)
    _check_shard(shard)
    return _run_here(fn, args, kw)


async def invoke_on_all(fn: Callable[..., Any], /, *args: Any, **kw: Any) -> list[Any]:
    """``submit_to`` every shard; the results in shard order."""
    return await asyncio.gather(*_to_all(fn, args, kw))


def _to_all(fn: Callable[..., Any], args: tuple, kw: dict, what: str = "submit_to") -> list[Awaitable[Any]]:
    here = this_shard_id()
    out: list[Awaitable[Any]] = []
    t = _here
    # The other shards first: a refused argument is refused before the local coroutine exists.
    for s in range(smp_count()):
        if s != here:
            assert t is not None
            out.append(t.call(s, fn, args, kw or None, what))
    out.insert(here, _run_here(fn, args, kw))
    return out


# -- sharded services -----------------------------------------------------------------------

#: The service instances living on this shard, by service id.
_services: dict[tuple[int, int], Any] = {}
_service_ids = itertools.count()


def _service_start(sid: tuple[int, int], cls: type, args: tuple, kw: dict) -> None:
    if sid in _services:
        raise RuntimeError(f"sharded {cls.__qualname__} is already started on shard {this_shard_id()}")
    _services[sid] = cls(*args, **kw)


def _service_instance(sid: tuple[int, int], cls: type) -> Any:
    try:
        return _services[sid]
    except KeyError:
        raise RuntimeError(f"sharded {cls.__qualname__} is not started on shard {this_shard_id()} "
                           f"(await .start() first, or it was stopped)") from None


def _service_call(sid: tuple[int, int], cls: type, method: str, args: tuple, kw: dict) -> Any:
    return getattr(_service_instance(sid, cls), method)(*args, **kw)


async def _service_stop(sid: tuple[int, int]) -> None:
    inst = _services.pop(sid, None)
    stop = getattr(inst, "stop", None)
    if stop is not None:
        res = stop()
        if inspect.isawaitable(res):
            await res


class sharded(Generic[T]):
    """Seastar's ``sharded<T>``: one instance of a service class on every shard.

        counters = sharded(Counter, start=10)
        await counters.start()                       # Counter(start=10) on every shard
        await counters.invoke_on(1, "add", 5)        # Counter.add(5) on shard 1
        total = await counters.map_reduce(operator.add, "value")
        await counters.stop()                        # awaits Counter.stop() where defined

    The class and the constructor's arguments cross by pickle (module-level class). The object
    itself pickles too (by its id), so a service may hand it to calls on other shards and use
    ``local()`` there.
    """

    __slots__ = ("_cls", "_args", "_kw", "_sid")

    def __init__(self, cls: type[T], /, *args: Any, **kw: Any) -> None:
        self._cls = cls
        self._args = args
        self._kw = kw
        self._sid = (this_shard_id(), next(_service_ids))

    def __reduce__(self) -> tuple:
        return (_rebuild_sharded, (self._cls, self._sid))

    def __repr__(self) -> str:
        return f"<sharded {self._cls.__qualname__} id={self._sid}>"

    def _name(self, method: str) -> str:
        return f"{self._cls.__qualname__}.{method}"

    def _one(self, shard: int, method: str, args: tuple, kw: dict) -> Awaitable[Any]:
        try:
            return submit_to(shard, _service_call, self._sid, self._cls, method, args, kw)
        except UnpicklableArgumentError as e:
            raise describe_unpicklable("invoke_on", shard, getattr(self._cls, method, self._cls), args, kw,
                                       e) from None

    def _all(self, fn: Callable[..., Any], args: tuple, label: str, user_args: tuple, user_kw: dict,
             target: Any) -> list[Awaitable[Any]]:
        try:
            return _to_all(fn, args, {}, label)
        except UnpicklableArgumentError as e:
            bad = next(s for s in range(smp_count()) if s != this_shard_id())
            raise describe_unpicklable(label, bad, target, user_args, user_kw, e) from None

    async def start(self) -> None:
        """Construct the instance on every shard."""
        await asyncio.gather(*self._all(_service_start, (self._sid, self._cls, self._args, self._kw), "start",
                                        self._args, self._kw, self._cls))

    async def stop(self) -> None:
        """Stop (``await instance.stop()`` where defined) and drop the instance on every shard."""
        await invoke_on_all(_service_stop, self._sid)

    def local(self) -> T:
        """The instance on this shard."""
        return _service_instance(self._sid, self._cls)

    async def invoke_on(self, shard: int, method: str, /, *args: Any, **kw: Any) -> Any:
        """Call ``method`` (plain or async) of the instance on ``shard``; its result."""
        return await self._one(shard, method, args, kw)

    async def invoke_on_all(self, method: str, /, *args: Any, **kw: Any) -> list[Any]:
        """Call ``method`` on every shard's instance; the results in shard order."""
        return await asyncio.gather(*self._all(_service_call, (self._sid, self._cls, method, args, kw),
                                               "invoke_on_all", args, kw, getattr(self._cls, method, self._cls)))

    async def map_reduce(self, reducer: Callable[[Any, Any], Any], method: str, /, *args: Any, **kw: Any) -> Any:
        """``method`` on every shard, results folded with ``reducer`` (in shard order)."""
        return functools.reduce(reducer, await self.invoke_on_all(method, *args, **kw))

    async def map_reduce0(self, method: str, initial: Any, reducer: Callable[[Any, Any], Any], /,
                          *args: Any, **kw: Any) -> Any:
        """Seastar's map_reduce0: ``method`` on every shard, folded into ``initial``."""
        return functools.reduce(reducer, await self.invoke_on_all(method, *args, **kw), initial)


def _rebuild_sharded(cls: type, sid: tuple[int, int]) -> sharded:
    s = sharded.__new__(sharded)
    s._cls, s._args, s._kw, s._sid = cls, (), {}, sid
    return s


Sharded = sharded


# -- running shards -------------------------------------------------------------------------

def run(main: Any, /, *args: Any, **options: Any) -> Any:
    """Run ``main`` (a coroutine function called with ``args``, or a coroutine) on shard 0 of
    ``smp`` shards; the other keyword arguments are SmpOptions and ReactorOptions fields.

    Returns main's result. Raises what main raised, ShardError if a shard failed,
    KeyboardInterrupt on SIGINT, SystemExit(143) on SIGTERM.
    """
    sopts, rest = SmpOptions.split_kwargs(options)
    sopts = sopts or SmpOptions()
    ropts = ReactorOptions.from_kwargs(**rest)  # refuse a bad option before any process starts
    if sopts.smp == 1 and sopts.cpuset is None:
        return _run_one(_main_coro(main, args), **rest)
    cpus = sopts.cpus()
    if sopts.smp == 1:
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpus[0]})
        try:
            return _run_one(_main_coro(main, args), **rest)
        finally:
            os.sched_setaffinity(0, old)
    coro = _main_coro(main, args)  # a main that is not async is refused before any process starts
    try:
        cluster = _Cluster(sopts, cpus, ropts)
    except BaseException:
        coro.close()
        raise
    return cluster.run(coro)


def _main_coro(main: Any, args: tuple) -> Any:
    if inspect.iscoroutine(main):
        if args:
            main.close()
            raise TypeError("run(): arguments are for a coroutine function, but main is already a coroutine")
        return main
    if callable(main):
        coro = main(*args)
        if not inspect.iscoroutine(coro):
            raise TypeError(f"run(): main must be an async function or a coroutine, {main!r} returned "
                            f"{type(coro).__name__}")
        return coro
    raise TypeError(f"run(): main must be an async function or a coroutine, got {type(main).__name__}")


class _Fd:
    """A file descriptor given to a shard process: passed at start-up (spawn's fd passing)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple:
        return (_fd_rebuild, (reduction.DupFd(self.fd),))


def _fd_rebuild(dup: Any) -> int:
    return dup.detach()


@dataclass(frozen=True)
class _ShardConfig:
    shard: int
    count: int
    cpu: int
    ring_bytes: int
    batch_bytes: int
    parent_pid: int
    reactor_options: dict[str, Any]
    memfd: Any  # _Fd in the parent, int in the shard
    efds: list[Any] = field(default_factory=list)
    #: The event loop policy shard 0 runs under (e.g. uvloop's), None for asyncio's default:
    #: every shard runs the same kind of loop.
    loop_policy: type | str | None = None
    #: Share the disks' buckets, in-disk bounds and shares with the other shards (smp_io_group).
    io_group: bool = True


class _Interrupted:
    __slots__ = ("signum",)

    def __init__(self, signum: int) -> None:
        self.signum = signum


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is gone"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Cluster:
    """Shard 0's side: starts the shard processes, watches them, stops them."""

    def __init__(self, sopts: SmpOptions, cpus: list[int], ropts: ReactorOptions) -> None:
        self.sopts = sopts
        self.cpus = cpus
        self.ropts = ropts
        self.n = sopts.smp
        self.procs: list[Any] = []  # index k-1 for shard k
        self.conns: list[Any] = []
        self.failure: ShardError | None = None
        self.signum: int | None = None
        self.stopping = False
        self.reported: dict[int, str] = {}
        self.exited: dict[int, asyncio.Future] = {}
        self.ready: set[int] = set()

    def run(self, coro: Any) -> Any:
        efds: list[int] = []
        old_affinity = os.sched_getaffinity(0)
        memfd = -1
        try:
            memfd = create_shared(self.n, self.sopts.smp_ring_bytes, group_bytes())
            efds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(self.n)]
            self._start(memfd, efds)
            os.sched_setaffinity(0, {self.cpus[0]})
            out = _run_one(self._shard0(coro, memfd, efds), **self.ropts.as_dict())
        except BaseException:
            coro.close()  # if it never started: no "never awaited" warning on top of the error
            raise
        finally:
            self._reap_all()
            for fd in [memfd, *efds]:
                if fd >= 0:
                    os.close(fd)
            os.sched_setaffinity(0, old_affinity)
        if isinstance(out, _Interrupted):
            if out.signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + out.signum)
        return out

    def _start(self, memfd: int, efds: list[int]) -> None:
        ctx = multiprocessing.get_context("spawn")
        # Blocked while the shards start: they inherit the mask, ignore SIGINT, then unblock; a
        # signal meant for shard 0 in the meantime is delivered when it unblocks here.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for k in range(1, self.n):
                mine, theirs = ctx.Pipe(duplex=True)
                cfg = _ShardConfig(k, self.n, self.cpus[k], self.sopts.smp_ring_bytes, self.sopts.smp_batch_bytes,
                                   os.getpid(),
                                   self.ropts.as_dict(), _Fd(memfd), [_Fd(e) for e in efds], _loop_policy(),
                                   self.sopts.smp_io_group)
                p = ctx.Process(target=_shard_process, args=(cfg, theirs), name=f"ioengine-shard-{k}")
                p.start()
                theirs.close()
                self.procs.append(p)
                self.conns.append(mine)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _reap_all(self) -> None:
        """No shard outlives run(): kill what is left, reap every process."""
        for p in self.procs:
            if p.exitcode is None:
                p.kill()
            p.join()
        for c in self.conns:
            c.close()

    # -- shard 0's coroutine -----------------------------------------------------------------

    async def _shard0(self, coro: Any, memfd: int, efds: list[int]) -> Any:
        global _here
        loop = asyncio.get_running_loop()
        self.wake = loop.create_future()  # set on a failure or a signal
        t = Transport(0, self.n, memfd, efds, self.sopts.smp_ring_bytes, loop,
                      get_reactor().options.idle_poll_time_us, self.sopts.smp_batch_bytes)
        self.transport = t
        _here = t
        if self.sopts.smp_io_group:
            get_reactor().disks.join_group(ShmIoGroup(memfd, layout(self.n, self.sopts.smp_ring_bytes)[2], 0, self.n))
        handlers = self._install_signals(loop)
        for k, (p, c) in enumerate(zip(self.procs, self.conns), start=1):
            self.exited[k] = loop.create_future()
            loop.add_reader(p.sentinel, self._on_exit, k)
            loop.add_reader(c.fileno(), self._on_ctl, k)
        result: Any = None
        main_exc: BaseException | None = None
        try:
            self.all_ready = loop.create_future()
            await asyncio.wait({self.all_ready, self.wake}, return_when=asyncio.FIRST_COMPLETED)
            if not self.wake.done():
                task = loop.create_task(coro)
                await asyncio.wait({task, self.wake}, return_when=asyncio.FIRST_COMPLETED)
                if not task.done():
                    task.cancel()
                    await asyncio.wait({task})
                if task.cancelled():
                    main_exc = None if self.wake.done() else asyncio.CancelledError()
                elif task.exception() is not None:
                    main_exc = task.exception()
                else:
                    result = task.result()
            else:
                coro.close()  # never started: no "never awaited" warning on top of the error
            await self._stop_shards(loop)
        finally:
            for p, c in zip(self.procs, self.conns):
                for fd in (p.sentinel, c.fileno()):
                    try:
                        loop.remove_reader(fd)
                    except Exception:
                        pass
            self._remove_signals(loop, handlers)
            await t.close()
            _here = None
        if self.signum is not None:
            return _Interrupted(self.signum)
        if self.failure is not None:
            raise self.failure from main_exc
        if main_exc is not None:
            raise main_exc
        return result

    async def _stop_shards(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stopping = True
        for k, c in enumerate(self.conns, start=1):
            if not self.exited[k].done():
                try:
                    c.send(("stop",))
                except OSError:
                    pass
        pending = [f for f in self.exited.values() if not f.done()]
        if pending:
            done, late = await asyncio.wait(pending, timeout=self.sopts.smp_stop_timeout_s)
            for k, f in self.exited.items():
                if f in late:
                    self.procs[k - 1].kill()
                    self._fail(ShardError(k, f"did not stop within {self.sopts.smp_stop_timeout_s:g} s "
                                             f"(smp_stop_timeout_s); killed"))
            if late:
                await asyncio.wait(late, timeout=5)

    def _fail(self, err: ShardError) -> None:
        if self.failure is None:
            self.failure = err
        self.transport.shard_lost(err.shard, err)
        if not self.wake.done():
            self.wake.set_result(None)

    def _on_ctl(self, k: int) -> bool:
        """Read one control message of shard ``k``; False at the end of the pipe."""
        c = self.conns[k - 1]
        loop = self.transport.loop
        try:
            msg = c.recv()
        except (EOFError, OSError):
            loop.remove_reader(c.fileno())
            return False
        if msg[0] == "ready":
            self.ready.add(k)
            if len(self.ready) == self.n - 1 and not self.all_ready.done():
                self.all_ready.set_result(None)
        elif msg[0] == "failed":
            self.reported[k] = msg[1]
        return True

    def _on_exit(self, k: int) -> None:
        p = self.procs[k - 1]
        loop = self.transport.loop
        loop.remove_reader(p.sentinel)
        c = self.conns[k - 1]
        try:
            while c.poll(0) and self._on_ctl(k):  # its last words (a traceback) may still be in the pipe
                pass
        except (EOFError, OSError):
            pass
        p.join(1.0)
        code = p.exitcode
        f = self.exited[k]
        if not f.done():
            f.set_result(code)
        if self.stopping and code == 0:
            return
        if self.signum is not None and self.stopping:
            return  # stopping on a signal: how a shard ends does not matter any more
        what = "while stopping" if self.stopping else ""
        self._fail(ShardError(k, f"(pid {p.pid}) {_describe_exit(code)} {what}".rstrip(), self.reported.get(k)))

    # -- signals -------------------------------------------------------------------------------

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[tuple[int, Any]]:
        installed: list[tuple[int, Any]] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous = signal.getsignal(sig)
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (ValueError, RuntimeError):  # not the main thread: signals stay as they are
                continue
            installed.append((sig, previous))
        return installed

    def _remove_signals(self, loop: asyncio.AbstractEventLoop, installed: list[tuple[int, Any]]) -> None:
        for sig, previous in installed:
            try:
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            except (ValueError, RuntimeError):
                pass

    def _on_signal(self, sig: int) -> None:
        if self.signum is not None:
            # A second signal: no more waiting for the shards.
            for p in self.procs:
                if p.exitcode is None:
                    p.kill()
            return
        self.signum = sig
        if not self.wake.done():
            self.wake.set_result(None)


# -- a shard's process -------------------------------------------------------------------------

def _set_parent_death_signal() -> None:
    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _loop_policy() -> type | str | None:
    """This process's event loop policy when it is not asyncio's default one: "uvloop" (its
    policy class is made on the fly and does not pickle), else the class (by reference)."""
    cls = type(asyncio.get_event_loop_policy())
    if cls is asyncio.DefaultEventLoopPolicy:
        return None
    return "uvloop" if cls.__module__.startswith("uvloop") else cls


def _set_loop_policy(policy: type | str) -> None:
    if policy == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif isinstance(policy, type):
        asyncio.set_event_loop_policy(policy())


def _shard_process(cfg: _ShardConfig, conn: Any) -> None:
    """The entry point of shards 1..N-1 (in a spawned interpreter)."""
    # Shard 0 decides: a Ctrl-C or a SIGTERM to the whole process group must not kill a shard
    # before shard 0 has stopped it cleanly (it is killed anyway if shard 0 dies).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    _set_parent_death_signal()
    if os.getppid() != cfg.parent_pid:  # shard 0 died before the death signal was armed
        os._exit(1)
    code = 0
    try:
        os.sched_setaffinity(0, {cfg.cpu})
        if cfg.loop_policy is not None:
            _set_loop_policy(cfg.loop_policy)
        _run_one(_shard_main(cfg, conn), **cfg.reactor_options)
    except BaseException:
        code = 1
        try:
            conn.send(("failed", traceback.format_exc()))
        except Exception:
            pass
    conn.close()
    sys.exit(code)


async def _shard_main(cfg: _ShardConfig, conn: Any) -> None:
    global _here
    loop = asyncio.get_running_loop()
    t = Transport(cfg.shard, cfg.count, cfg.memfd, cfg.efds, cfg.ring_bytes, loop,
                  get_reactor().options.idle_poll_time_us, cfg.batch_bytes)
    if cfg.io_group:
        get_reactor().disks.join_group(ShmIoGroup(cfg.memfd, layout(cfg.count, cfg.ring_bytes)[2], cfg.shard,
                                                  cfg.count))
    os.close(cfg.memfd)  # the mappings stay
    _here = t
    stop = loop.create_future()

    def on_ctl() -> None:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            msg = ("stop",)  # shard 0 is gone
        if msg[0] == "stop":
            loop.remove_reader(conn.fileno())
            if not stop.done():
                stop.set_result(None)

    loop.add_reader(conn.fileno(), on_ctl)
    try:
        conn.send(("ready",))
        await stop
    finally:
        try:
            loop.remove_reader(conn.fileno())
        except Exception:
            pass
        await t.close()
        _here = None
        _services.clear()


__all__ = ["FileHandle", "RemoteError", "RemoteTraceback", "ShardError", "Sharded", "SmpOptions",
           "UnpicklableArgumentError", "file_handle", "invoke_on_all", "run", "shared_memory_bytes", "sharded",
           "smp_count", "submit_to", "this_shard_id"]
