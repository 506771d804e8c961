"""The I/O plan of one clone: where each I/O goes and how big, as fio computes them — its random
map (every block once per pass), its sequential offsets (holes, backwards, ``rw_sequencer``), its
zones (``zonemode=strided``, ``random_distribution=zoned``), the block size of each I/O (``bs``,
``bsrange``, ``bssplit``) and, for a mixed job, its direction.

* random offsets come from a full-cycle generator over the region's blocks, drawn one at a time:
  every block once per pass (fio's random map) unless ``norandommap`` or a non-uniform
  ``random_distribution``; with sizes that vary, a byte per smallest block marks what the pass
  did and an I/O is cut at a block already done (fio's mark_random_map); nothing is
  precomputed per I/O, so no job blocks the loop while another job's clock runs (what must be
  precomputed is, before any clock starts);
* ``randrepeat=1`` (fio's default): every seed derives from ``randseed``, the job's number and
  clone through a fixed hash, so every run issues the same offsets and directions;
* offsets as fio's io_u.c computes them, quirks included: ``rw=read:-8k`` / ``rw=write:112k`` (holes,
  backwards), ``rw=randread:N`` with ``rw_sequencer``, ``zonemode=strided``;
"""
from __future__ import annotations

import bisect
import collections
import hashlib
import itertools
import math
import os
import random
from collections.abc import Callable, MutableSequence

from .jobfile import JobSpec

#: The direction of an I/O (fio's DDIR_READ, DDIR_WRITE, DDIR_TRIM): indexes every per-direction list.
READ, WRITE, TRIM = 0, 1, 2
DIRS = (READ, WRITE, TRIM)


# ------------------------------------------------------------------------------------------
# Seeds: fixed derivations, the same in every process (never hash() of a str, which is salted)


def derive_seed(job: JobSpec, number: int, purpose: str) -> int:
    """The seed of one random stream of clone ``number``: from randseed when randrepeat (every
    run the same), else from the OS."""
    kind = purpose.split(":", 1)[0]
    repeat = job.allrandrepeat or (job.randrepeat if kind in ("offset", "mix", "bs", "file") else False)
    if not repeat:
        return int.from_bytes(os.urandom(8), "little")
    digest = hashlib.blake2b(f"{job.randseed}:{number}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


# ------------------------------------------------------------------------------------------
# Offsets: cheap per I/O, nothing built per block


class FullCycle:
    """Every integer in [0, n) once per pass, in a scrambled order, O(1) memory and time.

    A linear congruential generator modulo the next power of two has full period (Hull–Dobell:
    c odd, a ≡ 1 mod 4); a bijective mix of its state hides the LCG's regular low bits; values
    >= n are skipped (under half of all draws).  This is fio's random map without the bitmap.
    """

    __slots__ = ("n", "_mask", "_a", "_c", "_x", "_shift", "_mul", "_left", "_rng", "_k", "on_pass")

    def __init__(self, n: int, seed: int, on_pass: Callable[[], None] | None = None) -> None:
        if n < 1:
            raise ValueError(f"FullCycle needs n >= 1, got {n}")
        self.n = n
        self.on_pass = on_pass  # called when a pass ends and the next begins (not for the first)
        self._k = k = max(2, (n - 1).bit_length())
        self._mask = (1 << k) - 1
        self._shift = max(1, k // 2)
        self._rng = random.Random(seed)
        self._new_pass()

    def _new_pass(self) -> None:
        # Each pass its own order (fio's map is cleared, its generator goes on).
        r, k = self._rng, self._k
        self._a = (r.getrandbits(k) & ~7) | 5  # a ≡ 1 (mod 4), and never 1
        self._c = r.getrandbits(k) | 1
        self._x = r.getrandbits(k)
        self._mul = r.getrandbits(k) | 1  # odd: a bijection modulo 2**k
        self._left = self.n

    def end_pass(self) -> None:
        """The pass is over before n draws (the caller's map is full): the next draw starts one."""
        self._left = 0

    def fill(self, out: MutableSequence[int], k: int, base: int, unit: int) -> int:
        """Append ``base + unit * next()`` for up to ``k`` draws of this pass (none that would
        begin the next: next() does, with its on_pass); how many."""
        k = min(k, self._left)
        if k <= 0:
            return 0
        self._left -= k
        mask, n, a, c, shift, mul = self._mask, self.n, self._a, self._c, self._shift, self._mul
        x = self._x
        append = out.append
        for _ in range(k):
            while True:
                x = (a * x + c) & mask
                y = x ^ (x >> shift)
                y = (y * mul) & mask
                y ^= y >> shift
                if y < n:
                    append(base + y * unit)
                    break
        self._x = x
        return k

    def next(self) -> int:
        if self._left == 0:
            self._new_pass()
            if self.on_pass is not None:
                self.on_pass()
        self._left -= 1
        mask, n = self._mask, self.n
        x = self._x
        while True:
            x = (self._a * x + self._c) & mask
            y = x ^ (x >> self._shift)
            y = (y * self._mul) & mask
            y ^= y >> self._shift
            if y < n:
                self._x = x
                return y


def _scatter(v: int, n: int, off: int) -> int:
    # fio hashes a distribution's rank so hot blocks are spread over the region.
    return ((v * 0x9E3779B97F4A7C15 + off) & 0xFFFFFFFFFFFFFFFF) % n


class BlockPicker:
    """Next block index in [0, n) for random I/O, by the job's random_distribution.

    ``track=True`` (the random map with block sizes that vary): what each I/O covers is marked,
    as fio's axmap, so that :meth:`claim` can keep a pass from touching a block twice."""

    __slots__ = ("n", "next", "used", "free", "_cycle", "_on_pass")

    def __init__(self, job: JobSpec, n: int, seed: int, on_pass: Callable[[], None] | None = None,
                 track: bool = False) -> None:
        self.n = n
        rng = random.Random(seed)
        dist = job.random_distribution
        off = rng.getrandbits(32)
        self.next: Callable[[], int]
        self.used: bytearray | None = None  # one byte per block, 1: covered in this pass
        self.free = n
        self._cycle: FullCycle | None = None
        self._on_pass = on_pass
        if dist == "random":
            if job.norandommap:
                self.next = lambda: rng.randrange(n)
            elif track:
                self.used = bytearray(n)
                self._cycle = FullCycle(n, seed, self._new_pass)
                self.next = self._cycle.next
            else:
                self.next = FullCycle(n, seed, on_pass).next
        elif dist == "zipf":
            self.next = _zipf(n, job.random_params[0], rng, off)
        elif dist == "pareto":
            h = job.random_params[0]
            power = math.log(h) / math.log(1.0 - h)
            self.next = lambda: _scatter(int((n - 1) * rng.random() ** power), n, off)
        elif dist == "normal":
            sigma = job.random_params[0] * n / 100.0

            def normal() -> int:
                v = int(rng.gauss(n / 2.0, sigma))
                return _scatter(min(n - 1, max(0, v)), n, off)
            self.next = normal
        else:  # zoned / zoned_abs: pick the zone by its access share, then uniformly inside it
            self.next = _zoned(job, n, rng)

    def _new_pass(self) -> None:
        self.used = bytearray(self.n)
        self.free = self.n
        if self._on_pass is not None:
            self._on_pass()

    def claim(self, b: int, blocks: int) -> tuple[int, int]:
        """fio's random map for an I/O of ``blocks`` blocks drawn at block ``b``: free_block,
        then mark. Returns (block, blocks)."""
        b = self.free_block(b)
        return b, self.mark(b, blocks)

    def free_block(self, b: int) -> int:
        """A block already covered moves to the next free one (axmap_next_free, wrapping)."""
        used = self.used
        assert used is not None
        if used[b]:
            nb = used.find(0, b + 1)
            b = nb if nb >= 0 else used.find(0, 0, b)
        return b

    def mark(self, b: int, blocks: int) -> int:
        """Mark ``blocks`` blocks from the free block ``b``, cut at the first covered one
        (mark_random_map's axmap_set_nr): the blocks marked. A full map ends the pass."""
        used = self.used
        assert used is not None and self._cycle is not None
        stop = min(b + blocks, self.n)
        hit = used.find(1, b, stop)
        if hit >= 0:
            stop = hit
        blocks = stop - b
        used[b:stop] = b"\1" * blocks
        self.free -= blocks
        if not self.free:
            self._cycle.end_pass()
        return blocks


def _zipf(n: int, theta: float, rng: random.Random, off: int) -> Callable[[], int]:
    # Gray et al.'s generator, as fio's zipf.c; zeta(n) exactly for the first terms, the rest by
    # the integral (midpoint rule) so a large region costs nothing before the clock starts.
    head = min(n, 10000)
    zetan = math.fsum(i ** -theta for i in range(1, head + 1))
    if n > head:
        zetan += ((n + 0.5) ** (1 - theta) - (head + 0.5) ** (1 - theta)) / (1 - theta)
    zeta2 = 1.0 + 2.0 ** -theta
    alpha = 1.0 / (1.0 - theta)
    eta = (1.0 - (2.0 / n) ** (1.0 - theta)) / (1.0 - zeta2 / zetan) if n > 2 else 1.0
    half = 1.0 + 0.5 ** theta

    def nxt() -> int:
        u = rng.random()
        uz = u * zetan
        if uz < 1.0:
            v = 0
        elif uz < half:
            v = 1
        else:
            v = min(n - 1, int(n * (eta * u - eta + 1.0) ** alpha))
        return _scatter(v, n, off)
    return nxt


def _zoned(job: JobSpec, n: int, rng: random.Random) -> Callable[[], int]:
    zones: list[tuple[float, int, int]] = []  # (cumulative access, first block, blocks)
    cum, first = 0.0, 0
    total_bytes = n  # zoned_abs sizes are converted to blocks by the caller's block size below
    for access, rng_part in job.random_zones:
        if job.random_distribution == "zoned":
            count = max(1, int(n * rng_part / 100.0))
        else:
            count = max(1, int(rng_part) // max(1, job.align(0)))
        count = min(count, max(1, total_bytes - first))
        cum += access
        zones.append((cum, min(first, n - 1), count))
        first += count

    def nxt() -> int:
        u = rng.random() * 100.0
        for c, start, count in zones:
            if u < c:
                return min(n - 1, start + rng.randrange(count))
        c, start, count = zones[-1]
        return min(n - 1, start + rng.randrange(count))
    return nxt


class IoPlan:
    """What one clone issues next: ``next() -> (direction, file index, offset, length)`` or
    None when done.  Pure computation (no I/O, no clock): the runner asks it once per I/O."""

    def __init__(self, job: JobSpec, regions: list[tuple[int, int]], number: int, *, time_based: bool,
                 file_sizes: list[int] | None = None, pass_bytes: int | None = None) -> None:
        self.job = job
        self.regions = regions
        self.time_based = time_based
        # fio's real_file_size: where rw=...:N offsets wrap (default: the regions' ends).
        self._sizes = file_sizes if file_sizes is not None else [s + n for s, n in regions]
        self._last_start = [[-1, -1, -1] for _ in regions]  # per file and direction (rw_sequencer=identical)
        # fio's td->ddir_seq_nr: I/Os left until a new random offset; the first I/O takes one (fio 3.33
        # issues rw=randread:4 as random, 3 sequential, random, ...).
        self._seq_nr_left = 1
        self._loops_left = job.loops
        self._strided = job.zonemode == "strided" and len(regions) == 1  # fio: strided needs one file
        self._zrange = job.zonerange or job.zonesize
        self._zone_bytes = 0
        self._zone_start = [s for s, _ in regions]
        frac = job.read_fraction
        self._frac = frac
        self._mixed = 0.0 < frac < 1.0
        self._only = READ if frac > 0 else TRIM if job.rw in ("trim", "randtrim") else WRITE
        # trimwrite / randtrimwrite: each block trimmed, then the same block written (fio counts
        # io_size in the writes: as much is trimmed as written).
        self._trimwrite = job.rw in ("trimwrite", "randtrimwrite")
        self._pending: tuple[int, int, int] | None = None
        if self._trimwrite:
            self._only = TRIM
        self._mix = random.Random(derive_seed(job, number, "mix"))
        self._bsrng = random.Random(derive_seed(job, number, "bs"))
        self._filerng = random.Random(derive_seed(job, number, "file"))
        self._random = job.is_random
        total = sum(length for _, length in regions)
        if time_based:
            self.left = 1 << 62
        elif pass_bytes is not None:  # one pass of a time_based verify job (see _Clone._timed)
            self._per_pass = self.left = pass_bytes
            self._loops_left = 1
        else:
            self._per_pass = job.io_size if job.io_size is not None else total
            self.left = self._per_pass * job.loops
        self.ios_left = job.number_ios if job.number_ios is not None else 1 << 62
        self._bs = [self._bs_chooser(d) for d in DIRS]
        # Sequential: one position per file and direction, as fio keeps last_pos per ddir.
        self._pos = [[start, start, start] for start, _ in regions]
        # Random: one picker per file and (block unit) — shared by the directions when they
        # use the same unit, like fio's one random map per file.
        self._pickers: list[dict[tuple[int, int], BlockPicker]] = [{} for _ in regions]
        self._picked: list[list[tuple[BlockPicker, int] | None]] = [[None, None, None] for _ in regions]
        self._number = number
        self._file = 0
        self._file_ios = 0
        self._nfiles = len(regions)
        # Files whose page cache the runner drops before this I/O: fio's loop_cache_invalidate
        # (io_u.c) at each pass of a time_based job, and the reopen of each loop (ioengines.c
        # td_io_open_file), both only with invalidate=1 and without O_DIRECT.
        self.drop: set[int] = set()
        self._drop_cache = job.invalidate and not job.direct
        self._loop_mark: int | None = None  # bytes left when the next loop begins
        if self._drop_cache and not time_based and pass_bytes is None and job.loops > 1:
            self._loop_mark = self._per_pass * (job.loops - 1)
        # The plainest jobs (one file, one direction, one size, no zones, no rw=...:N, no
        # trimwrite, no loop marks) take a short path in next() for every I/O that neither
        # wraps nor ends a pass: what the general path would compute, without its tests (the
        # job loop's own cost per I/O counts against a page-cache hit's few microseconds).
        lo, hi = job.block_sizes(self._only)
        one_size = lo == hi and (not self._mixed or job.block_sizes(READ) == job.block_sizes(WRITE))
        self._takes = (len(regions) == 1 and not self._strided and self._only != TRIM and job.rw_seq_nr <= 1
                       and one_size and self._loop_mark is None and (job.rw_add == 0 or not self._random)
                       and not (self._mixed and job.rw_add))
        # rw=read:N (a hole or a step back between reads) and mixed jobs: take() follows them,
        # next()'s short path does not
        self._plain = self._takes and job.rw_add == 0 and not self._mixed
        self._plain_n = lo
        self._plain_end = regions[0][0] + regions[0][1] if regions else 0
        #: take()'s I/Os, in plan order, for the job's slots to issue (shared: fio's order): their
        #: offsets, or for a mixed job (:attr:`mixed`) ``offset << 1 | direction`` (READ 0, WRITE 1)
        self.queued: collections.deque[int] = collections.deque()
        self._held: int | None = None  # drawn by take(), issued after the cache drop it asked for

    @property
    def mixed(self) -> bool:
        """Reads and writes both (each I/O's direction drawn by rwmixread)."""
        return self._mixed

    @property
    def direction(self) -> int:
        """The direction of every I/O of a job that is not :attr:`mixed`."""
        return self._only

    @property
    def plain(self) -> int | None:
        """The one size of every I/O when they can be taken in batches (:meth:`take`): one file,
        reads, writes or both (not trims), no zones; a size cut at the region's end aside."""
        return self._plain_n if self._takes else None

    def take(self, k: int) -> int:
        """Queue (:attr:`queued`) up to ``k`` I/Os, exactly those that ``k`` calls of next()
        would give; how many. 0: next() gives the next I/O (a wrap, a new pass, the end). An I/O
        whose draw began a random pass that drops the file's cache is held back for the next
        call, so that the caller drops (:attr:`drop`) before issuing it."""
        if not self._takes or self.left <= 0 or self.ios_left <= 0:
            return 0
        n = self._plain_n
        out = self.queued
        if self._held is not None:
            out.append(self._held)
            self._held = None
            return 1
        k = min(k, -(-self.left // n), self.ios_left)
        if self._random:
            got = self._take_random(out, k, n)
        elif self.job.rw_add:
            got = self._take_stepped(out, k, self._only, n)
        else:
            got = self._take_sequential(out, k, n)
        if not got:
            return 0
        self.left -= got * n
        self.ios_left -= got
        return got - (self._held is not None)

    def _directions(self, k: int) -> list[int]:
        """The next ``k`` I/Os' directions, drawn as next() draws them."""
        if not self._mixed:
            return [self._only] * k
        mix, frac = self._mix.random, self._frac
        return [READ if mix() < frac else WRITE for _ in range(k)]

    def _take_random(self, out: collections.deque[int], k: int, n: int) -> int:
        picker, unit = self._picker(0, self._only)
        if picker.used is not None or unit != n or self._mixed and self._picker(0, 1 - self._only)[0] is not picker:
            return 0  # a map to mark, or a map per direction: next()
        mixed = self._mixed
        base = self.regions[0][0] << 1 if mixed else self.regions[0][0]  # the entries' form (queued)
        step = unit << 1 if mixed else unit
        draw = picker.next
        cycle = getattr(draw, "__self__", None)
        items: collections.deque[int] | list[int] = collections.deque()
        held = False
        if type(cycle) is FullCycle:  # the random map of one size: a pass's draws at once
            cycle.fill(items, k, base, step)
        if not items:  # a draw at a time, the first of a pass (its on_pass) among them
            drop = self.drop
            before = len(drop)
            while len(items) < k and not held:
                items.append(base + draw() * step)
                held = len(drop) != before  # begins a pass that drops the cache: held back
        got = len(items)
        if mixed:
            items = [x | d for x, d in zip(items, self._directions(got))]
            for d in (READ, WRITE):  # where each direction's last I/O went (next()'s books)
                last = next((x >> 1 for x in reversed(items) if x & 1 == d), None)
                if last is not None:
                    self._last_start[0][d] = last
                    self._pos[0][d] = last + n
        else:
            self._last_start[0][self._only] = items[-1]
            self._pos[0][self._only] = items[-1] + n
        if held:
            self._held = items.pop()
        out.extend(items)
        return got

    def _take_sequential(self, out: collections.deque[int], k: int, n: int) -> int:
        p = self._pos[0]
        end = self._plain_end
        dirs = (READ, WRITE) if self._mixed else (self._only,)
        k = min(k, *((end - p[d]) // n for d in dirs))  # no direction reaches the end: no wrap
        if k <= 0:
            return 0
        if not self._mixed:
            d = self._only
            off = p[d]
            out.extend(range(off, off + k * n, n))
            p[d] = off + k * n
            self._last_start[0][d] = off + (k - 1) * n
            return k
        for d in self._directions(k):
            off = p[d]
            out.append(off << 1 | d)
            self._last_start[0][d] = off
            p[d] = off + n
        return k

    def _bs_chooser(self, d: int) -> Callable[[int], int]:
        """The size of the next I/O, given the bytes ``room`` left before the region's end: fio's
        get_next_buflen, whose draw is repeated (or, for bssplit, moves to the next entry) until
        the size fits (io_u_fits), with room for the smallest (the caller makes sure of that)."""
        job = self.job
        lo, hi = job.block_sizes(d)
        if lo == hi:
            return lambda room: lo  # fio: one size, no fit check
        r = self._bsrng
        if job.bssplit is None:
            # min + max * U, rounded down to a multiple of min, capped at max.
            def ranged(room: int) -> int:
                while True:
                    n = min(hi, (lo + int(hi * r.random())) // lo * lo)
                    if n <= room:
                        return n
            return ranged
        # fio's bssplit_ddir sorts the entries by percentage (bs_cmp; stable here), a 0% entry
        # is never drawn (but counts in min_bs / max_bs); each size is rounded down to a multiple
        # of min_bs, capped at max_bs.
        split = [e for e in sorted(job.bssplit[min(d, WRITE)], key=lambda e: e[1]) if e[1]]
        sizes = [b for b, _ in split]
        issued = [min(hi, b // lo * lo) for b in sizes]
        cum = list(itertools.accumulate(p for _, p in split))
        total = cum[-1]
        last = len(sizes) - 1

        def split_size(room: int) -> int:
            # One draw per I/O against the cumulative percentages; a size that does not fit
            # gives way to the next entry that does, else the last entry's (drawn again if it
            # does not fit once rounded).
            for _ in range(1000):  # a split whose sizes never fit would spin fio forever
                i = bisect.bisect_right(cum, r.random() * total)
                while sizes[i] > room and i < last:
                    i += 1
                if issued[i] <= room:
                    return issued[i]
            return room // lo * lo
        return split_size

    def _picker(self, fi: int, d: int) -> tuple[BlockPicker, int]:
        got = self._picked[fi][d]  # block_sizes() builds lists: not once per I/O
        if got is not None:
            return got
        job = self.job
        unit = job.align(d)
        lo, hi = job.block_sizes(d)
        # Writes must not overlap within a pass to be checkable: blocks of the smallest size,
        # which fio's random map cuts the larger writes at (below), else whole largest blocks.
        mapped = unit == lo and (lo == hi or job.random_distribution == "random" and not job.norandommap)
        if job.verify and not mapped:
            unit = max(unit, *(job.block_sizes(x)[1] for x in (READ, WRITE)))
            lo = unit
        key = (unit, lo)
        p = self._pickers[fi].get(key)
        if p is None:
            _, length = self.regions[fi]
            if self._strided:  # fio draws random offsets inside the current zone
                length = min(length, self._zrange)
            n = max(1, (length - lo) // unit + 1)
            # fio's get_next_rand_block: a time_based job's random map, used up, is reset and the
            # file's cache dropped.
            on_pass = (lambda: self.drop.add(fi)) if self._drop_cache and self.time_based else None
            # Sizes that vary: fio's random map cuts an I/O at a block already done this pass
            # (mark_random_map); one size needs no map, the full cycle is it.
            track = unit == lo and any(self.job.block_sizes(x)[0] == lo != self.job.block_sizes(x)[1]
                                       for x in DIRS)
            p = BlockPicker(self.job, n, derive_seed(self.job, self._number, f"offset:{fi}:{unit}:{lo}"),
                            on_pass, track)
            self._pickers[fi][key] = p
        got = self._picked[fi][d] = (p, unit)
        return got

    def prepare(self) -> None:
        """Build what the first draws would (zipf's zeta etc.) now, before any clock runs."""
        for fi in range(self._nfiles):
            for d in DIRS:
                if self._random and (d == self._only or self._mixed and d != TRIM):
                    self._picker(fi, d)

    def _next_file(self) -> int:
        if self._nfiles == 1:
            return 0
        kind = self.job.file_service_type
        self._file_ios += 1
        if self._file_ios > self.job.file_service_nr or kind == "random" and self._file_ios == 1:
            self._file_ios = 1
            if kind == "random":
                self._file = self._filerng.randrange(self._nfiles)
            elif kind == "roundrobin":
                self._file = (self._file + 1) % self._nfiles
        return self._file

    def _zone(self, fi: int, d: int) -> None:
        """zonemode=strided, as fio's setup_strided_zone_mode: after zonesize bytes, the zone start
        moves by zonerange + zoneskip (back to the region's start past the file's end)."""
        job = self.job
        if self._zone_bytes >= job.zonesize:
            self._zone_bytes = 0
            z = self._zone_start[fi] + self._zrange + job.zoneskip
            if z >= self._sizes[fi]:
                z = self.regions[fi][0]
            self._zone_start[fi] = z
            self._pos[fi][d] = z
        if self._pos[fi][d] >= self._zone_start[fi] + self._zrange:
            self._pos[fi][d] = self._zone_start[fi]

    def _seq_offset(self, fi: int, d: int, base: int, length: int) -> int | None:
        """fio's get_next_seq_offset with rw=...:N bytes (ddir_seq_add): the next offset, or None
        when it falls past the region (fio ends the pass there; a time_based job starts over)."""
        # fio's arithmetic kept as it is, quirks included: the relative offset is compared with
        # the file's absolute size, and a rewind sets the absolute position to a length.
        add = self.job.rw_add
        real = self._sizes[fi]
        last = self._pos[fi][d]
        if last >= base + length and self.time_based:
            last = base
            self._seq_wrapped(fi)
        top = length if real > length else real
        if last == base and base and add < 0:  # only rewind once the start was reached
            last = top
        pos = last - base
        if pos and add:
            pos += add
            if pos < 0 or pos >= real:  # fio's unsigned wrap: backwards to the end, forwards to the start
                pos = top + add if add < 0 else base  # (fio's quirk: the start is the absolute offset)
        if pos < 0 or pos >= length:
            return None
        return base + pos

    def _sequential(self, fi: int, d: int, base: int, length: int) -> int | None:
        if self.job.rw_add == 0:
            pos = self._pos[fi][d]
            if pos + self.job.block_sizes(d)[0] > base + length:
                pos = base
                self._seq_wrapped(fi)
                if self.job.file_service_type == "sequential" and self._nfiles > 1:
                    self._file = (self._file + 1) % self._nfiles
            return pos
        nxt = self._seq_offset(fi, d, base, length)
        if nxt is None and self.time_based:
            self._pos[fi][d] = base
            nxt = self._seq_offset(fi, d, base, length)
        return nxt

    def _seq_wrapped(self, fi: int) -> None:
        # fio's get_next_seq_offset: a time_based job with one file back at its start drops the
        # file's cache (not a zone's start: strided zones wrap in setup_strided_zone_mode).
        if self._drop_cache and self.time_based and self._nfiles == 1 and not self._strided:
            self.drop.add(fi)

    def _new_pass(self) -> bool:
        """A pass of a rw=...:N job ran out of offsets before its bytes: fio goes on with the next
        loop from the start (False: that was the last)."""
        self._loops_left -= 1
        if self._loops_left <= 0:
            self.left = 0
            return False
        self.left = self._per_pass * self._loops_left
        if self._drop_cache:  # a new loop reopens the files, which drops their cache
            self.drop.update(range(self._nfiles))
            if self._loop_mark is not None:
                self._loop_mark = self._per_pass * (self._loops_left - 1)
        for fi, (start, _) in enumerate(self.regions):
            self._pos[fi] = [start, start, start]
            self._zone_start[fi] = start
        return True

    def _take_stepped(self, out: collections.deque[int], k: int, d: int, n: int) -> int:
        """take() for rw=read:N: _seq_offset's steps while they stay inside the region (its
        edges, where fio's arithmetic wraps or rewinds, are left to next()); how many."""
        add = self.job.rw_add
        base, length = self.regions[0]
        real = self._sizes[0]
        p = self._pos[0]
        last = p[d]
        got = 0
        while got < k and base < last < base + length:
            pos = last - base + add
            if pos < 0 or pos >= real or pos >= length or pos + n > length:
                break
            out.append(base + pos)
            last = base + pos + n
            got += 1
        if got:
            p[d] = last
            self._last_start[0][d] = last - n
        return got

    def next(self) -> tuple[int, int, int, int] | None:
        if self._held is not None:  # take()'s, counted already
            held, self._held = self._held, None
            if self._mixed:
                return held & 1, 0, held >> 1, self._plain_n
            return self._only, 0, held, self._plain_n
        if self._plain and self.left > 0 and self.ios_left > 0:
            d = self._only
            n = self._plain_n
            if self._random:
                picker, unit = self._picker(0, d)
                if picker.used is None and unit == n:  # no map to mark; a drawn block always fits
                    off = self.regions[0][0] + picker.next() * unit
                    self._last_start[0][d] = off
                    self._pos[0][d] = off + n
                    self.left -= n
                    self.ios_left -= 1
                    return d, 0, off, n
            else:
                p = self._pos[0]
                off = p[d]
                if off + n <= self._plain_end:  # else: wraps, or a new pass (the general path)
                    p[d] = off + n
                    self._last_start[0][d] = off
                    self.left -= n
                    self.ios_left -= 1
                    return d, 0, off, n
        if self._pending is not None:  # trimwrite: the write of the block just trimmed
            done = self._pending
            self._pending = None
            self.left -= done[2]
            self.ios_left -= 1
            return WRITE, *done
        if self.left <= 0 or self.ios_left <= 0:
            return None
        if self._loop_mark is not None and self.left <= self._loop_mark:
            # loops=N: the next loop begins; fio reopens the files (td_io_open_file drops their cache)
            self.drop.update(range(self._nfiles))
            while self._loop_mark > 0 and self.left <= self._loop_mark:
                self._loop_mark -= self._per_pass
        d = (READ if self._mix.random() < self._frac else WRITE) if self._mixed else self._only
        fi = self._next_file()
        start, length = self.regions[fi]
        if self._strided:
            self._zone(fi, d)
            base = self._zone_start[fi]
            length = min(self._zrange, start + length - base) if base >= start else self._zrange
        else:
            base = start
        end = base + length
        # rw=randX:N: a new random offset every N I/Os only; the others follow rw_sequencer.
        fresh = True
        if self.job.rw_seq_nr > 1:
            self._seq_nr_left -= 1
            fresh = self._seq_nr_left == 0
            if fresh:
                self._seq_nr_left = self.job.rw_seq_nr
        pos: int | None
        n = 0
        if self._random and fresh:
            # fio's fill_io_u: the offset (a free block of the map), then the size that fits
            # there, then the map marked, which cuts it at a block already done.
            picker, unit = self._picker(fi, d)
            b = picker.next()
            if picker.used is not None:
                b = picker.free_block(b)
                n = self._bs[d](end - base - b * unit)
                n = min(n, picker.mark(b, -(-n // unit)) * unit)
            pos = base + b * unit
        elif self._random and self.job.rw_sequencer == "identical":
            last = self._last_start[fi][d]
            pos = last if last >= 0 else base
        else:
            pos = self._sequential(fi, d, base, length)
            if pos is None and self._random:  # fio: no sequential offset left, take a random one
                picker, unit = self._picker(fi, d)
                pos = base + picker.next() * unit
            while pos is None:
                if not self._new_pass():
                    return None
                pos = self._sequential(fi, d, self.regions[fi][0], self.regions[fi][1])
                end = self.regions[fi][0] + self.regions[fi][1]
        if not n:
            n = self._bs[d](end - pos)
        if pos + n > end:  # not even the smallest size fits: shortened (fio ends the pass there)
            lo = self.job.block_sizes(d)[0]
            n = max(lo, (end - pos) // lo * lo)
        self._pos[fi][d] = pos + n
        self._last_start[fi][d] = pos
        self._zone_bytes += n
        if self._trimwrite:
            self._pending = (fi, pos, n)
            return d, fi, pos, n
        self.left -= n
        self.ios_left -= 1
        return d, fi, pos, n
