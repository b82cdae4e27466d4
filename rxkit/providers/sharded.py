"""A provider whose calls run in worker processes: more cores for many concurrent streams.

One Python process reads at most one core's worth of streams: at 1000
streams in flight (33,000 network chunks a second) its event loop is near
saturation and the time to first token queues up (benchmark B4).
:class:`ShardedProvider` builds the real provider from its spec in each of
``workers`` processes, sends each call to the worker with the fewest calls
in flight, and relays what the call produces: text pieces, tool calls, the
final response (usage, cost) and the provider's events, batched to at most
one pipe write per worker loop iteration. Streams stay hot observables in
this process (one call shared by every subscriber; the last one leaving
cancels the call in its worker, which aborts the HTTP request); errors
arrive typed, as the provider raised them.

::

    provider = ShardedProvider({"type": "openai", "model": "gpt-4o-mini", "extra": {"max_concurrency": 500}}, workers=2)
    provider = create_provider({"type": "sharded", "extra": {"workers": 2, "provider": {"type": "openai", ...}}})

The workers start with the first call (or ``await provider.start()``), each
is ``python -m rxkit.providers._shard_worker`` with the spec (API key
included) sent over its standard input, never on its command line or in
its environment; they stop on :meth:`aclose`, and die with this process.
A worker that exits mid-call fails its calls with a
:class:`~rxkit.errors.ProviderError` and is started again for the next.
Workers run rxkit code only, under :class:`~rxkit.gcpolicy.DeferredGC`
(``deferred_gc=False`` keeps CPython's collector). A worker builds its
provider with :func:`~rxkit.providers.registry.create_provider` in a fresh
interpreter: a provider type registered at run time in this process only is
unknown there, and the start fails saying so.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import pickle
import signal
import sys
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from reactivex import Observable

from rxkit.elements import Element
from rxkit.errors import ConfigError, ProviderError, describe_validation
from rxkit.providers._hot import HotStream, StreamAccumulator
from rxkit.providers._llama_server import die_with_parent
from rxkit.providers._shard_worker import frame
from rxkit.providers.base import Provider
from rxkit.providers.registry import ProviderSpec, create_provider, register_provider
from rxkit.telemetry.events import EventBus, default_bus
from rxkit.types import ChatRequest, CostInfo, Usage

__all__ = ["ShardedProvider"]

_STDERR_TAIL = 20  # lines of a worker's standard error kept for the error when it dies

_Calls = dict[int, tuple[StreamAccumulator, "asyncio.Future[Any]"]]  # call id -> (its accumulator, its end)


class _WorkerHandle:
    """One worker process, seen from here: its pipe, its calls in flight."""

    def __init__(self, provider: ShardedProvider, index: int) -> None:
        self.provider = provider
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.calls: _Calls = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
        self.served = 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Each process gets its own call table and ready future: a dead one's reader fails only its own calls.
        self.calls = {}
        ready: asyncio.Future[int] = loop.create_future()
        self.proc = proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rxkit.providers._shard_worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent(),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.tasks = [loop.create_task(self._read(proc, self.calls, ready)), loop.create_task(self._drain_stderr())]
        p = self.provider
        # Built under this provider's name, so its events, answers and errors name what the user called.
        spec = {**p._spec.model_dump(), "name": p.name}
        self.send((spec, p._spec.api_key, {"deferred_gc": p.deferred_gc}))
        try:
            await asyncio.wait_for(asyncio.shield(ready), p.start_timeout)
        except ProviderError:
            await self.stop()
            raise
        except TimeoutError:
            ready.cancel()  # nobody waits for it any more
            await self.stop()
            raise ProviderError(
                f"{p.name}: worker {self.index} did not start within {p.start_timeout:g} s{self._tail()}",
                provider=p.name,
            ) from None

    def send(self, message: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(frame(message))

    async def _read(
        self,
        proc: asyncio.subprocess.Process,
        calls: _Calls,
        ready: asyncio.Future[int],
    ) -> None:
        assert proc.stdout is not None
        stdout = proc.stdout
        bus = self.provider.bus
        loads = pickle.loads
        try:
            while True:
                head = await stdout.readexactly(4)
                body = await stdout.readexactly(int.from_bytes(head, "big"))
                for call_id, kind, value in loads(body):
                    if kind == "t":
                        entry = calls.get(call_id)
                        if entry is not None:
                            entry[0].text(value)
                    elif kind == "bus":
                        bus.publish(value)
                    else:
                        self._other(calls, ready, call_id, kind, value)
        except asyncio.IncompleteReadError:
            pass  # the worker exited
        except asyncio.CancelledError:  # stop(), or the loop is ending (asyncio.run returning): no worker outlives it
            transport = getattr(proc, "_transport", None)  # closing it closes the pipes and kills the worker
            if transport is not None:
                transport.close()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(proc.wait(), 2)  # reaped while its loop still runs
            raise
        await self._exited(proc, calls, ready)

    def _other(
        self,
        calls: _Calls,
        ready: asyncio.Future[int],
        call_id: int,
        kind: str,
        value: Any,
    ) -> None:
        if kind == "ready":
            if not ready.done():
                ready.set_result(value)
            return
        if kind == "fatal":
            if not ready.done():
                p = self.provider
                ready.set_exception(
                    ProviderError(
                        f"{p.name}: worker {self.index} could not build the provider: {value}", provider=p.name
                    )
                )
            return
        entry = calls.get(call_id)
        if entry is None:
            return
        acc, done = entry
        if kind == "c":
            call_ref, name, arguments = value
            acc.tool(call_id, call_ref, name, arguments)
            acc.tool_done(call_id)
        elif kind == "e":
            acc.emit(value)
        elif kind == "end":
            del calls[call_id]
            acc.finish(value)
            if not done.done():
                done.set_result(None)
        elif kind == "err":
            del calls[call_id]
            if not done.done():
                done.set_exception(value)

    async def _exited(
        self,
        proc: asyncio.subprocess.Process,
        calls: _Calls,
        ready: asyncio.Future[int],
    ) -> None:
        await proc.wait()
        if not ready.done():
            ready.set_exception(
                ProviderError(f"{self.provider.name}: worker {self.index} exited while starting{self._tail()}")
            )
        entries = list(calls.values())
        calls.clear()
        for _acc, done in entries:
            if not done.done():
                code = proc.returncode
                message = f"{self.provider.name}: worker {self.index} exited (status {code}) during the call"
                done.set_exception(ProviderError(message + self._tail(), provider=self.provider.name))

    async def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace").rstrip())

    def _tail(self) -> str:
        lines = [line for line in self.stderr if line.strip()]
        return f": {lines[-1]}" if lines else ""

    async def run(self, request: ChatRequest, acc: StreamAccumulator) -> None:
        """The runner of one call's HotStream: open it in the worker, relay until it ends."""
        call_id = next(self.provider._ids)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.calls[call_id] = (acc, done)
        self.served += 1
        self.send(("open", call_id, request))
        try:
            await done
        except asyncio.CancelledError:  # the last subscriber left: abort the request over there
            if self.calls.pop(call_id, None) is not None and self.alive:
                self.send(("cancel", call_id))
            raise

    def abandon(self) -> None:
        """Kill the worker without its loop (that loop has ended): a new loop starts a new worker."""
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)  # reaped by the ended loop's child watcher
        self.proc = None
        self.tasks = []
        self.calls = {}

    async def stop(self, grace: float = 5.0) -> None:
        proc = self.proc
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()  # a running worker closes its provider and exits
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for task in self.tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []


class ShardedProvider:
    """The provider built from ``spec``, its calls spread over ``workers`` processes (see the module)."""

    type = "sharded"

    def __init__(
        self,
        spec: ProviderSpec | Mapping[str, Any],
        *,
        workers: int = 2,
        name: str | None = None,
        bus: EventBus | None = None,
        deferred_gc: bool = True,
        start_timeout: float = 30.0,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"ShardedProvider needs at least one worker, got {workers}")
        if not isinstance(spec, ProviderSpec):
            try:
                spec = ProviderSpec(**spec)
            except ValidationError as exc:
                problems = describe_validation(exc, ProviderSpec.model_fields)
                raise ConfigError(f"invalid provider spec for the workers: {problems}") from None
            except TypeError as exc:  # not a mapping of field names
                raise ConfigError(f"invalid provider spec for the workers: {exc}") from None
        if spec.type == "sharded":
            raise ConfigError("a sharded provider's workers cannot be sharded themselves")
        # Built here too (no connection is opened until a call): the spec is checked now, in this
        # process, and identity, capabilities and prices come from it.
        self._shadow: Provider = create_provider(spec)
        self._spec = spec
        self.name = name or f"{self._shadow.name}-sharded"
        self.model = self._shadow.model
        self.capabilities = self._shadow.capabilities
        self.bus = bus if bus is not None else default_bus
        self.deferred_gc = deferred_gc
        self.start_timeout = start_timeout
        self._ids = itertools.count(1)
        self._workers = [_WorkerHandle(self, i) for i in range(workers)]
        self._starting: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def workers(self) -> int:
        return len(self._workers)

    def worker_pids(self) -> list[int | None]:
        """The workers' process ids (None for one not running)."""
        return [w.proc.pid if w.alive and w.proc is not None else None for w in self._workers]

    def calls_served(self) -> list[int]:
        """How many calls each worker was given."""
        return [w.served for w in self._workers]

    async def start(self) -> None:
        """Start every worker that is not running (the first call does it too)."""
        self._on_this_loop()
        await asyncio.gather(*(w.start() for w in self._workers if not w.alive))

    def _on_this_loop(self) -> None:
        """Workers belong to the loop that started them; used from another one, they are replaced."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            for worker in self._workers:
                worker.abandon()
            self._starting = None
        self._loop = loop

    def stream(self, request: ChatRequest) -> Observable[Element]:
        return HotStream(self._run, self.name, (request,))

    async def _run(self, request: ChatRequest, acc: StreamAccumulator) -> None:
        if self._loop is not asyncio.get_running_loop():
            self._on_this_loop()
        workers = self._workers
        if not all(w.alive for w in workers):
            if self._starting is None or self._starting.done():
                self._starting = asyncio.get_running_loop().create_task(self.start())
            await asyncio.shield(self._starting)
        worker = min(workers, key=lambda w: len(w.calls))
        await worker.run(request, acc)

    async def chat(self, request: ChatRequest) -> Any:
        from rxkit.providers.base import BaseProvider

        return await BaseProvider.chat(self, request)  # type: ignore[arg-type]

    def cost(self, usage: Usage, model: str | None = None) -> CostInfo:
        return self._shadow.cost(usage, model)

    async def aclose(self) -> None:
        """Stop the workers (each closes its provider first) and release the shadow provider."""
        self._on_this_loop()  # workers of an ended loop are killed, not waited for
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            await asyncio.gather(self._starting, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self._workers))
        await self._shadow.aclose()

    def __repr__(self) -> str:
        return f"ShardedProvider({self._shadow!r}, workers={len(self._workers)})"


def _sharded(spec: ProviderSpec) -> Any:
    inner = spec.extra.get("provider")
    if not isinstance(inner, Mapping):
        raise ConfigError("provider type 'sharded' needs extra.provider: the spec of the provider to run in workers")
    workers = spec.extra.get("workers", 2)
    if not isinstance(workers, int):
        raise ConfigError("provider type 'sharded': extra.workers must be a whole number")
    return ShardedProvider(
        inner, workers=workers, name=spec.name, deferred_gc=bool(spec.extra.get("deferred_gc", True))
    )


register_provider("sharded", _sharded)
