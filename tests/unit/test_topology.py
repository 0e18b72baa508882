import pytest

from common.topology import Topology, TopologyError, choose_set_size


def test_set_size_follows_minio():
    assert choose_set_size(6) == 6
    assert choose_set_size(12) == 12
    assert choose_set_size(32) == 16
    assert choose_set_size(4) == 4


def test_round_trip(tmp_path):
    topo = Topology.from_addresses([f"127.0.0.1:{9200 + i}" for i in range(8)], set_size=4)
    assert topo.sets == (("node-1", "node-2", "node-3", "node-4"),
                         ("node-5", "node-6", "node-7", "node-8"))
    path = tmp_path / "t.json"
    topo.save(path)
    assert Topology.load(path) == topo


def test_rejects_inconsistent_sets():
    with pytest.raises(TopologyError, match="not a known node"):
        Topology.from_json('{"version":1,"nodes":[{"name":"a","address":"x:1"}],"sets":[["b"]]}')
    with pytest.raises(TopologyError, match="malformed"):
        Topology.from_json("{")
