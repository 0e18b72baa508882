"""Shard files written and read with O_DIRECT (node/direct_io.py) hold exactly what buffered
I/O would: same bytes, same sizes, same corruption detection, on unaligned shard sizes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common import bitrot
from node.direct_io import ALIGN, DirectAppender, aligned_buffer, direct_io_supported, pread_direct
from node.errors import Corrupt
from node.records import BlockLayout
from node.shardstore import ShardStore


def _direct_dir(tmp_path: Path) -> Path:
    if not direct_io_supported(tmp_path):
        pytest.skip("tmp_path's file system takes no O_DIRECT")
    return tmp_path


def test_aligned_buffer_is_aligned_and_zeroed() -> None:
    import ctypes

    for size in (ALIGN, 3 * ALIGN, 1 << 20):
        buf = aligned_buffer(size)
        address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        assert address % ALIGN == 0 and len(buf) == size and not any(buf[:64])


@pytest.mark.parametrize("sizes", [[1], [ALIGN], [ALIGN - 1, 2, ALIGN], [300_000, 17, 5],
                                   [1 << 20, 1 << 20, 3]])
def test_appender_writes_exactly_the_bytes(tmp_path: Path, sizes: list[int]) -> None:
    path = _direct_dir(tmp_path) / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    out = DirectAppender(fd, capacity=8 * ALIGN)  # smaller than some pieces: fills and wraps
    pieces = [os.urandom(n) for n in sizes]
    for piece in pieces:
        out.append(piece)
        assert os.fstat(fd).st_size % (8 * ALIGN) == 0  # only whole buffers reach the disk early
    out.close_tail()
    os.fsync(fd)
    os.close(fd)
    assert path.read_bytes() == b"".join(pieces)


def test_pread_direct_reads_any_range_and_stops_at_the_end(tmp_path: Path) -> None:
    path = _direct_dir(tmp_path) / "f"
    data = os.urandom(3 * ALIGN + 123)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        for offset, length in ((0, 10), (5, ALIGN), (ALIGN - 1, 2), (2 * ALIGN + 7, 10_000)):
            assert bytes(pread_direct(fd, length, offset)) == data[offset:offset + length]
        assert bytes(pread_direct(fd, 10, len(data) + 5)) == b""
    finally:
        os.close(fd)


@pytest.mark.parametrize("direct", [True, False])
def test_shard_files_are_the_same_either_way(tmp_path: Path, direct: bool) -> None:
    store = ShardStore(tmp_path, direct_io=direct)
    store.prepare()
    if direct and not store.direct_io:
        pytest.skip("no O_DIRECT on this file system")
    sbs = 262_272  # a real 4+2 shard block: records of 262,288 bytes, never page aligned
    data = os.urandom(3 * sbs + 1001)
    writer = store.new_writer(bitrot.XXH3_128, sbs)
    for i in range(0, len(data), sbs):
        chunk = data[i:i + sbs]
        writer.write_block(chunk, bitrot.block_hash(bitrot.XXH3_128, chunk))
    writer.finish()
    assert writer.file_size == len(data) + 4 * 16
    store.promote([writer.file_id])
    store.settle([writer.file_id])
    path = store.shard_path(writer.file_id)
    assert path.stat().st_size == writer.file_size
    layout = BlockLayout(len(data), sbs, 16)
    with store.open_reader(writer.file_id, layout, bitrot.XXH3_128) as reader:
        assert b"".join(bytes(d) for d, _ in reader.blocks(0, 0)) == data
        assert reader.read_hash(3) == bitrot.block_hash(bitrot.XXH3_128, data[3 * sbs:])
    raw = bytearray(path.read_bytes())
    raw[2 * (sbs + 16) + 16 + 9] ^= 1  # one byte of block 2's data
    path.write_bytes(bytes(raw))
    with store.open_reader(writer.file_id, layout, bitrot.XXH3_128) as reader:
        assert reader.bad_blocks() == [2]
        with pytest.raises(Corrupt):
            reader.read_block(2)
