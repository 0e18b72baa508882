"""`python -m cluster` as a user runs it: up, up again (nothing changes), status, kill,
restart, down, and up again with the data still there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cluster.launcher import Cluster
from cluster.processes import ProcessRecord, is_alive
from tests.integration.sse_helpers import endpoint

ROOT = Path(__file__).resolve().parents[2]


def _cli(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "AWS_"))}
    out = subprocess.run([sys.executable, "-m", "cluster", "--root", str(root), *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=180, env=env,
                         check=False)
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def _pids(root: Path) -> dict[str, int]:
    doc = json.loads((root / "cluster.json").read_text())
    return {p["name"]: p["pid"] for p in doc["processes"]}


def _s3(cluster: Cluster):
    return endpoint(cluster).client(retries={"max_attempts": 5, "mode": "standard"},
                                    s3={})


def test_up_is_idempotent_status_tells_health_and_data_survives_down_up(tmp_path: Path):
    root = tmp_path / "c"
    try:
        first = _cli(root, "up", "--ports", "auto", "--nodes", "4", "--gateways", "1",
                     "--kes", "1", "--parity", "2")
        assert "gateway-1" in first.stdout and "source" in first.stdout
        pids = _pids(root)
        assert len(pids) == 6
        assert (root / "env").read_text().count("export AWS_ENDPOINT_URL=") == 1

        again = _cli(root, "up")
        assert "already running" in again.stdout + again.stderr
        assert _pids(root) == pids  # nothing restarted

        cluster = Cluster(root)
        s3 = _s3(cluster)
        s3.create_bucket(Bucket="keep")
        s3.put_object(Bucket="keep", Key="k", Body=b"survives")
        assert _cli(root, "status").returncode == 0

        _cli(root, "kill", "node-2")
        status = _cli(root, "status", check=False)
        assert status.returncode != 0
        assert any("node-2" in line and "down" in line for line in status.stdout.splitlines())
        _cli(root, "start", "node-2")
        assert Cluster(root).state_of("node-2") == "running"

        down = _cli(root, "down")
        assert "stopped 6 processes" in down.stdout
        records = [ProcessRecord.from_dict(p)
                   for p in json.loads((root / "cluster.json").read_text())["processes"]]
        assert not any(is_alive(r) for r in records)

        _cli(root, "up")
        restarted = Cluster(root)
        assert [r.address for r in restarted.records] == [r.address for r in records]
        body = _s3(restarted).get_object(Bucket="keep", Key="k")["Body"].read()
        assert body == b"survives"
    finally:
        if (root / "cluster.json").exists():
            Cluster(root).down()


def test_a_process_that_cannot_start_is_reported_with_its_log(tmp_path: Path):
    root = tmp_path / "c"
    try:
        _cli(root, "up", "--ports", "auto", "--nodes", "4", "--gateways", "0", "--kes", "0")
        Cluster(root).down()
        data = Path(Cluster(root).record("node-3").data_dir)
        # an unusable data dir: a file where the directory should be
        for child in sorted(data.rglob("*"), reverse=True):
            child.unlink() if child.is_file() or child.is_symlink() else child.rmdir()
        data.rmdir()
        data.write_text("not a directory")
        out = _cli(root, "up", check=False)
        assert out.returncode != 0
        assert "node-3" in out.stderr
    finally:
        if (root / "cluster.json").exists():
            Cluster(root).down()

