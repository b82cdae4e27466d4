"""The ``rxkit`` command line.

::

    rxkit chat                                   # interactive, streams tokens as they arrive
    rxkit chat --once "What is the capital of France?"
    rxkit chat --provider mock --once hi         # no network
    rxkit chat --session work                    # history kept in the SQLite store
    rxkit chat --provider local --model ~/models/other.gguf
    rxkit providers                              # the provider types that can be built

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
import os
import sys
from collections.abc import Sequence

from rxkit.cli.chat import add_chat_commands
from rxkit.cli.session import default_provider, report_error
from rxkit.cli.signals import signals_land, stacks_on_sigusr1
from rxkit.cli.voice import add_voice_commands
from rxkit.errors import ConfigError, RxkitError, UnknownProviderError

__all__ = ["build_parser", "default_provider", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rxkit", description="A streaming LLM runtime on reactive streams.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    add_chat_commands(commands)  # `rxkit chat` and `rxkit providers`
    add_voice_commands(commands)  # `rxkit voice` and `rxkit devices`
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rxkit`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    with signals_land(), stacks_on_sigusr1():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    except UnknownProviderError as exc:
        report_error(exc)
        return 2
    except ConfigError as exc:
        report_error(exc)
        return 2
    except RxkitError as exc:
        report_error(exc)
        return 1
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        if os.environ.get("RXKIT_DEBUG"):
            raise
        report_error(f"internal error ({type(exc).__name__}: {exc}); set RXKIT_DEBUG=1 for the traceback")
        return 1
