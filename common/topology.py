"""The cluster topology file: storage nodes, their addresses, and the erasure sets they form.

Written by the launcher (`.cluster/topology.json`), read by gateways and tools. Format:

    {"version": 1,
     "nodes": [{"name": "node-1", "address": "127.0.0.1:9200"}, ...],
     "sets": [["node-1", "node-2", ...], ...],
     "gateways": [{"name": "gateway-1", "url": "http://127.0.0.1:9000"}, ...]}

`gateways` is optional: the S3 gateways serving this cluster, which a gateway's maintenance
check (`/minio/health/cluster?maintenance=true`) asks whether another one still serves.

Set order is significant: an object's set is chosen by hash modulo the number of sets, and a
shard's node by its position inside the set, so the file must not be reordered once data exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GatewayAddress", "NodeAddress", "Topology", "TopologyError", "choose_set_size"]

FORMAT_VERSION = 1


class TopologyError(ValueError):
    """The topology file is missing, malformed, or inconsistent. Not retryable."""


@dataclass(frozen=True)
class NodeAddress:
    name: str
    address: str  # host:port


@dataclass(frozen=True)
class GatewayAddress:
    name: str
    url: str  # http(s)://host:port where its health endpoints answer


@dataclass(frozen=True)
class Topology:
    nodes: tuple[NodeAddress, ...]
    sets: tuple[tuple[str, ...], ...]
    gateways: tuple[GatewayAddress, ...] = ()  # empty: not listed

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise TopologyError("topology: node names must be unique")
        if not self.sets:
            raise TopologyError("topology: at least one erasure set is required")
        sizes = {len(s) for s in self.sets}
        if len(sizes) != 1:
            raise TopologyError("topology: every erasure set must have the same size")
        known = set(names)
        seen: set[str] = set()
        for members in self.sets:
            for name in members:
                if name not in known:
                    raise TopologyError(f"topology: set member {name!r} is not a known node")
                if name in seen:
                    raise TopologyError(f"topology: node {name!r} is in more than one set")
                seen.add(name)

    @property
    def set_size(self) -> int:
        return len(self.sets[0])

    def address_of(self, name: str) -> str:
        for node in self.nodes:
            if node.name == name:
                return node.address
        raise KeyError(name)

    def to_json(self) -> str:
        doc: dict = {
            "version": FORMAT_VERSION,
            "nodes": [{"name": n.name, "address": n.address} for n in self.nodes],
            "sets": [list(s) for s in self.sets],
        }
        if self.gateways:
            doc["gateways"] = [{"name": g.name, "url": g.url} for g in self.gateways]
        return json.dumps(doc, indent=2)

    def with_gateways(self, gateways: tuple[GatewayAddress, ...]) -> Topology:
        return Topology(self.nodes, self.sets, tuple(gateways))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)

    @classmethod
    def from_json(cls, text: str) -> Topology:
        try:
            doc = json.loads(text)
            if doc.get("version") != FORMAT_VERSION:
                raise TopologyError(f"topology: unsupported version {doc.get('version')!r}")
            nodes = tuple(NodeAddress(str(n["name"]), str(n["address"])) for n in doc["nodes"])
            sets = tuple(tuple(str(m) for m in s) for s in doc["sets"])
            gateways = tuple(GatewayAddress(str(g["name"]), str(g["url"]))
                             for g in doc.get("gateways") or ())
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise TopologyError(f"topology: malformed file: {exc}") from exc
        for g in gateways:
            if not g.url.startswith(("http://", "https://")):
                raise TopologyError(f"topology: gateway {g.name!r} url {g.url!r} is not "
                                    "http(s)://host:port")
        return cls(nodes, sets, gateways)

    @classmethod
    def load(cls, path: Path) -> Topology:
        try:
            text = path.read_text()
        except OSError as exc:
            raise TopologyError(f"topology: cannot read {path}: {exc.strerror}") from exc
        return cls.from_json(text)

    @classmethod
    def from_addresses(cls, addresses: list[str], set_size: int | None = None) -> Topology:
        """A topology for a plain list of node addresses (named node-1, node-2, ...)."""
        nodes = tuple(NodeAddress(f"node-{i + 1}", a) for i, a in enumerate(addresses))
        size = set_size or choose_set_size(len(nodes))
        if size <= 0 or len(nodes) % size:
            raise TopologyError(f"topology: {len(nodes)} nodes do not split into sets of {size}")
        names = [n.name for n in nodes]
        sets = tuple(tuple(names[i : i + size]) for i in range(0, len(names), size))
        return cls(nodes, sets)


def choose_set_size(node_count: int) -> int:
    """The largest erasure-set size from 16 down to 2 that divides the node count (as MinIO)."""
    for size in range(16, 1, -1):
        if node_count % size == 0:
            return size
    if node_count == 1:
        return 1
    raise TopologyError(f"topology: cannot form erasure sets from {node_count} nodes")
