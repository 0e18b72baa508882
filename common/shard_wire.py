"""Shard blocks on the wire without protobuf's copies: the bulk messages of WriteShard,
WriteShardOnce and ReadShardBlocks, encoded with one join and decoded into memoryviews of the
received bytes.

The bytes are exactly protobuf's encoding of `WriteShardMessage`, `WriteShardOnceRequest` and
`ShardBlocks` (proto/storage.proto), so a peer using the generated classes reads and writes
the same thing; tests/unit/test_shard_wire.py checks both directions against them. Why by
hand: with the generated classes each block is copied into the message, then into the
serialized bytes, and on the other side into the parsed message and out of it again on every
access of `.data` (~1 GB of memcpy per GB of shards on each side, on a 2-core machine).
Only the layout of these messages is known here; any other field is skipped, as protobuf
would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = ["Block", "WireError", "WriteItem", "decode_blocks", "decode_write_message",
           "decode_write_once", "encode_blocks", "encode_write_blocks", "encode_write_once"]

Block = tuple[bytes | memoryview, bytes]  # (shard block data, its bitrot hash)

_LEN = 2  # wire type of length-delimited fields
# Field numbers (proto/storage.proto).
_SHARD_BLOCK_DATA, _SHARD_BLOCK_HASH = 1, 2  # ShardBlock
_SHARD_BLOCKS_ITEM = 1  # ShardBlocks.blocks
_WRITE_HEADER, _WRITE_BLOCK, _WRITE_BLOCKS, _WRITE_COMMIT = 1, 2, 3, 4  # WriteShardMessage.msg
_ONCE_HEADER, _ONCE_BLOCKS, _ONCE_COMMIT = 1, 2, 3  # WriteShardOnceRequest


class WireError(ValueError):
    """Bytes that are not a well-formed message of the expected type."""


@dataclass
class WriteItem:
    """One WriteShardMessage: the serialized ShardHeader, the blocks it carries, or the
    serialized CommitObjectRequest that ends the stream."""

    header: memoryview | None = None
    blocks: list[Block] = field(default_factory=list)
    commit: memoryview | None = None


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int) -> bytes:
    return _varint(number << 3 | _LEN)


_DATA_TAG, _HASH_TAG = _tag(_SHARD_BLOCK_DATA), _tag(_SHARD_BLOCK_HASH)
_ITEM_TAG, _BLOCKS_TAG = _tag(_SHARD_BLOCKS_ITEM), _tag(_WRITE_BLOCKS)
_ONCE_HEADER_TAG, _ONCE_BLOCKS_TAG = _tag(_ONCE_HEADER), _tag(_ONCE_BLOCKS)
_ONCE_COMMIT_TAG = _tag(_ONCE_COMMIT)


def _block_pieces(blocks: Sequence[Block]) -> list[bytes | memoryview]:
    """The pieces of a serialized ShardBlocks, data referenced rather than copied."""
    pieces: list[bytes | memoryview] = []
    for data, digest in blocks:
        head = b"".join([_DATA_TAG, _varint(len(data))])
        tail = b"".join([_HASH_TAG, _varint(len(digest)), digest])
        pieces += [_ITEM_TAG, _varint(len(head) + len(data) + len(tail)), head, data, tail]
    return pieces


def encode_blocks(blocks: Sequence[Block]) -> bytes:
    """A serialized `ShardBlocks` holding `blocks`: each data byte is copied once."""
    return b"".join(_block_pieces(blocks))


def encode_write_blocks(blocks: Sequence[Block]) -> bytes:
    """A serialized `WriteShardMessage` whose `blocks` field holds `blocks`."""
    pieces = _block_pieces(blocks)
    size = sum(len(p) for p in pieces)
    return b"".join([_BLOCKS_TAG, _varint(size), *pieces])


def encode_write_once(header: bytes, blocks: Sequence[Block], commit: bytes | None) -> bytes:
    """A serialized `WriteShardOnceRequest`: `header` and `commit` are serialized ShardHeader
    and CommitObjectRequest messages (commit None: none); each data byte is copied once."""
    pieces = _block_pieces(blocks)
    size = sum(len(p) for p in pieces)
    out: list[bytes | memoryview] = [_ONCE_HEADER_TAG, _varint(len(header)), header,
                                     _ONCE_BLOCKS_TAG, _varint(size), *pieces]
    if commit is not None:
        out += [_ONCE_COMMIT_TAG, _varint(len(commit)), commit]
    return b"".join(out)


def _read_varint(view: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(view) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(view: memoryview) -> Iterator[tuple[int, memoryview | None]]:
    """(field number, contents) of each field; contents only for length-delimited fields."""
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _read_varint(view, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == _LEN:
            length, pos = _read_varint(view, pos)
            if pos + length > end:
                raise WireError("a field runs past the end of its message")
            yield number, view[pos : pos + length]
            pos += length
        elif wire_type == 0:
            _, pos = _read_varint(view, pos)
            yield number, None
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
            yield number, None
        else:
            raise WireError(f"unsupported wire type {wire_type}")
    if pos != end:
        raise WireError("a fixed-size field runs past the end of its message")


def _block(view: memoryview) -> Block:
    data: memoryview = view[:0]
    digest = b""
    for number, value in _fields(view):
        if value is None:
            continue
        if number == _SHARD_BLOCK_DATA:
            data = value
        elif number == _SHARD_BLOCK_HASH:
            digest = bytes(value)  # 16-32 bytes: a copy keeps comparisons plain
    return data, digest


def _blocks(view: memoryview) -> list[Block]:
    return [_block(value) for number, value in _fields(view)
            if number == _SHARD_BLOCKS_ITEM and value is not None]


def decode_blocks(data: bytes) -> list[Block]:
    """The blocks of a serialized `ShardBlocks`, as memoryviews into `data` (no copy)."""
    return _blocks(memoryview(data))


def decode_write_message(data: bytes) -> WriteItem:
    """A serialized `WriteShardMessage`; of several oneof fields the last counts, as in
    protobuf (a field repeated to be merged is not merged: no producer sends one)."""
    item = WriteItem()
    for number, value in _fields(memoryview(data)):
        if value is None:
            continue
        if number == _WRITE_HEADER:
            item = WriteItem(header=value)
        elif number == _WRITE_BLOCK:
            item = WriteItem(blocks=[_block(value)])
        elif number == _WRITE_BLOCKS:
            item = WriteItem(blocks=_blocks(value))
        elif number == _WRITE_COMMIT:
            item = WriteItem(commit=value)
    return item


def decode_write_once(data: bytes) -> list[WriteItem]:
    """A serialized `WriteShardOnceRequest` as the WriteShard stream it stands for: its
    header, its blocks (when there are any) and its commit (when present), in that order. A
    missing header yields an item without one (the service rejects it, as for a stream)."""
    header: memoryview | None = None
    blocks: list[Block] = []
    commit: memoryview | None = None
    for number, value in _fields(memoryview(data)):
        if value is None:
            continue
        if number == _ONCE_HEADER:
            header = value
        elif number == _ONCE_BLOCKS:
            blocks += _blocks(value)  # repeated message fields merge, as in protobuf
        elif number == _ONCE_COMMIT:
            commit = value
    items = [WriteItem(header=header) if header is not None else WriteItem()]
    if blocks:
        items.append(WriteItem(blocks=blocks))
    if commit is not None:
        items.append(WriteItem(commit=commit))
    return items
