"""iotune --compare-fio: fio on the same file, the same pattern, depth, warm-up and window.

fio runs right after ioengine's phase, on the same test file, with its engine matched to the
reactor's backend (io_uring ↔ io_uring, linux-aio ↔ libaio, threads ↔ psync with one job per
pool thread), ``--ramp_time`` as the warm-up and ``--runtime`` as the window.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from ioengine.bench.fio_json import FioError, fio_version, run_fio

from .iotune_measure import Workload

__all__ = ["FioError", "FioFigure", "fio_args", "fio_available", "fio_jobs", "run_fio_workload"]


@dataclass(frozen=True, slots=True)
class FioFigure:
    iops: float
    bandwidth: float  # bytes/s
    cpu: float  # fio's usr+sys, share of one core (0..1)
    sequential: bool

    @property
    def value(self) -> float:
        return self.bandwidth if self.sequential else self.iops


def fio_available() -> str | None:
    """fio's version string, or None when fio is not installed."""
    try:
        return fio_version()
    except Exception:  # noqa: BLE001 - any failure means: no usable fio
        return None


def _fio_path(path: str) -> str:
    # fio splits --filename on ':' (several files); escape it
    return os.path.abspath(path).replace(":", "\\:")


def fio_jobs(wl: Workload, backend: str, threads: int = 4) -> int:
    """fio's numjobs for a phase: one, or with the threads backend one psync job per pool thread."""
    return max(1, min(threads, wl.depth)) if backend == "threads" else 1


def fio_args(path: str, size: int, wl: Workload, warmup: float, seconds: float, backend: str,
             threads: int = 4, iomem: str = "malloc") -> list[str]:
    """fio's command line (without the executable) for one iotune phase; ``iomem``: fio's buffer
    memory (see :func:`fio_iomem`)."""
    args = [
        f"--name=iotune-{wl.phase}", f"--filename={_fio_path(path)}", f"--size={size}", "--direct=1",
        f"--rw={wl.rw}", f"--bs={wl.bs}", "--time_based",
        f"--runtime={max(1, round(seconds * 1000))}ms", f"--ramp_time={max(0, round(warmup * 1000))}ms",
        "--norandommap", "--randrepeat=0", "--fallocate=none", "--group_reporting", f"--iomem={iomem}",
    ]
    if wl.write:
        args.append("--end_fsync=1")  # as iotune flushes after its write phases: the next phase starts clean
    if backend == "threads":
        # psync: one I/O per job at a time; the pool's threads are the jobs
        args += ["--ioengine=psync", f"--numjobs={fio_jobs(wl, backend, threads)}"]
    else:
        args += [f"--ioengine={'libaio' if backend == 'linux-aio' else 'io_uring'}", f"--iodepth={wl.depth}"]
    return args


def run_fio_workload(path: str, size: int, wl: Workload, warmup: float, seconds: float, backend: str,
                     threads: int = 4, iomem: str = "malloc") -> FioFigure:
    """Run fio for one phase; raises :class:`FioError` (with fio's own message) when it fails."""
    res = run_fio(fio_args(path, size, wl, warmup, seconds, backend, threads, iomem),
                  timeout=warmup + seconds + 60)
    d = res.total("write" if wl.write else "read")
    job_seconds = sum(j.runtime_ms for j in res.jobs) / 1000 if getattr(res, "jobs", None) else 0.0
    try:
        cpu = res.cpu_seconds() / job_seconds if job_seconds else float("nan")
    except Exception:  # noqa: BLE001 - CPU is informative only
        cpu = float("nan")
    return FioFigure(d.iops, d.bw_bytes, cpu, wl.sequential)
