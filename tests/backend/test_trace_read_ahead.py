"""trace_build._read_ahead: the next chunk is fetched while this one is used, in order,
errors reach the reader, and a reader that stops early leaves no fetch running."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from backend import trace_build
from backend.trace_build import _read_ahead


def test_items_in_order_the_next_fetched_meanwhile() -> None:
    fetched: list[int] = []
    second_fetched = threading.Event()

    def items() -> Iterator[int]:
        for i in range(5):
            fetched.append(i)
            if i == 1:
                second_fetched.set()
            yield i

    out = []
    for x in _read_ahead(items()):
        if x == 0:  # the fetch of 1 runs while 0 is in use
            assert second_fetched.wait(10)
        out.append(x)
    assert out == fetched == [0, 1, 2, 3, 4]


def test_an_error_while_fetching_reaches_the_reader() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise RuntimeError("connection lost")

    got = []
    with pytest.raises(RuntimeError, match="connection lost"):
        for x in _read_ahead(items()):
            got.append(x)
    assert got == [1]


def test_stopping_early_waits_for_the_fetch_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader closes while the next fetch is blocked: close returns only after it ends
    (the fetch is let go by the wait itself, so the order is certain)."""
    release, started = threading.Event(), threading.Event()
    seen: list[str] = []

    def items() -> Iterator[int]:
        yield 0
        started.set()
        release.wait(10)
        seen.append("fetched")
        yield 1

    real_wait = trace_build.futures.wait

    def wait(fs: list[Future[object]]) -> object:
        seen.append(f"wait, done: {fs[0].done()}")
        release.set()
        return real_wait(fs)

    monkeypatch.setattr(trace_build.futures, "wait", wait)
    source = items()
    reader = _read_ahead(source)
    assert next(reader) == 0
    assert started.wait(10)
    reader.close()
    assert seen == ["wait, done: False", "fetched"]
    source.close()  # not running any more: closes
