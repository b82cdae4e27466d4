"""Every place rxkit relies on a dependency's private internals, pinned.

rxkit reaches past a dependency's public API only where a benchmark shows
the gain or where the dependency has no public way to do the job. Each such
reach is listed here with a test that fails, naming the dependency and the
attribute, when an upgrade removes or changes it, so that the upgrade is
caught by the suite and not by a user. When one of these fails: switch the
named rxkit module to the public path given in the message (and re-run the
benchmark it names), or adapt the reach to the new internals.

Where, what, why (figures: tests/bench, one run, with against without):

- rxkit.graph._wiring, rxkit.graph._graph call reactivex's
  ``Observable._subscribe_core`` on stages' observables. B1: a stage adds no
  call per element (``subscribe()`` adds an AutoDetachObserver per stage):
  6.6 against 11.1 µs per element for a 10-stage chain.
- rxkit.providers._hot (HotStream) and rxkit.providers._timed (TimedStream)
  override ``Observable._subscribe_core``, reactivex's subclass hook: a
  stream holds no bound method of itself, so no reference cycle per call.
- rxkit.providers._push switches an ``aiohttp.StreamReader``'s ``__class__``
  and relies on aiohttp's parser calling ``feed_data``. B3: a token reaches
  the subscriber inside ``data_received``: 261-269 against 332-367 µs p50.
- rxkit.providers.client calls ``aiohttp.BaseConnector._close()``: aiohttp
  has no public synchronous close for a pool whose event loop has ended
  (then the public ``ClientSession.detach()``).
- rxkit.scheduling.loop_of reads reactivex's ``AsyncIOScheduler._loop``:
  reactivex has no public accessor for it.
- rxkit.graph.stage names a bare ``ops.map(f)`` stage ``map`` by looking into
  reactivex's ``curry_flip`` closure (falls back to the function's name).
- rxkit.audio.devices calls ``sounddevice._terminate`` and ``_initialize``:
  the only way to make PortAudio re-read the device list.
- rxkit.audio._espeak drives espeak-ng through ``pyttsx3.drivers._espeak``,
  ``engine.proxy._driver`` and ``EspeakDriver._onSynth`` (pyttsx3's
  ``save_to_file`` loses sentences under load).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aiohttp
import pytest
import reactivex
import reactivex.operators as ops
from aiohttp import web
from reactivex import Observable, abc
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxkit.graph import as_stage
from rxkit.providers._push import PushReader, push_off, push_on
from rxkit.scheduling import loop_of


def test_reactivex_subscribe_core_calls_the_subscribe_function_with_the_observer_itself() -> None:
    seen: list[tuple[Any, Any]] = []

    def subscribe(observer: Any, scheduler: Any = None) -> Any:
        seen.append((observer, scheduler))
        return reactivex.disposable.Disposable()

    observer, scheduler = object(), object()
    assert hasattr(Observable, "_subscribe_core"), (
        "reactivex no longer has Observable._subscribe_core, which rxkit.graph._wiring and rxkit.graph._graph "
        "call to subscribe a stage without the AutoDetachObserver of subscribe(); switch them to "
        "obs.subscribe(observer, scheduler=scheduler) and re-run B1 (tests/bench/bench_b1_graph.py)"
    )
    Observable(subscribe)._subscribe_core(observer, scheduler)  # type: ignore[arg-type]
    assert seen == [(observer, scheduler)], (
        f"reactivex's Observable._subscribe_core no longer passes the observer and scheduler straight to the "
        f"subscribe function (got {seen!r}); rxkit.graph._wiring relies on it: switch to obs.subscribe(...)"
    )


def test_reactivex_subscribe_goes_through_a_subclass_s_subscribe_core() -> None:
    class Stream(Observable[int]):
        def _subscribe_core(
            self, observer: abc.ObserverBase[int], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            observer.on_next(1)
            observer.on_completed()
            return reactivex.disposable.Disposable()

    got: list[int] = []
    Stream().subscribe(got.append)
    assert got == [1], (
        "reactivex's Observable.subscribe no longer calls a subclass's _subscribe_core, the hook that "
        "rxkit.providers._hot.HotStream and rxkit.providers._timed.TimedStream override; pass a subscribe "
        "function to Observable.__init__ instead (mind the reference cycle a bound method makes)"
    )


def test_reactivex_operators_are_curry_flip_closures_over_their_function() -> None:
    name = as_stage(ops.map(lambda x: x)).name
    assert name == "map", (
        f"a reactivex operator is no longer a curry_flip closure over a function of reactivex.operators "
        f"(ops.map(f) was labelled {name!r}); adapt rxkit.graph.stage._operator_name to how reactivex "
        f"{reactivex.__version__} builds its operators"
    )


def test_reactivex_asyncio_scheduler_keeps_its_loop_in_loop_attribute() -> None:
    loop = asyncio.new_event_loop()
    try:
        scheduler = AsyncIOScheduler(loop)
        assert getattr(scheduler, "_loop", None) is loop, (
            "reactivex's AsyncIOScheduler no longer keeps its event loop in ._loop, which "
            "rxkit.scheduling.loop_of reads (reactivex has no public accessor); use its public one if it "
            "gained one, else the new attribute"
        )
        assert loop_of(scheduler) is loop
    finally:
        loop.close()


def test_aiohttp_stream_reader_can_be_switched_to_push_reader() -> None:
    assert PushReader.__slots__ == () and aiohttp.StreamReader.__slots__, (
        "aiohttp.StreamReader lost its __slots__: rxkit.providers._push.PushReader, which switches a "
        "response's reader by __class__, must keep the same layout"
    )
    params = list(inspect.signature(aiohttp.StreamReader.feed_data).parameters)
    assert params[:2] == ["self", "data"], (
        f"aiohttp.StreamReader.feed_data changed its signature to {params}: rxkit.providers._push.PushReader "
        f"overrides it; adapt PushReader, or turn push reading off (can_push) and read with readany()"
    )
    for name in ("feed_eof", "set_exception", "read_nowait", "is_eof", "exception"):
        assert callable(getattr(aiohttp.StreamReader, name, None)), (
            f"aiohttp.StreamReader.{name} is gone; rxkit.providers._push uses it"
        )


class _Recorder:
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.eofs = 0
        self.errors: list[BaseException] = []

    def feed(self, data: bytes) -> None:
        self.data.append(data)

    def eof(self) -> None:
        self.eofs += 1

    def error(self, exc: BaseException) -> None:
        self.errors.append(exc)


async def test_aiohttp_http_parser_feeds_a_switched_reader_through_feed_data() -> None:
    """The behaviour push reading stands on: aiohttp's client parser calls ``content.feed_data``."""
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"first,")
        await release.wait()
        await resp.write(b"second")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as resp:
            sink = _Recorder()
            push_on(resp.content, sink)
            try:
                release.set()
                for _ in range(200):
                    if sink.eofs:
                        break
                    await asyncio.sleep(0.01)
            finally:
                push_off(resp.content)
            assert b"".join(sink.data) == b"first,second" and sink.eofs == 1, (
                f"aiohttp {aiohttp.__version__}'s client no longer delivers a response body through "
                f"StreamReader.feed_data/feed_eof (a switched reader got {sink.data!r}, eof {sink.eofs}); "
                f"rxkit.providers._push depends on it: turn push reading off in rxkit.providers._exchange "
                f"(read with readany) until it is adapted"
            )
    finally:
        await runner.cleanup()


async def test_aiohttp_connector_can_be_closed_without_awaiting() -> None:
    connector = aiohttp.TCPConnector()
    close = getattr(connector, "_close", None)
    assert callable(close), (
        f"aiohttp {aiohttp.__version__} has no BaseConnector._close(), which rxkit.providers.client uses to drop "
        f"the pool of a session whose event loop has ended (the public close() needs that loop)"
    )
    close()
    assert connector.closed
    await connector.close()  # the public close of an already closed connector: nothing left to await


def test_sounddevice_can_reinitialise_portaudio() -> None:
    try:
        import sounddevice as sd
    except OSError:  # PortAudio missing: rxkit.audio.devices reports that itself
        pytest.skip("PortAudio is not installed")
    for name in ("_terminate", "_initialize"):
        assert callable(getattr(sd, name, None)), (
            f"sounddevice {sd.__version__} has no {name}(), which rxkit.audio.devices.refresh_devices calls to "
            f"make PortAudio read the device list again; use sounddevice's public way if it gained one"
        )


def test_pyttsx3_espeak_internals_rxkit_drives() -> None:
    pyttsx3 = pytest.importorskip("pyttsx3")
    try:
        import pyttsx3.drivers._espeak as lib
        import pyttsx3.drivers.espeak as driver_module
    except (RuntimeError, OSError):
        pytest.skip("libespeak-ng is not installed")
    for name in ("t_espeak_callback", "SetSynthCallback", "Synth"):
        assert hasattr(lib, name), (
            f"pyttsx3.drivers._espeak has no {name}, which rxkit.audio._espeak uses to drive espeak-ng directly"
        )
    assert callable(getattr(driver_module.EspeakDriver, "_onSynth", None)), (
        "pyttsx3's EspeakDriver has no _onSynth, which rxkit.audio._espeak hands espeak-ng's audio back to "
        "when rxkit is not synthesizing"
    )
    assert "_driver" in inspect.getsource(pyttsx3.driver.DriverProxy.__init__), (
        "pyttsx3's DriverProxy no longer keeps its driver in ._driver, which rxkit.audio._espeak reads"
    )
