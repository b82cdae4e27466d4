"""Noise bursts that are not speech, made with numpy: a cough, clicks, white noise (16-bit mono PCM).

What a VAD must not take for the user talking over a reply.
"""

from __future__ import annotations

import numpy as np

RATE = 16000


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def cough(ms: float = 250, rate: int = RATE, level: float = 0.5, seed: int = 0) -> np.ndarray:
    """A cough: a burst of noise shaped like one (band 200-3000 Hz, fast attack, slower decay)."""
    n = int(rate * ms / 1000)
    noise = _rng(seed).standard_normal(n)
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(freqs < 200) | (freqs > 3000)] = 0
    shaped = np.fft.irfft(spectrum, n)
    t = np.arange(n) / n
    envelope = np.minimum(t / 0.08, 1.0) * np.exp(-4 * t)
    out = shaped * envelope
    return (out / np.max(np.abs(out)) * level * 32767).astype(np.int16)


def clicks(ms: float = 250, rate: int = RATE, every_ms: float = 50, level: float = 0.8) -> np.ndarray:
    """Sharp clicks (2 ms decaying impulses) every ``every_ms``: a keyboard, a mouse, a knock."""
    out = np.zeros(int(rate * ms / 1000))
    width = int(rate * 0.002)
    click = np.exp(-np.arange(width) / (width / 5)) * np.where(np.arange(width) % 2, -1, 1)
    for start in range(0, len(out) - width, int(rate * every_ms / 1000)):
        out[start : start + width] = click
    return (out * level * 32767).astype(np.int16)


def white_noise(ms: float = 300, rate: int = RATE, level: float = 0.3, seed: int = 1) -> np.ndarray:
    """A burst of white noise."""
    out = _rng(seed).standard_normal(int(rate * ms / 1000)) * level / 3
    return (np.clip(out, -1, 1) * 32767).astype(np.int16)


def bursts() -> dict[str, np.ndarray]:
    """Eight bursts of 200-300 ms, by name."""
    return {
        "cough-200": cough(200, seed=2),
        "cough-250": cough(250, seed=3),
        "cough-300": cough(300, seed=4, level=0.8),
        "clicks-200": clicks(200),
        "clicks-300": clicks(300, every_ms=30),
        "noise-200": white_noise(200),
        "noise-300": white_noise(300, level=0.5),
        "noise-250-soft": white_noise(250, level=0.1, seed=5),
    }


def with_silence(burst: np.ndarray, before_s: float = 0.5, after_s: float = 1.0, rate: int = RATE) -> np.ndarray:
    """``burst`` with silence (a faint noise floor, about -60 dBFS) around it."""
    floor = _rng(9).standard_normal(int(rate * (before_s + after_s)) + len(burst)) * 30
    out = floor.copy()
    start = int(rate * before_s)
    out[start : start + len(burst)] += burst
    return np.clip(out, -32768, 32767).astype(np.int16)


def noise_floor(samples: int, dbfs: float = -59.0, seed: int = 9) -> np.ndarray:
    """``samples`` of white noise at ``dbfs`` RMS (a quiet room through a desk microphone, about -59 dBFS), as float."""
    return _rng(seed).standard_normal(samples) * 32768 * 10 ** (dbfs / 20)
