"""input_stream / output_stream over a File: read-ahead and write-behind (Seastar's fstream).

Two deliberate differences from Seastar: an output stream keeps working after flush() (the tail
block flush wrote is rewritten in place by later writes), and read-ahead can adapt by itself.
"""
from __future__ import annotations

import asyncio
import collections
import errno
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ._iopath import IoFuture
from .buffers import DmaBuffer
from .errors import ClosedFileError
from .file import File
from .io_class import IoClass
from .reactor import request_error

log = logging.getLogger(__name__)

#: Read-ahead never grows past this many buffers when adapting (memory stays bounded).
MAX_DYNAMIC_READ_AHEAD = 16


#: The largest buffer_size a stream takes (1 GiB); larger is surely a mistake.
MAX_STREAM_BUFFER = 1 << 30
#: The most buffers a stream keeps in flight (read_ahead, write_behind).
MAX_STREAM_DEPTH = 1 << 16


def _check_int_field(cls: str, name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{cls}.{name} must be an int, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{cls}.{name} must be in [{lo}, {hi}], got {value}")


def _check_bool_field(cls: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{cls}.{name} must be True or False, got {type(value).__name__} {value!r}")


def _check_io_class_field(cls: str, value: Any) -> None:
    if value is not None and not isinstance(value, IoClass):
        raise TypeError(f"{cls}.io_class must be an ioengine.IoClass or None, got {type(value).__name__} {value!r}")


@dataclass(frozen=True, slots=True)
class FileInputStreamOptions:
    """Seastar's file_input_stream_options."""

    #: Bytes per read; rounded up to the file's read alignment.
    buffer_size: int = 131072
    #: Reads kept in flight beyond the one being consumed.
    read_ahead: int = 4
    #: Adapt: add read-ahead while the consumer has to wait for the disk (up to
    #: MAX_DYNAMIC_READ_AHEAD), halve the buffer size when skips throw read data away.
    dynamic_adjustments: bool = False
    #: Scheduling class for the reads (None: the current one).
    io_class: Any = None

    def __post_init__(self) -> None:
        # TypeError for a wrong type, ValueError for a value out of range; both name the field.
        _check_int_field("FileInputStreamOptions", "buffer_size", self.buffer_size, 1, MAX_STREAM_BUFFER)
        _check_int_field("FileInputStreamOptions", "read_ahead", self.read_ahead, 0, MAX_STREAM_DEPTH)
        _check_bool_field("FileInputStreamOptions", "dynamic_adjustments", self.dynamic_adjustments)
        _check_io_class_field("FileInputStreamOptions", self.io_class)


@dataclass(frozen=True, slots=True)
class FileOutputStreamOptions:
    """Seastar's file_output_stream_options."""

    #: Bytes per write; rounded up to the file's write alignment.
    buffer_size: int = 131072
    #: Writes kept in flight while the caller goes on filling the next buffer.
    write_behind: int = 4
    #: Reserve disk space (fallocate) in multiples of this size ahead of the write position, so
    #: the filesystem allocates large extents and the writes land inside the file; the stretch
    #: reserved grows with what the stream has written, up to RESERVE_AHEAD_MAX. 0 turns it
    #: off. Until the first flush the reservation extends the file (the reserved part reads as
    #: zeros; flush() and close() cut it to the exact length); after a flush, and always with
    #: trim_on_flush=False, it keeps the file's size (a committing stream never pays to cut it).
    preallocation_size: int = 1 << 20
    #: What flush() leaves as the file's size. True: the data's exact length (a flush whose
    #: data ends inside a block writes that block padded with zeros, then truncates the file
    #: back and re-reserves the space the truncate freed: two more operations per commit).
    #: False (Seastar's behaviour, the cheap commit: a write and an fdatasync): the file stays
    #: rounded up to the write alignment until close(), the bytes from ``durable_position`` to
    #: the end of the block reading as zeros; readers and recovery must expect that padding
    #: (read up to ``durable_position``, or stop at zeros). close() always cuts the file to
    #: the data's length.
    trim_on_flush: bool = True
    #: Scheduling class for the writes (None: the current one).
    io_class: Any = None

    def __post_init__(self) -> None:
        # TypeError for a wrong type, ValueError for a value out of range; both name the field.
        _check_int_field("FileOutputStreamOptions", "buffer_size", self.buffer_size, 1, MAX_STREAM_BUFFER)
        _check_int_field("FileOutputStreamOptions", "write_behind", self.write_behind, 1, MAX_STREAM_DEPTH)
        _check_int_field("FileOutputStreamOptions", "preallocation_size", self.preallocation_size, 0, 1 << 62)
        _check_bool_field("FileOutputStreamOptions", "trim_on_flush", self.trim_on_flush)
        _check_io_class_field("FileOutputStreamOptions", self.io_class)


#: How far past the data an output stream's reservation may reach: it grows with what the
#: stream has written, up to this (the file may be this much longer than the data until flush).
RESERVE_AHEAD_MAX = 64 << 20


def _check_count(op: str, n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{op}: n must be an int (a byte count), got {type(n).__name__} {n!r}")
    if n < 0:
        raise ValueError(f"{op}: n must be >= 0, got {n}")


#: The largest file offset (LLONG_MAX): a read must end at or before it.
_MAX_FILE_POS = (1 << 63) - 1


def _check_offset(op: str, offset: Any) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(f"{op}: offset must be an int, got {type(offset).__name__} {offset!r}")
    if not 0 <= offset < 1 << 63:
        raise ValueError(f"{op}: offset {offset} is outside [0, 2**63), the file offsets the kernel takes")


def _retrieve(fut: IoFuture[Any] | asyncio.Future[Any]) -> None:
    """Mark a finished future's outcome as seen (its error is reported another way)."""
    if not fut.cancelled():
        fut.exception()


def _round_up(n: int, a: int) -> int:
    return -(-n // a) * a


class FileInputStream:
    """Sequential reader with read-ahead. ``await read()`` gives the next buffer (empty at the end)."""

    def __init__(self, file: File, offset: int, length: int | None, options: FileInputStreamOptions,
                 close_file: bool = False) -> None:
        _check_offset("make_file_input_stream", offset)
        if length is not None:
            if isinstance(length, bool) or not isinstance(length, int):
                raise TypeError(f"make_file_input_stream: length must be an int or None, "
                                f"got {type(length).__name__} {length!r}")
            if length < 0:
                raise ValueError(f"make_file_input_stream: length must be >= 0 or None, got {length}")
        if not isinstance(options, FileInputStreamOptions):
            raise TypeError(f"make_file_input_stream: options must be a FileInputStreamOptions or None, "
                            f"got {type(options).__name__}")
        self._file = file
        self._opts = options
        align = file.disk_read_dma_alignment
        self._align = align
        self._buffer_size = _round_up(min(options.buffer_size, 1 << 30), align)
        self._read_ahead = options.read_ahead
        self._end = None if length is None else offset + length  # None: up to end of file
        self._next_pos = offset - offset % align  # next read to issue (aligned)
        self._skip_front = offset - self._next_pos  # bytes to drop from the first buffer
        self._inflight: collections.deque[tuple[int, DmaBuffer, IoFuture[int]]] = collections.deque()
        self._eof = False  # a read found nothing (the end of the file): nothing more to issue
        self._leftover: memoryview | None = None  # part of a buffer not yet handed out
        self._line_view: memoryview | None = None  # readline's leftover (a view of its bytes)
        self._closed = False
        self._waits = 0
        self._close_file = close_file
        self._offset = offset
        self._taken = 0  # bytes taken from the read buffers (handed out or skipped)

    # -- reading ahead ---------------------------------------------------------------------

    def _fill(self) -> None:
        want = self._read_ahead + 1
        file = self._file
        while len(self._inflight) < want and not self._eof:
            pos = self._next_pos
            if self._end is not None and pos >= self._end:
                break
            size = self._buffer_size
            if self._end is not None:
                size = min(size, _round_up(self._end - pos, self._align))
            room = (_MAX_FILE_POS - pos) // self._align * self._align
            if size > room:  # the kernel takes no read past the largest offset (EINVAL)
                size = room
                if size <= 0:
                    self._eof = True
                    break
            buf = file.allocate_buffer(size)
            fut = file.read_future(pos, buf, self._opts.io_class)
            self._inflight.append((pos, buf, fut))
            self._next_pos = pos + size

    async def _next_chunk(self) -> memoryview | None:
        """The next piece of data in file order, or None at the end."""
        if self._closed:
            raise ClosedFileError(f"read from a closed input stream of {self._file.path!r}")
        self._fill()
        if not self._inflight:
            return None
        entry = self._inflight[0]
        pos, buf, fut = entry
        if not fut.done():
            self._waits += 1
            if self._opts.dynamic_adjustments and self._read_ahead < MAX_DYNAMIC_READ_AHEAD:
                self._read_ahead += 1  # the consumer outruns the disk: look further ahead
                self._fill()
            # Awaited directly (a shield would cost a loop turn per buffer). If our caller is
            # cancelled, the task cancels this future too: the read goes on in the kernel (its
            # buffer stays pinned until the completion), and the entry is re-issued so the next
            # read() finds its data. close() and skip() cancel entries they have popped.
            try:
                await fut
            except asyncio.CancelledError:
                if self._inflight and self._inflight[0] is entry:
                    if fut.cancelled():
                        self._reissue_front(entry)
                    raise  # our caller was cancelled
            except BaseException:
                pass  # the read failed: reported below, once the entry is popped
        if not (self._inflight and self._inflight[0] is entry):
            # Someone else took the entry while we waited: close() or a skip().
            if self._closed:
                raise ClosedFileError(f"read from a closed input stream of {self._file.path!r}")
            return memoryview(b"")
        self._inflight.popleft()
        try:
            got = fut.result()
        except BaseException:
            buf.release()
            raise
        start = self._skip_front
        self._skip_front = 0
        if got < len(buf):
            if got <= start:
                self._eof = True  # nothing at or after the wanted position: the end of the file
            # A short read: the end of the file, or not (a file cut or grown meanwhile, a
            # filesystem or device that returns short reads). Reads issued beyond it must not be
            # handed out after it (that would leave a gap): drop them, and go on from where this
            # one ended. At the true end the next read returns nothing and the stream ends there.
            self._restart_at(pos + got)
        stop = got if self._end is None else min(got, self._end - pos)
        if stop <= start:
            buf.release()
            return None if self._eof else memoryview(b"")
        self._fill()
        self._taken += stop - start
        return memoryview(buf.trim(start, stop - start))

    def _restart_at(self, where: int) -> None:
        """Drop the reads in flight; the next one is issued at ``where`` (file order)."""
        while self._inflight:
            _, b, f = self._inflight.popleft()
            f.cancel()  # also marks an already-failed read's error as seen (no "never retrieved")
            b.release()
        self._next_pos = where - where % self._align
        self._skip_front = where - self._next_pos

    def _reissue_front(self, entry: tuple[int, DmaBuffer, IoFuture[int]]) -> None:
        pos, buf, _ = entry
        fresh = self._file.allocate_buffer(len(buf))
        buf.release()  # freed when the abandoned read completes, not before
        self._inflight[0] = (pos, fresh, self._file.read_future(pos, fresh, self._opts.io_class))

    # -- the Seastar API -------------------------------------------------------------------

    async def read(self) -> memoryview:
        """The next buffer of data (a zero-copy view); empty at the end of the range."""
        if self._leftover is not None:
            out, self._leftover = self._leftover, None
            return out
        while True:
            chunk = await self._next_chunk()
            if chunk is None:
                return memoryview(b"")
            if len(chunk):
                return chunk

    async def read_up_to(self, n: int) -> memoryview:
        """At most ``n`` bytes, without waiting for more than one buffer; empty at the end."""
        _check_count("read_up_to", n)
        if n == 0:
            return memoryview(b"")
        chunk = await self.read()
        if len(chunk) > n:
            self._leftover = chunk[n:]
            chunk = chunk[:n]
        return chunk

    async def read_exactly(self, n: int) -> memoryview:
        """Exactly ``n`` bytes.

        Like asyncio's ``StreamReader.readexactly``: if the range ends first, it raises
        ``asyncio.IncompleteReadError`` whose ``.partial`` holds the bytes there were (consumed:
        the stream is then at its end; ``.expected`` is ``n``). It consumes nothing unless it
        returns or reaches the end: if the task is cancelled (or a read fails) while it waits
        for more, the bytes it had gathered go back to the stream, and the next read starts
        where this one started. (``File.dma_read_exactly`` raises ``ShortReadError``, also with
        ``.partial``.)
        """
        _check_count("read_exactly", n)
        if n == 0:
            return memoryview(b"")
        first = await self.read_up_to(n)
        if len(first) == n:
            return first  # zero-copy when one buffer holds it all
        out = bytearray(first)
        try:
            while len(out) < n:
                more = await self.read_up_to(n - len(out)) if out else memoryview(b"")
                if not more:
                    raise asyncio.IncompleteReadError(bytes(out), n)
                out += more
        except asyncio.IncompleteReadError:
            raise
        except BaseException:
            self._push_back(out)
            raise
        return memoryview(out)

    def _push_back(self, data: Any) -> None:
        """Give back bytes already taken from the stream: the next read returns them first."""
        if not len(data) or self._closed:
            return
        if self._leftover is not None and len(self._leftover):
            data = bytes(data) + bytes(self._leftover)
        self._leftover = memoryview(bytes(data))
        self._line_view = None

    async def skip(self, n: int) -> None:
        """Drop the next ``n`` bytes; reads already issued past them are reused, others dropped."""
        _check_count("skip", n)
        if self._closed:
            raise ClosedFileError(f"skip on a closed input stream of {self._file.path!r}")
        if self._leftover is not None:
            take = min(n, len(self._leftover))
            self._leftover = self._leftover[take:] if take < len(self._leftover) else None
            n -= take
        if n == 0:
            return
        # Where the skip lands, in file order.
        here = self._consumed_pos()
        target = here + n
        if self._end is not None:
            target = min(target, self._end)
            self._taken += max(0, min(n, self._end - self.position))
        else:
            self._taken += n
        # Reads wholly before the target are wasted; drop them (their buffers stay pinned until
        # their completions, then go).
        wasted = 0
        while self._inflight and self._inflight[0][0] + len(self._inflight[0][1]) <= target:
            _, buf, fut = self._inflight.popleft()
            fut.cancel()  # also marks an already-failed read's error as seen (no "never retrieved")
            buf.release()
            wasted += 1
        if self._inflight:
            self._skip_front = target - self._inflight[0][0]
        else:
            self._next_pos = target - target % self._align
            self._skip_front = target - self._next_pos
            self._eof = False
        if wasted and self._opts.dynamic_adjustments and self._buffer_size > self._align * 2:
            # Skips are throwing read data away: smaller buffers waste less.
            self._buffer_size = max(self._align, _round_up(self._buffer_size // 2, self._align))

    @property
    def position(self) -> int:
        """The file position of the next byte the stream will return: the starting offset plus
        the bytes consumed (returned by the read calls, or skipped; a skip past the end of the
        file counts whole). Bytes a cancelled read_exactly/readinto/readline gave back are not
        consumed."""
        left = self._leftover
        return self._offset + self._taken - (len(left) if left is not None else 0)

    def _consumed_pos(self) -> int:
        """File position of the next byte read() would return."""
        if self._inflight:
            return self._inflight[0][0] + self._skip_front
        return self._next_pos + self._skip_front

    async def close(self) -> None:
        """Stop: read-aheads in flight are abandoned safely (their buffers go at completion).
        The file is closed too if the stream was made with ``close_file=True``."""
        if self._closed:
            return
        self._closed = True
        while self._inflight:
            _, buf, fut = self._inflight.popleft()
            fut.cancel()  # also marks an already-failed read's error as seen (no "never retrieved")
            buf.release()
        self._leftover = None
        if self._close_file:
            await self._file.close()

    # -- Python idioms ---------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[memoryview]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[memoryview]:
        while True:
            chunk = await self.read()
            if not chunk:
                return
            yield chunk

    async def readinto(self, b: Any) -> int:
        """Fill ``b`` as far as the data goes; returns the byte count (0 at the end).

        Consumes nothing unless it returns: if cancelled (or a read fails) part-way, the bytes
        already copied into ``b`` go back to the stream (``b``'s contents are then undefined).
        """
        out = memoryview(b).cast("B")
        done = 0
        try:
            while done < len(out):
                chunk = await self.read_up_to(len(out) - done)
                if not chunk:
                    break
                out[done:done + len(chunk)] = chunk
                done += len(chunk)
        except BaseException:
            self._push_back(out[:done])
            raise
        return done

    async def readline(self) -> bytes:
        """The next line including its b"\\n" (the last may lack it); b"" at the end.

        Consumes nothing unless it returns: if cancelled (or a read fails) while it waits for
        the rest of a line, the part it had goes back to the stream.
        """
        parts: list[bytes] = []
        while True:
            try:
                chunk = await self.read()
            except BaseException:
                self._push_back(b"".join(parts))
                raise
            if not chunk:
                return b"".join(parts)
            # One copy per buffer, not per line: the rest of the text goes back as leftover,
            # a view of the same bytes object, and is searched from where it starts.
            obj = chunk.obj
            if chunk is self._line_view and isinstance(obj, bytes) and len(obj) > len(chunk):
                text, start = obj, len(obj) - len(chunk)
            else:
                text, start = bytes(chunk), 0
            i = text.find(b"\n", start)
            if i >= 0:
                parts.append(text[start:i + 1])
                if i + 1 < len(text):
                    self._leftover = self._line_view = memoryview(text)[i + 1:]
                return b"".join(parts)
            parts.append(text[start:])
    async def lines(self) -> AsyncIterator[bytes]:
        """``async for line in stream.lines()``."""
        while True:
            line = await self.readline()
            if not line:
                return
            yield line

    async def __aenter__(self) -> FileInputStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Write:
    """One background write of an output stream; ``completed`` is the reactor's completion
    callback, called even if the awaiting task was cancelled."""

    __slots__ = ("pos", "n", "buf", "fut", "res", "error", "waiter", "stream")

    def __init__(self, pos: int, buf: DmaBuffer, stream: FileOutputStream, skip: int = 0) -> None:
        # Writes buf[skip:] at pos + skip (a flush already wrote the first skip bytes); the
        # whole buffer is released at the end.
        self.pos = pos + skip
        self.n = len(buf) - skip
        self.buf = buf
        self.fut: IoFuture[int] | None = None  # set once issued (sink.put)
        self.res: int | None = None
        self.error: OSError | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.stream = stream

    def completed(self, req: tuple[Any, ...], res: int) -> None:
        if res < 0:
            self.error = request_error(req, -res)
            if self.fut is not None:
                # The error is recorded here and surfaces at the writer's next call; the future
                # (failed just after this callback) may never be awaited: mark it retrieved.
                self.fut.add_done_callback(_retrieve)
        self.res = res
        stream = self.stream
        stream._active -= 1
        if res != self.n:
            stream._halted = True  # nothing more goes out; the error surfaces at the next call
        elif stream._pending:
            try:
                stream._issue_pending()  # the slot goes to the next full buffer at once
            except Exception as e:  # e.g. the reactor closed: the writer sees it at its next call
                stream._halted = True
                if stream._error is None:
                    stream._error = e
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)


class FileOutputStream:
    """Sequential writer with write-behind; writable again after flush(), unlike Seastar's."""

    def __init__(self, file: File, options: FileOutputStreamOptions, offset: int = 0, close_file: bool = True,
                 append: bool = False) -> None:
        _check_offset("make_file_output_stream", offset)
        if not isinstance(options, FileOutputStreamOptions):
            raise TypeError(f"make_file_output_stream: options must be a FileOutputStreamOptions or None, "
                            f"got {type(options).__name__}")
        align = file.disk_write_dma_alignment
        start = offset  # where the stream's data starts (append: the file's end)
        tail = 0  # append: bytes of the file's last, partial block, read back before the first write
        if append:
            start = file.logical_size
            tail = start % align
            offset = start - tail
            if tail and fcntl.fcntl(file.fileno(), fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
                raise ValueError(f"make_file_output_stream(append=True): {file.path!r} ends inside a block "
                                 f"(size {start}, write alignment {align}); the stream reads that block back "
                                 f"to rewrite it, but the file is open write-only: open it with OpenFlags.RW")
        elif offset % align:
            raise ValueError(f"output stream offset {offset} is not a multiple of {align}, "
                             f"the write alignment of {file.path!r}")
        self._file = file
        self._sink = file.sink()  # issues the write-behind buffers (Seastar's data_sink)
        self._opts = options
        self._align = align
        self._buffer_size = _round_up(options.buffer_size, align)
        self._buf: DmaBuffer | None = None
        self._fill = tail  # bytes in _buf (append: in the block still to be read back)
        self._pos = offset  # file position of _buf[0]
        self._tail_unread = tail > 0  # append: _buf's first _fill bytes are still on disk only
        #: Background writes, oldest first. A buffer goes back to the pool when its entry is
        #: settled (the write has completed).
        self._inflight: collections.deque[_Write] = collections.deque()
        self._active = 0  # writes issued and not completed (at most write_behind)
        #: Full buffers (pos, buf, bytes a flush already wrote) waiting for a write-behind slot
        #: (at most write_behind); a completion issues the next one from its callback, so the
        #: disk is not left short while the writer waits to be scheduled.
        self._pending: collections.deque[tuple[int, DmaBuffer, int]] = collections.deque()
        self._halted = False  # a write failed or came up short: issue nothing more
        self._error: BaseException | None = None
        self._closed = False
        self._prealloc = options.preallocation_size  # 0: off (or turned off by a failure)
        self._prealloc_end = offset
        self._start = offset
        self._grown = False  # a reservation made the file longer than the data: cut it at flush
        #: Bytes at the front of _buf that a flush has written and that are on disk as they are
        #: in _buf: the next flush writes from the block holding the first byte after them.
        self._on_disk = 0
        #: The furthest a padded tail write has reached (past the data when it ends inside a
        #: block): the file must be cut back to the data when this is past it.
        self._padded_end = start
        #: Reservations keep the file's size (FALLOC_FL_KEEP_SIZE) once a stream that trims at
        #: flush has flushed: growing the file would cost a truncate at every commit. Until
        #: then, and always without trim_on_flush, they grow it: writes inside the file are
        #: much cheaper than writes past its end (see _reserve_ahead).
        self._keep_size = False
        # The turn: write(), flush() and close() from several tasks run one at a time, in call
        # order (FIFO). _turn_busy: a call holds it; waiters, oldest first, get it handed over.
        self._durable = start  # durable_position
        self._written_end = start  # end of the data written out and cut to length by a flush
        self._sync_running: asyncio.Future[None] | None = None  # the fdatasync in progress (group commit)
        #: Truncates made by the stream, and how many of them the last completed fdatasync covered.
        self._meta_changes = 0
        self._meta_synced = 0
        #: The file was opened with O_DSYNC: a completed write is durable, no fdatasync needed.
        self._dsync = bool(fcntl.fcntl(file.fileno(), fcntl.F_GETFL) & os.O_DSYNC)
        self._close_file = close_file
        self._turn_busy = False
        self._turn_waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def _raise_if_failed(self, op: str) -> None:
        if self._closed:
            raise ClosedFileError(f"{op} on a closed output stream of {self._file.path!r}")
        inflight = self._inflight
        while inflight and inflight[0].res is not None:  # background writes already finished
            self._settle(inflight.popleft())
        if self._error is not None:
            raise OSError(getattr(self._error, "errno", None),
                          f"{op} refused: an earlier background write to {self._file.path!r} failed: {self._error}",
                          self._file.path) from self._error

    def _short_write(self, pos: int, got: int, want: int) -> OSError:
        return OSError(errno.ENOSPC, f"short write to {self._file.path!r} at position {pos}: "
                                     f"{got} of {want} bytes written", self._file.path)

    def _settle(self, entry: _Write) -> None:
        """Record the outcome of a finished (popped) background write."""
        entry.buf.release()
        if entry.fut is not None and entry.fut.done():
            _retrieve(entry.fut)
        err = entry.error
        res = entry.res
        if err is None and res != entry.n:
            assert res is not None  # settled: the write has completed
            err = self._short_write(entry.pos, res, entry.n)
        if err is not None and self._error is None:
            self._error = err

    @property
    def position(self) -> int:
        """The file position after the last byte accepted by write() (offset + bytes written)."""
        return self._pos + self._fill

    @property
    def durable_position(self) -> int:
        """The file position up to which the data is durable: what the last completed flush()
        covered (the starting offset before any)."""
        return self._durable

    def _new_buffer(self) -> DmaBuffer:
        buf = self._buf = self._file.allocate_buffer(self._buffer_size)
        self._fill = 0
        return buf

    # -- the turn: one write()/flush()/close() at a time, in call order ---------------------

    async def _take_turn(self) -> None:
        """Wait for the turn (another call holds it); FIFO. Cancelled while waiting: nothing done."""
        fut = asyncio.get_running_loop().create_future()
        self._turn_waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self._pass_turn()  # handed the turn just as we were cancelled: pass it on
            else:
                try:
                    self._turn_waiters.remove(fut)
                except ValueError:
                    pass
            raise

    def _pass_turn(self) -> None:
        """Give the turn to the oldest waiter, or free it."""
        waiters = self._turn_waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)  # _turn_busy stays True: the turn is the waiter's now
                return
        self._turn_busy = False

    async def write(self, data: Any) -> None:
        """Append ``data`` (any bytes-like object); small writes are coalesced into buffers.

        Safe from many tasks: concurrent write() calls are serialized in call order, each
        call's bytes contiguous in the file (a call that must wait for write-behind room holds
        the turn; later calls queue behind it, FIFO; flush() and close() queue the same way).
        A call that fits in the current buffer while nobody waits costs no more than a copy.

        All or nothing under cancellation: a write() that has started is accepted whole. If
        the task is cancelled while it waits for write-behind room, the rest of ``data`` is
        still copied into the stream's buffers (beyond write_behind for once; the next call
        waits for the backlog) and only then is CancelledError raised. So the stream always
        holds complete writes, in order: the next write follows this one, never a torn part
        of it. A call cancelled while it waits for its turn writes nothing. (A write that
        fails with an error stops the stream: every later call raises.)
        """
        n = memoryview(data).nbytes
        buf = self._buf
        if not self._turn_busy and buf is not None and self._fill + n < self._buffer_size and not self._closed \
                and not self._halted and self._error is None:
            # The common small write: it fits without filling the buffer, nothing to await.
            if n:
                buf.copy_in(self._fill, data, 0, n)
                self._fill += n
            return
        if self._turn_busy:
            await self._take_turn()
        else:
            self._turn_busy = True
        try:
            await self._write(data, n)
        finally:
            self._pass_turn()

    async def _write(self, data: Any, n: int) -> None:
        self._raise_if_failed("write")
        if self._tail_unread:
            await self._read_tail()
        done = 0
        while done < n:
            buf = self._buf if self._buf is not None else self._new_buffer()
            take = min(n - done, self._buffer_size - self._fill)
            buf.copy_in(self._fill, data, done, take)
            self._fill += take
            done += take
            if self._fill == self._buffer_size:
                try:
                    await self._issue_full()
                except asyncio.CancelledError:
                    self._accept_rest(data, done, n)
                    raise

    async def _read_tail(self) -> None:
        """append: read the file's partial last block back into a fresh buffer, whose first
        _fill bytes it becomes (later writes go on after them, and the block is rewritten
        whole). Cancelled or failed: nothing changes, the next write() tries again."""
        n = self._fill
        file = self._file
        size = _round_up(self._align, file.disk_read_dma_alignment)
        rb = file.allocate_buffer(size)
        try:  # released even if we are cancelled: freed when the read completes, not before
            got = await file.dma_read(self._pos, rb, self._opts.io_class)
            if got < n:
                raise OSError(errno.EIO, f"append to {file.path!r}: the last block at {self._pos} read back "
                                         f"{got} of its {n} bytes (was the file cut since the stream was made?)",
                              file.path)
            buf = file.allocate_buffer(self._buffer_size)
            buf.copy_in(0, rb, 0, n)
        finally:
            rb.release()
        self._buf = buf
        self._on_disk = n  # on disk as in buf: the first flush rewrites this block, padded
        self._tail_unread = False

    def _accept_rest(self, data: Any, done: int, n: int) -> None:
        """A cancelled write(): take the rest of ``data`` without waiting (see write())."""
        while True:
            if self._buf is not None and self._fill == self._buffer_size:
                self._enqueue_full()  # cancelled before the full buffer was queued
                if not self._halted and self._error is None:
                    self._issue_pending()
            if done >= n:
                return
            buf = self._buf if self._buf is not None else self._new_buffer()
            take = min(n - done, self._buffer_size - self._fill)
            buf.copy_in(self._fill, data, done, take)
            self._fill += take
            done += take

    async def _issue_full(self) -> None:
        # The full buffer joins the pending ones (it belongs to the stream from here on: a
        # cancelled write() has still handed its data over). The writer waits only while more
        # than write_behind full buffers are pending: completions often come in twos and threes,
        # and each must find a buffer to issue (with one spare, half of them found none).
        buf = self._buf
        assert buf is not None  # full: _write and _accept_rest call us with it
        pos = self._pos
        if self._prealloc and pos + len(buf) > self._prealloc_end:
            await self._reserve_ahead(pos + len(buf))  # rare: reservations grow with the file
        self._enqueue_full()
        self._issue_pending()
        while len(self._pending) > self._opts.write_behind:
            await self._make_progress()
            self._raise_if_failed("write")

    def _enqueue_full(self) -> None:
        """The full buffer joins the pending ones; a fresh one is taken at the next byte."""
        buf = self._buf
        assert buf is not None  # full
        pos = self._pos
        self._buf = None
        self._fill = 0
        self._pos = pos + len(buf)
        # The blocks a flush already wrote are not written again (a committing stream would
        # otherwise rewrite most of each buffer once more when it fills).
        skip = self._on_disk - self._on_disk % self._align
        self._on_disk = 0
        self._pending.append((pos, buf, skip))

    def _issue_pending(self) -> None:
        """Issue pending buffers while write-behind slots are free (from a completion, too)."""
        pending = self._pending
        sink = self._sink
        limit = self._opts.write_behind
        while pending and self._active < limit and not self._halted and self._error is None:
            pos, buf, skip = pending[0]
            if sink.must_wait(pos, len(buf)):  # a size barrier or sloppy-size growth: the task waits
                return
            pending.popleft()
            entry = _Write(pos, buf, self, skip)
            self._active += 1
            self._inflight.append(entry)
            try:
                entry.fut = sink.put(entry.pos, buf.trim(skip, entry.n) if skip else buf,
                                     self._opts.io_class, entry.completed)
            except BaseException:
                self._inflight.pop()
                self._active -= 1
                pending.appendleft((pos, buf, skip))
                raise

    async def _make_progress(self) -> None:
        """Wait for the oldest write, or for the file to take the next pending one."""
        if self._inflight:
            await self._reap_one()
        elif self._pending and not self._halted and self._error is None:
            pos, buf, _ = self._pending[0]
            await self._sink.wait_writable(pos, len(buf))
            self._issue_pending()
        else:  # failed: what is pending will never be written
            while self._pending:
                self._pending.popleft()[1].release()

    async def _reserve_ahead(self, need: int) -> None:
        """Advisory: reserve space from the reserved end to past ``need``, in multiples of
        preallocation_size, as far ahead as the stream has written (at most RESERVE_AHEAD_MAX);
        on failure, stop trying.

        The reservation grows the file (fallocate mode 0), so the writes that follow land
        inside it: ext4 runs a direct write past the end synchronously, one at a time (a fresh
        512 MiB file at write_behind 4: ~1.0 GB/s with size-keeping reservations, ~1.2-1.45
        growing the file; fio, which lays its file out before the clock starts, ~1.4-1.7).
        It is made with no write in flight, since fallocate takes the inode lock and waits for
        every direct write on the file anyway; reservations grow with the file, so the window
        is drained a few times per file (measured: the same throughput as reserving in the
        background). Space the file already has is not reserved again. flush() and close()
        cut the file back to the bytes written.
        """
        step = self._prealloc
        ahead = min(max(step, self._pos - self._start), RESERVE_AHEAD_MAX)
        end = _round_up(need + ahead, step)
        size = os.fstat(self._file.fileno()).st_size
        if end <= size:  # already inside the file
            self._prealloc_end = end
            return
        await self._drain()
        self._raise_if_failed("write")
        start = max(self._prealloc_end, size)
        keep_size = self._keep_size
        if not keep_size:
            # Set first: if the caller is cancelled while fallocate runs, the reservation may
            # still land, and flush() must then cut the file back to the data.
            self._grown = True
        if await self._reserve(start - start % step, end, keep_size):
            self._prealloc_end = end

    async def _reserve(self, start: int, end: int, keep_size: bool) -> bool:
        try:
            await self._sink.reserve(start, end - start, keep_size)
        except OSError as e:
            log.debug("preallocation for %r stopped: fallocate(%d, %d) failed: %s", self._file.path, start,
                      end - start, e)
            self._prealloc = 0
            return False
        return True

    async def _reap_one(self) -> None:
        """Wait for the oldest background write; cancelling the caller never cancels that write.

        The outcome comes from the reactor's completion callback (entry.completed), so the
        future is awaited directly: a shield would cost two loop turns per buffer. If a
        cancelled caller took the future down with it, later waits use a fresh waiter.
        """
        entry = self._inflight[0]
        if entry.res is None:
            w: IoFuture[Any] | asyncio.Future[Any] | None = entry.fut if entry.waiter is None else entry.waiter
            assert w is not None  # an entry in _inflight has been issued
            if w.done():  # cancelled along with an earlier caller; the write itself goes on
                w = entry.waiter = asyncio.get_running_loop().create_future()
            try:
                await w
            except asyncio.CancelledError:
                if entry.res is None:
                    raise  # our caller was cancelled; the write goes on and stays queued
            except BaseException:
                pass  # recorded by entry.completed
        if self._inflight and self._inflight[0] is entry and entry.res is not None:
            self._settle(self._inflight.popleft())

    async def _drain(self) -> None:
        while self._inflight or self._pending:
            await self._make_progress()

    async def flush(self) -> None:
        """Write what is buffered, wait for write-behind, make it durable (fdatasync).

        Only the blocks written to since the last flush go out; a partial tail block is written
        padded and the file cut back to its true length (with trim_on_flush=False: at close()
        only). Later writes go on filling the same buffer and rewrite that block. Ordered
        with write() calls from other tasks: it covers every write() called before it.

        Group commit: the writing happens in turn; the fdatasync does not hold the turn, and
        flushes requested while one is in progress share the next fdatasync. On a file opened
        with O_DSYNC there is no fdatasync unless the file was cut (see _sync_to).
        """
        if self._turn_busy:
            await self._take_turn()
        else:
            self._turn_busy = True
        try:
            end = await self._flush(final=False)
        finally:
            self._pass_turn()
        await self._sync_to(end)

    async def _sync_to(self, end: int) -> None:
        """Make the data written up to ``end`` durable, sharing fdatasyncs between callers: one
        that finds a sync in progress waits for it, then the first to find none issues the next
        one for all (it covers every write completed before it was issued). A truncate the
        stream made is made durable too.

        On a file opened with O_DSYNC (OpenFlags.DSYNC) every write is durable when it
        completes, so no fdatasync is issued unless the stream truncated the file since the
        last one (O_DSYNC does not cover a truncate)."""
        while self._durable < end or self._meta_synced != self._meta_changes:
            running = self._sync_running
            if running is not None:
                await asyncio.shield(running)  # its error is raised to each of its waiters
                continue
            covers = self._written_end  # written (completed) before this sync is issued
            meta = self._meta_changes
            if self._dsync and meta == self._meta_synced:
                if covers > self._durable:
                    self._durable = covers
                if covers < end:  # cannot happen (end was written before), but never loop forever
                    break
                continue
            fut = self._sync_running = asyncio.get_running_loop().create_future()
            try:
                await self._file.flush()
            except BaseException as e:
                fut.set_exception(e if isinstance(e, Exception) else asyncio.CancelledError())
                fut.add_done_callback(_retrieve)
                raise
            else:
                fut.set_result(None)
            finally:
                self._sync_running = None
            if covers > self._durable:
                self._durable = covers
            if meta > self._meta_synced:
                self._meta_synced = meta
            if covers < end:  # cannot happen (end was written before), but never loop forever
                break

    async def _flush(self, final: bool) -> int:
        """Write the buffered data out and cut the file to its length (no sync); returns the end."""
        self._raise_if_failed("flush")
        await self._write_tail()
        await self._drain()
        self._raise_if_failed("flush")
        end = self._pos + self._fill
        # The file ends where the data does: not at the padded tail, not at the reservation
        # (with trim_on_flush=False only at close: the padded tail stays until then). A commit
        # whose data ends on a block boundary needs no truncate. Later reservations keep the
        # size (see _keep_size).
        self._keep_size = self._opts.trim_on_flush
        if (final or self._opts.trim_on_flush) and (self._grown or self._padded_end > end):
            self._meta_changes += 1  # before: a cancelled truncate may still land
            await self._file.truncate(end)
            self._grown = False
            self._padded_end = end
            self._prealloc_end = min(self._prealloc_end, self._pos)
            if self._prealloc and not final:
                # ftruncate freed the blocks reserved past the end (ext4): take them back without
                # growing the file, so later writes still land in large extents.
                step = self._prealloc
                if await self._reserve(end - end % step, _round_up(end + 1, step), True):
                    self._prealloc_end = _round_up(end + 1, step)
        self._written_end = end
        return end

    async def _write_tail(self) -> None:
        """Write the partial buffer padded to a block, from the first block a flush has not
        written yet (a commit writes what it adds, not the whole buffer again)."""
        buf = self._buf
        fill = self._fill
        if buf is None or fill == self._on_disk:
            return  # nothing new since the last flush
        padded = _round_up(fill, self._align)
        buf[fill:padded] = bytes(padded - fill)  # never write stale pool bytes
        await self._drain()  # the tail buffer is reused after this write: nothing may race it
        self._raise_if_failed("flush")
        skip = self._on_disk - self._on_disk % self._align
        pos = self._pos + skip
        if self._prealloc and self._pos + padded > self._prealloc_end:
            # A committing stream reserves too: keeping the size if it trims at flush (no
            # truncate to pay for the reservation), else growing it (the write lands inside).
            self._keep_size = self._opts.trim_on_flush
            await self._reserve_ahead(self._pos + padded)
            self._raise_if_failed("flush")
        try:
            got = await self._file.dma_write(pos, buf.trim(skip, padded - skip), self._opts.io_class)
        except OSError as e:
            self._error = e
            raise
        if got != padded - skip:
            self._error = self._short_write(pos, got, padded - skip)
            raise self._error
        self._on_disk = fill
        if self._pos + padded > self._padded_end:
            self._padded_end = self._pos + padded

    async def close(self) -> None:
        """Flush (tail padded, file cut to its length, fdatasync) and close the file (unless the
        stream was made with ``close_file=False``)."""
        if self._closed:
            return
        if self._turn_busy:
            await self._take_turn()  # after the write() and flush() calls made before it
            if self._closed:
                self._pass_turn()
                return
        else:
            self._turn_busy = True
        try:
            if self._error is None:
                await self._sync_to(await self._flush(final=True))
            else:
                await self._drain()
                self._raise_if_failed("close")
        finally:
            self._closed = True
            if self._buf is not None:
                self._buf.release()
                self._buf = None
            self._pass_turn()  # later callers find the stream closed
            if self._close_file:
                await self._file.close()

    async def __aenter__(self) -> FileOutputStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def make_file_input_stream(file: File, offset: int = 0, length: int | None = None,
                           options: FileInputStreamOptions | None = None, *,
                           close_file: bool = False) -> FileInputStream:
    """A read-ahead input stream over ``file`` from ``offset`` (any byte position) for ``length``
    bytes (None: to the end of the file). close() closes ``file`` only with ``close_file=True``.

    The memoryviews it returns are views of the stream's read buffers, valid until you drop
    them: a buffer goes back to the pool only when its last view is released or collected, so
    keeping a view keeps its buffer (hold ``bytes(view)`` for long-lived data). They stay
    readable after the stream is closed.
    """
    _check_close_file("make_file_input_stream", close_file)
    return FileInputStream(file, offset, length, options or FileInputStreamOptions(), close_file)


def make_file_output_stream(file: File, options: FileOutputStreamOptions | None = None,
                            offset: int | None = None, *, close_file: bool = True,
                            append: bool = False) -> FileOutputStream:
    """A write-behind output stream writing ``file`` from ``offset`` (default 0), or from its
    end with ``append=True``.

    ``offset`` must be a multiple of ``file.disk_write_dma_alignment`` (the stream writes whole
    blocks: it starts a block, it never reads one back); what the file held from there on is
    overwritten, and close() cuts the file to the stream's end.

    ``append=True`` continues the file after its last byte (``file.logical_size`` when the
    stream is made): ``position`` and ``durable_position`` start there. When the file ends
    inside a block, the first write() reads that block back and the stream rewrites it with
    the old bytes kept (the file must then be open for reading too, OpenFlags.RW: ValueError
    otherwise). ``offset`` cannot be given with it.

    close() closes ``file`` too, unless ``close_file=False``.
    """
    _check_close_file("make_file_output_stream", close_file)
    if not isinstance(append, bool):
        raise TypeError(f"make_file_output_stream: append must be True or False, "
                        f"got {type(append).__name__} {append!r}")
    if append and offset is not None:
        raise ValueError(f"make_file_output_stream: append=True writes from the end of the file; "
                         f"offset= cannot be given with it (got offset={offset!r})")
    return FileOutputStream(file, options or FileOutputStreamOptions(), 0 if offset is None else offset,
                            close_file, append)


def _check_close_file(op: str, close_file: Any) -> None:
    if not isinstance(close_file, bool):
        raise TypeError(f"{op}: close_file must be True or False, got {type(close_file).__name__} {close_file!r}")
