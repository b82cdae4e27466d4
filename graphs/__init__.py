"""Ready graphs, imported as ``rxkit.graphs``: text mode, voice (VAD) mode."""

from .text import Conversation, TextGraph, text_graph

__all__: list[str] = []
__all__ += ["Conversation", "TextGraph", "text_graph"]  # text mode
