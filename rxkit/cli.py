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
import asyncio
import contextlib
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ._sigwake import SignalNudge
from .elements import TextDelta
from .errors import ConfigError, RxkitError, UnknownProviderError, redact

__all__ = ["build_parser", "default_provider", "main"]

_KEY_PROVIDERS = (
    ("OPENAI_API_KEY", "openai"),
    ("ANTHROPIC_API_KEY", "anthropic"),
    ("GEMINI_API_KEY", "gemini"),
    ("GOOGLE_API_KEY", "gemini"),
)
_DESCRIPTIONS = {
    "anthropic": "Anthropic Messages API (ANTHROPIC_API_KEY)",
    "gemini": "Google Gemini API (GEMINI_API_KEY or GOOGLE_API_KEY)",
    "local": "embedded llama.cpp server; --model PATH.gguf (default: bundled SmolLM2-135M-Instruct)",
    "mock": "scripted test provider, no network",
    "openai": "OpenAI Chat Completions (OPENAI_API_KEY)",
    "openai-compatible": "any OpenAI-compatible server; --base-url URL (llama.cpp, vLLM, Ollama)",
    "replay": "plays back a recorded stream file",
}
_HELP = "/exit quits, /reset forgets the history, Ctrl-C cancels an answer, Ctrl-D exits"


def default_provider(env: Mapping[str, str] | None = None) -> str:
    """The provider type ``rxkit chat`` uses when none is named.

    >>> default_provider({"ANTHROPIC_API_KEY": "x"}), default_provider({})
    ('anthropic', 'local')
    """
    env = os.environ if env is None else env
    if env.get("RXKIT_PROVIDER"):
        return env["RXKIT_PROVIDER"]
    for variable, provider in _KEY_PROVIDERS:
        if env.get(variable):
            return provider
    return "local"


def default_db_path() -> Path:
    """Where ``--session`` keeps history: the SQLite store's default file in the user's data directory."""
    from .state.sqlite import default_state_path

    return default_state_path()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rxkit", description="A streaming LLM runtime on reactive streams.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    chat = commands.add_parser(
        "chat",
        help="chat with a model, streaming its answer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("--once", metavar="TEXT", help="ask one question, print the streamed answer and exit")
    chat.add_argument("--provider", metavar="NAME", help="provider type (see `rxkit providers`)")
    chat.add_argument("--model", metavar="NAME", help="model name; for the local provider, a .gguf path")
    chat.add_argument("--base-url", metavar="URL", help="API base URL (OpenAI-compatible servers)")
    chat.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="provider specs (YAML, TOML or JSON); --provider may name one of them",
    )
    chat.add_argument("--system", metavar="TEXT", help="system prompt")
    chat.add_argument("--session", metavar="ID", help="keep this conversation's history in the state store")
    chat.add_argument("--db", metavar="PATH", type=Path, help=f"SQLite state file (default: {default_db_path()})")
    chat.add_argument("--temperature", type=_temperature, metavar="T", help="sampling temperature (0 to 2)")
    chat.add_argument("--max-tokens", type=_positive_int, metavar="N", help="longest answer, in tokens")
    chat.set_defaults(run=_chat)

    providers = commands.add_parser("providers", help="list the provider types")
    providers.set_defaults(run=_providers)

    from ._cli_voice import add_voice_commands  # `rxkit voice` and `rxkit devices`

    add_voice_commands(commands)
    return parser


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 2.0:  # what OpenAI and Gemini take (Anthropic: 0 to 1, it says so itself)
        raise argparse.ArgumentTypeError(f"{text} is outside 0 to 2")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rxkit`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    with _signals_land(), _stacks_on_sigusr1():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    except UnknownProviderError as exc:
        _error(exc)
        return 2
    except ConfigError as exc:
        _error(exc)
        return 2
    except RxkitError as exc:
        _error(exc)
        return 1
    except Exception as exc:  # a bug: one line, the traceback only when asked for
        if os.environ.get("RXKIT_DEBUG"):
            raise
        _error(f"internal error ({type(exc).__name__}: {exc}); set RXKIT_DEBUG=1 for the traceback")
        return 1


# Set while no Ctrl-C is waiting to be noticed at the prompt (cleared only while the prompt waits).
_PROMPT_SIGINT_HANDLED = threading.Event()
_PROMPT_SIGINT_HANDLED.set()


@contextlib.contextmanager
def _signals_land() -> Iterator[None]:
    """SIGTERM exits with status 143 through ``finally`` blocks, so the local model server and the store
    get closed (the REPL does not take it for a Ctrl-C); it and a Ctrl-C at the prompt are acted on even
    when they land just as readline draws the prompt (see :mod:`rxkit._sigwake`)."""

    handled = threading.Event()

    def terminate(signum: int, frame: Any) -> None:
        handled.set()
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread
        yield
        return
    nudge = SignalNudge({signal.SIGTERM: handled, signal.SIGINT: _PROMPT_SIGINT_HANDLED})
    try:
        yield
    finally:
        nudge.close()
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _prompt_interrupts() -> Iterator[None]:
    """While the prompt waits, Ctrl-C raises KeyboardInterrupt through a handler that tells the nudge it ran.

    Only here: asyncio.Runner installs its own Ctrl-C handler (cancel the answer) only when it finds the
    default one, so the default is back before an answer starts."""
    done = _PROMPT_SIGINT_HANDLED

    def interrupt(signum: int, frame: Any) -> None:
        done.set()
        raise KeyboardInterrupt

    try:
        previous = signal.getsignal(signal.SIGINT)
    except ValueError:
        previous = None
    if previous is not signal.default_int_handler or threading.current_thread() is not threading.main_thread():
        yield  # someone else's handler (or SIG_IGN), or not the main thread: leave Ctrl-C as it is
        return
    done.clear()
    try:
        signal.signal(signal.SIGINT, interrupt)
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        done.set()


@contextlib.contextmanager
def _stacks_on_sigusr1() -> Iterator[None]:
    """SIGUSR1 dumps every thread's stack to stderr (faulthandler: works even when Python code is stuck)."""
    register = getattr(faulthandler, "register", None)  # not on Windows
    if register is None or not hasattr(signal, "SIGUSR1"):
        yield
        return
    try:
        register(signal.SIGUSR1, all_threads=True)
    except (ValueError, RuntimeError, OSError):  # no usable stderr, or not allowed here
        yield
        return
    try:
        yield
    finally:
        faulthandler.unregister(signal.SIGUSR1)


def _error(exc: BaseException | str) -> None:
    """One line on stderr: the first line of the message and, for long ones, the last (the cause)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    lines = [redact(line) for line in lines]
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    sys.stderr.write(f"rxkit: error: {text}\n")
    sys.stderr.flush()


def _providers(args: argparse.Namespace) -> int:
    from .providers.registry import provider_types

    default = default_provider()
    for name in provider_types():
        mark = " (default)" if name == default else ""
        sys.stdout.write(f"{name:<18} {_DESCRIPTIONS.get(name, '')}{mark}\n")
    return 0


# -- chat ------------------------------------------------------------------------------------------


class ChatSession:
    """A provider, an optional store and a conversation, opened and closed together."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.provider: Any = None
        self.store: Any = None
        self.conversation: Any = None

    async def open(self) -> None:
        from .providers.registry import ProviderSpec, create_provider, load_specs

        args = self.args
        kind = args.provider or default_provider()
        named = load_specs(args.config) if args.config else {}
        spec = named.get(kind)
        if spec is None:
            from_env = not args.provider  # RXKIT_MODEL / RXKIT_BASE_URL go with RXKIT_PROVIDER
            spec = ProviderSpec(
                type=kind,
                model=os.environ.get("RXKIT_MODEL", "") if from_env else "",
                base_url=os.environ.get("RXKIT_BASE_URL") if from_env else None,
            )
        overrides: dict[str, Any] = {"defaults": dict(spec.defaults)}
        if args.model:
            overrides["model"] = args.model
        if args.base_url:
            overrides["base_url"] = args.base_url
        if args.temperature is not None:
            overrides["defaults"]["temperature"] = args.temperature
        if args.max_tokens is not None:
            overrides["defaults"]["max_tokens"] = args.max_tokens
        self.provider = create_provider(spec.model_copy(update=overrides))
        if args.session or args.db:
            from .state.sqlite import SQLiteStore

            path = args.db or default_db_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            self.store = SQLiteStore(path)
        start = getattr(self.provider, "astart", None)
        if start is not None:  # the local model: start it now, with its spinner, not on the first question
            await start()
        self.conversation = self._conversation()

    def _conversation(self) -> Any:
        from .graphs.text import Conversation

        return Conversation(
            self.provider, store=self.store, session=self.args.session or "default", prompt=self.args.system
        )

    async def answer(self, text: str, out: TextIO) -> None:
        """Stream the answer to ``out``, flushing each piece as it arrives."""
        wrote = False
        try:
            async for item in self.conversation.astream(text):
                piece = item.text if isinstance(item, TextDelta) else item if isinstance(item, str) else None
                if piece:
                    out.write(piece)
                    out.flush()
                    wrote = True
        finally:
            if wrote:
                out.write("\n")
                out.flush()

    async def reset(self) -> None:
        await self.conversation.clear()

    async def aclose(self) -> None:
        for resource in (self.conversation, self.provider, self.store):
            if resource is not None:
                with contextlib.suppress(RxkitError, OSError):
                    await resource.aclose()


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
            with _sigint_ignored():
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
            if text in ("/exit", "/quit"):
                return 0
            if text in ("/help", "/?"):
                sys.stderr.write(_HELP + "\n")
                continue
            try:
                if text == "/reset":
                    runner.run(session.reset())
                    sys.stderr.write("(history cleared)\n")
                else:
                    runner.run(session.answer(text, sys.stdout))
            except KeyboardInterrupt:  # asyncio.Runner cancelled the answer's task first
                sys.stderr.write("\n(cancelled)\n")
            except RxkitError as exc:  # say what failed and go on: the history is as it was
                _error(exc)


def _read_line(prompt: str) -> str | None:
    """A line from the user, None at end of input (Ctrl-D); Ctrl-C raises KeyboardInterrupt."""
    with _prompt_interrupts():
        try:
            return input(prompt)
        except EOFError:
            # GNU readline can report a Ctrl-C as end of input, with the KeyboardInterrupt
            # pending: a Python call lets it land here, so Ctrl-C is not taken for Ctrl-D.
            _let_signals_land()
            return None


def _let_signals_land() -> None:
    return None


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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
