"""Ready graphs, imported as ``rxkit.graphs``: text mode, voice (VAD) mode."""

from rxkit.graphs.text import Conversation, TextGraph, text_graph
from rxkit.graphs.voice import VoiceAssistant, VoiceGraph, transcript_and_reply, voice_graph

__all__: list[str] = []
__all__ += ["Conversation", "TextGraph", "text_graph"]  # text mode
__all__ += ["VoiceAssistant", "VoiceGraph", "transcript_and_reply", "voice_graph"]  # voice (VAD) mode
