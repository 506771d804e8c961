"""iotune's command line, output files and device discovery: no measurement, fast."""
from __future__ import annotations

import os

import pytest

from ioengine.tools import iotune
from ioengine.tools.iotune_device import DeviceInfo, LeafDevice, mount_info, mountpoint_of, scan_device
from ioengine.tools.iotune_measure import Workload, fmt_size
from iosched import DiskProperties, load_io_properties, save_io_properties


def parse(*argv: str):
    return iotune.parse_args(["--evaluation-directory", "/tmp", *argv])


def usage_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        iotune.parse_args(list(argv))
    assert e.value.code == 2
    return capsys.readouterr().err


def test_defaults():
    a = parse()
    assert a.evaluation_directory == ["/tmp"]
    assert a.duration == iotune.DEFAULT_DURATION <= 60
    assert a.accuracy == 3.0
    assert a.format == "seastar"
    assert a.smp == len(os.sched_getaffinity(0))  # every core, as Seastar's iotune
    assert a.repeat == 1 and a.force_io_depth == 0
    assert a.sequential_read_buffer_size == a.sequential_write_buffer_size == 1 << 20
    assert a.random_read_io_buffer_size == a.random_write_io_buffer_size == 0  # automatic
    assert a.saturation is None and not a.compare_fio and a.latency_map is None
    assert a.reactor_options.backend == "auto"


def test_smp_defaults_to_the_cpuset():
    cpus = sorted(os.sched_getaffinity(0))
    a = parse("--cpuset", str(cpus[-1]))
    assert a.smp == 1 and a.smp_cpuset == str(cpus[-1])
    a = parse("--cpuset", ",".join(map(str, cpus)), "--smp", "1")
    assert a.smp == 1  # given: kept


def test_all_seastar_options():
    a = iotune.parse_args([
        "--evaluation-directory", "/a", "--evaluation-directory", "/b", "--properties-file", "p.yaml",
        "--options-file", "o.conf", "--format", "envfile", "--duration", "12", "--smp", "2", "--accuracy", "5",
        "--saturation", "both", "--random-read-io-buffer-size", "8k", "--random-write-io-buffer-size", "4KiB",
        "--sequential-read-buffer-size", "512k", "--sequential_write_buffer_size", "2M", "--force-io-depth", "64",
        "--detect-physical-block-size", "--fs-check", "--reactor-backend", "threads"])
    assert a.evaluation_directory == ["/a", "/b"]
    assert (a.properties_file, a.options_file, a.format) == ("p.yaml", "o.conf", "envfile")
    assert (a.duration, a.smp, a.accuracy, a.saturation) == (12.0, 2, 5.0, "both")
    assert (a.random_read_io_buffer_size, a.random_write_io_buffer_size) == (8192, 4096)
    assert (a.sequential_read_buffer_size, a.sequential_write_buffer_size) == (512 << 10, 2 << 20)
    assert a.force_io_depth == 64 and a.detect_physical_block_size and a.fs_check
    assert a.reactor_options.backend == "threads"


@pytest.mark.parametrize("text, value", [("4096", 4096), ("4k", 4096), ("4K", 4096), ("4KiB", 4096),
                                         ("1M", 1 << 20), ("1MiB", 1 << 20), ("1m", 1 << 20), ("2G", 2 << 30)])
def test_sizes(text, value):
    assert iotune.parse_size(text) == value


@pytest.mark.parametrize("text", ["abc", "1000", "0", "-4096", "4q", "1.5M", ""])
def test_bad_sizes(capsys, text):
    err = usage_error(capsys, "--evaluation-directory", "/tmp", "--sequential-read-buffer-size", text)
    assert "--sequential-read-buffer-size" in err and "invalid size" in err


def test_random_buffer_zero_means_automatic():
    assert parse("--random-read-io-buffer-size", "0").random_read_io_buffer_size == 0


def test_unknown_option(capsys):
    err = usage_error(capsys, "--evaluation-directory", "/tmp", "--no-such-option")
    assert "unrecognized arguments: --no-such-option" in err


def test_no_abbreviations(capsys):
    usage_error(capsys, "--evaluation-directory", "/tmp", "--dur", "5")


def test_evaluation_directory_required(capsys):
    assert "--evaluation-directory" in usage_error(capsys)


@pytest.mark.parametrize("argv, needle", [
    (["--format", "json"], "--format: invalid choice"),
    (["--saturation", "sideways"], "--saturation: invalid choice"),
    (["--smp", "0"], "--smp: must be >= 1"),
    (["--cost-sizes", "100"], "multiple of 512"),
    (["--smp", str(len(os.sched_getaffinity(0)) + 1)], "CPUs, but"),
    (["--duration", "0"], "--duration: must be a positive number"),
    (["--duration", "soon"], "--duration: invalid number"),
    (["--accuracy", "101"], "--accuracy: must be between 0 and 100"),
    (["--repeat", "0"], "--repeat: must be >= 1"),
    (["--force-io-depth", "-1"], "--force-io-depth: must be >= 0"),
    (["--latency-map-grid", "25,50"], "invalid grid"),
    (["--reactor-backend", "floppy"], "--reactor-backend: invalid choice"),
    (["--options-file", "o.conf"], "--options-file needs --properties-file"),
])
def test_usage_errors(capsys, argv, needle):
    assert needle in usage_error(capsys, "--evaluation-directory", "/tmp", *argv)


def test_help_explains_smp(capsys):
    with pytest.raises(SystemExit) as e:
        iotune.parse_args(["--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "shard processes" in out and "split over them" in out
    for opt in ("--evaluation-directory", "--properties-file", "--options-file", "--format", "--duration",
                "--accuracy", "--saturation", "--random-read-io-buffer-size", "--random-write-io-buffer-size",
                "--sequential-read-buffer-size", "--sequential-write-buffer-size", "--force-io-depth",
                "--detect-physical-block-size", "--fs-check", "--compare-fio", "--latency-map", "--repeat",
                "--reactor-backend"):
        assert opt in out


def test_options_file_formats(tmp_path):
    p = str(tmp_path / "io_properties.yaml")
    assert iotune.options_file_text("seastar", p) == f"io-properties-file={p}\n"
    assert iotune.options_file_text("envfile", p) == f'SEASTAR_IO="--io-properties-file={p}"\n'


def test_yaml_round_trip(tmp_path):
    disk = DiskProperties(("/var/lib/data",), 95123.4, 1.23e9, 22000, 1_400_000_000.6,
                          read_saturation_length=262144, write_saturation_length=1 << 20, physical_block_size=4096)
    other = DiskProperties(("/mnt/b",), 1000, 2e8, 800, 1.5e8)
    path = tmp_path / "io_properties.yaml"
    save_io_properties([disk, other], path)
    back = load_io_properties(path)
    assert len(back) == 2
    b = back[0]
    assert b.mountpoints == ("/var/lib/data",)
    assert (b.read_iops, b.read_bandwidth, b.write_iops, b.write_bandwidth) == (95123, 1230000000, 22000, 1400000001)
    assert (b.read_saturation_length, b.write_saturation_length, b.physical_block_size) == (262144, 1 << 20, 4096)
    assert back[1].mountpoints == ("/mnt/b",) and back[1].read_saturation_length is None
    text = path.read_text()
    assert text.startswith("disks:\n- mountpoint: /var/lib/data\n  read_iops: 95123\n")


def test_write_outputs(tmp_path, capsys):
    a = iotune.parse_args(["--evaluation-directory", "/tmp", "--properties-file", str(tmp_path / "p.yaml"),
                           "--options-file", str(tmp_path / "o.conf"), "--format", "envfile"])
    disk = DiskProperties(("/",), 1000, 2e8, 800, 1.5e8)
    iotune.write_outputs(a, [disk], iotune.Reporter(progress=False))
    assert load_io_properties(tmp_path / "p.yaml") == [DiskProperties(("/",), 1000, 200000000, 800, 150000000)]
    assert (tmp_path / "o.conf").read_text() == f'SEASTAR_IO="--io-properties-file={tmp_path / "p.yaml"}"\n'


def test_write_outputs_unwritable(tmp_path):
    a = iotune.parse_args(["--evaluation-directory", "/tmp", "--properties-file", str(tmp_path / "no" / "p.yaml")])
    with pytest.raises(iotune.IotuneError, match="cannot write the properties file .*no/p.yaml"):
        iotune.write_outputs(a, [DiskProperties(("/",), 1, 1, 1, 1)], iotune.Reporter(progress=False))


def test_random_depth_split_like_seastar():
    assert iotune.random_depth(256, 1, False) == 128  # one shard: capped at 128
    assert iotune.random_depth(256, 2, False) == 256
    assert iotune.random_depth(31, 4, False) == 31  # 8+8+8+7
    assert iotune.random_depth(300, 1, True) == 300  # forced: exactly
    assert iotune.random_depth(2, 4, False) == 2


def test_shard_depths_and_merge():
    from ioengine.tools.iotune_measure import PhaseResult, Workload, merge_shards, shard_depths

    assert shard_depths(9, 2) == [5, 4] and shard_depths(1, 3) == [1, 0, 0] and sum(shard_depths(256, 3)) == 256
    wl = Workload("rand_read", 4096, 8)
    parts = [PhaseResult(Workload("rand_read", 4096, 4), 1000, 1.0, [500.0, 500.0], 0.5, 0.4, "io_uring"),
             PhaseResult(Workload("rand_read", 4096, 4), 3000, 1.02, [1400.0, 1600.0, 9.0], 0.5, 0.7, "io_uring")]
    m = merge_shards(wl, parts)
    assert (m.workload, m.ios, m.samples, m.loop_cpu, m.extra) == (wl, 4000, [1900.0, 2100.0], 0.7, {"shards": 2})
    assert m.seconds == pytest.approx(1.01)


def test_cost_sizes_option():
    assert iotune.parse_args(["--evaluation-directory", "/tmp"]).cost_sizes == (128 << 10,)
    a = iotune.parse_args(["--evaluation-directory", "/tmp", "--cost-sizes", "256k,64k,64k"])
    assert a.cost_sizes == (64 << 10, 256 << 10)
    assert iotune.parse_args(["--evaluation-directory", "/tmp", "--cost-sizes", "none"]).cost_sizes == ()


def test_phase_times():
    for total in (2.0, 3.0, 30.0, 120.0):
        warm, meas = iotune.phase_times(total)
        assert iotune.WARMUP_MIN <= warm <= iotune.WARMUP_MAX and meas > 0
        assert 4 * (warm + meas) == pytest.approx(max(total, 8 * iotune.WARMUP_MIN))


def test_workload():
    wl = Workload("rand_read", 4096, 128)
    assert (wl.rw, wl.write, wl.sequential, wl.title) == ("randread", False, False, "random read")
    assert wl.describe == "random read, 4 KiB at depth 128"
    with pytest.raises(ValueError, match="unknown phase"):
        Workload("trim", 4096, 1)
    assert fmt_size(1 << 20) == "1 MiB" and fmt_size(1536) == "1536 B"


def test_device_of_scratch(tmp_path):
    here = os.path.dirname(__file__)
    dev = scan_device(os.stat(here).st_dev)
    assert dev.max_iodepth >= 1
    assert dev.minimum_io_size >= 512 and dev.minimum_io_size % 512 == 0
    if dev.physical_block_size:
        assert dev.minimum_io_size >= dev.physical_block_size
    mp = mountpoint_of(here)
    assert os.stat(mp).st_dev == os.stat(here).st_dev
    assert here.startswith(mp)
    mi = mount_info(here)
    assert mi is not None and mi.fstype


def test_hints():
    leaf = LeafDevice("sdz", "/nonexistent/sdz", 64, None, 4096, 4096, 512, "mq-deadline", 0, "write back", False)
    dev = DeviceInfo("8:0", (leaf,), 64, 4096, 4096)
    hints = dev.hints()
    assert len(hints) == 3
    assert "scheduler is 'mq-deadline'" in hints[0] and "nomerges is 0" in hints[1] and "write back" in hints[2]
    seg = LeafDevice("vdz", "/nonexistent/vdz", 64, None, 4096, 4096, 512, "none", 2, "write through", True, 254)
    [h] = DeviceInfo("254:0", (seg,), 64, 4096, 4096).hints(1 << 20)
    assert "at most 254 segments" in h and "256 pages" in h
    assert DeviceInfo("254:0", (seg,), 64, 4096, 4096).hints(512 << 10) == []
    quiet = LeafDevice("sdz", "/nonexistent/sdz", 64, None, 4096, 4096, 512, "none", 2, "write through", False)
    assert DeviceInfo("8:0", (quiet,), 64, 4096, 4096).hints() == []


def test_proc_is_not_a_block_device():
    dev = scan_device(os.stat("/proc").st_dev)
    assert dev.leaves == () and dev.max_iodepth == 128 and dev.notes


@pytest.mark.parametrize("text", ["4096", "4k", "4K", "4KiB", "4kB", "4Ki", "1M", "1m", "1MiB", "2G", "1T", " 8k "])
def test_iotune_and_io_properties_read_sizes_alike(text):
    """One rule for Seastar-style sizes: iotune's options and io_properties.yaml agree."""
    from iosched.properties import parse_size, parse_size_text

    assert iotune.parse_size(text) == parse_size(text) == parse_size_text(text, fraction=False)



def test_fio_args_carry_the_decided_iomem():
    from ioengine.bench.hugepages import fio_iomem_for, hugetlb_pages_for
    from ioengine.options import ReactorOptions
    from ioengine.tools.iotune_fio import fio_args, fio_jobs

    opts = ReactorOptions()
    seq, rnd = Workload("seq_write", 1 << 20, 4), Workload("rand_write", 4096, 128)
    for wl, want in ((seq, "shmhuge"), (rnd, "malloc")):
        iomem = fio_iomem_for(wl.bs, "madvise", opts)
        assert iomem == want
        args = fio_args("/f", 64 << 20, wl, 0.5, 2.0, "io_uring", iomem=iomem)
        assert f"--iomem={want}" in args and f"--iodepth={wl.depth}" in args
        # the same file state as iotune's phase: the laid-out file, overwritten, never re-allocated
        assert "--fallocate=none" in args and f"--size={64 << 20}" in args
    assert fio_iomem_for(seq.bs, "never", opts) == "malloc"
    assert "--iomem=malloc" in fio_args("/f", 64 << 20, seq, 0.5, 2.0, "io_uring")
    threads = fio_args("/f", 64 << 20, seq, 0.5, 2.0, "threads", threads=4, iomem="shmhuge")
    assert "--numjobs=4" in threads and fio_jobs(seq, "threads", 4) == 4
    assert hugetlb_pages_for(seq.bs, seq.depth, fio_jobs(seq, "io_uring")) == 4


def test_a_cost_size_nothing_completed_at_is_left_out_not_written_as_free():
    """A --cost-sizes step whose window completed no I/O (a very short --duration on a busy
    disk) measured nothing: the size is left out of *_iops_by_size, and the file still loads."""
    from types import SimpleNamespace as NS

    phase = NS(iops=50_000.0, bandwidth=500e6)
    runs = [NS(phases={p: phase for p in ("rand_read", "rand_write", "seq_read", "seq_write")})]
    by_size = {"write": {4096: 50_000.0, 131072: 0.0, 1 << 20: 470.0}, "read": {4096: 60_000.0, 131072: 0.0}}
    props = iotune._properties(NS(mountpoint="/"), runs, by_size=by_size)
    assert props.write_iops_by_size == ((4096, 50_000.0), (1 << 20, 470.0))
    assert props.read_iops_by_size is None  # one size left: no table
