"""Conversation state stores behind one protocol.

:class:`MemoryStore` keeps history in the process; :class:`SQLiteStore` is
the durable embedded default (one file, a turn per transaction).
"""

from .base import StateStore
from .memory import MemoryStore
from .sqlite import SQLiteStore, default_state_path

__all__ = ["MemoryStore", "SQLiteStore", "StateStore", "default_state_path"]
