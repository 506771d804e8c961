"""IoClass: a scheduling class (Seastar's io priority class / scheduling group for I/O).

Pick the class for a block of code with ``with cls:`` (a contextvar: tasks created inside
inherit it), or pass ``io_class=`` to File operations and stream options. Each disk's queue
gets its own state for the class on first use; shares and limits set here apply to all.
"""
from __future__ import annotations

import contextvars
import weakref
from typing import Any

from iosched import IoClassState, IoQueue, IoQueueConfig, check_shares

_current: contextvars.ContextVar[IoClass | None] = contextvars.ContextVar("ioengine_io_class", default=None)
# The tokens of the open ``with`` blocks, per context (each task has its own), innermost last.
_open_blocks: contextvars.ContextVar[tuple[contextvars.Token[IoClass | None], ...]] = contextvars.ContextVar(
    "ioengine_io_class_blocks", default=())

#: Shares of a class created without any: iosched's (IoQueueConfig.default_shares, Seastar's
#: default for a priority class), so a class and a disk queue's default class agree.
DEFAULT_SHARES = IoQueueConfig().default_shares


#: The live classes by name: a name means one class (a disk queue holds one state per name).
_by_name: weakref.WeakValueDictionary[str, IoClass] = weakref.WeakValueDictionary()


class IoClass:
    """A named class of I/O with ``shares`` of the disk, and optional bandwidth/IOPS caps.

    A name stands for one class: ``IoClass("fg")`` while a class "fg" exists returns that same
    class if the shares match (the default shares included), and raises ValueError if they do
    not (use ``update_shares`` to change a class's shares). A class used only by reactors that
    have closed (an earlier ``ioengine.run``) no longer holds its name.
    """

    __slots__ = ("_name", "_shares", "_bandwidth", "_iops", "_reactors", "__weakref__")

    def __new__(cls, name: str, shares: float = DEFAULT_SHARES) -> IoClass:
        _check_name(name)
        _check_shares(shares)
        existing = _by_name.get(name)
        if existing is not None and not _live(existing):
            existing = None  # used only by reactors now closed: the name is free again
        if existing is not None and type(existing) is cls:
            if existing._shares != float(shares):
                raise ValueError(f"io class {name!r} already exists with shares={existing._shares:g}, not "
                                 f"{float(shares):g}: use that class (IoClass({name!r}) returns it when the "
                                 f"shares match) or its update_shares()")
            return existing
        if existing is not None:
            raise ValueError(f"io class {name!r} already exists (a {type(existing).__name__})")
        return super().__new__(cls)

    def __init__(self, name: str, shares: float = DEFAULT_SHARES) -> None:
        if _by_name.get(name) is self:
            return  # the existing class, returned by __new__: keep its state
        self._name = name
        self._shares = float(shares)
        self._bandwidth: float | None = None
        self._iops: float | None = None
        # The reactors whose disk queues hold state for this class (weakly: they may go away).
        self._reactors: weakref.WeakSet[Any] = weakref.WeakSet()
        _by_name[name] = self

    def __reduce__(self) -> tuple[Any, ...]:
        return _restore, (type(self), self._name, self._shares, self._bandwidth, self._iops)

    @property
    def name(self) -> str:
        return self._name

    @property
    def shares(self) -> float:
        return self._shares

    @property
    def bandwidth_limit(self) -> float | None:
        return self._bandwidth

    @property
    def iops_limit(self) -> float | None:
        return self._iops

    def update_shares(self, shares: float) -> None:
        _check_shares(shares)
        self._shares = float(shares)
        for r in list(self._reactors):
            r.each_queue_of(self, lambda q: q.set_shares(self._name, self._shares))

    def update_bandwidth(self, bytes_per_second: float | None) -> None:
        """Cap the class's bytes per second on each disk (None lifts the cap).

        One cap for reads and writes together: their bytes count against the same budget."""
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError(f"bandwidth limit must be > 0 bytes/s or None, got {bytes_per_second}")
        self._bandwidth = bytes_per_second
        for r in list(self._reactors):
            r.each_queue_of(self, lambda q: q.update_bandwidth(self._name, bytes_per_second))

    def update_iops(self, iops: float | None) -> None:
        """Cap the class's requests per second on each disk (None lifts the cap)."""
        if iops is not None and iops <= 0:
            raise ValueError(f"IOPS limit must be > 0 or None, got {iops}")
        self._iops = iops
        for r in list(self._reactors):
            r.each_queue_of(self, lambda q: q.update_iops(self._name, iops))

    def rename(self, name: str) -> None:
        _check_name(name)
        if name == self._name:
            return
        other = _by_name.get(name)
        if other is not None and _live(other):
            raise ValueError(f"cannot rename io class {self._name!r} to {name!r}: a class {name!r} exists")
        for r in list(self._reactors):
            r.each_queue_of(self, lambda q: q.rename_class(self._name, name))
        if _by_name.get(self._name) is self:
            del _by_name[self._name]
        self._name = name
        _by_name[name] = self

    def attach(self, reactor: Any, queue: IoQueue) -> IoClassState:
        """This class's state in ``queue`` (a reactor's), created with the current shares and caps;
        the reactor's disk queues call it at the class's first I/O on that disk. Later changes to
        the shares and caps reach the queue through ``reactor.each_queue_of``."""
        state = queue.create_class(self._name, self._shares)
        if self._bandwidth is not None:
            queue.update_bandwidth(self._name, self._bandwidth)
        if self._iops is not None:
            queue.update_iops(self._name, self._iops)
        self._reactors.add(reactor)
        return state

    def __enter__(self) -> IoClass:
        _open_blocks.set(_open_blocks.get() + (_current.set(self),))
        return self

    def __exit__(self, *exc: object) -> None:
        blocks = _open_blocks.get()
        _open_blocks.set(blocks[:-1])
        _current.reset(blocks[-1])

    def __repr__(self) -> str:
        return f"IoClass({self._name!r}, shares={self._shares:g})"


def current_io_class() -> IoClass | None:
    """The class chosen by the innermost ``with io_class:`` of this task (None: the default)."""
    return _current.get()


def _restore(cls: type[IoClass], name: str, shares: float, bandwidth: float | None, iops: float | None) -> IoClass:
    """Unpickle: the class of that name in this process (made, with the caps, if there is none)."""
    c = cls(name, shares)
    if c._bandwidth is None and bandwidth is not None:
        c.update_bandwidth(bandwidth)
    if c._iops is None and iops is not None:
        c.update_iops(iops)
    return c


def _live(c: IoClass) -> bool:
    """A class holds its name while it is not yet used, or used by a reactor still open."""
    reactors = list(c._reactors)
    return not reactors or any(not getattr(r, "closed", False) for r in reactors)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name or name == "default":
        raise ValueError(f"an io class needs a non-empty name other than 'default', got {name!r}")


def _check_shares(shares: float) -> None:
    check_shares(shares)  # iosched's rule: a positive finite number (not a bool)
