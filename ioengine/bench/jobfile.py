"""Read fio job files (INI) into typed :class:`JobSpec` objects.

Users bring their existing fio job files to ``ioengine-bench run``; this module reads them
the way fio does, for the options ioengine can honour, and refuses every other option with
an error naming it and its line — silently ignoring e.g. ``verify=md5`` or ``rate=10m``
would run a different benchmark than the one the user wrote.

fio's rules followed here (checked against fio 3.33):

* ``[global]`` sets defaults for the job sections *below* it; a later ``[global]`` adds to
  (and overrides) the defaults for the jobs after it only.  Options given before any
  section are an error, as in fio.
* A ``;`` or ``#`` starts a comment, wherever it appears on the line (fio cuts the line
  there, even inside a file name).
* ``include FILE`` pulls in option lines (no sections) relative to the including file.
* ``${VAR}`` expands to the environment variable (empty if unset); ``$pagesize``,
  ``$ncpus`` and ``$mb_memory`` to the system's values.  Arithmetic is not supported.
* Sizes (see :func:`parse_size`): a suffix is case-insensitive; with the default
  ``kb_base=1024``, ``k``/``kb``/``ki`` mean 1024 and — fio's compatibility quirk — the
  full IEC spelling ``kib`` means 1000; with ``kb_base=1000`` it is the other way round.
  ``0x`` hex is accepted, fractions are refused (fio would silently truncate them).
* Times (see :func:`parse_time`): seconds by default; ``us``/``usec``, ``ms``/``msec``,
  ``s``/``sec``, ``m``/``min``, ``h``, ``d``.
* ``kb_base`` applies to the whole section whatever its position (fio parses it first).
* ``bs=R,W[,T]``: an empty field keeps the inherited value; the trim size is accepted and
  ignored (ioengine does not trim).
* When both ``rwmixread`` and ``rwmixwrite`` are given, the later one wins.

Jobs in one file run concurrently unless separated by ``stonewall`` (recorded in
:attr:`JobSpec.stonewall`); running them is the harness's business, not this module's.
It imports nothing from ``ioengine`` so it stays importable on its own.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "JobFileError",
    "JobSpec",
    "SUPPORTED_OPTIONS",
    "SourceLine",
    "parse_job_file",
    "parse_job_text",
    "parse_size",
    "parse_time",
    "to_fio_args",
]

_RW_VALUES = {
    "read": "read",
    "write": "write",
    "randread": "randread",
    "randwrite": "randwrite",
    "rw": "rw",
    "readwrite": "rw",
    "randrw": "randrw",
}
_TRIM_RW = ("trim", "randtrim", "trimwrite", "randtrimwrite")


class JobFileError(ValueError):
    """A job file ioengine cannot run as written.

    The message starts with ``FILE, line N:`` and quotes the line; ``source``, ``line`` and
    ``option`` carry the same facts for programs.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        text: str | None = None,
        option: str | None = None,
    ) -> None:
        where = source or "<job file>"
        if line is not None:
            where += f", line {line}"
        full = f"{where}: {message}"
        if text is not None and line is not None:
            full += f"\n    {line} | {text}"
        super().__init__(full)
        self.source = source
        self.line = line
        self.option = option
        self.detail = message


@dataclass(frozen=True, slots=True)
class SourceLine:
    """Where something came from: file (or ``<string>``), 1-based line, the line as written."""

    source: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.source}, line {self.line}"

    def error(self, message: str, option: str | None = None) -> JobFileError:
        return JobFileError(message, source=self.source, line=self.line, text=self.text,
                            option=option)


@dataclass(slots=True)
class JobSpec:
    """One job of a fio job file, with fio's defaults for everything not set.

    Sizes are in bytes, times in seconds.  ``sources`` maps each option that was set
    (canonical name, e.g. ``rw`` even if the file said ``readwrite``) to the line that set
    it — possibly in a ``[global]`` section — so later errors can point at the file.
    """

    name: str
    section: SourceLine  # the [name] header
    description: str | None = None
    rw: str = "read"  # read, write, randread, randwrite, rw (sequential mix), randrw
    rwmixread: int = 50  # percent of reads in rw/randrw
    bs: int = 4096  # read block size
    bs_write: int = 4096  # write block size (equals bs unless "bs=R,W")
    iodepth: int = 1
    size: int | None = None  # bytes per job (fio: per clone)
    size_percent: float | None = None  # size=N% of the file / device
    offset: int = 0
    offset_percent: float | None = None
    filename: str | None = None  # None: fio makes one up (see file_path)
    directory: str | None = None
    runtime_s: float | None = None
    time_based: bool = False
    ramp_time_s: float = 0.0
    numjobs: int = 1
    direct: bool = False
    ioengine: str | None = None  # fio's engine; recorded for to_fio_args, not used by ioengine
    group_reporting: bool = False
    stonewall: bool = False
    randrepeat: bool = True
    norandommap: bool = False
    thread: bool = False
    kb_base: int = 1024
    sources: dict[str, SourceLine] = field(default_factory=dict)

    @property
    def is_random(self) -> bool:
        return self.rw.startswith("rand")

    @property
    def is_mixed(self) -> bool:
        return self.rw in ("rw", "randrw")

    @property
    def read_fraction(self) -> float:
        """Share of I/Os that are reads: 1.0, 0.0, or rwmixread/100 for mixed workloads."""
        if self.is_mixed:
            return self.rwmixread / 100.0
        return 1.0 if self.rw in ("read", "randread") else 0.0

    @property
    def does_reads(self) -> bool:
        return self.read_fraction > 0.0

    @property
    def does_writes(self) -> bool:
        return self.read_fraction < 1.0

    def file_path(self, clone: int = 0) -> str:
        """The file this job (clone number ``clone``) uses, as fio would name it.

        ``filename`` if given (one file shared by all clones), else fio's default
        ``NAME.CLONE.0``; relative names are placed in ``directory`` (default: cwd).
        """
        name = self.filename if self.filename is not None else f"{self.name}.{clone}.0"
        if os.path.isabs(name) or self.directory is None:
            return name
        return os.path.join(self.directory, name)

    def resolve_size(self, file_size: int) -> int:
        """Bytes this job covers given the file's size (handles ``size=N%`` and ``offset``)."""
        start = self.resolve_offset(file_size)
        if self.size is not None:
            return self.size
        if self.size_percent is not None:
            size = file_size * self.size_percent // 100
        else:
            size = file_size - start
        return int(max(0, min(size, file_size - start)))

    def resolve_offset(self, file_size: int) -> int:
        if self.offset_percent is None:
            return self.offset
        # fio aligns a percentage offset down to the minimum block size.
        raw = int(file_size * self.offset_percent // 100)
        align = min(self.bs, self.bs_write)
        return raw - raw % align

    def to_fio_args(self, *, ioengine: str | None = None) -> list[str]:
        """fio command-line arguments that run this same job (``--name=...`` first).

        Values are written in bytes / microseconds so no suffix or kb_base rule can change
        their meaning.  ``ioengine`` overrides the engine recorded from the file (pass e.g.
        ``"io_uring"`` or ``"libaio"`` so iodepth means the same as in ioengine).
        """
        args = [f"--name={self.name}"]
        if self.description is not None:
            args.append(f"--description={self.description}")
        args.append(f"--rw={self.rw}")
        if self.is_mixed:
            args.append(f"--rwmixread={self.rwmixread}")
        bs = str(self.bs) if self.bs == self.bs_write else f"{self.bs},{self.bs_write}"
        args.append(f"--bs={bs}")
        args.append(f"--iodepth={self.iodepth}")
        engine = ioengine if ioengine is not None else self.ioengine
        if engine is not None:
            args.append(f"--ioengine={engine}")
        args.append(f"--direct={int(self.direct)}")
        if self.numjobs != 1:
            args.append(f"--numjobs={self.numjobs}")
        if self.size is not None:
            args.append(f"--size={self.size}")
        elif self.size_percent is not None:
            args.append(f"--size={_fmt_percent(self.size_percent)}")
        if self.offset_percent is not None:
            args.append(f"--offset={_fmt_percent(self.offset_percent)}")
        elif self.offset:
            args.append(f"--offset={self.offset}")
        if self.filename is not None:
            args.append(f"--filename={_escape_colons(self.filename)}")
        if self.directory is not None:
            args.append(f"--directory={_escape_colons(self.directory)}")
        if self.runtime_s is not None:
            args.append(f"--runtime={_fmt_time(self.runtime_s)}")
        if self.time_based:
            args.append("--time_based")
        if self.ramp_time_s:
            args.append(f"--ramp_time={_fmt_time(self.ramp_time_s)}")
        if not self.randrepeat:
            args.append("--randrepeat=0")
        if self.norandommap:
            args.append("--norandommap")
        if self.thread:
            args.append("--thread")
        if self.group_reporting:
            args.append("--group_reporting")
        if self.stonewall:
            args.append("--stonewall")
        return args


def to_fio_args(jobs: Sequence[JobSpec], *, ioengine: str | None = None) -> list[str]:
    """fio arguments running all ``jobs`` as the job file would (each starts at ``--name``)."""
    args: list[str] = []
    for job in jobs:
        args.extend(job.to_fio_args(ioengine=ioengine))
    return args


def _fmt_percent(p: float) -> str:
    return f"{p:g}%"


def _fmt_time(seconds: float) -> str:
    us = round(seconds * 1_000_000)
    if us % 1_000_000 == 0:
        return str(us // 1_000_000)  # fio's default unit is seconds
    if us % 1000 == 0:
        return f"{us // 1000}ms"
    return f"{us}us"


def _escape_colons(path: str) -> str:
    # fio splits filename/directory on ':' (several files); a literal colon is written '\:'.
    return path.replace(":", "\\:")


# --------------------------------------------------------------------------------------------
# Value parsers (public: the harness parses its own command-line sizes with them too)

_SIZE_RE = re.compile(r"(\d+)\s*([a-zA-Z]*)")
_SIZE_POW = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_size(text: str, kb_base: int = 1024) -> int:
    """Bytes for a fio size such as ``4k``, ``128KiB``, ``1g``, ``0x1000`` or ``4096b``.

    Follows fio: the suffix is case-insensitive; ``k``/``kb``/``ki`` (and m/g/t/p alike) are
    powers of ``kb_base``; the full IEC spelling ``kib`` uses the *other* base (1000 when
    kb_base=1024 — fio's compatibility mode — and 1024 when kb_base=1000).
    Raises :class:`ValueError` describing the accepted forms.
    """
    s = text.strip()
    if kb_base not in (1000, 1024):
        raise ValueError(f"kb_base must be 1000 or 1024, not {kb_base}")
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", s):
        return int(s, 16)
    if re.fullmatch(r"\d*\.\d+\s*[a-zA-Z]*", s):
        raise ValueError(
            f"fractional size {text!r} is not supported (fio would silently truncate it); "
            f"use a smaller unit, e.g. 1536k instead of 1.5m"
        )
    m = _SIZE_RE.fullmatch(s)
    if not m:
        raise ValueError(
            f"expected a size like 4096, 4k, 128KiB, 1m, 2g or 0x1000, got {text!r}"
        )
    number, suffix = int(m.group(1)), m.group(2).lower()
    if suffix in ("", "b"):
        return number
    sm = re.fullmatch(r"([kmgtp])(i?)(b?)", suffix)
    if not sm:
        raise ValueError(
            f"unknown size suffix {m.group(2)!r} in {text!r}: expected k, m, g, t or p, "
            f"optionally followed by b, i or ib (e.g. 4k, 4kb, 4KiB)"
        )
    base = kb_base
    if sm.group(2) and sm.group(3):  # "kib": fio's "opposite" unit
        base = 1000 if kb_base == 1024 else 1024
    return number * base ** _SIZE_POW[sm.group(1)]


_TIME_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0,
    "ms": 1e-3, "msec": 1e-3,
    "us": 1e-6, "usec": 1e-6,
    "m": 60.0, "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def parse_time(text: str) -> float:
    """Seconds for a fio time such as ``30``, ``1500ms``, ``2m``, ``1h`` (default unit: s).

    Raises :class:`ValueError` describing the accepted forms.
    """
    s = text.strip()
    if re.fullmatch(r"\d*\.\d+\s*[a-zA-Z]*", s):
        raise ValueError(
            f"fractional time {text!r} is not supported (fio would silently truncate it); "
            f"use a smaller unit, e.g. 1500ms instead of 1.5s"
        )
    m = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", s)
    if not m or m.group(2).lower() not in _TIME_UNITS:
        raise ValueError(
            f"expected a time like 30 (seconds), 30s, 1500ms, 200us, 5m, 1h, got {text!r}"
        )
    us = int(m.group(1)) * round(_TIME_UNITS[m.group(2).lower()] * 1_000_000)
    return us / 1_000_000


# --------------------------------------------------------------------------------------------
# Options

_Handler = Callable[[JobSpec, "str | None", SourceLine, str], None]


def _need_value(value: str | None, src: SourceLine, option: str, form: str) -> str:
    if value is None or value == "":
        raise src.error(f"option '{option}' needs a value ({form})", option)
    return value


def _int_value(value: str | None, src: SourceLine, option: str, lo: int, hi: int | None) -> int:
    form = f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}"
    v = _need_value(value, src, option, f"{option}=N, N {form}")
    if not re.fullmatch(r"\d+", v):
        raise src.error(f"bad value {v!r} for '{option}': expected {form}{_arith_hint(v)}", option)
    n = int(v)
    if n < lo or (hi is not None and n > hi):
        raise src.error(f"value {n} for '{option}' is out of range: expected {form}", option)
    return n


def _bool_value(value: str | None, src: SourceLine, option: str, *, flag: bool) -> bool:
    if value is None:
        if flag:  # bare "time_based" etc. means on
            return True
        raise src.error(f"option '{option}' needs a value: {option}=0 or {option}=1", option)
    if value not in ("0", "1"):
        form = f"'{option}' alone, or {option}=0 / {option}=1" if flag else f"{option}=0 or {option}=1"
        raise src.error(f"bad value {value!r} for '{option}': expected {form}", option)
    return value == "1"


def _arith_hint(v: str) -> str:
    # fio evaluates "(4*1024)" or "8*$mb_memory"; ioengine does not, so say so plainly.
    if re.search(r"[()*+/^]", v):
        return " (arithmetic expressions are not supported by ioengine: write the number)"
    return ""


def _size_value(spec: JobSpec, v: str, src: SourceLine, option: str) -> int:
    try:
        return parse_size(v, spec.kb_base)
    except ValueError as exc:
        raise src.error(f"bad value for '{option}': {exc}{_arith_hint(v)}", option) from None


def _percent(v: str, src: SourceLine, option: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", v)
    if not m:
        return None
    p = float(m.group(1))
    if not 0.0 < p <= 100.0:
        raise src.error(f"bad value {v!r} for '{option}': a percentage must be in 1..100", option)
    return p


def _opt_rw(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "read, write, randread, randwrite, rw or randrw")
    base, colon, modifier = v.partition(":")
    if base in _TRIM_RW:
        raise src.error(f"{option}={base} is not supported by ioengine (it does not issue trims)",
                        option)
    if base not in _RW_VALUES:
        raise src.error(
            f"bad value {v!r} for '{option}': expected read, write, randread, randwrite, "
            f"rw (or readwrite) or randrw",
            option,
        )
    if colon:
        raise src.error(
            f"{option}={v}: the ':{modifier}' offset modifier (rw_sequencer) is not supported "
            f"by ioengine; remove ':{modifier}'",
            option,
        )
    spec.rw = _RW_VALUES[base]


def _opt_rwmixread(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    spec.rwmixread = _int_value(value, src, option, 0, 100)


def _opt_rwmixwrite(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    spec.rwmixread = 100 - _int_value(value, src, option, 0, 100)


def _opt_bs(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "bs=4k, or bs=READ,WRITE such as bs=4k,64k")
    if "-" in v or ":" in v:
        raise src.error(
            f"bad value {v!r} for '{option}': block size ranges are not supported by ioengine; "
            f"give one size, or READ,WRITE sizes such as bs=4k,64k",
            option,
        )
    parts = [p.strip() for p in v.split(",")]
    if len(parts) > 3:
        raise src.error(f"bad value {v!r} for '{option}': expected at most READ,WRITE,TRIM", option)
    sizes: list[int | None] = []
    for p in parts:
        if p == "":
            sizes.append(None)  # empty field: keep the inherited value, as fio does
            continue
        n = _size_value(spec, p, src, option)
        if n <= 0:
            raise src.error(f"bad value {v!r} for '{option}': block size must be > 0", option)
        sizes.append(n)
    # fio: a value not followed by a comma also applies to the directions after it.
    read = sizes[0]
    write = sizes[1] if len(sizes) > 1 else read
    if read is not None:
        spec.bs = read
    if write is not None:
        spec.bs_write = write
    # The trim size (third field) is accepted and ignored: ioengine never trims.


def _opt_iodepth(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    spec.iodepth = _int_value(value, src, option, 1, 65536)


def _opt_numjobs(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    spec.numjobs = _int_value(value, src, option, 1, None)


def _opt_size(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "a size such as 1g, or a percentage such as 50%")
    p = _percent(v, src, option)
    if p is not None:
        spec.size, spec.size_percent = None, p
        return
    n = _size_value(spec, v, src, option)
    if n <= 0:
        raise src.error(f"bad value {v!r} for '{option}': size must be > 0", option)
    spec.size, spec.size_percent = n, None


def _opt_offset(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "a size such as 1g, or a percentage such as 50%")
    p = _percent(v, src, option)
    if p is not None:
        spec.offset, spec.offset_percent = 0, p
        return
    spec.offset, spec.offset_percent = _size_value(spec, v, src, option), None


def _opt_filename(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "a path")
    if re.search(r"(?<!\\):", v):
        raise src.error(
            f"{option}={v}: several files separated by ':' are not supported by ioengine; "
            f"give one file (write a literal colon as '\\:')",
            option,
        )
    spec.filename = v.replace("\\:", ":")


def _opt_directory(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "a directory path")
    if re.search(r"(?<!\\):", v):
        raise src.error(
            f"{option}={v}: several directories separated by ':' are not supported by ioengine; "
            f"give one (write a literal colon as '\\:')",
            option,
        )
    spec.directory = v.replace("\\:", ":")


def _time_value(value: str | None, src: SourceLine, option: str) -> float:
    v = _need_value(value, src, option, "a time such as 30, 30s, 1500ms or 2m")
    try:
        return parse_time(v)
    except ValueError as exc:
        raise src.error(f"bad value for '{option}': {exc}", option) from None


def _opt_runtime(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    t = _time_value(value, src, option)
    spec.runtime_s = t if t > 0 else None  # fio: runtime=0 means no limit


def _opt_ramp_time(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    spec.ramp_time_s = _time_value(value, src, option)


def _opt_kb_base(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "1000 or 1024")
    if v not in ("1000", "1024"):
        raise src.error(f"bad value {v!r} for '{option}': expected 1000 or 1024", option)
    spec.kb_base = int(v)


def _str_setter(attr: str) -> _Handler:
    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        setattr(spec, attr, _need_value(value, src, option, "a string"))

    return handler


def _flag_setter(attr: str, *, flag: bool) -> _Handler:
    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        setattr(spec, attr, _bool_value(value, src, option, flag=flag))

    return handler


def _opt_name(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    spec.name = _need_value(value, src, option, "a job name")


# canonical name -> handler.  Order of insertion is the order shown in error messages.
_HANDLERS: dict[str, _Handler] = {
    "name": _opt_name,
    "description": _str_setter("description"),
    "rw": _opt_rw,
    "rwmixread": _opt_rwmixread,
    "rwmixwrite": _opt_rwmixwrite,
    "bs": _opt_bs,
    "iodepth": _opt_iodepth,
    "size": _opt_size,
    "offset": _opt_offset,
    "filename": _opt_filename,
    "directory": _opt_directory,
    "runtime": _opt_runtime,
    "time_based": _flag_setter("time_based", flag=True),
    "ramp_time": _opt_ramp_time,
    "numjobs": _opt_numjobs,
    "direct": _flag_setter("direct", flag=False),
    "ioengine": _str_setter("ioengine"),
    "group_reporting": _flag_setter("group_reporting", flag=True),
    "stonewall": _flag_setter("stonewall", flag=True),
    "randrepeat": _flag_setter("randrepeat", flag=False),
    "norandommap": _flag_setter("norandommap", flag=True),
    "thread": _flag_setter("thread", flag=True),
    "kb_base": _opt_kb_base,
}
_ALIASES = {
    "readwrite": "rw",
    "blocksize": "bs",
    "wait_for_previous": "stonewall",
}
#: Every option name ioengine accepts in a job file (fio's aliases included).
SUPPORTED_OPTIONS: tuple[str, ...] = tuple(sorted([*_HANDLERS, *_ALIASES]))
# Which source key an option records under (rwmixwrite is stored as rwmixread).
_RECORD_AS = {"rwmixwrite": "rwmixread"}


# --------------------------------------------------------------------------------------------
# The INI reader


@dataclass(slots=True)
class _Section:
    name: str
    header: SourceLine
    options: list[tuple[str, str | None, SourceLine]] = field(default_factory=list)

    @property
    def is_global(self) -> bool:
        return self.name == "global"


def parse_job_file(
    path_or_text: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
) -> list[JobSpec]:
    """Parse a fio job file given by path — or, if a ``str`` containing a newline, its text.

    Returns one :class:`JobSpec` per job section, in file order (``numjobs`` is a field,
    not expanded).  Raises :class:`JobFileError` (a ``ValueError``) for anything ioengine
    cannot run as written, and for unreadable files.
    """
    if isinstance(path_or_text, str) and "\n" in path_or_text:
        return parse_job_text(path_or_text, "<string>", env=env)
    path = Path(path_or_text)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobFileError(f"cannot read job file: {exc.strerror or exc}", source=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise JobFileError(f"job file is not UTF-8 text ({exc.reason})", source=str(path)) from exc
    return parse_job_text(text, str(path), env=env, base_dir=path.parent)


def parse_job_text(
    text: str,
    source_name: str = "<string>",
    *,
    env: Mapping[str, str] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
) -> list[JobSpec]:
    """Parse the text of a fio job file; ``source_name`` names it in error messages.

    ``env`` is used for ``${VAR}`` expansion (default: ``os.environ``); ``base_dir`` is where
    relative ``include`` files are looked up (default: the current directory).
    """
    environ = os.environ if env is None else env
    sections: list[_Section] = []
    base = Path(base_dir) if base_dir is not None else Path(".")
    _read_lines(text, source_name, base, environ, sections, include_stack=(source_name,))

    # Like fio: one evolving set of defaults, changed by each [global] in turn; each job
    # starts from a copy of the defaults as they stand at its header.
    defaults = JobSpec(name="global", section=SourceLine(source_name, 0, ""))
    jobs: list[JobSpec] = []
    for sec in sections:
        if sec.is_global:
            _apply(defaults, sec, in_global=True)
            continue
        job = copy.deepcopy(defaults)
        job.name = sec.name
        job.section = sec.header
        _apply(job, sec, in_global=False)
        _check_job(job)
        jobs.append(job)
    return jobs


def _apply(spec: JobSpec, sec: _Section, *, in_global: bool) -> None:
    # fio parses kb_base before the section's other options, whatever its position.
    ordered = sorted(sec.options, key=lambda o: 0 if _ALIASES.get(o[0], o[0]) == "kb_base" else 1)
    for option, value, src in ordered:
        canonical = _ALIASES.get(option, option)
        handler = _HANDLERS.get(canonical)
        if handler is None:
            raise src.error(
                f"option '{option}' is not supported by ioengine "
                f"(supported: {', '.join(SUPPORTED_OPTIONS)})",
                option,
            )
        if canonical == "name" and in_global:
            raise src.error(
                "option 'name' in [global] is not supported: name the job sections instead",
                option,
            )
        handler(spec, value, src, option)
        spec.sources[_RECORD_AS.get(canonical, canonical)] = src


def _check_job(job: JobSpec) -> None:
    if job.time_based and job.runtime_s is None:
        src = job.sources.get("time_based", job.section)
        raise src.error(
            f"job '{job.name}': time_based is set but runtime is not (fio refuses this too); "
            f"add e.g. runtime=10",
            "time_based",
        )


def _read_lines(
    text: str,
    source: str,
    base_dir: Path,
    environ: Mapping[str, str],
    sections: list[_Section],
    *,
    include_stack: tuple[str, ...],
    in_include: bool = False,
) -> None:
    for lineno, raw in enumerate(text.splitlines(), start=1):
        shown = raw.strip()
        # fio cuts the line at the first ';' or '#', wherever it is.
        line = re.split(r"[;#]", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        src = SourceLine(source, lineno, shown)
        if line.startswith("["):
            if in_include:
                raise src.error("an included file may not contain [sections] (fio's rule)")
            if not line.endswith("]") or len(line) < 3:
                raise src.error(f"malformed section header {line!r}: expected [jobname] or [global]")
            name = line[1:-1].strip()
            if not name:
                raise src.error("empty section name: expected [jobname] or [global]")
            sections.append(_Section(name, src))
            continue
        inc = re.fullmatch(r"include\s+(.+)", line)
        if inc:
            _include(inc.group(1).strip(), src, base_dir, environ, sections, include_stack)
            continue
        if not sections:
            raise src.error(
                f"option line {line!r} comes before any [section]: put it under [global] "
                f"or a [jobname] header"
            )
        key, eq, value = line.partition("=")
        key = key.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise src.error(f"malformed line {line!r}: expected option=value, option, or [section]")
        val: str | None = _expand(value.strip(), environ) if eq else None
        sections[-1].options.append((key, val, src))


def _include(
    name: str,
    src: SourceLine,
    base_dir: Path,
    environ: Mapping[str, str],
    sections: list[_Section],
    include_stack: tuple[str, ...],
) -> None:
    path = Path(_expand(name, environ))
    if not path.is_absolute():
        path = base_dir / path
    if str(path) in include_stack:
        raise src.error(f"include loop: {path} includes itself")
    if not sections:
        raise src.error("include before any [section]: put it under [global] or a [jobname]")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise src.error(f"cannot read included file {str(path)!r}: {exc.strerror or exc}") from exc
    _read_lines(text, str(path), path.parent, environ, sections,
                include_stack=(*include_stack, str(path)), in_include=True)


def _expand(value: str, environ: Mapping[str, str]) -> str:
    # ${VAR}: environment (empty if unset, as fio does); $pagesize etc.: fio's keywords.
    value = re.sub(r"\$\{([^}]*)\}", lambda m: environ.get(m.group(1), ""), value)
    return re.sub(r"\$(pagesize|mb_memory|ncpus)\b", lambda m: str(_reserved(m.group(1))), value)


def _reserved(name: str) -> int:
    if name == "pagesize":
        return os.sysconf("SC_PAGESIZE")
    if name == "ncpus":
        return os.cpu_count() or 1
    return os.sysconf("SC_PAGESIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
