"""The main job: contract + measured data -> validated, evaluated, allocated, recorded, reported.

:func:`run_job` is what ``sib run`` does, for a notebook too:

1. load the contract file (every problem reported at once) and record its text once;
2. hash the data file (or folder); if this contract already has a submission with that hash
   (and pseudonymisation key), reuse it: the same file is recorded once;
3. otherwise validate it against the contract, comparing its rows with the deal's latest
   submission (a changed value is a ``restated_row``, handled as the contract's data-quality
   terms say), and record the accepted rows (pseudonymised) and the quarantined rows with
   their reasons;
4. unless the submission is on payment hold, evaluate it as of ``as_of`` against the deal's
   ledger (restated data give true-up and clawback lines), run the waterfall, and append the
   run, its determinations and lines to the hash-chained ledger with its provenance;
5. write the statements (``report_dir``) when asked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sib_engine.errors import SibError
from sib_engine.money import format_money

if TYPE_CHECKING:  # pragma: no cover
    from sib_engine.privacy import PseudonymKey
    from sib_engine.storage import ContractRecord, Recorded, Store, SubmissionRecord


class JobError(SibError):
    """The job cannot run on these inputs (a missing data file, ...)."""


def file_hash(path: str | Path) -> str:
    """SHA-256 of a data file; for a folder, of every file in it (relative name and content
    hash, in name order)."""
    p = Path(path)
    if p.is_file():
        h = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    if p.is_dir():
        h = hashlib.sha256()
        for child in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(f"{child.relative_to(p).as_posix()}\0{file_hash(child)}\n".encode("utf-8"))
        return h.hexdigest()
    raise JobError(f"{path}: no such data file or folder")


def read_contract_text(path: str | Path) -> str:
    """The contract file's text as the loader reads it (UTF-8, byte-order mark removed)."""
    return Path(path).read_bytes().decode("utf-8-sig")


@dataclass(frozen=True, eq=False)
class JobResult:
    contract: "ContractRecord"
    submission: "SubmissionRecord"
    submission_created: bool
    validation: Any
    """The validation result (None when the same data were recorded before)."""
    recorded: "Recorded | None"
    """None when the submission is on payment hold (nothing determined)."""
    report: Any
    database: str
    funders: tuple[dict[str, Any], ...] = ()
    determinations: tuple[tuple[str, bool], ...] = ()
    """(determination id, first made by this run) of the run's determinations."""

    @property
    def hold(self) -> bool:
        return self.submission.hold

    def summary(self) -> str:
        c, s = self.contract, self.submission
        cur = c.currency
        out = [f"contract  {c.deal_id} v{c.version}: {c.title}", f"          sha256 {c.content_hash}"]
        state = "new submission" if self.submission_created else f"recorded before (submission #{s.id})"
        out.append(f"data      {s.source}: {s.rows:,} rows, {s.accepted:,} accepted ({s.flagged:,} flagged), "
                   f"{s.quarantined:,} quarantined; {state}")
        out.append(f"          sha256 {s.content_hash}")
        if s.quarantined:
            reasons = ", ".join(f"{k} {v}" for k, v in s.reasons.items())
            out.append(f"          reasons: {reasons}")
        if self.recorded is None:
            out.append("HOLD      payment hold: " + "; ".join(s.hold_reasons))
            out.append("          nothing was determined; correct the data and run again")
        else:
            r = self.recorded.run
            when = f"as of {r.as_of}" if r.as_of else "all determinations (data taken as complete)"
            if not self.recorded.created:
                out.append(f"run       nothing new: the deal's latest run {r.uid} (#{r.seq}, {when}) already has this "
                           "contract and data")
            else:
                lines = self.recorded.lines
                paid = sum((ln.amount for ln in lines if ln.kind == "payment"), start=_zero())
                up = sum((ln.amount for ln in lines if ln.kind == "true_up"), start=_zero())
                back = sum((ln.amount for ln in lines if ln.kind == "clawback"), start=_zero())
                ev = self.recorded.evaluation
                new = [d for d, first in self.determinations if first]
                again = [d for d, first in self.determinations if not first]
                out.append(f"run       {r.kind} {r.uid} (#{r.seq}), {when}")
                out.append(f"          determinations made: {', '.join(new) or 'none new'}"
                           + (f"; made again: {', '.join(again)}" if again else ""))
                out.append(f"          {len(lines)} new line(s): payments {format_money(paid, cur)}, true-ups "
                           f"{format_money(up, cur)}, clawbacks {format_money(back, cur)}; net "
                           f"{format_money(r.net, cur)}")
                if ev is not None:
                    total = ev.total
                    out.append(f"          ledger total for the deal: {format_money(total, cur)}")
                out.append(f"          entry sha256 {r.entry_hash}")
        for f in self.funders:
            irr = f"{float(f['irr']):.2%}" if f.get("irr") else "n/a"
            out.append(f"funder    {f['party']} ({f['role']}): invested "
                       f"{format_money(_minor(f['invested_minor'], cur), cur)}, received "
                       f"{format_money(_minor(f['received_minor'], cur), cur)}, IRR {irr}")
        if self.report is not None:
            out.append(f"report    {self.report.directory} ({len(self.report.all())} files)")
        out.append(f"database  {self.database}")
        return "\n".join(out)


def _zero() -> Any:
    from decimal import Decimal

    return Decimal(0)


def _minor(units: int, currency: str) -> Any:
    from sib_engine.money import from_minor_units

    return from_minor_units(int(units), currency)


def run_job(
    contract_path: str | Path,
    data_path: str | Path,
    *,
    store: "Store | None" = None,
    db: str | None = None,
    as_of: date | None = None,
    report_dir: str | Path | None = None,
    key: "PseudonymKey | None" = None,
    command: str | None = None,
) -> JobResult:
    """Run the main job (see the module's docstring); ``store`` or ``db`` names the database."""
    from sib_engine.loader import load_contract
    from sib_engine.privacy import PseudonymKey
    from sib_engine.storage import Store, display_url
    from sib_engine.storage.frames import stored_form

    contract = load_contract(contract_path)
    text = read_contract_text(contract_path)
    data_hash = file_hash(data_path)
    if key is None:
        key = PseudonymKey.from_environment()
    owned = store is None
    st = store if store is not None else Store.open(db)
    try:
        crec = st.record_contract(text, contract, source_name=str(contract_path))
        sub = st.find_submission(crec, data_hash, key.id)
        validation = None
        created = False
        frame = None
        if sub is None:
            from sib_engine.validation import validate

            before = st.latest_submission(contract.id)
            previous = st.accepted_frame(before) if before is not None else None
            validation = validate(contract, data_path, previous=previous, key=key)
            sub, created = st.record_submission(crec, validation, content_hash=data_hash, source=str(data_path),
                                                restates=before, command=command)
            if created:
                frame = stored_form(validation.accepted)
        recorded = None
        report = None
        funders: tuple[dict[str, Any], ...] = ()
        dets: tuple[tuple[str, bool], ...] = ()
        if not sub.hold:
            recorded = st.record_determination(crec, contract, sub, as_of, data=frame, command=command)
            _, positions = st.allocations(recorded.run)
            funders = tuple(p for p in positions if p["role"] != "guarantor")
            dets = tuple((str(d["determination"]), bool(d["first_made"])) for d in st.determinations(recorded.run))
            if report_dir is not None:
                ev = recorded.evaluation if recorded.evaluation is not None else st.recompute(recorded.run, contract)
                report = _write_report(contract, ev, report_dir, as_of)
        return JobResult(crec, sub, created, validation, recorded, report, display_url(st.url), funders, dets)
    finally:
        if owned:
            st.close()


def _write_report(contract: Any, evaluation: Any, report_dir: str | Path, as_of: date | None) -> Any:
    try:
        from sib_engine.reports import write_report
    except ImportError:  # pragma: no cover - the reports module is optional
        return None
    return write_report(contract, evaluation, report_dir, evaluation=evaluation, as_of=as_of)
