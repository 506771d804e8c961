"""The real-disk scheduler benchmark runs end to end (tiny durations; figures are not asserted)."""
import io

import pytest

from ioengine.bench.sched import ONE_CLASS_LOADS, main_sched


@pytest.mark.slow
@pytest.mark.real_disk
def test_sched_benchmark_smoke(scratch):
    out = io.StringIO()
    res = main_sched(str(scratch / "bench.dat"), 16 << 20, 0.2, None, 1, out=out, calibration="builtin")
    text = out.getvalue()
    for part in ("(a) shares 4:1", "(b) protected reads", "fio on the same mix", "(c) one class", "(d) scheduler CPU"):
        assert part in text
    assert set(res["one_class"]) == {label for label, *_ in ONE_CLASS_LOADS}
    for r in res["one_class"].values():
        assert r["calibrated"] > 0 and r["machinery"] > 0 and r["raw_iops"] > 0
    assert res["one_class_ratio"] == res["one_class"][ONE_CLASS_LOADS[0][0]]["calibrated"]
    assert len(res["shares"]) == 6 and all(r > 0 for r in res["shares"].values())
    assert any("io_share_in_disk" in k for k in res["shares"])
    assert "32 per class, calibrated, io_wakeup_budget=0" in res["shares"]  # the loop not shared, same rounds
    assert "1 % of the shares" in text and res["one_percent"]["median"] >= 0
    assert "io_anticipate" in text and res["one_percent_anticipate"]["median"] >= 0
    iso = res["isolation"]
    assert iso["write_mb_per_s"] > 0 and ("error" in iso["fio"] or iso["fio"]["utilisation"] > 0)
    assert 0 < iso["alone_cpu"] <= 2.5 and 0 < iso["mixed_cpu"] <= 2.5  # cores (the process, its threads)
    assert "the reactor's CPU" in text
    frontier = iso["fio_frontier"]
    if "error" not in frontier:  # the disk's own trade-off, a point per write depth
        assert "the disk's own trade-off" in text
        assert [p["write_depth"] for p in frontier["points"]] == [1, 2, 4, 8]
        assert all(p["p95_ratio"] > 0 and p["utilisation"] > 0 for p in frontier["points"])


def test_sched_benchmark_refuses_an_unknown_calibration(scratch):
    import pytest

    with pytest.raises(ValueError, match="iotune, builtin"):
        main_sched(str(scratch / "bench.dat"), 16 << 20, 0.2, None, 1, calibration="fio")


@pytest.mark.slow
@pytest.mark.real_disk
def test_sched_benchmark_on_two_shards(scratch):
    from ioengine.bench.sched_smp import main_sched_smp
    from iosched import DiskProperties

    path = scratch / "bench.dat"
    with open(path, "wb") as fh:
        fh.write(bytes(16 << 20))
    disk = DiskProperties((str(scratch),), 20_000, 200e6, 20_000, 200e6,
                          write_iops_by_size=((4096, 20_000), (1 << 20, 200)))
    out = io.StringIO()
    res = main_sched_smp(str(path), disk, 2, 0.2, 1, out)
    text = out.getvalue()
    for part in ("(a) shares 4:1 across shards", "no io group", "(b) reads at 50 %", "(e) one disk, 2 shards"):
        assert part in text
    assert all(r > 0 for r in res["shares"].values())
    assert res["one_disk"]["one_shard_iops"] > 0 and res["one_disk"]["group_iops"] > 0
