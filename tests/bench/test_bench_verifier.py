"""The verifier's blocks (ioengine.bench.verifier, headers in native/verify_hdr.c): what is
written is what fio's layout says and what is checked back, for every kind and verify_interval;
each kind of damage is found and reported like fio's; a surface-scan job runs on a real file."""
from __future__ import annotations

import hashlib
import os
import struct
import textwrap
import zlib
from pathlib import Path

import crc32c
import pytest

import ioengine
from ioengine.bench.__main__ import main
from ioengine.bench.jobfile import JobSpec
from ioengine.bench.verifier import Verifier

HDR = struct.Struct("<IIQQI4x")
MAGIC = 0xACCA_10E0
SUM_AT, DATA_AT = 32, 96
DIGESTS = {
    "md5": lambda b: hashlib.md5(b).digest(),
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "sha512": lambda b: hashlib.sha512(b).digest(),
    "crc32": lambda b: zlib.crc32(b).to_bytes(4, "little"),
    "crc32c": lambda b: crc32c.crc32c(b).to_bytes(4, "little"),
    "meta": lambda b: b"",
    "null": lambda b: b"",
}


def verifier(kind: str, interval: int | None = None, pattern: bytes | None = None) -> Verifier:
    return Verifier(JobSpec(name="v", section="v", verify=kind, verify_interval=interval, verify_pattern=pattern))


def buffers(n: int) -> list:
    dma = ioengine.allocate_aligned_buffer(n, 4096)
    ioengine.fill_random(dma, 1)
    raw = bytearray(n)
    ioengine.fill_random(raw, 2)
    return [dma, raw]


def chunks(n: int, interval: int | None) -> list[tuple[int, int]]:
    step = interval or n
    return [(c, min(step, n - c)) for c in range(0, n, step)]


@pytest.mark.parametrize("interval", [None, 512, 1000, 4000])
@pytest.mark.parametrize("kind", sorted(DIGESTS))
def test_blocks_hold_fios_layout_and_check_back(kind: str, interval: int | None) -> None:
    n, pos, seq, writer = 4096, 7 << 20, 12345, 3
    v = verifier(kind, interval)
    for buf in buffers(n):
        before = bytes(memoryview(buf))
        v.fill(buf, pos, n, seq, writer)
        mv = memoryview(buf)
        for c, size in chunks(n, interval):
            if size < DATA_AT:  # too short for a header (4096 = 4 × 1000 + 96: the last one fits)
                assert bytes(mv[c:c + size]) == before[c:c + size]
                continue
            assert HDR.unpack_from(mv, c) == (MAGIC, size, pos + c, seq, writer)
            digest = DIGESTS[kind](bytes(mv[c + DATA_AT:c + size]))
            assert bytes(mv[c + SUM_AT:c + DATA_AT]) == digest.ljust(64, b"\0")
            assert bytes(mv[c + DATA_AT:c + size]) == before[c + DATA_AT:c + size]  # data left as it was
        assert v.check(buf, "f", pos, n) is None
        assert v.check(buf, "f", pos, n, (writer, seq)) is None


@pytest.mark.parametrize("kind", ["md5", "crc32c", "meta"])
def test_each_damage_is_found_in_the_chunk_that_has_it(kind: str) -> None:
    n, pos = 8192, 1 << 20
    v = verifier(kind, 512)
    buf = ioengine.allocate_aligned_buffer(n, 4096)
    v.fill(buf, pos, n, 5, 1)
    mv = memoryview(buf)
    bad_chunk = 3 * 512

    def damaged(at: int, value: int) -> str | None:
        old = mv[at]
        mv[at] = value
        try:
            return v.check(buf, "path/f", pos, n, (1, 5))
        finally:
            mv[at] = old

    assert "verify: bad magic header" in (damaged(bad_chunk, 0x55) or "")
    r = damaged(bad_chunk + 8, 0x77) or ""  # the offset field
    assert f"bad header offset {(pos + bad_chunk) & ~0xFF | 0x77}," in r
    assert f"wanted {pos + bad_chunk}" in r and "at file path/f offset 1048576, length 8192" in r
    r = damaged(bad_chunk + 16, 6) or ""  # the write's number: another write's block
    assert "bad header numberio 6 of job 1, wanted 5 of job 1" in r
    assert v.check(buf, "f", pos, n) is None  # without an expected write the number is not checked
    r = damaged(bad_chunk + 300, mv[bad_chunk + 300] ^ 1)
    if kind == "meta":
        assert r is None  # fio's meta checks the header only
        r = damaged(bad_chunk + SUM_AT + 5, 1) or ""  # its digest room must stay empty
        assert r.startswith("meta: verify failed at file path/f")
    else:
        assert r is not None and r.startswith(f"{kind}: verify failed at file path/f offset 1048576")
        assert "Expected CRC" in r and "Received CRC" in r
    assert v.check(buf, "f", pos, n, (1, 5)) is None  # every damage undone


def test_pattern_fills_and_names_the_first_bad_byte() -> None:
    v = verifier("pattern", pattern=bytes.fromhex("aa555aa5"))
    for buf in buffers(4096):
        v.fill(buf, 0, 4096, 1)
        assert bytes(memoryview(buf)) == bytes.fromhex("aa555aa5") * 1024
        assert v.check(buf, "f", 0, 4096) is None
        memoryview(buf)[1234] = 0x00  # 1234 % 4 == 2: the pattern's 5a
        r = v.check(buf, "f", 0, 4096) or ""
        assert "got pattern '00', wanted '5a'" in r and "bad pattern block offset 1234" in r


def test_a_pattern_with_headers_lies_under_them_as_in_fio() -> None:
    # fio's fill_verify_pattern: verify_pattern fills the block, then the headers go on top
    v = verifier("meta", 512, pattern=b"\xfe\xed")
    buf = ioengine.allocate_aligned_buffer(4096, 4096)
    v.fill(buf, 0, 4096, 1)
    mv = memoryview(buf)
    assert bytes(mv[DATA_AT:512]) == (b"\xfe\xed" * 256)[DATA_AT:512]
    assert HDR.unpack_from(mv, 512)[:3] == (MAGIC, 512, 512)


def test_a_block_larger_than_its_buffer_is_refused() -> None:
    v = verifier("md5")
    with pytest.raises(ValueError, match="a block of 8192 bytes in a buffer of 4096"):
        v.fill(ioengine.allocate_aligned_buffer(4096, 4096), 0, 8192, 1)
    with pytest.raises(ValueError, match="a block of 8192 bytes in a buffer of 4096"):
        v.check(bytearray(4096), "f", 0, 8192)


def test_surface_scan_job_writes_headers_every_512_bytes_and_finds_a_damaged_one(
        scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # fio's examples/surface-scan.fio, small: 64 KiB writes with a header every 512 bytes, then
    # a read phase that checks them; then one 512-byte piece of the file damaged, read again.
    job = scratch / "scan.fio"
    job.write_text(textwrap.dedent(f"""\
        [global]
        bs=64k
        direct=1
        ioengine=sync
        verify=meta
        verify_pattern=0xaa555aa5
        verify_interval=512
        size=1m
        filename={scratch}/data
        [write-phase]
        rw=write
        do_verify=0
        [verify-phase]
        stonewall
        rw=read
        do_verify=1
    """))
    assert main(["run", str(job)]) == 0, capsys.readouterr().err
    with open(scratch / "data", "rb") as f:
        data = f.read()
    assert len(data) == 1 << 20
    for c in range(0, 1 << 20, 512):
        assert HDR.unpack_from(data, c)[:3] == (MAGIC, 512, c)
    assert data[DATA_AT:512] == (bytes.fromhex("aa555aa5") * 128)[DATA_AT:512]
    capsys.readouterr()
    fd = os.open(scratch / "data", os.O_WRONLY)
    try:
        os.pwrite(fd, b"\0" * 512, 5 * 65536 + 3 * 512)  # one piece of the sixth block
    finally:
        os.close(fd)
    read_job = scratch / "read.fio"
    read_job.write_text("\n".join(ln for ln in job.read_text().splitlines()
                                  if not ln.startswith(("[write-phase]", "rw=write", "do_verify=0", "stonewall"))))
    assert main(["run", str(read_job)]) == 1
    out, err = capsys.readouterr()
    assert err.count("verify: bad magic header 0, wanted acca10e0") == 1, err
    assert f"offset {5 * 65536}, length 65536" in err and "err=84" in out
