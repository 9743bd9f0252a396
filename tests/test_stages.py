"""The threaded stage: what each queue policy keeps, how stop() ends it, and where errors surface."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from deepbg_live.stages import QueuePolicy, Stage


def _blocked_forever(release: threading.Event) -> Iterator[int]:
    yield 0
    release.wait()  # an upstream stuck until someone ends its wait (a camera read, a pacing wait)


def test_block_keeps_every_item_in_order_behind_a_slow_consumer() -> None:
    stage = Stage(lambda x: x * 10, range(50), maxsize=2, policy=QueuePolicy.BLOCK)
    got = []
    for item in stage:
        got.append(item)
        time.sleep(0.002)
    assert got == [i * 10 for i in range(50)] and stage.dropped == 0
    assert not stage.running  # iteration ended with upstream


def test_latest_keeps_the_newest_and_counts_what_it_dropped() -> None:
    def ticking() -> Iterator[int]:
        for i in range(40):
            time.sleep(0.005)  # a 200 Hz producer
            yield i

    stage = Stage(lambda x: x, ticking(), maxsize=1, policy=QueuePolicy.LATEST)
    got = []
    for item in stage:
        got.append(item)
        time.sleep(0.05)  # a 20 Hz consumer
    assert stage.dropped > 10 and len(got) + stage.dropped == 40
    assert got == sorted(got) and got[-1] == 39  # in order, and the newest always arrives


def test_stop_returns_promptly_while_the_producer_waits_for_room() -> None:
    stage = Stage(lambda x: x, iter(range(1000)), maxsize=1, name="test-full")
    next(iter(stage))
    time.sleep(0.1)  # the thread now waits for room in the full queue
    start = time.perf_counter()
    stage.stop()
    stage.stop()  # idempotent
    assert time.perf_counter() - start < 0.5 and not stage.running
    assert list(stage) == []


def test_stop_returns_promptly_while_upstream_is_blocked_and_ends_its_wait() -> None:
    release = threading.Event()
    stage = Stage(lambda x: x, _blocked_forever(release), on_stop=release.set)
    assert next(iter(stage)) == 0
    time.sleep(0.1)  # the thread is now inside upstream
    start = time.perf_counter()
    stage.stop()
    assert time.perf_counter() - start < 0.5 and not stage.running


def test_stop_wakes_a_consumer_waiting_in_another_thread() -> None:
    release = threading.Event()
    stage = Stage(lambda x: x, _blocked_forever(release), on_stop=release.set)
    got: list[int] = []
    consumer = threading.Thread(target=lambda: got.extend(stage))
    consumer.start()
    time.sleep(0.1)  # the consumer now waits for a second item
    stage.stop()
    consumer.join(1)
    assert not consumer.is_alive() and got == [0]


def test_stopping_the_last_stage_stops_the_chain_back_to_upstream() -> None:
    release = threading.Event()
    first = Stage(lambda x: x, _blocked_forever(release), on_stop=release.set)
    last = Stage(lambda x: x + 1, first)
    assert next(iter(last)) == 1
    start = time.perf_counter()
    last.stop()
    assert time.perf_counter() - start < 0.5 and not first.running and not last.running


def test_an_error_upstream_reaches_the_consumer_after_the_items_before_it() -> None:
    def failing() -> Iterator[int]:
        yield from range(3)
        raise OSError("disk vanished")

    got = []
    with pytest.raises(OSError, match="disk vanished"), Stage(lambda x: x, failing(), maxsize=4) as stage:
        for item in stage:
            got.append(item)
    assert got == [0, 1, 2]


def test_an_error_in_the_function_reaches_the_consumer_through_a_chain() -> None:
    def check(x: int) -> int:
        if x == 2:
            raise ValueError("bad item")
        return x

    got = []
    with pytest.raises(ValueError, match="bad item"), Stage(lambda x: x, Stage(check, range(5))) as stage:
        for item in stage:
            got.append(item)
    assert got == [0, 1]
