"""Scheduler metrics per reactor, disk and io class: as data, and in Prometheus text format."""
from __future__ import annotations

import math
from typing import Any

from .reactor import _all_reactors

# (field in iosched's class metrics, metric name, type, help, extra labels)
_CLASS_METRICS: tuple[tuple[str, str, str, str, dict[str, str]], ...] = (
    ("read_ops", "ops_total", "counter", "I/O requests dispatched to the disk", {"direction": "read"}),
    ("write_ops", "ops_total", "counter", "I/O requests dispatched to the disk", {"direction": "write"}),
    ("read_bytes", "bytes_total", "counter", "Bytes dispatched to the disk", {"direction": "read"}),
    ("write_bytes", "bytes_total", "counter", "Bytes dispatched to the disk", {"direction": "write"}),
    ("queue_length", "queue_length", "gauge", "Requests waiting in the scheduler", {}),
    ("disk_queue_length", "disk_queue_length", "gauge", "Requests dispatched and not completed", {}),
    ("total_queue_delay", "queue_delay_seconds_total", "counter", "Time requests waited in the scheduler", {}),
    ("total_exec_time", "exec_time_seconds_total", "counter", "Time requests spent in the disk", {}),
    ("starvation_time", "starvation_seconds_total", "counter", "Time with work queued and none in the disk", {}),
    ("consumption", "consumption_disk_seconds_total", "counter", "Disk time consumed (cost model)", {}),
    ("shares", "shares", "gauge", "Shares of the class", {}),
)
_QUEUE_METRICS = (
    ("queue_length", "disk_waiting_requests", "gauge", "Requests waiting in the disk's scheduler"),
    ("disk_queue_length", "disk_inflight_requests", "gauge", "Requests in the disk"),
    ("flow_ratio", "disk_flow_ratio", "gauge", "Dispatched / completed cost over the recent window"),
    ("cost_scale", "disk_cost_scale", "gauge", "Back-off multiplier applied to request costs"),
    ("capacity", "disk_capacity_disk_seconds", "gauge", "Token bucket size (latency goal)"),
)


def metrics() -> list[dict[str, Any]]:
    """One entry per live reactor: its backend, requests in flight, and each disk's queue metrics."""
    out = []
    for i, r in enumerate(sorted(_all_reactors, key=id)):
        if r.closed:
            continue
        r.settle_grants()  # what went out under direct grants is booked once per loop turn
        out.append({"shard": i, "backend": r.backend.describe(), "inflight": r.inflight, "disks": r.disks.metrics()})
    return out


def _labels(d: dict[str, Any]) -> str:
    def esc(v: Any) -> str:
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in d.items()) + "}"


def _num(v: Any) -> str:
    if v is None:
        return "NaN"
    v = float(v)
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(v) if not v.is_integer() else str(int(v))


def metrics_text(prefix: str = "ioengine_io_queue_") -> str:
    """The metrics in Prometheus exposition format (text/plain; version=0.0.4)."""
    series: dict[str, tuple[str, str, list[str]]] = {}

    def add(name: str, kind: str, help_: str, labels: dict[str, Any], value: Any) -> None:
        full = prefix + name
        entry = series.setdefault(full, (kind, help_, []))
        entry[2].append(f"{full}{_labels(labels)} {_num(value)}")

    for shard in metrics():
        for device, m in shard["disks"].items():
            base = {"shard": shard["shard"], "device": device, "mountpoint": m["queue"]["mountpoint"] or ""}
            for key, name, kind, help_ in _QUEUE_METRICS:
                add(name, kind, help_, base, m["queue"][key])
            for cls, cm in m["classes"].items():
                for key, name, kind, help_, extra in _CLASS_METRICS:
                    add(name, kind, help_, {**base, "class": cls, **extra}, cm[key])
    lines = []
    for full, (kind, help_, samples) in series.items():
        lines.append(f"# HELP {full} {help_}")
        lines.append(f"# TYPE {full} {kind}")
        lines.extend(samples)
    return "\n".join(lines) + ("\n" if lines else "")
