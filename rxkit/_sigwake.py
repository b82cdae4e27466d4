"""Make a Python signal handler run while the main thread sits in readline's ``input()``.

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
import os
import signal
import threading
from collections.abc import Mapping
from typing import Any

__all__ = ["SignalNudge"]

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
