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
4     ``validate``, ``run``: the data were read and checked, but the submission is on payment
      hold (``run`` records the submission and determines nothing)
5     ``verify``: the database does not verify: a hash does not match or a recorded
      determination does not recompute (each mismatch is named in the output)
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
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from sib_engine import __version__

if TYPE_CHECKING:  # pragma: no cover - imports for the type checker only
    from sib_engine.contract import Contract
    from sib_engine.errors import ContractError
    from sib_engine.privacy import PseudonymKey
    from sib_engine.evaluation import Evaluation
    from sib_engine.scenario import Scenario
    from sib_engine.storage import Store
    from sib_engine.validation import ValidationResult

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_HOLD = 4
EXIT_MISMATCH = 5

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

    Exit codes: 0 success, 1 invalid input, 2 usage error, 3 internal error, 4 payment hold,
    5 the ledger does not verify.
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


AsOfOption = Annotated[
    datetime | None,
    typer.Option(
        "--as-of",
        metavar="DATE",
        formats=["%Y-%m-%d"],
        help="Determine as of this data date (YYYY-MM-DD): only determinations whose data cutoff has passed.",
        show_default=False,
    ),
]


def _evaluate(contract: Path, data: str, as_of: datetime | None, demo_key: bool) -> tuple["Contract", "Evaluation"]:
    """Validate the data, refuse a submission on payment hold, and evaluate."""
    from sib_engine.evaluation import evaluate as run_evaluation
    from sib_engine.validation import validate as run_validation

    terms = _load(contract)
    checked = run_validation(terms, data, key=_pseudonym_key(demo_key))
    if checked.hold:
        _err(_validation_text(checked, None))
        _fail("no determination made: the data submission is on payment hold", EXIT_HOLD)
    return terms, run_evaluation(terms, checked, as_of.date() if as_of is not None else None)


@app.command()
def evaluate(
    contract: Annotated[Path, typer.Argument(metavar="CONTRACT", help="Contract file (YAML).", show_default=False)],
    data: Annotated[str, typer.Argument(metavar="DATA", help="Measured data file or folder.", show_default=False)],
    as_of: AsOfOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the determination as JSON.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Explain every amount down to its clause.")] = False,
    demo_key: DemoKeyOption = False,
) -> None:
    """What the payers owe, to the cent, and why: validate the data, then determine payments.

    Exit 0 with the determination; 4 when the data are on payment hold (nothing is
    determined); 1 when the contract or data cannot be read.
    """
    import json

    from sib_engine.money import format_money

    _, result = _evaluate(contract, data, as_of, demo_key)
    if as_json:
        _out(json.dumps(result.to_json(), indent=2))
        return
    cur = result.currency
    lines = [repr(result)]
    for d in result.determinations:
        amount = sum((ln.amount for ln in result.lines_of(d.id)), start=result.total * 0)
        lines.append(f"  {d.id:<12} {d.kind:<8} up to {d.period:<5} paid {d.payment_date}  {format_money(amount, cur)}")
    lines.append("by payer:")
    for payer, amount in result.by_payer.items():
        lines.append(f"  {payer:<24} {format_money(amount, cur)}")
    lines.append(f"total: {format_money(result.total, cur)}")
    if explain:
        lines += ["", result.explain()]
    _out("\n".join(lines))


@app.command()
def report(
    contract: Annotated[Path, typer.Argument(metavar="CONTRACT", help="Contract file (YAML).", show_default=False)],
    data: Annotated[str, typer.Argument(metavar="DATA", help="Measured data file or folder.", show_default=False)],
    out: Annotated[Path, typer.Option("-o", "--out", metavar="DIR", help="Folder to write the statements to.")] = Path(
        "reports"
    ),
    as_of: AsOfOption = None,
    demo_key: DemoKeyOption = False,
) -> None:
    """Write the municipality and investor statements (self-contained HTML and Excel) and the flow diagram."""
    from sib_engine.reports import write_report

    terms, result = _evaluate(contract, data, as_of, demo_key)
    paths = write_report(terms, result, out, evaluation=result, as_of=result.as_of)
    _out(f"statements for {terms.id} written to {paths.directory}:")
    for p in paths.all():
        _out(f"  {p}")


@app.command()
def simulate(
    contract: Annotated[Path, typer.Argument(metavar="CONTRACT", help="Contract file (YAML) with a simulation section.", show_default=False)],
    paths: Annotated[int | None, typer.Option("--paths", min=1, help="Number of simulated worlds (default: the contract's).", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Random seed (default: the contract's).", show_default=False)] = None,
    scenario: Annotated[Path | None, typer.Option("--scenario", metavar="FILE", help="Assumptions from a scenario file instead of the contract's section.", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Run on a local Dask cluster of N worker processes.", show_default=False)] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", metavar="ADDRESS", help="Run on an existing Dask cluster.", show_default=False)] = None,
    report_dir: Annotated[Path | None, typer.Option("--report", metavar="DIR", help="Write the risk page (risk.html, risk.json) to DIR.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    db: DbOption = None,
    no_record: Annotated[bool, typer.Option("--no-record", help="Do not record the run in the database.")] = False,
) -> None:
    """Monte Carlo risk transfer: payment and return distributions, P(loss), VaR, payment curve.

    Same seed, same result, whatever the chunk size or number of workers.  Each run is
    recorded in the database's ledger (as `sib run` does; see `--db`): the contract text,
    seed, number of worlds, assumptions (the contract's section or the scenario file, with
    its hash), engine version and the figures `--json` prints; `sib history` lists it.  The
    same contract, seed, worlds and assumptions give the same figures, so running again
    records nothing new.  `--no-record` records nothing.
    """
    import json

    from sib_engine.loader import load_scenario
    from sib_engine.risk import simulate as run_simulation
    from sib_engine.risk import simulation_json

    if workers is not None and scheduler is not None:
        _fail("give either --workers or --scheduler, not both", EXIT_USAGE)
    terms = _load(contract)
    assumptions = load_scenario(scenario, contract=terms) if scenario is not None else None
    store = None
    if not no_record and (assumptions is not None or terms.simulation is not None):
        from sib_engine.storage import Store

        store = Store.open(db)  # before the work: a database that cannot be opened fails at once
    try:
        shown = {"last": -1}

        def progress(done: int, total: int) -> None:
            if as_json or total < 100_000:
                return
            pct = int(100 * done / total)
            if pct // 10 != shown["last"]:
                shown["last"] = pct // 10
                _err(f"  simulated {done:,} of {total:,} worlds ({pct}%)")

        result = run_simulation(terms, paths, seed, simulation=assumptions, workers=workers,
                                scheduler=scheduler, progress=progress)
        if report_dir is not None:
            from sib_engine.reports import write_risk_report

            write_risk_report(result, report_dir)
        figures = simulation_json(result)
        if as_json:
            _out(json.dumps(figures, indent=2, default=str))
        else:
            _out(repr(result))
            _out(result.summary().to_string())
            if report_dir is not None:
                _out(f"risk page written to {report_dir}")
        if store is not None:
            note = _record_simulation(store, contract, terms, scenario, assumptions, figures)
            (_err if as_json else _out)(note)  # --json keeps the standard output pure JSON
    finally:
        if store is not None:
            store.close()


def _record_simulation(store: "Store", path: Path, terms: "Contract", scenario: Path | None,
                       loaded: "Scenario | None", figures: dict[str, Any]) -> str:
    """Record a simulation run in the ledger; return a line saying what was recorded.

    The assumptions recorded are the simulation section the run used (``simulation``), where
    it came from (``source``: ``contract`` or ``scenario``) and, for a scenario file, its name
    and content hash (the file's path is in the run's provenance, with the command line).
    The summary is ``figures`` (what ``--json`` prints) without the fields the ledger entry
    has columns for (contract, engine version, paths, seed) and without the assumptions."""
    import hashlib

    from sib_engine.job import read_contract_text
    from sib_engine.storage import display_url

    crec = store.record_contract(read_contract_text(path), terms, source_name=str(path))
    inputs: dict[str, Any] = {"source": "contract" if scenario is None else "scenario"}
    if scenario is not None and loaded is not None:
        inputs["scenario"] = {"name": loaded.name, "contract": loaded.contract,
                              "sha256": hashlib.sha256(scenario.read_bytes()).hexdigest()}
    inputs["simulation"] = figures["assumptions"]
    omitted = {"assumptions", "contract", "engine_version", "paths", "seed"}
    summary = {k: v for k, v in figures.items() if k not in omitted}
    sim, created = store.record_simulation_once(crec, seed=int(figures["seed"]), worlds=int(figures["paths"]),
                                                assumptions=inputs, summary=summary, command=_command_line())
    where = display_url(store.url)
    if created:
        return f"recorded simulation {sim.uid} (#{sim.seq}, entry sha256 {sim.entry_hash}) in {where}"
    return (f"nothing new recorded: simulation {sim.uid} (#{sim.seq}) in {where} already has this contract, seed, "
            "number of worlds and assumptions, with the same figures")


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


# ------------------------------------------------------------ storage and ledger ---

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Database: a URL (sqlite:///file.db, postgresql://user@host/db) or a SQLite file; "
        "default $SIB_DATABASE_URL, else sqlite:///sib.db in the working directory.",
        show_default=False,
    ),
]


def _deal_id(contract: str) -> str:
    """A contract file's id, or the argument itself taken as a deal id."""
    path = Path(contract)
    if path.suffix.lower() in (".yaml", ".yml") or path.is_file():
        return _load(path).id
    return contract


def _command_line() -> str:
    import shlex

    return shlex.join(["sib", *sys.argv[1:]])


@app.command()
def run(
    contract: Annotated[Path, typer.Argument(metavar="CONTRACT", help="Contract file (YAML).", show_default=False)],
    data: Annotated[
        str,
        typer.Argument(metavar="DATA", help="Measured data: a CSV, Parquet or .xlsx file, or a folder of them.",
                       show_default=False),
    ],
    db: DbOption = None,
    as_of: Annotated[
        datetime | None,
        typer.Option("--as-of", metavar="DATE", formats=["%Y-%m-%d"],
                     help="Make the determinations due by this date (YYYY-MM-DD); default: all of them, the "
                     "data taken as complete.", show_default=False),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", metavar="DIR", help="Write the payer and investor statements to this folder.",
                     show_default=False),
    ] = None,
    demo_key: DemoKeyOption = False,
) -> None:
    """The main job: validate the data, evaluate, allocate to funders, record it all, report.

    The contract and the data file are recorded once each (by content hash); a new data file
    for the same contract is a restatement, and its differences with what the ledger holds
    become true-up and clawback lines.  Running again with the same contract, data and date
    records nothing new.  Exit 0 when recorded (or already recorded), 4 when the data are on
    payment hold (the submission is recorded, nothing is determined), 1 for bad input.
    """
    from sib_engine.errors import ContractError
    from sib_engine.job import run_job

    key = _pseudonym_key(demo_key)
    try:
        result = run_job(contract, data, db=db, as_of=as_of.date() if as_of is not None else None,
                         report_dir=report, key=key, command=_command_line())
    except ContractError as exc:
        _fail(_problems(contract, exc))
    _out(result.summary())
    if result.hold:
        raise typer.Exit(EXIT_HOLD)


@app.command()
def history(
    contract: Annotated[
        str,
        typer.Argument(metavar="CONTRACT", help="Contract file (YAML), or the contract's id.", show_default=False),
    ],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the history as JSON.")] = False,
) -> None:
    """Every determination, restatement and simulation recorded for a contract, with hashes."""
    import json

    from sib_engine.storage import Store, display_url

    deal = _deal_id(contract)
    with Store.open(db, create=False) as store:
        if store.latest_contract(deal) is None:
            _fail(f"nothing is recorded for '{deal}' in {display_url(store.url)}")
        result = store.history(deal)
    _out(json.dumps(result.to_json(), indent=2) if as_json else result.format())


@app.command()
def verify(db: DbOption = None) -> None:
    """Check the hash chain and recompute every recorded determination from its stored inputs.

    Exit 0 only if every hash matches and every determination (and funder allocation)
    recomputes exactly; otherwise 5, with each mismatch named.
    """
    from sib_engine.storage import Store

    with Store.open(db, create=False) as store:
        result = store.verify()
    _out(result.format())
    if not result.ok:
        raise typer.Exit(EXIT_MISMATCH)


@app.command()
def export(
    contract: Annotated[
        str,
        typer.Argument(metavar="CONTRACT", help="Contract file (YAML), or the contract's id.", show_default=False),
    ],
    export_format: Annotated[
        str,
        typer.Option("--format", metavar="FORMAT", help="Output format: indigo (the INDIGO impact-bond data "
                     "standard of the Oxford Government Outcomes Lab, as JSON)."),
    ] = "indigo",
    db: DbOption = None,
    min_cell: Annotated[
        int | None,
        typer.Option("--min-cell", metavar="N", min=1, help="Suppress counts of fewer than N participants "
                     "(default $SIB_MIN_CELL, else 10).", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write to this file instead of the standard output.",
                     show_default=False),
    ] = None,
) -> None:
    """Export a recorded deal's terms, payments and results for publication (INDIGO)."""
    import json

    if export_format != "indigo":
        _fail(f"unknown export format '{export_format}': the only format is 'indigo'", EXIT_USAGE)
    from sib_engine.storage import Store

    deal = _deal_id(contract)
    with Store.open(db, create=False) as store:
        document = store.export_indigo(deal, min_cell=min_cell)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output is not None:
        output.write_text(text, encoding="utf-8")
        _out(f"wrote {output}")
    else:
        _out(text)


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
