"""Fault injection: a backend wrapper that makes chosen requests fail, come up short or late.

For tests. ``FaultInjector(inner, rules)`` offers the reactor the same interface as every
backend (flush / reap / poll / wait_all, eventfd, capacity, name, …) and passes everything to
the real backend, except that requests matching a rule are changed on their way:

- ``FaultRule(op, errno=EIO)``: the request fails with ``-errno``. By default the request is
  really issued and its completion's result is replaced (``when="complete"``: the kernel did
  the I/O — a write may well be on disk although the caller is told it failed); with
  ``when="submit"`` it is never handed to the kernel and completes at once with ``-errno``
  (what io_submit or a full ring would report).
- ``FaultRule(op, short=n)``: a successful completion reports at most ``n`` bytes (default:
  half of what the kernel did, rounded down to 512). The I/O itself was done whole.
- ``FaultRule(op, delay=seconds)``: the completion is held back, then handed over later (the
  eventfd is signalled so the reactor reaps it). Held completions are released in the order
  they were held.

A rule matches by operation (``OP_READ``/``OP_WRITE``/``OP_READV``/``OP_WRITEV``/``OP_FSYNC``
of ioengine.backends.base, one or a collection, None for all), optionally by file descriptor,
and fires on the ``nth`` matching request (1-based), or with ``probability`` (drawn from the
injector's seeded RNG), or on every match; ``times`` caps how often it fires. Each request is
decided once, when the injector first sees its record (a record the kernel had no room for is
presented again and keeps its decision). The first firing error or short rule wins; a firing
delay rule applies as well.

Requests the injector never sees as records (io_uring metadata ops prepared straight into the
ring; linux-aio's fdatasync, which goes to the thread pool) pass through untouched.

Use ``ioengine.testing.inject_faults(reactor, rules)`` to install one on a reactor.
"""
from __future__ import annotations

import collections
import errno as _errno
import random
from array import array
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._native import lib
from .base import OP_FSYNC, OP_READ, OP_READV, OP_WRITE, OP_WRITEV, REC_WORDS

OP_NAMES = {OP_READ: "read", OP_WRITE: "write", OP_READV: "readv", OP_WRITEV: "writev", OP_FSYNC: "fsync"}


@dataclass
class FaultRule:
    """One kind of fault and the requests it hits; see the module docstring."""

    #: Operation code(s) to match (OP_READ, …); None matches every read/write/fsync record.
    op: int | Collection[int] | None = None
    #: Only requests on this file descriptor (None: any).
    fd: int | None = None
    #: Fail with this errno (EIO, ENOSPC, EAGAIN, EINTR, …).
    errno: int | None = None
    #: "complete": issue the request, replace its result; "submit": never issue it.
    when: str = "complete"
    #: Report a successful completion as at most this many bytes (0 < short; True: half).
    short: int | bool | None = None
    #: Hold the completion back this many seconds.
    delay: float | None = None
    #: Fire on the nth matching request only (1-based).
    nth: int | None = None
    #: Fire with this probability per matching request (the injector's seeded RNG).
    probability: float | None = None
    #: Fire at most this many times (None: no cap; with nth, once).
    times: int | None = None
    #: Matching requests seen, and how many times this rule fired.
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        kinds = sum(x is not None for x in (self.errno, self.short, self.delay))
        if kinds != 1:
            raise ValueError("FaultRule: give exactly one of errno=, short=, delay=")
        if self.when not in ("complete", "submit"):
            raise ValueError(f"FaultRule.when must be 'complete' or 'submit', got {self.when!r}")
        if self.when == "submit" and self.errno is None:
            raise ValueError("FaultRule: when='submit' only applies to errno= rules")
        if self.errno is not None and (not isinstance(self.errno, int) or self.errno <= 0):
            raise ValueError(f"FaultRule.errno must be a positive errno, got {self.errno!r}")
        if self.nth is not None and self.nth < 1:
            raise ValueError(f"FaultRule.nth is 1-based, got {self.nth}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"FaultRule.probability must be in [0, 1], got {self.probability}")
        if self.delay is not None and self.delay < 0:
            raise ValueError(f"FaultRule.delay must be >= 0, got {self.delay}")
        if self.op is None:
            self._ops = frozenset(OP_NAMES)
        elif isinstance(self.op, int):
            self._ops = frozenset((self.op,))
        else:
            self._ops = frozenset(self.op)
        unknown = self._ops - set(OP_NAMES)
        if unknown:
            raise ValueError(f"FaultRule.op: unknown operation code(s) {sorted(unknown)}")

    def matches(self, op: int, fd: int) -> bool:
        return op in self._ops and (self.fd is None or self.fd == fd)

    def fires(self, rng: random.Random, open_: bool = True) -> bool:
        """Count one matching request; True if the rule fires on it (never when not ``open_``:
        an earlier rule of its kind already took the request)."""
        self.seen += 1
        if not open_:
            return False
        cap = self.times if self.times is not None else (1 if self.nth is not None else None)
        if cap is not None and self.fired >= cap:
            return False
        if self.nth is not None and self.seen != self.nth:
            return False
        if self.probability is not None and rng.random() >= self.probability:
            return False
        self.fired += 1
        return True

    def __repr__(self) -> str:
        ops = "/".join(OP_NAMES[o] for o in sorted(self._ops))
        what = (f"errno={_errno.errorcode.get(self.errno, self.errno)}({self.when})" if self.errno is not None
                else f"short={self.short}" if self.short is not None else f"delay={self.delay}")
        return f"FaultRule({ops}, {what}, fired {self.fired} of {self.seen})"


# What the injector decided for one request: (error rule or None, short rule or None, delay or None)
_Decision = tuple


class FaultInjector:
    """A backend that passes everything to ``inner``, changing the requests ``rules`` pick."""

    def __init__(self, inner: Any, rules: Iterable[FaultRule] = (), seed: int = 0,
                 call_later: Callable[[float, Callable[[], None]], Any] | None = None) -> None:
        self.inner = inner
        self.rules: list[FaultRule] = list(rules)
        self.rng = random.Random(seed)
        #: ``call_later(seconds, fn)``: the loop's timer for delayed completions (the reactor's
        #: loop when installed by ioengine.testing); None: delays are released at the next call.
        self._call_later = call_later
        self._decided: dict[int, _Decision] = {}  # ud -> decision, until the record is accepted
        self._marked: dict[int, _Decision] = {}  # ud -> decision of a request in the kernel
        self._held: collections.deque[list] = collections.deque()  # [ud, res, released]
        self._timers: set[Any] = set()
        #: Every fault applied: (kind, op name, fd, ud, errno or bytes or seconds), in order.
        self.log: list[tuple] = []
        self._on_empty: list[Callable[[], None]] = []

    # -- the Backend interface ----------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def kernel_fs_ops(self) -> bool:
        return self.inner.kernel_fs_ops

    @property
    def capacity(self) -> int:
        return self.inner.capacity

    @property
    def eventfd(self) -> int:
        return self.inner.eventfd

    @property
    def ring(self) -> Any:
        return getattr(self.inner, "ring", None)

    def describe(self) -> str:
        return f"{self.inner.describe()} + fault injection"

    def native_submit(self) -> None:
        """None: every record must pass through the injector's flush(), never C's shortcut."""
        return None

    def native_reap(self) -> None:
        """None: every completion must pass through the injector's poll() and reap()."""
        return None

    def __getattr__(self, name: str) -> Any:  # anything else a backend offers (setup_flags, …)
        return getattr(self.inner, name)

    def flush(self, recs: Any) -> tuple[int, list[int], list[int]]:
        n = len(recs) // REC_WORDS
        if not n or not self.rules and not self._decided:
            accepted, uds, res = self.inner.flush(recs)
            return accepted, *self._deliver(uds, res)
        # Decide each record once; the ones failed at submission are left out of the batch.
        dropped: list[int] = []  # indexes of records failed without submission
        keep = array("Q")
        for i in range(n):
            rec = recs[i * REC_WORDS:(i + 1) * REC_WORDS]
            ud = rec[4]
            d = self._decided.get(ud)
            if d is None:
                d = self._decide(rec[0] & 0xFF, (rec[0] >> 8) & 0xFFFFFFFF)
                self._decided[ud] = d
            if d[0] is not None and d[0].when == "submit":
                dropped.append(i)
            else:
                keep.extend(rec)
        if dropped:
            inner_accepted, uds, res = self.inner.flush(keep)
        else:
            inner_accepted, uds, res = self.inner.flush(recs)
        # Records accepted from the front of the batch: dropped ones count as accepted (they
        # complete now), up to the first kept record the kernel did not take.
        accepted = 0
        kept = 0
        failed_uds: list[int] = []
        failed_res: list[int] = []
        drop = set(dropped)
        for i in range(n):
            ud = recs[i * REC_WORDS + 4]
            if i in drop:
                d = self._decided.pop(ud)
                rule = d[0]
                failed_uds.append(ud)
                failed_res.append(-rule.errno)
                self.log.append(("error-submit", OP_NAMES.get(recs[i * REC_WORDS] & 0xFF), (recs[i * REC_WORDS] >> 8)
                                 & 0xFFFFFFFF, ud, rule.errno))
            else:
                if kept >= inner_accepted:
                    break
                kept += 1
                d = self._decided.pop(ud)
                if d != (None, None, None):
                    self._marked[ud] = d + (OP_NAMES.get(recs[i * REC_WORDS] & 0xFF), (recs[i * REC_WORDS] >> 8)
                                            & 0xFFFFFFFF)
            accepted += 1
        uds, res = self._deliver(uds, res)
        return accepted, failed_uds + uds, failed_res + res

    def reap(self) -> tuple[list[int], list[int]]:
        return self._deliver(*self.inner.reap())

    def poll(self) -> tuple[list[int], list[int]]:
        return self._deliver(*self.inner.poll())

    def wait_all(self, inflight: int) -> list[int]:
        """Shutting down: whatever is held is handed over with what the kernel still owes."""
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        held = [h[0] for h in self._held]
        self._held.clear()
        self._marked.clear()
        return held + self.inner.wait_all(max(0, inflight - len(held)))

    def close(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()
        self.inner.close()

    # -- state ------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests the injector still has a hand in: marked in the kernel or held back."""
        return len(self._marked) + len(self._held)

    def release_all(self) -> None:
        """Hand over every held completion at the next reap (and wake the reactor for it)."""
        any_held = False
        for h in self._held:
            h[2] = True
            any_held = True
        if any_held:
            lib.ie_eventfd_signal(self.inner.eventfd)

    def when_empty(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` once nothing is pending any more (at once if nothing is)."""
        if not self.pending:
            fn()
        else:
            self._on_empty.append(fn)

    # -- internals --------------------------------------------------------------------------

    def _decide(self, op: int, fd: int) -> _Decision:
        err = short = delay = None
        for rule in self.rules:
            if not rule.matches(op, fd):
                continue
            if rule.delay is not None:
                if rule.fires(self.rng, delay is None):
                    delay = rule.delay
            elif rule.fires(self.rng, err is None and short is None):
                if rule.errno is not None:
                    err = rule
                else:
                    short = rule
        return err, short, delay

    def _deliver(self, uds: list[int], res: list[int]) -> tuple[list[int], list[int]]:
        """Apply the marked requests' faults to a batch of completions; add released ones."""
        if self._marked and uds:
            out_u: list[int] = []
            out_r: list[int] = []
            marked = self._marked
            for u, r in zip(uds, res):
                m = marked.pop(u, None)
                if m is None:
                    out_u.append(u)
                    out_r.append(r)
                    continue
                err, short, delay, opname, fd = m
                if err is not None:
                    self.log.append(("error", opname, fd, u, err.errno))
                    r = -err.errno
                elif short is not None and r > 0:
                    keep = r // 2 // 512 * 512 if short.short is True else min(r, int(short.short))
                    if keep < r:
                        self.log.append(("short", opname, fd, u, keep))
                        r = keep
                if delay is not None:
                    self._hold(u, r, delay, opname, fd)
                    continue
                out_u.append(u)
                out_r.append(r)
            uds, res = out_u, out_r
        if self._held and self._held[0][2]:
            uds = list(uds)
            res = list(res)
            while self._held and self._held[0][2]:
                u, r, _ = self._held.popleft()
                uds.append(u)
                res.append(r)
        if self._on_empty and not self.pending:
            fns, self._on_empty = self._on_empty, []
            for fn in fns:
                fn()
        return uds, res

    def _hold(self, ud: int, res: int, delay: float, opname: str, fd: int) -> None:
        entry = [ud, res, False]
        self._held.append(entry)
        self.log.append(("delay", opname, fd, ud, delay))

        timer = None

        def release() -> None:
            self._timers.discard(timer)
            if not entry[2]:
                entry[2] = True
                lib.ie_eventfd_signal(self.inner.eventfd)

        if self._call_later is None or delay == 0:
            release()
        else:
            timer = self._call_later(delay, release)
            self._timers.add(timer)
