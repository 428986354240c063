"""JUnit XML for CI test tabs: one testcase per variant, carrying the variant's outcome.

How each outcome is written (CI systems read these, so they are part of the contract):

- pass: a plain testcase.
- regression: one <failure type="RegressionFound"> listing every failed gate, one per line.
  Several <failure> elements in one testcase are legal in Jenkins' schema, but Jenkins, Azure
  DevOps and common GitHub actions show only the first, and junitparser rejects them outright.
- inconclusive: <skipped type="Inconclusive" message="inconclusive: ..."> with the validity
  reasons. The variant is neither a pass nor a failure: its measurement stayed INVALID, so nothing
  was concluded. The run's exit code (3) is what fails the CI job; the test tab shows why.
- error (the run broke): an <error type="RunFailure"> on the testcase of the variant that broke it,
  or on a testcase named "run" when no variant did, with the stage, message, log path and log
  tail. Variants judged before the break keep their outcome; a variant the run never judged is
  <skipped type="NotJudged">, never listed as passing.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.atomic import atomic_write_text
from harness.metrics.catalog import format_value
from harness.report.evidence import (
    STATUS_LABEL,
    invalid_reasons,
    measurement_label,
    not_judged_reason,
    outcome_label,
)
from harness.report.metrics_view import finite
from harness.report.run_view import wall_seconds
from harness.report.serving_view import relative_path
from harness.results import Outcome, RunFailure, RunResult, VariantResult, Verdict

JUNIT_FILE = "junit.xml"
RUN_CASE = "run"  # the testcase that carries a failure no variant caused
# characters XML 1.0 cannot carry even escaped (server logs sometimes contain them)
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _INVALID_XML.sub("\ufffd", text)


def junit_xml(result: RunResult) -> str:
    """The JUnit document as a string."""
    failure = result.failure
    names = [v.name for v in result.variants]
    run_case = failure is not None and failure.variant not in names
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    root = ET.Element("testsuites", {"name": "harness"})
    suite_attrs = {"name": _clean(result.scenario_name), "timestamp": result.started_at}
    suite = ET.SubElement(root, "testsuite", suite_attrs)
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("run_id", result.run_id),
        ("outcome", result.outcome.value),
        ("exit_code", str(result.outcome.exit_code)),
        ("baseline_status", result.baseline.status),
        ("baseline_message", result.baseline.message),
    ):
        ET.SubElement(props, "property", {"name": key, "value": _clean(str(value))})

    for variant in result.variants:
        case = _case(suite, result, variant.name)
        counts["tests"] += 1
        if failure is not None and failure.variant == variant.name:
            _error(case, failure, result)
            counts["errors"] += 1
        elif variant.outcome is None:
            message = not_judged_reason(result)
            ET.SubElement(case, "skipped", {"type": "NotJudged", "message": _clean(message)})
            counts["skipped"] += 1
        elif counter := _outcome(case, variant):
            counts[counter] += 1
        out = ET.SubElement(case, "system-out")
        out.text = _clean(_system_out(result, variant))
    if run_case:
        assert failure is not None
        _error(_case(suite, result, RUN_CASE), failure, result)
        counts["tests"] += 1
        counts["errors"] += 1

    wall = wall_seconds(result)
    attrs = {k: str(v) for k, v in counts.items()} | {"time": f"{wall if wall is not None else 0.0:.3f}"}
    root.attrib.update(attrs)
    suite.attrib.update(attrs)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: RunResult, path: str | Path) -> Path:
    """Write the JUnit XML for `result` to `path` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(target, junit_xml(result))


def _case(suite: ET.Element, result: RunResult, name: str) -> ET.Element:
    attrs = {"classname": _clean(f"harness.{result.scenario_name}"), "name": _clean(name), "time": "0"}
    return ET.SubElement(suite, "testcase", attrs)


def _outcome(case: ET.Element, variant: VariantResult) -> str:
    """Write the variant's outcome into its testcase; return the counter it adds to ('' for a pass)."""
    outcome = variant.outcome
    if outcome is Outcome.REGRESSION:
        failed = [v for v in variant.verdicts if v.failed]
        summary = (
            failed[0].message
            if len(failed) == 1
            else f"{len(failed)} gates failed: {failed[0].message}; ..."
            if failed
            else "regression"
        )
        element = ET.SubElement(case, "failure", {"message": _clean(summary), "type": "RegressionFound"})
        element.text = _clean("\n".join(_failure_line(variant, v) for v in failed))
        return "failures"
    if outcome is Outcome.INCONCLUSIVE:
        reported = variant.reported
        reasons = invalid_reasons(reported) if reported is not None else []
        reasons = reasons or [v.message for v in variant.verdicts if v.status == "inconclusive"]
        times = f" after {len(variant.measurements)} measurements" if len(variant.measurements) > 1 else ""
        summary = f"inconclusive: measurement INVALID{times}" + (f": {reasons[0]}" if reasons else "")
        element = ET.SubElement(case, "skipped", {"message": _clean(summary), "type": "Inconclusive"})
        element.text = _clean("\n".join(reasons))
        return "skipped"
    if outcome is Outcome.ERROR:
        message = variant.error or "this variant could not be measured"
        attrs = {"message": _clean(message.splitlines()[0]), "type": "VariantError"}
        element = ET.SubElement(case, "error", attrs)
        element.text = _clean(message)
        return "errors"
    return ""


def _error(case: ET.Element, failure: RunFailure, result: RunResult) -> None:
    what = "interrupted" if failure.interrupted else "run broke"
    first = failure.message.strip().splitlines()[0] if failure.message.strip() else "no message"
    message = f"{what} at stage {failure.stage}: {first}"
    lines = [f"stage: {failure.stage}"]
    lines += [f"variant: {failure.variant}"] if failure.variant else []
    lines += [f"message: {failure.message}"]
    if failure.log:
        lines.append(f"log: {relative_path(failure.log, result.run_dir)}")
    if failure.log_tail:
        lines += ["", "last lines of the log:", failure.log_tail.rstrip("\n")]
    element = ET.SubElement(case, "error", {"message": _clean(message), "type": "RunFailure"})
    element.text = _clean("\n".join(lines))


def _failure_line(variant: VariantResult, verdict: Verdict) -> str:
    """The verdict's message (which names its statistical test), marked with the measurement it
    was judged on when the variant was measured more than once."""
    if len(variant.measurements) > 1:
        return f"{verdict.message} [{measurement_label(verdict.measurement)}]"
    return verdict.message


def _system_out(result: RunResult, variant: VariantResult) -> str:
    lines = [f"outcome = {outcome_label(result, variant)}"]
    lines += [f"{name} = {format_value(name, finite(value))}" for name, value in variant.metrics.items()]
    lines += [f"[{STATUS_LABEL.get(v.status, v.status)}] {v.message}" for v in variant.verdicts]
    return "\n".join(lines)
