"""Protocol buffer wire format, for one message at a time and for many rows at once.

``Msg`` writes a single message field by field (descriptors, interning, clock snapshots:
a few hundred per trace). ``Records`` builds n messages of one layout at once with numpy:
every varint is padded to the widest value of its column, so rows have one size and the
messages are the bytes of one (n, width) matrix. Padding costs a few raw bytes that
compression takes back.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Msg", "Records", "padded_varint", "tag", "varint_bytes", "varint_len"]

_LEN_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)


def tag(field: int, wire: int) -> bytes:
    """The encoded key of a field (wire type 0 varint, 2 length-delimited)."""
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

    def blob(self, field: int, v: bytes | str | Msg) -> Msg:
        """A length-delimited field: bytes, a string or a message."""
        raw = v.buf if isinstance(v, Msg) else v.encode() if isinstance(v, str) else v
        self.buf += tag(field, 2) + varint_bytes(len(raw)) + raw
        return self

    def __bytes__(self) -> bytes:
        return bytes(self.buf)


def varint_len(v: np.ndarray) -> np.ndarray:
    """Bytes each uint64 takes as a varint (1..10)."""
    return (np.searchsorted(_LEN_LIMITS, v.astype(np.uint64), side="right") + 1).astype(
        np.int64
    )


def padded_varint(v: np.ndarray, width: int | None = None) -> np.ndarray:
    """(n, width) varints of uint64 values, each padded to width bytes with continuation
    bits (5 in 3 bytes is 85 80 00: parsers read the value, protobuf allows up to 10 bytes).
    width is the longest value's unless given."""
    v = v.astype(np.uint64)
    if width is None:
        width = int(varint_len(v).max()) if len(v) else 1
    out = np.empty((len(v), width), dtype=np.uint8)
    rest = v.copy()
    for k in range(width):
        out[:, k] = (rest & np.uint64(0x7F)).astype(np.uint8)
        if k < width - 1:
            out[:, k] |= 0x80
        rest >>= np.uint64(7)
    return out


class Records:
    """n messages of one layout, each field at a fixed width (varints padded to the widest
    value), so every row has the same size and packing is one matrix's bytes."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._segs: list[bytes | np.ndarray] = []

    @property
    def width(self) -> int:
        return sum(len(s) if isinstance(s, bytes) else s.shape[1] for s in self._segs)

    def const(self, raw: bytes) -> Records:
        """The same bytes in every row."""
        self._segs.append(raw)
        return self

    def field_uint(self, field: int, v: np.ndarray) -> Records:
        """A varint field (tag, value)."""
        self._segs += [tag(field, 0), padded_varint(v)]
        return self

    def field_fixed64(self, field: int, v: np.ndarray) -> Records:
        """A fixed64 field (tag, 8 little-endian bytes)."""
        mat = np.ascontiguousarray(v, dtype="<u8").view(np.uint8).reshape(self.n, 8)
        self._segs += [tag(field, 1), mat]
        return self

    def field_bytes(self, field: int, body: Records) -> Records:
        """A length-delimited field holding body's rows."""
        self._segs.append(tag(field, 2) + varint_bytes(body.width))
        self._segs += body._segs
        return self

    def matrix(self) -> np.ndarray:
        """(n, width) bytes of the rows."""
        out = np.empty((self.n, self.width), dtype=np.uint8)
        at = 0
        for seg in self._segs:
            w = len(seg) if isinstance(seg, bytes) else seg.shape[1]
            out[:, at : at + w] = np.frombuffer(seg, np.uint8) if isinstance(seg, bytes) else seg
            at += w
        return out
