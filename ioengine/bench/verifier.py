"""Verify (fio's ``verify=``): a header per block — fio's idea: the block says where it belongs and
what it holds.  :class:`Verifier` fills the write buffers so they can be checked (the header, then a
checksum of the rest, or ``verify_pattern``) and checks what is read back."""
from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable
from typing import Any

from .jobfile import JobSpec

_MAGIC = 0xACCA_10E0
# magic, length, offset, number of the write, the clone that wrote it (fio's numberio and thread:
# a block another clone overwrote fails its check, as in fio)
_HDR = struct.Struct("<IIQQI4x")
_SUM_AT = _HDR.size
_SUM_LEN = 64  # room for the largest digest (sha512)
_DATA_AT = _SUM_AT + _SUM_LEN


def _checksum(kind: str) -> Callable[[bytes | memoryview], bytes]:
    if kind in ("md5", "sha1", "sha256", "sha512"):
        return lambda b: hashlib.new(kind, b).digest()
    if kind == "crc32":
        return lambda b: zlib.crc32(b).to_bytes(4, "little")
    if kind == "crc32c":
        import crc32c  # checked by check_jobs

        return lambda b: crc32c.crc32c(b).to_bytes(4, "little")
    return lambda b: b""  # meta / null: the header alone


class Verifier:
    """Fills write buffers so they can be checked, and checks what is read back."""

    def __init__(self, job: JobSpec) -> None:
        self.kind = job.verify or "null"
        self.pattern = job.verify_pattern or b""
        self.sum = _checksum(self.kind)
        self.interval = job.verify_interval

    def _chunks(self, n: int) -> range:
        step = self.interval or n
        return range(0, n, step)

    def fill(self, buf: Any, pos: int, n: int, seq: int, writer: int = 0) -> None:
        mv = memoryview(buf)[:n]
        if self.kind == "pattern":
            reps = -(-n // len(self.pattern))
            mv[:] = (self.pattern * reps)[:n]
            return
        step = self.interval or n
        for c in self._chunks(n):
            size = min(step, n - c)
            if size < _DATA_AT:
                continue
            chunk = mv[c:c + size]
            _HDR.pack_into(chunk, 0, _MAGIC, size, pos + c, seq, writer)
            digest = self.sum(chunk[_DATA_AT:]).ljust(_SUM_LEN, b"\0")
            chunk[_SUM_AT:_DATA_AT] = digest

    def check(self, buf: Any, path: str, pos: int, n: int, expect: tuple[int, int] | None = None) -> str | None:
        """None when the block is right, else fio's style of report. ``expect``: (writer, seq) of
        the write being checked, when the checker made it (a read-only job cannot know)."""
        mv = memoryview(buf)[:n]
        where = f"at file {path} offset {pos}, length {n}"
        if self.kind == "pattern":
            reps = -(-n // len(self.pattern))
            want = (self.pattern * reps)[:n]
            if bytes(mv) != want:
                bad = next(i for i in range(n) if mv[i] != want[i])
                return (f"pattern: verify failed {where}\n    fio: got pattern '{mv[bad]:02x}', wanted "
                        f"'{want[bad]:02x}'. Bad bits {bin(mv[bad] ^ want[bad]).count('1')}\n"
                        f"    fio: bad pattern block offset {bad}")
            return None
        step = self.interval or n
        for c in self._chunks(n):
            size = min(step, n - c)
            if size < _DATA_AT:
                continue
            chunk = mv[c:c + size]
            magic, length, offset, seq, writer = _HDR.unpack_from(chunk, 0)
            if magic != _MAGIC:
                return f"verify: bad magic header {magic:x}, wanted {_MAGIC:x} {where}"
            if offset != pos + c or length != size:
                return (f"verify: bad header offset {offset}, wanted {pos + c} {where} "
                        f"(header length {length}, wanted {size})")
            if expect is not None and (writer, seq) != expect:
                return (f"verify: bad header numberio {seq} of job {writer}, wanted {expect[1]} of job "
                        f"{expect[0]} {where} (overwritten by another write)")
            want = bytes(chunk[_SUM_AT:_DATA_AT])
            got = self.sum(chunk[_DATA_AT:]).ljust(_SUM_LEN, b"\0")
            if got != want:
                width = len(self.sum(b"")) or _SUM_LEN
                return (f"{self.kind}: verify failed {where}\n       Expected CRC: {want[:width][::-1].hex()}\n"
                        f"       Received CRC: {got[:width][::-1].hex()}")
        return None
