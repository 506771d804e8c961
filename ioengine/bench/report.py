"""Render a compare :class:`~ioengine.bench.compare.Matrix`: terminal table, Markdown, JSON, PNG chart."""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Any, TextIO

from .compare import LOOP_SIDES, Matrix, RowResult, Sample, engine_sides, ratio, side_label

_NA = "-"


def _num(x: float | None, digits: int = 0) -> str:
    if x is None or math.isnan(x):
        return _NA
    return f"{x:,.{digits}f}".replace(",", " ")


def _lat(s: Sample | None) -> str:
    if s is None or math.isnan(s.p50_us):
        return _NA
    return "/".join(_num(v, 1 if v < 100 else 0) for v in (s.p50_us, s.p99_us, s.p999_us))


def _x(r: float, sym: str) -> str:
    return _NA if math.isnan(r) else f"{r:.2f}{sym}"


def matrix_engines(m: Matrix) -> list[str]:
    """The ioengine sides (one per loop) any row of ``m`` has, in loop order; at least "ioengine"."""
    return engine_sides([side for r in m.rows for side in r.samples]) or ["ioengine"]


_LOOP_OF = {side: loop for loop, side in LOOP_SIDES.items()}


def _loops_note(m: Matrix, engines: list[str], unicode: bool) -> str:
    """Which loop each ioengine side ran on, e.g. "ioengine = asyncio's default loop; ioengine·uvloop = uvloop 0.21"."""
    parts = []
    for e in engines:
        if _LOOP_OF.get(e) == "uvloop":
            version = m.meta.get("uvloop")
            parts.append(f"{side_label(e, unicode)} = the same runs under uvloop{' ' + version if version else ''}")
        else:
            parts.append(f"{side_label(e, unicode)} = asyncio's default loop")
    return "; ".join(parts)


def columns(m: Matrix, *, unicode: bool) -> tuple[list[str], list[list[str]], list[str]]:
    """(headers, rows of cells, footnotes) shared by the terminal and Markdown renderers.

    Each figure has one column per ioengine side (one per loop), then fio's, then the ratios to
    fio; with both loops the ratio headers name the loop, e.g. "IOPS ×fio (uvloop)"."""
    us, x = ("µs", "×") if unicode else ("us", "x")
    caio = any("caio" in r.samples or "caio" in r.skipped for r in m.rows)
    engines = matrix_engines(m)
    label = {e: side_label(e, unicode) for e in engines}
    tag = {e: f" ({_LOOP_OF.get(e, e)})" if len(engines) > 1 else "" for e in engines}
    headers = ["row", *(f"IOPS {label[e]}" for e in engines), "IOPS fio", *(f"IOPS {x}fio{tag[e]}" for e in engines),
               *(f"MB/s {label[e]}" for e in engines), "MB/s fio",
               *(f"lat p50/p99/p99.9 {us} {label[e]}" for e in engines), f"lat p50/p99/p99.9 {us} fio",
               *(f"p50 {x}fio{tag[e]}" for e in engines),
               *(f"CPU-{us}/IO {label[e]}" for e in engines), f"CPU-{us}/IO fio",
               *(f"CPU {x}fio{tag[e]}" for e in engines)]
    if caio:
        headers += ["IOPS caio", f"caio {x}fio", f"CPU-{us}/IO caio"]
    cells: list[list[str]] = []
    for r in m.rows:
        f = r.median("fio")
        med = {e: r.median(e) for e in engines}
        rat = {e: r.ratios(e) for e in engines}

        def each(attr: str, digits: int, med: dict = med) -> list[str]:
            return [_num(getattr(med[e], attr) if med[e] else None, digits) for e in engines]

        line = [r.row.title,
                *each("iops", 0), _num(f.iops if f else None), *(_x(rat[e]["iops"], x) for e in engines),
                *each("mb_per_s", 1), _num(f.mb_per_s if f else None, 1),
                *(_lat(med[e]) for e in engines), _lat(f), *(_x(rat[e]["p50_us"], x) for e in engines),
                *each("cpu_us_per_io", 2), _num(f.cpu_us_per_io if f else None, 2),
                *(_x(rat[e]["cpu_us_per_io"], x) for e in engines)]
        if caio:
            c = r.median("caio")
            crat = r.ratios("caio")
            line += [_num(c.iops) if c else "skipped", _x(crat["iops"], x),
                     _num(c.cpu_us_per_io, 2) if c else _NA]
        cells.append(line)
    meta = m.meta
    notes = [
        f"Medians of {meta['rounds']} rounds of {meta['seconds']:g} s per side, alternating "
        f"{', '.join(label.values())} and fio "
        f"({meta.get('fio') or 'fio'}, ioengine={meta['fio_engine']}, direct=1) on {meta['file']} "
        f"({meta['size'] >> 20} MiB); reactor backend {meta['backend']}; {meta['cpus']} CPUs, "
        f"Linux {meta['kernel']}, {meta['date']}.",
        f"Loops: {_loops_note(m, engines, unicode)}.",
        "Latency: ioengine times each I/O around its await (streams: from submission to the reaped completion); "
        "fio's is lat (slat + clat: from the I/O's preparation to its reaped completion). "
        + _cpu_note(m, us) + "Ratios are each ioengine side / fio (for CPU and latency, lower is "
        "better).",
        *meta.get("notes", ()),
    ]
    for r in m.rows:
        if r.row.fio_note:
            notes.append(f"{r.row.title}: {r.row.fio_note}.")
    if caio:
        reasons = sorted({why for r in m.rows for side, why in r.skipped.items() if side == "caio"})
        notes.append("caio: buffered I/O (caio cannot do O_DIRECT), so it reads the page cache once warm; "
                     "random file-API rows only." + ("" if not reasons else " Skipped: " + "; ".join(reasons)))
    return headers, cells, notes


def tall(m: Matrix, *, unicode: bool = False) -> tuple[list[str], list[list[list[str]]], list[str]]:
    """The terminal layout: per row one line per side (each ioengine loop, fio, caio) and a ratio
    line per side but fio (narrow enough for 100 columns). Returns (headers, per matrix row its
    lines of cells, footnotes). ``unicode``: "ioengine·uvloop" rather than "ioengine-uvloop"."""
    _, _, notes = columns(m, unicode=False)
    if unicode:  # the side names as the lines below spell them
        ascii_names = {side_label(e, False): side_label(e, True) for e in matrix_engines(m)}
        for a, u in ascii_names.items():
            notes = [n.replace(a, u) for n in notes]
    headers = ["row", "", "IOPS", "MB/s", "p50 us", "p99 us", "p99.9 us", "CPU-us/IO"]
    out: list[list[list[str]]] = []
    for r in m.rows:
        lines = []
        sides = (r.engine_sides() or ["ioengine"]) + ["fio"] + (
            ["caio"] if "caio" in r.samples or "caio" in r.skipped else [])
        for side in sides:
            s = r.median(side)
            if s is None:
                lines.append(["", side_label(side, unicode), "skipped", "", "", "", "", ""])
                continue
            lats = (_num(v, 1 if v < 100 else 0) for v in (s.p50_us, s.p99_us, s.p999_us))
            lines.append(["", side_label(side, unicode), _num(s.iops), _num(s.mb_per_s, 1), *lats,
                          _num(s.cpu_us_per_io, 2)])
        f = r.median("fio")
        for side in sides:
            s = r.median(side)
            if side == "fio" or s is None or f is None:
                continue
            lines.append(["", f"{side_label(side, unicode)}/fio",
                          *(_x(ratio(getattr(s, a), getattr(f, a)), "x")
                            for a in ("iops", "mb_per_s", "p50_us", "p99_us", "p999_us", "cpu_us_per_io"))])
        lines[0][0] = r.row.title
        out.append(lines)
    return headers, out, notes


def print_table(m: Matrix, out: TextIO = sys.stdout, *, use_rich: bool | None = None) -> None:
    """The matrix as a table: rich's when rich is importable (and ``use_rich`` is not False)."""
    if use_rich is not False:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            use_rich = False
    headers, blocks, notes = tall(m, unicode=use_rich is not False)
    if use_rich is not False:
        table = Table(title=f"{_title(m)} (medians)", title_justify="left")
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i < 2 else "right", no_wrap=i != 0)
        for k, lines in enumerate(blocks):
            for j, line in enumerate(lines):
                ratio_line = line[1].endswith("/fio")
                table.add_row(*line, style="bold" if ratio_line else None,
                              end_section=j == len(lines) - 1 and k < len(blocks) - 1)
        width = None if getattr(out, "isatty", lambda: False)() else 120
        console = Console(file=out, width=width, highlight=False)
        console.print(table)
        for n in notes:
            console.print(n, highlight=False, markup=False)
        return
    cells = [line for lines in blocks for line in lines]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(fmt.format(*headers), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for lines in blocks:
        for c in lines:
            print(fmt.format(*c), file=out)
    for n in notes:
        print(n, file=out)


def _cpu_note(m: Matrix, us: str) -> str:
    n = _smp(m)
    if n == 1:
        return f"CPU-{us}/IO: ioengine = whole process user+sys; fio = the job's usr+sys. "
    return (f"IOPS and MB/s are sums over the {n} shards / jobs, latencies merged. CPU-{us}/IO: ioengine = the sum "
            f"over shards of each process's user+sys over all I/Os; fio = all jobs' usr+sys over all I/Os. ")


def _smp(m: Matrix) -> int:
    return int(m.meta.get("smp") or 1)


def _title(m: Matrix) -> str:
    """"ioengine vs fio", or with both loops "ioengine (asyncio, uvloop) vs fio"; with smp > 1
    "ioengine (2 shards) vs fio (numjobs=2)"."""
    engines = matrix_engines(m)
    n = _smp(m)
    what = [] if engines == ["ioengine"] else [", ".join(_LOOP_OF.get(e, e) for e in engines)]
    if n > 1:
        what.append(f"{n} shards")
    ours = f"ioengine ({'; '.join(what)})" if what else "ioengine"
    return f"{ours} vs fio (numjobs={n})" if n > 1 else f"{ours} vs fio"


def markdown(m: Matrix) -> str:
    headers, cells, notes = columns(m, unicode=True)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n\n" + "\n".join(f"* {n}" for n in notes) + "\n"


def write_markdown(m: Matrix, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(markdown(m))


def write_json(m: Matrix, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(m.to_json(), f, indent=2, allow_nan=False)
        f.write("\n")


def _label_value(r: RowResult, side: str) -> str:
    s = r.median(side)
    if s is None:
        return _NA
    if r.row.metric == "iops":
        return f"{s.iops / 1000:.1f}k IOPS" if s.iops >= 1000 else f"{s.iops:.0f} IOPS"
    return f"{s.mb_per_s:.0f} MB/s"


def write_chart(m: Matrix, path: str) -> None:
    """Grouped bars per row, normalised to fio = 1.0: throughput (higher is better) on top,
    CPU per I/O (lower is better) below. Raises ImportError naming matplotlib when missing."""
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError(f"--chart needs matplotlib ({e}); pip install 'ioengine[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = m.rows
    engines = matrix_engines(m)
    sides = engines + ["fio"] + (["caio"] if any("caio" in r.samples for r in rows) else [])
    colors = {"ioengine": "#1f77b4", "ioengine-uvloop": "#2ca02c", "fio": "#7f7f7f", "caio": "#ff7f0e"}
    width = 0.8 / len(sides)
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 1.45 * len(rows) + 3), 8.5), sharex=True)
    panels = (("throughput (IOPS or MB/s) relative to fio — higher is better", "iops"),
              ("CPU per I/O relative to fio — lower is better", "cpu_us_per_io"))
    xs = list(range(len(rows)))
    for ax, (title, metric) in zip(axes, panels):
        for k, side in enumerate(sides):
            vals = []
            for r in rows:
                if side == "fio":
                    v = 1.0 if r.median("fio") else math.nan
                else:
                    v = r.ratios(side)[metric]
                vals.append(0.0 if math.isnan(v) else v)
            pos = [x + (k - (len(sides) - 1) / 2) * width for x in xs]
            name = side_label(side) + (" (asyncio)" if side == "ioengine" and len(engines) > 1 else "")
            bars = ax.bar(pos, vals, width, label=name, color=colors.get(side))
            for b, v in zip(bars, vals):
                if v and side != "fio":
                    ax.annotate(f"{v:.2f}×", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                                fontsize=8, xytext=(0, 2), textcoords="offset points")
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("× fio")
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    if len(engines) == 1:
        values = [(e, "") for e in engines]
    else:
        values = [(e, _LOOP_OF.get(e, e) + " ") for e in engines]
    labels = [r.row.title.replace(", ", "\n") + "".join(f"\n{prefix}{_label_value(r, e)}" for e, prefix in values)
              + f"\nfio {_label_value(r, 'fio')}" for r in rows]
    axes[1].set_xticks(xs)
    axes[1].set_xticklabels(labels, fontsize=7, rotation=0)
    meta = m.meta
    fig.suptitle(f"{_title(m)} ({meta['fio_engine']}, direct=1), medians of {meta['rounds']} × "
                 f"{meta['seconds']:g} s — {meta['date'][:10]}", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def emit(m: Matrix, out: TextIO, *, json_path: str | None = None, markdown_path: str | None = None,
         chart_path: str | None = None) -> dict[str, Any]:
    """Table on ``out`` and whatever files were asked for; returns the JSON document."""
    print_table(m, out)
    if json_path:
        write_json(m, json_path)
        print(f"wrote {json_path}", file=out)
    if markdown_path:
        write_markdown(m, markdown_path)
        print(f"wrote {markdown_path}", file=out)
    if chart_path:
        write_chart(m, chart_path)
        print(f"wrote {chart_path}", file=out)
    return m.to_json()
