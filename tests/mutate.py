"""Mutation testing of one rxkit module, bounded in time (issue 18).

Usage, from the repository root::

    .venv/bin/python tests/mutate.py rxkit.operators._coalesce
    .venv/bin/python tests/mutate.py rxkit/sse.py --tests tests/test_sse.py --max-minutes 10
    .venv/bin/python tests/mutate.py rxkit.buffering --show      # print each survivor's diff

It runs mutmut 3 on a staging copy of the repository where ``operators/`` and
``graphs/`` are real directories inside ``rxkit/`` (in the repository they are
symlinks there, which makes mutmut mutate one copy and import the other), so
a mutant is named, mutated and imported under the module's real name. Only
the chosen module is mutated; only the tests given (or the default ones for
the module, ``DEFAULT_TESTS`` below) run against it; 1 worker by default,
``--workers 2`` at most. Survivors judged equivalent are listed with a reason
in ``tests/mutation/equivalent.toml`` and set aside in the score.

This file is not a test: pytest does not collect it (its name does not start
with ``test_``) and CI does not run it. The scores it printed last are in the
table in ``tests/README.md``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tests" / "mutation" / "equivalent.toml"

# The tests that cover each module; --tests overrides.
DEFAULT_TESTS: dict[str, list[str]] = {
    "rxkit.providers._retry": [
        "tests/mutation/test_kill_retry.py",
        "tests/providers/test_faults.py",
        "tests/providers/test_registry.py",
    ],
    "rxkit.sse": ["tests/test_sse.py", "tests/mutation/test_kill_sse.py"],
    "rxkit.state.sqlite": [
        "tests/state/test_sqlite.py",
        "tests/state/test_stores.py",
        "tests/mutation/test_kill_sqlite.py",
    ],
    "rxkit.operators._sentence_chunker": [
        "tests/operators/test_sentence_chunker.py",
        "tests/mutation/test_kill_sentence_chunker.py",
    ],
    "rxkit.buffering": ["tests/test_buffering.py", "tests/mutation/test_kill_buffering.py"],
    "rxkit.operators._bounded_buffer": [
        "tests/operators/test_bounded_buffer.py",
        "tests/mutation/test_kill_bounded_buffer.py",
    ],
    "rxkit.operators._coalesce": [
        "tests/operators/test_coalesce.py",
        "tests/mutation/test_kill_coalesce.py",
    ],
    "rxkit.operators._one_turn_at_a_time": [
        "tests/operators/test_one_turn_at_a_time.py",
        "tests/mutation/test_kill_one_turn_at_a_time.py",
    ],
    "rxkit.providers.client": [
        "tests/providers/test_client.py",
        "tests/providers/test_faults.py",
        "tests/providers/test_custom_provider.py",
        "tests/providers/test_hot.py",
        "tests/mutation/test_kill_client.py",
    ],
    # the duplex session's event handling (OpenAI Realtime): the loopback and recording tests run too slowly
    # per mutant (seconds each), the kill tests call handle() directly
    "rxkit.duplex.openai": ["tests/mutation/test_kill_duplex_openai.py"],
    "rxkit.duplex.gemini": ["tests/mutation/test_kill_duplex_gemini.py"],
    # the session's bookkeeping and connection: its own kill tests (loopback servers with no grace waits) and
    # the protocols' kill tests, which drive it through handle()
    "rxkit.duplex.session": [
        "tests/mutation/test_kill_duplex_session.py",
        "tests/mutation/test_kill_duplex_openai.py",
        "tests/mutation/test_kill_duplex_gemini.py",
    ],
    "rxkit.duplex.sending": ["tests/mutation/test_kill_duplex_sending.py", "tests/duplex/test_hot_path.py"],
    "rxkit.duplex.history": ["tests/mutation/test_kill_duplex_history.py"],
    "rxkit.duplex.prices": ["tests/mutation/test_kill_duplex_prices.py", "tests/duplex/test_prices.py"],
    "rxkit.duplex.connection": ["tests/mutation/test_kill_duplex_connection.py"],
    "rxkit.duplex.protocol": ["tests/mutation/test_kill_duplex_connection.py"],
    "rxkit.structured._parser": [
        "tests/structured/test_parser.py",
        "tests/structured/test_single_quotes.py",
        "tests/operators/test_parse_structured.py",
        "tests/mutation/test_kill_structured.py",
    ],
    "rxkit.structured._shape": [
        "tests/structured/test_parser.py",
        "tests/structured/test_single_quotes.py",
        "tests/operators/test_parse_structured.py",
        "tests/mutation/test_kill_structured.py",
        "tests/mutation/test_kill_structured_shape.py",
        "tests/mutation/test_kill_structured_format.py",
    ],
    # test_typed.py's other tests run typed functions over loopback HTTP (seconds each); this one is the format's
    "rxkit.structured._format": [
        "tests/test_typed.py::test_output_format_is_compact",
        "tests/mutation/test_kill_structured_format.py",
    ],
    # the partial values and the schema alignment the parser calls: the parser's tests, and their own kill tests
    "rxkit.structured._partial": [
        "tests/structured/test_parser.py",
        "tests/structured/test_single_quotes.py",
        "tests/operators/test_parse_structured.py",
        "tests/mutation/test_kill_structured.py",
        "tests/mutation/test_kill_partial.py",
    ],
    "rxkit.structured._align": [
        "tests/structured/test_parser.py",
        "tests/structured/test_single_quotes.py",
        "tests/operators/test_parse_structured.py",
        "tests/mutation/test_kill_structured.py",
        "tests/mutation/test_kill_partial.py",
    ],
    "rxkit.speech._service": [
        "tests/speech/test_speech.py",
        "tests/speech/test_speech_operators.py",
        "tests/mutation/test_kill_speech.py",
    ],
    "rxkit.speech._engines": [
        "tests/speech/test_speech.py",
        "tests/speech/test_speech_operators.py",
        "tests/mutation/test_kill_speech.py",
    ],
    # each cloud engine against the loopback servers of tests/speech/ (the CLI test, a subprocess, is left out)
    "rxkit.speech.openai": [
        "tests/speech/test_speech.py",
        "tests/speech/test_speech_operators.py",
        "tests/mutation/test_kill_speech.py",
        "tests/mutation/test_kill_speech_openai.py",
    ],
    "rxkit.speech.deepgram": [
        "tests/speech/test_speech.py",
        "tests/speech/test_speech_operators.py",
        "tests/mutation/test_kill_speech.py",
        "tests/mutation/test_kill_speech_deepgram.py",
    ],
    "rxkit.speech.elevenlabs": [
        "tests/speech/test_speech.py",
        "tests/speech/test_speech_operators.py",
        "tests/mutation/test_kill_speech.py",
        "tests/mutation/test_kill_speech_elevenlabs.py",
    ],
}

# mutmut's status names (mutmut.stats.status_by_exit_code). A mutant that makes the tests hang
# past mutmut's timeout was detected too: it counts as killed, as in other mutation tools.
DETECTED = ("killed", "timeout")
SURVIVED = "survived"


def module_name(arg: str) -> str:
    """``operators/_coalesce.py`` or ``rxkit/operators/_coalesce.py`` -> ``rxkit.operators._coalesce``."""
    if arg.endswith(".py"):
        parts = list(Path(arg).with_suffix("").parts)
        if parts[0] in ("operators", "graphs"):
            parts.insert(0, "rxkit")
        return ".".join(parts)
    return arg


def module_path(name: str) -> Path:
    """Path of the module inside the staging copy, relative to it."""
    path = Path(*name.split(".")).with_suffix(".py")
    if not (ROOT / path).exists():
        raise SystemExit(f"mutate: no module {name!r} (looked for {path})")
    return path


def stage(workdir: Path, target: Path, tests: list[str]) -> None:
    """Copy the repository into ``workdir`` with the symlinked packages made real."""
    # No compiled modules (setup.py builds rxkit.structured's with mypyc): an extension module next to a .py
    # shadows it, and the mutants are in the .py.
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", "mutants", "*.so", "*.pyd")
    # symlinks=False copies what rxkit/operators and rxkit/graphs point to.
    shutil.copytree(ROOT / "rxkit", workdir / "rxkit", symlinks=False, ignore=ignore)
    shutil.copytree(ROOT / "tests", workdir / "tests", symlinks=True, ignore=ignore)
    for extra in ["notebooks", *(p.name for p in ROOT.glob("*.md"))]:  # docs that tests read
        source = ROOT / extra
        if source.is_dir():
            shutil.copytree(source, workdir / extra, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, workdir / extra)
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    pyproject = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", pyproject)
    pyproject += (
        "\n[tool.mutmut]\n"
        'source_paths = ["rxkit"]\n'
        f"only_mutate = [{json.dumps(str(target))}]\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        f"also_copy = {json.dumps(['notebooks', *(p.name for p in ROOT.glob('*.md'))])}\n"  # tests read them
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]\n'
    )
    (workdir / "pyproject.toml").write_text(pyproject, "utf-8")


def run_mutmut(workdir: Path, workers: int, deadline: float, mutants: list[str]) -> bool:
    """Run mutmut until done or the deadline; True when it finished."""
    # RXKIT_PURE_PYTHON: rxkit.structured loads its .py sources (the mutated ones) even if a compiled module is found
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", RXKIT_PURE_PYTHON="1")
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(workers), *mutants]
    with (workdir / "mutmut.log").open("wb") as log:  # its spinner is noise here
        process = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
        return True
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return False
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise


def results(workdir: Path, target: Path) -> dict[str, str]:
    """Mutant name -> status, read from mutmut's .meta file of the module."""
    from mutmut.stats import status_by_exit_code  # mutmut is a test extra, needed here only

    meta = workdir / "mutants" / (str(target) + ".meta")
    if not meta.exists():
        return {}
    data = json.loads(meta.read_text("utf-8"))
    return {name: status_by_exit_code[code] for name, code in data.get("exit_code_by_key", {}).items()}


def show(workdir: Path, name: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", name], cwd=workdir, capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="dotted name (rxkit.operators._coalesce) or path (operators/_coalesce.py)")
    parser.add_argument("--tests", nargs="+", help="test files or node ids to run against each mutant")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="stop after this long (default 15)")
    parser.add_argument("--workers", type=int, default=1, choices=(1, 2), help="mutmut worker processes")
    parser.add_argument("--show", action="store_true", help="print the diff of every survivor not listed equivalent")
    parser.add_argument(
        "--mutants", nargs="+", default=[], help="test only these mutants (e.g. last run's survivors; * patterns too)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the staging directory (printed)")
    args = parser.parse_args(argv)

    name = module_name(args.module)
    target = module_path(name)
    tests = args.tests or DEFAULT_TESTS.get(name)
    if not tests:
        raise SystemExit(f"mutate: say which tests cover {name} with --tests")
    missing = [t for t in tests if not (ROOT / t.split("::")[0]).exists()]
    if missing:
        raise SystemExit(f"mutate: no such test file: {', '.join(missing)}")
    equivalent = tomllib.loads(EQUIVALENT.read_text("utf-8")).get(name, {}) if EQUIVALENT.exists() else {}

    deadline = time.monotonic() + args.max_minutes * 60
    workdir = Path(tempfile.mkdtemp(prefix="rxkit-mutate-"))
    try:
        stage(workdir, target, tests)
        finished = run_mutmut(workdir, args.workers, deadline, args.mutants)
        statuses = results(workdir, target)
        if args.mutants:  # names or mutmut's fnmatch patterns ('rxkit.x.xǁCǁf__mutmut_*')
            statuses = {n: s for n, s in statuses.items() if any(fnmatch.fnmatchcase(n, p) for p in args.mutants)}
        if all(s == "not checked" for s in statuses.values()):  # mutmut stopped before testing: say why
            print((workdir / "mutmut.log").read_text("utf-8", "replace")[-4000:])
        survivors = sorted(n for n, s in statuses.items() if s == SURVIVED)
        other = sorted(n for n, s in statuses.items() if s not in (*DETECTED, SURVIVED))
        killed = sum(s in DETECTED for s in statuses.values())
        judged = [n for n in survivors if n in equivalent]
        real = [n for n in survivors if n not in equivalent]
        stale = [] if args.mutants else sorted(set(equivalent) - set(survivors))
        counted = len(statuses) - len(judged)
        score = 100.0 * killed / counted if counted else 0.0
        print(f"\n{name}: {'finished' if finished else 'STOPPED at --max-minutes, results partial'}")
        print(
            f"| {name} | {len(statuses)} | {killed} | {len(real)} | {len(judged)} | {score:.1f}% |"
            "   (module | mutants | killed | survived | equivalent | score)"
        )
        for n in other:
            print(f"  {statuses[n]}: {n}")
        for n in sorted(n for n, s in statuses.items() if s == "timeout"):
            print(f"  timeout (counted as killed): {n}")
        for n in real:
            print(f"  survived: {n}")
            if args.show:
                print(show(workdir, n))
        for n in stale:
            print(f"  listed equivalent but not a survivor now (stale entry?): {n}")
        return 0 if finished and not real and not other else 1
    finally:
        if args.keep:
            print(f"staging directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
