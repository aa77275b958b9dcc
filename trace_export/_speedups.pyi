"""Types of the C extension trace_export._speedups (trace_export/_speedups.c)."""

import numpy as np

def encode(
    order: np.ndarray,
    t: np.ndarray,
    kind: np.ndarray,
    seq: np.ndarray,
    name: np.ndarray,
    flow: np.ndarray,
    value: np.ndarray,
    ref: np.ndarray,
    track: np.ndarray,
    clock: np.ndarray,
    row_type: np.ndarray,
    row_flags: np.ndarray,
    plan_start: np.ndarray,
    plan_key: np.ndarray,
    plan_field: np.ndarray,
    plan_col: np.ndarray,
    cols: tuple[np.ndarray, ...],
    incomplete_key: int,
    piece: int,
    /,
) -> tuple[list[bytes], int, int, int]: ...
def distinct(x: np.ndarray, inv: np.ndarray, first: np.ndarray, /) -> int: ...
