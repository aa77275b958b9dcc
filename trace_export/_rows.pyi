"""Types of the C extension trace_export._rows (trace_export/_rows.c)."""

from collections.abc import Sequence

import numpy as np

def json_uints(
    texts: list[str] | tuple[bytes, np.ndarray],
    keys: tuple[str, ...],
    dims: np.ndarray,
    first: np.ndarray,
    row_type: np.ndarray,
    allowed: np.ndarray,
    out: tuple[np.ndarray, ...],
    fallback: np.ndarray,
    /,
) -> int: ...
def str_codes(values: Sequence[str], table: dict[str, int], codes: np.ndarray, /) -> None: ...
def copy_rows(
    data: bytes,
    n: int,
    ints: tuple[np.ndarray, ...],
    tables: tuple[dict[str, int], ...],
    codes: tuple[np.ndarray, ...],
    spans: np.ndarray,
    /,
) -> None: ...
