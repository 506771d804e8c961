"""One I/O pattern through ioengine with several settings, next to fio on the same file.

    python scripts/pattern_ab.py FILE KIND BS QD [--rounds 3] [--seconds 3] [--fio-iomem KIND]
        [--loop asyncio|uvloop] [--side NAME=OPTIONS ...]

KIND is a pattern of ``ioengine-bench compare`` (randread, randwrite, randrw, read, write), BS
the block size in bytes, QD the requests in flight. Each ``--side`` is a label, ``=``, and the
reactor options it runs with, comma-separated (``--side wake30=idle_poll_wake_us=30``); a
label ``PATH:NAME`` runs that side on the checkout at PATH (its extensions built), for an A/B
between versions. Every round runs fio first, then each side in a fresh process; the table
gives each run's IOPS and CPU-µs per I/O, and per side the median ratio to fio's IOPS in the
same round. A device path needs ``--size``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = """
import json, sys
from ioengine.bench.compare import run_ioengine_side
from ioengine.bench.workloads import Pattern
from ioengine.options import ReactorOptions
a = json.loads(sys.argv[1])
s = run_ioengine_side(a["path"], a["size"], Pattern(a["kind"], a["bs"], a["qd"]), a["seconds"],
                      ReactorOptions(**a["options"]), loop=a["loop"])
print(json.dumps({"iops": s.iops, "cpu": s.cpu_us_per_io, "p50": s.p50_us}))
"""


def _options(text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in filter(None, text.split(",")):
        k, _, v = item.partition("=")
        value: object = v
        for conv in (int, float):
            try:
                value = conv(v)
                break
            except ValueError:
                pass
        if v in ("True", "False"):
            value = v == "True"
        out[k.strip()] = value
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file")
    p.add_argument("kind")
    p.add_argument("bs", type=int)
    p.add_argument("qd", type=int)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--size", type=int, default=0, help="bytes of the file to use (default: its size)")
    p.add_argument("--fio-iomem", default=None, help="fio's --iomem (e.g. shmhuge; default fio's own)")
    p.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop"), help="ioengine's event loop")
    p.add_argument("--side", action="append", default=[], metavar="NAME=OPTIONS")
    a = p.parse_args()
    from ioengine.bench.compare import run_fio_side
    from ioengine.bench.workloads import Pattern
    from ioengine.options import ReactorOptions

    size = a.size or os.path.getsize(a.file)
    sides = [s.partition("=")[::2] for s in (a.side or ["default="])]
    pattern = Pattern(a.kind, a.bs, a.qd)
    ratios: dict[str, list[float]] = {name: [] for name, _ in sides}
    print(f"{'round':>5}  {'side':<24} {'IOPS':>9} {'CPU-us/IO':>9}  ratio")
    for r in range(1, a.rounds + 1):
        fio = run_fio_side(a.file, size, pattern, a.seconds, ReactorOptions(), a.fio_iomem)
        print(f"{r:>5}  {'fio':<24} {fio.iops:>9,.0f} {fio.cpu_us_per_io:>9.1f}")
        for name, opts in sides:
            checkout, _, label = name.rpartition(":")
            env = dict(os.environ, PYTHONPATH=checkout or HERE)
            arg = json.dumps({"path": a.file, "size": size, "kind": a.kind, "bs": a.bs, "qd": a.qd,
                              "seconds": a.seconds, "options": _options(opts), "loop": a.loop})
            out = subprocess.run([sys.executable, "-c", _CHILD, arg], env=env, capture_output=True, text=True)
            if out.returncode:
                print(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"{name}: failed", file=sys.stderr)
                return 1
            got = json.loads(out.stdout.strip().splitlines()[-1])
            ratio = got["iops"] / fio.iops if fio.iops else float("nan")
            ratios[name].append(ratio)
            print(f"{r:>5}  {label or name:<24} {got['iops']:>9,.0f} {got['cpu']:>9.1f}  {ratio:.2f}")
    for name, rs in ratios.items():
        print(f"median ratio to fio, {name}: {statistics.median(rs):.2f} ({', '.join(f'{x:.2f}' for x in rs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
