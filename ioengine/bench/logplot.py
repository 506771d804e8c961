"""Plot fio-format per-I/O logs (write_bw_log / write_lat_log / write_iops_log): ours or fio's.

    ioengine-bench plot LOG [LOG ...] --out FILE.png [--avg-ms 100]

Each line of such a log is ``time (ms), value, direction (0 read, 1 write, 2 trim), block size,
...`` (the rest: offset and priority, unused here). The kind comes from the file name as fio
writes it (``PREFIX_bw.N.log``, ``_lat``, ``_clat``, ``_slat``, ``_iops``): bandwidth in KiB/s,
latency in ns, IOPS. One panel per kind, one line per file and direction, over ``avg_ms``
windows: a log of a million I/Os stays readable, and per-I/O bandwidth/IOPS samples become what
the job did per window (what fio's own ``fio_generate_plots`` draws with gnuplot).
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LogError", "LogSeries", "read_log", "plot_logs"]

_KIND = re.compile(r"_(bw|lat|clat|slat|iops)(\.\d+)?\.log$")
#: (axis label, divisor from the log's unit) per kind
_UNITS = {"bw": ("bandwidth (MiB/s)", 1024.0), "lat": ("latency (µs)", 1000.0), "clat": ("latency (µs)", 1000.0),
          "slat": ("latency (µs)", 1000.0), "iops": ("IOPS", 1.0)}
_DIRECTIONS = {0: "read", 1: "write", 2: "trim"}


class LogError(ValueError):
    """A log that is not in fio's format: names the file and the line."""


@dataclass(frozen=True)
class LogSeries:
    path: str
    kind: str  # bw, lat, clat, slat, iops
    samples: dict[int, list[tuple[int, int, int]]]  # direction -> [(time ms, value, block size)]


def log_kind(path: str) -> str:
    m = _KIND.search(os.path.basename(path))
    if m is None:
        raise LogError(f"{path}: not a fio log name (expected PREFIX_bw.N.log, _lat, _clat, _slat or _iops)")
    return m.group(1)


def read_log(path: str) -> LogSeries:
    """The samples of one log; LogError (file, line, what was expected) for anything else."""
    kind = log_kind(path)
    samples: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = [p.strip() for p in line.split(",")]
                try:
                    t, v, d = int(parts[0]), int(parts[1]), int(parts[2])
                    bs = int(parts[3]) if len(parts) > 3 else 0
                except (ValueError, IndexError):
                    raise LogError(f"{path}:{n}: expected 'time, value, direction, block size, ...' "
                                   f"(integers), got {line.strip()[:80]!r}") from None
                samples[d].append((t, v, bs))
    except OSError as e:
        raise LogError(f"{path}: cannot read it ({e.strerror})") from None
    return LogSeries(path, kind, dict(samples))  # may be empty: fio writes empty slat logs, e.g.


def averaged(points: list[tuple[int, int, int]], kind: str, avg_ms: int) -> tuple[list[float], list[float]]:
    """Per window of ``avg_ms``: seconds at its end, and the value. Latency: the mean. Per-I/O
    samples (a block size on each line: fio's logs without log_avg_msec) of bandwidth and IOPS
    become what the job did in the window (bytes or I/Os over its length, in the log's units);
    averaged samples (block size 0) are means. Rates count whole windows only."""
    if avg_ms <= 0:
        return [t / 1000 for t, _, _ in points], [float(v) for _, v, _ in points]
    per_io = kind in ("bw", "iops") and all(bs > 0 for _, _, bs in points[:100])
    acc: dict[int, list[int]] = {}
    for t, v, bs in points:
        a = acc.setdefault(t // avg_ms, [0, 0, 0])
        a[0] += v
        a[1] += 1
        a[2] += bs
    last = max(t for t, _, _ in points) // avg_ms  # the window still open when the log ended
    xs, ys = [], []
    for k in sorted(acc):
        total, count, nbytes = acc[k]
        if per_io:
            if k == last and len(acc) > 1:
                continue
            ys.append(nbytes * 1000 / avg_ms / 1024 if kind == "bw" else count * 1000 / avg_ms)
        else:
            ys.append(total / count)
        xs.append((k + 1) * avg_ms / 1000)
    return xs, ys


def plot_logs(paths: Sequence[str], out: str, avg_ms: int = 100) -> None:
    """Write a PNG of ``paths`` to ``out``. LogError for a bad log, ImportError naming matplotlib."""
    if not paths:
        raise LogError("no log to plot")
    series = [s for s in (read_log(p) for p in paths) if s.samples]  # every file checked before drawing
    if not series:
        raise LogError(f"no samples in {', '.join(paths)}")
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(f"plot needs matplotlib ({e}); pip install 'ioengine[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({s.kind for s in series}, key=list(_UNITS).index)
    fig, axes = plt.subplots(len(kinds), 1, figsize=(10, 3.2 * len(kinds)), sharex=True, squeeze=False)
    for ax, kind in zip(axes[:, 0], kinds):
        label, div = _UNITS[kind]
        for s in (s for s in series if s.kind == kind):
            for d, pts in sorted(s.samples.items()):
                xs, ys = averaged(pts, kind, avg_ms)
                ax.plot(xs, [y / div for y in ys], label=f"{os.path.basename(s.path)} {_DIRECTIONS.get(d, d)}")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    axes[-1, 0].set_xlabel("time (s)" + (f", {avg_ms} ms windows" if avg_ms > 0 else ""))
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
