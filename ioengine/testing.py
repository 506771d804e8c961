"""Helpers for testing code built on ioengine: inject I/O faults into a running reactor.

::

    from ioengine.backends.base import OP_READ
    from ioengine.testing import FaultRule, faults

    async def main():
        f = await ioengine.open_file_dma("data")
        buf = f.allocate_buffer(4096)
        async with faults([FaultRule(OP_READ, errno=errno.EIO, nth=1)]) as inj:
            try:
                await f.dma_read(0, buf)          # OSError(EIO, "dma_read failed with EIO: …", "data")
            except OSError as e:
                ...
        assert inj.log                             # what was injected

A FaultInjector (ioengine.backends.faults) wraps the reactor's backend: every request still goes
to the kernel (unless a rule says ``when="submit"``), and only the results the rules pick are
changed, delayed or cut short. Removing it never loses a completion: held ones are handed over
first, and the real backend is put back once the injector has nothing left in hand.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .backends.base import OP_FSYNC, OP_READ, OP_READV, OP_WRITE, OP_WRITEV
from .backends.faults import FaultInjector, FaultRule
from .reactor import Reactor, get_reactor


def inject_faults(reactor: Reactor | None = None, rules: Iterable[FaultRule] = (), seed: int = 0) -> FaultInjector:
    """Put a FaultInjector with ``rules`` between ``reactor`` (default: this thread's) and its backend.

    ``seed`` seeds the injector's RNG (rules with a ``probability``). Returns the injector (its
    ``rules`` may be changed while it runs; ``log`` lists every fault applied).
    """
    r = reactor if reactor is not None else get_reactor()
    if isinstance(r.backend, FaultInjector):
        raise RuntimeError("this reactor already has a FaultInjector: add rules to it (injector.rules)")
    if r.closed:
        raise RuntimeError("the reactor is closed")
    inj = FaultInjector(r.backend, rules, seed=seed, call_later=r.loop.call_later)
    r.backend = inj  # type: ignore[assignment]  # a Backend in all but name: it wraps one
    return inj


def remove_faults(reactor: Reactor | None = None) -> None:
    """Stop injecting: no new request is changed; completions held back are released now; the
    real backend is put back as soon as the injector has nothing left in hand (at once if
    nothing is held or marked)."""
    r = reactor if reactor is not None else get_reactor()
    inj = r.backend
    if not isinstance(inj, FaultInjector):
        return
    inj.rules = []
    inj.release_all()

    def swap_back() -> None:
        if r.backend is inj:
            r.backend = inj.inner

    inj.when_empty(swap_back)


class faults:
    """``with faults(rules):`` / ``async with faults(rules) as injector:`` on this thread's reactor
    (or ``reactor``). The async form also waits on exit until the injector holds nothing."""

    def __init__(self, rules: Iterable[FaultRule] = (), reactor: Reactor | None = None, seed: int = 0) -> None:
        self._rules = list(rules)
        self._reactor = reactor
        self._seed = seed
        self.injector: FaultInjector | None = None

    def __enter__(self) -> FaultInjector:
        if self._reactor is None:
            self._reactor = get_reactor()
        self.injector = inject_faults(self._reactor, self._rules, self._seed)
        return self.injector

    def __exit__(self, *exc: Any) -> None:
        remove_faults(self._reactor)

    async def __aenter__(self) -> FaultInjector:
        return self.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        remove_faults(self._reactor)
        inj = self.injector
        r = self._reactor
        if inj is None or r is None or r.backend is not inj:  # type: ignore[comparison-overlap]
            return
        done = r.loop.create_future()
        def wake() -> None:
            if not done.done():
                done.set_result(None)

        inj.when_empty(wake)
        await done


__all__ = ["FaultInjector", "FaultRule", "OP_FSYNC", "OP_READ", "OP_READV", "OP_WRITE", "OP_WRITEV", "faults",
           "inject_faults", "remove_faults"]
