"""iosched: a pure disk scheduler in Seastar's image (io_queue / fair_queue).

No syscalls, no asyncio, no clock: time is passed in as seconds. The engine asks the
queue what to submit and when; tests drive it with a simulated disk in virtual time.
"""

from .cost import COST_FORMS, DEFAULT_COST_FORM, READ, WRITE, CostModel
from .fair_queue import Dispatch, FairQueue, IoClassState, QueuedRequest, RequestPart, SplitRequest, check_shares
from .io_group import GroupDisk, IoGroup, SharedDisk
from .io_queue import DirectGrant, IoQueue, IoQueueConfig
from .properties import (
    DiskProperties,
    IoPropertiesError,
    dump_io_properties,
    load_io_properties,
    parse_io_properties,
    save_io_properties,
)
from .token_bucket import FlowMonitor, TokenBucket
from .wakeup_queue import WakeupQueue

__all__ = [
    "check_shares",
    "READ", "WRITE", "COST_FORMS", "DEFAULT_COST_FORM", "CostModel",
    "DiskProperties", "IoPropertiesError",
    "load_io_properties", "parse_io_properties", "dump_io_properties", "save_io_properties",
    "TokenBucket", "FlowMonitor", "FairQueue", "IoClassState",
    "IoGroup", "GroupDisk", "SharedDisk",
    "IoQueue", "IoQueueConfig", "QueuedRequest", "SplitRequest", "RequestPart", "Dispatch", "DirectGrant",
    "WakeupQueue",
]
