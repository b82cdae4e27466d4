"""Every notebook in notebooks/ runs top to bottom in a real Jupyter kernel, and is committed without outputs.

The kernel is this interpreter's ipykernel (the project's virtualenv), named by a
kernelspec written to a temporary JUPYTER_PATH, so no kernel installed elsewhere
on the machine is picked up. It talks to the client over IPC sockets in a
temporary directory.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
EXPECTED = {
    "01_getting_started.ipynb",
    "02_operators.ipynb",
    "03_providers_and_cost.ipynb",
    "04_voice.ipynb",
    "05_tools_and_mcp.ipynb",
    "06_typed_functions.ipynb",
}
KERNEL = "rxkit-test"
OFFLINE_UNSET = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "RXKIT_PROVIDER"}


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


def _left_behind(before: set[int], grace: float = 10.0) -> set[int]:
    deadline = time.monotonic() + grace
    while (left := _children() - before) and time.monotonic() < deadline:
        time.sleep(0.1)  # the kernel exits shortly after its shutdown reply
    return left


def _read(path: Path) -> Any:
    import nbformat

    return nbformat.read(path, as_version=4)


def test_the_notebooks_are_all_there() -> None:
    assert {p.name for p in PATHS} >= EXPECTED


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_committed_without_outputs(path: Path) -> None:
    import nbformat

    nb = _read(path)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name}: a cell has an execution count"


@pytest.fixture
def kernel_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kernelspec for this interpreter's ipykernel, and a quiet, isolated Jupyter environment."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": KERNEL, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # The platformdirs locations: without this, older jupyter_core 5.x releases warn (DeprecationWarning).
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # the debugger's startup note about frozen modules
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_in_a_real_kernel(path: Path, kernel_env: Path) -> None:
    from nbclient import NotebookClient
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"  # sockets as files in our temp dir, not TCP ports
    config.KernelManager.ip = str(kernel_env / "kernel")
    nb = _read(path)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL,
        config=config,
        # Per cell. Every cell here runs in seconds; and the client's wait for a cell's reply can miss
        # the socket's wake-up (pyzmq's edge-triggered fd, under load): the reply is then only seen when
        # this timeout ends (without an error), which once stretched a 6 s notebook to 125 s.
        timeout=25,
        startup_timeout=60,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    before = _children()
    start = time.monotonic()
    began = datetime.now(UTC)
    # The kernel's environment as a user's, without keys: ipykernel turns off its capture of file descriptors
    # (which gives sys.stderr a fileno, as MCP's stdio client needs) when it sees PYTEST_CURRENT_TEST; and
    # the test runs offline whatever keys the developer has set (the notebooks use real APIs only with keys).
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST" and k not in OFFLINE_UNSET}
    client.execute(env=env)  # raises CellExecutionError, naming the cell, on any error
    took = time.monotonic() - start
    if took >= 60:
        timeline = _timeline(nb, began, datetime.now(UTC))
        pytest.fail(f"{path.name} took {took:.1f} s; notebooks must stay well under a minute:\n{timeline}")
    assert _left_behind(before) == set(), "the kernel and everything the notebook started have stopped"
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stderr":
                assert "Warning" not in out.text and "Traceback" not in out.text, f"{path.name}: {out.text}"
            assert out.output_type != "error"


def _timeline(nb: Any, began: datetime, ended: datetime) -> str:
    """Where a slow run's time went: kernel start, each code cell (nbclient records the kernel's
    timestamps), the gaps between cells, and kernel shutdown."""
    lines, last = [], began
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        ex = cell.get("metadata", {}).get("execution", {})
        keys = ("iopub.status.busy", "iopub.execute_input", "shell.execute_reply")
        sent, started, replied = (ex.get(k) for k in keys)
        if not (started and replied):
            continue
        t_sent = datetime.fromisoformat(sent) if sent else datetime.fromisoformat(started)
        t0, t1 = datetime.fromisoformat(started), datetime.fromisoformat(replied)
        first_line = cell.source.splitlines()[0][:60] if cell.source else ""
        lines.append(
            f"  {(t_sent - last).total_seconds():7.2f} s before, {(t1 - t0).total_seconds():7.2f} s in  {first_line}"
        )
        last = t1
    lines.append(f"  {(ended - last).total_seconds():7.2f} s after the last cell (kernel shutdown)")
    return "\n".join(lines)
