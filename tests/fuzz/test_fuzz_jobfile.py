"""fio job file parser: a list of JobSpec or JobFileError (a ValueError) for any text."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ioengine.bench.jobfile import SUPPORTED_OPTIONS, JobFileError, JobSpec, parse_job_text, to_fio_args

VALUES = ["1", "0", "-1", "4k", "1M", "4k,8k", "4k-64k", "1:2", "read", "randrw", "write", "randread", "trim",
          "10s", "1m", "100%", "50", "101", "yes", "", "${X}", "${NOPE}", "io_uring", "libaio", "psync",
          "/tmp/f", "a:b", "1e9", "0x10", "(1+2)", "99999999999999999999999", "1,2,3", " ", "nan"]
option = st.sampled_from(SUPPORTED_OPTIONS + ("bogus", "include", "stonewall", "new_group")) | st.text(max_size=8)
value = st.sampled_from(VALUES) | st.text(max_size=12)
line = st.one_of(
    st.tuples(option, value).map(lambda ov: f"{ov[0]}={ov[1]}"),
    option,
    st.sampled_from(["[global]", "[job1]", "[job2]", "[", "]", "[]", "; comment", "# comment", "", "  "]),
    st.text(max_size=20).map(lambda t: f"[{t}]"),
    st.text(max_size=30),
)
job_text = st.lists(line, max_size=14).map(lambda ls: "\n".join(ls) + "\n")


def _parse(text):
    try:
        jobs = parse_job_text(text, "fuzz.fio", env={"X": "4k"}, base_dir="/nonexistent")
    except JobFileError as e:
        assert str(e).startswith("fuzz.fio")
        return
    assert all(isinstance(j, JobSpec) for j in jobs)
    try:
        to_fio_args(jobs)
    except ValueError:
        pass


@given(job_text)
def test_structured_job_files(text):
    _parse(text)


@given(st.text(max_size=300))
def test_any_text(text):
    _parse(text)
