"""What the A/B reports say, as plain text: the verdict, the changes, the method, the noise floor.

Shared by the pull-request comment (Markdown) and the HTML report so both say the same thing in the
same words. Nothing here escapes: each renderer escapes the user text it is handed (the variant in
`Headline`, the refs, reasons and messages) in its own way. Nothing decides anew either: statuses,
intervals and thresholds are harness.ab.decide's, only put into words.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from harness.ab.record import CHANGE_STATUSES, AbMethod, AbResult, ChangeStatus, Comparison
from harness.metrics.catalog import METRICS, format_value
from harness.report.markdown import ICON
from harness.results import Outcome

STATUS_ICON: dict[ChangeStatus, str] = {
    "regressed": "❌",
    "inconclusive": "⚠️",
    "improved": "✅",
    "unchanged": "⚪",
}
# the order the brief and the counts line use: good news first, the undecided last
COUNT_ORDER: tuple[ChangeStatus, ...] = ("improved", "regressed", "unchanged", "inconclusive")
NOISE_SOURCE = {"aa-blocks": "A/A blocks", "history": "history", "none": "not measured"}
OUTCOME_MEANING = {
    Outcome.PASS: "no metric regressed and every change was decided",
    Outcome.REGRESSION: "a metric of the head is worse than the base beyond the threshold, with confidence",
    Outcome.INCONCLUSIVE: "a change could be neither confirmed nor ruled out: too noisy to decide",
    Outcome.ERROR: "the A/B run broke or a variant could not be compared: nothing can be concluded",
    Outcome.INTERRUPTED: "the A/B run was stopped before it finished: nothing concluded",
}
_SHA = re.compile(r"[0-9a-fA-F]{7,64}")


@dataclass(frozen=True)
class Headline:
    """The verdict a reader sees first: the outcome and the one comparison that best shows why.

    `comparison` is the largest change of the deciding status (largest relative to its threshold,
    since a relative and an absolute change have no common unit); `more` counts the others of that
    status. Without a comparison (a broken run, nothing measured) `text` says what happened."""

    outcome: Outcome
    icon: str
    label: str  # "REGRESSION", "PASS", ...
    lead: str = ""  # words before the comparison: "could not decide", "no regression; largest change"
    comparison: Comparison | None = None
    more: int = 0
    text: str = ""  # user text (a failure message) when there is no comparison


def headline(ab: AbResult) -> Headline:
    outcome = ab.outcome
    icon, label = ICON[outcome], outcome.value.upper()
    if ab.failure is not None:
        f = ab.failure
        verb = "was interrupted" if f.interrupted else "broke"
        where = f" at stage {f.stage}" if f.stage else ""
        variant = f" ({f.variant})" if f.variant else ""
        first = next(iter(f.message.strip().splitlines()), "no message")
        return Headline(outcome, icon, label, text=f"the A/B run {verb}{where}{variant}: {first}")
    broken = [v for v in ab.variants if v.error]
    if broken:
        more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
        return Headline(
            outcome, icon, label, text=f"{broken[0].name} could not be compared{more}: {broken[0].error}"
        )
    if not ab.variants:
        return Headline(outcome, icon, label, text="no variant was compared")
    if outcome is Outcome.REGRESSION:
        return _leading(ab, "regressed", outcome, "")
    if outcome is Outcome.INCONCLUSIVE:
        return _leading(ab, "inconclusive", outcome, "could not decide")
    changed = [c for c in ab.comparisons if c.change is not None]
    if not changed:
        return Headline(outcome, icon, label, text="no comparison had a value on both sides")
    top = max(changed, key=_size)
    return Headline(outcome, icon, label, lead="no regression; largest change", comparison=top)


def _leading(ab: AbResult, status: ChangeStatus, outcome: Outcome, lead: str) -> Headline:
    matching = [c for c in ab.comparisons if c.status == status]
    top = max(matching, key=_size)
    return Headline(outcome, ICON[outcome], outcome.value.upper(), lead, top, len(matching) - 1)


def _size(c: Comparison) -> float:
    """How far the change went, in units of its threshold (0 when there is no change to size)."""
    if c.change is None or not math.isfinite(c.change):
        return 0.0
    return abs(c.change) / c.threshold if c.threshold > 0 else abs(c.change)


def exit_note(ab: AbResult) -> str:
    """'exit code 1', or for an undecided run both codes the --inconclusive policy gives."""
    if ab.outcome is Outcome.INCONCLUSIVE:
        other = "fail" if ab.inconclusive == "pass" else "pass"
        other_code = 3 if other == "fail" else 0
        return (
            f"exit code {ab.exit_code} under --inconclusive {ab.inconclusive} "
            f"({other_code} under --inconclusive {other})"
        )
    return f"exit code {ab.exit_code}"


# ---- comparisons -----------------------------------------------------------------------------------


def ordered(comparisons: list[Comparison]) -> list[Comparison]:
    """Regressed, then inconclusive, improved and unchanged; variants in their run order within."""
    return sorted(comparisons, key=lambda c: CHANGE_STATUSES.index(c.status))


def changed(ab: AbResult) -> list[Comparison]:
    """The comparisons that did not come out unchanged: the rows a reviewer must look at."""
    return ordered([c for c in ab.comparisons if c.status != "unchanged"])


def counts_text(ab: AbResult) -> list[tuple[ChangeStatus, int]]:
    counts = ab.counts()
    return [(status, counts[status]) for status in COUNT_ORDER]


def format_amount(c: Comparison, value: float | None) -> str:
    """A change or interval bound with its sign: '+18.2%' for relative changes, '-0.56 pp' for
    fractions (percentage points: a relative change of an error rate of zero means nothing) and
    the metric's unit for other absolute ones."""
    if value is None or not math.isfinite(value):
        return "-" if value is None else str(value)
    if c.change_kind == "relative":
        pct = value * 100
        return f"{pct:+.1f}%" if abs(pct) >= 0.1 or pct == 0 else f"{pct:+.2g}%"
    spec = METRICS.get(c.metric)
    if spec is not None and spec.unit == "fraction":
        return f"{value * 100:+.2f} pp"
    text = format_value(c.metric, abs(value))
    return ("-" if value < 0 else "+") + text


def format_change(c: Comparison) -> str:
    return format_amount(c, c.change)


def format_interval(c: Comparison) -> str:
    """'[+12.1%, +24.0%]', or '' when the test gives no interval (an exact or pooled comparison)."""
    if c.ci_low is None or c.ci_high is None:
        return ""
    return f"[{format_amount(c, c.ci_low)}, {format_amount(c, c.ci_high)}]"


def format_threshold(c: Comparison) -> str:
    """The change that counts, unsigned: '5.0%' or '1.00 pp'."""
    return format_amount(c, c.threshold).lstrip("+")


def format_p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return "-"
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def metric_title(metric: str) -> str:
    spec = METRICS.get(metric)
    return spec.title if spec is not None else metric


# ---- sides, method, noise ----------------------------------------------------------------------------


def short_sha(sha: str | None) -> str:
    """The first 7 hex digits, or '' when there is no commit or it is not a hash."""
    return sha[:7].lower() if sha and _SHA.fullmatch(sha) else ""


def confidence(method: AbMethod) -> str:
    """'95%': the level of every interval shown (1 - alpha)."""
    return f"{(1 - method.alpha) * 100:g}%"


def method_facts(ab: AbResult) -> list[tuple[str, str]]:
    """(label, text) of how the decision was made; no user text except the servers' reason."""
    m = ab.method
    tests = sorted({c.test for c in ab.comparisons})
    facts = [("test", f"{m.test} ({m.bootstrap_resamples:,} bootstrap resamples)")]
    if tests:
        facts.append(("tests per metric", ", ".join(tests)))
    reach = f"alpha {m.alpha:g} (best reachable with {m.pairs} blocks: {m.best_reachable_alpha:.3g})"
    if m.best_reachable_alpha > m.alpha:
        reach += "; NOT reachable: block comparisons can only come out unchanged or inconclusive"
    facts += [
        ("significance", reach),
        (
            "minimum effect",
            f"{m.min_effect * 100:g}%, or the scenario's relative gate on the metric; the noise floor "
            "if larger",
        ),
        ("blocks", f"{m.pairs}, measured as {m.order}" if m.order else str(m.pairs)),
        (
            "rounds",
            f"{m.rounds}: both servers started afresh for each, blocks of all rounds pooled"
            if m.rounds > 1
            else "1: one start of each server measured every block",
        ),
        (
            "slots",
            f"{m.slot_s:g} s of each side per block"
            + ("" if m.slice_s else f", each after {m.warmup_s:g} s warm-up"),
        ),
        ("servers", f"{m.servers}: {m.servers_reason}" if m.servers_reason else m.servers),
    ]
    if m.interleaving:
        facts.append(("interleaving", m.interleaving))
    if m.aa_pairs:
        facts.append(("A/A blocks", f"{m.aa_pairs} (base against base, for the noise floor)"))
    return facts


@dataclass(frozen=True)
class NoiseFloor:
    """One variant's noise floor: per metric the relative change noise alone gives, and its source."""

    variant: str
    source: str  # "A/A blocks", "history", "not measured"
    values: list[tuple[str, str]]  # (metric title, '3.1%')


def noise_floors(ab: AbResult) -> list[NoiseFloor]:
    return [
        NoiseFloor(
            variant=v.name,
            source=NOISE_SOURCE.get(v.noise_floor_source, v.noise_floor_source),
            values=[
                (metric_title(k), f"{x * 100:.1f}%") for k, x in v.noise_floor.items() if math.isfinite(x)
            ],
        )
        for v in ab.variants
    ]


def all_warnings(ab: AbResult) -> list[str]:
    """Environment warnings, then each variant's own, prefixed by its name (user text)."""
    return list(ab.environment_warnings) + [f"{v.name}: {w}" for v in ab.variants for w in v.warnings]
