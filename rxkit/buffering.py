"""A bounded buffer with a declared overflow policy, used by every queue in rxkit.

Rules, the same everywhere:

* data elements are bounded by ``maxsize``; when full, the ``policy`` decides:
  ``drop_oldest``, ``drop_newest``, ``error`` (:class:`BufferOverflowError`)
  or ``wait`` (an async producer awaits :meth:`BoundedBuffer.put` until there
  is room; a synchronous push under ``wait`` is an error, since a push source
  cannot be paused);
* control elements (``element.control``) are never dropped; urgent ones
  (:func:`~rxkit.elements.is_urgent`, such as :class:`~rxkit.elements.Interrupt`) pass ahead
  of queued data. Control elements have their own bound (``maxsize``, at
  least 1024): a flood of them is a bug and raises.

How an async producer waits: a buffer can be made the *backpressure gate* of
the sources subscribed inside ``with backpressure(buffer):``. Such a source
(:func:`rxkit.scheduling.from_async_iterable`,
:func:`rxkit.scheduling.from_iterable_paced`) checks :attr:`BoundedBuffer.full`
before it pulls each item and, when full, awaits
:meth:`BoundedBuffer.wait_for_room`, so the producer itself stops (an SSE
reader stops reading its socket) while the consumer catches up. The gate is a
context variable, so tasks started by such a source inherit it.

>>> b = BoundedBuffer(2, "drop_oldest")
>>> for x in (1, 2, 3): _ = b.offer(x)
>>> b.drain(), b.dropped
([2, 3], 1)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from typing import Any, Generic, TypeVar

from rxkit.elements import is_urgent
from rxkit.errors import BufferOverflowError, ConfigError

__all__ = ["BoundedBuffer", "OverflowPolicy", "backpressure", "current_backpressure"]

_T = TypeVar("_T")
_MIN_CONTROL_BOUND = 1024  # a few EndOfTurns behind a 1-element buffer are normal, not a flood


class OverflowPolicy(StrEnum):
    """What a full buffer does with one more data element."""

    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"
    ERROR = "error"
    WAIT = "wait"


def _policy(value: OverflowPolicy | str) -> OverflowPolicy:
    try:
        return OverflowPolicy(value)
    except ValueError:
        names = ", ".join(p.value for p in OverflowPolicy)
        raise ConfigError(f"unknown overflow policy {value!r}; use one of: {names}") from None


class BoundedBuffer(Generic[_T]):
    """A FIFO of at most ``maxsize`` data elements plus never-dropped control elements."""

    __slots__ = (
        "maxsize",
        "policy",
        "dropped",
        "_data",
        "_urgent",
        "_controls",
        "_not_full",
        "_not_empty",
        "_resume_at",
    )

    def __init__(self, maxsize: int, policy: OverflowPolicy | str = OverflowPolicy.DROP_OLDEST) -> None:
        if maxsize < 1:
            raise ConfigError(f"buffer size must be at least 1, not {maxsize}")
        self.maxsize = maxsize
        self.policy = _policy(policy)
        self.dropped = 0
        control_bound = max(maxsize, _MIN_CONTROL_BOUND)
        # offer() keeps it to maxsize data + control_bound controls; maxlen is only a backstop.
        self._data: deque[Any] = deque(maxlen=maxsize + control_bound)
        self._urgent: deque[Any] = deque(maxlen=control_bound)
        self._controls = 0
        self._not_full: asyncio.Event | None = None
        self._not_empty: asyncio.Event | None = None
        self._resume_at = -1  # wake waiting producers once data_count <= this; -1: nobody waits

    def __len__(self) -> int:
        return len(self._data) + len(self._urgent)

    @property
    def data_count(self) -> int:
        """How many data (non-control) elements are queued."""
        return len(self._data) - self._controls

    @property
    def full(self) -> bool:
        """True when ``maxsize`` data elements are queued."""
        return len(self._data) - self._controls >= self.maxsize

    def offer(self, item: _T) -> bool:
        """Push without waiting; returns False if the item was dropped."""
        if getattr(item, "control", False):
            self._offer_control(item)
            return True
        if len(self._data) - self._controls >= self.maxsize:
            policy = self.policy
            if policy is OverflowPolicy.DROP_OLDEST:
                self._drop_oldest_data()
            elif policy is OverflowPolicy.DROP_NEWEST:
                self.dropped += 1
                return False
            elif policy is OverflowPolicy.WAIT:
                raise BufferOverflowError(
                    f"buffer full ({self.maxsize} elements) with overflow policy 'wait', and the producer "
                    "pushed without waiting: only sources that honour the backpressure gate can wait "
                    "(rxkit.scheduling.from_async_iterable); use a drop policy or a larger buffer"
                )
            else:
                raise BufferOverflowError(
                    f"buffer full ({self.maxsize} elements) with overflow policy {policy.value!r}"
                )
        self._data.append(item)
        if self._not_empty is not None:
            self._not_empty.set()
        return True

    def _offer_control(self, item: Any) -> None:
        if self._controls + len(self._urgent) >= max(self.maxsize, _MIN_CONTROL_BOUND):
            raise BufferOverflowError(f"more than {max(self.maxsize, _MIN_CONTROL_BOUND)} control elements queued")
        if is_urgent(item):
            self._urgent.append(item)
        else:
            self._data.append(item)
            self._controls += 1
        if self._not_empty is not None:
            self._not_empty.set()

    def _drop_oldest_data(self) -> None:
        data = self._data
        if self._controls == 0 or not getattr(data[0], "control", False):
            data.popleft()
        else:  # skip the controls at the head: they are never dropped
            for i, x in enumerate(data):
                if not getattr(x, "control", False):
                    del data[i]
                    break
        self.dropped += 1

    async def put(self, item: _T) -> None:
        """Push, waiting for room when the policy is ``wait``."""
        if self.policy is OverflowPolicy.WAIT and not getattr(item, "control", False):
            while len(self._data) - self._controls >= self.maxsize:
                await self._wait_until(self.maxsize - 1)
            self._data.append(item)
            if self._not_empty is not None:
                self._not_empty.set()
            return
        self.offer(item)

    async def wait_for_room(self) -> None:
        """Wait until the buffer has drained to half its bound (returns at once if it is not full).

        The half-way mark makes a waiting producer resume for a batch rather
        than wake up for every single element the consumer takes.
        """
        if len(self._data) - self._controls < self.maxsize:
            return
        low = self.maxsize // 2
        while len(self._data) - self._controls > low:
            await self._wait_until(low)

    async def _wait_until(self, level: int) -> None:
        if self._not_full is None:
            self._not_full = asyncio.Event()
        self._not_full.clear()
        self._resume_at = max(self._resume_at, level)
        await self._not_full.wait()

    def _wake_producers(self) -> None:
        if self._not_full is not None:
            self._resume_at = -1
            self._not_full.set()

    def poll(self) -> tuple[bool, Any]:
        """Take the next element: ``(True, item)``, or ``(False, None)`` if empty."""
        if self._urgent:
            return True, self._urgent.popleft()
        if not self._data:
            return False, None
        item = self._data.popleft()
        if getattr(item, "control", False):
            self._controls -= 1
        elif len(self._data) - self._controls <= self._resume_at:
            self._wake_producers()
        return True, item

    def peek(self) -> tuple[bool, Any]:
        """The element :meth:`poll` would take next, left in place: ``(True, item)`` or ``(False, None)``."""
        if self._urgent:
            return True, self._urgent[0]
        if self._data:
            return True, self._data[0]
        return False, None

    async def get(self) -> Any:
        """Wait for and take the next element."""
        while True:
            ok, item = self.poll()
            if ok:
                return item
            if self._not_empty is None:
                self._not_empty = asyncio.Event()
            self._not_empty.clear()
            await self._not_empty.wait()

    def drain(self) -> list[Any]:
        """Take everything queued, urgent controls first."""
        out = list(self._urgent)
        self._urgent.clear()
        out += self._data
        self._data.clear()
        self._controls = 0
        self._wake_producers()
        return out

    def clear_data(self) -> int:
        """Drop queued data (keep controls), e.g. on interrupt; returns how many were dropped."""
        kept = [x for x in self._data if getattr(x, "control", False)]
        n = len(self._data) - len(kept)
        self._data = deque(kept, maxlen=self._data.maxlen)
        self._wake_producers()
        return n

    def __iter__(self) -> Iterator[Any]:
        yield from self._urgent
        yield from self._data


_gate: ContextVar[BoundedBuffer[Any] | None] = ContextVar("rxkit_backpressure", default=None)


@contextmanager
def backpressure(buffer: BoundedBuffer[Any] | None) -> Iterator[None]:
    """Make the async sources subscribed inside this block wait for room in ``buffer``.

    >>> buf = BoundedBuffer(100, "wait")
    >>> with backpressure(buf):
    ...     pass  # subscribe here: from_async_iterable sources pause while buf is full
    """
    token = _gate.set(buffer)
    try:
        yield
    finally:
        _gate.reset(token)


def current_backpressure() -> BoundedBuffer[Any] | None:
    """The buffer an async source should wait on before each item, if any (see :func:`backpressure`)."""
    return _gate.get()
