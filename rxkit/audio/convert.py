"""PCM format conversion with numpy: bytes <-> arrays, int16 <-> float32,
channel mixing and resampling (one-shot, or streaming block by block).

rxkit's audio stages carry 16-bit little-endian interleaved PCM as ``bytes``
(see :mod:`rxkit.elements`); these helpers convert at the edges, and
:class:`FrameConverter` passes frames already in the wanted format through
untouched, so a matching stream pays nothing.

>>> import numpy as np
>>> tone = (np.sin(2 * np.pi * 440 * np.arange(48000) / 48000) * 8000).astype(np.int16)
>>> len(resample(tone, 48000, 16000))
16000
>>> as_array(b"\\x01\\x00\\xff\\xff").tolist()
[1, -1]
>>> to_mono(np.array([100, 300, -2, 2], dtype=np.int16), 2).tolist()
[200, 0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from rxkit.elements import AudioFrame
from rxkit.errors import ConfigError

__all__ = [
    "FrameConverter",
    "Resampler",
    "as_array",
    "as_bytes",
    "convert_frame",
    "float32_to_int16",
    "int16_to_float32",
    "remix",
    "resample",
    "to_mono",
]

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]


def as_array(pcm: Any) -> Int16Array:
    """``pcm`` (bytes-like, or a numpy array) as an int16 array; no copy for bytes.

    A float array is taken as samples in [-1, 1] and converted.
    """
    if isinstance(pcm, np.ndarray):
        if pcm.dtype == np.int16:
            return pcm.reshape(-1)
        if pcm.dtype.kind == "f":
            return float32_to_int16(pcm.reshape(-1))
        raise ConfigError(f"PCM arrays must be int16 or float, not {pcm.dtype}")
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        if len(pcm) % 2:
            raise ConfigError(f"16-bit PCM needs an even number of bytes, got {len(pcm)}")
        return np.frombuffer(pcm, dtype="<i2")
    raise ConfigError(f"PCM must be bytes or a numpy array, not {type(pcm).__name__}")


def as_bytes(pcm: Any) -> bytes:
    """``pcm`` (bytes-like or array) as little-endian int16 ``bytes``; bytes pass through."""
    if type(pcm) is bytes:
        return pcm
    if isinstance(pcm, (bytearray, memoryview)):
        return bytes(pcm)
    return as_array(pcm).astype("<i2", copy=False).tobytes()


def int16_to_float32(samples: Any) -> Float32Array:
    """int16 samples (or PCM bytes) as float32 in [-1, 1)."""
    return as_array(samples).astype(np.float32) * np.float32(1.0 / 32768.0)


def float32_to_int16(samples: npt.ArrayLike) -> Int16Array:
    """Float samples in [-1, 1] as int16, clipped and rounded."""
    scaled = np.rint(np.asarray(samples, dtype=np.float32) * np.float32(32768.0))
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def to_mono(samples: Any, channels: int) -> Int16Array:
    """Average interleaved ``channels`` into one channel."""
    a = as_array(samples)
    if channels == 1:
        return a
    frames = a[: len(a) - len(a) % channels].reshape(-1, channels)
    return np.rint(frames.mean(axis=1)).astype(np.int16)


def remix(samples: Any, channels: int, to_channels: int) -> Int16Array:
    """Change the channel count: down to mono by averaging, up from mono by copying."""
    if to_channels < 1 or channels < 1:
        raise ConfigError(f"channel counts must be at least 1, not {channels} -> {to_channels}")
    a = as_array(samples)
    if channels == to_channels:
        return a
    mono = to_mono(a, channels)
    if to_channels == 1:
        return mono
    return np.repeat(mono, to_channels)


def _lowpass_taps(ratio: float) -> npt.NDArray[np.float64]:
    """A windowed-sinc low-pass at 90% of the output Nyquist, for downsampling by ``ratio``."""
    n = int(16 * ratio) | 1  # odd, so the filter has an integer delay
    cutoff = 0.45 / ratio  # cycles per input sample
    t = np.arange(n) - (n - 1) / 2
    taps = 2 * cutoff * np.sinc(2 * cutoff * t) * np.hamming(n)
    result: npt.NDArray[np.float64] = taps / taps.sum()
    return result


class Resampler:
    """Streaming resampler: linear interpolation, with an anti-aliasing FIR when downsampling.

    Feed blocks of any size to :meth:`process`; the output is the same as
    resampling the whole signal at once (state carries across blocks).

    >>> r = Resampler(48000, 16000)
    >>> sum(len(r.process(b"\\0\\0" * 960)) for _ in range(50)) // 2
    16000
    """

    __slots__ = (
        "from_rate", "to_rate", "channels", "_taps", "_fir_tail", "_carry", "_in_offset", "_out_count", "_plans",
        "_work", "_fir",
    )  # fmt: skip

    def __init__(self, from_rate: int, to_rate: int, channels: int = 1) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ConfigError(f"sample rates must be positive, not {from_rate} -> {to_rate}")
        if channels < 1:
            raise ConfigError(f"channels must be at least 1, not {channels}")
        self.from_rate = from_rate
        self.to_rate = to_rate
        self.channels = channels
        # flipped, in the order a window of the input meets them (what a convolution does)
        self._taps = _lowpass_taps(from_rate / to_rate)[::-1].copy() if to_rate < from_rate else None
        ntail = 0 if self._taps is None else len(self._taps) - 1
        self._fir_tail = np.zeros((ntail, channels), dtype=np.float64)
        self._carry = np.zeros((0, channels), dtype=np.float64)  # the last input sample, for interpolation
        self._in_offset = 0  # global index of _carry[0]
        self._out_count = 0  # output samples produced so far
        # (input length, phase) -> interpolation plan: a stream of equal blocks reuses one, so the
        # per-block work is two gathers and a weighted sum, with no index arithmetic
        self._plans: dict[tuple[int, int], tuple[int, Any, Any, Any, Any]] = {}
        self._work: dict[tuple[int, int], tuple[Any, ...]] = {}  # (length, n) -> buffers reused block to block
        self._fir: dict[int, tuple[Any, Any, Any]] = {}  # input frames -> the FIR's buffers, reused likewise

    def _plan(self, length: int, phase: int) -> tuple[int, Any, Any, Any, Any]:
        plan = self._plans.get((length, phase))
        if plan is None:
            if len(self._plans) >= 32:  # bounded: blocks whose size keeps changing
                self._plans.clear()
            plan = self._plans[(length, phase)] = _make_plan(length, phase, self.from_rate, self.to_rate)
        return plan

    def process(self, pcm: Any) -> bytes:
        """Resample one block; returns PCM bytes (possibly empty)."""
        return self._run(as_array(pcm)).tobytes()

    def process_array(self, pcm: Any) -> Int16Array:
        """Resample one block; returns an interleaved int16 array (the caller's own)."""
        a = as_array(pcm)
        if self.from_rate == self.to_rate:
            return a
        return self._run(a).copy()

    def _run(self, a: Int16Array) -> Int16Array:
        """Resample ``a`` into work buffers kept across blocks: the result is valid until the next call.

        A stream of equal blocks allocates no array per block, the anti-aliasing FIR's included (a
        matmul over a strided window view, into kept buffers): ``out=`` throughout. The mic -> duplex
        socket path runs this every 20 ms.
        """
        ch = self.channels
        if self.from_rate == self.to_rate:
            return a
        if len(a) % ch:
            raise ConfigError(f"{len(a)} samples do not split into {ch} channels")
        if len(a) == 0:  # (np.convolve would swap its arguments on a too-short input)
            return _NO_SAMPLES
        carry = self._carry
        k = len(carry)
        if self._taps is not None:  # the anti-aliasing FIR, into buffers kept across blocks
            frames = len(a) // ch
            fir = self._fir.get(frames)
            if fir is None:
                if len(self._fir) >= 32:  # bounded, as the plans are
                    self._fir.clear()
                fir = self._fir[frames] = _fir_buffers(frames, ch, self._taps)
            padded, windows, block = fir
            tail = self._fir_tail
            nt = len(tail)
            padded[:nt] = tail
            padded[nt:] = a.reshape(-1, ch)  # int16 -> float64 in place
            tail[:] = padded[frames:]
            np.matmul(windows, self._taps, out=block)  # = np.convolve(..., "valid") per channel
        else:
            block = a.reshape(-1, ch)
        length = k + len(block)
        # integer arithmetic: no drift over hours of audio, and the same weights however the input is cut
        n, i, j, w0, w1 = self._plan(length, self._out_count * self.from_rate - self._in_offset * self.to_rate)
        work = self._work.get((length, n))
        if work is None:
            if len(self._work) >= 32:  # bounded, as the plans are
                self._work.clear()
            work = self._work[(length, n)] = _work_buffers(length, n, ch)
        x, xs, y, t, out = work
        x[k:] = block  # int16 -> float64 in place: no temporary
        x[:k] = carry
        self._in_offset += length - 1
        if k == 0:
            self._carry = carry = np.zeros((1, ch), dtype=np.float64)
        carry[0] = x[-1]
        if n <= 0:
            return _NO_SAMPLES
        if ch == 1:  # flat arrays: numpy's gathers are quicker in one dimension
            w0, w1 = w0.reshape(-1), w1.reshape(-1)
        xs.take(i, 0, y, "clip")
        np.multiply(y, w0, out=y)
        xs.take(j, 0, t, "clip")
        np.multiply(t, w1, out=t)
        np.add(y, t, out=y)
        np.rint(y, out=y)
        np.maximum(y, -32768, out=y)  # (np.clip costs several times two ufuncs)
        np.minimum(y, 32767, out=y)
        np.copyto(out, y, casting="unsafe")
        self._out_count += n
        return out.reshape(-1)


def _fir_buffers(frames: int, channels: int, taps: Any) -> tuple[Any, Any, Any]:
    """The FIR's buffers for blocks of ``frames``: the input after the previous block's tail, every
    window of it (a strided view, no copy) and the filtered block."""
    from numpy.lib.stride_tricks import sliding_window_view

    padded = np.empty((len(taps) - 1 + frames, channels), dtype=np.float64)
    return padded, sliding_window_view(padded, len(taps), axis=0), np.empty((frames, channels))


_NO_SAMPLES: Int16Array = np.zeros(0, dtype=np.int16)
_NO_SAMPLES.flags.writeable = False


def _work_buffers(length: int, n: int, channels: int) -> tuple[Any, Any, Any, Any, Any]:
    """A block's buffers: input (``length`` frames, float64) and a view of it for the gathers, two float64
    outputs of ``n`` frames and the int16 result; flat for mono."""
    x = np.empty((length, channels), dtype=np.float64)
    shape: tuple[int, ...] = (max(n, 0),) if channels == 1 else (max(n, 0), channels)
    xs = x.reshape(-1) if channels == 1 else x
    return x, xs, np.empty(shape), np.empty(shape), np.empty(shape, dtype=np.int16)


def _make_plan(length: int, phase: int, from_rate: int, to_rate: int) -> tuple[int, Any, Any, Any, Any]:
    """Output sample m of a block sits at input position (phase + m * from_rate) / to_rate: its two
    neighbours and their weights, for every output sample the block makes."""
    n = ((length - 1) * to_rate - phase) // from_rate + 1
    if n <= 0:
        return 0, None, None, None, None
    num = phase + np.arange(n, dtype=np.int64) * from_rate
    i = np.minimum(num // to_rate, length - 1)
    frac = ((num % to_rate) / to_rate)[:, None]
    j = np.minimum(i + 1, length - 1)
    return n, i, j, 1.0 - frac, frac


def resample(pcm: Any, from_rate: int, to_rate: int, channels: int = 1) -> Int16Array:
    """Resample a whole signal; returns ``round(len * to_rate / from_rate)`` interleaved int16 samples."""
    a = as_array(pcm)
    if from_rate == to_rate:
        return a
    r = Resampler(from_rate, to_rate, channels)
    delay = 0 if r._taps is None else (len(r._taps) - 1) // 2
    # Pad so that the filter's delay is flushed out, then cut it off the front.
    pad = np.zeros((delay + 1) * channels, dtype=np.int16)
    out = r.process_array(np.concatenate([a, pad])).reshape(-1, channels)
    skip = round(delay * to_rate / from_rate)
    n_frames = len(a) // channels
    want = round(n_frames * to_rate / from_rate)
    return out[skip : skip + want].reshape(-1)


def convert_frame(frame: AudioFrame, sample_rate: int | None = None, channels: int | None = None) -> AudioFrame:
    """``frame`` in another rate and/or channel count (PCM as bytes). One-shot: for streams
    use :class:`FrameConverter`, which keeps the resampler's state between frames."""
    return FrameConverter(sample_rate, channels)(frame)


class FrameConverter:
    """Converts a stream of frames to one format; frames already in it pass through as they are.

    ``sample_rate`` / ``channels`` of None keep the frame's own. The
    resampler's state carries across frames and is reset when the input
    format changes.

    >>> conv = FrameConverter(16000, 1)
    >>> conv(AudioFrame(b"\\0\\0" * 960, 48000, 1)).pcm == b"\\0\\0" * 320
    True
    """

    __slots__ = ("sample_rate", "channels", "_resampler", "_from")

    def __init__(self, sample_rate: int | None = None, channels: int | None = None) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self._resampler: Resampler | None = None
        self._from: tuple[int, int] = (0, 0)

    def __call__(self, frame: AudioFrame) -> AudioFrame:
        rate = self.sample_rate or frame.sample_rate
        ch = self.channels or frame.channels
        if frame.sample_rate == rate and frame.channels == ch:
            if type(frame.pcm) is bytes:
                return frame
            return AudioFrame(as_bytes(frame.pcm), rate, ch, frame.timestamp)
        samples = remix(frame.pcm, frame.channels, ch)
        if frame.sample_rate != rate:
            if self._resampler is None or self._from != (frame.sample_rate, ch):
                self._resampler = Resampler(frame.sample_rate, rate, ch)
                self._from = (frame.sample_rate, ch)
            return AudioFrame(self._resampler.process(samples), rate, ch, frame.timestamp)
        return AudioFrame(samples.tobytes(), rate, ch, frame.timestamp)
