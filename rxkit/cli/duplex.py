"""``rxkit voice --duplex``: talk with a speech-to-speech model (OpenAI Realtime, Gemini Live) over one WebSocket.

::

    rxkit voice --duplex                                    # OpenAI Realtime on the default mic and speaker
    rxkit voice --duplex --provider gemini-live --model gemini-live-2.5-flash-preview
    rxkit voice --duplex --input question.wav --output reply.wav
    rxkit voice --duplex --provider local                   # offline: the VAD-mode pieces and the local model

The key comes from ``OPENAI_API_KEY`` (``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``
for Gemini); ``--base-url`` points at another server (``ws://`` or ``wss://``).
Prints both sides' transcripts as they come; ``[interrupted]`` marks a reply
cut by a barge-in. Exit status as for ``rxkit voice``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, TextIO

from rxkit.cli.session import report_error
from rxkit.errors import ConfigError

__all__ = ["run_duplex"]


def run_duplex(args: argparse.Namespace) -> int:
    """Run ``rxkit voice --duplex`` with a remote peer (``--provider local`` is run by ``rxkit voice`` itself)."""
    from rxkit.graphs.duplex import DUPLEX_PEERS, duplex_graph

    peer = args.provider or "openai-realtime"
    if peer not in DUPLEX_PEERS:
        raise ConfigError(f"--duplex --provider must be one of {', '.join(DUPLEX_PEERS)}, not {peer!r}")
    graph = duplex_graph(
        peer,
        source=args.input,
        sink=args.output,
        realtime=args.realtime,
        input_device=args.input_device,
        output_device=args.output_device,
        model=args.model,
        base_url=args.base_url,
        instructions=args.system or "",
        voice=args.voice,
    )
    live = args.input is None
    if live:
        sys.stderr.write(f"rxkit voice --duplex: {peer}, listening on {graph.nodes['microphone'].description}. "
                         "Speak; Ctrl-C quits.\n")  # fmt: skip
    try:
        return asyncio.run(_converse(graph, args, sys.stdout))
    except KeyboardInterrupt:
        if not live:
            raise
        sys.stderr.write("\n")
        return 0  # Ctrl-C is how a live conversation ends


async def _converse(graph: Any, args: argparse.Namespace, out: TextIO) -> int:
    from rxkit.elements import EndOfTurn, ErrorElement, Interrupt, ReplyTranscript, TextDelta, Transcript

    heard = failed = replying = False
    async for e in graph.astream():
        if isinstance(e, Transcript) and e.final:
            heard = True
            out.write(f"you: {e.text}\n")
        elif isinstance(e, (ReplyTranscript, TextDelta)):
            out.write(("" if replying else "assistant: ") + e.text)
            replying = True
        elif isinstance(e, (EndOfTurn, Interrupt)):
            if replying:
                out.write(" [interrupted]\n" if isinstance(e, Interrupt) else "\n")
            replying = False
        elif isinstance(e, ErrorElement):
            failed = True
            report_error(e.error)
        else:
            continue
        out.flush()
    if args.input is not None and not heard:
        report_error(f"no speech was heard in {args.input}")
        return 1
    return 1 if failed else 0
