"""fio JSON parsing, on outputs captured from the real fio (tests/data/fio/capture.sh).

No performance figure is hard-coded: the captures are checked for internal consistency
(iops vs total_ios/runtime, bytes vs ios*bs, percentiles vs histogram) only.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from ioengine.bench.fio_json import (
    FioDirStats,
    FioJobError,
    FioOutputError,
    FioResult,
    LatencyStats,
    merge_latency,
    parse_fio_json,
)
from ioengine.bench.jobfile import parse_size

DATA = Path(__file__).resolve().parent.parent / "data" / "fio"

# capture file -> directions it exercised
REAL_CAPTURES = {
    "randread.json": ("read",),
    "randwrite.json": ("write",),
    "randrw.json": ("read", "write"),
    "read.json": ("read",),
    "randread_jsonplus.json": ("read",),
}


def load(name: str) -> FioResult:
    return parse_fio_json((DATA / name).read_text())


def check_consistent(stats: FioDirStats, bs: int) -> None:
    assert stats.total_ios > 0
    assert stats.runtime_ms > 0
    # fio derives iops and bw from the same counters; check our reading of them agrees.
    assert stats.iops == pytest.approx(stats.total_ios * 1000.0 / stats.runtime_ms, rel=1e-3)
    assert stats.bw_bytes == pytest.approx(stats.io_bytes * 1000.0 / stats.runtime_ms, rel=1e-3)
    assert stats.io_bytes == stats.total_ios * bs
    assert stats.clat_ns.samples == stats.total_ios
    clat = stats.clat_ns
    assert 0 < clat.min <= clat.mean <= clat.max
    for p in (1.0, 50.0, 99.0, 99.9):
        assert p in clat.percentiles
    values = list(clat.percentiles.values())
    assert values == sorted(values), "percentiles must be non-decreasing"
    assert clat.p50 <= clat.p99 <= clat.p999
    # fio's percentiles are bucket values (≈1.5% resolution), so they may overshoot max slightly.
    assert clat.min * 0.95 <= clat.p50 <= clat.max * 1.05
    # lat = slat + clat, so on average it cannot be below clat.
    assert stats.lat_ns.mean >= clat.mean


@pytest.mark.parametrize("name", sorted(REAL_CAPTURES))
def test_real_capture(name: str) -> None:
    result = load(name)
    assert result.version is not None and result.version.startswith("fio-3")
    assert result.version_tuple is not None and result.version_tuple[0] == 3
    assert len(result.jobs) == 1
    job = result.jobs[0]
    assert job.error == 0 and result.failed_jobs() == []
    result.raise_for_errors()  # no error: no exception
    assert job.name == result.raw["jobs"][0]["jobname"]
    assert job.runtime_ms > 0
    assert job.usr_cpu >= 0 and job.sys_cpu >= 0 and job.usr_cpu + job.sys_cpu > 0
    assert job.ctx > 0
    assert job.cpu_seconds > 0
    cpu_us = result.cpu_us_per_io()
    assert cpu_us is not None and cpu_us > 0
    assert cpu_us == pytest.approx(job.cpu_seconds * 1e6 / job.total_ios)
    bs = parse_size(job.options["bs"])
    active = REAL_CAPTURES[name]
    for direction in ("read", "write", "trim"):
        stats = job.direction(direction)
        if direction in active:
            check_consistent(stats, bs)
        else:
            assert stats.total_ios == 0 and stats.io_bytes == 0
            with pytest.raises(ValueError, match="no latency samples"):
                stats.clat_ns.percentile(50)
    assert result.disk_util, "captures were taken on a block device"
    for disk in result.disk_util:
        assert disk.name and 0.0 <= disk.util <= 100.0


def test_total_equals_single_job() -> None:
    result = load("randread.json")
    total, read = result.total("read"), result.jobs[0].read
    assert total.total_ios == read.total_ios and total.iops == read.iops
    assert total.clat_ns.percentiles == read.clat_ns.percentiles
    assert total.clat_ns.mean == read.clat_ns.mean


def test_randrw_mix_and_all() -> None:
    result = load("randrw.json")
    job = result.jobs[0]
    assert job.options["rwmixread"] == "70"
    share = job.read.total_ios / (job.read.total_ios + job.write.total_ios)
    assert share == pytest.approx(0.70, abs=0.05)
    both = result.total("all")
    assert both.total_ios == job.read.total_ios + job.write.total_ios
    assert both.iops == pytest.approx(job.read.iops + job.write.iops)
    assert both.clat_ns.min == min(job.read.clat_ns.min, job.write.clat_ns.min)
    assert both.clat_ns.max == max(job.read.clat_ns.max, job.write.clat_ns.max)
    lo, hi = sorted([job.read.clat_ns.mean, job.write.clat_ns.mean])
    assert lo <= both.clat_ns.mean <= hi
    # Without json+ histograms, two distributions' percentiles cannot be merged exactly.
    assert both.clat_ns.percentiles == {}
    with pytest.raises(ValueError, match="group_reporting"):
        both.clat_ns.percentile(99)
    with pytest.raises(ValueError, match="unknown direction"):
        result.total("sideways")
    with pytest.raises(ValueError, match="unified_rw_reporting"):
        job.direction("mixed")


def test_numjobs_without_group_reporting_sums_jobs() -> None:
    result = load("numjobs2.json")
    assert len(result.jobs) == 2
    assert {j.name for j in result.jobs} == {"numjobs"}
    assert result.job("numjobs") is result.jobs[0]
    a, b = result.jobs[0].read, result.jobs[1].read
    total = result.total("read")
    assert total.total_ios == a.total_ios + b.total_ios
    assert total.io_bytes == a.io_bytes + b.io_bytes
    assert total.iops == pytest.approx(a.iops + b.iops)
    assert total.bw_bytes == pytest.approx(a.bw_bytes + b.bw_bytes)
    assert total.runtime_ms == max(a.runtime_ms, b.runtime_ms)
    assert total.clat_ns.samples == a.clat_ns.samples + b.clat_ns.samples
    expected_mean = (a.clat_ns.mean * a.total_ios + b.clat_ns.mean * b.total_ios) / total.total_ios
    assert total.clat_ns.mean == pytest.approx(expected_mean)
    assert min(a.clat_ns.stddev, b.clat_ns.stddev) * 0.5 <= total.clat_ns.stddev
    with pytest.raises(ValueError, match="group_reporting"):
        _ = total.clat_ns.p99
    assert result.cpu_seconds() == pytest.approx(sum(j.cpu_seconds for j in result.jobs))
    with pytest.raises(KeyError, match="no fio job named 'nope'"):
        result.job("nope")


def test_numjobs_with_group_reporting_is_one_entry() -> None:
    result = load("numjobs2_group.json")
    assert len(result.jobs) == 1
    job = result.jobs[0]
    assert job.options["numjobs"] == "2"
    check_consistent(job.read, parse_size(job.options["bs"]))
    # job_runtime adds up the threads merged into the entry; usr/sys_cpu are relative to it.
    assert job.runtime_ms > job.read.runtime_ms
    assert result.total("read").clat_ns.p99 == job.read.clat_ns.p99


def test_json_plus_histogram() -> None:
    clat = load("randread_jsonplus.json").jobs[0].read.clat_ns
    assert clat.bins, "json+ output carries the latency histogram"
    assert sum(clat.bins.values()) == clat.samples
    # Recomputing fio's own percentiles from its histogram must give exactly its figures.
    recomputed = LatencyStats(bins=clat.bins, samples=clat.samples)
    for p, value in clat.percentiles.items():
        assert recomputed.percentile(p) == value
    # A percentile fio did not list comes from the histogram.
    assert clat.percentile(95.0) <= clat.percentile(97.5) <= clat.percentile(99.0)
    # Merging two identical histograms leaves every percentile where it was.
    merged = merge_latency([(clat, clat.samples), (clat, clat.samples)])
    assert merged.percentiles == clat.percentiles
    assert merged.samples == 2 * clat.samples
    assert merged.mean == pytest.approx(clat.mean) and merged.stddev == pytest.approx(clat.stddev)


def test_old_fio2_format() -> None:
    result = load("old_fio2.json")
    assert result.version == "fio-2.2.10" and result.version_tuple == (2, 2, 10)
    job = result.jobs[0]
    read, write = job.read, job.write
    # fio 2.x: io_bytes in KiB, bw only in KiB/s, latencies in µs -> converted to B, B/s, ns.
    assert read.io_bytes == 40960 * 1024
    assert read.bw_bytes == 40919 * 1024
    assert read.total_ios == 10240 and read.runtime_ms == 1001
    assert read.clat_ns.mean == pytest.approx(95.5 * 1000)
    assert read.clat_ns.min == 60_000 and read.clat_ns.max == 3_000_000
    assert read.slat_ns.mean == pytest.approx(4.1 * 1000)
    assert read.lat_ns.mean == pytest.approx(99.8 * 1000)
    assert read.clat_ns.samples is None
    assert 0.0 not in read.clat_ns.percentiles, "fio 2.x's '0.00' padding is dropped"
    assert read.clat_ns.p99 == 201_000 and write.clat_ns.p99 == 290_000
    assert read.iops == pytest.approx(read.total_ios * 1000 / read.runtime_ms, rel=1e-3)
    assert job.runtime_ms == 1001  # no job_runtime: the longest direction
    assert job.usr_cpu == pytest.approx(5.2) and job.sys_cpu == pytest.approx(20.1)
    assert job.trim.total_ios == 0 and job.trim.clat_ns.percentiles == {}
    assert result.total("all").total_ios == 10240 + 1024
    assert result.disk_util[0].name == "sda"


def test_minimal_document_gets_defaults() -> None:
    result = parse_fio_json('{"jobs": [{"jobname": "x", "read": {"io_bytes": 0}}]}')
    job = result.jobs[0]
    assert result.version is None and result.version_tuple is None
    assert job.name == "x" and job.error == 0 and job.runtime_ms == 0
    assert job.write.total_ios == 0 and job.read.clat_ns == LatencyStats()
    assert result.cpu_us_per_io() is None


def test_unified_rw_reporting_mixed_section() -> None:
    doc = json.loads((DATA / "randrw.json").read_text())
    doc["jobs"][0]["mixed"] = copy.deepcopy(doc["jobs"][0]["read"])
    job = parse_fio_json(json.dumps(doc)).jobs[0]
    assert job.mixed is not None and job.direction("mixed").total_ios == job.read.total_ios
    assert job.direction("all") is job.mixed


def test_warning_lines_before_json_are_skipped() -> None:
    text = (DATA / "warning_prefix.json").read_text()
    assert text.startswith("fio: ")
    result = parse_fio_json(text)
    assert result.jobs[0].read.total_ios > 0
    # The same document with trailing noise, as bytes, parses too.
    again = parse_fio_json((text + "\nfio: trailing line\n").encode())
    assert again.jobs[0].read.iops == result.jobs[0].read.iops


def test_not_json_error_quotes_output() -> None:
    with pytest.raises(FioOutputError, match="unrecognized option '--bogus'") as info:
        parse_fio_json("fio: unrecognized option '--bogus'\nfio: see --help\n")
    assert "not a fio JSON document" in str(info.value)
    with pytest.raises(FioOutputError, match="printed nothing"):
        parse_fio_json("   \n")
    truncated = (DATA / "randread.json").read_text()[:500]
    with pytest.raises(FioOutputError, match="JSON error at line"):
        parse_fio_json(truncated)
    with pytest.raises(FioOutputError, match="no 'jobs' list"):
        parse_fio_json('{"something": "else"}')


def test_job_error_is_reported_with_errno_and_name() -> None:
    result = load("job_error.json")  # real fio: a directory given as filename
    assert result.failed_jobs() == [("badjob", 21)]
    with pytest.raises(FioJobError, match=r"'badjob' failed with error 21 \(EISDIR") as info:
        result.raise_for_errors()
    assert info.value.errno == 21 and info.value.job_name == "badjob"
    assert info.value.result is result


def test_percentile_argument_checked() -> None:
    clat = load("randread.json").jobs[0].read.clat_ns
    with pytest.raises(ValueError, match=r"in \(0, 100\]"):
        clat.percentile(0)
    with pytest.raises(ValueError, match="percentile_list"):
        clat.percentile(42.0)  # not in fio's default list, and no json+ histogram
    assert math.isclose(clat.percentile(99.9), clat.percentiles[99.9])


def test_non_finite_floats_from_printf() -> None:
    # fio formats floats with %f: a NaN is printed as "nan" / "-nan", which JSON lacks.
    text = (DATA / "randread.json").read_text()
    text = text.replace('"bw_agg" : ', '"bw_agg" : -nan, "was_bw_agg" : ', 1)
    text = text.replace('"usr_cpu" : ', '"usr_cpu" : inf, "was_usr_cpu" : ', 1)
    result = parse_fio_json(text)
    assert math.isnan(result.jobs[0].read.raw["bw_agg"])
    assert math.isinf(result.jobs[0].usr_cpu)
    assert result.jobs[0].name == "randread"  # strings are left alone
