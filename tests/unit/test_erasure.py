"""zfec striping: any k of k+m shards rebuild every block; geometry arithmetic; healing."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.erasure import (
    BLOCK_SIZE,
    HASH_SHA256,
    ErasureError,
    Geometry,
    block_hash,
    decode_block,
    encode_block,
    reconstruct_shards,
)


def test_block_size_holds_whole_dare_packages():
    assert BLOCK_SIZE == 16 * 65_568


def test_systematic_data_shards_are_the_block():
    g = Geometry(4, 2)
    block = os.urandom(BLOCK_SIZE)
    shards = encode_block(g, block)
    assert len(shards) == 6
    assert b"".join(shards[:4]) == block
    assert all(len(s) == g.shard_block_size for s in shards)


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 8),
    m=st.integers(0, 4),
    data=st.binary(min_size=0, max_size=3000),
    pick=st.randoms(use_true_random=False),
)
def test_any_k_shards_decode(k, m, data, pick):
    g = Geometry(k, m, block_size=4096)
    shards = encode_block(g, data)
    chosen = pick.sample(range(k + m), k)
    assert decode_block(g, {i: shards[i] for i in chosen}, len(data)) == data


def test_every_k_subset_of_4_plus_2_decodes_a_short_block():
    g = Geometry(4, 2)
    data = os.urandom(1_000_003)  # not a multiple of k: the last shard is padded
    shards = encode_block(g, data)
    for chosen in itertools.combinations(range(6), 4):
        assert decode_block(g, {i: shards[i] for i in chosen}, len(data)) == data


def test_too_few_shards_is_an_error():
    g = Geometry(4, 2, block_size=64)
    shards = encode_block(g, b"x" * 64)
    with pytest.raises(ErasureError):
        decode_block(g, {0: shards[0], 5: shards[5], 4: shards[4]}, 64)


def test_reconstruct_only_the_missing_indexes():
    g = Geometry(4, 2, block_size=4096)
    data = os.urandom(4000)
    shards = encode_block(g, data)
    rebuilt = reconstruct_shards(g, {0: shards[0], 2: shards[2], 4: shards[4], 5: shards[5]},
                                 [1, 3])
    assert rebuilt == {1: shards[1], 3: shards[3]}
    rebuilt = reconstruct_shards(g, {i: shards[i] for i in range(4)}, [5])
    assert rebuilt == {5: shards[5]}


def test_empty_block():
    g = Geometry(4, 2)
    shards = encode_block(g, b"")
    assert shards == [b""] * 6
    assert decode_block(g, {1: b"", 2: b"", 4: b"", 5: b""}, 0) == b""
    assert reconstruct_shards(g, {0: b"", 1: b"", 2: b"", 3: b""}, [4]) == {4: b""}


def test_geometry_arithmetic():
    g = Geometry(4, 2)
    assert g.shard_block_size == 262_272
    assert g.shard_size(0) == 0
    assert g.shard_size(BLOCK_SIZE) == 262_272
    assert g.shard_size(BLOCK_SIZE + 5) == 262_272 + 2
    assert g.block_count(BLOCK_SIZE * 3) == 3
    assert g.block_length(BLOCK_SIZE + 5, 1) == 5
    assert g.blocks_for_range(BLOCK_SIZE - 1, 2) == (0, 2)
    assert g.blocks_for_range(BLOCK_SIZE, BLOCK_SIZE) == (1, 1)
    assert g.blocks_for_range(10, 0) == (0, 0)
    odd = Geometry(5, 2)  # 1,049,088 is not a multiple of 5: shards are padded
    assert odd.shard_block_size == 209_818


def test_hashes():
    assert len(block_hash("xxh3-128", b"abc")) == 16
    assert len(block_hash(HASH_SHA256, b"abc")) == 32
    with pytest.raises(ErasureError):
        block_hash("md4", b"")
