"""``rxkit voice --duplex``: talk with a speech-to-speech model (OpenAI Realtime, Gemini Live) over one WebSocket.

::

    rxkit voice --duplex                                    # OpenAI Realtime on the default mic and speaker
    rxkit voice --duplex --provider gemini-live --model gemini-live-2.5-flash-preview
    rxkit voice --duplex --input question.wav --output reply.wav
    rxkit voice --duplex --provider local                   # offline: the VAD-mode pieces and the local model

The key comes from ``OPENAI_API_KEY`` (``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``
for Gemini); ``--base-url`` points at another server (``ws://`` or ``wss://``).
Prints both sides' transcripts as they come; ``[interrupted]`` marks a reply
cut by a barge-in. With ``--session ID`` the conversation is saved to the
state store as the user heard it (an interrupted reply cut where playback
stopped) and the next run with the same ID goes on from there. Exit status
as for ``rxkit voice``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

from rxkit.cli.session import open_store
from rxkit.cli.signals import sigint_ignored
from rxkit.errors import ConfigError

__all__ = ["run_duplex"]


def run_duplex(args: argparse.Namespace) -> int:
    """Run ``rxkit voice --duplex`` with a remote peer (``--provider local`` is run by ``rxkit voice`` itself:
    it takes the same speech engine and model options)."""
    from rxkit.graphs.duplex import DUPLEX_PEERS

    peer = args.provider or "openai-realtime"
    if peer not in DUPLEX_PEERS:
        raise ConfigError(f"--duplex --provider must be one of {', '.join(DUPLEX_PEERS)}, not {peer!r}")
    live = args.input is None
    with asyncio.Runner() as runner:
        try:
            return runner.run(_converse(peer, args, sys.stdout))
        except KeyboardInterrupt:
            if not live:
                raise
            sys.stderr.write("\n")
            return 0  # Ctrl-C is how a live conversation ends


async def _converse(peer: str, args: argparse.Namespace, out: TextIO) -> int:
    from rxkit.cli.spoken import duplex_io, show_conversation
    from rxkit.graphs.duplex import duplex_graph

    store = open_store(args)  # --session: the conversation is loaded from it and saved to it as heard
    try:
        graph = duplex_graph(
            peer,
            **duplex_io(args),
            model=args.model,
            base_url=args.base_url,
            instructions=args.system or "",
            voice=args.voice,
            store=store,
            session_id=args.session or "default",
        )
        if args.input is None:
            sys.stderr.write(f"rxkit voice --duplex: {peer}, listening on {graph.nodes['microphone'].description}. "
                             "Speak; Ctrl-C quits.\n")  # fmt: skip
        return await show_conversation(graph, out, source=args.input, joiner="")
    finally:
        if store is not None:
            with sigint_ignored():
                await store.aclose()
