"""Duplex (speech-to-speech) sessions: realtime audio models over one WebSocket.

A :class:`DuplexSession` takes audio, text and images in and gives audio,
text, transcripts of both sides, tool calls and control elements out; the
:func:`rxkit.operators.duplex` stage runs one inside a graph (opened at
subscribe, closed at dispose)::

    from rxkit.duplex import OpenAIRealtime
    from rxkit.operators import duplex
    session = OpenAIRealtime("gpt-realtime", api_key=key)
    replies = mic_frames.pipe(duplex(session))   # AudioFrame, ReplyTranscript, Transcript, EndOfTurn, ...

Peers: :class:`OpenAIRealtime` (GA protocol), :class:`GeminiLive`
(``BidiGenerateContent``).
"""

from rxkit.duplex.gemini import GeminiLive
from rxkit.duplex.openai import GPT_REALTIME_PRICES, OpenAIRealtime
from rxkit.duplex.prices import AudioPrices
from rxkit.duplex.protocol import Emit
from rxkit.duplex.session import DuplexSession

__all__ = ["GPT_REALTIME_PRICES", "AudioPrices", "DuplexSession", "Emit", "GeminiLive", "OpenAIRealtime"]
