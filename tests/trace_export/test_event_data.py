"""event_data JSON to columns: the C reader (trace_export._rows) gives what json.loads gives,
whatever the text; rows it cannot read are read by Python, not lost or misread."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import numpy as np
import pytest

from trace_export import from_rows
from trace_export._rows import json_uints, str_codes

T0 = 1_700_000_000 * 10**9

# texts json.loads reads, with what the columns of a cudaLaunchKernel then hold
TRICKY = [
    '{"func":1,"grid":[8,1,1],"block":[256,1,1],"shared_mem":0,"stream":7,"device":0}',
    ' { "stream" : 7 , "func" : 18446744073709551615 , "grid" : [ 1 , 2 , 3 ] }   ',
    '{"func":18446744073709551616,"stream":7}',  # 2^64: not a uint64, reads as 0
    '{"func":-1,"stream":7}',
    '{"func":1.5,"stream":7}',
    '{"func":1e3,"stream":7}',
    '{"func":true,"stream":7}',  # a bool is an int to Python: 1
    '{"func":null,"stream":7}',
    '{"func":"0x10","stream":7}',
    '{"fu\\u006ec":5,"stream":7}',  # an escaped key is still "func"
    '{"note":"a \\"quoted\\" caf\\u00e9","func":5}',
    '{"note":"café ☕","func":5,"stream":[1,2],"grid":[4,4]}',  # grid of two: 0
    '{"func":5,"func":6}',  # the last one counts, as in json.loads
    '{"other":{"nested":[1,{"x":2}]},"func":5}',
    '{"func":5,"ptr":9}',  # ptr: not an argument of a launch, ignored
    "{}",
    '{"func":0,"grid":[0,0,0],"py_stack":12345}',
]


def rows_of(datas: list[Any], event_type: str = "cudaLaunchKernel") -> list[tuple[Any, ...]]:
    return [(T0 + i, 10, 7, 7, 0, 0, event_type, "python", "m", d) for i, d in enumerate(datas)]


def columns(rows: list[tuple[Any, ...]]) -> dict[str, list[int]]:
    c = from_rows(rows, "CUDA")
    return {a: v.tolist() for a, v in sorted(c.args.items())}


@pytest.mark.parametrize("text", TRICKY)
def test_text_reads_as_json_loads_reads_it(text: str) -> None:
    assert columns(rows_of([text])) == columns(rows_of([json.loads(text)]))


def test_known_values_land_in_their_columns() -> None:
    got = columns(rows_of(TRICKY[:3] + TRICKY[-1:]))
    assert got["func"] == [1, (1 << 64) - 1, 0, 0]
    assert (got["grid_x"], got["grid_y"], got["grid_z"]) == ([8, 1, 0, 0], [1, 2, 0, 0],
                                                             [1, 3, 0, 0])  # fmt: skip
    assert got["stream"] == [7, 7, 7, 0]
    assert got["py_stack"] == [0, 0, 0, 12345]


def test_many_random_rows_of_several_types_read_as_json_loads_reads_them() -> None:
    rng = random.Random(5)
    types = ["cudaLaunchKernel", "cudaMemcpyAsync", "cudaMalloc", "cudaStreamSynchronize"]
    datas: list[Any] = []
    names = []
    for _ in range(3000):
        d: dict[str, Any] = {}
        for key in rng.sample(
            [
                "func",
                "stream",
                "dst",
                "src",
                "count",
                "kind",
                "ptr",
                "bytes",
                "device",
                "py_stack",
                "grid",
                "block",
                "junk",
            ],
            6,
        ):
            r = rng.random()
            d[key] = ([rng.randrange(1 << 20) for _ in range(3)] if key in ("grid", "block")
                      else rng.randrange(1 << 64) if r < 0.9 else
                      rng.choice([-3, 2.5, "s", None, [1], {"a": 1}, 1 << 64]))  # fmt: skip
        datas.append(d)
        names.append(rng.choice(types))
    text = [(t, 10, 7, 7, 0, 0, n, "python", "m", json.dumps(d, separators=(",", ":")))
            for t, n, d in zip(range(T0, T0 + len(datas)), names, datas, strict=True)]  # fmt: skip
    dicts = [(*r[:9], d) for r, d in zip(text, datas, strict=True)]
    assert columns(text) == columns(dicts)


def test_unreadable_rows_fall_back_with_their_columns_cleared() -> None:
    out = (np.full(2, 99, np.uint64), np.full(2, 99, np.uint64))
    fell = np.zeros(2, np.uint8)
    n = json_uints(['{"a":1,"b":-1}', '{"a":2,"b":3}'], ("a", "b"), np.ones(2, np.uint8),
                   np.array([0, 1], np.int32), np.zeros(2, np.int32), np.ones((1, 2), np.uint8),
                   out, fell)  # fmt: skip
    assert n == 1 and fell.tolist() == [1, 0]
    assert [c.tolist() for c in out] == [[0, 2], [0, 3]]


@pytest.mark.parametrize(("change", "error", "says"), [
    ({"keys": ("a", 5)}, TypeError, "keys[1]: not a str"),
    ({"first": np.array([0, 2], np.int32)}, ValueError, "keys[1]: 1 columns from 2, of 2"),
    ({"out": (np.zeros(2, np.uint64), np.zeros(3, np.uint64))}, ValueError, "out[1]: 3 rows"),
    ({"out": (np.zeros(2, np.uint64), np.zeros(2, np.float64))}, TypeError, "out[1]: items"),
    ({"fallback": np.zeros(3, np.uint8)}, ValueError, "one per text"),
])  # fmt: skip
def test_json_uints_names_what_is_wrong(change: dict[str, Any], error: type,
                                        says: str) -> None:  # fmt: skip
    args: dict[str, Any] = {"texts": ["{}", "{}"], "keys": ("a", "b"),
                            "dims": np.ones(2, np.uint8), "first": np.array([0, 1], np.int32),
                            "row_type": np.zeros(2, np.int32),
                            "allowed": np.ones((1, 2), np.uint8),
                            "out": (np.zeros(2, np.uint64), np.zeros(2, np.uint64)),
                            "fallback": np.zeros(2, np.uint8)}  # fmt: skip
    args.update(change)
    with pytest.raises(error, match=re.escape(says)):
        json_uints(*args.values())


def test_str_codes_in_order_of_first_appearance() -> None:
    table: dict[str, int] = {"b": 0}
    codes = np.empty(5, np.int32)
    str_codes(["a", "b", "a", "c", "b"], table, codes)
    assert codes.tolist() == [1, 0, 1, 2, 0]
    assert table == {"b": 0, "a": 1, "c": 2}
    with pytest.raises(ValueError, match="codes: 4, not one per value"):
        str_codes(["a"] * 5, {}, np.empty(4, np.int32))
    with pytest.raises(TypeError):
        str_codes(["a"], [], np.empty(1, np.int32))  # type: ignore[arg-type]


def test_random_damage_is_read_or_refused_never_misread() -> None:
    """Texts cut or with bytes changed at random: the C reader reads what json.loads reads,
    or leaves the row to it (and text json.loads refuses is refused)."""
    rng = random.Random(11)
    base = TRICKY[0]
    for _ in range(2000):
        t = list(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(t))
            t[at] = rng.choice('{}[],:"0123456789 -.etrufalsn\\')
        text = "".join(t)[: rng.randint(1, len(base))] if rng.random() < 0.3 else "".join(t)
        try:
            data = json.loads(text)
        except ValueError:
            with pytest.raises(ValueError):
                columns(rows_of([text]))
            continue
        assert columns(rows_of([text])) == columns(rows_of([data])), text


def test_text_arguments_read_as_json_loads_reads_them() -> None:
    """ACL rows with text arguments (op_type): the C reader takes the numbers, json.loads
    the texts, of the same rows; a row with an odd number falls back whole."""
    datas: list[Any] = [
        {
            "op_type": "Add",
            "workspace": 5,
            "workspace_size": 64,
            "executor": 9,
            "stream": 3,
            "device": 1,
            "py_stack": 77,
        },
        {"op_type": "Mul", "workspace": -5, "workspace_size": 64, "stream": 3},
        {"workspace": 1, "stream": 2},
    ]
    for n in ("aclnnAdd", "aclrtMemcpy"):
        text = [(T0 + i, 10, 7, 7, 0, 0, n, "python", "m", json.dumps(d))
                for i, d in enumerate(datas)]  # fmt: skip
        dicts = [(*r[:9], d) for r, d in zip(text, datas, strict=True)]
        a, b = from_rows(text, "ACL"), from_rows(dicts, "ACL")
        assert {k: v.tolist() for k, v in a.args.items()} == \
            {k: v.tolist() for k, v in b.args.items()}  # fmt: skip
        assert {k: v.values() for k, v in a.texts.items()} == \
            {k: v.values() for k, v in b.texts.items()}  # fmt: skip
    assert from_rows(text[:1], "ACL").args["py_stack"].tolist() == [77]
    assert from_rows([(*text[0][:6], "aclnnAdd", *text[0][7:])], "ACL").texts[
        "op_type"
    ].values() == ["Add"]
