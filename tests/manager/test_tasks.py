"""manager.tasks.cancel_all: every task ends, even one that swallows a cancellation."""

from __future__ import annotations

import asyncio

from manager.tasks import cancel_all


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:  # what wait_for on 3.11 can make of a loop
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 1:
                    continue  # the first cancellation is lost
                raise

    async def plain() -> None:
        await asyncio.sleep(3600)

    tasks = [asyncio.create_task(stubborn()), asyncio.create_task(plain())]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all(tasks, retry_s=0.05), 5)
    assert all(t.done() and t.cancelled() for t in tasks)
    assert swallowed == 2


async def test_tasks_that_ended_with_an_error_do_not_stop_the_others() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    async def plain() -> None:
        await asyncio.sleep(3600)

    bad, good = asyncio.create_task(fails()), asyncio.create_task(plain())
    await asyncio.sleep(0)
    await cancel_all([bad, good], retry_s=0.05)
    assert good.cancelled() and isinstance(bad.exception(), ValueError)
