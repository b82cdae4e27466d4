"""The duplex session: one WebSocket to a speech-to-speech model, opened and closed with the graph.

:class:`DuplexSession` is the one small protocol every duplex peer speaks
(OpenAI Realtime, Gemini Live, the local peer): audio frames, text and
images in (:meth:`~DuplexSession.send_audio`, :meth:`~DuplexSession.send_text`,
:meth:`~DuplexSession.send_image`); audio, text deltas, transcripts of both
sides, tool calls and control elements out, through the ``emit`` callback
given to :meth:`~DuplexSession.run`. A wire protocol subclass supplies the
address, the setup messages and the event parser (the public hooks below);
this class owns the socket, the bounded send queue, reconnection, the turn
history, the truncation of an interrupted reply at what was played, and the
tool calls (run by :func:`rxkit.tools.execute_call`, as the text tool loop
runs them).

The hot path (one mic block in, one audio delta out) is a base64 encode, a
string join and a deque append in, a JSON parse and one element out: no
logging, no lock, no validation, no task per frame (one writer task drains
the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from rxkit.elements import (
    EndOfTurn,
    ErrorElement,
    ImageFrame,
    MessageElement,
    ToolCallElement,
)
from rxkit.errors import (
    AuthenticationError,
    ConfigError,
    MalformedEventError,
    ProviderError,
    ProviderHTTPError,
    RateLimitError,
    RxkitError,
    StreamInterruptedError,
    redact,
)
from rxkit.providers.client import HttpClient, HTTPOptions
from rxkit.state.base import StateStore
from rxkit.telemetry.events import EventBus, VoiceTurnLatency, default_bus
from rxkit.tools.approval import Approver
from rxkit.tools.execute import execute_call
from rxkit.tools.registry import ToolRegistry
from rxkit.types import ChatResponse, CostInfo, Message, ToolCall, Usage

__all__ = ["AudioPrices", "DuplexSession", "Emit"]

Emit = Callable[[Any], None]


@dataclass(frozen=True, slots=True)
class AudioPrices:
    """Prices per million tokens of a speech-to-speech model, audio and text apart (USD)."""

    text_input: float = 0.0
    audio_input: float = 0.0
    cached_input: float = 0.0
    text_output: float = 0.0
    audio_output: float = 0.0

    def cost(
        self, text_in: int, audio_in: int, text_out: int, audio_out: int, cached_text: int = 0, cached_audio: int = 0
    ) -> CostInfo:
        """The cost of one response's tokens; the cached counts are parts of ``text_in`` / ``audio_in``.

        >>> AudioPrices(text_input=4, audio_input=32, audio_output=64).cost(1000, 1000, 0, 1000).total
        0.1
        """
        m = 1e-6
        return CostInfo(
            input_cost=((text_in - cached_text) * self.text_input + (audio_in - cached_audio) * self.audio_input) * m,
            output_cost=(text_out * self.text_output + audio_out * self.audio_output) * m,
            cached_input_cost=(cached_text + cached_audio) * self.cached_input * m,
        )


class DuplexSession:
    """One speech-to-speech conversation over a WebSocket; subclasses speak a wire protocol.

    ``server_vad=True`` lets the model's own voice activity detection take
    turns; ``False`` means rxkit's VAD and turn detector decide, and
    :meth:`commit` ends the user's turn. ``tools`` run inside the session
    with the text tool loop's registry, ``tool_timeout``, ``approver`` and
    events. ``history`` seeds the conversation (a resumed session) and holds
    it as the user heard it; with a ``store`` (a :class:`~rxkit.state.base.StateStore`)
    the conversation ``session_id`` is loaded from it first, and each turn is
    saved to it as heard. ``reconnects``: how many times a dropped
    connection is opened again before the stream fails. ``finish_grace_s``: with
    the server's VAD, how long the session stays open after the input ended
    and the last reply is done (the server may still hear a turn in the last
    audio). ``max_queued``
    bounds the send queue in messages; a full queue drops the newest audio
    block (counted in ``dropped_audio``), never a control message.
    """

    name = "duplex"
    input_rate = 24000
    output_rate = 24000

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str | None = None,
        instructions: str = "",
        voice: str | None = None,
        server_vad: bool = True,
        tools: ToolRegistry | list[Any] | None = None,
        tool_timeout: float = 30.0,
        approver: Approver | None = None,
        history: list[Message] | None = None,
        store: StateStore | None = None,
        session_id: str = "duplex",
        reconnects: int = 2,
        max_queued: int = 500,
        finish_grace_s: float = 0.7,
        prices: AudioPrices | None = None,
        client: HttpClient | None = None,
        bus: EventBus | None = None,
    ) -> None:
        if max_queued < 8:
            raise ConfigError(f"{self.name}: max_queued must be at least 8, not {max_queued}")
        if reconnects < 0:
            raise ConfigError(f"{self.name}: reconnects must be zero or more, not {reconnects}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.instructions = instructions
        self.voice = voice
        self.server_vad = server_vad
        self.registry = tools if isinstance(tools, ToolRegistry) else ToolRegistry(list(tools or []))
        self.tool_timeout = tool_timeout
        self.approver = approver
        self.history: list[Message] = list(history or [])
        self.store = store
        self.session_id = session_id
        self._saved = 0  # messages of history already in the store
        self._changed: int | None = None  # a saved message changed since (a reply cut at what was heard)
        self._dirty = False
        self._saver: asyncio.Task[None] | None = None
        self.reconnects = reconnects
        self.max_queued = max_queued
        self.finish_grace_s = finish_grace_s
        self.prices = prices
        self.client = client or HttpClient(HTTPOptions())
        self._own_client = client is None
        self.bus = bus or default_bus
        self.dropped_audio = 0
        self.connections = 0  # sockets opened so far (1 + reconnections)
        self.usage = Usage()
        self.cost = CostInfo()
        self.emit: Emit = _ignore
        self._queue: deque[str | None] = deque()
        self._wake: asyncio.Event | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._finishing = False
        self._reconnect_now = False
        self._tools: set[asyncio.Task[None]] = set()
        # the reply in flight: its audio items and how much audio each got, its transcript
        self.reply_active = False
        self.reply_items: list[list[Any]] = []  # [item_id, received audio ms]
        self.reply_text: list[str] = []
        self.reply_calls: list[ToolCall] = []
        self._reply_history_index = -1  # where the last reply sits in history (truncation amends it)
        self._speech_end = 0.0
        self._turn = 0
        self._first_audio_seen = True
        self._cost = CostInfo()
        self._deferred: deque[str] = deque(maxlen=64)  # user texts that came during a reply
        self._audio_until = 0.0
        self._heard: float | None = None  # the part of the reply in flight that was played, once cut short
        self.user_speaking = False  # the server's VAD heard speech start and not yet stop
        self._grace: asyncio.TimerHandle | None = None
        self.awaiting_reply = False  # a reply was asked for (or the server's VAD ended a turn) and has not begun

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, base_url={self.base_url!r})"

    # --- hooks a wire protocol supplies ---

    def connect_url(self) -> str:
        """The WebSocket address (without the key)."""
        raise NotImplementedError

    def connect_headers(self) -> dict[str, str]:
        """Headers of the upgrade request (the key among them)."""
        return {}

    def setup_messages(self, resumed: bool) -> list[dict[str, Any]]:
        """Client events sent first on each connection; ``resumed`` on a reconnection."""
        raise NotImplementedError

    def audio_message(self, pcm: bytes) -> str:
        """The JSON text that carries one input audio block (PCM16 at ``input_rate``)."""
        raise NotImplementedError

    def handle(self, event: dict[str, Any]) -> None:
        """Act on one server event: emit elements, update the reply's bookkeeping."""
        raise NotImplementedError

    def text_messages(self, text: str) -> list[dict[str, Any]]:
        """Client events for a user text message that asks for a reply."""
        raise NotImplementedError

    def image_messages(self, image: ImageFrame) -> list[dict[str, Any]]:
        """Client events for an image the model should see."""
        raise NotImplementedError

    def cancel_messages(self) -> list[dict[str, Any]]:
        """Client events that stop the reply in flight (client-side barge-in)."""
        return []

    def commit_messages(self) -> list[dict[str, Any]]:
        """Client events that end the user's turn (rxkit's own turn detection)."""
        return []

    def truncate_messages(self, item_id: str, audio_end_ms: int) -> list[dict[str, Any]]:
        """Client events that cut the model's item at what the user heard."""
        return []

    def tool_result_messages(self, results: list[tuple[ToolCall, str]]) -> list[dict[str, Any]]:
        """Client events that hand tool results back and ask the model to go on."""
        raise NotImplementedError

    def closed_by_server(self, code: int, reason: str) -> None:
        """The server closed the socket with ``code`` and ``reason``: raise when that ends the session.

        1007 (invalid data) and 1008 (policy) mean the request or the key was
        refused: reconnecting would only be refused again.
        """
        if code in (1007, 1008):
            where = f"{self.name}: the server closed the session ({code}): {reason}"
            if "key" in reason.lower() or "auth" in reason.lower() or "permission" in reason.lower():
                raise AuthenticationError(where, provider=self.name, status=401)
            raise ProviderError(where, provider=self.name)

    def fatal_error(self, event: dict[str, Any]) -> bool:
        """True when a server error event ends the session (else it goes out in-band)."""
        return False

    # --- the input side: called from the graph (the loop's thread) ---

    def send_audio(self, pcm: bytes) -> None:
        """Queue one input audio block (PCM16 mono at ``input_rate``). Drops it when the queue is full."""
        queue = self._queue
        if len(queue) >= self.max_queued:
            self.dropped_audio += 1
            return
        queue.append(self.audio_message(pcm))
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()

    def send(self, events: list[dict[str, Any]]) -> None:
        """Queue client events (control messages: never dropped)."""
        for event in events:
            self._queue.append(orjson.dumps(event).decode())
        if self._wake is not None and events:
            self._wake.set()

    def send_text(self, text: str) -> None:
        """Say ``text`` to the model as the user, and ask for a reply."""
        self.history.append(Message.user(text))
        if self.reply_active or self.awaiting_reply or self._tools:
            self._deferred.append(text)  # one reply at a time (the servers refuse a second): asked when this one ends
            return
        self.awaiting_reply = True
        self.send(self.text_messages(text))

    def send_image(self, image: ImageFrame) -> None:
        """Show the model an image."""
        self.send(self.image_messages(image))

    def commit(self) -> None:
        """End the user's turn (rxkit's turn detector decided): the model answers."""
        self._speech_end = time.monotonic()
        self.awaiting_reply = True
        self.send(self.commit_messages())

    def interrupt(self) -> None:
        """Client-side barge-in: stop the reply in flight and its tool calls."""
        for task in list(self._tools):
            task.cancel()
        if self.reply_active:
            self.send(self.cancel_messages())

    def played(self, played_s: float, interrupted: bool) -> None:
        """The speaker's report on the last reply: ``played_s`` seconds of it were heard.

        An interrupted reply is truncated at that point, on the server (its
        item) and in :attr:`history` (the transcript cut to what was heard).
        """
        if not interrupted or not self.reply_items:
            if not self.reply_active:
                self.reply_items = []  # played to the end: nothing left to cut
            return
        left = int(played_s * 1000)
        total = sum(ms for _, ms in self.reply_items) or 1
        heard_ms = min(left, total)
        for item_id, ms in self.reply_items:
            if left < ms:
                self.send(self.truncate_messages(item_id, max(left, 0)))
            left -= ms
        if self.reply_active:  # the reply's end is still on its way: cut it when it comes
            self._heard = heard_ms / total
        else:
            i = self._reply_history_index
            if 0 <= i < len(self.history) and self.history[i].role == "assistant":
                text = self.history[i].text
                self.history[i] = Message.assistant(_cut_at_word(text, heard_ms / total))
                self._changed = i
                self._save_soon()
        self.reply_items = []

    def finish(self) -> None:
        """No more input: close once the reply in flight (and its tools) is done."""
        self._finishing = True
        self._next_text()

    @property
    def speaking(self) -> bool:
        """True while a reply is in flight or its audio may still be playing (what a barge-in cuts)."""
        return self.reply_active or (bool(self.reply_items) and time.monotonic() < self._audio_until + 0.5)

    @property
    def idle(self) -> bool:
        """True when no reply is in flight, none is awaited and no tool runs."""
        return not self.reply_active and not self.awaiting_reply and not self._tools and not self.user_speaking

    # --- the output side, for the protocol hooks ---

    def reply_started(self) -> None:
        """A reply begins (the model's first output of a response); more output of the same reply is a no-op
        (a late delta of a reply being cancelled must not take the place of the reply asked for next)."""
        if not self.reply_active:
            self.awaiting_reply = False
            self.reply_active = True
            self.reply_items = []
            self.reply_text = []
            self.reply_calls = []
            self._first_audio_seen = False

    def audio_received(self, item_id: str, nbytes: int) -> None:
        """Book ``nbytes`` of output audio for ``item_id`` (for truncation); the first of a turn is timed."""
        ms = nbytes * 1000 // (2 * self.output_rate)
        items = self.reply_items
        if items and items[-1][0] == item_id:
            items[-1][1] += ms
        else:
            items.append([item_id, ms])
        now = time.monotonic()
        self._audio_until = max(self._audio_until, now) + ms / 1000  # when its audio will have played, at best
        if not self._first_audio_seen:
            self._first_audio_seen = True
            if self._speech_end:
                latency = now - self._speech_end
                self.bus.publish(VoiceTurnLatency(turn=self._turn, total_s=latency, model_ttft_s=latency))
                self._speech_end = 0.0

    def user_speech_ended(self) -> None:
        """The user's speech ended (the server's VAD said so): the latency clock starts."""
        self._speech_end = time.monotonic()
        self._turn += 1
        self.user_speaking = False
        self.awaiting_reply = self.server_vad

    def user_speech_started(self) -> None:
        """The server's VAD heard the user start speaking (the session stays open for the turn)."""
        self.user_speaking = True

    def user_transcript(self, text: str) -> None:
        """The final transcript of the user's turn, into the history."""
        self.history.append(Message.user(text))

    def reply_done(self, usage: Usage | None, status: str = "completed", *, run_tools: bool = True) -> None:
        """The reply ended: history, usage and cost booked; tool calls run; EndOfTurn goes out."""
        self.reply_active = False
        text = "".join(self.reply_text)
        if self._heard is not None:
            text, self._heard = _cut_at_word(text, self._heard), None
        calls = self.reply_calls
        message = Message.assistant(text, list(calls) or None)
        self.history.append(message)
        self._reply_history_index = len(self.history) - 1
        self._save_soon()
        usage = usage or Usage()
        self.usage = self.usage + usage
        response = ChatResponse(
            message=message, model=self.model, provider=self.name, finish_reason=status, usage=usage, cost=self._cost
        )
        self.cost = self.cost + self._cost
        self._cost = CostInfo()
        self.emit(EndOfTurn(response))
        if calls and run_tools and status == "completed":
            task = asyncio.get_running_loop().create_task(self._run_tools(list(calls)))
            self._tools.add(task)
            task.add_done_callback(self._tool_done)
        else:
            self._next_text()

    def _next_text(self) -> None:
        if self._deferred and self.idle:
            self.awaiting_reply = True
            self.send(self.text_messages(self._deferred.popleft()))
        elif self._finishing and self.idle:
            self._close_soon()

    def book_cost(
        self, text_in: int, audio_in: int, text_out: int, audio_out: int, cached_text: int = 0, cached_audio: int = 0
    ) -> None:
        """Price the reply's tokens with ``prices`` (audio and text apart); carried on the next EndOfTurn."""
        if self.prices is not None:
            self._cost = self.prices.cost(text_in, audio_in, text_out, audio_out, cached_text, cached_audio)

    def tool_call(self, call: ToolCall) -> None:
        """The model asked for a tool (arguments complete): out as an element, run at the reply's end."""
        self.reply_calls.append(call)
        self.emit(ToolCallElement(call))

    def server_error(self, event: dict[str, Any], message: str, code: str = "") -> None:
        """A server error event: typed, redacted; in-band unless :meth:`fatal_error` says it ends the session."""
        where = f"{self.name}: server error{f' ({code})' if code else ''}: {message}"
        error: ProviderError
        if "rate_limit" in code or code in ("429", "RESOURCE_EXHAUSTED"):
            error = RateLimitError(where, provider=self.name, status=429)
        else:
            error = ProviderError(where, provider=self.name)
        if self.fatal_error(event):
            raise error
        if not self.reply_active:
            self.awaiting_reply = False  # a refused request: no reply will come for it
            self._next_text()
        self.emit(ErrorElement(error, self.name))

    def reconnect_soon(self) -> None:
        """Open a new connection now (a goAway: the server will cut this one)."""
        self._reconnect_now = True
        ws = self._ws
        if ws is not None:
            asyncio.get_running_loop().create_task(ws.close())

    # --- the connection ---

    async def run(self, emit: Emit) -> None:
        """Connect, send the setup, then read events into ``emit`` until :meth:`finish` or cancellation.

        A dropped connection is opened again (``reconnects`` times, resumed by
        the protocol); cancellation closes the socket and cancels the tools.
        """
        self.emit = emit
        self._wake = asyncio.Event()
        writer: asyncio.Task[None] | None = None
        attempts = 0
        if self.store is not None:
            saved = await self.store.load(self.session_id)
            self.history = [*saved, *self.history]
            self._saved = len(saved)
        seeded = bool(self.history)
        try:
            while True:
                resumed = self.connections > 0 or seeded  # a conversation to go on with
                ws = await self._connect()
                self._ws = ws
                self.connections += 1
                setup = [orjson.dumps(e).decode() for e in self.setup_messages(resumed)]
                self._queue.extendleft(reversed(setup))
                self._wake.set()
                writer = asyncio.get_running_loop().create_task(self._write(ws))
                dropped = await self._read(ws)
                writer.cancel()  # not awaited: a cancellation of run itself must not be swallowed there
                writer.add_done_callback(_retrieve)  # a send on the dropped socket failed: the reader saw the drop
                writer = None
                if not dropped:
                    return
                if self._reconnect_now:
                    self._reconnect_now = False
                else:
                    attempts += 1
                    if attempts > self.reconnects:
                        raise StreamInterruptedError(
                            f"{self.name}: connection lost after {self.reconnects} reconnects",
                            provider=self.name,
                            partial="".join(self.reply_text),
                        )
                if self.reply_active:  # the reply in flight is lost with its socket: keep what came
                    self.reply_done(None, "interrupted", run_tools=False)
        finally:
            if writer is not None:
                writer.cancel()
                writer.add_done_callback(_retrieve)
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
            for task in list(self._tools):
                task.cancel()
            last, self._ws = self._ws, None
            if last is not None and not last.closed:
                with contextlib.suppress(Exception):
                    await last.close()
            if self._own_client:
                await self.client.aclose()
            if self.store is not None:
                if self._saver is not None and not self._saver.done():
                    self._saver.cancel()
                with contextlib.suppress(Exception):
                    await self._sync()  # the last turn, as heard
            self.emit = _ignore

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        url = self.connect_url()
        try:
            return await self.client.session().ws_connect(
                url, headers=self.connect_headers(), heartbeat=30.0, max_msg_size=16 * 1024 * 1024
            )
        except aiohttp.WSServerHandshakeError as exc:
            where = f"{self.name}: WebSocket handshake refused with HTTP {exc.status}: {exc.message}"
            if exc.status in (401, 403):
                raise AuthenticationError(where, provider=self.name, status=exc.status) from None
            if exc.status == 429:
                raise RateLimitError(where, provider=self.name, status=429) from None
            raise ProviderHTTPError(where, provider=self.name, status=exc.status) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise ProviderError(f"{self.name}: cannot reach {redact(url)}: {type(exc).__name__}") from None

    async def _write(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        queue = self._queue
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            while queue:
                data = queue.popleft()
                if data is None:
                    await ws.close()
                    return
                await ws.send_str(data)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Read until the socket closes; True when it dropped (or must be reopened), False when we closed it."""
        handle = self.handle
        text, binary, error = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.ERROR
        while True:
            msg = await ws.receive()
            if msg.type is text or msg.type is binary:
                try:
                    event = orjson.loads(msg.data)
                except orjson.JSONDecodeError:
                    raise MalformedEventError(
                        f"{self.name}: a server message is not JSON: {str(msg.data)[:80]!r}",
                        provider=self.name,
                        line=str(msg.data)[:200],
                        partial="".join(self.reply_text),
                    ) from None
                if type(event) is not dict:
                    raise MalformedEventError(
                        f"{self.name}: a server message is not a JSON object", provider=self.name, line=str(msg.data)
                    )
                try:
                    handle(event)
                except (KeyError, TypeError, ValueError) as exc:  # a known event without its fields (or bad base64)
                    kind = event.get("type") or next(iter(event), "?")
                    raise MalformedEventError(
                        f"{self.name}: malformed {kind!r} event ({type(exc).__name__}: {exc})",
                        provider=self.name,
                        line=str(msg.data)[:200],
                        partial="".join(self.reply_text),
                    ) from None
            elif msg.type is error:
                break
            elif msg.type is aiohttp.WSMsgType.CLOSE:
                self.closed_by_server(int(msg.data or 0), str(msg.extra or ""))
                break
            else:  # CLOSING / CLOSED: we closed it
                break
        if self._reconnect_now:
            return True
        return not self._finishing or self.reply_active

    def _close_soon(self) -> None:
        """Close the socket once everything queued before has been sent (the writer meets the ``None``).

        With the server's VAD, only after ``finish_grace_s`` more without a turn: the server may still be
        hearing the last audio sent (nothing in the protocol says when it has).
        """
        if self.server_vad and self.finish_grace_s > 0:
            if self._grace is None:
                self._grace = asyncio.get_running_loop().call_later(self.finish_grace_s, self._grace_over)
            return
        self._close_now()

    def _grace_over(self) -> None:
        self._grace = None
        if self.idle:
            self._close_now()

    def _close_now(self) -> None:
        if self._ws is not None and not self._ws.closed and self._wake is not None:
            self._finishing = True
            self._queue.append(None)
            self._wake.set()

    async def _run_tools(self, calls: list[ToolCall]) -> None:
        async def one(call: ToolCall) -> tuple[ToolCall, str]:
            result = await execute_call(
                self.registry, call, default_timeout=self.tool_timeout, approver=self.approver, bus=self.bus
            )
            self.history.append(Message.tool(call.id, result.content, name=call.name, is_error=result.is_error))
            self.emit(MessageElement(self.history[-1]))
            return call, result.content

        results = await asyncio.gather(*(one(c) for c in calls))
        self.awaiting_reply = True
        self.send(self.tool_result_messages(list(results)))

    def _save_soon(self) -> None:
        if self.store is None:
            return
        self._dirty = True
        if self._saver is None or self._saver.done():
            self._saver = asyncio.get_running_loop().create_task(self._save())

    async def _save(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self._sync()
            except RxkitError as exc:  # the conversation goes on; the store's failure is told in-band
                self.emit(ErrorElement(exc, self.name))
                return

    async def _sync(self) -> None:
        """Bring the store up to :attr:`history`: a saved last message cut since is replaced, new ones appended."""
        store = self.store
        assert store is not None
        changed, self._changed = self._changed, None
        if changed is not None and changed == self._saved - 1:
            await store.replace_last(self.session_id, self.history[changed], expected_length=self._saved)
        new = self.history[self._saved :]
        if new:
            target = self._saved + len(new)
            await store.append_turn(self.session_id, new, expected_length=self._saved)
            self._saved = target

    def _tool_done(self, task: asyncio.Task[None]) -> None:
        self._tools.discard(task)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, Exception):
            self.emit(ErrorElement(error, self.name))
        self._next_text()


def _ignore(_: Any) -> None:
    pass


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # looked at, so asyncio does not log it as never retrieved


def _cut_at_word(text: str, fraction: float) -> str:
    """The first ``fraction`` of ``text``, cut back to a word boundary (what was heard of a spoken reply)."""
    if fraction >= 1:
        return text
    n = int(len(text) * max(fraction, 0.0))
    cut = text[:n]
    if n < len(text) and cut and not text[n].isspace():
        cut = cut.rsplit(" ", 1)[0] if " " in cut else ""
    return cut.rstrip()
