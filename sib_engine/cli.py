"""The ``sib`` command (layer 4: entry points).

The CLI is thin: it parses the command line, calls the same API a notebook uses, prints
the result, and maps errors to the exit codes below.  One function per command; a new
command is a new function decorated with ``@app.command()``.

Exit codes:

====  ==================================================================================
code  meaning
====  ==================================================================================
0     success (``check``: every contract is valid)
1     invalid input: a contract (or other input) has problems, or a file cannot be read;
      the problems are printed on stderr, each located as ``file:line:col: key.path``
2     usage error: an unknown command or option, a missing argument, a malformed value
      such as ``--on 2025-13-01`` (reported by Typer)
3     internal error: a bug in sib-engine; the message asks for a report
4     ``validate``: the data were read and checked, but the submission is on payment hold
130   interrupted (Ctrl-C)
====  ==================================================================================

A traceback is never shown for a bad input: every :class:`~sib_engine.errors.SibError` is
printed as its message and exits with 1; anything unexpected exits with 3.

``sib --help`` must answer at once, so this module imports only the standard library and
Typer at the top; the contract models (pydantic), the YAML reader and, later, pandas and
numpy are imported inside the commands that need them.  A test checks this.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from sib_engine import __version__

if TYPE_CHECKING:  # pragma: no cover - imports for the type checker only
    from sib_engine.contract import Contract
    from sib_engine.errors import ContractError
    from sib_engine.privacy import PseudonymKey
    from sib_engine.validation import ValidationResult

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_HOLD = 4

app = typer.Typer(
    name="sib",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


# ------------------------------------------------------------------------- helpers ---


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


def _fail(text: str, code: int = EXIT_INVALID) -> NoReturn:
    _err(text)
    raise typer.Exit(code)


def _problems(path: Path | str, exc: "ContractError") -> str:
    n = len(exc.problems)
    head = f"invalid {path}: {n} problem{'s' if n != 1 else ''}"
    return "\n".join([head] + ["  " + p.format() for p in exc.problems])


def _load(path: Path) -> "Contract":
    """Load a contract or exit with 1, printing its problems."""
    from sib_engine.errors import ContractError
    from sib_engine.loader import load_contract

    try:
        return load_contract(path)
    except ContractError as exc:
        _fail(_problems(path, exc))


def _version(value: bool) -> None:
    if value:
        _out(f"sib-engine {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the version and exit.",
            callback=_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """sib-engine: readable contract files, reproducible payment determinations and risk
    models for social impact bonds and other outcomes contracts.

    Exit codes: 0 success, 1 invalid input, 2 usage error, 3 internal error.
    """


# ------------------------------------------------------------------------ commands ---


@app.command()
def check(
    contracts: Annotated[
        list[Path],
        typer.Argument(
            metavar="CONTRACT",
            help="Contract files (YAML) to check.",
            show_default=False,
        ),
    ],
) -> None:
    """Check contract files: every problem of each file, with its line.

    Prints `ok FILE: TITLE (N triggers)` for each valid file; the problems of an invalid
    file go to stderr.  Exits with 1 if any file is invalid.
    """
    from sib_engine.errors import ContractError
    from sib_engine.loader import load_contract

    failed = 0
    for path in contracts:
        try:
            contract = load_contract(path)
        except ContractError as exc:
            failed += 1
            _err(_problems(path, exc))
            continue
        n = len(contract.triggers)
        _out(f"ok {path}: {contract.title} ({n} trigger{'s' if n != 1 else ''})")
    if failed:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def schema() -> None:
    """Print the JSON Schema (draft 2020-12) of the contract format."""
    from sib_engine.schema_export import contract_json_schema_text

    text = contract_json_schema_text()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream (e.g. a test runner's capture)
        sys.stdout.write(text)
        return
    sys.stdout.flush()
    buffer.write(text.encode("utf-8"))  # the same bytes as the kept file, whatever the locale
    buffer.flush()


@app.command()
def show(
    contract: Annotated[
        Path,
        typer.Argument(metavar="CONTRACT", help="Contract file (YAML) to describe.", show_default=False),
    ],
    on: Annotated[
        datetime | None,
        typer.Option(
            "--on",
            metavar="DATE",
            formats=["%Y-%m-%d"],
            help="Describe the terms in force on this date (YYYY-MM-DD), amendments applied.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Describe a contract in plain language: parties, payments, caps, dates, capital."""
    from sib_engine.render import describe_contract

    terms = _load(contract)
    _out(describe_contract(terms, on.date() if on is not None else None))


def _pseudonym_key(demo_key: bool) -> "PseudonymKey":
    from sib_engine.privacy import PseudonymKey

    return PseudonymKey.demo() if demo_key else PseudonymKey.from_environment()


DemoKeyOption = Annotated[
    bool,
    typer.Option(
        "--demo-key",
        help="Pseudonymise with the public demo key: for made-up example data only, never real data.",
    ),
]


@app.command()
def validate(
    contract: Annotated[Path, typer.Argument(metavar="CONTRACT", help="Contract file (YAML).", show_default=False)],
    data: Annotated[
        str,
        typer.Argument(
            metavar="DATA",
            help="Measured data: a CSV, Parquet or .xlsx file, or a folder of them.",
            show_default=False,
        ),
    ],
    quarantine: Annotated[
        Path | None,
        typer.Option("--quarantine", metavar="FILE", help="Write the quarantined rows (with reasons) to this CSV file.",
                     show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    demo_key: DemoKeyOption = False,
) -> None:
    """Validate measured data against a contract: every row accepted or quarantined with a reason.

    Exit 0 when the submission can be paid on (rows may still be quarantined: see the
    reasons), 4 when it is on payment hold (too many rows quarantined, or its structure is
    wrong), 1 when the contract or the data cannot be read.
    """
    import json

    from sib_engine.validation import validate as run_validation

    terms = _load(contract)
    result = run_validation(terms, data, key=_pseudonym_key(demo_key))
    if quarantine is not None:
        result.quarantined.to_csv(quarantine, index=False)
    if as_json:
        _out(json.dumps(result.to_json(), indent=2))
    else:
        _out(_validation_text(result, quarantine))
    if result.hold:
        raise typer.Exit(EXIT_HOLD)


def _validation_text(result: "ValidationResult", quarantine: Path | None) -> str:
    lines = [
        f"{result.contract_id} v{result.contract_version}: {result.rows} rows, "
        f"{result.n_accepted} accepted ({result.n_flagged} flagged with warnings), "
        f"{result.n_quarantined} quarantined"
    ]
    summary = result.summary()
    for code, row in summary.iterrows():
        lines.append(f"  {code:<28} {row['severity']:<8} {int(row['rows']):>8} rows  e.g. {row['example']}")
    if result.hold:
        lines.append("PAYMENT HOLD: " + "; ".join(result.hold_reasons))
    else:
        lines.append("no payment hold")
    if quarantine is not None:
        lines.append(f"quarantined rows written to {quarantine}")
    return "\n".join(lines)


# --------------------------------------------------------------------- entry point ---


def _tolerant_streams() -> None:
    """Never fail on a character the terminal cannot show (e.g. a dash on cp1252)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):  # pragma: no cover - a closed or odd stream
                pass


def main() -> None:
    """The ``sib`` console script (and ``python -m sib_engine``)."""
    _tolerant_streams()
    try:
        app(prog_name="sib")
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: never a traceback
        from sib_engine.errors import SibError

        if isinstance(exc, SibError):
            _err(f"error: {exc}")
            sys.exit(EXIT_INVALID)
        _err(f"internal error: {type(exc).__name__}: {exc}")
        _err(
            f"This is a bug in sib-engine {__version__}, not a problem with your input. Please "
            "report it on the project's issue tracker with the command you ran, this message "
            "and, if you can share it, the file."
        )
        sys.exit(EXIT_INTERNAL)
