"""cffi (API mode) build of ioengine._native: compiled at install, links the system liburing and libaio."""
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = (HERE / "ioengine_native.h").read_text()

ffibuilder = FFI()

# cffi's parser takes no preprocessor lines: give it the declarations between the include guard.
_decls = [ln for ln in HEADER.splitlines() if not ln.startswith("#")]
_decls = "\n".join(_decls)
ffibuilder.cdef(_decls + "\n#define IE_REC_WORDS 5\n#define IE_SPSC_HEADER 128\n"
             "#define IE_GROUP_MAX_SHARDS 64\n#define IE_GROUP_MAX_CLASSES 32\n")

ffibuilder.set_source(
    "ioengine._native",
    '#include "ioengine_native.h"\n',
    sources=[str((HERE / name).relative_to(HERE.parent)) for name in ("ioengine_native.c", "smp_ring.c", "io_group.c")],
    include_dirs=[str(HERE.relative_to(HERE.parent))],
    libraries=["uring", "aio", "m"],
    extra_compile_args=["-O2", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
