"""``rxkit chat`` and ``rxkit providers``: talk with a model in the terminal.

::

    rxkit chat                                   # interactive, streams tokens as they arrive
    rxkit chat --once "What is the capital of France?"
    rxkit chat --provider mock --once hi         # no network
    rxkit chat --session work                    # history kept in the SQLite store
    rxkit chat --provider local --model ~/models/other.gguf
    rxkit providers                              # the provider types that can be built

In the interactive chat, a line starting with ``/`` and a word is a command:
``/help``, ``/reset`` (forget the history), ``/exit`` or ``/quit``; an unknown
one is refused, not sent. A path such as ``/usr/bin ...`` is sent as text, and
``//`` sends a line that starts with ``/`` (``//help`` asks the model "/help").

The default provider is the first that has a key in the environment:
``OPENAI_API_KEY`` (openai), ``ANTHROPIC_API_KEY`` (anthropic),
``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` (gemini); with none, the embedded
local model (SmolLM2-135M-Instruct via llama.cpp). Without ``--model``, each
uses a current fast model (gpt-4.1-mini, claude-haiku-4-5, gemini-2.5-flash).
``RXKIT_PROVIDER``, ``RXKIT_MODEL`` and ``RXKIT_BASE_URL`` override that choice.

Exit status: 0 on success, 1 when the model call fails, 2 for bad usage or
configuration (an unknown provider, a missing model file), 130 on Ctrl-C
(outside the interactive prompt, where Ctrl-C only cancels the answer), 143 on SIGTERM.
``kill -USR1 <pid>`` prints every thread's stack to stderr (a stuck
``rxkit`` says where it is) and goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
from collections.abc import Iterator
from typing import Any

from rxkit.cli.session import (
    ChatSession,
    add_model_arguments,
    default_db_path,
    default_provider,
    plain_help,
    report_error,
)
from rxkit.cli.signals import let_signals_land, prompt_interrupts, sigint_ignored
from rxkit.errors import RxkitError

__all__ = ["add_chat_commands"]

_DESCRIPTIONS = {
    "anthropic": "Anthropic Messages API (ANTHROPIC_API_KEY)",
    "fallback": "tries extra.providers in order, the next when one fails before its first token (--config)",
    "gemini": "Google Gemini API (GEMINI_API_KEY or GOOGLE_API_KEY)",
    "local": "embedded llama.cpp server; --model PATH.gguf (default: bundled SmolLM2-135M-Instruct)",
    "mock": "scripted test provider, no network",
    "openai": "OpenAI Chat Completions (OPENAI_API_KEY)",
    "openai-compatible": "any OpenAI-compatible server; --base-url URL (llama.cpp, vLLM, Ollama)",
    "openai-responses": "OpenAI Responses API: reasoning summaries, files (OPENAI_API_KEY)",
    "replay": "plays back a recorded stream file",
    "round-robin": "spreads calls evenly over extra.providers (--config)",
    "weighted": "spreads calls over extra.providers in proportion to extra.weights (--config)",
}


_HELP = "/exit quits, /reset forgets the history, Ctrl-C cancels an answer, Ctrl-D exits (//text sends /text)"
_COMMANDS = ("/exit", "/quit", "/reset", "/help", "/?")
# "/word" alone or before a space is a command; "/usr/bin ..." (a path) is text, as is "//..." (sent without one "/").
_COMMAND = re.compile(r"/(?:\?|[A-Za-z][\w-]*)(?=\s|$)")


def add_chat_commands(commands: Any) -> None:
    """Register ``rxkit chat`` and ``rxkit providers`` on the top-level parser's subcommands."""
    chat = commands.add_parser(
        "chat",
        help="chat with a model, streaming its answer",
        description=plain_help(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("--once", metavar="TEXT", help="ask one question, print the streamed answer and exit")
    add_model_arguments(chat)
    chat.set_defaults(run=_chat)

    providers = commands.add_parser("providers", help="list the provider types")
    providers.set_defaults(run=_providers)


def _providers(args: argparse.Namespace) -> int:
    from rxkit.providers.registry import provider_types

    default = default_provider()
    for name in provider_types():
        mark = " (default)" if name == default else ""
        sys.stdout.write(f"{name:<18} {_DESCRIPTIONS.get(name, '')}{mark}\n")
    return 0


def _chat(args: argparse.Namespace) -> int:
    session = ChatSession(args)
    with asyncio.Runner() as runner:
        try:
            runner.run(session.open())
            if args.once is not None:
                runner.run(session.answer(args.once, sys.stdout))
                return 0
            return _repl(runner, session)
        finally:
            # A second Ctrl-C during cleanup must not leave the server running: shield the close.
            with sigint_ignored():
                runner.run(session.aclose())


def _repl(runner: asyncio.Runner, session: ChatSession) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        name = getattr(session.provider, "name", "?")
        model = getattr(session.provider, "model", "") or ""
        sys.stderr.write(f"rxkit chat with {name}{f' ({model})' if model else ''}. {_HELP}\n")
    with _readline_history(interactive):
        while True:
            try:
                line = _read_line("> " if interactive else "")
            except KeyboardInterrupt:  # at the prompt: drop the line, like Python's REPL
                sys.stderr.write("\n")
                continue
            if line is None:  # Ctrl-D
                if interactive:
                    sys.stderr.write("\n")
                return 0
            text = line.strip()
            if not text:
                continue
            if text.startswith("//"):  # text that starts with "/", not a command
                command, text = None, text[1:]
            else:
                command = text if _COMMAND.match(text) else None
            if command in ("/exit", "/quit"):
                return 0
            if command in ("/help", "/?"):
                sys.stderr.write(_HELP + "\n")
                continue
            if command is not None and command != "/reset":
                word = command.split()[0]
                problem = "takes nothing after it" if word in _COMMANDS else "is not a command"
                report_error(f"{word} {problem}; the commands are {', '.join(_COMMANDS)} (//text sends /text)")
                continue
            try:
                if command == "/reset":
                    runner.run(session.reset())
                    sys.stderr.write("(history cleared)\n")
                else:
                    runner.run(session.answer(text, sys.stdout))
            except KeyboardInterrupt:  # asyncio.Runner cancelled the answer's task first
                sys.stderr.write("\n(cancelled)\n")
            except RxkitError as exc:  # say what failed and go on: the history is as it was
                report_error(exc)


def _read_line(prompt: str) -> str | None:
    """A line from the user, None at end of input (Ctrl-D); Ctrl-C raises KeyboardInterrupt."""
    with prompt_interrupts():
        try:
            return input(prompt)
        except EOFError:
            # GNU readline can report a Ctrl-C as end of input, with the KeyboardInterrupt
            # pending: a Python call lets it land here, so Ctrl-C is not taken for Ctrl-D.
            let_signals_land()
            return None


@contextlib.contextmanager
def _readline_history(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    try:
        import readline
    except ImportError:  # Windows without pyreadline
        yield
        return
    path = default_db_path().parent / "chat_history"
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(1000)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)
