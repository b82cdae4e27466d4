"""The ``rxkit`` command line.

- ``rxkit chat`` and ``rxkit providers``: :mod:`rxkit.cli.chat` (its
  docstring is ``rxkit chat --help``);
- ``rxkit voice`` and ``rxkit devices``: :mod:`rxkit.cli.voice`;
- what both share (provider options and selection, the state store, error
  lines): :mod:`rxkit.cli.session`; SIGTERM, Ctrl-C and SIGUSR1 handling:
  :mod:`rxkit.cli.signals`.
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
from rxkit.extras import missing_extra

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
        missing = missing_extra(exc, f"rxkit {args.command}") if isinstance(exc, ImportError) else None
        if missing is not None:  # an optional package imported on the way: name the extra, as a usage error
            report_error(missing)
            return 2
        if os.environ.get("RXKIT_DEBUG"):
            raise
        report_error(f"internal error ({type(exc).__name__}: {exc}); set RXKIT_DEBUG=1 for the traceback")
        return 1
