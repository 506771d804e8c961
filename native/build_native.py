"""cffi (API mode) build of ioengine._native: compiled at install, links the system liburing and libaio."""
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()

# cffi's own declarations (the C header has preprocessor lines cffi cannot parse); the two are
# kept alike by tests/test_native_decls.py.
ffibuilder.cdef((HERE / "ioengine_native.cdef").read_text())

ffibuilder.set_source(
    "ioengine._native",
    '#include "ioengine_native.h"\n',
    sources=[str((HERE / name).relative_to(HERE.parent)) for name in ("ioengine_native.c", "smp_ring.c", "io_group.c", "verify_hdr.c")],
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    libraries=["uring", "aio", "m"],
    extra_compile_args=["-O2", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
