"""Cross-reference consistency checks of a contract (layer 1: declaration).

:func:`check` takes a structurally valid :class:`~sib_engine.contract.Contract` and
returns every problem that comes from comparing one part with another: a trigger names a
metric that exists, dates are in order, shares add up, a cap is not below what it caps, ...
Each problem carries a stable code, the key path (list positions as integers, so the loader
can map it to a line) and a hint.  Nothing here raises.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from decimal import Decimal, Overflow, localcontext
from typing import Iterable

from sib_engine.contract import (
    CHECK_CODES,
    STAT_TESTS,
    SUPPORTED_FORMATS,
    BandedReturnTrigger,
    BlendedBaseline,
    CohortTrigger,
    ComparisonGroupBaseline,
    Contract,
    Distribution,
    EmpiricalDistribution,
    Effect,
    ExpectedDurationBaseline,
    FixedBaseline,
    NormalDistribution,
    RateCardTrigger,
    Schedule,
    ShareOfSavingsTrigger,
    Simulation,
    ThresholdTrigger,
    TriangularDistribution,
    BetaDistribution,
)
from sib_engine.errors import KeyPath, Problem

ONE = Decimal(1)


def _total(values: Iterable[Decimal]) -> Decimal:
    """The sum of ``values``; an absurdly large sum is Infinity rather than an exception."""
    with localcontext() as ctx:
        ctx.traps[Overflow] = False
        return sum(values, Decimal(0))


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, code: str, path: KeyPath, message: str, hint: str = "") -> None:
        self.problems.append(Problem(code=code, path=path, message=message, hint=hint))


def check(c: Contract) -> list[Problem]:
    """Every cross-reference problem of ``c``, in document order (empty when consistent)."""
    out = _Collector()
    if c.format not in SUPPORTED_FORMATS:
        out.add(
            "unsupported_format",
            ("format",),
            f"format '{c.format}' is not supported",
            f"start the file with 'format: {SUPPORTED_FORMATS[-1]}'",
        )
    _check_unique_ids(c, out)
    _check_term(c, out)
    _check_payers(c, out)
    _check_metrics(c, out)
    _check_baselines(c, out)
    _check_triggers(c, out)
    _check_caps(c, out)
    _check_timeline(c, out)
    _check_capital(c, out)
    _check_value_for_money(c, out)
    _check_data_quality(c, out)
    _check_amendments(c, out)
    if c.simulation is not None:
        _check_simulation(c, c.simulation, ("simulation",), out)
    if c.term.end <= c.term.start:
        # With the term's dates in the wrong order every date is "outside the term": report
        # the term itself (dates_out_of_order), not one echo of it per date.
        return [p for p in out.problems if p.code != "outside_term"]
    return out.problems


# ----------------------------------------------------------------------- helpers ---


def _ids(items: Iterable[object]) -> list[str]:
    return [str(getattr(i, "id")) for i in items]


def _known(names: Iterable[str]) -> str:
    listed = sorted(set(names))
    return ", ".join(listed) if listed else "none defined"


def _check_unique_ids(c: Contract, out: _Collector) -> None:
    groups: list[tuple[str, Iterable[object]]] = [
        ("parties", c.parties),
        ("metrics", c.metrics),
        ("baselines", c.baselines),
        ("triggers", c.triggers),
        ("amendments", c.amendments),
    ]
    for key, items in groups:
        seen: set[str] = set()
        for i, ident in enumerate(_ids(items)):
            if ident in seen:
                out.add(
                    "duplicate_id",
                    (key, i, "id"),
                    f"id '{ident}' is used twice in {key}",
                    "give every entry its own id",
                )
            seen.add(ident)
    for key, items2 in (
        ("cohorts", c.timeline.cohorts),
        ("determinations", c.timeline.determinations),
    ):
        seen = set()
        for i, ident in enumerate(_ids(items2)):
            if ident in seen:
                out.add(
                    "duplicate_id",
                    ("timeline", key, i, "id"),
                    f"id '{ident}' is used twice in timeline.{key}",
                    "give every entry its own id",
                )
            seen.add(ident)
    if c.capital:
        for key, items3 in (("tranches", c.capital.tranches), ("guarantees", c.capital.guarantees)):
            seen = set()
            for i, ident in enumerate(_ids(items3)):
                if ident in seen:
                    out.add(
                        "duplicate_id",
                        ("capital", key, i, "id"),
                        f"id '{ident}' is used twice in capital.{key}",
                        "give every entry its own id",
                    )
                seen.add(ident)


def _check_term(c: Contract, out: _Collector) -> None:
    if c.term.end <= c.term.start:
        out.add(
            "dates_out_of_order",
            ("term", "end"),
            f"the term ends ({c.term.end}) on or before it starts ({c.term.start})",
            "the end date must come after the start date",
        )
    e = c.eligibility
    if e is not None:
        for lo, hi in (("age_min", "age_max"), ("prior_months_min", "prior_months_max")):
            vlo, vhi = getattr(e, lo), getattr(e, hi)
            if vlo is not None and vhi is not None and vlo > vhi:
                out.add(
                    "range_inverted",
                    ("eligibility", hi),
                    f"{hi} ({vhi}) is below {lo} ({vlo})",
                    f"make {hi} at least {lo}",
                )


# ------------------------------------------------------------------------ payers ---


def _check_payers(c: Contract, out: _Collector) -> None:
    parties = {p.id: p for p in c.parties}
    modes = []
    for i, payer in enumerate(c.payers):
        given = [
            k
            for k, v in (("share", payer.share), ("residence", payer.residence), ("top_up", payer.top_up))
            if v not in (None, ())
        ]
        if len(given) != 1:
            out.add(
                "payer_mode",
                ("payers", i),
                f"payer '{payer.party}' gives {' and '.join(given) if given else 'none'};"
                " it needs exactly one of share, residence or top_up",
                "give exactly one: a fixed share, the municipality codes of its residents, or a top-up rate",
            )
        elif given[0] != "top_up":
            modes.append((i, given[0]))
        party = parties.get(payer.party)
        if party is None:
            out.add(
                "unknown_party",
                ("payers", i, "party"),
                f"payer '{payer.party}' is not among the parties",
                f"known parties: {_known(parties)}",
            )
        elif party.role not in ("payer", "top_up_fund"):
            out.add(
                "wrong_role",
                ("payers", i, "party"),
                f"party '{payer.party}' pays outcomes but has role '{party.role}'",
                "give the party role 'payer' (or 'top_up_fund' for a top-up)",
            )
    if not modes and not out.problems:
        out.add(
            "no_primary_payer",
            ("payers",),
            "every payer is a top-up; someone must pay the outcomes being topped up",
            "add a payer with a share or with the municipality codes it pays for",
        )
    kinds = {m for _, m in modes}
    if len(kinds) > 1:
        i = next(i for i, m in modes if m != modes[0][1])
        out.add(
            "payer_mode",
            ("payers", i),
            "payers mix fixed shares and residence",
            "split either by fixed shares or by residence, not both",
        )
    elif kinds == {"share"}:
        total = sum((c.payers[i].share or Decimal(0) for i, _ in modes), Decimal(0))
        if total != ONE:
            out.add(
                "shares_not_one",
                ("payers",),
                f"payer shares add up to {total}, not 1",
                "make the fixed shares add up to exactly 1 (e.g. 0.6 and 0.4)",
            )
    elif kinds == {"residence"}:
        owner: dict[str, str] = {}
        for i, _ in modes:
            for j, code in enumerate(c.payers[i].residence):
                if code in owner:
                    out.add(
                        "residence_overlap",
                        ("payers", i, "residence", j),
                        f"municipality '{code}' is paid for by both '{owner[code]}' and '{c.payers[i].party}'",
                        "each municipality code belongs to one payer",
                    )
                owner.setdefault(code, c.payers[i].party)


# ----------------------------------------------------------------------- metrics ---


def _check_metrics(c: Contract, out: _Collector) -> None:
    metrics = {m.id: m for m in c.metrics}
    for i, m in enumerate(c.metrics):
        for j, req in enumerate(m.requires):
            if req not in metrics:
                out.add(
                    "unknown_metric",
                    ("metrics", i, "requires", j),
                    f"metric '{m.id}' requires '{req}', which is not a metric",
                    f"known metrics: {_known(metrics)}",
                )
            elif req == m.id:
                out.add("prerequisite_cycle", ("metrics", i, "requires", j),
                        f"metric '{m.id}' requires itself", "remove it from its own requires")
        if m.min_value is not None and m.max_value is not None and m.min_value > m.max_value:
            out.add(
                "range_inverted",
                ("metrics", i, "max_value"),
                f"max_value ({m.max_value}) is below min_value ({m.min_value})",
                "make max_value at least min_value",
            )
    # prerequisite cycles longer than one step
    for i, m in enumerate(c.metrics):
        seen: set[str] = set()
        stack = list(m.requires)
        while stack:
            r = stack.pop()
            if r == m.id:
                out.add(
                    "prerequisite_cycle",
                    ("metrics", i, "requires"),
                    f"metric '{m.id}' requires itself through its prerequisites",
                    "prerequisites must form a chain, not a loop",
                )
                break
            if r in seen or r not in metrics:
                continue
            seen.add(r)
            stack.extend(metrics[r].requires)


def _metric_ref(c: Contract, out: _Collector, path: KeyPath, metric: str) -> bool:
    if metric in {m.id for m in c.metrics}:
        return True
    out.add(
        "unknown_metric",
        path,
        f"'{metric}' is not a metric of this contract",
        f"known metrics: {_known(m.id for m in c.metrics)}",
    )
    return False


# --------------------------------------------------------------------- baselines ---


def _check_baselines(c: Contract, out: _Collector) -> None:
    by_id = {b.id: b for b in c.baselines}
    for i, b in enumerate(c.baselines):
        path: KeyPath = ("baselines", i)
        if not _metric_ref(c, out, path + ("metric",), b.metric):
            continue
        metric = c.metric(b.metric)
        if isinstance(b, FixedBaseline) and metric.type == "binary" and not (0 <= b.value <= 1):
            out.add(
                "out_of_range",
                path + ("value",),
                f"baseline rate {b.value} of binary metric '{b.metric}' is not between 0 and 1",
                "write a rate as a fraction: 25% is 0.25",
            )
        if isinstance(b, ExpectedDurationBaseline):
            rows = b.table
            for j, r in enumerate(rows):
                if r.age_min > r.age_max or r.prior_months_min > r.prior_months_max:
                    out.add(
                        "range_inverted",
                        path + ("table", j),
                        "a row's minimum is above its maximum",
                        "check age_min <= age_max and prior_months_min <= prior_months_max",
                    )
                for k in range(j):
                    o = rows[k]
                    if (
                        r.age_min <= o.age_max
                        and o.age_min <= r.age_max
                        and r.prior_months_min <= o.prior_months_max
                        and o.prior_months_min <= r.prior_months_max
                    ):
                        out.add(
                            "overlapping_tiers",
                            path + ("table", j),
                            f"table row {j + 1} overlaps row {k + 1}",
                            "each (age, prior months) combination must fall in one row",
                        )
                        break
        if isinstance(b, ComparisonGroupBaseline):
            if b.estimator == "difference_in_differences" and b.pre_metric is None:
                out.add(
                    "missing_key",
                    path + ("estimator",),
                    "difference-in-differences needs the metric measured before enrolment",
                    "add 'pre_metric: <metric id>' naming the pre-enrolment measure",
                )
            if b.pre_metric is not None:
                _metric_ref(c, out, path + ("pre_metric",), b.pre_metric)
        if isinstance(b, BlendedBaseline):
            total = sum((comp.weight for comp in b.components), Decimal(0))
            if total != ONE:
                out.add(
                    "weights_not_one",
                    path + ("components",),
                    f"blend weights add up to {total}, not 1",
                    "make the weights add up to exactly 1 (e.g. 0.8 and 0.2)",
                )
            for j, comp in enumerate(b.components):
                other = by_id.get(comp.baseline)
                if other is None:
                    out.add(
                        "unknown_baseline",
                        path + ("components", j, "baseline"),
                        f"'{comp.baseline}' is not a baseline of this contract",
                        f"known baselines: {_known(by_id)}",
                    )
                elif isinstance(other, BlendedBaseline):
                    out.add(
                        "nested_blend",
                        path + ("components", j, "baseline"),
                        f"blend component '{comp.baseline}' is itself a blend",
                        "blend the underlying estimators directly",
                    )
                elif other.metric != b.metric:
                    out.add(
                        "baseline_metric_mismatch",
                        path + ("components", j, "baseline"),
                        f"component '{comp.baseline}' measures '{other.metric}', the blend measures '{b.metric}'",
                        "blend estimators of the same metric",
                    )


# ------------------------------------------------------------- effects, schedules ---


def _check_effect(c: Contract, out: _Collector, path: KeyPath, e: Effect) -> None:
    if not _metric_ref(c, out, path + ("metric",), e.metric):
        return
    metric = c.metric(e.metric)
    if e.measure == "level":
        if e.baseline is not None:
            out.add(
                "baseline_not_used",
                path + ("baseline",),
                "measure 'level' uses the metric itself, so a baseline would be ignored",
                "remove the baseline or choose a measure such as 'difference' or 'relative_reduction'",
            )
    elif e.baseline is None:
        out.add(
            "missing_baseline",
            path + ("measure",),
            f"measure '{e.measure}' compares with a baseline, but none is named",
            "add 'baseline: <id>' naming one of the contract's baselines",
        )
    else:
        ids = {b.id: b for b in c.baselines}
        if e.baseline not in ids:
            out.add(
                "unknown_baseline",
                path + ("baseline",),
                f"'{e.baseline}' is not a baseline of this contract",
                f"known baselines: {_known(ids)}",
            )
        elif ids[e.baseline].metric != e.metric:
            out.add(
                "baseline_metric_mismatch",
                path + ("baseline",),
                f"baseline '{e.baseline}' is for metric '{ids[e.baseline].metric}', not '{e.metric}'",
                "use a baseline of the same metric",
            )
    if e.gate is not None and metric.type not in STAT_TESTS[e.gate.test]:
        fits = [t for t, types in STAT_TESTS.items() if metric.type in types]
        out.add(
            "test_metric_mismatch",
            path + ("gate", "test"),
            f"test '{e.gate.test}' does not apply to the {metric.type} metric '{metric.id}'",
            f"for a {metric.type} metric use {' or '.join(fits) or 'no gate'}",
        )


def _check_schedule(out: _Collector, path: KeyPath, s: Schedule, what: str = "value") -> None:
    pts = s.points
    for j in range(1, len(pts)):
        if pts[j].effect <= pts[j - 1].effect:
            out.add(
                "overlapping_tiers",
                path + ("points", j, "effect"),
                f"tier at effect {pts[j].effect} does not come after the tier at {pts[j - 1].effect}",
                "list tiers in strictly increasing order of effect",
            )
        elif pts[j].value < pts[j - 1].value:
            out.add(
                "schedule_decreasing",
                path + ("points", j, "value"),
                f"{what} falls from {pts[j - 1].value} to {pts[j].value} as the effect improves",
                "payments must never fall as outcomes improve; make the values non-decreasing",
            )
    if s.interpolation == "linear" and len(pts) < 2:
        out.add(
            "too_few_points",
            path + ("points",),
            "linear interpolation needs at least two points",
            "add a second point, or use 'interpolation: step'",
        )
    if s.maximum is not None:
        first = next((p.value for p in pts if p.value > 0), None)
        if first is not None and s.maximum < first:
            out.add(
                "cap_below_price",
                path + ("maximum",),
                f"maximum {s.maximum} is below the first paying tier ({first}), so no tier could ever pay in full",
                "raise the maximum or lower the tiers",
            )


def _check_triggers(c: Contract, out: _Collector) -> None:
    tranche_ids = {t.id for t in c.capital.tranches} if c.capital else set()
    det_ids = {d.id: d for d in c.timeline.determinations}
    for i, t in enumerate(c.triggers):
        path: KeyPath = ("triggers", i)
        if isinstance(t, RateCardTrigger):
            _check_rate_card(c, out, path, t)
            continue
        _check_effect(c, out, path + ("effect",), t.effect)
        if isinstance(t, ThresholdTrigger):
            _check_schedule(out, path + ("schedule",), t.schedule)
        elif isinstance(t, CohortTrigger):
            _check_schedule(out, path + ("per_cohort", "schedule"), t.per_cohort.schedule)
            _check_schedule(out, path + ("pooled_fallback", "schedule"), t.pooled_fallback.schedule)
            first = t.per_cohort.schedule.points[0].effect
            pooled_first = t.pooled_fallback.schedule.points[0].effect
            if pooled_first > first:
                out.add(
                    "fallback_above_cohort",
                    path + ("pooled_fallback", "schedule", "points", 0, "effect"),
                    f"the pooled fallback threshold ({pooled_first}) is above the per-cohort threshold ({first})",
                    "a pooled fallback is decided at a lower threshold than each cohort's",
                )
            fd = t.fallback_determination
            if fd is not None:
                if fd not in det_ids:
                    out.add(
                        "unknown_determination",
                        path + ("fallback_determination",),
                        f"'{fd}' is not a determination of the timeline",
                        f"known determinations: {_known(det_ids)}",
                    )
                elif det_ids[fd].kind != "final":
                    out.add(
                        "fallback_not_final",
                        path + ("fallback_determination",),
                        f"determination '{fd}' is interim; the pooled fallback is decided at a final one",
                        "name the final determination",
                    )
        elif isinstance(t, ShareOfSavingsTrigger):
            prev = None
            for j, step in enumerate(t.share_steps):
                if prev is not None and step.after_return <= prev:
                    out.add(
                        "overlapping_tiers",
                        path + ("share_steps", j, "after_return"),
                        "share steps are not in increasing order of return",
                        "list share steps by increasing after_return",
                    )
                prev = step.after_return
        elif isinstance(t, BandedReturnTrigger):
            _check_schedule(out, path + ("bands",), t.bands, what="return")
            for j, tr in enumerate(t.tranches):
                if tr not in tranche_ids:
                    out.add(
                        "unknown_tranche",
                        path + ("tranches", j),
                        f"'{tr}' is not a tranche of the capital stack",
                        f"known tranches: {_known(tranche_ids)}",
                    )


def _check_rate_card(c: Contract, out: _Collector, path: KeyPath, t: RateCardTrigger) -> None:
    names = Counter(o.metric for o in t.outcomes)
    metrics = {m.id: m for m in c.metrics}
    for j, o in enumerate(t.outcomes):
        opath = path + ("outcomes", j)
        if names[o.metric] > 1 and [x.metric for x in t.outcomes].index(o.metric) != j:
            out.add(
                "duplicate_id",
                opath + ("metric",),
                f"outcome '{o.metric}' is priced twice in rate card '{t.id}'",
                "price each outcome once; use max_claims for repeat payments",
            )
        if _metric_ref(c, out, opath + ("metric",), o.metric) and metrics[o.metric].type not in (
            "event",
            "binary",
        ):
            out.add(
                "metric_type_mismatch",
                opath + ("metric",),
                f"a rate card pays per outcome event, but '{o.metric}' is a {metrics[o.metric].type} metric",
                "price an event or binary metric, or use a threshold or share_of_savings trigger",
            )
        for k, req in enumerate(o.requires):
            if req not in names:
                out.add(
                    "unknown_metric",
                    opath + ("requires", k),
                    f"prerequisite '{req}' is not priced in rate card '{t.id}'",
                    f"outcomes in this card: {_known(names)}",
                )
        if o.cap_amount is not None and o.cap_amount < o.price:
            out.add(
                "cap_below_price",
                opath + ("cap_amount",),
                f"cap {o.cap_amount} is below the price {o.price}, so not one outcome could be paid",
                "raise the cap to at least the price, or remove it",
            )
        if o.cap_units is not None and o.cap_units < 1:  # pragma: no cover - model forbids
            pass
    cheapest = min(o.price for o in t.outcomes)
    for key in ("cap", "cap_per_participant", "cap_per_period"):
        cap = getattr(t, key)
        if cap is not None and cap < cheapest:
            out.add(
                "cap_below_price",
                path + (key,),
                f"{key} {cap} is below the cheapest outcome's price ({cheapest})",
                "raise the cap to at least one outcome's price, or remove it",
            )


# --------------------------------------------------------------------------- caps ---


def _check_caps(c: Contract, out: _Collector) -> None:
    caps = c.caps
    if caps is None or caps.total is None:
        return
    for key in ("per_period", "per_participant"):
        v = getattr(caps, key)
        if v is not None and v > caps.total:
            out.add(
                "cap_above_total",
                ("caps", key),
                f"caps.{key} ({v}) is above the contract's total cap ({caps.total})",
                "a partial cap cannot exceed the total cap",
            )
    for i, t in enumerate(c.triggers):
        if t.cap is not None and t.cap > caps.total:
            out.add(
                "cap_above_total",
                ("triggers", i, "cap"),
                f"trigger cap {t.cap} is above the contract's total cap ({caps.total})",
                "lower the trigger cap or raise caps.total",
            )


# ----------------------------------------------------------------------- timeline ---


def _check_timeline(c: Contract, out: _Collector) -> None:
    tl = c.timeline
    try:
        periods = tl.period_list()
    except (ValueError, OverflowError):  # a period would end after 9999-12-31
        periods = ()
        out.add(
            "outside_term",
            ("timeline", "periods", "count"),
            "the periods run past the year 9999, after the term ends",
            "reduce the number or the length of the periods",
        )
    if not (c.term.start <= tl.periods.start <= c.term.end):
        out.add(
            "outside_term",
            ("timeline", "periods", "start"),
            f"periods start on {tl.periods.start}, outside the term {c.term.start} to {c.term.end}",
            "start the measurement periods within the term",
        )
    if periods and periods[-1].end > c.term.end:
        out.add(
            "outside_term",
            ("timeline", "periods", "count"),
            f"the last period ends on {periods[-1].end}, after the term ends ({c.term.end})",
            "reduce the number of periods or extend the term",
        )
    for i, co in enumerate(tl.cohorts):
        p: KeyPath = ("timeline", "cohorts", i)
        if co.enrolment_end < co.enrolment_start:
            out.add(
                "dates_out_of_order",
                p + ("enrolment_end",),
                f"cohort '{co.id}' stops enrolling ({co.enrolment_end}) before it starts ({co.enrolment_start})",
                "enrolment_end must be on or after enrolment_start",
            )
        for key in ("enrolment_start", "enrolment_end"):
            d = getattr(co, key)
            if not (c.term.start <= d <= c.term.end):
                out.add(
                    "outside_term",
                    p + (key,),
                    f"cohort '{co.id}' {key} {d} is outside the term {c.term.start} to {c.term.end}",
                    "enrol within the contract's term",
                )
    pids = {pp.id: pp for pp in periods}
    last_index = -1
    finals = 0
    for i, d in enumerate(tl.determinations):
        p = ("timeline", "determinations", i)
        if d.period not in pids:
            out.add(
                "unknown_period",
                p + ("period",),
                f"'{d.period}' is not a measurement period (there are {len(periods)}: P1 to P{len(periods)})",
                "name a period such as P4",
            )
            continue
        idx = pids[d.period].index
        if idx <= last_index:
            out.add(
                "dates_out_of_order",
                p + ("period",),
                f"determination '{d.id}' covers {d.period}, not after the previous determination",
                "list determinations in time order, each covering a later period",
            )
        if finals:
            out.add(
                "determination_after_final",
                p,
                f"determination '{d.id}' comes after the final determination",
                "the final determination is the last one",
            )
        finals += d.kind == "final"
        last_index = max(last_index, idx)
        lag = d.payment_lag_days if d.payment_lag_days is not None else tl.payment_lag_days
        try:
            pay_on = pids[d.period].end + timedelta(days=lag)
        except OverflowError:  # a lag that runs past 9999-12-31 pays after any cutoff
            pay_on = date.max
        if d.data_cutoff is not None and pay_on < d.data_cutoff:
            out.add(
                "payment_before_cutoff",
                p + ("payment_lag_days",) if d.payment_lag_days is not None else p + ("data_cutoff",),
                f"determination '{d.id}' would be paid on {pay_on}, before its data cutoff {d.data_cutoff}",
                f"make the payment lag at least {(d.data_cutoff - pids[d.period].end).days} days, or move the cutoff earlier",
            )
        if d.data_cutoff is not None and d.data_cutoff < pids[d.period].start:
            out.add(
                "dates_out_of_order",
                p + ("data_cutoff",),
                f"data cutoff {d.data_cutoff} is before period {d.period} starts",
                "the data cutoff is on or after the end of the period it determines",
            )


# ------------------------------------------------------------------------ capital ---


def _check_capital(c: Contract, out: _Collector) -> None:
    cap = c.capital
    if cap is None:
        return
    parties = {p.id: p for p in c.parties}
    tranches = {t.id: t for t in cap.tranches}
    for i, t in enumerate(cap.tranches):
        p: KeyPath = ("capital", "tranches", i)
        party = parties.get(t.funder)
        if party is None:
            out.add(
                "unknown_party",
                p + ("funder",),
                f"funder '{t.funder}' is not among the parties",
                f"known parties: {_known(parties)}",
            )
        elif t.kind == "deferred_fee" and party.role != "provider":
            out.add(
                "wrong_role",
                p + ("funder",),
                f"a deferred fee is funded by the provider, but '{t.funder}' has role '{party.role}'",
                "name the provider party as funder of a deferred fee",
            )
        elif t.kind != "deferred_fee" and party.role not in ("investor", "guarantor", "intermediary"):
            out.add(
                "wrong_role",
                p + ("funder",),
                f"tranche funder '{t.funder}' has role '{party.role}'",
                "funders are parties with role 'investor'",
            )
        if t.kind in ("senior_loan", "junior_loan") and t.coupon is None:
            out.add(
                "missing_coupon",
                p,
                f"loan '{t.id}' has no coupon",
                "add 'coupon: {rate: 0.05, compounding: quarterly}' (rate 0 for an interest-free loan)",
            )
        if t.drawdowns and t.drawdown_schedule is not None:
            out.add(
                "conflicting_keys",
                p + ("drawdown_schedule",),
                "both drawdowns and drawdown_schedule are given",
                "give either the dated drawdowns or an equal-parts schedule",
            )
        if t.drawdowns:
            total = _total(d.amount for d in t.drawdowns)
            if total != t.commitment:
                out.add(
                    "drawdowns_not_commitment",
                    p + ("drawdowns",),
                    f"drawdowns add up to {total}, the commitment is {t.commitment}",
                    "make the drawdowns add up to the commitment",
                )
            for j, d in enumerate(t.drawdowns):
                if not (c.term.start <= d.date <= c.term.end):
                    out.add(
                        "outside_term",
                        p + ("drawdowns", j, "date"),
                        f"drawdown on {d.date} is outside the term",
                        "draw capital within the contract's term",
                    )
        if t.drawdown_schedule is not None and not (c.term.start <= t.drawdown_schedule.start <= c.term.end):
            out.add(
                "outside_term",
                p + ("drawdown_schedule", "start"),
                f"drawdowns start on {t.drawdown_schedule.start}, outside the term",
                "draw capital within the contract's term",
            )
        if t.maturity is not None and t.maturity <= c.term.start:
            out.add(
                "dates_out_of_order",
                p + ("maturity",),
                f"maturity {t.maturity} is not after the term starts ({c.term.start})",
                "set the maturity after the start of the term",
            )
    for i, g in enumerate(cap.guarantees):
        p = ("capital", "guarantees", i)
        if g.guarantor not in parties:
            out.add("unknown_party", p + ("guarantor",), f"guarantor '{g.guarantor}' is not among the parties",
                    f"known parties: {_known(parties)}")
        if g.covers not in tranches:
            out.add("unknown_tranche", p + ("covers",), f"'{g.covers}' is not a tranche of the capital stack",
                    f"known tranches: {_known(tranches)}")
        elif g.amount is not None and g.amount > tranches[g.covers].commitment and g.basis == "principal":
            out.add(
                "guarantee_above_principal",
                p + ("amount",),
                f"guarantee amount {g.amount} is above the covered principal ({tranches[g.covers].commitment})",
                "a guarantee of principal cannot exceed the tranche's commitment",
            )
        if g.share is None and g.amount is None:
            out.add("missing_key", p, f"guarantee '{g.id}' covers neither a share nor an amount",
                    "give 'share' (e.g. 0.5), 'amount', or both (the lower applies)")
    residual = 0
    for i, s in enumerate(cap.waterfall):
        p = ("capital", "waterfall", i)
        if s.tranche is not None and s.tranche not in tranches:
            out.add("unknown_tranche", p + ("tranche",), f"'{s.tranche}' is not a tranche of the capital stack",
                    f"known tranches: {_known(tranches)}")
        if s.pay in ("interest", "principal") and s.tranche is None:
            out.add("missing_key", p, f"a '{s.pay}' step must name the tranche it pays",
                    "add 'tranche: <id>'")
        if s.pay in ("residual", "bonus") and s.split is None and s.amount is None:
            out.add("missing_key", p, f"a '{s.pay}' step must say who receives it",
                    "add 'split: {party: share, ...}'")
        if s.split is not None:
            for party_id in s.split:
                if party_id not in parties:
                    out.add("unknown_party", p + ("split", party_id), f"'{party_id}' is not among the parties",
                            f"known parties: {_known(parties)}")
            total = sum(s.split.values(), Decimal(0))
            if total != ONE:
                out.add("shares_not_one", p + ("split",), f"split shares add up to {total}, not 1",
                        "make the shares add up to exactly 1")
        if s.pay == "residual":
            residual += 1
            if i != len(cap.waterfall) - 1:
                out.add("residual_not_last", p, "the residual step must be the last step of the waterfall",
                        "move the residual step to the end")


def _check_value_for_money(c: Contract, out: _Collector) -> None:
    if c.value_for_money is None:
        return
    for i, s in enumerate(c.value_for_money.savings):
        _metric_ref(c, out, ("value_for_money", "savings", i, "metric"), s.metric)


def _check_data_quality(c: Contract, out: _Collector) -> None:
    for code in c.data_quality.severity:
        if code not in CHECK_CODES:
            out.add(
                "unknown_check",
                ("data_quality", "severity", code),
                f"'{code}' is not a data check",
                f"known checks: {', '.join(CHECK_CODES)}",
            )


def _check_amendments(c: Contract, out: _Collector) -> None:
    prev = None
    for i, a in enumerate(c.amendments):
        p: KeyPath = ("amendments", i)
        if not (c.term.start <= a.effective <= c.term.end):
            out.add(
                "outside_term",
                p + ("effective",),
                f"amendment '{a.id}' takes effect on {a.effective}, outside the term",
                "amendments take effect within the contract's term",
            )
        if prev is not None and a.effective < prev:
            out.add(
                "dates_out_of_order",
                p + ("effective",),
                f"amendment '{a.id}' takes effect before the amendment listed above it",
                "list amendments in order of effective date",
            )
        prev = a.effective
        for j, ch in enumerate(a.changes):
            if (ch.set is None) == (ch.remove is None):
                out.add(
                    "change_mode",
                    p + ("changes", j),
                    "a change must have exactly one of 'set' or 'remove'",
                    "write '{set: path, to: value}' or '{remove: path}'",
                )
            elif ch.set is not None and ch.to is None:
                out.add(
                    "missing_key",
                    p + ("changes", j),
                    f"change sets '{ch.set}' but gives no 'to' value",
                    "add 'to: <new value>'",
                )


# --------------------------------------------------------------------- simulation ---


def check_simulation(c: Contract, sim: Simulation, path: KeyPath = ("simulation",)) -> list[Problem]:
    """Problems of simulation assumptions ``sim`` against contract ``c`` (paths start at
    ``path``: ``("simulation",)`` for a contract's own section or a scenario file)."""
    out = _Collector()
    _check_simulation(c, sim, path, out)
    return out.problems


def _check_distribution(out: _Collector, path: KeyPath, d: Distribution) -> None:
    if isinstance(d, TriangularDistribution) and (not (d.low <= d.mode <= d.high) or d.low == d.high):
        out.add("bad_distribution", path,
                f"a triangular distribution needs low <= mode <= high and low < high (got {d.low}, {d.mode}, {d.high})",
                "order the three numbers: low, the most likely value, high")
    if isinstance(d, (NormalDistribution, BetaDistribution)) and d.low is not None and d.high is not None \
            and d.low >= d.high:
        out.add("bad_distribution", path + ("high",), f"high ({d.high}) is not above low ({d.low})",
                "make high greater than low")
    if isinstance(d, EmpiricalDistribution) and d.weights:
        if len(d.weights) != len(d.values):
            out.add("bad_distribution", path + ("weights",),
                    f"{len(d.weights)} weight(s) for {len(d.values)} value(s)",
                    "give one weight per value, or no weights for equal probabilities")
        elif sum(d.weights, Decimal(0)) <= 0:
            out.add("bad_distribution", path + ("weights",), "the weights add up to 0",
                    "give at least one positive weight")


def _positive_semidefinite(m: list[list[float]]) -> bool:
    """Cholesky with a small tolerance (pure Python: the matrices are small)."""
    n = len(m)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            s = m[i][j] - sum(low[i][k] * low[j][k] for k in range(j))
            if i == j:
                if s < -1e-10:
                    return False
                low[i][j] = max(s, 0.0) ** 0.5
            else:
                low[i][j] = s / low[j][j] if low[j][j] > 1e-12 else 0.0
    return True


def _check_simulation(c: Contract, sim: Simulation, path: KeyPath, out: _Collector) -> None:
    metrics = {m.id: m for m in c.metrics}
    seen: set[str] = set()
    for i, e in enumerate(sim.effects):
        p = path + ("effects", i)
        if e.metric in seen:
            out.add("duplicate_id", p + ("metric",), f"the effect on '{e.metric}' is given twice",
                    "give one effect per metric")
        seen.add(e.metric)
        if not _metric_ref(c, out, p + ("metric",), e.metric):
            continue
        if metrics[e.metric].type in ("binary", "event") and not (0 <= e.base <= 1):
            out.add("out_of_range", p + ("base",),
                    f"base rate {e.base} of the {metrics[e.metric].type} metric '{e.metric}' is not between 0 and 1",
                    "write a rate as a fraction: 30% is 0.3")
        _check_distribution(out, p + ("effect",), e.effect)
    for key in ("attrition", "delay_months", "baseline_drift"):
        d = getattr(sim, key)
        if d is not None:
            _check_distribution(out, path + (key,), d)
    _check_distribution(out, path + ("enrolment", "fraction"), sim.enrolment.fraction)
    # every metric a trigger pays on needs a true effect to simulate
    needed: dict[str, KeyPath] = {}
    for i, t in enumerate(c.triggers):
        if isinstance(t, RateCardTrigger):
            for j, o in enumerate(t.outcomes):
                needed.setdefault(o.metric, ("triggers", i, "outcomes", j, "metric"))
        else:
            needed.setdefault(t.effect.metric, ("triggers", i, "effect", "metric"))
    for metric, where in needed.items():
        if metric in metrics and metric not in seen:
            out.add("missing_assumption", path + ("effects",),
                    f"no true effect is assumed for metric '{metric}', which {format_trigger_path(where, c)} pays on",
                    f"add '- {{metric: {metric}, base: ..., effect: {{kind: normal, mean: ..., sd: ...}}}}' to effects")
    corr = sim.correlation
    if corr:
        n = len(sim.effects)
        cp = path + ("correlation",)
        if len(corr) != n or any(len(row) != n for row in corr):
            out.add("correlation_invalid", cp,
                    f"the correlation matrix must be {n} x {n} (one row and column per effect, in their order)",
                    "list one row per effect, each with one number per effect")
            return
        bad = [(i, j) for i in range(n) for j in range(n)
               if abs(corr[i][j]) > 1 or corr[i][j] != corr[j][i] or (i == j and corr[i][j] != 1)]
        if bad:
            i, j = bad[0]
            out.add("correlation_invalid", cp + (i, j),
                    f"entry ({i + 1}, {j + 1}) = {corr[i][j]}: a correlation matrix is symmetric, "
                    "has 1 on its diagonal and entries between -1 and 1",
                    "mirror each entry across the diagonal and put 1 on it")
        elif not _positive_semidefinite([[float(x) for x in row] for row in corr]):
            out.add("correlation_invalid", cp,
                    "the correlations contradict each other (the matrix is not positive semi-definite)",
                    "weaken the correlations: e.g. A and B, and A and C, cannot both be 0.9 if B and C are -0.9")


def format_trigger_path(where: KeyPath, c: Contract) -> str:
    """``trigger 'id'`` for a key path into the triggers."""
    i = where[1]
    return f"trigger '{c.triggers[int(i)].id}'" if isinstance(i, int) and i < len(c.triggers) else "a trigger"
