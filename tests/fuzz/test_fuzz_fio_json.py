"""fio JSON parser: a FioResult or FioOutputError for any text or bytes."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ioengine.bench.fio_json import FioOutputError, FioResult, parse_fio_json

KEYS = ["jobs", "client_stats", "fio version", "timestamp", "global options", "disk_util", "jobname", "groupid",
        "error", "job_runtime", "usr_cpu", "sys_cpu", "ctx", "majf", "minf", "read", "write", "trim", "mixed",
        "job options", "desc", "elapsed", "io_bytes", "io_kbytes", "bw_bytes", "bw", "runtime", "iops",
        "slat_ns", "clat_ns", "lat_ns", "clat", "lat", "slat", "min", "max", "mean", "stddev", "N", "percentile",
        "bins", "total_ios", "short_ios", "drop_ios", "name", "util", "read_ios", "write_ios", "in_queue",
        "50.000000", "99.000000", "latency_ns", "iodepth_level"]
scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=8),
                      max_leaves=40)
direction = st.dictionaries(st.sampled_from(KEYS), values, max_size=10)
job = st.dictionaries(st.sampled_from(KEYS), values | direction, max_size=10)
documents = st.fixed_dictionaries({"jobs": st.lists(job, max_size=3) | values},
                                  optional={k: values for k in KEYS[1:6]})


def _parse(text):
    try:
        r = parse_fio_json(text)
    except FioOutputError as e:
        assert str(e)
        return
    assert isinstance(r, FioResult)
    for j in r.jobs:
        str(j), j.read.iops, j.write.bw_bytes
    try:
        r.raise_for_errors()
    except Exception as e:
        assert type(e).__name__ == "FioJobError", repr(e)


@given(documents, st.sampled_from(["", "fio: warning {x}\n", "note\n"]),
       st.sampled_from(["", "\ntrailing", "\n{"]))
@pytest.mark.slow
def test_structured_documents(doc, before, after):
    _parse(before + json.dumps(doc, indent=1) + after)


@given(documents)
@pytest.mark.slow
def test_non_finite_and_bytes(doc):
    text = json.dumps(doc).replace("0.0", "nan").replace("1.0", "-inf")
    _parse(text.encode())


@given(st.text(max_size=300) | st.binary(max_size=300))
def test_any_input(text):
    _parse(text)
