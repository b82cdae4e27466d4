"""The ``field_text`` stage: one string field of streaming typed values, as text deltas (to speak it, or show it)."""

from __future__ import annotations

from typing import Any

import reactivex
from reactivex import Observable, abc

from rxkit.elements import EndOfTurn, Interrupt, PartialValue, TextDelta, TypedValue
from rxkit.errors import ConfigError
from rxkit.graph.stage import Stage, StageKind

__all__ = ["field_text"]


def field_text(field: str) -> Stage[Any, Any]:
    """Turn the growing ``field`` of :class:`~rxkit.elements.PartialValue` elements into :class:`TextDelta` s.

    Each partial whose field grew emits the new text only, so that a
    ``sentence_chunker`` and ``synthesize`` after it speak the field while the
    model is still writing the others; once the model has moved on to
    another field, a space closes the field's last sentence. ``field`` is a dotted path
    (``"reply.text"``). The final :class:`~rxkit.elements.TypedValue` emits
    whatever the partials had not (the validated text). Other partials and
    values are dropped; control elements pass through, and end the turn's text.

    >>> stage = field_text("answer")
    """
    if not field or not all(field.split(".")):
        raise ConfigError(f"field_text needs a field name or dotted path, not {field!r}")
    path = field.split(".")

    def read(value: Any) -> Any:
        for part in path:
            if value is None:
                return None
            value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        return value

    def operator(source: Observable[Any]) -> Observable[Any]:
        def subscribe(observer: abc.ObserverBase[Any], scheduler: abc.SchedulerBase | None = None) -> Any:
            said = [""]  # the field's text already sent this turn
            done = [False]

            def on_next(element: Any) -> None:
                if isinstance(element, PartialValue | TypedValue):
                    text = read(element.value)
                    if isinstance(text, str) and len(text) > len(said[0]) and text.startswith(said[0]):
                        delta, said[0] = text[len(said[0]) :], text
                        observer.on_next(TextDelta(delta))
                    elif said[0] and not done[0]:
                        # Partials come in text order: another part changed, so the field's string has closed.
                        # A space ends its last sentence now (a sentence_chunker after this speaks it at once).
                        done[0] = True
                        observer.on_next(TextDelta(" "))
                    return
                if isinstance(element, TextDelta):
                    return
                if isinstance(element, EndOfTurn | Interrupt):
                    said[0], done[0] = "", False
                observer.on_next(element)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return reactivex.create(subscribe)

    return Stage("field_text", operator, StageKind.TRANSFORM, f"the text of {field!r} as it streams")
