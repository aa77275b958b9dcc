"""Protocol buffer wire format, one message at a time.

``Msg`` writes a single message field by field: descriptors, interning, clock snapshots, a
few hundred per trace. The packets of the events themselves, millions, are written by C
(trace_export._speedups).
"""

from __future__ import annotations

import struct

__all__ = ["Msg", "tag", "varint_bytes"]


def tag(field: int, wire: int) -> bytes:
    """The encoded key of a field (wire type 0 varint, 1 64-bit, 2 length-delimited)."""
    return varint_bytes(field << 3 | wire)


def varint_bytes(v: int) -> bytes:
    """One value as a varint (negative ints as their 64-bit two's complement)."""
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


class Msg:
    """One message, built field by field."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def uint(self, field: int, v: int) -> Msg:
        self.buf += tag(field, 0) + varint_bytes(v)
        return self

    def double(self, field: int, v: float) -> Msg:
        self.buf += tag(field, 1) + struct.pack("<d", v)
        return self

    def blob(self, field: int, v: bytes | str | Msg) -> Msg:
        """A length-delimited field: bytes, a string or a message."""
        raw = v.buf if isinstance(v, Msg) else v.encode() if isinstance(v, str) else v
        self.buf += tag(field, 2) + varint_bytes(len(raw)) + raw
        return self

    def __bytes__(self) -> bytes:
        return bytes(self.buf)
