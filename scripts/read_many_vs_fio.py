"""4k random reads on a real disk, 32 in flight: dma_read vs dma_read_many (BATCH=k) vs fio.

    flock /tmp/ioengine-disk.lock nice -n -10 python scripts/read_many_vs_fio.py [FILE] [ROUNDS] [K]

FILE (default .scratch/bench.dat, 256 MiB, made if missing) is read by scripts/cpu_per_io.py
(QD=32; BATCH=K: 32//K tasks of K reads each) and by fio (io_uring, iodepth 32, 2 s), the
three alternating for ROUNDS rounds (default 5). Prints each round's IOPS and CPU-us per read,
and the medians over the rounds of each one's ratio to that round's fio IOPS.
"""
import json
import os
import re
import statistics
import subprocess
import sys

here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, ".scratch", "bench.dat")
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
k = int(sys.argv[3]) if len(sys.argv) > 3 else 8
size = 256 << 20
if not os.path.exists(path) or os.path.getsize(path) < size:
    with open(path, "wb") as fh:
        for _ in range(size >> 20):
            fh.write(os.urandom(1 << 20))


def fio() -> tuple[float, float]:
    out = subprocess.run(["fio", "--name=x", f"--filename={path}", "--direct=1", "--rw=randread", "--bs=4k",
                          "--iodepth=32", "--ioengine=io_uring", "--runtime=2", "--time_based", "--size=256M",
                          "--output-format=json"], check=True, capture_output=True, text=True).stdout
    job = json.loads(out)["jobs"][0]
    iops = job["read"]["iops"]
    cpu_us = (job["usr_cpu"] + job["sys_cpu"]) / 100 * job["elapsed"] * 1e6 / max(1, job["read"]["total_ios"])
    return iops, cpu_us


def engine(batch: int, n: int) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=here, BLOCKS=str(size // 4096), N=str(n), QD="32", BATCH=str(batch))
    out = subprocess.run([sys.executable, os.path.join(here, "scripts", "cpu_per_io.py"), path], env=env,
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"([\d,]+) IOPS\s+([\d.]+) cpu-us/io", out)
    assert m, out
    return float(m.group(1).replace(",", "")), float(m.group(2))


ratios: dict[str, list[float]] = {"dma_read": [], f"dma_read_many(k={k})": []}
for r in range(rounds):
    f_iops, f_cpu = fio()
    n = int(f_iops * 2)  # about 2 s at fio's rate
    plain = engine(0, n)
    many = engine(k, n)
    ratios["dma_read"].append(plain[0] / f_iops)
    ratios[f"dma_read_many(k={k})"].append(many[0] / f_iops)
    print(f"round {r + 1}: fio {f_iops:,.0f} IOPS {f_cpu:.2f} cpu-us/io | dma_read {plain[0]:,.0f} {plain[1]:.2f} | "
          f"dma_read_many {many[0]:,.0f} {many[1]:.2f}", flush=True)
for name, rs in ratios.items():
    print(f"{name}: median IOPS / fio = {statistics.median(rs):.3f} (rounds: {', '.join(f'{x:.3f}' for x in rs)})")
