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
* ``bs=R,W[,T]``: an empty field keeps the inherited value; the trim size defaults to the write's.
* ``rw=...:N``: sequential patterns add N bytes to each next offset (negative: backwards), random
  ones take a new random offset every N I/Os (``rw_sequencer``).
* ``threads``, ``block``, ``numruns``, ``dir`` are fio's tiobench profile options: fio accepts them in
  any job file and they change nothing (``threads=1`` does not mean ``thread``); so here.
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

from ..ioprio import IoPrioClass, ioprio_value

__all__ = [
    "ASYNC_ENGINES",
    "JobFileError",
    "JobSpec",
    "SUPPORTED_OPTIONS",
    "SYNC_ENGINES",
    "SourceLine",
    "numa_node_ids",
    "options_help",
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
    "trim": "trim",
    "randtrim": "randtrim",
    "trimwrite": "trimwrite",
    "randtrimwrite": "randtrimwrite",
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
        #: Every problem found (this one alone unless :meth:`combine` made it).
        self.errors: list[JobFileError] = [self]

    @classmethod
    def combine(cls, errors: Sequence[JobFileError]) -> JobFileError:
        """One error reporting all of ``errors`` (the first one's attributes, each one's line)."""
        if len(errors) == 1:
            return errors[0]
        first = errors[0]
        unsupported = sum(1 for e in errors if e.option is not None)
        head = (f"{len(errors)} problems ({unsupported} with options) ioengine cannot run as written:")
        body = "\n".join(str(e) for e in errors)
        err = cls(head + "\n" + body, source=first.source, option=first.option)
        err.line, err.detail, err.errors = first.line, first.detail, list(errors)
        return err


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
    bs_trim: int = 4096  # trim block size ("bs=R,W,T"; else the write size)
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
    direct: bool = False  # fio's default: buffered, through the page cache
    invalidate: bool = True  # drop the file's cached pages before a buffered job starts (fio's default)
    fadvise_hint: str = "1"  # posix_fadvise at open: "1" by the pattern (fio's default), "0" none, or the advice
    ioengine: str | None = None  # one of SYNC_ENGINES or ASYNC_ENGINES (None: fio's default psync)
    group_reporting: bool = False
    stonewall: bool = False
    randrepeat: bool = True
    norandommap: bool = False
    thread: bool = False
    kb_base: int = 1024
    # -- engine: fio's ioengine decides how many I/Os a job keeps in flight
    # (the sync family: one; libaio/io_uring/posixaio: iodepth).  None: fio's default, psync.
    # -- block sizes: (read, write) pairs; bsrange/bssplit override bs when set.
    bs_range: tuple[tuple[int, int], tuple[int, int]] | None = None
    bssplit: tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]] | None = None
    blockalign: tuple[int, int] | None = None  # None: the minimum block size of the direction
    # -- random offsets
    random_distribution: str = "random"  # random, zipf, pareto, normal, zoned, zoned_abs
    random_params: tuple[float, ...] = ()  # zipf: (theta,), pareto: (h,), normal: (sigma%,)
    random_zones: tuple[tuple[float, float], ...] = ()  # zoned: (access %, range % or bytes)
    randseed: int = 0x89  # fio's default seed
    allrandrepeat: bool = False
    # -- files
    filesize: int | None = None  # per file (default: size / nrfiles)
    nrfiles: int = 1
    filename_format: str = "$jobname.$jobnum.$filenum"
    openfiles: int | None = None
    file_service_type: str = "roundrobin"  # roundrobin, sequential, random
    file_service_nr: int = 1  # I/Os on one file before switching
    create_on_open: bool = False
    unlink: bool = False
    offset_increment: int = 0
    # -- how much
    io_size: int | None = None  # bytes to transfer (default: size)
    number_ios: int | None = None
    loops: int = 1
    # -- pacing: (read, write) bytes/s or IOPS; 0 = no limit
    rate: tuple[int, int] = (0, 0)
    rate_iops: tuple[int, int] = (0, 0)
    rate_min: tuple[int, int] = (0, 0)
    rate_iops_min: tuple[int, int] = (0, 0)
    rate_process: str = "linear"  # linear or poisson
    thinktime_s: float = 0.0
    thinktime_blocks: int = 1
    startdelay_s: float = 0.0
    # -- syncs
    fsync: int = 0  # fsync after this many writes (0: never)
    fdatasync: int = 0
    end_fsync: bool = False
    fsync_on_close: bool = False
    # -- write buffer contents
    zero_buffers: bool = False
    refill_buffers: bool | None = None  # None: not given (see refills)
    scramble_buffers: bool = True
    buffer_pattern: bytes | None = None
    buffer_compress_percentage: int | None = None
    buffer_compress_chunk: int = 512
    # -- verify
    verify: str | None = None  # md5, crc32c, crc32, sha1, sha256, sha512, pattern, meta, null
    verify_pattern: bytes | None = None
    verify_fatal: bool = False
    do_verify: bool = True
    verify_backlog: int = 0
    verify_interval: int | None = None
    # -- logs (file name prefixes) and their averaging period
    write_bw_log: str | None = None
    write_lat_log: str | None = None
    write_iops_log: str | None = None
    log_avg_msec: int = 0
    log_offset: bool = False  # an offset column before the priority (fio's log format)
    log_prio: bool = False  # the priority column: the ioprio value (0x....), else 1 for RT and 0 otherwise
    # -- the kernel's I/O priority (ioprio(7)) of the job's requests: prio/prioclass/priohint are the
    # default of every request; cmdprio_* (libaio, io_uring) give some requests another one.
    # Per direction: (read, write).
    prio: int | None = None
    prioclass: int | None = None
    priohint: int | None = None
    cmdprio_percentage: tuple[int, int] = (0, 0)
    cmdprio_class: tuple[int, int] = (1, 1)  # fio's default: the highest class, RT
    cmdprio: tuple[int, int] = (0, 0)
    cmdprio_hint: tuple[int, int] = (0, 0)
    #: per direction: (bs, percent, class, level, hint) entries; None fields: cmdprio_class/cmdprio/cmdprio_hint
    cmdprio_bssplit: tuple[tuple[tuple[int, int, int | None, int | None, int | None], ...], ...] | None = None
    # -- offsets: rw=...:N (fio's ddir_seq_add / ddir_seq_nr) and rw_sequencer
    rw_add: int = 0  # sequential: bytes added to each next offset (negative: backwards)
    rw_seq_nr: int = 1  # random: a new random offset every N I/Os (the others follow rw_sequencer)
    rw_sequencer: str = "sequential"  # sequential (continue after the last I/O) or identical (repeat it)
    # -- zonemode=strided: zonesize bytes of each zonerange, then skip zoneskip
    zonemode: str = "none"
    zonesize: int = 0
    zonerange: int = 0
    zoneskip: int = 0
    # -- which jobs end or start with which
    exitall: bool = False
    new_group: bool = False  # starts a new reporting group (fio's groupid), like stonewall without waiting
    exit_what: str = "group"  # group, stonewall, all
    wait_for: str | None = None
    # -- flow: weights of jobs sharing a flow_id (fio's token-based flow control)
    flow: int = 0
    flow_id: int = 0
    flow_sleep_s: float = 0.0
    # -- steady state: (criterion, limit, limit is a percentage of the mean)
    steadystate: tuple[str, float, bool] | None = None
    ss_dur_s: float = 0.0
    ss_ramp_s: float = 0.0
    ss_interval_s: float = 1.0
    # -- latency_target: fio's search for the deepest queue meeting a latency percentile
    latency_target_s: float = 0.0
    latency_window_s: float = 0.0
    latency_percentile: float = 100.0
    latency_run: bool = False
    # -- dedupe: a share of the writes repeat an earlier buffer
    dedupe_percentage: int = 0
    dedupe_mode: str = "repeat"  # repeat or working_set
    dedupe_working_set_percentage: int = 5
    dedupe_global: bool = False
    # -- accepted with what they do here recorded
    io_submit_mode: str = "inline"
    numa_cpu_nodes: str | None = None
    numa_mem_policy: str | None = None
    random_generator: str = "tausworthe"
    verify_dump: bool = False
    verify_async: int = 0
    # -- errors a job goes on after (fio's continue_on_error + ignore_error): per error type (read,
    # write — trims count as writes —, verify), the errnos that are not fatal
    continue_on_error: frozenset[str] = frozenset()
    ignore_error: tuple[tuple[int, ...] | None, tuple[int, ...] | None, tuple[int, ...] | None] = (None, None, None)
    error_dump: bool = True
    fill_device: bool = False
    #: option (as written) -> value (as written), for every option set; ``own`` are those set
    #: in the job's own section (fio's "job options"), the rest came from [global].
    written: dict[str, str] = field(default_factory=dict)
    own: set[str] = field(default_factory=set)
    global_written: dict[str, str] = field(default_factory=dict)
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
    def refills(self) -> bool:
        """New data for every write: refill_buffers as given, else implied by a
        buffer_compress_percentage below 100 (fio's init.c: a compressible mix must be redrawn
        per write, or one buffer repeated would compress far better than asked)."""
        if self.refill_buffers is not None:
            return self.refill_buffers
        return 0 < (self.buffer_compress_percentage or 0) < 100

    @property
    def does_writes(self) -> bool:
        return self.read_fraction < 1.0 and self.rw not in ("trim", "randtrim")

    @property
    def does_trims(self) -> bool:
        """trim/randtrim (trims only), trimwrite/randtrimwrite (each block trimmed, then written)."""
        return self.rw in _TRIM_RW

    @property
    def sync_engine(self) -> bool:
        """A synchronous fio engine (psync, fio's default, included): one I/O in flight."""
        return self.ioengine is None or self.ioengine in SYNC_ENGINES

    @property
    def buffered_libaio(self) -> bool:
        """libaio through the page cache: Linux completes such a request inside io_submit, so fio's
        job has one in flight whatever its iodepth (fio's HOWTO: queued only with direct=1)."""
        return self.ioengine == "libaio" and not self.direct

    @property
    def depth(self) -> int:
        """I/Os in flight per clone: 1 for the sync engines (fio ignores their iodepth) and for
        buffered libaio (see buffered_libaio)."""
        return 1 if self.sync_engine or self.buffered_libaio else self.iodepth

    def block_sizes(self, d: int) -> tuple[int, int]:
        """(smallest, largest) block size of direction ``d`` (0 read, 1 write, 2 trim)."""
        if d == 2:
            if self.bssplit is not None or self.bs_range is not None:
                return self.block_sizes(1)  # ioengine's bssplit/bsrange take R,W: trims as writes
            return self.bs_trim, self.bs_trim
        if self.bssplit is not None:
            sizes = [b for b, _ in self.bssplit[d]]
            return min(sizes), max(sizes)
        if self.bs_range is not None:
            return self.bs_range[d]
        bs = self.bs if d == 0 else self.bs_write
        return bs, bs

    @property
    def ioprio(self) -> int:
        """The default ioprio of the job's requests (fio's td->ioprio; 0: none). As fio's
        ioprio_set: a level or hint without a class is in the best-effort class."""
        if self.prio is None and self.prioclass is None and self.priohint is None:
            return 0
        return ioprio_value(self.prioclass or IoPrioClass.BE, self.prio or 0, self.priohint or 0)

    @property
    def uses_cmdprio(self) -> bool:
        return self.cmdprio_bssplit is not None or any(self.cmdprio_percentage)

    def cmdprio_table(self, d: int) -> list[tuple[int, int, int]]:
        """Direction ``d``'s cmdprio choices as (block size or 0 for any, cumulative percent,
        ioprio): a request of that size takes the first entry whose cumulative percent is above
        a draw in 0..99, else the job's default (fio's cmdprio.c)."""
        d = min(d, 1)
        dflt = (self.cmdprio_class[d], self.cmdprio[d], self.cmdprio_hint[d])
        if self.cmdprio_bssplit is None:
            pct = self.cmdprio_percentage[d]
            return [(0, pct, ioprio_value(*dflt))] if pct else []
        table: list[tuple[int, int, int]] = []
        cum: dict[int, int] = {}
        for bs, pct, cls, level, hint in self.cmdprio_bssplit[d]:
            if not pct:
                continue
            cum[bs] = cum.get(bs, 0) + pct
            table.append((bs, cum[bs], ioprio_value(dflt[0] if cls is None else cls,
                                                    dflt[1] if level is None else level,
                                                    dflt[2] if hint is None else hint)))
        return table

    def align(self, d: int) -> int:
        """Random offsets are multiples of this (fio's blockalign; default the minimum bs)."""
        if self.blockalign is not None:
            return self.blockalign[min(d, 1)]
        return self.block_sizes(d)[0]

    def file_paths(self, clone: int = 0) -> list[str]:
        """Every file clone ``clone`` uses (``nrfiles`` of them), as fio names them."""
        return [self.file_path(clone, n) for n in range(self.nrfiles)]

    def file_path(self, clone: int = 0, filenum: int = 0) -> str:
        """The file this job (clone number ``clone``, file ``filenum``) uses, as fio names it.

        ``filename`` if given (one file shared by all clones), else ``filename_format``
        (fio's default ``$jobname.$jobnum.$filenum``); relative names are placed in
        ``directory`` (default: cwd).
        """
        if self.filename is not None:
            name = self.filename
        else:
            name = (self.filename_format.replace("$jobname", self.name)
                    .replace("$jobnum", str(clone)).replace("$filenum", str(filenum)))
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
        # Everything else as written (sizes in the file's kb_base, which goes first).
        extra = [(k, v) for k, v in self.written.items()
                 if _ALIASES.get(k, k) not in _NORMALISED and _OPTIONS.get(_ALIASES.get(k, k), (None,))[0] is not _noop]
        if extra and self.kb_base != 1024:
            args.append(f"--kb_base={self.kb_base}")
        args.extend(f"--{k}={v}" if v else f"--{k}" for k, v in extra)
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
    if base not in _RW_VALUES:
        raise src.error(
            f"bad value {v!r} for '{option}': expected read, write, randread, randwrite, "
            f"rw (or readwrite), randrw, trim, randtrim, trimwrite or randtrimwrite",
            option,
        )
    spec.rw = _RW_VALUES[base]
    spec.rw_add, spec.rw_seq_nr = 0, 1
    if colon:
        # fio's offset modifier: sequential jobs add N bytes to every next offset (holes, or
        # backwards when negative); random jobs take a new random offset every N I/Os only.
        m = re.fullmatch(r"(-?)(.+)", modifier.strip())
        if m is None:
            raise src.error(f"bad offset modifier in {option}={v}: expected {base}:N", option)
        try:
            n = parse_size(m.group(2), spec.kb_base)
        except ValueError as exc:
            raise src.error(f"bad offset modifier in {option}={v}: {exc}", option) from None
        if spec.is_random:
            if m.group(1) or n < 1:
                raise src.error(f"bad offset modifier in {option}={v}: a random pattern takes :N, the I/Os "
                                f"per new random offset (N >= 1)", option)
            spec.rw_seq_nr = n
        else:
            spec.rw_add = -n if m.group(1) else n


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
    trim = sizes[2] if len(sizes) > 2 else write
    if trim is not None:
        spec.bs_trim = trim


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


#: fio's synchronous engines: one I/O in flight per job whatever iodepth says.
SYNC_ENGINES = ("sync", "psync", "vsync", "pvsync", "pvsync2")
#: fio's asynchronous block/file engines: iodepth I/Os in flight.
ASYNC_ENGINES = ("libaio", "io_uring", "posixaio")


def _opt_ioengine(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "an engine such as psync, libaio or io_uring")
    if v not in SYNC_ENGINES and v not in ASYNC_ENGINES:
        raise src.error(
            f"ioengine={v} is not supported: ioengine-bench runs fio's block/file engines only "
            f"({', '.join(SYNC_ENGINES + ASYNC_ENGINES)}); {v} does other I/O than local reads and writes",
            option)
    spec.ioengine = v


def _pair(spec: JobSpec, value: str | None, src: SourceLine, option: str,
          parse: Callable[[str], int], form: str) -> tuple[int, int]:
    """fio's "R,W" values: one value for both, or per direction (an empty field keeps the default)."""
    v = _need_value(value, src, option, form)
    parts = [p.strip() for p in v.split(",")]
    if len(parts) > 3:
        raise src.error(f"bad value {v!r} for '{option}': expected at most READ,WRITE,TRIM", option)
    r = parse(parts[0]) if parts[0] else 0
    w = parse(parts[1]) if len(parts) > 1 and parts[1] else (0 if len(parts) > 1 else r)
    return r, w


def _sizes_pair(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> tuple[int, int]:
    return _pair(spec, value, src, option, lambda p: _size_value(spec, p, src, option),
                 f"a size, or READ,WRITE sizes such as {option}=1m,2m")


def _ints_pair(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> tuple[int, int]:
    def one(p: str) -> int:
        if not re.fullmatch(r"\d+", p):
            raise src.error(f"bad value {p!r} for '{option}': expected an integer{_arith_hint(p)}", option)
        return int(p)
    return _pair(spec, value, src, option, one, f"a number, or READ,WRITE numbers such as {option}=100,50")


def _int_pair(lo: int, hi: int) -> Callable[[JobSpec, str | None, SourceLine, str], tuple[int, int]]:
    def parse(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> tuple[int, int]:
        def one(p: str) -> int:
            return _int_value(p, src, option, lo, hi)
        return _pair(spec, value, src, option, one,
                     f"an integer in {lo}..{hi}, or READ,WRITE such as {option}={lo},{hi}")
    return parse


def _int_pair_setter(attr: str, lo: int, hi: int) -> _Handler:
    parse = _int_pair(lo, hi)

    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        setattr(spec, attr, parse(spec, value, src, option))
    return handler


def _opt_cmdprio_bssplit(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "BS/PERCENT[/CLASS/LEVEL[/HINT]]:..., per direction READ,WRITE")
    dirs: list[tuple[tuple[int, int, int | None, int | None, int | None], ...]] = []
    for part in v.split(",")[:2]:
        entries = []
        for item in part.split(":"):
            fields = [f.strip() for f in item.split("/")]
            if len(fields) not in (2, 4, 5):
                raise src.error(f"bad value {item!r} for '{option}': expected BS/PERCENT or "
                                f"BS/PERCENT/CLASS/LEVEL[/HINT]", option)
            bs = _size_value(spec, fields[0], src, option)
            pct = _int_value(fields[1], src, option, 0, 100)
            cls = _int_value(fields[2], src, option, 0, 3) if len(fields) > 2 else None
            level = _int_value(fields[3], src, option, 0, 7) if len(fields) > 3 else None
            hint = _int_value(fields[4], src, option, 0, 1023) if len(fields) > 4 else None
            entries.append((bs, pct, cls, level, hint))
        total: dict[int, int] = {}
        for bs, pct, *_ in entries:
            total[bs] = total.get(bs, 0) + pct
            if total[bs] > 100:
                raise src.error(f"bad value {part!r} for '{option}': the percentages of bs={bs} add up to more "
                                f"than 100", option)
        dirs.append(tuple(entries))
    spec.cmdprio_bssplit = (dirs[0], dirs[1] if len(dirs) > 1 else dirs[0])


def _opt_bsrange(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "MIN-MAX, or READMIN-READMAX,WRITEMIN-WRITEMAX")
    ranges: list[tuple[int, int]] = []
    for part in v.split(",")[:2]:
        lo_s, dash, hi_s = part.partition("-")
        lo = _size_value(spec, lo_s.strip(), src, option)
        hi = _size_value(spec, hi_s.strip(), src, option) if dash else lo
        if lo <= 0 or hi < lo:
            raise src.error(f"bad value {v!r} for '{option}': expected MIN-MAX with 0 < MIN <= MAX", option)
        ranges.append((lo, hi))
    spec.bs_range = (ranges[0], ranges[1] if len(ranges) > 1 else ranges[0])
    spec.bssplit = None


def _opt_bssplit(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "BS/PERCENT:BS/PERCENT..., e.g. 4k/60:64k/40")
    dirs: list[tuple[tuple[int, int], ...]] = []
    for part in v.split(",")[:2]:
        entries: list[tuple[int, int | None]] = []
        for item in part.split(":"):
            bs_s, slash, pct_s = item.partition("/")
            bs = _size_value(spec, bs_s.strip(), src, option)
            if bs <= 0:
                raise src.error(f"bad value {v!r} for '{option}': block size must be > 0", option)
            if slash and pct_s.strip():
                if not re.fullmatch(r"\d+", pct_s.strip()):
                    raise src.error(f"bad percentage {pct_s!r} in '{option}': expected an integer 0..100", option)
                entries.append((bs, int(pct_s)))
            else:
                entries.append((bs, None))
        given = sum(p for _, p in entries if p is not None)
        unset = [i for i, (_, p) in enumerate(entries) if p is None]
        if given > 100 or (not unset and given != 100):
            raise src.error(f"bad value {v!r} for '{option}': the percentages must add up to 100", option)
        # fio shares what is left equally among the entries without a percentage.
        share = (100 - given) // len(unset) if unset else 0
        done = tuple((b, p if p is not None else share) for b, p in entries)
        dirs.append(done)  # a 0% entry is never drawn but counts in min_bs / max_bs (bssplit_ddir)
    spec.bssplit = (dirs[0], dirs[1] if len(dirs) > 1 else dirs[0])
    spec.bs_range = None


def _opt_blockalign(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    r, w = _sizes_pair(spec, value, src, option)
    spec.blockalign = (r or w, w or r)


_DISTRIBUTIONS = {"random": 0, "zipf": 1, "pareto": 1, "normal": 1, "gauss": 1, "zoned": -1, "zoned_abs": -1}


def _opt_random_distribution(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "random, zipf:THETA, pareto:H, normal:SIGMA, zoned:A/R:...")
    kind, _, rest = v.partition(":")
    if kind not in _DISTRIBUTIONS:
        raise src.error(f"bad value {v!r} for '{option}': expected random, zipf:THETA, pareto:H, normal:SIGMA "
                        f"(or gauss), zoned:ACCESS%/RANGE%:... or zoned_abs:ACCESS%/SIZE:...", option)
    kind = "normal" if kind == "gauss" else kind
    spec.random_distribution, spec.random_params, spec.random_zones = kind, (), ()
    if kind == "random":
        return
    if kind in ("zoned", "zoned_abs"):
        zones: list[tuple[float, float]] = []
        missing = []  # zoned: zones written ACCESS/ (or ACCESS/0) share what the others leave, as in fio
        for item in rest.split(",")[0].split(":"):
            if not item:
                break  # fio stops at an empty entry
            a_s, slash, r_s = item.partition("/")
            try:
                access = float(a_s)
                if kind == "zoned":
                    rng = float(r_s) if r_s.strip() else 0.0
                else:
                    rng = float(_size_value(spec, r_s, src, option))
            except ValueError:
                rng, access = -1.0, -1.0
            if kind == "zoned" and slash and rng == 0.0 and access >= 0:
                missing.append(len(zones))
            elif not slash or access < 0 or rng <= 0:
                raise src.error(f"bad zone {item!r} in '{option}': expected ACCESS%/"
                                f"{'RANGE%' if kind == 'zoned' else 'SIZE'}", option)
            zones.append((access, min(rng, 100.0) if kind == "zoned" else rng))
        if missing:
            left = max(0.0, 100.0 - sum(r for _, r in zones)) // len(missing)  # fio's integer share
            for i in missing:
                zones[i] = (zones[i][0], left)
            if any(r <= 0 for _, r in zones):
                raise src.error(f"bad value {v!r} for '{option}': the zones given leave no range for the "
                                f"zones without one", option)
        if abs(sum(a for a, _ in zones) - 100) > 1e-9:
            raise src.error(f"bad value {v!r} for '{option}': the zones' access percentages must add up to 100",
                            option)
        if kind == "zoned" and sum(r for _, r in zones) > 100 + 1e-9:
            raise src.error(f"bad value {v!r} for '{option}': the zones' ranges add up to more than 100%", option)
        spec.random_zones = tuple(zones)
        return
    try:
        params = tuple(float(x) for x in rest.split(":") if x != "")
    except ValueError:
        params = ()
    if not params:
        raise src.error(f"{option}={kind} needs its parameter, e.g. {kind}:"
                        f"{ {'zipf': '1.2', 'pareto': '0.2', 'normal': '10'}[kind] }", option)
    p = params[0]
    if (kind == "zipf" and (p <= 0 or p == 1.0)) or (kind == "pareto" and not 0 < p < 1) or \
            (kind == "normal" and not 0 < p <= 100):
        bound = {"zipf": "> 0 and not 1", "pareto": "in (0, 1)", "normal": "in (0, 100] (percent)"}[kind]
        raise src.error(f"bad value {v!r} for '{option}': the {kind} parameter must be {bound}", option)
    spec.random_params = params[:1]


def _opt_randseed(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "an integer")
    try:
        spec.randseed = int(v, 0)
    except ValueError:
        raise src.error(f"bad value {v!r} for '{option}': expected an integer", option) from None


def _opt_filesize(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "a size such as 64m")
    if "-" in v:
        raise src.error(f"{option}={v}: a range of file sizes is not supported by ioengine; give one size", option)
    n = _size_value(spec, v, src, option)
    if n <= 0:
        raise src.error(f"bad value {v!r} for '{option}': size must be > 0", option)
    spec.filesize = n


def _opt_file_service_type(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "roundrobin, sequential or random, optionally :N")
    kind, colon, n = v.partition(":")
    if kind not in ("roundrobin", "sequential", "random") or (colon and not n.isdigit()):
        raise src.error(f"bad value {v!r} for '{option}': expected roundrobin, sequential or random, "
                        f"optionally with :N (I/Os per file before switching); fio's zipf/pareto/normal "
                        f"file choice is not supported by ioengine", option)
    spec.file_service_type = kind
    spec.file_service_nr = int(n) if colon else 1


def _opt_rate_process(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "linear or poisson")
    if v not in ("linear", "poisson"):
        raise src.error(f"bad value {v!r} for '{option}': expected linear or poisson", option)
    spec.rate_process = v


def _opt_thinktime(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "a time, microseconds by default (e.g. 100, 2ms)")
    # fio's thinktime is in microseconds unless a unit says otherwise.
    spec.thinktime_s = parse_time(v) / 1e6 if re.fullmatch(r"\d+", v) else _time_value(v, src, option)


def _pattern_value(value: str | None, src: SourceLine, option: str) -> bytes:
    v = _need_value(value, src, option, "0xHEX, a number, or a \"string\"")
    out = bytearray()
    for token in re.findall(r'"[^"]*"|\'[^\']*\'|0[xX][0-9a-fA-F]+|\d+|\S', v):
        if token[0] in "\"'":
            out += token[1:-1].encode()
        elif token.lower().startswith("0x"):
            h = token[2:]
            out += bytes.fromhex(h if len(h) % 2 == 0 else "0" + h)
        elif token.isdigit():
            n = int(token)
            out += n.to_bytes(max(1, (n.bit_length() + 7) // 8), "little")
        else:
            raise src.error(f"bad value {v!r} for '{option}': expected 0xHEX, a decimal number or a \"string\" "
                            f"(fio's %o offset format is not supported by ioengine)", option)
    if not out:
        raise src.error(f"option '{option}' needs a non-empty pattern", option)
    return bytes(out)


_VERIFY_KINDS = ("md5", "crc32c", "crc32c-intel", "crc32", "sha1", "sha256", "sha512", "pattern", "meta", "null")


def _opt_verify(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, ", ".join(_VERIFY_KINDS))
    if v == "0":
        spec.verify = None
        return
    if v not in _VERIFY_KINDS:
        raise src.error(f"verify={v} is not supported by ioengine: use one of {', '.join(_VERIFY_KINDS)}", option)
    spec.verify = "crc32c" if v == "crc32c-intel" else v


def _opt_log(attr: str) -> _Handler:
    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        # fio: the option alone uses the job name as the log's prefix ("" here, resolved per job).
        setattr(spec, attr, value or "")
    return handler


def _int_setter(attr: str, lo: int, hi: int | None = None) -> _Handler:
    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        setattr(spec, attr, _int_value(value, src, option, lo, hi))
    return handler


def _size_setter(attr: str, *, positive: bool = True) -> _Handler:
    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        v = _need_value(value, src, option, "a size such as 4k or 1g")
        n = _size_value(spec, v, src, option)
        if positive and n <= 0:
            raise src.error(f"bad value {v!r} for '{option}': must be > 0", option)
        setattr(spec, attr, n)
    return handler


def _time_setter(attr: str) -> _Handler:
    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        setattr(spec, attr, _time_value(value, src, option))
    return handler


def _pair_setter(attr: str, sizes: bool) -> _Handler:
    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        setattr(spec, attr, (_sizes_pair if sizes else _ints_pair)(spec, value, src, option))
    return handler


def _pattern_setter(attr: str) -> _Handler:
    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        setattr(spec, attr, _pattern_value(value, src, option))
    return handler


def _opt_buffered(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    spec.direct = not _bool_value(value, src, option, flag=True)


def _opt_nrfiles(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    spec.nrfiles = _int_value(value, src, option, 1, 1 << 20)


def _noop(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    pass


def _choice_setter(attr: str, choices: Sequence[str], aliases: Mapping[str, str] | None = None) -> _Handler:
    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        v = _need_value(value, src, option, " or ".join(choices))
        v = (aliases or {}).get(v, v)
        if v not in choices:
            raise src.error(f"bad value {v!r} for '{option}': expected {', '.join(choices)}", option)
        setattr(spec, attr, v)
    return handler


def _opt_zonemode(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "none or strided")
    if v == "zbd":
        raise src.error(f"{option}=zbd (zoned block devices: sequential-write zones, zone resets) is not "
                        f"supported by ioengine", option)
    if v not in ("none", "strided"):
        raise src.error(f"bad value {v!r} for '{option}': expected none or strided (zbd is not supported)", option)
    spec.zonemode = v


def _opt_zonesize(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    spec.zonesize = _size_value(spec, _need_value(value, src, option, "a size"), src, option)
    if spec.zonemode == "none" and spec.zonesize:
        spec.zonemode = "strided"  # fio: a zonesize without zonemode means strided


_SS_KINDS = ("iops", "iops_slope", "bw", "bw_slope", "lat", "lat_slope")


def _opt_steadystate(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "CRITERION:LIMIT such as iops:2% or bw_slope:0.1%")
    kind, colon, limit = v.partition(":")
    if kind not in _SS_KINDS or not colon:
        raise src.error(f"bad value {v!r} for '{option}': expected CRITERION:LIMIT, CRITERION one of "
                        f"{', '.join(_SS_KINDS)} (e.g. iops:10%)", option)
    limit = limit.strip()
    pct = limit.endswith("%")
    try:
        if pct:
            lim = float(limit[:-1])
        elif kind.startswith("bw"):
            lim = float(parse_size(limit, spec.kb_base))  # bytes/s
        elif kind.startswith("lat"):
            lim = parse_time(limit if re.search(r"[a-z]", limit) else limit + "us") * 1e9  # ns; fio: us default
        else:
            lim = float(limit)
    except ValueError as exc:
        raise src.error(f"bad limit in {option}={v}: {exc}", option) from None
    if lim < 0:
        raise src.error(f"bad limit in {option}={v}: must be >= 0", option)
    spec.steadystate = (kind, lim, pct)


def _opt_usec_time(attr: str) -> _Handler:
    # fio's latency_target / latency_window: microseconds unless a unit says otherwise.
    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        v = _need_value(value, src, option, "a time, microseconds by default (e.g. 500, 2ms)")
        setattr(spec, attr, parse_time(v) / 1e6 if re.fullmatch(r"\d+", v) else _time_value(v, src, option))
    return handler


def _opt_latency_percentile(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "a percentage such as 99.9")
    try:
        p = float(v.rstrip("%"))
    except ValueError:
        p = -1.0
    if not 0.0 < p <= 100.0:
        raise src.error(f"bad value {v!r} for '{option}': expected a percentage in (0, 100]", option)
    spec.latency_percentile = p


def _opt_numa(attr: str) -> _Handler:
    def handler(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
        v = _need_value(value, src, option, "a node list such as 0, 0-1 or all" if attr == "numa_cpu_nodes"
                        else "MODE[:NODES], MODE one of default, prefer, bind, interleave, local")
        if attr == "numa_mem_policy":
            mode = v.partition(":")[0]
            if mode not in ("default", "prefer", "bind", "interleave", "local"):
                raise src.error(f"bad value {v!r} for '{option}': expected default, prefer, bind, interleave or "
                                f"local, optionally :NODES", option)
            nodes = v.partition(":")[2]
        else:
            nodes = v
        if nodes and nodes != "all" and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", nodes):
            raise src.error(f"bad node list {nodes!r} in '{option}': expected e.g. 0, 0-1, 0,2 or all", option)
        setattr(spec, attr, v)
    return handler


def numa_node_ids(nodes: str) -> set[int]:
    """The NUMA node numbers of a fio node list (0, 0-1, 0,2; 'all' and '' are every node: empty set)."""
    out: set[int] = set()
    if nodes in ("", "all"):
        return out
    for part in nodes.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _opt_exit_what(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "group, stonewall or all")
    if v not in ("group", "stonewall", "all"):
        raise src.error(f"bad value {v!r} for '{option}': expected group, stonewall or all", option)
    spec.exit_what = v


def _opt_flow(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    spec.flow = _int_value(value, src, option, 0, 1024)  # fio's FLOW_MAX_WEIGHT


def _opt_flow_sleep(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    spec.flow_sleep_s = _int_value(value, src, option, 0, None) / 1e6  # microseconds


def _opt_io_submit_mode(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "inline or offload")
    if v not in ("inline", "offload"):
        raise src.error(f"bad value {v!r} for '{option}': expected inline or offload", option)
    spec.io_submit_mode = v


_COE = {"none": (), "0": (), "read": ("read",), "write": ("write",), "io": ("read", "write"),
        "verify": ("verify",), "all": ("read", "write", "verify"), "1": ("read", "write", "verify")}


def _opt_continue_on_error(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    v = _need_value(value, src, option, "none, read, write, io, verify or all")
    if v not in _COE:
        raise src.error(f"bad value {v!r} for '{option}': expected none, read, write, io, verify, all (or 0, 1)",
                        option)
    spec.continue_on_error = frozenset(_COE[v])


def _opt_ignore_error(spec: JobSpec, value: str | None, src: SourceLine, option: str) -> None:
    import errno as errno_mod

    v = _need_value(value, src, option, "READ_ERRORS,WRITE_ERRORS,VERIFY_ERRORS, each E1:E2 (names or numbers)")
    parts = v.split(",")
    if len(parts) > 3:
        raise src.error(f"bad value {v!r} for '{option}': at most three lists (read, write, verify)", option)
    lists: list[tuple[int, ...] | None] = [None, None, None]
    for i, part in enumerate(parts):
        if not part.strip():
            continue
        codes = []
        for name in part.split(":"):
            name = name.strip()
            code = int(name) if name.isdigit() else getattr(errno_mod, name, None)
            if not isinstance(code, int) or code <= 0:
                raise src.error(f"bad error {name!r} in '{option}': expected an errno name (ENOSPC) or number",
                                option)
            codes.append(code)
        lists[i] = tuple(codes)
    spec.ignore_error = (lists[0], lists[1], lists[2])


_TIOBENCH = "a tiobench profile option: fio accepts it in any job file and it changes nothing without " \
            "--profile=tiobench (threads=1 does not make threads; that is 'thread')"


_Opt = tuple[_Handler, str]
# canonical name -> (handler, fio's meaning and how ioengine runs it).  --list-options prints these.
_OPTIONS: dict[str, _Opt] = {
    "name": (_opt_name, "job name (in [global]: accepted and ignored, as fio does; jobs are named by sections)"),
    "description": (_str_setter("description"), "free text describing the job"),
    "rw": (_opt_rw, "I/O pattern: read, write, randread, randwrite, rw/readwrite, randrw, trim, randtrim, "
                    "trimwrite, randtrimwrite (trims are fio's BLKDISCARD: block devices only, a file gives "
                    "err=25 as in fio); :N adds N bytes to sequential offsets or draws a new random one "
                    "every N I/Os"),
    "rwmixread": (_opt_rwmixread, "percent of reads in rw/randrw (default 50)"),
    "rwmixwrite": (_opt_rwmixwrite, "percent of writes in rw/randrw"),
    "bs": (_opt_bs, "block size, or READ,WRITE[,TRIM] sizes (default 4k)"),
    "bsrange": (_opt_bsrange, "block sizes drawn from MIN-MAX (multiples of MIN), per direction READ,WRITE"),
    "bssplit": (_opt_bssplit, "block size mix BS/PCT:BS/PCT..., per direction READ,WRITE"),
    "blockalign": (_opt_blockalign, "random offsets aligned to this (default: the minimum block size)"),
    "iodepth": (_opt_iodepth, "I/Os in flight per job for libaio/io_uring/posixaio (the sync engines: 1)"),
    "ioengine": (_opt_ioengine, "how fio issues I/O: sync/psync/vsync/pvsync/pvsync2 one at a time; libaio/"
                                "io_uring/posixaio at iodepth. ioengine carries them all on its reactor"),
    "size": (_opt_size, "bytes of the job's files to cover (or N% of an existing file)"),
    "filesize": (_opt_filesize, "size of each file (default size / nrfiles)"),
    "nrfiles": (_opt_nrfiles, "files per job (default 1)"),
    "filename_format": (_str_setter("filename_format"), "file names made from $jobname, $jobnum, $filenum"),
    "openfiles": (_int_setter("openfiles", 1), "files open at once (accepted: ioengine keeps a job's files open)"),
    "file_service_type": (_opt_file_service_type, "how I/O moves between a job's files: roundrobin (default), "
                                                  "sequential, random, optionally :N I/Os per switch"),
    "offset": (_opt_offset, "start of the I/O region in each file (bytes or N%)"),
    "offset_increment": (_size_setter("offset_increment", positive=False),
                         "clone N of numjobs starts at offset + N * offset_increment"),
    "io_size": (_size_setter("io_size"), "bytes to transfer (default size; may loop over the region)"),
    "number_ios": (_int_setter("number_ios", 1), "stop after this many I/Os"),
    "loops": (_int_setter("loops", 1), "repeat the job this many times"),
    "filename": (_opt_filename, "the file (shared by all clones); default from filename_format"),
    "directory": (_opt_directory, "where relative file names live"),
    "runtime": (_opt_runtime, "stop after this long (seconds unless a unit is given)"),
    "time_based": (_flag_setter("time_based", flag=True), "run for runtime even when size is done (loops)"),
    "ramp_time": (_opt_ramp_time, "run this long before measuring"),
    "startdelay": (_time_setter("startdelay_s"), "wait this long before the job starts"),
    "numjobs": (_opt_numjobs, "clones of the job running concurrently"),
    "direct": (_flag_setter("direct", flag=False), "O_DIRECT I/O (default 0: buffered, through the page cache, "
                                                  "as fio)"),
    "buffered": (_opt_buffered, "the opposite of direct (default 1)"),
    "fadvise_hint": (_choice_setter("fadvise_hint", ("0", "1", "random", "sequential", "noreuse")),
                     "posix_fadvise each file when opened: 1 (default) POSIX_FADV_RANDOM for random jobs, "
                     "POSIX_FADV_SEQUENTIAL otherwise (the page cache's readahead off or doubled); 0 none"),
    "invalidate": (_flag_setter("invalidate", flag=True), "drop the files' cached pages (POSIX_FADV_DONTNEED) "
                                                          "before a buffered job starts (default 1)"),
    "thread": (_flag_setter("thread", flag=True), "threads instead of processes (no difference here: one reactor)"),
    "group_reporting": (_flag_setter("group_reporting", flag=True), "report a job's clones as one entry"),
    "stonewall": (_flag_setter("stonewall", flag=True), "wait for the jobs before this one to finish"),
    "new_group": (_flag_setter("new_group", flag=True), "start a new reporting group (exitall's group; "
                                                         "reports still follow stonewall)"),
    "randrepeat": (_flag_setter("randrepeat", flag=False), "same random offsets in every run (default 1)"),
    "allrandrepeat": (_flag_setter("allrandrepeat", flag=False), "every random choice repeatable"),
    "randseed": (_opt_randseed, "the seed of the repeatable random sequences (default 0x89)"),
    "norandommap": (_flag_setter("norandommap", flag=True), "random offsets may repeat within a pass"),
    "random_distribution": (_opt_random_distribution, "random (uniform), zipf:THETA, pareto:H, normal:SIGMA%, "
                                                      "zoned:ACCESS%/RANGE%:..., zoned_abs:ACCESS%/SIZE:..."),
    "rate": (_pair_setter("rate", True), "cap bandwidth, bytes/s (R,W)"),
    "rate_iops": (_pair_setter("rate_iops", False), "cap IOPS (R,W)"),
    "rate_min": (_pair_setter("rate_min", True), "fail the job when bandwidth falls below this (checked each s)"),
    "rate_iops_min": (_pair_setter("rate_iops_min", False), "fail the job when IOPS fall below this"),
    "rate_process": (_opt_rate_process, "linear (even spacing) or poisson (exponential gaps)"),
    "thinktime": (_opt_thinktime, "pause after each I/O (microseconds by default)"),
    "thinktime_blocks": (_int_setter("thinktime_blocks", 1), "I/Os between thinktime pauses"),
    "fsync": (_int_setter("fsync", 0), "sync the file after this many writes (ioengine: fdatasync, the same "
                                       "for a laid-out file)"),
    "fdatasync": (_int_setter("fdatasync", 0), "fdatasync after this many writes"),
    "end_fsync": (_flag_setter("end_fsync", flag=False), "sync the files when the job ends"),
    "fsync_on_close": (_flag_setter("fsync_on_close", flag=False), "sync each file as it is closed"),
    "create_on_open": (_flag_setter("create_on_open", flag=False), "create files when opened (accepted: ioengine "
                                                                   "lays them out before the run, as fio's default)"),
    "unlink": (_flag_setter("unlink", flag=False), "delete the job's files when it ends"),
    "zero_buffers": (_flag_setter("zero_buffers", flag=True), "write zeros"),
    "refill_buffers": (_flag_setter("refill_buffers", flag=True), "new random data for every write"),
    "scramble_buffers": (_flag_setter("scramble_buffers", flag=False), "stamp each write so no two are equal "
                                                                       "(default 1)"),
    "buffer_pattern": (_pattern_setter("buffer_pattern"), "fill write buffers with this pattern"),
    "buffer_compress_percentage": (_int_setter("buffer_compress_percentage", 0, 100),
                                   "make written data this compressible (that share of each chunk is zeros)"),
    "buffer_compress_chunk": (_size_setter("buffer_compress_chunk"), "granule of buffer_compress_percentage"),
    "verify": (_opt_verify, "check written data: write a checksummed header per block, read it back"),
    "verify_pattern": (_pattern_setter("verify_pattern"), "the pattern of verify=pattern"),
    "verify_fatal": (_flag_setter("verify_fatal", flag=False), "stop the job at the first mismatch"),
    "do_verify": (_flag_setter("do_verify", flag=False), "run the verify phase after writing (default 1)"),
    "verify_backlog": (_int_setter("verify_backlog", 0), "verify after every N writes instead of at the end"),
    "verify_interval": (_size_setter("verify_interval"), "checksum granule (default: the block size)"),
    "write_bw_log": (_opt_log("write_bw_log"), "log bandwidth: PREFIX_bw.N.log (fio's format)"),
    "write_lat_log": (_opt_log("write_lat_log"), "log latencies: PREFIX_lat/_clat/_slat.N.log"),
    "write_iops_log": (_opt_log("write_iops_log"), "log IOPS: PREFIX_iops.N.log"),
    "log_avg_msec": (_int_setter("log_avg_msec", 0), "average log entries over this period"),
    "log_offset": (_flag_setter("log_offset", flag=True), "an offset column in the logs, before the priority"),
    "log_prio": (_flag_setter("log_prio", flag=True), "the logs' priority column is the request's ioprio (0x....), "
                                                      "else 1 for the RT class and 0 otherwise"),
    "prio": (_int_setter("prio", 0, 7), "the I/O priority level (0 highest .. 7) of the job's requests; class BE "
                                        "unless prioclass says"),
    "prioclass": (_int_setter("prioclass", 0, 3), "the I/O priority class of the job's requests: 1 RT, 2 BE, 3 idle"),
    "priohint": (_int_setter("priohint", 0, 1023), "the I/O priority hint (command duration limit descriptor)"),
    "cmdprio_percentage": (_int_pair_setter("cmdprio_percentage", 0, 100),
                           "percent of the requests, per direction READ,WRITE, that get cmdprio_class/cmdprio "
                           "(libaio, io_uring)"),
    "cmdprio_class": (_int_pair_setter("cmdprio_class", 1, 3), "the class of the cmdprio requests (default 1, RT)"),
    "cmdprio": (_int_pair_setter("cmdprio", 0, 7), "the level of the cmdprio requests (default 0)"),
    "cmdprio_hint": (_int_pair_setter("cmdprio_hint", 0, 1023), "the hint of the cmdprio requests (default 0)"),
    "cmdprio_bssplit": (_opt_cmdprio_bssplit, "per block size, the percent of requests with a priority: "
                                              "BS/PERCENT[/CLASS/LEVEL[/HINT]]:..., per direction READ,WRITE"),
    "kb_base": (_opt_kb_base, "1024 (default) or 1000: what k means in sizes"),
    "rw_sequencer": (_choice_setter("rw_sequencer", ("sequential", "identical")),
                     "with rw=randX:N, the I/Os between random offsets continue sequentially or repeat the offset"),
    "zonemode": (_opt_zonemode, "none, or strided: zonesize bytes of each zonerange, then skip zoneskip "
                                "(zoned block devices, zbd, are not supported)"),
    "zonesize": (_opt_zonesize, "strided: bytes to transfer in a zone before moving on"),
    "zonerange": (_size_setter("zonerange"), "strided: size of a zone (default zonesize)"),
    "zoneskip": (_size_setter("zoneskip", positive=False), "strided: bytes skipped after each zone"),
    "exitall": (_flag_setter("exitall", flag=True), "when one job ends, end the others of its group (exit_what)"),
    "exit_what": (_opt_exit_what, "which jobs exitall ends: group (default), stonewall (all running), all"),
    "wait_for": (_str_setter("wait_for"), "start this job when every clone of the named earlier job is done"),
    "flow_id": (_int_setter("flow_id", 0), "the flow group of this job (default 0)"),
    "flow": (_opt_flow, "weight in its flow group: jobs of a group issue I/Os in proportion to their weights"),
    "flow_sleep": (_opt_flow_sleep, "microseconds to wait when over its flow share (default 0: wait for the "
                                    "others' next I/O)"),
    "steadystate": (_opt_steadystate, "end the job when steady: iops, bw, lat (max deviation from the mean) "
                                      "or iops_slope, bw_slope, lat_slope (regression slope) under LIMIT[%]"),
    "steadystate_duration": (_time_setter("ss_dur_s"), "the rolling window steady state is judged on"),
    "steadystate_ramp_time": (_time_setter("ss_ramp_s"), "run this long before steady state data is collected"),
    "steadystate_check_interval": (_time_setter("ss_interval_s"), "one steady state sample per this (default 1 s)"),
    "latency_target": (_opt_usec_time("latency_target_s"), "find the deepest queue (up to iodepth) whose "
                                                           "latency_percentile of I/Os complete within this (us)"),
    "latency_window": (_opt_usec_time("latency_window_s"), "how long each queue depth is tried (us)"),
    "latency_percentile": (_opt_latency_percentile, "share of I/Os that must meet latency_target (default 100)"),
    "latency_run": (_flag_setter("latency_run", flag=True), "keep adjusting the depth instead of ending at the "
                                                            "depth found"),
    "dedupe_percentage": (_int_setter("dedupe_percentage", 0, 100), "this share of writes repeat an earlier "
                                                                    "buffer (the rest are unique)"),
    "dedupe_mode": (_choice_setter("dedupe_mode", ("repeat", "working_set")),
                    "repeat (the last unique buffer) or working_set (one of the first unique buffers)"),
    "dedupe_working_set_percentage": (_int_setter("dedupe_working_set_percentage", 0, 100),
                                      "working_set: its size as a share of the job's size (default 5)"),
    "dedupe_global": (_flag_setter("dedupe_global", flag=True), "share the dedupe buffers among the jobs that "
                                                                "set it"),
    "io_submit_mode": (_opt_io_submit_mode, "inline (default) or offload (fio submits from a pool of threads; "
                                            "ioengine issues from its reactor either way: same I/O, same pacing)"),
    "numa_cpu_nodes": (_opt_numa("numa_cpu_nodes"), "run the job on these NUMA nodes' CPUs (ioengine: every job "
                                                    "shares one reactor, so only all of the machine's nodes, "
                                                    "what it uses anyway; a node it lacks is refused, as by fio)"),
    "numa_mem_policy": (_opt_numa("numa_mem_policy"), "memory policy MODE[:NODES] (ioengine: only all of the "
                                                      "machine's nodes, e.g. bind:0 on a one-node machine)"),
    "random_generator": (_choice_setter("random_generator", ("tausworthe", "lfsr", "tausworthe64")),
                         "fio's generator of random offsets (ioengine: its own full-cycle generator, every "
                         "block once per pass, as lfsr)"),
    "verify_dump": (_flag_setter("verify_dump", flag=True), "write the expected and the read data of a failed "
                                                            "verify to files"),
    "verify_async": (_int_setter("verify_async", 0), "verify in N threads (accepted: ioengine checks on its "
                                                     "reactor; the I/O is the same)"),
    "continue_on_error": (_opt_continue_on_error, "go on after non-fatal errors (EIO, EILSEQ, or ignore_error's) "
                                                  "of these types: none, read, write (trims too), io, verify, all"),
    "ignore_error": (_opt_ignore_error, "the errors continue_on_error goes on after, per type: READ,WRITE,VERIFY "
                                        "lists of E1:E2"),
    "error_dump": (_flag_setter("error_dump", flag=True), "print every error, non-fatal ones too (default 1)"),
    "fill_device": (_flag_setter("fill_device", flag=True), "write until the device or file system is full "
                                                            "(ENOSPC ends the job without an error)"),
}
# Options that only change what fio measures or prints, or how it sets up: no-ops here.
for _name, _meaning in (
        ("gtod_reduce", "fewer clock reads"), ("disable_lat", "skip total latency"),
        ("disable_clat", "skip completion latency"), ("disable_slat", "skip submission latency"),
        ("disable_bw_measurement", "skip bandwidth samples"), ("clat_percentiles", "report clat percentiles"),
        ("lat_percentiles", "report lat percentiles"), ("slat_percentiles", "report slat percentiles"),
        ("allow_file_create", "fio may create files"), ("create_serialize", "lay out files one at a time"),
        ("fallocate", "preallocate files (ioengine writes them out)"),
        ("per_job_logs", "one log per clone"),
        ("clocksource", "which clock fio reads"), ("overwrite", "lay out before writing (ioengine always does)"),
        ("threads", _TIOBENCH), ("block", _TIOBENCH), ("numruns", _TIOBENCH), ("dir", _TIOBENCH)):
    _OPTIONS[_name] = (_noop, f"{_meaning} (accepted; no difference to ioengine's run)")
_ALIASES = {
    "readwrite": "rw",
    "blocksize": "bs",
    "wait_for_previous": "stonewall",
    "timeout": "runtime",
    "fileoffset": "offset",
    "blocksize_range": "bsrange",
    "ba": "blockalign",
    "nr_files": "nrfiles",
    "io_limit": "io_size",
    "ratemin": "rate_min",
    "allrandrepeat": "allrandrepeat",
    "random_distribution": "random_distribution",
    "disable_bw": "disable_bw_measurement",
    "ss": "steadystate",
    "ss_dur": "steadystate_duration",
    "ss_ramp": "steadystate_ramp_time",
    "ss_interval": "steadystate_check_interval",
    "fill_fs": "fill_device",
}
_PRIO = "fio's libaio and io_uring engines call it cmdprio_percentage"
_ZBD = "zoned block devices (zonemode=zbd) are not supported"
#: Options ioengine refuses for a reason worth saying (the rest: "not supported").
_REFUSED_WHY = {
    "prio_percentage": _PRIO,
    **dict.fromkeys(("max_open_zones", "job_max_open_zones", "zone_reset_threshold", "zone_reset_frequency",
                     "read_beyond_wp", "zonecapacity", "ignore_zone_limits", "recover_zbd_write_error"), _ZBD),
    "atomic": "atomic writes (RWF_ATOMIC) are not available through ioengine",
}
#: Every option name ioengine accepts in a job file (fio's aliases included).
SUPPORTED_OPTIONS: tuple[str, ...] = tuple(sorted({*_OPTIONS, *_ALIASES}))
# Options to_fio_args writes from the parsed values (the rest it passes on as written).
_NORMALISED = {"name", "description", "rw", "rwmixread", "rwmixwrite", "bs", "iodepth", "ioengine", "direct",
               "buffered", "numjobs", "size", "offset", "filename", "directory", "runtime", "time_based",
               "ramp_time", "randrepeat", "norandommap", "thread", "group_reporting", "stonewall", "kb_base"}
# Which source key an option records under (rwmixwrite is stored as rwmixread).
_RECORD_AS = {"rwmixwrite": "rwmixread", "buffered": "direct"}


def options_help() -> str:
    """The supported options, one a line with fio's meaning (``ioengine-bench run --list-options``)."""
    aliases: dict[str, list[str]] = {}
    for a, c in _ALIASES.items():
        if a != c:
            aliases.setdefault(c, []).append(a)
    width = max(len(n) for n in _OPTIONS)
    lines = []
    for name in sorted(_OPTIONS):
        extra = f" (alias: {', '.join(aliases[name])})" if name in aliases else ""
        lines.append(f"{name:<{width}}  {_OPTIONS[name][1]}{extra}")
    return "\n".join(lines)


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
    errors: list[JobFileError] = []
    for sec in sections:
        if sec.is_global:
            _apply(defaults, sec, in_global=True, errors=errors)
            continue
        job = copy.deepcopy(defaults)
        job.name = sec.name
        job.section = sec.header
        _apply(job, sec, in_global=False, errors=errors)
        errors.extend(_check_job(job))
        if job.wait_for is not None and not any(j.name == job.wait_for for j in jobs):
            src = job.sources.get("wait_for", job.section)
            errors.append(src.error(f"job '{job.name}': wait_for={job.wait_for} names no job before it (fio "
                                    f"needs the waitee defined earlier)", "wait_for"))
        jobs.append(job)
    if errors:
        raise JobFileError.combine(errors)
    return jobs


def _apply(spec: JobSpec, sec: _Section, *, in_global: bool, errors: list[JobFileError]) -> None:
    # fio parses kb_base before the section's other options, whatever its position.
    ordered = sorted(sec.options, key=lambda o: 0 if _ALIASES.get(o[0], o[0]) == "kb_base" else 1)
    for option, value, src in ordered:
        canonical = _ALIASES.get(option, option)
        entry = _OPTIONS.get(canonical)
        try:
            if entry is None:
                why = _REFUSED_WHY.get(canonical)
                raise src.error(f"option '{option}' is not supported by ioengine"
                                + (f": {why}" if why else "")
                                + " (`ioengine-bench run --list-options` lists those it runs)", option)
            if canonical == "name" and in_global:
                pass  # fio ignores a name in [global]: jobs take their section's name
            else:
                entry[0](spec, value, src, option)
        except JobFileError as e:
            errors.append(e)  # go on: every problem of the file is reported at once
            continue
        spec.sources[_RECORD_AS.get(canonical, canonical)] = src
        spec.written[option] = value if value is not None else ""
        if in_global:
            spec.global_written[option] = value if value is not None else ""
        else:
            spec.own.add(option)


def _check_job(job: JobSpec) -> list[JobFileError]:
    errors = []
    if job.time_based and job.runtime_s is None:
        src = job.sources.get("time_based", job.section)
        errors.append(src.error(f"job '{job.name}': time_based is set but runtime is not (fio refuses this "
                                f"too); add e.g. runtime=10", "time_based"))
    if job.filename is not None and job.nrfiles > 1:
        src = job.sources.get("nrfiles", job.section)
        errors.append(src.error(f"job '{job.name}': nrfiles={job.nrfiles} with one filename= is not supported "
                                f"by ioengine; drop filename= (files are named by filename_format)", "nrfiles"))
    if job.zonemode == "strided" and not job.zonesize:
        src = job.sources.get("zonemode", job.section)
        errors.append(src.error(f"job '{job.name}': zonemode=strided needs zonesize= (fio refuses it too)",
                                "zonemode"))
    if job.dedupe_percentage and job.dedupe_mode == "working_set" and (job.size is None or job.nrfiles > 1):
        src = job.sources.get("dedupe_mode", job.section)
        errors.append(src.error(f"job '{job.name}': dedupe_mode=working_set needs size= and one file (as in fio)",
                                "dedupe_mode"))
    if job.does_trims and job.verify:
        src = job.sources.get("verify", job.section)
        errors.append(src.error(f"job '{job.name}': verify with rw={job.rw} is not supported by ioengine "
                                f"(fio's trim verification)", "verify"))
    if job.verify == "pattern" and job.verify_pattern is None:
        src = job.sources.get("verify", job.section)
        errors.append(src.error(f"job '{job.name}': verify=pattern needs verify_pattern=", "verify"))
    return errors


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
