"""Audio devices through sounddevice (PortAudio): list them, and find one by name or index.

A device is named by its index, by a case-insensitive piece of its name, or
left as None for the system default. Anything else fails with an
:class:`~rxkit.errors.AudioDeviceError` that lists the devices there are,
before any stream opens::

    from rxkit.audio import find_device, list_devices
    for d in list_devices("input"):
        print(d.index, d.name, d.max_input_channels, d.default_samplerate)
    mic = find_device("pulse", "input")

PortAudio reads the device list once, when sounddevice is imported; call
:func:`refresh_devices` after a sound server appears (tests start their own
PulseAudio).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from rxkit.errors import AudioDeviceError
from rxkit.extras import require_extra

__all__ = [
    "AudioDevice",
    "Direction",
    "check_stream_settings",
    "find_device",
    "format_devices",
    "list_devices",
    "refresh_devices",
    "sounddevice",
]

Direction = Literal["input", "output"]


@dataclass(frozen=True, slots=True)
class AudioDevice:
    """One PortAudio device."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_input: bool = False
    default_output: bool = False

    def channels(self, direction: Direction) -> int:
        """How many channels it has in ``direction``."""
        return self.max_input_channels if direction == "input" else self.max_output_channels

    def __str__(self) -> str:
        marks = ("<" if self.default_input else " ") + (">" if self.default_output else " ")
        return (
            f"{marks} {self.index:3d}  {self.name} ({self.hostapi}): "
            f"{self.max_input_channels} in, {self.max_output_channels} out, {self.default_samplerate:g} Hz"
        )


def sounddevice() -> ModuleType:
    """The sounddevice module; :class:`~rxkit.errors.MissingExtraError` if it is not installed,
    :class:`AudioDeviceError` if PortAudio is missing."""
    try:
        sd = require_extra("sounddevice", "voice", "audio devices")
    except OSError as exc:  # the PortAudio library is missing
        raise AudioDeviceError(f"PortAudio could not be loaded ({exc}); install libportaudio2") from exc
    return sd


def refresh_devices() -> None:
    """Make PortAudio read the device list again. Only call it while no stream is open."""
    sd = sounddevice()
    sd._terminate()
    sd._initialize()


def list_devices(direction: Direction | None = None) -> list[AudioDevice]:
    """All devices, or those with channels in ``direction`` (``"input"`` or ``"output"``)."""
    sd = sounddevice()
    try:
        raw: Any = sd.query_devices()
        apis = [a["name"] for a in sd.query_hostapis()]
        default_in, default_out = _defaults(sd)
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"could not list audio devices: {exc}") from exc
    devices = [
        AudioDevice(
            index=int(d["index"]),
            name=str(d["name"]),
            hostapi=apis[d["hostapi"]] if 0 <= d["hostapi"] < len(apis) else "?",
            max_input_channels=int(d["max_input_channels"]),
            max_output_channels=int(d["max_output_channels"]),
            default_samplerate=float(d["default_samplerate"]),
            default_input=int(d["index"]) == default_in,
            default_output=int(d["index"]) == default_out,
        )
        for d in raw
    ]
    if direction is None:
        return devices
    _check_direction(direction)
    return [d for d in devices if d.channels(direction) > 0]


def _defaults(sd: ModuleType) -> tuple[int, int]:
    ins, outs = sd.default.device
    count = len(sd.query_devices())
    # sounddevice's own default is -1 until set; PortAudio's is read from the host API then.
    if ins is None or ins < 0:
        ins = _portaudio_default(sd, "input", count)
    if outs is None or outs < 0:
        outs = _portaudio_default(sd, "output", count)
    return int(ins), int(outs)


def _portaudio_default(sd: ModuleType, kind: str, count: int) -> int:
    try:
        return int(sd.query_devices(kind=kind)["index"]) if count else -1
    except (sd.PortAudioError, ValueError):
        return -1


def _check_direction(direction: str) -> None:
    if direction not in ("input", "output"):
        raise AudioDeviceError(f"direction must be 'input' or 'output', not {direction!r}")


def format_devices(devices: list[AudioDevice] | None = None) -> str:
    """A table of devices (``<`` marks the default input, ``>`` the default output)."""
    devices = list_devices() if devices is None else devices
    if not devices:
        return "no audio devices found (is a sound server running?)"
    return "\n".join(str(d) for d in devices)


def find_device(device: int | str | None, direction: Direction) -> AudioDevice:
    """The device to open for ``direction``: by index, by a piece of its name, or the default.

    A string of digits is an index. An exact name wins over a partial one;
    a partial name that fits several devices is an error naming them.
    """
    _check_direction(direction)
    devices = list_devices()
    usable = [d for d in devices if d.channels(direction) > 0]
    if device is None:
        for d in usable:
            if d.default_input if direction == "input" else d.default_output:
                return d
        if usable:
            return usable[0]
        raise _missing(f"no default {direction} device", direction, devices)
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    if isinstance(device, int):
        for d in devices:
            if d.index == device:
                if d.channels(direction) == 0:
                    raise _missing(f"device {device} ({d.name}) has no {direction} channels", direction, devices)
                return d
        raise _missing(f"no audio device with index {device}", direction, devices)
    if not isinstance(device, str):
        raise AudioDeviceError(f"a device is an index or a name, not {type(device).__name__}")
    wanted = device.strip().lower()
    exact = [d for d in usable if d.name.lower() == wanted]
    if exact:
        return exact[0]
    partial = [d for d in usable if wanted in d.name.lower()]
    if len(partial) == 1:
        return partial[0]
    if partial:
        names = ", ".join(f"{d.index}: {d.name}" for d in partial)
        raise AudioDeviceError(f"{direction} device name {device!r} fits several devices ({names}); be more precise")
    raise _missing(f"no {direction} device named like {device!r}", direction, devices)


def _missing(what: str, direction: str, devices: list[AudioDevice]) -> AudioDeviceError:
    usable = [d for d in devices if d.channels(direction) > 0]  # type: ignore[arg-type]
    if usable:
        listing = "; ".join(f"{d.index}: {d.name}" for d in usable)
        return AudioDeviceError(f"{what}. {direction.capitalize()} devices: {listing}", devices=devices)
    return AudioDeviceError(
        f"{what}. There are no {direction} devices at all (is a sound server running, PULSE_SERVER set?)",
        devices=devices,
    )


def check_stream_settings(device: AudioDevice, direction: Direction, sample_rate: int, channels: int) -> None:
    """Raise :class:`AudioDeviceError` if ``device`` cannot open such a stream (nothing is opened)."""
    if sample_rate <= 0:
        raise AudioDeviceError(f"sample rate must be positive, not {sample_rate}")
    if channels < 1 or channels > device.channels(direction):
        raise AudioDeviceError(
            f"{device.name} has {device.channels(direction)} {direction} channel(s); {channels} were asked for"
        )
    sd = sounddevice()
    check = sd.check_input_settings if direction == "input" else sd.check_output_settings
    try:
        check(device=device.index, channels=channels, dtype="int16", samplerate=sample_rate)
    except (sd.PortAudioError, ValueError) as exc:
        raise AudioDeviceError(f"{device.name} cannot {direction} {channels} ch at {sample_rate} Hz: {exc}") from exc


_FALLBACK_RATES = (48000, 44100, 32000, 22050, 16000)


def supported_rate(device: AudioDevice, direction: Direction, sample_rate: int, channels: int) -> int:
    """``sample_rate`` if ``device`` can open such a stream, else the first rate it can (its default, then
    48, 44.1, 32, 22.05, 16 kHz): raw ``hw:`` devices often take only 44.1 or 48 kHz, and the stream then
    resamples. Raises :class:`AudioDeviceError` (about ``sample_rate``) when none works.

    >>> supported_rate(find_device(None, "input"), "input", 16000, 1)  # doctest: +SKIP
    48000
    """
    try:
        check_stream_settings(device, direction, sample_rate, channels)
        return sample_rate
    except AudioDeviceError as exc:
        first = exc
    for rate in (round(device.default_samplerate), *_FALLBACK_RATES):
        if rate != sample_rate and rate > 0:
            try:
                check_stream_settings(device, direction, rate, channels)
            except AudioDeviceError:
                continue
            return rate
    raise first
