"""The ``rxkit`` command line, run as the real console script in a subprocess.

A few tests run ``main()`` in-process where they must see what reached the
provider. The two that use the embedded model start their own llama.cpp
server, as a user's ``rxkit chat`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from rxkit import cli
from rxkit.providers import registry
from rxkit.providers.mock import MockProvider
from rxkit.providers.registry import ProviderSpec
from rxkit.state.sqlite import SQLiteStore
from rxkit.types import ChatRequest

RXKIT = Path(sys.executable).with_name("rxkit")
ROOT = Path(__file__).resolve().parent.parent
_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with no API keys, whose data directory is a temp dir."""
    clean = {k: v for k, v in os.environ.items() if k not in _KEYS and not k.startswith("RXKIT_")}
    clean["XDG_DATA_HOME"] = str(tmp_path / "data")
    clean["RXKIT_TEST_MARKER"] = uuid.uuid4().hex  # inherited by any server the CLI starts
    return clean


@pytest.fixture
def slow_mock(tmp_path: Path) -> Path:
    """A provider config naming a mock that streams five words 0.2 s apart (twice, then echoes)."""
    path = tmp_path / "providers.yaml"
    path.write_text(
        "slow:\n"
        "  type: mock\n"
        "  extra:\n"
        "    chunk_latency: 0.2\n"
        "    responses: ['one two three four five', 'six seven eight nine ten']\n"
        "broken:\n"
        "  type: mock\n"
        "  extra:\n"
        "    responses: [{text: 'never', error: 'the model fell over'}]\n"
    )
    return path


def rxkit(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    assert RXKIT.exists(), f"the console script is not installed at {RXKIT}"
    return subprocess.run([str(RXKIT), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def servers_with_marker(marker: str) -> list[psutil.Process]:
    """llama.cpp servers still running that were started under this test's environment."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "llama_cpp.server" not in " ".join(proc.info["cmdline"] or ()):
                continue
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("RXKIT_TEST_MARKER") == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


# -- subcommands and errors -----------------------------------------------------------------------


def test_providers_lists_the_provider_types(env: dict[str, str]) -> None:
    result = rxkit("providers", env=env)
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"local", "mock", "openai", "openai-compatible", "anthropic", "gemini"} <= set(names)
    assert "(default)" in next(line for line in result.stdout.splitlines() if line.startswith("local "))


def test_every_listed_provider_type_is_described_and_none_is_a_ghost(env: dict[str, str]) -> None:
    result = rxkit("providers", env=env)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split(None, 1)[1:] for line in result.stdout.splitlines()}
    # what a fresh process can build (this one may hold types other tests registered)
    code = "from rxkit.providers.registry import provider_types; print(' '.join(provider_types()))"
    fresh = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert set(rows) == set(fresh.stdout.split()) and "sharded" not in rows  # only what can be built
    assert {name for name, description in rows.items() if not description} == set(), result.stdout
    assert "weights" in rows["weighted"][0] and "order" in rows["fallback"][0]


@pytest.mark.parametrize("command", [(), ("chat",), ("voice",), ("providers",)])
def test_help_is_plain_text_without_rest_markup(command: tuple[str, ...], env: dict[str, str]) -> None:
    result = rxkit(*command, "--help", env=env)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "``" not in text and "`" not in text, text  # literals and interpreted text
    assert not re.search(r":[a-z]+:", text), text  # roles such as :class:
    assert not re.search(r"(?m)^\s*::\s*$|\S::$", text), text  # literal-block markers
    if command == ("chat",):
        assert "rxkit chat --once " in text and "OPENAI_API_KEY (openai)" in text


def test_python_dash_m_rxkit_runs_the_cli(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rxkit", "chat", "--provider", "mock", "--once", "hi"],
        env=env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr


def test_unknown_provider_exits_2_with_the_known_ones(env: dict[str, str]) -> None:
    result = rxkit("chat", "--provider", "nope", "--once", "hi", env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unknown provider 'nope'" in lines[0]
    for known in ("local", "mock", "openai", "anthropic", "gemini"):
        assert known in lines[0]


def test_missing_gguf_exits_2_with_one_line(env: dict[str, str], tmp_path: Path) -> None:
    result = rxkit("chat", "--provider", "local", "--model", str(tmp_path / "none.gguf"), "--once", "hi", env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "GGUF model file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_provider_failure_exits_1_with_one_line_and_no_traceback(env: dict[str, str], slow_mock: Path) -> None:
    result = rxkit("chat", "--config", str(slow_mock), "--provider", "broken", "--once", "hi", env=env)
    assert result.returncode == 1
    assert result.stderr == "rxkit: error: the model fell over\n"


def test_missing_command_is_a_usage_error(env: dict[str, str]) -> None:
    result = rxkit(env=env)
    assert result.returncode == 2 and "usage: rxkit" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temperature", "7"], "argument --temperature: 7 is outside 0 to 2"),
        (["--temperature", "warm"], "argument --temperature: not a number: 'warm'"),
        (["--max-tokens", "0"], "argument --max-tokens: 0 is not at least 1"),
        (["--max-tokens", "1.5"], "argument --max-tokens: not a whole number: '1.5'"),
    ],
)
def test_bad_sampling_arguments_are_usage_errors(args: list[str], message: str, env: dict[str, str]) -> None:
    result = rxkit("chat", "--provider", "mock", *args, "--once", "hi", env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().endswith(f"rxkit chat: error: {message}")


def test_a_misspelt_config_field_is_named_and_its_value_not_shown(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text("fast:\n  type: openai\n  apikey: hunter2-my-own-server\n")
    result = rxkit("chat", "--config", str(config), "--provider", "fast", "--once", "hi", env=env)
    assert result.returncode == 2
    assert "apikey: extra inputs are not permitted (known fields: type, name, model," in result.stderr
    assert "hunter2" not in result.stderr


def test_a_config_that_does_not_parse_is_shown_with_line_and_problem_not_content(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "providers.yaml"
    config.write_text("fast:\n  type: openai\n  api_key: hunter2-my-own: server\n")
    result = rxkit("chat", "--config", str(config), "--provider", "fast", "--once", "hi", env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"rxkit: error: cannot parse provider config {config}: not valid YAML at line 3, column 26: "
        "mapping values are not allowed here\n"
    )


# -- chat with the mock --------------------------------------------------------------------------


def test_once_with_the_mock_prints_the_answer(env: dict[str, str]) -> None:
    result = rxkit("chat", "--provider", "mock", "--once", "hi", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"  # the mock echoes the user's message
    assert result.stderr == ""


def test_session_in_a_db_remembers_the_first_run(env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "chat.sqlite3"
    first = rxkit("chat", "--provider", "mock", "--session", "s1", "--db", str(db), "--once", "my name is Ada", env=env)
    second = rxkit("chat", "--provider", "mock", "--session", "s1", "--db", str(db), "--once", "who am I?", env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr

    async def history() -> list[tuple[str, str]]:
        store = SQLiteStore(db)
        try:
            return [(m.role, m.text) for m in await store.load("s1")]
        finally:
            await store.aclose()

    assert asyncio.run(history()) == [
        ("user", "my name is Ada"),
        ("assistant", "my name is Ada"),
        ("user", "who am I?"),
        ("assistant", "who am I?"),
    ]


def test_session_without_db_uses_the_user_data_dir(env: dict[str, str], tmp_path: Path) -> None:
    result = rxkit("chat", "--provider", "mock", "--session", "s", "--once", "hi", env=env)
    assert result.returncode == 0, result.stderr
    assert list((tmp_path / "data" / "rxkit").glob("state*")), "the store file lives in the user's data dir"


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MockProvider]]:
    """A provider type ``recording`` whose instances are kept, to see the requests they got."""
    made: list[MockProvider] = []

    def factory(spec: ProviderSpec) -> MockProvider:
        provider = MockProvider(["abc", "de"], chunk_size=1, defaults=spec.defaults)
        made.append(provider)
        return provider

    monkeypatch.setitem(registry._factories, "recording", factory)
    yield made


def test_second_run_sends_the_first_turn_to_the_provider(recording: list[MockProvider], tmp_path: Path) -> None:
    db = str(tmp_path / "s.sqlite3")
    args = ["chat", "--provider", "recording", "--session", "x", "--db", db, "--system", "Be brief."]
    assert cli.main([*args, "--once", "first"]) == 0
    assert cli.main([*args, "--temperature", "0.5", "--once", "second"]) == 0
    request: ChatRequest = recording[1].requests[0]
    assert [(m.role, m.text) for m in request.messages] == [
        ("system", "Be brief."),
        ("user", "first"),
        ("assistant", "abc"),
        ("user", "second"),
    ]
    assert recording[1].params(request)["temperature"] == 0.5


class _Recorder:
    """A stdout that logs writes and flushes in order."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def write(self, text: str) -> int:
        self.log.append(f"w:{text}")
        return len(text)

    def flush(self) -> None:
        self.log.append("flush")


def test_each_piece_is_flushed_as_it_arrives(recording: list[MockProvider], monkeypatch: pytest.MonkeyPatch) -> None:
    out = _Recorder()
    monkeypatch.setattr(sys, "stdout", out)
    assert cli.main(["chat", "--provider", "recording", "--once", "hi"]) == 0
    assert out.log == ["w:a", "flush", "w:b", "flush", "w:c", "flush", "w:\n", "flush"]


def test_stream_is_visible_before_the_answer_ends(env: dict[str, str], slow_mock: Path) -> None:
    proc = subprocess.Popen(
        [str(RXKIT), "chat", "--config", str(slow_mock), "--provider", "slow", "--once", "hi"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    arrivals: list[tuple[float, bytes]] = []
    while data := os.read(proc.stdout.fileno(), 4096):
        arrivals.append((time.monotonic(), data))
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert b"".join(d for _, d in arrivals) == b"one two three four five\n"
    assert len(arrivals) >= 3, arrivals
    assert arrivals[-1][0] - arrivals[0][0] >= 0.5, "the first words came out long before the last"


# -- the interactive REPL, in a real terminal ------------------------------------------------------


class Terminal:
    """The CLI on a pseudo-terminal: readline, Ctrl-C and Ctrl-D as a user types them."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become rxkit
            os.chdir(ROOT)
            os.execve(str(RXKIT), [str(RXKIT), *args], env)
        self.output = b""

    def read_until(self, text: str, timeout: float = 60, *, after: int = 0) -> str:
        """Read until ``text`` shows up (at or past offset ``after`` of the output)."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output[after:]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} did not appear; got {self.output.decode(errors='replace')!r}")
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{text!r} never came; got {self.output.decode(errors='replace')!r}")
                self.output += chunk
        return self.output.decode(errors="replace")

    def read_until_more(self, mark: int, count: int, timeout: float = 60) -> None:
        """Read until ``count`` bytes have come after offset ``mark``."""
        deadline = time.monotonic() + timeout
        while len(self.output) - mark < count:
            assert time.monotonic() < deadline, f"no output after {self.output[:mark]!r}"
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                self.output += os.read(self.fd, 4096)

    def type(self, keys: bytes) -> None:
        # Type at human speed, after readline has taken the terminal (a Ctrl-C sent the
        # instant the prompt appears is the subject of its own test).
        time.sleep(0.2)
        os.write(self.fd, keys)

    def kill(self) -> None:
        """Make sure the child is gone (a failed test must not leave it behind)."""
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            with_data, _, _ = select.select([self.fd], [], [], 0.05)
            if with_data:
                try:
                    self.output += os.read(self.fd, 4096)
                except OSError:
                    pass
        raise AssertionError(f"the CLI did not exit; where it was:\n{self.stacks()}")

    def stacks(self) -> str:
        """Every thread's stack in the CLI (it dumps them on SIGUSR1), with the output just before."""
        mark = len(self.output)
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except ProcessLookupError:
            return "(gone)"
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with_data, _, _ = select.select([self.fd], [], [], 0.05)
            if with_data:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:
                    break
        text = self.output.decode(errors="replace")
        return text[max(0, mark - 1500) :]


def test_repl_ctrl_c_cancels_the_answer_and_ctrl_d_exits(env: dict[str, str], slow_mock: Path) -> None:
    term = Terminal(["chat", "--config", str(slow_mock), "--provider", "slow"], env)
    try:
        os.write(term.fd, b"hello\r")  # typed ahead of the prompt: readline then reports a Ctrl-C as EOF
        term.read_until("five\r\n> ")
        mark = len(term.output)
        term.type(b"\x03")  # Ctrl-C at the prompt drops the line and prompts again; it does not exit
        term.read_until("> ", after=mark)
        mark = len(term.output)
        term.type(b"/reset\r")
        term.read_until("(history cleared)\r\n> ", after=mark)
        mark = len(term.output)
        term.type(b"again\r")
        term.read_until("seven ", after=mark)
        term.type(b"\x03")  # Ctrl-C mid-answer cancels it
        screen = term.read_until("(cancelled)", after=mark)
        assert "ten" not in screen[mark:], "the answer stopped where it was cancelled"
        term.read_until("> ", after=screen.index("(cancelled)"))
        term.type(b"\x04")  # Ctrl-D exits
        assert term.wait() == 0
        assert "Traceback" not in term.output.decode(errors="replace")
    finally:
        term.kill()


def test_repl_ctrl_c_after_typing_ahead_does_not_exit(env: dict[str, str]) -> None:
    # GNU readline can report a Ctrl-C as end of input once a line was typed ahead
    # of the first prompt, with the KeyboardInterrupt arriving a moment later.
    term = Terminal(["chat", "--provider", "mock"], env)
    try:
        term.read_until("Ctrl-D exits")
        os.write(term.fd, b"x\r")  # before the prompt is drawn
        term.read_until("x\r\nx\r\n> ")  # the echo of the line, the mock's answer, the next prompt
        mark = len(term.output)
        term.type(b"\x03")
        term.read_until("> ", after=mark)
        term.type(b"\x04")
        assert term.wait() == 0
    finally:
        term.kill()


def test_sigusr1_prints_every_threads_stack_and_the_cli_goes_on(env: dict[str, str]) -> None:
    """How a stuck ``rxkit`` says where it is (and how this file's tests report a CLI that does not exit)."""
    term = Terminal(["chat", "--provider", "mock"], env)
    try:
        term.read_until("Ctrl-D exits")
        term.read_until("> ")
        dump = term.stacks()
        assert "Current thread" in dump and "most recent call first" in dump, dump
        assert "rxkit/cli/chat.py" in dump and "_read_line" in dump, dump  # waiting for the user's line
        mark = len(term.output)
        term.type(b"hi\r")
        term.read_until("hi\r\nhi\r\n> ", after=mark)  # still answering
        term.type(b"\x04")
        assert term.wait() == 0
    finally:
        term.kill()


@contextlib.contextmanager
def busy_cores() -> Iterator[None]:
    """Every core kept busy by a spinning process, to widen timing windows as a loaded machine does."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_sigterm_the_moment_the_prompt_appears_still_exits(env: dict[str, str]) -> None:
    """A signal landing after readline drew the prompt but before it waits in select() used to wait for the
    next key press (24 hangs in 40 with both cores busy, as here): now a helper thread nudges it through."""
    with busy_cores():
        for _ in range(12):
            term = Terminal(["chat", "--provider", "mock"], env)
            try:
                term.read_until("> ")
                os.kill(term.pid, signal.SIGTERM)
                assert term.wait(timeout=10) == 143
            finally:
                term.kill()


def test_ctrl_c_the_moment_the_prompt_appears_gives_a_new_prompt(env: dict[str, str]) -> None:
    """The same race for Ctrl-C at an idle prompt: it used to be noticed only at the next key press, so the
    first Ctrl-C seemed lost. Now it drops the line and draws a fresh prompt by itself, with both cores busy."""
    with busy_cores():
        for _ in range(12):
            term = Terminal(["chat", "--provider", "mock"], env)
            try:
                term.read_until("> ")
                mark = len(term.output)
                os.write(term.fd, b"half a line\x03")  # typed and cancelled at once: no pause for the prompt
                term.read_until("> ", timeout=10, after=mark)
                term.type(b"/exit\n")
                assert term.wait(timeout=10) == 0
            finally:
                term.kill()


def test_repl_reads_piped_lines_and_exit_command(env: dict[str, str], tmp_path: Path) -> None:
    db = str(tmp_path / "r.sqlite3")
    result = subprocess.run(
        [str(RXKIT), "chat", "--provider", "mock", "--session", "r", "--db", db],
        input="first\n/reset\nsecond\n/exit\nnever sent\n", env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "first\nsecond\n"

    async def history() -> list[str]:
        store = SQLiteStore(db)
        try:
            return [m.text for m in await store.load("r")]
        finally:
            await store.aclose()

    assert asyncio.run(history()) == ["second", "second"], "/reset forgot the first turn"


def test_repl_refuses_unknown_commands_and_sends_paths_and_double_slashes(env: dict[str, str], tmp_path: Path) -> None:
    db = str(tmp_path / "r.sqlite3")
    lines = ["first", "/frobnicate now", "/reset please", "/usr/bin is a folder?", "//reset", "/?", "/exit", "never"]
    result = subprocess.run(
        [str(RXKIT), "chat", "--provider", "mock", "--session", "r", "--db", db],
        input="\n".join(lines) + "\n", env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "first\n/usr/bin is a folder?\n/reset\n"  # the mock echoes what reached the model
    errors = [line for line in result.stderr.splitlines() if line.startswith("rxkit: error: ")]
    assert errors[0].startswith("rxkit: error: /frobnicate is not a command; the commands are /exit, /quit, /reset")
    assert errors[1].startswith("rxkit: error: /reset takes nothing after it;")
    assert len(errors) == 2 and "(history cleared)" not in result.stderr, result.stderr


# -- the default provider -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, "local"),
        ({"GOOGLE_API_KEY": "g"}, "gemini"),
        ({"GEMINI_API_KEY": "g", "ANTHROPIC_API_KEY": "a"}, "anthropic"),
        ({"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o"}, "openai"),
        ({"OPENAI_API_KEY": "", "GEMINI_API_KEY": "g"}, "gemini"),
        ({"RXKIT_PROVIDER": "mock", "OPENAI_API_KEY": "o"}, "mock"),
    ],
)
def test_default_provider_follows_the_keys_in_the_environment(variables: dict[str, str], expected: str) -> None:
    assert cli.default_provider(variables) == expected


@pytest.mark.parametrize("kind", ["anthropic", "gemini"])
async def test_a_key_alone_is_enough_the_provider_picks_its_default_model(kind: str, env: dict[str, str]) -> None:
    """With only ANTHROPIC_API_KEY (or GEMINI_API_KEY) set, `rxkit chat` answers: no --model needed.
    RXKIT_BASE_URL points the provider at a loopback server that speaks its API and checks the request."""
    from tests.providers import anthropic_server, gemini_server

    server_type = {"anthropic": anthropic_server.AnthropicServer, "gemini": gemini_server.GeminiServer}[kind]
    module: Any = anthropic_server if kind == "anthropic" else gemini_server
    async with server_type() as server:
        server.push(module.Reply(events=module.TEXT_STREAM))
        variables = {**env, f"{kind.upper()}_API_KEY": server.api_key, "RXKIT_BASE_URL": server.url}
        proc = await asyncio.create_subprocess_exec(
            str(RXKIT), "chat", "--once", "What is the capital of France?", env=variables,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == module.TEXT_STREAM_TEXT
    [sent] = server.requests
    if kind == "anthropic":
        assert sent.body["model"] == "claude-haiku-4-5"
    else:
        assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


# -- the embedded model, for real ------------------------------------------------------------------


@pytest.mark.local_model
def test_once_without_keys_answers_with_the_embedded_model(env: dict[str, str]) -> None:
    marker = env["RXKIT_TEST_MARKER"]
    result = rxkit("chat", "--once", "What is the capital of France?", env=env)
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert result.stderr == "", "no spinner or noise when stderr is not a terminal"
    assert servers_with_marker(marker) == [], "the llama server outlived the CLI"


@pytest.mark.local_model
def test_model_option_runs_another_gguf_file(env: dict[str, str], tmp_path: Path) -> None:
    """`--model PATH.gguf` serves that file (here a copy of the bundled model under another name)."""
    import shutil

    from rxkit.providers._llama_server import bundled_model_path

    other = tmp_path / "capital-answerer.Q8_0.gguf"
    shutil.copyfile(bundled_model_path(), other)
    marker = env["RXKIT_TEST_MARKER"]
    proc = subprocess.Popen(
        [str(RXKIT), "chat", "--provider", "local", "--model", str(other), "--once", "What is the capital of France?"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    served: list[str] = []
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not served:
        for server in servers_with_marker(marker):
            with contextlib.suppress(psutil.Error):
                served = server.cmdline()
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Paris" in out
    assert str(other) in served and str(bundled_model_path()) not in served
    assert servers_with_marker(marker) == []


@pytest.mark.local_model
def test_repl_with_the_embedded_model_cancels_on_ctrl_c_and_stops_its_server_on_sigterm(env: dict[str, str]) -> None:
    marker = env["RXKIT_TEST_MARKER"]
    term = Terminal(["chat", "--provider", "local"], env)
    try:
        term.read_until("Ctrl-D exits", timeout=120)
        assert "Starting local model SmolLM2-135M-Instruct" in term.output.decode(errors="replace"), "a spinner"
        servers = servers_with_marker(marker)
        assert len(servers) == 1, "the REPL started its server before the first question"
        term.type(b"Write a long story about a dragon.\r")
        mark = len(term.read_until("dragon.\r\n", timeout=10))
        term.read_until_more(mark, 20, timeout=60)  # some of the answer has streamed
        term.type(b"\x03")
        screen = term.read_until("(cancelled)")
        term.read_until("> ", after=screen.index("(cancelled)"))
        started = time.monotonic()
        os.kill(term.pid, signal.SIGTERM)
        assert term.wait() == 143
        assert time.monotonic() - started < 10, "stopping the server took too long"
    finally:
        term.kill()
    assert servers_with_marker(marker) == []
    assert not servers[0].is_running()


def test_credentials_in_base_url_stay_off_stderr(env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    base = f"http://user:pw-secret-42@127.0.0.1:{port}/v1?api-key=qk-secret-99"
    result = rxkit("chat", "--provider", "openai-compatible", "--base-url", base, "--once", "hi", env=env)
    assert result.returncode == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "pw-secret-42" not in result.stderr + result.stdout and "qk-secret-99" not in result.stderr + result.stdout


def test_db_under_a_regular_file_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = rxkit("chat", "--provider", "mock", "--db", str(blocker / "history.sqlite3"), "--once", "hi", env=env)
    assert result.returncode == 2, result.stderr
    assert (
        "--db" in result.stderr and "cannot make its folder" in result.stderr and "internal error" not in result.stderr
    )
