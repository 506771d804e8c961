#!/usr/bin/env python3
"""Classify fio's examples/ job files: which run through ``ioengine-bench run`` and which are refused, and why.

    python scripts/fio_examples.py PATH/TO/fio/examples [--out docs/fio-compat.md] [--fio fio]

Each example is copied with its files pointed into a temporary directory and made short and small
(runtime 1 s, at most 16 MiB per file, no start delay or ramp, at most 4 clones) — the workload's
shape (engine, pattern, block sizes, mix, depth, distribution, verify …) is left as written — then
run.  Exit status 0 = ran, 1 = ran but a job reported an error, 2 = refused (the reasons are the
lines ioengine-bench names).  A job that does not say ``direct=1`` runs buffered, as in fio.
With ``--fio``, fio itself runs the same shrunk file of each honourable example (its own temporary
directory), so the table shows where fio refuses or fails too.  The table goes to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ioengine.bench.hugepages import HugePageReservation, fio_iomem_for, hugetlb_pages_for
from ioengine.bench.jobfile import parse_job_text

HONOURED = {"", "sync", "psync", "vsync", "pvsync", "pvsync2", "libaio", "io_uring", "posixaio"}
CAP = 16 << 20
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


@dataclass
class Result:
    name: str
    engines: str
    status: str  # ran, ran-with-error, refused, timeout
    why: str
    fio: str = ""  # what fio did with the same file (with --fio): ran, err=N, refused, timeout

    @property
    def honourable(self) -> bool:
        return all(e in HONOURED for e in self.engines.split(",")) if self.engines else True


def _bytes(v: str) -> int | None:
    m = re.fullmatch(r"\s*(\d+)\s*([kmgtp]?)i?b?\s*", v, re.IGNORECASE)
    return int(m.group(1)) * _UNITS[m.group(2).lower()] if m else None


def shrink(text: str, tmp: Path, runtime: int = 1, time_based: bool = False) -> str:
    """The example, short and small, its files in ``tmp`` (see the module doc)."""
    out = []
    # Examples that name a device take its whole size; here the file is new, so it gets one
    # (io_size says how much to transfer, not how big the file is).
    sized = re.search(r"^\s*(size|filesize)\s*=", text, re.MULTILINE) is not None
    for line in text.splitlines():
        body = re.split(r"[;#]", line, maxsplit=1)[0].strip()
        key, eq, value = body.partition("=")
        key = key.strip().lower()
        value = value.strip()
        if body.startswith("["):
            out.append(line)
            out.append(f"runtime={runtime}")
            if time_based:
                out.append("time_based=1")
            if not sized:
                out.append("size=16m")
            continue
        if key == "filename" and eq:
            names = [n for n in re.split(r"(?<!\\):", value) if n]
            safe = [re.sub(r"[^A-Za-z0-9._-]", "_", n.strip("/")) or "f" for n in names]
            line = "filename=" + ":".join(str(tmp / s) for s in safe)
        elif key == "directory" and eq:
            line = f"directory={tmp}"
        elif key in ("runtime", "timeout") and eq:
            line = f"{key}={runtime}"
        elif key in ("startdelay", "ramp_time") and eq:
            line = f"{key}=0"
        elif key in ("size", "filesize", "io_size", "io_limit", "offset_increment", "offset", "fileoffset") and eq:
            n = _bytes(value)
            if n is not None and n > CAP:
                small = "0" if key in ("offset", "fileoffset") else "1m" if key == "offset_increment" else "16m"
                line = f"{key}={small}"
        elif key == "numjobs" and eq and value.isdigit() and int(value) > 4:
            line = "numjobs=4"
        elif key in ("loops",) and eq:
            line = "loops=1"
        out.append(line)
    return "\n".join(out) + "\n"


def engines_of(text: str) -> str:
    found = re.findall(r"^\s*ioengine\s*=\s*([\w:/.-]+)", text, re.MULTILINE)
    if not found:
        # No ioengine= line, but the example's README (its comments) runs it with --ioengine=X
        # (the xnvme-* examples): it is written for those engines, not for fio's default psync.
        found = re.findall(r"^\s*[;#].*--ioengine=([\w:/.-]+)", text, re.MULTILINE)
    return ",".join(dict.fromkeys(found))


def reasons(stderr: str) -> str:
    why = []
    for m in re.finditer(r"line \d+: (.*)", stderr):
        msg = m.group(1)
        opt = re.match(r"option '([^']+)' is not supported", msg)
        eng = re.match(r"ioengine=(\S+) is not supported", msg)
        if opt:
            why.append(opt.group(1))
        elif eng:
            why.append(f"ioengine={eng.group(1)}")
        else:
            why.append(re.sub(r"^job '[^']*': ", "", msg).split(" (")[0].split(": ")[0][:70])
    if not why:
        last = [ln for ln in stderr.splitlines() if ln.startswith("ioengine-bench run:")]
        why.append((last[0] if last else stderr.strip()[-120:]).removeprefix("ioengine-bench run: ")[:100])
    return ", ".join(dict.fromkeys(why))


def run_fio(fio: str, path: Path, timeout: float) -> str:
    """What fio does with the same shrunk example: ran, err=N (a job failed), refused, timeout."""
    text = path.read_text(errors="replace")
    with tempfile.TemporaryDirectory(prefix="fio-example-fio-", dir=".") as d:
        tmp = Path(d).resolve()
        job = tmp / path.name
        job.write_text(shrink(text, tmp))
        try:
            proc = subprocess.run([fio, "--output-format=json", str(job)], capture_output=True, text=True,
                                  timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            return "timeout"
    out = proc.stdout[proc.stdout.find("{"):] if "{" in proc.stdout else ""
    try:
        doc = json.loads(out) if out else None
    except ValueError:
        doc = None
    if doc is None or not doc.get("jobs"):
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        return "refused: " + (lines[0][:60] if lines else f"exit {proc.returncode}")
    errs = sorted({j.get("error", 0) for j in doc["jobs"]} - {0})
    return "ran" if not errs else "err=" + ",".join(map(str, errs))


def run_one(path: Path, timeout: float) -> Result:
    text = path.read_text(errors="replace")
    engines = engines_of(text)
    with tempfile.TemporaryDirectory(prefix="fio-example-", dir=".") as d:
        tmp = Path(d).resolve()
        job = tmp / path.name
        job.write_text(shrink(text, tmp))
        try:
            proc = subprocess.run([sys.executable, "-m", "ioengine.bench", "run", str(job)], capture_output=True,
                                  text=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            return Result(path.name, engines, "timeout", f"still running after {timeout:g} s")
    if proc.returncode == 0:
        return Result(path.name, engines, "ran", "")
    if proc.returncode == 1:
        errs = re.findall(r"err=(\d+) \(([^)]*)\)", proc.stderr)
        return Result(path.name, engines, "ran-with-error",
                      ", ".join(dict.fromkeys(f"err={n} ({t})" for n, t in errs)) or proc.stderr.strip()[-100:])
    return Result(path.name, engines, "refused", reasons(proc.stderr))


def _iops(doc: dict, name: str) -> tuple[float, float]:
    """(IOPS, bytes/s) summed over the jobs and directions of fio's JSON (ours has the same)."""
    iops = bw = 0.0
    for j in doc.get("jobs", []):
        if j.get("error"):
            raise RuntimeError(f"{name}: job {j.get('jobname')} failed with err={j['error']}")
        for d in ("read", "write", "trim"):
            iops += float(j[d]["iops"])
            bw += float(j[d]["bw_bytes"])
    return iops, bw


def _json_of(cmd: list[str], cwd: Path, timeout: float) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    out = proc.stdout[proc.stdout.find("{"):] if "{" in proc.stdout else ""
    if not out:
        raise RuntimeError(f"{' '.join(cmd[:3])}: exit {proc.returncode}: {proc.stderr.strip()[-200:]}")
    return json.loads(out)


def fio_memory(job_text: str, base_dir: Path) -> tuple[str, int]:
    """fio's ``--iomem`` for a job file, like ioengine's buffers (huge pages where its largest
    block is served from them: ioengine.bench.hugepages), and the hugetlb pages that takes."""
    jobs = parse_job_text(job_text, base_dir=base_dir)
    big = max(max(j.block_sizes(0)[1], j.block_sizes(1)[1]) for j in jobs)
    kind = fio_iomem_for(big)
    pages = sum(j.numjobs * hugetlb_pages_for(big, j.depth) for j in jobs) if kind != "malloc" else 0
    return kind, pages


def compare(examples: Path, names: list[str], fio: str, rounds: int, runtime: int, timeout: float,
            extra: list[str] | None = None) -> str:
    """Side by side: each example (shrunk, made time_based for ``runtime`` seconds) through
    ioengine-bench and fio on the same files, alternating which goes first, ``rounds`` times; the
    medians and their ratio. fio's buffers are on huge pages where ioengine's are (its largest
    block), so large blocks compare engines, not page layouts."""
    rows = ["| example | ioengine IOPS | fio IOPS | IOPS ratio | ioengine MB/s | fio MB/s | fio memory | rounds |",
            "|---|---|---|---|---|---|---|---|"]
    for name in names:
        path = examples / name
        with tempfile.TemporaryDirectory(prefix="fio-compare-", dir=".") as d:
            tmp = Path(d).resolve()
            job = tmp / path.name
            # time_based: every job runs the whole runtime (a 16 MiB region read once takes tens of
            # milliseconds: too short to compare rates)
            text = shrink(path.read_text(errors="replace"), tmp, runtime, time_based=True)
            job.write_text(text)
            ours_cmd = [sys.executable, "-m", "ioengine.bench", "run", "--output-format", "json", *(extra or []),
                        str(job)]
            try:
                iomem, pages = fio_memory(text, tmp)
            except Exception as e:  # noqa: BLE001 - a job ioengine cannot parse: fio as it comes
                iomem, pages = "malloc", 0
                print(f"{name}: fio keeps malloc ({e})", flush=True)
            with HugePageReservation(pages) as hp:
                if hp.message:
                    print(f"{name}: {hp.message}", flush=True)
                if not hp.ok:
                    print(f"{name}: fio keeps malloc: {hp.reason}", flush=True)
                    iomem = "malloc"
                fio_cmd = [fio, "--output-format=json", *([f"--iomem={iomem}"] if iomem != "malloc" else []), str(job)]
                try:
                    _json_of(ours_cmd, tmp, timeout)  # lays the files out; not counted
                    got: dict[str, list[tuple[float, float]]] = {"ours": [], "fio": []}
                    for r in range(rounds):
                        order = [("ours", ours_cmd), ("fio", fio_cmd)]
                        for who, cmd in order if r % 2 == 0 else order[::-1]:
                            got[who].append(_iops(_json_of(cmd, tmp, timeout), name))
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                    rows.append(f"| {name} | - | - | - | - | - | {iomem} | {str(e)[:80]} |")
                    print(f"{name:40} failed: {e}", flush=True)
                    continue
        mi, mb = (statistics.median(x[k] for x in got["ours"]) for k in (0, 1))
        fi, fb = (statistics.median(x[k] for x in got["fio"]) for k in (0, 1))
        ratio = mi / fi if fi else float("nan")
        rows.append(f"| {name} | {mi:,.0f} | {fi:,.0f} | {ratio:.2f} | {mb / 1e6:,.1f} | {fb / 1e6:,.1f} | {iomem} "
                    f"| {rounds} |")
        print(f"{name:40} ioengine {mi:10,.0f} IOPS  fio {fi:10,.0f} IOPS  ratio {ratio:.2f}  (fio {iomem})",
              flush=True)
    return "\n".join(rows) + "\n"


def table(results: list[Result], source: str, with_fio: bool) -> str:
    honour = [r for r in results if r.honourable]
    ran = [r for r in honour if r.status.startswith("ran")]
    same = [r for r in honour if r.status == "ran"]
    failed = [r for r in honour if r.status == "ran-with-error"]
    n = max(1, len(honour))
    lines = [
        "# fio's examples through `ioengine-bench run`",
        "",
        f"Produced by `python scripts/fio_examples.py {source}{' --fio fio' if with_fio else ''}` (each example "
        "made short and small, its files in a",
        "temporary directory; see the script). Rerun it after changing `ioengine/bench/`.",
        "",
        f"* {len(results)} job files; {len(honour)} use an engine ioengine can honour (sync family, libaio, io_uring,",
        f"  posixaio, or none given): **{len(ran)} of them run** ({100 * len(ran) / n:.0f} %):",
        f"  **{len(same)} as written** ({100 * len(same) / n:.0f} %), {len(failed)} as written but a job "
        f"fails{' (' + ', '.join(f'{r.name}: fio {r.fio}' for r in failed) + ')' if with_fio and failed else ''}.",
        f"* {len(results) - len(honour)} use another engine and are refused naming it "
        f"({sum(r.status == 'refused' for r in results if not r.honourable)} refused).",
    ]
    if with_fio:
        fio_fails = [r for r in honour if not r.status.startswith("ran") and r.fio != "ran"]
        lines.append(f"* Of the {len(honour) - len(ran)} honourable examples ioengine refuses, fio 3.33 refuses or "
                     f"fails {len(fio_fails)} on this machine too (column fio).")
    lines += ["", "| example | engine | result | why |" + (" fio |" if with_fio else ""),
              "|---|---|---|---|" + ("---|" if with_fio else "")]
    for r in sorted(results, key=lambda r: (not r.honourable, r.status, r.name)):
        lines.append(f"| {r.name} | {r.engines or '(psync)'} | {r.status} | {r.why.replace('|', '/')} |"
                     + (f" {r.fio.replace('|', '/')} |" if with_fio else ""))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("examples", type=Path, help="fio's examples/ directory")
    p.add_argument("--out", default="docs/fio-compat.md", help="Markdown table to write (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per example before it counts as hung")
    p.add_argument("--fio", metavar="FIO", help="also run fio (this binary) on each honourable example")
    p.add_argument("--compare", nargs="+", metavar="EXAMPLE",
                   help="instead: run these examples side by side with fio (needs --fio) and print a table")
    p.add_argument("--rounds", type=int, default=3, help="--compare: alternating rounds (default %(default)s)")
    p.add_argument("--runtime", type=int, default=3, help="--compare: seconds per run (default %(default)s)")
    p.add_argument("--ioengine-args", default="", help="--compare: more arguments of ioengine-bench run, "
                                                        "e.g. '--smp 2'")
    args = p.parse_args(argv)
    if args.compare:
        if not args.fio:
            p.error("--compare needs --fio")
        print(compare(args.examples, args.compare, args.fio, args.rounds, args.runtime, args.timeout,
                      args.ioengine_args.split()))
        return 0
    files = sorted(args.examples.glob("*.fio"))
    if not files:
        print(f"fio_examples: no *.fio files in {args.examples}", file=sys.stderr)
        return 2
    results = []
    for f in files:
        r = run_one(f, args.timeout)
        if args.fio and r.honourable:
            r.fio = run_fio(args.fio, f, args.timeout)
        print(f"{r.name:40} {r.status:15} {r.why}{'  [fio: ' + r.fio + ']' if r.fio else ''}", flush=True)
        results.append(r)
    out = Path(args.out)
    # Hand-written notes (from a "## Notes" heading on) survive a rerun; the table above is replaced.
    old = out.read_text() if out.exists() else ""
    notes = old[old.index("\n## Notes"):] if "\n## Notes" in old else ""
    out.write_text(table(results, "PATH/TO/fio/examples", bool(args.fio)) + notes)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
