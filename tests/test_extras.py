"""A missing optional package names the extra to install, in the library and on the command line.

Each case runs in a fresh interpreter where the package cannot be imported
(``sys.modules[name] = None`` makes ``import name`` raise ModuleNotFoundError,
as it does when the package is not installed).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rxkit.errors import ConfigError, MissingExtraError
from rxkit.extras import missing_extra, require_extra


def _without(package: str, code: str) -> subprocess.CompletedProcess[str]:
    script = f"import sys\nsys.modules[{package!r}] = None\n" + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("package", "name", "extra"),
    [
        ("numpy", "resample", "voice"),
        ("numpy", "wav_source", "voice"),
        ("numpy", "read_wav", "voice"),
        ("numpy", "speaker", "voice"),
        ("sounddevice", "list_devices", "voice"),
    ],
)
def test_audio_names_say_which_extra_to_install(package: str, name: str, extra: str) -> None:
    out = _without(
        package,
        f"""
        from rxkit.errors import MissingExtraError
        import rxkit.audio
        try:
            getattr(rxkit.audio, {name!r})()
        except MissingExtraError as exc:
            print(type(exc).__name__, exc.package, exc.extra, "|", exc)
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"MissingExtraError {package} {extra} |"), out.stdout
    assert f"pip install 'rxkit[{extra}]'" in out.stdout


@pytest.mark.parametrize("package", ["matplotlib", "numpy"])
def test_plots_say_which_extra_to_install(package: str) -> None:
    out = _without(
        package,
        """
        from rxkit.notebook.plots import plot_vad
        plot_vad(bytes(200))
        """,
    )
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("rxkit.errors.MissingExtraError:") and f"needs '{package}'" in last
    assert "pip install 'rxkit[notebook]'" in last


def test_devices_without_the_voice_extra_prints_only_the_message() -> None:
    out = _without("sounddevice", "from rxkit.cli import main\nraise SystemExit(main(['devices']))")
    assert out.stdout == ""  # no header before the error
    assert out.stderr == (
        "rxkit: error: audio devices needs 'sounddevice', which is not installed: pip install 'rxkit[voice]'\n"
    )
    assert out.returncode == 2  # as the CLI's other missing-extra paths (a ConfigError: usage)


def test_a_command_that_imports_a_missing_extra_on_the_way_names_it() -> None:
    out = _without("numpy", "from rxkit.cli import main\nraise SystemExit(main(['voice', '--input', 'in.wav']))")
    assert "internal error" not in out.stderr
    assert out.stderr.endswith("needs 'numpy', which is not installed: pip install 'rxkit[voice]'\n"), out.stderr
    assert out.returncode == 2


def test_only_missing_optional_packages_become_missing_extra_errors() -> None:
    error = missing_extra(ModuleNotFoundError("x", name="matplotlib.figure"), "plots")
    assert isinstance(error, MissingExtraError) and isinstance(error, ConfigError)
    assert (error.package, error.extra) == ("matplotlib", "notebook")
    assert missing_extra(ModuleNotFoundError("x", name="no_such_helper"), "plots") is None  # a bug stays a bug
    assert missing_extra(ImportError("cannot import name 'x'", name="numpy"), "plots") is None
    with pytest.raises(MissingExtraError, match=r"pip install 'rxkit\[voice\]'"):
        require_extra("rxkit_no_such_module_xyz", "voice", "a test")
    assert require_extra("json", "voice", "a test").dumps([]) == "[]"


@pytest.mark.parametrize(
    ("package", "code", "extra"),
    [
        ("prometheus_client", "from rxkit.telemetry.exporters import PrometheusExporter as E; E()", "metrics"),
        ("opentelemetry", "from rxkit.telemetry.exporters import OpenTelemetryExporter as E; E()", "metrics"),
        ("redis", "from rxkit.state.redis import RedisStore; RedisStore()", "redis"),
        (
            "mcp",
            "import asyncio; from rxkit.tools.mcp import MCPServer; asyncio.run(MCPServer(['x']).connect())",
            "mcp",
        ),
        ("faster_whisper", "from rxkit.audio.stt import WhisperSTT; WhisperSTT('tiny.en')", "whisper"),
    ],
)
def test_integrations_say_which_extra_to_install(package: str, code: str, extra: str) -> None:
    out = _without(
        package,
        f"""
        from rxkit.errors import MissingExtraError
        try:
            {code}
        except MissingExtraError as exc:
            print(type(exc).__name__, exc.package, exc.extra, "|", exc)
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"MissingExtraError {package} {extra} |"), out.stdout
    assert f"pip install 'rxkit[{extra}]'" in out.stdout
