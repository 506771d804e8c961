"""Helpers shared by the foundation tests (plain functions, no ioengine)."""
from __future__ import annotations

import os
import struct
from pathlib import Path


def pattern_block(index: int, size: int) -> bytes:
    """``size`` bytes that say which block they are: the index repeated (8 bytes per word)."""
    word = struct.pack("<Q", (index * 0x9E3779B97F4A7C15 + 1) & 0xFFFFFFFFFFFFFFFF)
    return (word * (size // 8 + 1))[:size]


def write_pattern_file(path: Path, blocks: int, block_size: int) -> bytes:
    """A file of ``blocks`` pattern blocks, written with plain os.pwrite (no ioengine)."""
    data = b"".join(pattern_block(i, block_size) for i in range(blocks))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
    return data


def read_file(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
