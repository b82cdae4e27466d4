"""README.md's promises: the two commands come first, and its scripts run as shown."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    setup_and_chat, setup_and_test = (b.strip() for b in _blocks("bash")[:2])
    assert setup_and_chat == "bash .ci/setup && .venv/bin/rxkit chat"
    assert setup_and_test.startswith("bash .ci/setup && ") and "pytest" in setup_and_test
    assert setup_and_test in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_ten_line_script_runs_and_prints_sentences() -> None:
    script = _blocks("python")[0]
    assert len(script.strip().splitlines()) <= 10
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "Sentence(text='Hello there.')",
        "Sentence(text='It is 3.5 degrees!')",
        "Sentence(text='Dr. Who?')",
    ]
    assert lines[3].startswith("EndOfTurn(")


def _block_with(text: str) -> str:
    (block,) = (b for b in _blocks("python") if text in b)
    return block


@pytest.mark.parametrize("uvloop", ["installed", "missing"])
def test_the_deferred_gc_example_runs_as_written(uvloop: str) -> None:
    script = _block_with("DeferredGC()")
    if uvloop == "missing":  # as for a user with no extra that installs it
        script = "import sys\nsys.modules['uvloop'] = None\n" + script
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("500 answers, "), result.stdout
