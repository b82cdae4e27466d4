"""The terminal side of a spoken conversation, shared by ``rxkit voice`` and ``rxkit voice --duplex``.

:func:`show_conversation` runs a voice or duplex graph and writes what is said
as it comes: ``you: ...`` for each final transcript, ``assistant: ...`` for
the reply as it streams, `` [interrupted]`` at the end of a reply cut by a
barge-in, one error line per in-band error; with ``latency``, one line per
turn on stderr, held until the reply's line is complete (they share a
terminal). :class:`SpokenSession` is ``rxkit chat``'s provider and store
selection without its text conversation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from rxkit.cli.session import ChatSession, report_error

__all__ = ["SpokenSession", "duplex_io", "show_conversation"]


def duplex_io(args: Any) -> dict[str, Any]:
    """Where a duplex conversation hears and speaks (files or devices), as ``rxkit voice`` was told."""
    return {
        "source": args.input,
        "sink": args.output,
        "realtime": args.realtime,
        "input_device": args.input_device,
        "output_device": args.output_device,
    }


class SpokenSession(ChatSession):
    """``rxkit chat``'s provider and store selection, without its text conversation."""

    def _conversation(self) -> Any:
        return None


async def show_conversation(
    graph: Any,
    out: TextIO,
    *,
    source: Path | None,
    joiner: str,
    latency: Callable[[Any], str] | None = None,
) -> int:
    """Run ``graph`` to its end, writing the conversation to ``out``; returns the exit status.

    ``joiner`` goes between two pieces of a reply (``" "`` between whole
    sentences; ``""`` between deltas that carry their own spaces). With a
    ``source`` file, no speech heard in it is exit status 1; so is an error.

    >>> status = await show_conversation(graph, sys.stdout, source=None, joiner=" ")  # doctest: +SKIP
    """
    from rxkit.elements import EndOfTurn, ErrorElement, Interrupt, SpeechStarted, TextDelta, Transcript
    from rxkit.telemetry.events import VoiceTurnLatency, default_bus

    heard = failed = replying = False
    held: list[str] = []  # latency lines that came while a reply's line was being written

    def show_latency(event: Any) -> None:
        assert latency is not None
        held.append(latency(event))
        if not replying:
            _write_held(held)

    unsubscribe = default_bus.subscribe(show_latency, VoiceTurnLatency) if latency is not None else None
    try:
        async for e in graph.astream():
            if isinstance(e, Transcript):
                if not e.final:
                    continue
                heard = True
                out.write(f"you: {e.text}\n")
            elif isinstance(e, TextDelta):  # the reply: sentences, or its transcript's deltas
                out.write((joiner if replying else "assistant: ") + e.text)
                replying = True
            elif isinstance(e, (EndOfTurn, Interrupt, SpeechStarted)):
                if replying:
                    out.write(" [interrupted]\n" if isinstance(e, Interrupt) else "\n")
                    out.flush()
                replying = False
                _write_held(held)  # the timing line, after the reply's own line
            elif isinstance(e, ErrorElement):
                failed = True
                report_error(e.error)
            else:
                continue
            out.flush()
    finally:
        if unsubscribe is not None:
            default_bus.flush()
            unsubscribe()
            if replying and held:  # the stream ended mid-reply: end its line before the timing
                out.write("\n")
                out.flush()
            _write_held(held)
    if source is not None and not heard:
        report_error(f"no speech was heard in {source}")
        return 1
    return 1 if failed else 0


def _write_held(lines: list[str]) -> None:
    if lines:
        sys.stderr.write("".join(lines))
        sys.stderr.flush()
        lines.clear()
