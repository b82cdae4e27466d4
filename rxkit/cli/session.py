"""What every command that talks to a model shares: provider selection, the state store, error lines.

``rxkit chat`` and ``rxkit voice`` take the same provider options
(:func:`add_model_arguments`) and open them the same way (:class:`ChatSession`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from rxkit.elements import ReasoningDelta, TextDelta
from rxkit.errors import ConfigError, RxkitError, redact

__all__ = [
    "ChatSession",
    "add_model_arguments",
    "default_db_path",
    "default_provider",
    "open_store",
    "plain_help",
    "report_error",
]

_KEY_PROVIDERS = (
    ("OPENAI_API_KEY", "openai"),
    ("ANTHROPIC_API_KEY", "anthropic"),
    ("GEMINI_API_KEY", "gemini"),
    ("GOOGLE_API_KEY", "gemini"),
)

DIM, RESET = "\x1b[2m", "\x1b[0m"  # how a terminal shows the reasoning: dimmed


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
    from rxkit.state.sqlite import default_state_path

    return default_state_path()


def add_model_arguments(group: Any) -> None:
    """The provider options of every command that talks to a model, read by :class:`ChatSession`."""
    group.add_argument("--provider", metavar="NAME", help="provider type (see 'rxkit providers')")
    group.add_argument("--model", metavar="NAME", help="model name; for the local provider, a .gguf path")
    group.add_argument("--base-url", metavar="URL", help="API base URL (OpenAI-compatible servers)")
    group.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="provider specs (YAML, TOML or JSON); --provider may name one of them",
    )
    group.add_argument("--system", metavar="TEXT", help="system prompt")
    group.add_argument("--session", metavar="ID", help="keep this conversation's history in the state store")
    group.add_argument("--db", metavar="PATH", type=Path, help=f"SQLite state file (default: {default_db_path()})")
    group.add_argument("--temperature", type=temperature, metavar="T", help="sampling temperature (0 to 2)")
    group.add_argument("--max-tokens", type=positive_int, metavar="N", help="longest answer, in tokens")
    group.add_argument(
        "--reasoning",
        type=reasoning_effort,
        metavar="EFFORT",
        help="let the model reason first: low, medium, high, or a budget in tokens (shown dimmed on a terminal)",
    )


def reasoning_effort(text: str) -> int | str:
    """``--reasoning``: a token budget (digits) or an effort name, passed to the provider as ``reasoning``."""
    if text.isdigit():
        return int(text)
    if not text.isidentifier():
        raise argparse.ArgumentTypeError(f"not an effort name or a number of tokens: {text!r}")
    return text


def temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 2.0:  # what OpenAI and Gemini take (Anthropic: 0 to 1, it says so itself)
        raise argparse.ArgumentTypeError(f"{text} is outside 0 to 2")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


# :class:`~a.B` -> B, :func:`a.f` -> a.f, :ref:`Title <target>` -> Title
_ROLE = re.compile(r":[\w:-]+:`(?P<short>~?)(?P<text>[^`<]*?)\s*(?:<[^>]*>)?`")
_LITERAL = re.compile(r"``(.+?)``")


def plain_help(doc: str) -> str:
    """A reST docstring as plain terminal text for ``--help``: literals unquoted, roles reduced to
    their text, ``::`` literal-block markers gone.

    >>> plain_help("Uses :class:`~rxkit.graphs.VoiceSettings` and ``--model``::")
    'Uses VoiceSettings and --model:'
    """

    def role(m: re.Match[str]) -> str:
        return m["text"].rsplit(".", 1)[-1] if m["short"] else m["text"]

    text = _LITERAL.sub(r"\1", _ROLE.sub(role, doc))
    text = re.sub(r"\n[ \t]*::[ \t]*\n(?:[ \t]*\n)?", "\n\n", text)  # a "::" line of its own
    return re.sub(r"(\S)::$", r"\1:", text, flags=re.M)  # "text::" reads "text:"


def report_error(exc: BaseException | str) -> None:
    """One line on stderr: the first line of the message and, for long ones, the last (the cause)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    lines = [redact(line) for line in lines]
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    sys.stderr.write(f"rxkit: error: {text}\n")
    sys.stderr.flush()


def open_store(args: argparse.Namespace) -> Any:
    """The SQLite state store that ``--session`` / ``--db`` ask for, or None when neither is given."""
    if not (args.session or args.db):
        return None
    from rxkit.state.sqlite import SQLiteStore

    path = args.db or default_db_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent is a regular file, or not writable: bad usage, not a bug
        raise ConfigError(f"--db {path}: cannot make its folder {path.parent} ({exc.strerror})") from None
    return SQLiteStore(path)


class ChatSession:
    """A provider, an optional store and a conversation, opened and closed together."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.provider: Any = None
        self.store: Any = None
        self.conversation: Any = None

    async def open(self) -> None:
        from rxkit.providers.registry import ProviderSpec, create_provider, load_specs

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
        if getattr(args, "reasoning", None) is not None:
            overrides["defaults"]["reasoning"] = args.reasoning
        self.provider = create_provider(spec.model_copy(update=overrides))
        self.store = open_store(args)
        start = getattr(self.provider, "astart", None)
        if start is not None:  # the local model: start it now, with its spinner, not on the first question
            await start()
        self.conversation = self._conversation()

    def _conversation(self) -> Any:
        from rxkit.graphs.text import Conversation

        return Conversation(
            self.provider, store=self.store, session=self.args.session or "default", prompt=self.args.system
        )

    async def answer(self, text: str, out: TextIO) -> None:
        """Stream the answer to ``out``, flushing each piece as it arrives.

        The model's reasoning (:class:`~rxkit.elements.ReasoningDelta`) is shown
        live and dimmed on a terminal, and left out when ``out`` is a pipe or a
        file, which get the answer alone.
        """
        wrote = False
        isatty = getattr(out, "isatty", None)  # a bare writer (a test's, a wrapper's) counts as a pipe
        show_reasoning = bool(isatty is not None and isatty())
        dimmed = False
        try:
            async for item in self.conversation.astream(text):
                if isinstance(item, ReasoningDelta):
                    if show_reasoning and item.text:
                        out.write(item.text if dimmed else DIM + item.text)
                        out.flush()
                        dimmed = wrote = True
                    continue
                piece = item.text if isinstance(item, TextDelta) else item if isinstance(item, str) else None
                if piece:
                    if dimmed:
                        out.write(RESET + "\n")
                        dimmed = False
                    out.write(piece)
                    out.flush()
                    wrote = True
        finally:
            if dimmed:
                out.write(RESET)
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
