"""JUnit XML for CI test tabs: one testcase per variant, failing when any of its gates failed or its
measurement was INVALID (an invalid measurement is not a result, so it cannot pass).

A failing testcase carries exactly one <failure> that lists every failing gate (one per line).
Several <failure> elements in one testcase are legal in Jenkins' schema, but Jenkins, Azure DevOps
and common GitHub actions show only the first, and junitparser rejects them outright.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from harness.atomic import atomic_write_text
from harness.metrics.catalog import format_value
from harness.report.evidence import VALIDITY_METRIC, confirmation_tag, validity_of
from harness.results import RunResult, Verdict

# characters XML 1.0 cannot carry even escaped (server logs sometimes contain them)
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def junit_xml(result: RunResult) -> str:
    """The JUnit document as a string."""
    names = [v.name for v in result.variants]
    names += sorted({v.variant for v in result.verdicts} - set(names))
    by_variant: dict[str, list[Verdict]] = {name: [] for name in names}
    for verdict in result.verdicts:
        by_variant[verdict.variant].append(verdict)
    metrics = {v.name: v.metrics for v in result.variants}
    invalid: dict[str, list[str]] = {}
    for variant in result.variants:
        validity = validity_of(variant)
        if validity is not None and not validity.valid:
            invalid[variant.name] = validity.reasons or ["no reason recorded"]
    failing = sum(
        1 for name, verdicts in by_variant.items() if name in invalid or any(not v.passed for v in verdicts)
    )
    total_s = f"{sum(result.stage_seconds.values()):.3f}"
    counts = {
        "tests": str(len(names)),
        "failures": str(failing),
        "errors": "0",
        "skipped": "0",
        "time": total_s,
    }

    root = ET.Element("testsuites", {"name": "harness", **counts})
    suite = ET.SubElement(
        root, "testsuite", {"name": _clean(result.scenario_name), "timestamp": result.started_at, **counts}
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("run_id", result.run_id),
        ("baseline_status", result.baseline_status),
        ("baseline_message", result.baseline_message),
    ):
        ET.SubElement(props, "property", {"name": key, "value": _clean(str(value))})
    for name in names:
        case = ET.SubElement(
            suite,
            "testcase",
            {"classname": _clean(f"harness.{result.scenario_name}"), "name": _clean(name), "time": "0"},
        )
        verdicts = by_variant[name]
        failed = [v for v in verdicts if not v.passed]
        if name in invalid:
            # one <failure> per testcase (see above): the invalid measurement first, gates after
            reasons = invalid[name]
            summary = f"measurement INVALID: {reasons[0]}" + ("; ..." if len(reasons) > 1 else "")
            attrs = {"message": _clean(summary), "type": "InvalidMeasurement"}
            failure = ET.SubElement(case, "failure", attrs)
            # the failing `validity` verdict only restates the reasons listed first
            rest = [v for v in failed if v.metric != VALIDITY_METRIC]
            lines = [f"measurement INVALID: {r}" for r in reasons] + [_failure_line(v) for v in rest]
            failure.text = _clean("\n".join(lines))
        elif failed:
            summary = (
                failed[0].message
                if len(failed) == 1
                else f"{len(failed)} gates failed: {failed[0].message}; ..."
            )
            failure = ET.SubElement(case, "failure", {"message": _clean(summary), "type": "RegressionFound"})
            failure.text = _clean("\n".join(_failure_line(v) for v in failed))
        out = ET.SubElement(case, "system-out")
        out.text = _clean(_system_out(metrics.get(name, {}), verdicts))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: RunResult, path: str | Path) -> Path:
    """Write the JUnit XML for `result` to `path` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(target, junit_xml(result))


def _failure_line(verdict: Verdict) -> str:
    """The verdict's message (which names its statistical test), marked when it is a re-measurement's."""
    tag = confirmation_tag(verdict)
    return f"{verdict.message} [{tag.lower()}]" if tag else verdict.message


def _system_out(metrics: dict[str, float], verdicts: Iterable[Verdict]) -> str:
    lines = [f"{name} = {format_value(name, value)}" for name, value in metrics.items()]
    lines += [f"[{'PASS' if v.passed else 'FAIL'}] {v.message}" for v in verdicts]
    return "\n".join(lines)
