"""Helpers for the third-party client tests (s3cmd, rclone, the minio SDK): a real cluster per
module, a clean environment for client processes, trees of files and their digests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from cluster.launcher import Cluster
from tests.conftest import running_cluster

MiB = 1024 * 1024
KMS_KEY = "minio-default-key"  # the launcher's default KES key (cluster/launcher.py)


@contextlib.contextmanager
def client_cluster(root: Path, gateways: int = 1) -> Iterator[Cluster]:
    """6 storage nodes, `gateways` gateways and 2 KES servers (SSE-S3, SSE-KMS)."""
    with running_cluster(root, nodes=6, gateways=gateways, kes=2) as cluster:
        yield cluster


def client_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without any AWS_/MINIO_/RCLONE_ setting (rclone's Go SDK, for
    one, reads AWS_CA_BUNDLE), and HOME in a temporary directory so no user configuration is
    read or written."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "MINIO_", "RCLONE_", "S3CMD"))}
    env["HOME"] = str(home)
    env.update(extra or {})
    return env


def run(argv: Sequence[str], env: Mapping[str, str], *, check: bool = True,
        timeout: float = 90, stdin: bytes | None = None,
        binary: bool = False) -> subprocess.CompletedProcess:
    """Run a client command, bounded in time; `check` fails the test with its stderr. Output
    is text unless `binary` (stdout is then bytes)."""
    result = subprocess.run(list(argv), env=dict(env), input=stdin, capture_output=True,
                            timeout=timeout, check=False)
    stderr = result.stderr.decode("utf-8", "replace")
    stdout = result.stdout if binary else result.stdout.decode("utf-8", "replace")
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv[:6]))} ... failed ({result.returncode}):"
                             f"\n{str(stdout)[-2000:]}\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(result.args, result.returncode, stdout, stderr)


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def make_tree(root: Path) -> dict[str, bytes]:
    """A small tree with nested directories, an empty file and awkward names; returns
    relative path -> contents."""
    files = {
        "x.txt": b"hello tessera\n",
        "a/y.bin": os.urandom(70_000),
        "a/b/z.txt": b"z" * 3,
        "a/b/empty": b"",
        "sp ace/plus+and&amp ü.txt": os.urandom(1234),
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}
