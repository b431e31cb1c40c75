"""oomlab: helpers for tests that stage *real* memcg OOM kills and capture the kernel's report.

Nothing here imports the project code. Typical use::

    from tests.oomlab import KmsgTail, can_cause_oom, memcg, run_oom, cgroupfs_parts, pod_uid, container_id

    ok, why = can_cause_oom()
    if not ok:
        pytest.skip(why)
    with memcg(cgroupfs_parts("burstable", pod_uid(), container_id()), 64 << 20) as cg, KmsgTail() as tail:
        killed = run_oom(cg, comm="python3")
        records = tail.wait_for(lambda r: b"Killed process" in r.message, count=len(killed))

Everything is cgroup v1 (``/sys/fs/cgroup/memory``). Limits are capped at MemAvailable/4 and
children refuse to allocate outside their memcg, so only memcg OOMs can happen.
``python -m tests.oomlab.capture`` regenerates the fixtures in ``tests/data/real``.
"""

from ._cgroup import (
    MEMCG_V1_ROOT,
    OomGroupUnsupported,
    can_cause_oom,
    cgroup_kernel_path,
    cgroup_procs,
    max_safe_limit,
    memcg,
    oom_control,
    read_memcg_int,
)
from ._journald import (
    JournaldStatus,
    journal_kernel,
    journal_kernel_entries,
    journal_message_bytes,
    journalctl,
    journald_pids,
    journald_running,
    private_journald,
    start_journald,
    stop_journald,
    wait_journal,
)
from ._k8s import QoS, Runtime, cgroupfs_parts, container_id, pod_uid, systemd_parts
from ._kmsg import KmsgRecord, KmsgTail, parse_kmsg_record, unescape_kmsg
from ._procs import (
    DEFAULT_PYTHON,
    OomRun,
    ProcResult,
    StormChild,
    StormResult,
    comm_bytes,
    idle_holder,
    oom_storm,
    run_oom,
    run_oom_detailed,
)
from ._reaper import BLKIO_V1_ROOT, StuckVictim, block_device_of, stuck_victim

__all__ = [
    "BLKIO_V1_ROOT",
    "DEFAULT_PYTHON",
    "MEMCG_V1_ROOT",
    "JournaldStatus",
    "KmsgRecord",
    "KmsgTail",
    "OomGroupUnsupported",
    "OomRun",
    "ProcResult",
    "QoS",
    "Runtime",
    "StormChild",
    "StormResult",
    "StuckVictim",
    "block_device_of",
    "can_cause_oom",
    "cgroup_kernel_path",
    "cgroup_procs",
    "cgroupfs_parts",
    "comm_bytes",
    "container_id",
    "idle_holder",
    "journal_kernel",
    "journal_kernel_entries",
    "journal_message_bytes",
    "journalctl",
    "journald_pids",
    "journald_running",
    "max_safe_limit",
    "memcg",
    "oom_control",
    "oom_storm",
    "parse_kmsg_record",
    "pod_uid",
    "private_journald",
    "read_memcg_int",
    "run_oom",
    "run_oom_detailed",
    "start_journald",
    "stop_journald",
    "stuck_victim",
    "systemd_parts",
    "unescape_kmsg",
    "wait_journal",
]
