"""Every notebook in notebooks/ runs top to bottom in a real Jupyter kernel, and is committed without outputs.

The kernel is this interpreter's ipykernel (the project's virtualenv), named by a
kernelspec written to a temporary JUPYTER_PATH, so no kernel installed elsewhere
on the machine is picked up. It talks to the client over IPC sockets in a
temporary directory.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import sys
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from rxkit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
EXPECTED = {
    "01_getting_started.ipynb",
    "02_operators.ipynb",
    "03_providers_and_cost.ipynb",
    "04_voice.ipynb",
    "05_tools_and_mcp.ipynb",
    "06_typed_functions.ipynb",
    "07_duplex.ipynb",
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


def _code(path: Path) -> list[ast.Module]:
    flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    return [compile(c.source, path.name, "exec", flags=flags) for c in _read(path).cells if c.cell_type == "code"]


def _modules(path: Path) -> set[str]:
    """The top-level modules a notebook imports, and those it runs as servers (``python_server("module")``)."""
    found = set()
    for tree in _code(path):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "python_server" and node.args:
                first = node.args[0]
                assert isinstance(first, ast.Constant), f"{path.name}: python_server takes a module name"
                found.add(str(first.value).split(".")[0])
    return found


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_by(extras: set[str]) -> set[str]:
    """The distributions pyproject.toml installs with ``rxkit[extras]``: the dependencies and the extras' own."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_normal(re.split(r"[\s<>=!~;\[]", r)[0]) for r in project["dependencies"]}
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in project["optional-dependencies"][extra]:
            if requirement.startswith("rxkit["):
                todo += requirement.removeprefix("rxkit[").partition("]")[0].split(",")
            else:
                names.add(_normal(re.split(r"[\s<>=!~;\[]", requirement)[0]))
    return names


def test_the_notebooks_need_only_the_extras_the_readme_names() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Notebooks\n", 1)[1].split("\n## ", 1)[0]
    extras = {e for group in re.findall(r"rxkit\[([a-z,]+)\]", section) for e in group.split(",")}
    assert extras, "the README's Notebooks section names the extras to install"
    installed = _installed_by(extras)
    dists = importlib.metadata.packages_distributions()
    for path in PATHS:
        for module in sorted(_modules(path) - set(sys.stdlib_module_names) - {"rxkit"}):
            provided = {_normal(d) for d in dists.get(module, [])}
            assert provided & installed, f"{path.name} uses {module} ({provided}), not in rxkit[{','.join(extras)}]"


def test_the_notebooks_read_no_file_of_the_machines() -> None:
    """Data comes with the package (rxkit.notebook.speech_sample) or is made in the notebook."""
    for path in PATHS:
        for tree in _code(path):
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    assert not re.match(r"(/|~/|[A-Za-z]:\\)\w", node.value), f"{path.name}: {node.value!r}"


def test_the_speech_samples_are_package_data() -> None:
    from rxkit.notebook import SPEECH_RATE, SPEECH_SAMPLES, speech_sample

    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    data = ROOT / "rxkit" / "notebook" / "data"
    for name in SPEECH_SAMPLES:
        assert any((data / f"{name}.raw").match(glob) for glob in package_data["rxkit.notebook"])
        assert len(speech_sample(name)) / 2 / SPEECH_RATE > 2  # seconds of 16-bit mono
    assert "LICENSE" in {Path(g).name for g in package_data["rxkit.notebook"]}
    with pytest.raises(ConfigError, match="the samples are goforward, something"):
        speech_sample("nope")


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


def _client(nb: Any, kernel_env: Path, cwd: Path = NOTEBOOKS) -> Any:
    """An nbclient for ``nb`` on the test kernel, run in ``cwd``."""
    from nbclient import NotebookClient
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"  # sockets as files in our temp dir, not TCP ports
    config.KernelManager.ip = str(kernel_env / "kernel")
    return NotebookClient(
        nb,
        kernel_name=KERNEL,
        config=config,
        # Per cell. Every cell here runs in seconds; and the client's wait for a cell's reply can miss
        # the socket's wake-up (pyzmq's edge-triggered fd, under load): the reply is then only seen when
        # this timeout ends (without an error), which once stretched a 6 s notebook to 125 s.
        timeout=25,
        startup_timeout=60,
        resources={"metadata": {"path": str(cwd)}},
    )


def _user_env() -> dict[str, str]:
    """The kernel's environment as a user's, without keys: ipykernel turns off its capture of file descriptors
    (which gives sys.stderr a fileno, as MCP's stdio client needs) when it sees PYTEST_CURRENT_TEST; and the
    test runs offline whatever keys the developer has set (the notebooks use real APIs only with keys)."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST" and k not in OFFLINE_UNSET}


def _shown(cell: Any) -> list[str]:
    """The text of every output a saved cell shows (its plain text, else its HTML)."""
    texts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            texts.append(out.text)
        elif "data" in out:
            texts.append(out.data.get("text/plain", out.data.get("text/html", "")))
    return texts


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_in_a_real_kernel(path: Path, kernel_env: Path) -> None:
    nb = _read(path)
    client = _client(nb, kernel_env)
    before = _children()
    start = time.monotonic()
    began = datetime.now(UTC)
    client.execute(env=_user_env())  # raises CellExecutionError, naming the cell, on any error
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
            # A widget needs a live front end serving its comm; a saved notebook shows "No such comm" or nothing.
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), f"{path.name}: a widget"


@pytest.mark.slow
def test_what_a_saved_notebook_shows_is_the_final_state(kernel_env: Path, tmp_path: Path) -> None:
    """nbclient saves what the kernel sent while each cell ran: live views that outlive their cell, the
    progress bar and the events table must leave their final state there."""
    import nbformat

    cells = [
        "from rxkit.graphs import Conversation\n"
        "from rxkit.notebook import events_table, show\n"
        "from rxkit.providers.mock import MockProvider\n"
        "from rxkit.telemetry.events import EventBus, ProviderCallCompleted\n"
        "from rxkit.telemetry.progress import progress\n"
        "chat = Conversation(MockProvider(['The final answer is here.'], chunk_latency=0.05))",
        "live = show(chat, 'hi')  # returns at once",
        "elements = await live  # the answer ends while this cell runs",
        "again = show(chat, 'echo me')  # ends between this cell and the next",
        "import asyncio\nawait asyncio.sleep(1)\nprint(again.status)",
        "with progress('calls', total=3) as advance:\n    for _ in range(3):\n        advance()",
        "bus = EventBus()\n"
        "bus.publish(ProviderCallCompleted(provider='mock', model='m', duration_s=1.0, ttft_s=7.152557373046875e-06,"
        " output_tokens=7, cost=0.0000123, conversation='a conversation with a long name, to pass 50 characters'))\n"
        "events_table(bus)",
        "await chat.aclose()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    _client(nb, kernel_env, tmp_path).execute(env=_user_env())
    first, second, progress_cell, table = (_shown(nb.cells[i]) for i in (1, 3, 5, 6))
    assert len(first) == 1 and first[0].startswith("The final answer is here.\n[done · "), first
    assert len(second) == 1 and second[0].startswith("echo me\n[done · "), second
    assert _shown(nb.cells[4]) == ["done\n"]
    assert len(progress_cell) == 1 and "calls" in progress_cell[0] and "3/3" in progress_cell[0], progress_cell
    for cell in nb.cells:
        for out in cell.outputs:
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), "a widget: No such comm"
    (text,) = table
    assert "ttft_s=7.15 µs" in text and "output_tokens=7 tokens" in text and "cost=$0.0000123" in text, text
    assert "to pass 50 characters'" in text and "7.15255" not in text and "..." not in text, text  # shown whole
    html = nb.cells[6].outputs[0].data["text/html"]
    assert "ttft_s=7.15 µs" in html and "to pass 50 characters" in html and "..." not in html


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
