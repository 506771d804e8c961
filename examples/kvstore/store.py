"""A small Bitcask-style key-value store on ioengine's public API.

Layout: a directory of append-only data logs ``00000001.log``, ``00000002.log``, … Each record is

    crc32 (4 bytes) | key length (4) | value length (4, 0xFFFFFFFF for a deletion) | key | value

little-endian, the crc covering everything after it. An in-memory index maps each live key to
the log, position and length of its newest record.

- Puts append to the newest (active) log through an output stream (``append=True`` when the
  store reopens). The log is opened with O_DSYNC and the stream runs with
  ``trim_on_flush=False``: a commit is one write, no truncate and no fdatasync. The log may
  carry zeros past its last record until it is closed — recovery stops there anyway.
- New logs are written full of zeros before they are used (``prezero``; the next one in the
  background once the active one is half full, in the compaction io class, as Seastar's
  commitlog preallocates segments): a
  commit then overwrites blocks the filesystem has already written, with no extent to
  convert and no size to change, and the O_DSYNC write is all the disk does.
- ``flush()`` makes every put and delete before it durable (several tasks flushing at once
  share one fdatasync: the stream's group commit). Puts not yet flushed are served from memory.
- Gets read the whole record with ``File.dma_read_bulk(pos, n, into=buf)`` into a buffer the
  store reuses, and check its crc and key before returning the value.
- A log that reaches ``max_log_size`` is closed (cut to its last record, synced) and a new one
  started.
- ``compact()`` rewrites the live records of the closed logs into one new log, reading them
  through an input stream in a low-share io class so that gets and puts keep the disk.
- Opening a store replays the logs in order and stops at the first torn or zeroed record (a
  crash mid-write); the active log is cut there before appending resumes.

Concurrency: any number of tasks may call ``get``; ``put``/``delete``/``flush`` may come from many
tasks too (the output stream keeps each record whole and in call order). ``compact()`` runs one
at a time.
"""
from __future__ import annotations

import asyncio
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import ioengine
from ioengine import (
    DmaBuffer,
    File,
    FileInputStreamOptions,
    FileOutputStreamOptions,
    IoClass,
    OpenFlags,
    make_file_input_stream,
    make_file_output_stream,
)

HEADER = struct.Struct("<III")  # crc32, key length, value length
TOMBSTONE = 0xFFFFFFFF
MAX_KEY = 1 << 16
MAX_VALUE = 1 << 24
#: The active log is opened with O_DSYNC: each write is durable when it completes, so a commit
#: is one write and no fdatasync (the output stream knows; scripts/commit_latency.py and
#: bench.py measure it). Set to OpenFlags(0) to commit with write + fdatasync instead.
LOG_FLAGS = OpenFlags.DSYNC
#: Zeros written per request when a log is prepared.
ZERO_CHUNK = 1 << 20
#: Buffers kept for gets (one per concurrent get); a larger record gets a buffer of its own.
GET_BUFFER = 64 * 1024


class CorruptRecord(Exception):
    """A get found a record whose crc or key does not match the index: the disk lost data."""


@dataclass(frozen=True, slots=True)
class StoreOptions:
    #: A log is closed and a new one started once it reaches this size.
    max_log_size: int = 64 << 20
    #: Shares of the io class compaction reads and writes in (the default class has 1000).
    compaction_shares: int = 100
    #: Output stream buffer (bytes coalesced per write).
    buffer_size: int = 128 * 1024
    #: Write each new log full of zeros (max_log_size) before it takes puts: commits are then
    #: plain overwrites (see the module docstring). Costs writing every log twice.
    prezero: bool = True


def encode(key: bytes, value: bytes | None) -> bytes:
    """One record (a deletion when ``value`` is None)."""
    if not 0 < len(key) <= MAX_KEY:
        raise ValueError(f"key must be 1 to {MAX_KEY} bytes, got {len(key)}")
    if value is not None and len(value) > MAX_VALUE:
        raise ValueError(f"value must be at most {MAX_VALUE} bytes, got {len(value)}")
    vlen = TOMBSTONE if value is None else len(value)
    body = struct.pack("<II", len(key), vlen) + key + (value or b"")
    return struct.pack("<I", zlib.crc32(body)) + body


def record_length(klen: int, vlen: int) -> int:
    return HEADER.size + klen + (0 if vlen == TOMBSTONE else vlen)


def _log_name(fid: int) -> str:
    return f"{fid:08d}.log"


class KVStore:
    """Open with ``await KVStore.open(directory)``; close with ``await store.close()``."""

    def __init__(self, directory: str, options: StoreOptions) -> None:
        self.directory = directory
        self.options = options
        #: key -> (log id, record position, record length) of the newest record.
        self._index: dict[bytes, tuple[int, int, int]] = {}
        #: Puts and deletes not yet known durable: key -> (value or None, log id, record end).
        self._recent: dict[bytes, tuple[bytes | None, int, int]] = {}
        self._readers: dict[int, File] = {}  # log id -> File opened for reading
        self._active_id = 0
        self._out: ioengine.FileOutputStream | None = None
        self._end = 0  # position after the last record handed to the active stream
        self._rotating: asyncio.Future[None] | None = None
        self._compacting = False
        self._active_file: File | None = None  # the active log's File (the stream does not close it)
        self._next_log: asyncio.Task[str] | None = None  # preparing the next log (prezero)
        #: _append prepares the next log once the active one reaches this (half its size).
        self._prepare_at = options.max_log_size // 2 if options.prezero else options.max_log_size
        self._bufs: list[DmaBuffer] = []  # idle get buffers
        self._compaction_class = IoClass("kvstore-compaction", shares=options.compaction_shares)
        self.recovered_torn = 0  # bytes cut from the active log's end at open (a torn tail)

    # -- opening, recovery, closing --------------------------------------------------------

    @classmethod
    async def open(cls, directory: str, options: StoreOptions | None = None) -> KVStore:
        store = cls(directory, options or StoreOptions())
        await store._recover()
        return store

    async def _recover(self) -> None:
        if not await ioengine.file_exists(self.directory):
            await ioengine.make_directory(self.directory)
        names = []
        async for entry in ioengine.list_directory(self.directory):
            if entry.name.endswith((".compact", ".zero")):  # a compaction or log not finished
                await ioengine.remove_file(os.path.join(self.directory, entry.name))
            elif entry.name.endswith(".log"):
                names.append(entry.name)
        ids = sorted(int(n[:-4]) for n in names)
        valid_end = 0
        for fid in ids:
            valid_end = await self._replay(fid)
        if ids:
            self._active_id = ids[-1]
            path = self._path(self._active_id)
            f = await ioengine.open_file_dma(path, OpenFlags.RW | LOG_FLAGS)
            size = await f.size()
            if size > valid_end:  # a torn record or zeros past the last record: cut them
                self.recovered_torn = size - valid_end
                await f.truncate(valid_end)
                await f.flush()
            self._active_file = f
            self._out = make_file_output_stream(f, self._stream_options(), append=True, close_file=False)
            self._end = valid_end
        else:
            await self._start_log(1)

    async def _replay(self, fid: int) -> int:
        """Index one log's records in order; returns where its valid records end."""
        f = await ioengine.open_file_dma(self._path(fid))
        self._readers[fid] = f
        pos = 0
        async with make_file_input_stream(f) as s:
            async for rpos, klen, vlen, key, _ in _records(s, pos):
                if vlen == TOMBSTONE:
                    self._index.pop(key, None)
                else:
                    self._index[key] = (fid, rpos, record_length(klen, vlen))
                pos = rpos + record_length(klen, vlen)
        return pos

    def _stream_options(self, io_class: IoClass | None = None) -> FileOutputStreamOptions:
        return FileOutputStreamOptions(buffer_size=self.options.buffer_size, trim_on_flush=False,
                                       io_class=io_class)

    def _path(self, fid: int, suffix: str = "") -> str:
        return os.path.join(self.directory, _log_name(fid) + suffix)

    async def _start_log(self, fid: int) -> None:
        path = self._path(fid)
        if self.options.prezero:
            task, self._next_log = self._next_log, None
            zeroed = await task if task is not None else await self._zeroed_log(fid)
            await ioengine.rename_file(zeroed, path)
            f = await ioengine.open_file_dma(path, OpenFlags.RW | LOG_FLAGS)
        else:
            f = await ioengine.open_file_dma(path, OpenFlags.RW | OpenFlags.CREATE | OpenFlags.EXCLUSIVE | LOG_FLAGS)
        await ioengine.sync_directory(self.directory)  # the new log's name is durable too
        self._readers[fid] = await ioengine.open_file_dma(path)
        self._active_file = f
        self._out = make_file_output_stream(f, self._stream_options(), close_file=False)
        self._active_id = fid
        self._end = 0
        self._prepare_at = self.options.max_log_size // 2 if self.options.prezero else self.options.max_log_size

    def _prepare_next(self) -> None:
        """Start writing the next log's zeros (once the active log is half full: _append)."""
        self._prepare_at = self.options.max_log_size
        if self.options.prezero and self._next_log is None:
            self._next_log = asyncio.ensure_future(self._zeroed_log(self._active_id + 1))

    async def _zeroed_log(self, fid: int) -> str:
        """``<fid>.log.zero``: max_log_size bytes of zeros, written (not fallocated: blocks the
        filesystem has written take overwrites without any metadata change) and synced."""
        path = self._path(fid, ".zero")
        f = await ioengine.open_file_dma(path, OpenFlags.WO | OpenFlags.CREATE | OpenFlags.TRUNCATE)
        try:
            zero = f.allocate_buffer(ZERO_CHUNK)
            zero[:] = bytes(ZERO_CHUNK)  # pool memory holds stale bytes
            size = -(-self.options.max_log_size // ZERO_CHUNK) * ZERO_CHUNK
            with self._compaction_class:  # background work: the low-share class
                await asyncio.gather(*(self._zero_range(f, zero, start, size)
                                       for start in range(0, 4 * ZERO_CHUNK, ZERO_CHUNK)))
            zero.release()
            await f.flush()
        finally:
            await f.close()
        return path

    @staticmethod
    async def _zero_range(f: File, zero: DmaBuffer, start: int, size: int) -> None:
        for pos in range(start, size, 4 * ZERO_CHUNK):  # four writes in flight
            await f.dma_write(pos, zero)

    async def _close_active(self) -> None:
        """Close the active log: flushed, cut to its last record (the stream cuts only its own
        padding; a prezeroed log is longer), synced."""
        out, f = self._out, self._active_file
        self._out = self._active_file = None
        if out is not None:
            await out.close()
        if f is not None:
            if f.logical_size != self._end:
                await f.truncate(self._end)
                await f.flush()
            await f.close()

    async def close(self) -> None:
        zeroed = self._path(self._active_id + 1, ".zero")  # the log being prepared, if any
        await self._close_active()
        if self._next_log is not None:
            task, self._next_log = self._next_log, None
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            if await ioengine.file_exists(zeroed):
                await ioengine.remove_file(zeroed)
        for f in self._readers.values():
            await f.close()
        self._readers.clear()
        for b in self._bufs:
            b.release()
        self._bufs.clear()

    async def __aenter__(self) -> KVStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes ----------------------------------------------------------------------------

    async def put(self, key: bytes, value: bytes) -> None:
        await self._append(key, value)

    async def delete(self, key: bytes) -> None:
        await self._append(key, None)

    async def _append(self, key: bytes, value: bytes | None) -> None:
        rec = encode(key, value)
        while self._rotating is not None:
            await asyncio.shield(self._rotating)
        out = self._out
        assert out is not None, "the store is closed"
        # No await between taking the position and calling write(): the stream serializes
        # write() calls in call order, so this record lands exactly at self._end.
        pos = self._end
        self._end = pos + len(rec)
        fid = self._active_id
        self._recent[key] = (value, fid, self._end)
        if value is None:
            self._index.pop(key, None)
        else:
            self._index[key] = (fid, pos, len(rec))
        await out.write(rec)
        if self._end >= self._prepare_at:
            if self._end >= self.options.max_log_size and self._rotating is None:
                await self._rotate()
            else:
                self._prepare_next()

    async def flush(self) -> None:
        """Make every put and delete made before this call durable."""
        out = self._out
        if out is None:
            return
        await out.flush()
        durable, fid = out.durable_position, self._active_id
        if out is self._out:
            self._forget_recent(fid, durable)

    def _forget_recent(self, fid: int, durable: int) -> None:
        """Durable records are read from disk from now on; drop their copies from memory."""
        stale = [k for k, (_, f, end) in self._recent.items() if f < fid or (f == fid and end <= durable)]
        for k in stale:
            del self._recent[k]

    async def _rotate(self) -> None:
        self._rotating = asyncio.get_running_loop().create_future()
        try:
            old = self._active_id
            await self._close_active()  # flushed, cut to its last record, synced
            await self._start_log(old + 1)
            self._forget_recent(self._active_id, 0)
        finally:
            fut, self._rotating = self._rotating, None
            fut.set_result(None)

    # -- reads -----------------------------------------------------------------------------

    async def get(self, key: bytes) -> bytes | None:
        """The newest value of ``key``, or None."""
        for _ in range(3):  # a compaction may swap the log under us: look again
            recent = self._recent.get(key)
            if recent is not None:
                return recent[0]
            loc = self._index.get(key)
            if loc is None:
                return None
            fid, pos, n = loc
            f = self._readers.get(fid)
            if f is None or f.closed:
                await asyncio.sleep(0)
                continue
            try:
                return await self._read_value(f, fid, pos, n, key)
            except ioengine.ClosedFileError:
                continue
        raise RuntimeError(f"get({key!r}): the log kept changing under the read")

    async def _read_value(self, f: File, fid: int, pos: int, n: int, key: bytes) -> bytes:
        pooled = n <= GET_BUFFER
        buf = (self._bufs.pop() if self._bufs else f.allocate_buffer(GET_BUFFER)) if pooled \
            else f.allocate_buffer(n)
        try:
            got = await f.dma_read_bulk(pos, n, into=buf)
        except BaseException:
            # Cancelled (or failed): the read may still be landing in buf. Never reuse it; its
            # memory is freed when the read completes, not before.
            buf.release()
            raise
        try:
            view = memoryview(buf)[:n]
            if got != n:
                raise CorruptRecord(f"{_log_name(fid)} at {pos}: {got} of {n} bytes")
            crc, klen, vlen = HEADER.unpack_from(view)
            if zlib.crc32(view[4:]) != crc or klen != len(key) or view[HEADER.size:HEADER.size + klen] != key:
                raise CorruptRecord(f"{_log_name(fid)} at {pos}: crc or key mismatch for {key!r}")
            value = bytes(view[HEADER.size + klen:])
            view.release()
            return value
        finally:
            if pooled:
                self._bufs.append(buf)
            else:
                buf.release()

    def keys(self) -> Iterator[bytes]:
        """The live keys (a snapshot)."""
        live = {k for k, (v, _, _) in self._recent.items() if v is not None}
        live.update(k for k in self._index if self._recent.get(k, (b"",))[0] is not None)
        return iter(live)

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    # -- compaction ------------------------------------------------------------------------

    async def compact(self) -> int:
        """Rewrite the live records of every closed log into one log (the newest closed log's
        id), then delete the others. Returns the bytes reclaimed.

        Crash safety: the new log is written as ``<id>.log.compact``, synced, then renamed over
        ``<id>.log`` (atomic), and the older logs are deleted oldest first: at every moment the
        logs on disk replay to the same contents. Reads and writes in the compaction io class.
        """
        if self._compacting:
            raise RuntimeError("compact() is already running")
        self._compacting = True
        try:
            return await self._compact()
        finally:
            self._compacting = False

    async def _compact(self) -> int:
        sealed = sorted(fid for fid in self._readers if fid != self._active_id)
        if not sealed:
            return 0
        target = sealed[-1]
        before = 0
        tmp = self._path(target, ".compact")
        cls = self._compaction_class
        out = make_file_output_stream(
            await ioengine.open_file_dma(tmp, OpenFlags.WO | OpenFlags.CREATE | OpenFlags.TRUNCATE),
            FileOutputStreamOptions(buffer_size=self.options.buffer_size, io_class=cls))
        moved: list[tuple[bytes, tuple[int, int, int], tuple[int, int, int]]] = []
        try:
            for fid in sealed:
                f = self._readers[fid]
                before += await f.size()
                s = make_file_input_stream(f, options=FileInputStreamOptions(io_class=cls))
                async with s:
                    async for rpos, klen, vlen, key, value in _records(s, 0):
                        n = record_length(klen, vlen)
                        if vlen == TOMBSTONE or self._index.get(key) != (fid, rpos, n):
                            continue  # deleted, or a newer record exists: dropped
                        moved.append((key, (fid, rpos, n), (target, out.position, n)))
                        await out.write(encode(key, value))
            after = out.position
            await out.close()  # synced
        except BaseException:
            await out.close()
            await ioengine.remove_file(tmp)
            raise
        await ioengine.rename_file(tmp, self._path(target))
        await ioengine.sync_directory(self.directory)
        reader = await ioengine.open_file_dma(self._path(target))
        # From here on gets find the moved records in the new log (unless rewritten meanwhile).
        old_readers = [self._readers.pop(fid) for fid in sealed]
        self._readers[target] = reader
        for key, old, new in moved:
            if self._index.get(key) == old:
                self._index[key] = new
        for f in old_readers:
            await f.close()  # waits for gets in flight on it
        for fid in sealed[:-1]:
            await ioengine.remove_file(self._path(fid))
        await ioengine.sync_directory(self.directory)
        return before - after


def _records(s: ioengine.FileInputStream, pos: int) -> _RecordIter:
    """The records of a log read through ``s``, which starts at file position ``pos``."""
    return _RecordIter(s, pos)


class _RecordIter:
    """``async for pos, klen, vlen, key, value in _records(stream, start)``: the records of a log
    in order, up to the first torn or zeroed one (a crc that does not match, a zero key length,
    lengths out of range, or the end of the file in the middle of a record)."""

    __slots__ = ("_s", "_pos")

    def __init__(self, s: ioengine.FileInputStream, pos: int) -> None:
        self._s = s
        self._pos = pos

    def __aiter__(self) -> _RecordIter:
        return self

    async def __anext__(self) -> tuple[int, int, int, bytes, bytes]:
        s = self._s
        try:
            head = bytes(await s.read_exactly(HEADER.size))
            crc, klen, vlen = HEADER.unpack(head)
            if not 0 < klen <= MAX_KEY or (vlen != TOMBSTONE and vlen > MAX_VALUE):
                raise StopAsyncIteration
            body = bytes(await s.read_exactly(record_length(klen, vlen) - HEADER.size))
        except asyncio.IncompleteReadError:
            raise StopAsyncIteration from None
        if zlib.crc32(head[4:] + body) != crc:
            raise StopAsyncIteration
        pos = self._pos
        self._pos = pos + HEADER.size + len(body)
        return pos, klen, vlen, body[:klen], body[klen:]
