"""A private PulseAudio server with a virtual microphone and speaker, for real audio tests.

The ``pulse`` fixture (session-scoped) starts ``pulseaudio`` on its own socket
with two null sinks: ``spk`` is the default output (the speaker; its monitor
is recorded the whole session), and ``micfeed``, remapped as the source
``mic``, is the default input (play a file into it with
:meth:`PulseAudio.play_into_mic`). sounddevice reaches it through ALSA's
pulse plugin (devices ``pulse`` and ``default``) once ``PULSE_SERVER`` points
at the socket, which the fixture sets for the test process.

A null sink sleeps for up to its 2 s default latency when nothing listens,
so a stream that connects then waits up to 2 s for its first data. The
fixture keeps a low-latency recorder on both monitors for the whole session,
which keeps both sinks awake: streams start at once.

Use it in a test module with ``from tests.audio.pulse import pulse`` in a
conftest (see tests/audio/conftest.py), or register the module as a plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

CAPTURE_RATE = 16_000
"""The speaker monitor is recorded as 16 kHz mono s16le."""

_CONFIG = """\
load-module module-native-protocol-unix auth-anonymous=1 socket={socket}
load-module module-null-sink sink_name=spk rate=48000 channels=2 sink_properties=device.description=spk
load-module module-null-sink sink_name=micfeed rate=16000 channels=1 sink_properties=device.description=micfeed
load-module module-remap-source source_name=mic master=micfeed.monitor source_properties=device.description=mic
set-default-sink spk
set-default-source mic
"""


class PulseAudio:
    """A running private PulseAudio server and helpers to feed its mic and read its speaker."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "native"
        self.server = f"unix:{self.socket}"
        self.runtime = root / "runtime"
        self.capture_path = root / "speaker.raw"
        self.pid: int | None = None
        self._keepers: list[subprocess.Popen[bytes]] = []

    # -- lifecycle ----------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment for a PulseAudio client of this server."""
        return {**os.environ, "PULSE_SERVER": self.server, "PULSE_RUNTIME_PATH": str(self.runtime)}

    def start(self) -> None:
        self.runtime.mkdir(parents=True, exist_ok=True)
        (self.root / "state").mkdir(exist_ok=True)
        conf = self.root / "pulse.pa"
        conf.write_text(_CONFIG.format(socket=self.socket))
        env = {**self.env(), "PULSE_STATE_PATH": str(self.root / "state")}
        env.pop("PULSE_SERVER")
        subprocess.run(
            ["pulseaudio", "-n", "-F", str(conf), "--daemonize=yes", "--exit-idle-time=-1", "--use-pid-file=yes",
             f"--log-target=file:{self.root / 'pulse.log'}"],
            env=env, check=True, timeout=30, capture_output=True,
        )  # fmt: skip
        self.pid = int((self.runtime / "pid").read_text().strip())
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=self.env(), capture_output=True, timeout=10).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PulseAudio did not come up; log: {(self.root / 'pulse.log').read_text()}")
            time.sleep(0.05)
        # Session-long low-latency recorders on both monitors keep the null sinks awake (see above).
        self.capture_path.write_bytes(b"")
        self._keepers.append(self._record("spk.monitor", str(self.capture_path)))
        self._keepers.append(self._record("micfeed.monitor", os.devnull))
        deadline = time.monotonic() + 10
        while self.capture_path.stat().st_size == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the speaker monitor recorder produced nothing")
            time.sleep(0.05)

    def _record(self, device: str, path: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["parecord", f"--device={device}", "--latency-msec=20", "--raw", "--format=s16le",
             f"--rate={CAPTURE_RATE}", "--channels=1", path],
            env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        for proc in self._keepers:
            proc.send_signal(signal.SIGINT)
        for proc in self._keepers:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._keepers.clear()
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while _alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None

    # -- the microphone -----------------------------------------------------------
    async def play_into_mic(self, wav: str | os.PathLike[str]) -> None:
        """Play a WAV file into the virtual microphone; returns once it has played."""
        proc = await asyncio.create_subprocess_exec(
            "paplay", "--device=micfeed", "--latency-msec=20", os.fspath(wav), env=self.env(),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()

    # -- the speaker --------------------------------------------------------------
    def capture_position(self) -> int:
        """A mark in the speaker's recording; pass it to :meth:`captured_since`."""
        return self.capture_path.stat().st_size // 2 * 2

    def captured_since(self, mark: int) -> np.ndarray:
        """What the speaker played since ``mark``, as 16 kHz mono int16."""
        with self.capture_path.open("rb") as f:
            f.seek(mark)
            data = f.read()
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (already exited, not yet reaped by init) counts as gone.
    with contextlib.suppress(OSError):
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    return False


def nonsilent_seconds(samples: np.ndarray, rate: int = CAPTURE_RATE, threshold: int = 500, block_ms: int = 10) -> float:
    """Seconds of ``samples`` in blocks whose peak passes ``threshold``."""
    n = rate * block_ms // 1000
    blocks = samples[: len(samples) // n * n].reshape(-1, n)
    return float((np.abs(blocks.astype(np.int32)).max(axis=1) > threshold).sum() * block_ms / 1000)


def loud_part(samples: np.ndarray, threshold: int = 2000) -> np.ndarray:
    """``samples`` from the first to the last one louder than ``threshold``."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples[:0]


def dominant_frequency(samples: np.ndarray, rate: int = CAPTURE_RATE) -> float:
    """The strongest frequency in ``samples``, in Hz."""
    x = samples.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@contextlib.contextmanager
def running_pulse(root: Path) -> Iterator[PulseAudio]:
    """A private PulseAudio server in ``root``, with PULSE_SERVER set for this process while it runs.

    sounddevice's device list is refreshed and one stream each way is opened
    and closed first (the first stream in a process is the slow one). The
    ``pulse`` fixture and the live benchmark (tests/bench/bench_b5_live.py) share it.
    """
    for tool in ("pulseaudio", "pactl", "paplay", "parecord"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed: run `bash .ci/setup`")
    server = PulseAudio(root)
    old = {k: os.environ.get(k) for k in ("PULSE_SERVER", "PULSE_RUNTIME_PATH")}
    try:
        server.start()
        os.environ["PULSE_SERVER"] = server.server
        os.environ["PULSE_RUNTIME_PATH"] = str(server.runtime)
        from rxkit.audio.devices import refresh_devices

        refresh_devices()  # PortAudio read its device list at import, maybe before the server existed
        warm_up()
        yield server
    finally:
        server.stop()
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseAudio]:
    """A private PulseAudio server for this test session, with PULSE_SERVER set for the process."""
    with running_pulse(tmp_path_factory.mktemp("pulse")) as server:
        yield server


def warm_up() -> None:
    """Open and close one stream each way: the first stream in a process is the slow one."""
    import sounddevice as sd

    for cls in (sd.RawInputStream, sd.RawOutputStream):
        stream = cls(samplerate=16000, channels=1, dtype="int16")
        stream.start()
        time.sleep(0.1)
        stream.abort()
        stream.close()


def os_threads() -> int:
    """Threads of this process as the OS sees them (PortAudio's own threads included)."""
    import psutil

    return psutil.Process().num_threads()


async def wait_for(condition: object, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition()`` on the loop until it is true (real-device tests only)."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def threads_back_to(baseline: int, timeout: float = 5.0) -> None:
    """Wait until the OS thread count is back to ``baseline`` (streams closed, PortAudio threads gone)."""
    await wait_for(lambda: os_threads() <= baseline, timeout, f"threads back to {baseline} (now {os_threads()})")
