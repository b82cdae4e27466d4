"""rxkit.gcpolicy.DeferredGC: the cyclic collector on a schedule; rxkit's streams leave no reference cycles.

Real collections on the real interpreter: a reference cycle (watched with a
weak reference) survives churn that CPython's own collector would have
cleaned up, and goes at the scheduled collection, or sooner once the
tracked objects have grown past the bound. The collector is put back as it
was, whatever happened. And 100 streams through the real provider against a
loopback server leave nothing for a collection to find, which is what makes
deferring it safe for rxkit's own work.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import weakref
from collections.abc import Iterator

import pytest

from rxkit.errors import RxkitError
from rxkit.gcpolicy import DeferredGC
from rxkit.providers.openai import OpenAIProvider
from rxkit.telemetry.events import EventBus
from rxkit.types import ChatRequest, Message
from tests.providers.openai_server import API_KEY, OpenAIServer, Reply, recording


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def make_cycle() -> weakref.ref[Node]:
    """Two objects referring to each other and nothing else: only the cyclic collector frees them."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def churn(n: int = 30_000) -> None:
    """Allocate and keep ``n`` tracked objects for a moment: far past CPython's collection thresholds."""
    kept = [[] for _ in range(n)]  # type: ignore[var-annotated]
    del kept


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    enabled = gc.isenabled()
    frozen = gc.get_freeze_count()
    yield
    assert gc.isenabled() == enabled, "the collector was not put back"
    assert gc.get_freeze_count() == frozen, "objects were left frozen"


def test_cpython_would_have_collected_the_cycle() -> None:
    """The control for the tests below: with the default collector, the same churn frees the cycle."""
    gc.collect()
    ref = make_cycle()
    churn()
    assert ref() is None


async def test_a_cycle_waits_for_the_interval_then_goes() -> None:
    with DeferredGC(interval=0.3, check_every=0.02) as deferred:
        assert not gc.isenabled()
        ref = make_cycle()
        churn()
        assert ref() is not None, "collected before its time: the automatic collector still ran"
        assert deferred.stats.collections == 0
        for _ in range(100):
            await asyncio.sleep(0.02)
            if ref() is None:
                break
        assert ref() is None
        assert deferred.stats.collections >= 1
        assert deferred.stats.collected >= 2  # the two nodes (and their __dict__s)
        assert 0 < deferred.stats.max_pause < 1


async def test_growth_past_the_bound_collects_before_the_interval() -> None:
    with DeferredGC(interval=3600, max_growth=20_000, check_every=0.02) as deferred:
        ref = make_cycle()
        await asyncio.sleep(0.1)
        assert deferred.stats.collections == 0  # no growth, no collection
        kept = [[] for _ in range(30_000)]  # type: ignore[var-annotated]
        for _ in range(50):
            await asyncio.sleep(0.02)
            if deferred.stats.collections:
                break
        assert deferred.stats.collections == 1
        assert ref() is None
        assert len(kept) == 30_000


async def test_start_freezes_what_exists_and_stop_puts_everything_back() -> None:
    assert gc.get_freeze_count() == 0
    deferred = DeferredGC().start()
    try:
        assert deferred.active
        assert gc.get_freeze_count() > 1000  # this test process's imports at least
        assert not gc.isenabled()
    finally:
        deferred.stop()
    assert not deferred.active
    deferred.stop()  # idempotent


async def test_a_program_that_froze_its_own_objects_keeps_them_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with DeferredGC():
            assert gc.get_freeze_count() == frozen  # not frozen again: stop could not tell ours apart
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


async def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    try:
        with DeferredGC():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


async def test_stop_ends_the_checks() -> None:
    deferred = DeferredGC(interval=0.01, check_every=0.01).start()
    await asyncio.sleep(0.1)
    deferred.stop()
    done = deferred.stats.collections
    assert done >= 1
    await asyncio.sleep(0.1)
    assert deferred.stats.collections == done
    assert deferred._handle is None


async def test_an_exception_in_the_block_still_restores() -> None:
    with pytest.raises(KeyError), DeferredGC():
        raise KeyError("boom")


async def test_one_at_a_time() -> None:
    with DeferredGC(), pytest.raises(RxkitError, match="already active"):
        DeferredGC().start()


def test_needs_a_running_loop() -> None:
    with pytest.raises(RxkitError, match="running asyncio event loop"):
        DeferredGC().start()


def test_one_left_running_by_an_ended_loop_is_replaced() -> None:
    async def forget() -> DeferredGC:
        return DeferredGC().start()  # never stopped: its loop ends under it

    stale = asyncio.run(forget())
    assert not gc.isenabled()

    async def again() -> None:
        with DeferredGC():
            assert not stale.active

    asyncio.run(again())


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": -1}, {"check_every": 0}, {"max_growth": 0}], ids=str)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="DeferredGC"):
        DeferredGC(**kwargs)  # type: ignore[arg-type]


async def test_rxkit_streams_leave_no_cyclic_garbage() -> None:
    """100 streams (text and tool calls) through the real provider: a deferred collection finds nothing."""
    request = ChatRequest(messages=[Message.user("What is the capital of France?")])
    async with OpenAIServer() as server:
        provider = OpenAIProvider("gpt-4o-mini", base_url=server.url, api_key=API_KEY, compatible=False, bus=EventBus())

        async def one() -> None:
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            provider.stream(request).subscribe(lambda e: None, done.set_exception, lambda: done.set_result(None))
            await done

        try:
            server.push(Reply(stream=recording("text")))
            await one()  # the session, the pool, first-use caches
            with DeferredGC(interval=3600) as deferred:
                deferred.collect()
                for name in ("text", "tools") * 50:
                    server.push(Reply(stream=recording(name)))
                    await one()
                gc.set_debug(gc.DEBUG_SAVEALL)
                try:
                    found = deferred.collect()
                    kinds = collections.Counter(type(o).__qualname__ for o in gc.garbage).most_common(8)
                finally:
                    gc.set_debug(0)
                    gc.garbage.clear()
                assert found == 0, f"100 streams left cyclic garbage: {kinds}"
                assert len(server.requests) == 101
        finally:
            await provider.aclose()
