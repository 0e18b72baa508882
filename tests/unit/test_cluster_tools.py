"""The cluster tool's pieces that need no processes: sizes, the refusal to fill a shared
filesystem, the --node-tmpfs syntax, the files written beside `env`, and what the chaos load
accepts as a key's state after acknowledged and failed requests."""

from __future__ import annotations

import random
import stat
from pathlib import Path

import pytest

from cluster.__main__ import _tmpfs
from cluster.client_files import write_prometheus, write_s3cfg
from cluster.disks import BALLAST, DiskError, fill, parse_size, release
from cluster.load_state import ABSENT, Expected, KeyBook


@pytest.mark.parametrize(("text", "size"), [("64M", 64 << 20), ("512MiB", 512 << 20),
                                            ("1G", 1 << 30), ("4096", 4096), ("8k", 8192)])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_a_bad_size_is_refused():
    with pytest.raises(DiskError, match="not a size"):
        parse_size("lots")


def test_filling_a_directory_of_the_shared_filesystem_is_refused(tmp_path: Path):
    with pytest.raises(DiskError, match="refusing to fill it"):
        fill(tmp_path)
    assert not (tmp_path / BALLAST).exists()
    assert release(tmp_path) == 0


def test_node_tmpfs_options():
    assert _tmpfs(["node-3=64M", "node-5=1G"]) == {"node-3": "64M", "node-5": "1G"}
    assert _tmpfs(["32M"]) == {"*": "32M"}


def test_client_files_are_private_and_point_at_the_gateways(tmp_path: Path):
    write_s3cfg(tmp_path / "s3cfg", "127.0.0.1:9000", "admin", "s3cr3t-value", "/ca.crt")
    write_prometheus(tmp_path, "tok.en.sig", ["127.0.0.1:9000", "127.0.0.1:9001"])
    s3cfg = (tmp_path / "s3cfg").read_text()
    assert "host_base = 127.0.0.1:9000" in s3cfg and "secret_key = s3cr3t-value" in s3cfg
    assert "signature_v2 = False" in s3cfg
    scrape = (tmp_path / "prometheus.yml").read_text()
    assert "targets: ['127.0.0.1:9000', '127.0.0.1:9001']" in scrape
    assert f"bearer_token_file: {tmp_path / 'prometheus.token'}" in scrape
    for name in ("s3cfg", "prometheus.token", "prometheus.yml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_a_failed_request_leaves_old_or_new_until_a_read_settles_it():
    book = KeyBook("k-", 3)
    key = book.keys[0]
    assert key.settled is ABSENT
    first = Expected("aa", 10, "plain")
    key.acknowledge(first)
    assert key.settled == first
    second = Expected("bb", 20, "sse-c", b"k" * 32)
    key.unknown(second)  # the PUT failed after retries: it may have landed
    assert key.settled is None and key.states == [first, second]
    key.unknown(ABSENT)  # and a DELETE failed too
    assert key.states == [first, second, ABSENT]
    key.settle(second)
    assert key.settled == second and key.generation == 4
    assert book.present() == [key]


def test_busy_keys_are_not_handed_out_twice():
    book = KeyBook("k-", 2)
    rng = random.Random(1)
    a, b = book.take(rng), book.take(rng)
    assert {a.name, b.name} == {"k-00000", "k-00001"}
    assert book.take(rng) is None
    view = book.stable_view()
    assert view[a.name] == (0, True)
    a.lock.release()
    assert book.take(rng) is a
