"""`fields` on GET /events: what a projection keeps, and that it never adds."""

from __future__ import annotations

from backend.handlers.events import _projector


def test_a_projection_keeps_what_is_there_and_adds_nothing() -> None:
    event = {"pid": 7, "event_type": "cudaMalloc",
             "event_data": {"bytes": 64, "grid": [1, 2, 3], "nested": {"x": 1}}}  # fmt: skip
    project = _projector(
        "pid,event_data.bytes,event_data.nested.x,event_data.no.such,event_data.grid.x,comm"
    )
    assert project(event) == {"pid": 7, "event_data": {"bytes": 64, "nested": {"x": 1}}}
    assert _projector("event_data.none")(event) == {}  # not {"event_data": {}}
    assert _projector("pid,pid")(event) == {"pid": 7}
