"""A CLI-like smp program for the shutdown tests: ``python smp_cli.py sigint|sigterm|raise DIR``.

Shard 1 holds a file open in a running call, shard 0 another in main; then it prints
``READY <pid of shard 1>`` and waits to be signalled (``raise``: main raises instead).
"""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ioengine  # noqa: E402
from ioengine import smp  # noqa: E402

import smp_helpers as h  # noqa: E402


async def main(mode: str, d: str) -> None:
    pid1 = await smp.submit_to(1, os.getpid)
    held = asyncio.ensure_future(smp.submit_to(1, h.hold_file, f"{d}/one.dat", f"{d}/one.marker"))
    try:
        async with await ioengine.open_file_dma(f"{d}/zero.dat", ioengine.OpenFlags.RW | ioengine.OpenFlags.CREATE):
            await asyncio.sleep(0.2)  # shard 1 has its file open
            print("READY", pid1, flush=True)
            if mode == "raise":
                raise RuntimeError("main gave up")
            await asyncio.sleep(60)
    finally:
        Path(d, "zero.marker").write_text("closed")
        held.cancel()


if __name__ == "__main__":
    mode, d = sys.argv[1], sys.argv[2]
    try:
        ioengine.run(main, mode, d, smp=2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
