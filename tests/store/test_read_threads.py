"""The reader threads: each call's result or error reaches its caller, on the caller's loop."""

import asyncio
import threading

import pytest

from postfach.store.sqlite_engine import _ReadThreads


@pytest.fixture
def threads():
    pool = _ReadThreads(3)
    yield pool
    pool.close()


async def test_results_and_errors_reach_their_callers(threads):
    def square(number: int) -> int:
        if number == 7:
            raise ValueError("seven")
        return number * number

    outcomes = await asyncio.gather(*(threads.run(square, n) for n in range(10)), return_exceptions=True)
    assert [o if isinstance(o, int) else str(o) for o in outcomes] == [0, 1, 4, 9, 16, 25, 36, "seven", 64, 81]


async def test_the_calls_run_off_the_event_loop_and_in_parallel(threads):
    arrived = threading.Barrier(3, timeout=5)  # passes only when three calls run at once
    names = await asyncio.gather(*(threads.run(lambda: (arrived.wait(), threading.current_thread().name)[1])
                                   for _ in range(3)))
    assert len(set(names)) == 3 and threading.current_thread().name not in names


async def test_a_caller_that_gave_up_is_left_alone(threads):
    release = threading.Event()
    call = threads.run(release.wait, 5)
    call.cancel()
    release.set()
    assert await threads.run(lambda: "still serving") == "still serving"
    assert call.cancelled()


def test_close_finishes_the_calls_already_made():
    threads = _ReadThreads(1)
    done = []

    async def main():
        loop_done = threads.run(lambda: done.append("first"))
        threads.run(lambda: done.append("second"))
        await loop_done

    asyncio.run(main())
    threads.close()
    assert done == ["first", "second"]
