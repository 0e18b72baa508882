"""Starts a node (data directory, stores, collector, gRPC server) and stops it in order."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sqlite3
import threading
from pathlib import Path

from .config import ConfigError, NodeConfig
from .gc import Collector
from .metastore import MetaStore
from .service import StorageService
from .shardstore import ShardStore
from .writes import PendingWrites

__all__ = ["Node", "run"]

log = logging.getLogger("node")


def _lock_data_dir(path: Path) -> int:
    """Create, check and lock the data directory (one node per directory)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise ConfigError(f"data dir {path} unusable: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"data dir {path} is in use by another node") from None
    return fd


class Node:
    """The parts of one running node over one data directory."""

    def __init__(self, config: NodeConfig):
        self.config = config
        self._lock_fd = _lock_data_dir(config.data_dir)
        self.shards = ShardStore(config.data_dir, config.direct_io)
        self.meta = MetaStore(config.data_dir / "meta.db")
        self.writes = PendingWrites()
        try:
            self.shards.prepare()
            self.swept = self.shards.sweep_tmp()
            self.meta.open()
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise ConfigError(f"data dir {config.data_dir} unusable: {exc}") from None
        self.service = StorageService(config, self.meta, self.shards, self.writes)
        self.collector = Collector(config, self.meta, self.shards, self.writes)

    def close(self) -> None:
        self.meta.close()
        os.close(self._lock_fd)


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(3600):
        pass


def run(config: NodeConfig) -> None:
    """Serve until SIGTERM/SIGINT. ConfigError when the node cannot start."""
    node = Node(config)
    try:
        if config.server == "aio":
            from .aio_server import serve_aio
            serve_aio(node, _announce)
        else:
            _serve_sync(node)
    finally:
        node.collector.stop()
        node.close()


def _announce(node: Node) -> None:
    c = node.config
    log.info("node %s serving on %s (%s, %s server), data %s (%s shard I/O); swept %d "
             "temporary files", c.node_id, c.listen, "plain TCP" if c.insecure else "mTLS",
             c.server, c.data_dir, "direct" if node.shards.direct_io else "buffered",
             node.swept)


def _serve_sync(node: Node) -> None:
    from .server import build_sync_server, new_health, set_serving

    health = new_health()
    server = build_sync_server(node.config, node.service, health)
    server.start()
    node.collector.start()
    set_serving(health, True)
    _announce(node)
    _wait_for_signal()
    set_serving(health, False)
    server.stop(grace=2).wait()  # the launcher SIGKILLs after 5 s
    log.info("node %s stopped", node.config.node_id)
