"""Fallback and load balancing across providers; each is itself a Provider.

* :class:`FallbackProvider` tries providers in order and moves to the next
  when one fails before its first token (after that the error stands: the
  user has already seen part of an answer).
* :class:`RoundRobinProvider` spreads calls evenly.
* :class:`WeightedProvider` spreads calls in proportion to weights (smooth
  weighted round robin: ``{a: 3, b: 1}`` gives ``a a b a`` and repeats).

::

    provider = FallbackProvider([OpenAIProvider("gpt-4o-mini"), AnthropicProvider("claude-haiku-4-5")])
    provider = WeightedProvider([east, west], weights=[3, 1])

From config: ``{"type": "fallback", "extra": {"providers": [{...spec...}, ...]}}``
(``round-robin`` and ``weighted`` likewise, ``weighted`` with ``"weights": [...]``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import SerialDisposable

from rxkit.elements import Element
from rxkit.errors import ConfigError, ProviderError
from rxkit.providers.base import Capabilities, Provider
from rxkit.providers.registry import ProviderSpec, create_provider, register_provider
from rxkit.types import ChatRequest, ChatResponse, CostInfo, Usage

__all__ = ["FallbackProvider", "RoundRobinProvider", "WeightedProvider"]


def _common_capabilities(providers: Sequence[Provider]) -> Capabilities:
    def every(flag: str) -> bool:
        return all(getattr(p.capabilities, flag) for p in providers)

    modes = {p.capabilities.structured_output for p in providers}  # a native mode only if all share it
    return Capabilities(
        tools=every("tools"),
        vision=every("vision"),
        audio=every("audio"),
        streaming_input=every("streaming_input"),
        json_mode=every("json_mode"),
        structured_output=modes.pop() if len(modes) == 1 else "",
    )


class _Group:
    """What every multi-provider shares: identity, cost by model, close."""

    def __init__(self, providers: Sequence[Provider], name: str) -> None:
        if not providers:
            raise ConfigError(f"{name} needs at least one provider")
        self.providers = list(providers)
        self.name = name
        self.model = self.providers[0].model
        self.capabilities = _common_capabilities(self.providers)

    def cost(self, usage: Usage, model: str | None = None) -> CostInfo | None:
        for p in self.providers:
            if model is None or p.model == model or (model and model.startswith(p.model) and p.model):
                return p.cost(usage, model)
        return self.providers[0].cost(usage, model)

    async def aclose(self) -> None:
        await asyncio.gather(*(p.aclose() for p in self.providers))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.providers!r})"


class FallbackProvider(_Group):
    """The first provider that answers; a failure before the first token moves on to the next.

    ``fallback_on`` lists the error types that move on (default: any provider error).
    """

    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        name: str = "fallback",
        fallback_on: tuple[type[BaseException], ...] = (ProviderError,),
    ) -> None:
        super().__init__(providers, name)
        self.fallback_on = fallback_on

    def stream(self, request: ChatRequest) -> Observable[Element]:
        return _FallbackStream(self, request).observable

    async def chat(self, request: ChatRequest) -> ChatResponse:
        error: BaseException | None = None
        for p in self.providers:
            try:
                return await p.chat(request)
            except self.fallback_on as exc:
                error = exc
        assert error is not None
        raise error


class _FallbackStream:
    """Hot like the streams it wraps: subscribers share each provider's call."""

    def __init__(self, owner: FallbackProvider, request: ChatRequest) -> None:
        self.owner = owner
        self.request = request
        self.index = 0  # the provider now in use; only ever moves forward
        self._streams: dict[int, Observable[Element]] = {}
        self.observable: Observable[Element] = Observable(self._subscribe)

    def _stream(self, i: int) -> Observable[Element]:
        if i not in self._streams:
            self._streams[i] = self.owner.providers[i].stream(self.request)
        return self._streams[i]

    def _subscribe(
        self, observer: abc.ObserverBase[Element], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        serial = SerialDisposable()
        last = len(self.owner.providers) - 1

        def attach(i: int) -> None:
            started = False

            def on_next(element: Element) -> None:
                nonlocal started
                started = True
                observer.on_next(element)

            def on_error(error: Exception) -> None:
                if not started and i < last and isinstance(error, self.owner.fallback_on):
                    self.index = max(self.index, i + 1)
                    attach(self.index)
                else:
                    observer.on_error(error)

            serial.disposable = self._stream(i).subscribe(on_next, on_error, observer.on_completed, scheduler=scheduler)

        attach(self.index)
        return serial


class RoundRobinProvider(_Group):
    """Each call goes to the next provider in turn."""

    def __init__(self, providers: Sequence[Provider], *, name: str = "round-robin") -> None:
        super().__init__(providers, name)
        self._next = 0

    def pick(self) -> Provider:
        """The provider for the next call."""
        p = self.providers[self._next % len(self.providers)]
        self._next += 1
        return p

    def stream(self, request: ChatRequest) -> Observable[Element]:
        return self.pick().stream(request)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self.pick().chat(request)


class WeightedProvider(RoundRobinProvider):
    """Calls spread in proportion to ``weights`` (smooth weighted round robin, as in nginx)."""

    def __init__(self, providers: Sequence[Provider], weights: Sequence[float], *, name: str = "weighted") -> None:
        super().__init__(providers, name=name)
        if len(weights) != len(self.providers) or any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ConfigError("weights must be one non-negative number per provider, not all zero")
        self.weights = list(weights)
        self._current = [0.0] * len(self.weights)

    def pick(self) -> Provider:
        total = sum(self.weights)
        for i, w in enumerate(self.weights):
            self._current[i] += w
        best = max(range(len(self._current)), key=self._current.__getitem__)
        self._current[best] -= total
        return self.providers[best]


def _members(spec: ProviderSpec) -> list[Provider]:
    specs = spec.extra.get("providers")
    if not isinstance(specs, list) or not specs:
        raise ConfigError(f"provider type {spec.type!r} needs extra.providers: a list of provider specs")
    return [create_provider(s) for s in specs]


def _fallback(spec: ProviderSpec) -> Any:
    return FallbackProvider(_members(spec), name=spec.name or "fallback")


def _round_robin(spec: ProviderSpec) -> Any:
    return RoundRobinProvider(_members(spec), name=spec.name or "round-robin")


def _weighted(spec: ProviderSpec) -> Any:
    weights = spec.extra.get("weights")
    if not isinstance(weights, list):
        raise ConfigError("provider type 'weighted' needs extra.weights: one number per provider")
    return WeightedProvider(_members(spec), weights, name=spec.name or "weighted")


register_provider("fallback", _fallback)
register_provider("round-robin", _round_robin)
register_provider("weighted", _weighted)
