"""Signals on the command line: SIGTERM and Ctrl-C acted on at once, stacks on SIGUSR1.

:func:`signals_land` (around the whole command) makes SIGTERM exit with status
143 through ``finally`` blocks; :func:`prompt_interrupts` (while the prompt
waits) makes Ctrl-C drop the line; :func:`sigint_ignored` shields cleanup from
a second Ctrl-C; :func:`stacks_on_sigusr1` dumps every thread's stack.

Why a nudge is needed: a Python signal handler must run while the main thread sits in readline's ``input()``.

CPython runs a Python-level signal handler only when the main thread gets
back to the interpreter. Inside ``input()`` with GNU readline that happens
when ``select()`` on the terminal is interrupted (EINTR); a signal that
arrives after the prompt is drawn but before ``select()`` starts waiting
interrupts nothing, so its handler waits for the next key press. On a busy
machine that window is wide: ``kill`` sent the moment the prompt appears was
ignored 24 times in 40 with both cores loaded, and a Ctrl-C typed as the
prompt appeared seemed lost (it took effect at the next key).

:class:`SignalNudge` closes it: CPython writes each caught signal's number
to the wakeup file descriptor, a small thread reads it and, until the
handler reports that it ran, interrupts the main thread with a signal whose
handler does nothing (SIGUSR2), every 50 ms. Each interruption is an EINTR,
after which the pending handler runs.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "PROMPT_SIGINT_HANDLED",
    "SignalNudge",
    "let_signals_land",
    "prompt_interrupts",
    "sigint_ignored",
    "signals_land",
    "stacks_on_sigusr1",
]

_NUDGE_EVERY = 0.05  # s
_NUDGES = 100  # at most 5 s of nudging per signal


class SignalNudge:
    """While open, a caught signal of ``handled`` whose event is unset gets its handler run.

    ``handled`` maps each signal to watch to an event that its handler sets
    (and that the program keeps set while it does not care, e.g. SIGINT away
    from the prompt). Open it on the main thread after installing the
    handlers. A no-op where POSIX signals or threads are not there.
    """

    def __init__(self, handled: Mapping[int, threading.Event]) -> None:
        self.handled = {int(signum): event for signum, event in handled.items()}
        self._thread: threading.Thread | None = None
        if not hasattr(signal, "pthread_kill") or not hasattr(signal, "SIGUSR2"):
            return
        if threading.current_thread() is not threading.main_thread():
            return
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._old_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._old_usr2: Any = signal.signal(signal.SIGUSR2, _ignore)
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._watch, name="rxkit-signal-nudge", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self._read_fd, 64)
            except OSError:
                return
            if not data:  # closed: the program is done with it
                return
            for signum in set(data):
                event = self.handled.get(signum)
                if event is not None:
                    self._nudge(event)

    def _nudge(self, handled: threading.Event) -> None:
        for _ in range(_NUDGES):
            if handled.wait(_NUDGE_EVERY):
                return
            assert self._main is not None
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pthread_kill(self._main, signal.SIGUSR2)

    def close(self) -> None:
        """Stop watching and put the wakeup descriptor and SIGUSR2 back (call on the main thread)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        signal.set_wakeup_fd(self._old_wakeup)
        signal.signal(signal.SIGUSR2, self._old_usr2)
        os.close(self._write_fd)  # the watcher reads end of file and returns
        thread.join(5)
        os.close(self._read_fd)

    def __enter__(self) -> SignalNudge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ignore(signum: int, frame: Any) -> None:
    return None


# Set while no Ctrl-C is waiting to be noticed at the prompt (cleared only while the prompt waits).
PROMPT_SIGINT_HANDLED = threading.Event()
PROMPT_SIGINT_HANDLED.set()


@contextlib.contextmanager
def signals_land() -> Iterator[None]:
    """SIGTERM exits with status 143 through ``finally`` blocks, so the local model server and the store
    get closed (the REPL does not take it for a Ctrl-C); it and a Ctrl-C at the prompt are acted on even
    when they land just as readline draws the prompt (see :class:`SignalNudge`)."""

    handled = threading.Event()

    def terminate(signum: int, frame: Any) -> None:
        handled.set()
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread
        yield
        return
    nudge = SignalNudge({signal.SIGTERM: handled, signal.SIGINT: PROMPT_SIGINT_HANDLED})
    try:
        yield
    finally:
        nudge.close()
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def prompt_interrupts() -> Iterator[None]:
    """While the prompt waits, Ctrl-C raises KeyboardInterrupt through a handler that tells the nudge it ran.

    Only here: asyncio.Runner installs its own Ctrl-C handler (cancel the answer) only when it finds the
    default one, so the default is back before an answer starts."""
    done = PROMPT_SIGINT_HANDLED

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
def stacks_on_sigusr1() -> Iterator[None]:
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


def let_signals_land() -> None:
    return None


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
