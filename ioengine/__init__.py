"""ioengine: Seastar's storage stack for Python.

O_DIRECT DMA reads and writes through io_uring (or linux-aio, or a thread pool) on a reactor
attached to the running asyncio loop::

    import ioengine

    async def main():
        async with await ioengine.open_file_dma("data", ioengine.OpenFlags.RW | ioengine.OpenFlags.CREATE) as f:
            buf = f.allocate_buffer(4096)
            buf[:5] = b"hello"
            await f.dma_write(0, buf)
            print(bytes((await f.dma_read_exactly(0, 5))))

    ioengine.run(main())

On N cores: ``ioengine.run(main, smp=N)`` runs N shards (processes, each with its own loop and
reactor) that talk by ``ioengine.submit_to`` (see ioengine.smp).
"""
from . import smp
from ._iopath import IoFuture
from ._ops import StatData
from .buffers import DEFAULT_ALIGNMENT, BufferPool, DmaBuffer, allocate_aligned_buffer, fill_random
from .errors import BackendUnavailableError, ClosedFileError, ShortReadError
from .file import File, FileOpenOptions, OpenFlags, open_file_dma
from .fs import (
    DirectoryEntry,
    file_exists,
    file_size,
    file_stat,
    fs_avail,
    fs_free,
    link_file,
    list_directory,
    make_directory,
    recursive_touch_directory,
    remove_file,
    rename_file,
    sync_directory,
    touch_directory,
)
from .fstream import (
    FileInputStream,
    FileInputStreamOptions,
    FileOutputStream,
    FileOutputStreamOptions,
    make_file_input_stream,
    make_file_output_stream,
)
from .io_class import IoClass, current_io_class
from .ioprio import IoPrioClass, ioprio_value
from .metrics import metrics, metrics_text
from .options import ReactorOptions, SmpOptions, add_reactor_arguments, reactor_options_from_args, smp_options_from_args
from .reactor import Reactor, configure, get_reactor
from .reactor import run as _run_one_shard
from .smp import (
    FileHandle,
    RemoteError,
    ShardError,
    file_handle,
    invoke_on_all,
    sharded,
    smp_count,
    submit_to,
    this_shard_id,
)

_SMP_KEYS = frozenset(SmpOptions.__dataclass_fields__)


def run(main, /, *args, **options):
    """Run ``main`` on a fresh asyncio loop with a reactor built from ``options``.

    ``main`` is a coroutine, or an async function called with ``args``. With SmpOptions keys
    (``smp=N``, ``cpuset=...``) it runs on shard 0 of N shards (ioengine.smp.run); otherwise,
    and with smp=1, in this process alone. A convenience: any running asyncio loop gets a
    reactor on first use without it.
    """
    if args or not _SMP_KEYS.isdisjoint(options) or not hasattr(main, "send"):
        return smp.run(main, *args, **options)
    return _run_one_shard(main, **options)

__all__ = [
    "BackendUnavailableError", "BufferPool", "ClosedFileError", "DEFAULT_ALIGNMENT", "DirectoryEntry", "DmaBuffer",
    "File", "FileHandle", "FileInputStream", "FileInputStreamOptions", "FileOpenOptions", "FileOutputStream",
    "FileOutputStreamOptions", "IoClass", "IoFuture", "IoPrioClass", "current_io_class", "ioprio_value",
    "make_file_input_stream", "make_file_output_stream",
    "metrics", "metrics_text", "OpenFlags", "Reactor", "ReactorOptions", "ShortReadError", "StatData",
    "add_reactor_arguments", "allocate_aligned_buffer", "configure", "file_exists", "file_size", "file_stat",
    "fill_random", "fs_avail", "fs_free", "get_reactor", "link_file", "list_directory", "make_directory",
    "open_file_dma",
    "reactor_options_from_args", "recursive_touch_directory", "remove_file", "rename_file", "run",
    "sync_directory", "touch_directory", "RemoteError", "ShardError", "SmpOptions", "file_handle", "invoke_on_all",
    "sharded", "smp", "smp_count", "smp_options_from_args", "submit_to", "this_shard_id",
]
