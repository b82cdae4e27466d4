"""Stage operators, imported as ``rxkit.operators``.

Each operator lives in its own private module and returns a
:class:`~rxkit.stage.Stage`, so it goes straight into ``pipe()``.
"""

__all__: list[str] = []
