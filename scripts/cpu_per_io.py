"""CPU per 4k random read through ioengine: 32 tasks (QD) awaiting dma_read on one file.

    python scripts/cpu_per_io.py [FILE] [reactor_option=value ...]
    env: N (I/Os, default 200000), BLOCKS (4 KiB blocks of the file to use, default 16384),
         LOOP=uvloop, WRITE=1 (4k dma_writes instead of reads, inside the file's 64 MiB),
         QD (reads in flight, default 32: QD tasks, each cycling 8,192 offsets drawn ahead),
         BATCH=k (File.dma_read_many: QD//k tasks, each awaiting a batch of k random reads, so
         QD reads stay in flight in all; reads only),
         BUFFERED=1 (the file opened buffered: what the page cache holds is served at the call,
         ioengine.pagecache; QD=1 BUFFERED=1 scripts/icount.sh counts a cache hit)

FILE defaults to /dev/shm/ioe.dat (created, 64 MiB): on tmpfs the disk drops out and only the
CPU path is left. scripts/icount.sh runs it under callgrind.
"""
import asyncio
import os
import random
import resource
import sys
import time

import ioengine
import ioengine.reactor

if os.environ.get('LOOP') == 'uvloop':
    import uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
from ioengine import OpenFlags as O

path = sys.argv[1] if len(sys.argv) > 1 else "/dev/shm/ioe.dat"
BLOCKS = int(os.environ.get("BLOCKS", "16384"))
N = int(os.environ.get("N", "200000"))
WRITE = os.environ.get("WRITE", "0") not in ("", "0")
BUFFERED = os.environ.get("BUFFERED", "0") not in ("", "0")
async def main():
    if not os.path.exists(path) or os.path.getsize(path) < 64 << 20:
        with open(path, "wb") as f: f.write(os.urandom(64 << 20))
    f = await ioengine.open_file_dma(path, O.RW if WRITE else O.RO, ioengine.FileOpenOptions(buffered=BUFFERED))
    done = 0
    async def worker(seed):
        nonlocal done
        rnd = random.Random(seed)
        b = f.allocate_buffer(4096)
        io = f.dma_write if WRITE else f.dma_read
        # drawn ahead, as `ioengine-bench compare` does: the generator (~2,700 instructions a
        # draw in Python) is not what is measured
        offs = [rnd.randrange(BLOCKS) * 4096 for _ in range(8192)]
        n = 0
        while done < N:
            await io(offs[n & 8191], b)
            n += 1
            done += 1
    async def batch_worker(seed, k):
        nonlocal done
        rnd = random.Random(seed)
        bufs = [f.allocate_buffer(4096) for _ in range(k)]
        offs = [rnd.randrange(BLOCKS) * 4096 for _ in range(8192)]
        n = 0
        while done < N:
            await f.dma_read_many([(offs[(n + i) & 8191], b) for i, b in enumerate(bufs)])
            n += k
            done += k
    qd = int(os.environ.get("QD", "32"))
    k = int(os.environ.get("BATCH", "0"))
    r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter()
    if k:
        await asyncio.gather(*(batch_worker(i, k) for i in range(max(1, qd // k))))
    else:
        await asyncio.gather(*(worker(i) for i in range(qd)))
    t1 = time.perf_counter(); r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(f"{done/(t1-t0):,.0f} IOPS  {cpu/done*1e6:.2f} cpu-us/io (user {(r1.ru_utime-r0.ru_utime)/done*1e6:.2f})")
    await f.close()
def conv(v):
    if v in ("True", "False"):
        return v == "True"
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v
ioengine.run(main(), **{k: conv(v) for k, v in (a.split("=") for a in sys.argv[2:])})
