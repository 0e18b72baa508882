"""`python -m node` as the launcher runs it: a start line, and one-line refusals."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.launcher import free_port

ROOT = Path(__file__).resolve().parents[2]


def _node(*args: str) -> list[str]:
    return [sys.executable, "-m", "node", *args]




def _refused(argv: list[str]) -> str:
    """Run a node that must refuse to start; its one-line message."""
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("node: ")
    return lines[0]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """A node on plain TCP (asked explicitly) in tmp_path/data; stopped by pid at the end."""
    data, listen = tmp_path / "data", f"127.0.0.1:{free_port()}"
    log = (tmp_path / "node.log").open("w")
    proc = subprocess.Popen(_node("--data", str(data), "--listen", listen, "--node-id", "cli-1",
                                  "--insecure"), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "serving" not in (tmp_path / "node.log").read_text():
            assert proc.poll() is None, (tmp_path / "node.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield proc, listen, data
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_start_line_names_id_address_and_data_dir(
        running: tuple[subprocess.Popen, str, Path], tmp_path: Path) -> None:
    _, listen, data = running
    (line,) = [x for x in (tmp_path / "node.log").read_text().splitlines() if "serving" in x]
    assert "cli-1" in line and listen in line and str(data) in line


def test_busy_port_is_refused(running: tuple[subprocess.Popen, str, Path],
                              tmp_path: Path) -> None:
    _, listen, _ = running
    line = _refused(_node("--data", str(tmp_path / "other"), "--listen", listen,
                          "--node-id", "cli-2", "--insecure"))
    assert listen in line and "listen" in line


def test_data_dir_in_use_is_refused(running: tuple[subprocess.Popen, str, Path]) -> None:
    _, _, data = running
    line = _refused(_node("--data", str(data), "--listen", f"127.0.0.1:{free_port()}",
                          "--node-id", "cli-3", "--insecure"))
    assert "in use" in line


def test_unusable_data_dir_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = _refused(_node("--data", str(blocker / "data"), "--listen",
                          f"127.0.0.1:{free_port()}", "--node-id", "cli-4", "--insecure"))
    assert str(blocker / "data") in line


@pytest.mark.parametrize("argv, words", [
    (["--bogus"], "unrecognized"),
    (["--data", "/tmp/x", "--listen", "127.0.0.1:1", "--node-id", "n"], "--tls-cert"),
    (["--data", "/tmp/x", "--listen", "nowhere", "--node-id", "n", "--insecure"], "host:port"),
    (["--data", "/tmp/x", "--listen", "127.0.0.1:1", "--node-id", "n", "--tls-cert", "/no",
      "--tls-key", "/no", "--client-ca", "/no"], "no such file"),
    (["--listen", "127.0.0.1:1", "--node-id", "n", "--insecure"], "--data"),
])
def test_bad_flags_are_refused_in_one_line(argv: list[str], words: str) -> None:
    assert words in _refused(_node(*argv))
