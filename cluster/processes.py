"""Starting, signalling and stopping the cluster's background processes by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["ProcessRecord", "is_alive", "process_state", "spawn", "stop"]


@dataclass
class ProcessRecord:
    """One process of the cluster as recorded in cluster.json."""

    role: str  # "node" | "gateway" | "kes"
    name: str  # e.g. "node-3"
    address: str  # host:port of its main endpoint
    argv: list[str]
    log: str
    data_dir: str = ""
    cert: str = ""
    key: str = ""
    pid: int = 0
    env: dict[str, str] = field(default_factory=dict)  # extra environment, secrets excluded
    extra: dict[str, str] = field(default_factory=dict)  # role-specific endpoints

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> ProcessRecord:
        return cls(**doc)


def _cmdline(pid: int) -> bytes:
    # Just after a spawn the kernel may briefly report an empty cmdline for a live process
    # (exec still in progress); ask again for a moment before calling it gone.
    for _ in range(50):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return b""
        if cmdline:
            return cmdline
        time.sleep(0.002)
    return b""


def is_alive(record: ProcessRecord) -> bool:
    """True when the recorded pid runs this record's command (not a recycled pid)."""
    if record.pid <= 0:
        return False
    cmdline = _cmdline(record.pid)
    if not cmdline:
        return False
    state = process_state(record.pid)
    if state in ("Z", "X"):
        return False
    # the module name (e.g. "node") and the main address identify our process
    return record.argv[2].encode() in cmdline and record.address.encode() in cmdline


def process_state(pid: int) -> str:
    """The kernel's one-letter state: R, S, D, T (stopped), Z; '' when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def spawn(record: ProcessRecord, base_env: dict[str, str], secret_env: dict[str, str]) -> int:
    """Start the process in its own session (it outlives the launcher), logging to its file."""
    env = dict(base_env)
    env.update(record.env)
    env.update(secret_env)
    Path(record.log).parent.mkdir(parents=True, exist_ok=True)
    with open(record.log, "ab") as log:
        proc = subprocess.Popen(
            record.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    record.pid = proc.pid
    return proc.pid


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(record: ProcessRecord, timeout: float = 5.0) -> bool:
    """SIGTERM (after SIGCONT, in case it is paused), then SIGKILL after `timeout` seconds."""
    if not is_alive(record):
        return False
    pid = record.pid
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_alive(record):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and is_alive(record):
        _reap(pid)
        time.sleep(0.05)
    return True
