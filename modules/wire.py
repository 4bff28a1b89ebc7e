"""tf.train.Example written in the protobuf wire format directly, for the Beam stages' hot loops.

An Example is ``features`` (field 1): a Features message whose map entries (field 1) hold a key (1) and a
Feature (2); a Feature holds one of BytesList (field 1), FloatList (2) or Int64List (3), each a ``value`` field 1
(bytes repeated; numbers packed). Concatenated serialized messages parse as their merge, so an Example may be
written in parts. The tests check that these bytes parse to what the proto API builds.
"""

from __future__ import annotations

import struct
from typing import Iterable, Sequence

BYTES, FLOATS, INT64S = b"\x0a", b"\x12", b"\x1a"  # the Feature's field tags of BytesList, FloatList, Int64List
_SMALL = [bytes([i]) for i in range(0x80)]
_KEYS: dict = {}


def varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def int64_payload(values: Iterable[int]) -> bytes:
    """Packed int64 values (two's complement for negatives, as protobuf writes them)."""
    return b"".join(varint(v & 0xFFFFFFFFFFFFFFFF) for v in values)


def float_payload(values: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def entry(key: str, kind: bytes, payload: bytes) -> bytes:
    """One entry of the feature map: ``key`` and a Feature of ``kind`` whose list is ``payload`` (packed numbers,
    or ``bytes_payload``'s repeated values)."""
    prefix = _KEYS.get(key)
    if prefix is None:
        encoded = key.encode("utf-8")
        prefix = _KEYS[key] = b"\x0a" + varint(len(encoded)) + encoded
    if kind == BYTES:
        inner = payload
    else:
        inner = (b"\x0a" + varint(len(payload)) + payload) if payload else b""
    feature = kind + varint(len(inner)) + inner
    body = prefix + b"\x12" + varint(len(feature)) + feature
    return b"\x0a" + varint(len(body)) + body


def bytes_payload(values: Iterable[bytes]) -> bytes:
    return b"".join(b"\x0a" + varint(len(v)) + v for v in values)


def example(entries: bytes) -> bytes:
    """An Example of the concatenated feature-map ``entries``."""
    return b"\x0a" + varint(len(entries)) + entries
