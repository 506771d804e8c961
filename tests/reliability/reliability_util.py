"""Helpers of the reliability suite: files of numbered blocks, asyncio's error reports."""
from __future__ import annotations

import asyncio
import gc

BLOCK = 4096


def block(i: int) -> bytes:
    """The content of block ``i`` of a numbered file: its index, 512 times."""
    return i.to_bytes(8, "little") * (BLOCK // 8)


def numbered(n: int) -> bytes:
    return b"".join(block(i) for i in range(n))


def watch_loop(reports: list) -> None:
    """Route the running loop's exception reports into ``reports`` (see the ``reports`` fixture)."""
    asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reports.append(ctx.get("message")))


async def settle() -> None:
    """Let "never retrieved" reports happen now: collect, turn the loop twice."""
    gc.collect()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
