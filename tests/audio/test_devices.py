"""Device listing and look-up, on the private PulseAudio server (devices "pulse" and "default")."""

from __future__ import annotations

import pytest

from rxkit.audio.devices import AudioDevice, check_stream_settings, find_device, format_devices, list_devices
from rxkit.errors import AudioDeviceError
from tests.audio.pulse import PulseAudio

pytestmark = pytest.mark.audio


def test_lists_the_pulse_devices_with_channels_and_rates(pulse: PulseAudio) -> None:
    devices = list_devices()
    names = [d.name for d in devices]
    assert "pulse" in names and "default" in names
    for d in devices:
        assert isinstance(d, AudioDevice) and d.max_input_channels > 0 and d.max_output_channels > 0
        assert d.default_samplerate > 0 and d.hostapi == "ALSA"
    assert [d.name for d in list_devices("input")] == [d.name for d in list_devices("output")] == names
    assert sum(d.default_input for d in devices) == 1 and sum(d.default_output for d in devices) == 1


def test_finds_devices_by_index_name_piece_or_default(pulse: PulseAudio) -> None:
    pulse_dev = next(d for d in list_devices() if d.name == "pulse")
    assert find_device("PULSE", "input") == pulse_dev  # case-insensitive
    assert find_device("puls", "output") == pulse_dev  # a piece of the name
    assert find_device(pulse_dev.index, "output") == pulse_dev
    assert find_device(f" {pulse_dev.index} ", "input") == pulse_dev  # digits are an index (e.g. from the CLI)
    default = find_device(None, "input")
    assert default.default_input


def test_an_unknown_device_is_an_error_listing_what_exists(pulse: PulseAudio) -> None:
    with pytest.raises(AudioDeviceError) as info:
        find_device("usb headset", "input")
    message = str(info.value)
    assert "no input device named like 'usb headset'" in message
    assert "pulse" in message and "default" in message
    assert [d.name for d in info.value.devices] == [d.name for d in list_devices()]  # type: ignore[attr-defined]
    with pytest.raises(AudioDeviceError, match=r"no audio device with index 99.*pulse"):
        find_device(99, "output")


def test_a_name_piece_fitting_several_devices_is_ambiguous(pulse: PulseAudio) -> None:
    with pytest.raises(AudioDeviceError, match=r"fits several devices.*pulse.*default"):
        find_device("u", "output")  # in both "pulse" and "default"


def test_bad_direction_and_bad_device_types_are_errors(pulse: PulseAudio) -> None:
    with pytest.raises(AudioDeviceError, match="direction"):
        find_device(None, "sideways")  # type: ignore[arg-type]
    with pytest.raises(AudioDeviceError, match="index or a name"):
        find_device(1.5, "input")  # type: ignore[arg-type]


def test_stream_settings_are_checked_without_opening_anything(pulse: PulseAudio) -> None:
    dev = find_device("pulse", "output")
    check_stream_settings(dev, "output", 22050, 1)
    with pytest.raises(AudioDeviceError, match="64 were asked for"):
        check_stream_settings(dev, "output", 16000, 64)
    with pytest.raises(AudioDeviceError, match="positive"):
        check_stream_settings(dev, "input", 0, 1)


def test_format_devices_marks_the_defaults(pulse: PulseAudio) -> None:
    table = format_devices()
    assert "pulse (ALSA)" in table and "default (ALSA)" in table
    assert "<>" in table  # the default device is both the default input and output
    assert format_devices([]).startswith("no audio devices found")
