"""`make cluster-status`: the one-screen summary of a local cluster.

Processes (state and health), each node's disk (its `Stat` answer: used/free, objects, shard
bytes), every erasure set's online count against its write and read quorum, whether each KES
endpoint answers, and each gateway's heal backlog (read from its metrics endpoint).
"""

from __future__ import annotations

import http.client
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .launcher import Cluster
from .probes import Probe

__all__ = ["print_status"]

TIMEOUT = 1.5  # seconds any one process has to answer


@dataclass(frozen=True)
class _NodeStat:
    ok: bool
    detail: str = ""
    total: int = 0
    free: int = 0
    objects: int = 0
    shard_bytes: int = 0
    pending: int = 0


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _stat(cluster: Cluster, name: str) -> _NodeStat:
    import grpc

    from proto import storage_pb2 as pb
    from proto import storage_pb2_grpc as pb_grpc

    record = cluster.record(name)
    if cluster.meta.get("spec", {}).get("tls_nodes", True):
        cert, key = cluster.admin_cert()
        creds = grpc.ssl_channel_credentials(cluster.ca_path.read_bytes(), key.read_bytes(),
                                             cert.read_bytes())
        channel = grpc.secure_channel(record.address, creds)
    else:
        channel = grpc.insecure_channel(record.address)
    try:
        reply = pb_grpc.StorageStub(channel).Stat(pb.StatRequest(), timeout=TIMEOUT)
    except grpc.RpcError as exc:
        return _NodeStat(False, exc.code().name.lower())
    finally:
        channel.close()
    return _NodeStat(True, "", reply.disk_total, reply.disk_free, reply.objects, reply.bytes,
                     reply.pending_writes)


def _gateway_metrics(cluster: Cluster, name: str) -> dict[str, float] | str:
    """The gateway's unlabelled samples (heal_*, kms_*), or why they could not be read."""
    from prometheus_client.parser import text_string_to_metric_families

    from gateway.ops.prometheus_auth import make_token

    host, port = cluster.record(name).address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT + 2.5)
    try:
        conn.request("GET", "/minio/v2/metrics/cluster",
                     headers={"Authorization": f"Bearer {make_token(*cluster.credentials)}"})
        resp = conn.getresponse()
        body = resp.read().decode()
    except (OSError, http.client.HTTPException) as exc:
        return str(exc) or type(exc).__name__
    finally:
        conn.close()
    if resp.status != 200:
        return f"metrics answered HTTP {resp.status}"
    return {s.name: s.value for family in text_string_to_metric_families(body)
            for s in family.samples if not s.labels}


def print_status(cluster: Cluster, out=print) -> int:
    """Prints the summary; 0 when every process is up and healthy and every set writable."""
    records = cluster.records
    states = {r.name: cluster.state_of(r.name) for r in records}
    nodes = [r.name for r in records if r.role == "node"]
    gateways = [r.name for r in records if r.role == "gateway" and states[r.name] == "running"]
    with ThreadPoolExecutor(max(4, len(records))) as pool:
        probes = {r.name: pool.submit(cluster.probe, r, TIMEOUT) for r in records
                  if states[r.name] == "running"}
        stats = {n: pool.submit(_stat, cluster, n) for n in nodes if states[n] == "running"}
        heal = {g: pool.submit(_gateway_metrics, cluster, g) for g in gateways}
        probe = {n: f.result() for n, f in probes.items()}
        stat = {n: f.result() for n, f in stats.items()}
        metrics = {g: f.result() for g, f in heal.items()}
    healthy = _processes(cluster, states, probe, metrics, out)
    _nodes(cluster, stat, out)
    writable = _sets(cluster, stat, out)
    _kes(cluster, probe, out)
    _heal(metrics, out)
    return 0 if healthy and writable else 2


def _processes(cluster: Cluster, states: dict[str, str], probe: dict[str, Probe],
               metrics: dict[str, dict[str, float] | str], out) -> bool:
    spec = cluster.meta.get("spec", {})
    out(f"Tessera cluster at {cluster.root}: {spec.get('nodes', 0)} nodes, "
        f"{spec.get('gateways', 0)} gateways, {spec.get('kes', 0)} KES")
    out(f"{'PROCESS':<11} {'ROLE':<8} {'ADDRESS':<16} {'PID':<8} {'STATE':<8} HEALTH")
    healthy = True
    for r in cluster.records:
        p = probe.get(r.name)
        healthy = healthy and p is not None and p.ok
        seen = metrics.get(r.name)
        draining = isinstance(seen, dict) and seen.get("tessera_gateway_draining") == 1
        out(f"{r.name:<11} {r.role:<8} {r.address:<16} {r.pid:<8} {states[r.name]:<8} "
            f"{p.detail if p else '-'}{' (draining: not ready)' if draining else ''}")
    return healthy


def _nodes(cluster: Cluster, stat: dict[str, _NodeStat], out) -> None:
    nodes = cluster.by_role("node")
    if not nodes:
        return
    out(f"\n{'NODE':<11} {'USED':>10} {'FREE':>10} {'OBJECTS':>8} {'SHARDS':>10} "
        f"{'PENDING':>7}  DISK")
    for r in nodes:
        s = stat.get(r.name)
        disk = f"tmpfs {r.extra['tmpfs']}" if r.extra.get("tmpfs") else "shared"
        if _ballast(r.data_dir):
            disk += f", ballast {_size(_ballast(r.data_dir))}"
        if s is None or not s.ok:
            out(f"{r.name:<11} {'-':>10} {'-':>10} {'-':>8} {'-':>10} {'-':>7}  "
                f"{(s.detail if s else 'down')}")
            continue
        out(f"{r.name:<11} {_size(s.total - s.free):>10} {_size(s.free):>10} "
            f"{s.objects:>8} {_size(s.shard_bytes):>10} {s.pending:>7}  {disk}")


def _ballast(data_dir: str) -> int:
    from .disks import BALLAST

    try:
        return (Path(data_dir) / BALLAST).stat().st_size
    except OSError:
        return 0


def _sets(cluster: Cluster, stat: dict[str, _NodeStat], out) -> bool:
    if not cluster.by_role("node"):
        return True
    from gateway.placement import read_quorum, write_quorum

    topology = cluster.topology
    size = topology.set_size
    parity = cluster.meta.get("spec", {}).get("parity")
    if parity is None:
        from gateway.placement import default_parity

        parity = default_parity(size)
    k = size - parity
    wq, rq = write_quorum(k, parity), read_quorum(k)
    out(f"\n{'SET':<4} {'ONLINE':<7} WRITE QUORUM ({wq})  READ QUORUM ({rq})   EC {k}+{parity}")
    writable = True
    for i, members in enumerate(topology.sets):
        online = sum(1 for n in members if stat.get(n) is not None and stat[n].ok)
        writable = writable and online >= wq
        out(f"{i:<4} {online}/{len(members):<5} {'ok' if online >= wq else 'LOST':<18} "
            f"{'ok' if online >= rq else 'LOST'}")
    return writable


def _kes(cluster: Cluster, probe: dict[str, Probe], out) -> None:
    servers = cluster.by_role("kes")
    if not servers:
        return
    shown = [f"{r.name} https://{r.address} "
             f"{'reachable' if probe.get(r.name) and probe[r.name].ok else 'UNREACHABLE'}"
             for r in servers]
    reachable = sum(1 for r in servers if probe.get(r.name) and probe[r.name].ok)
    out(f"\nKES {reachable}/{len(servers)} reachable: " + "; ".join(shown))


def _heal(metrics: dict[str, dict[str, float] | str], out) -> None:
    if not metrics:
        return
    out("\nHEAL")
    for name, m in sorted(metrics.items()):
        if isinstance(m, str):
            out(f"  {name}: {m}")
            continue
        eta = m.get("tessera_heal_eta_seconds")
        eta_text = "-" if eta is None or math.isnan(eta) else f"{eta:.0f}s"
        line = (f"  {name}: backlog {m.get('tessera_heal_backlog', 0):.0f} "
                f"(in flight {m.get('tessera_heal_in_flight', 0):.0f}, dead letters "
                f"{m.get('tessera_heal_dead_letters', 0):.0f}), healed "
                f"{m.get('tessera_heal_objects_healed_total', 0):.0f}, shards rebuilt "
                f"{m.get('tessera_heal_shards_rebuilt_total', 0):.0f}, eta {eta_text}")
        if "tessera_scanner_cycles_total" in m:
            line += (f"; scanner {m['tessera_scanner_cycles_total']:.0f} cycles, "
                     f"{m.get('tessera_scanner_keys_diverged_total', 0):.0f} keys diverged")
        out(line)
