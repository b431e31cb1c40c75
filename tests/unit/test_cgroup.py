"""Tests for parsers.cgroup: cgroup path -> Kubernetes identity, and which limit fired."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from parsers.cgroup import CgroupIdentity, identify, limit_scope

UID = "8dc3c9f0-6a5a-4d1c-9f9f-0b2f1e6c3a11"
UID_US = UID.replace("-", "_")
UID2 = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
STATIC_UID = "d0bb0e2b8a3e1f6c5e4f9a7b6c5d4e3f"  # kubelet config hash of a static pod (md5 hex)
CID = "3f1e0c7a9b2d4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f"
CID2 = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
CID63 = CID[:63]

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CONFIG_HASH_RE = re.compile(r"[0-9a-f]{32}")
CID_RE = re.compile(r"[0-9a-f]{64}")

NONE = CgroupIdentity(None, None, None, None, None, False)


def k8s(
    pod: str | None = None,
    cid: str | None = None,
    runtime: str | None = None,
    qos: str | None = None,
    driver: str | None = None,
) -> CgroupIdentity:
    return CgroupIdentity(pod, cid, runtime, qos, driver, True)


# ---------------------------------------------------------------------------------------------------------
# identify: table
# ---------------------------------------------------------------------------------------------------------

SYSTEMD_BURSTABLE_POD = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice"
SYSTEMD_BESTEFFORT_POD = f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice"
SYSTEMD_GUARANTEED_POD = f"/kubepods.slice/kubepods-pod{UID_US}.slice"

IDENTIFY_CASES: list[tuple[str, str | None, CgroupIdentity]] = [
    # --- cgroupfs: all QoS classes, every level ---
    (
        "cgroupfs burstable container",
        f"/kubepods/burstable/pod{UID}/{CID}",
        k8s(UID, CID, None, "Burstable", "cgroupfs"),
    ),
    (
        "cgroupfs besteffort container",
        f"/kubepods/besteffort/pod{UID}/{CID}",
        k8s(UID, CID, None, "BestEffort", "cgroupfs"),
    ),
    (
        "cgroupfs guaranteed container",
        f"/kubepods/pod{UID}/{CID}",
        k8s(UID, CID, None, "Guaranteed", "cgroupfs"),
    ),
    (
        "cgroupfs burstable pod",
        f"/kubepods/burstable/pod{UID}",
        k8s(UID, None, None, "Burstable", "cgroupfs"),
    ),
    (
        "cgroupfs besteffort pod",
        f"/kubepods/besteffort/pod{UID}",
        k8s(UID, None, None, "BestEffort", "cgroupfs"),
    ),
    ("cgroupfs guaranteed pod", f"/kubepods/pod{UID}", k8s(UID, None, None, "Guaranteed", "cgroupfs")),
    ("cgroupfs burstable qos", "/kubepods/burstable", k8s(qos="Burstable", driver="cgroupfs")),
    ("cgroupfs besteffort qos", "/kubepods/besteffort", k8s(qos="BestEffort", driver="cgroupfs")),
    ("cgroupfs root", "/kubepods", k8s(driver="cgroupfs")),
    # --- systemd: all QoS classes, every level, all runtimes ---
    (
        "systemd burstable containerd",
        f"{SYSTEMD_BURSTABLE_POD}/cri-containerd-{CID}.scope",
        k8s(UID, CID, "containerd", "Burstable", "systemd"),
    ),
    (
        "systemd besteffort containerd",
        f"{SYSTEMD_BESTEFFORT_POD}/cri-containerd-{CID}.scope",
        k8s(UID, CID, "containerd", "BestEffort", "systemd"),
    ),
    (
        "systemd guaranteed containerd",
        f"{SYSTEMD_GUARANTEED_POD}/cri-containerd-{CID}.scope",
        k8s(UID, CID, "containerd", "Guaranteed", "systemd"),
    ),
    ("systemd burstable pod", SYSTEMD_BURSTABLE_POD, k8s(UID, None, None, "Burstable", "systemd")),
    ("systemd besteffort pod", SYSTEMD_BESTEFFORT_POD, k8s(UID, None, None, "BestEffort", "systemd")),
    ("systemd guaranteed pod", SYSTEMD_GUARANTEED_POD, k8s(UID, None, None, "Guaranteed", "systemd")),
    (
        "systemd burstable qos",
        "/kubepods.slice/kubepods-burstable.slice",
        k8s(qos="Burstable", driver="systemd"),
    ),
    (
        "systemd besteffort qos",
        "/kubepods.slice/kubepods-besteffort.slice",
        k8s(qos="BestEffort", driver="systemd"),
    ),
    ("systemd root", "/kubepods.slice", k8s(driver="systemd")),
    (
        "systemd crio",
        f"{SYSTEMD_BURSTABLE_POD}/crio-{CID}.scope",
        k8s(UID, CID, "cri-o", "Burstable", "systemd"),
    ),
    (
        "systemd crio /container child",
        f"{SYSTEMD_BURSTABLE_POD}/crio-{CID}.scope/container",
        k8s(UID, CID, "cri-o", "Burstable", "systemd"),
    ),
    (
        "systemd crio conmon is not the container",
        f"{SYSTEMD_BURSTABLE_POD}/crio-conmon-{CID}.scope",
        k8s(UID, None, "cri-o", "Burstable", "systemd"),
    ),
    (
        "systemd docker",
        f"{SYSTEMD_GUARANTEED_POD}/docker-{CID}.scope",
        k8s(UID, CID, "docker", "Guaranteed", "systemd"),
    ),
    # --- cgroupfs CRI-O ---
    (
        "cgroupfs crio",
        f"/kubepods/burstable/pod{UID}/crio-{CID}",
        k8s(UID, CID, "cri-o", "Burstable", "cgroupfs"),
    ),
    (
        "cgroupfs crio conmon",
        f"/kubepods/besteffort/pod{UID}/crio-conmon-{CID}",
        k8s(UID, None, "cri-o", "BestEffort", "cgroupfs"),
    ),
    # --- nested prefixes ---
    (
        "lxc.payload systemd",
        f"/lxc.payload.node1{SYSTEMD_BURSTABLE_POD}/cri-containerd-{CID}.scope",
        k8s(UID, CID, "containerd", "Burstable", "systemd"),
    ),
    (
        "lxc ns cgroupfs",
        f"/lxc/39004/ns/kubepods/burstable/pod{UID}/{CID}",
        k8s(UID, CID, None, "Burstable", "cgroupfs"),
    ),
    (
        "lxc ns cgroupfs guaranteed pod",
        f"/lxc/39004/ns/kubepods/pod{UID}",
        k8s(UID, None, None, "Guaranteed", "cgroupfs"),
    ),
    (
        "cgroupfs custom cgroup root",
        f"/kubelet/kubepods/besteffort/pod{UID}/{CID}",
        k8s(UID, CID, None, "BestEffort", "cgroupfs"),
    ),
    (
        "kind rootless kubelet.slice",
        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
        f"kubelet-kubepods-burstable-pod{UID_US}.slice/cri-containerd-{CID}.scope",
        k8s(UID, CID, "containerd", "Burstable", "systemd"),
    ),
    (
        "kind rootless guaranteed",
        f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_US}.slice",
        k8s(UID, None, None, "Guaranteed", "systemd"),
    ),
    ("kind rootless root", "/kubelet.slice/kubelet-kubepods.slice", k8s(driver="systemd")),
    (
        "kind node in docker scope",
        f"/system.slice/docker-{CID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        f"kubelet-kubepods-besteffort-pod{UID_US}.slice/cri-containerd-{CID}.scope",
        k8s(UID, CID, "containerd", "BestEffort", "systemd"),
    ),
    (
        "colon form containerd",
        f"/system.slice/containerd.service/kubepods-burstable-pod{UID_US}.slice:cri-containerd:{CID}",
        k8s(UID, CID, "containerd", "Burstable", "systemd"),
    ),
    (
        "colon form guaranteed",
        f"/system.slice/containerd.service/kubepods-pod{UID_US}.slice:cri-containerd:{CID}",
        k8s(UID, CID, "containerd", "Guaranteed", "systemd"),
    ),
    (
        "colon form crio",
        f"/kubepods-besteffort-pod{UID_US}.slice:crio:{CID}",
        k8s(UID, CID, "cri-o", "BestEffort", "systemd"),
    ),
    (
        "colon form unknown prefix",
        f"/x/kubepods-burstable-pod{UID_US}.slice:foo:{CID}",
        k8s(UID, None, None, "Burstable", "systemd"),
    ),
    (
        "colon form 63-hex id",
        f"/x/kubepods-burstable-pod{UID_US}.slice:cri-containerd:{CID63}",
        k8s(UID, None, None, "Burstable", "systemd"),
    ),
    (
        "innermost hierarchy wins",
        f"/kubepods/burstable/pod{UID2}/{CID2}/kubepods/besteffort/pod{UID}/{CID}",
        k8s(UID, CID, None, "BestEffort", "cgroupfs"),
    ),
    # --- static pods: the cgroup carries the kubelet config hash ---
    (
        "static pod cgroupfs",
        f"/kubepods/burstable/pod{STATIC_UID}/{CID}",
        k8s(STATIC_UID, CID, None, "Burstable", "cgroupfs"),
    ),
    (
        "static pod systemd",
        f"/kubepods.slice/kubepods-pod{STATIC_UID}.slice/cri-containerd-{CID}.scope",
        k8s(STATIC_UID, CID, "containerd", "Guaranteed", "systemd"),
    ),
    # --- normalization ---
    (
        "uppercase hex is lowercased",
        f"/kubepods/burstable/pod{UID.upper()}/{CID.upper()}",
        k8s(UID, CID, None, "Burstable", "cgroupfs"),
    ),
    (
        "surrounding whitespace and trailing slash",
        f"  /kubepods/burstable/pod{UID}/{CID}/\n",
        k8s(UID, CID, None, "Burstable", "cgroupfs"),
    ),
    (
        "dashed uid in systemd name tolerated",
        f"/kubepods.slice/kubepods-pod{UID}.slice",
        k8s(UID, None, None, "Guaranteed", "systemd"),
    ),
    # --- walk stops at the first segment that does not fit ---
    (
        "malformed pod uid",
        f"/kubepods/burstable/pod{UID[:-1]}/{CID}",
        k8s(qos="Burstable", driver="cgroupfs"),
    ),
    (
        "pod uid with bad chars",
        "/kubepods/burstable/podzzzzzzzz-6a5a-4d1c-9f9f-0b2f1e6c3a11",
        k8s(qos="Burstable", driver="cgroupfs"),
    ),
    ("pod uid mixed separators", f"/kubepods/pod{UID[:8]}_{UID[9:]}", k8s(driver="cgroupfs")),
    ("non-ascii digit in uid", "/kubepods/pod８dc3c9f0-6a5a-4d1c-9f9f-0b2f1e6c3a11", k8s(driver="cgroupfs")),
    (
        "63-hex container id",
        f"/kubepods/burstable/pod{UID}/{CID63}",
        k8s(UID, None, None, "Burstable", "cgroupfs"),
    ),
    (
        "65-hex container id",
        f"/kubepods/burstable/pod{UID}/{CID}0",
        k8s(UID, None, None, "Burstable", "cgroupfs"),
    ),
    (
        "junk between pod and container",
        f"/kubepods/burstable/pod{UID}/junk/{CID}",
        k8s(UID, None, None, "Burstable", "cgroupfs"),
    ),
    ("unknown qos word", f"/kubepods/gold/pod{UID}/{CID}", k8s(driver="cgroupfs")),
    (
        "systemd qos slice then cgroupfs-style pod",
        f"/kubepods.slice/kubepods-burstable.slice/pod{UID}",
        k8s(qos="Burstable", driver="systemd"),
    ),
    (
        "container child sub-cgroup keeps container",
        f"/kubepods/pod{UID}/{CID}/init.scope",
        k8s(UID, CID, None, "Guaranteed", "cgroupfs"),
    ),
    # --- outside Kubernetes ---
    ("root", "/", NONE),
    ("system service", "/system.slice/foo.service", NONE),
    ("containerd service", "/system.slice/containerd.service", NONE),
    ("user slice", "/user.slice/user-1000.slice/session-3.scope", NONE),
    ("plain docker v1", f"/docker/{CID}", CgroupIdentity(None, CID, "docker", None, None, False)),
    (
        "plain docker systemd",
        f"/system.slice/docker-{CID}.scope",
        CgroupIdentity(None, CID, "docker", None, None, False),
    ),
    (
        "nested docker in lxc",
        f"/lxc/39004/ns/system.slice/docker-{CID}.scope",
        CgroupIdentity(None, CID, "docker", None, None, False),
    ),
    (
        "docker in docker: innermost",
        f"/docker/{CID2}/docker/{CID}",
        CgroupIdentity(None, CID, "docker", None, None, False),
    ),
    ("docker 63-hex", f"/docker/{CID63}", NONE),
    ("hex not under docker", f"/foo/{CID}", NONE),
    ("crio conmon in system.slice", f"/system.slice/crio-conmon-{CID}.scope", NONE),
    ("pod-looking path without kubepods", f"/burstable/pod{UID}/{CID}", NONE),
    ("kubepods as substring of a name", "/system.slice/kubepods-cleanup.service", NONE),
    # --- garbage ---
    ("none", None, NONE),
    ("empty", "", NONE),
    ("whitespace", "   \n", NONE),
    ("non-ascii", "/ÿ/日本/ポッド", NONE),
    ("slashes only", "////", NONE),
    ("too long", "/kubepods/burstable/pod" + UID + "/" + "a" * 5000, NONE),
    ("colon form without pod", f"/kubepods-burstable.slice:cri-containerd:{CID}", NONE),
]


@pytest.mark.parametrize(
    ("path", "expected"), [(p, e) for _, p, e in IDENTIFY_CASES], ids=[n for n, _, _ in IDENTIFY_CASES]
)
def test_identify(path: str | None, expected: CgroupIdentity) -> None:
    assert identify(path) == expected


def test_identify_non_str_input_does_not_raise() -> None:
    assert identify(123) == NONE  # type: ignore[arg-type]
    assert identify(b"/kubepods") == NONE  # type: ignore[arg-type]
    assert identify(["/kubepods"]) == NONE  # type: ignore[arg-type]


def test_identify_long_but_legal_path_uncached() -> None:
    prefix = "/" + "/".join(["n" * 200] * 10)  # > cache length limit, < PATH_MAX
    path = f"{prefix}/kubepods/burstable/pod{UID}/{CID}"
    assert 1024 < len(path) <= 4096
    assert identify(path) == k8s(UID, CID, None, "Burstable", "cgroupfs")


def test_identify_is_frozen_and_slotted() -> None:
    ident = identify(f"/kubepods/pod{UID}/{CID}")
    with pytest.raises(AttributeError):
        ident.pod_uid = "x"  # type: ignore[misc]
    assert not hasattr(ident, "__dict__")


def test_identify_memoizes_equal_paths() -> None:
    path = f"/kubepods/besteffort/pod{UID2}/{CID2}"
    assert identify(path) is identify("".join(path))  # equal but not identical strings hit the cache


def test_identify_is_fast() -> None:
    paths = [f"{SYSTEMD_BURSTABLE_POD}/cri-containerd-{CID}.scope", f"/kubepods/burstable/pod{UID}/{CID}"]
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        for p in paths:
            identify(p)
    per_call = (time.perf_counter() - t0) / (n * len(paths))
    assert per_call < 20e-6, per_call  # cached path is well under a microsecond; generous bound for CI


# ---------------------------------------------------------------------------------------------------------
# identify: all QoS x both drivers x runtimes x prefixes, generated
# ---------------------------------------------------------------------------------------------------------

QOS = ["Guaranteed", "Burstable", "BestEffort"]
PREFIXES = ["", "/lxc.payload.node1", "/lxc/39004/ns"]


def cgroupfs_path(qos: str, uid: str, leaf: str | None, prefix: str = "") -> str:
    qos_part = "" if qos == "Guaranteed" else "/" + qos.lower()
    path = f"{prefix}/kubepods{qos_part}/pod{uid}"
    return path if leaf is None else f"{path}/{leaf}"


def systemd_path(qos: str, uid: str, leaf: str | None, prefix: str = "") -> str:
    u = uid.replace("-", "_")
    if qos == "Guaranteed":
        path = f"{prefix}/kubepods.slice/kubepods-pod{u}.slice"
    else:
        q = qos.lower()
        path = f"{prefix}/kubepods.slice/kubepods-{q}.slice/kubepods-{q}-pod{u}.slice"
    return path if leaf is None else f"{path}/{leaf}"


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("qos", QOS)
def test_matrix_cgroupfs(qos: str, prefix: str) -> None:
    assert identify(cgroupfs_path(qos, UID, CID, prefix)) == k8s(UID, CID, None, qos, "cgroupfs")
    assert identify(cgroupfs_path(qos, UID, f"crio-{CID}", prefix)) == k8s(UID, CID, "cri-o", qos, "cgroupfs")
    assert identify(cgroupfs_path(qos, UID, f"crio-conmon-{CID}", prefix)) == k8s(
        UID, None, "cri-o", qos, "cgroupfs"
    )
    assert identify(cgroupfs_path(qos, UID, None, prefix)) == k8s(UID, None, None, qos, "cgroupfs")


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("qos", QOS)
@pytest.mark.parametrize(
    ("leaf", "runtime", "has_cid"),
    [
        (f"cri-containerd-{CID}.scope", "containerd", True),
        (f"crio-{CID}.scope", "cri-o", True),
        (f"crio-{CID}.scope/container", "cri-o", True),
        (f"crio-conmon-{CID}.scope", "cri-o", False),
        (f"docker-{CID}.scope", "docker", True),
        (None, None, False),
    ],
)
def test_matrix_systemd(qos: str, prefix: str, leaf: str | None, runtime: str | None, has_cid: bool) -> None:
    expected = k8s(UID, CID if has_cid else None, runtime, qos, "systemd")
    assert identify(systemd_path(qos, UID, leaf, prefix)) == expected


# ---------------------------------------------------------------------------------------------------------
# identify: properties
# ---------------------------------------------------------------------------------------------------------


def check_invariants(ident: CgroupIdentity) -> None:
    if ident.container_id is not None:
        assert CID_RE.fullmatch(ident.container_id), ident
    if ident.pod_uid is not None:
        assert UUID_RE.fullmatch(ident.pod_uid) or CONFIG_HASH_RE.fullmatch(ident.pod_uid), ident
    assert ident.runtime in (None, "containerd", "cri-o", "docker")
    assert ident.qos_class in (None, "Guaranteed", "Burstable", "BestEffort")
    assert ident.driver in (None, "cgroupfs", "systemd")
    assert ident.is_kubernetes == (ident.driver is not None)
    if not ident.is_kubernetes:
        assert ident.pod_uid is None and ident.qos_class is None
    if ident.pod_uid is not None:
        assert ident.qos_class is not None


# text made of the pieces real paths are built from, so the fuzzer reaches deep parser states
PIECES = st.sampled_from(
    [
        "/",
        "kubepods",
        "kubepods.slice",
        "kubepods-burstable.slice",
        "kubepods-besteffort-pod",
        "burstable",
        "besteffort",
        "pod",
        UID,
        UID_US,
        STATIC_UID,
        CID,
        CID63,
        "cri-containerd-",
        "crio-",
        "crio-conmon-",
        "docker",
        "docker-",
        ".scope",
        ".slice",
        ":",
        "cri-containerd",
        "-",
        "_",
        "container",
        "lxc",
        "é",
        "８",
        "\x00",
        "\n",
        " ",
    ]
)
PIECEWISE_TEXT = st.lists(st.one_of(PIECES, st.text(max_size=4)), max_size=24).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), PIECEWISE_TEXT))
@example(f"/kubepods/burstable/pod{UID}/{CID}")
@example("/kubepods-pod" + "0" * 32 + ".slice:docker:" + "0" * 64)
@example("\u212aubepods")  # KELVIN SIGN must not case-fold into 'k'
def test_identify_arbitrary_text_never_raises(text: str) -> None:
    check_invariants(identify(text))
    for g in (True, False):
        assert limit_scope(text, text, global_oom=g) in (
            None,
            "global",
            "container",
            "pod",
            "qos",
            "kubepods",
            "other",
        )


@settings(max_examples=200, deadline=None)
@given(
    uid=st.uuids().map(str),
    cid=st.text("0123456789abcdef", min_size=64, max_size=64),
    qos=st.sampled_from(QOS),
    systemd=st.booleans(),
    prefix=st.sampled_from(PREFIXES),
    upper=st.booleans(),
)
def test_generated_valid_paths_round_trip(
    uid: str, cid: str, qos: str, systemd: bool, prefix: str, upper: bool
) -> None:
    if systemd:
        path = systemd_path(qos, uid, f"cri-containerd-{cid}.scope", prefix)
        expected = k8s(uid, cid, "containerd", qos, "systemd")
    else:
        path = cgroupfs_path(qos, uid, cid, prefix)
        expected = k8s(uid, cid, None, qos, "cgroupfs")
    if upper:
        written = uid.replace("-", "_") if systemd else uid
        path = path.replace(written, written.upper()).replace(cid, cid.upper())
    assert identify(path) == expected
    pod_path = path.rsplit("/", 1)[0]
    assert limit_scope(path, pod_path, global_oom=False) == "pod"
    assert limit_scope(path, path, global_oom=False) == "container"


# ---------------------------------------------------------------------------------------------------------
# limit_scope
# ---------------------------------------------------------------------------------------------------------

CG_CONTAINER = f"/kubepods/burstable/pod{UID}/{CID}"
CG_POD = f"/kubepods/burstable/pod{UID}"
SD_CONTAINER = f"{SYSTEMD_BURSTABLE_POD}/cri-containerd-{CID}.scope"
CRIO_CHILD = f"{SYSTEMD_BURSTABLE_POD}/crio-{CID}.scope/container"
LXC_SD_CONTAINER = f"/lxc.payload.node1{SD_CONTAINER}"

LIMIT_CASES: list[tuple[str, str | None, str | None, bool, str | None]] = [
    ("global wins", CG_CONTAINER, CG_CONTAINER, True, "global"),
    ("global without paths", None, None, True, "global"),
    ("unknown: no oom_memcg", CG_CONTAINER, None, False, None),
    ("unknown: empty oom_memcg", CG_CONTAINER, "", False, None),
    ("container cgroupfs", CG_CONTAINER, CG_CONTAINER, False, "container"),
    ("container systemd", SD_CONTAINER, SD_CONTAINER, False, "container"),
    (
        "container: crio /container child is the victim",
        CRIO_CHILD,
        f"{SYSTEMD_BURSTABLE_POD}/crio-{CID}.scope",
        False,
        "container",
    ),
    (
        "container: colon form",
        f"/system.slice/containerd.service/kubepods-burstable-pod{UID_US}.slice:cri-containerd:{CID}",
        f"/system.slice/containerd.service/kubepods-burstable-pod{UID_US}.slice:cri-containerd:{CID}",
        False,
        "container",
    ),
    ("pod limit fired, victim in container (cgroupfs)", CG_CONTAINER, CG_POD, False, "pod"),
    ("pod limit fired, victim in container (systemd)", SD_CONTAINER, SYSTEMD_BURSTABLE_POD, False, "pod"),
    ("pod limit fired, guaranteed", f"/kubepods/pod{UID}/{CID}", f"/kubepods/pod{UID}", False, "pod"),
    (
        "pod limit fired, nested prefix",
        LXC_SD_CONTAINER,
        f"/lxc.payload.node1{SYSTEMD_BURSTABLE_POD}",
        False,
        "pod",
    ),
    ("qos cgroupfs", CG_CONTAINER, "/kubepods/burstable", False, "qos"),
    ("qos systemd", SD_CONTAINER, "/kubepods.slice/kubepods-burstable.slice", False, "qos"),
    ("kubepods cgroupfs", CG_CONTAINER, "/kubepods", False, "kubepods"),
    ("kubepods systemd", SD_CONTAINER, "/kubepods.slice", False, "kubepods"),
    ("kubepods nested lxc", LXC_SD_CONTAINER, "/lxc.payload.node1/kubepods.slice", False, "kubepods"),
    ("kubepods nested lxc ns", f"/lxc/39004/ns{CG_CONTAINER}", "/lxc/39004/ns/kubepods", False, "kubepods"),
    (
        "kubepods kind",
        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
        f"kubelet-kubepods-burstable-pod{UID_US}.slice/cri-containerd-{CID}.scope",
        "/kubelet.slice/kubelet-kubepods.slice",
        False,
        "kubepods",
    ),
    ("trailing slash on oom_memcg", CG_CONTAINER, "/kubepods/burstable/", False, "qos"),
    ("other: non-k8s oom_memcg", "/system.slice/x.service", "/system.slice/x.service", False, "other"),
    ("other: root memcg", CG_CONTAINER, "/", False, "other"),
    ("other: k8s oom_memcg is a sibling container", CG_CONTAINER, f"{CG_POD}/{CID2}", False, "other"),
    ("other: k8s oom_memcg is another pod", CG_CONTAINER, f"/kubepods/burstable/pod{UID2}", False, "other"),
    ("other: other qos", CG_CONTAINER, "/kubepods/besteffort", False, "other"),
    ("other: other driver root", CG_CONTAINER, "/kubepods.slice", False, "other"),
    (
        "other: string prefix, not on a / boundary",
        f"/a/kubepods.slice/kubepods-pod{UID_US}.slice",
        "/a/kubepods",
        False,
        "other",
    ),
    (
        "other: pod uid prefix, not on a / boundary",
        f"/kubepods/pod{UID}0/{CID}",
        f"/kubepods/pod{UID}",
        False,
        "other",
    ),
    (
        "other: conmon memcg",
        f"{SYSTEMD_BURSTABLE_POD}/crio-conmon-{CID}.scope",
        f"{SYSTEMD_BURSTABLE_POD}/crio-conmon-{CID}.scope",
        False,
        "other",
    ),
    ("other: junk cgroup under pod", f"{CG_POD}/junk", f"{CG_POD}/junk", False, "other"),
    ("other: plain docker container", f"/docker/{CID}", f"/docker/{CID}", False, "other"),
    ("other: victim outside k8s", "/system.slice/x.service", "/kubepods", False, "other"),
    ("no task: level of oom_memcg", None, CG_POD, False, "pod"),
    ("garbage oom_memcg", CG_CONTAINER, "/ÿ/日本", False, "other"),
    ("too long oom_memcg", CG_CONTAINER, "/" + "x" * 5000, False, None),
]


@pytest.mark.parametrize(
    ("task", "oom", "global_oom", "expected"),
    [(t, o, g, e) for _, t, o, g, e in LIMIT_CASES],
    ids=[n for n, *_ in LIMIT_CASES],
)
def test_limit_scope(task: str | None, oom: str | None, global_oom: bool, expected: str | None) -> None:
    assert limit_scope(task, oom, global_oom=global_oom) == expected


def test_limit_scope_global_oom_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        limit_scope(CG_CONTAINER, CG_POD, False)  # type: ignore[call-arg]
