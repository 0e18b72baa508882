"""`python -m cluster drain|undrain|reload gateway-N`: take a launcher-managed gateway out of
the load balancer's rotation and back (its drain file), or make it reload its certificates
(SIGHUP), and report what the gateway then says."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from .launcher import Cluster, ClusterError
from .probes import _http_get
from .processes import ProcessRecord, is_alive

__all__ = ["drain", "drain_file_of", "reload", "undrain"]

ENV_DRAIN_FILE = "TESSERA_DRAIN_FILE"
READY = "/minio/health/ready"


def drain_file_of(record: ProcessRecord) -> Path:
    """The file the running gateway watches: its --drain-file, else TESSERA_DRAIN_FILE as the
    process got it, else `<state-dir>/drain` (the gateway's default)."""
    argv = record.argv
    if "--drain-file" in argv[:-1]:
        return Path(argv[argv.index("--drain-file") + 1])
    value = _process_env(record.pid, ENV_DRAIN_FILE) if is_alive(record) else None
    value = value if value is not None else record.env.get(ENV_DRAIN_FILE)
    return Path(value) if value else Path(record.data_dir) / "drain"


def drain(cluster: Cluster, name: str, timeout: float = 3.0) -> str:
    record = _gateway(cluster, name)
    path = drain_file_of(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"drained by `python -m cluster drain` at {time.ctime()}\n")
    seen = _wait_ready(record, 503, timeout)
    return (f"drain {name}: {path} created; ready answers {seen} "
            "(load balancers stop routing here; S3 requests are still served)")


def undrain(cluster: Cluster, name: str, timeout: float = 3.0) -> str:
    record = _gateway(cluster, name)
    path = drain_file_of(record)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    seen = _wait_ready(record, 200, timeout)
    return f"undrain {name}: {path} removed; ready answers {seen}"


def reload(cluster: Cluster, name: str, timeout: float = 3.0) -> str:
    """SIGHUP, then the gateway's own log line(s) about it."""
    record = _gateway(cluster, name)
    if not is_alive(record):
        raise ClusterError(f"{name} is not running")
    log = Path(record.log)
    start = log.stat().st_size if log.exists() else 0
    os.kill(record.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [ln for ln in _read_from(log, start).splitlines() if "SIGHUP:" in ln]
        if lines:
            time.sleep(0.1)  # the gateway writes all its lines at once; take the last too
            lines = [ln for ln in _read_from(log, start).splitlines() if "SIGHUP:" in ln]
            return f"reload {name}:\n  " + "\n  ".join(ln.split("SIGHUP: ", 1)[1]
                                                      for ln in lines)
        time.sleep(0.05)
    return f"reload {name}: SIGHUP sent; no answer in its log within {timeout:g}s"


def _gateway(cluster: Cluster, name: str) -> ProcessRecord:
    record = cluster.record(name)
    if record.role != "gateway":
        raise ClusterError(f"{name} is a {record.role}, not a gateway")
    return record


def _wait_ready(record: ProcessRecord, status: int, timeout: float) -> str:
    if not is_alive(record):
        return "nothing (the gateway is not running)"
    deadline = time.monotonic() + timeout
    detail = ""
    while time.monotonic() < deadline:
        detail = _http_get(record.address, READY, None, 1.0).detail
        if detail == f"HTTP {status}":
            break
        time.sleep(0.1)
    return detail


def _process_env(pid: int, name: str) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="surrogateescape")
    return None


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(64 * 1024).decode(errors="replace")
    except OSError:
        return ""
