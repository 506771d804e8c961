"""iotune: what the user sees — progress lines, warnings, the progress bar and the summary tables.

Plain lines go to stdout as each figure lands (Seastar's style), warnings to stderr. A rich progress
bar is drawn on stderr only when stderr is a terminal, so pipes, logs and tests get plain text.
"""
from __future__ import annotations

import contextlib
import math
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from .iotune_measure import PhaseResult, fmt_size

PHASE_ORDER = ("seq_write", "seq_read", "rand_write", "rand_read")


def fmt_value(phase: str, v: float) -> str:
    if math.isnan(v):
        return "-"
    return f"{v / 1e6:,.0f} MB/s" if phase.startswith("seq") else f"{v:,.0f} IOPS"


def cov(xs: list[float]) -> float:
    """Coefficient of variation (sample standard deviation over the mean); NaN with < 2 values."""
    if len(xs) < 2:
        return math.nan
    m = statistics.fmean(xs)
    return statistics.stdev(xs) / m if m else math.nan


@dataclass(slots=True)
class Calibration:
    """One pass of the four phases on one disk, with fio's figures when compared."""

    phases: dict[str, PhaseResult] = field(default_factory=dict)
    fio: dict[str, object] = field(default_factory=dict)  # phase → FioFigure, or the error text


class Reporter:
    def __init__(self, out: TextIO | None = None, err: TextIO | None = None, progress: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        if progress is None:
            progress = bool(getattr(self.err, "isatty", lambda: False)())
        self._progress_on = progress
        self._progress: Any = None  # a rich Progress while one is shown

    # -- lines -----------------------------------------------------------------------------

    def info(self, msg: str) -> None:
        self._print(self.out, msg)

    def warn(self, msg: str) -> None:
        self._print(self.err, f"iotune: warning: {msg}")

    def _print(self, stream: TextIO, msg: str) -> None:
        if self._progress is not None:
            self._progress.console.print(msg, markup=False, highlight=False)
        else:
            print(msg, file=stream, flush=True)

    # -- progress --------------------------------------------------------------------------

    @contextlib.contextmanager
    def progress_bar(self) -> Iterator[None]:
        """Draw the bar on stderr for the duration of the run (only when stderr is a terminal)."""
        if not self._progress_on:
            yield
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = Console(file=self.err)
        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as p:
            self._progress = p
            try:
                yield
            finally:
                self._progress = None

    @contextlib.contextmanager
    def task(self, description: str, seconds: float):
        """A progress task lasting about ``seconds``; yields the callback(elapsed) or None."""
        p = self._progress
        if p is None:
            yield None
            return
        tid = p.add_task(description, total=max(seconds, 1e-3))

        def update(elapsed: float) -> None:
            p.update(tid, completed=min(elapsed, seconds))

        try:
            yield update
        finally:
            p.remove_task(tid)

    # -- tables ----------------------------------------------------------------------------

    def _console(self):
        from rich.console import Console

        isatty = bool(getattr(self.out, "isatty", lambda: False)())
        return Console(file=self.out, width=None if isatty else 132, highlight=False,
                       force_terminal=False if not isatty else None)

    def summary(self, title: str, runs: list[Calibration], compared: bool) -> None:
        """The figures of one disk: per phase the value, its spread, the loop's CPU; fio and the ratio;
        with several runs the median, each run and the coefficient of variation."""
        from rich.table import Table

        t = Table(title=title, title_justify="left")
        t.add_column("phase")
        t.add_column("pattern")
        many = len(runs) > 1
        t.add_column("ioengine" + (" (median)" if many else ""), justify="right")
        if many:
            t.add_column("runs", justify="right")
            t.add_column("CoV", justify="right")
        else:
            t.add_column("spread", justify="right")
        t.add_column("loop CPU", justify="right")
        if compared:
            t.add_column("fio" + (" (median)" if many else ""), justify="right")
            if many:
                t.add_column("fio CoV", justify="right")
            t.add_column("ratio", justify="right")
        for ph in PHASE_ORDER:
            results = [r.phases[ph] for r in runs if ph in r.phases]
            if not results:
                continue
            wl = results[0].workload
            vals = [r.value for r in results]
            med = statistics.median(vals)
            row = [wl.title, f"{fmt_size(wl.bs)} QD{wl.depth}", fmt_value(ph, med)]
            if many:
                row.append(", ".join(fmt_value(ph, v).split()[0] for v in vals))
                c = cov(vals)
                row.append("-" if math.isnan(c) else f"{c * 100:.1f} %")
            else:
                row.append(f"{results[0].spread * 100:.1f} %")
            row.append(f"{max(r.loop_cpu for r in results) * 100:.0f} %")
            if compared:
                figs = [r.fio.get(ph) for r in runs]
                nums = [f.value for f in figs if hasattr(f, "value")]
                if nums:
                    fmed = statistics.median(nums)
                    row.append(fmt_value(ph, fmed))
                    if many:
                        c = cov(nums)
                        row.append("-" if math.isnan(c) else f"{c * 100:.1f} %")
                    row.append(f"{med / fmed:.2f}x" if fmed else "-")
                else:
                    err = next((str(f) for f in figs if f is not None), "not run")
                    row += ["failed"] + (["-"] if many else []) + [err[:40]]
            t.add_row(*row)
        self._console().print(t)
