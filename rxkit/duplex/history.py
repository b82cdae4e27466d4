"""The conversation as the user heard it: a cut reply's text, and the state store kept up to date."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from rxkit.errors import RxkitError
from rxkit.state.base import StateStore
from rxkit.types import Message

__all__ = ["StoreSync", "cut_at_word"]


def cut_at_word(text: str, fraction: float) -> str:
    """The first ``fraction`` of ``text``, cut back to a word boundary (what was heard of a spoken reply).

    >>> cut_at_word("one two three four", 0.5)
    'one two'
    >>> cut_at_word("one two three four", 0.55)
    'one two'
    >>> cut_at_word("one two", 1.0)
    'one two'
    """
    if fraction >= 1:
        return text
    n = int(len(text) * max(fraction, 0.0))
    cut = text[:n]
    if n < len(text) and cut and not text[n].isspace():
        cut = cut.rsplit(" ", 1)[0] if " " in cut else ""
    return cut.rstrip()


class StoreSync:
    """Keeps a :class:`~rxkit.state.base.StateStore` up to a session's history, one save task at a time.

    ``history`` gives the list to save (the session's, as heard); ``failed``
    is told a store's failure (the conversation goes on). New messages are
    appended; a saved last message cut since (:meth:`changed_at`) is replaced.
    """

    def __init__(
        self,
        store: StateStore,
        session_id: str,
        history: Callable[[], list[Message]],
        failed: Callable[[RxkitError], None],
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.saved = 0  # messages of history already in the store
        self._history = history
        self._failed = failed
        self._changed: int | None = None  # a saved message changed since (a reply cut at what was heard)
        self._dirty = False
        self._saver: asyncio.Task[None] | None = None

    async def load(self) -> list[Message]:
        """The conversation saved so far (counted as saved)."""
        saved = await self.store.load(self.session_id)
        self.saved = len(saved)
        return saved

    def changed_at(self, index: int) -> None:
        """The message at ``index`` was rewritten (a reply cut at what was heard)."""
        self._changed = index

    def save_soon(self) -> None:
        """Save what changed, in a task of its own (one at a time; a change meanwhile is saved after it)."""
        self._dirty = True
        if self._saver is None or self._saver.done():
            self._saver = asyncio.get_running_loop().create_task(self._save())

    async def close(self) -> None:
        """The last turn, as heard, saved (a store's failure here is not raised)."""
        if self._saver is not None and not self._saver.done():
            self._saver.cancel()
        with contextlib.suppress(Exception):
            await self.sync()

    async def _save(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self.sync()
            except RxkitError as exc:  # the conversation goes on; the store's failure is told in-band
                self._failed(exc)
                return

    async def sync(self) -> None:
        """Bring the store up to the history: a saved last message cut since is replaced, new ones appended."""
        store = self.store
        history = self._history()
        changed, self._changed = self._changed, None
        if changed is not None and changed == self.saved - 1:
            await store.replace_last(self.session_id, history[changed], expected_length=self.saved)
        new = history[self.saved :]
        if new:
            target = self.saved + len(new)
            await store.append_turn(self.session_id, new, expected_length=self.saved)
            self.saved = target
