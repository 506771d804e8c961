"""fio job-file parsing: inheritance, suffixes, percentages, errors naming file and line.

The last tests cross-check against the real fio (skipped without it): fio itself must read
our sizes the same way, and run a job file and our to_fio_args() identically.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from ioengine.bench.fio_json import run_fio
from ioengine.bench.jobfile import (
    SUPPORTED_OPTIONS,
    JobFileError,
    JobSpec,
    parse_job_file,
    parse_job_text,
    parse_size,
    parse_time,
    to_fio_args,
)

HAVE_FIO = shutil.which("fio") is not None
needs_fio = pytest.mark.skipif(not HAVE_FIO, reason="fio is not installed (apt install fio)")


def jobs_of(text: str, **kw) -> list[JobSpec]:
    return parse_job_text(textwrap.dedent(text), "test.fio", **kw)


# ---------------------------------------------------------------------------- value parsers


@pytest.mark.parametrize(
    ("text", "kb_base", "expected"),
    [
        ("4096", 1024, 4096),
        ("4096b", 1024, 4096),
        ("4096B", 1024, 4096),
        ("4k", 1024, 4096),
        ("4K", 1024, 4096),
        ("4kb", 1024, 4096),
        ("4KB", 1024, 4096),
        ("4ki", 1024, 4096),  # fio 3.33: "ki" without the b is plain k
        ("4kib", 1024, 4000),  # fio's compatibility mode: full IEC spelling means 1000
        ("4KiB", 1024, 4000),
        ("1m", 1024, 1 << 20),
        ("1mib", 1024, 1_000_000),
        ("2g", 1024, 2 << 30),
        ("1t", 1024, 1 << 40),
        ("1p", 1024, 1 << 50),
        ("0x1000", 1024, 4096),
        ("4k", 1000, 4000),
        ("4kb", 1000, 4000),
        ("4kib", 1000, 4096),
        ("1MiB", 1000, 1 << 20),
        (" 8k ", 1024, 8192),
    ],
)
def test_parse_size(text: str, kb_base: int, expected: int) -> None:
    assert parse_size(text, kb_base) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1.5k", "fractional"),
        ("abc", "expected a size"),
        ("4x", "unknown size suffix 'x'"),
        ("4kibb", "unknown size suffix"),
        ("-4k", "expected a size"),
        ("", "expected a size"),
    ],
)
def test_parse_size_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_size(text)


def test_parse_size_kb_base_checked() -> None:
    with pytest.raises(ValueError, match="1000 or 1024"):
        parse_size("4k", 512)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("30s", 30.0),
        ("10sec", 10.0),
        ("1500ms", 1.5),
        ("1500msec", 1.5),
        ("200us", 0.0002),
        ("2m", 120.0),
        ("5min", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("2M", 120.0),  # case-insensitive, as fio
    ],
)
def test_parse_time(text: str, seconds: float) -> None:
    assert parse_time(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "match"), [("1.5", "fractional"), ("abc", "expected a time"),
                                             ("10y", "expected a time")])
def test_parse_time_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_time(text)


# ---------------------------------------------------------------------------- structure


def test_defaults_match_fio() -> None:
    (job,) = jobs_of("[only]\n")
    assert (job.name, job.rw, job.bs, job.bs_write, job.iodepth, job.numjobs) == (
        "only", "read", 4096, 4096, 1, 1)
    assert job.rwmixread == 50 and job.randrepeat and not job.direct and not job.time_based
    assert job.size is None and job.filename is None and job.runtime_s is None
    assert job.sources == {}
    assert job.section.line == 1


def test_global_inheritance_and_multiple_globals() -> None:
    a, b, c = jobs_of(
        """\
        ; a comment
        # another comment
        [global]
        ioengine=libaio
        direct=1
        bs=8k
        size=64m

        [a]
        rw=randread
        iodepth=32

        [global]
        iodepth=4
        bs=16k
        runtime=10
        time_based

        [b]
        rw=randwrite

        [c]
        bs=4k
        time_based=0
        """
    )
    # a sees only the first [global]; the second one does not reach back.
    assert (a.bs, a.iodepth, a.runtime_s, a.time_based) == (8192, 32, None, False)
    assert a.direct and a.ioengine == "libaio" and a.size == 64 << 20
    # b sees both, merged: the later [global] overrides bs, keeps direct/size from the first.
    assert (b.bs, b.iodepth, b.runtime_s, b.time_based) == (16384, 4, 10.0, True)
    assert b.direct and b.size == 64 << 20 and b.rw == "randwrite"
    # c overrides inherited values.
    assert (c.bs, c.time_based, c.rw) == (4096, False, "read")
    # Every option remembers where it was set, including in a [global] section.
    assert a.sources["bs"].line == 6 and a.sources["iodepth"].line == 11
    assert b.sources["bs"].line == 15 and b.sources["direct"].line == 5
    assert str(b.sources["bs"]) == "test.fio, line 15"
    assert b.sources["bs"].text == "bs=16k"


def test_comments_blank_lines_spaces_and_aliases() -> None:
    (job,) = jobs_of(
        """\

        [  spaced  ]
          readwrite = randrw     ; trailing comment
        rwmixread=70 # another
        blocksize=64k
        filename=/tmp/data#not-part-of-the-name
        wait_for_previous
        """
    )
    assert job.name == "spaced"
    assert job.rw == "randrw" and job.is_mixed and job.is_random
    assert job.rwmixread == 70 and job.read_fraction == pytest.approx(0.7)
    assert job.does_reads and job.does_writes
    assert job.bs == 65536
    assert job.filename == "/tmp/data"  # fio cuts the line at '#', even inside a value
    assert job.stonewall
    assert set(job.sources) >= {"rw", "rwmixread", "bs", "filename", "stonewall"}


def test_rw_values() -> None:
    for value, expected in [("read", "read"), ("write", "write"), ("randread", "randread"),
                            ("randwrite", "randwrite"), ("rw", "rw"), ("readwrite", "rw"),
                            ("randrw", "randrw")]:
        (job,) = jobs_of(f"[j]\nrw={value}\n")
        assert job.rw == expected
    (w,) = jobs_of("[j]\nrw=write\n")
    assert w.read_fraction == 0.0 and not w.does_reads


def test_rwmixread_and_rwmixwrite_later_wins() -> None:
    (a,) = jobs_of("[j]\nrw=randrw\nrwmixread=70\nrwmixwrite=20\n")
    assert a.rwmixread == 80
    (b,) = jobs_of("[j]\nrw=randrw\nrwmixwrite=20\nrwmixread=70\n")
    assert b.rwmixread == 70
    assert a.sources["rwmixread"].line == 4


def test_bs_read_write_forms() -> None:
    (a,) = jobs_of("[j]\nbs=4k,64k\n")
    assert (a.bs, a.bs_write) == (4096, 65536)
    (b,) = jobs_of("[j]\nbs=8k,32k,128k\n")  # trim size accepted, ignored
    assert (b.bs, b.bs_write) == (8192, 32768)
    # An empty field keeps the inherited value (fio 3.33 does the same).
    (c,) = jobs_of("[global]\nbs=8k\n[j]\nbs=,16k\n")
    assert (c.bs, c.bs_write) == (8192, 16384)
    (d,) = jobs_of("[global]\nbs=8k\n[j]\nbs=16k,\n")
    assert (d.bs, d.bs_write) == (16384, 8192)


def test_kb_base_applies_to_the_whole_section() -> None:
    # fio parses kb_base first, wherever it stands in the section.
    (a,) = jobs_of("[j]\nbs=4k\nkb_base=1000\nsize=1m\n")
    assert (a.bs, a.size, a.kb_base) == (4000, 1_000_000, 1000)
    # Values parsed in an earlier [global] keep the base they were parsed with.
    (b,) = jobs_of("[global]\nbs=4k\n[j]\nkb_base=1000\nsize=4kib\n")
    assert (b.bs, b.size) == (4096, 4096)


def test_sizes_offsets_and_percentages() -> None:
    (a,) = jobs_of("[j]\nsize=50%\noffset=10%\nbs=4k\n")
    assert a.size is None and a.size_percent == 50.0
    assert a.offset == 0 and a.offset_percent == 10.0
    file_size = 100 << 20
    off = a.resolve_offset(file_size)
    assert off % 4096 == 0 and off <= file_size // 10
    assert a.resolve_size(file_size) == file_size // 2
    (b,) = jobs_of("[j]\nsize=1g\noffset=0x100000\n")
    assert (b.size, b.offset) == (1 << 30, 1 << 20)
    assert b.resolve_size(10 << 30) == 1 << 30
    (c,) = jobs_of("[j]\noffset=4k\n")
    assert c.resolve_size(1 << 20) == (1 << 20) - 4096  # no size: the rest of the file


def test_runtime_and_ramp_time_suffixes() -> None:
    (j,) = jobs_of("[j]\nruntime=2m\nramp_time=500ms\ntime_based\n")
    assert j.runtime_s == 120.0 and j.ramp_time_s == 0.5 and j.time_based
    (k,) = jobs_of("[j]\nruntime=0\n")
    assert k.runtime_s is None  # fio: 0 means no limit


def test_flags_and_bools() -> None:
    (j,) = jobs_of(
        "[j]\ngroup_reporting\nnorandommap=1\nthread\nrandrepeat=0\ndirect=1\nstonewall=0\n"
        "numjobs=4\nioengine=io_uring\ndescription=my test job\nname=renamed\n"
    )
    assert j.group_reporting and j.norandommap and j.thread and j.direct
    assert not j.randrepeat and not j.stonewall
    assert j.numjobs == 4 and j.ioengine == "io_uring" and j.description == "my test job"
    assert j.name == "renamed"


def test_environment_and_reserved_keywords() -> None:
    (j,) = jobs_of("[j]\nsize=${SIZE}\nfilename=${DIR}/data\nnumjobs=$ncpus\n",
                   env={"SIZE": "64m", "DIR": "/srv"})
    assert j.size == 64 << 20 and j.filename == "/srv/data" and j.numjobs >= 1
    # An unset variable expands to nothing, as in fio, which then needs a value.
    with pytest.raises(JobFileError, match="option 'size' needs a value"):
        jobs_of("[j]\nsize=${NOT_SET_ANYWHERE}\n", env={})


def test_include_directive(tmp_path: Path) -> None:
    (tmp_path / "common.fio").write_text("ioengine=libaio\niodepth=16\n")
    (tmp_path / "bad.fio").write_text("bs=4k\n[section]\n")
    main = tmp_path / "main.fio"
    main.write_text("[global]\ninclude common.fio\n[j]\nrw=randread\n")
    (j,) = parse_job_file(main)
    assert j.iodepth == 16 and j.ioengine == "libaio"
    assert j.sources["iodepth"].source == str(tmp_path / "common.fio")
    assert j.sources["iodepth"].line == 2
    main.write_text("[global]\ninclude bad.fio\n[j]\n")
    with pytest.raises(JobFileError, match=r"bad\.fio, line 2: an included file may not contain"):
        parse_job_file(main)
    main.write_text("[global]\ninclude missing.fio\n")
    with pytest.raises(JobFileError, match=r"main\.fio, line 2: cannot read included file"):
        parse_job_file(main)


def test_parse_job_file_path_text_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "jobs.fio"
    path.write_text("[a]\nrw=randread\n[b]\nrw=write\n")
    assert [j.name for j in parse_job_file(path)] == ["a", "b"]
    assert [j.name for j in parse_job_file(str(path))] == ["a", "b"]
    assert parse_job_file(path)[0].section.source == str(path)
    assert [j.name for j in parse_job_file("[x]\nbs=4k\n")] == ["x"]
    with pytest.raises(JobFileError, match="cannot read job file"):
        parse_job_file(tmp_path / "nope.fio")


def test_file_path() -> None:
    (a,) = jobs_of("[a]\n")
    assert a.file_path() == "a.0.0" and a.file_path(clone=3) == "a.3.0"
    (b,) = jobs_of("[b]\ndirectory=/data\n")
    assert b.file_path(1) == "/data/b.1.0"
    (c,) = jobs_of("[c]\ndirectory=/data\nfilename=/abs/file\n")
    assert c.file_path() == "/abs/file"
    (d,) = jobs_of("[d]\ndirectory=/data\nfilename=rel\\:name\n")
    assert d.filename == "rel:name" and d.file_path() == "/data/rel:name"


# ---------------------------------------------------------------------------- errors


def test_unsupported_option_names_option_file_and_line() -> None:
    text = textwrap.dedent(
        """\
        [global]
        bs=4k
        direct=1

        [job1]
        rw=randread
        fdp=1
        """
    )
    with pytest.raises(JobFileError) as info:
        parse_job_text(text, "mine.fio")
    err = info.value
    msg = str(err)
    assert msg.startswith("mine.fio, line 7: option 'fdp' is not supported by ioengine")
    assert "--list-options" in msg and "fdp=1" in msg
    assert (err.source, err.line, err.option) == ("mine.fio", 7, "fdp")
    assert isinstance(err, ValueError)
    assert "fdp" not in SUPPORTED_OPTIONS and "verify" in SUPPORTED_OPTIONS


def test_every_problem_is_reported_at_once() -> None:
    text = "[global]\ncpus_allowed=0\nbs=4k\n[a]\nrw=bogus\nzonemode=zbd\n[b]\nioengine=ftruncate\nbs=x\n"
    with pytest.raises(JobFileError) as info:
        parse_job_text(text, "many.fio")
    err = info.value
    assert [(e.line, e.option) for e in err.errors] == [(2, "cpus_allowed"), (5, "rw"), (6, "zonemode"),
                                                         (8, "ioengine"), (9, "bs")]
    msg = str(err)
    assert msg.startswith("many.fio: 5 problems")
    assert "line 8: ioengine=ftruncate is not supported" in msg and "    9 | bs=x" in msg


def test_engines_name_in_global_and_aliases() -> None:
    a, b, c = jobs_of("[global]\nname=ignored\ntimeout=2\nfileoffset=8k\nbuffered=0\n"
                      "[a]\niodepth=8\n[b]\nioengine=libaio\niodepth=8\n[c]\nioengine=sync\niodepth=8\n")
    assert [j.name for j in (a, b, c)] == ["a", "b", "c"]
    assert a.runtime_s == 2 and a.offset == 8192 and a.direct
    assert (a.depth, b.depth, c.depth) == (1, 8, 1)  # no ioengine: fio's psync
    assert a.own == {"iodepth"} and "timeout" in a.global_written


def test_new_option_values() -> None:
    (j,) = jobs_of("[j]\nbssplit=4k/10:64k/50:32k,8k\nrandom_distribution=zipf:1.2\nrate=1m,2m\n"
                   "rate_iops=,50\nthinktime=100\nverify=crc32c-intel\nbuffer_pattern=0xdeadbeef\n")
    assert j.bssplit == (((4096, 10), (65536, 50), (32768, 40)), ((8192, 100),))
    assert j.block_sizes(0) == (4096, 65536) and j.random_params == (1.2,)
    assert j.rate == (1 << 20, 2 << 20) and j.rate_iops == (0, 50) and j.thinktime_s == 100e-6
    assert j.verify == "crc32c" and j.buffer_pattern == bytes.fromhex("deadbeef")
    with pytest.raises(JobFileError, match="add up to 100"):
        jobs_of("[j]\nbssplit=4k/60:8k/60\n")
    with pytest.raises(JobFileError, match="pareto parameter must be in"):
        jobs_of("[j]\nrandom_distribution=pareto:2\n")


def test_list_options_has_fio_meanings(capsys: pytest.CaptureFixture[str]) -> None:
    from ioengine.bench.__main__ import main

    assert main(["run", "--list-options"]) == 0
    out = capsys.readouterr().out
    assert "bssplit" in out and "norandommap" in out and "(alias: timeout)" in out


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("bs=4k\n[j]\n", "line 1: option line 'bs=4k' comes before any"),
        ("[j\n", "line 1: malformed section header"),
        ("[]\n", "line 1: malformed section header"),
        ("[ ]\n", "line 1: empty section name"),
    ],
)
def test_malformed_structure(text: str, match: str) -> None:
    with pytest.raises(JobFileError, match=match):
        parse_job_text(text, "s.fio")


# ---------------------------------------------------------------------------- to_fio_args


def test_to_fio_args() -> None:
    (job,) = jobs_of(
        """\
        [rr]
        description=random reads
        rw=randrw
        rwmixread=70
        bs=4k,8k
        iodepth=32
        size=64m
        offset=1m
        filename=/tmp/a:b
        runtime=1500ms
        time_based
        ramp_time=1
        numjobs=2
        direct=1
        ioengine=libaio
        group_reporting
        randrepeat=0
        norandommap
        thread
        stonewall
        """.replace("/tmp/a:b", "/tmp/a\\:b")
    )
    assert job.to_fio_args() == [
        "--name=rr", "--description=random reads", "--rw=randrw", "--rwmixread=70",
        "--bs=4096,8192", "--iodepth=32", "--ioengine=libaio", "--direct=1", "--numjobs=2",
        "--size=67108864", "--offset=1048576", "--filename=/tmp/a\\:b", "--runtime=1500ms",
        "--time_based", "--ramp_time=1", "--randrepeat=0", "--norandommap", "--thread",
        "--group_reporting", "--stonewall",
    ]
    assert "--ioengine=io_uring" in job.to_fio_args(ioengine="io_uring")
    (pct,) = jobs_of("[p]\nsize=25%\noffset=50%\nruntime=250us\n")
    args = pct.to_fio_args()
    assert "--size=25%" in args and "--offset=50%" in args and "--runtime=250us" in args
    assert not any(a.startswith("--ioengine") for a in args)


@needs_fio
def test_fio_accepts_generated_args() -> None:
    jobs = jobs_of(
        "[global]\nsize=1m\nruntime=1500ms\ntime_based\n[a]\nrw=randrw\nbs=4k,8k\n"
        "[b]\nstonewall\nrw=write\nsize=10%\noffset=5%\n"
    )
    proc = subprocess.run(["fio", "--parse-only", *to_fio_args(jobs, ioengine="null")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


@needs_fio
def test_parse_size_agrees_with_real_fio() -> None:
    # One fio run, one job per (size, kb_base): the null engine moves no data, and each job's
    # io_bytes shows how fio itself read the size.  bs=8 divides every size below.
    cases = [(size, kb_base) for kb_base in (1024, 1000)
             for size in ("4k", "4ki", "4kib", "4KiB", "4kb", "1m", "1mib", "0x1000")]
    args = ["--ioengine=null", "--rw=read", "--bs=8"]
    for i, (size, kb_base) in enumerate(cases):
        args += [f"--name=s{i}", f"--kb_base={kb_base}", f"--size={size}"]
    result = run_fio(args, timeout=60)
    assert len(result.jobs) == len(cases)
    for job, (size, kb_base) in zip(result.jobs, cases):
        assert job.read.io_bytes == parse_size(size, kb_base), (size, kb_base)


@needs_fio
def test_job_file_and_to_fio_args_run_identically_in_fio(tmp_path: Path) -> None:
    # fio running the job file itself, and fio running what we understood of it, must do the
    # same I/O.  The null engine keeps it instant; sizes exercise inheritance and suffix rules.
    path = tmp_path / "cross.fio"
    text = textwrap.dedent(
        """\
        [global]
        size=64k
        bs=8k
        [a]
        rw=read
        [global]
        kb_base=1000
        [b]
        stonewall
        rw=write
        size=40k       ; 40000 bytes under kb_base=1000
        bs=,4kib       ; 4096 for writes
        [c]
        stonewall
        rw=randrw
        rwmixread=100
        bs=2k
        """
    )
    path.write_text(text)
    specs = parse_job_file(path)
    for_fio = tmp_path / "cross-null.fio"  # ioengine refuses the null engine; fio gets it added
    for_fio.write_text(text.replace("[global]\n", "[global]\nioengine=null\n", 1))
    from_file = run_fio([str(for_fio)], timeout=60)
    from_args = run_fio(to_fio_args(specs, ioengine="null"), timeout=60)
    assert [j.name for j in from_file.jobs] == [j.name for j in from_args.jobs] == ["a", "b", "c"]
    for spec, a, b in zip(specs, from_file.jobs, from_args.jobs):
        for direction in ("read", "write"):
            assert a.direction(direction).io_bytes == b.direction(direction).io_bytes
            assert a.direction(direction).total_ios == b.direction(direction).total_ios
        # ... and both agree with the numbers in the JobSpec.
        assert spec.size is not None
        if spec.does_writes and not spec.does_reads:
            assert a.write.total_ios == spec.size // spec.bs_write
        else:
            assert a.read.total_ios == spec.size // spec.bs


def test_refusals_say_why_when_there_is_a_reason() -> None:
    with pytest.raises(JobFileError) as info:
        parse_job_text("[j]\nprio_percentage=3\nmax_open_zones=4\n", "p.fio")
    msg = str(info.value)
    assert ("option 'prio_percentage' is not supported by ioengine: fio's libaio and io_uring engines call it "
            "cmdprio_percentage") in msg
    assert "option 'max_open_zones' is not supported by ioengine: zoned block devices" in msg
