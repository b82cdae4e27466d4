"""Run many prompts through a provider, a few at a time, with a progress bar.

>>> from rxkit.providers import create_provider
>>> mock = create_provider({"type": "mock", "extra": {"responses": ["a", "b"]}})
>>> [r.text for r in batch(mock, ["1", "2"], progress=False)]
['a', 'b']
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from rxkit.errors import RxkitError
from rxkit.providers.base import Provider
from rxkit.scheduling import run_blocking
from rxkit.telemetry.progress import progress as progress_bar
from rxkit.types import ChatRequest, ChatResponse, Message

__all__ = ["abatch", "batch"]


def _request(prompt: str | Message | ChatRequest, params: dict[str, Any]) -> ChatRequest:
    if isinstance(prompt, ChatRequest):
        return prompt
    message = prompt if isinstance(prompt, Message) else Message.user(prompt)
    return ChatRequest(messages=[message], **params)


async def abatch(
    provider: Provider,
    prompts: Sequence[str | Message | ChatRequest],
    *,
    concurrency: int = 4,
    return_exceptions: bool = False,
    progress: bool | None = None,
    **params: Any,
) -> list[Any]:
    """Answers in the order of ``prompts``; failures raise, or are returned with ``return_exceptions``."""
    limit = asyncio.Semaphore(max(1, concurrency))
    with progress_bar(f"{provider.name}: {len(prompts)} prompts", total=len(prompts), enabled=progress) as advance:

        async def one(prompt: str | Message | ChatRequest) -> ChatResponse | RxkitError:
            async with limit:
                try:
                    return await provider.chat(_request(prompt, params))
                except RxkitError as exc:
                    if not return_exceptions:
                        raise
                    return exc
                finally:
                    advance()

        return list(await asyncio.gather(*(one(p) for p in prompts)))


def batch(provider: Provider, prompts: Sequence[str | Message | ChatRequest], **kwargs: Any) -> list[Any]:
    """Blocking :func:`abatch` for scripts."""
    return run_blocking(lambda: abatch(provider, prompts, **kwargs))
