"""Verify (fio's ``verify=``): a header per block — fio's idea: the block says where it belongs and
what it holds.  :class:`Verifier` fills the write buffers so they can be checked (the header, then a
checksum of the rest, or ``verify_pattern``) and checks what is read back.

The headers are written and checked in C (``native/verify_hdr.c``): with ``verify_interval`` a
64 KiB block carries up to 128 of them (fio's surface-scan example), one Python call each was the
job's whole CPU.  The digests stay the hash libraries' (one call per header)."""
from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable
from typing import Any

from .._native import ffi, lib
from ..buffers import DmaBuffer
from .jobfile import JobSpec

_MAGIC = 0xACCA_10E0
# magic, length, offset, number of the write, the clone that wrote it (fio's numberio and thread:
# a block another clone overwrote fails its check, as in fio); the layout native/verify_hdr.c
# writes, read back here only to report a bad header
_HDR = struct.Struct("<IIQQI4x")
_SUM_AT = lib.IE_VSUM_AT
_SUM_LEN = lib.IE_VSUM_LEN  # room for the largest digest (sha512)
_DATA_AT = lib.IE_VDATA_AT
assert (_HDR.size, _SUM_AT + _SUM_LEN) == (_SUM_AT, _DATA_AT)


def _checksum(kind: str) -> Callable[[bytes | memoryview], bytes] | None:
    if kind in ("md5", "sha1", "sha256", "sha512"):
        return lambda b: hashlib.new(kind, b).digest()
    if kind == "crc32":
        return lambda b: zlib.crc32(b).to_bytes(4, "little")
    if kind == "crc32c":
        import crc32c  # checked by check_jobs

        return lambda b: crc32c.crc32c(b).to_bytes(4, "little")
    return None  # meta / null: the header alone (its digest room stays zero)


def _address(buf: Any, n: int) -> tuple[int, Any]:
    """The address of ``buf``'s first ``n`` bytes, and what keeps them alive meanwhile."""
    if isinstance(buf, DmaBuffer):
        if len(buf) < n:
            raise ValueError(f"verify: a block of {n} bytes in a buffer of {len(buf)}")
        return buf.address, buf
    cbuf = ffi.from_buffer(buf, require_writable=False)
    if len(cbuf) < n:
        raise ValueError(f"verify: a block of {n} bytes in a buffer of {len(cbuf)}")
    return int(ffi.cast("uintptr_t", cbuf)), cbuf


class Verifier:
    """Fills write buffers so they can be checked, and checks what is read back."""

    def __init__(self, job: JobSpec) -> None:
        self.kind = job.verify or "null"
        self.pattern = job.verify_pattern or b""
        self._pattern = ffi.from_buffer(self.pattern) if self.pattern else None
        self.sum = _checksum(self.kind)
        self.interval = job.verify_interval or 0

    def _fill_pattern(self, addr: int, n: int) -> None:
        assert self._pattern is not None
        lib.ie_fill_pattern(addr, n, int(ffi.cast("uintptr_t", self._pattern)), len(self.pattern))

    def fill(self, buf: Any, pos: int, n: int, seq: int, writer: int = 0) -> None:
        addr, keep = _address(buf, n)
        if self.pattern:
            # fio's fill_verify_pattern: the pattern under the headers too, when one is given
            self._fill_pattern(addr, n)
            if self.kind == "pattern":
                return
        step = self.interval or n
        lib.ie_verify_fill(addr, n, step, pos, seq, writer)
        digest = self.sum
        if digest is not None:
            mv = memoryview(buf)
            for c in range(0, n, step):
                end = min(c + step, n)
                if end - c >= _DATA_AT:
                    d = digest(mv[c + _DATA_AT:end])
                    mv[c + _SUM_AT:c + _SUM_AT + len(d)] = d
        del keep

    def check(self, buf: Any, path: str, pos: int, n: int, expect: tuple[int, int] | None = None) -> str | None:
        """None when the block is right, else fio's style of report. ``expect``: (writer, seq) of
        the write being checked, when the checker made it (a read-only job cannot know)."""
        addr, keep = _address(buf, n)
        where = f"at file {path} offset {pos}, length {n}"
        if self.kind == "pattern":
            bad = lib.ie_check_pattern(addr, n, int(ffi.cast("uintptr_t", self._pattern)), len(self.pattern))
            if bad < 0:
                return None
            got, want = memoryview(buf)[bad], self.pattern[bad % len(self.pattern)]
            return (f"pattern: verify failed {where}\n    fio: got pattern '{got:02x}', wanted "
                    f"'{want:02x}'. Bad bits {bin(got ^ want).count('1')}\n"
                    f"    fio: bad pattern block offset {bad}")
        step = self.interval or n
        writer, seq = expect if expect is not None else (-1, 0)
        r = lib.ie_verify_check(addr, n, step, pos, seq, writer, self.sum is None)
        mv = memoryview(buf)
        if r >= 0:
            return self._bad_header(mv, r >> 3, r & 7, step, pos, n, where, expect)
        digest = self.sum
        if digest is not None:
            for c in range(0, n, step):
                end = min(c + step, n)
                if end - c < _DATA_AT:
                    continue
                got = digest(mv[c + _DATA_AT:end])
                if mv[c + _SUM_AT:c + _DATA_AT] != got.ljust(_SUM_LEN, b"\0"):
                    want = bytes(mv[c + _SUM_AT:c + _SUM_AT + len(got)])
                    return (f"{self.kind}: verify failed {where}\n       Expected CRC: {want[::-1].hex()}\n"
                            f"       Received CRC: {got[::-1].hex()}")
        del keep
        return None

    def _bad_header(self, mv: memoryview, c: int, why: int, step: int, pos: int, n: int, where: str,
                    expect: tuple[int, int] | None) -> str:
        magic, length, offset, seq, writer = _HDR.unpack_from(mv, c)
        size = min(step, n - c)
        if why == lib.IE_VBAD_MAGIC:
            return f"verify: bad magic header {magic:x}, wanted {_MAGIC:x} {where}"
        if why == lib.IE_VBAD_OFFSET:
            return (f"verify: bad header offset {offset}, wanted {pos + c} {where} "
                    f"(header length {length}, wanted {size})")
        if why == lib.IE_VBAD_NUMBERIO:
            assert expect is not None
            return (f"verify: bad header numberio {seq} of job {writer}, wanted {expect[1]} of job "
                    f"{expect[0]} {where} (overwritten by another write)")
        stored = bytes(mv[c + _SUM_AT:c + _DATA_AT])  # IE_VBAD_SUM: a header-only kind's digest room not zero
        return (f"{self.kind}: verify failed {where}\n       Expected CRC: {stored[::-1].hex()}\n"
                f"       Received CRC: {bytes(_SUM_LEN).hex()}")
