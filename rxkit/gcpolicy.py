"""Garbage-collection pauses out of the streaming path, for a process that runs many streams at once.

CPython's cyclic garbage collector stops the whole process while it scans
every container object it tracks. A stream in flight holds about a hundred
of them (rxkit's call, aiohttp's response, reader, parser, timers, the
task), so at 1000 streams a process tracks some 150,000 objects with its
imports, and one full collection takes about 80 ms on a 2-core EPYC; under
that load CPython runs one every couple of seconds, and every stream whose
first token arrives meanwhile waits for it. That is the first thing that
bounds the p99 time to first token at this scale (benchmark B4 in
``tests/bench``: at 1000 streams in flight on 2 cores, deferring the
collector took rxkit's median p99 added TTFT from 60 ms to 19 ms; the rest
is one core near saturation).

None of that collecting finds anything in rxkit's own work: a stream leaves
no reference cycle behind (``tests/test_gcpolicy.py`` checks it against a
loopback server), so its objects are freed by reference counting the moment
it ends, collector or not. :class:`DeferredGC` takes the collector off the
hot path:

* it freezes what exists when it starts (imports, configuration, warm
  caches: :func:`gc.freeze`), which is never scanned again;
* it turns automatic collection off;
* it collects, from the event loop, every ``interval`` seconds, and sooner
  once the number of tracked objects has grown by ``max_growth`` since the
  last collection (cyclic garbage counts as growth, since reference
  counting never frees it: that bounds what it can hold).

So garbage that is part of a reference cycle (an exception kept with its
traceback, a user's own cyclic structures) waits up to ``interval`` seconds
or ``max_growth`` objects instead of being found within milliseconds; all
other memory is freed as before. Each deferred collection is still one
pause over the live objects, but once a minute rather than every couple of
seconds. This is the usual setting for latency-bound Python services; it is
process-wide, so it is opt-in, and :meth:`stop` (or leaving the ``with``
block) puts the collector back as it was::

    from rxkit.gcpolicy import DeferredGC

    async def serve():
        with DeferredGC():          # inside the running event loop
            await handle_many_streams()

:attr:`DeferredGC.stats` counts the collections it ran and their pauses.
"""

from __future__ import annotations

import asyncio
import gc
import time
from dataclasses import dataclass

from rxkit.errors import RxkitError

__all__ = ["DeferredGC", "GCStats"]

_active: DeferredGC | None = None


@dataclass(slots=True)
class GCStats:
    """What a :class:`DeferredGC` did: its collections, their pauses (s) and what they freed."""

    collections: int = 0
    collected: int = 0
    total_pause: float = 0.0
    max_pause: float = 0.0
    last_pause: float = 0.0


class DeferredGC:
    """Cyclic garbage collection on a schedule, off the streaming path (see the module's docstring).

    ``interval``: seconds between collections (default 60). ``max_growth``:
    collect sooner once the number of tracked objects has grown by this much
    since the last collection (default 500,000). ``check_every``: how often the
    event loop checks (default 1 s). ``freeze``: freeze what exists at start
    (default True).
    """

    def __init__(
        self,
        *,
        interval: float = 60.0,
        max_growth: int = 500_000,
        check_every: float = 1.0,
        freeze: bool = True,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"DeferredGC: interval must be positive, got {interval!r}")
        if not check_every > 0:
            raise ValueError(f"DeferredGC: check_every must be positive, got {check_every!r}")
        if max_growth < 1:
            raise ValueError(f"DeferredGC: max_growth must be at least 1, got {max_growth!r}")
        self.interval = float(interval)
        self.max_growth = int(max_growth)
        self.check_every = float(check_every)
        self.freeze = freeze
        self.stats = GCStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._was_enabled = False
        self._froze = False
        self._last = 0.0

    @property
    def active(self) -> bool:
        return self._loop is not None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> DeferredGC:
        """Take over collection: freeze, turn automatic collection off, check on ``loop`` (default: the running one)."""
        global _active
        if _active is not None and _active._loop is not None and _active._loop.is_closed():
            _active.stop()  # its loop ended without stopping it (no ``with``): nothing can check it any more
        if _active is not None:
            raise RxkitError("DeferredGC: another one is already active in this process (stop it first)")
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RxkitError(
                    "DeferredGC needs a running asyncio event loop to collect on (start it inside async code, "
                    "or pass loop=)"
                ) from None
        self._was_enabled = gc.isenabled()
        # Freezing twice would leave ours unfreezable without also thawing what the program froze itself.
        self._froze = self.freeze and gc.get_freeze_count() == 0
        if self._froze:
            gc.collect()  # what is garbage now should not be frozen with the rest
            gc.freeze()
        gc.disable()
        _active = self
        self._loop = loop
        self._last = time.monotonic()
        self._handle = loop.call_later(self.check_every, self._check)
        return self

    def stop(self) -> None:
        """Put the collector back as it was (idempotent). Call it on the loop's thread."""
        global _active
        if self._loop is None:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._loop = None
        _active = None
        if self._froze:
            gc.unfreeze()
            self._froze = False
        if self._was_enabled:
            gc.enable()

    def collect(self) -> int:
        """Collect now (what the schedule does); returns the number of unreachable objects found."""
        t0 = time.perf_counter()
        found = gc.collect()
        pause = time.perf_counter() - t0
        s = self.stats
        s.collections += 1
        s.collected += found
        s.total_pause += pause
        s.last_pause = pause
        s.max_pause = max(s.max_pause, pause)
        self._last = time.monotonic()
        return found

    def _check(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if gc.get_count()[0] >= self.max_growth or time.monotonic() - self._last >= self.interval:
            self.collect()
        self._handle = loop.call_later(self.check_every, self._check)

    def __enter__(self) -> DeferredGC:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return (
            f"DeferredGC({state}, interval={self.interval:g} s, max_growth={self.max_growth}, "
            f"collections={self.stats.collections}, max_pause={self.stats.max_pause * 1e3:.1f} ms)"
        )
