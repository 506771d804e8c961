"""The kernel's per-request I/O priority (ioprio(7)): a request's class and level, as the block
layer's schedulers (mq-deadline, bfq) read them. Not an IoClass: an IoClass is ioengine's own
share of the disk, decided before the request reaches the kernel; an ioprio travels with the
request (io_uring's ``sqe->ioprio``, linux-aio's ``aio_reqprio``, the thread pool's
``ioprio_set`` on its worker) and orders it inside the kernel."""
from __future__ import annotations

import enum


class IoPrioClass(enum.IntEnum):
    """ioprio(7)'s classes; ``NONE`` leaves the request at its task's priority."""

    NONE = 0
    RT = 1
    BE = 2
    IDLE = 3


#: Levels per class (0 highest, 7 lowest), hints (command duration limits; Linux 6.10+).
LEVELS = 8
HINTS = 1 << 10
_CLASS_SHIFT = 13
_HINT_SHIFT = 3


def ioprio_value(cls: IoPrioClass | int, level: int = 0, hint: int = 0) -> int:
    """The 16-bit ioprio of ``cls``, ``level`` and ``hint`` (IOPRIO_PRIO_VALUE_HINT)."""
    for name, v, limit in (("class", cls, 4), ("level", level, LEVELS), ("hint", hint, HINTS)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"ioprio {name} must be an int, got {type(v).__name__} {v!r}")
        if not 0 <= v < limit:
            raise ValueError(f"ioprio {name} {v} is outside [0, {limit - 1}]")
    return (int(cls) << _CLASS_SHIFT) | (hint << _HINT_SHIFT) | level


def ioprio_class(value: int) -> IoPrioClass:
    """The class of an ioprio value."""
    return IoPrioClass(value >> _CLASS_SHIFT)


def check_ioprio(op: str, value: object) -> int:
    """A request's ioprio as the record carries it: an int in [0, 2**16) of one of ioprio(7)'s
    classes (the kernel would fail the request with EINVAL otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{op}: ioprio must be an int (see ioengine.ioprio_value), got {type(value).__name__} "
                        f"{value!r}")
    if not 0 <= value < 4 << _CLASS_SHIFT:
        raise ValueError(f"{op}: ioprio {value:#x} is not a priority of class NONE, RT, BE or IDLE "
                         f"(expected an int in [0, {(4 << _CLASS_SHIFT) - 1:#x}]; see ioengine.ioprio_value)")
    return value
