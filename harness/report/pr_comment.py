"""The pull-request comment of a `harness ab` (its summary.md): the verdict with its magnitude first.

Then the refs and testbed, the method, the counts, only the changed comparisons with their
intervals, the noise floor and a link to the HTML report. It opens with a hidden marker naming
the scenario, so a workflow finds its own comment and edits it in place instead of adding one per
push. GitHub refuses comments over 65,536 characters, so the text is kept under `limit_bytes`
(UTF-8) for any record: user text is clipped, and when the whole is still too long, rows are
dropped from the end of the table with a note saying how many the HTML report holds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from urllib.parse import quote

from harness.ab.record import AbResult, Comparison
from harness.metrics.catalog import format_value
from harness.report import ab_view
from harness.report.markdown import escape_md
from harness.results import Outcome

MARKER = "<!-- harness-ab: {scenario} -->"
COMMENT_LIMIT_BYTES = 60_000
NAME_CHARS = 120  # variant and scenario names, refs: enough to recognise, short enough for a table
TEXT_CHARS = 400  # messages, warnings, reasons
LIST_ITEMS = 20  # warnings, errors and noise floors listed; the HTML report has them all
GROUP_NAMES = 3  # variants named on a line of the noise floor they share
LOG_TAIL_LINES = 20
LOG_LINE_CHARS = 300
URL_CHARS = 2_000
DEFAULT_REPORT = "index.html"  # next to summary.md in the run folder

_MARKER_SAFE = re.compile(r"[^A-Za-z0-9 ._/+=:@-]")
_CODE_SAFE = re.compile(r"[A-Za-z0-9_.:/ -]{1,80}")  # shown as code: nothing a code span or table breaks on


def marker(scenario_name: str) -> str:
    """The hidden comment naming the scenario. Characters that could end an HTML comment or hide
    in it are replaced, and a hash of the exact name is added when any was, so two scenarios never
    share a marker and no name can close the comment early."""
    safe = re.sub(r"-{2,}", "-", _MARKER_SAFE.sub("_", scenario_name))[:NAME_CHARS].strip(" -") or "_"
    if safe != scenario_name:
        safe += " #" + hashlib.sha256(scenario_name.encode()).hexdigest()[:8]
    return MARKER.format(scenario=safe)


def render_pr_comment(
    ab: AbResult, *, report_url: str | None = None, limit_bytes: int = COMMENT_LIMIT_BYTES
) -> str:
    """The comment as Markdown, at most `limit_bytes` UTF-8 bytes. `report_url` (else the record's
    `report_url`, else index.html next to this file) is where the link to the HTML report points."""
    url = _url(report_url or ab.report_url or DEFAULT_REPORT)
    parts = _Parts.of(ab, url)
    # too long: drop table rows from the end, then noise floor lines, then the listed warnings and
    # errors, each time keeping as many as fit
    for name in ("rows", "noise", "listed"):
        text = parts.render()
        if _fits(text, limit_bytes):
            return text
        parts = _shrink(parts, name, limit_bytes)
    text = parts.render()
    if not _fits(text, limit_bytes):
        text = parts.minimal()
    if not _fits(text, limit_bytes):  # a limit too small even for marker, verdict and link
        text = text.encode()[:limit_bytes].decode(errors="ignore")
    return text


def render_failure(ab: AbResult) -> str:
    """Why the A/B run broke: stage, variant, message, the log to read and its last lines ('' if it
    did not break)."""
    failure = ab.failure
    if failure is None:
        return ""
    what = "The A/B run was interrupted" if failure.interrupted else "The A/B run broke"
    where = f" at stage {_code(failure.stage)}" if failure.stage else ""
    variant = f" (variant **{_text(failure.variant, NAME_CHARS)}**)" if failure.variant else ""
    lines = [f"**{what}{where}**{variant}: {_text(failure.message or 'no message')}", ""]
    if failure.log:
        lines += [f"log: {_text(failure.log)}", ""]
    tail = [
        _clip(line, LOG_LINE_CHARS) for line in failure.log_tail.rstrip("\n").splitlines()[-LOG_TAIL_LINES:]
    ]
    if tail:
        body = "\n".join(tail)
        fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", body)), default=0) + 1)
        lines += [f"{fence}text", body, fence, ""]
    return "\n".join(lines)


# ---- the parts of the comment ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parts:
    """The comment in pieces, so the fallback can drop rows and lines and say how many it dropped."""

    ab: AbResult
    url: str
    rows: list[Comparison]
    noise: list[str]
    listed: list[str]  # warnings, then variants that could not be compared
    dropped_rows: int = 0
    dropped_noise: int = 0
    dropped_listed: int = 0

    @classmethod
    def of(cls, ab: AbResult, url: str) -> _Parts:
        warnings = [_text(w) for w in ab_view.all_warnings(ab)]
        errors = [
            f"**{_text(v.name, NAME_CHARS)}** could not be compared: {_text(v.error)}"
            for v in ab.variants
            if v.error
        ]
        listed = warnings[:LIST_ITEMS] + errors[:LIST_ITEMS]
        dropped = max(len(warnings) - LIST_ITEMS, 0) + max(len(errors) - LIST_ITEMS, 0)
        noise = _noise_lines(ab)
        return cls(
            ab,
            url,
            ab_view.changed(ab),
            noise[:LIST_ITEMS],
            listed,
            dropped_noise=max(len(noise) - LIST_ITEMS, 0),
            dropped_listed=dropped,
        )

    def cut(self, field: str, keep: int) -> _Parts:
        items = getattr(self, field)
        dropped = getattr(self, f"dropped_{field}") + len(items) - keep
        return replace(self, **{field: items[:keep], f"dropped_{field}": dropped})

    def render(self) -> str:
        ab = self.ab
        lines = [marker(ab.scenario_name), *_headline(ab), ""]
        lines += [_sides(ab), ""]
        lines += self._listed()
        if ab.failure is not None:
            lines += [render_failure(ab)]
        lines += ["<details><summary>Method</summary>", ""]
        lines += [f"- **{label}:** {_text(text)}" for label, text in ab_view.method_facts(ab)]
        lines += ["", "</details>", ""]
        if ab.failure is None:
            counts = " · ".join(f"{ab_view.STATUS_ICON[s]} {n} {s}" for s, n in ab_view.counts_text(ab))
            lines += [f"**{len(ab.comparisons)} comparisons:** {counts}", ""]
            lines += self._table()
            lines += self._noise()
        lines += [_link(self.url, "📄 **HTML report**: every comparison, the per-block charts, the slots")]
        return "\n".join(lines) + "\n"

    def minimal(self) -> str:
        """Marker, verdict and link: what must survive any limit."""
        lines = [marker(self.ab.scenario_name), *_headline(self.ab), ""]
        lines += ["The details did not fit in a comment.", ""]
        lines += [_link(self.url, "📄 **HTML report**: the comparisons, the method, the noise floor")]
        return "\n".join(lines) + "\n"

    def _listed(self) -> list[str]:
        if not self.listed and not self.dropped_listed:
            return []
        lines = ["> [!WARNING]", "> **Compare with care:**"]
        lines += [f"> - {item}" for item in self.listed]
        if self.dropped_listed:
            lines.append(f"> - … {self.dropped_listed} more in the HTML report")
        return [*lines, ""]

    def _table(self) -> list[str]:
        if not self.rows and not self.dropped_rows:
            return ["No metric changed.", ""]
        conf = ab_view.confidence(self.ab.method)
        lines = [
            f"| | variant | metric | base | head | change | {conf} interval | threshold | test | p |",
            "|:-:|:--|:--|--:|--:|--:|:-:|--:|:--|--:|",
        ]
        lines += [_row(c) for c in self.rows]
        if self.dropped_rows:
            lines += ["", f"✂️ {self.dropped_rows} more rows in the {_link(self.url, 'HTML report')}."]
        return [*lines, ""]

    def _noise(self) -> list[str]:
        if not self.noise and not self.dropped_noise:
            return []
        lines = [
            "**Noise floor** (the change noise alone gives; a change counts from the larger of it "
            "and the minimum effect):",
            "",
        ]
        lines += self.noise
        if self.dropped_noise:
            lines.append(f"- … {self.dropped_noise} more in the HTML report")
        return [*lines, ""]


def _headline(ab: AbResult) -> list[str]:
    h = ab_view.headline(ab)
    if h.comparison is None:
        first = f"### {h.icon} {h.label}: {_text(h.text)}"
        why = ""
    else:
        c = h.comparison
        lead = f"{h.lead}: " if h.lead else ""
        interval = ab_view.format_interval(c)
        first = (
            f"### {h.icon} {h.label}: {lead}{_text(c.variant, NAME_CHARS)} {_code(c.metric)} "
            f"{ab_view.format_change(c)}{' ' + interval if interval else ''}"
        )
        if h.more:
            first += f" (and {h.more} more {c.status})"
        why = "" if h.outcome is Outcome.PASS else _text(c.message)
    meaning = ab_view.OUTCOME_MEANING[h.outcome]
    lines = [first, "", f"**{_text(ab.scenario_name, NAME_CHARS)}**: {meaning} ({ab_view.exit_note(ab)})."]
    if why:
        lines += ["", f"> {why}"]
    return lines


def _sides(ab: AbResult) -> str:
    def side(label: str, ref: str, sha: str, dirty: bool) -> str:
        at = f" @ `{sha}`" if sha else ""
        return f"**{label}** {_text(ref, NAME_CHARS)}{at}{' (uncommitted changes)' if dirty else ''}"

    base = side("base", ab.base.ref, ab_view.short_sha(ab.base.sha), ab.base.dirty)
    head = side("head", ab.head.ref, ab_view.short_sha(ab.head.sha), ab.head.dirty)
    return f"{base} · {head} · **testbed** {_text(ab.testbed or 'unlabelled', NAME_CHARS)}"


def _row(c: Comparison) -> str:
    cells = [
        ab_view.STATUS_ICON[c.status] + " " + c.status,
        _text(c.variant, NAME_CHARS),
        _code(c.metric),
        escape_md(format_value(c.metric, c.base_value)),
        escape_md(format_value(c.metric, c.head_value)),
        f"**{ab_view.format_change(c)}**",
        ab_view.format_interval(c) or "-",
        ab_view.format_threshold(c),
        f"{_text(c.test, NAME_CHARS)} (n={c.n})",
        ab_view.format_p(c.p_value),
    ]
    return "| " + " | ".join(cells) + " |"


def _noise_lines(ab: AbResult) -> list[str]:
    """One line per distinct noise floor, naming the variants that share it (the first few)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for floor in ab_view.noise_floors(ab):
        values = ", ".join(f"{title} {value}" for title, value in floor.values)
        groups.setdefault((floor.source, values), []).append(floor.variant)
    lines = []
    for (source, values), names in groups.items():
        shown = ", ".join(f"**{_text(name, NAME_CHARS)}**" for name in names[:GROUP_NAMES])
        if len(names) > GROUP_NAMES:
            shown += f" and {len(names) - GROUP_NAMES} more"
        if values:
            lines.append(f"- {shown}: {_text(values)} (from {source})")
        else:
            lines.append(f"- {shown}: {source}; the minimum effect applies")
    return lines


# ---- text helpers ------------------------------------------------------------------------------------


def _clip(text: str, limit: int = TEXT_CHARS) -> str:
    """One line (any line break, tab or other whitespace run becomes a space), at most `limit` chars."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _text(text: str, limit: int = TEXT_CHARS) -> str:
    """User text, clipped to one line and escaped for Markdown (tables, emphasis, HTML)."""
    return escape_md(_clip(text, limit))


def _code(name: str) -> str:
    """A metric or stage name as code when it is a plain identifier, else escaped text."""
    return f"`{name}`" if _CODE_SAFE.fullmatch(name) else _text(name, NAME_CHARS)


def _url(url: str) -> str:
    """The link target, percent-encoded where Markdown would end or break it (spaces, parentheses,
    angle brackets); too long a URL falls back to the report next to the comment's file."""
    if len(url) > URL_CHARS:
        return DEFAULT_REPORT
    return quote(url.strip(), safe=":/?#[]@!$&'*+,;=%~-._")


def _link(url: str, label: str) -> str:
    return f"[{label}]({url})"


def _fits(text: str, limit: int) -> bool:
    return len(text.encode()) <= limit


def _shrink(parts: _Parts, name: str, limit: int) -> _Parts:
    """`parts` keeping the most items of list `name` that fit (the size grows with their number)."""
    lo, hi = 0, len(getattr(parts, name))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fits(parts.cut(name, mid).render(), limit):
            lo = mid
        else:
            hi = mid - 1
    return parts.cut(name, lo)
