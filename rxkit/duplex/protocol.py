"""The hooks a duplex wire protocol supplies (OpenAI Realtime, Gemini Live, ...): addresses, messages, events.

:class:`~rxkit.duplex.DuplexSession` inherits them and owns everything
else (the socket, the queue, the reply's bookkeeping); a protocol subclass
overrides them. Each hook is pure: state in, JSON-able client events out.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Any

from rxkit.elements import ImageFrame
from rxkit.errors import AuthenticationError, ProviderError
from rxkit.types import ToolCall

__all__ = ["Emit", "WireProtocol"]

Emit = Callable[[Any], None]


class WireProtocol:
    """The wire protocol's side of a duplex session: what to send, and what a server event means.

    >>> WireProtocol().cancel_messages()
    []
    """

    name = "duplex"
    input_rate = 24000
    output_rate = 24000
    audio_prefix = b""
    """The JSON text of an input audio event up to its base64 audio (see :meth:`audio_message`)."""
    audio_suffix = b""
    """The JSON text of an input audio event after its base64 audio."""

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
        """The JSON text that carries one input audio block (PCM16 at ``input_rate``).

        ``audio_prefix + base64(pcm) + audio_suffix``: a protocol sets those two,
        and the session's writer builds the same text in a reused buffer. A
        protocol whose audio events are not shaped so overrides this instead.
        """
        if not self.audio_prefix:
            raise NotImplementedError
        return (self.audio_prefix + binascii.b2a_base64(pcm, newline=False) + self.audio_suffix).decode("ascii")

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

    def discard_messages(self) -> list[dict[str, Any]]:
        """Client events that drop the audio of a turn rxkit's detector discarded (a cough, a click)."""
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
