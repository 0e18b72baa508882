"""Brings a whole cluster up on loopback: certificates, nodes, KES pool, gateways.

The same `Cluster` object serves `make cluster` and the integration/chaos test fixtures, so
tests exercise exactly what users run. Everything lives under one root directory:

    <root>/cluster.json        every process: role, name, address, pid, data dir, certs, log
    <root>/topology.json       nodes and erasure sets (read by gateways)
    <root>/env                 `source` it for aws / boto3 / s3cmd and MINIO_KMS_KES_*
    <root>/certs/              cluster CA and every leaf certificate
    <root>/logs/<name>.log     one log per process
    <root>/<name>/             data or state directory of a process
    <root>/s3cfg               an s3cmd configuration for gateway-1
    <root>/prometheus.token    a bearer token for /minio/v2/metrics/cluster (and prometheus.yml)

A node may get its data directory on a small tmpfs of its own (`node_tmpfs`), for disk-full
drills (cluster/disks.py): mounted before the node starts, unmounted (data gone) by `down`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.topology import GatewayAddress, Topology, choose_set_size

from . import disks
from .certs import ClusterCA, identity_of_pem
from .probes import Probe, probe_gateway, probe_kes, probe_node
from .processes import ProcessRecord, is_alive, process_state, spawn, stop

__all__ = ["DEFAULT_KES_KEY", "Cluster", "ClusterError", "ClusterSpec", "free_port"]

DEFAULT_KES_KEY = "minio-default-key"
# Deterministic port scheme for `make cluster` (tests use free ports instead, see free_port).
GATEWAY_HTTP_BASE = 9000
GATEWAY_HTTPS_BASE = 9100
NODE_BASE = 9200
KES_BASE = 7373
# The gateways' KES policy: what MinIO's KMS guide grants MinIO, plus status reads.
GATEWAY_KES_POLICY = [
    "/v1/key/create/*",
    "/v1/key/generate/*",
    "/v1/key/decrypt/*",
    "/v1/key/describe/*",
    "/v1/key/list/*",
    "/v1/status",
    "/v1/metrics",
    "/v1/api",
    "/v1/identity/self/describe",
]


class ClusterError(RuntimeError):
    """The launcher could not do what was asked; the message says why in one line."""


@dataclass
class ClusterSpec:
    """What to start. `ports="fixed"` uses the documented port scheme, "auto" free ports."""

    nodes: int = 6
    gateways: int = 2
    kes: int = 2
    parity: int | None = 2
    set_size: int | None = None
    ports: str = "fixed"
    tls_nodes: bool = True
    # Extra environment for gateways (e.g. MINIO_KMS_AUTO_ENCRYPTION). MINIO_* variables of
    # the launcher's own environment are passed through as well.
    gateway_env: dict[str, str] = field(default_factory=dict)
    node_env: dict[str, str] = field(default_factory=dict)  # e.g. TESSERA_NODE_TMP_GRACE
    # node name (or "*" for every node) -> tmpfs size ("64M") for its data directory
    node_tmpfs: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 60.0


# the cluster's own settings for these always win over the launcher's environment
_NOT_PASSED = ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_KMS_KES_ENDPOINT",
               "MINIO_KMS_KES_CERT_FILE", "MINIO_KMS_KES_KEY_FILE", "MINIO_KMS_KES_CAPATH",
               "MINIO_KMS_KES_KEY_NAME", "MINIO_KMS_KES_API_KEY", "MINIO_KMS_KES_KEY_PASSWORD")


def _passthrough(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """MINIO_* settings of the launcher's environment that gateways inherit."""
    return {k: v for k, v in (os.environ if environ is None else environ).items()
            if k.startswith("MINIO_") and k not in _NOT_PASSED}


_handed_out: set[int] = set()  # ports this process already gave a cluster


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A free loopback port *below* the ephemeral range: a port from that range may be taken
    as the source port of some outgoing connection before the process meant for it binds it
    (seen as "Address already in use" in busy test runs), and again while it is restarted."""
    low, _ = _ephemeral_range()
    candidates = range(max(1024, low - 12000), low)
    for _ in range(500):
        port = secrets.choice(candidates)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # nothing free below the range: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A cluster rooted at a directory; state survives `down` / `up`."""

    def __init__(self, root: Path | str = ".cluster", python: str = sys.executable):
        self.root = Path(root).resolve()
        self.python = python
        self.records: list[ProcessRecord] = []
        self.meta: dict = {}
        self._load()

    # ---- state file ----

    @property
    def state_path(self) -> Path:
        return self.root / "cluster.json"

    @property
    def env_path(self) -> Path:
        return self.root / "env"

    @property
    def topology_path(self) -> Path:
        return self.root / "topology.json"

    @property
    def ca_path(self) -> Path:
        return self.root / "certs" / "ca.crt"

    def _load(self) -> None:
        if self.state_path.exists():
            doc = json.loads(self.state_path.read_text())
            self.meta = doc.get("meta", {})
            self.records = [ProcessRecord.from_dict(p) for p in doc.get("processes", [])]

    def _save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        doc = {"meta": self.meta, "processes": [r.to_dict() for r in self.records]}
        tmp = self.state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
        tmp.replace(self.state_path)

    # ---- lookups ----

    def record(self, name: str) -> ProcessRecord:
        for r in self.records:
            if r.name == name:
                return r
        raise ClusterError(f"no process named {name!r} (have: {', '.join(self.names())})")

    def names(self, role: str | None = None) -> list[str]:
        return [r.name for r in self.records if role is None or r.role == role]

    def by_role(self, role: str) -> list[ProcessRecord]:
        return [r for r in self.records if r.role == role]

    @property
    def credentials(self) -> tuple[str, str]:
        c = self.meta["credentials"]
        return c["access_key"], c["secret_key"]

    @property
    def topology(self) -> Topology:
        return Topology.load(self.topology_path)

    def gateway_url(self, index: int = 0, https: bool = False) -> str:
        gw = self.by_role("gateway")[index]
        return f"https://{gw.extra['https']}" if https else f"http://{gw.address}"

    def admin_cert(self) -> tuple[Path, Path]:
        certs = self.root / "certs"
        return certs / "cluster-admin.crt", certs / "cluster-admin.key"

    # ---- planning ----

    def _plan(self, spec: ClusterSpec) -> None:
        """Create certificates, credentials, topology and process records (first `up` only)."""
        ca = ClusterCA.open(self.root / "certs")
        admin = ca.issue("cluster-admin", server=False)
        kes_client = ca.issue("kes-client", server=False)
        port = free_port if spec.ports == "auto" else None

        def pick(base: int, i: int) -> int:
            return port() if port else base + i

        self.meta = {
            "created": time.time(),
            "spec": {
                "nodes": spec.nodes, "gateways": spec.gateways, "kes": spec.kes,
                "parity": spec.parity, "tls_nodes": spec.tls_nodes,
            },
            "credentials": {
                "access_key": os.environ.get("MINIO_ROOT_USER", "tessera-admin"),
                "secret_key": os.environ.get("MINIO_ROOT_PASSWORD", secrets.token_urlsafe(24)),
            },
            "ca": str(ca.cert_path),
            "admin_cert": str(admin.cert),
            "admin_key": str(admin.key),
            "kes_key_name": DEFAULT_KES_KEY,
            "kes_client_cert": str(kes_client.cert),
            "kes_client_key": str(kes_client.key),
        }
        records: list[ProcessRecord] = []
        node_addresses = []
        for i in range(spec.nodes):
            name = f"node-{i + 1}"
            pair = ca.issue(name)
            address = f"127.0.0.1:{pick(NODE_BASE, i)}"
            node_addresses.append(address)
            data = self.root / name / "data"
            argv = [self.python, "-m", "node", "--data", str(data), "--listen", address,
                    "--node-id", name]
            if spec.tls_nodes:
                argv += ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key),
                         "--client-ca", str(ca.cert_path)]
            else:
                argv += ["--insecure"]
            tmpfs = spec.node_tmpfs.get(name) or spec.node_tmpfs.get("*")
            records.append(ProcessRecord("node", name, address, argv, self._log(name),
                                         data_dir=str(data), cert=str(pair.cert),
                                         key=str(pair.key), env=dict(spec.node_env),
                                         extra={"tmpfs": tmpfs} if tmpfs else {}))
        if spec.nodes:
            size = spec.set_size or choose_set_size(spec.nodes)
            Topology.from_addresses(node_addresses, size).save(self.topology_path)

        kes_endpoints = []
        for i in range(spec.kes):
            name = f"kes-{i + 1}"
            pair = ca.issue(name)
            address = f"127.0.0.1:{pick(KES_BASE, i)}"
            kes_endpoints.append(f"https://{address}")
            config = self._write_kes_config(name, address, pair.cert, pair.key, ca.cert_path,
                                            identity_of_pem(admin.cert),
                                            identity_of_pem(kes_client.cert))
            # --addr repeats the config's address so `is_alive` finds it on the command line
            argv = [self.python, "-m", "kes", "--config", str(config), "--addr", address]
            records.append(ProcessRecord("kes", name, address, argv, self._log(name),
                                         data_dir=str(self.root / "kes-keystore"),
                                         cert=str(pair.cert), key=str(pair.key)))
        self.meta["kes_endpoints"] = kes_endpoints

        for i in range(spec.gateways):
            name = f"gateway-{i + 1}"
            pair = ca.issue(name)
            address = f"127.0.0.1:{pick(GATEWAY_HTTP_BASE, i)}"
            https = f"127.0.0.1:{pick(GATEWAY_HTTPS_BASE, i)}"
            state = self.root / name
            argv = [self.python, "-m", "gateway", "--listen", address, "--tls-listen", https,
                    "--tls-cert", str(pair.cert), "--tls-key", str(pair.key),
                    "--topology", str(self.topology_path), "--state-dir", str(state)]
            if spec.tls_nodes:
                argv += ["--node-cert", str(pair.cert), "--node-key", str(pair.key),
                         "--node-ca", str(ca.cert_path)]
            if i == 0:
                argv.append("--scanner")  # one heal scanner per cluster is enough
            env = self._gateway_env(spec, kes_endpoints)
            passed = sorted(set(_passthrough()) - set(spec.gateway_env))
            records.append(ProcessRecord("gateway", name, address, argv, self._log(name),
                                         data_dir=str(state), cert=str(pair.cert),
                                         key=str(pair.key), env=env,
                                         extra={"https": https, "passthrough": passed}))
        self.records = records

    def _list_gateways(self) -> None:
        """The topology names every gateway, for the gateways' maintenance checks."""
        if not self.topology_path.exists():
            return
        topology = self.topology
        listed = tuple(GatewayAddress(g.name, f"http://{g.address}")
                       for g in self.by_role("gateway"))
        if topology.gateways != listed:
            topology.with_gateways(listed).save(self.topology_path)

    def _log(self, name: str) -> str:
        return str(self.root / "logs" / f"{name}.log")

    def _gateway_env(self, spec: ClusterSpec, kes_endpoints: list[str]) -> dict[str, str]:
        env = _passthrough()
        if spec.parity is not None:
            env.setdefault("MINIO_STORAGE_CLASS_STANDARD", f"EC:{spec.parity}")
        if kes_endpoints:
            env.update(self._kes_env(kes_endpoints))
        env.update(spec.gateway_env)
        return env

    def _kes_env(self, kes_endpoints: list[str]) -> dict[str, str]:
        return {
            "MINIO_KMS_KES_ENDPOINT": ",".join(kes_endpoints),
            "MINIO_KMS_KES_CERT_FILE": self.meta["kes_client_cert"],
            "MINIO_KMS_KES_KEY_FILE": self.meta["kes_client_key"],
            "MINIO_KMS_KES_CAPATH": self.meta["ca"],
            "MINIO_KMS_KES_KEY_NAME": self.meta["kes_key_name"],
        }

    def _write_kes_config(self, name: str, address: str, cert: Path, key: Path, ca: Path,
                          admin_identity: str, gateway_identity: str) -> Path:
        import yaml

        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "version": "v1",
            "address": address,
            "admin": {"identity": admin_identity},
            "tls": {"key": str(key), "cert": str(cert), "ca": str(ca), "auth": "on"},
            "policy": {
                "gateway": {"allow": GATEWAY_KES_POLICY, "identities": [gateway_identity]},
            },
            "cache": {"expiry": {"any": "5m", "unused": "20s", "offline": "10m"}},
            "keystore": {"fs": {"path": str(self.root / "kes-keystore")}},
            "keys": [{"name": DEFAULT_KES_KEY}],
        }
        path = directory / "kes.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ---- lifecycle ----

    def up(self, spec: ClusterSpec | None = None, log: Callable[[str], None] = print) -> None:
        """Start every process that is not running; plan the cluster on first use."""
        if not self.records:
            self._plan(spec or ClusterSpec())
        else:
            self._refresh_passthrough(log)
            if spec and spec.gateway_env:
                for gw in self.by_role("gateway"):
                    gw.env.update(spec.gateway_env)
        self._list_gateways()
        self._save()
        running = [r for r in self.records if is_alive(r)]
        if len(running) == len(self.records):
            log(f"cluster already running at {self.root} ({len(running)} processes); "
                "nothing changed")
            return
        timeout = spec.ready_timeout if spec else 60.0
        # order matters: nodes and KES before the gateways that need them
        for role in ("node", "kes", "gateway"):
            started = [r for r in self.by_role(role) if not is_alive(r)]
            for r in started:
                self._spawn(r)
            self._save()
            for r in started:
                self.wait_healthy(r.name, timeout)
        self._write_env()
        self._save()

    def _refresh_passthrough(self, log: Callable[[str], None]) -> None:
        """Gateways about to start get the MINIO_* settings of this environment (e.g.
        `MINIO_KMS_AUTO_ENCRYPTION=on make cluster` after a `make cluster-down`); running
        ones keep theirs, with a hint when they differ."""
        current = _passthrough()
        parity = self.meta.get("spec", {}).get("parity")
        for gw in self.by_role("gateway"):
            # clusters planned before passthrough was recorded: every MINIO_* came from it
            before = gw.extra.get("passthrough", [k for k in gw.env if k in _passthrough(gw.env)])
            env = {k: v for k, v in gw.env.items() if k not in before}
            env.update(current)
            if parity is not None:
                env.setdefault("MINIO_STORAGE_CLASS_STANDARD", f"EC:{parity}")
            if env == gw.env:
                continue
            if is_alive(gw):
                log(f"{gw.name} is running with other MINIO_* settings than this "
                    "environment's; stop the cluster first to apply them")
                continue
            gw.env = env
            gw.extra["passthrough"] = sorted(current)

    def _spawn(self, record: ProcessRecord) -> None:
        if record.extra.get("tmpfs"):
            try:
                disks.mount_tmpfs(Path(record.data_dir), record.extra["tmpfs"])
            except disks.DiskError as exc:
                raise ClusterError(f"{record.name}: {exc}") from None
        secret_env = {}
        if record.role == "gateway":
            access, secret = self.credentials
            secret_env = {"MINIO_ROOT_USER": access, "MINIO_ROOT_PASSWORD": secret}
        base_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("MINIO_", "AWS_"))}
        base_env["PYTHONUNBUFFERED"] = "1"
        spawn(record, base_env, secret_env)

    def probe(self, record: ProcessRecord, timeout: float = 2.0) -> Probe:
        ca = Path(self.meta["ca"])
        cert, key = self.admin_cert()
        if record.role == "node":
            tls = self.meta["spec"].get("tls_nodes", True)
            return probe_node(record.address, ca if tls else None, cert if tls else None,
                              key if tls else None, timeout)
        if record.role == "kes":
            return probe_kes(record.address, ca, cert, key, timeout)
        return probe_gateway(record.address, timeout)

    def wait_healthy(self, name: str, timeout: float = 60.0) -> None:
        record = self.record(name)
        deadline = time.monotonic() + timeout
        last = Probe(False, "not probed")
        while time.monotonic() < deadline:
            if not is_alive(record):
                raise ClusterError(f"{name} exited during start-up; last log lines:\n"
                                   + self.tail_log(name))
            last = self.probe(record)
            if last.ok:
                return
            time.sleep(0.1)
        raise ClusterError(f"{name} not healthy after {timeout:.0f}s ({last.detail}); "
                           "last log lines:\n" + self.tail_log(name))

    def tail_log(self, name: str, lines: int = 20) -> str:
        try:
            text = Path(self.record(name).log).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def down(self) -> list[str]:
        """Stop exactly the recorded pids (gateways first). Data and certificates stay,
        except on a node's own tmpfs, which is unmounted once the node has stopped."""
        stopped = []
        for role in ("gateway", "kes", "node"):
            for r in self.by_role(role):
                if stop(r):
                    stopped.append(r.name)
        for r in self.by_role("node"):
            if r.extra.get("tmpfs") and not is_alive(r):
                disks.unmount(Path(r.data_dir))
        return stopped

    # ---- a node's disk ----

    def fill_disk(self, name: str, leave: int = 0) -> int:
        """Fills the node's own filesystem with a ballast file (refused on a shared one)."""
        record = self._node(name)
        try:
            return disks.fill(Path(record.data_dir), leave)
        except disks.DiskError as exc:
            raise ClusterError(f"{name}: {exc}") from None

    def free_disk(self, name: str) -> int:
        """Removes the node's ballast; returns the bytes freed."""
        return disks.release(Path(self._node(name).data_dir))

    def _node(self, name: str) -> ProcessRecord:
        record = self.record(name)
        if record.role != "node":
            raise ClusterError(f"{name} is a {record.role}, not a storage node")
        return record

    # ---- chaos and operations on one process ----

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        record = self.record(name)
        if not is_alive(record):
            raise ClusterError(f"{name} is not running")
        os.kill(record.pid, sig)
        if sig == signal.SIGKILL:
            deadline = time.monotonic() + 5
            while is_alive(record) and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(record.pid, os.WNOHANG)
                time.sleep(0.02)

    def pause(self, name: str) -> None:
        """SIGSTOP (the `stop` command): returns once the kernel shows the process stopped."""
        self.kill(name, signal.SIGSTOP)
        self._wait_state(name, stopped=True)

    def resume(self, name: str) -> None:
        self.kill(name, signal.SIGCONT)
        self._wait_state(name, stopped=False)

    def _wait_state(self, name: str, *, stopped: bool, timeout: float = 2.0) -> None:
        pid = self.record(name).pid
        deadline = time.monotonic() + timeout
        while (process_state(pid) == "T") != stopped and time.monotonic() < deadline:
            time.sleep(0.01)

    def start(self, name: str, timeout: float = 60.0) -> None:
        record = self.record(name)
        if is_alive(record):
            raise ClusterError(f"{name} is already running (pid {record.pid})")
        self._spawn(record)
        self._save()
        self.wait_healthy(name, timeout)

    def restart(self, name: str, timeout: float = 60.0) -> None:
        stop(self.record(name))
        self.start(name, timeout)

    def state_of(self, name: str) -> str:
        record = self.record(name)
        if not is_alive(record):
            return "down"
        return "paused" if process_state(record.pid) == "T" else "running"

    # ---- env file ----

    def env_vars(self) -> dict[str, str]:
        access, secret = self.credentials
        env = {
            "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CA_BUNDLE": self.meta["ca"],
            "MINIO_ROOT_USER": access,
            "MINIO_ROOT_PASSWORD": secret,
        }
        if self.by_role("gateway"):
            env["AWS_ENDPOINT_URL"] = self.gateway_url(0)
            env["TESSERA_HTTPS_ENDPOINT"] = self.gateway_url(0, https=True)
            env["S3CMD_CONFIG"] = str(self.root / "s3cfg")
        if self.meta.get("kes_endpoints"):
            env.update(self._kes_env(self.meta["kes_endpoints"]))
        return env

    def _write_env(self) -> None:
        from gateway.ops.prometheus_auth import make_token

        from .client_files import write_private, write_prometheus, write_s3cfg

        lines = ["# source this file: `source .cluster/env`"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.env_vars().items()]
        write_private(self.env_path, "\n".join(lines) + "\n")
        gateways = self.by_role("gateway")
        if gateways:
            access, secret = self.credentials
            write_s3cfg(self.root / "s3cfg", gateways[0].address, access, secret,
                        self.meta["ca"])
            write_prometheus(self.root, make_token(access, secret),
                             [g.address for g in gateways])
