"""The context of one conversation turn, as it flows through the text graph.

``load_state`` creates it from the user's message; ``validate_input`` checks
``user``; ``assemble_prompt`` fills ``request``; the ``llm`` stage streams the
answer and puts the final :class:`~rxkit.types.ChatResponse` in ``response``
(and on the :class:`~rxkit.elements.EndOfTurn` it emits, with ``turn`` set);
``save_state`` appends ``[user, *tool messages, assistant]`` to the store only
then, so a failed or cancelled turn leaves history as it was.
"""

from __future__ import annotations

from typing import Any

from rxkit.types import ChatRequest, ChatResponse, Message

__all__ = ["Turn"]


class Turn:
    """Mutable per-turn context. One object per turn, not per token."""

    __slots__ = ("session", "user", "history", "request", "response", "variables", "new_messages")

    def __init__(
        self,
        user: Message,
        *,
        session: str = "default",
        history: list[Message] | None = None,
        variables: dict[str, Any] | None = None,
    ) -> None:
        self.session = session
        self.user = user
        self.history: list[Message] = list(history or [])
        self.request: ChatRequest | None = None
        self.response: ChatResponse | None = None
        self.variables: dict[str, Any] = dict(variables or {})
        # Messages produced during the turn besides the final answer (tool calls
        # and results); saved together with it.
        self.new_messages: list[Message] = []

    def messages_to_save(self) -> list[Message]:
        out = [self.user, *self.new_messages]
        if self.response is not None:
            out.append(self.response.message)
        return out

    def __repr__(self) -> str:
        return f"Turn(session={self.session!r}, user={self.user.text[:40]!r}, history={len(self.history)})"
