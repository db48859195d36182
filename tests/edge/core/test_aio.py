"""A loop that cleans up its own tasks still stops when it is cancelled, wherever the cancel
lands: also while it waits for a cancelled task to finish (the soak's hung gateway stop: the
engine's loop lost its cancellation inside its sleep's clean-up and ran on)."""

from __future__ import annotations

import asyncio

import pytest

from openbranch.edge.core.aio import cancel_and_wait


async def slow_to_cancel() -> None:
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        await asyncio.sleep(0)  # one more turn of the loop before it has ended
        raise


async def loop_with_clean_up(turns: list[int]) -> None:
    while True:  # like the engine runner: sleep or wake, then clean the two up
        helper = asyncio.ensure_future(slow_to_cancel())
        try:
            await asyncio.sleep(0)
        finally:
            await cancel_and_wait((helper,))
        turns.append(1)


@pytest.mark.parametrize("after", range(8))  # every place in the loop the cancel can land
def test_a_cancel_is_never_lost_in_the_clean_up(after: int) -> None:
    async def main() -> None:
        turns: list[int] = []
        task = asyncio.ensure_future(loop_with_clean_up(turns))
        for _ in range(after + 1):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):  # a lost cancel: the loop runs on, TimeoutError
                await task
        assert task.cancelled()

    asyncio.run(main())


def test_what_a_task_raised_is_retrieved_and_the_rest_cancelled() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    async def main() -> tuple[bool, bool]:
        failed = asyncio.ensure_future(fails())
        waiting = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        await cancel_and_wait((failed, waiting))
        return failed.done() and not failed.cancelled(), waiting.cancelled()

    assert asyncio.run(main()) == (True, True)
