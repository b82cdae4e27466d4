"""Ready graphs, imported as ``rxkit.graphs``: text mode, voice (VAD) mode."""

__all__: list[str] = []
