"""The ``sib`` command, run for real in subprocesses: output, exit codes, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sib_engine
from sib_engine.loader import EXAMPLE
from sib_engine.schema_export import contract_json_schema

HERE = Path(__file__).parent
EVERY_KIND = HERE / "data" / "every_kind.yaml"
EXAMPLES = sorted((HERE.parent / "contracts").glob("*.yaml"))
SCHEMA_FILE = Path(sib_engine.__file__).parent / "schema" / "contract.schema.json"
SIB_SCRIPT = Path(sys.executable).parent / "sib"

ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "100", "NO_COLOR": "1"}


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m sib_engine ARGS`` (the same ``main`` as the ``sib`` console script)."""
    return python("-m", "sib_engine", *map(str, args), cwd=cwd)


def python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=ENV,
        cwd=cwd,
        timeout=120,
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


@pytest.fixture
def valid(tmp_path: Path) -> Path:
    path = tmp_path / "demo.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    return path


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    text = EXAMPLE.replace('price: "2750.00"', "price: -5").replace("currency: EUR", "currency: EUR\nsumary: oops")
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- check ---


def test_check_a_valid_file(valid: Path) -> None:
    r = run("check", valid)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"ok {valid}: Demo rate card (1 trigger)\n"
    assert r.stderr == ""


def test_check_counts_triggers() -> None:
    r = run("check", EVERY_KIND)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"ok {EVERY_KIND}: Kitchen Works outcomes contract (6 triggers)\n"


def test_check_a_broken_file_lists_every_problem_located(broken: Path) -> None:
    r = run("check", broken)
    assert r.returncode == 1
    assert r.stdout == ""
    no_traceback(r)
    lines = r.stderr.splitlines()
    assert lines[0] == f"invalid {broken}: 2 problems"
    assert f"  {broken}:20:30: triggers[0].outcomes[0].price: -5 is negative" in r.stderr
    assert f"  {broken}:5:1: sumary: unknown key 'sumary' (hint: did you mean 'summary'?)" in r.stderr


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("tab.yaml", EXAMPLE.replace("  - {id: city", "\t- {id: city"), "YAML syntax error"),
        ("empty.yaml", "", "the file is empty"),
        ("list.yaml", "- 1\n- 2\n", "not a mapping"),
        ("binary.yaml", b"\xff\xfe\x00garbage\xb5", "not UTF-8"),
        ("tag.yaml", EXAMPLE.replace("title: Demo rate card", "title: !!python/object:os.system x"), "tag"),
        ("old.yaml", EXAMPLE.replace("sib-contract/1", "sib-contract/0"), "not supported"),
    ],
    ids=["tab", "empty", "list", "binary", "tag", "format"],
)
def test_check_any_bad_file_exits_1_without_traceback(
    tmp_path: Path, name: str, content: str | bytes, expected: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    r = run("check", path)
    assert r.returncode == 1, r.stdout + r.stderr
    no_traceback(r)
    assert r.stderr.startswith(f"invalid {path}: ")
    assert str(path) in r.stderr.splitlines()[1]
    assert expected in r.stderr


def test_check_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    r = run("check", missing)
    assert r.returncode == 1
    no_traceback(r)
    assert f"invalid {missing}: 1 problem\n" in r.stderr
    assert "no such file" in r.stderr


def test_check_a_directory(tmp_path: Path) -> None:
    r = run("check", tmp_path)
    assert r.returncode == 1
    no_traceback(r)
    assert "cannot read the file" in r.stderr


def test_check_several_files_mixed(valid: Path, broken: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    r = run("check", valid, broken, missing, EVERY_KIND)
    assert r.returncode == 1
    no_traceback(r)
    assert r.stdout.splitlines() == [
        f"ok {valid}: Demo rate card (1 trigger)",
        f"ok {EVERY_KIND}: Kitchen Works outcomes contract (6 triggers)",
    ]
    assert r.stderr.index(f"invalid {broken}") < r.stderr.index(f"invalid {missing}")


def test_check_several_valid_files(valid: Path) -> None:
    r = run("check", valid, EVERY_KIND)
    assert r.returncode == 0
    assert len(r.stdout.splitlines()) == 2


def test_check_needs_a_file() -> None:
    r = run("check")
    assert r.returncode == 2
    no_traceback(r)
    assert "Missing argument" in r.stderr


@pytest.mark.skipif(not EXAMPLES, reason="no example contracts yet")
def test_check_the_example_contracts() -> None:
    r = run("check", *EXAMPLES)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == len(EXAMPLES)


# -------------------------------------------------------------------------- schema ---


def test_schema_prints_the_json_schema() -> None:
    r = run("schema")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == contract_json_schema()
    assert r.stdout == SCHEMA_FILE.read_text(encoding="utf-8"), "run `make schema`"


# ---------------------------------------------------------------------------- show ---


def test_show_prints_the_key_facts(valid: Path) -> None:
    r = run("show", valid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# Demo rate card\n")
    for fact in ("**City of Example** pays 100% of every outcome payment", "EUR 2,750.00", "Schedule 1",
                 "2024-01-01 to 2026-12-31"):
        assert fact in r.stdout


def test_show_as_signed_and_on_a_date() -> None:
    signed = run("show", EVERY_KIND)
    assert signed.returncode == 0, signed.stderr
    assert "*Level-2 diploma*: EUR 4,730.00" in signed.stdout
    assert "— Deed of variation 1, cl. 2" in signed.stdout

    amended = run("show", EVERY_KIND, "--on", "2025-08-01")
    assert amended.returncode == 0, amended.stderr
    assert "**Terms in force on 2025-08-01**" in amended.stdout
    assert "*Level-2 diploma*: EUR 5,000.00" in amended.stdout


def test_show_a_broken_file(broken: Path) -> None:
    r = run("show", broken)
    assert r.returncode == 1
    assert r.stdout == ""
    no_traceback(r)
    assert f"invalid {broken}: 2 problems" in r.stderr


def test_show_a_missing_file(tmp_path: Path) -> None:
    r = run("show", tmp_path / "missing.yaml")
    assert r.returncode == 1
    no_traceback(r)
    assert "no such file" in r.stderr


@pytest.mark.parametrize("bad", ["2025-13-01", "tomorrow", "01-08-2025"])
def test_show_a_bad_date_is_a_usage_error(valid: Path, bad: str) -> None:
    r = run("show", valid, "--on", bad)
    assert r.returncode == 2
    no_traceback(r)
    assert "--on" in r.stderr


@pytest.mark.skipif(not EXAMPLES, reason="no example contracts yet")
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_show_each_example_contract(path: Path) -> None:
    r = run("show", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# ")


# ------------------------------------------------------------ help, version, usage ---


def test_help() -> None:
    r = run("--help")
    assert r.returncode == 0, r.stderr
    for word in ("check", "schema", "show", "Exit codes"):
        assert word in r.stdout


@pytest.mark.parametrize("command", ["check", "schema", "show"])
def test_help_of_each_command(command: str) -> None:
    r = run(command, "--help")
    assert r.returncode == 0, r.stderr
    assert f"sib {command}" in r.stdout


def test_no_arguments_shows_the_help() -> None:
    r = run()
    assert r.returncode == 2
    assert "check" in r.stdout + r.stderr


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout == f"sib-engine {sib_engine.__version__}\n"


@pytest.mark.skipif(not SIB_SCRIPT.exists(), reason="the sib console script is not installed")
def test_the_console_script(valid: Path) -> None:
    r = subprocess.run([str(SIB_SCRIPT), "check", str(valid)], capture_output=True, text=True,
                       encoding="utf-8", env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok ")
    h = subprocess.run([str(SIB_SCRIPT), "--help"], capture_output=True, text=True, encoding="utf-8",
                       env=ENV, timeout=120)
    assert h.returncode == 0 and "Usage: sib" in h.stdout


@pytest.mark.parametrize("args", [["bogus"], ["check", "--bogus", "x.yaml"], ["show"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    r = run(*args)
    assert r.returncode == 2
    no_traceback(r)


# -------------------------------------------------------------- errors of our own ---

_PATCHED = textwrap.dedent(
    """
    import sys
    import sib_engine.render
    from sib_engine.errors import AmendmentError

    def broken(*args, **kwargs):
        {body}

    sib_engine.render.describe_contract = broken
    sys.argv = ["sib", "show", {path!r}]
    from sib_engine.cli import main
    main()
    """
)


def test_an_unexpected_exception_is_an_internal_error(valid: Path) -> None:
    r = python("-c", _PATCHED.format(body="raise ZeroDivisionError('boom')", path=str(valid)))
    assert r.returncode == 3
    no_traceback(r)
    assert "internal error: ZeroDivisionError: boom" in r.stderr
    assert "Please report it" in r.stderr


def test_an_engine_error_outside_the_loader_exits_1(valid: Path) -> None:
    r = python("-c", _PATCHED.format(body="raise AmendmentError('cannot apply')", path=str(valid)))
    assert r.returncode == 1
    no_traceback(r)
    assert "error: cannot apply" in r.stderr


# ------------------------------------------------------------- fast to start ---

HEAVY = ("pydantic", "yaml", "pandas", "numpy", "scipy", "sqlalchemy", "great_expectations", "matplotlib")

_IMPORTS = textwrap.dedent(
    """
    import sys
    sys.argv = {argv!r}
    import sib_engine.cli
    if len(sys.argv) > 1:
        try:
            sib_engine.cli.main()
        except SystemExit:
            pass
    heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
    ours = sorted(m for m in sys.modules if m.startswith("sib_engine"))
    print("OURS=" + ",".join(ours))
    print("HEAVY=" + ",".join(heavy))
    """
)


@pytest.mark.parametrize("argv", [["sib"], ["sib", "--help"], ["sib", "--version"]],
                         ids=["import", "help", "version"])
def test_help_does_not_import_heavy_modules(argv: list[str]) -> None:
    """``sib --help`` answers at once: the heavy libraries load only inside commands."""
    r = python("-c", _IMPORTS.format(argv=argv, heavy=HEAVY))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "HEAVY=", r.stdout
    assert r.stdout.splitlines()[-2] == "OURS=sib_engine,sib_engine.cli", r.stdout


@pytest.mark.parametrize("command", ["check", "schema", "show"])
def test_command_help_does_not_import_our_heavy_modules(command: str) -> None:
    """A command's help loads nothing of ours; Typer 0.29 itself coerces parameter values
    with a pydantic TypeAdapter, so pydantic may load there (not yaml, pandas, numpy)."""
    r = python("-c", _IMPORTS.format(argv=["sib", command, "--help"], heavy=HEAVY[1:]))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "HEAVY=", r.stdout
    assert r.stdout.splitlines()[-2] == "OURS=sib_engine,sib_engine.cli", r.stdout


def test_python_dash_m_help() -> None:
    r = python("-m", "sib_engine", "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage: sib" in r.stdout
