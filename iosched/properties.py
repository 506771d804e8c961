"""Read and write Seastar's ``io_properties.yaml``.

The file describes each disk's calibrated limits, as written by ``iotune``::

    disks:
      - mountpoint: /var/lib/data        # or  mountpoints: [/a, /b]
        read_iops: 95000
        read_bandwidth: 900M             # bytes/s; k/M/G/T suffixes allowed
        write_iops: 22000
        write_bandwidth: 1400000000
        # optional: read_saturation_length, write_saturation_length,
        #           physical_block_size, duplex, rate_factor

Numbers may carry a k/K/M/G/T suffix, optionally followed by ``i``, ``iB`` or ``B``
("4k", "4KiB", "1G"). As in Seastar's ``parse_memory_size`` (src/util/conversions.cc),
the suffixes are powers of **1024**: k = K = 2**10, M = 2**20, G = 2**30, T = 2**40, also
for rates ("100k" IOPS means 102400 IOPS). The same rule reads iotune's size options
(``parse_size_text``; fio's job files have their own, see ioengine.bench.jobfile).

Where we are more lenient than Seastar (which only takes integers and k, K, M, G, T): a
plain float (``1.5e9``) or a decimal with a suffix (``1.5G``) is accepted on input, and a
suffix in either case (``1m``). We always write plain integers, so every file we write
loads in Seastar.

Where we are stricter: an unknown key in a disk entry is an error (Seastar ignores it),
because a misspelt optional key (``write_saturation_lenght``) would otherwise be dropped
silently.

Mapping a file to its disk by device id needs ``stat`` and so lives in the engine, not here.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = [
    "DiskProperties",
    "IoPropertiesError",
    "parse_size",
    "parse_size_text",
    "parse_io_properties",
    "load_io_properties",
    "dump_io_properties",
    "save_io_properties",
]


class IoPropertiesError(ValueError):
    """A malformed io_properties file or value.

    The message names the entry (index and mountpoint), the field, what was expected and
    what was found. The parts are also kept as attributes for programs.
    """

    def __init__(
        self,
        message: str,
        *,
        entry: int | None = None,
        mountpoint: str | None = None,
        field: str | None = None,
        source: str | None = None,
    ) -> None:
        where = []
        if source:
            where.append(source)
        if entry is not None:
            where.append(f"disks[{entry}]" + (f" (mountpoint {mountpoint!r})" if mountpoint else ""))
        if field:
            where.append(f"field {field!r}")
        super().__init__(": ".join(where + [message]) if where else message)
        self.reason = message
        self.entry = entry
        self.mountpoint = mountpoint
        self.field = field
        self.source = source


# powers of 1024, as Seastar's parse_memory_size; the suffix in either case
_SUFFIX_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}
_SIZE_RE = re.compile(
    r"^\s*([0-9]+(?:\.[0-9]*)?(?:e[-+]?[0-9]+)?)\s*([kmgt]?)(?:i|ib|b)?\s*$", re.IGNORECASE
)


def parse_size_text(text: str, *, fraction: bool = True) -> int | float:
    """A Seastar-style size or count written as text: a number with an optional k/M/G/T suffix
    (powers of 1024, either case), optionally followed by ``i``, ``iB`` or ``B``: "4096",
    "4k", "4KiB", "1M", "1.5G". An int when the value is integral, else a float (which may be
    inf for a huge exponent: the caller bounds it).

    ``fraction=False``: the number must be written as an integer, as Seastar's
    parse_memory_size takes it ("1.5M" and "1e3" are refused). ValueError if the text is not
    a size; the caller says which field or option it was.
    """
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    digits, suffix = m.groups()
    shift = _SUFFIX_SHIFT[suffix.lower()]
    if any(c in digits for c in ".eE"):
        if not fraction:
            raise ValueError(f"not an integer size: {text!r}")
        num = float(digits) * (1 << shift)
        return int(num) if num.is_integer() else num
    return int(digits) << shift


class _FieldError(Exception):
    """Internal: a field-level problem, re-raised with entry context."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _short(value: Any, limit: int = 80) -> str:
    """repr(value), cut to ``limit`` characters (a fuzzed or binary value can be huge)."""
    try:
        r = repr(value)
    except Exception:  # a repr that fails (e.g. an int with too many digits to print)
        r = f"<{type(value).__name__}>"
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _describe(value: Any) -> str:
    return f"{_short(value)} ({type(value).__name__})"


def parse_size(value: Any, *, field: str = "value", integer: bool = False) -> float:
    """Parse a positive number that may carry a k/M/G/T (×1024ⁿ) suffix.

    Returns an int when the value is integral, else a float. ``integer=True`` demands an
    integral result (lengths, block sizes). Raises ``_FieldError`` (wrapped by the loader).
    """
    if isinstance(value, bool):  # bool is an int subclass; `read_iops: yes` is a mistake
        raise _FieldError(field, f"expected a positive number, got {_describe(value)}")
    if isinstance(value, int):
        num: float = value
    elif isinstance(value, float):
        num = value
    elif isinstance(value, str):
        try:
            num = parse_size_text(value)
        except ValueError:
            raise _FieldError(
                field,
                f"expected a positive number with an optional k/M/G/T suffix (powers of 1024), "
                f"got {_short(value)}",
            ) from None
    else:
        raise _FieldError(field, f"expected a positive number, got {_describe(value)}")
    if not _finite(num) or num <= 0:
        raise _FieldError(field, f"expected a positive number below 2**64, got {_short(value)}")
    if isinstance(num, float) and num.is_integer():
        num = int(num)
    if integer and not isinstance(num, int):
        raise _FieldError(field, f"expected a positive integer, got {value!r}")
    return num


@dataclass(frozen=True, slots=True)
class DiskProperties:
    """One ``disks:`` entry: a disk's calibrated limits.

    Rates are as written in the file; ``rate_factor`` is kept separate (the scheduler
    refills its token bucket at ``rate_factor`` disk-seconds per second, which is the same
    as Seastar multiplying every rate by it).
    """

    mountpoints: tuple[str, ...]
    read_iops: float
    read_bandwidth: float  # bytes/s
    write_iops: float
    write_bandwidth: float  # bytes/s
    read_saturation_length: int | None = None  # bytes; larger reads are split
    write_saturation_length: int | None = None
    physical_block_size: int | None = None  # override for disks that lie about it
    duplex: bool | None = None  # None: not stated in the file
    rate_factor: float = 1.0
    #: IOPS measured at several request sizes (ioengine's iotune; not in Seastar's files):
    #: ((length, iops), ...) by length. With them, a request's cost is 1/iops at its size,
    #: interpolated between the sizes measured, instead of the two-point model from the
    #: iops and bandwidth above (seastar#2771: a 128 KiB write is charged a fraction of the
    #: disk time it takes when the bandwidth was measured with 1 MiB requests).
    read_iops_by_size: tuple[tuple[int, float], ...] | None = None
    write_iops_by_size: tuple[tuple[int, float], ...] | None = None

    def __post_init__(self) -> None:
        mps = self.mountpoints
        if isinstance(mps, str):  # a lone string would become a tuple of characters
            object.__setattr__(self, "mountpoints", (mps,))
        elif not isinstance(mps, tuple):
            object.__setattr__(self, "mountpoints", tuple(mps))
        try:
            _check_mountpoints(self.mountpoints)
            for name in ("read_iops", "read_bandwidth", "write_iops", "write_bandwidth", "rate_factor"):
                _check_positive_number(name, getattr(self, name))
            for name in ("read_saturation_length", "write_saturation_length", "physical_block_size"):
                v = getattr(self, name)
                if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                    raise _FieldError(name, f"expected a positive integer or None, got {_describe(v)}")
            if self.duplex is not None and not isinstance(self.duplex, bool):
                raise _FieldError("duplex", f"expected true or false, got {_describe(self.duplex)}")
            for name in ("read_iops_by_size", "write_iops_by_size"):
                v = getattr(self, name)
                if v is not None:
                    object.__setattr__(self, name, _check_iops_by_size(name, v))
        except _FieldError as e:
            raise IoPropertiesError(
                e.message, field=e.field, mountpoint=":".join(map(str, self.mountpoints)) or None
            ) from None

    @property
    def mountpoint(self) -> str:
        """Seastar's label for the queue: the mountpoints joined with ':'."""
        return ":".join(self.mountpoints)


def _finite(v: float) -> bool:
    """A number the scheduler can compute with: finite, and an int below 2**64 (math.isfinite
    would raise OverflowError on a huge int)."""
    if isinstance(v, int):
        return v < 1 << 64
    return math.isfinite(v) and v < 2.0 ** 64


def _check_positive_number(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not _finite(v) or v <= 0:
        raise _FieldError(name, f"expected a positive number below 2**64, got {_describe(v)}")


def _check_mountpoints(mps: tuple[Any, ...]) -> None:
    if not mps:
        raise _FieldError("mountpoints", "expected at least one mountpoint, got an empty list")
    for mp in mps:
        if not isinstance(mp, str) or not mp:
            raise _FieldError("mountpoints", f"expected a non-empty path string, got {_describe(mp)}")


def _check_iops_by_size(name: str, v: Any) -> tuple[tuple[int, float], ...]:
    """((length, iops), ...) sorted by length, from a mapping or pairs; each length a positive
    integer (k/M suffixes allowed), each iops a positive number, at least two sizes."""
    items = list(v.items()) if isinstance(v, dict) else v
    if not isinstance(items, (list, tuple)) or len(items) < 2:
        raise _FieldError(name, f"expected a mapping of request size to IOPS with at least two sizes, got "
                                f"{_describe(v)}")
    out: dict[int, float] = {}
    for pair in items:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise _FieldError(name, f"expected (size, iops) pairs, got {_describe(pair)}")
        length = parse_size(pair[0], field=name, integer=True)
        iops = parse_size(pair[1], field=name)
        if length in out:
            raise _FieldError(name, f"request size {length} is given twice")
        out[int(length)] = float(iops)
    return tuple(sorted(out.items()))


_REQUIRED = ("read_iops", "read_bandwidth", "write_iops", "write_bandwidth")
_OPTIONAL_LENGTHS = ("read_saturation_length", "write_saturation_length", "physical_block_size")
_BY_SIZE = ("read_iops_by_size", "write_iops_by_size")
_KNOWN_KEYS = frozenset(
    ("mountpoint", "mountpoints", *_REQUIRED, *_OPTIONAL_LENGTHS, "duplex", "rate_factor", *_BY_SIZE)
)


def _parse_entry(node: Any) -> DiskProperties:
    if not isinstance(node, dict):
        raise _FieldError("", f"expected a mapping of disk properties, got {_describe(node)}")
    if "mountpoints" in node:
        mps = node["mountpoints"]
        if isinstance(mps, str):
            mps = [mps]
        if not isinstance(mps, list):
            raise _FieldError("mountpoints", f"expected a list of paths, got {_describe(mps)}")
        _check_mountpoints(tuple(mps))
        if "mountpoint" in node:
            raise _FieldError("mountpoint", "give either 'mountpoint' or 'mountpoints', not both")
    elif "mountpoint" in node:
        mps = [node["mountpoint"]]
        _check_mountpoints(tuple(mps))
    else:
        raise _FieldError("mountpoint", "missing: expected 'mountpoint: <path>' or 'mountpoints: [<path>, ...]'")
    unknown = sorted(str(k) for k in node if k not in _KNOWN_KEYS)
    if unknown:
        raise _FieldError(unknown[0], f"unknown key; known keys are {', '.join(sorted(_KNOWN_KEYS))}")
    kw: dict[str, Any] = {"mountpoints": tuple(mps)}
    for name in _REQUIRED:
        if name not in node or node[name] is None:
            raise _FieldError(name, "missing: expected a positive number (k/M/G/T suffixes allowed)")
        kw[name] = parse_size(node[name], field=name)
    for name in _OPTIONAL_LENGTHS:
        if node.get(name) is not None:
            kw[name] = parse_size(node[name], field=name, integer=True)
    if node.get("duplex") is not None:
        if not isinstance(node["duplex"], bool):
            raise _FieldError("duplex", f"expected true or false, got {_describe(node['duplex'])}")
        kw["duplex"] = node["duplex"]
    if node.get("rate_factor") is not None:
        rf = node["rate_factor"]
        if isinstance(rf, str):
            try:
                rf = float(rf)
            except ValueError:
                raise _FieldError("rate_factor", f"expected a positive number, got {rf!r}") from None
        _check_positive_number("rate_factor", rf)
        kw["rate_factor"] = float(rf)
    for name in _BY_SIZE:
        if node.get(name) is not None:
            kw[name] = _check_iops_by_size(name, node[name])
    return DiskProperties(**kw)


def parse_io_properties(text: str, *, source: str | None = None) -> list[DiskProperties]:
    """Parse the YAML text of an io_properties file into its disks, in file order."""
    if isinstance(text, (bytes, bytearray)):
        text = _decode(bytes(text), source)
    elif not isinstance(text, str):
        raise TypeError(f"parse_io_properties: text must be str (YAML text), got {type(text).__name__}")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise IoPropertiesError(f"not valid YAML: {_yaml_problem(e)}", source=source) from None
    except RecursionError:
        raise IoPropertiesError("not valid YAML here: nested too deeply", source=source) from None
    if not isinstance(doc, dict):
        raise IoPropertiesError(
            f"expected a mapping with a 'disks:' list at the top level, got {_describe(doc)}",
            source=source,
        )
    for key in doc:
        if key != "disks":  # Seastar: "section {} currently unsupported"
            raise IoPropertiesError(f"unsupported top-level section {key!r}; only 'disks' is known", source=source)
    if "disks" not in doc:
        raise IoPropertiesError("missing the top-level 'disks:' list", source=source)
    entries = doc["disks"]
    if not isinstance(entries, list):
        raise IoPropertiesError(
            f"expected 'disks:' to be a list of entries, got {_describe(entries)}", field="disks", source=source
        )
    disks: list[DiskProperties] = []
    seen: dict[str, int] = {}
    for i, node in enumerate(entries):
        mp_hint = None
        if isinstance(node, dict):
            raw = node.get("mountpoints", node.get("mountpoint"))
            mp_hint = ":".join(map(str, raw)) if isinstance(raw, list) else (str(raw) if raw is not None else None)
        try:
            disk = _parse_entry(node)
        except _FieldError as e:
            raise IoPropertiesError(e.message, entry=i, mountpoint=mp_hint, field=e.field or None,
                                    source=source) from None
        except IoPropertiesError as e:  # from DiskProperties' own checks
            raise IoPropertiesError(e.reason, entry=i, mountpoint=mp_hint, field=e.field, source=source) from None
        for mp in disk.mountpoints:
            if mp in seen:
                raise IoPropertiesError(
                    f"mountpoint {mp!r} is already configured by disks[{seen[mp]}]",
                    entry=i, mountpoint=mp_hint, field="mountpoint", source=source,
                )
            seen[mp] = i
        disks.append(disk)
    return disks


def _yaml_problem(e: Exception) -> str:
    """A YAML error on one line: where (line, column) and what."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    if problem is None:
        text = " ".join(str(e).split())
        return text[:200]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())[:200]


def _decode(data: bytes, source: str | None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise IoPropertiesError(
            f"not UTF-8 text: byte {data[e.start]:#04x} at offset {e.start} cannot be decoded "
            f"(an io_properties file is YAML text)", source=source
        ) from None


def load_io_properties(source: str | os.PathLike[str]) -> list[DiskProperties]:
    """Load an io_properties.yaml file (path). For YAML text use :func:`parse_io_properties`.

    Raises IoPropertiesError (a ValueError naming the file) for a file that is not UTF-8 YAML
    text or not a valid io_properties document, OSError if it cannot be read.
    """
    path = os.fspath(source)
    with open(path, "rb") as f:
        data = f.read()
    return parse_io_properties(_decode(data, str(path)), source=str(path))


def _int_out(v: float) -> int:
    # Seastar's parser reads integers only; round rates to the nearest (at least 1).
    return max(1, int(round(v)))


def dump_io_properties(disks: Iterable[DiskProperties]) -> str:
    """The YAML text of an io_properties file, in the shape iotune writes (loads in Seastar)."""
    out = []
    for d in disks:
        e: dict[str, Any] = {}
        if len(d.mountpoints) == 1:
            e["mountpoint"] = d.mountpoints[0]
        else:
            e["mountpoints"] = list(d.mountpoints)
        e["read_iops"] = _int_out(d.read_iops)
        e["read_bandwidth"] = _int_out(d.read_bandwidth)
        e["write_iops"] = _int_out(d.write_iops)
        e["write_bandwidth"] = _int_out(d.write_bandwidth)
        for name in _OPTIONAL_LENGTHS:
            v = getattr(d, name)
            if v is not None:
                e[name] = int(v)
        if d.duplex is not None:
            e["duplex"] = d.duplex
        if d.rate_factor != 1.0:
            e["rate_factor"] = float(d.rate_factor)
        for name in _BY_SIZE:
            table = getattr(d, name)
            if table is not None:
                e[name] = {int(length): _int_out(iops) for length, iops in table}
        out.append(e)
    return yaml.safe_dump({"disks": out}, sort_keys=False, default_flow_style=False)


def save_io_properties(disks: Iterable[DiskProperties], path: str | os.PathLike[str]) -> None:
    """Write an io_properties file atomically (write to a temporary, then rename)."""
    text = dump_io_properties(disks)
    path = os.fspath(path)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
