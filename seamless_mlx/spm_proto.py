"""Edits of a serialized sentencepiece ``ModelProto`` on the protobuf wire format (no protobuf needed).

transformers' SeamlessM4T tokenizer loads its sentencepiece model with the normaliser's dummy
prefix switched off (the "non-legacy" scheme, which adds the prefix space itself); it does that
with the ``protobuf`` package.  :func:`without_dummy_prefix` makes the same edit on the bytes.
"""

from __future__ import annotations

from typing import List


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _read_varint(buf: bytes, pos: int):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    """Yield ``(field_number, raw_bytes, payload)`` for each top-level field of a message."""
    pos, end = 0, len(buf)
    while pos < end:
        start = pos
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        payload = b""
        if wire == 0:
            _, pos = _read_varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            payload = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in sentencepiece model")
        if pos > end:
            raise ValueError("truncated sentencepiece model")
        yield number, buf[start:pos], payload


def without_dummy_prefix(model_proto: bytes) -> bytes:
    """Return the serialized ModelProto with ``normalizer_spec.add_dummy_prefix = false``.

    ModelProto.normalizer_spec is field 3; NormalizerSpec.add_dummy_prefix is field 3 (bool).
    Several occurrences of an embedded message are merged by protobuf, so their payloads are
    concatenated before the flag is replaced.
    """
    parts: List[bytes] = []
    normalizer = b""
    slot = None
    for number, raw, payload in _fields(model_proto):
        if number == 3:
            normalizer += payload
            if slot is None:
                slot = len(parts)
                parts.append(b"")
        else:
            parts.append(raw)
    kept = b"".join(raw for number, raw, _ in _fields(normalizer) if number != 3)
    normalizer = kept + b"\x18\x00"  # field 3, varint, value 0
    encoded = b"\x1a" + _varint(len(normalizer)) + normalizer  # field 3, length-delimited
    if slot is None:
        parts.append(encoded)
    else:
        parts[slot] = encoded
    return b"".join(parts)
