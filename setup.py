# setuptools needs setup.py for cffi_modules; everything else lives in pyproject.toml.
from setuptools import Extension, setup

setup(
    cffi_modules=["native/build_native.py:ffibuilder"],
    ext_modules=[
        Extension("ioengine._dmabuf", ["native/dmabuf.c"], extra_compile_args=["-O2"]),
        Extension("ioengine._iopath", ["native/iopath.c", "native/iofuture.c", "native/smpmsg.c", "native/filemethods.c",
                                     "native/smp_ring.c"],
                  depends=["native/iofuture.h"],
                  extra_compile_args=["-O2", "-Wall"]),
    ],
)
