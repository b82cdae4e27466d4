"""Conversation state stores behind one protocol.

:class:`MemoryStore` keeps history in the process; :class:`SQLiteStore` is
the durable embedded default (one file, a turn per transaction);
:class:`RedisStore` shares history between processes (``rxkit[redis]``).
"""

from rxkit.state.base import StateStore
from rxkit.state.memory import MemoryStore
from rxkit.state.redis import RedisStore
from rxkit.state.sqlite import SQLiteStore, default_state_path

__all__ = ["MemoryStore", "RedisStore", "SQLiteStore", "StateStore", "default_state_path"]
