"""Ready graphs, imported as ``rxkit.graphs``: text mode, voice (VAD) mode, duplex mode, and the settings they share."""

from rxkit.graphs._local_duplex import LocalDuplex
from rxkit.graphs._local_realtime import LocalRealtimeServer
from rxkit.graphs._settings import (
    AudioDevices,
    BargeInPolicy,
    ConversationSettings,
    SpeechRecognition,
    TurnDetection,
    VoiceSettings,
)
from rxkit.graphs.duplex import DUPLEX_PEERS, duplex_graph, duplex_session
from rxkit.graphs.text import Conversation, TextGraph, text_graph
from rxkit.graphs.voice import VoiceAssistant, VoiceGraph, transcript_and_reply, voice_graph, voice_settings

__all__: list[str] = []
__all__ += ["AudioDevices", "BargeInPolicy", "ConversationSettings", "SpeechRecognition", "TurnDetection"]  # settings
__all__ += ["VoiceSettings"]
__all__ += ["Conversation", "TextGraph", "text_graph"]  # text mode
__all__ += ["VoiceAssistant", "VoiceGraph", "transcript_and_reply", "voice_graph", "voice_settings"]  # voice (VAD) mode
__all__ += ["DUPLEX_PEERS", "duplex_graph", "duplex_session"]  # duplex mode: speech-to-speech sessions
__all__ += ["LocalDuplex", "LocalRealtimeServer"]  # the local duplex peer
