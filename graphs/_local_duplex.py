"""The local duplex peer: the VAD-mode pieces behind the duplex protocol, with no key and no network.

:class:`LocalDuplex` is an :class:`~rxkit.duplex.OpenAIRealtime` session
whose server is rxkit's own, on a loopback port it opens for the run and
closes after (:class:`~rxkit.graphs.LocalRealtimeServer`): the user's audio
is recognised as it comes (pocketsphinx by default), a commit ends the turn
(rxkit's VAD and turn detector decide: ``server_vad`` is off), the text model
(the embedded local model by default) answers, each sentence is spoken
(espeak-ng by default) and streamed back as 24 kHz audio with its
transcript. Everything the cloud peers do on the client side (barge-in,
truncation, history as heard, the store) is the same code.

It lives with the graphs because its server composes operators (the
sentence chunker and the synthesizer), which a :mod:`rxkit.duplex` session may not.

>>> session = LocalDuplex(MockProvider(["Hi."]), stt=my_stt, tts=my_tts)  # doctest: +SKIP
>>> duplex_graph(session, source="question.wav", sink="reply.wav").run()  # doctest: +SKIP
"""

from __future__ import annotations

import secrets
from typing import Any

from rxkit.audio.stt import STT
from rxkit.audio.tts import TTS
from rxkit.duplex import OpenAIRealtime
from rxkit.errors import ConfigError
from rxkit.graphs._local_realtime import RATE, LocalRealtimeServer
from rxkit.providers.base import Provider

__all__ = ["LocalDuplex"]


class LocalDuplex(OpenAIRealtime):
    """A duplex session on this machine: speech recognition, a text model and speech synthesis.

    ``provider``: the text model (default: the embedded local model, started
    for the run and stopped after it). ``stt`` / ``tts``: speech engines
    (default: ``PocketSphinxSTT()`` and ``Pyttsx3TTS()``, made for each run
    and closed after it; engines passed in stay yours). Turns are taken by
    rxkit's VAD and turn detector, which :func:`~rxkit.graphs.duplex_graph`
    puts before the session. The other keywords are those of
    :class:`~rxkit.duplex.DuplexSession` (``instructions``, ``history``,
    ``store``, ``session_id``, ``bus``, ...). Tools are not offered yet.

    >>> LocalDuplex().name
    'local'
    """

    name = "local"
    input_rate = 16000  # what the VAD and the recognisers take: no conversion on the way in
    output_rate = RATE
    free = True  # nothing to pay: $0, not an unknown cost
    price_source = None

    def __init__(
        self, provider: Provider | None = None, *, stt: STT | None = None, tts: TTS | None = None, **options: Any
    ) -> None:
        if options.pop("server_vad", False):
            raise ConfigError("local: turns are taken by rxkit's VAD and turn detector; server_vad must be False")
        if options.get("tools"):
            raise ConfigError("local: tools are not offered by the local duplex peer yet")
        for remote in ("base_url", "api_key", "transcription_model", "prices"):
            if options.pop(remote, None) is not None:
                raise ConfigError(f"local: {remote} is for a remote peer; the local peer makes its own")
        model = options.pop("model", None) or (provider.model if provider is not None else "local")
        # A key of its own for each session: nothing else on this machine can use its loopback server.
        super().__init__(
            model,
            base_url="ws://127.0.0.1:0/v1",
            api_key=secrets.token_hex(16),
            transcription_model="local",
            prices=None,
            server_vad=False,
            **options,
        )
        self.provider = provider
        self.stt = stt
        self.tts = tts

    def setup_messages(self, resumed: bool) -> list[dict[str, Any]]:
        events = super().setup_messages(resumed)
        events[0]["session"]["audio"]["input"]["format"]["rate"] = self.input_rate
        return events

    async def run(self, emit: Any) -> None:
        """Start the engines and the loopback server, run the session on it, then stop them all."""
        owned: list[Any] = []
        provider = self.provider
        server: LocalRealtimeServer | None = None
        try:
            stt, tts = self.stt, self.tts
            if stt is None:
                from rxkit.audio.stt import PocketSphinxSTT

                stt = PocketSphinxSTT()
                owned.append(stt)
            if tts is None:
                from rxkit.audio.tts import Pyttsx3TTS

                tts = Pyttsx3TTS()
                owned.append(tts)
            if provider is None:
                from rxkit.providers.local import LocalProvider

                provider = LocalProvider()
            server = LocalRealtimeServer(provider, stt, tts, api_key=self.api_key or "")
            self.base_url = await server.start()
            await super().run(emit)
        finally:
            if server is not None:
                await server.stop()
            if provider is not None and self.provider is None:
                await provider.aclose()
            for engine in reversed(owned):
                engine.close()
