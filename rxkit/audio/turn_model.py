"""End-of-turn model: has the user finished, judged from how the turn sounds (Smart Turn v3.2).

Pipecat's Smart Turn v3.2 (BSD-2-Clause, Daily) is a Whisper-encoder
classifier over the last 8 s of a turn: it hears intonation and an
unfinished phrase ("I'd like to book a..."), so a turn can end after a
short pause when it sounds complete and wait when it does not. The ONNX
file ships in the ``pipecat-ai`` wheel (the ``turn`` extra); rxkit finds it
through the distribution's file list without importing pipecat, and runs it
with onnxruntime on one thread that never spins.

>>> model = SmartTurn()                                   # doctest: +SKIP
>>> model.probability(pcm, sample_rate=16000)             # doctest: +SKIP
0.93
>>> model.submit(pcm, 16000).result() >= model.threshold  # doctest: +SKIP
True
>>> model.close()                                         # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import importlib.metadata
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rxkit.audio.convert import as_array, resample, to_mono
from rxkit.errors import AudioError, ConfigError, MissingExtraError, ModelNotFoundError
from rxkit.extras import require_extra

__all__ = [
    "SMART_TURN_HINT",
    "SMART_TURN_PACKAGE",
    "SmartTurn",
    "smart_turn_available",
    "smart_turn_model_path",
    "whisper_features",
]

SMART_TURN_PACKAGE = "pipecat-ai"
SMART_TURN_HINT = "the smart-turn end-of-turn model comes with the turn extra: pip install 'rxkit[turn]'"
_MODEL_DIR = "pipecat/audio/turn/smart_turn/data/"
_MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
_RATE = 16000
_WINDOW_S = 8  # the model hears the last 8 s of the turn

# Whisper's log-mel front end, in numpy. After Pipecat's _whisper_features.py (BSD-2-Clause, Copyright (c)
# 2024-2026 Daily), itself after Hugging Face's WhisperFeatureExtractor (Apache-2.0): 25 ms periodic-Hann
# windows every 10 ms, centred with reflect padding, 80 Slaney mel bands up to 8 kHz.
_N_FFT, _HOP, _N_MELS = 400, 160, 80


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    mel = 3.0 * hz / 200.0
    log = hz >= 1000.0
    mel[log] = 15.0 + np.log(hz[log] / 1000.0) * (27.0 / np.log(6.4))
    return mel


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    hz = 200.0 * mel / 3.0
    log = mel >= 15.0
    hz[log] = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel[log] - 15.0))
    return hz


def _mel_filters() -> npt.NDArray[np.float64]:
    """(80, 201): triangular Slaney-normalised filters over the rFFT bins."""
    edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.array([_RATE / 2.0]))[0]), _N_MELS + 2))
    bins = np.linspace(0, _RATE // 2, _N_FFT // 2 + 1)
    slopes = edges[None, :] - bins[:, None]
    widths = np.diff(edges)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up)) * (2.0 / (edges[2:] - edges[:-2]))[None, :]
    return np.ascontiguousarray(filters.T)


_Index = npt.NDArray[np.intp]


def _sparse(filters: npt.NDArray[np.float64]) -> tuple[_Index, npt.NDArray[np.float64], _Index]:
    """The filter bank as (bins, weights, band starts): each band's nonzero bins one after the other.

    About 400 of the 80 x 201 weights are nonzero: a gather and np.add.reduceat do the product in numpy's
    own loops. A dense matrix product went to OpenBLAS, whose worker threads spin for a core: on the busy
    2-core machine that made the features 72 ms instead of 22 (wall) and doubled their CPU.
    """
    bins: list[int] = []
    starts: list[int] = []
    for band in filters:
        starts.append(len(bins))
        bins.extend(np.flatnonzero(band).tolist())
    index = np.array(bins, dtype=np.intp)
    band_of = np.repeat(np.arange(len(filters)), np.diff([*starts, len(bins)]))
    return index, filters[band_of, index], np.array(starts, dtype=np.intp)


_HANN = np.hanning(_N_FFT + 1)[:-1]  # periodic, as torch.hann_window
_FILTERS = _mel_filters()
_BINS, _WEIGHTS, _BAND_STARTS = _sparse(_FILTERS)


def whisper_features(samples: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Whisper log-mel features (80, 800) of exactly 8 s of 16 kHz float audio (-1..1), as Smart Turn takes them.

    >>> whisper_features(np.zeros(128000, dtype=np.float32)).shape
    (80, 800)
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.shape != (_RATE * _WINDOW_S,):
        raise ConfigError(f"whisper_features takes {_RATE * _WINDOW_S} samples (8 s at 16 kHz), not shape {x.shape}")
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)  # in float32, as the reference does
    padded = np.pad(x.astype(np.float64), _N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    spectrum = np.fft.rfft(frames * _HANN, axis=-1)  # (801, 201)
    power = spectrum.real**2 + spectrum.imag**2
    mel = np.add.reduceat(power[:, _BINS] * _WEIGHTS, _BAND_STARTS, axis=1).T  # = _FILTERS @ power.T, (80, 801)
    log = np.log10(np.maximum(1e-10, mel))[:, :-1]  # the last frame is dropped, as Whisper does
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


def _last_window(pcm: Any, sample_rate: int, channels: int) -> npt.NDArray[np.float32]:
    """The turn's last 8 s at 16 kHz as float, zero-padded at the start (as Pipecat pads)."""
    a = to_mono(as_array(pcm), channels) if channels != 1 else as_array(pcm)
    n = _RATE * _WINDOW_S
    if sample_rate != _RATE:
        a = resample(a[-(n * sample_rate // _RATE + sample_rate // 10) :], sample_rate, _RATE)  # a little margin
    a = a[-n:]
    out = np.zeros(n, dtype=np.float32)
    if len(a):
        out[n - len(a) :] = a.astype(np.float32) / 32768.0
    return out


def smart_turn_model_path() -> Path:
    """The Smart Turn v3.2 ONNX file inside the installed ``pipecat-ai`` wheel (pipecat is not imported).

    Raises :class:`~rxkit.errors.MissingExtraError` (with :data:`SMART_TURN_HINT`) when it is not installed.
    """
    try:
        files = importlib.metadata.files(SMART_TURN_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise MissingExtraError(SMART_TURN_HINT, package=SMART_TURN_PACKAGE, extra="turn") from None
    onnx = [f for f in files if str(f).replace("\\", "/").startswith(_MODEL_DIR) and f.name.endswith(".onnx")]
    onnx.sort(key=lambda f: (f.name != _MODEL_FILE, "cpu" not in f.name, f.name))  # v3.2-cpu, else another v3
    for entry in onnx:
        path = Path(str(entry.locate()))
        if path.is_file():
            return path
    raise ModelNotFoundError(f"no smart-turn ONNX file in the installed {SMART_TURN_PACKAGE!r}; {SMART_TURN_HINT}")


def smart_turn_available() -> bool:
    """Whether :class:`SmartTurn` can load its model here (the ``turn`` extra and onnxruntime installed)."""
    try:
        smart_turn_model_path()
        require_extra("onnxruntime", "turn", "SmartTurn")
    except ConfigError:
        return False
    return True


_SESSIONS: dict[Path, Any] = {}  # loaded once per file and shared: a session's run() is thread-safe
_SESSIONS_LOCK = threading.Lock()


def _session(path: Path) -> Any:
    ort = require_extra("onnxruntime", "turn", "SmartTurn")
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(path)
        if session is None:
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting thread
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
            so.log_severity_level = 3
            try:
                session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise ModelNotFoundError(f"cannot load the smart-turn model {path}: {type(exc).__name__}") from exc
            _SESSIONS[path] = session
        return session


class SmartTurn:
    """Smart Turn v3.2: the probability that a turn is complete, from its last 8 s of audio.

    ``model_path``: an ONNX file (default: the one in ``pipecat-ai``). A turn
    is complete when the probability reaches ``threshold`` (0.5, Pipecat's).
    The model is loaded once per process and file (about 0.4 s) and runs on
    one onnxruntime thread that never spins: :meth:`probability` blocks the
    caller for one inference (about 270 ms of CPU on the 2-core machine the
    tests run on); :meth:`submit` returns at once and judges on a thread of
    its own, which ends with the job, so no thread waits between turns and
    none is left behind. Each call does the same work whatever the turn's length.
    """

    name = "smart-turn"
    sample_rate = _RATE

    def __init__(self, model_path: str | os.PathLike[str] | None = None, threshold: float = 0.5) -> None:
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"the smart-turn threshold must be above 0 and below 1, not {threshold!r}")
        path = smart_turn_model_path() if model_path is None else Path(model_path).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"smart-turn model file not found: {path} (give the path of its .onnx file)")
        self.threshold = threshold
        self.model_path = path
        self._session: Any = _session(path.resolve())

    def probability(self, pcm: Any, sample_rate: int = _RATE, channels: int = 1) -> float:
        """The probability that the turn in ``pcm`` (16-bit PCM) is complete; blocks for one inference."""
        session = self._session
        if session is None:
            raise AudioError("this SmartTurn is closed")
        try:
            features = whisper_features(_last_window(pcm, sample_rate, channels))[None]
            out = session.run(None, {"input_features": features})
            return float(np.asarray(out[0]).reshape(-1)[0])
        except (AudioError, ConfigError):
            raise
        except Exception as exc:
            raise AudioError(f"the smart-turn model failed: {type(exc).__name__}: {exc}") from exc

    def submit(self, pcm: Any, sample_rate: int = _RATE, channels: int = 1) -> concurrent.futures.Future[float]:
        """Judge a turn of 16-bit PCM on a thread of its own; the future holds :meth:`probability`'s answer.

        Cancelling the future before the thread starts skips the work.
        """
        future: concurrent.futures.Future[float] = concurrent.futures.Future()

        def judge() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self.probability(pcm, sample_rate, channels))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                future.set_exception(exc)

        threading.Thread(target=judge, name="rxkit-turn-model", daemon=True).start()
        return future

    def close(self) -> None:
        """Let go of the model (the loaded file stays cached for the next SmartTurn). Idempotent."""
        self._session = None

    def __enter__(self) -> SmartTurn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SmartTurn({str(self.model_path)!r}, threshold={self.threshold})"
