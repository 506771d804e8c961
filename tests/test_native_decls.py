"""native/ioengine_native.cdef (cffi's declarations) and native/ioengine_native.h (C's) declare
the same functions, types and constants: a function added to one only would either be invisible
to Python or unchecked against its C definition."""
from __future__ import annotations

import re
from pathlib import Path

NATIVE = Path(__file__).resolve().parent.parent / "native"


def _declarations(text: str) -> tuple[set[str], dict[str, str]]:
    """(declarations with whitespace normalised, #define name -> value) of a C header text."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    defines = dict(re.findall(r"^\s*#define\s+(IE_\w+)\s+(\S+)\s*$", text, flags=re.M))
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    decls = set()
    for stmt in body.split(";"):
        stmt = " ".join(stmt.split())
        if stmt and stmt != "}":
            decls.add(stmt)
    return decls, defines


def test_cdef_and_header_declare_the_same() -> None:
    cdef, cdef_defines = _declarations((NATIVE / "ioengine_native.cdef").read_text())
    header, header_defines = _declarations((NATIVE / "ioengine_native.h").read_text())
    assert cdef_defines == header_defines
    assert sorted(header - cdef) == [], "declared in ioengine_native.h only: add them to ioengine_native.cdef"
    assert sorted(cdef - header) == [], "declared in ioengine_native.cdef only (or unlike the header's)"
    assert any("ie_aio_wait" in d for d in cdef)  # the parse found the functions


def test_the_build_reads_the_cdef() -> None:
    src = (NATIVE / "build_native.py").read_text()
    assert "ioengine_native.cdef" in src and 'startswith("#")' not in src
