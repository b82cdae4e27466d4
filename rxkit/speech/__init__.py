"""Cloud speech services: streaming speech-to-text and text-to-speech over the network.

Each engine is an :class:`~rxkit.audio.stt.STT` or :class:`~rxkit.audio.tts.TTS`,
so it goes wherever the local ones go (``voice_graph(stt=..., tts=...)``,
:func:`~rxkit.operators.transcribe`, :func:`~rxkit.operators.synthesize`)::

    from rxkit.speech import DeepgramSTT, ElevenLabsTTS, OpenAISTT, OpenAITTS

    stt = DeepgramSTT(language="en")          # WebSocket: partial transcripts while the user speaks
    tts = OpenAITTS(voice="coral")            # SSE: audio plays while the rest is produced

============== ======================================= =================== =====================
engine         protocol                                key                 streams
============== ======================================= =================== =====================
OpenAISTT      POST /audio/transcriptions, SSE         OPENAI_API_KEY      text deltas
DeepgramSTT    WebSocket /v1/listen                    DEEPGRAM_API_KEY    audio in, text out
OpenAITTS      POST /audio/speech, SSE (or raw PCM)    OPENAI_API_KEY      audio out
ElevenLabsTTS  WebSocket /v1/text-to-speech/.../stream ELEVENLABS_API_KEY  audio out
============== ======================================= =================== =====================

Keys come from ``api_key=`` or the variable named; ``base_url=`` (or
``OPENAI_BASE_URL``, ``DEEPGRAM_BASE_URL``, ``ELEVENLABS_BASE_URL``) points an
engine at a proxy or a compatible server. The keys are secrets: no error,
event or log line shows them. Errors are the model providers' typed ones
(:class:`~rxkit.errors.AuthenticationError`, :class:`~rxkit.errors.RateLimitError`,
:class:`~rxkit.errors.StreamInterruptedError`, ...). Cancelling a turn (a
barge-in, disposing the graph) closes the request or socket at once.
"""

from __future__ import annotations

from rxkit.speech._engines import CloudSTT, CloudTTS
from rxkit.speech.deepgram import DeepgramSTT
from rxkit.speech.elevenlabs import ElevenLabsTTS
from rxkit.speech.openai import OpenAISTT, OpenAITTS

__all__ = ["CloudSTT", "CloudTTS", "DeepgramSTT", "ElevenLabsTTS", "OpenAISTT", "OpenAITTS"]
