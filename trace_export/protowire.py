"""Protocol buffer wire format, for one message at a time and for many rows at once.

``Msg`` writes a single message field by field (descriptors, interning, clock snapshots:
a few hundred per trace). ``Rows`` builds n messages of the same shape at once with numpy:
each row is a sequence of segments (a tag, a varint, a run of bytes), every segment a
(n, width) byte matrix with a per-row length (0 drops it from that row). Packing is one
boolean-mask gather, which concatenates each row's valid bytes in row order.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Msg", "Rows", "tag", "varint", "varint_len"]

_LEN_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)


def tag(field: int, wire: int) -> bytes:
    """The encoded key of a field (wire type 0 varint, 2 length-delimited)."""
    return _varint_bytes(field << 3 | wire)


def _varint_bytes(v: int) -> bytes:
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
        self.buf += tag(field, 0) + _varint_bytes(v)
        return self

    def bytes(self, field: int, v: bytes | str | Msg) -> Msg:
        raw = v.buf if isinstance(v, Msg) else v.encode() if isinstance(v, str) else v
        self.buf += tag(field, 2) + _varint_bytes(len(raw)) + raw
        return self

    def __bytes__(self) -> bytes:
        return bytes(self.buf)


def varint_len(v: np.ndarray) -> np.ndarray:
    """Bytes each uint64 takes as a varint (1..10)."""
    return (np.searchsorted(_LEN_LIMITS, v.astype(np.uint64), side="right") + 1).astype(
        np.int64
    )


def varint(v: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, width) varint bytes of uint64 values (left-aligned) and their lengths; width is
    the longest of them unless given."""
    v = v.astype(np.uint64)
    n = len(v)
    lens = varint_len(v)
    if width is None:
        width = int(lens.max()) if n else 1
    out = np.empty((n, width), dtype=np.uint8)
    rest = v.copy()
    for k in range(width):
        out[:, k] = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest >>= np.uint64(7)
    out[:, : width - 1] |= np.where(np.arange(width - 1)[None, :] < (lens - 1)[:, None],
                                    np.uint8(0x80), np.uint8(0))  # fmt: skip
    return out, lens


class Rows:
    """n messages of one shape: segments appended left to right, then packed."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._mats: list[np.ndarray] = []
        self._lens: list[np.ndarray] = []

    def const(self, raw: bytes, present: np.ndarray | bool = True) -> Rows:
        """The same bytes in every row (or only where present)."""
        mat = np.broadcast_to(np.frombuffer(raw, np.uint8), (self.n, len(raw)))
        return self._add(mat, np.where(present, len(raw), 0))

    def varint(self, v: np.ndarray, present: np.ndarray | bool = True,
               width: int | None = None) -> Rows:  # fmt: skip
        mat, lens = varint(v, width)
        return self._add(mat, np.where(present, lens, 0))

    def field_uint(self, field: int, v: np.ndarray, present: np.ndarray | bool = True,
                   width: int | None = None) -> Rows:  # fmt: skip
        """A varint field: its tag and value, where present."""
        return self.const(tag(field, 0), present).varint(v, present, width)

    def field_fixed64(self, field: int, v: np.ndarray, present: np.ndarray | bool = True) -> Rows:
        """A fixed64 field (wire type 1): its tag and 8 little-endian bytes, where present."""
        mat = np.ascontiguousarray(v, dtype="<u8").view(np.uint8).reshape(self.n, 8)
        return self.const(tag(field, 1), present)._add(mat, np.where(present, 8, 0))

    def rows(self, other: Rows) -> Rows:
        """Appends another Rows' segments (same n)."""
        self._mats += other._mats
        self._lens += other._lens
        return self

    def _add(self, mat: np.ndarray, lens: np.ndarray) -> Rows:
        self._mats.append(mat)
        self._lens.append(np.broadcast_to(np.asarray(lens, np.int64), (self.n,)))
        return self

    def length(self) -> np.ndarray:
        """Bytes of each row."""
        if not self._lens:
            return np.zeros(self.n, np.int64)
        return np.sum(self._lens, axis=0)

    def nested(self, field: int, present: np.ndarray | bool = True) -> Rows:
        """These rows as the body of a length-delimited field (where present): a new Rows of
        tag, length and body."""
        out = Rows(self.n).const(tag(field, 2), present)
        out.varint(self.length().astype(np.uint64), present)
        for mat, ln in zip(self._mats, self._lens, strict=True):
            out._add(mat, np.where(present, ln, 0))
        return out

    def pack(self) -> bytes:
        """All rows' bytes, row after row."""
        return self.pack_array().tobytes()

    def pack_array(self) -> np.ndarray:
        """All rows' bytes, row after row, as a uint8 array."""
        if not self._mats or self.n == 0:
            return np.zeros(0, np.uint8)
        mat = np.concatenate([np.ascontiguousarray(m) for m in self._mats], axis=1)
        widths = [m.shape[1] for m in self._mats]
        keep = np.concatenate(
            [np.arange(w)[None, :] < ln[:, None] for w, ln in zip(widths, self._lens,
                                                                 strict=True)], axis=1)  # fmt: skip
        return mat[keep]
