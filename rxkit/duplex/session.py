"""The duplex session: one WebSocket to a speech-to-speech model, opened and closed with the graph.

:class:`DuplexSession` is the one small protocol every duplex peer speaks
(OpenAI Realtime, Gemini Live, the local peer): audio frames, text and
images in (:meth:`~DuplexSession.send_audio`, :meth:`~DuplexSession.send_text`,
:meth:`~DuplexSession.send_image`); audio, text deltas, transcripts of both
sides, tool calls and control elements out, through the ``emit`` callback
given to :meth:`~DuplexSession.run`. A wire protocol subclass supplies the
address, the setup messages and the event parser (the hooks of
:class:`~rxkit.duplex.protocol.WireProtocol`); this class owns the socket
(:mod:`rxkit.duplex.connection`), the bounded send queue
(:class:`~rxkit.duplex.sending.SendQueue`), reconnection, the turn history
(kept as heard: :mod:`rxkit.duplex.history`), the truncation of an
interrupted reply at what was played, and the tool calls (run by
:func:`rxkit.tools.execute_call`, as the text tool loop runs them).

The hot path (one mic block in, one audio delta out) is a deque append in
(the writer task, woken once per batch, base64-encodes the block into one
reused buffer as it sends it), a JSON parse, a base64 decode and one element
out: no logging, no lock, no validation, no task per frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from rxkit.duplex.connection import open_socket, parse_message
from rxkit.duplex.history import StoreSync, cut_at_word
from rxkit.duplex.prices import AudioPrices, audio_prices
from rxkit.duplex.protocol import Emit, WireProtocol
from rxkit.duplex.sending import AudioEncoder, SendQueue
from rxkit.elements import (
    EndOfTurn,
    ErrorElement,
    ImageFrame,
    MessageElement,
    ToolCallElement,
)
from rxkit.errors import (
    ConfigError,
    MalformedEventError,
    ProviderError,
    RateLimitError,
    RxkitError,
    StreamInterruptedError,
)
from rxkit.providers.client import HttpClient, HTTPOptions
from rxkit.state.base import StateStore
from rxkit.telemetry.events import CostUnknown, EventBus, VoiceTurnLatency, default_bus
from rxkit.tools.approval import Approver
from rxkit.tools.base import ToolResult
from rxkit.tools.execute import execute_call
from rxkit.tools.registry import ToolRegistry
from rxkit.types import ChatResponse, CostInfo, Message, ToolCall, Usage

__all__ = ["WITHDRAWN", "AudioPrices", "DuplexSession", "Emit"]

WITHDRAWN = "cancelled: the model withdrew this call before it finished"  # a withdrawn call's result in history


class DuplexSession(WireProtocol):
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
    audio). ``prices``: the model's audio and text prices; by default looked up
    (genai-prices, then a small fallback table: :mod:`rxkit.duplex.prices`); a model
    with none has no cost (``None`` on each reply) and one
    :class:`~rxkit.telemetry.events.CostUnknown` event is published. ``max_queued``
    bounds the send queue in messages; a full queue drops the newest audio
    block (counted in ``dropped_audio``), never a control message.
    """

    name = "duplex"
    input_rate = 24000
    output_rate = 24000
    price_source: str | None = None  # the provider's id in genai-prices ("openai", "google")
    free = False  # a peer that costs nothing to run (a local one): $0, not unknown

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
        self._said_before_run = 0  # user texts said before run(): sent as messages, so never part of the seed
        self.store = store
        self.session_id = session_id
        self._store_sync: StoreSync | None = None
        if store is not None:
            self._store_sync = StoreSync(store, session_id, lambda: self.history, self._store_failed)
        self.reconnects = reconnects
        self.max_queued = max_queued
        self.finish_grace_s = finish_grace_s
        self.client = client or HttpClient(HTTPOptions())
        self._own_client = client is None
        self.bus = bus or default_bus
        if prices is None and self.price_source:
            prices = audio_prices(self.price_source, model)  # about 0.4 s once per process: not in the loop
        if prices is None and self.free:
            prices = AudioPrices()
        self.prices = prices
        if prices is None:
            reason = f"not in genai-prices ({self.price_source})" if self.price_source else "no prices= given"
            self.bus.publish(CostUnknown(provider=self.name, model=model, reason=reason))
        self.connections = 0  # sockets opened so far (1 + reconnections)
        self.usage = Usage()
        self.cost = CostInfo()
        self.emit: Emit = _ignore
        self.outbox = SendQueue(max_queued, self._audio_encoder())
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._finishing = False
        self._reconnect_now = False
        self._tools: set[asyncio.Task[None]] = set()
        self._calls_running: dict[str, asyncio.Task[ToolResult]] = {}  # each tool call being run, by call id
        # the reply in flight: its audio items and how much audio each got, its transcript
        self.reply_active = False
        self.reply_items: list[list[Any]] = []  # [item_id, received audio ms]
        self.reply_text: list[str] = []
        self.reply_calls: list[ToolCall] = []
        self._reply_history_index = -1  # where the last reply sits in history (truncation amends it)
        self._speech_end = 0.0
        self._turn = 0
        self._first_audio_seen = True
        self._cost: CostInfo | None = None if prices is None else CostInfo()
        self._deferred: deque[str] = deque(maxlen=64)  # user texts that came during a reply
        self._audio_until = 0.0
        self._heard: float | None = None  # the part of the reply in flight that was played, once cut short
        self.user_speaking = False  # the server's VAD heard speech start and not yet stop
        self._grace: asyncio.TimerHandle | None = None
        self.awaiting_reply = False  # a reply was asked for (or the server's VAD ended a turn) and has not begun

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model!r}, base_url={self.base_url!r})"

    # --- the input side: called from the graph (the loop's thread) ---

    def send_audio(self, pcm: bytes) -> None:
        """Queue one input audio block (PCM16 mono at ``input_rate``). Drops it when the queue is full."""
        self.outbox.put_audio(pcm)

    def send(self, events: list[dict[str, Any]]) -> None:
        """Queue client events (control messages: never dropped)."""
        self.outbox.put([orjson.dumps(event).decode() for event in events])

    def send_text(self, text: str) -> None:
        """Say ``text`` to the model as the user, and ask for a reply."""
        self.history.append(Message.user(text))
        if self.connections == 0:
            self._said_before_run += 1
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

    def discard(self) -> None:
        """rxkit's turn detector dropped the turn (too little speech): its audio is not part of the next one.

        OpenAI clears the input buffer; Gemini has no such message (the audio stays in the activity)."""
        messages = self.discard_messages()
        if messages:
            self.send(messages)

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
                self.history[i] = Message.assistant(cut_at_word(text, heard_ms / total))
                if self._store_sync is not None:
                    self._store_sync.changed_at(i)
                self._save_soon()
        self.reply_items = []

    def finish(self) -> None:
        """No more input: close once the reply in flight (and its tools) is done."""
        self._finishing = True
        self._next_text()

    @property
    def dropped_audio(self) -> int:
        """Input audio blocks dropped so far because the send queue was full."""
        return self.outbox.dropped_audio

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
            text, self._heard = cut_at_word(text, self._heard), None
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
        if self._cost is not None:
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

    def withdraw_tool_calls(self, ids: list[str]) -> None:
        """The server withdrew these tool calls (Gemini's ``toolCallCancellation``, when the user talked over
        the model): each one still running is cancelled, answered in the history as withdrawn and not sent back."""
        for call_id in ids:
            run = self._calls_running.get(call_id)
            if run is not None:
                run.cancel()

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
        outbox = self.outbox
        outbox.open()
        writer: asyncio.Task[None] | None = None
        attempts = 0
        if self._store_sync is not None:
            self.history = [*await self._store_sync.load(), *self.history]
        seeded = bool(self.history)
        try:
            while True:
                resumed = self.connections > 0 or seeded  # a conversation to go on with
                ws = await open_socket(self.client, self.connect_url(), self.connect_headers(), self.name)
                self._ws = ws
                self.connections += 1
                said, self._said_before_run = self._said_before_run, 0
                if said:  # queued (or deferred) as messages: seeding them too would say them twice
                    kept, self.history = self.history[-said:], self.history[:-said]
                    resumed = bool(self.history)
                    setup_events = self.setup_messages(resumed)
                    self.history += kept
                else:
                    setup_events = self.setup_messages(resumed)
                setup = [orjson.dumps(e).decode() for e in setup_events]
                outbox.put_first(setup)
                writer = asyncio.get_running_loop().create_task(outbox.write(ws))
                if self._finishing:  # finished while the last connection dropped: close this one once idle
                    self._next_text()
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
            if self._store_sync is not None:
                await self._store_sync.close()  # the last turn, as heard
            self.emit = _ignore

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Read until the socket closes; True when it dropped (or must be reopened), False when we closed it."""
        handle = self.handle
        text, binary, error = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.ERROR
        while True:
            msg = await ws.receive()
            if msg.type is text or msg.type is binary:
                event = parse_message(msg.data, self.name, self.reply_text)
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
        if self._ws is not None and not self._ws.closed and self.outbox.opened:
            self._finishing = True
            self.outbox.close_after()

    async def _run_tools(self, calls: list[ToolCall]) -> None:
        loop = asyncio.get_running_loop()
        runs = [
            loop.create_task(
                execute_call(self.registry, c, default_timeout=self.tool_timeout, approver=self.approver, bus=self.bus)
            )
            for c in calls
        ]
        for call, run in zip(calls, runs, strict=True):
            self._calls_running[call.id] = run
        try:
            await asyncio.wait(runs)
        finally:  # cancelled (a barge-in, the session ending): so are the calls, and they end before this does
            for run in runs:
                run.cancel()
            if not all(run.done() for run in runs):
                await asyncio.wait(runs)
            for call, run in zip(calls, runs, strict=True):
                if self._calls_running.get(call.id) is run:
                    del self._calls_running[call.id]
        results: list[tuple[ToolCall, str]] = []
        failed: BaseException | None = None
        for call, run in zip(calls, runs, strict=True):
            if run.cancelled():  # withdrawn by the server: answered to nobody, so the history stays whole
                content, is_error = WITHDRAWN, True
            elif (error := run.exception()) is not None:
                failed = failed or error
                continue
            else:
                result = run.result()
                content, is_error = result.content, result.is_error
                results.append((call, content))
            self.history.append(Message.tool(call.id, content, name=call.name, is_error=is_error))
            self.emit(MessageElement(self.history[-1]))
        if failed is not None:
            raise failed
        if not results:
            return  # every call withdrawn: the server goes on without an answer
        messages = self.tool_result_messages(results)
        self.awaiting_reply = True  # only once they are on their way: else a failure here leaves it set for good
        self.send(messages)

    def _audio_encoder(self) -> Callable[[bytes], bytes | bytearray]:
        if type(self).audio_message is WireProtocol.audio_message and self.audio_prefix:
            return AudioEncoder(self.audio_prefix, self.audio_suffix)  # the text built in one reused buffer
        audio_message = self.audio_message
        return lambda pcm: audio_message(pcm).encode()

    def _save_soon(self) -> None:
        if self._store_sync is not None:
            self._store_sync.save_soon()

    def _store_failed(self, error: RxkitError) -> None:
        self.emit(ErrorElement(error, self.name))

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
